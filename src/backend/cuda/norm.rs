//! Launches of `kernels/norm.cu`: GroupNorm (fused with the optional SiLU) and BatchNorm,
//! forward and backward. The reductions run one fixed-size block per group or channel and never
//! use float atomics, so their bits do not depend on the launch shape; the elementwise passes use
//! the context's grid-stride shape.

use super::device::{KernelArg, LaunchConfig};
use super::storage::CudaStorage;
use super::view::StridedView;
use super::DeviceApi;
use crate::backend::{BackendStorage, NormActivation, NormStats};
use crate::error::{HeparError, Result};
use crate::tensor::dtype::DType;
use crate::tensor::layout::Layout;

const FILE: &str = "norm.cu";

/// Threads of the block reductions; must equal `NORM_BLOCK` in `kernels/norm.cu`.
const NORM_BLOCK: u32 = 256;

/// One block of `NORM_BLOCK` threads per item (group, channel); a grid holds at most 2^31 - 1.
fn per_block(op: &'static str, blocks: usize) -> Result<LaunchConfig> {
    if blocks > i32::MAX as usize {
        return Err(HeparError::invalid(
            op,
            format!("{blocks} groups or channels exceed one launch grid"),
        ));
    }
    Ok(LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (NORM_BLOCK, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// (batch, channels, spatial product) of an [N, C, ...] layout.
fn ncs(op: &'static str, l: &Layout) -> Result<(usize, usize, usize)> {
    let sh = l.shape();
    if sh.len() < 2 {
        return Err(HeparError::shape(
            op,
            format!("input {sh:?} has no channel axis"),
        ));
    }
    Ok((sh[0], sh[1], sh[2..].iter().product()))
}

/// The pointer argument of an optional operand (null when absent; kernels test for it).
fn opt_arg<D: DeviceApi>(s: Option<&CudaStorage<D>>) -> KernelArg {
    s.map_or(KernelArg::from(0u64), |s| s.arg())
}

/// Checks an operand's dtype against `x` and its length against `len`.
fn check_operand<D: DeviceApi>(
    op: &'static str,
    x: &CudaStorage<D>,
    s: Option<&CudaStorage<D>>,
    what: &str,
    len: usize,
) -> Result<()> {
    if let Some(s) = s {
        x.require_same_dtype(op, s)?;
        if s.len() != len {
            return Err(HeparError::shape(
                op,
                format!("{what} has {} elements, expected {len}", s.len()),
            ));
        }
    }
    Ok(())
}

fn check_groups(op: &'static str, l: &Layout, groups: usize) -> Result<(usize, usize, usize)> {
    let (n, c, s) = ncs(op, l)?;
    if groups == 0 || c % groups != 0 {
        return Err(HeparError::invalid(
            op,
            format!(
                "{groups} groups for input {:?} (channels must divide evenly)",
                l.shape()
            ),
        ));
    }
    Ok((n, c, s))
}

fn silu_flag(activation: NormActivation) -> KernelArg {
    i32::from(activation == NormActivation::Silu).into()
}

fn i64_arg(v: usize) -> KernelArg {
    (v as i64).into()
}

#[allow(clippy::too_many_arguments)]
pub fn group_norm<D: DeviceApi>(
    x: &CudaStorage<D>,
    l: &Layout,
    groups: usize,
    weight: Option<&CudaStorage<D>>,
    bias: Option<&CudaStorage<D>>,
    eps: f64,
    activation: NormActivation,
) -> Result<(CudaStorage<D>, NormStats<CudaStorage<D>>)> {
    const OP: &str = "group_norm";
    x.require_compute(OP)?;
    let (n, c, s) = check_groups(OP, l, groups)?;
    check_operand(OP, x, weight, "weight", c)?;
    check_operand(OP, x, bias, "bias", c)?;
    let xd = x.dense(l)?;
    let y = x.alloc_like(n * c * s, x.dtype())?;
    let mean = x.alloc_like(n * groups, x.dtype())?;
    let rstd = x.alloc_like(n * groups, x.dtype())?;
    if n * groups > 0 {
        let args = [
            xd.arg(),
            opt_arg(weight),
            opt_arg(bias),
            y.arg(),
            mean.arg(),
            rstd.arg(),
            i64_arg(s),
            i64_arg(c / groups),
            i64_arg(groups),
            eps.into(),
            silu_flag(activation),
        ];
        x.context().launch(
            FILE,
            &x.kernel_name("group_norm_fwd"),
            &per_block(OP, n * groups)?,
            &args,
        )?;
    }
    Ok((y, NormStats { mean, rstd }))
}

#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward<D: DeviceApi>(
    x: &CudaStorage<D>,
    l: &Layout,
    grad: &CudaStorage<D>,
    gl: &Layout,
    groups: usize,
    weight: Option<&CudaStorage<D>>,
    bias: Option<&CudaStorage<D>>,
    stats: &NormStats<CudaStorage<D>>,
    activation: NormActivation,
) -> Result<(CudaStorage<D>, CudaStorage<D>, CudaStorage<D>)> {
    const OP: &str = "group_norm_backward";
    x.require_same_dtype(OP, grad)?;
    if l.shape() != gl.shape() {
        return Err(HeparError::shape(
            OP,
            format!("input {:?} vs gradient {:?}", l.shape(), gl.shape()),
        ));
    }
    let (n, c, s) = check_groups(OP, l, groups)?;
    check_operand(OP, x, weight, "weight", c)?;
    check_operand(OP, x, bias, "bias", c)?;
    check_operand(OP, x, Some(&stats.mean), "mean", n * groups)?;
    check_operand(OP, x, Some(&stats.rstd), "rstd", n * groups)?;
    let (xd, gd) = (x.dense(l)?, grad.dense(gl)?);
    let cg = c / groups;
    let total = n * c * s;
    let ctx = x.context();
    let silu = silu_flag(activation);
    // f64 scratch: per-(n, c) sums, then per-(n, g) coefficients.
    let part = x.alloc_like(2 * n * c, DType::F64)?;
    let coef = x.alloc_like(2 * n * groups, DType::F64)?;
    let gx = x.alloc_like(total, x.dtype())?;
    let gw = x.alloc_like(c, x.dtype())?;
    let gb = x.alloc_like(c, x.dtype())?;
    if n * c > 0 {
        let args = [
            xd.arg(),
            gd.arg(),
            stats.mean.arg(),
            stats.rstd.arg(),
            opt_arg(weight),
            opt_arg(bias),
            part.arg(),
            i64_arg(c),
            i64_arg(s),
            i64_arg(cg),
            i64_arg(groups),
            silu.clone(),
        ];
        ctx.launch(
            FILE,
            &x.kernel_name("group_norm_bwd_reduce"),
            &per_block(OP, n * c)?,
            &args,
        )?;
    }
    let items = n * groups + c;
    if items > 0 {
        let args = [
            part.arg(),
            opt_arg(weight),
            coef.arg(),
            gw.arg(),
            gb.arg(),
            i64_arg(n),
            i64_arg(c),
            i64_arg(s),
            i64_arg(cg),
            i64_arg(groups),
        ];
        ctx.launch(
            FILE,
            &x.kernel_name("group_norm_bwd_coef"),
            &ctx.grid_stride(items),
            &args,
        )?;
    }
    if total > 0 {
        let args = [
            xd.arg(),
            gd.arg(),
            stats.mean.arg(),
            stats.rstd.arg(),
            opt_arg(weight),
            opt_arg(bias),
            coef.arg(),
            gx.arg(),
            i64_arg(c),
            i64_arg(s),
            i64_arg(cg),
            i64_arg(groups),
            i64_arg(total),
            silu,
        ];
        ctx.launch(
            FILE,
            &x.kernel_name("group_norm_bwd_dx"),
            &ctx.grid_stride(total),
            &args,
        )?;
    }
    Ok((gx, gw, gb))
}

pub fn batch_norm_stats<D: DeviceApi>(
    x: &CudaStorage<D>,
    l: &Layout,
) -> Result<(CudaStorage<D>, CudaStorage<D>)> {
    const OP: &str = "batch_norm";
    x.require_compute(OP)?;
    let (n, c, s) = ncs(OP, l)?;
    let xd = x.dense(l)?;
    let mean = x.alloc_like(c, x.dtype())?;
    let var = x.alloc_like(c, x.dtype())?;
    if c > 0 {
        let args = [
            xd.arg(),
            mean.arg(),
            var.arg(),
            i64_arg(n),
            i64_arg(c),
            i64_arg(s),
        ];
        x.context().launch(
            FILE,
            &x.kernel_name("batch_norm_stats"),
            &per_block(OP, c)?,
            &args,
        )?;
    }
    Ok((mean, var))
}

pub fn batch_norm_apply<D: DeviceApi>(
    x: &CudaStorage<D>,
    l: &Layout,
    mean: &CudaStorage<D>,
    rstd: &CudaStorage<D>,
    weight: Option<&CudaStorage<D>>,
    bias: Option<&CudaStorage<D>>,
) -> Result<CudaStorage<D>> {
    const OP: &str = "batch_norm";
    x.require_compute(OP)?;
    let (n, c, s) = ncs(OP, l)?;
    check_operand(OP, x, Some(mean), "mean", c)?;
    check_operand(OP, x, Some(rstd), "rstd", c)?;
    check_operand(OP, x, weight, "weight", c)?;
    check_operand(OP, x, bias, "bias", c)?;
    let total = n * c * s;
    let y = x.alloc_like(total, x.dtype())?;
    if total > 0 {
        let ctx = x.context();
        let args = [
            x.arg(),
            StridedView::new(OP, l)?.arg(),
            mean.arg(),
            rstd.arg(),
            opt_arg(weight),
            opt_arg(bias),
            y.arg(),
            i64_arg(c),
            i64_arg(s),
            i64_arg(total),
        ];
        ctx.launch(
            FILE,
            &x.kernel_name("batch_norm_apply"),
            &ctx.grid_stride(total),
            &args,
        )?;
    }
    Ok(y)
}

pub fn batch_norm_train_backward<D: DeviceApi>(
    x: &CudaStorage<D>,
    l: &Layout,
    grad: &CudaStorage<D>,
    gl: &Layout,
    mean: &CudaStorage<D>,
    rstd: &CudaStorage<D>,
    weight: Option<&CudaStorage<D>>,
) -> Result<(CudaStorage<D>, CudaStorage<D>, CudaStorage<D>)> {
    const OP: &str = "batch_norm_backward";
    x.require_same_dtype(OP, grad)?;
    if l.shape() != gl.shape() {
        return Err(HeparError::shape(
            OP,
            format!("input {:?} vs gradient {:?}", l.shape(), gl.shape()),
        ));
    }
    let (n, c, s) = ncs(OP, l)?;
    check_operand(OP, x, Some(mean), "mean", c)?;
    check_operand(OP, x, Some(rstd), "rstd", c)?;
    check_operand(OP, x, weight, "weight", c)?;
    let (xd, gd) = (x.dense(l)?, grad.dense(gl)?);
    let total = n * c * s;
    let ctx = x.context();
    let sums = x.alloc_like(2 * c, DType::F64)?;
    let gx = x.alloc_like(total, x.dtype())?;
    let gw = x.alloc_like(c, x.dtype())?;
    let gb = x.alloc_like(c, x.dtype())?;
    if c > 0 {
        let args = [
            xd.arg(),
            gd.arg(),
            mean.arg(),
            rstd.arg(),
            sums.arg(),
            gw.arg(),
            gb.arg(),
            i64_arg(n),
            i64_arg(c),
            i64_arg(s),
        ];
        ctx.launch(
            FILE,
            &x.kernel_name("batch_norm_bwd_reduce"),
            &per_block(OP, c)?,
            &args,
        )?;
    }
    if total > 0 {
        let args = [
            xd.arg(),
            gd.arg(),
            mean.arg(),
            rstd.arg(),
            opt_arg(weight),
            sums.arg(),
            gx.arg(),
            i64_arg(c),
            i64_arg(s),
            i64_arg(total),
            i64_arg(n * s),
        ];
        ctx.launch(
            FILE,
            &x.kernel_name("batch_norm_bwd_dx"),
            &ctx.grid_stride(total),
            &args,
        )?;
    }
    Ok((gx, gw, gb))
}
