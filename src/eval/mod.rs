//! Evaluation of predicted label maps against the truth, as LiTS scores them: class `liver` is
//! labels 1 and 2 (the tumour lies in the liver), class `tumor` is label 2. Per case and class the
//! metrics of [`metrics::ClassMetrics`], lesion detection for the tumour, and means over cases of
//! every value where it is defined.
//!
//! `distance` holds surfaces and the exact distance transform, `metrics` the per-class numbers,
//! `components` the per-lesion rows of a FROC analysis; this module pairs files and builds the
//! report.

pub mod components;
pub mod detection_csv;
pub mod distance;
pub mod froc;
pub mod metrics;

use crate::data::Volume;
use crate::error::{HeparError, Result};
use metrics::{class_metrics, lesion_detection, ClassMetrics, LesionDetection};
use std::path::{Path, PathBuf};

/// The label map value of each class: a voxel belongs to `liver` when its label is 1 or 2 and to
/// `tumor` when it is 2. Labels are rounded to the nearest integer first.
pub fn class_masks(labels: &[f32]) -> (Vec<bool>, Vec<bool>) {
    let rounded: Vec<i64> = labels
        .iter()
        .map(|v| if v.is_finite() { v.round() as i64 } else { 0 })
        .collect();
    (
        rounded.iter().map(|&l| l == 1 || l == 2).collect(),
        rounded.iter().map(|&l| l == 2).collect(),
    )
}

/// The tumour's metrics with its lesion detection.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TumorMetrics {
    #[serde(flatten)]
    pub overlap: ClassMetrics,
    pub lesions: LesionDetection,
}

/// One evaluated case.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CaseReport {
    /// The file name without `.nii` / `.nii.gz`.
    pub case: String,
    pub liver: ClassMetrics,
    pub tumor: TumorMetrics,
}

/// Evaluates two label maps of shape `[z, y, x]` with voxel spacing in mm.
pub fn evaluate_labels(
    case: &str,
    pred: &[f32],
    truth: &[f32],
    shape: [usize; 3],
    spacing_zyx: [f64; 3],
) -> Result<CaseReport> {
    let (pred_liver, pred_tumor) = class_masks(pred);
    let (truth_liver, truth_tumor) = class_masks(truth);
    Ok(CaseReport {
        case: case.to_string(),
        liver: class_metrics(&pred_liver, &truth_liver, shape, spacing_zyx)?,
        tumor: TumorMetrics {
            overlap: class_metrics(&pred_tumor, &truth_tumor, shape, spacing_zyx)?,
            lesions: lesion_detection(&pred_tumor, &truth_tumor, shape)?,
        },
    })
}

/// Spacings closer than this (relative) are the same: NIfTI stores them as float32.
const SPACING_TOLERANCE: f64 = 1e-5;

/// Checks that a prediction and its truth describe the same grid, naming the files if not.
pub fn check_same_grid(
    pred: &Volume,
    pred_path: &Path,
    truth: &Volume,
    truth_path: &Path,
) -> Result<()> {
    if pred.shape_zyx != truth.shape_zyx {
        return Err(HeparError::format(
            pred_path,
            format!(
                "shape (z, y, x) {:?} differs from the truth {} with {:?}",
                pred.shape_zyx,
                truth_path.display(),
                truth.shape_zyx
            ),
        ));
    }
    let close = pred
        .spacing_zyx
        .iter()
        .zip(&truth.spacing_zyx)
        .all(|(a, b)| (a - b).abs() <= SPACING_TOLERANCE * a.abs().max(b.abs()));
    if !close {
        return Err(HeparError::format(
            pred_path,
            format!(
                "voxel spacing (z, y, x) {:?} mm differs from the truth {} with {:?} mm",
                pred.spacing_zyx,
                truth_path.display(),
                truth.spacing_zyx
            ),
        ));
    }
    Ok(())
}

/// Reads and evaluates one pair of label-map files; returns the prediction and the truth too.
pub fn evaluate_files(
    case: &str,
    pred_path: &Path,
    truth_path: &Path,
) -> Result<(CaseReport, Volume, Volume)> {
    let pred = Volume::read(pred_path)?;
    let truth = Volume::read(truth_path)?;
    check_same_grid(&pred, pred_path, &truth, truth_path)?;
    let report = evaluate_labels(
        case,
        &pred.data,
        &truth.data,
        pred.shape_zyx,
        truth.spacing_zyx,
    )?;
    Ok((report, pred, truth))
}

/// The case name of a NIfTI file: its file name without `.nii.gz` or `.nii`.
pub fn case_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for suffix in [".nii.gz", ".nii"] {
        if let Some(stem) = name.strip_suffix(suffix) {
            return stem.to_string();
        }
    }
    name
}

fn is_nifti(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.is_file() && (name.ends_with(".nii") || name.ends_with(".nii.gz"))
}

/// A prediction and its truth, named by the case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CasePair {
    pub case: String,
    pub pred: PathBuf,
    pub truth: PathBuf,
}

