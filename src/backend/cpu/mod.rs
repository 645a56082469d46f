//! The CPU backend: the reference every other backend is checked against, and fast enough to
//! train on a laptop.

pub mod kernels;
pub mod storage;
