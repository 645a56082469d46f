//! `hepar train [--stage liver|tumor | --arch ARCH] [--config parameters.toml] [--epochs N]
//! [--out RUN] [--resume [--extend-epochs N]]`: trains one stage's CoTNeXt network, or another
//! network of the registry on its seed's recipe (`[train.<arch>]`). Ctrl-C stops after the step
//! under way with a checkpoint to resume from (exit code 130); a second Ctrl-C quits at once.
//! With the default configuration on a fresh machine it first writes synthetic phantoms, then
//! trains on them in a few minutes.

use crate::error::Result;
use crate::train::config::{default_arch_run_dir, default_run_dir};
use crate::train::{train, Stage, TrainOptions, TrainParameters};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Which network: liver (stage 1, 3D volumes) or tumor (stage 2, 2D slice stacks).
    #[arg(long, value_enum, default_value_t = Stage::Liver, conflicts_with = "arch")]
    pub stage: Stage,
    /// Another network instead of a CoTNeXt stage: unet2d_classic, keras_unet2d, unet3d_3class or
    /// res3dunet (3D networks train on the stage-1 volumes, 2D ones on the stage-2 slice stacks),
    /// each with its seed's optimiser, schedule and loss from `[train.<arch>]`.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<crate::nn::Arch>,
    /// Settings file ([data], [preprocess], [augment], [sampling], [train.*], [model.*])
    /// [default: parameters.toml, or the built-in defaults (the same values) when it is absent].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Dataset folder, replacing `[data] root`: LiTS, MSD Task03_Liver or 3Dircadb
    /// (3Dircadb1.N/PATIENT_DICOM + MASKS_DICOM/liver, read as DICOM series).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Number of epochs of a new run (replaces the stage's `epochs`; the learning-rate schedule
    /// spans it). A resumed run keeps its own; to train it further use --extend-epochs.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Run folder for history.csv, history.json, curves.png, last.safetensors and
    /// best.safetensors [default: runs/STAGE, or runs/ARCH with --arch].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in the run folder from its last checkpoint, on its own schedule.
    #[arg(long)]
    pub resume: bool,
    /// With --resume: add N epochs to the run. The learning rate does not jump: from the rate of
    /// the last trained epoch a cosine anneals to eta_min over the epochs left (old and new).
    #[arg(long, value_name = "N", requires = "resume")]
    pub extend_epochs: Option<u64>,
    #[command(flatten)]
    pub device: super::DeviceArg,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let default_config = std::path::Path::new("parameters.toml");
    let mut params = match &args.config {
        Some(path) => TrainParameters::load(path)?,
        None if default_config.is_file() => TrainParameters::load(default_config)?,
        None => {
            eprintln!("no parameters.toml here: using the built-in defaults");
            TrainParameters::default()
        }
    };
    if let Some(root) = &args.data {
        params.data.data.root = root.clone();
    }
    let stage = args.arch.map_or(args.stage, TrainParameters::stage_of);
    let run_dir = args.out.clone().unwrap_or_else(|| match args.arch {
        Some(arch) => default_arch_run_dir(arch),
        None => default_run_dir(stage),
    });
    crate::train::interrupt::install_sigint_handler()?;
    let started = std::time::Instant::now();
    let summary = train(
        &params,
        &TrainOptions {
            stage,
            arch: args.arch,
            run_dir: run_dir.clone(),
            epochs: args.epochs,
            resume: args.resume,
            extend_epochs: args.extend_epochs,
            show_progress: true,
            device,
        },
    )?;
    if let Some(stop) = summary.interrupted {
        let config = args
            .config
            .as_ref()
            .map(|c| format!(" --config {}", c.display()))
            .unwrap_or_default();
        let place = match stop.batches_done {
            0 => format!("after epoch {}", stop.epochs_done),
            b => format!("in epoch {} after batch {b}", stop.epochs_done + 1),
        };
        println!(
            "interrupted {place} (step {}); saved {}. Resume with:\n  hepar train {}{config} --out {} --resume",
            stop.step,
            summary.run.last().display(),
            match args.arch {
                Some(arch) => format!("--arch {arch}"),
                None => format!("--stage {stage}"),
            },
            run_dir.display()
        );
        std::process::exit(crate::train::interrupt::EXIT_CODE);
    }
    print!(
        "\n{}",
        crate::train::history::summary_table(&summary.history, summary.best_epoch)
    );
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
