//! `HostTensor`: a dense, contiguous, row-major array in host memory with its element type. It
//! is the exchange type between files (`.pth`, safetensors, fixtures) and the engine's tensors.

use crate::error::{HeparError, Result};
use half::{bf16, f16};
use std::borrow::Cow;

/// Element types a file may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    U8,
}

impl DType {
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::U8 => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::U8 => "uint8",
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The elements of a tensor, one vector per element type.
#[derive(Debug, Clone, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U8(Vec<u8>),
}

macro_rules! map_elements {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            HostData::F32($v) => $body,
            HostData::F64($v) => $body,
            HostData::F16($v) => $body,
            HostData::BF16($v) => $body,
            HostData::I64($v) => $body,
            HostData::I32($v) => $body,
            HostData::U8($v) => $body,
        }
    };
}

impl HostData {
    pub fn dtype(&self) -> DType {
        match self {
            HostData::F32(_) => DType::F32,
            HostData::F64(_) => DType::F64,
            HostData::F16(_) => DType::F16,
            HostData::BF16(_) => DType::BF16,
            HostData::I64(_) => DType::I64,
            HostData::I32(_) => DType::I32,
            HostData::U8(_) => DType::U8,
        }
    }

    pub fn len(&self) -> usize {
        map_elements!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every element converted to f32 (integers and wider floats are rounded).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match self {
            HostData::F32(v) => v.clone(),
            HostData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            HostData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            HostData::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            HostData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            HostData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            HostData::U8(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// Every element converted to f64 (exact except for integers beyond 2^53).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            HostData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            HostData::F64(v) => v.clone(),
            HostData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            HostData::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
            HostData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            HostData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            HostData::U8(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// Decodes little-endian bytes; `None` when the length is not a whole number of elements.
    pub fn from_le_bytes(dtype: DType, bytes: &[u8]) -> Option<HostData> {
        if !bytes.len().is_multiple_of(dtype.size_in_bytes()) {
            return None;
        }
        fn decode<const N: usize, T>(bytes: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
            bytes
                .chunks_exact(N)
                .map(|c| {
                    let mut a = [0u8; N];
                    a.copy_from_slice(c);
                    f(a)
                })
                .collect()
        }
        Some(match dtype {
            DType::F32 => HostData::F32(decode(bytes, f32::from_le_bytes)),
            DType::F64 => HostData::F64(decode(bytes, f64::from_le_bytes)),
            DType::F16 => HostData::F16(decode(bytes, |a| f16::from_bits(u16::from_le_bytes(a)))),
            DType::BF16 => {
                HostData::BF16(decode(bytes, |a| bf16::from_bits(u16::from_le_bytes(a))))
            }
            DType::I64 => HostData::I64(decode(bytes, i64::from_le_bytes)),
            DType::I32 => HostData::I32(decode(bytes, i32::from_le_bytes)),
            DType::U8 => HostData::U8(bytes.to_vec()),
        })
    }

    /// The elements as little-endian bytes; borrowed on little-endian machines.
    pub fn as_le_bytes(&self) -> Cow<'_, [u8]> {
        #[cfg(target_endian = "little")]
        {
            map_elements!(self, v => Cow::Borrowed(bytemuck::cast_slice(v.as_slice())))
        }
        #[cfg(not(target_endian = "little"))]
        {
            let mut bytes: Vec<u8> =
                map_elements!(self, v => bytemuck::cast_slice(v.as_slice()).to_vec());
            let size = self.dtype().size_in_bytes();
            bytes.chunks_exact_mut(size).for_each(|c| c.reverse());
            Cow::Owned(bytes)
        }
    }
}

/// A dense row-major tensor in host memory. The element count always equals the product of the
/// shape (checked by [`HostTensor::new`]), so consumers can rely on it.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    shape: Vec<usize>,
    data: HostData,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: HostData) -> Result<HostTensor> {
        let numel = checked_numel(&shape).ok_or_else(|| {
            HeparError::shape("HostTensor::new", format!("shape {shape:?} overflows"))
        })?;
        if numel != data.len() {
            return Err(HeparError::shape(
                "HostTensor::new",
                format!(
                    "shape {shape:?} needs {numel} elements, data holds {}",
                    data.len()
                ),
            ));
        }
        Ok(HostTensor { shape, data })
    }

    pub fn from_f32(shape: Vec<usize>, values: Vec<f32>) -> Result<HostTensor> {
        HostTensor::new(shape, HostData::F32(values))
    }

    pub fn from_f64(shape: Vec<usize>, values: Vec<f64>) -> Result<HostTensor> {
        HostTensor::new(shape, HostData::F64(values))
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &HostData {
        &self.data
    }

    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn into_parts(self) -> (Vec<usize>, HostData) {
        (self.shape, self.data)
    }

    pub fn to_f32_vec(&self) -> Vec<f32> {
        self.data.to_f32_vec()
    }

    pub fn to_f64_vec(&self) -> Vec<f64> {
        self.data.to_f64_vec()
    }

    /// A copy with every element converted to `dtype` (through f64 for floats).
    pub fn to_dtype(&self, dtype: DType) -> HostTensor {
        if dtype == self.dtype() {
            return self.clone();
        }
        let data = match dtype {
            DType::F32 => HostData::F32(self.data.to_f32_vec()),
            DType::F64 => HostData::F64(self.data.to_f64_vec()),
            DType::F16 => HostData::F16(
                self.data
                    .to_f32_vec()
                    .into_iter()
                    .map(f16::from_f32)
                    .collect(),
            ),
            DType::BF16 => HostData::BF16(
                self.data
                    .to_f32_vec()
                    .into_iter()
                    .map(bf16::from_f32)
                    .collect(),
            ),
            DType::I64 => HostData::I64(
                self.data
                    .to_f64_vec()
                    .into_iter()
                    .map(|x| x as i64)
                    .collect(),
            ),
            DType::I32 => HostData::I32(
                self.data
                    .to_f64_vec()
                    .into_iter()
                    .map(|x| x as i32)
                    .collect(),
            ),
            DType::U8 => HostData::U8(
                self.data
                    .to_f64_vec()
                    .into_iter()
                    .map(|x| x as u8)
                    .collect(),
            ),
        };
        HostTensor {
            shape: self.shape.clone(),
            data,
        }
    }
}

/// Product of the dimensions, `None` on overflow.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_rejects_element_count_that_does_not_fit_the_shape() {
        let err = HostTensor::new(vec![2, 3], HostData::F32(vec![0.0; 5])).unwrap_err();
        assert!(
            err.to_string()
                .contains("[2, 3] needs 6 elements, data holds 5"),
            "{err}"
        );
        assert!(HostTensor::new(vec![usize::MAX, 2], HostData::U8(vec![])).is_err());
    }

