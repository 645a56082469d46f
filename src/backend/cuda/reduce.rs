//! Launches of `kernels/reduce.cu` (not written yet: each entry is a clear error).
#![allow(unused_variables)]

use super::storage::CudaStorage;
use super::DeviceApi;
use crate::backend::ops::ReduceOp;
use crate::error::{HeparError, Result};
use crate::tensor::layout::Layout;

fn pending<D: DeviceApi>(x: &CudaStorage<D>, op: &'static str) -> HeparError {
    HeparError::Backend {
        backend: "cuda",
        msg: format!("{}: `{op}` has no GPU kernel yet", x.device()),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn reduce<D: DeviceApi>(
    x: &CudaStorage<D>,
    l: &Layout,
    axes: &[usize],
    op: ReduceOp,
) -> Result<CudaStorage<D>> {
    Err(pending(x, "reduce"))
}

#[allow(clippy::too_many_arguments)]
pub fn softmax<D: DeviceApi>(
    x: &CudaStorage<D>,
    l: &Layout,
    axis: usize,
    log: bool,
) -> Result<CudaStorage<D>> {
    Err(pending(x, "softmax"))
}
