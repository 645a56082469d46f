//! The interpreter: runs a kernel's pre-decoded instructions warp by warp.
//!
//! Scheduling: each warp issues the instruction at the lowest program counter among its runnable
//! lanes, for all lanes at that counter together. Divergent paths thus run one after the other and
//! lanes reconverge where their paths meet, and warp collectives (shuffle, vote) see the lanes that
//! arrive together. A warp runs until all its live lanes wait at a barrier or have exited; when every
//! warp of the block is there, the barrier opens. Blocks are independent and run on a rayon pool.

use rayon::prelude::*;

use super::arith::*;
use super::counters::{count_bank_conflicts, count_sectors, ideal_sectors, LaunchCounters};
use super::memory::{describe_nearest, GlobalView, LOCAL_WINDOW, SHARED_WINDOW, WINDOW_SIZE};
use super::program::*;
use super::racecheck::{RaceHazard, RaceShadow, MAX_KEPT_HAZARDS};
use super::tensor_core::{ldmatrix_register, mma, round_to_tf32, Tile, WARP};
use crate::error::{HeparError, Result};

pub struct LaunchEnv<'a> {
    pub kernel: &'a Kernel,
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub dynamic_shared_bytes: usize,
    pub global: &'a GlobalView,
    pub params: &'a [u8],
    pub racecheck: bool,
    /// Upper bound on warp-level instructions per block, so a kernel stuck in a loop ends with an error.
    pub max_warp_steps_per_block: u64,
}

/// What a whole launch produced besides memory contents.
#[derive(Debug, Clone, Default)]
pub struct GridOutcome {
    pub counters: LaunchCounters,
    /// Device printf output: (linear block index, text), in execution order within each block.
    pub printf: Vec<(u64, String)>,
    pub hazards: Vec<RaceHazard>,
    pub hazard_count: u64,
}

pub fn run_grid(env: &LaunchEnv) -> Result<GridOutcome> {
    let nblocks = env.grid.iter().map(|&g| g as u64).product::<u64>();
    let outcome = (0..nblocks)
        .into_par_iter()
        .try_fold(
            || BlockRunner::new(env),
            |mut runner, b| {
                runner.run_block(b)?;
                Ok::<_, HeparError>(runner)
            },
        )
        .map(|r| r.map(BlockRunner::into_outcome))
        .try_reduce(GridOutcome::default, |mut a, b| {
            a.counters.merge(&b.counters);
            a.hazard_count += b.hazard_count;
            a.printf.extend(b.printf);
            for h in b.hazards {
                if a.hazards.len() < MAX_KEPT_HAZARDS {
                    a.hazards.push(h);
                }
            }
            Ok(a)
        })?;
    Ok(outcome)
}

#[derive(Clone, Copy)]
struct WarpState {
    pcs: [u32; 32],
    live: u32,
    at_barrier: u32,
    /// `bar.warp.sync` count, for the race checker's intervals within a warp.
    warp_syncs: u64,
}

enum Flow {
    Next,
    Branch { taken: u32, target: u32 },
    Barrier,
    Exit(u32),
}

/// Where one lane's access lands.
enum Place {
    Global(*mut u8),
    Shared(usize),
    Local(usize),
    Param(usize),
}

struct BlockRunner<'a> {
    env: &'a LaunchEnv<'a>,
    nthreads: usize,
    nregs: usize,
    regs: Vec<u64>,
    warps: Vec<WarpState>,
    shared: Vec<u8>,
    local: Vec<u8>,
    race: Option<RaceShadow>,
    barriers_passed: u64,
    block_idx: [u32; 3],
    counters: LaunchCounters,
    hazards: Vec<RaceHazard>,
    hazard_count: u64,
    printf: Vec<(u64, String)>,
    linear_block: u64,
    region_hint: usize,
    steps: u64,
}

fn vm_error(msg: String) -> HeparError {
    HeparError::Backend {
        backend: "ptx-vm",
        msg,
    }
}

impl<'a> BlockRunner<'a> {
    fn new(env: &'a LaunchEnv<'a>) -> Self {
        let k = env.kernel;
        let nthreads = env.block.iter().map(|&b| b as usize).product::<usize>();
        let nwarps = nthreads.div_ceil(32);
        let shared_bytes = shared_size(env);
        BlockRunner {
            env,
            nthreads,
            nregs: k.reg_count,
            regs: vec![0; nwarps * k.reg_count * 32],
            warps: vec![
                WarpState {
                    pcs: [0; 32],
                    live: 0,
                    at_barrier: 0,
                    warp_syncs: 0
                };
                nwarps
            ],
            shared: vec![0; shared_bytes],
            local: vec![0; k.local_bytes * nthreads],
            race: env.racecheck.then(|| RaceShadow::new(shared_bytes)),
            barriers_passed: 0,
            block_idx: [0; 3],
            counters: LaunchCounters::default(),
            hazards: Vec::new(),
            hazard_count: 0,
            printf: Vec::new(),
            linear_block: 0,
            region_hint: 0,
            steps: 0,
        }
    }

    fn into_outcome(self) -> GridOutcome {
        GridOutcome {
            counters: self.counters,
            hazards: self.hazards,
            hazard_count: self.hazard_count,
            printf: self.printf,
        }
    }

    fn run_block(&mut self, linear: u64) -> Result<()> {
        let g = self.env.grid;
        self.linear_block = linear;
        self.block_idx = [
            (linear % g[0] as u64) as u32,
            ((linear / g[0] as u64) % g[1] as u64) as u32,
            (linear / (g[0] as u64 * g[1] as u64)) as u32,
        ];
        // Fresh state: registers and shared memory start as zero (undefined on a GPU).
        self.regs.fill(0);
        self.shared.fill(0);
        self.local.fill(0);
        if let Some(r) = &mut self.race {
            r.reset(self.shared.len());
        }
        self.barriers_passed = 0;
        self.steps = 0;
        for (w, warp) in self.warps.iter_mut().enumerate() {
            let lanes = (self.nthreads - w * 32).min(32);
            warp.live = if lanes == 32 {
                u32::MAX
            } else {
                (1u32 << lanes) - 1
            };
            warp.pcs = [0; 32];
            warp.at_barrier = 0;
            warp.warp_syncs = 0;
        }
        loop {
            for w in 0..self.warps.len() {
                self.run_warp(w)?;
            }
            if self.warps.iter().all(|w| w.live == 0) {
                return Ok(());
            }
            // Every live lane waits at a barrier: open it.
            for warp in &mut self.warps {
                for lane in 0..32 {
                    if warp.at_barrier >> lane & 1 == 1 {
                        warp.pcs[lane] += 1;
                    }
                }
                warp.at_barrier = 0;
            }
            self.barriers_passed += 1;
        }
    }

