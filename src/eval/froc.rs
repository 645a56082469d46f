//! Detection FROC as the RibFrac challenge's evaluation computes it.
//!
//! Per scan, truth and prediction are label maps of components 1..n (values read as integers
//! 0..=255, as the challenge casts them to `uint8`). Each 26-connected region of their
//! intersection gives one IoU: its voxel count over the voxel count of the 26-connected region of
//! their union that holds it, stored for the truth and predicted labels at the region's first
//! voxel in the file's (x, y, z) raster order (a later region of the same pair replaces an
//! earlier one). A prediction's best IoU and the truth label reaching it (the lowest label among
//! equals) decide whether it hits: IoU > 0.2. The number of truth components of a scan is its
//! largest truth label.
//!
//! For each threshold `t = 0.00, 0.01, ..., 0.99` the predictions with confidence >= t count:
//! a truth component hit by any of them is one true positive, a prediction that hits nothing is a
//! false positive (a second hit on a found component is neither). FP per scan is
//! `(FP + 1e-8) / (scans + 1e-8)` and recall `(TP + 1e-8) / (truth components + 1e-8)`. The recall
//! at 0.5, 1, 2, 4 and 8 FP per scan interpolates linearly on the curve sorted by FP: 0 below the
//! smallest FP, the largest recall above the largest FP; their mean is the FROC score. Points of
//! equal FP keep their threshold order (a stable sort; numpy's `quicksort` leaves the order of
//! such points to the CPU's sorting kernel, so the challenge's own script can disagree with itself
//! between machines there). Global Dice and IoU sum the binarised maps' voxel counts over scans.
//!
//! A prediction's confidence is the CSV row of its case (`public_id`) and `label_id`; a label
//! without a row never counts, and duplicated rows count as often as they appear (the
//! challenge joins the tables).

use super::detection_csv::{read_detection_csv, ConfidenceColumn, DetectionRow};
use crate::data::Volume;
use crate::error::{HeparError, Result};
use crate::infer::postprocess::{label_components, Connectivity};
use std::path::{Path, PathBuf};

/// The challenge's IoU threshold of a hit.
pub const IOU_THRESHOLD: f64 = 0.2;
/// False positives per scan at which recall is read.
pub const KEY_FP: [f64; 5] = [0.5, 1.0, 2.0, 4.0, 8.0];
/// The challenge's guard against empty denominators.
const EPS: f64 = 1e-8;
/// Thresholds 0.00..=0.99 (numpy's `arange(0, 1, 0.01)`: `i * 0.01`).
pub const THRESHOLD_COUNT: usize = 100;

pub fn thresholds() -> Vec<f64> {
    (0..THRESHOLD_COUNT).map(|i| i as f64 * 0.01).collect()
}

/// One prediction row of a scan: its best IoU with any truth component, the truth label it hits
/// (0 when its best IoU is 0), and its confidence (NaN when the CSV has none).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PredictionMatch {
    pub label: u32,
    pub max_iou: f64,
    pub hit_label: u32,
    pub confidence: f64,
}

/// Voxel counts of the binarised maps (summed over scans for the global Dice and IoU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OverlapCounts {
    pub intersection: u64,
    pub union: u64,
    pub truth: u64,
    pub prediction: u64,
}

/// A scan's detections, ready for the FROC.
#[derive(Clone, Debug, PartialEq)]
pub struct ScanDetections {
    pub public_id: String,
    pub predictions: Vec<PredictionMatch>,
    /// The largest truth label.
    pub truth_count: u32,
    pub overlap: OverlapCounts,
}

/// Label maps as integers 0..=255 (`what` names the map in the error).
pub fn label_values(data: &[f32], what: &str) -> Result<Vec<u8>> {
    data.iter()
        .map(|&v| {
            if v.is_finite() && v.fract() == 0.0 && (0.0..=255.0).contains(&v) {
                Ok(v as u8)
            } else {
                Err(HeparError::invalid(
                    "froc",
                    format!("{what}: label value {v} is not an integer in 0..=255"),
                ))
            }
        })
        .collect()
}

