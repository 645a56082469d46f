//! `hepar train` end to end on tiny phantoms: the loss stays finite, the history and checkpoints
//! are written and reload into a network with the same weights, a resumed run continues at the
//! next epoch exactly as an uninterrupted one, and bad settings are clear errors.

mod common;

use hepar::data::Volume;
use hepar::nn::{load_state_dict, to_named_tensors};
use hepar::train::history::read_history;
use hepar::train::{load_run_checkpoint, train, Stage, TrainOptions, TrainParameters};
use std::path::{Path, PathBuf};
use std::process::Command;

fn temp_dir(tag: &str) -> PathBuf {
    common::tiny_data::temp_dir("train", tag)
}

/// Three 16x32x32 phantoms generated on first use, 16x32x32 volumes and 16x16 slices, width 8.
fn tiny_config(dir: &Path, extra: &str) -> String {
    let sections = common::tiny_data::tiny_data_sections(dir, 1);
    format!(
        r#"{sections}
[train.liver]
epochs = 2

[train.tumor]
epochs = 2
batch_size = 4
batches_per_epoch = 2

[model.liver]
width = 8

[model.tumor]
width = 8
{extra}
"#
    )
}

fn options(stage: Stage, run_dir: PathBuf, epochs: Option<u64>, resume: bool) -> TrainOptions {
    TrainOptions {
        arch: None,
        stage,
        run_dir,
        epochs,
        resume,
        extend_epochs: None,
        show_progress: false,
        device: hepar::backend::Device::Cpu,
        liver_boxes: None,
    }
}