    fn run_warp(&mut self, w: usize) -> Result<()> {
        let code = &self.env.kernel.code;
        loop {
            let warp = &self.warps[w];
            let runnable = warp.live & !warp.at_barrier;
            if runnable == 0 {
                return Ok(());
            }
            let mut pc = u32::MAX;
            for lane in 0..32 {
                if runnable >> lane & 1 == 1 {
                    pc = pc.min(warp.pcs[lane]);
                }
            }
            let mut group = 0u32;
            let mut others_min = u32::MAX;
            for lane in 0..32 {
                if runnable >> lane & 1 == 1 {
                    if warp.pcs[lane] == pc {
                        group |= 1 << lane;
                    } else {
                        others_min = others_min.min(warp.pcs[lane]);
                    }
                }
            }
            // Run the group while it stays the lowest counter and does not split.
            loop {
                let Some(instr) = code.get(pc as usize) else {
                    return Err(vm_error(format!(
                        "kernel `{}`: fell off the end of the code",
                        self.env.kernel.name
                    )));
                };
                self.steps += 1;
                if self.steps > self.env.max_warp_steps_per_block {
                    return Err(vm_error(format!(
                        "kernel `{}`: block {:?} exceeded {} warp instructions (endless loop?)",
                        self.env.kernel.name, self.block_idx, self.env.max_warp_steps_per_block
                    )));
                }
                let active = self.guard_mask(w, instr, group);
                let flow = if active == 0 && !matches!(instr.op, Op::Bar) {
                    Flow::Next
                } else {
                    self.count(instr, active);
                    self.step(w, instr, active)?
                };
                let warp = &mut self.warps[w];
                match flow {
                    Flow::Next => pc += 1,
                    Flow::Branch { taken, target } => {
                        if taken == group {
                            pc = target;
                        } else if taken != 0 {
                            for lane in 0..32 {
                                if group >> lane & 1 == 1 {
                                    warp.pcs[lane] = if taken >> lane & 1 == 1 {
                                        target
                                    } else {
                                        pc + 1
                                    };
                                }
                            }
                            break;
                        } else {
                            pc += 1;
                        }
                    }
                    Flow::Barrier => {
                        for lane in 0..32 {
                            if group >> lane & 1 == 1 {
                                warp.pcs[lane] = pc;
                            }
                        }
                        warp.at_barrier |= group;
                        break;
                    }
                    Flow::Exit(exited) => {
                        warp.live &= !exited;
                        group &= !exited;
                        if group == 0 {
                            break;
                        }
                        pc += 1;
                    }
                }
                if pc >= others_min {
                    for lane in 0..32 {
                        if group >> lane & 1 == 1 {
                            warp.pcs[lane] = pc;
                        }
                    }
                    break;
                }
            }
        }
    }

    #[inline]
    fn reg(&self, w: usize, r: u32, lane: usize) -> u64 {
        self.regs[(w * self.nregs + r as usize) * 32 + lane]
    }

    #[inline]
    fn set_reg(&mut self, w: usize, r: u32, lane: usize, v: u64) {
        self.regs[(w * self.nregs + r as usize) * 32 + lane] = v;
    }

    fn guard_mask(&self, w: usize, instr: &Instr, group: u32) -> u32 {
        match instr.guard {
            None => group,
            Some((p, negate)) => {
                let mut m = 0;
                for lane in lanes(group) {
                    if (self.reg(w, p, lane) != 0) != negate {
                        m |= 1 << lane;
                    }
                }
                m
            }
        }
    }

    fn count(&mut self, instr: &Instr, active: u32) {
        let n = u64::from(active.count_ones());
        let c = &mut self.counters;
        c.warp_instructions[instr.class as usize] += 1;
        c.thread_instructions[instr.class as usize] += n;
        if instr.flops != 0 {
            let f = n * u64::from(instr.flops);
            match instr.ty {
                Ty::F64 => c.fp64_flops += f,
                Ty::F32 => c.fp32_flops += f,
                _ => c.fp16_flops += f,
            }
        }
    }

    fn thread_index(&self, w: usize, lane: usize) -> [u32; 3] {
        let t = (w * 32 + lane) as u32;
        let b = self.env.block;
        [t % b[0], (t / b[0]) % b[1], t / (b[0] * b[1])]
    }

    fn special(&self, w: usize, lane: usize, s: Special) -> u64 {
        let lane_bit = 1u64 << lane;
        match s {
            Special::Tid(d) => u64::from(self.thread_index(w, lane)[d as usize]),
            Special::Ntid(d) => u64::from(self.env.block[d as usize]),
            Special::Ctaid(d) => u64::from(self.block_idx[d as usize]),
            Special::Nctaid(d) => u64::from(self.env.grid[d as usize]),
            Special::LaneId => lane as u64,
            Special::WarpId => w as u64,
            Special::NWarpId => 64,
            Special::SmId | Special::GridId => 0,
            Special::NSmId => 1,
            Special::LaneMaskEq => lane_bit,
            Special::LaneMaskLt => lane_bit - 1,
            Special::LaneMaskLe => (lane_bit << 1).wrapping_sub(1) & 0xffff_ffff,
            Special::LaneMaskGt => !((lane_bit << 1).wrapping_sub(1)) & 0xffff_ffff,
            Special::LaneMaskGe => !(lane_bit - 1) & 0xffff_ffff,
            Special::Clock | Special::Clock64 => self.steps,
            Special::GlobalTimer => self.steps * 1000,
            Special::DynamicSmemSize => self.env.dynamic_shared_bytes as u64,
            Special::TotalSmemSize => self.shared.len() as u64,
        }
    }

    #[inline(always)]
    fn val(&self, w: usize, lane: usize, op: &Operand) -> u64 {
        match op {
            Operand::Reg(r) => self.reg(w, *r, lane),
            Operand::Imm(v) => *v,
            Operand::NotPred(r) => u64::from(self.reg(w, *r, lane) == 0),
            Operand::Special(s) => self.special(w, lane, *s),
            Operand::Addr { base, offset } => base
                .map_or(0, |r| self.reg(w, r, lane))
                .wrapping_add(*offset as u64),
            Operand::Target(t) => u64::from(*t),
            Operand::Vector(_) | Operand::Sink => 0,
        }
    }

    #[inline(always)]
    fn src(&self, w: usize, lane: usize, instr: &Instr, i: usize) -> u64 {
        match instr.src.get(i) {
            Some(op) => self.val(w, lane, op),
            None => 0,
        }
    }

    fn write(&mut self, w: usize, lane: usize, dst: &Operand, v: u64) {
        if let Operand::Reg(r) = dst {
            self.set_reg(w, *r, lane, v);
        }
    }

    /// Warp-synchronous instructions name their lanes in a member mask: every live lane of the mask
    /// must execute the instruction together (synccheck's rule). The scheduler converges lanes at
    /// the lowest program counter, so a lane elsewhere means divergent code the result would
    /// silently depend on: an error.
    fn check_member_mask(&self, w: usize, instr: &Instr, active: u32) -> Result<()> {
        let mask_index = match instr.op {
            Op::Shfl(_) => 3,
            Op::Vote(_) | Op::MatchAny | Op::MatchAll | Op::Redux(_) => 1,
            Op::BarWarp => 0,
            _ => return Ok(()),
        };
        let Some(mask_op) = instr.src.get(mask_index) else {
            return Ok(());
        };
        let member = self.val(w, active.trailing_zeros() as usize, mask_op) as u32;
        let missing = member & self.warps[w].live & !active;
        if missing != 0 {
            return Err(self.instr_error(
                instr,
                &format!(
                    "warp-synchronous instruction with member mask {member:#010x} executed by lanes {active:#010x}; \
                     lanes {missing:#010x} of warp {w} are elsewhere (divergent warp)"
                ),
            ));
        }
        Ok(())
    }

