//! Per-class segmentation metrics of one case: overlap (Dice, IoU, precision, recall), volume
//! difference, surface distances (95th-percentile Hausdorff, average symmetric surface distance)
//! and per-lesion detection.
//!
//! Undefined values are `None` (JSON null): both masks empty give Dice and IoU 1; precision is
//! undefined for an empty prediction, recall for an empty truth; surface distances for either
//! mask empty.

use super::distance::{directed_distances, surface};
use crate::error::Result;
use crate::infer::postprocess::{check_mask, label_components, Connectivity};

/// The metrics of one class of one case.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ClassMetrics {
    pub dice: Option<f64>,
    pub iou: Option<f64>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    /// Predicted minus true volume, in millilitres (positive: over-segmentation).
    pub volume_difference_ml: Option<f64>,
    pub hd95_mm: Option<f64>,
    pub assd_mm: Option<f64>,
}

/// Lesion-level detection: lesions are 26-connected components.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LesionDetection {
    /// Components of the truth.
    pub truth: usize,
    /// Components of the prediction.
    pub predicted: usize,
    /// Truth components with at least one voxel predicted.
    pub detected: usize,
    /// Predicted components touching no truth voxel.
    pub false_positive: usize,
    /// Share of predicted components that touch the truth; undefined without predictions.
    pub precision: Option<f64>,
    /// Share of truth components detected; undefined without truth lesions.
    pub recall: Option<f64>,
    /// Harmonic mean of precision and recall; undefined when either is (0 when both are 0).
    pub f1: Option<f64>,
}

/// Voxel counts of the overlap of two masks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Overlap {
    pub true_positive: usize,
    pub false_positive: usize,
    pub false_negative: usize,
}

impl Overlap {
    pub fn of(pred: &[bool], truth: &[bool]) -> Self {
        let mut o = Overlap::default();
        for (&p, &t) in pred.iter().zip(truth) {
            match (p, t) {
                (true, true) => o.true_positive += 1,
                (true, false) => o.false_positive += 1,
                (false, true) => o.false_negative += 1,
                (false, false) => {}
            }
        }
        o
    }
    pub fn predicted(&self) -> usize {
        self.true_positive + self.false_positive
    }
    pub fn truth(&self) -> usize {
        self.true_positive + self.false_negative
    }
}

fn ratio(num: usize, den: usize) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// Dice, IoU, precision and recall from voxel counts.
pub fn overlap_metrics(o: Overlap) -> (Option<f64>, Option<f64>, Option<f64>, Option<f64>) {
    let (tp, fp, fn_) = (o.true_positive, o.false_positive, o.false_negative);
    let union = tp + fp + fn_;
    let dice = if union == 0 {
        Some(1.0)
    } else {
        ratio(2 * tp, 2 * tp + fp + fn_)
    };
    let iou = if union == 0 {
        Some(1.0)
    } else {
        ratio(tp, union)
    };
    (dice, iou, ratio(tp, tp + fp), ratio(tp, tp + fn_))
}

/// The `q`-th percentile (0..=100) with linear interpolation between order statistics (numpy's
/// and torch's default); `None` for no values.
pub fn percentile(values: &[f64], q: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    let (a, b) = (sorted[lo], sorted[hi.min(sorted.len() - 1)]);
    Some(a + (b - a) * (rank - lo as f64))
}

/// The two directed surface distance sets: prediction surface to truth surface, and back.
pub fn surface_distances(
    pred: &[bool],
    truth: &[bool],
    shape: [usize; 3],
    spacing_zyx: [f64; 3],
) -> Result<(Vec<f64>, Vec<f64>)> {
    let (pred_surface, truth_surface) = (surface(pred, shape)?, surface(truth, shape)?);
    Ok((
        directed_distances(&pred_surface, &truth_surface, shape, spacing_zyx)?,
        directed_distances(&truth_surface, &pred_surface, shape, spacing_zyx)?,
    ))
}

/// All metrics of one class: `pred` and `truth` masks of shape `[z, y, x]` with voxel spacing
/// in mm.
pub fn class_metrics(
    pred: &[bool],
    truth: &[bool],
    shape: [usize; 3],
    spacing_zyx: [f64; 3],
) -> Result<ClassMetrics> {
    check_mask("class_metrics", pred, shape)?;
    check_mask("class_metrics", truth, shape)?;
    let overlap = Overlap::of(pred, truth);
    let (dice, iou, precision, recall) = overlap_metrics(overlap);
    let voxel_ml = spacing_zyx.iter().map(|s| s.abs()).product::<f64>() / 1000.0;
    let volume_difference_ml =
        Some((overlap.predicted() as f64 - overlap.truth() as f64) * voxel_ml);
    let (hd95_mm, assd_mm) = if overlap.predicted() == 0 || overlap.truth() == 0 {
        (None, None)
    } else {
        let (forward, backward) = surface_distances(pred, truth, shape, spacing_zyx)?;
        let hd95 = match (percentile(&forward, 95.0), percentile(&backward, 95.0)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        let count = forward.len() + backward.len();
        let assd = (count > 0)
            .then(|| (forward.iter().sum::<f64>() + backward.iter().sum::<f64>()) / count as f64);
        (hd95, assd)
    };
    Ok(ClassMetrics {
        dice,
        iou,
        precision,
        recall,
        volume_difference_ml,
        hd95_mm,
        assd_mm,
    })
}

/// Lesion detection between a predicted and a true tumour mask (26-connected lesions).
pub fn lesion_detection(
    pred: &[bool],
    truth: &[bool],
    shape: [usize; 3],
) -> Result<LesionDetection> {
    let pred_lesions = label_components(pred, shape, Connectivity::Full)?;
    let truth_lesions = label_components(truth, shape, Connectivity::Full)?;
    let mut truth_hit = vec![false; truth_lesions.count()];
    let mut pred_hit = vec![false; pred_lesions.count()];
    for (&p, &t) in pred_lesions.labels.iter().zip(&truth_lesions.labels) {
        if p != 0 && t != 0 {
            truth_hit[t as usize - 1] = true;
            pred_hit[p as usize - 1] = true;
        }
    }
    let detected = truth_hit.iter().filter(|&&h| h).count();
    let true_predictions = pred_hit.iter().filter(|&&h| h).count();
    let precision = ratio(true_predictions, pred_lesions.count());
    let recall = ratio(detected, truth_lesions.count());
    let f1 = match (precision, recall) {
        (Some(p), Some(r)) if p + r > 0.0 => Some(2.0 * p * r / (p + r)),
        (Some(_), Some(_)) => Some(0.0),
        _ => None,
    };
    Ok(LesionDetection {
        truth: truth_lesions.count(),
        predicted: pred_lesions.count(),
        detected,
        false_positive: pred_lesions.count() - true_predictions,
        precision,
        recall,
        f1,
    })
}
