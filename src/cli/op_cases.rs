//! The one list of single-op cases: `hepar bench --op` times it (and counts it on the PTX VM),
//! `benches/ops.rs` hands the same cases to criterion, and `benches/pytorch/hepar_bench.py`
//! rebuilds each case from its family name and shape for `--compare pytorch`.
//!
//! Each family is one primitive at the seed U-Nets' real shapes: the 3D CoTNeXt n16 at 128^3 and
//! each level below it, the 2D CoTNeXt n32 at 256^2 (batch 16) and its levels, and the classic
//! 2D U-Net's BatchNorm and k4 s2 p1 up-convolutions (batch 4 at 128^2). A case runs forward
//! alone, or forward + backward through autograd with the loss `sum(y * g)` for a fixed random
//! `g` (the backward pass is the op's own plus one elementwise product).

use crate::backend::Device;
use crate::error::{HeparError, Result};
use crate::ops::conv::ConvOptions;
use crate::ops::pool::PoolOptions;
use crate::tensor::{DType, Tensor};
use std::time::Instant;

/// The op families `--op` accepts.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpFamily {
    /// 3x3x3 convolution, width -> width, padding 1, at each 3D level.
    Conv3d,
    /// 3x3 convolution, width -> width, padding 1, at each 2D level.
    Conv2d,
    /// ConvTranspose3d k2 s2, width -> width / 2, from each 3D level below the top.
    #[value(name = "conv-transpose3d")]
    ConvTranspose3d,
    /// ConvTranspose2d k4 s2 p1, width -> width / 2, at the classic U-Net's decoder levels.
    #[value(name = "conv-transpose2d")]
    ConvTranspose2d,
    /// GroupNorm (8 groups) with affine, at each 3D level.
    Groupnorm3d,
    /// GroupNorm (8 groups) with affine, at each 2D level.
    Groupnorm2d,
    /// BatchNorm in training mode (batch statistics, running-stat update), at the classic
    /// U-Net's levels.
    Batchnorm2d,
    /// Softmax over every voxel of each channel (the CoT attention's), at each 3D level.
    Softmax3d,
    /// 2x2x2 max pooling, at each 3D level.
    Maxpool3d,
    /// 2x2 max pooling, at each 2D level.
    Maxpool2d,
    /// Trilinear x2 upsampling (align_corners false), at each 3D level.
    Upsample3d,
    /// Bilinear x2 upsampling (align_corners false), at each 2D level.
    Upsample2d,
    /// f32 matrix product; the shape is [M, K, N].
    Matmul,
    /// Every family above.
    All,
}

/// (channels, side) of the 3D CoTNeXt n16's levels at 128^3.
const LEVELS_3D: [(usize, usize); 5] = [(16, 128), (32, 64), (64, 32), (128, 16), (128, 8)];
/// (channels, side) of the 2D CoTNeXt n32's levels at 256^2 (batch 16).
const LEVELS_2D: [(usize, usize); 5] = [(32, 256), (64, 128), (128, 64), (256, 32), (256, 16)];
/// (channels, side) of the classic U-Net's (base 64) levels at 128^2 (batch 4).
const LEVELS_CLASSIC: [(usize, usize); 5] = [(64, 128), (128, 64), (256, 32), (512, 16), (1024, 8)];

impl OpFamily {
    /// The families `self` stands for (every one for `All`).
    pub fn members(self) -> Vec<OpFamily> {
        use clap::ValueEnum;
        match self {
            // Every variant but `All`, in declaration order.
            OpFamily::All => OpFamily::value_variants()
                .iter()
                .copied()
                .filter(|&f| f != OpFamily::All)
                .collect(),
            one => vec![one],
        }
    }

    /// The name in reports, in `--op` and in the PyTorch script's requests.
    pub fn name(self) -> String {
        use clap::ValueEnum;
        self.to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_else(|| format!("{self:?}"))
    }

    /// The input rank the family's cases take (`--shape` is checked against it).
    fn rank(self) -> usize {
        match self {
            OpFamily::Conv3d
            | OpFamily::ConvTranspose3d
            | OpFamily::Groupnorm3d
            | OpFamily::Maxpool3d
            | OpFamily::Upsample3d => 5,
            OpFamily::Conv2d
            | OpFamily::ConvTranspose2d
            | OpFamily::Groupnorm2d
            | OpFamily::Batchnorm2d
            | OpFamily::Maxpool2d
            | OpFamily::Upsample2d => 4,
            OpFamily::Softmax3d | OpFamily::Matmul => 3,
            OpFamily::All => 0,
        }
    }