    fn step(&mut self, w: usize, instr: &Instr, active: u32) -> Result<Flow> {
        let ty = instr.ty;
        self.check_member_mask(w, instr, active)?;
        match &instr.op {
            Op::Mov => {
                for lane in lanes(active) {
                    self.exec_mov(w, lane, instr);
                }
            }
            Op::Ld { space } => self.exec_ld(w, instr, active, *space)?,
            Op::St { space } => self.exec_st(w, instr, active, *space)?,
            Op::Atom { space, op } | Op::Red { space, op } => {
                self.exec_atom(w, instr, active, *space, *op)?
            }
            Op::CpAsync => self.exec_cp_async(w, instr, active)?,
            Op::Mma(kind) => self.exec_mma(w, instr, active, *kind)?,
            Op::Ldmatrix {
                space,
                matrices,
                trans,
            } => self.exec_ldmatrix(w, instr, active, *space, *matrices, *trans)?,
            Op::Printf => self.exec_printf(w, instr, active)?,
            Op::Cvta { to_generic, space } => {
                let window = match space {
                    Space::Shared => SHARED_WINDOW,
                    Space::Local => LOCAL_WINDOW,
                    _ => 0,
                };
                for lane in lanes(active) {
                    let a = self.src(w, lane, instr, 0);
                    let v = if *to_generic {
                        a.wrapping_add(window)
                    } else {
                        a.wrapping_sub(window)
                    };
                    self.write(w, lane, &instr.dst, as_u(ty, v));
                }
            }
            Op::Bra => {
                let target = match instr.src.first() {
                    Some(Operand::Target(t)) => *t,
                    _ => return Err(self.instr_error(instr, "branch without target")),
                };
                return Ok(Flow::Branch {
                    taken: active,
                    target,
                });
            }
            Op::Exit => return Ok(Flow::Exit(active)),
            Op::Bar => return Ok(Flow::Barrier),
            Op::BarWarp => self.warps[w].warp_syncs += 1,
            Op::Nop => {}
            Op::Trap => {
                return Err(self.instr_error(
                    instr,
                    "the kernel executed `trap` (a device-side assert failed or __trap was called)",
                ))
            }
            Op::Shfl(mode) => self.exec_shfl(w, instr, active, *mode),
            Op::Vote(mode) => {
                let mut ballot = 0u32;
                for lane in lanes(active) {
                    if self.src(w, lane, instr, 0) != 0 {
                        ballot |= 1 << lane;
                    }
                }
                let value = match mode {
                    VoteMode::Ballot => u64::from(ballot),
                    VoteMode::All => u64::from(ballot == active),
                    VoteMode::Any => u64::from(ballot != 0),
                    VoteMode::Uni => u64::from(ballot == active || ballot == 0),
                };
                for lane in lanes(active) {
                    self.write(w, lane, &instr.dst, value);
                }
            }
            Op::MatchAny | Op::MatchAll => {
                let mut values = [0u64; 32];
                for lane in lanes(active) {
                    values[lane] = as_u(ty, self.src(w, lane, instr, 0));
                }
                let all_equal =
                    lanes(active).all(|l| values[l] == values[active.trailing_zeros() as usize]);
                for lane in lanes(active) {
                    let m = if instr.op == Op::MatchAll {
                        if all_equal {
                            active
                        } else {
                            0
                        }
                    } else {
                        lanes(active)
                            .filter(|&l| values[l] == values[lane])
                            .fold(0u32, |m, l| m | 1 << l)
                    };
                    self.write(w, lane, &instr.dst, u64::from(m));
                    if let Some(p) = instr.dst_pred {
                        self.set_reg(w, p, lane, u64::from(all_equal));
                    }
                }
            }
            Op::Activemask => {
                for lane in lanes(active) {
                    self.write(w, lane, &instr.dst, u64::from(active));
                }
            }
            Op::Redux(op) => {
                let first = active.trailing_zeros() as usize;
                let mut acc = as_u(ty, self.src(w, first, instr, 0));
                for lane in lanes(active).skip(1) {
                    let v = self.src(w, lane, instr, 0);
                    acc = atomic_update(*op, ty, acc, v, 0);
                }
                for lane in lanes(active) {
                    self.write(w, lane, &instr.dst, acc);
                }
            }
            _ => {
                if !self.fast_alu(w, instr, active) {
                    for lane in lanes(active) {
                        self.exec_alu(w, lane, instr)?;
                    }
                }
            }
        }
        Ok(Flow::Next)
    }

    /// Applies `f` to the first two sources of every active lane, writing the register destination.
    #[inline(always)]
    fn map2(&mut self, w: usize, instr: &Instr, active: u32, f: impl Fn(u64, u64) -> u64) {
        let Operand::Reg(d) = instr.dst else { return };
        let (sa, sb) = (&instr.src[0], &instr.src[1]);
        for lane in lanes(active) {
            let v = f(self.val(w, lane, sa), self.val(w, lane, sb));
            self.set_reg(w, d, lane, v);
        }
    }

    #[inline(always)]
    fn map3(&mut self, w: usize, instr: &Instr, active: u32, f: impl Fn(u64, u64, u64) -> u64) {
        let Operand::Reg(d) = instr.dst else { return };
        let (sa, sb, sc) = (&instr.src[0], &instr.src[1], &instr.src[2]);
        for lane in lanes(active) {
            let v = f(
                self.val(w, lane, sa),
                self.val(w, lane, sb),
                self.val(w, lane, sc),
            );
            self.set_reg(w, d, lane, v);
        }
    }

    /// The instructions that dominate typical kernels, with the lane loop inside one match arm.
    /// Returns false for anything else (handled lane by lane by `exec_alu`).
    fn fast_alu(&mut self, w: usize, instr: &Instr, active: u32) -> bool {
        let ty = instr.ty;
        let plain_f32 = ty == Ty::F32
            && matches!(instr.rnd, Rnd::Default | Rnd::Rn)
            && !instr.ftz
            && !instr.sat;
        let f = |v: u64| f32::from_bits(v as u32);
        let bits = |x: f32| u64::from(x.to_bits());
        match (&instr.op, ty) {
            (Op::Add, Ty::F32) if plain_f32 => {
                self.map2(w, instr, active, |a, b| bits(f(a) + f(b)))
            }
            (Op::Sub, Ty::F32) if plain_f32 => {
                self.map2(w, instr, active, |a, b| bits(f(a) - f(b)))
            }
            (Op::Mul(_), Ty::F32) if plain_f32 => {
                self.map2(w, instr, active, |a, b| bits(f(a) * f(b)))
            }
            (Op::Fma | Op::Mad(_), Ty::F32) if plain_f32 => {
                self.map3(w, instr, active, |a, b, c| bits(f(a).mul_add(f(b), f(c))))
            }
            (Op::Add, Ty::S32 | Ty::U32 | Ty::B32) if !instr.sat => {
                self.map2(w, instr, active, |a, b| (a.wrapping_add(b)) & 0xffff_ffff)
            }
            (Op::Add, Ty::S64 | Ty::U64 | Ty::B64) => {
                self.map2(w, instr, active, u64::wrapping_add)
            }
            (Op::Sub, Ty::S32 | Ty::U32 | Ty::B32) if !instr.sat => {
                self.map2(w, instr, active, |a, b| (a.wrapping_sub(b)) & 0xffff_ffff)
            }
            (Op::Mul(MulMode::Lo), Ty::S32 | Ty::U32) => {
                self.map2(w, instr, active, |a, b| (a.wrapping_mul(b)) & 0xffff_ffff)
            }
            (Op::Mul(MulMode::Wide), Ty::S32) => self.map2(w, instr, active, |a, b| {
                (i64::from(a as i32) * i64::from(b as i32)) as u64
            }),
            (Op::Mul(MulMode::Wide), Ty::U32) => self.map2(w, instr, active, |a, b| {
                (a & 0xffff_ffff) * (b & 0xffff_ffff)
            }),
            (Op::Mad(MulMode::Lo), Ty::S32 | Ty::U32) => self.map3(w, instr, active, |a, b, c| {
                a.wrapping_mul(b).wrapping_add(c) & 0xffff_ffff
            }),
            (Op::And, Ty::B32 | Ty::B64 | Ty::Pred) => {
                self.map2(w, instr, active, |a, b| as_u(ty, a & b))
            }
            (Op::Or, Ty::B32 | Ty::B64 | Ty::Pred) => {
                self.map2(w, instr, active, |a, b| as_u(ty, a | b))
            }
            (Op::Shl, Ty::B32) => self.map2(w, instr, active, |a, b| {
                let n = b & 0xffff_ffff;
                if n >= 32 {
                    0
                } else {
                    (a << n) & 0xffff_ffff
                }
            }),
            (Op::Shl, Ty::B64) => self.map2(w, instr, active, |a, b| {
                let n = b & 0xffff_ffff;
                if n >= 64 {
                    0
                } else {
                    a << n
                }
            }),
            (Op::Setp { cmp, bool_op: None }, Ty::S32 | Ty::U32 | Ty::F32)
                if instr.dst_pred.is_none() && !instr.ftz =>
            {
                let cmp = *cmp;
                self.map2(w, instr, active, |a, b| u64::from(compare(ty, cmp, a, b)))
            }
            (Op::Selp, _) => self.map3(w, instr, active, |a, b, p| {
                as_u(ty, if p != 0 { a } else { b })
            }),
            _ => return false,
        }
        true
    }

