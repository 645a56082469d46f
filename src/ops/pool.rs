//! Max and average pooling, 2D ([N, C, H, W]) and 3D ([N, C, D, H, W]).

use super::conv::{spatial3, spatial_of};
use super::with_dense;
use crate::backend::{BackendStorage, PoolGeometry};
use crate::error::{HeparError, Result};
use crate::tensor::layout::Layout;
use crate::tensor::Tensor;

/// Window, stride (defaults to the window), padding and dilation; one value applies to every
/// spatial axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolOptions {
    pub kernel: Vec<usize>,
    pub stride: Vec<usize>,
    pub padding: Vec<usize>,
    pub dilation: Vec<usize>,
}

impl PoolOptions {
    /// Non-overlapping windows of `kernel`, no padding.
    pub fn new(kernel: Vec<usize>) -> Self {
        PoolOptions {
            stride: kernel.clone(),
            kernel,
            padding: vec![0],
            dilation: vec![1],
        }
    }
}

fn geometry(op: &'static str, x: &Tensor, o: &PoolOptions) -> Result<PoolGeometry> {
    if !(x.rank() == 4 || x.rank() == 5) {
        return Err(HeparError::shape(
            op,
            format!(
                "input {:?}: expected [N, C, H, W] or [N, C, D, H, W]",
                x.shape()
            ),
        ));
    }
    let dims = x.rank() - 2;
    let g = PoolGeometry {
        batch: x.shape()[0],
        channels: x.shape()[1],
        input: spatial_of(x.shape()),
        kernel: spatial3(op, "kernel", &o.kernel, dims, 1)?,
        stride: spatial3(
            op,
            "stride",
            if o.stride.is_empty() {
                &o.kernel
            } else {
                &o.stride
            },
            dims,
            1,
        )?,
        padding: spatial3(op, "padding", &o.padding, dims, 0)?,
        dilation: spatial3(op, "dilation", &o.dilation, dims, 1)?,
    };
    g.validate(op)
        .map_err(|e| HeparError::invalid(op, format!("input {:?}: {e}", x.shape())))?;
    Ok(g)
}

fn output_shape(x: &Tensor, g: &PoolGeometry) -> Vec<usize> {
    let dims = x.rank() - 2;
    let o = g.output();
    let mut shape = x.shape()[..2].to_vec();
    shape.extend_from_slice(&o[3 - dims..]);
    shape
}

impl Tensor {
    /// Max pooling; the gradient goes to the (first) maximum of each window.
    pub fn max_pool(&self, o: &PoolOptions) -> Result<Tensor> {
        let g = geometry("max_pool", self, o)?;
        let out = with_dense(self, |x| x.max_pool(&g))?;
        let x = self.clone();
        let x_shape = self.shape().to_vec();
        Ok(Tensor::from_op(
            out,
            Layout::contiguous(&output_shape(self, &g)),
            "max_pool",
            &[self],
            Box::new(move |grad| {
                let gx = with_dense(&x, |xs| with_dense(grad, |gs| xs.max_pool_backward(gs, &g)))?;
                Ok(vec![Some(Tensor::from_storage(
                    gx,
                    Layout::contiguous(&x_shape),
                ))])
            }),
        ))
    }

    /// Average pooling; `count_include_pad` divides by the padded window size, as PyTorch's default.
    pub fn avg_pool(&self, o: &PoolOptions, count_include_pad: bool) -> Result<Tensor> {
        let g = geometry("avg_pool", self, o)?;
        let out = with_dense(self, |x| x.avg_pool(&g, count_include_pad))?;
        let x_shape = self.shape().to_vec();
        Ok(Tensor::from_op(
            out,
            Layout::contiguous(&output_shape(self, &g)),
            "avg_pool",
            &[self],
            Box::new(move |grad| {
                let gx = with_dense(grad, |gs| gs.avg_pool_backward(&g, count_include_pad))?;
                Ok(vec![Some(Tensor::from_storage(
                    gx,
                    Layout::contiguous(&x_shape),
                ))])
            }),
        ))
    }
}
