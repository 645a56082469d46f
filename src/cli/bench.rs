//! `hepar bench`: times the seed networks' workloads (eval forwards and training steps of every
//! architecture in the registry) on this machine, with peak memory.

use super::bench_ops::{bench_ops, count_ops, OpCounted, OpResult};
use super::bench_pipeline::PreparedPipeline;
use super::bench_pytorch::PytorchBench;
use super::op_cases::OpFamily;
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
    /// Timed repetitions per workload (after one warm-up run); the median, min and max are
    /// reported.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Time single ops at the U-Nets' shapes instead of (or, with workloads named, besides)
    /// the workloads: forward and forward + backward, with GFLOP/s and GB/s.
    #[arg(long, value_enum, value_name = "OP")]
    pub op: Option<OpFamily>,
    /// The op's input shape instead of the U-Nets' (repeatable; `1,16,64,64,64`; for matmul
    /// `M,K,N`).
    #[arg(long = "shape", value_name = "DIMS", value_parser = parse_shape, requires = "op")]
    pub shapes: Vec<OpShape>,
    /// Print one JSON document (machine with its measured ceilings, then each workload's
    /// median_s, min_s, max_s, repeats, peak_mem_bytes, peak_rss_bytes, gflops) instead of the
    /// table.
    #[arg(long)]
    pub json: bool,
    /// After each workload's timed runs, one more run recorded op by op: where its time goes
    /// (forward and backward per op kind, calls, seconds, share). A forward op is charged the
    /// time since the previous op ended (see `util::op_profile`).
    #[arg(long)]
    pub profile: bool,
    #[command(flatten)]
    pub device: super::DeviceArg,
}

/// One `--shape`: comma-separated axis lengths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpShape(pub Vec<usize>);