    /// Input shapes at the networks' real sizes.
    pub fn shapes(self) -> Vec<Vec<usize>> {
        let volume = |&(c, s): &(usize, usize)| vec![1, c, s, s, s];
        let plane = |batch: usize| move |&(c, s): &(usize, usize)| vec![batch, c, s, s];
        match self {
            OpFamily::Conv3d
            | OpFamily::Groupnorm3d
            | OpFamily::Maxpool3d
            | OpFamily::Upsample3d => LEVELS_3D.iter().map(volume).collect(),
            // Each up-convolution reads the level below the one it feeds (32 at 64^3 -> 16 at
            // 128^3 first).
            OpFamily::ConvTranspose3d => LEVELS_3D[1..].iter().map(volume).collect(),
            OpFamily::Conv2d
            | OpFamily::Groupnorm2d
            | OpFamily::Maxpool2d
            | OpFamily::Upsample2d => LEVELS_2D.iter().map(plane(16)).collect(),
            OpFamily::Batchnorm2d => LEVELS_CLASSIC.iter().map(plane(4)).collect(),
            OpFamily::ConvTranspose2d => LEVELS_CLASSIC[1..].iter().rev().map(plane(4)).collect(),
            OpFamily::Softmax3d => LEVELS_3D
                .iter()
                .map(|&(c, s)| vec![1, c, s * s * s])
                .collect(),
            OpFamily::Matmul => vec![vec![2048, 2048, 2048]],
            OpFamily::All => Vec::new(),
        }
    }

    /// Small shapes for `--device ptxvm`, where every instruction is interpreted: a slice of
    /// each family's top level (the same channels, a few tiles of space).
    pub fn vm_shapes(self) -> Vec<Vec<usize>> {
        match self {
            OpFamily::Conv3d | OpFamily::Groupnorm3d | OpFamily::Maxpool3d => {
                vec![vec![1, 16, 4, 6, 34]]
            }
            OpFamily::ConvTranspose3d => vec![vec![1, 32, 2, 3, 17]],
            OpFamily::Upsample3d => vec![vec![1, 16, 3, 4, 17]],
            OpFamily::Conv2d | OpFamily::Groupnorm2d | OpFamily::Maxpool2d => {
                vec![vec![1, 32, 6, 34]]
            }
            OpFamily::Upsample2d => vec![vec![1, 32, 5, 17]],
            OpFamily::ConvTranspose2d => vec![vec![1, 64, 4, 9]],
            OpFamily::Batchnorm2d => vec![vec![2, 64, 6, 17]],
            OpFamily::Softmax3d => vec![vec![1, 16, 4 * 6 * 34]],
            OpFamily::Matmul => vec![vec![67, 64, 96]],
            OpFamily::All => Vec::new(),
        }
    }

    /// Why `shape` cannot be a case of this family, if it cannot.
    fn shape_problem(self, shape: &[usize]) -> Option<String> {
        let rank = self.rank();
        if shape.len() != rank {
            return Some(format!("takes a rank-{rank} shape, not {shape:?}"));
        }
        if shape.contains(&0) {
            return Some(format!("shape {shape:?} has an empty axis"));
        }
        let channels = shape[1];
        match self {
            OpFamily::Groupnorm3d | OpFamily::Groupnorm2d if !channels.is_multiple_of(8) => Some(
                format!("8 groups need channels divisible by 8, shape {shape:?}"),
            ),
            OpFamily::ConvTranspose3d | OpFamily::ConvTranspose2d if channels < 2 => Some(format!(
                "halving the channels needs at least 2, shape {shape:?}"
            )),
            OpFamily::Batchnorm2d if shape[0] * shape[2] * shape[3] < 2 => Some(format!(
                "batch statistics need two values per channel, shape {shape:?}"
            )),
            _ => None,
        }
    }
}

/// One op case: its family, input shape and tensors on the device.
pub struct OpCase {
    pub family: OpFamily,
    pub shape: Vec<usize>,
    x: Tensor,
    w: Option<Tensor>,
    b: Option<Tensor>,
    /// BatchNorm's running statistics (updated by every training-mode run).
    running: Option<(Tensor, Tensor)>,
    /// The fixed `g` of the backward loss `sum(y * g)`.
    output_grad: Tensor,
}

impl OpCase {
    /// The tensors of `family` at `shape` on `device` (a clear error for a shape it cannot take).
    pub fn new(family: OpFamily, shape: Vec<usize>, device: Device) -> Result<Self> {
        if family == OpFamily::All {
            return Err(HeparError::invalid("bench --op", "all is not one op"));
        }
        if let Some(problem) = family.shape_problem(&shape) {
            return Err(HeparError::invalid(
                "bench --op",
                format!("{}: {problem}", family.name()),
            ));
        }
        let on = |t: Tensor| t.to_device(device);
        let random = |shape: &[usize], seed: u64| on(Tensor::randn(shape, DType::F32, seed));
        let channels = shape[1];
        let spatial = |k: usize| std::iter::repeat_n(k, shape.len() - 2);
        let (x, w, b) = match family {
            OpFamily::Matmul => {
                let [m, k, n] = [shape[0], shape[1], shape[2]];
                (random(&[m, k], 1)?, Some(random(&[k, n], 2)?), None)
            }
            OpFamily::Conv3d | OpFamily::Conv2d => {
                let kernel: Vec<usize> =
                    [channels, channels].into_iter().chain(spatial(3)).collect();
                (random(&shape, 1)?, Some(random(&kernel, 2)?), None)
            }
            OpFamily::ConvTranspose3d | OpFamily::ConvTranspose2d => {
                let k = if family == OpFamily::ConvTranspose3d {
                    2
                } else {
                    4
                };
                let kernel: Vec<usize> = [channels, channels / 2]
                    .into_iter()
                    .chain(spatial(k))
                    .collect();
                (random(&shape, 1)?, Some(random(&kernel, 2)?), None)
            }
            OpFamily::Groupnorm3d | OpFamily::Groupnorm2d | OpFamily::Batchnorm2d => (
                random(&shape, 1)?,
                Some(Tensor::ones(&[channels], DType::F32, device)?),
                Some(Tensor::zeros(&[channels], DType::F32, device)?),
            ),
            _ => (random(&shape, 1)?, None, None),
        };
        let running = match family {
            OpFamily::Batchnorm2d => Some((
                Tensor::zeros(&[channels], DType::F32, device)?,
                Tensor::ones(&[channels], DType::F32, device)?,
            )),
            _ => None,
        };
        let mut case = OpCase {
            family,
            shape,
            x,
            w,
            b,
            running,
            output_grad: Tensor::zeros(&[1], DType::F32, device)?,
        };
        let out_shape = crate::no_grad(|| case.forward(&case.x, case.w.as_ref(), case.b.as_ref()))?
            .shape()
            .to_vec();
        case.output_grad = random(&out_shape, 9)?;
        Ok(case)
    }

