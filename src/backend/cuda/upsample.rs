//! Launches of `kernels/upsample.cu` (not written yet: each entry is a clear error).
#![allow(unused_variables)]

use super::storage::CudaStorage;
use super::DeviceApi;
use crate::backend::UpsampleGeometry;
use crate::error::{HeparError, Result};

fn pending<D: DeviceApi>(x: &CudaStorage<D>, op: &'static str) -> HeparError {
    HeparError::Backend {
        backend: "cuda",
        msg: format!("{}: `{op}` has no GPU kernel yet", x.device()),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn upsample<D: DeviceApi>(x: &CudaStorage<D>, g: &UpsampleGeometry) -> Result<CudaStorage<D>> {
    Err(pending(x, "upsample"))
}

#[allow(clippy::too_many_arguments)]
pub fn upsample_backward<D: DeviceApi>(
    grad_out: &CudaStorage<D>,
    g: &UpsampleGeometry,
) -> Result<CudaStorage<D>> {
    Err(pending(grad_out, "upsample_backward"))
}
