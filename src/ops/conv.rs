//! Convolution and transposed convolution, 2D ([N, C, H, W]) and 3D ([N, C, D, H, W]).

use super::flops;
use super::with_dense;
use crate::backend::{BackendStorage, ConvGeometry, ConvTransposeGeometry, Storage};
use crate::error::{HeparError, Result};
use crate::tensor::layout::Layout;
use crate::tensor::Tensor;

/// Stride, padding and dilation per spatial axis (one value applies to every axis), groups, and
/// for transposed convolutions the extra output size on the high side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvOptions {
    pub stride: Vec<usize>,
    pub padding: Vec<usize>,
    pub dilation: Vec<usize>,
    pub groups: usize,
    pub output_padding: Vec<usize>,
}

impl Default for ConvOptions {
    fn default() -> Self {
        ConvOptions {
            stride: vec![1],
            padding: vec![0],
            dilation: vec![1],
            groups: 1,
            output_padding: vec![0],
        }
    }
}

/// Expands a per-axis argument to 3 axes (depth first; 2D gets depth `fill`).
pub(crate) fn spatial3(
    op: &'static str,
    what: &str,
    v: &[usize],
    dims: usize,
    fill: usize,
) -> Result<[usize; 3]> {
    let full: Vec<usize> = match v.len() {
        1 => vec![v[0]; dims],
        n if n == dims => v.to_vec(),
        _ => {
            return Err(HeparError::invalid(
                op,
                format!("{what} {v:?} needs 1 or {dims} values"),
            ))
        }
    };
    let mut out = [fill; 3];
    out[3 - dims..].copy_from_slice(&full);
    Ok(out)
}

/// Spatial sizes of a [N, C, ...] tensor as 3 axes (2D gets depth 1).
pub(crate) fn spatial_of(shape: &[usize]) -> [usize; 3] {
    let mut out = [1; 3];
    let dims = shape.len() - 2;
    out[3 - dims..].copy_from_slice(&shape[2..]);
    out
}

fn with_spatial(n: usize, c: usize, dims: usize, s: [usize; 3]) -> Vec<usize> {
    let mut shape = vec![n, c];
    shape.extend_from_slice(&s[3 - dims..]);
    shape
}

fn dims_of(op: &'static str, x: &Tensor, w: &Tensor) -> Result<usize> {
    if !(x.rank() == 4 || x.rank() == 5) || w.rank() != x.rank() {
        return Err(HeparError::shape(
            op,
            format!(
                "input {:?} and weight {:?}: expected both [N, C, H, W] or both [N, C, D, H, W]",
                x.shape(),
                w.shape()
            ),
        ));
    }
    if x.dtype() != w.dtype() {
        return Err(HeparError::dtype(
            op,
            format!("input {} vs weight {}", x.dtype(), w.dtype()),
        ));
    }
    Ok(x.rank() - 2)
}

fn check_bias(op: &'static str, bias: Option<&Tensor>, channels: usize, x: &Tensor) -> Result<()> {
    if let Some(b) = bias {
        if b.shape() != [channels] || b.dtype() != x.dtype() {
            return Err(HeparError::shape(
                op,
                format!(
                    "bias {:?} {} for {channels} output channels of dtype {}",
                    b.shape(),
                    b.dtype(),
                    x.dtype()
                ),
            ));
        }
    }
    Ok(())
}

/// Runs a backend conv primitive on dense views of (a, b) and an optional dense bias.
fn dense3<R>(
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    f: impl FnOnce(&Storage, &Storage, Option<&Storage>) -> Result<R>,
) -> Result<R> {
    with_dense(a, |sa| {
        with_dense(b, |sb| match bias {
            Some(bias) => with_dense(bias, |sc| f(sa, sb, Some(sc))),
            None => f(sa, sb, None),
        })
    })
}

impl Tensor {
    /// Convolution with weight [C_out, C_in / groups, k...] and optional bias [C_out].
    pub fn conv(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: &ConvOptions,
    ) -> Result<Tensor> {
        let op = "conv";
        let dims = dims_of(op, self, weight)?;
        let geom = ConvGeometry {
            batch: self.shape()[0],
            in_channels: self.shape()[1],
            out_channels: weight.shape()[0],
            groups: opts.groups,
            input: spatial_of(self.shape()),
            kernel: spatial_of(weight.shape()),
            stride: spatial3(op, "stride", &opts.stride, dims, 1)?,
            padding: spatial3(op, "padding", &opts.padding, dims, 0)?,
            dilation: spatial3(op, "dilation", &opts.dilation, dims, 1)?,
        };
        if opts.groups == 0 || weight.shape()[1] * opts.groups != self.shape()[1] {
            return Err(HeparError::shape(op, format!("input {:?} with weight {:?} and {} groups: weight axis 1 must be C_in / groups", self.shape(), weight.shape(), opts.groups)));
        }
        geom.validate().map_err(|e| {
            HeparError::invalid(
                op,
                format!("input {:?}, weight {:?}: {e}", self.shape(), weight.shape()),
            )
        })?;
        check_bias(op, bias, geom.out_channels, self)?;
        let out_shape = with_spatial(geom.batch, geom.out_channels, dims, geom.output());
        // Each output voxel of each output channel sums C_in / groups x taps products.
        let macs = (out_shape.iter().product::<usize>()
            * weight.shape()[1..].iter().product::<usize>()) as u64;
        flops::add_multiply_adds(macs);
        let out = dense3(self, weight, bias, |x, w, b| x.conv(w, b, &geom))?;
        Ok(record_conv(
            op,
            out,
            &out_shape,
            self,
            weight,
            bias,
            move |g, w| {
                flops::add_multiply_adds(macs);
                g.conv_backward_input(w, &geom)
            },
            move |x, g| {
                flops::add_multiply_adds(macs);
                x.conv_backward_weight(g, &geom)
            },
        ))
    }

