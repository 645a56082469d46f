//! The primitive op codes every backend implements. Keeping them as data (not closures) lets a
//! CUDA backend map each one to a kernel: the kernel of `UnaryOp::Silu` on f32 data is
//! `silu_f32` (its gradient `silu_grad_f32`), named by `name()` and the dtype, in the file of its
//! family under `kernels/`.

/// Elementwise functions of one operand. Parameters are f64 and converted to the storage type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Abs,
    Square,
    Recip,
    Relu,
    LeakyRelu(f64),
    Sigmoid,
    Silu,
    Gelu,
    Tanh,
    /// `x * mul + add`.
    Affine {
        mul: f64,
        add: f64,
    },
    /// `x ^ exponent` for a scalar exponent.
    Powf(f64),
    Clamp {
        min: f64,
        max: f64,
    },
    /// `max(x, scalar)`
    MaxScalar(f64),
    /// `min(x, scalar)`
    MinScalar(f64),
    /// 1 where `x > 0`, else 0.
    Positive,
}

impl UnaryOp {
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Abs => "abs",
            UnaryOp::Square => "square",
            UnaryOp::Recip => "recip",
            UnaryOp::Relu => "relu",
            UnaryOp::LeakyRelu(_) => "leaky_relu",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Silu => "silu",
            UnaryOp::Gelu => "gelu",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Affine { .. } => "affine",
            UnaryOp::Powf(_) => "powf",
            UnaryOp::Clamp { .. } => "clamp",
            UnaryOp::MaxScalar(_) => "max_scalar",
            UnaryOp::MinScalar(_) => "min_scalar",
            UnaryOp::Positive => "positive",
        }
    }

    /// The op's scalar parameters as the kernels take them (`p0`, `p1`), zero where unused.
    pub fn params(self) -> (f64, f64) {
        match self {
            UnaryOp::LeakyRelu(s)
            | UnaryOp::Powf(s)
            | UnaryOp::MaxScalar(s)
            | UnaryOp::MinScalar(s) => (s, 0.0),
            UnaryOp::Affine { mul, add } => (mul, add),
            UnaryOp::Clamp { min, max } => (min, max),
            _ => (0.0, 0.0),
        }
    }

    /// One instance of every op code, with typical parameters: what tests loop over.
    pub const EXAMPLES: [UnaryOp; 19] = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Sqrt,
        UnaryOp::Abs,
        UnaryOp::Square,
        UnaryOp::Recip,
        UnaryOp::Relu,
        UnaryOp::LeakyRelu(0.1),
        UnaryOp::Sigmoid,
        UnaryOp::Silu,
        UnaryOp::Gelu,
        UnaryOp::Tanh,
        UnaryOp::Affine {
            mul: 1.5,
            add: -0.25,
        },
        UnaryOp::Powf(1.7),
        UnaryOp::Clamp {
            min: -0.5,
            max: 0.3,
        },
        UnaryOp::MaxScalar(0.2),
        UnaryOp::MinScalar(-0.1),
        UnaryOp::Positive,
    ];

    /// Whether the op is defined only for positive inputs (log, sqrt, fractional powers).
    pub fn needs_positive_input(self) -> bool {
        matches!(self, UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Powf(_))
    }
}

/// Elementwise functions of two operands of the same (already broadcast) shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
    /// 1 where equal, else 0.
    Equal,
}

impl BinaryOp {
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
            BinaryOp::Equal => "equal",
        }
    }

    pub const ALL: [BinaryOp; 7] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Maximum,
        BinaryOp::Minimum,
        BinaryOp::Equal,
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
    Min,
}

impl ReduceOp {
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
        }
    }

    pub const ALL: [ReduceOp; 3] = [ReduceOp::Sum, ReduceOp::Max, ReduceOp::Min];
}

/// One Adam or AdamW update with its scalars for this step (bias corrections included), as
/// `crate::optim::Adam` computes it: with decoupled decay `p *= 1 - lr wd`, else `g += wd p`;
/// `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
/// `p -= (lr / bias1) m / (sqrt(v / bias2) + eps)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub decoupled: bool,
    /// `1 - beta1^t` and `1 - beta2^t` at step t.
    pub bias1: f64,
    pub bias2: f64,
}
