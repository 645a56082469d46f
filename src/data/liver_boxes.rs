//! Liver bounding boxes per case, in the seed's `bbox.json` format:
//! `[{"patient_id": N, "bbox": [z0, z1, y0, y1, x0, x1]}]`, voxel indices of the source CT in
//! (z, y, x) order, each range half-open (`z0..z1`, as a Python slice). The seed built its stage-2
//! dataset from the boxes its stage-1 network predicted; `patient_id` is the case number of the
//! dataset layout (`volume-N`, `liver_N`).

use super::preprocess::CropBox;
use crate::error::{HeparError, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The file name the seed used, kept in a stage-2 run folder.
pub const BBOX_FILE: &str = "bbox.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    patient_id: u64,
    bbox: [usize; 6],
}

/// Boxes by case number.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LiverBoxes {
    by_case: BTreeMap<u64, CropBox>,
}

impl LiverBoxes {
    pub fn insert(&mut self, case_number: u64, liver_box: CropBox) {
        self.by_case.insert(case_number, liver_box);
    }

    pub fn get(&self, case_number: u64) -> Option<CropBox> {
        self.by_case.get(&case_number).copied()
    }

    pub fn len(&self) -> usize {
        self.by_case.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_case.is_empty()
    }

    /// (case number, box) in case order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, CropBox)> + '_ {
        self.by_case.iter().map(|(&n, &b)| (n, b))
    }

    /// The seed's JSON text.
    pub fn to_json(&self) -> String {
        // One case per line, as compact as the seed's file.
        let lines: Vec<String> = self
            .iter()
            .map(|(patient_id, b)| {
                let [z0, y0, x0] = b.start_zyx;
                let [d, h, w] = b.shape_zyx;
                let entry = Entry {
                    patient_id,
                    bbox: [z0, z0 + d, y0, y0 + h, x0, x0 + w],
                };
                // Serialising plain integers cannot fail.
                format!("  {}", serde_json::to_string(&entry).unwrap_or_default())
            })
            .collect();
        format!("[\n{}\n]\n", lines.join(",\n"))
    }

    /// Parses the seed's JSON; `path` names the file in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let entries: Vec<Entry> = serde_json::from_str(text).map_err(|e| {
            HeparError::format(
                path,
                format!(
                    "not a list of {{\"patient_id\": N, \"bbox\": [z0, z1, y0, y1, x0, x1]}}: {e}"
                ),
            )
        })?;
        let mut boxes = LiverBoxes::default();
        for e in entries {
            let [z0, z1, y0, y1, x0, x1] = e.bbox;
            if z1 <= z0 || y1 <= y0 || x1 <= x0 {
                return Err(HeparError::format(
                    path,
                    format!(
                        "patient_id {}: empty box {:?} (each range is [start, end) with end > start)",
                        e.patient_id, e.bbox
                    ),
                ));
            }
            let liver_box = CropBox {
                start_zyx: [z0, y0, x0],
                shape_zyx: [z1 - z0, y1 - y0, x1 - x0],
            };
            if boxes.by_case.insert(e.patient_id, liver_box).is_some() {
                return Err(HeparError::format(
                    path,
                    format!("patient_id {} is listed twice", e.patient_id),
                ));
            }
        }
        Ok(boxes)
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| HeparError::io(path, e))?;
        Self::from_json(&text, path)
    }

    /// Writes the file atomically (a reader sees the old file or the whole new one).
    pub fn write(&self, path: &Path) -> Result<()> {
        crate::util::atomic_write::write_atomic(path, self.to_json().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_uses_half_open_ranges() {
        let mut boxes = LiverBoxes::default();
        boxes.insert(
            7,
            CropBox {
                start_zyx: [2, 10, 20],
                shape_zyx: [5, 30, 40],
            },
        );
        let text = boxes.to_json();
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            json,
            serde_json::json!([{"patient_id": 7, "bbox": [2, 7, 10, 40, 20, 60]}])
        );
        assert_eq!(
            LiverBoxes::from_json(&text, Path::new("b.json")).unwrap(),
            boxes
        );
    }

    #[test]
    fn bad_files_are_named() {
        let p = Path::new("dir/bbox.json");
        let empty = LiverBoxes::from_json(r#"[{"patient_id": 1, "bbox": [3, 3, 0, 4, 0, 4]}]"#, p)
            .unwrap_err()
            .to_string();
        assert!(
            empty.contains("dir/bbox.json") && empty.contains("patient_id 1"),
            "{empty}"
        );
        let twice = LiverBoxes::from_json(
            r#"[{"patient_id": 1, "bbox": [0, 3, 0, 4, 0, 4]}, {"patient_id": 1, "bbox": [0, 3, 0, 4, 0, 4]}]"#,
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(twice.contains("twice"), "{twice}");
        let shape = LiverBoxes::from_json(r#"{"bbox": 1}"#, p)
            .unwrap_err()
            .to_string();
        assert!(shape.contains("patient_id"), "{shape}");
    }
}
