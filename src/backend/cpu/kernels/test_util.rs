//! Inputs and checks the kernels' unit tests share.

use crate::util::rng::Rng;

/// `len` values uniform in [-1, 1), reproducible from `seed`.
pub fn random(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.range(-1.0, 1.0)).collect()
}

/// The inner product, for adjoint checks `<A x, y> == <x, A^T y>`.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
