//! `hepar train --arch unet3d_3class | res3dunet` on 3D patches: the patch queue's batches, the
//! sliding-window validation over whole volumes with a Dice per class, repeatable and resumable
//! runs, the rib-fracture network on `hepar synth --kind ribfrac` data scored by `hepar froc`,
//! and the bad inputs (a patch larger than a volume, labels that are not there).

mod common;

use hepar::data::loader::BatchSource;
use hepar::data::synth::write_ribfrac_dataset;
use hepar::nn::Arch;
use hepar::train::history::EpochRecord;
use hepar::train::patch_data::PatchTraining;
use hepar::train::{train, TrainOptions, TrainParameters};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn temp_dir(tag: &str) -> PathBuf {
    common::tiny_data::temp_dir("patches", tag)
}

/// Three 16x32x32 liver phantoms; patches of 16^3, 2 per volume, batches of 2.
fn config(dir: &Path, extra: &str) -> TrainParameters {
    let patches = common::tiny_data::tiny_patch_sections();
    let sections = common::tiny_data::tiny_data_sections(dir, 2);
    TrainParameters::from_toml_str(&format!(
        r#"{sections}
[train.unet3d_3class]
batch_size = 2
learning_rate = 1e-3

[train.res3dunet]
batch_size = 2
{patches}
{extra}
"#
    ))
    .unwrap()
}

fn options(arch: Arch, run_dir: PathBuf, epochs: u64, resume: bool) -> TrainOptions {
    TrainOptions {
        arch: Some(arch),
        stage: TrainParameters::stage_of(arch),
        run_dir,
        epochs: (!resume).then_some(epochs),
        resume,
        extend_epochs: None,
        show_progress: false,
        device: hepar::backend::Device::Cpu,
        liver_boxes: None,
    }
}

