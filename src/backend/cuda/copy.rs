//! Launches of `kernels/copy.cu`: fill, strided gather and scatter, dtype casts.

use std::sync::Arc;

use super::context::GpuContext;
use super::storage::{dtype_suffix, CudaStorage};
use super::view::StridedView;
use super::DeviceApi;
use crate::backend::BackendStorage;
use crate::error::{HeparError, Result};
use crate::tensor::dtype::DType;
use crate::tensor::layout::Layout;

const FILE: &str = "copy.cu";

/// The copy kernels move bits, so they are chosen by element width.
fn width_suffix(dtype: DType) -> &'static str {
    match dtype.size_in_bytes() {
        2 => "b16",
        4 => "b32",
        _ => "b64",
    }
}

pub fn fill<D: DeviceApi>(
    context: &Arc<GpuContext<D>>,
    len: usize,
    dtype: DType,
    value: f64,
) -> Result<CudaStorage<D>> {
    let y = CudaStorage::alloc(context, len, dtype)?;
    if len > 0 {
        let args = [y.arg(), (len as i64).into(), value.into()];
        context.launch(
            FILE,
            &format!("fill_{}", dtype_suffix(dtype)),
            &context.grid_stride(len),
            &args,
        )?;
    }
    Ok(y)
}

pub fn copy_strided<D: DeviceApi>(x: &CudaStorage<D>, l: &Layout) -> Result<CudaStorage<D>> {
    let n = l.numel();
    let y = x.alloc_like(n, x.dtype())?;
    if n > 0 {
        let ctx = x.context();
        let args = [
            x.arg(),
            StridedView::new("copy", l)?.arg(),
            y.arg(),
            (n as i64).into(),
        ];
        ctx.launch(
            FILE,
            &format!("copy_{}", width_suffix(x.dtype())),
            &ctx.grid_stride(n),
            &args,
        )?;
    }
    Ok(y)
}

pub fn write_strided<D: DeviceApi>(
    dst: &mut CudaStorage<D>,
    dl: &Layout,
    src: &CudaStorage<D>,
    sl: &Layout,
) -> Result<()> {
    if dst.dtype() != src.dtype() {
        return Err(HeparError::dtype(
            "write_strided",
            format!("destination {} vs source {}", dst.dtype(), src.dtype()),
        ));
    }
    if dl.shape() != sl.shape() {
        return Err(HeparError::shape(
            "write_strided",
            format!("destination {:?} vs source {:?}", dl.shape(), sl.shape()),
        ));
    }
    let n = dl.numel();
    if n > 0 {
        let ctx = dst.context().clone();
        let args = [
            src.arg(),
            StridedView::new("write_strided", sl)?.arg(),
            dst.arg(),
            StridedView::new("write_strided", dl)?.arg(),
            (n as i64).into(),
        ];
        ctx.launch(
            FILE,
            &format!("scatter_{}", width_suffix(dst.dtype())),
            &ctx.grid_stride(n),
            &args,
        )?;
    }
    Ok(())
}

pub fn to_dtype<D: DeviceApi>(
    x: &CudaStorage<D>,
    l: &Layout,
    dtype: DType,
) -> Result<CudaStorage<D>> {
    let n = l.numel();
    let y = x.alloc_like(n, dtype)?;
    if n > 0 {
        let ctx = x.context();
        let name = format!("cast_{}_{}", dtype_suffix(x.dtype()), dtype_suffix(dtype));
        let args = [
            x.arg(),
            StridedView::new("to_dtype", l)?.arg(),
            y.arg(),
            (n as i64).into(),
        ];
        ctx.launch(FILE, &name, &ctx.grid_stride(n), &args)?;
    }
    Ok(y)
}
