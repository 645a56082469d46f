//! Named tensors plus string metadata in the safetensors format (a JSON header, then raw
//! little-endian data), read into [`HostTensor`]s and written atomically.

use super::host_tensor::{DType, HostData, HostTensor};
use super::named_tensors::NamedTensors;
use crate::error::{HeparError, Result};
use crate::util::atomic_write::write_atomic;
use safetensors::tensor::{Dtype as StDtype, SafeTensors, View};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The content of a safetensors file: tensors in file order and the `__metadata__` strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TensorFile {
    pub tensors: NamedTensors,
    pub metadata: BTreeMap<String, String>,
}

pub fn read_safetensors(path: &Path) -> Result<TensorFile> {
    let bytes = std::fs::read(path).map_err(|e| HeparError::io(path, e))?;
    parse_safetensors(path, &bytes)
}

/// Parses safetensors bytes; `path` names the file in errors.
pub fn parse_safetensors(path: &Path, bytes: &[u8]) -> Result<TensorFile> {
    let fail = |msg: String| HeparError::format(path, msg);
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| fail(format!("not a valid safetensors file: {e}")))?;
    let file = SafeTensors::deserialize(bytes)
        .map_err(|e| fail(format!("not a valid safetensors file: {e}")))?;
    let mut tensors = NamedTensors::new();
    for name in header.offset_keys() {
        let view = file
            .tensor(&name)
            .map_err(|e| fail(format!("tensor '{name}': {e}")))?;
        let dtype = from_safetensors_dtype(view.dtype()).ok_or_else(|| {
            fail(format!(
                "tensor '{name}': unsupported dtype {:?}",
                view.dtype()
            ))
        })?;
        let data = HostData::from_le_bytes(dtype, view.data()).ok_or_else(|| {
            fail(format!(
                "tensor '{name}': data is not a whole number of {dtype} elements"
            ))
        })?;
        let tensor = HostTensor::new(view.shape().to_vec(), data)
            .map_err(|e| fail(format!("tensor '{name}': {e}")))?;
        tensors
            .insert(name.clone(), tensor)
            .map_err(|e| fail(e.to_string()))?;
    }
    let metadata = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok(TensorFile { tensors, metadata })
}

/// Writes `tensors` and `metadata` to `path` atomically (a crash leaves the old file intact).
pub fn write_safetensors(
    path: &Path,
    tensors: &NamedTensors,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let bytes =
        serialize_safetensors(tensors, metadata).map_err(|e| HeparError::format(path, e))?;
    write_atomic(path, &bytes)
}

/// The safetensors bytes of `tensors` and `metadata`.
pub fn serialize_safetensors(
    tensors: &NamedTensors,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>, String> {
    let views = tensors.iter().map(|(name, t)| (name, HostView(t)));
    let info: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let info = if info.is_empty() { None } else { Some(info) };
    safetensors::serialize(views, info).map_err(|e| format!("cannot serialize to safetensors: {e}"))
}

struct HostView<'a>(&'a HostTensor);

impl View for HostView<'_> {
    fn dtype(&self) -> StDtype {
        to_safetensors_dtype(self.0.dtype())
    }
    fn shape(&self) -> &[usize] {
        self.0.shape()
    }
    fn data(&self) -> Cow<'_, [u8]> {
        self.0.data().as_le_bytes()
    }
    fn data_len(&self) -> usize {
        self.0.numel() * self.0.dtype().size_in_bytes()
    }
}

fn to_safetensors_dtype(dtype: DType) -> StDtype {
    match dtype {
        DType::F32 => StDtype::F32,
        DType::F64 => StDtype::F64,
        DType::F16 => StDtype::F16,
        DType::BF16 => StDtype::BF16,
        DType::I64 => StDtype::I64,
        DType::I32 => StDtype::I32,
        DType::U8 => StDtype::U8,
    }
}

fn from_safetensors_dtype(dtype: StDtype) -> Option<DType> {
    Some(match dtype {
        StDtype::F32 => DType::F32,
        StDtype::F64 => DType::F64,
        StDtype::F16 => DType::F16,
        StDtype::BF16 => DType::BF16,
        StDtype::I64 => DType::I64,
        StDtype::I32 => DType::I32,
        StDtype::U8 | StDtype::BOOL => DType::U8,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;

    #[test]
    fn round_trip_keeps_names_order_dtypes_and_metadata() {
        let dir = std::env::temp_dir().join(format!("hepar-st-{}", std::process::id()));
        let path = dir.join("t.safetensors");
        let mut tensors = NamedTensors::new();
        tensors
            .insert(
                "b.weight",
                HostTensor::from_f32(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]).unwrap(),
            )
            .unwrap();
        tensors
            .insert(
                "a.count",
                HostTensor::new(vec![], HostData::I64(vec![7])).unwrap(),
            )
            .unwrap();
        tensors
            .insert(
                "c.half",
                HostTensor::new(vec![1], HostData::BF16(vec![bf16::from_f32(0.5)])).unwrap(),
            )
            .unwrap();
        tensors
            .insert(
                "d.double",
                HostTensor::from_f64(vec![3], vec![1e-300, 2.0, -3.0]).unwrap(),
            )
            .unwrap();
        let metadata = BTreeMap::from([("kind".to_string(), "test".to_string())]);
        write_safetensors(&path, &tensors, &metadata).unwrap();
        let back = read_safetensors(&path).unwrap();
        assert_eq!(back.metadata, metadata);
        assert_eq!(back.tensors.len(), 4);
        for (name, t) in tensors.iter() {
            assert_eq!(back.tensors.get(name), Some(t), "{name}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_bytes_are_errors_naming_the_file() {
        let mut tensors = NamedTensors::new();
        tensors
            .insert("x", HostTensor::from_f32(vec![4], vec![0.0; 4]).unwrap())
            .unwrap();
        let bytes = serialize_safetensors(&tensors, &BTreeMap::new()).unwrap();
        for len in 0..bytes.len() {
            let err = parse_safetensors(Path::new("cut.safetensors"), &bytes[..len]).unwrap_err();
            assert!(err.to_string().contains("cut.safetensors"), "{err}");
        }
        for pos in 0..bytes.len() {
            let mut b = bytes.clone();
            b[pos] ^= 0x5A;
            let _ = parse_safetensors(Path::new("flip.safetensors"), &b);
        }
    }
}
