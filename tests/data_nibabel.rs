//! NIfTI files read by Hepar exactly as nibabel reads them: nibabel's own test data (big endian,
//! scaled, 4D, NIfTI-2, CIFTI-2), files written by nibabel for every datatype, byte order, version
//! and form, and files written by Hepar read back by nibabel.
//!
//! Needs python3 with nibabel (`python3 -m pip install nibabel`); fails loudly without it.

use hepar::cli::inspect::Inspection;
use hepar::data::nifti::{read_nifti, NiftiDataType, NiftiHeader, NiftiVersion};
use hepar::data::synth::phantom;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const HELPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data_nibabel_helper.py");

fn python(args: &[&str]) -> String {
    let out = Command::new("python3").arg(HELPER).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run python3 ({e}): this test needs python3 with nibabel; install it with `python3 -m pip install nibabel`")
    });
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No module named") {
            panic!(
                "python3 has no nibabel: install it with `python3 -m pip install nibabel`\n{err}"
            );
        }
        panic!("nibabel helper failed: {err}");
    }
    String::from_utf8(out.stdout).expect("helper output is UTF-8")
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) if s == "nan" => f64::NAN,
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        other => panic!("not a number: {other}"),
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= rel * a.abs().max(b.abs()).max(1.0)
}

/// Compares Hepar's reading of `reference["file"]` with nibabel's.
fn check_against(reference: &Value) {
    let path = PathBuf::from(reference["file"].as_str().unwrap());
    let image =
        read_nifti(&path).unwrap_or_else(|e| panic!("hepar cannot read {}: {e}", path.display()));
    let ours = Inspection::of(&image);
    let name = path.display();
    let shape: Vec<usize> = reference["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(ours.shape, shape, "{name}: shape");
    assert_eq!(
        ours.datatype,
        reference["datatype"].as_str().unwrap(),
        "{name}: datatype"
    );
    let spacing: Vec<f64> = reference["spacing"]
        .as_array()
        .unwrap()
        .iter()
        .map(number)
        .collect();
    assert_eq!(ours.spacing.len(), spacing.len(), "{name}: spacing");
    for (a, b) in ours.spacing.iter().zip(&spacing) {
        assert!(
            close(*a, *b, 1e-12),
            "{name}: spacing {:?} vs nibabel {spacing:?}",
            ours.spacing
        );
    }
    for r in 0..4 {
        for c in 0..4 {
            let b = number(&reference["affine"][r][c]);
            assert!(
                close(ours.affine[r][c], b, 1e-9),
                "{name}: affine[{r}][{c}] {} vs nibabel {b}",
                ours.affine[r][c]
            );
        }
    }
    assert_eq!(
        ours.orientation,
        reference["orientation"].as_str().unwrap(),
        "{name}: orientation"
    );
    // Values are f32 in Hepar, f64 in nibabel: agree to f32 precision.
    assert!(
        close(ours.min, number(&reference["min"]), 1e-6),
        "{name}: min {} vs {}",
        ours.min,
        reference["min"]
    );
    assert!(
        close(ours.max, number(&reference["max"]), 1e-6),
        "{name}: max {} vs {}",
        ours.max,
        reference["max"]
    );
    // The mean can cancel to far below the values' size: compare it at the values' scale.
    let scale = number(&reference["min"])
        .abs()
        .max(number(&reference["max"]).abs())
        .max(1.0);
    let mean = number(&reference["mean"]);
    assert!(
        (ours.mean.is_nan() && mean.is_nan()) || (ours.mean - mean).abs() <= 1e-6 * scale,
        "{name}: mean {} vs {mean}",
        ours.mean
    );
    let indices = reference["sample_index"].as_array().unwrap();
    let values = reference["sample_value"].as_array().unwrap();
    assert!(!indices.is_empty());
    for (i, v) in indices.iter().zip(values) {
        let i = i.as_u64().unwrap() as usize;
        let expected = number(v);
        assert!(
            close(image.data[i] as f64, expected, 1e-6),
            "{name}: voxel {i}: {} vs nibabel {expected}",
            image.data[i]
        );
    }
}

fn describe(paths: &[PathBuf]) -> Vec<Value> {
    let mut args = vec!["describe".to_string()];
    args.extend(paths.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    python(&args)
        .lines()
        .map(|l| serde_json::from_str(l).expect("helper JSON"))
        .collect()
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hepar-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn nibabel_test_data_reads_as_nibabel_reads_it() {
    let dir = PathBuf::from(python(&["datadir"]).trim());
    let names = [
        "anatomical.nii",        // big endian int16
        "example4d.nii.gz",      // 4D, rotated qform/sform
        "example_nifti2.nii.gz", // NIfTI-2
        "functional.nii",        // scaled int16, 4D
        "reoriented_anat_moved.nii",
        "resampled_anat_moved.nii", // float32 with NaN
        "standard.nii.gz",          // uint8
        "row_major.dconn.nii",      // CIFTI-2: NIfTI-2 with an extension, 6D
    ];
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    for p in &paths {
        assert!(
            p.is_file(),
            "nibabel test file {} missing: reinstall with `python3 -m pip install nibabel`",
            p.display()
        );
    }
    let references = describe(&paths);
    assert_eq!(references.len(), paths.len());
    references.iter().for_each(check_against);
}

#[test]
fn files_written_by_nibabel_for_every_datatype_order_and_version() {
    let dir = temp_dir("nibabel-written");
    let files: Vec<PathBuf> = python(&["write", dir.to_str().unwrap()])
        .lines()
        .map(PathBuf::from)
        .collect();
    assert!(files.len() >= 28, "helper wrote {} files", files.len());
    let references = describe(&files);
    references.iter().for_each(check_against);
    // Spot-check that every kind of file was covered.
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for needle in [
        "v2-be-float64",
        "v1-be-uint16",
        "v2-le-int8",
        "int16-none",
        "int16-qform",
    ] {
        assert!(names.iter().any(|n| n.contains(needle)), "no file {needle}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn files_written_by_hepar_carry_the_source_geometry_for_nibabel() {
    let dir = temp_dir("hepar-written");
    let (image, label) = phantom(4, 0, [10, 12, 9]).unwrap();
    let image_path = dir.join("image.nii.gz");
    let mask_path = dir.join("mask.nii");
    image.write(&image_path, NiftiDataType::I16).unwrap();
    image
        .write_data(&mask_path, &label.data, NiftiDataType::U8)
        .unwrap();
    // A NIfTI-2 big-endian float64 copy of the same geometry.
    let mut header: NiftiHeader = image.header.clone();
    header.version = NiftiVersion::Nifti2;
    header.endianness = hepar::data::nifti::Endianness::Big;
    header.datatype = NiftiDataType::F64;
    let v2_path = dir.join("image-v2.nii");
    hepar::data::nifti::write_nifti(&v2_path, &header, &image.data).unwrap();

    let paths = vec![image_path, mask_path, v2_path];
    let references = describe(&paths);
    let ours = image.affine();
    for (reference, path) in references.iter().zip(&paths) {
        check_against(reference);
        for r in 0..4 {
            for c in 0..4 {
                let theirs = number(&reference["affine"][r][c]);
                // NIfTI-1 stores the forms as float32.
                assert!(
                    close(theirs, ours[r][c], 1e-6),
                    "{}: affine[{r}][{c}] {theirs} vs source {}",
                    path.display(),
                    ours[r][c]
                );
            }
        }
        assert_eq!(
            reference["shape"],
            serde_json::json!([9, 12, 10]),
            "{}",
            path.display()
        );
        assert_eq!(reference["orientation"], "LPS");
    }
    assert_eq!(references[1]["datatype"], "uint8");
    assert_eq!(references[2]["datatype"], "float64");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn helper_script_is_where_the_test_expects_it() {
    assert!(Path::new(HELPER).is_file());
}
