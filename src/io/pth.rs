//! Reads the state_dict inside a `torch.save` zip checkpoint (`<folder>/data.pkl` plus one
//! `<folder>/data/<key>` entry per storage) without Python: the pickle is run by
//! [`super::pickle`], each `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`
//! is rebuilt as a contiguous [`HostTensor`], and the storages' device tag (`cuda:0`) is ignored.

use super::host_tensor::{checked_numel, DType, HostData, HostTensor};
use super::named_tensors::NamedTensors;
use super::pickle::{unpickle, Value};
use super::zip::ZipArchive;
use crate::error::{HeparError, Result};
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

/// Loads the state_dict of a `.pth` file: tensor names in the file's order.
pub fn load_pth(path: &Path) -> Result<NamedTensors> {
    let bytes = std::fs::read(path).map_err(|e| HeparError::io(path, e))?;
    parse_pth(path, &bytes)
}

/// Like [`load_pth`] on bytes already in memory; `path` names the file in errors.
pub fn parse_pth(path: &Path, bytes: &[u8]) -> Result<NamedTensors> {
    let archive = ZipArchive::parse(path, bytes)?;
    let fail = |msg: String| HeparError::format(path, msg);
    let pickle_name = archive
        .names()
        .iter()
        .find(|n| is_top_level_pickle(n))
        .cloned()
        .ok_or_else(|| fail("no data.pkl in the archive: not a torch.save checkpoint".into()))?;
    let folder = &pickle_name[..pickle_name.len() - "data.pkl".len()];

    let byteorder_name = format!("{folder}byteorder");
    let big_endian = if archive.contains(&byteorder_name) {
        match &*archive.read(&byteorder_name)? {
            b"little" => false,
            b"big" => true,
            other => {
                return Err(fail(format!(
                    "unknown byteorder '{}'",
                    String::from_utf8_lossy(other)
                )))
            }
        }
    } else {
        false // torch only started writing the record with big-endian support; older files are little
    };

    let pickle = archive.read(&pickle_name)?;
    let root = unpickle(path, &pickle)?;
    let entries = state_dict_entries(path, &root)?;

    let mut storages = StorageCache {
        archive: &archive,
        folder,
        big_endian,
        loaded: HashMap::new(),
    };
    let mut out = NamedTensors::new();
    for (key, value) in entries {
        let name = key.as_str().ok_or_else(|| {
            fail(format!(
                "state_dict key is {}, expected a string",
                key.kind()
            ))
        })?;
        let tensor = rebuild_tensor(path, name, value, &mut storages)?;
        out.insert(name, tensor)
            .map_err(|_| fail(format!("key '{name}' appears twice")))?;
    }
    Ok(out)
}

/// `data.pkl` at the root or in the archive's one top folder (its name varies by writer).
fn is_top_level_pickle(name: &str) -> bool {
    match name.split_once('/') {
        None => name == "data.pkl",
        Some((_, rest)) => rest == "data.pkl",
    }
}

/// The (key, tensor) pairs: the top-level dict, or the dict under a `state_dict` /
/// `model_state_dict` key when the file is a training checkpoint wrapping one.
fn state_dict_entries<'v>(path: &Path, root: &'v Value) -> Result<&'v [(Value, Value)]> {
    let Value::Dict(map) = root else {
        return Err(HeparError::format(
            path,
            format!("the pickle holds {}, expected a state_dict", root.kind()),
        ));
    };
    let holds_tensors = map
        .entries
        .iter()
        .any(|(_, v)| matches!(v, Value::Object(_)));
    if !holds_tensors {
        for wrapper in ["state_dict", "model_state_dict"] {
            if let Some((_, Value::Dict(inner))) = map
                .entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(wrapper))
            {
                return Ok(&inner.entries);
            }
        }
    }
    Ok(&map.entries)
}

struct StorageCache<'a, 'z> {
    archive: &'z ZipArchive<'a>,
    folder: &'z str,
    big_endian: bool,
    loaded: HashMap<String, Cow<'a, [u8]>>,
}