/// Runs a `hepar` command that must succeed.
fn run_ok(command: &mut Command) {
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The history without the timings (the only field that differs between runs).
fn untimed(history: &[EpochRecord]) -> Vec<EpochRecord> {
    history
        .iter()
        .map(|h| EpochRecord {
            seconds: 0.0,
            ..h.clone()
        })
        .collect()
}

#[test]
fn the_3class_unet_trains_on_patches_repeatably_and_resumes_exactly() {
    let dir = temp_dir("unet");
    let params = config(&dir, "");
    let a = train(
        &params,
        &options(Arch::Unet3d3Class, dir.join("a"), 2, false),
    )
    .unwrap();
    assert_eq!(a.history.len(), 2);
    for h in &a.history {
        assert!(h.train_loss.is_finite() && h.val_loss.is_finite(), "{h:?}");
        // Liver and tumour scored apart; their mean is the run's Dice.
        assert_eq!(h.val_dice_per_class.len(), 2, "{h:?}");
        let mean = (h.val_dice_per_class[0] + h.val_dice_per_class[1]) / 2.0;
        assert!((mean - h.val_dice).abs() < 1e-12, "{h:?}");
    }
    for f in [
        "last.safetensors",
        "best.safetensors",
        "history.csv",
        "history.json",
    ] {
        assert!(dir.join("a").join(f).is_file(), "{f}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("a/history.json")).unwrap())
            .unwrap();
    assert_eq!(json["dice_class_2"].as_array().unwrap().len(), 2);

    // The same settings give the same bits, whatever the loader's threads did.
    let b = train(
        &params,
        &options(Arch::Unet3d3Class, dir.join("b"), 2, false),
    )
    .unwrap();
    assert_eq!(untimed(&a.history), untimed(&b.history));

    // One epoch, then a resume that extends the run by the second: the 2-epoch run's second
    // epoch again (the seed's Adam runs at a constant rate, so the schedules agree).
    let c_dir = dir.join("c");
    train(
        &params,
        &options(Arch::Unet3d3Class, c_dir.clone(), 1, false),
    )
    .unwrap();
    let mut resume = options(Arch::Unet3d3Class, c_dir, 0, true);
    resume.extend_epochs = Some(1);
    let c = train(&params, &resume).unwrap();
    assert_eq!(c.history.len(), 2);
    assert_eq!(c.first_epoch_this_call, 2);
    assert_eq!(untimed(&a.history), untimed(&c.history));
}

#[test]
fn the_rib_fracture_network_trains_on_synthetic_ribfrac_data_and_froc_scores_it() {
    let dir = temp_dir("ribfrac");
    let data = dir.join("ribfrac");
    write_ribfrac_dataset(&data, 4, 0, [16, 32, 32]).unwrap();
    let mut params = config(&dir, "");
    params.data.data.root = data.clone(); // as --data does
    let run = dir.join("run");
    let summary = train(&params, &options(Arch::Res3dUnet, run.clone(), 2, false)).unwrap();
    assert_eq!(summary.history.len(), 2);
    assert!(summary.history.iter().all(|h| h.train_loss.is_finite()));
    // One class: its Dice is the run's, not repeated per class.
    assert!(summary.history[0].val_dice_per_class.is_empty());
    assert!(run.join("best.safetensors").is_file());

    // The trained checkpoint through `hepar ribfrac` on every case, then `hepar froc`.
    let pred = dir.join("pred");
    let mut ribfrac = Command::new(env!("CARGO_BIN_EXE_hepar"));
    ribfrac
        .arg("ribfrac")
        .arg("--model")
        .arg(run.join("best.safetensors"))
        .args(["--roi", "16,16,16", "--min-voxels", "4", "--input"])
        .arg(data.join("images"))
        .arg("--output")
        .arg(&pred);
    run_ok(&mut ribfrac);
    let json = dir.join("froc.json");
    let mut froc = Command::new(env!("CARGO_BIN_EXE_hepar"));
    froc.args(["froc", "--pred"])
        .arg(&pred)
        .arg("--truth")
        .arg(data.join("labels"))
        .arg("--json")
        .arg(&json);
    run_ok(&mut froc);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let froc = report["average_recall"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&froc), "{report}");
    println!(
        "res3dunet after 2 epochs on the training fold of 4 synthetic RibFrac cases, scored on all 4: FROC {froc:.4}, \
         max recall {:.4}, Dice {:.4}",
        report["max_recall"], report["dice"]
    );
}

/// Prepares the res3dunet patch data of `root` with `[patches.res3dunet]` keys `patches`.
fn prepare(dir: &Path, root: &Path, patches: &str) -> hepar::Result<PatchTraining> {
    let params = config(dir, "");
    let mut data = params.data.clone();
    data.data.root = root.to_path_buf();
    let mut settings = params.patch_settings(Arch::Res3dUnet)?.unwrap();
    let given: toml::Table = patches.parse().unwrap();
    let mut merged = toml::Table::try_from(&settings).unwrap();
    merged.extend(given);
    settings = merged.try_into().unwrap();
    PatchTraining::prepare(&data, &settings, 2, "patches.res3dunet")
}

#[test]
fn small_volumes_and_absent_labels_name_the_case_and_the_rest_still_loads() {
    let dir = temp_dir("bad");
    let data = dir.join("ribfrac");
    write_ribfrac_dataset(&data, 4, 0, [16, 32, 32]).unwrap();

    // A patch deeper than the volumes: padded when configured so...
    let padded = Arc::new(prepare(&dir, &data, "patch_zyx = [32, 16, 16]").unwrap());
    let batch = padded.epoch_batches(0).make_batch(0).unwrap();
    assert_eq!(batch.image_shape, vec![2, 1, 32, 16, 16]);
    // A batch is the same whichever worker builds it first and in what order.
    let epoch = padded.epoch_batches(1);
    let count = epoch.batch_count();
    let backwards: Vec<_> = (0..count)
        .rev()
        .map(|k| epoch.make_batch(k).unwrap())
        .collect();
    let again = padded.epoch_batches(1);
    for k in 0..count {
        assert_eq!(
            again.make_batch(k).unwrap(),
            backwards[count - 1 - k],
            "batch {k}"
        );
    }
    assert_ne!(
        backwards.last(),
        Some(&batch),
        "another epoch, other patches"
    );
    // ...else each case is refused by name, and with none left the run says why.
    let err = prepare(
        &dir,
        &data,
        "patch_zyx = [32, 16, 16]\nsmall_volumes = \"error\"",
    )
    .err()
    .expect("no case fits")
    .to_string();
    assert!(
        err.contains("no usable training case")
            && err.contains("case RibFrac")
            && err.contains("larger than the volume"),
        "{err}"
    );

    // Fracture-only sampling; a training case without fractures is named and left out.
    // 8^3 patches: the phantoms' fractures lie near the body's edge, where larger ones do not fit.
    let fractures = "patch_zyx = [8, 8, 8]\nsample_labels = [2]\nsample_probabilities = [1.0]";
    let all = prepare(&dir, &data, fractures).unwrap();
    assert!(all.problems.is_empty(), "{:?}", all.problems);
    let victim = all.training_ids()[0].clone();
    let label_path = data.join("labels").join(format!("{victim}-label.nii.gz"));
    let label = hepar::data::Volume::read(&label_path).unwrap();
    let zeros = vec![0.0; label.data.len()];
    label
        .write_data(&label_path, &zeros, hepar::data::nifti::NiftiDataType::I16)
        .unwrap();
    let rest = prepare(&dir, &data, fractures).unwrap();
    assert_eq!(rest.training_cases(), all.training_cases() - 1);
    assert!(!rest.training_ids().contains(&victim));
    let reason = rest.problems[0].to_string();
    assert!(
        reason.contains(&format!("case {victim}")) && reason.contains("labels [2]"),
        "{reason}"
    );
    // Probabilities that do not match the labels are a configuration error naming the key.
    let err = prepare(
        &dir,
        &data,
        "sample_labels = [0, 2]\nsample_probabilities = [1.0]",
    )
    .err()
    .expect("mismatch")
    .to_string();
    assert!(
        err.contains("patches.res3dunet.sample_probabilities"),
        "{err}"
    );
}
