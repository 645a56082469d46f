//! `hepar eval` run as a user runs it, on tiny label maps written here.

use hepar::data::nifti::NiftiDataType;
use hepar::data::Volume;
use std::path::{Path, PathBuf};
use std::process::Command;

fn hepar() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hepar"))
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hepar-eval-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const SHAPE: [usize; 3] = [4, 6, 6];
const SPACING: [f64; 3] = [2.0, 1.0, 1.0];

/// Liver (label 1) over z 1..3, y 1..5, x 1..5 with a 2^3 tumour (label 2) at z 1..3, y 2..4 and
/// x from `tumor_x`.
fn labels(tumor_x: usize) -> Vec<f32> {
    let [d, h, w] = SHAPE;
    let mut v = vec![0.0f32; d * h * w];
    for z in 1..3 {
        for y in 1..5 {
            for x in 1..5 {
                let tumor = (2..4).contains(&y) && (tumor_x..tumor_x + 2).contains(&x);
                v[(z * h + y) * w + x] = if tumor { 2.0 } else { 1.0 };
            }
        }
    }
    v
}

fn write(path: &Path, data: Vec<f32>, shape: [usize; 3], spacing: [f64; 3], dtype: NiftiDataType) {
    Volume::new(data, shape, spacing)
        .unwrap()
        .write(path, dtype)
        .unwrap();
}

#[test]
fn eval_scores_a_pair_and_writes_json_and_csv() {
    let dir = temp_dir("pair");
    let (pred, truth) = (dir.join("case_a.nii.gz"), dir.join("truth.nii.gz"));
    write(&pred, labels(3), SHAPE, SPACING, NiftiDataType::U8);
    write(&truth, labels(2), SHAPE, SPACING, NiftiDataType::U8);
    let probabilities = dir.join("prob");
    std::fs::create_dir_all(&probabilities).unwrap();
    let prob: Vec<f32> = labels(3)
        .iter()
        .map(|&l| if l == 2.0 { 0.8 } else { 0.1 })
        .collect();
    write(
        &probabilities.join("case_a.nii.gz"),
        prob,
        SHAPE,
        SPACING,
        NiftiDataType::F32,
    );
    let (json, csv) = (dir.join("out/report.json"), dir.join("csv"));
    let out = hepar()
        .args(["eval", "--pred", pred.to_str().unwrap()])
        .args(["--truth", truth.to_str().unwrap()])
        .args(["--json", json.to_str().unwrap()])
        .args(["--csv", csv.to_str().unwrap()])
        .args(["--probabilities", probabilities.to_str().unwrap()])
        .args(["--png", dir.join("png").to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("case_a") && stdout.contains("liver dice"),
        "{stdout}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let case = &report["cases"][0];
    assert_eq!(case["case"], "case_a");
    // The liver (labels 1 and 2) is identical; the tumour cubes overlap by half.
    assert_eq!(case["liver"]["dice"], 1.0);
    assert_eq!(case["liver"]["hd95_mm"], 0.0);
    assert_eq!(case["tumor"]["dice"], 0.5);
    assert_eq!(case["tumor"]["iou"], 1.0 / 3.0);
    // Half the predicted voxels lie on the truth, half 1 mm (along x) away; the same back.
    assert_eq!(case["tumor"]["hd95_mm"], 1.0);
    assert_eq!(case["tumor"]["assd_mm"], 0.5);
    assert_eq!(case["tumor"]["volume_difference_ml"], 0.0);
    let lesions = &case["tumor"]["lesions"];
    assert_eq!(lesions["truth"], 1);
    assert_eq!(lesions["detected"], 1);
    assert_eq!(lesions["false_positive"], 0);
    assert_eq!(lesions["f1"], 1.0);
    assert_eq!(report["mean"]["tumor"]["dice"], 0.5);
    assert_eq!(report["mean"]["tumor"]["lesions"]["recall"], 1.0);

    let table = std::fs::read_to_string(csv.join("components.csv")).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("case,label,component,voxels,centroid_x_mm"));
    // Centroid index (x 3.5, y 2.5, z 1.5) times the spacing (1, 1, 2 mm).
    assert_eq!(lines[1], "case_a,2,1,8,3.500,2.500,3.000,1,0.800000");
    let png = std::fs::read(dir.join("png/case_a.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn eval_reports_bad_cases_by_name_and_still_scores_the_others() {
    let dir = temp_dir("folders");
    let (pred, truth) = (dir.join("pred"), dir.join("truth"));
    std::fs::create_dir_all(&pred).unwrap();
    std::fs::create_dir_all(&truth).unwrap();
    // good: a perfect pair.
    write(
        &pred.join("good.nii.gz"),
        labels(2),
        SHAPE,
        SPACING,
        NiftiDataType::U8,
    );
    write(
        &truth.join("good.nii.gz"),
        labels(2),
        SHAPE,
        SPACING,
        NiftiDataType::U8,
    );
    // shape: the prediction has one slice less.
    write(
        &pred.join("shape.nii.gz"),
        labels(2)[..3 * 36].to_vec(),
        [3, 6, 6],
        SPACING,
        NiftiDataType::U8,
    );
    write(
        &truth.join("shape.nii.gz"),
        labels(2),
        SHAPE,
        SPACING,
        NiftiDataType::U8,
    );
    // spacing: another slice thickness.
    write(
        &pred.join("spacing.nii"),
        labels(2),
        SHAPE,
        [2.5, 1.0, 1.0],
        NiftiDataType::U8,
    );
    write(
        &truth.join("spacing.nii"),
        labels(2),
        SHAPE,
        SPACING,
        NiftiDataType::U8,
    );
    // Unpaired on either side.
    write(
        &pred.join("lonely_pred.nii.gz"),
        labels(2),
        SHAPE,
        SPACING,
        NiftiDataType::U8,
    );
    write(
        &truth.join("lonely_truth.nii.gz"),
        labels(2),
        SHAPE,
        SPACING,
        NiftiDataType::U8,
    );
    let json = dir.join("report.json");
    let out = hepar()
        .args(["eval", "--pred", pred.to_str().unwrap()])
        .args(["--truth", truth.to_str().unwrap()])
        .args(["--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "bad cases must fail the command");
    assert!(
        stderr.contains("shape.nii.gz") && stderr.contains("shape (z, y, x)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("spacing.nii") && stderr.contains("spacing"),
        "{stderr}"
    );
    assert!(
        stderr.contains("lonely_pred.nii.gz") && stderr.contains("no truth file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("lonely_truth.nii.gz") && stderr.contains("no prediction file"),
        "{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let cases = report["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1);
    assert_eq!(cases[0]["case"], "good");
    assert_eq!(cases[0]["tumor"]["dice"], 1.0);

    // A file against a folder is a usage error.
    let out = hepar()
        .args(["eval", "--pred", pred.join("good.nii.gz").to_str().unwrap()])
        .args(["--truth", truth.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("both be files or both be folders"));
    let _ = std::fs::remove_dir_all(&dir);
}