/// The IoU of every (truth, prediction) label pair, `iou[t - 1][p - 1]`; both maps in one C order
/// (the challenge's order is the file's (x, y, z)).
pub fn iou_matrix(truth: &[u8], pred: &[u8], shape: [usize; 3]) -> Result<Vec<Vec<f64>>> {
    if truth.len() != pred.len() {
        return Err(HeparError::shape(
            "froc",
            format!("{} truth voxels, {} predicted", truth.len(), pred.len()),
        ));
    }
    let truth_count = truth.iter().copied().max().unwrap_or(0) as usize;
    let pred_count = pred.iter().copied().max().unwrap_or(0) as usize;
    let mut iou = vec![vec![0.0; pred_count]; truth_count];
    let both: Vec<bool> = truth
        .iter()
        .zip(pred)
        .map(|(&t, &p)| t > 0 && p > 0)
        .collect();
    let either: Vec<bool> = truth
        .iter()
        .zip(pred)
        .map(|(&t, &p)| t > 0 || p > 0)
        .collect();
    let intersections = label_components(&both, shape, Connectivity::Full)?;
    let unions = label_components(&either, shape, Connectivity::Full)?;
    // A region's first voxel in C order is where its labelling started.
    let mut anchors = vec![usize::MAX; intersections.count()];
    for (i, &l) in intersections.labels.iter().enumerate() {
        if l > 0 && anchors[l as usize - 1] == usize::MAX {
            anchors[l as usize - 1] = i;
        }
    }
    for (k, &anchor) in anchors.iter().enumerate() {
        let union_size = unions.sizes[unions.labels[anchor] as usize - 1] as f64;
        let (t, p) = (truth[anchor] as usize, pred[anchor] as usize);
        iou[t - 1][p - 1] = intersections.sizes[k] as f64 / (union_size + EPS);
    }
    Ok(iou)
}

/// How many times `label` appears among the `label_id`s of `rows`.
fn rows_with_label<'a>(
    rows: &'a [DetectionRow],
    label: u32,
) -> impl Iterator<Item = &'a DetectionRow> + 'a {
    rows.iter().filter(move |r| r.label_id == label as f64)
}

/// Matches one scan: `truth` and `pred` label maps in the file's (x, y, z) C order of shape
/// `shape_xyz`, with the CSV rows of this scan.
pub fn match_scan(
    public_id: &str,
    truth: &[u8],
    pred: &[u8],
    shape_xyz: [usize; 3],
    truth_rows: &[DetectionRow],
    pred_rows: &[DetectionRow],
) -> Result<ScanDetections> {
    let iou = iou_matrix(truth, pred, shape_xyz)?;
    let truth_count = iou.len() as u32;
    let pred_count = pred.iter().copied().max().unwrap_or(0) as u32;
    let mut predictions = Vec::new();
    for p in 1..=pred_count {
        let (mut max_iou, mut hit_label) = (0.0f64, 0u32);
        for (t, row) in iou.iter().enumerate() {
            if row[p as usize - 1] > max_iou {
                (max_iou, hit_label) = (row[p as usize - 1], t as u32 + 1);
            }
        }
        let confidences: Vec<f64> = rows_with_label(pred_rows, p)
            .map(|r| r.confidence)
            .collect();
        let confidences = if confidences.is_empty() {
            vec![f64::NAN]
        } else {
            confidences
        };
        // The challenge joins the truth table on the hit label too, repeating rows it matches
        // more than once (it skips this join when the scan has no truth component).
        let repeats = if truth_count == 0 {
            1
        } else {
            rows_with_label(truth_rows, hit_label).count().max(1)
        };
        for &confidence in &confidences {
            for _ in 0..repeats {
                predictions.push(PredictionMatch {
                    label: p,
                    max_iou,
                    hit_label,
                    confidence,
                });
            }
        }
    }
    let count = |f: &dyn Fn(u8, u8) -> bool| {
        truth.iter().zip(pred).filter(|(&t, &p)| f(t, p)).count() as u64
    };
    Ok(ScanDetections {
        public_id: public_id.to_string(),
        predictions,
        truth_count,
        overlap: OverlapCounts {
            intersection: count(&|t, p| t > 0 && p > 0),
            union: count(&|t, p| t > 0 || p > 0),
            truth: count(&|t, _| t > 0),
            prediction: count(&|_, p| p > 0),
        },
    })
}

