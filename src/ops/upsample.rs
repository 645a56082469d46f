//! Resampling to a new spatial size: nearest and (bi/tri)linear, with `align_corners` as PyTorch.

use super::conv::spatial_of;
use super::with_dense;
use crate::backend::{BackendStorage, UpsampleGeometry, UpsampleMode};
use crate::error::{HeparError, Result};
use crate::tensor::layout::Layout;
use crate::tensor::Tensor;

impl Tensor {
    fn upsample(&self, size: &[usize], mode: UpsampleMode) -> Result<Tensor> {
        let op = "upsample";
        if !(3..=5).contains(&self.rank())
            || size.len() != self.rank() - 2
            || size.contains(&0)
            || self.shape()[2..].contains(&0)
        {
            return Err(HeparError::shape(op, format!("input {:?} to size {size:?}: expected [N, C, spatial...] and one positive size per spatial axis", self.shape())));
        }
        let mut out_shape = self.shape()[..2].to_vec();
        out_shape.extend_from_slice(size);
        let g = UpsampleGeometry {
            batch: self.shape()[0],
            channels: self.shape()[1],
            input: spatial_of(self.shape()),
            output: spatial_of(&out_shape),
            scale: [None; 3],
            mode,
        };
        g.validate().map_err(|e| {
            HeparError::invalid(
                op,
                format!("input {:?} to size {size:?}: {e}", self.shape()),
            )
        })?;
        let out = with_dense(self, |x| x.upsample(&g))?;
        let x_shape = self.shape().to_vec();
        Ok(Tensor::from_op(
            out,
            Layout::contiguous(&out_shape),
            op,
            &[self],
            Box::new(move |grad| {
                let gx = with_dense(grad, |gs| gs.upsample_backward(&g))?;
                Ok(vec![Some(Tensor::from_storage(
                    gx,
                    Layout::contiguous(&x_shape),
                ))])
            }),
        ))
    }

    /// Nearest-neighbour resampling to `size` (one entry per spatial axis).
    pub fn upsample_nearest(&self, size: &[usize]) -> Result<Tensor> {
        self.upsample(size, UpsampleMode::Nearest)
    }

    /// Linear, bilinear or trilinear resampling to `size`.
    pub fn upsample_linear(&self, size: &[usize], align_corners: bool) -> Result<Tensor> {
        self.upsample(size, UpsampleMode::Linear { align_corners })
    }
}
