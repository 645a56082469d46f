//! `hepar bench`: times the seed networks' workloads on this machine and compares them with the
//! PyTorch anchors measured on the same machine kind (2 cores, PyTorch 2.15 CPU, median).

use crate::backend::Device;
use crate::error::{HeparError, Result};
use crate::nn::cotnext::{CotNextConfig, CotNextUnet};
use crate::nn::parameters;
use crate::ops::loss;
use crate::optim::{Adam, AdamConfig, Optimizer};
use crate::tensor::{DType, Tensor};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Workloads to time (all when none is named).
    #[arg(value_enum)]
    pub workloads: Vec<Workload>,
    /// Timed repetitions per workload (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[command(flatten)]
    pub device: super::DeviceArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// 3D network (n 16) eval forward on [1, 1, 128, 128, 128].
    Liver3dForward,
    /// 3D network (n 16) AdamW training step on [1, 1, 64, 64, 64].
    Liver3dStep,
    /// 2D network (n 32) AdamW training step on [16, 3, 256, 256].
    Tumor2dStep,
}

impl Workload {
    fn setup(self, device: Device) -> Result<(CotNextUnet, Tensor, bool)> {
        let (config, shape, train) = match self {
            Workload::Liver3dForward => (
                CotNextConfig {
                    dims: 3,
                    in_channels: 1,
                    classes: 1,
                    width: 16,
                },
                vec![1, 1, 128, 128, 128],
                false,
            ),
            Workload::Liver3dStep => (
                CotNextConfig {
                    dims: 3,
                    in_channels: 1,
                    classes: 1,
                    width: 16,
                },
                vec![1, 1, 64, 64, 64],
                true,
            ),
            Workload::Tumor2dStep => (
                CotNextConfig {
                    dims: 2,
                    in_channels: 3,
                    classes: 1,
                    width: 32,
                },
                vec![16, 3, 256, 256],
                true,
            ),
        };
        let model = CotNextUnet::new(config, 1)?;
        crate::nn::to_device(&model, device)?;
        Ok((
            model,
            Tensor::randn(&shape, DType::F32, 2).to_device(device)?,
            train,
        ))
    }
}

/// Peak resident memory of this process so far, in bytes (Linux), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets the peak-resident-memory mark so the next reading covers only what follows (Linux).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Median seconds of one workload on `device` over `repeats` runs after a warm-up; a GPU is
/// waited for at the end of each run.
pub fn time_workload(w: Workload, repeats: usize, device: Device) -> Result<f64> {
    let (model, input, train) = w.setup(device)?;
    let target = if train {
        Some(
            input
                .narrow(1, 0, 1)?
                .affine(1.0, 0.0)?
                .unary(crate::backend::UnaryOp::Positive)?,
        )
    } else {
        None
    };
    let mut optimizer = Adam::new(parameters(&model), AdamConfig::adamw(1e-3, 1e-5));
    let mut run = || -> Result<()> {
        match &target {
            None => {
                crate::no_grad(|| model.forward(&input, false))?;
            }
            Some(t) => {
                optimizer.zero_grad();
                let logits = model.forward(&input, true)?;
                loss::dice_bce(&logits, t, 0.7, 0.3, 1e-5)?.backward()?;
                optimizer.step()?;
            }
        }
        device.synchronize()
    };
    run()?;
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        run()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let device = args.device.resolve()?;
    if args.repeats == 0 {
        return Err(HeparError::Config("--repeats must be at least 1".into()));
    }
    let workloads = if args.workloads.is_empty() {
        vec![
            Workload::Liver3dStep,
            Workload::Liver3dForward,
            Workload::Tumor2dStep,
        ]
    } else {
        args.workloads.clone()
    };
    // No PyTorch column: a ratio is only true when both sides run on this machine in this run.
    println!(
        "{:<18} {:>10} {:>14}",
        "workload", "hepar s", "peak mem GiB"
    );
    if device != Device::Cpu {
        println!("on {device}: times include waiting for the device; peak memory is the device allocator's");
    }
    for w in workloads {
        reset_peak_rss();
        device.reset_peak_memory();
        let seconds = time_workload(w, args.repeats, device)?;
        let peak_bytes = match device.memory_stats() {
            Some(stats) => Some(stats.peak_allocated_bytes as u64),
            None => peak_rss_bytes(),
        };
        let peak = peak_bytes.map_or("?".to_string(), |b| {
            format!("{:.2}", b as f64 / (1u64 << 30) as f64)
        });
        println!("{:<18} {:>10.3} {:>14}", format!("{w:?}"), seconds, peak);
    }
    Ok(())
}