/// The FROC curve and its summary, with the keys of the challenge's results.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct FrocReport {
    pub scans: usize,
    pub truth_components: u64,
    pub thresholds: Vec<f64>,
    /// False positives per scan at each threshold.
    pub fp: Vec<f64>,
    pub recall: Vec<f64>,
    pub key_fp: Vec<f64>,
    pub key_recall: Vec<f64>,
    /// The FROC score: the mean of `key_recall`.
    pub average_recall: f64,
    pub max_recall: f64,
    pub average_fp_at_max_recall: f64,
    /// Global Dice and IoU of the binarised maps.
    pub dice: f64,
    pub iou: f64,
}

/// FP per scan and recall at threshold `t`.
fn curve_point(scans: &[ScanDetections], total_truth: u64, t: f64) -> (f64, f64) {
    let (mut tp, mut fp) = (0u64, 0u64);
    for scan in scans {
        let passing = scan.predictions.iter().filter(|m| m.confidence >= t);
        let mut hit: Vec<u32> = Vec::new();
        for m in passing {
            if m.max_iou > IOU_THRESHOLD {
                if !hit.contains(&m.hit_label) {
                    hit.push(m.hit_label);
                }
            } else {
                fp += 1;
            }
        }
        tp += hit.len() as u64;
    }
    (
        (fp as f64 + EPS) / (scans.len() as f64 + EPS),
        (tp as f64 + EPS) / (total_truth as f64 + EPS),
    )
}

/// Recall at `key` FP per scan on `points` (FP, recall) sorted by FP.
pub fn recall_at_fp(points: &[(f64, f64)], key: f64) -> f64 {
    let Some(&(fp_0, recall_0)) = points.iter().rev().find(|(fp, _)| *fp <= key) else {
        return 0.0;
    };
    let Some(&(fp_1, recall_1)) = points.iter().find(|(fp, _)| *fp >= key) else {
        return points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    };
    recall_0 + (recall_1 - recall_0) * ((key - fp_0) / (fp_1 - fp_0 + EPS))
}

/// The FROC over scans.
pub fn froc(scans: &[ScanDetections]) -> FrocReport {
    let total_truth: u64 = scans.iter().map(|s| s.truth_count as u64).sum();
    let thresholds = thresholds();
    let (fp, recall): (Vec<f64>, Vec<f64>) = thresholds
        .iter()
        .map(|&t| curve_point(scans, total_truth, t))
        .unzip();
    let mut points: Vec<(f64, f64)> = fp.iter().copied().zip(recall.iter().copied()).collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    let key_recall: Vec<f64> = KEY_FP.iter().map(|&k| recall_at_fp(&points, k)).collect();
    let average_recall = key_recall.iter().sum::<f64>() / key_recall.len() as f64;
    let max = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sums = scans
        .iter()
        .fold(OverlapCounts::default(), |a, s| OverlapCounts {
            intersection: a.intersection + s.overlap.intersection,
            union: a.union + s.overlap.union,
            truth: a.truth + s.overlap.truth,
            prediction: a.prediction + s.overlap.prediction,
        });
    FrocReport {
        scans: scans.len(),
        truth_components: total_truth,
        max_recall: max(&recall),
        average_fp_at_max_recall: max(&fp),
        thresholds,
        fp,
        recall,
        key_fp: KEY_FP.to_vec(),
        key_recall,
        average_recall,
        dice: 2.0 * sums.intersection as f64 / ((sums.truth + sums.prediction) as f64 + EPS),
        iou: sums.intersection as f64 / (sums.union as f64 + EPS),
    }
}

