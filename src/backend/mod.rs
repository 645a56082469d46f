//! Backends: where tensor data lives and how primitive ops run on it.

pub mod cpu;
