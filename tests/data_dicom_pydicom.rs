//! The DICOM reader against pydicom on pydicom's own public test files: CT_small (rescale
//! intercept -1024) and MR_small in four encodings (explicit and implicit VR little endian, explicit big
//! endian, RLE Lossless), same values after the modality LUT, same geometry; and
//! the files pydicom cannot decode either (truncated, JPEG 2000) fail with a message naming
//! the file or the transfer syntax.
//!
//! Needs python3 with pydicom (`bash scripts/setup.sh`); fails loudly without it.

mod common;

use common::tiny_data::temp_dir;
use hepar::data::dicom::read_series;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

const HELPER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data_dicom_pydicom_helper.py"
);

fn pydicom_reports(names: &[&str]) -> Vec<Value> {
    let out = Command::new("python3")
        .arg(HELPER)
        .args(names)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}): this test needs python3 with pydicom (bash scripts/setup.sh)")
        });
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pydicom helper failed (is pydicom installed? `python3 -m pip install pydicom`):\n{err}"
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

/// The file alone in a fresh folder, as a one-slice series.
fn folder_with(report: &Value, tag: &str) -> PathBuf {
    let src = PathBuf::from(report["file"].as_str().unwrap());
    let dir = temp_dir("pydicom", tag);
    std::fs::copy(&src, dir.join(src.file_name().unwrap())).unwrap();
    dir
}

#[test]
fn pydicom_test_files_read_with_the_values_pydicom_reports() {
    let names = [
        "CT_small.dcm",
        "MR_small.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_RLE.dcm",
    ];
    let reports = pydicom_reports(&names);
    assert_eq!(reports.len(), names.len());
    let mut encodings = std::collections::BTreeSet::new();
    for (report, name) in reports.iter().zip(names) {
        let dir = folder_with(report, name);
        let read = read_series(&dir, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        let v = &read.volume;
        let (rows, columns) = (
            report["rows"].as_u64().unwrap() as usize,
            report["columns"].as_u64().unwrap() as usize,
        );
        assert_eq!(v.shape_zyx, [1, rows, columns], "{name}");
        assert_eq!(read.series_uid, report["series_uid"].as_str().unwrap());
        let want = floats(&report["values"]);
        assert_eq!(want.len(), v.data.len(), "{name}");
        for (i, (&ours, theirs)) in v.data.iter().zip(&want).enumerate() {
            assert_eq!(ours as f64, *theirs, "{name}: pixel {i}");
        }
        // geometry: DICOM's placement of pixel (i, j), LPS -> RAS, against the affine
        let p = floats(&report["position"]);
        let o = floats(&report["orientation"]);
        let s = floats(&report["pixel_spacing"]);
        let thickness = floats(&report["slice_thickness"])[0];
        let a = v.affine();
        for (i, j) in [
            (0.0, 0.0),
            (columns as f64 - 1.0, 0.0),
            (3.0, rows as f64 - 1.0),
        ] {
            let lps: Vec<f64> = (0..3)
                .map(|r| p[r] + i * s[1] * o[r] + j * s[0] * o[3 + r])
                .collect();
            let ras = [-lps[0], -lps[1], lps[2]];
            for r in 0..3 {
                let got = a[r][0] * i + a[r][1] * j + a[r][3];
                assert!(
                    (got - ras[r]).abs() < 1e-6,
                    "{name}: ({i},{j}) axis {r}: {got} vs {}",
                    ras[r]
                );
            }
        }
        assert!((v.spacing_zyx[0] - thickness).abs() < 1e-9, "{name}");
        encodings.insert(report["transfer_syntax"].as_str().unwrap().to_string());
    }
    // the files really cover four encodings (explicit LE, implicit LE, big endian, RLE)
    assert_eq!(encodings.len(), 4, "{encodings:?}");
}

#[test]
fn files_pydicom_cannot_decode_fail_clearly() {
    let reports = pydicom_reports(&["MR_truncated.dcm", "MR_small_jp2klossless.dcm"]);
    for report in &reports {
        assert!(
            report.get("error").is_some(),
            "pydicom decoded {}: the test expects it not to",
            report["name"]
        );
    }
    let truncated = folder_with(&reports[0], "truncated");
    let err = read_series(&truncated, None).unwrap_err().to_string();
    assert!(err.contains("MR_truncated.dcm"), "{err}");

    let jpeg2000 = folder_with(&reports[1], "jpeg2000");
    let err = read_series(&jpeg2000, None).unwrap_err().to_string();
    let ts_name = reports[1]["transfer_syntax_name"].as_str().unwrap();
    assert!(err.contains("1.2.840.10008.1.2.4.90"), "{err}");
    assert!(
        err.contains("JPEG 2000"),
        "{err} (pydicom calls it {ts_name})"
    );
    assert!(err.contains("MR_small_jp2klossless.dcm"), "{err}");
}
