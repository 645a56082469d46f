//! Resampling to a new spatial size: nearest and (bi/tri)linear, with `align_corners` as PyTorch.

use super::conv::spatial_of;
use crate::backend::{BackendStorage, UpsampleGeometry, UpsampleMode};
use crate::error::{HeparError, Result};
use crate::tensor::layout::Layout;
use crate::tensor::Tensor;

impl Tensor {
    fn upsample(&self, size: &[usize], mode: UpsampleMode) -> Result<Tensor> {
        let op = "upsample";
        if !(3..=5).contains(&self.rank()) || size.len() != self.rank() - 2 || size.iter().any(|&s| s == 0) || self.shape()[2..].iter().any(|&s| s == 0) {
            return Err(HeparError::shape(op, format!("input {:?} to size {size:?}: expected [N, C, spatial...] and one positive size per spatial axis", self.shape())));
        }
        let mut out_shape = self.shape()[..2].to_vec();
        out_shape.extend_from_slice(size);
        let g = UpsampleGeometry { planes: self.shape()[0] * self.shape()[1], input: spatial_of(self.shape()), output: spatial_of(&out_shape) };
        let out = self.storage().copy_strided(self.layout())?.upsample(&g, mode)?;
        let x_shape = self.shape().to_vec();
        Ok(Tensor::from_op(
            out,
            Layout::contiguous(&out_shape),
            op,
            &[self],
            Box::new(move |grad| {
                let gs = grad.storage().copy_strided(grad.layout())?;
                Ok(vec![Some(Tensor::from_storage(gs.upsample_backward(&g, mode)?, Layout::contiguous(&x_shape)))])
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
