//! On-disk cache of preprocessed cases, so later epochs and runs skip reading and resampling.
//!
//! Layout: `<cache_dir>/<stage>-v<FORMAT_VERSION>-<settings hash>/<case id>-<source hash>.bin`.
//! The folder changes whenever the preprocessing settings or the file format change, the file
//! name whenever a source file's path, size or modification time changes, so a stale entry is
//! never read. Entries are written atomically; a corrupt entry is reported and rebuilt.
//!
//! Entry format: magic `HEPARPP1`, u32 LE length of a JSON description, the JSON, then the f32
//! arrays it lists, little endian, in order.

use crate::error::{HeparError, Result};
use crate::util::atomic_write::write_atomic_with;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Bumped whenever the entry format or the meaning of a preprocessing step changes.
pub const FORMAT_VERSION: u32 = 1;
const MAGIC: &[u8; 8] = b"HEPARPP1";

/// 64-bit FNV-1a: a stable hash for cache keys (std's hasher may change between releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// An entry as read back: its metadata and its arrays in stored order.
pub type CacheEntry = (serde_json::Value, Vec<(ArrayInfo, Vec<f32>)>);

/// A named f32 array with its shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArrayInfo {
    pub name: String,
    pub shape: Vec<usize>,
}

/// What an entry holds: arrays plus free-form metadata of the stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct EntryDescription {
    arrays: Vec<ArrayInfo>,
    meta: serde_json::Value,
}

/// A cache folder for one stage and one set of settings.
#[derive(Debug, Clone)]
pub struct PreprocessCache {
    dir: PathBuf,
}

impl PreprocessCache {
    /// `settings` is anything serialisable that fully determines the stage's output.
    pub fn new(cache_dir: &Path, stage: &str, settings: &impl Serialize) -> Result<Self> {
        let json = serde_json::to_vec(settings)
            .map_err(|e| HeparError::Config(format!("cache settings: {e}")))?;
        let dir = cache_dir.join(format!("{stage}-v{FORMAT_VERSION}-{:016x}", fnv1a(&json)));
        Ok(PreprocessCache { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry path of a case made from `sources`.
    pub fn entry_path(&self, case_id: &str, sources: &[&Path]) -> Result<PathBuf> {
        let mut key = Vec::new();
        for source in sources {
            let meta = std::fs::metadata(source).map_err(|e| HeparError::io(*source, e))?;
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            key.extend_from_slice(source.to_string_lossy().as_bytes());
            key.extend_from_slice(&meta.len().to_le_bytes());
            key.extend_from_slice(&modified.to_le_bytes());
        }
        let safe_id: String = case_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Ok(self.dir.join(format!("{safe_id}-{:016x}.bin", fnv1a(&key))))
    }

    pub fn write(
        path: &Path,
        meta: serde_json::Value,
        arrays: &[(&str, &[usize], &[f32])],
    ) -> Result<()> {
        for (name, shape, data) in arrays {
            if shape.iter().product::<usize>() != data.len() {
                return Err(HeparError::shape(
                    "cache write",
                    format!("array {name}: shape {shape:?} vs {} values", data.len()),
                ));
            }
        }
        let description = EntryDescription {
            arrays: arrays
                .iter()
                .map(|(n, s, _)| ArrayInfo {
                    name: n.to_string(),
                    shape: s.to_vec(),
                })
                .collect(),
            meta,
        };
        let json = serde_json::to_vec(&description)
            .map_err(|e| HeparError::format(path, e.to_string()))?;
        write_atomic_with(path, |w| {
            w.write_all(MAGIC)?;
            w.write_all(&(json.len() as u32).to_le_bytes())?;
            w.write_all(&json)?;
            for (_, _, data) in arrays {
                w.write_all(bytemuck::cast_slice(data))?;
            }
            Ok(())
        })
    }

    /// Reads an entry: its metadata and arrays by name order.
    pub fn read(path: &Path) -> Result<CacheEntry> {
        let bytes = std::fs::read(path).map_err(|e| HeparError::io(path, e))?;
        let corrupt = |msg: &str| HeparError::format(path, format!("corrupt cache entry: {msg}"));
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(corrupt("bad magic"));
        }
        let json_len =
            u32::from_le_bytes(bytes[8..12].try_into().map_err(|_| corrupt("header"))?) as usize;
        let json = bytes
            .get(12..12 + json_len)
            .ok_or_else(|| corrupt("truncated description"))?;
        let description: EntryDescription =
            serde_json::from_slice(json).map_err(|e| corrupt(&e.to_string()))?;
        let mut offset = 12 + json_len;
        let mut arrays = Vec::with_capacity(description.arrays.len());
        for info in description.arrays {
            let n: usize = info.shape.iter().product();
            let raw = bytes
                .get(offset..offset + 4 * n)
                .ok_or_else(|| corrupt(&format!("array {} truncated", info.name)))?;
            let data: Vec<f32> = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            offset += 4 * n;
            arrays.push((info, data));
        }
        if offset != bytes.len() {
            return Err(corrupt("trailing bytes"));
        }
        Ok((description.meta, arrays))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_round_trip_and_corruption_is_detected() {
        let dir = std::env::temp_dir().join(format!("hepar-cache-unit-{}", std::process::id()));
        let cache = PreprocessCache::new(&dir, "stage1", &("a", 1)).unwrap();
        let other = PreprocessCache::new(&dir, "stage1", &("a", 2)).unwrap();
        assert_ne!(cache.dir(), other.dir());
        let path = cache.dir().join("case.bin");
        let a = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        PreprocessCache::write(
            &path,
            serde_json::json!({"k": 3}),
            &[("a", &[2, 3], &a), ("b", &[1], &[9.0])],
        )
        .unwrap();
        let (meta, arrays) = PreprocessCache::read(&path).unwrap();
        assert_eq!(meta["k"], 3);
        assert_eq!(arrays[0].1, a.to_vec());
        assert_eq!(arrays[1].0.shape, vec![1]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        assert!(PreprocessCache::read(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
