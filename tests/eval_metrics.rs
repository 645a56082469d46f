//! Evaluation metrics against values computed by hand on tiny masks.

use hepar::eval::metrics::{class_metrics, lesion_detection, percentile};
use hepar::eval::{evaluate_labels, EvalReport};

fn mask(shape: [usize; 3], voxels: &[[usize; 3]]) -> Vec<bool> {
    let mut m = vec![false; shape.iter().product()];
    for &[z, y, x] in voxels {
        m[(z * shape[1] + y) * shape[2] + x] = true;
    }
    m
}

fn cube(shape: [usize; 3], start: [usize; 3], size: usize) -> Vec<bool> {
    let mut voxels = Vec::new();
    for z in start[0]..start[0] + size {
        for y in start[1]..start[1] + size {
            for x in start[2]..start[2] + size {
                voxels.push([z, y, x]);
            }
        }
    }
    mask(shape, &voxels)
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-12)
}

#[test]
fn percentile_interpolates_linearly_between_order_statistics() {
    // rank = 0.95 * 3 = 2.85: 3 + 0.85 * (4 - 3).
    assert!(close(percentile(&[4.0, 1.0, 3.0, 2.0], 95.0), 3.85));
    assert!(close(percentile(&[7.0], 95.0), 7.0));
    assert!(close(percentile(&[0.0, 10.0], 50.0), 5.0));
    assert_eq!(percentile(&[], 95.0), None);
}

#[test]
fn single_voxels_apart_with_anisotropic_spacing() {
    let shape = [3, 4, 5];
    let spacing = [2.0, 0.5, 1.5];
    let pred = mask(shape, &[[0, 0, 0]]);
    let truth = mask(shape, &[[1, 2, 3]]);
    let m = class_metrics(&pred, &truth, shape, spacing).unwrap();
    // sqrt((1 * 2)^2 + (2 * 0.5)^2 + (3 * 1.5)^2) = sqrt(4 + 1 + 20.25).
    let d = 25.25f64.sqrt();
    assert!(close(m.hd95_mm, d) && close(m.assd_mm, d), "{m:?}");
    assert!(close(m.dice, 0.0) && close(m.iou, 0.0));
    assert!(close(m.precision, 0.0) && close(m.recall, 0.0));
    assert!(close(m.volume_difference_ml, 0.0));
    // The same voxel: everything perfect.
    let m = class_metrics(&truth, &truth, shape, spacing).unwrap();
    assert!(
        close(m.dice, 1.0) && close(m.iou, 1.0) && close(m.hd95_mm, 0.0) && close(m.assd_mm, 0.0)
    );
}

#[test]
fn cubes_shifted_by_one_voxel() {
    // Two 4^3 cubes, the prediction one voxel further along x. Of the prediction's 56 surface
    // voxels, 20 lie 1 voxel from the truth's surface: the far face (16) and the interior
    // 2 x 2 of the near face (4, one voxel inside the truth); the other 36 lie on it. The truth
    // mirrors this.
    let shape = [10, 10, 10];
    let truth = cube(shape, [2, 2, 2], 4);
    let pred = cube(shape, [2, 2, 3], 4);
    let m = class_metrics(&pred, &truth, shape, [1.0, 1.0, 1.0]).unwrap();
    // 48 voxels shared: dice 96 / 128, IoU 48 / 80.
    assert!(close(m.dice, 0.75) && close(m.iou, 0.6), "{m:?}");
    assert!(close(m.precision, 0.75) && close(m.recall, 0.75));
    // 95th percentile: rank 0.95 * 55 = 52.25 falls among the ones (order statistics 36..55).
    assert!(close(m.hd95_mm, 1.0), "{m:?}");
    assert!(close(m.assd_mm, 40.0 / 112.0), "{m:?}");

    // x spacing 2 mm: the far face is 2 mm away; the 4 near-face voxels are still 1 mm from the
    // truth's y or z face. Sorted: 36 zeros, 4 ones, 16 twos -> the 95th percentile is 2.
    let m = class_metrics(&pred, &truth, shape, [1.0, 1.0, 2.0]).unwrap();
    assert!(close(m.hd95_mm, 2.0), "{m:?}");
    assert!(close(m.assd_mm, 2.0 * (16.0 * 2.0 + 4.0) / 112.0), "{m:?}");
    // Voxel volume 2 mm^3; same voxel counts, no volume difference.
    assert!(close(m.volume_difference_ml, 0.0));
}