impl<'a, 'z> StorageCache<'a, 'z> {
    fn bytes(&mut self, key: &str) -> Result<&[u8]> {
        if !self.loaded.contains_key(key) {
            let bytes = self.archive.read(&format!("{}data/{key}", self.folder))?;
            self.loaded.insert(key.to_string(), bytes);
        }
        Ok(&self.loaded[key])
    }
}

/// Where a storage's elements live and what they are, from the persistent id
/// `('storage', torch.<Type>Storage, key, location, numel)`.
struct StorageRef {
    key: String,
    dtype: DType,
    numel: usize,
}

fn storage_dtype(class_name: &str) -> Option<DType> {
    Some(match class_name {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        // Bool storages hold one byte per element, 0 or 1.
        "ByteStorage" | "BoolStorage" | "UntypedStorage" => DType::U8,
        _ => return None,
    })
}

fn storage_ref(path: &Path, name: &str, value: &Value) -> Result<StorageRef> {
    let fail = |msg: String| HeparError::format(path, format!("tensor '{name}': {msg}"));
    let Value::Persistent(pid) = value else {
        return Err(fail(format!(
            "storage is {}, expected a persistent id",
            value.kind()
        )));
    };
    let items = pid
        .as_seq()
        .ok_or_else(|| fail(format!("storage id is {}, expected a tuple", pid.kind())))?;
    let [tag, class, key, _location, numel] = items else {
        return Err(fail(format!(
            "storage id has {} fields, expected 5",
            items.len()
        )));
    };
    if tag.as_str() != Some("storage") {
        return Err(fail("storage id does not start with 'storage'".into()));
    }
    let Value::Global(class) = class else {
        return Err(fail(format!("storage type is {}", class.kind())));
    };
    let dtype = storage_dtype(&class.name).ok_or_else(|| {
        fail(format!(
            "unsupported storage type {}.{}",
            class.module, class.name
        ))
    })?;
    let key = key
        .as_str()
        .ok_or_else(|| fail("storage key is not a string".into()))?;
    // A key is a file name inside the archive: nothing that could leave the data folder.
    if key.is_empty() || key.contains('/') || key.contains("..") {
        return Err(fail(format!("invalid storage key '{key}'")));
    }
    let numel = numel
        .as_int()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| fail("storage size is not a non-negative integer".into()))?;
    Ok(StorageRef {
        key: key.to_string(),
        dtype,
        numel,
    })
}

fn int_list(value: &Value) -> Option<Vec<usize>> {
    value
        .as_seq()?
        .iter()
        .map(|v| v.as_int().and_then(|i| usize::try_from(i).ok()))
        .collect()
}