    fn exec_mov(&mut self, w: usize, lane: usize, instr: &Instr) {
        let bits = instr.ty.bits();
        match (&instr.dst, instr.src.first()) {
            (Operand::Vector(elems), Some(src)) => {
                // Unpack: the first element receives the lowest bits.
                let v = self.val(w, lane, src);
                let width = bits / elems.len() as u32;
                for (i, e) in elems.iter().enumerate() {
                    if let Some(e) = e {
                        self.write(w, lane, e, (v >> (width * i as u32)) & mask(width));
                    }
                }
            }
            (dst, Some(Operand::Vector(elems))) => {
                let width = bits / elems.len() as u32;
                let mut v = 0u64;
                for (i, e) in elems.iter().enumerate() {
                    if let Some(e) = e {
                        v |= (self.val(w, lane, e) & mask(width)) << (width * i as u32);
                    }
                }
                self.write(w, lane, dst, v);
            }
            (dst, Some(src)) => {
                let v = self.val(w, lane, src);
                self.write(w, lane, dst, as_u(instr.ty, v));
            }
            _ => {}
        }
    }

    fn exec_alu(&mut self, w: usize, lane: usize, instr: &Instr) -> Result<()> {
        let ty = instr.ty;
        let a = self.src(w, lane, instr, 0);
        let b = self.src(w, lane, instr, 1);
        let float = ty.is_float();
        let (rnd, ftz, sat) = (instr.rnd, instr.ftz, instr.sat);
        // The common fp32 cases without modifiers skip the general float paths.
        if ty == Ty::F32 && matches!(rnd, Rnd::Default | Rnd::Rn) && !ftz && !sat {
            let (x, y) = (f32::from_bits(a as u32), f32::from_bits(b as u32));
            let fast = match instr.op {
                Op::Add => Some(x + y),
                Op::Sub => Some(x - y),
                Op::Mul(_) => Some(x * y),
                Op::Fma | Op::Mad(_) => {
                    Some(x.mul_add(y, f32::from_bits(self.src(w, lane, instr, 2) as u32)))
                }
                _ => None,
            };
            if let Some(r) = fast {
                self.write(w, lane, &instr.dst, u64::from(r.to_bits()));
                return Ok(());
            }
        }
        let v = match &instr.op {
            Op::Add if float => float_binary(ty, rnd, ftz, sat, a, b, |x, y| x + y, |x, y| x + y),
            Op::Sub if float => float_binary(ty, rnd, ftz, sat, a, b, |x, y| x - y, |x, y| x - y),
            Op::Mul(_) if float => {
                float_binary(ty, rnd, ftz, sat, a, b, |x, y| x * y, |x, y| x * y)
            }
            Op::Div if float => float_binary(ty, rnd, ftz, sat, a, b, |x, y| x / y, |x, y| x / y),
            Op::Fma | Op::Mad(_) if float => {
                float_fma(ty, rnd, ftz, sat, a, b, self.src(w, lane, instr, 2))
            }
            Op::Add if sat && ty == Ty::S32 => {
                (as_s(ty, a) as i32).saturating_add(as_s(ty, b) as i32) as u32 as u64
            }
            Op::Sub if sat && ty == Ty::S32 => {
                (as_s(ty, a) as i32).saturating_sub(as_s(ty, b) as i32) as u32 as u64
            }
            Op::Add => as_u(ty, a.wrapping_add(b)),
            Op::Sub => as_u(ty, a.wrapping_sub(b)),
            Op::Mul(mode) => int_mul(ty, a, b, *mode),
            Op::Mad(mode) => {
                let c = self.src(w, lane, instr, 2);
                let width = if *mode == MulMode::Wide {
                    2 * ty.bits()
                } else {
                    ty.bits()
                };
                int_mul(ty, a, b, *mode).wrapping_add(c) & mask(width)
            }
            Op::Div => int_div(ty, a, b, false),
            Op::Rem => int_div(ty, a, b, true),
            Op::Abs if float => float_sign_op(ty, ftz, a, false),
            Op::Neg if float => float_sign_op(ty, ftz, a, true),
            Op::Abs => as_u(ty, as_s(ty, a).wrapping_abs() as u64),
            Op::Neg => as_u(ty, (as_s(ty, a)).wrapping_neg() as u64),
            Op::Min if float => float_min_max(ty, a, b, false),
            Op::Max if float => float_min_max(ty, a, b, true),
            Op::Min => as_u(ty, int_min_max(ty, a, b, false)),
            Op::Max => as_u(ty, int_min_max(ty, a, b, true)),
            Op::And => as_u(ty, a & b),
            Op::Or => as_u(ty, a | b),
            Op::Xor => as_u(ty, a ^ b),
            Op::Not if ty == Ty::Pred => u64::from(a == 0),
            Op::Not => as_u(ty, !a),
            Op::CNot => u64::from(as_u(ty, a) == 0),
            Op::Shl => {
                let n = b & 0xffff_ffff;
                if n >= u64::from(ty.bits()) {
                    0
                } else {
                    as_u(ty, a << n)
                }
            }
            Op::Shr => {
                let n =
                    (b & 0xffff_ffff).min(u64::from(ty.bits()) - 1 + u64::from(!ty.is_signed()));
                if ty.is_signed() {
                    as_u(ty, (as_s(ty, a) >> n.min(63)) as u64)
                } else if n >= u64::from(ty.bits()) {
                    0
                } else {
                    as_u(ty, a) >> n
                }
            }
            Op::Popc => u64::from(as_u(ty, a).count_ones()),
            Op::Clz => u64::from(as_u(ty, a).leading_zeros() - (64 - ty.bits())),
            Op::Brev => as_u(ty, a).reverse_bits() >> (64 - ty.bits()),
            Op::Bfind { shift_amount } => {
                let bits = ty.bits();
                let v = if ty.is_signed() && as_s(ty, a) < 0 {
                    !a & mask(bits)
                } else {
                    as_u(ty, a)
                };
                if v == 0 {
                    0xffff_ffff
                } else {
                    let pos = 63 - u64::from(v.leading_zeros());
                    if *shift_amount {
                        u64::from(bits) - 1 - pos
                    } else {
                        pos
                    }
                }
            }
            Op::Bfe => {
                let bits = u64::from(ty.bits());
                let pos = b & 0xff;
                let len = self.src(w, lane, instr, 2) & 0xff;
                let raw = as_u(ty, a);
                let field = if pos >= bits { 0 } else { raw >> pos };
                let len_eff = len.min(bits);
                let mut v = field & mask(len_eff as u32);
                if ty.is_signed() && len_eff > 0 {
                    let sign_pos = (pos + len_eff - 1).min(bits - 1);
                    if raw >> sign_pos & 1 == 1 {
                        v |= !mask(len_eff as u32);
                    }
                }
                as_u(ty, v)
            }
            Op::Bfi => {
                let bits = u64::from(ty.bits());
                let pos = self.src(w, lane, instr, 2) & 0xff;
                let len = self.src(w, lane, instr, 3) & 0xff;
                if pos >= bits || len == 0 {
                    as_u(ty, b)
                } else {
                    let m = mask(len.min(bits) as u32) << pos;
                    as_u(ty, (b & !m) | ((a << pos) & m))
                }
            }
            Op::Prmt => permute_bytes(a, b, self.src(w, lane, instr, 2)),
            Op::Shf { left, wrap } => {
                let c = self.src(w, lane, instr, 2) & 0xffff_ffff;
                let n = if *wrap { c & 31 } else { c.min(32) };
                let joined = (a & 0xffff_ffff) | ((b & 0xffff_ffff) << 32);
                if *left {
                    ((joined << n) >> 32) & 0xffff_ffff
                } else {
                    (joined >> n) & 0xffff_ffff
                }
            }
            Op::Lop3 => lop3(
                a,
                b,
                self.src(w, lane, instr, 2),
                self.src(w, lane, instr, 3),
            ),
            Op::Setp { cmp, bool_op } => {
                let c = instr.src.get(2).map(|op| self.val(w, lane, op) != 0);
                let combine = |x: bool| match (bool_op, c) {
                    (Some(BoolOp::And), Some(c)) => x && c,
                    (Some(BoolOp::Or), Some(c)) => x || c,
                    (Some(BoolOp::Xor), Some(c)) => x ^ c,
                    _ => x,
                };
                // Packed halves: the low half's result goes to p, the high half's to q.
                let (p, q) = if let Some(scalar) = packed_half_scalar(ty) {
                    let lo = compare(scalar, *cmp, a & 0xffff, b & 0xffff);
                    let hi = compare(scalar, *cmp, (a >> 16) & 0xffff, (b >> 16) & 0xffff);
                    (combine(lo), combine(hi))
                } else {
                    let t = compare(ty, *cmp, a, b);
                    (combine(t), combine(!t))
                };
                if let Some(qr) = instr.dst_pred {
                    self.set_reg(w, qr, lane, u64::from(q));
                }
                u64::from(p)
            }
            Op::Set {
                cmp,
                bool_op,
                src_ty,
            } => {
                let c = instr.src.get(2).map(|op| self.val(w, lane, op) != 0);
                let combine = |t: bool| match (bool_op, c) {
                    (Some(BoolOp::And), Some(c)) => t && c,
                    (Some(BoolOp::Or), Some(c)) => t || c,
                    (Some(BoolOp::Xor), Some(c)) => t ^ c,
                    _ => t,
                };
                if let Some(scalar) = packed_half_scalar(*src_ty) {
                    let lo = combine(compare(scalar, *cmp, a & 0xffff, b & 0xffff));
                    let hi = combine(compare(
                        scalar,
                        *cmp,
                        (a >> 16) & 0xffff,
                        (b >> 16) & 0xffff,
                    ));
                    let one = match ty {
                        Ty::F16x2 => 0x3c00,
                        Ty::BF16x2 => 0x3f80,
                        _ => 0xffff,
                    };
                    let v = if lo { one } else { 0 } | if hi { one << 16 } else { 0 };
                    self.write(w, lane, &instr.dst, v);
                    return Ok(());
                }
                let t = combine(compare(*src_ty, *cmp, a, b));
                // A float destination receives 1.0 or 0.0; an integer one all ones or zero.
                if !t {
                    0
                } else if ty == Ty::F32 {
                    u64::from(1.0f32.to_bits())
                } else if ty == Ty::F16 {
                    0x3c00
                } else if ty == Ty::BF16 {
                    0x3f80
                } else if t {
                    mask(ty.bits())
                } else {
                    0
                }
            }
            Op::Selp => {
                if self.src(w, lane, instr, 2) != 0 {
                    as_u(ty, a)
                } else {
                    as_u(ty, b)
                }
            }
            Op::Cvt { src_ty } => {
                if matches!(ty, Ty::F16x2 | Ty::BF16x2) {
                    // Two f32 sources: the first goes to the upper half.
                    let scalar = if ty == Ty::F16x2 { Ty::F16 } else { Ty::BF16 };
                    let hi = round_to_16(float_value(*src_ty, a), scalar, rnd, sat);
                    let lo = round_to_16(float_value(*src_ty, b), scalar, rnd, sat);
                    u64::from(lo) | u64::from(hi) << 16
                } else if matches!(ty, Ty::F16 | Ty::BF16) && src_ty.is_float() {
                    u64::from(round_to_16(float_value(*src_ty, a), ty, rnd, sat))
                } else {
                    convert(ty, *src_ty, rnd, sat, ftz, a)
                }
            }
            Op::Rcp => float_unary(ty, rnd, ftz, a, |x| 1.0 / x),
            Op::Sqrt => float_unary(ty, rnd, ftz, a, f64::sqrt),
            Op::Rsqrt => float_unary(ty, rnd, ftz, a, |x| 1.0 / x.sqrt()),
            Op::Ex2 => float_unary(ty, rnd, ftz, a, f64::exp2),
            Op::Lg2 => float_unary(ty, rnd, ftz, a, f64::log2),
            Op::Sin => float_unary(ty, rnd, ftz, a, f64::sin),
            Op::Cos => float_unary(ty, rnd, ftz, a, f64::cos),
            Op::Tanh => float_unary(ty, rnd, ftz, a, f64::tanh),
            Op::Copysign => {
                let sign_bit = if ty == Ty::F64 {
                    1u64 << 63
                } else {
                    1u64 << 31
                };
                (b & !sign_bit) | (a & sign_bit)
            }
            Op::Testp(kind) => u64::from(test_float(ty, *kind, a)),
            Op::CvtTf32 => u64::from(round_to_tf32(a as u32)),
            _ => return Err(self.instr_error(instr, "instruction not executable here")),
        };
        self.write(w, lane, &instr.dst, v);
        Ok(())
    }

