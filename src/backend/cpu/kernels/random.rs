//! Random masks from the counter-based Philox generator: element `i`'s value depends only on
//! (seed, i), so the CUDA kernel (kernels/random.cu) produces the same mask.

use super::scalar::Float;
use crate::util::philox::{drop_threshold, element_word};
use rayon::prelude::*;

/// Inverted-dropout mask: 0 where element `i` is dropped (probability `p`), `1 / (1 - p)` elsewhere.
pub fn dropout_mask<T: Float>(numel: usize, p: f64, seed: u64) -> Vec<T> {
    let threshold = drop_threshold(p);
    let keep = T::from_f64_lossy(1.0 / (1.0 - p));
    let mut mask = vec![T::zero(); numel];
    mask.par_chunks_mut(1 << 14)
        .enumerate()
        .for_each(|(c, chunk)| {
            for (j, m) in chunk.iter_mut().enumerate() {
                let i = (c << 14) + j;
                *m = if element_word(seed, i as u64) < threshold {
                    T::zero()
                } else {
                    keep
                };
            }
        });
    mask
}