fn rebuild_tensor(
    path: &Path,
    name: &str,
    value: &Value,
    storages: &mut StorageCache,
) -> Result<HostTensor> {
    let fail = |msg: String| HeparError::format(path, format!("tensor '{name}': {msg}"));
    let Value::Object(obj) = value else {
        return Err(fail(format!(
            "value is {}, expected a tensor",
            value.kind()
        )));
    };
    let args = obj
        .args
        .as_seq()
        .ok_or_else(|| fail("rebuild arguments are not a tuple".into()))?;
    match (obj.class.module.as_str(), obj.class.name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {}
        // nn.Parameter wraps the tensor: (tensor, requires_grad, hooks).
        ("torch._utils", "_rebuild_parameter")
        | ("torch._utils", "_rebuild_parameter_with_state") => {
            let inner = args
                .first()
                .ok_or_else(|| fail("parameter without data".into()))?;
            if matches!(inner, Value::Object(o) if o.class.name.starts_with("_rebuild_parameter")) {
                return Err(fail("parameter nested in a parameter".into()));
            }
            return rebuild_tensor(path, name, inner, storages);
        }
        (module, class) => {
            return Err(fail(format!(
                "value is a {module}.{class} object, expected a tensor"
            )))
        }
    }
    let [storage, offset, size, stride, ..] = args else {
        return Err(fail(format!(
            "rebuild takes (storage, offset, size, stride, ...), got {} arguments",
            args.len()
        )));
    };
    let storage = storage_ref(path, name, storage)?;
    let offset = offset
        .as_int()
        .and_then(|o| usize::try_from(o).ok())
        .ok_or_else(|| fail("storage offset is not a non-negative integer".into()))?;
    let shape = int_list(size)
        .ok_or_else(|| fail("size is not a tuple of non-negative integers".into()))?;
    let stride = int_list(stride)
        .ok_or_else(|| fail("stride is not a tuple of non-negative integers".into()))?;
    if stride.len() != shape.len() {
        return Err(fail(format!(
            "size {shape:?} and stride {stride:?} differ in length"
        )));
    }
    let numel = checked_numel(&shape).ok_or_else(|| fail(format!("size {shape:?} overflows")))?;
    // Only broadcast views (stride 0) have more elements than their storage; a state_dict never
    // holds one, and refusing them bounds every allocation by the file's size.
    if numel > storage.numel {
        return Err(fail(format!(
            "size {shape:?} has {numel} elements, more than its storage's {} (broadcast views are not supported)",
            storage.numel
        )));
    }

    let elem = storage.dtype.size_in_bytes();
    let bytes = storages.bytes(&storage.key)?;
    let needed = storage
        .numel
        .checked_mul(elem)
        .filter(|&n| n <= bytes.len())
        .ok_or_else(|| {
            fail(format!(
                "storage '{}' declares {} {} elements, its entry holds {} bytes",
                storage.key,
                storage.numel,
                storage.dtype,
                bytes.len()
            ))
        })?;
    let bytes = &bytes[..needed];

    let contiguous = if numel == 0 {
        Vec::new()
    } else {
        // The last element reached must lie inside the storage.
        let last = shape.iter().zip(&stride).try_fold(offset, |acc, (&n, &s)| {
            (n - 1).checked_mul(s).and_then(|d| acc.checked_add(d))
        });
        match last {
            Some(last) if last < storage.numel => gather(bytes, elem, offset, &shape, &stride, numel),
            _ => {
                return Err(fail(format!(
                    "offset {offset}, size {shape:?}, stride {stride:?} reach past the {} elements of storage '{}'",
                    storage.numel, storage.key
                )))
            }
        }
    };
    let mut contiguous = contiguous;
    if storages.big_endian {
        contiguous.chunks_exact_mut(elem).for_each(|c| c.reverse());
    }
    let data = HostData::from_le_bytes(storage.dtype, &contiguous)
        .ok_or_else(|| fail("element bytes do not divide into elements".into()))?;
    HostTensor::new(shape, data)
}