    fn exec_shfl(&mut self, w: usize, instr: &Instr, active: u32, mode: ShflMode) {
        let mut values = [0u64; 32];
        // Lanes not taking part still supply their register (its value is undefined on a GPU).
        let sources = self.warps[w].live | active;
        for lane in lanes(sources) {
            values[lane] = self.src(w, lane, instr, 0);
        }
        for lane in lanes(active) {
            let b = (self.src(w, lane, instr, 1) & 31) as i64;
            let c = self.src(w, lane, instr, 2);
            let clamp = (c & 31) as i64;
            let segmask = ((c >> 8) & 31) as i64;
            let l = lane as i64;
            let max_lane = (l & segmask) | (clamp & !segmask);
            let min_lane = l & segmask;
            let (j, in_range) = match mode {
                ShflMode::Up => (l - b, l - b >= max_lane),
                ShflMode::Down => (l + b, l + b <= max_lane),
                ShflMode::Bfly => (l ^ b, (l ^ b) <= max_lane),
                ShflMode::Idx => (
                    min_lane | (b & !segmask),
                    (min_lane | (b & !segmask)) <= max_lane,
                ),
            };
            let j = if in_range { j } else { l };
            let v = values[(j & 31) as usize];
            self.write(w, lane, &instr.dst, v & 0xffff_ffff);
            if let Some(p) = instr.dst_pred {
                self.set_reg(w, p, lane, u64::from(in_range));
            }
        }
    }

    fn instr_error(&self, instr: &Instr, msg: &str) -> HeparError {
        vm_error(format!(
            "kernel `{}`, block ({}, {}, {}), PTX line {} `{}`: {msg}",
            self.env.kernel.name,
            self.block_idx[0],
            self.block_idx[1],
            self.block_idx[2],
            instr.line,
            instr.text
        ))
    }

