//! `hepar bench`: times the seed networks' workloads (eval forwards and training steps of every
//! architecture in the registry) on this machine, with peak memory.

use super::bench_pipeline::PreparedPipeline;
use super::bench_pytorch::PytorchBench;
use crate::backend::Device;
use crate::error::{HeparError, Result};
use crate::nn::{parameters, Arch, ModelConfig, NetworkOutput};
use crate::ops::loss;
use crate::optim::{Adam, AdamConfig, Optimizer};
use crate::tensor::{DType, Tensor};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Workloads to time (the liver pipeline's three when none is named).
    #[arg(value_enum)]
    pub workloads: Vec<Workload>,
    /// Time every workload, the other seeds' networks included.
    #[arg(long, conflicts_with = "workloads")]
    pub all: bool,
    /// Run the same workloads in PyTorch (CPU, same thread count) in this run, alternating with
    /// Hepar's repeats, and print each ratio (benches/pytorch/hepar_bench.py; without PyTorch
    /// installed it says so and prints Hepar's numbers alone).
    #[arg(long, value_enum, value_name = "ENGINE")]
    pub compare: Option<Compare>,
    /// Timed repetitions per workload (after one warm-up run); the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    #[command(flatten)]
    pub device: super::DeviceArg,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// 3D CoTNeXt (n 16) eval forward on [1, 1, 128, 128, 128].
    Liver3dForward,
    /// 3D CoTNeXt (n 16) AdamW training step on [1, 1, 64, 64, 64].
    Liver3dStep,
    /// 2D CoTNeXt (n 32) AdamW training step on [16, 3, 256, 256].
    Tumor2dStep,
    /// Classic 2D U-Net (base 64) Adam step, 3-class cross-entropy, on [4, 3, 128, 128].
    Unet2dClassicStep,
    /// Keras liver U-Net (base 32) Adam step, -dice, on [2, 1, 512, 512].
    KerasUnet2dStep,
    /// 3-class 3D U-Net (base 32) Adam step, weighted cross-entropy, on [2, 1, 96, 96, 96].
    #[value(name = "unet3d-3class-step")]
    Unet3d3classStep,
    /// Residual 3D U-Net (base 16) Adam step, deep supervision, on [2, 1, 64, 64, 64].
    Res3dunetStep,
    /// The whole `hepar predict` (both stages, post-processing) on a 200x512x512 phantom with
    /// the seed's networks (HEPAR_SEED_MODELS, default ../shared/fixtures/seed).
    #[value(name = "pipeline-512")]
    Pipeline512,
}

/// The engines `--compare` can run beside Hepar.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    Pytorch,
}

/// How a workload's step computes its loss (none: an eval forward).
#[derive(Clone, Copy, Debug, PartialEq)]
enum StepLoss {
    Forward,
    DiceBce,
    CrossEntropy(&'static [f64]),
    NegDice,
    DeepSupervision,
}

impl Workload {
    /// The liver pipeline's workloads, timed when none is named.
    pub const SEED: [Workload; 3] = [
        Workload::Liver3dStep,
        Workload::Liver3dForward,
        Workload::Tumor2dStep,
    ];
    pub const ALL: [Workload; 8] = [
        Workload::Liver3dStep,
        Workload::Liver3dForward,
        Workload::Tumor2dStep,
        Workload::Unet2dClassicStep,
        Workload::KerasUnet2dStep,
        Workload::Unet3d3classStep,
        Workload::Res3dunetStep,
        Workload::Pipeline512,
    ];

    /// The name on the command line and in reports (`liver3d-forward`).
    pub fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_else(|| format!("{self:?}"))
    }

    /// Whether PyTorch's side of the comparison has this workload (the pipeline is Hepar's own).
    fn has_pytorch_twin(self) -> bool {
        self != Workload::Pipeline512
    }