/// The files derived from the last checkpoint's history: history.json holds it under the seed's
/// keys, value for value, history.csv holds it too, and curves.png is a PNG of the picture size.
fn assert_history_files_match_the_checkpoint(run_dir: &Path, class: &str) {
    let last = load_run_checkpoint(&run_dir.join("last.safetensors")).unwrap();
    let history = &last.info.history;
    assert!(!history.is_empty());
    let text = std::fs::read_to_string(run_dir.join("history.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let column = |key: &str| -> Vec<f64> {
        json[key]
            .as_array()
            .unwrap_or_else(|| panic!("history.json has no list {key}: {text}"))
            .iter()
            .map(|v| v.as_f64().unwrap_or_else(|| panic!("{key}: {v}")))
            .collect()
    };
    let expected = |f: fn(&hepar::train::history::EpochRecord) -> f64| -> Vec<f64> {
        history.iter().map(f).collect()
    };
    assert_eq!(column("loss"), expected(|r| r.train_loss));
    assert_eq!(column(&format!("dice_{class}")), expected(|r| r.val_dice));
    assert_eq!(
        column(&format!("iou_{class}")),
        expected(|r| r.val_iou.unwrap())
    );
    assert_eq!(
        column(&format!("precision_{class}")),
        expected(|r| r.val_precision.unwrap())
    );
    assert_eq!(
        column(&format!("recall_{class}")),
        expected(|r| r.val_recall.unwrap())
    );
    for r in history {
        for score in [
            r.val_dice,
            r.val_iou.unwrap(),
            r.val_precision.unwrap(),
            r.val_recall.unwrap(),
        ] {
            assert!((0.0..=1.0).contains(&score), "{r:?}");
        }
    }
    assert_eq!(json["best_epoch"].as_u64(), Some(last.info.best_epoch));
    let time_train = json["time_train"].as_f64().unwrap();
    let seconds: f64 = history.iter().map(|r| r.seconds).sum();
    assert!(
        (time_train - seconds).abs() < 1e-3,
        "{time_train} vs {seconds}"
    );
    assert_eq!(
        &read_history(&run_dir.join("history.csv")).unwrap(),
        history
    );

    let png = std::fs::read(run_dir.join("curves.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    let side = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
    assert_eq!(
        (side(16), side(20)),
        (hepar::report::curves::WIDTH, hepar::report::curves::HEIGHT)
    );
}

#[test]
fn liver_run_writes_history_and_checkpoints_and_resumes_where_it_stopped() {
    let dir = temp_dir("liver");
    let params = TrainParameters::from_toml_str(&tiny_config(&dir, "")).unwrap();
    let run_dir = dir.join("run");
    let summary = train(
        &params,
        &options(Stage::Liver, run_dir.clone(), None, false),
    )
    .unwrap();
    assert!(
        dir.join("synth/volume-2.nii.gz").is_file(),
        "phantoms were not generated"
    );
    assert_eq!(summary.history.len(), 2);
    for r in &summary.history {
        assert!(r.train_loss.is_finite() && r.val_loss.is_finite(), "{r:?}");
        assert!((0.0..=1.0).contains(&r.val_dice), "{r:?}");
    }
    assert!(
        summary.history[1].learning_rate < summary.history[0].learning_rate,
        "cosine schedule did not decay"
    );
    assert_eq!(read_history(&run_dir.join("history.csv")).unwrap().len(), 2);

    // The last checkpoint reloads into a fresh network with identical weights, which differ
    // from the initial ones.
    let last = load_run_checkpoint(&run_dir.join("last.safetensors")).unwrap();
    assert_eq!((last.checkpoint.epoch, last.info.stage), (2, Stage::Liver));
    assert!(last.checkpoint.step >= 2);
    let fresh = hepar::nn::build(&last.info.model, 0).unwrap();
    assert_eq!(last.info.model.arch, hepar::nn::Arch::CotNext3d);
    assert_ne!(
        to_named_tensors(&*fresh).unwrap(),
        last.checkpoint.model,
        "training did not change the weights"
    );
    load_state_dict(&fresh, &last.checkpoint.model, "last").unwrap();
    assert_eq!(to_named_tensors(&fresh).unwrap(), last.checkpoint.model);
    let best = load_run_checkpoint(&run_dir.join("best.safetensors")).unwrap();
    assert_eq!(best.checkpoint.epoch, summary.best_epoch);
    assert!(
        !last.checkpoint.optimizer.tensors.is_empty(),
        "no optimizer state saved"
    );

    // Starting again over the run is refused; resuming a finished run asks for more epochs.
    let err = train(
        &params,
        &options(Stage::Liver, run_dir.clone(), None, false),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("--resume"), "{err}");
    let err = train(&params, &options(Stage::Liver, run_dir.clone(), None, true))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("already finished 2 of 2 epochs") && err.contains("--extend-epochs"),
        "{err}"
    );
    // --epochs cannot change a resumed run's schedule, neither longer nor shorter.
    for epochs in [1, 3] {
        let err = train(
            &params,
            &options(Stage::Liver, run_dir.clone(), Some(epochs), true),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(&format!(
                "--epochs {epochs} disagrees with the run's 2 epochs"
            )) && err.contains("--extend-epochs"),
            "{err}"
        );
    }

    let more = train(
        &params,
        &TrainOptions {
            extend_epochs: Some(1),
            ..options(Stage::Liver, run_dir.clone(), None, true)
        },
    )
    .unwrap();
    assert_eq!(more.first_epoch_this_call, 3);
    assert_eq!(
        more.history.iter().map(|r| r.epoch).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(more.history[..2], summary.history[..]);
    // The extension anneals on from the last rate: no jump back up.
    assert!(more.history[2].learning_rate <= more.history[1].learning_rate);
    assert_history_files_match_the_checkpoint(&run_dir, "liver");
    // The optimizer's moments and step counts carried over: AdamW's per-parameter step count
    // is the run's total step count, not the steps since the resume.
    let resumed = load_run_checkpoint(&run_dir.join("last.safetensors")).unwrap();
    assert_eq!(resumed.checkpoint.epoch, 3);
    assert_eq!(resumed.checkpoint.step, last.checkpoint.step * 3 / 2);
    let step_count = resumed
        .checkpoint
        .optimizer
        .tensors
        .get("out.conv.bias.step")
        .expect("AdamW step count of out.conv.bias");
    assert_eq!(
        step_count.to_f64_vec(),
        vec![resumed.checkpoint.step as f64]
    );

    // Resuming keeps the run's own schedule length (3), not the config's (2).
    let err = train(&params, &options(Stage::Liver, run_dir.clone(), None, true))
        .unwrap_err()
        .to_string();
    assert!(err.contains("already finished 3 of 3 epochs"), "{err}");

    // `hepar predict` turns a phantom into a 0/1 mask on the phantom's own grid and geometry.
    let input = dir.join("synth/volume-0.nii.gz");
    let mask_path = dir.join("mask.nii.gz");
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args([
            "predict",
            "--checkpoint",
            run_dir.join("best.safetensors").to_str().unwrap(),
        ])
        .args([
            "--input",
            input.to_str().unwrap(),
            "--out",
            mask_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (source, mask) = (
        Volume::read(&input).unwrap(),
        Volume::read(&mask_path).unwrap(),
    );
    assert_eq!(
        (mask.shape_zyx, mask.affine()),
        (source.shape_zyx, source.affine())
    );
    assert!(mask.data.iter().all(|&v| v == 0.0 || v == 1.0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn tumor_run_trains_on_slice_stacks() {
    let dir = temp_dir("tumor");
    let params = TrainParameters::from_toml_str(&tiny_config(&dir, "")).unwrap();
    let run_dir = dir.join("run");
    let summary = train(
        &params,
        &options(Stage::Tumor, run_dir.clone(), None, false),
    )
    .unwrap();
    assert_eq!(summary.history.len(), 2);
    assert!(summary
        .history
        .iter()
        .all(|r| r.train_loss.is_finite() && r.val_loss.is_finite()));
    let last = load_run_checkpoint(&run_dir.join("last.safetensors")).unwrap();
    assert_eq!(
        (
            last.info.model.dims(),
            last.info.model.in_channels,
            last.checkpoint.step
        ),
        (2, 3, 4)
    );
    assert!(run_dir.join("best.safetensors").is_file());
    // Stage 2 trains on the seed's Tversky + BCE by default.
    assert!(matches!(
        last.info.training.loss,
        Some(hepar::train::objective::LossConfig::TverskyBce { .. })
    ));
    assert_history_files_match_the_checkpoint(&run_dir, "tumor");
    // A liver run cannot resume a tumour run.
    let err = train(&params, &options(Stage::Liver, run_dir.clone(), None, true))
        .unwrap_err()
        .to_string();
    assert!(err.contains("tumor run"), "{err}");
    let checkpoint = run_dir.join("best.safetensors");
    let source = Volume::read(&dir.join("synth/volume-0.nii.gz")).unwrap();
    let err = hepar::infer::predict_liver(
        &load_run_checkpoint(&checkpoint).unwrap(),
        &checkpoint,
        &source,
        hepar::backend::Device::Cpu,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("tumor checkpoint"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn diverging_loss_stops_with_the_epoch_and_step() {
    let dir = temp_dir("nan");
    let mut params = TrainParameters::from_toml_str(&tiny_config(&dir, "")).unwrap();
    params.liver.learning_rate = 1e30;
    params.liver.eta_min = 0.0;
    let err = train(
        &params,
        &options(Stage::Liver, dir.join("run"), Some(2), false),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("non-finite") && err.contains("at epoch 1, step 2"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn parameters_toml_states_the_training_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("parameters.toml");
    assert_eq!(
        TrainParameters::load(&path).unwrap(),
        TrainParameters::default()
    );
}

#[test]
fn cli_reports_bad_settings_by_key() {
    let dir = temp_dir("cli");
    let config = dir.join("bad.toml");
    std::fs::write(
        &config,
        tiny_config(&dir, "").replace("[train.liver]\n", "[train.liver]\nweight_decay = -0.1\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args([
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            dir.join("run").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("bad.toml") && stderr.contains("train.liver.weight_decay"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args([
            "train",
            "--config",
            config.to_str().unwrap(),
            "--epochs",
            "0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
}
