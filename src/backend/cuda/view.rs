//! The strided view a kernel reads through: shape, strides and offset of a `Layout`, passed by
//! value as `StridedView` in `kernels/common.cuh` (same field order and sizes).

use super::device::KernelArg;
use crate::error::{HeparError, Result};
use crate::tensor::layout::Layout;

/// The most axes a kernel argument carries.
pub const MAX_RANK: usize = 8;

#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StridedView {
    rank: i32,
    /// Non-zero when element `i` of the view is at `offset + i` (the kernels' fast path).
    contiguous: i32,
    offset: i64,
    shape: [i64; MAX_RANK],
    strides: [i64; MAX_RANK],
}

impl StridedView {
    pub fn new(op: &'static str, l: &Layout) -> Result<Self> {
        if l.rank() > MAX_RANK {
            return Err(HeparError::invalid(
                op,
                format!(
                    "{} axes exceed the GPU kernels' limit of {MAX_RANK}",
                    l.rank()
                ),
            ));
        }
        let mut v = StridedView {
            rank: l.rank() as i32,
            contiguous: l.is_contiguous() as i32,
            offset: l.offset() as i64,
            shape: [1; MAX_RANK],
            strides: [0; MAX_RANK],
        };
        for (i, (&d, &s)) in l.shape().iter().zip(l.strides()).enumerate() {
            v.shape[i] = d as i64;
            v.strides[i] = s as i64;
        }
        Ok(v)
    }

    pub fn arg(&self) -> KernelArg {
        KernelArg::from_bytes(bytemuck::bytes_of(self))
    }
}