    /// The op itself on `x` with weight `w` and bias `b`.
    fn forward(&self, x: &Tensor, w: Option<&Tensor>, b: Option<&Tensor>) -> Result<Tensor> {
        let missing = || HeparError::invalid("bench --op", "case without its weight");
        let doubled = || -> Vec<usize> { self.shape[2..].iter().map(|s| 2 * s).collect() };
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
            OpFamily::ConvTranspose3d => x.conv_transpose(
                w.ok_or_else(missing)?,
                None,
                &ConvOptions {
                    stride: vec![2],
                    ..Default::default()
                },
            ),
            OpFamily::ConvTranspose2d => x.conv_transpose(
                w.ok_or_else(missing)?,
                None,
                &ConvOptions {
                    stride: vec![2],
                    padding: vec![1],
                    ..Default::default()
                },
            ),
            OpFamily::Groupnorm3d | OpFamily::Groupnorm2d => x.group_norm(8, w, b, 1e-5),
            OpFamily::Batchnorm2d => {
                let (mean, var) = self.running.as_ref().ok_or_else(missing)?;
                x.batch_norm(w, b, mean, var, true, 0.1, 1e-5)
            }
            OpFamily::Softmax3d => x.softmax(-1),
            OpFamily::Maxpool3d => x.max_pool(&PoolOptions::new(vec![2, 2, 2])),
            OpFamily::Maxpool2d => x.max_pool(&PoolOptions::new(vec![2, 2])),
            OpFamily::Upsample3d | OpFamily::Upsample2d => x.upsample_linear(&doubled(), false),
            OpFamily::All => Err(HeparError::invalid("bench --op", "all is not one op")),
        }
    }

    /// Bytes the pass must move at least: operands read, results written (f32).
    pub fn min_bytes(&self, out_numel: usize, backward: bool) -> f64 {
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

    /// Seconds of one pass (forward, or forward + backward) and the output's size.
    pub fn run(&self, backward: bool, device: Device) -> Result<(f64, usize)> {
        let start = Instant::now();
        let numel = if backward {
            let x = self.x.detach().requires_grad_leaf();
            let w = self.w.as_ref().map(|w| w.detach().requires_grad_leaf());
            let b = self.b.as_ref().map(|b| b.detach().requires_grad_leaf());
            let y = self.forward(&x, w.as_ref(), b.as_ref())?;
            y.mul(&self.output_grad)?.sum_all()?.backward()?;
            y.numel()
        } else {
            crate::no_grad(|| self.forward(&self.x, self.w.as_ref(), self.b.as_ref()))?.numel()
        };
        device.synchronize()?;
        Ok((start.elapsed().as_secs_f64(), numel))
    }

    /// "forward" or "forward+backward", as reports and the PyTorch script name the passes.
    pub fn pass_name(backward: bool) -> &'static str {
        if backward {
            "forward+backward"
        } else {
            "forward"
        }
    }

    /// The PyTorch script's request for this case's pass.
    pub fn pytorch_request(&self, backward: bool) -> String {
        let dims: Vec<String> = self.shape.iter().map(usize::to_string).collect();
        format!(
            "op {} {} {}",
            self.family.name(),
            dims.join(","),
            Self::pass_name(backward)
        )
    }
}

/// Every case `--op family` runs: the family's real shapes, or `shapes` where given.
pub fn case_shapes(family: OpFamily, shapes: &[Vec<usize>]) -> Result<Vec<(OpFamily, Vec<usize>)>> {
    if !shapes.is_empty() {
        if family == OpFamily::All {
            return Err(HeparError::Config(
                "--shape needs one op family (--op NAME), not all".into(),
            ));
        }
        return Ok(shapes.iter().map(|s| (family, s.clone())).collect());
    }
    Ok(family
        .members()
        .into_iter()
        .flat_map(|m| m.shapes().into_iter().map(move |s| (m, s)))
        .collect())
}
