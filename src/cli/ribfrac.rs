//! `hepar ribfrac --model M --input CT|DIR --output DIR`: rib-fracture detection (see
//! `infer::rib_fracture`): the residual 3D U-Net (or any one-class 3D network) slid over each CT,
//! post-processed, written as `<id>.nii.gz` int16 component maps and one `ribfrac-pred.csv`: a
//! prediction folder `hepar froc` scores.

use crate::error::{HeparError, Result};
use crate::infer::model_source::load_network;
use crate::infer::rib_fracture::{predict_rib_files, RibFracOptions, RibPostprocess, SpineRemoval};
use crate::infer::sliding_window::{Blend, WindowOptions};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct RibFracArgs {
    /// A run checkpoint, or a `.pth` / plain `.safetensors` state dict described by --arch.
    #[arg(long)]
    pub model: PathBuf,
    /// A CT in HU (.nii / .nii.gz), or a folder of them.
    #[arg(long)]
    pub input: PathBuf,
    /// Output folder for `<id>.nii.gz` and `ribfrac-pred.csv`.
    #[arg(long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub arch: super::ArchArgs,
    /// Window size as Z,Y,X.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "Z,Y,X",
        default_value = "64,64,64"
    )]
    pub roi: Vec<usize>,
    #[arg(long, default_value_t = 0.25)]
    pub overlap: f64,
    #[arg(long, default_value = "constant")]
    pub blend: Blend,
    /// Probabilities at or below this become 0 (negative: off).
    #[arg(long, default_value_t = 0.1)]
    pub prob_threshold: f32,
    /// Regions with fewer voxels are removed (0: off).
    #[arg(long, default_value_t = 100)]
    pub min_voxels: usize,
    /// Bone threshold of the spine removal in HU.
    #[arg(long, default_value_t = 300.0)]
    pub bone_hu: f32,
    /// Keep detections on the spine.
    #[arg(long)]
    pub keep_spine: bool,
    #[command(flatten)]
    pub device: super::DeviceArg,
}

pub fn run(args: RibFracArgs) -> Result<()> {
    let roi: [usize; 3] = args.roi.clone().try_into().map_err(|_| {
        HeparError::Config(format!("--roi {:?} needs three values Z,Y,X", args.roi))
    })?;
    let device = args.device.resolve()?;
    let model = load_network(&args.model, &args.arch.choice())?;
    crate::nn::to_device(&model, device)?;
    let inputs = if args.input.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&args.input)
            .map_err(|e| HeparError::io(&args.input, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.to_string_lossy();
                name.ends_with(".nii") || name.ends_with(".nii.gz")
            })
            .collect();
        files.sort();
        files
    } else {
        vec![args.input.clone()]
    };
    if inputs.is_empty() {
        return Err(HeparError::format(
            &args.input,
            "no .nii or .nii.gz files here",
        ));
    }
    let options = RibFracOptions {
        roi,
        window: WindowOptions {
            overlap: args.overlap,
            blend: args.blend,
            progress: true,
            ..WindowOptions::default()
        },
        postprocess: RibPostprocess {
            probability_threshold: (args.prob_threshold >= 0.0).then_some(args.prob_threshold),
            spine: (!args.keep_spine).then_some(SpineRemoval {
                bone_hu: args.bone_hu,
                disk_radius: 7,
            }),
            min_voxels: (args.min_voxels > 0).then_some(args.min_voxels),
        },
    };
    let csv = predict_rib_files(&*model, &inputs, &args.output, &options, device)?;
    println!(
        "wrote {} case(s) to {} ({})",
        inputs.len(),
        args.output.display(),
        csv.display()
    );
    Ok(())
}
