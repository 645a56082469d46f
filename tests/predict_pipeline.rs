//! `hepar predict` end to end: the seed's `.pth` networks and tiny networks trained here run the
//! coarse-to-fine pipeline on synthetic phantoms, writing labels 0/1/2 with the CT's geometry,
//! probability maps consistent with the labels, and pictures; a folder is predicted case by case;
//! bad input is named.

mod common;

use hepar::data::nifti::NiftiDataType;
use hepar::data::synth::phantom;
use hepar::data::Volume;
use hepar::train::{train, Stage, TrainOptions, TrainParameters};
use std::path::{Path, PathBuf};
use std::process::Command;

fn temp_dir(tag: &str) -> PathBuf {
    common::tiny_data::temp_dir("predict", tag)
}

fn seed_model(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/seed")
        .join(name)
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs `hepar predict ARGS`: success and stdout + stderr.
fn predict(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .arg("predict")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Writes phantom `case` (CT and label) of `shape` into `dir`; returns the CT's path.
fn write_phantom(dir: &Path, case: u64, shape: [usize; 3]) -> PathBuf {
    let (ct, label) = phantom(0, case, shape).unwrap();
    let path = dir.join(format!("volume-{case}.nii.gz"));
    ct.write(&path, NiftiDataType::F32).unwrap();
    label
        .write(
            &dir.join(format!("segmentation-{case}.nii.gz")),
            NiftiDataType::U8,
        )
        .unwrap();
    path
}

/// The labels are 0/1/2 on the CT's grid and geometry.
fn check_labels(ct: &Path, seg: &Path) -> Volume {
    let (source, labels) = (Volume::read(ct).unwrap(), Volume::read(seg).unwrap());
    assert_eq!(
        (labels.shape_zyx, labels.affine()),
        (source.shape_zyx, source.affine()),
        "{} lost the CT's geometry",
        seg.display()
    );
    assert!(
        labels
            .data
            .iter()
            .all(|&v| v == 0.0 || v == 1.0 || v == 2.0),
        "{} has labels other than 0, 1, 2",
        seg.display()
    );
    labels
}

#[test]
fn the_seed_networks_segment_a_phantom_with_probabilities_and_a_picture() {
    let dir = temp_dir("seed");
    // A phantom whose two tumours the seed's tumour network finds at this resolution.
    let ct = write_phantom(&dir, 2, [32, 192, 192]);
    let (seg, probs, pngs) = (dir.join("seg.nii.gz"), dir.join("probs"), dir.join("png"));
    let (ok, text) = predict(&[
        "--liver-model",
        path_str(&seed_model("liver3d.pth")),
        "--tumor-model",
        path_str(&seed_model("tumor2d.pth")),
        "--input",
        path_str(&ct),
        "--output",
        path_str(&seg),
        "--probabilities",
        path_str(&probs),
        "--png",
        path_str(&pngs),
        "--batch",
        "3",
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("wrote"), "{text}");
    let labels = check_labels(&ct, &seg);
    let liver = Volume::read(&probs.join("seg_liver.nii.gz")).unwrap();
    let tumor = Volume::read(&probs.join("seg_tumor.nii.gz")).unwrap();
    assert_eq!(liver.shape_zyx, labels.shape_zyx);
    assert_eq!(tumor.shape_zyx, labels.shape_zyx);
    for ((&l, &pl), &pt) in labels.data.iter().zip(&liver.data).zip(&tumor.data) {
        assert!((0.0..=1.0).contains(&pl) && (0.0..=1.0).contains(&pt));
        // Liver voxels passed the threshold; the tumour stage only looks inside the liver.
        if l == 1.0 {
            assert!(pl > 0.5, "liver label where p = {pl}");
        }
        if l == 0.0 {
            assert_eq!(pt, 0.0, "tumour probability outside the liver");
        }
    }
    // At the seed's preprocessing (128^3, 256^2 slices) the seed's networks find the phantom's
    // liver and tumours.
    let truth = Volume::read(&dir.join("segmentation-2.nii.gz")).unwrap();
    let dice = |label: f32| {
        let (mut both, mut predicted, mut true_voxels) = (0usize, 0usize, 0usize);
        for (&l, &t) in labels.data.iter().zip(&truth.data) {
            both += usize::from(l >= label && t >= label);
            predicted += usize::from(l >= label);
            true_voxels += usize::from(t >= label);
        }
        2.0 * both as f64 / (predicted + true_voxels) as f64
    };
    assert!(dice(1.0) > 0.7, "liver Dice {}", dice(1.0));
    assert!(dice(2.0) > 0.25, "tumour Dice {}", dice(2.0));
    let png = std::fs::read(pngs.join("seg.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // Preprocessing for `.pth` models from a parameters file; a network input the network
    // cannot take is named.
    let config = dir.join("odd.toml");
    std::fs::write(&config, "[preprocess.stage1]\nshape_zyx = [8, 64, 64]\n").unwrap();
    let (ok, text) = predict(&[
        "--liver-model",
        path_str(&seed_model("liver3d.pth")),
        "--config",
        path_str(&config),
        "--input",
        path_str(&ct),
        "--output",
        path_str(&dir.join("odd.nii.gz")),
    ]);
    assert!(
        !ok && text.contains("liver3d.pth") && text.contains("[8, 64, 64]"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Two 16x32x32 phantoms, 16x32x32 volumes and 16x16 slices, width 8, 2 epochs.
fn tiny_config(dir: &Path) -> String {
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
"#
    )
}

fn train_tiny(params: &TrainParameters, stage: Stage, run_dir: PathBuf) {
    train(
        params,
        &TrainOptions {
            arch: None,
            stage,
            run_dir,
            epochs: None,
            resume: false,
            extend_epochs: None,
            show_progress: false,
            device: hepar::backend::Device::Cpu,
            liver_boxes: None,
        },
    )
    .unwrap();
}

#[test]
fn tiny_trained_runs_predict_a_folder_and_a_bad_case_is_named() {
    let dir = temp_dir("tiny");
    let params = TrainParameters::from_toml_str(&tiny_config(&dir)).unwrap();
    train_tiny(&params, Stage::Liver, dir.join("liver"));
    train_tiny(&params, Stage::Tumor, dir.join("tumor"));
    let liver = dir.join("liver/best.safetensors");
    let tumor = dir.join("tumor/best.safetensors");

    // A folder of CTs (at another shape than the runs trained on) into a folder of label maps.
    let cts = dir.join("cts");
    std::fs::create_dir_all(&cts).unwrap();
    let first = write_phantom(&cts, 0, [20, 40, 36]);
    let second = write_phantom(&cts, 1, [20, 40, 36]);
    std::fs::remove_file(cts.join("segmentation-0.nii.gz")).unwrap();
    std::fs::rename(cts.join("segmentation-1.nii.gz"), dir.join("mask-1.nii.gz")).unwrap();
    let out = dir.join("out");
    let (ok, text) = predict(&[
        "--liver-model",
        path_str(&liver),
        "--tumor-model",
        path_str(&tumor),
        "--input",
        path_str(&cts),
        "--output",
        path_str(&out),
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("2 cases"), "{text}");
    for ct in [&first, &second] {
        check_labels(ct, &out.join(ct.file_name().unwrap()));
    }

    // The old flags still work; the liver alone gives labels 0/1 only.
    let liver_only = dir.join("liver-only.nii.gz");
    let (ok, text) = predict(&[
        "--checkpoint",
        path_str(&liver),
        "--input",
        path_str(&first),
        "--out",
        path_str(&liver_only),
    ]);
    assert!(ok, "{text}");
    let labels = check_labels(&first, &liver_only);
    assert!(labels.data.iter().all(|&v| v != 2.0));

    // The tumour network alone, inside a given liver mask: the liver is the mask's.
    let tumour_only = dir.join("tumour-only.nii.gz");
    let mask = dir.join("mask-1.nii.gz");
    let (ok, text) = predict(&[
        "--tumor-model",
        path_str(&tumor),
        "--liver-mask",
        path_str(&mask),
        "--input",
        path_str(&second),
        "--output",
        path_str(&tumour_only),
    ]);
    assert!(ok, "{text}");
    let labels = check_labels(&second, &tumour_only);
    let truth = Volume::read(&mask).unwrap();
    for (&l, &t) in labels.data.iter().zip(&truth.data) {
        if l == 1.0 {
            assert!(t > 0.0, "liver label outside the given mask");
        }
        if t > 0.0 {
            assert!(l > 0.0, "the given liver mask was not kept");
        }
    }

    // Without a liver network or mask the tumour stage has nowhere to look.
    let (ok, text) = predict(&[
        "--tumor-model",
        path_str(&tumor),
        "--input",
        path_str(&first),
        "--output",
        path_str(&dir.join("x.nii.gz")),
    ]);
    assert!(!ok && text.contains("--liver-mask"), "{text}");

    // A folder of CTs needs a folder of masks; an empty folder is named.
    let (ok, text) = predict(&[
        "--tumor-model",
        path_str(&tumor),
        "--liver-mask",
        path_str(&mask),
        "--input",
        path_str(&cts),
        "--output",
        path_str(&dir.join("masked")),
    ]);
    assert!(
        !ok && text.contains("mask-1.nii.gz") && text.contains("must be a folder"),
        "{text}"
    );
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let (ok, text) = predict(&[
        "--liver-model",
        path_str(&liver),
        "--input",
        path_str(&empty),
        "--output",
        path_str(&dir.join("none")),
    ]);
    assert!(!ok && text.contains("holds no .nii"), "{text}");

    // Networks given for the wrong stage are named.
    let (ok, text) = predict(&[
        "--liver-model",
        path_str(&tumor),
        "--input",
        path_str(&first),
        "--output",
        path_str(&dir.join("x.nii.gz")),
    ]);
    assert!(
        !ok && text.contains("tumor checkpoint") && text.contains("best.safetensors"),
        "{text}"
    );

    // A CT with NaN voxels in the folder: named with the count; the other case is still written.
    let (ct, _) = phantom(0, 2, [20, 40, 36]).unwrap();
    let mut data = ct.data.clone();
    data[5] = f32::NAN;
    data[9] = f32::INFINITY;
    ct.with_data(data)
        .unwrap()
        .write(&cts.join("volume-2.nii.gz"), NiftiDataType::F32)
        .unwrap();
    std::fs::remove_dir_all(&out).unwrap();
    let (ok, text) = predict(&[
        "--liver-model",
        path_str(&liver),
        "--input",
        path_str(&cts),
        "--output",
        path_str(&out),
    ]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("volume-2.nii.gz") && text.contains("2 of ") && text.contains("NaN"),
        "{text}"
    );
    assert!(text.contains("1 of 3 cases failed"), "{text}");
    assert!(out.join("volume-0.nii.gz").is_file() && out.join("volume-1.nii.gz").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn another_architecture_serves_as_the_liver_model_by_name() {
    // Plain weights of a 3-class 3D U-Net (width 2): liver = classes 1 and 2.
    let dir = temp_dir("arch");
    let ct = write_phantom(&dir, 0, [16, 32, 32]);
    let config = hepar::nn::ModelConfig {
        base: 2,
        ..hepar::nn::ModelConfig::default_for(hepar::nn::Arch::Unet3d3Class)
    };
    let model = hepar::nn::build(&config, 3).unwrap();
    let weights = dir.join("unet3d.safetensors");
    hepar::io::write_safetensors(
        &weights,
        &hepar::nn::to_named_tensors(&model).unwrap(),
        &Default::default(),
    )
    .unwrap();
    let seg = dir.join("seg.nii.gz");
    let base = [
        "--liver-model",
        path_str(&weights),
        "--input",
        path_str(&ct),
        "--output",
        path_str(&seg),
    ];
    // Without the architecture the seed's cotnext3d is assumed, and its keys are missing.
    let (ok, text) = predict(&base);
    assert!(!ok && text.contains("unet3d.safetensors"), "{text}");
    let mut named = base.to_vec();
    named.extend(["--liver-arch", "unet3d_3class", "--liver-n-channels", "2"]);
    let (ok, text) = predict(&named);
    assert!(ok, "{text}");
    let labels = check_labels(&ct, &seg);
    assert!(
        labels.data.iter().all(|&v| v <= 1.0),
        "liver only: labels 0/1"
    );
}
