//! `hepar predict --liver-model CKPT [--tumor-model CKPT] --input CT.nii[.gz] --output
//! SEG.nii.gz [--probabilities DIR] [--png DIR]`: the coarse-to-fine pipeline
//! (`infer::pipeline`), labels 0 background, 1 liver, 2 tumour written as uint8 with the input's
//! geometry. A folder as `--input` predicts each CT in it into the `--output` folder.

use crate::data::config::DataParameters;
use crate::error::Result;
use crate::infer::model_source::ArchChoice;
use crate::infer::pipeline::{LiverModel, PipelineOptions, TumorModel};
use crate::infer::predict_files::{predict_files, PredictRequest};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// The liver network: a `hepar train --stage liver` checkpoint, or the seed's `.pth`
    /// (cotnext3d, 1 channel, width 16).
    #[arg(
        long = "liver-model",
        visible_alias = "checkpoint",
        value_name = "CKPT"
    )]
    pub liver_model: Option<PathBuf>,
    /// The tumour network: a `hepar train --stage tumor` checkpoint, or the seed's `.pth`
    /// (cotnext2d, 3 channels, width 32). Without it the output has labels 0 and 1 only.
    #[arg(long = "tumor-model", value_name = "CKPT")]
    pub tumor_model: Option<PathBuf>,
    /// Instead of --liver-model: a liver label map on the CT's grid (voxels > 0 are liver), or a
    /// folder of them named as the CTs, for running the tumour stage alone.
    #[arg(
        long = "liver-mask",
        value_name = "FILE",
        conflicts_with = "liver_model"
    )]
    pub liver_mask: Option<PathBuf>,
    /// CT volume (.nii or .nii.gz, in HU), or a folder of them.
    #[arg(long, value_name = "CT")]
    pub input: PathBuf,
    /// Output label map (.nii or .nii.gz); a folder when --input is one.
    #[arg(long, visible_alias = "out", value_name = "SEG")]
    pub output: PathBuf,
    /// Also write the probability maps here (`<case>_liver.nii.gz`, `<case>_tumor.nii.gz`).
    #[arg(long, value_name = "DIR")]
    pub probabilities: Option<PathBuf>,
    /// Also write a picture per case here (`<case>.png`).
    #[arg(long, value_name = "DIR")]
    pub png: Option<PathBuf>,
    /// Preprocessing for `.pth` models (run checkpoints use their run's): a parameters file
    /// whose [preprocess] sections apply; default the seed's settings, as in parameters.toml.
    #[arg(long, value_name = "TOML")]
    pub config: Option<PathBuf>,
    /// Tumour-stage stacks per forward pass.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub batch: usize,
    /// Architecture of a `.pth` liver model other than the seed's (cotnext3d, width 16), e.g.
    /// unet3d_3class; `--liver-n-channels` its width.
    #[arg(long, value_name = "ARCH")]
    pub liver_arch: Option<crate::nn::Arch>,
    #[arg(long, value_name = "N")]
    pub liver_n_channels: Option<usize>,
    /// Architecture of a `.pth` tumour model other than the seed's (cotnext2d, width 32);
    /// `--tumor-n-channels` its width.
    #[arg(long, value_name = "ARCH")]
    pub tumor_arch: Option<crate::nn::Arch>,
    #[arg(long, value_name = "N")]
    pub tumor_n_channels: Option<usize>,
    #[command(flatten)]
    pub device: super::DeviceArg,
}

pub fn run(args: PredictArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let started = std::time::Instant::now();
    let fallback = match &args.config {
        Some(path) => DataParameters::load(path)?,
        None => DataParameters::default(),
    };
    let liver = args
        .liver_model
        .as_deref()
        .map(|p| {
            let choice = ArchChoice {
                arch: args.liver_arch,
                base: args.liver_n_channels,
                ..ArchChoice::default()
            };
            LiverModel::load(p, &fallback, &choice, device)
        })
        .transpose()?;
    let tumor = args
        .tumor_model
        .as_deref()
        .map(|p| {
            let choice = ArchChoice {
                arch: args.tumor_arch,
                base: args.tumor_n_channels,
                ..ArchChoice::default()
            };
            TumorModel::load(p, &fallback, &choice, device)
        })
        .transpose()?;
    let request = PredictRequest {
        liver: liver.as_ref(),
        liver_mask: args.liver_mask.as_deref(),
        tumor: tumor.as_ref(),
        input: &args.input,
        output: &args.output,
        probabilities: args.probabilities.as_deref(),
        png: args.png.as_deref(),
        options: PipelineOptions {
            batch: args.batch,
            device,
            show_progress: true,
        },
    };
    let summaries = predict_files(&request, |s| {
        println!(
            "wrote {}: liver {:.1} ml, tumour {:.1} ml, of {:?}, in {:.1} s",
            s.output.display(),
            s.liver_ml,
            s.tumor_ml,
            s.shape_zyx,
            s.seconds
        )
    })?;
    if summaries.len() > 1 {
        println!(
            "{} cases in {:.1} s",
            summaries.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
