//! Launches of `kernels/norm.cu` (not written yet: each entry is a clear error).
#![allow(unused_variables)]

use super::storage::CudaStorage;
use super::DeviceApi;
use crate::backend::{NormActivation, NormStats};
use crate::error::{HeparError, Result};
use crate::tensor::layout::Layout;

fn pending<D: DeviceApi>(x: &CudaStorage<D>, op: &'static str) -> HeparError {
    HeparError::Backend {
        backend: "cuda",
        msg: format!("{}: `{op}` has no GPU kernel yet", x.device()),
    }
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
    Err(pending(x, "group_norm"))
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
    Err(pending(x, "group_norm_backward"))
}

#[allow(clippy::too_many_arguments)]
pub fn batch_norm_stats<D: DeviceApi>(
    x: &CudaStorage<D>,
    l: &Layout,
) -> Result<(Vec<f64>, Vec<f64>)> {
    Err(pending(x, "batch_norm_stats"))
}

#[allow(clippy::too_many_arguments)]
pub fn batch_norm_apply<D: DeviceApi>(
    x: &CudaStorage<D>,
    l: &Layout,
    mean: &[f64],
    rstd: &[f64],
    weight: Option<&CudaStorage<D>>,
    bias: Option<&CudaStorage<D>>,
) -> Result<CudaStorage<D>> {
    Err(pending(x, "batch_norm_apply"))
}

#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_backward<D: DeviceApi>(
    x: &CudaStorage<D>,
    l: &Layout,
    grad: &CudaStorage<D>,
    gl: &Layout,
    mean: &[f64],
    rstd: &[f64],
    weight: Option<&CudaStorage<D>>,
) -> Result<(CudaStorage<D>, CudaStorage<D>, CudaStorage<D>)> {
    Err(pending(x, "batch_norm_train_backward"))
}
