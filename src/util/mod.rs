//! Small helpers shared across the crate.

pub mod atomic_write;
pub mod heap_stats;
pub mod large_blocks;
pub mod op_profile;
pub mod philox;
pub mod rng;
