//! The `hepar` subcommands, one module each. `main.rs` only parses arguments and dispatches here.

pub mod bench;
pub mod eval;
pub mod inspect;
pub mod predict;
pub mod synth;
pub mod train;
pub mod verify;

use crate::backend::Device;
use crate::error::Result;

/// `--device cpu | ptxvm | cuda[:N]` of every command that runs a network; `HEPAR_DEVICE` when
/// the flag is absent, else the CPU.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct DeviceArg {
    /// Where to run: cpu, ptxvm (the CUDA kernels on the PTX virtual machine) or cuda[:N].
    #[arg(long = "device", value_name = "DEVICE")]
    pub device: Option<String>,
}

impl DeviceArg {
    /// The device, opened so that a missing GPU is reported before any work.
    pub fn resolve(&self) -> Result<Device> {
        let device = match &self.device {
            Some(name) => name.parse()?,
            None => Device::from_env()?,
        };
        device.ensure_available()?;
        Ok(device)
    }
}
