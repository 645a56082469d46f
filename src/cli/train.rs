//! `hepar train [--stage liver|tumor [--liver-model CKPT] | --arch ARCH] [--config parameters.toml]
//! [--epochs N] [--out RUN] [--resume [--extend-epochs N]]`.
//!
//! With no stage or architecture it runs the main job (`crate::job`): both stages, stage 2 on
//! stage 1's liver boxes, then the held-out cases segmented and scored. With a stage it trains
//! that stage's CoTNeXt network; with `--arch`, another network of the registry on its seed's
//! recipe (`[train.<arch>]`). Each new run goes to a new folder, `runs/<name>-<timestamp>`
//! unless `--out` names one, and `runs/latest` points to it; `--resume` without `--out`
//! continues the newest run of that name. Ctrl-C stops after the step under way with a
//! checkpoint to resume from (exit code 130); a second Ctrl-C quits at once.

use crate::error::{HeparError, Result};
use crate::job::{run_job, JobOptions, JobOutcome};
use crate::nn::Arch;
use crate::train::run_dirs::{latest_run_dir, new_run_dir, point_latest, RUNS};
use crate::train::{train, Interruption, Stage, TrainOptions, TrainParameters};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Train one network only: liver (stage 1, 3D volumes) or tumor (stage 2, 2D slice stacks).
    /// Without --stage or --arch: both stages, then the held-out check (the main job).
    #[arg(long, value_enum, conflicts_with = "arch")]
    pub stage: Option<Stage>,
    /// Another network instead of a CoTNeXt stage: unet2d_classic, keras_unet2d, unet3d_3class or
    /// res3dunet (3D networks train on the stage-1 volumes, 2D ones on the stage-2 slice stacks),
    /// each with its seed's optimiser, schedule and loss from `[train.<arch>]`.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Arch>,
    /// Stage 2 (and 2D networks): cut the slice stacks from the liver boxes this stage-1
    /// checkpoint predicts for every case (written to the run's bbox.json, which later runs and
    /// resumes reuse), instead of from the labels' livers.
    #[arg(long, value_name = "CKPT")]
    pub liver_model: Option<PathBuf>,
    /// Settings file ([data], [preprocess], [augment], [sampling], [train.*], [model.*])
    /// [default: parameters.toml, or the built-in defaults (the same values) when it is absent].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Dataset folder, replacing `[data] root`: LiTS, MSD Task03_Liver or 3Dircadb
    /// (3Dircadb1.N/PATIENT_DICOM + MASKS_DICOM/liver, read as DICOM series).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Number of epochs of a new run (replaces the stage's `epochs`, both stages' in the main
    /// job; the learning-rate schedule spans it). A resumed run keeps its own; to train it
    /// further use --extend-epochs.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Run folder [default: a new runs/<stage or arch or "pipeline">-<UTC timestamp>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out (default: the newest run of this stage, architecture or main
    /// job) from its last checkpoint, on its own schedule.
    #[arg(long)]
    pub resume: bool,
    /// With --resume: add N epochs to the run. The learning rate does not jump: from the rate of
    /// the last trained epoch a cosine anneals to eta_min over the epochs left (old and new).
    #[arg(long, value_name = "N", requires = "resume")]
    pub extend_epochs: Option<u64>,
    #[command(flatten)]
    pub device: super::DeviceArg,
}

/// The main job's folder name in `runs/`.
const JOB_NAME: &str = "pipeline";

fn load_parameters(config: Option<&Path>) -> Result<TrainParameters> {
    let default_config = Path::new("parameters.toml");
    match config {
        Some(path) => TrainParameters::load(path),
        None if default_config.is_file() => TrainParameters::load(default_config),
        None => {
            eprintln!("no parameters.toml here: using the built-in defaults");
            Ok(TrainParameters::default())
        }
    }
}

/// The run folder: `--out`, the newest run of `name` for a resume, or a new one (then
/// `runs/latest` points to it). `true` when the folder was made here.
fn run_folder(args: &TrainArgs, name: &str) -> Result<(PathBuf, bool)> {
    let runs = Path::new(RUNS);
    match (&args.out, args.resume) {
        (Some(out), _) => Ok((out.clone(), false)),
        (None, true) => Ok((latest_run_dir(runs, name)?, false)),
        (None, false) => {
            let dir = new_run_dir(runs, name)?;
            point_latest(runs, &dir)?;
            Ok((dir, true))
        }
    }
}

/// Removes a folder made for a run that failed before writing anything (and `runs/latest`
/// when it points there).
fn drop_if_empty(dir: &Path, made_here: bool) {
    let empty = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none());
    if made_here && empty && std::fs::remove_dir(dir).is_ok() {
        let latest = Path::new(RUNS).join(crate::train::run_dirs::LATEST);
        if std::fs::read_link(&latest).is_ok_and(|t| Some(t.as_os_str()) == dir.file_name()) {
            let _ = std::fs::remove_file(latest);
        }
    }
}

/// Checks the settings a run would use (with `--epochs`) before any folder is made.
fn check_settings(params: &TrainParameters, arch: Option<Arch>, epochs: Option<u64>) -> Result<()> {
    let Some(epochs) = epochs else {
        return Ok(());
    };
    let mut params = params.clone();
    match arch {
        Some(arch) => params.training_for_mut(arch).epochs = epochs,
        None => {
            params.liver.epochs = epochs;
            params.tumor.epochs = epochs;
        }
    }
    params.validate()
}

