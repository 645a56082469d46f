//! Launches of `kernels/pool.cu` (not written yet: each entry is a clear error).
#![allow(unused_variables)]

use super::storage::CudaStorage;
use super::DeviceApi;
use crate::backend::PoolGeometry;
use crate::error::{HeparError, Result};

fn pending<D: DeviceApi>(x: &CudaStorage<D>, op: &'static str) -> HeparError {
    HeparError::Backend {
        backend: "cuda",
        msg: format!("{}: `{op}` has no GPU kernel yet", x.device()),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn max_pool<D: DeviceApi>(x: &CudaStorage<D>, g: &PoolGeometry) -> Result<CudaStorage<D>> {
    Err(pending(x, "max_pool"))
}

#[allow(clippy::too_many_arguments)]
pub fn max_pool_backward<D: DeviceApi>(
    x: &CudaStorage<D>,
    grad_out: &CudaStorage<D>,
    g: &PoolGeometry,
) -> Result<CudaStorage<D>> {
    Err(pending(x, "max_pool_backward"))
}

#[allow(clippy::too_many_arguments)]
pub fn avg_pool<D: DeviceApi>(
    x: &CudaStorage<D>,
    g: &PoolGeometry,
    count_include_pad: bool,
) -> Result<CudaStorage<D>> {
    Err(pending(x, "avg_pool"))
}

#[allow(clippy::too_many_arguments)]
pub fn avg_pool_backward<D: DeviceApi>(
    grad_out: &CudaStorage<D>,
    g: &PoolGeometry,
    count_include_pad: bool,
) -> Result<CudaStorage<D>> {
    Err(pending(grad_out, "avg_pool_backward"))
}
