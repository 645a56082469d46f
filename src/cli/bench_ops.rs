//! The op cases of `hepar bench --op`: single primitives at the seed U-Nets' real shapes (the 3D
//! CoTNeXt n16 at 128^3 and each level below it, the 2D n32 at 256^2), each timed forward and
//! forward + backward (through autograd, the loss `sum(y * g)` with a fixed random `g`, so the
//! backward pass is the op's own plus one elementwise product). Per case: GFLOP/s from the
//! counted FLOPs (`ops::flops`: convolutions and matrix products) and GB/s from the fewest bytes
//! the pass must move (every operand read once, every result written once).

use crate::backend::Device;
use crate::error::{HeparError, Result};
use crate::ops::conv::ConvOptions;
use crate::ops::pool::PoolOptions;
use crate::tensor::{DType, Tensor};
use std::time::Instant;

/// The op families `--op` accepts.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpFamily {
    /// 3x3x3 convolution, width -> width, at each 3D level.
    Conv3d,
    /// 3x3 convolution, width -> width, at each 2D level.
    Conv2d,
    /// GroupNorm (8 groups) with affine, at each 3D level.
    Groupnorm3d,
    /// 2x2x2 max pooling, at each 3D level.
    Maxpool3d,
    /// Trilinear x2 upsampling, at each 3D level.
    Upsample3d,
    /// f32 matrix product 2048 x 2048 x 2048.
    Matmul,
    /// Every family above.
    All,
}

impl OpFamily {
    fn members(self) -> Vec<OpFamily> {
        use OpFamily::*;
        match self {
            All => vec![Conv3d, Conv2d, Groupnorm3d, Maxpool3d, Upsample3d, Matmul],
            one => vec![one],
        }
    }

    fn name(self) -> &'static str {
        match self {
            OpFamily::Conv3d => "conv3d",
            OpFamily::Conv2d => "conv2d",
            OpFamily::Groupnorm3d => "groupnorm3d",
            OpFamily::Maxpool3d => "maxpool3d",
            OpFamily::Upsample3d => "upsample3d",
            OpFamily::Matmul => "matmul",
            OpFamily::All => "all",
        }
    }

    /// Input shapes: the 3D U-Net's levels (n16 at 128^3, then 2n at 64^3...), the 2D one's.
    fn shapes(self) -> Vec<Vec<usize>> {
        let levels_3d = [(16, 128), (32, 64), (64, 32), (128, 16), (128, 8)];
        let levels_2d = [(32, 256), (64, 128), (128, 64), (256, 32), (256, 16)];
        match self {
            OpFamily::Conv3d
            | OpFamily::Groupnorm3d
            | OpFamily::Maxpool3d
            | OpFamily::Upsample3d => levels_3d
                .iter()
                .map(|&(c, s)| vec![1, c, s, s, s])
                .collect(),
            OpFamily::Conv2d => levels_2d.iter().map(|&(c, s)| vec![16, c, s, s]).collect(),
            OpFamily::Matmul => vec![vec![2048, 2048, 2048]],
            OpFamily::All => Vec::new(),
        }
    }
}

impl OpFamily {
    /// Small shapes for `--device ptxvm`, where every instruction is interpreted: a slice of
    /// each family's top level (the same channels, a few tiles of space).
    fn vm_shapes(self) -> Vec<Vec<usize>> {
        match self {
            OpFamily::Conv3d | OpFamily::Groupnorm3d | OpFamily::Maxpool3d => {
                vec![vec![1, 16, 4, 6, 34]]
            }
            OpFamily::Upsample3d => vec![vec![1, 16, 3, 4, 17]],
            OpFamily::Conv2d => vec![vec![1, 32, 6, 34]],
            OpFamily::Matmul => vec![vec![67, 64, 96]],
            OpFamily::All => Vec::new(),
        }
    }
}

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

