//! `hepar predict --checkpoint RUN/best.safetensors --input volume.nii.gz --out mask.nii.gz`:
//! segments the liver of one CT volume with a stage-1 run and writes the mask (uint8, 0/1) with
//! the input's geometry.

use crate::data::nifti::NiftiDataType;
use crate::data::Volume;
use crate::error::Result;
use crate::train::load_run_checkpoint;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct PredictArgs {
    /// A `hepar train --stage liver` checkpoint (best.safetensors or last.safetensors).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// CT volume (.nii or .nii.gz, in HU).
    #[arg(long)]
    pub input: PathBuf,
    /// Output mask (.nii or .nii.gz).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub device: super::DeviceArg,
}

pub fn run(args: PredictArgs) -> Result<()> {
    let device = args.device.resolve()?;
    let started = std::time::Instant::now();
    let run = load_run_checkpoint(&args.checkpoint)?;
    let source = Volume::read(&args.input)?;
    let mask = crate::infer::predict_liver(&run, &args.checkpoint, &source, device)?;
    mask.write(&args.out, NiftiDataType::U8)?;
    let voxels = mask.data.iter().filter(|&&v| v > 0.0).count();
    let voxel_ml = source.spacing_zyx.iter().product::<f64>() / 1000.0;
    println!(
        "wrote {}: liver {} voxels ({:.1} ml) of {:?}, in {:.1} s",
        args.out.display(),
        voxels,
        voxels as f64 * voxel_ml,
        source.shape_zyx,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
