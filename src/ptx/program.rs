//! The pre-decoded form of a PTX module: kernels as flat instruction vectors with register indices,
//! symbol addresses and branch targets resolved, so execution never touches text.

use std::collections::HashMap;

/// Register and operand types of PTX.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ty {
    Pred,
    B8,
    B16,
    B32,
    B64,
    B128,
    U8,
    U16,
    U32,
    U64,
    S8,
    S16,
    S32,
    S64,
    F16,
    F16x2,
    BF16,
    BF16x2,
    F32,
    F64,
}

impl Ty {
    pub fn parse(name: &str) -> Option<Ty> {
        Some(match name {
            "pred" => Ty::Pred,
            "b8" => Ty::B8,
            "b16" => Ty::B16,
            "b32" => Ty::B32,
            "b64" => Ty::B64,
            "b128" => Ty::B128,
            "u8" => Ty::U8,
            "u16" => Ty::U16,
            "u32" => Ty::U32,
            "u64" => Ty::U64,
            "s8" => Ty::S8,
            "s16" => Ty::S16,
            "s32" => Ty::S32,
            "s64" => Ty::S64,
            "f16" => Ty::F16,
            "f16x2" => Ty::F16x2,
            "bf16" => Ty::BF16,
            "bf16x2" => Ty::BF16x2,
            "f32" => Ty::F32,
            "f64" => Ty::F64,
            _ => return None,
        })
    }

    pub fn bits(self) -> u32 {
        match self {
            Ty::Pred => 1,
            Ty::B8 | Ty::U8 | Ty::S8 => 8,
            Ty::B16 | Ty::U16 | Ty::S16 | Ty::F16 | Ty::BF16 => 16,
            Ty::B32 | Ty::U32 | Ty::S32 | Ty::F32 | Ty::F16x2 | Ty::BF16x2 => 32,
            Ty::B64 | Ty::U64 | Ty::S64 | Ty::F64 => 64,
            Ty::B128 => 128,
        }
    }

    /// Size in memory; predicates occupy no memory.
    pub fn bytes(self) -> usize {
        (self.bits() as usize).div_ceil(8)
    }

    pub fn is_signed(self) -> bool {
        matches!(self, Ty::S8 | Ty::S16 | Ty::S32 | Ty::S64)
    }

    pub fn is_float(self) -> bool {
        matches!(
            self,
            Ty::F16 | Ty::F16x2 | Ty::BF16 | Ty::BF16x2 | Ty::F32 | Ty::F64
        )
    }
}

/// Special (read-only) registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Tid(u8),
    Ntid(u8),
    Ctaid(u8),
    Nctaid(u8),
    LaneId,
    WarpId,
    NWarpId,
    SmId,
    NSmId,
    GridId,
    LaneMaskEq,
    LaneMaskLt,
    LaneMaskLe,
    LaneMaskGt,
    LaneMaskGe,
    Clock,
    Clock64,
    GlobalTimer,
    DynamicSmemSize,
    TotalSmemSize,
}

