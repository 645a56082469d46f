//! `hepar bench --op`: times the op cases of `op_cases` (or counts them on the PTX VM), each
//! forward and forward + backward, alternating with PyTorch's twin of the case under
//! `--compare pytorch`. Per case: GFLOP/s from the counted FLOPs (`ops::flops`: convolutions and
//! matrix products) and GB/s from the fewest bytes the pass must move (every operand read once,
//! every result written once).

use super::bench_pytorch::PytorchBench;
use super::op_cases::{case_shapes, OpCase, OpFamily};
use crate::backend::Device;
use crate::error::Result;

/// One op case's PTX VM counters (`hepar bench --device ptxvm`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpCounted {
    pub name: String,
    pub shape: Vec<usize>,
    pub pass: &'static str,
    pub launches: usize,
    pub counters: VmCounters,
}

/// What the VM counted over one pass's launches, and the time that implies on a real GPU.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VmCounters {
    pub warp_instructions: u64,
    pub thread_instructions: u64,
    pub load_sectors_per_request: f64,
    pub store_sectors_per_request: f64,
    pub load_sectors_over_ideal: f64,
    pub bank_conflicts_per_request: f64,
    pub flops: u64,
    pub bytes_requested: u64,
    pub compulsory_bytes: f64,
    /// Per GPU: the roofline seconds with compulsory traffic and with every requested byte.
    pub roofline: Vec<VmRoofline>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct VmRoofline {
    pub gpu: &'static str,
    pub seconds: f64,
    pub seconds_all_requested: f64,
    pub bound: String,
}

/// Runs every case of `family` at its VM shape (or at `shapes`) on the PTX VM (forward, then
/// forward + backward) and returns the counters of each pass's launches.
pub fn count_ops(family: OpFamily, shapes: &[Vec<usize>]) -> Result<Vec<OpCounted>> {
    let device = Device::PtxVm;
    let vm = crate::backend::cuda::context::ptx_vm();
    let mut out = Vec::new();
    let cases = if shapes.is_empty() {
        family
            .members()
            .into_iter()
            .flat_map(|m| m.vm_shapes().into_iter().map(move |s| (m, s)))
            .collect()
    } else {
        case_shapes(family, shapes)?
    };
    for (member, shape) in cases {
        let case = OpCase::new(member, shape.clone(), device)?;
        for backward in [false, true] {
            vm.driver().start_recording();
            let run = case.run(backward, device);
            let reports = vm.driver().take_recording();
            let (_, out_numel) = run?;
            let mut c = crate::ptx::LaunchCounters::default();
            for r in &reports {
                c.merge(&r.counters);
            }
            let compulsory = case.min_bytes(out_numel, backward);
            let roofline = crate::backend::cuda::roofline::estimates(&c, compulsory, false)
                .into_iter()
                .map(|e| VmRoofline {
                    gpu: e.gpu.name,
                    seconds: e.compulsory.seconds,
                    seconds_all_requested: e.all_requested.seconds,
                    bound: e.compulsory.bound.to_string(),
                })
                .collect();
            out.push(OpCounted {
                name: member.name(),
                shape: shape.clone(),
                pass: OpCase::pass_name(backward),
                launches: reports.len(),
                counters: VmCounters {
                    warp_instructions: c.total_warp_instructions(),
                    thread_instructions: c.thread_instructions.iter().sum(),
                    load_sectors_per_request: c.sectors_per_load_request(),
                    store_sectors_per_request: c.sectors_per_store_request(),
                    load_sectors_over_ideal: c.load_sectors_over_ideal(),
                    bank_conflicts_per_request: c.bank_conflicts_per_shared_request(),
                    flops: c.flops(),
                    bytes_requested: c.global_bytes_read + c.global_bytes_written,
                    compulsory_bytes: compulsory,
                    roofline,
                },
            });
        }
    }
    Ok(out)
}

/// One op case's measurements.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpResult {
    pub name: String,
    pub shape: Vec<usize>,
    /// "forward" or "forward+backward".
    pub pass: &'static str,
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    pub repeats: usize,
    pub gflops: Option<f64>,
    pub gbs: f64,
    /// PyTorch's median for the same case in the same run (`--compare pytorch`).
    pub pytorch_median_s: Option<f64>,
}

/// Times every case of `family` (or `family` at `shapes`) on `device`: forward, then
/// forward + backward, each after a warm-up, alternating with PyTorch's twin when `torch` is
/// given.
pub fn bench_ops(
    family: OpFamily,
    shapes: &[Vec<usize>],
    repeats: usize,
    device: Device,
    mut torch: Option<&mut PytorchBench>,
) -> Result<Vec<OpResult>> {
    let mut results = Vec::new();
    for (member, shape) in case_shapes(family, shapes)? {
        let case = OpCase::new(member, shape.clone(), device)?;
        for backward in [false, true] {
            let request = case.pytorch_request(backward);
            case.run(backward, device)?;
            crate::ops::flops::reset();
            let (mut times, mut theirs) = (Vec::new(), Vec::new());
            let mut out_numel = 0;
            for _ in 0..repeats.max(1) {
                let (t, n) = case.run(backward, device)?;
                times.push(t);
                out_numel = n;
                if let Some(torch) = torch.as_deref_mut() {
                    theirs.push(torch.time(&request)?);
                }
            }
            let flops_per_run = crate::ops::flops::read() / times.len() as u64;
            let median_s = super::bench::median(times.clone());
            results.push(OpResult {
                name: member.name(),
                shape: shape.clone(),
                pass: OpCase::pass_name(backward),
                median_s,
                min_s: times.iter().copied().fold(f64::INFINITY, f64::min),
                max_s: times.iter().copied().fold(0.0, f64::max),
                repeats: times.len(),
                gflops: (flops_per_run > 0).then(|| flops_per_run as f64 / median_s / 1e9),
                gbs: case.min_bytes(out_numel, backward) / median_s / 1e9,
                pytorch_median_s: (!theirs.is_empty()).then(|| super::bench::median(theirs)),
            });
        }
    }
    Ok(results)
}
