//! Ops that draw random numbers, from explicit seeds so runs reproduce on every device.

use crate::backend::BackendStorage;
use crate::error::{HeparError, Result};
use crate::tensor::Layout;
use crate::tensor::Tensor;

impl Tensor {
    /// Inverted dropout: zeroes each element with probability `p` and scales the rest by
    /// `1 / (1 - p)`, so eval mode (`training == false`) is the identity.
    pub fn dropout(&self, p: f64, training: bool, seed: u64) -> Result<Tensor> {
        if !(0.0..1.0).contains(&p) {
            return Err(HeparError::invalid(
                "dropout",
                format!("probability {p} is outside [0, 1)"),
            ));
        }
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        // The mask is made where the data lives, by a counter-based generator: the same on every
        // device and whatever the kernel's launch shape.
        let mask = self.storage().dropout_mask(self.numel(), p, seed)?;
        let mask = Tensor::from_storage(mask, Layout::contiguous(self.shape()));
        self.mul(&mask)
    }
}