/// Copies the strided elements into row-major order. Bounds were checked by the caller.
fn gather(
    bytes: &[u8],
    elem: usize,
    offset: usize,
    shape: &[usize],
    stride: &[usize],
    numel: usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(numel * elem);
    let row_major = {
        let mut expect = 1;
        let mut ok = true;
        for (&n, &s) in shape.iter().zip(stride).rev() {
            ok &= n == 1 || s == expect;
            expect *= n;
        }
        ok
    };
    if row_major {
        out.extend_from_slice(&bytes[offset * elem..(offset + numel) * elem]);
        return out;
    }
    let mut index = vec![0usize; shape.len()];
    for _ in 0..numel {
        let at: usize = offset
            + index
                .iter()
                .zip(stride)
                .map(|(&i, &s)| i * s)
                .sum::<usize>();
        out.extend_from_slice(&bytes[at * elem..(at + 1) * elem]);
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::test_support::{state_dict_pickle, TensorSpec, ZipBuilder};
    use half::{bf16, f16};

    fn archive(
        folder: &str,
        pickle: &[u8],
        storages: &[(&str, Vec<u8>)],
        deflate: bool,
    ) -> Vec<u8> {
        let mut zip = ZipBuilder::new();
        zip.add_stored(&format!("{folder}/data.pkl"), pickle);
        zip.add_stored(&format!("{folder}/byteorder"), b"little");
        for (key, bytes) in storages {
            let name = format!("{folder}/data/{key}");
            if deflate {
                zip.add_deflated(&name, bytes);
            } else {
                zip.add_stored(&name, bytes);
            }
        }
        zip.add_stored(&format!("{folder}/version"), b"3\n");
        zip.finish()
    }

    fn le<T: bytemuck::Pod>(v: &[T]) -> Vec<u8> {
        bytemuck::cast_slice(v).to_vec()
    }

    #[test]
    fn rebuilds_offsets_strides_and_dtypes() {
        let pickle = state_dict_pickle(&[
            // A transposed 2x3 view of a 3x2 storage, starting one element in.
            TensorSpec {
                name: "w",
                storage_class: "FloatStorage",
                storage: "0",
                storage_numel: 7,
                offset: 1,
                size: &[2, 3],
                stride: &[1, 2],
            },
            TensorSpec {
                name: "d",
                storage_class: "DoubleStorage",
                storage: "1",
                storage_numel: 2,
                offset: 0,
                size: &[2],
                stride: &[1],
            },
            TensorSpec {
                name: "h",
                storage_class: "HalfStorage",
                storage: "2",
                storage_numel: 2,
                offset: 1,
                size: &[1],
                stride: &[1],
            },
            TensorSpec {
                name: "b",
                storage_class: "BFloat16Storage",
                storage: "3",
                storage_numel: 1,
                offset: 0,
                size: &[],
                stride: &[],
            },
            TensorSpec {
                name: "n",
                storage_class: "LongStorage",
                storage: "4",
                storage_numel: 1,
                offset: 0,
                size: &[],
                stride: &[],
            },
            // Shares storage 0 with `w`, which must be read once and sliced twice.
            TensorSpec {
                name: "w_tail",
                storage_class: "FloatStorage",
                storage: "0",
                storage_numel: 7,
                offset: 5,
                size: &[2],
                stride: &[1],
            },
            TensorSpec {
                name: "empty",
                storage_class: "FloatStorage",
                storage: "0",
                storage_numel: 7,
                offset: 0,
                size: &[0, 4],
                stride: &[4, 1],
            },
        ]);
        let storages = [
            ("0", le(&[9.0f32, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0])),
            ("1", le(&[0.5f64, -0.25])),
            ("2", le(&[f16::from_f32(1.0), f16::from_f32(-2.5)])),
            ("3", le(&[bf16::from_f32(3.0)])),
            ("4", le(&[12345i64])),
        ];
        for deflate in [false, true] {
            let bytes = archive("some_model", &pickle, &storages, deflate);
            let sd = parse_pth(Path::new("synthetic.pth"), &bytes).unwrap();
            assert_eq!(
                sd.names().collect::<Vec<_>>(),
                ["w", "d", "h", "b", "n", "w_tail", "empty"]
            );
            let w = sd.get("w").unwrap();
            assert_eq!(w.shape(), &[2, 3]);
            // Element (i, j) sits at 1 + i + 2j: storage values 0,2,4 / 1,3,5.
            assert_eq!(w.to_f32_vec(), vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
            assert_eq!(
                sd.get("d").unwrap().data(),
                &HostData::F64(vec![0.5, -0.25])
            );
            assert_eq!(sd.get("h").unwrap().to_f32_vec(), vec![-2.5]);
            assert_eq!(sd.get("b").unwrap().shape(), &[] as &[usize]);
            assert_eq!(sd.get("b").unwrap().to_f32_vec(), vec![3.0]);
            assert_eq!(sd.get("n").unwrap().data(), &HostData::I64(vec![12345]));
            assert_eq!(sd.get("w_tail").unwrap().to_f32_vec(), vec![4.0, 5.0]);
            assert_eq!(sd.get("empty").unwrap().shape(), &[0, 4]);
        }
    }

    #[test]
    fn strides_past_the_storage_are_an_error_naming_the_tensor() {
        let pickle = state_dict_pickle(&[TensorSpec {
            name: "enc1.weight",
            storage_class: "FloatStorage",
            storage: "0",
            storage_numel: 4,
            offset: 1,
            size: &[2, 2],
            stride: &[2, 1],
        }]);
        let bytes = archive("m", &pickle, &[("0", le(&[0f32; 4]))], false);
        let err = parse_pth(Path::new("bad.pth"), &bytes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("bad.pth") && err.contains("'enc1.weight'") && err.contains("reach past"),
            "{err}"
        );
    }

    #[test]
    fn broadcast_view_larger_than_its_storage_is_refused() {
        let pickle = state_dict_pickle(&[TensorSpec {
            name: "expanded",
            storage_class: "FloatStorage",
            storage: "0",
            storage_numel: 1,
            offset: 0,
            size: &[1 << 40],
            stride: &[0],
        }]);
        let bytes = archive("m", &pickle, &[("0", le(&[1f32]))], false);
        let err = parse_pth(Path::new("b.pth"), &bytes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'expanded'") && err.contains("broadcast views are not supported"),
            "{err}"
        );
    }

    #[test]
    fn short_storage_entry_and_unknown_storage_type_are_errors() {
        let spec = |class| TensorSpec {
            name: "x",
            storage_class: class,
            storage: "0",
            storage_numel: 4,
            offset: 0,
            size: &[4],
            stride: &[1],
        };
        let bytes = archive(
            "m",
            &state_dict_pickle(&[spec("FloatStorage")]),
            &[("0", le(&[0f32; 3]))],
            false,
        );
        let err = parse_pth(Path::new("short.pth"), &bytes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("declares 4 float32 elements, its entry holds 12 bytes"),
            "{err}"
        );
        let bytes = archive(
            "m",
            &state_dict_pickle(&[spec("ComplexFloatStorage")]),
            &[("0", le(&[0f32; 8]))],
            false,
        );
        let err = parse_pth(Path::new("c.pth"), &bytes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unsupported storage type torch.ComplexFloatStorage"),
            "{err}"
        );
        let bytes = archive("m", &state_dict_pickle(&[spec("FloatStorage")]), &[], false);
        let err = parse_pth(Path::new("missing.pth"), &bytes)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'m/data/0'") && err.contains("not in the archive"),
            "{err}"
        );
    }

    /// Flipped and truncated pickles (re-zipped with a valid CRC, so the pickle machine and the
    /// tensor rebuild see the damage) must give errors, never panics.
    #[test]
    fn damaged_pickles_never_panic() {
        let specs: Vec<TensorSpec> = ["a", "b", "c"]
            .iter()
            .map(|&n| TensorSpec {
                name: n,
                storage_class: "FloatStorage",
                storage: "0",
                storage_numel: 6,
                offset: 0,
                size: &[2, 3],
                stride: &[3, 1],
            })
            .collect();
        let pickle = state_dict_pickle(&specs);
        let storages = [("0", le(&[1f32; 6]))];
        assert!(parse_pth(
            Path::new("ok.pth"),
            &archive("m", &pickle, &storages, false)
        )
        .is_ok());
        for pos in 0..pickle.len() {
            for mask in [0x01u8, 0x80, 0xFF] {
                let mut p = pickle.clone();
                p[pos] ^= mask;
                let _ = parse_pth(Path::new("f.pth"), &archive("m", &p, &storages, false));
            }
        }
        for len in 0..pickle.len() {
            let r = parse_pth(
                Path::new("t.pth"),
                &archive("m", &pickle[..len], &storages, false),
            );
            assert!(r.is_err(), "pickle truncated to {len} bytes loaded");
        }
    }
}
