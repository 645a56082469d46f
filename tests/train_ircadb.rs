//! `hepar train --arch keras_unet2d --data 3DIRCADB_DIR` end to end on three tiny synthetic
//! 3Dircadb patients written as DICOM series: the slices come from the `[keras_ct]` steps, the
//! run trains through the usual trainer and leaves its checkpoints and history.

mod common;
#[path = "dicom_support/mod.rs"]
mod dicom_support;

use common::tiny_data::temp_dir;
use dicom_support::{axial, write_shuffled};
use std::process::Command;

#[test]
fn keras_unet2d_trains_on_a_3dircadb_folder() {
    let dir = temp_dir("train-ircadb", "keras");
    let data = dir.join("3Dircadb");
    for n in 1..=3 {
        let patient = data.join(format!("3Dircadb1.{n}"));
        write_shuffled(&patient.join("PATIENT_DICOM"), &axial(16, 32, 32, None));
        write_shuffled(
            &patient.join("MASKS_DICOM").join("liver"),
            &axial(16, 32, 32, Some(1..15)),
        );
    }
    let config = dir.join("parameters.toml");
    let sections = common::tiny_data::tiny_data_sections(&dir, 1);
    std::fs::write(
        &config,
        format!(
            "{sections}\n[train.keras_unet2d]\nbatch_size = 4\nbatches_per_epoch = 2\n\n[model.keras_unet2d]\nwidth = 4\n"
        ),
    )
    .unwrap();
    let run = dir.join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args([
            "train",
            "--arch",
            "keras_unet2d",
            "--device",
            "cpu",
            "--epochs",
            "2",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "hepar train failed:\n{stderr}");
    // the phantoms were not written: the DICOM folder was the data, through the [keras_ct] steps
    assert!(!dir.join("synth").exists());
    let cached: Vec<String> = std::fs::read_dir(dir.join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        cached.iter().any(|n| n.starts_with("keras-ct")),
        "no Keras CT cache entry in {cached:?}"
    );
    for file in ["last.safetensors", "best.safetensors", "history.json"] {
        assert!(
            run.join(file).is_file(),
            "{file} missing; stderr:\n{stderr}"
        );
    }
    let history: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("history.json")).unwrap()).unwrap();
    let losses = history["loss"]
        .as_array()
        .unwrap_or_else(|| panic!("{history}"));
    assert_eq!(losses.len(), 2, "{history}");
    assert!(
        losses
            .iter()
            .all(|l| l.as_f64().is_some_and(f64::is_finite)),
        "{history}"
    );
    assert_eq!(
        history["dice_liver"].as_array().unwrap().len(),
        2,
        "{history}"
    );
    // a 2D network: a prediction picture (image | truth | prediction) after each validation
    for epoch in ["001", "002"] {
        let png = run.join(format!("predictions/epoch-{epoch}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