    /// One network's workload: its network, input shape, loss and optimiser (`None` for the
    /// pipeline, which runs two trained networks).
    fn spec(self) -> Option<(ModelConfig, Vec<usize>, StepLoss, AdamConfig)> {
        let with = |arch: Arch, base: usize, in_channels: usize| ModelConfig {
            base,
            in_channels,
            ..ModelConfig::default_for(arch)
        };
        Some(match self {
            Workload::Liver3dForward => (
                with(Arch::CotNext3d, 16, 1),
                vec![1, 1, 128, 128, 128],
                StepLoss::Forward,
                AdamConfig::adamw(1e-3, 1e-5),
            ),
            Workload::Liver3dStep => (
                with(Arch::CotNext3d, 16, 1),
                vec![1, 1, 64, 64, 64],
                StepLoss::DiceBce,
                AdamConfig::adamw(1e-3, 1e-5),
            ),
            Workload::Tumor2dStep => (
                with(Arch::CotNext2d, 32, 3),
                vec![16, 3, 256, 256],
                StepLoss::DiceBce,
                AdamConfig::adamw(1e-3, 1e-5),
            ),
            Workload::Unet2dClassicStep => (
                with(Arch::Unet2dClassic, 64, 3),
                vec![4, 3, 128, 128],
                StepLoss::CrossEntropy(&[1.0, 1.0, 1.0]),
                AdamConfig::adam(1e-3),
            ),
            Workload::KerasUnet2dStep => (
                with(Arch::KerasUnet2d, 32, 1),
                vec![2, 1, 512, 512],
                StepLoss::NegDice,
                AdamConfig::adam(1e-5),
            ),
            Workload::Unet3d3classStep => (
                with(Arch::Unet3d3Class, 32, 1),
                vec![2, 1, 96, 96, 96],
                StepLoss::CrossEntropy(&[1.0, 1.0, 3.0]),
                AdamConfig::adam(1e-4),
            ),
            Workload::Res3dunetStep => (
                with(Arch::Res3dUnet, 16, 1),
                vec![2, 1, 64, 64, 64],
                StepLoss::DeepSupervision,
                AdamConfig::adam(1e-3),
            ),
            Workload::Pipeline512 => return None,
        })
    }
}

/// A target for `loss` at the network's output size: class ids cycling through the classes, or
/// a 0/1 mask where the input is positive.
fn bench_target(
    loss: StepLoss,
    input: &Tensor,
    config: &ModelConfig,
    device: Device,
) -> Result<Option<Tensor>> {
    let mut out_shape = vec![input.shape()[0], 1];
    out_shape.extend(config.output_spatial(&input.shape()[2..]));
    Ok(match loss {
        StepLoss::Forward => None,
        StepLoss::CrossEntropy(_) => {
            let mut labels_shape = out_shape.clone();
            labels_shape.remove(1);
            let n: usize = labels_shape.iter().product();
            let labels = (0..n).map(|i| ((i / 97) % config.classes) as f32).collect();
            Some(Tensor::from_vec_on(labels, &labels_shape, device)?)
        }
        _ => {
            let n: usize = out_shape.iter().product();
            let mask = (0..n).map(|i| ((i / 89) % 2) as f32).collect();
            Some(Tensor::from_vec_on(mask, &out_shape, device)?)
        }
    })
}

