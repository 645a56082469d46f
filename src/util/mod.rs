//! Small helpers shared across the crate.

pub mod atomic_write;
pub mod philox;
pub mod rng;
