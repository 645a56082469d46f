//! Small helpers shared across the crate.

pub mod atomic_write;
pub mod rng;