fn parse_shape(text: &str) -> std::result::Result<OpShape, String> {
    text.split(',')
        .map(|d| {
            d.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{text}` is not a shape: `{d}` is not an axis length"))
        })
        .collect::<std::result::Result<Vec<usize>, String>>()
        .map(OpShape)
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
                crate::util::op_profile::time_update("optimizer_step", || self.optimizer.step())?;
            }
        }
        self.device.synchronize()?;
        Ok(start.elapsed().as_secs_f64())
    }
}

pub(super) fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    let n = times.len();
    if n.is_multiple_of(2) {
        (times[n / 2 - 1] + times[n / 2]) / 2.0
    } else {
        times[n / 2]
    }
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

/// One workload's measurements.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkloadResult {
    pub name: String,
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    pub repeats: usize,
    /// Peak heap bytes live during the workload (CPU: counted by the `hepar` binary's
    /// allocator), or the device allocator's peak.
    pub peak_mem_bytes: Option<u64>,
    /// Peak resident set of the `hepar` process over the workload's set-up, warm-up and runs,
    /// counted from what was resident once freed memory went back to the OS (Linux).
    pub peak_rss_bytes: Option<u64>,
    /// Convolution and matrix-product FLOPs of one run over its median time (see `ops::flops`).
    pub gflops: Option<f64>,
    /// PyTorch's median in the same run, when compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pytorch_median_s: Option<f64>,
    /// The PyTorch process's peak resident set over the same span of its side, when compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pytorch_peak_rss_bytes: Option<u64>,
}

/// The timed runs of one workload on both sides.
struct Runs {
    ours: Vec<f64>,
    theirs: Vec<f64>,
    /// PyTorch's peak resident set, from its last reply.
    their_peak_rss: Option<u64>,
    flops_per_run: u64,
}

/// The workload's timed runs after a warm-up (alternating with PyTorch's when `torch` is given).
fn time_runs(
    w: Workload,
    repeats: usize,
    device: Device,
    mut torch: Option<&mut PytorchBench>,
) -> Result<Runs> {
    let mut prepared = Prepared::new(w, device)?;
    crate::ops::flops::reset();
    prepared.run()?;
    let mut runs = Runs {
        ours: Vec::new(),
        theirs: Vec::new(),
        their_peak_rss: None,
        flops_per_run: crate::ops::flops::read(),
    };
    for _ in 0..repeats.max(1) {
        runs.ours.push(prepared.run()?);
        if let Some(t) = torch.as_deref_mut() {
            let theirs = t.run(&w.name())?;
            runs.theirs.push(theirs.seconds);
            runs.their_peak_rss = theirs.peak_rss_bytes;
        }
    }
    Ok(runs)
}

fn measure(
    w: Workload,
    repeats: usize,
    device: Device,
    torch: Option<&mut PytorchBench>,
) -> Result<WorkloadResult> {
    crate::util::heap_stats::return_freed_memory_to_os();
    reset_peak_rss();
    crate::util::heap_stats::reset_peak();
    device.reset_peak_memory();
    let torch = torch.filter(|_| w.has_pytorch_twin());
    let runs = time_runs(w, repeats, device, torch)?;
    let median_s = median(runs.ours.clone());
    let flops = runs.flops_per_run;
    Ok(WorkloadResult {
        name: w.name(),
        median_s,
        min_s: runs.ours.iter().copied().fold(f64::INFINITY, f64::min),
        max_s: runs.ours.iter().copied().fold(0.0, f64::max),
        repeats: runs.ours.len(),
        peak_mem_bytes: peak_bytes(device),
        peak_rss_bytes: peak_rss_bytes(),
        gflops: (flops > 0).then(|| flops as f64 / median_s / 1e9),
        pytorch_median_s: (!runs.theirs.is_empty()).then(|| median(runs.theirs)),
        pytorch_peak_rss_bytes: runs.their_peak_rss,
    })
}

/// The device allocator's peak on a GPU device; on the CPU the peak of live heap bytes (the
/// `hepar` binary counts them), else the peak resident set.
fn peak_bytes(device: Device) -> Option<u64> {
    match device.memory_stats() {
        Some(stats) => Some(stats.peak_allocated_bytes as u64),
        None => crate::util::heap_stats::peak_bytes()
            .map(|b| b as u64)
            .or_else(peak_rss_bytes),
    }
}

/// This machine's ceilings, measured by the command itself: a large GEMM for compute and a
/// large copy for memory bandwidth (best of a few runs each).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ceilings {
    /// f32 GEMM 2048^3 on the bench's device.
    pub gemm_gflops: f64,
    /// A 256 MiB host copy, bytes read plus bytes written per second.
    pub copy_gbs: f64,
}

fn measure_ceilings(device: Device) -> Result<Ceilings> {
    let n = 2048;
    let a = Tensor::randn(&[n, n], DType::F32, 3).to_device(device)?;
    let b = Tensor::randn(&[n, n], DType::F32, 4).to_device(device)?;
    let mut gemm = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        crate::no_grad(|| a.matmul(&b))?;
        device.synchronize()?;
        gemm = gemm.min(start.elapsed().as_secs_f64());
    }
    let words = 64 << 20;
    let src = vec![1.0f32; words];
    let mut dst = vec![0.0f32; words];
    let mut copy = f64::INFINITY;
    for _ in 0..3 {
        let start = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
        copy = copy.min(start.elapsed().as_secs_f64());
    }
    Ok(Ceilings {
        gemm_gflops: 2.0 * (n * n * n) as f64 / gemm / 1e9,
        copy_gbs: 2.0 * (words * 4) as f64 / copy / 1e9,
    })
}

/// What `--json` describes the machine by.
#[derive(Debug, Clone, serde::Serialize)]
struct Machine {
    cpu: String,
    threads: usize,
    device: String,
    os: &'static str,
    arch: &'static str,
    ceilings: Ceilings,
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn gib(bytes: Option<u64>) -> String {
    bytes.map_or("?".to_string(), |b| {
        format!("{:.2}", b as f64 / (1u64 << 30) as f64)
    })
}

fn print_header(compared: bool) {
    let mut head = format!(
        "{:<22} {:>9} {:>9} {:>9} {:>9}",
        "workload", "hepar s", "min s", "max s", "GFLOP/s"
    );
    if compared {
        head += &format!(" {:>9} {:>8}", "torch s", "speedup");
    }
    head += &format!(" {:>9} {:>9}", "heap GiB", "RSS GiB");
    if compared {
        head += &format!(" {:>9}", "torch RSS");
    }
    println!("{head}");
}

/// One row: Hepar's times, PyTorch's and the ratio when compared, then Hepar's peak live heap
/// and both processes' peak resident sets (each process is its own, measured the same way).
fn print_row(r: &WorkloadResult, compared: bool) {
    let gflops = r.gflops.map_or("-".to_string(), |g| format!("{g:.1}"));
    let mut row = format!(
        "{:<22} {:>9.3} {:>9.3} {:>9.3} {:>9}",
        r.name, r.median_s, r.min_s, r.max_s, gflops
    );
    if compared {
        row += &match r.pytorch_median_s {
            Some(t) => format!(" {:>9.3} {:>7.2}x", t, t / r.median_s),
            None => format!(" {:>9} {:>8}", "-", "-"),
        };
    }
    row += &format!(" {:>9} {:>9}", gib(r.peak_mem_bytes), gib(r.peak_rss_bytes));
    if compared {
        row += &format!(" {:>9}", gib(r.pytorch_peak_rss_bytes).replace('?', "-"));
    }
    println!("{row}");
}

fn print_ops(ops: &[OpResult], ceilings: &Ceilings, compared: bool) {
    let mut head = format!(
        "{:<17} {:<22} {:<17} {:>9} {:>9} {:>9} {:>9} {:>7} {:>8} {:>6}",
        "op", "shape", "pass", "median s", "min s", "max s", "GFLOP/s", "%gemm", "GB/s", "%copy"
    );
    if compared {
        head += &format!(" {:>9} {:>8}", "torch s", "speedup");
    }
    println!("{head}");
    for r in ops {
        let (gflops, share) = match r.gflops {
            Some(g) => (
                format!("{g:.1}"),
                format!("{:.0}", 100.0 * g / ceilings.gemm_gflops),
            ),
            None => ("-".to_string(), "-".to_string()),
        };
        let mut row = format!(
            "{:<17} {:<22} {:<17} {:>9.4} {:>9.4} {:>9.4} {:>9} {:>7} {:>8.1} {:>6.0}",
            r.name,
            format!("{:?}", r.shape),
            r.pass,
            r.median_s,
            r.min_s,
            r.max_s,
            gflops,
            share,
            r.gbs,
            100.0 * r.gbs / ceilings.copy_gbs
        );
        if compared {
            row += &match r.pytorch_median_s {
                Some(t) => format!(" {:>9.4} {:>7.2}x", t, t / r.median_s),
                None => format!(" {:>9} {:>8}", "-", "-"),
            };
        }
        println!("{row}");
    }
}

pub fn run(args: &BenchArgs) -> Result<()> {
    let device = args.device.resolve()?;
    if args.repeats == 0 {
        return Err(HeparError::Config("--repeats must be at least 1".into()));
    }
    let workloads = if args.all {
        Workload::ALL.to_vec()
    } else if args.workloads.is_empty() && args.op.is_none() {
        Workload::SEED.to_vec()
    } else {
        args.workloads.clone()
    };
    // Messages go to stderr with --json, so stdout is the JSON document alone.
    let say = |line: String| {
        if args.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    };
    // A ratio is only true when both sides run on this machine in this run: PyTorch runs here,
    // now, alternating with Hepar, or not at all.
    let mut torch = match args.compare {
        Some(Compare::Pytorch) if device != Device::Cpu => {
            say(format!("--compare pytorch times PyTorch on the CPU; comparing it with {device} would not be like for like, so it is skipped"));
            None
        }
        Some(Compare::Pytorch) => match PytorchBench::start(rayon::current_num_threads()) {
            Ok(t) => {
                say(format!(
                    "comparing with PyTorch in this run ({}), repeats alternating",
                    t.description
                ));
                Some(t)
            }
            Err(e) => {
                say(format!(
                    "PyTorch comparison unavailable ({e}); Hepar's numbers alone"
                ));
                None
            }
        },
        None => None,
    };
    if device == Device::PtxVm {
        return bench_vm(args);
    }
    let ceilings = measure_ceilings(device)?;
    say(format!(
        "ceilings measured now: GEMM 2048^3 {:.1} GFLOP/s on {device}, host copy {:.1} GB/s; {} threads",
        ceilings.gemm_gflops,
        ceilings.copy_gbs,
        rayon::current_num_threads()
    ));
    if device != Device::Cpu {
        say("times include waiting for the device; peak memory is the device allocator's".into());
    }
    let compared = torch.is_some();
    if !args.json && !workloads.is_empty() {
        print_header(compared);
    }
    let mut results = Vec::new();
    let mut profiles = Vec::new();
    for w in workloads {
        let r = measure(w, args.repeats, device, torch.as_mut())?;
        if !args.json {
            print_row(&r, compared);
        }
        results.push(r);
        if args.profile {
            let rows = profile_run(w, device)?;
            if !args.json {
                print_profile(&rows);
            }
            profiles.push(serde_json::json!({"name": w.name(), "ops": rows}));
        }
    }
    let ops = match args.op {
        Some(family) => {
            let shapes: Vec<Vec<usize>> = args.shapes.iter().map(|s| s.0.clone()).collect();
            let ops = bench_ops(family, &shapes, args.repeats, device, torch.as_mut())?;
            if !args.json {
                print_ops(&ops, &ceilings, compared);
            }
            ops
        }
        None => Vec::new(),
    };
    if args.json {
        let doc = serde_json::json!({
            "machine": Machine {
                cpu: cpu_model(),
                threads: rayon::current_num_threads(),
                device: device.to_string(),
                os: std::env::consts::OS,
                arch: std::env::consts::ARCH,
                ceilings,
            },
            "workloads": results,
            "ops": ops,
            "profiles": profiles,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc)
                .map_err(|e| HeparError::invalid("bench --json", e.to_string()))?
        );
    }
    Ok(())
}

/// One run of `w` after a warm-up, recorded op by op.
fn profile_run(w: Workload, device: Device) -> Result<Vec<crate::util::op_profile::OpTime>> {
    let mut prepared = Prepared::new(w, device)?;
    prepared.run()?;
    let profile = crate::util::op_profile::Profile::start();
    let run = prepared.run();
    let rows = profile.finish();
    run?;
    Ok(rows)
}

/// The profile's largest rows, the rest summed, then the time no op was charged.
fn print_profile(rows: &[crate::util::op_profile::OpTime]) {
    const SHOWN: usize = 15;
    let (other, ops) = rows
        .split_last()
        .map_or((None, rows), |(o, r)| (Some(o), r));
    println!(
        "  {:<24} {:<9} {:>7} {:>10} {:>7}",
        "op", "pass", "calls", "seconds", "share"
    );
    for r in ops.iter().take(SHOWN) {
        println!(
            "  {:<24} {:<9} {:>7} {:>10.4} {:>6.1}%",
            r.op,
            r.pass.name(),
            r.calls,
            r.seconds,
            100.0 * r.share
        );
    }
    if ops.len() > SHOWN {
        let rest = &ops[SHOWN..];
        let (seconds, share) = rest
            .iter()
            .fold((0.0, 0.0), |(t, s), r| (t + r.seconds, s + r.share));
        let label = format!("({} more)", rest.len());
        println!(
            "  {label:<24} {:<9} {:>7} {seconds:>10.4} {:>6.1}%",
            "",
            "",
            100.0 * share
        );
    }
    if let Some(o) = other {
        println!(
            "  {:<24} {:<9} {:>7} {:>10.4} {:>6.1}%",
            "(not charged to an op)",
            "",
            "",
            o.seconds,
            100.0 * o.share
        );
    }
}

/// `--device ptxvm`: the op cases' VM counters instead of times (the VM interprets every
/// instruction, so its times say nothing of a GPU's), and the H100/H200 roofline times they
/// imply. Workloads are too large for the VM and are not run.
fn bench_vm(args: &BenchArgs) -> Result<()> {
    if !args.workloads.is_empty() || args.all {
        return Err(HeparError::invalid(
            "bench",
            "--device ptxvm counts op cases (--op NAME), not whole workloads, which the VM would take hours over",
        ));
    }
    let shapes: Vec<Vec<usize>> = args.shapes.iter().map(|s| s.0.clone()).collect();
    let ops = count_ops(args.op.unwrap_or(OpFamily::All), &shapes)?;
    if args.json {
        let doc = serde_json::json!({
            "machine": {
                "cpu": cpu_model(),
                "threads": rayon::current_num_threads(),
                "device": Device::PtxVm.to_string(),
                "os": std::env::consts::OS,
                "arch": std::env::consts::ARCH,
            },
            "workloads": [],
            "ops": ops,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc)
                .map_err(|e| HeparError::invalid("bench --json", e.to_string()))?
        );
    } else {
        print_vm_ops(&ops);
    }
    Ok(())
}

fn print_vm_ops(ops: &[OpCounted]) {
    println!(
        "{:<17} {:<20} {:<17} {:>7} {:>13} {:>9} {:>9} {:>9} {:>11} {:>11} {:>9} {:>9} {:<14}",
        "op",
        "shape",
        "pass",
        "kernels",
        "thread instr",
        "ld sect/r",
        "st sect/r",
        "confl/req",
        "FLOPs",
        "bytes",
        "H100 us",
        "H200 us",
        "bound (H200)"
    );
    for r in ops {
        let c = &r.counters;
        let us = |gpu: &str| {
            c.roofline
                .iter()
                .find(|e| e.gpu == gpu)
                .map_or("-".to_string(), |e| format!("{:.3}", e.seconds * 1e6))
        };
        let bound = c.roofline.last().map_or("-", |e| e.bound.as_str());
        println!(
            "{:<17} {:<20} {:<17} {:>7} {:>13} {:>9.2} {:>9.2} {:>9.3} {:>11.3e} {:>11.3e} {:>9} {:>9} {:<14}",
            r.name,
            format!("{:?}", r.shape),
            r.pass,
            r.launches,
            c.thread_instructions,
            c.load_sectors_per_request,
            c.store_sectors_per_request,
            c.bank_conflicts_per_request,
            c.flops as f64,
            c.bytes_requested as f64,
            us("H100"),
            us("H200"),
            bound
        );
    }
    println!("roofline times: the counted FLOPs and the compulsory bytes at the GPU's FP32 peak and DRAM bandwidth");
}
