//! The `hepar` subcommands, one module each. `main.rs` only parses arguments and dispatches here.

pub mod bench;
pub mod bench_ops;
pub mod bench_pipeline;
pub mod bench_pytorch;
pub mod convert;
pub mod eval;
pub mod froc;
pub mod infer;
pub mod inspect;
pub mod kernels;
pub mod kernels_check;
pub mod op_cases;
pub mod predict;
pub mod ribfrac;
pub mod synth;
pub mod train;
pub mod verify;

use crate::backend::Device;
use crate::error::Result;

/// `--device cpu | ptxvm | cuda[:N]` of every command that runs a network; `HEPAR_DEVICE` when
/// the flag is absent, else the CPU. With it, `--precision fp32 | tf32` for the GPU's matrix
/// products.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DeviceArg {
    /// Where to run: cpu, ptxvm (the CUDA kernels on the PTX virtual machine) or cuda[:N].
    #[arg(long = "device", value_name = "DEVICE")]
    pub device: Option<String>,
    /// f32 matrix products on GPUs: fp32, or tf32 (tensor cores: TF32 inputs, f32 accumulation,
    /// about 1e-3 relative error). The CPU and f64 ignore it.
    #[arg(
        long = "precision",
        value_name = "PRECISION",
        value_enum,
        default_value_t
    )]
    pub precision: crate::backend::precision::Precision,
}

impl DeviceArg {
    /// The device, opened so that a missing GPU is reported before any work; the precision is
    /// set for the whole process.
    pub fn resolve(&self) -> Result<Device> {
        let device = match &self.device {
            Some(name) => name.parse()?,
            None => Device::from_env()?,
        };
        device.ensure_available()?;
        crate::backend::precision::set_matmul_precision(self.precision);
        Ok(device)
    }
}

/// `--arch`, `--in-channels`, `--n-channels` (or `--base`) and `--classes`: the network of a
/// PyTorch state dict, or a check on what a run checkpoint records.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ArchArgs {
    /// Architecture: cotnext3d, cotnext2d, unet2d_classic, keras_unet2d, unet3d_3class, res3dunet.
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<crate::nn::Arch>,
    /// Input channels (default: the architecture's).
    #[arg(long, value_name = "C")]
    pub in_channels: Option<usize>,
    /// Base width (`n_channels` of the CoTNeXt networks; default: the architecture's).
    #[arg(long = "n-channels", visible_alias = "base", value_name = "N")]
    pub base: Option<usize>,
    /// Output classes (default: the architecture's).
    #[arg(long, value_name = "K")]
    pub classes: Option<usize>,
}

impl ArchArgs {
    pub fn choice(&self) -> crate::infer::model_source::ArchChoice {
        crate::infer::model_source::ArchChoice {
            arch: self.arch,
            in_channels: self.in_channels,
            base: self.base,
            classes: self.classes,
        }
    }
}
