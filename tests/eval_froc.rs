//! Detection FROC (the RibFrac challenge's scoring) against detections counted by hand, and
//! `hepar froc` run as a user runs it on folders in the challenge's layout.

use hepar::data::nifti::NiftiDataType;
use hepar::data::Volume;
use hepar::eval::detection_csv::{case_rows, to_detection_csv, DetectionRow};
use hepar::eval::froc::{froc, froc_folders, match_scan, FrocReport, KEY_FP};
use std::path::{Path, PathBuf};
use std::process::Command;

/// (z, y, x) as the files store them; the FROC reads (x, y, z) but a box is a box.
const SHAPE_ZYX: [usize; 3] = [6, 10, 12];

/// A label map with boxes `(label, z0..z1, y0..y1, x0..x1)`.
fn boxes(list: &[(u8, [usize; 6])]) -> Vec<u8> {
    let [d, h, w] = SHAPE_ZYX;
    let mut v = vec![0u8; d * h * w];
    for &(label, [z0, z1, y0, y1, x0, x1]) in list {
        for z in z0..z1 {
            for y in y0..y1 {
                for x in x0..x1 {
                    v[(z * h + y) * w + x] = label;
                }
            }
        }
    }
    v
}

/// Two fractures of 2x2x2 voxels.
fn truth_map() -> Vec<u8> {
    boxes(&[(1, [1, 3, 1, 3, 1, 3]), (2, [3, 5, 6, 8, 7, 9])])
}

fn truth_rows(id: &str) -> Vec<DetectionRow> {
    case_rows(id, &[f64::NAN, f64::NAN])
}

