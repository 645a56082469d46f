//! Differentiable ops on tensors. Each op runs a backend primitive for its forward pass and
//! records a backward closure built from other ops, so gradients work on every backend.

pub mod conv;
pub mod elementwise;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod random;
pub mod reduce;
pub mod shape;
pub mod upsample;

use crate::backend::Storage;
use crate::error::Result;
use crate::tensor::{Layout, Tensor};

/// Runs `f` on a tensor's storage and layout under a read lock.
pub(crate) fn with_storage<R>(t: &Tensor, f: impl FnOnce(&Storage, &Layout) -> Result<R>) -> Result<R> {
    let s = t.storage();
    f(&s, t.layout())
}

/// Runs `f` on two tensors' storages and layouts.
pub(crate) fn with_storages<R>(a: &Tensor, b: &Tensor, f: impl FnOnce(&Storage, &Layout, &Storage, &Layout) -> Result<R>) -> Result<R> {
    let sa = a.storage();
    let sb = b.storage();
    f(&sa, a.layout(), &sb, b.layout())
}
