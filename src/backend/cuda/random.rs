//! Launches of `kernels/random.cu`: Philox dropout masks.

use super::storage::CudaStorage;
use super::DeviceApi;
use crate::backend::BackendStorage;
use crate::error::Result;
use crate::util::philox::drop_threshold;

pub fn dropout_mask<D: DeviceApi>(
    like: &CudaStorage<D>,
    numel: usize,
    p: f64,
    seed: u64,
) -> Result<CudaStorage<D>> {
    like.require_compute("dropout")?;
    let mask = like.alloc_like(numel, like.dtype())?;
    let ctx = like.context();
    let args = [
        mask.arg(),
        (numel as i64).into(),
        seed.into(),
        drop_threshold(p).into(),
        (1.0 / (1.0 - p)).into(),
    ];
    ctx.launch(
        "random.cu",
        &like.kernel_name("dropout_mask"),
        &ctx.grid_stride(numel),
        &args,
    )?;
    Ok(mask)
}