/// Runs every case of `family` at its VM shape on the PTX VM (forward, then forward +
/// backward) and returns the counters of each pass's launches.
pub fn count_ops(family: OpFamily) -> Result<Vec<OpCounted>> {
    let device = Device::PtxVm;
    let vm = crate::backend::cuda::context::ptx_vm();
    let mut out = Vec::new();
    for member in family.members() {
        for shape in member.vm_shapes() {
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
                    name: member.name().to_string(),
                    shape: shape.clone(),
                    pass: if backward {
                        "forward+backward"
                    } else {
                        "forward"
                    },
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
}

/// The tensors of one case, on the device.
struct OpCase {
    family: OpFamily,
    shape: Vec<usize>,
    x: Tensor,
    w: Option<Tensor>,
    b: Option<Tensor>,
}

impl OpCase {
    fn new(family: OpFamily, shape: Vec<usize>, device: Device) -> Result<Self> {
        let on = |t: Tensor| t.to_device(device);
        let (x, w, b) = match family {
            OpFamily::Matmul => {
                let [m, k, n] = [shape[0], shape[1], shape[2]];
                (
                    on(Tensor::randn(&[m, k], DType::F32, 1))?,
                    Some(on(Tensor::randn(&[k, n], DType::F32, 2))?),
                    None,
                )
            }
            OpFamily::Conv3d | OpFamily::Conv2d => {
                let c = shape[1];
                let mut kernel = vec![c, c];
                kernel.extend(std::iter::repeat_n(3, shape.len() - 2));
                (
                    on(Tensor::randn(&shape, DType::F32, 1))?,
                    Some(on(Tensor::randn(&kernel, DType::F32, 2))?),
                    None,
                )
            }
            OpFamily::Groupnorm3d => (
                on(Tensor::randn(&shape, DType::F32, 1))?,
                Some(Tensor::ones(&[shape[1]], DType::F32, device)?),
                Some(Tensor::zeros(&[shape[1]], DType::F32, device)?),
            ),
            _ => (on(Tensor::randn(&shape, DType::F32, 1))?, None, None),
        };
        Ok(OpCase {
            family,
            shape,
            x,
            w,
            b,
        })
    }

    fn forward(&self, x: &Tensor, w: Option<&Tensor>, b: Option<&Tensor>) -> Result<Tensor> {
        let missing = || HeparError::invalid("bench --op", "case without its weight");
        match self.family {
            OpFamily::Matmul => x.matmul(w.ok_or_else(missing)?),
            OpFamily::Conv3d | OpFamily::Conv2d => x.conv(
                w.ok_or_else(missing)?,
                None,
                &ConvOptions {
                    padding: vec![1],
                    ..Default::default()
                },
            ),
            OpFamily::Groupnorm3d => x.group_norm(8, w, b, 1e-5),
            OpFamily::Maxpool3d => x.max_pool(&PoolOptions::new(vec![2, 2, 2])),
            OpFamily::Upsample3d => {
                let size: Vec<usize> = self.shape[2..].iter().map(|s| 2 * s).collect();
                x.upsample_linear(&size, false)
            }
            OpFamily::All => Err(HeparError::invalid("bench --op", "all is not one op")),
        }
    }

    /// Bytes the pass must move at least: operands read, results written (f32).
    fn min_bytes(&self, out_numel: usize, backward: bool) -> f64 {
        let operands = self.x.numel()
            + self.w.as_ref().map_or(0, Tensor::numel)
            + self.b.as_ref().map_or(0, Tensor::numel);
        let forward = operands + out_numel;
        // Backward reads the output gradient and the operands, writes a gradient per operand.
        let total = if backward {
            forward + out_numel + 2 * operands
        } else {
            forward
        };
        4.0 * total as f64
    }

    /// Seconds of one pass and the output's size.
    fn run(&self, backward: bool, device: Device) -> Result<(f64, usize)> {
        let start = Instant::now();
        let numel = if backward {
            let x = self.x.detach().requires_grad_leaf();
            let w = self.w.as_ref().map(|w| w.detach().requires_grad_leaf());
            let y = self.forward(&x, w.as_ref(), self.b.as_ref())?;
            let g = Tensor::randn(y.shape(), DType::F32, 9).to_device(device)?;
            y.mul(&g)?.sum_all()?.backward()?;
            y.numel()
        } else {
            crate::no_grad(|| self.forward(&self.x, self.w.as_ref(), self.b.as_ref()))?.numel()
        };
        device.synchronize()?;
        Ok((start.elapsed().as_secs_f64(), numel))
    }
}

/// Times every case of `family` (forward, then forward + backward) on `device`.
pub fn bench_ops(family: OpFamily, repeats: usize, device: Device) -> Result<Vec<OpResult>> {
    let mut results = Vec::new();
    for member in family.members() {
        for shape in member.shapes() {
            let case = OpCase::new(member, shape.clone(), device)?;
            for backward in [false, true] {
                case.run(backward, device)?;
                crate::ops::flops::reset();
                let mut times = Vec::new();
                let mut out_numel = 0;
                for _ in 0..repeats.max(1) {
                    let (t, n) = case.run(backward, device)?;
                    times.push(t);
                    out_numel = n;
                }
                let flops_per_run = crate::ops::flops::read() / times.len() as u64;
                let median_s = super::bench::median(times.clone());
                results.push(OpResult {
                    name: member.name().to_string(),
                    shape: shape.clone(),
                    pass: if backward {
                        "forward+backward"
                    } else {
                        "forward"
                    },
                    median_s,
                    min_s: times.iter().copied().fold(f64::INFINITY, f64::min),
                    max_s: times.iter().copied().fold(0.0, f64::max),
                    repeats: times.len(),
                    gflops: (flops_per_run > 0).then(|| flops_per_run as f64 / median_s / 1e9),
                    gbs: case.min_bytes(out_numel, backward) / median_s / 1e9,
                });
            }
        }
    }
    Ok(results)
}
