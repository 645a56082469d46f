//! Finding the cases of a dataset folder and splitting them into folds.
//!
//! Two layouts are recognised:
//! - LiTS: `volume-N.nii[.gz]` beside `segmentation-N.nii[.gz]`, in the folder or any subfolder
//!   (the challenge ships "Training Batch 1" and "Training Batch 2").
//! - Medical Segmentation Decathlon Task03_Liver: `imagesTr/liver_N.nii.gz` and
//!   `labelsTr/liver_N.nii.gz`, listed by `dataset.json` when present.
//! - 3Dircadb: `3Dircadb1.N/PATIENT_DICOM/` (a DICOM series) with the liver mask series
//!   `3Dircadb1.N/MASKS_DICOM/liver/`, in the folder (or the folder is one such patient).
//!
//! Labels: 0 background, 1 liver, 2 tumour. A case whose files are missing or inconsistent is
//! recorded in [`Dataset::problems`] and left out; the others are unaffected.

use super::volume::Volume;
use crate::error::{HeparError, Result};
use crate::util::rng::Rng;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Lits,
    MsdLiver,
    Ircadb,
}

/// The files of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFiles {
    /// A stable identifier: `lits-N` or `msd-N`.
    pub id: String,
    /// Numeric part of the file name, for ordering.
    pub number: u64,
    pub image: PathBuf,
    pub label: PathBuf,
}

/// A case left out, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseProblem {
    pub path: PathBuf,
    pub reason: String,
}

impl std::fmt::Display for CaseProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub root: PathBuf,
    pub layout: Layout,
    /// Cases ordered by number.
    pub cases: Vec<CaseFiles>,
    pub problems: Vec<CaseProblem>,
}

