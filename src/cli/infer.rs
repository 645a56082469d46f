//! `hepar infer --model CKPT --input VOL.nii.gz --output PROB.nii.gz`: one network over one volume
//! exactly as given, with MONAI's sliding windows, written as probabilities with the input's
//! geometry (one map per class; 4D when there are several).

use crate::data::nifti::NiftiDataType;
use crate::data::Volume;
use crate::error::{HeparError, Result};
use crate::infer::model_source::load_network;
use crate::infer::sliding_window::{Blend, WindowOptions};
use crate::infer::volume_inference::infer_volume;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct InferArgs {
    /// A `hepar train` checkpoint (.safetensors; the architecture is read from it) or a PyTorch
    /// state dict (.pth; give --arch and, where they differ from its defaults, the sizes).
    #[arg(long)]
    pub model: PathBuf,
    /// The volume (.nii or .nii.gz), fed to the network as it is.
    #[arg(long)]
    pub input: PathBuf,
    /// Probabilities (.nii or .nii.gz, float32).
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub arch: super::ArchArgs,
    /// Window size, (z, y, x) for 3D networks and (y, x) for 2D ones, e.g. 96,96,96 (default:
    /// the whole volume).
    #[arg(long, value_delimiter = ',', value_name = "Z,Y,X")]
    pub roi: Option<Vec<usize>>,
    /// Fraction of a window shared with its neighbour, in [0, 1).
    #[arg(long, default_value_t = 0.25)]
    pub overlap: f64,
    /// How overlapping windows are blended: constant or gaussian.
    #[arg(long, default_value = "constant")]
    pub blend: Blend,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    #[command(flatten)]
    pub device: super::DeviceArg,
}

pub fn run(args: InferArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let started = std::time::Instant::now();
    let model = load_network(&args.model, &args.arch.choice())?;
    crate::nn::to_device(&model, device)?;
    let volume = Volume::read(&args.input)?;
    let window = WindowOptions {
        overlap: args.overlap,
        blend: args.blend,
        batch: args.batch,
        progress: true,
        ..WindowOptions::default()
    };
    let probabilities = infer_volume(
        &*model,
        &volume,
        &args.input,
        args.roi.as_deref(),
        &window,
        device,
    )?;
    if probabilities
        .channels
        .iter()
        .flatten()
        .any(|p| !p.is_finite())
    {
        return Err(HeparError::NonFinite {
            op: "infer",
            msg: format!(
                "{} gave non-finite probabilities on {}",
                args.model.display(),
                args.input.display()
            ),
        });
    }
    volume.write_channels(&args.output, &probabilities.channels, NiftiDataType::F32)?;
    println!(
        "wrote {}: {} map(s) of {:?} (z, y, x) from {} ({}), in {:.1} s",
        args.output.display(),
        probabilities.channels.len(),
        volume.shape_zyx,
        args.model.display(),
        model.config().arch,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