    #[test]
    fn le_bytes_round_trip_every_dtype() {
        let samples = [
            HostData::F32(vec![1.5, -2.25]),
            HostData::F64(vec![1e-300, -3.0]),
            HostData::F16(vec![f16::from_f32(0.5), f16::from_f32(-7.0)]),
            HostData::BF16(vec![bf16::from_f32(3.0), bf16::from_f32(-0.125)]),
            HostData::I64(vec![i64::MIN, 42]),
            HostData::I32(vec![-5, 7]),
            HostData::U8(vec![0, 255]),
        ];
        for data in samples {
            let bytes = data.as_le_bytes().into_owned();
            assert_eq!(bytes.len(), 2 * data.dtype().size_in_bytes());
            assert_eq!(HostData::from_le_bytes(data.dtype(), &bytes).unwrap(), data);
            assert!(
                HostData::from_le_bytes(data.dtype(), &bytes[..bytes.len() - 1]).is_none()
                    || data.dtype() == DType::U8
            );
        }
    }

    #[test]
    fn conversions_to_float_vectors() {
        let t = HostTensor::new(vec![3], HostData::I64(vec![-1, 0, 7])).unwrap();
        assert_eq!(t.to_f32_vec(), vec![-1.0, 0.0, 7.0]);
        assert_eq!(t.to_f64_vec(), vec![-1.0, 0.0, 7.0]);
        let h = HostTensor::new(
            vec![2],
            HostData::BF16(vec![bf16::from_f32(2.0), bf16::from_f32(-0.5)]),
        )
        .unwrap();
        assert_eq!(h.to_f64_vec(), vec![2.0, -0.5]);
        assert_eq!(h.to_dtype(DType::F16).to_f32_vec(), vec![2.0, -0.5]);
    }
}
