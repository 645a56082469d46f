//! Launches of `kernels/conv.cu`: convolution forward, backward-input and backward-weight over
//! dense NCDHW tensors, and the transposed convolution as the adjoint of `g.as_conv()`, exactly
//! as the CPU backend builds it (`conv_transpose_*` in src/backend/cpu/kernels/conv.rs).
//!
//! These are the reference kernels (direct loops, deterministic); faster implicit-GEMM kernels
//! are to replace them and be checked against them.

use super::device::{DevicePtr, KernelArg, LaunchConfig};
use super::storage::CudaStorage;
use super::DeviceApi;
use crate::backend::{BackendStorage, ConvGeometry, ConvTransposeGeometry};
use crate::error::{HeparError, Result};

const FILE: &str = "conv.cu";
/// Threads per block of the weight-gradient kernel (`BW_THREADS` in the kernel file).
const WEIGHT_THREADS: u32 = 256;
/// Most blocks of the weight-gradient grid; the kernel loops over the blocks' work beyond it.
const MAX_WEIGHT_BLOCKS: usize = 1 << 20;
/// Weight-gradient blocks wanted in flight: several waves on the largest GPUs (132 SMs).
const TARGET_WEIGHT_BLOCKS: usize = 1024;
/// Fewest (batch, position) items one weight-gradient block reduces: 16 turns of its 256 threads,
/// so the block's final reduction stays a small part of its work.
const MIN_SPLIT_POSITIONS: usize = 4096;

/// `ConvParams` of `kernels/conv.cu` (same field order, all 64-bit).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct ConvParams {
    batch: i64,
    cin: i64,
    cout: i64,
    groups: i64,
    input: [i64; 3],
    kernel: [i64; 3],
    stride: [i64; 3],
    padding: [i64; 3],
    dilation: [i64; 3],
    output: [i64; 3],
}

impl ConvParams {
    fn new(g: &ConvGeometry) -> Self {
        let a = |v: [usize; 3]| v.map(|x| x as i64);
        ConvParams {
            batch: g.batch as i64,
            cin: g.in_channels as i64,
            cout: g.out_channels as i64,
            groups: g.groups as i64,
            input: a(g.input),
            kernel: a(g.kernel),
            stride: a(g.stride),
            padding: a(g.padding),
            dilation: a(g.dilation),
            output: a(g.output()),
        }
    }

    fn arg(&self) -> KernelArg {
        KernelArg::from_bytes(bytemuck::bytes_of(self))
    }
}

/// Checks the geometry and that each operand holds exactly the elements it describes.
fn check<D: DeviceApi>(
    op: &'static str,
    g: &ConvGeometry,
    operands: &[(&str, &CudaStorage<D>, usize)],
) -> Result<()> {
    g.validate()
        .map_err(|e| HeparError::invalid(op, format!("{g:?}: {e}")))?;
    if let Some((first, rest)) = operands.split_first() {
        for (_, s, _) in rest {
            first.1.require_same_dtype(op, s)?;
        }
        first.1.require_compute(op)?;
    }
    for (what, s, want) in operands {
        if s.len() != *want {
            return Err(HeparError::shape(
                op,
                format!(
                    "{what} has {} elements, the geometry needs {want} ({g:?})",
                    s.len()
                ),
            ));
        }
    }
    Ok(())
}

fn check_bias<D: DeviceApi>(
    op: &'static str,
    x: &CudaStorage<D>,
    bias: Option<&CudaStorage<D>>,
    channels: usize,
) -> Result<()> {
    if let Some(b) = bias {
        x.require_same_dtype(op, b)?;
        if b.len() != channels {
            return Err(HeparError::shape(
                op,
                format!("bias has {} elements for {channels} channels", b.len()),
            ));
        }
    }
    Ok(())
}

/// The bias pointer and its flag; a null pointer when there is none (never read then).
fn bias_args<D: DeviceApi>(bias: Option<&CudaStorage<D>>) -> [KernelArg; 2] {
    match bias {
        Some(b) => [b.arg(), 1i32.into()],
        None => [DevicePtr(0).into(), 0i32.into()],
    }
}

/// One thread per output element: the forward gather.
fn launch_forward<D: DeviceApi>(
    x: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    bias: Option<&CudaStorage<D>>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    let n = g.output_len();
    let y = x.alloc_like(n, x.dtype())?;
    if n > 0 {
        let ctx = x.context();
        let [b, has_b] = bias_args(bias);
        let args = [
            x.arg(),
            weight.arg(),
            b,
            has_b,
            y.arg(),
            ConvParams::new(g).arg(),
        ];
        ctx.launch(
            FILE,
            &x.kernel_name("conv_forward"),
            &ctx.grid_stride(n),
            &args,
        )?;
    }
    Ok(y)
}

/// One thread per input element, gathering from the output positions and taps that read it.
fn launch_backward_input<D: DeviceApi>(
    grad_out: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    bias: Option<&CudaStorage<D>>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    let n = g.input_len();
    let gx = grad_out.alloc_like(n, grad_out.dtype())?;
    if n > 0 {
        let ctx = grad_out.context();
        let [b, has_b] = bias_args(bias);
        let args = [
            grad_out.arg(),
            weight.arg(),
            b,
            has_b,
            gx.arg(),
            ConvParams::new(g).arg(),
        ];
        ctx.launch(
            FILE,
            &grad_out.kernel_name("conv_backward_input"),
            &ctx.grid_stride(n),
            &args,
        )?;
    }
    Ok(gx)
}

