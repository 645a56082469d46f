//! Launches of `kernels/matmul.cu` (not written yet: each entry is a clear error).
#![allow(unused_variables)]

use super::storage::CudaStorage;
use super::DeviceApi;
use crate::error::{HeparError, Result};
use crate::tensor::layout::Layout;

fn pending<D: DeviceApi>(x: &CudaStorage<D>, op: &'static str) -> HeparError {
    HeparError::Backend {
        backend: "cuda",
        msg: format!("{}: `{op}` has no GPU kernel yet", x.device()),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn matmul<D: DeviceApi>(
    a: &CudaStorage<D>,
    l: &Layout,
    b: &CudaStorage<D>,
    rl: &Layout,
) -> Result<CudaStorage<D>> {
    Err(pending(a, "matmul"))
}
