//! Conversions between host tensors (what files hold) and engine tensors.

use super::host_tensor::{HostData, HostTensor};
use crate::error::Result;
use crate::tensor::{DType, Tensor};

/// An engine tensor on the CPU with the file's values. Floating types keep their type; integer
/// types become f32 (they are counters and labels here).
pub fn to_tensor(h: &HostTensor) -> Result<Tensor> {
    let shape = h.shape();
    match h.data() {
        HostData::F32(v) => Tensor::from_slice(v, shape),
        HostData::F64(v) => Tensor::from_slice(v, shape),
        HostData::F16(v) => Tensor::from_slice(v, shape),
        HostData::BF16(v) => Tensor::from_slice(v, shape),
        _ => Tensor::from_vec(h.to_f32_vec(), shape),
    }
}

/// The tensor's values as a dense host tensor of the same float type.
pub fn to_host(t: &Tensor) -> Result<HostTensor> {
    let shape = t.shape().to_vec();
    match t.dtype() {
        DType::F64 => HostTensor::from_f64(shape, t.try_to_vec_f64()?),
        DType::F32 => HostTensor::from_f32(shape, t.try_to_vec_f32()?),
        DType::F16 => HostTensor::new(
            shape,
            HostData::F16(
                t.try_to_vec_f64()?
                    .into_iter()
                    .map(half::f16::from_f64)
                    .collect(),
            ),
        ),
        DType::BF16 => HostTensor::new(
            shape,
            HostData::BF16(
                t.try_to_vec_f64()?
                    .into_iter()
                    .map(half::bf16::from_f64)
                    .collect(),
            ),
        ),
    }
}
