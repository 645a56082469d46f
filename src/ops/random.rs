//! Ops that draw random numbers, from explicit seeds so runs reproduce.

use crate::error::{HeparError, Result};
use crate::tensor::Tensor;
use crate::util::rng::Rng;

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
        let mut rng = Rng::new(seed);
        let keep = 1.0 / (1.0 - p);
        let mask: Vec<f64> = (0..self.numel())
            .map(|_| if rng.chance(p) { 0.0 } else { keep })
            .collect();
        let mask = Tensor::from_vec(mask, self.shape())?.to_dtype(self.dtype())?;
        self.mul(&mask)
    }
}
