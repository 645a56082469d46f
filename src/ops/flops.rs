//! A running count of the floating-point operations of the heavy ops, convolutions (forward,
//! and both backward products) and matrix products (whose backward is matrix products too):
//! 2 per multiply-add. Benchmarks divide it by time for GFLOP/s; elementwise ops, norms and
//! pooling are not counted (they are memory-bound, and a small share of a U-Net's arithmetic).

use std::sync::atomic::{AtomicU64, Ordering};

static COUNT: AtomicU64 = AtomicU64::new(0);

/// Adds `multiply_adds` multiply-add operations (2 FLOPs each).
pub fn add_multiply_adds(multiply_adds: u64) {
    COUNT.fetch_add(2 * multiply_adds, Ordering::Relaxed);
}

/// FLOPs counted since the process started (or the last [`reset`]).
pub fn read() -> u64 {
    COUNT.load(Ordering::Relaxed)
}

pub fn reset() {
    COUNT.store(0, Ordering::Relaxed);
}
