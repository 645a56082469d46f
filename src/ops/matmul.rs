//! Matrix products, with batch axes broadcast as numpy does.

use super::flops;
use crate::backend::BackendStorage;
use crate::error::{HeparError, Result};
use crate::tensor::layout::{broadcast_shape, Layout};
use crate::tensor::Tensor;

impl Tensor {
    /// `[..., M, K] @ [..., K, N]`; batch axes broadcast. Both operands need rank >= 2.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        let (ra, rb) = (self.rank(), rhs.rank());
        if ra < 2 || rb < 2 || self.shape()[ra - 1] != rhs.shape()[rb - 2] {
            return Err(HeparError::shape(
                "matmul",
                format!("{:?} @ {:?}", self.shape(), rhs.shape()),
            ));
        }
        if self.dtype() != rhs.dtype() {
            return Err(HeparError::dtype(
                "matmul",
                format!("{} @ {}", self.dtype(), rhs.dtype()),
            ));
        }
        let batch = broadcast_shape("matmul", &self.shape()[..ra - 2], &rhs.shape()[..rb - 2])?;
        let (m, k, n) = (
            self.shape()[ra - 2],
            self.shape()[ra - 1],
            rhs.shape()[rb - 1],
        );
        let full = |tail: [usize; 2]| batch.iter().copied().chain(tail).collect::<Vec<_>>();
        let (la, lb) = (
            self.layout().broadcast_to("matmul", &full([m, k]))?,
            rhs.layout().broadcast_to("matmul", &full([k, n]))?,
        );
        let out = {
            let (sa, sb) = (self.storage(), rhs.storage());
            sa.matmul(&la, &sb, &lb)?
        };
        flops::add_multiply_adds((batch.iter().product::<usize>() * m * n * k) as u64);
        let out_shape = full([m, n]);
        let (a, b) = (self.clone(), rhs.clone());
        Ok(Tensor::from_op(
            out,
            Layout::contiguous(&out_shape),
            "matmul",
            &[self, rhs],
            Box::new(move |g| {
                let ga = g.matmul(&b.transpose(-1, -2)?)?.sum_to_shape(a.shape())?;
                let gb = a.transpose(-1, -2)?.matmul(g)?.sum_to_shape(b.shape())?;
                Ok(vec![Some(ga), Some(gb)])
            }),
        ))
    }
}