impl FrocReport {
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| HeparError::invalid("froc", format!("serialising the report: {e}")))
    }

    /// The summary table: recall at each key FP, the score, and the segmentation overlap.
    pub fn table(&self) -> String {
        let mut out = format!(
            "FROC over {} scan(s), {} truth component(s)\n",
            self.scans, self.truth_components
        );
        out += &format!("{:>10} {:>8}\n", "FP/scan", "recall");
        for (fp, r) in self.key_fp.iter().zip(&self.key_recall) {
            out += &format!("{fp:>10} {r:>8.4}\n");
        }
        out += &format!("average recall (FROC score) {:.4}\n", self.average_recall);
        out += &format!(
            "maximum recall {:.4} at {:.4} FP/scan\n",
            self.max_recall, self.average_fp_at_max_recall
        );
        out += &format!("Dice {:.4}  IoU {:.4}\n", self.dice, self.iou);
        out
    }
}

/// The challenge's case id of a file name: every `.nii`, `.gz` and `-label` removed.
pub fn public_id_of(file_name: &str) -> String {
    let mut out = String::new();
    let mut rest = file_name;
    while let Some(c) = rest.chars().next() {
        if let Some(tail) = [".nii", ".gz", "-label"]
            .iter()
            .find_map(|p| rest.strip_prefix(p))
        {
            rest = tail;
        } else {
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The label maps of a folder by case id, and its one CSV.
struct FolderContents {
    maps: std::collections::BTreeMap<String, PathBuf>,
    csv: PathBuf,
}

fn folder_contents(dir: &Path, role: &str) -> Result<FolderContents> {
    let entries = std::fs::read_dir(dir).map_err(|e| HeparError::io(dir, e))?;
    let mut maps = std::collections::BTreeMap::new();
    let mut csvs = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| HeparError::io(dir, e))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.ends_with(".csv") {
            csvs.push(path);
        } else if name.ends_with(".nii") || name.ends_with(".nii.gz") {
            let id = public_id_of(&name);
            if let Some(other) = maps.insert(id.clone(), path.clone()) {
                return Err(HeparError::format(
                    dir,
                    format!(
                        "two {role} files for case {id}: {} and {}",
                        other.display(),
                        path.display()
                    ),
                ));
            }
        }
    }
    csvs.sort();
    match csvs.len() {
        1 => Ok(FolderContents {
            maps,
            csv: csvs.remove(0),
        }),
        0 => Err(HeparError::format(
            dir,
            format!("no .csv file in the {role} folder (public_id,label_id,confidence,label_code)"),
        )),
        _ => Err(HeparError::format(
            dir,
            format!(
                "{} .csv files in the {role} folder, expected one",
                csvs.len()
            ),
        )),
    }
}

/// A label map in the file's (x, y, z) C order, the order the challenge reads it in.
fn read_labels_xyz(path: &Path) -> Result<(Vec<u8>, [usize; 3])> {
    let volume = Volume::read(path)?;
    let labels = label_values(&volume.data, &path.display().to_string())?;
    let [nz, ny, nx] = volume.shape_zyx;
    let mut xyz = vec![0u8; labels.len()];
    for (i, &l) in labels.iter().enumerate() {
        let (z, y, x) = (i / (ny * nx), (i / nx) % ny, i % nx);
        xyz[(x * ny + y) * nz + z] = l;
    }
    Ok((xyz, [nx, ny, nz]))
}

/// The FROC of a prediction folder against a truth folder (the challenge's layout), with the
/// cases that could not be scored: a case missing on either side, unreadable, or of another
/// shape is named there and left out; the others are scored.
pub fn froc_folders(pred_dir: &Path, truth_dir: &Path) -> Result<(FrocReport, Vec<String>)> {
    let truth = folder_contents(truth_dir, "truth")?;
    let pred = folder_contents(pred_dir, "prediction")?;
    let truth_rows = read_detection_csv(&truth.csv, ConfidenceColumn::Optional)?;
    let pred_rows = read_detection_csv(&pred.csv, ConfidenceColumn::Required)?;
    if truth.maps.is_empty() {
        return Err(HeparError::format(
            truth_dir,
            "no .nii or .nii.gz label maps in the truth folder",
        ));
    }
    let mut problems = Vec::new();
    for id in pred.maps.keys().filter(|id| !truth.maps.contains_key(*id)) {
        problems.push(format!(
            "case {id}: a prediction in {} without truth in {}",
            pred_dir.display(),
            truth_dir.display()
        ));
    }
    let mut scans = Vec::new();
    for (id, truth_path) in &truth.maps {
        let Some(pred_path) = pred.maps.get(id) else {
            problems.push(format!(
                "case {id}: no prediction in {} for {}",
                pred_dir.display(),
                truth_path.display()
            ));
            continue;
        };
        let of_case = |rows: &[DetectionRow]| {
            rows.iter()
                .filter(|r| r.public_id == *id)
                .cloned()
                .collect::<Vec<_>>()
        };
        let scored = read_labels_xyz(truth_path).and_then(|(t, t_shape)| {
            let (p, p_shape) = read_labels_xyz(pred_path)?;
            if t_shape != p_shape {
                return Err(HeparError::shape(
                    "froc",
                    format!("case {id}: prediction shape (x, y, z) {p_shape:?}, truth {t_shape:?}"),
                ));
            }
            match_scan(
                id,
                &t,
                &p,
                t_shape,
                &of_case(&truth_rows),
                &of_case(&pred_rows),
            )
        });
        match scored {
            Ok(scan) => scans.push(scan),
            Err(e) => problems.push(format!("case {id}: {e}")),
        }
    }
    if scans.is_empty() {
        return Err(HeparError::invalid(
            "froc",
            format!("no case could be scored: {}", problems.join("; ")),
        ));
    }
    Ok((froc(&scans), problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_ids_drop_the_extensions_and_label_suffix() {
        assert_eq!(public_id_of("RibFrac421-label.nii.gz"), "RibFrac421");
        assert_eq!(public_id_of("RibFrac421.nii"), "RibFrac421");
        assert_eq!(public_id_of("a.gz.b-label.nii.gz"), "a.b");
    }

    #[test]
    fn interpolation_reads_between_points_and_clamps_outside() {
        let points = [(0.25, 0.2), (1.0, 0.5), (3.0, 0.9)];
        assert_eq!(recall_at_fp(&points, 0.1), 0.0);
        assert!((recall_at_fp(&points, 2.0) - 0.7).abs() < 1e-7);
        assert!((recall_at_fp(&points, 1.0) - 0.5).abs() < 1e-12);
        assert_eq!(recall_at_fp(&points, 8.0), 0.9);
    }

    #[test]
    fn an_intersection_over_touching_components_counts_for_its_first_voxel() {
        // 1 x 1 x 6: truth 1 1 2 2 0 0, prediction 0 3 3 3 3 0 (labels 1 and 2 unused).
        let truth = [1, 1, 2, 2, 0, 0];
        let pred = [0, 3, 3, 3, 3, 0];
        let iou = iou_matrix(&truth, &pred, [1, 1, 6]).unwrap();
        // One intersection region (voxels 1-3) anchored at voxel 1: truth 1, prediction 3,
        // union region of 5 voxels.
        assert_eq!(iou.len(), 2);
        assert!((iou[0][2] - 3.0 / 5.0).abs() < 1e-7);
        assert_eq!(iou[1][2], 0.0);
    }
}