/// `3Dircadb1.N` (the patient folders of 3D-IRCADb-01) -> N.
fn ircadb_number(dir: &Path) -> Option<u64> {
    let digits = file_name(dir).strip_prefix("3Dircadb1.")?.to_string();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `stem-N.nii` or `stem-N.nii.gz` -> N.
fn numbered(name: &str, prefix: &str) -> Option<u64> {
    let rest = name.strip_prefix(prefix)?;
    let digits = rest
        .strip_suffix(".nii.gz")
        .or_else(|| rest.strip_suffix(".nii"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| HeparError::io(dir, e))? {
        let entry = entry.map_err(|e| HeparError::io(dir, e))?;
        out.push(entry.path());
    }
    out.sort();
    Ok(out)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Dataset {
    /// Detects the layout of `root` and lists its cases. A folder with no case is an error.
    pub fn discover(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(HeparError::format(
                root,
                "dataset folder does not exist or is not a folder",
            ));
        }
        let is_msd = root.join("dataset.json").is_file() || root.join("imagesTr").is_dir();
        let is_ircadb = !is_msd
            && (ircadb_number(root).is_some()
                || list_dir(root)?
                    .iter()
                    .any(|p| p.is_dir() && ircadb_number(p).is_some()));
        let mut dataset = if is_msd {
            Self::discover_msd(root)?
        } else if is_ircadb {
            Self::discover_ircadb(root)?
        } else {
            Self::discover_lits(root)?
        };
        dataset
            .cases
            .sort_by(|a, b| (a.number, &a.id).cmp(&(b.number, &b.id)));
        if dataset.cases.is_empty() {
            let layout = if is_msd {
                "MSD Task03_Liver (imagesTr/ + labelsTr/)"
            } else if is_ircadb {
                "3Dircadb (3Dircadb1.N/PATIENT_DICOM + MASKS_DICOM/liver)"
            } else {
                "LiTS (volume-N.nii[.gz] + segmentation-N.nii[.gz])"
            };
            let mut msg = format!("no cases found in the {layout} layout");
            if !dataset.problems.is_empty() {
                msg += &format!(
                    "; {} left out: {}",
                    dataset.problems.len(),
                    dataset
                        .problems
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                );
            }
            return Err(HeparError::format(root, msg));
        }
        Ok(dataset)
    }

    fn discover_lits(root: &Path) -> Result<Self> {
        let mut cases = Vec::new();
        let mut problems = Vec::new();
        let mut folders = vec![root.to_path_buf()];
        while let Some(dir) = folders.pop() {
            let entries = list_dir(&dir)?;
            for path in &entries {
                let name = file_name(path);
                if path.is_dir() {
                    if numbered(&name, "volume-").is_some()
                        || numbered(&name, "segmentation-").is_some()
                    {
                        problems.push(CaseProblem {
                            path: path.clone(),
                            reason: "a folder named like a NIfTI file, not a file".into(),
                        });
                    } else {
                        folders.push(path.clone());
                    }
                    continue;
                }
                if let Some(n) = numbered(&name, "segmentation-") {
                    let has_volume = ["nii.gz", "nii"]
                        .iter()
                        .any(|ext| dir.join(format!("volume-{n}.{ext}")).is_file());
                    if !has_volume {
                        problems.push(CaseProblem {
                            path: path.clone(),
                            reason: format!("no volume-{n}.nii[.gz] beside it"),
                        });
                    }
                    continue;
                }
                let Some(n) = numbered(&name, "volume-") else {
                    continue;
                };
                let label = ["nii.gz", "nii"]
                    .iter()
                    .map(|ext| dir.join(format!("segmentation-{n}.{ext}")))
                    .find(|p| p.is_file());
                match label {
                    Some(label) => cases.push(CaseFiles {
                        id: format!("lits-{n}"),
                        number: n,
                        image: path.clone(),
                        label,
                    }),
                    None => problems.push(CaseProblem {
                        path: path.clone(),
                        reason: format!("no segmentation-{n}.nii[.gz] beside it"),
                    }),
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        cases.retain(|c: &CaseFiles| {
            let fresh = seen.insert(c.number);
            if !fresh {
                problems.push(CaseProblem {
                    path: c.image.clone(),
                    reason: format!("case number {} appears twice; first kept", c.number),
                });
            }
            fresh
        });
        Ok(Dataset {
            root: root.to_path_buf(),
            layout: Layout::Lits,
            cases,
            problems,
        })
    }

    fn discover_msd(root: &Path) -> Result<Self> {
        let mut problems = Vec::new();
        let mut pairs: Vec<(PathBuf, PathBuf)> = Vec::new();
        let manifest = root.join("dataset.json");
        if manifest.is_file() {
            let text =
                std::fs::read_to_string(&manifest).map_err(|e| HeparError::io(&manifest, e))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| HeparError::format(&manifest, format!("invalid JSON: {e}")))?;
            let training = json
                .get("training")
                .and_then(|t| t.as_array())
                .ok_or_else(|| HeparError::format(&manifest, "no \"training\" list"))?;
            for item in training {
                let (Some(img), Some(lab)) = (
                    item.get("image").and_then(|v| v.as_str()),
                    item.get("label").and_then(|v| v.as_str()),
                ) else {
                    problems.push(CaseProblem {
                        path: manifest.clone(),
                        reason: format!("training entry without image/label: {item}"),
                    });
                    continue;
                };
                pairs.push((
                    root.join(img.trim_start_matches("./")),
                    root.join(lab.trim_start_matches("./")),
                ));
            }
        } else {
            for path in list_dir(&root.join("imagesTr"))? {
                let name = file_name(&path);
                if name.starts_with("._") || !(name.ends_with(".nii.gz") || name.ends_with(".nii"))
                {
                    continue; // macOS resource forks ship inside the MSD archives
                }
                pairs.push((path.clone(), root.join("labelsTr").join(&name)));
            }
        }
        let mut cases = Vec::new();
        for (image, label) in pairs {
            let name = file_name(&image);
            let Some(n) = numbered(&name, "liver_") else {
                problems.push(CaseProblem {
                    path: image,
                    reason: "name is not liver_N.nii[.gz]".into(),
                });
                continue;
            };
            if !image.is_file() {
                problems.push(CaseProblem {
                    path: image,
                    reason: "image file missing".into(),
                });
            } else if !label.is_file() {
                problems.push(CaseProblem {
                    path: label,
                    reason: "label file missing".into(),
                });
            } else {
                cases.push(CaseFiles {
                    id: format!("msd-{n}"),
                    number: n,
                    image,
                    label,
                });
            }
        }
        Ok(Dataset {
            root: root.to_path_buf(),
            layout: Layout::MsdLiver,
            cases,
            problems,
        })
    }

    fn discover_ircadb(root: &Path) -> Result<Self> {
        let patients: Vec<PathBuf> = if ircadb_number(root).is_some() {
            vec![root.to_path_buf()]
        } else {
            list_dir(root)?
                .into_iter()
                .filter(|p| p.is_dir() && ircadb_number(p).is_some())
                .collect()
        };
        let mut cases = Vec::new();
        let mut problems = Vec::new();
        for patient in patients {
            let n = ircadb_number(&patient).expect("filtered");
            let image = patient.join("PATIENT_DICOM");
            let label = patient.join("MASKS_DICOM").join("liver");
            if !image.is_dir() {
                problems.push(CaseProblem {
                    path: image,
                    reason: "no PATIENT_DICOM folder (unzip PATIENT_DICOM.zip?)".into(),
                });
            } else if !label.is_dir() {
                problems.push(CaseProblem {
                    path: label,
                    reason: "no liver mask series (MASKS_DICOM/liver; unzip MASKS_DICOM.zip?)"
                        .into(),
                });
            } else {
                cases.push(CaseFiles {
                    id: format!("ircadb-{n}"),
                    number: n,
                    image,
                    label,
                });
            }
        }
        Ok(Dataset {
            root: root.to_path_buf(),
            layout: Layout::Ircadb,
            cases,
            problems,
        })
    }

    /// Seeded k-fold split: returns (training, validation) cases for `fold`.
    pub fn split(
        &self,
        folds: usize,
        fold: usize,
        seed: u64,
    ) -> Result<(Vec<CaseFiles>, Vec<CaseFiles>)> {
        let assignment = fold_assignment(self.cases.len(), folds, seed)?;
        if fold >= folds {
            return Err(HeparError::invalid(
                "Dataset::split",
                format!("fold {fold} with {folds} folds"),
            ));
        }
        let mut train = Vec::new();
        let mut val = Vec::new();
        for (case, f) in self.cases.iter().zip(assignment) {
            if f == fold {
                val.push(case.clone())
            } else {
                train.push(case.clone())
            }
        }
        Ok((train, val))
    }
}

/// The fold of each of `n` cases (in their sorted order): a seeded shuffle dealt round-robin, so
/// fold sizes differ by at most one.
pub fn fold_assignment(n: usize, folds: usize, seed: u64) -> Result<Vec<usize>> {
    if folds < 2 {
        return Err(HeparError::invalid(
            "fold_assignment",
            format!("{folds} folds (need at least 2)"),
        ));
    }
    let mut order: Vec<usize> = (0..n).collect();
    Rng::new(seed).shuffle(&mut order);
    let mut assignment = vec![0; n];
    for (position, &case) in order.iter().enumerate() {
        assignment[case] = position % folds;
    }
    Ok(assignment)
}

/// Reads a case's image and label and checks that they match; errors name the file at fault.
/// DICOM cases (folders) are read as series, the mask binarised; their warnings go to stderr.
pub fn load_case(case: &CaseFiles) -> Result<(Volume, Volume)> {
    let (image, label) = if case.image.is_dir() {
        let image = super::dicom::read_series(&case.image, None)?;
        let label = super::dicom::read_mask_series(&case.label, None)?;
        for warning in image.warnings.iter().chain(&label.warnings) {
            eprintln!("warning: {}: {warning}", case.id);
        }
        (image.volume, label.volume)
    } else {
        (Volume::read(&case.image)?, Volume::read(&case.label)?)
    };
    image.check_finite(&case.image)?;
    if image.shape_zyx != label.shape_zyx {
        return Err(HeparError::format(
            &case.label,
            format!(
                "label shape (z, y, x) {:?} differs from its image {} {:?}",
                label.shape_zyx,
                case.image.display(),
                image.shape_zyx
            ),
        ));
    }
    if let Some(bad) = label
        .data
        .iter()
        .find(|&&v| v != 0.0 && v != 1.0 && v != 2.0)
    {
        return Err(HeparError::format(
            &case.label,
            format!("label value {bad} outside {{0, 1, 2}}"),
        ));
    }
    Ok((image, label))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_names() {
        assert_eq!(numbered("volume-12.nii.gz", "volume-"), Some(12));
        assert_eq!(numbered("volume-3.nii", "volume-"), Some(3));
        assert_eq!(numbered("volume-x.nii", "volume-"), None);
        assert_eq!(numbered("liver_7.nii.gz", "liver_"), Some(7));
    }

    #[test]
    fn folds_are_balanced_and_seeded() {
        let a = fold_assignment(23, 5, 1).unwrap();
        let mut counts = [0; 5];
        a.iter().for_each(|&f| counts[f] += 1);
        assert!(counts.iter().all(|&c| c == 4 || c == 5));
        assert_eq!(a, fold_assignment(23, 5, 1).unwrap());
        assert_ne!(a, fold_assignment(23, 5, 2).unwrap());
    }
}
