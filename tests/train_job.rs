//! Stage 2 built from stage 1's liver boxes (`bbox.json`), and the main job (`hepar train` with
//! no stage): both stages, the held-out phantom segmented and scored, a new run folder each
//! time with `runs/latest` pointing to it, and a resume that keeps finished stages.

mod common;

use hepar::backend::Device;
use hepar::data::liver_boxes::{LiverBoxes, BBOX_FILE};
use hepar::data::preprocess::foreground_box;
use hepar::infer::liver_boxes::liver_boxes_for_run;
use hepar::infer::pipeline::{liver_mask, LiverModel};
use hepar::train::{train, Stage, TrainOptions, TrainParameters};
use std::path::{Path, PathBuf};
use std::process::Command;

fn tiny_config(dir: &Path) -> String {
    let sections = common::tiny_data::tiny_data_sections(dir, 1);
    format!(
        r#"{sections}
[train.liver]
epochs = 2

[train.tumor]
epochs = 1
batch_size = 4
batches_per_epoch = 2

[model.liver]
width = 8

[model.tumor]
width = 8
"#
    )
}

fn options(stage: Stage, run_dir: PathBuf, liver_boxes: Option<LiverBoxes>) -> TrainOptions {
    TrainOptions {
        arch: None,
        stage,
        run_dir,
        epochs: None,
        resume: false,
        extend_epochs: None,
        show_progress: false,
        device: Device::Cpu,
        liver_boxes,
    }
}

#[test]
fn stage_two_crops_the_liver_boxes_stage_one_predicts() {
    let dir = common::tiny_data::temp_dir("job", "boxes");
    let params = TrainParameters::from_toml_str(&tiny_config(&dir)).unwrap();
    let liver_run = dir.join("liver");
    train(&params, &options(Stage::Liver, liver_run.clone(), None)).unwrap();
    let model_path = liver_run.join("best.safetensors");

    let tumor_run = dir.join("tumor");
    let boxes = liver_boxes_for_run(&tumor_run, Some(&model_path), &params, Device::Cpu, false)
        .unwrap()
        .expect("a liver model gives boxes");
    // bbox.json holds exactly the boxes returned, in the seed's format.
    let file = tumor_run.join(BBOX_FILE);
    assert_eq!(LiverBoxes::read(&file).unwrap(), boxes);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let entries = json.as_array().unwrap();
    assert_eq!(entries.len(), boxes.len());
    assert!(entries
        .iter()
        .all(|e| e["patient_id"].is_u64() && e["bbox"].as_array().unwrap().len() == 6));
    assert!(!boxes.is_empty(), "the liver network found no liver at all");

    // Each box is the box of the liver network's own mask on that CT.
    let data = params.effective_data();
    let model = LiverModel::load(&model_path, &data, &Default::default(), Device::Cpu).unwrap();
    let (number, liver_box) = boxes.iter().next().unwrap();
    let ct = dir.join("synth").join(format!("volume-{number}.nii.gz"));
    let source = hepar::data::Volume::read(&ct).unwrap();
    let (mask, _) = liver_mask(&model, &source, Device::Cpu).unwrap();
    let mask = source
        .with_data(mask.iter().map(|&m| f32::from(u8::from(m))).collect())
        .unwrap();
    assert_eq!(foreground_box(&mask, [0; 3]), Some(liver_box));

    // The stage-2 dataset is cut from these boxes (grown by the configured margin).
    let split = hepar::data::prepare::stage2_split(&data, Some(&boxes), false).unwrap();
    let margin = data.preprocess.stage2.crop_margin_zyx;
    for sample in split.train.iter().chain(&split.validation) {
        let number: u64 = sample.id.trim_start_matches("lits-").parse().unwrap();
        let expected = boxes
            .get(number)
            .unwrap()
            .grown(margin, sample.case.source_shape_zyx);
        assert_eq!(sample.case.crop, expected, "case {}", sample.id);
    }
    // Training on them runs; a second call reuses bbox.json (edited here to prove it).
    let summary = train(
        &params,
        &options(Stage::Tumor, tumor_run.clone(), Some(boxes.clone())),
    )
    .unwrap();
    assert!(summary.history[0].train_loss.is_finite());
    let mut edited = LiverBoxes::default();
    edited.insert(number, liver_box.grown([1, 1, 1], source.shape_zyx));
    edited.write(&file).unwrap();
    let reused = liver_boxes_for_run(&tumor_run, Some(&model_path), &params, Device::Cpu, false)
        .unwrap()
        .unwrap();
    assert_eq!(reused, edited);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn hepar_in(cwd: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hepar"))
        .current_dir(cwd)
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

fn latest(cwd: &Path) -> PathBuf {
    let link = std::fs::read_link(cwd.join("runs/latest")).expect("runs/latest is a link");
    cwd.join("runs").join(link)
}

#[test]
fn the_main_job_trains_both_stages_then_scores_a_held_out_phantom() {
    let dir = common::tiny_data::temp_dir("job", "main");
    let config = dir.join("tiny.toml");
    std::fs::write(&config, tiny_config(&dir)).unwrap();
    let config = config.to_str().unwrap();

    let (ok, text) = hepar_in(&dir, &["train", "--config", config]);
    assert!(ok, "{text}");
    let first = latest(&dir);
    let name = first.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("pipeline-"), "{name}");
    for file in [
        "liver/best.safetensors",
        "liver/history.json",
        "tumor/best.safetensors",
        "tumor/bbox.json",
        "heldout/scores.json",
    ] {
        assert!(first.join(file).is_file(), "{file} missing: {text}");
    }
    // The held-out case is a phantom beyond the training ones, with its truth and a picture.
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("heldout/scores.json")).unwrap())
            .unwrap();
    let case = &scores["cases"][0];
    let case_name = case["case"].as_str().unwrap();
    let number: u64 = case_name.trim_start_matches("volume-").parse().unwrap();
    assert!(number >= 3, "{case_name} is one of the 3 training phantoms");
    assert!(first.join(format!("heldout/{case_name}.png")).is_file());
    let liver_dice = case["liver"]["dice"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&liver_dice));
    assert!(
        text.contains(&format!("liver Dice {liver_dice:.3}")) && text.contains("tumour Dice"),
        "{text}"
    );

    // A second run goes to a new folder; runs/latest follows it.
    let (ok, text) = hepar_in(&dir, &["train", "--config", config, "--epochs", "1"]);
    assert!(ok, "{text}");
    let second = latest(&dir);
    assert_ne!(first, second);
    assert!(second.join("heldout/scores.json").is_file());

    // Resuming a finished job keeps both stages and scores again.
    let (ok, text) = hepar_in(&dir, &["train", "--config", config, "--resume"]);
    assert!(ok, "{text}");
    assert_eq!(text.matches("is finished, kept").count(), 2, "{text}");
    // One stage alone goes to runs/<stage>-<timestamp>, from given liver boxes here.
    let (ok, text) = hepar_in(
        &dir,
        &[
            "train",
            "--config",
            config,
            "--stage",
            "tumor",
            "--liver-model",
            first.join("liver/best.safetensors").to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    let tumor = latest(&dir);
    assert!(tumor
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("tumor-"));
    assert!(tumor.join(BBOX_FILE).is_file() && tumor.join("best.safetensors").is_file());
    // --liver-model feeds stage 2 only.
    let (ok, text) = hepar_in(
        &dir,
        &[
            "train",
            "--config",
            config,
            "--stage",
            "liver",
            "--liver-model",
            "x",
        ],
    );
    assert!(!ok && text.contains("--liver-model"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
