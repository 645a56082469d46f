//! The main job, `hepar train` with no stage: the seed's whole recipe in one command. Stage 1
//! (the liver network) trains; its best checkpoint predicts every case's liver box
//! (`tumor/bbox.json`); stage 2 (the tumour network) trains on stacks cut from those boxes; then
//! the full coarse-to-fine pipeline segments cases no network has seen and their liver and
//! tumour Dice are printed and saved (`heldout/scores.json`).
//!
//! On the synthetic phantoms the held-out case is a new phantom from the same generator (the
//! first one after the training phantoms whose truth has a tumour large enough to score); on
//! a real dataset the held-out cases are the validation fold's.
//!
//! A job folder holds `liver/`, `tumor/` and `heldout/`. `--resume` continues it: a finished
//! stage is kept, an unfinished one resumed from its last checkpoint, a missing one started.

use crate::backend::Device;
use crate::data::dataset::{CaseFiles, Dataset};
use crate::data::nifti::NiftiDataType;
use crate::error::{HeparError, Result};
use crate::eval::{evaluate_files, EvalReport};
use crate::infer::liver_boxes::liver_boxes_for_run;
use crate::infer::pipeline::{LiverModel, PipelineOptions, TumorModel};
use crate::infer::predict_files::{predict_files, PredictRequest};
use crate::report::overlay::write_scored_case_png;
use crate::train::TrainParameters;
use crate::train::{load_run_checkpoint, train, Interruption, RunFolder, Stage, TrainOptions};
use std::path::{Path, PathBuf};

/// Smallest tumour burden (tumour voxels over liver voxels) of a synthetic held-out phantom:
/// a few small lesions vanish under the pipeline's radius-3 opening, and their Dice would say
/// nothing about the networks.
const MIN_HELDOUT_TUMOUR_FRACTION: f64 = 0.02;
/// How many phantoms after the training ones are tried for a held-out case.
const HELDOUT_SEARCH: u64 = 64;

#[derive(Debug, Clone)]
pub struct JobOptions {
    /// The job folder (`liver/`, `tumor/`, `heldout/` inside).
    pub dir: PathBuf,
    /// Replaces both stages' epoch counts of a new job.
    pub epochs: Option<u64>,
    pub resume: bool,
    pub device: Device,
    pub show_progress: bool,
}

/// The held-out scores of the finished job.
#[derive(Debug, Clone)]
pub struct HeldoutScores {
    pub report: EvalReport,
    /// Where the report was written.
    pub json: PathBuf,
}

#[derive(Debug, Clone)]
pub enum JobOutcome {
    Finished(Box<HeldoutScores>),
    /// Ctrl-C inside a stage: its last checkpoint resumes there.
    Interrupted {
        stage: Stage,
        stop: Interruption,
    },
}

impl JobOptions {
    pub fn stage_dir(&self, stage: Stage) -> PathBuf {
        self.dir.join(stage.name())
    }
    pub fn heldout_dir(&self) -> PathBuf {
        self.dir.join("heldout")
    }
}

/// Runs (or resumes) the whole job.
pub fn run_job(params: &TrainParameters, options: &JobOptions) -> Result<JobOutcome> {
    if !options.resume
        && options
            .dir
            .join("liver")
            .join(crate::train::run_checkpoint::LAST)
            .exists()
    {
        return Err(HeparError::invalid(
            "train",
            format!(
                "{} already holds a job; pass --resume to continue it or --out for a new folder",
                options.dir.display()
            ),
        ));
    }
    for stage in [Stage::Liver, Stage::Tumor] {
        if let Some(stop) = train_stage(params, options, stage)? {
            return Ok(JobOutcome::Interrupted { stage, stop });
        }
    }
    score_heldout(params, options).map(|s| JobOutcome::Finished(Box::new(s)))
}

/// Trains one stage of the job unless it already finished; `Some` when Ctrl-C stopped it.
fn train_stage(
    params: &TrainParameters,
    options: &JobOptions,
    stage: Stage,
) -> Result<Option<Interruption>> {
    let dir = options.stage_dir(stage);
    let run = RunFolder::new(&dir);
    let started = run.last().exists();
    if started && stage_finished(&run)? {
        if options.show_progress {
            println!("stage {stage}: {} is finished, kept", dir.display());
        }
        return Ok(None);
    }
    let liver_boxes = match stage {
        Stage::Liver => None,
        Stage::Tumor => liver_boxes_for_run(
            &dir,
            Some(&RunFolder::new(options.stage_dir(Stage::Liver)).best()),
            params,
            options.device,
            options.show_progress,
        )?,
    };
    if options.show_progress {
        println!("\n== stage {stage} ({}) ==", dir.display());
    }
    let summary = train(
        params,
        &TrainOptions {
            stage,
            arch: None,
            run_dir: dir,
            epochs: options.epochs.filter(|_| !started),
            resume: started,
            extend_epochs: None,
            show_progress: options.show_progress,
            device: options.device,
            liver_boxes,
        },
    )?;
    if summary.interrupted.is_none() && options.show_progress {
        summary.print_epoch_table();
    }
    Ok(summary.interrupted)
}

