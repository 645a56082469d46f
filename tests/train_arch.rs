//! `hepar train --arch` for the other seeds' networks on tiny phantoms: each trains on its
//! seed's recipe (optimizer, schedule, loss, target) and its loss falls, the checkpoint records
//! the architecture (so `hepar infer` needs no --arch for it), and mismatches are clear errors.

mod common;

use hepar::infer::model_source::{load_network, ArchChoice};
use hepar::nn::Arch;
use hepar::train::{load_run_checkpoint, train, TrainOptions, TrainParameters};
use std::path::{Path, PathBuf};
use std::process::Command;

fn temp_dir(tag: &str) -> PathBuf {
    common::tiny_data::temp_dir("arch", tag)
}

/// Three 16x32x32 phantoms; 16x32x32 volumes and 16x16 slices.
fn tiny_config(dir: &Path, extra: &str) -> String {
    let patches = common::tiny_data::tiny_patch_sections();
    let sections = common::tiny_data::tiny_data_sections(dir, 1);
    format!(
        r#"{sections}
[train.unet2d_classic]
batch_size = 4
batches_per_epoch = 3

[train.keras_unet2d]
batch_size = 4
batches_per_epoch = 3
# The seed's 1e-5 moves too little in three tiny epochs to see the loss fall reliably.
learning_rate = 1e-3
{patches}
{extra}
"#
    )
}

fn options(arch: Arch, run_dir: PathBuf, resume: bool) -> TrainOptions {
    TrainOptions {
        arch: Some(arch),
        stage: TrainParameters::stage_of(arch),
        run_dir,
        epochs: Some(3),
        resume,
        extend_epochs: None,
        show_progress: false,
        device: hepar::backend::Device::Cpu,
        liver_boxes: None,
    }
}

#[test]
fn every_other_seed_network_trains_and_its_loss_falls() {
    let dir = temp_dir("all");
    let params = TrainParameters::from_toml_str(&tiny_config(&dir, "")).unwrap();
    for arch in [
        Arch::Unet3d3Class,
        Arch::Res3dUnet,
        Arch::Unet2dClassic,
        Arch::KerasUnet2d,
    ] {
        let run_dir = dir.join(arch.name());
        let summary = train(&params, &options(arch, run_dir.clone(), false))
            .unwrap_or_else(|e| panic!("{arch}: {e}"));
        let losses: Vec<f64> = summary.history.iter().map(|h| h.train_loss).collect();
        assert_eq!(losses.len(), 3, "{arch}");
        assert!(losses.iter().all(|l| l.is_finite()), "{arch}: {losses:?}");
        assert!(
            losses[2] < losses[0],
            "{arch}: the loss did not fall: {losses:?}"
        );
        let run = load_run_checkpoint(&run_dir.join("last.safetensors")).unwrap();
        assert_eq!(run.info.model.arch, arch);
        // The seed's recipe was used: Adam without decoupled decay, the seed's loss.
        let training = &run.info.training;
        assert_eq!(
            training.optimizer,
            hepar::train::config::OptimizerKind::Adam,
            "{arch}"
        );
        assert!(training.loss.is_some(), "{arch}");
        let model =
            load_network(&run_dir.join("best.safetensors"), &ArchChoice::default()).unwrap();
        assert_eq!(model.config().arch, arch);
    }
}

#[test]
fn infer_reads_the_architecture_from_a_run_checkpoint() {
    let dir = temp_dir("infer");
    let params =
        TrainParameters::from_toml_str(&tiny_config(&dir, "[train.unet3d_3class]\nepochs = 1\n"))
            .unwrap();
    let run_dir = dir.join("run");
    let mut opts = options(Arch::Unet3d3Class, run_dir.clone(), false);
    opts.epochs = None;
    train(&params, &opts).unwrap();
    let input = dir.join("synth").join("volume-0.nii.gz");
    let output = dir.join("prob.nii.gz");
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args(["infer", "--model"])
        .arg(run_dir.join("best.safetensors"))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&output)
        .args(["--roi", "16,16,16", "--overlap", "0.5"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let written = hepar::data::nifti::read_nifti(&output).unwrap();
    assert_eq!(written.header.shape(), vec![32, 32, 16, 3]);
    // --arch that contradicts the checkpoint is named.
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .args(["infer", "--arch", "res3dunet", "--model"])
        .arg(run_dir.join("best.safetensors"))
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(dir.join("other.nii.gz"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("--arch res3dunet (the checkpoint has unet3d_3class)"),
        "{err}"
    );
}

#[test]
fn a_run_of_one_network_cannot_resume_as_another() {
    let dir = temp_dir("resume");
    let params = TrainParameters::from_toml_str(&tiny_config(
        &dir,
        "[train.unet3d_3class]\nepochs = 1\n[train.res3dunet]\nepochs = 2\n",
    ))
    .unwrap();
    let run_dir = dir.join("run");
    let mut opts = options(Arch::Unet3d3Class, run_dir.clone(), false);
    opts.epochs = None;
    train(&params, &opts).unwrap();
    let mut other = options(Arch::Res3dUnet, run_dir, true);
    other.epochs = None;
    let err = train(&params, &other)
        .expect_err("another network")
        .to_string();
    assert!(
        err.contains("is a unet3d_3class run, not res3dunet"),
        "{err}"
    );
}

#[test]
fn a_target_that_does_not_suit_the_loss_is_named() {
    let dir = temp_dir("config");
    let err = TrainParameters::from_toml_str(&tiny_config(
        &dir,
        "[train.res3dunet]\ntarget = \"classes\"\n",
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("train.res3dunet.target"), "{err}");
    let err = TrainParameters::from_toml_str(&tiny_config(&dir, "[train.unet4d]\nepochs = 1\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train.unet4d") && err.contains("res3dunet"),
        "{err}"
    );
}
