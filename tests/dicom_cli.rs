//! `hepar convert` and `hepar inspect` on DICOM series folders: the NIfTI written keeps the
//! series' voxels and geometry (checked with Hepar's reader and with nibabel), inspect reports
//! the same keys for the folder as for the converted file, plus the series UID and slice count.
//!
//! The nibabel check needs python3 with nibabel (`bash scripts/setup.sh`); it fails without it.

mod common;
#[path = "dicom_support/mod.rs"]
mod dicom_support;

use common::tiny_data::temp_dir;
use dicom_dictionary_std::uids;
use dicom_support::{coronal_series, write_shuffled};
use hepar::data::dicom::read_series;
use hepar::data::Volume;
use serde_json::Value;
use std::process::Command;

fn hepar() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hepar"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{:?} failed:\n{}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn convert_writes_the_series_with_its_geometry() {
    let dir = temp_dir("dicom-cli", "convert");
    let series_dir = dir.join("PATIENT_DICOM");
    write_shuffled(
        &series_dir,
        &coronal_series(5, uids::EXPLICIT_VR_LITTLE_ENDIAN),
    );
    let out = dir.join("ct.nii.gz");
    run_ok(hepar().arg("convert").arg(&series_dir).arg(&out));
    let direct = read_series(&series_dir, None).unwrap();
    let written = Volume::read(&out).unwrap();
    assert_eq!(written.shape_zyx, direct.volume.shape_zyx);
    assert_eq!(written.data, direct.volume.data);
    assert_eq!(written.header.datatype.name(), "int16");
    for (r, row) in direct.volume.affine().iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            assert!(
                (written.affine()[r][c] - v).abs() < 1e-5,
                "affine [{r}][{c}]"
            );
        }
    }

    // nibabel sees the same affine through both forms, and the same values
    let script = r#"
import json, sys
import nibabel as nib
img = nib.load(sys.argv[1])
print(json.dumps({"qform": img.get_qform().tolist(), "sform": img.get_sform().tolist(),
                  "codes": [int(img.header["qform_code"]), int(img.header["sform_code"])],
                  "first": float(img.get_fdata()[0, 0, 0]), "shape": list(img.shape)}))
"#;
    let text = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}); this test needs nibabel"));
    assert!(
        text.status.success(),
        "nibabel failed (install it: bash scripts/setup.sh): {}",
        String::from_utf8_lossy(&text.stderr)
    );
    let nib: Value = serde_json::from_slice(&text.stdout).unwrap();
    assert_eq!(nib["codes"], serde_json::json!([1, 1]));
    assert_eq!(nib["shape"], serde_json::json!([4, 3, 5]));
    assert_eq!(nib["first"].as_f64().unwrap(), direct.volume.data[0] as f64);
    let want = direct.volume.affine();
    for form in ["qform", "sform"] {
        for r in 0..4 {
            for c in 0..4 {
                let got = nib[form][r][c].as_f64().unwrap();
                assert!(
                    (got - want[r][c]).abs() < 1e-5,
                    "nibabel {form}[{r}][{c}] {got} vs {}",
                    want[r][c]
                );
            }
        }
    }

    // NIfTI to NIfTI keeps everything too; a bad destination is refused
    let copy = dir.join("copy.nii");
    run_ok(hepar().arg("convert").arg(&out).arg(&copy));
    assert_eq!(Volume::read(&copy).unwrap().data, written.data);
    let bad = hepar()
        .arg("convert")
        .arg(&series_dir)
        .arg(dir.join("x.png"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains(".nii"));
}

#[test]
fn convert_mask_series_writes_uint8_zero_one() {
    let dir = temp_dir("dicom-cli", "mask");
    let mut slices = coronal_series(3, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    for s in &mut slices {
        s.stored = (0..12).map(|i| if i < 5 { 255 } else { 0 }).collect();
    }
    write_shuffled(&dir.join("liver"), &slices);
    let out = dir.join("liver.nii");
    run_ok(
        hepar()
            .arg("convert")
            .arg("--mask")
            .arg(dir.join("liver"))
            .arg(&out),
    );
    let mask = Volume::read(&out).unwrap();
    assert_eq!(mask.header.datatype.name(), "uint8");
    assert_eq!(mask.data.iter().filter(|&&v| v == 1.0).count(), 15);
    assert!(mask.data.iter().all(|&v| v == 0.0 || v == 1.0));
}

#[test]
fn inspect_reports_a_dicom_folder_like_its_nifti() {
    let dir = temp_dir("dicom-cli", "inspect");
    let series_dir = dir.join("series");
    write_shuffled(
        &series_dir,
        &coronal_series(4, uids::IMPLICIT_VR_LITTLE_ENDIAN),
    );
    let out = dir.join("ct.nii.gz");
    run_ok(hepar().arg("convert").arg(&series_dir).arg(&out));
    let folder: Value = serde_json::from_str(&run_ok(
        hepar().args(["inspect", "--json"]).arg(&series_dir),
    ))
    .unwrap();
    let file: Value =
        serde_json::from_str(&run_ok(hepar().args(["inspect", "--json"]).arg(&out))).unwrap();
    assert_eq!(folder["series_uid"], "2.25.777");
    assert_eq!(folder["slice_count"], 4);
    for (key, value) in file.as_object().unwrap() {
        let ours = &folder[key];
        match (ours.as_f64(), value.as_f64()) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-6, "{key}: {a} vs {b}"),
            _ if key == "affine" => {
                for r in 0..4 {
                    for c in 0..4 {
                        let (a, b) = (ours[r][c].as_f64().unwrap(), value[r][c].as_f64().unwrap());
                        assert!((a - b).abs() < 1e-5, "affine {r} {c}: {a} vs {b}");
                    }
                }
            }
            _ if key == "spacing" => {
                for i in 0..3 {
                    let (a, b) = (ours[i].as_f64().unwrap(), value[i].as_f64().unwrap());
                    assert!((a - b).abs() < 1e-5, "spacing {i}: {a} vs {b}");
                }
            }
            _ => assert_eq!(ours, value, "{key}"),
        }
    }
    assert_eq!(folder["orientation"], "LIP");
    let text = run_ok(hepar().arg("inspect").arg(&series_dir));
    assert!(
        text.contains("2.25.777") && text.contains("slices:      4"),
        "{text}"
    );
}
