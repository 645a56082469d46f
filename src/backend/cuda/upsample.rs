//! Launches of `kernels/upsample.cu`: nearest and (bi/tri)linear resampling of dense NCDHW
//! storage, forward and backward (a gather, deterministic whatever the launch shape).

use super::storage::CudaStorage;
use super::DeviceApi;
use crate::backend::cpu::kernels::scalar::Float;
use crate::backend::{BackendStorage, UpsampleGeometry, UpsampleMode};
use crate::error::{HeparError, Result};
use crate::tensor::dtype::DType;

const FILE: &str = "upsample.cu";

/// `UpsampleParams` in `kernels/upsample.cu` (same field order, every field 64-bit).
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct UpsampleParams {
    planes: i64,
    input: [i64; 3],
    output: [i64; 3],
    linear: i64,
    align_corners: i64,
    /// Per axis, linear: the source step in the element type; nearest: the f32 scale (both held
    /// exactly by an f64).
    ratio: [f64; 3],
}

/// PyTorch's nearest scale as the CPU computes it (`nearest_source`): in f32 whatever the element
/// type, the user's scale factor when given, else input / output.
fn nearest_scale(input: usize, output: usize, scale: Option<f64>) -> f32 {
    match scale {
        Some(s) if s > 0.0 => (1.0 / s) as f32,
        _ => input as f32 / output as f32,
    }
}

/// The step between source coordinates of consecutive outputs, in `T`, as the CPU's
/// `linear_taps` computes it.
fn linear_ratio<T: Float>(
    input: usize,
    output: usize,
    scale: Option<f64>,
    align_corners: bool,
) -> Result<T> {
    let from = |v: usize| {
        T::from_usize(v).ok_or_else(|| {
            HeparError::invalid(
                "upsample",
                format!("size {v} does not fit the element type"),
            )
        })
    };
    Ok(if align_corners {
        if output > 1 {
            from(input - 1)? / from(output - 1)?
        } else {
            T::zero()
        }
    } else {
        match scale {
            Some(s) if s > 0.0 => T::from_f64_lossy(1.0 / s),
            _ => from(input)? / from(output)?,
        }
    })
}

impl UpsampleParams {
    fn new(g: &UpsampleGeometry, dtype: DType) -> Result<Self> {
        let mut ratio = [0.0; 3];
        for (a, r) in ratio.iter_mut().enumerate() {
            let (input, output, scale) = (g.input[a], g.output[a], g.scale[a]);
            *r = match g.mode {
                UpsampleMode::Nearest => f64::from(nearest_scale(input, output, scale)),
                UpsampleMode::Linear { align_corners } if dtype == DType::F32 => {
                    f64::from(linear_ratio::<f32>(input, output, scale, align_corners)?)
                }
                UpsampleMode::Linear { align_corners } => {
                    linear_ratio::<f64>(input, output, scale, align_corners)?
                }
            };
        }
        let (linear, align_corners) = match g.mode {
            UpsampleMode::Nearest => (0, 0),
            UpsampleMode::Linear { align_corners } => (1, i64::from(align_corners)),
        };
        Ok(UpsampleParams {
            planes: (g.batch * g.channels) as i64,
            input: g.input.map(|v| v as i64),
            output: g.output.map(|v| v as i64),
            linear,
            align_corners,
            ratio,
        })
    }

    fn arg(&self) -> super::KernelArg {
        super::KernelArg::from_bytes(bytemuck::bytes_of(self))
    }
}

/// Refuses an invalid geometry, storage-only dtypes, and storage that is not the dense tensor the
/// geometry describes.
fn check<D: DeviceApi>(
    op: &'static str,
    s: &CudaStorage<D>,
    g: &UpsampleGeometry,
    len: usize,
    sizes: [usize; 3],
) -> Result<()> {
    s.require_compute(op)?;
    g.validate()?;
    if s.len() != len {
        return Err(HeparError::shape(
            op,
            format!(
                "storage has {} elements, but {} x {} planes of {sizes:?} need {len}",
                s.len(),
                g.batch,
                g.channels
            ),
        ));
    }
    Ok(())
}

pub fn upsample<D: DeviceApi>(x: &CudaStorage<D>, g: &UpsampleGeometry) -> Result<CudaStorage<D>> {
    let op = "upsample";
    check(op, x, g, g.input_len(), g.input)?;
    let n = g.output_len();
    let y = x.alloc_like(n, x.dtype())?;
    if n > 0 {
        let ctx = x.context();
        let args = [x.arg(), y.arg(), UpsampleParams::new(g, x.dtype())?.arg()];
        ctx.launch(FILE, &x.kernel_name(op), &ctx.grid_stride(n), &args)?;
    }
    Ok(y)
}

pub fn upsample_backward<D: DeviceApi>(
    grad_out: &CudaStorage<D>,
    g: &UpsampleGeometry,
) -> Result<CudaStorage<D>> {
    let op = "upsample_backward";
    check(op, grad_out, g, g.output_len(), g.output)?;
    let n = g.input_len();
    let gx = grad_out.alloc_like(n, grad_out.dtype())?;
    if n > 0 {
        let ctx = grad_out.context();
        let args = [
            grad_out.arg(),
            gx.arg(),
            UpsampleParams::new(g, grad_out.dtype())?.arg(),
        ];
        ctx.launch(FILE, &grad_out.kernel_name(op), &ctx.grid_stride(n), &args)?;
    }
    Ok(gx)
}
