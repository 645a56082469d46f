//! `hepar synth --kind photos` then `hepar train --arch unet2d_classic --data DIR` on the
//! synthetic Kvasir-SEG (2 classes) and Oxford-IIIT Pet (3 classes) folders at 32x32: the run
//! trains through the usual trainer, its network has the dataset's classes, it leaves
//! checkpoints, history and a prediction picture per epoch, and it learns.

mod common;

use common::tiny_data::temp_dir;
use std::path::Path;
use std::process::{Command, Output};

fn hepar(args: &[&str], paths: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hepar"));
    cmd.args(args);
    for (flag, path) in paths {
        cmd.arg(flag).arg(path);
    }
    cmd.output().unwrap()
}

fn check(out: &Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what} failed:\n{text}");
    text
}

fn write_config(dir: &Path) -> std::path::PathBuf {
    let config = dir.join("parameters.toml");
    let sections = common::tiny_data::tiny_data_sections(dir, 1);
    std::fs::write(
        &config,
        format!(
            "{sections}\n[photos]\nsize_hw = [32, 32]\n\n[train.unet2d_classic]\nbatch_size = 4\n\
             batches_per_epoch = 4\nlearning_rate = 0.01\n\n[model.unet2d_classic]\nwidth = 4\n"
        ),
    )
    .unwrap();
    config
}

fn history(run: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(run.join("history.json")).unwrap()).unwrap()
}

fn values(history: &serde_json::Value, key: &str) -> Vec<f64> {
    history[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {history}"))
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// Reads a PNG's width and height from its IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG", "{} is not a PNG", path.display());
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

fn train(data: &Path, config: &Path, run: &Path, epochs: &str) -> String {
    let out = hepar(
        &[
            "train",
            "--arch",
            "unet2d_classic",
            "--device",
            "cpu",
            "--epochs",
            epochs,
        ],
        &[("--data", data), ("--config", config), ("--out", run)],
    );
    check(&out, "hepar train")
}

#[test]
fn unet2d_classic_trains_on_synthetic_kvasir_and_pets() {
    let dir = temp_dir("train-photos", "classic");
    let photos = dir.join("photos");
    let out = hepar(
        &[
            "synth", "--kind", "photos", "--cases", "12", "--size", "40,48", "--seed", "3",
        ],
        &[("--out", &photos)],
    );
    check(&out, "hepar synth --kind photos");
    let config = write_config(&dir);

    for (layout, classes) in [("kvasir", 2usize), ("pets", 3)] {
        let run = dir.join(format!("run-{layout}"));
        let log = train(&photos.join(layout), &config, &run, "3");
        assert!(log.contains(&format!("{classes} classes")), "{log}");
        // the CT phantoms were not written: the photo folder was the data
        assert!(!dir.join("synth").exists());
        for file in ["last.safetensors", "best.safetensors", "history.json"] {
            assert!(run.join(file).is_file(), "{file} missing:\n{log}");
        }
        let info = hepar::train::load_run_checkpoint(&run.join("last.safetensors")).unwrap();
        assert_eq!(info.info.model.classes, classes, "{layout}");
        assert_eq!(info.info.model.in_channels, 3, "{layout}");
        let h = history(&run);
        let loss = values(&h, "loss");
        let dice = values(&h, "dice_classes");
        assert_eq!(loss.len(), 3, "{h}");
        assert!(loss.iter().all(|l| l.is_finite()), "{h}");
        // It learns: the loss falls, or the Dice beats drawing classes at random.
        let chance = 1.0 / classes as f64;
        assert!(
            loss[2] < loss[0] || dice[2] > chance,
            "{layout}: loss {loss:?}, Dice {dice:?}"
        );
        // One picture per epoch: 4 validation photos (12 in 3 folds), each a row of 3 panels
        // of 32x32 pixels enlarged 3 times, with gaps of 4.
        for epoch in 1..=3 {
            let png = run.join(format!("predictions/epoch-{epoch:03}.png"));
            assert_eq!(png_size(&png), (3 * 96 + 16, 4 * 96 + 20), "{layout}");
        }
    }

    // Resume: one more epoch continues the history.
    let run = dir.join("run-kvasir");
    let out = hepar(
        &[
            "train",
            "--arch",
            "unet2d_classic",
            "--device",
            "cpu",
            "--resume",
            "--extend-epochs",
            "1",
        ],
        &[
            ("--data", &photos.join("kvasir")),
            ("--config", &config),
            ("--out", &run),
        ],
    );
    check(&out, "hepar train --resume");
    assert_eq!(values(&history(&run), "loss").len(), 4);
    assert!(run.join("predictions/epoch-004.png").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}