fn step_loss(loss: StepLoss, out: &NetworkOutput, target: &Tensor) -> Result<Tensor> {
    match loss {
        StepLoss::Forward => Err(HeparError::invalid("bench", "a forward has no loss")),
        StepLoss::DiceBce => loss::dice_bce(&out.logits, target, 0.7, 0.3, 1e-5),
        StepLoss::CrossEntropy(weights) => loss::cross_entropy(&out.logits, target, Some(weights)),
        StepLoss::NegDice => loss::neg_dice(&out.logits, target, 1.0),
        StepLoss::DeepSupervision => loss::deep_supervision_bce_dice(
            &out.logits,
            &out.deep,
            target,
            &loss::DeepSupervisionWeights::default(),
        ),
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

/// One workload set up on a device: a run is an eval forward or a training step, and a GPU is
/// waited for at its end.
struct PreparedWorkload {
    model: Box<dyn crate::nn::Network>,
    input: Tensor,
    target: Option<Tensor>,
    loss: StepLoss,
    optimizer: Adam,
    device: Device,
}

impl PreparedWorkload {
    fn new(w: Workload, device: Device) -> Result<Self> {
        let (config, shape, loss, adam) = w.spec().ok_or_else(|| {
            HeparError::invalid("bench", format!("{} is not a single network", w.name()))
        })?;
        let model = crate::nn::build(&config, 1)?;
        crate::nn::to_device(&model, device)?;
        let input = Tensor::randn(&shape, DType::F32, 2).to_device(device)?;
        let target = bench_target(loss, &input, &config, device)?;
        let optimizer = Adam::new(parameters(&model), adam);
        Ok(PreparedWorkload {
            model,
            input,
            target,
            loss,
            optimizer,
            device,
        })
    }

    /// Seconds of one run.
    fn run(&mut self) -> Result<f64> {
        let start = Instant::now();
        match &self.target {
            None => {
                crate::no_grad(|| self.model.forward(&self.input, false))?;
            }
            Some(t) => {
                self.optimizer.zero_grad();
                let out = self.model.forward_all(&self.input, true)?;
                step_loss(self.loss, &out, t)?.backward()?;
                self.optimizer.step()?;
            }
        }
        self.device.synchronize()?;
        Ok(start.elapsed().as_secs_f64())
    }
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// A workload ready to run: a network's forward or step, or the whole pipeline.
enum Prepared {
    Network(Box<PreparedWorkload>),
    Pipeline(Box<PreparedPipeline>),
}

impl Prepared {
    fn new(w: Workload, device: Device) -> Result<Self> {
        Ok(match w {
            Workload::Pipeline512 => Prepared::Pipeline(Box::new(PreparedPipeline::new(device)?)),
            _ => Prepared::Network(Box::new(PreparedWorkload::new(w, device)?)),
        })
    }

    fn run(&mut self) -> Result<f64> {
        match self {
            Prepared::Network(p) => p.run(),
            Prepared::Pipeline(p) => p.run(),
        }
    }
}

/// Median seconds of one workload on `device` over `repeats` runs after a warm-up.
pub fn time_workload(w: Workload, repeats: usize, device: Device) -> Result<f64> {
    let mut prepared = Prepared::new(w, device)?;
    prepared.run()?;
    let times = (0..repeats.max(1))
        .map(|_| prepared.run())
        .collect::<Result<Vec<_>>>()?;
    Ok(median(times))
}

/// Hepar's and PyTorch's medians of `w`, the repeats alternating between the two (each warmed
/// up first), so both see the same machine state.
fn time_side_by_side(
    w: Workload,
    repeats: usize,
    device: Device,
    torch: &mut PytorchBench,
) -> Result<(f64, f64)> {
    let mut prepared = Prepared::new(w, device)?;
    prepared.run()?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..repeats.max(1) {
        ours.push(prepared.run()?);
        theirs.push(torch.time(&w.name())?);
    }
    Ok((median(ours), median(theirs)))
}

fn peak_gib(device: Device) -> String {
    let peak_bytes = match device.memory_stats() {
        Some(stats) => Some(stats.peak_allocated_bytes as u64),
        None => peak_rss_bytes(),
    };
    peak_bytes.map_or("?".to_string(), |b| {
        format!("{:.2}", b as f64 / (1u64 << 30) as f64)
    })
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let device = args.device.resolve()?;
    if args.repeats == 0 {
        return Err(HeparError::Config("--repeats must be at least 1".into()));
    }
    let workloads = if args.all {
        Workload::ALL.to_vec()
    } else if args.workloads.is_empty() {
        Workload::SEED.to_vec()
    } else {
        args.workloads.clone()
    };
    // A ratio is only true when both sides run on this machine in this run: PyTorch runs here,
    // now, alternating with Hepar, or not at all.
    let mut torch = match args.compare {
        Some(Compare::Pytorch) if device != Device::Cpu => {
            println!("--compare pytorch times PyTorch on the CPU; comparing it with {device} would not be like for like, so it is skipped");
            None
        }
        Some(Compare::Pytorch) => match PytorchBench::start(rayon::current_num_threads()) {
            Ok(t) => {
                println!(
                    "comparing with PyTorch in this run ({}), repeats alternating",
                    t.description
                );
                Some(t)
            }
            Err(e) => {
                println!("PyTorch comparison unavailable ({e}); Hepar's numbers alone");
                None
            }
        },
        None => None,
    };
    if torch.is_some() {
        println!(
            "{:<22} {:>10} {:>10} {:>9} {:>14}",
            "workload", "hepar s", "torch s", "speedup", "peak mem GiB"
        );
    } else {
        println!(
            "{:<22} {:>10} {:>14}",
            "workload", "hepar s", "peak mem GiB"
        );
    }
    if device != Device::Cpu {
        println!("on {device}: times include waiting for the device; peak memory is the device allocator's");
    }
    for w in workloads {
        reset_peak_rss();
        device.reset_peak_memory();
        match torch.as_mut() {
            Some(_) if !w.has_pytorch_twin() => {
                let seconds = time_workload(w, args.repeats, device)?;
                println!(
                    "{:<22} {:>10.3} {:>10} {:>9} {:>14}",
                    w.name(),
                    seconds,
                    "-",
                    "-",
                    peak_gib(device)
                );
            }
            Some(t) => {
                let (ours, theirs) = time_side_by_side(w, args.repeats, device, t)?;
                // The peak includes the PyTorch process only if it shared ours; it does not.
                println!(
                    "{:<22} {:>10.3} {:>10.3} {:>8.2}x {:>14}",
                    w.name(),
                    ours,
                    theirs,
                    theirs / ours,
                    peak_gib(device)
                );
            }
            None => {
                let seconds = time_workload(w, args.repeats, device)?;
                println!(
                    "{:<22} {:>10.3} {:>14}",
                    w.name(),
                    seconds,
                    peak_gib(device)
                );
            }
        }
    }
    Ok(())
}