#[test]
fn hd95_interpolates_over_a_line() {
    // A 10-voxel line against its first voxel: every line voxel is surface, distances 0..9 one
    // way (95th percentile at rank 8.55) and 0 the other way.
    let shape = [1, 1, 10];
    let line: Vec<[usize; 3]> = (0..10).map(|x| [0, 0, x]).collect();
    let pred = mask(shape, &line);
    let truth = mask(shape, &[[0, 0, 0]]);
    let m = class_metrics(&pred, &truth, shape, [1.0, 1.0, 1.0]).unwrap();
    assert!(close(m.hd95_mm, 8.55), "{m:?}");
    assert!(close(m.assd_mm, 45.0 / 11.0), "{m:?}");
    // 10 voxels of 1 mm^3 predicted, 1 true: +0.009 ml.
    assert!(close(m.volume_difference_ml, 0.009), "{m:?}");
    assert!(close(m.precision, 0.1) && close(m.recall, 1.0));
}

#[test]
fn empty_masks_follow_the_rules() {
    let shape = [2, 3, 3];
    let spacing = [2.0, 1.0, 0.5];
    let empty = vec![false; 18];
    let some = mask(shape, &[[1, 1, 1], [1, 1, 2]]);
    let both = class_metrics(&empty, &empty, shape, spacing).unwrap();
    assert!(close(both.dice, 1.0) && close(both.iou, 1.0));
    assert_eq!((both.precision, both.recall), (None, None));
    assert_eq!((both.hd95_mm, both.assd_mm), (None, None));
    assert!(close(both.volume_difference_ml, 0.0));
    let no_pred = class_metrics(&empty, &some, shape, spacing).unwrap();
    assert!(close(no_pred.dice, 0.0) && close(no_pred.iou, 0.0));
    assert_eq!(no_pred.precision, None);
    assert!(close(no_pred.recall, 0.0));
    assert_eq!((no_pred.hd95_mm, no_pred.assd_mm), (None, None));
    // Two voxels of 1 mm^3 missing.
    assert!(close(no_pred.volume_difference_ml, -0.002));
    let no_truth = class_metrics(&some, &empty, shape, spacing).unwrap();
    assert!(close(no_truth.dice, 0.0) && close(no_truth.precision, 0.0));
    assert_eq!(no_truth.recall, None);
    assert_eq!(no_truth.hd95_mm, None);
}

#[test]
fn lesions_are_26_connected_and_matched_by_touch() {
    let shape = [3, 6, 6];
    // Truth: lesion A (two voxels touching by a corner across slices), lesion B far away.
    let truth = mask(shape, &[[0, 0, 0], [1, 1, 1], [2, 5, 5]]);
    // Prediction: one component touching A, one false positive, nothing on B.
    let pred = mask(shape, &[[1, 1, 1], [1, 1, 2], [0, 4, 0]]);
    let l = lesion_detection(&pred, &truth, shape).unwrap();
    assert_eq!(
        (l.truth, l.predicted, l.detected, l.false_positive),
        (2, 2, 1, 1)
    );
    assert!(close(l.precision, 0.5) && close(l.recall, 0.5) && close(l.f1, 0.5));
    let none = lesion_detection(&[false; 108], &truth, shape).unwrap();
    assert_eq!((none.predicted, none.precision, none.f1), (0, None, None));
    assert!(close(none.recall, 0.0));
}

#[test]
fn label_maps_give_liver_as_labels_one_and_two_and_means_skip_undefined() {
    let shape = [1, 2, 4];
    // Truth: liver 1 1 1 2 / 0 0 0 0; prediction: 1 1 2 2 / 0 0 0 0 (no tumour missed, one extra).
    let truth = [1.0f32, 1.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0];
    let pred = [1.0f32, 1.0, 2.0, 2.0, 0.0, 0.0, 0.0, 0.0];
    let a = evaluate_labels("a", &pred, &truth, shape, [1.0; 3]).unwrap();
    assert!(close(a.liver.dice, 1.0));
    assert!(close(a.tumor.overlap.dice, 2.0 / 3.0));
    // A case without any tumour in either: tumour precision undefined.
    let none = [1.0f32, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let b = evaluate_labels("b", &none, &none, shape, [1.0; 3]).unwrap();
    assert_eq!(b.tumor.overlap.precision, None);
    let report = EvalReport::new(vec![a.clone(), b]);
    // Precision defined in case a only (1/2), Dice in both ((2/3 + 1) / 2).
    assert!(close(report.mean.tumor.overlap.precision, 0.5));
    assert!(close(
        report.mean.tumor.overlap.dice,
        (2.0 / 3.0 + 1.0) / 2.0
    ));
    assert_eq!(report.mean.tumor.overlap.hd95_mm, a.tumor.overlap.hd95_mm);
    let json: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    assert_eq!(json["cases"][0]["case"], "a");
    assert!(json["cases"][1]["tumor"]["precision"].is_null());
    assert!(json["cases"][1]["tumor"]["lesions"]["recall"].is_null());
    assert!(json["mean"]["liver"]["dice"].is_number());
    assert!(json["mean"]["tumor"]["lesions"]["truth"].is_number());
}
