//! Launches of `kernels/pool.cu`: max and average pooling over dense NCDHW storage, forward and
//! backward. Backward passes are gathers (one thread per input element), so their bits do not
//! depend on the launch shape.

use super::storage::CudaStorage;
use super::DeviceApi;
use crate::backend::{BackendStorage, PoolGeometry};
use crate::error::{HeparError, Result};

const FILE: &str = "pool.cu";

/// `PoolParams` in `kernels/pool.cu` (same field order, every field 64-bit so no padding).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct PoolParams {
    planes: i64,
    input: [i64; 3],
    output: [i64; 3],
    kernel: [i64; 3],
    stride: [i64; 3],
    padding: [i64; 3],
    dilation: [i64; 3],
    count_include_pad: i64,
}

impl PoolParams {
    fn new(g: &PoolGeometry, count_include_pad: bool) -> Self {
        let wide = |a: [usize; 3]| a.map(|v| v as i64);
        PoolParams {
            planes: (g.batch * g.channels) as i64,
            input: wide(g.input),
            output: wide(g.output()),
            kernel: wide(g.kernel),
            stride: wide(g.stride),
            padding: wide(g.padding),
            dilation: wide(g.dilation),
            count_include_pad: i64::from(count_include_pad),
        }
    }

    fn arg(&self) -> super::KernelArg {
        super::KernelArg::from_bytes(bytemuck::bytes_of(self))
    }
}

/// Refuses a geometry the CPU would reject, storage-only dtypes, and storage whose length is not
/// the dense tensor the geometry describes (`what` names the operand).
fn check<D: DeviceApi>(
    op: &'static str,
    s: &CudaStorage<D>,
    what: &str,
    len: usize,
    g: &PoolGeometry,
) -> Result<()> {
    s.require_compute(op)?;
    g.validate(op)?;
    if s.len() != len {
        return Err(HeparError::shape(
            op,
            format!(
                "{what} has {} elements, but {} x {} planes of {:?} pooled by kernel {:?} need {len}",
                s.len(),
                g.batch,
                g.channels,
                if what == "input" { g.input } else { g.output() },
                g.kernel
            ),
        ));
    }
    Ok(())
}

fn check_average(op: &'static str, g: &PoolGeometry) -> Result<()> {
    if g.dilation != [1, 1, 1] {
        return Err(HeparError::invalid(
            op,
            format!("average pooling takes no dilation, got {:?}", g.dilation),
        ));
    }
    Ok(())
}

pub fn max_pool<D: DeviceApi>(x: &CudaStorage<D>, g: &PoolGeometry) -> Result<CudaStorage<D>> {
    let op = "max_pool";
    check(op, x, "input", g.input_len(), g)?;
    let n = g.output_len();
    let y = x.alloc_like(n, x.dtype())?;
    if n > 0 {
        let ctx = x.context();
        let args = [x.arg(), y.arg(), PoolParams::new(g, false).arg()];
        ctx.launch(FILE, &x.kernel_name(op), &ctx.grid_stride(n), &args)?;
    }
    Ok(y)
}

/// Finds each window's argmax again from `x` (one kernel writing plane indices), then gathers.
pub fn max_pool_backward<D: DeviceApi>(
    x: &CudaStorage<D>,
    grad_out: &CudaStorage<D>,
    g: &PoolGeometry,
) -> Result<CudaStorage<D>> {
    let op = "max_pool_backward";
    x.require_same_dtype(op, grad_out)?;
    check(op, x, "input", g.input_len(), g)?;
    check(op, grad_out, "output gradient", g.output_len(), g)?;
    let (n_in, n_out) = (g.input_len(), g.output_len());
    let gx = x.alloc_like(n_in, x.dtype())?;
    if n_in == 0 {
        return Ok(gx);
    }
    let ctx = x.context();
    let params = PoolParams::new(g, false).arg();
    let argmax = ctx.alloc(n_out.max(1) * std::mem::size_of::<i64>())?;
    if n_out > 0 {
        let args = [x.arg(), argmax.ptr().into(), params.clone()];
        ctx.launch(
            FILE,
            &x.kernel_name("max_pool_argmax"),
            &ctx.grid_stride(n_out),
            &args,
        )?;
    }
    let args = [grad_out.arg(), argmax.ptr().into(), gx.arg(), params];
    ctx.launch(FILE, &x.kernel_name(op), &ctx.grid_stride(n_in), &args)?;
    Ok(gx)
}

pub fn avg_pool<D: DeviceApi>(
    x: &CudaStorage<D>,
    g: &PoolGeometry,
    count_include_pad: bool,
) -> Result<CudaStorage<D>> {
    let op = "avg_pool";
    check(op, x, "input", g.input_len(), g)?;
    check_average(op, g)?;
    let n = g.output_len();
    let y = x.alloc_like(n, x.dtype())?;
    if n > 0 {
        let ctx = x.context();
        let args = [
            x.arg(),
            y.arg(),
            PoolParams::new(g, count_include_pad).arg(),
        ];
        ctx.launch(FILE, &x.kernel_name(op), &ctx.grid_stride(n), &args)?;
    }
    Ok(y)
}

pub fn avg_pool_backward<D: DeviceApi>(
    grad_out: &CudaStorage<D>,
    g: &PoolGeometry,
    count_include_pad: bool,
) -> Result<CudaStorage<D>> {
    let op = "avg_pool_backward";
    check(op, grad_out, "output gradient", g.output_len(), g)?;
    check_average(op, g)?;
    let n = g.input_len();
    let gx = grad_out.alloc_like(n, grad_out.dtype())?;
    if n > 0 {
        let ctx = grad_out.context();
        let args = [
            grad_out.arg(),
            gx.arg(),
            PoolParams::new(g, count_include_pad).arg(),
        ];
        ctx.launch(FILE, &grad_out.kernel_name(op), &ctx.grid_stride(n), &args)?;
    }
    Ok(gx)
}
