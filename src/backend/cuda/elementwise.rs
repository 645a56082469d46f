//! Launches of `kernels/elementwise.cu`: every unary op, its gradient and every binary op.

use super::storage::CudaStorage;
use super::view::StridedView;
use super::DeviceApi;
use crate::backend::ops::{BinaryOp, UnaryOp};
use crate::backend::BackendStorage;
use crate::error::{HeparError, Result};
use crate::tensor::layout::Layout;

const FILE: &str = "elementwise.cu";

pub fn unary<D: DeviceApi>(x: &CudaStorage<D>, l: &Layout, op: UnaryOp) -> Result<CudaStorage<D>> {
    x.require_compute(op.name())?;
    let n = l.numel();
    let y = x.alloc_like(n, x.dtype())?;
    let (p0, p1) = op.params();
    let ctx = x.context();
    let args = [
        x.arg(),
        StridedView::new(op.name(), l)?.arg(),
        y.arg(),
        (n as i64).into(),
        p0.into(),
        p1.into(),
    ];
    ctx.launch(FILE, &x.kernel_name(op.name()), &ctx.grid_stride(n), &args)?;
    Ok(y)
}

pub fn unary_grad<D: DeviceApi>(
    x: &CudaStorage<D>,
    l: &Layout,
    grad: &CudaStorage<D>,
    gl: &Layout,
    op: UnaryOp,
) -> Result<CudaStorage<D>> {
    x.require_same_dtype(op.name(), grad)?;
    if l.shape() != gl.shape() {
        return Err(HeparError::shape(
            op.name(),
            format!("input {:?} vs gradient {:?}", l.shape(), gl.shape()),
        ));
    }
    let n = l.numel();
    let out = x.alloc_like(n, x.dtype())?;
    let (p0, p1) = op.params();
    let ctx = x.context();
    let args = [
        x.arg(),
        StridedView::new(op.name(), l)?.arg(),
        grad.arg(),
        StridedView::new(op.name(), gl)?.arg(),
        out.arg(),
        (n as i64).into(),
        p0.into(),
        p1.into(),
    ];
    ctx.launch(
        FILE,
        &x.kernel_name(&format!("{}_grad", op.name())),
        &ctx.grid_stride(n),
        &args,
    )?;
    Ok(out)
}

pub fn binary<D: DeviceApi>(
    a: &CudaStorage<D>,
    al: &Layout,
    b: &CudaStorage<D>,
    bl: &Layout,
    op: BinaryOp,
) -> Result<CudaStorage<D>> {
    a.require_same_dtype(op.name(), b)?;
    if al.shape() != bl.shape() {
        return Err(HeparError::shape(
            op.name(),
            format!(
                "operands {:?} and {:?} are not broadcast to one shape",
                al.shape(),
                bl.shape()
            ),
        ));
    }
    let n = al.numel();
    let y = a.alloc_like(n, a.dtype())?;
    let ctx = a.context();
    let args = [
        a.arg(),
        StridedView::new(op.name(), al)?.arg(),
        b.arg(),
        StridedView::new(op.name(), bl)?.arg(),
        y.arg(),
        (n as i64).into(),
    ];
    ctx.launch(FILE, &a.kernel_name(op.name()), &ctx.grid_stride(n), &args)?;
    Ok(y)
}