    /// Resolves one lane's access, checking bounds and alignment (memcheck).
    #[allow(clippy::too_many_arguments)]
    fn place(
        &mut self,
        w: usize,
        lane: usize,
        instr: &Instr,
        space: Space,
        addr: u64,
        size: usize,
        write: bool,
    ) -> Result<Place> {
        let (space, addr) = match space {
            Space::Generic if (SHARED_WINDOW..SHARED_WINDOW + WINDOW_SIZE).contains(&addr) => {
                (Space::Shared, addr - SHARED_WINDOW)
            }
            Space::Generic if (LOCAL_WINDOW..LOCAL_WINDOW + WINDOW_SIZE).contains(&addr) => {
                (Space::Local, addr - LOCAL_WINDOW)
            }
            Space::Generic | Space::Const => (Space::Global, addr),
            s => (s, addr),
        };
        let fail = |this: &Self, why: String| {
            let t = this.thread_index(w, lane);
            let b = this.block_idx;
            let space_name = match space {
                Space::Shared => "__shared__",
                Space::Local => "__local__",
                Space::Param => "param",
                _ => "__global__",
            };
            vm_error(format!(
                "memcheck: invalid {space_name} {} of size {size} bytes at address {addr:#x} by thread ({}, {}, {}) in block ({}, {}, {}) of kernel `{}` (PTX line {}: `{}`): {why}",
                if write { "write" } else { "read" },
                t[0], t[1], t[2], b[0], b[1], b[2], this.env.kernel.name, instr.line, instr.text
            ))
        };
        if size > 1 && addr % size as u64 != 0 {
            return Err(fail(
                self,
                format!("address is misaligned for a {size}-byte access"),
            ));
        }
        match space {
            Space::Shared => {
                let end = addr.checked_add(size as u64);
                if end.is_none_or(|e| e > self.shared.len() as u64) {
                    return Err(fail(
                        self,
                        format!(
                            "out of bounds of the block's {} bytes of shared memory",
                            self.shared.len()
                        ),
                    ));
                }
                Ok(Place::Shared(addr as usize))
            }
            Space::Local => {
                let frame = self.env.kernel.local_bytes as u64;
                if addr.checked_add(size as u64).is_none_or(|e| e > frame) {
                    return Err(fail(
                        self,
                        format!("out of bounds of the thread's {frame}-byte local frame"),
                    ));
                }
                let t = w * 32 + lane;
                Ok(Place::Local(t * frame as usize + addr as usize))
            }
            Space::Param => {
                if write
                    || addr
                        .checked_add(size as u64)
                        .is_none_or(|e| e > self.env.params.len() as u64)
                {
                    return Err(fail(self, "outside the kernel parameters".to_string()));
                }
                Ok(Place::Param(addr as usize))
            }
            _ => match self.env.global.resolve(addr, size, &mut self.region_hint) {
                Some(p) => Ok(Place::Global(p)),
                None => Err(fail(self, describe_nearest(&self.env.global.regions, addr))),
            },
        }
    }

    #[inline]
    fn load(&self, place: &Place, size: usize) -> u64 {
        match place {
            // SAFETY: `place` checked that `size` bytes lie inside a live allocation.
            Place::Global(p) => unsafe { read_host(*p, size) },
            Place::Shared(o) => read_bytes(&self.shared[*o..*o + size]),
            Place::Local(o) => read_bytes(&self.local[*o..*o + size]),
            Place::Param(o) => read_bytes(&self.env.params[*o..*o + size]),
        }
    }

    #[inline]
    fn store(&mut self, place: &Place, size: usize, v: u64) {
        let bytes = v.to_le_bytes();
        match place {
            // SAFETY: `place` checked that `size` bytes lie inside a live allocation.
            Place::Global(p) => unsafe { write_host(*p, size, v) },
            Place::Shared(o) => self.shared[*o..*o + size].copy_from_slice(&bytes[..size]),
            Place::Local(o) => self.local[*o..*o + size].copy_from_slice(&bytes[..size]),
            Place::Param(_) => {}
        }
    }

    fn race_access(
        &mut self,
        w: usize,
        lane: usize,
        instr: &Instr,
        offset: usize,
        size: usize,
        write: bool,
    ) {
        let Some(race) = &mut self.race else { return };
        let thread = (w * 32 + lane) as u32;
        let interval = (self.barriers_passed << 24) | (self.warps[w].warp_syncs & 0xff_ffff);
        if let Some((kind, other, word)) = race.access(offset as u64, size, thread, interval, write)
        {
            self.hazard_count += 1;
            if self.hazards.len() < MAX_KEPT_HAZARDS {
                self.hazards.push(RaceHazard {
                    kernel: self.env.kernel.name.clone(),
                    kind,
                    shared_offset: word,
                    block: self.block_idx,
                    first_thread: other,
                    second_thread: thread,
                    line: instr.line,
                });
            }
        }
    }

    /// Records coalescing / bank-conflict counters for one warp-level access.
    fn record_request(&mut self, kind: Space, addrs: &mut LaneAddrs, size: usize, write: bool) {
        if addrs.len == 0 {
            return;
        }
        let n = addrs.len as u64;
        let addrs = &mut addrs.addrs[..addrs.len];
        match kind {
            Space::Global => {
                let ideal = if write { 0 } else { ideal_sectors(addrs, size) };
                let sectors = count_sectors(addrs, size);
                let c = &mut self.counters;
                if write {
                    c.global_store_requests += 1;
                    c.global_store_sectors += sectors;
                    c.global_bytes_written += n * size as u64;
                } else {
                    c.global_load_requests += 1;
                    c.global_load_sectors += sectors;
                    c.global_load_ideal_sectors += ideal;
                    c.global_bytes_read += n * size as u64;
                }
            }
            Space::Shared => {
                let conflicts = count_bank_conflicts(addrs, size);
                let c = &mut self.counters;
                if write {
                    c.shared_store_requests += 1;
                } else {
                    c.shared_load_requests += 1;
                }
                c.shared_bank_conflicts += conflicts;
            }
            _ => {}
        }
    }

    /// `ld.shared` of one 4-byte value without the race checker: the bulk of tiled kernels' loads.
    /// Returns false (having done nothing) when any lane needs the general path's error reporting.
    fn fast_shared_load32(&mut self, w: usize, instr: &Instr, active: u32) -> bool {
        let (Operand::Reg(d), Some(addr_op)) = (&instr.dst, instr.src.first()) else {
            return false;
        };
        let mut offsets = LaneAddrs::default();
        for lane in lanes(active) {
            let o = self.val(w, lane, addr_op);
            if !o.is_multiple_of(4)
                || o.checked_add(4)
                    .is_none_or(|end| end > self.shared.len() as u64)
            {
                return false;
            }
            offsets.push(o);
        }
        for (i, lane) in lanes(active).enumerate() {
            let o = offsets.addrs[i] as usize;
            let b = &self.shared[o..o + 4];
            let mut v = u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            if instr.ty == Ty::S32 {
                v = v as u32 as i32 as i64 as u64;
            }
            self.set_reg(w, *d, lane, v);
        }
        self.record_request(Space::Shared, &mut offsets, 4, false);
        true
    }

    fn exec_ld(&mut self, w: usize, instr: &Instr, active: u32, space: Space) -> Result<()> {
        let size = instr.ty.bytes();
        let vec = instr.vec as usize;
        if space == Space::Shared
            && size == 4
            && vec == 1
            && self.race.is_none()
            && self.fast_shared_load32(w, instr, active)
        {
            return Ok(());
        }
        let mut global_addrs = LaneAddrs::default();
        let mut shared_addrs = LaneAddrs::default();
        for lane in lanes(active) {
            let addr = self.src(w, lane, instr, 0);
            let place = self.place(w, lane, instr, space, addr, size * vec, false)?;
            match place {
                Place::Global(_) => global_addrs.push(addr),
                Place::Shared(o) => {
                    shared_addrs.push(o as u64);
                    self.race_access(w, lane, instr, o, size * vec, false);
                }
                _ => {}
            }
            for i in 0..vec {
                let elem_place = match &place {
                    Place::Global(p) => Place::Global(p.wrapping_add(i * size)),
                    Place::Shared(o) => Place::Shared(o + i * size),
                    Place::Local(o) => Place::Local(o + i * size),
                    Place::Param(o) => Place::Param(o + i * size),
                };
                let mut v = self.load(&elem_place, size);
                if instr.ty.is_signed() {
                    v = as_s(instr.ty, v) as u64;
                }
                match &instr.dst {
                    Operand::Vector(elems) => {
                        if let Some(Some(e)) = elems.get(i) {
                            self.write(w, lane, e, v);
                        }
                    }
                    dst => self.write(w, lane, dst, v),
                }
            }
        }
        self.record_request(Space::Global, &mut global_addrs, size * vec, false);
        self.record_request(Space::Shared, &mut shared_addrs, size * vec, false);
        Ok(())
    }