    /// Transposed convolution with weight [C_in, C_out / groups, k...] and optional bias [C_out].
    pub fn conv_transpose(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        opts: &ConvOptions,
    ) -> Result<Tensor> {
        let op = "conv_transpose";
        let dims = dims_of(op, self, weight)?;
        if weight.shape()[0] != self.shape()[1] {
            return Err(HeparError::shape(
                op,
                format!(
                    "input {:?} with weight {:?}: weight axis 0 must be C_in",
                    self.shape(),
                    weight.shape()
                ),
            ));
        }
        let geom = ConvTransposeGeometry {
            batch: self.shape()[0],
            in_channels: self.shape()[1],
            out_channels: weight.shape()[1] * opts.groups,
            groups: opts.groups,
            input: spatial_of(self.shape()),
            kernel: spatial_of(weight.shape()),
            stride: spatial3(op, "stride", &opts.stride, dims, 1)?,
            padding: spatial3(op, "padding", &opts.padding, dims, 0)?,
            dilation: spatial3(op, "dilation", &opts.dilation, dims, 1)?,
            output_padding: spatial3(op, "output_padding", &opts.output_padding, dims, 0)?,
        };
        geom.validate().map_err(|e| {
            HeparError::invalid(
                op,
                format!("input {:?}, weight {:?}: {e}", self.shape(), weight.shape()),
            )
        })?;
        check_bias(op, bias, geom.out_channels, self)?;
        let out_shape = with_spatial(geom.batch, geom.out_channels, dims, geom.output());
        // Each input voxel of each input channel scatters into C_out / groups x taps outputs.
        let macs = (self.shape().iter().product::<usize>()
            * weight.shape()[1..].iter().product::<usize>()) as u64;
        flops::add_multiply_adds(macs);
        let out = dense3(self, weight, bias, |x, w, b| x.conv_transpose(w, b, &geom))?;
        Ok(record_conv(
            op,
            out,
            &out_shape,
            self,
            weight,
            bias,
            move |g, w| {
                flops::add_multiply_adds(macs);
                g.conv_transpose_backward_input(w, &geom)
            },
            move |x, g| {
                flops::add_multiply_adds(macs);
                x.conv_transpose_backward_weight(g, &geom)
            },
        ))
    }
}

/// Wraps a convolution's output as an op whose backward gives the input gradient from
/// (grad_out, weight), the weight gradient from (input, grad_out), and the bias gradient as the
/// sum of grad_out over batch and space.
#[allow(clippy::too_many_arguments)]
fn record_conv(
    op: &'static str,
    out: Storage,
    out_shape: &[usize],
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    backward_input: impl Fn(&Storage, &Storage) -> Result<Storage> + Send + Sync + 'static,
    backward_weight: impl Fn(&Storage, &Storage) -> Result<Storage> + Send + Sync + 'static,
) -> Tensor {
    let (x_saved, w_saved) = (x.clone(), weight.clone());
    let mut inputs = vec![x, weight];
    inputs.extend(bias);
    let has_bias = bias.is_some();
    Tensor::from_op(
        out,
        Layout::contiguous(out_shape),
        op,
        &inputs,
        Box::new(move |g| {
            let gx = dense3(g, &w_saved, None, |g, w, _| backward_input(g, w))?;
            let gw = dense3(&x_saved, g, None, |x, g, _| backward_weight(x, g))?;
            let mut grads = vec![
                Some(Tensor::from_storage(
                    gx,
                    Layout::contiguous(x_saved.shape()),
                )),
                Some(Tensor::from_storage(
                    gw,
                    Layout::contiguous(w_saved.shape()),
                )),
            ];
            if has_bias {
                let axes: Vec<usize> = (0..g.rank()).filter(|&a| a != 1).collect();
                grads.push(Some(g.sum_axes(&axes, false)?));
            }
            Ok(grads)
        }),
    )
}