impl Special {
    pub fn parse(name: &str) -> Option<Special> {
        let (base, dim) = match name.rsplit_once('.') {
            Some((b, d @ ("x" | "y" | "z"))) => (b, Some(d.as_bytes()[0] - b'x')),
            _ => (name, None),
        };
        Some(match (base, dim) {
            ("%tid", Some(d)) => Special::Tid(d),
            ("%ntid", Some(d)) => Special::Ntid(d),
            ("%ctaid", Some(d)) => Special::Ctaid(d),
            ("%nctaid", Some(d)) => Special::Nctaid(d),
            ("%laneid", None) => Special::LaneId,
            ("%warpid", None) => Special::WarpId,
            ("%nwarpid", None) => Special::NWarpId,
            ("%smid", None) => Special::SmId,
            ("%nsmid", None) => Special::NSmId,
            ("%gridid", None) => Special::GridId,
            ("%lanemask_eq", None) => Special::LaneMaskEq,
            ("%lanemask_lt", None) => Special::LaneMaskLt,
            ("%lanemask_le", None) => Special::LaneMaskLe,
            ("%lanemask_gt", None) => Special::LaneMaskGt,
            ("%lanemask_ge", None) => Special::LaneMaskGe,
            ("%clock", None) => Special::Clock,
            ("%clock64", None) => Special::Clock64,
            ("%globaltimer", None) => Special::GlobalTimer,
            ("%dynamic_smem_size", None) => Special::DynamicSmemSize,
            ("%total_smem_size", None) => Special::TotalSmemSize,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Reg(u32),
    /// A negated predicate register (`!%p`).
    NotPred(u32),
    /// Raw bits of an immediate (floats already converted to their bit pattern).
    Imm(u64),
    Special(Special),
    /// `[base + offset]`; symbols are folded into `offset`.
    Addr {
        base: Option<u32>,
        offset: i64,
    },
    /// `{a, b, ...}`: vector loads/stores and bit packing; `None` is the `_` sink.
    Vector(Vec<Option<Box<Operand>>>),
    /// A branch target (instruction index) or called function, resolved at decode.
    Target(u32),
    Sink,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Generic,
    Global,
    Shared,
    Local,
    Param,
    Const,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rnd {
    /// No rounding modifier: the instruction's default (nearest even for floats, truncation for
    /// float-to-integer conversions).
    Default,
    Rn,
    Rz,
    Rm,
    Rp,
    /// Integer rounding of a float value (`.rni`, `.rzi`, `.rmi`, `.rpi`).
    Rni,
    Rzi,
    Rmi,
    Rpi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MulMode {
    Lo,
    Hi,
    Wide,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Lo,
    Ls,
    Hi,
    Hs,
    Equ,
    Neu,
    Ltu,
    Leu,
    Gtu,
    Geu,
    Num,
    Nan,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoolOp {
    And,
    Or,
    Xor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShflMode {
    Up,
    Down,
    Bfly,
    Idx,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoteMode {
    All,
    Any,
    Uni,
    Ballot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomOp {
    Add,
    Min,
    Max,
    Inc,
    Dec,
    And,
    Or,
    Xor,
    Exch,
    Cas,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestKind {
    Finite,
    Infinite,
    Number,
    NotANumber,
    Normal,
    Subnormal,
}

/// What an instruction does; its type and modifiers live in [`Instr`].
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    Mov,
    Ld {
        space: Space,
    },
    St {
        space: Space,
    },
    Cvta {
        to_generic: bool,
        space: Space,
    },
    Add,
    Sub,
    Mul(MulMode),
    Mad(MulMode),
    Fma,
    Div,
    Rem,
    Abs,
    Neg,
    Min,
    Max,
    And,
    Or,
    Xor,
    Not,
    CNot,
    Shl,
    Shr,
    Popc,
    Clz,
    Brev,
    Bfind {
        shift_amount: bool,
    },
    Bfe,
    Bfi,
    Prmt,
    Shf {
        left: bool,
        wrap: bool,
    },
    Lop3,
    Setp {
        cmp: Cmp,
        bool_op: Option<BoolOp>,
    },
    Set {
        cmp: Cmp,
        bool_op: Option<BoolOp>,
        src_ty: Ty,
    },
    Selp,
    Cvt {
        src_ty: Ty,
    },
    Rcp,
    Sqrt,
    Rsqrt,
    Ex2,
    Lg2,
    Sin,
    Cos,
    Tanh,
    Copysign,
    Testp(TestKind),
    Bra,
    Exit,
    Bar,
    BarWarp,
    Shfl(ShflMode),
    Vote(VoteMode),
    MatchAny,
    MatchAll,
    Activemask,
    Redux(AtomOp),
    Atom {
        space: Space,
        op: AtomOp,
    },
    Red {
        space: Space,
        op: AtomOp,
    },
    /// `cp.async` copies `size` bytes from global to shared; done synchronously here.
    CpAsync,
    /// `mma.sync.aligned` (row-major A, column-major B, f32 accumulators): a warp-collective
    /// 16x8 matrix multiply-accumulate.
    Mma(MmaKind),
    /// `ldmatrix.sync.aligned.m8n8.b16`: `matrices` (1, 2 or 4) 8x8 tiles of 16-bit elements from
    /// shared memory into the warp's registers, optionally transposed.
    Ldmatrix {
        space: Space,
        matrices: u8,
        trans: bool,
    },
    /// `cvt.rna.tf32.f32`: rounds to TF32 (10 mantissa bits, ties away from zero).
    CvtTf32,
    /// Device `printf` (a `vprintf` call): operands are the local slots holding the format string
    /// pointer and the argument buffer pointer.
    Printf,
    /// Fences, prefetches and `cp.async` group bookkeeping: no effect in a sequential memory model.
    Nop,
    Trap,
}

/// The `mma.sync` shapes and input types the VM executes; all take f32 accumulators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmaKind {
    /// `m16n8k8.row.col.f32.tf32.tf32.f32`
    Tf32M16n8k8,
    /// `m16n8k16.row.col.f32.f16.f16.f32`
    F16M16n8k16,
    /// `m16n8k16.row.col.f32.bf16.bf16.f32`
    Bf16M16n8k16,
}

impl MmaKind {
    /// The full opcode, as NVRTC and hand-written PTX spell it.
    pub fn from_opcode(opcode: &str) -> Option<MmaKind> {
        Some(match opcode {
            "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32" => MmaKind::Tf32M16n8k8,
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32" => MmaKind::F16M16n8k16,
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" => MmaKind::Bf16M16n8k16,
            _ => return None,
        })
    }

    /// The depth K of the product (M = 16 and N = 8 for every kind).
    pub fn k(self) -> usize {
        match self {
            MmaKind::Tf32M16n8k8 => 8,
            MmaKind::F16M16n8k16 | MmaKind::Bf16M16n8k16 => 16,
        }
    }

    /// The type of the A and B elements.
    pub fn input_ty(self) -> Ty {
        match self {
            MmaKind::Tf32M16n8k8 => Ty::F32,
            MmaKind::F16M16n8k16 => Ty::F16,
            MmaKind::Bf16M16n8k16 => Ty::BF16,
        }
    }
}

/// Registers per lane of D, A, B and C in every `mma.sync` kind the VM executes.
pub const MMA_FRAGMENT_REGISTERS: [usize; 4] = [4, 4, 2, 4];

/// Instruction classes the counters report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstrClass {
    Integer = 0,
    Fp32 = 1,
    Fp16 = 2,
    Fp64 = 3,
    Special = 4,
    Memory = 5,
    Control = 6,
    Other = 7,
}

pub const INSTR_CLASS_COUNT: usize = 8;
pub const INSTR_CLASS_NAMES: [&str; INSTR_CLASS_COUNT] = [
    "integer",
    "fp32",
    "fp16/bf16",
    "fp64",
    "special-function",
    "memory",
    "control",
    "move/convert",
];

#[derive(Debug, Clone)]
pub struct Instr {
    /// Guard predicate register and whether it is negated (`@!%p`).
    pub guard: Option<(u32, bool)>,
    pub op: Op,
    pub ty: Ty,
    pub rnd: Rnd,
    pub ftz: bool,
    pub sat: bool,
    /// Vector width of ld/st (1, 2, 4).
    pub vec: u8,
    pub dst: Operand,
    /// The second destination of `setp`/`shfl` (`%r|%p`).
    pub dst_pred: Option<u32>,
    pub src: Vec<Operand>,
    pub class: InstrClass,
    /// Floating-point operations per active lane.
    pub flops: u8,
    /// 1-based line in the PTX text, for error messages.
    pub line: u32,
    /// The instruction text, for error messages.
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    pub offset: usize,
    pub size: usize,
}

/// A kernel ready to run.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub name: String,
    pub params: Vec<Param>,
    pub param_bytes: usize,
    pub code: Vec<Instr>,
    pub reg_count: usize,
    /// Static shared memory (module- and kernel-level); dynamic shared memory starts after it.
    pub static_shared_bytes: usize,
    /// Alignment of the dynamic shared window (`.extern .shared`).
    pub dynamic_shared_align: usize,
    pub local_bytes: usize,
    /// `.reqntid`/`.maxntid`, when declared.
    pub max_threads: Option<u32>,
}

/// A module-level `.global` or `.const` variable: its size and initial bytes, placed in device
/// memory when the module is loaded.
#[derive(Debug, Clone)]
pub struct GlobalVar {
    pub name: String,
    pub size: usize,
    pub align: usize,
    pub init: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Module {
    pub target: String,
    pub kernels: Vec<Kernel>,
    pub kernel_index: HashMap<String, usize>,
    pub globals: Vec<GlobalVar>,
}