    fn exec_st(&mut self, w: usize, instr: &Instr, active: u32, space: Space) -> Result<()> {
        let size = instr.ty.bytes();
        let vec = instr.vec as usize;
        let mut global_addrs = LaneAddrs::default();
        let mut shared_addrs = LaneAddrs::default();
        for lane in lanes(active) {
            let addr = self.val(w, lane, &instr.dst);
            let place = self.place(w, lane, instr, space, addr, size * vec, true)?;
            match place {
                Place::Global(_) => global_addrs.push(addr),
                Place::Shared(o) => {
                    shared_addrs.push(o as u64);
                    self.race_access(w, lane, instr, o, size * vec, true);
                }
                _ => {}
            }
            for i in 0..vec {
                let v = match instr.src.first() {
                    Some(Operand::Vector(elems)) => elems
                        .get(i)
                        .and_then(|e| e.as_ref())
                        .map_or(0, |e| self.val(w, lane, e)),
                    Some(op) => self.val(w, lane, op),
                    None => 0,
                };
                let elem_place = match &place {
                    Place::Global(p) => Place::Global(p.wrapping_add(i * size)),
                    Place::Shared(o) => Place::Shared(o + i * size),
                    Place::Local(o) => Place::Local(o + i * size),
                    Place::Param(o) => Place::Param(o + i * size),
                };
                self.store(&elem_place, size, v);
            }
        }
        self.record_request(Space::Global, &mut global_addrs, size * vec, true);
        self.record_request(Space::Shared, &mut shared_addrs, size * vec, true);
        Ok(())
    }

    fn exec_atom(
        &mut self,
        w: usize,
        instr: &Instr,
        active: u32,
        space: Space,
        op: AtomOp,
    ) -> Result<()> {
        let ty = instr.ty;
        let size = ty.bytes();
        let is_red = matches!(instr.op, Op::Red { .. });
        let addr_op = if is_red {
            &instr.dst
        } else {
            instr.src.first().unwrap_or(&Operand::Sink)
        };
        let value_index = if is_red { 0 } else { 1 };
        let mut any_global = false;
        for lane in lanes(active) {
            let addr = self.val(w, lane, addr_op);
            let b = self.src(w, lane, instr, value_index);
            let c = self.src(w, lane, instr, value_index + 1);
            let place = self.place(w, lane, instr, space, addr, size, true)?;
            let old = match place {
                Place::Global(p) => {
                    any_global = true;
                    self.counters.global_bytes_read += size as u64;
                    self.counters.global_bytes_written += size as u64;
                    // SAFETY: `p` is in bounds and aligned to `size` (checked by `place`).
                    unsafe { global_atomic(p, size, |old| atomic_update(op, ty, old, b, c)) }
                }
                ref local_place => {
                    let old = self.load(local_place, size);
                    self.store(local_place, size, atomic_update(op, ty, old, b, c));
                    old
                }
            };
            if !is_red {
                let old = if ty.is_signed() {
                    as_s(ty, old) as u64
                } else {
                    old
                };
                self.write(w, lane, &instr.dst, old);
            }
        }
        if any_global {
            self.counters.global_atomic_requests += 1;
        }
        Ok(())
    }

    fn exec_cp_async(&mut self, w: usize, instr: &Instr, active: u32) -> Result<()> {
        let copy_size = self.src(w, 0, instr, 1) as usize;
        if !matches!(copy_size, 4 | 8 | 16) {
            return Err(self.instr_error(instr, "cp.async size must be 4, 8 or 16"));
        }
        for lane in lanes(active) {
            let dst = self.val(w, lane, &instr.dst);
            let src = self.src(w, lane, instr, 0);
            let src_size = if instr.src.len() > 2 {
                self.src(w, lane, instr, 2) as usize
            } else {
                copy_size
            };
            let to = self.place(w, lane, instr, Space::Shared, dst, copy_size, true)?;
            let from = self.place(w, lane, instr, Space::Global, src, copy_size, false)?;
            for i in 0..copy_size / 4 {
                let v = if i * 4 < src_size {
                    match &from {
                        Place::Global(p) => self.load(&Place::Global(p.wrapping_add(i * 4)), 4),
                        _ => 0,
                    }
                } else {
                    0
                };
                if let Place::Shared(o) = to {
                    self.race_access(w, lane, instr, o + i * 4, 4, true);
                    self.store(&Place::Shared(o + i * 4), 4, v);
                }
            }
        }
        Ok(())
    }
}

/// Tensor-core instructions: warp-collective, so every lane of the warp must execute them together.
impl BlockRunner<'_> {
    fn require_full_warp(&self, instr: &Instr, active: u32) -> Result<()> {
        if active == u32::MAX {
            return Ok(());
        }
        Err(self.instr_error(
            instr,
            &format!(
                "warp-collective tensor-core instruction executed by lanes {active:#010x}; all 32 lanes \
                 of the warp must execute it together (partial or divergent warp)"
            ),
        ))
    }

    /// Every lane's registers of one vector operand.
    fn vector_registers<const R: usize>(&self, w: usize, op: &Operand) -> [[u32; R]; WARP] {
        let mut regs = [[0u32; R]; WARP];
        let Operand::Vector(elems) = op else {
            return regs;
        };
        for (lane, lane_regs) in regs.iter_mut().enumerate() {
            for (reg, elem) in lane_regs.iter_mut().zip(elems) {
                if let Some(e) = elem {
                    *reg = self.val(w, lane, e) as u32;
                }
            }
        }
        regs
    }

    fn write_vector(&mut self, w: usize, lane: usize, dst: &Operand, values: &[u32]) {
        match dst {
            Operand::Vector(elems) => {
                for (elem, &v) in elems.iter().zip(values) {
                    if let Some(e) = elem {
                        self.write(w, lane, e, u64::from(v));
                    }
                }
            }
            dst => self.write(w, lane, dst, u64::from(values[0])),
        }
    }

    fn exec_mma(&mut self, w: usize, instr: &Instr, active: u32, kind: MmaKind) -> Result<()> {
        self.require_full_warp(instr, active)?;
        let a = self.vector_registers::<4>(w, &instr.src[0]);
        let b = self.vector_registers::<2>(w, &instr.src[1]);
        let c = self.vector_registers::<4>(w, &instr.src[2]);
        let d = mma(kind, &a, &b, &c);
        for (lane, regs) in d.iter().enumerate() {
            self.write_vector(w, lane, &instr.dst, regs);
        }
        Ok(())
    }

    /// Lanes `8 * m .. 8 * m + 8` give the row addresses of tile `m`; each row is 16 bytes.
    fn exec_ldmatrix(
        &mut self,
        w: usize,
        instr: &Instr,
        active: u32,
        space: Space,
        matrices: u8,
        trans: bool,
    ) -> Result<()> {
        const ROW_BYTES: usize = 16;
        self.require_full_warp(instr, active)?;
        let mut tiles = [[[0u16; 8]; 8]; 4];
        for (m, tile) in tiles.iter_mut().enumerate().take(usize::from(matrices)) {
            let mut row_offsets = LaneAddrs::default();
            for (r, row) in tile.iter_mut().enumerate() {
                let lane = 8 * m + r;
                let addr = self.src(w, lane, instr, 0);
                let place = self.place(w, lane, instr, space, addr, ROW_BYTES, false)?;
                let Place::Shared(offset) = place else {
                    return Err(self.instr_error(instr, "ldmatrix reads shared memory only"));
                };
                row_offsets.push(offset as u64);
                self.race_access(w, lane, instr, offset, ROW_BYTES, false);
                for (c, elem) in row.iter_mut().enumerate() {
                    *elem = self.load(&Place::Shared(offset + 2 * c), 2) as u16;
                }
            }
            self.record_request(Space::Shared, &mut row_offsets, ROW_BYTES, false);
        }
        let tiles: &[Tile] = &tiles[..usize::from(matrices)];
        for lane in 0..WARP {
            let regs: Vec<u32> = tiles
                .iter()
                .map(|tile| ldmatrix_register(tile, lane, trans))
                .collect();
            self.write_vector(w, lane, &instr.dst, &regs);
        }
        Ok(())
    }
}

