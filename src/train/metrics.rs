//! The validation scores of a run: Dice, IoU, precision and recall of the thresholded
//! prediction (`sigmoid > 0.5` for a 0/1 target, the argmax for class ids), counted per case,
//! scored per case and then averaged over the cases, each foreground class apart and averaged
//! for class targets.
//!
//! A score whose denominator is zero is 1 when the case has neither prediction nor truth of
//! the class (empty against empty is a perfect answer) and 0 otherwise: precision without any
//! predicted voxel but with truth present, and recall with predicted voxels but no truth, are 0,
//! since the network missed everything or found only false positives.

use crate::eval::metrics::Overlap;

/// The four scores of one case, or their mean over cases.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Scores {
    pub dice: f64,
    pub iou: f64,
    pub precision: f64,
    pub recall: f64,
}

impl Scores {
    /// The scores of one case's voxel counts (see the module documentation for empty masks).
    pub fn of_case(o: Overlap) -> Self {
        let (tp, fp, fn_) = (o.true_positive, o.false_positive, o.false_negative);
        let both_empty = tp + fp + fn_ == 0;
        let ratio = |num: usize, den: usize| match den {
            0 if both_empty => 1.0,
            0 => 0.0,
            d => num as f64 / d as f64,
        };
        Scores {
            dice: ratio(2 * tp, 2 * tp + fp + fn_),
            iou: ratio(tp, tp + fp + fn_),
            precision: ratio(tp, tp + fp),
            recall: ratio(tp, tp + fn_),
        }
    }

    fn add(self, other: Scores) -> Scores {
        Scores {
            dice: self.dice + other.dice,
            iou: self.iou + other.iou,
            precision: self.precision + other.precision,
            recall: self.recall + other.recall,
        }
    }

    fn divide(self, n: usize) -> Scores {
        let n = n.max(1) as f64;
        Scores {
            dice: self.dice / n,
            iou: self.iou / n,
            precision: self.precision / n,
            recall: self.recall / n,
        }
    }

    /// The mean over `cases` (each a count per scored class) of each case's scores averaged over
    /// its classes; summed in case order, so the same counts give the same bits.
    pub fn mean_over_cases(cases: &[Vec<Overlap>]) -> Scores {
        cases
            .iter()
            .map(|classes| {
                classes
                    .iter()
                    .map(|&o| Scores::of_case(o))
                    .fold(Scores::default(), Scores::add)
                    .divide(classes.len())
            })
            .fold(Scores::default(), Scores::add)
            .divide(cases.len())
    }
}

/// Adds the voxels of one batch to its case's counts: `logits` [N, classes, spatial...] against
/// `labels` (a 0/1 mask [N, 1, ...] when `classes == 1`, class ids [N, ...] otherwise). A 0/1
/// target is predicted where `sigmoid(logit) > 0.5`, i.e. `logit > 0`; class ids by the argmax
/// (the first class on ties), each foreground class `k` counted in `counts[k - 1]`.
pub fn add_overlaps(
    logits: &[f32],
    labels: &[f32],
    classes: usize,
    spatial: usize,
    counts: &mut [Overlap],
) {
    let count = |o: &mut Overlap, predicted: bool, truth: bool| match (predicted, truth) {
        (true, true) => o.true_positive += 1,
        (true, false) => o.false_positive += 1,
        (false, true) => o.false_negative += 1,
        (false, false) => {}
    };
    if classes == 1 {
        for (&l, &g) in logits.iter().zip(labels) {
            count(&mut counts[0], l > 0.0, g >= 0.5);
        }
        return;
    }
    for (i, &truth) in labels.iter().enumerate() {
        let (n, v) = (i / spatial, i % spatial);
        let score = |k: usize| logits[(n * classes + k) * spatial + v];
        let predicted =
            (1..classes).fold(0, |best, k| if score(k) > score(best) { k } else { best });
        for k in 1..classes {
            count(&mut counts[k - 1], predicted == k, truth as usize == k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlap(true_positive: usize, false_positive: usize, false_negative: usize) -> Overlap {
        Overlap {
            true_positive,
            false_positive,
            false_negative,
        }
    }

    #[test]
    fn scores_of_hand_counted_masks() {
        // Prediction 1 1 1 0 0 against truth 0 1 1 1 0: tp 2, fp 1, fn 1.
        let mut counts = [Overlap::default()];
        let logits = [2.0, 0.5, 3.0, -1.0, -4.0];
        let truth = [0.0, 1.0, 1.0, 1.0, 0.0];
        add_overlaps(&logits, &truth, 1, 5, &mut counts);
        assert_eq!(counts[0], overlap(2, 1, 1));
        let s = Scores::of_case(counts[0]);
        assert_eq!(s.dice, 4.0 / 6.0);
        assert_eq!(s.iou, 0.5);
        assert_eq!(s.precision, 2.0 / 3.0);
        assert_eq!(s.recall, 2.0 / 3.0);
        // A logit of exactly 0 is sigmoid 0.5: not above the threshold.
        let mut counts = [Overlap::default()];
        add_overlaps(&[0.0, 1e-3], &[1.0, 0.0], 1, 2, &mut counts);
        assert_eq!(counts[0], overlap(0, 1, 1));
        let s = Scores::of_case(overlap(3, 0, 1));
        assert_eq!((s.precision, s.recall, s.iou), (1.0, 0.75, 0.75));
    }

    #[test]
    fn empty_masks_score_one_only_against_empty_truth() {
        let perfect = Scores {
            dice: 1.0,
            iou: 1.0,
            precision: 1.0,
            recall: 1.0,
        };
        assert_eq!(Scores::of_case(Overlap::default()), perfect);
        // Truth but no prediction: everything missed.
        assert_eq!(Scores::of_case(overlap(0, 0, 5)), Scores::default());
        // Prediction but no truth: only false positives.
        assert_eq!(Scores::of_case(overlap(0, 4, 0)), Scores::default());
    }

    #[test]
    fn class_ids_score_each_foreground_class_by_the_argmax() {
        // Two voxels, three classes, logits [N=1, 3, 2]: voxel 0 predicts class 2, voxel 1
        // class 1 (ties go to the lower class); truth is 2 and 2.
        let logits = [0.0, 0.0, 1.0, 5.0, 3.0, 5.0];
        let labels = [2.0, 2.0];
        let mut counts = [Overlap::default(); 2];
        add_overlaps(&logits, &labels, 3, 2, &mut counts);
        assert_eq!(counts, [overlap(0, 1, 0), overlap(1, 0, 1)]);
        // Case scores average the classes, then the cases are averaged.
        let cases = vec![counts.to_vec(), vec![Overlap::default(), overlap(2, 0, 0)]];
        let mean = Scores::mean_over_cases(&cases);
        let class_2 = Scores::of_case(counts[1]);
        assert_eq!(mean.dice, ((0.0 + class_2.dice) / 2.0 + 1.0) / 2.0);
        assert_eq!(mean.recall, ((0.0 + 0.5) / 2.0 + 1.0) / 2.0);
        assert_eq!(Scores::mean_over_cases(&[]), Scores::default());
    }
}
