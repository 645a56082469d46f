//! Differentiable ops on tensors. Each op runs a backend primitive for its forward pass and
//! records a backward closure built from other ops, so gradients work on every backend.

pub mod conv;
pub mod elementwise;
pub mod flops;
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
pub(crate) fn with_storage<R>(
    t: &Tensor,
    f: impl FnOnce(&Storage, &Layout) -> Result<R>,
) -> Result<R> {
    let s = t.storage();
    f(&s, t.layout())
}

/// Runs `f` on two tensors' storages and layouts.
pub(crate) fn with_storages<R>(
    a: &Tensor,
    b: &Tensor,
    f: impl FnOnce(&Storage, &Layout, &Storage, &Layout) -> Result<R>,
) -> Result<R> {
    let sa = a.storage();
    let sb = b.storage();
    f(&sa, a.layout(), &sb, b.layout())
}

/// Runs `f` on a tensor's values as a dense storage starting at element 0: the storage itself
/// when it already is (no copy), else a dense copy.
pub(crate) fn with_dense<R>(t: &Tensor, f: impl FnOnce(&Storage) -> Result<R>) -> Result<R> {
    use crate::backend::BackendStorage;
    let s = t.storage();
    if t.layout().is_contiguous() && t.layout().offset() == 0 && s.len() == t.numel() {
        f(&s)
    } else {
        let copy = s.copy_strided(t.layout())?;
        drop(s);
        f(&copy)
    }
}