/// How many blocks share the reduction of one (out, in) channel pair: enough blocks to fill a
/// large GPU, but each reducing at least `MIN_SPLIT_POSITIONS` (batch, position) items.
fn weight_splits(g: &ConvGeometry) -> usize {
    let pairs = g.out_channels * (g.in_channels / g.groups);
    let total = g.batch * g.output().iter().product::<usize>();
    TARGET_WEIGHT_BLOCKS
        .div_ceil(pairs.max(1))
        .min(total.div_ceil(MIN_SPLIT_POSITIONS))
        .max(1)
}

/// Blocks per (out channel, in channel of its group), each reducing part of the batch and
/// positions; with several parts, a second pass adds them in a fixed order.
fn launch_backward_weight<D: DeviceApi>(
    x: &CudaStorage<D>,
    grad_out: &CudaStorage<D>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    let n = g.weight_len();
    let gw = x.alloc_like(n, x.dtype())?;
    if n == 0 {
        return Ok(gw);
    }
    let ctx = x.context();
    let taps = g.kernel.iter().product::<usize>();
    let splits = weight_splits(g);
    let blocks = g.out_channels * (g.in_channels / g.groups) * splits;
    let parts = if splits == 1 {
        gw.clone()
    } else {
        x.alloc_like(n * splits, x.dtype())?
    };
    let config = LaunchConfig {
        grid_dim: (blocks.min(MAX_WEIGHT_BLOCKS) as u32, 1, 1),
        block_dim: (WEIGHT_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let args = [
        x.arg(),
        grad_out.arg(),
        parts.arg(),
        ConvParams::new(g).arg(),
        (splits as i64).into(),
    ];
    ctx.launch(FILE, &x.kernel_name("conv_backward_weight"), &config, &args)?;
    if splits > 1 {
        let args = [
            parts.arg(),
            gw.arg(),
            (n as i64).into(),
            (taps as i64).into(),
            (splits as i64).into(),
        ];
        ctx.launch(
            FILE,
            &x.kernel_name("conv_weight_splits_sum"),
            &ctx.grid_stride(n),
            &args,
        )?;
    }
    Ok(gw)
}

pub fn conv<D: DeviceApi>(
    x: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    bias: Option<&CudaStorage<D>>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    let op = "conv";
    check(
        op,
        g,
        &[
            ("input", x, g.input_len()),
            ("weight", weight, g.weight_len()),
        ],
    )?;
    check_bias(op, x, bias, g.out_channels)?;
    launch_forward(x, weight, bias, g)
}

pub fn conv_backward_input<D: DeviceApi>(
    grad_out: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    check(
        "conv_backward_input",
        g,
        &[
            ("grad_out", grad_out, g.output_len()),
            ("weight", weight, g.weight_len()),
        ],
    )?;
    launch_backward_input(grad_out, weight, None, g)
}

pub fn conv_backward_weight<D: DeviceApi>(
    x: &CudaStorage<D>,
    grad_out: &CudaStorage<D>,
    g: &ConvGeometry,
) -> Result<CudaStorage<D>> {
    check(
        "conv_backward_weight",
        g,
        &[
            ("input", x, g.input_len()),
            ("grad_out", grad_out, g.output_len()),
        ],
    )?;
    launch_backward_weight(x, grad_out, g)
}

/// Checks a transposed convolution and returns its adjoint convolution.
fn adjoint(op: &'static str, g: &ConvTransposeGeometry) -> Result<ConvGeometry> {
    g.validate()
        .map_err(|e| HeparError::invalid(op, format!("{g:?}: {e}")))?;
    Ok(g.as_conv())
}

/// Transposed convolution forward: the backward-input pass of `g.as_conv()`, plus the bias.
pub fn conv_transpose<D: DeviceApi>(
    x: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    bias: Option<&CudaStorage<D>>,
    g: &ConvTransposeGeometry,
) -> Result<CudaStorage<D>> {
    let op = "conv_transpose";
    let c = adjoint(op, g)?;
    check(
        op,
        &c,
        &[
            ("input", x, g.input_len()),
            ("weight", weight, g.weight_len()),
        ],
    )?;
    check_bias(op, x, bias, g.out_channels)?;
    launch_backward_input(x, weight, bias, &c)
}

/// Input gradient of the transposed convolution: the forward pass of `g.as_conv()`.
pub fn conv_transpose_backward_input<D: DeviceApi>(
    grad_out: &CudaStorage<D>,
    weight: &CudaStorage<D>,
    g: &ConvTransposeGeometry,
) -> Result<CudaStorage<D>> {
    let op = "conv_transpose_backward_input";
    let c = adjoint(op, g)?;
    check(
        op,
        &c,
        &[
            ("grad_out", grad_out, g.output_len()),
            ("weight", weight, g.weight_len()),
        ],
    )?;
    launch_forward(grad_out, weight, None, &c)
}

/// Weight gradient of the transposed convolution: the weight gradient of `g.as_conv()` with the
/// roles swapped (its input is our output gradient, its output gradient our input).
pub fn conv_transpose_backward_weight<D: DeviceApi>(
    x: &CudaStorage<D>,
    grad_out: &CudaStorage<D>,
    g: &ConvTransposeGeometry,
) -> Result<CudaStorage<D>> {
    let op = "conv_transpose_backward_weight";
    let c = adjoint(op, g)?;
    check(
        op,
        &c,
        &[
            ("input", x, g.input_len()),
            ("grad_out", grad_out, g.output_len()),
        ],
    )?;
    launch_backward_weight(grad_out, x, &c)
}
