//! The `hepar synth` and `hepar inspect` subcommands, run as a user runs them.

use std::path::PathBuf;
use std::process::Command;

fn hepar() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hepar"))
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hepar-cli-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn synth_is_deterministic_and_inspect_reports_it() {
    let (a, b) = (temp_dir("synth-a"), temp_dir("synth-b"));
    for dir in [&a, &b] {
        let out = hepar()
            .args([
                "synth",
                "--out",
                dir.to_str().unwrap(),
                "--cases",
                "2",
                "--seed",
                "5",
                "--shape",
                "10,24,20",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for name in [
        "volume-0.nii.gz",
        "segmentation-0.nii.gz",
        "volume-1.nii.gz",
        "segmentation-1.nii.gz",
    ] {
        assert_eq!(
            std::fs::read(a.join(name)).unwrap(),
            std::fs::read(b.join(name)).unwrap(),
            "{name} differs between runs"
        );
    }
    let out = hepar()
        .args([
            "inspect",
            "--json",
            a.join("volume-1.nii.gz").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(report["shape"], serde_json::json!([20, 24, 10]));
    assert_eq!(report["datatype"], "int16");
    assert_eq!(report["orientation"], "LPS");
    assert_eq!(report["affine"].as_array().unwrap().len(), 4);
    let spacing = report["spacing"].as_array().unwrap();
    assert!(spacing[2].as_f64().unwrap() > spacing[0].as_f64().unwrap());
    assert!(report["min"].as_f64().unwrap() < -900.0 && report["max"].as_f64().unwrap() > 300.0);
    let keys: Vec<&String> = report.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 8, "{keys:?}");

    let seg = hepar()
        .args(["inspect", a.join("segmentation-1.nii.gz").to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&seg.stdout);
    assert!(text.contains("uint8") && text.contains("LPS"), "{text}");
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}

#[test]
fn bad_arguments_and_files_fail_with_clear_messages() {
    let dir = temp_dir("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.nii");
    std::fs::write(&junk, vec![7u8; 400]).unwrap();
    let out = hepar()
        .args(["inspect", junk.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("junk.nii") && err.contains("not a NIfTI file"),
        "{err}"
    );

    let out = hepar()
        .args(["synth", "--out", dir.to_str().unwrap(), "--shape", "10,20"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Z,Y,X"));
    std::fs::remove_dir_all(&dir).unwrap();
}