/// The cases to evaluate and the files that have no partner (each a message naming the file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pairing {
    pub pairs: Vec<CasePair>,
    pub unpaired: Vec<String>,
}

fn nifti_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| HeparError::io(dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| HeparError::io(dir, e))?.path();
        if is_nifti(&path) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Pairs `pred` with `truth`: two files, or two folders whose NIfTI files pair by identical names.
pub fn pair_inputs(pred: &Path, truth: &Path) -> Result<Pairing> {
    match (pred.is_dir(), truth.is_dir()) {
        (false, false) => {
            for path in [pred, truth] {
                if !path.is_file() {
                    return Err(HeparError::io(
                        path,
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or folder"),
                    ));
                }
            }
            Ok(Pairing {
                pairs: vec![CasePair {
                    case: case_name(pred),
                    pred: pred.to_path_buf(),
                    truth: truth.to_path_buf(),
                }],
                unpaired: Vec::new(),
            })
        }
        (true, true) => {
            let (preds, truths) = (nifti_files(pred)?, nifti_files(truth)?);
            let file_name = |p: &PathBuf| p.file_name().map(|n| n.to_os_string());
            let truth_names: Vec<_> = truths.iter().map(file_name).collect();
            let pred_names: Vec<_> = preds.iter().map(file_name).collect();
            let mut pairing = Pairing::default();
            for (p, name) in preds.iter().zip(&pred_names) {
                if truth_names.contains(name) {
                    pairing.pairs.push(CasePair {
                        case: case_name(p),
                        pred: p.clone(),
                        truth: truth.join(name.as_ref().expect("a listed file has a name")),
                    });
                } else {
                    pairing.unpaired.push(format!(
                        "{}: no truth file of that name in {}",
                        p.display(),
                        truth.display()
                    ));
                }
            }
            for (t, name) in truths.iter().zip(&truth_names) {
                if !pred_names.contains(name) {
                    pairing.unpaired.push(format!(
                        "{}: no prediction file of that name in {}",
                        t.display(),
                        pred.display()
                    ));
                }
            }
            if pairing.pairs.is_empty() && pairing.unpaired.is_empty() {
                return Err(HeparError::format(
                    pred,
                    "no .nii or .nii.gz files in this folder",
                ));
            }
            Ok(pairing)
        }
        _ => Err(HeparError::invalid(
            "eval",
            format!(
                "--pred {} and --truth {} must both be files or both be folders",
                pred.display(),
                truth.display()
            ),
        )),
    }
}

/// The mean of the defined values, `None` when none is.
fn mean_of(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let (sum, count) = values
        .flatten()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (count > 0).then(|| sum / count as f64)
}

/// Class metrics averaged over the cases where each is defined.
fn mean_class<'a>(classes: impl Iterator<Item = &'a ClassMetrics> + Clone) -> ClassMetrics {
    let field = |f: fn(&ClassMetrics) -> Option<f64>| mean_of(classes.clone().map(f));
    ClassMetrics {
        dice: field(|c| c.dice),
        iou: field(|c| c.iou),
        precision: field(|c| c.precision),
        recall: field(|c| c.recall),
        volume_difference_ml: field(|c| c.volume_difference_ml),
        hd95_mm: field(|c| c.hd95_mm),
        assd_mm: field(|c| c.assd_mm),
    }
}

/// Lesion counts and rates averaged over cases (rates over the cases where they are defined).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MeanLesions {
    pub truth: Option<f64>,
    pub predicted: Option<f64>,
    pub detected: Option<f64>,
    pub false_positive: Option<f64>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MeanTumor {
    #[serde(flatten)]
    pub overlap: ClassMetrics,
    pub lesions: MeanLesions,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MeanReport {
    pub liver: ClassMetrics,
    pub tumor: MeanTumor,
}

/// The whole report: `{"cases": [...], "mean": {"liver": {...}, "tumor": {...}}}`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EvalReport {
    pub cases: Vec<CaseReport>,
    pub mean: MeanReport,
}

impl EvalReport {
    pub fn new(cases: Vec<CaseReport>) -> Self {
        let lesions = |f: fn(&LesionDetection) -> Option<f64>| {
            mean_of(cases.iter().map(|c| f(&c.tumor.lesions)))
        };
        let mean = MeanReport {
            liver: mean_class(cases.iter().map(|c| &c.liver)),
            tumor: MeanTumor {
                overlap: mean_class(cases.iter().map(|c| &c.tumor.overlap)),
                lesions: MeanLesions {
                    truth: lesions(|l| Some(l.truth as f64)),
                    predicted: lesions(|l| Some(l.predicted as f64)),
                    detected: lesions(|l| Some(l.detected as f64)),
                    false_positive: lesions(|l| Some(l.false_positive as f64)),
                    precision: lesions(|l| l.precision),
                    recall: lesions(|l| l.recall),
                    f1: lesions(|l| l.f1),
                },
            },
        };
        EvalReport { cases, mean }
    }

    /// The report as pretty JSON (undefined values are null).
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| HeparError::invalid("eval", format!("serialising the report: {e}")))
    }
}