fn scan(id: &str, pred: &[u8], confidences: &[f64]) -> hepar::eval::froc::ScanDetections {
    match_scan(
        id,
        &truth_map(),
        pred,
        SHAPE_ZYX,
        &truth_rows(id),
        &case_rows(id, confidences),
    )
    .unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn a_perfect_prediction_scores_one_and_an_empty_one_zero() {
    let perfect = froc(&[
        scan("a", &truth_map(), &[0.9, 0.8]),
        scan("b", &truth_map(), &[0.7, 0.95]),
    ]);
    assert_eq!(perfect.truth_components, 4);
    assert!(
        perfect.key_recall.iter().all(|&r| close(r, 1.0)),
        "{perfect:?}"
    );
    assert!(close(perfect.average_recall, 1.0));
    assert!(close(perfect.dice, 1.0) && close(perfect.iou, 1.0));
    // At threshold 0.75 scan a keeps both, scan b one: recall 3/4, still no false positive.
    assert!(close(perfect.recall[75], 0.75) && perfect.fp[75] < 1e-8);

    let empty_map = vec![0u8; truth_map().len()];
    let empty = froc(&[scan("a", &empty_map, &[]), scan("b", &empty_map, &[])]);
    assert!(empty.average_recall < 1e-8 && empty.max_recall < 1e-8);
    assert!(empty.dice < 1e-8 && empty.iou < 1e-8);
}

#[test]
fn one_false_positive_per_scan_halves_the_recall_at_half_a_false_positive() {
    // Both fractures found at 0.95, plus one prediction away from them at 0.305 in each scan.
    let with_fp = || {
        let mut map = truth_map();
        let extra = boxes(&[(3, [0, 2, 7, 9, 1, 3])]);
        for (m, e) in map.iter_mut().zip(extra) {
            *m = (*m).max(e);
        }
        map
    };
    let report = froc(&[
        scan("a", &with_fp(), &[0.95, 0.95, 0.305]),
        scan("b", &with_fp(), &[0.95, 0.95, 0.305]),
    ]);
    // Thresholds 0.00..0.30: 2 FP over 2 scans, recall 1; 0.31..0.94: no FP, recall 1;
    // 0.95..0.99: nothing (the 95th threshold is 95 * 0.01 = 0.9500000000000001 > 0.95, as in
    // numpy's arange).
    for (i, (&fp, &recall)) in report.fp.iter().zip(&report.recall).enumerate() {
        let (want_fp, want_recall) = match i {
            0..=30 => (1.0, 1.0),
            31..=94 => (0.0, 1.0),
            _ => (0.0, 0.0),
        };
        assert!(
            close(fp, want_fp) && close(recall, want_recall),
            "threshold {i}: fp {fp} recall {recall}"
        );
    }
    // At 0.5 FP/scan: halfway between (0 FP, recall 0 at the highest threshold) and (1, 1).
    let want = [0.5, 1.0, 1.0, 1.0, 1.0];
    for ((k, r), w) in KEY_FP.iter().zip(&report.key_recall).zip(want) {
        assert!(close(*r, w), "recall at {k} FP/scan: {r}, want {w}");
    }
    assert!(close(report.average_recall, 0.9));
    // The extra voxels lower the global overlap: 16 shared of 16 true and 24 predicted.
    assert!(close(report.dice, 32.0 / 40.0) && close(report.iou, 16.0 / 24.0));
}

#[test]
fn a_hit_needs_iou_above_a_fifth_and_a_second_hit_is_no_false_positive() {
    // A fracture of 5 voxels along x, two predictions of 2 voxels inside it with a gap between
    // them: each has IoU 2/5 through the union region of the fracture; one true positive.
    let long = boxes(&[(1, [1, 2, 1, 2, 1, 6])]);
    let pred = boxes(&[(1, [1, 2, 1, 2, 1, 3]), (2, [1, 2, 1, 2, 4, 6])]);
    let rows = case_rows("a", &[0.9, 0.9]);
    let detections = match_scan("a", &long, &pred, SHAPE_ZYX, &rows, &rows).unwrap();
    assert!(detections
        .predictions
        .iter()
        .all(|m| close(m.max_iou, 0.4) && m.hit_label == 1));
    let report = froc(&[detections]);
    assert!(
        close(report.recall[0], 1.0) && report.fp[0] < 1e-8,
        "{report:?}"
    );
    // Touching predictions share one intersection region, which counts for the prediction at its
    // first voxel in (x, y, z) order (lowest x): the other one is a false positive.
    let halves = boxes(&[(1, [1, 3, 1, 3, 1, 2]), (2, [1, 3, 1, 3, 2, 3])]);
    let detections = scan("a", &halves, &[0.9, 0.9]);
    assert!(close(detections.predictions[0].max_iou, 1.0));
    assert_eq!(detections.predictions[1].max_iou, 0.0);
    // A prediction with 2 of fracture 2's 8 voxels: IoU 0.25 > 0.2 is a hit.
    let report = froc(&[scan("a", &boxes(&[(1, [3, 4, 6, 8, 7, 8])]), &[0.9])]);
    assert!(close(report.recall[0], 0.5) && report.fp[0] < 1e-8);
    // Fracture 2 touched at one voxel by a 3-voxel prediction reaching outside it.
    let pred = boxes(&[(1, [1, 3, 1, 3, 1, 3]), (2, [4, 5, 7, 8, 8, 11])]);
    let detections = scan("a", &pred, &[0.9, 0.9]);
    let second = detections.predictions[1];
    assert!(close(second.max_iou, 1.0 / 10.0) && second.hit_label == 2);
    let report = froc(&[detections]);
    assert!(close(report.recall[0], 0.5) && close(report.fp[0], 1.0));
    // A prediction without a CSV row never counts, neither as a hit nor as a false positive.
    let report = froc(&[scan("a", &truth_map(), &[0.9])]);
    assert!(close(report.recall[0], 0.5) && report.fp[0] < 1e-8);
}

fn hepar() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hepar"))
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hepar-froc-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_map(path: &Path, map: &[u8]) {
    let data = map.iter().map(|&v| v as f32).collect();
    Volume::new(data, SHAPE_ZYX, [2.0, 1.0, 1.0])
        .unwrap()
        .write(path, NiftiDataType::I16)
        .unwrap();
}

/// Truth and prediction folders of `cases` scans, each predicted perfectly at 0.9.
fn challenge_folders(dir: &Path, cases: &[&str]) -> (PathBuf, PathBuf) {
    let (truth, pred) = (dir.join("truth"), dir.join("pred"));
    let (mut truth_csv, mut pred_csv) = (Vec::new(), Vec::new());
    for id in cases {
        write_map(&truth.join(format!("{id}-label.nii.gz")), &truth_map());
        write_map(&pred.join(format!("{id}.nii.gz")), &truth_map());
        truth_csv.extend(truth_rows(id));
        pred_csv.extend(case_rows(id, &[0.9, 0.9]));
    }
    std::fs::write(truth.join("info.csv"), to_detection_csv(&truth_csv)).unwrap();
    std::fs::write(pred.join("pred.csv"), to_detection_csv(&pred_csv)).unwrap();
    (truth, pred)
}

#[test]
fn hepar_froc_writes_the_json_keys_and_the_curve() {
    let dir = temp_dir("cli");
    let (truth, pred) = challenge_folders(&dir, &["RibFrac1", "RibFrac2"]);
    let json = dir.join("out/froc.json");
    let out = hepar()
        .args(["froc", "--pred"])
        .arg(&pred)
        .arg("--truth")
        .arg(&truth)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("average recall (FROC score) 1.0000"),
        "{stdout}"
    );
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for key in [
        "fp",
        "recall",
        "key_fp",
        "key_recall",
        "average_recall",
        "max_recall",
        "dice",
        "iou",
    ] {
        assert!(value.get(key).is_some(), "no {key} in {value}");
    }
    assert_eq!(value["fp"].as_array().unwrap().len(), 100);
    assert!((value["average_recall"].as_f64().unwrap() - 1.0).abs() < 1e-6);
    let png = std::fs::read(dir.join("out/froc.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_prediction_is_named_and_the_other_cases_are_still_scored() {
    let dir = temp_dir("missing");
    let (truth, pred) = challenge_folders(&dir, &["RibFrac1", "RibFrac2"]);
    std::fs::remove_file(pred.join("RibFrac2.nii.gz")).unwrap();
    let (report, problems): (FrocReport, Vec<String>) = froc_folders(&pred, &truth).unwrap();
    assert_eq!(report.scans, 1);
    assert_eq!(problems.len(), 1);
    assert!(problems[0].contains("RibFrac2"), "{problems:?}");
    let json = dir.join("froc.json");
    let out = hepar()
        .args(["froc", "--pred"])
        .arg(&pred)
        .arg("--truth")
        .arg(&truth)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("case RibFrac2: no prediction"), "{stderr}");
    assert!(json.is_file(), "the scored cases' report is still written");
    // No CSV in the prediction folder: a clear error naming the folder.
    std::fs::remove_file(pred.join("pred.csv")).unwrap();
    let err = froc_folders(&pred, &truth).unwrap_err().to_string();
    assert!(
        err.contains("no .csv file in the prediction folder"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