fn resume_hint(args: &TrainArgs, what: &str, dir: &Path) -> String {
    let config = args
        .config
        .as_ref()
        .map(|c| format!(" --config {}", c.display()))
        .unwrap_or_default();
    format!("hepar train{what}{config} --out {} --resume", dir.display())
}

fn print_interruption(stop: Interruption, saved: &Path, hint: &str) -> ! {
    let place = match stop.batches_done {
        0 => format!("after epoch {}", stop.epochs_done),
        b => format!("in epoch {} after batch {b}", stop.epochs_done + 1),
    };
    println!(
        "interrupted {place} (step {}); saved {}. Resume with:\n  {hint}",
        stop.step,
        saved.display(),
    );
    std::process::exit(crate::train::interrupt::EXIT_CODE);
}

pub fn run(args: TrainArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let mut params = load_parameters(args.config.as_deref())?;
    if let Some(root) = &args.data {
        params.data.data.root = root.clone();
    }
    crate::train::interrupt::install_sigint_handler()?;
    if !args.resume {
        check_settings(&params, args.arch, args.epochs)?;
    }
    if args.stage.is_none() && args.arch.is_none() {
        return run_main_job(&args, &params, device);
    }
    let stage = args.arch.map_or(
        args.stage.unwrap_or(Stage::Liver),
        TrainParameters::stage_of,
    );
    if args.liver_model.is_some() && stage != Stage::Tumor {
        return Err(HeparError::invalid(
            "train --liver-model",
            "the liver boxes feed stage 2: use it with --stage tumor or a 2D --arch",
        ));
    }
    let name = args
        .arch
        .map_or(stage.name().to_string(), |a| a.name().to_string());
    let (run_dir, made_here) = run_folder(&args, &name)?;
    let result = train_one(&args, &params, stage, &run_dir, device);
    drop_if_empty(&run_dir, made_here);
    result
}

fn train_one(
    args: &TrainArgs,
    params: &TrainParameters,
    stage: Stage,
    run_dir: &Path,
    device: crate::backend::Device,
) -> Result<()> {
    let liver_boxes = match stage {
        Stage::Tumor => crate::infer::liver_boxes::liver_boxes_for_run(
            run_dir,
            args.liver_model.as_deref(),
            params,
            device,
            true,
        )?,
        Stage::Liver => None,
    };
    let started = std::time::Instant::now();
    let summary = train(
        params,
        &TrainOptions {
            stage,
            arch: args.arch,
            run_dir: run_dir.to_path_buf(),
            epochs: args.epochs,
            resume: args.resume,
            extend_epochs: args.extend_epochs,
            show_progress: true,
            device,
            liver_boxes,
        },
    )?;
    if let Some(stop) = summary.interrupted {
        summary.print_epoch_table();
        let what = match args.arch {
            Some(arch) => format!(" --arch {arch}"),
            None => format!(" --stage {stage}"),
        };
        print_interruption(
            stop,
            &summary.run.last(),
            &resume_hint(args, &what, run_dir),
        );
    }
    summary.print_epoch_table();
    let best = summary
        .best_val_dice
        .map_or("n/a".to_string(), |d| format!("{d:.3}"));
    println!(
        "done in {:.1} s: best validation Dice {best} at epoch {}; {} (best), {} (last), {} and {} (history), {} (curves)",
        started.elapsed().as_secs_f64(),
        summary.best_epoch,
        summary.run.best().display(),
        summary.run.last().display(),
        summary.run.history().display(),
        summary.run.history_json().display(),
        summary.run.curves().display()
    );
    Ok(())
}

fn run_main_job(
    args: &TrainArgs,
    params: &TrainParameters,
    device: crate::backend::Device,
) -> Result<()> {
    if args.extend_epochs.is_some() || args.liver_model.is_some() {
        return Err(HeparError::invalid(
            "train",
            "--extend-epochs and --liver-model apply to one stage: add --stage",
        ));
    }
    let (dir, made_here) = run_folder(args, JOB_NAME)?;
    let options = JobOptions {
        dir: dir.clone(),
        epochs: args.epochs,
        resume: args.resume,
        device,
        show_progress: true,
    };
    println!(
        "main job in {}: stage 1 (liver), stage 2 (tumour) on stage 1's liver boxes, then the held-out check",
        dir.display()
    );
    let started = std::time::Instant::now();
    let outcome = run_job(params, &options);
    drop_if_empty(&dir, made_here);
    match outcome? {
        JobOutcome::Interrupted { stage, stop } => {
            let saved = crate::train::RunFolder::new(options.stage_dir(stage)).last();
            print_interruption(stop, &saved, &resume_hint(args, "", &dir))
        }
        JobOutcome::Finished(scores) => {
            let fmt = |v: Option<f64>| v.map_or("n/a".to_string(), |d| format!("{d:.3}"));
            for case in &scores.report.cases {
                println!(
                    "held-out {}: liver Dice {}, tumour Dice {} ({} of {} lesions found)",
                    case.case,
                    fmt(case.liver.dice),
                    fmt(case.tumor.overlap.dice),
                    case.tumor.lesions.detected,
                    case.tumor.lesions.truth
                );
            }
            println!(
                "done in {:.1} s: liver Dice {}, tumour Dice {} on the held-out case(s); {} (scores), {} (networks)",
                started.elapsed().as_secs_f64(),
                fmt(scores.report.mean.liver.dice),
                fmt(scores.report.mean.tumor.overlap.dice),
                scores.json.display(),
                dir.display()
            );
            Ok(())
        }
    }
}
