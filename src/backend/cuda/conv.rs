//! Launches of `kernels/conv.cu` (not written yet: each entry is a clear error).
#![allow(unused_variables)]

use super::storage::CudaStorage;
use super::DeviceApi;
use crate::backend::{ConvGeometry, ConvTransposeGeometry};
use crate::error::{HeparError, Result};

fn pending<D: DeviceApi>(x: &CudaStorage<D>, op: &'static str) -> HeparError {
    HeparError::Backend {
        backend: "cuda",
        msg: format!("{}: `{op}` has no GPU kernel yet", x.device()),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn conv<D: DeviceApi>(
    x: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    bias: Option<&CudaStorage<D>>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    Err(pending(x, "conv"))
}

#[allow(clippy::too_many_arguments)]
pub fn conv_backward_input<D: DeviceApi>(
    grad_out: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    Err(pending(grad_out, "conv_backward_input"))
}

#[allow(clippy::too_many_arguments)]
pub fn conv_backward_weight<D: DeviceApi>(
    x: &CudaStorage<D>,
    grad_out: &CudaStorage<D>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    Err(pending(x, "conv_backward_weight"))
}

#[allow(clippy::too_many_arguments)]
pub fn conv_transpose<D: DeviceApi>(
    x: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    bias: Option<&CudaStorage<D>>,
    g: &ConvTransposeGeometry,
) -> Result<CudaStorage<D>> {
    Err(pending(x, "conv_transpose"))
}

#[allow(clippy::too_many_arguments)]
pub fn conv_transpose_backward_input<D: DeviceApi>(
    grad_out: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    g: &ConvTransposeGeometry,
) -> Result<CudaStorage<D>> {
    Err(pending(grad_out, "conv_transpose_backward_input"))
}

#[allow(clippy::too_many_arguments)]
pub fn conv_transpose_backward_weight<D: DeviceApi>(
    x: &CudaStorage<D>,
    grad_out: &CudaStorage<D>,
    g: &ConvTransposeGeometry,
) -> Result<CudaStorage<D>> {
    Err(pending(x, "conv_transpose_backward_weight"))
}