/// Whether a run's last checkpoint completed its schedule.
fn stage_finished(run: &RunFolder) -> Result<bool> {
    let loaded = load_run_checkpoint(&run.last())?;
    Ok(loaded.info.partial_epoch.is_none()
        && loaded.checkpoint.epoch >= loaded.info.schedule().total_epochs())
}

/// The cases the job scores: a new phantom on synthetic data, the validation fold otherwise.
fn heldout_cases(params: &TrainParameters, dir: &Path) -> Result<Vec<CaseFiles>> {
    if params.uses_synthetic_data() {
        return heldout_phantom(params, dir).map(|c| vec![c]);
    }
    let data = params.effective_data();
    let dataset = Dataset::discover(&data.data.root)?;
    let (_, validation) = dataset.split(data.data.folds, data.data.fold, data.data.split_seed)?;
    Ok(validation)
}

/// Writes the first phantom after the training phantoms with a scorable tumour into `dir`.
fn heldout_phantom(params: &TrainParameters, dir: &Path) -> Result<CaseFiles> {
    let s = &params.synthetic;
    let first = s.cases as u64;
    for number in first..first + HELDOUT_SEARCH {
        let (image, label) = crate::data::synth::phantom(s.seed, number, s.shape_zyx)?;
        let tumour = label.data.iter().filter(|&&l| l == 2.0).count();
        let liver = label.data.iter().filter(|&&l| l >= 1.0).count();
        if (tumour as f64) < MIN_HELDOUT_TUMOUR_FRACTION * liver as f64 {
            continue;
        }
        let case = CaseFiles {
            id: format!("lits-{number}"),
            number,
            image: dir.join(format!("volume-{number}.nii.gz")),
            label: dir.join(format!("segmentation-{number}.nii.gz")),
        };
        image.write(&case.image, NiftiDataType::I16)?;
        label.write(&case.label, NiftiDataType::U8)?;
        return Ok(case);
    }
    Err(HeparError::invalid(
        "train",
        format!(
            "none of phantoms {first}..{} of seed {} has a tumour burden of {MIN_HELDOUT_TUMOUR_FRACTION} to score",
            first + HELDOUT_SEARCH,
            s.seed
        ),
    ))
}

/// Segments the held-out cases with both best checkpoints and scores them against their truth.
fn score_heldout(params: &TrainParameters, options: &JobOptions) -> Result<HeldoutScores> {
    let dir = options.heldout_dir();
    std::fs::create_dir_all(&dir).map_err(|e| HeparError::io(&dir, e))?;
    let data = params.effective_data();
    let liver_path = RunFolder::new(options.stage_dir(Stage::Liver)).best();
    let tumor_path = RunFolder::new(options.stage_dir(Stage::Tumor)).best();
    let liver = LiverModel::load(&liver_path, &data, &Default::default(), options.device)?;
    let tumor = TumorModel::load(&tumor_path, &data, &Default::default(), options.device)?;
    if options.show_progress {
        println!("\n== held-out prediction ({}) ==", dir.display());
    }
    let mut reports = Vec::new();
    for case in heldout_cases(params, &dir)? {
        let output = dir.join(format!("prediction-{}.nii.gz", case.number));
        predict_files(
            &PredictRequest {
                liver: Some(&liver),
                liver_mask: None,
                tumor: Some(&tumor),
                input: &case.image,
                output: &output,
                probabilities: None,
                png: None,
                options: PipelineOptions {
                    batch: params.tumor.batch_size,
                    device: options.device,
                    show_progress: options.show_progress,
                },
            },
            |_| {},
        )?;
        let name = crate::eval::case_name(&case.image);
        let (report, prediction, truth) = evaluate_files(&name, &output, &case.label)?;
        let ct = crate::data::Volume::read(&case.image)?;
        write_scored_case_png(
            &dir.join(format!("{name}.png")),
            &prediction,
            &truth,
            Some(&ct.data),
        )?;
        reports.push(report);
    }
    let report = EvalReport::new(reports);
    let json = dir.join("scores.json");
    crate::util::atomic_write::write_atomic(&json, report.to_json()?.as_bytes())?;
    Ok(HeldoutScores { report, json })
}