/// Lines of device printf kept per launch; more are dropped with a note.
const MAX_PRINTF_LINES: usize = 10_000;

/// One lane's view of its printf argument buffer.
struct LaneArgs<'r, 'a> {
    runner: &'r mut BlockRunner<'a>,
    w: usize,
    lane: usize,
    instr: &'r Instr,
    cursor: u64,
}

impl super::printf::PrintfArgs for LaneArgs<'_, '_> {
    fn next(&mut self, size: usize) -> std::result::Result<u64, String> {
        self.cursor = self.cursor.div_ceil(size as u64) * size as u64;
        let place = self
            .runner
            .place(
                self.w,
                self.lane,
                self.instr,
                Space::Generic,
                self.cursor,
                size,
                false,
            )
            .map_err(|e| e.to_string())?;
        self.cursor += size as u64;
        Ok(self.runner.load(&place, size))
    }

    fn string_at(&mut self, address: u64) -> std::result::Result<String, String> {
        let mut bytes = Vec::new();
        for i in 0..4096u64 {
            let place = self
                .runner
                .place(
                    self.w,
                    self.lane,
                    self.instr,
                    Space::Generic,
                    address.wrapping_add(i),
                    1,
                    false,
                )
                .map_err(|e| e.to_string())?;
            match self.runner.load(&place, 1) as u8 {
                0 => break,
                b => bytes.push(b),
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

impl BlockRunner<'_> {
    /// Device printf: formats each active lane's arguments into the launch's output.
    fn exec_printf(&mut self, w: usize, instr: &Instr, active: u32) -> Result<()> {
        for lane in lanes(active) {
            let format_slot = self.src(w, lane, instr, 0);
            let args_slot = self.src(w, lane, instr, 1);
            let place = self.place(w, lane, instr, Space::Local, format_slot, 8, false)?;
            let format_address = self.load(&place, 8);
            let place = self.place(w, lane, instr, Space::Local, args_slot, 8, false)?;
            let args_address = self.load(&place, 8);
            let format_text = {
                let mut reader = LaneArgs {
                    runner: self,
                    w,
                    lane,
                    instr,
                    cursor: 0,
                };
                super::printf::PrintfArgs::string_at(&mut reader, format_address)
            }
            .map_err(|e| self.instr_error(instr, &format!("printf format string: {e}")))?;
            let text = {
                let mut reader = LaneArgs {
                    runner: self,
                    w,
                    lane,
                    instr,
                    cursor: args_address,
                };
                super::printf::format(format_text.as_bytes(), &mut reader)
            }
            .map_err(|e| self.instr_error(instr, &format!("printf: {e}")))?;
            if self.printf.len() < MAX_PRINTF_LINES {
                self.printf.push((self.linear_block, text));
            }
        }
        Ok(())
    }
}

/// Read-modify-write of global memory shared with other blocks running in parallel.
///
/// # Safety
/// `p` must point to `size` valid bytes aligned to `size`.
unsafe fn global_atomic(p: *mut u8, size: usize, update: impl Fn(u64) -> u64) -> u64 {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    match size {
        8 => {
            let a = AtomicU64::from_ptr(p as *mut u64);
            let mut old = a.load(Ordering::Relaxed);
            loop {
                match a.compare_exchange_weak(old, update(old), Ordering::AcqRel, Ordering::Relaxed)
                {
                    Ok(_) => return old,
                    Err(cur) => old = cur,
                }
            }
        }
        4 => {
            let a = AtomicU32::from_ptr(p as *mut u32);
            let mut old = a.load(Ordering::Relaxed);
            loop {
                let new = update(u64::from(old)) as u32;
                match a.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => return u64::from(old),
                    Err(cur) => old = cur,
                }
            }
        }
        _ => {
            // 16-bit atomics update their half of the enclosing aligned 32-bit word.
            let word = (p as usize & !3) as *mut u32;
            let shift = ((p as usize & 3) * 8) as u32;
            let a = AtomicU32::from_ptr(word);
            let m = ((1u64 << (size * 8)) - 1) as u32;
            let mut old = a.load(Ordering::Relaxed);
            loop {
                let part = u64::from((old >> shift) & m);
                let new_part = (update(part) as u32) & m;
                let new = (old & !(m << shift)) | (new_part << shift);
                match a.compare_exchange_weak(old, new, Ordering::AcqRel, Ordering::Relaxed) {
                    Ok(_) => return part,
                    Err(cur) => old = cur,
                }
            }
        }
    }
}

#[inline]
fn read_bytes(b: &[u8]) -> u64 {
    match b.len() {
        4 => u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        8 => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        2 => u64::from(u16::from_le_bytes([b[0], b[1]])),
        _ => b.iter().rev().fold(0u64, |acc, &x| acc << 8 | u64::from(x)),
    }
}

/// # Safety
/// `p` must point to `size` readable bytes.
#[inline]
unsafe fn read_host(p: *const u8, size: usize) -> u64 {
    match size {
        4 => u64::from(u32::from_le(std::ptr::read_unaligned(p as *const u32))),
        8 => u64::from_le(std::ptr::read_unaligned(p as *const u64)),
        2 => u64::from(u16::from_le(std::ptr::read_unaligned(p as *const u16))),
        _ => read_bytes(std::slice::from_raw_parts(p, size)),
    }
}

/// # Safety
/// `p` must point to `size` writable bytes.
#[inline]
unsafe fn write_host(p: *mut u8, size: usize, v: u64) {
    match size {
        4 => std::ptr::write_unaligned(p as *mut u32, (v as u32).to_le()),
        8 => std::ptr::write_unaligned(p as *mut u64, v.to_le()),
        _ => std::ptr::copy_nonoverlapping(v.to_le_bytes().as_ptr(), p, size),
    }
}

/// The scalar type of a packed pair of halves.
fn packed_half_scalar(ty: Ty) -> Option<Ty> {
    match ty {
        Ty::F16x2 => Some(Ty::F16),
        Ty::BF16x2 => Some(Ty::BF16),
        _ => None,
    }
}

/// Shared memory of one block: static, then the dynamic window at its alignment.
pub fn shared_size(env: &LaunchEnv) -> usize {
    let k = env.kernel;
    let a = k.dynamic_shared_align.max(1);
    k.static_shared_bytes.div_ceil(a) * a + env.dynamic_shared_bytes
}

/// Addresses of one warp-level access, one per active lane.
#[derive(Default)]
struct LaneAddrs {
    addrs: [u64; 32],
    len: usize,
}

impl LaneAddrs {
    #[inline]
    fn push(&mut self, a: u64) {
        self.addrs[self.len] = a;
        self.len += 1;
    }
}

/// Indices of the set bits of a lane mask.
#[inline]
fn lanes(mask: u32) -> impl Iterator<Item = usize> {
    let mut m = mask;
    std::iter::from_fn(move || {
        if m == 0 {
            None
        } else {
            let l = m.trailing_zeros() as usize;
            m &= m - 1;
            Some(l)
        }
    })
}
