//! Launches of `kernels/reduce.cu`: sum / max / min over a set of axes, and softmax along one.
//!
//! Both split the input view into its kept axes and its reduced axes (as the CPU's `split_axes`
//! does by permuting the kept axes first): output `o` reduces the run that starts at
//! `kept[o]` and steps through `red`. Size-1 axes are dropped and axes that step evenly are
//! merged first, so most runs index as `base + k * stride` and the kernels' fast paths apply.
//!
//! Dispatch rule of `reduce` (see [`plan`]):
//! - **thread per output** (`reduce_cols`) when runs are short (at most 32 values), or when the
//!   smallest stride lies among the kept axes (e.g. summing [N, F] over N): neighbouring threads
//!   then read neighbouring addresses, where a block per output would read one value per sector;
//! - **block per output** (`reduce_rows`, grid-stride loop over the run, warp shuffles and a
//!   shared-memory tree) otherwise: long runs along the unit stride, e.g. the spatial sum of
//!   [N, C, D, H, W] or a whole 64^3 volume;
//! - either one splits runs into pieces when there are too few outputs to occupy a GPU (fewer than
//!   [`TARGET_BLOCKS`] blocks or [`TARGET_THREADS`] threads), writes one partial per piece, and
//!   reduces the partials again with the same rule (two passes; a whole-tensor sum of millions of
//!   values is never one block's serial loop).

use super::storage::CudaStorage;
use super::view::StridedView;
use super::{copy, DeviceApi, LaunchConfig};
use crate::backend::ops::ReduceOp;
use crate::backend::BackendStorage;
use crate::error::{HeparError, Result};
use crate::tensor::layout::Layout;

const FILE: &str = "reduce.cu";

/// Blocks that keep every SM of an H100/H200 (132 SMs) busy with a few blocks each.
const TARGET_BLOCKS: usize = 512;
/// Threads for the same, one output (or piece) each.
const TARGET_THREADS: usize = 65536;
/// Runs up to this long are reduced by one thread.
const SHORT_RUN: usize = 32;
/// Fewest values per thread of a block piece, and per thread piece, worth a second pass.
const ROW_PIECE_PER_THREAD: usize = 16;
const COL_PIECE: usize = 256;

/// (size, stride) of the axes of a view with size-1 axes dropped and axes merged where one
/// steps evenly over the next, in the same row-major order: the enumeration is unchanged.
fn simplify(dims: impl Iterator<Item = (usize, usize)>) -> (Vec<usize>, Vec<usize>) {
    let mut shape: Vec<usize> = Vec::new();
    let mut strides: Vec<usize> = Vec::new();
    for (d, s) in dims.filter(|&(d, _)| d != 1) {
        match (shape.last_mut(), strides.last_mut()) {
            (Some(pd), Some(ps)) if *ps == s * d => {
                *pd *= d;
                *ps = s;
            }
            _ => {
                shape.push(d);
                strides.push(s);
            }
        }
    }
    (shape, strides)
}

/// The kept axes (with the view's offset) and reduced axes (offset 0) of `l`, simplified.
fn split(l: &Layout, reduced: &[bool]) -> (Layout, Layout) {
    let dims = || l.shape().iter().copied().zip(l.strides().iter().copied());
    let (ks, kt) = simplify(dims().zip(reduced).filter(|(_, &r)| !r).map(|(d, _)| d));
    let (rs, rt) = simplify(dims().zip(reduced).filter(|(_, &r)| r).map(|(d, _)| d));
    (Layout::new(ks, kt, l.offset()), Layout::new(rs, rt, 0))
}

fn min_stride(l: &Layout) -> usize {
    l.strides().iter().copied().min().unwrap_or(usize::MAX)
}

/// Threads per block of the block kernels: the launch shape's block size as whole warps (the
/// kernels reduce warps with full-mask shuffles), and no more warps than a run has values.
fn block_threads<D: DeviceApi>(x: &CudaStorage<D>, run: usize) -> u32 {
    let block = (x.context().launch_shape().block / 32).max(1) * 32;
    let needed = run.div_ceil(32).clamp(1, 1 << 16) as u32 * 32;
    block.min(needed)
}

/// A block per item (a grid-stride loop over items beyond the launch shape's block limit).
fn block_per_item<D: DeviceApi>(x: &CudaStorage<D>, items: usize, block: u32) -> LaunchConfig {
    let max_blocks = x.context().launch_shape().max_blocks as usize;
    LaunchConfig {
        grid_dim: (items.clamp(1, max_blocks) as u32, 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// How one pass reduces `n_out` runs of `inner` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// One block per (output, piece).
    Rows { chunks: usize, block: u32 },
    /// One thread per (output, piece).
    Cols { chunks: usize },
}

/// The dispatch rule written out in the module documentation.
fn plan(n_out: usize, inner: usize, kept: &Layout, red: &Layout, block: u32) -> Plan {
    if inner <= SHORT_RUN || min_stride(kept) < min_stride(red) {
        let chunks = if n_out < TARGET_THREADS / 2 {
            TARGET_THREADS.div_ceil(n_out).min(inner / COL_PIECE).max(1)
        } else {
            1
        };
        Plan::Cols { chunks }
    } else {
        let chunks = if n_out < TARGET_BLOCKS {
            TARGET_BLOCKS
                .div_ceil(n_out)
                .min(inner / (ROW_PIECE_PER_THREAD * block as usize))
                .max(1)
        } else {
            1
        };
        Plan::Rows { chunks, block }
    }
}

/// Reduces `n_out = kept.numel()` runs through `red` of `x`, densely into [n_out].
fn reduce_runs<D: DeviceApi>(
    x: &CudaStorage<D>,
    kept: &Layout,
    red: &Layout,
    op: ReduceOp,
) -> Result<CudaStorage<D>> {
    let (n_out, inner) = (kept.numel(), red.numel());
    let block = block_threads(x, inner);
    let plan = plan(n_out, inner, kept, red, block);
    let chunks = match plan {
        Plan::Rows { chunks, .. } | Plan::Cols { chunks } => chunks,
    };
    let chunk_len = inner.div_ceil(chunks);
    let items = n_out * chunks;
    let out = x.alloc_like(items, x.dtype())?;
    let ctx = x.context();
    let args = [
        x.arg(),
        StridedView::new("reduce", kept)?.arg(),
        StridedView::new("reduce", red)?.arg(),
        out.arg(),
        (n_out as i64).into(),
        (inner as i64).into(),
        (chunks as i64).into(),
        (chunk_len as i64).into(),
    ];
    match plan {
        Plan::Rows { block, .. } => {
            let config = block_per_item(x, items, block);
            let name = x.kernel_name(&format!("reduce_rows_{}", op.name()));
            ctx.launch(FILE, &name, &config, &args)?;
        }
        Plan::Cols { .. } => {
            let name = x.kernel_name(&format!("reduce_cols_{}", op.name()));
            ctx.launch(FILE, &name, &ctx.grid_stride(items), &args)?;
        }
    }
    if chunks == 1 {
        return Ok(out);
    }
    // Second pass over the partials, by the same rule (pieces shrink the run at least
    // COL_PIECE-fold or ROW_PIECE_PER_THREAD * 32-fold, so passes end after a few).
    let (kept2, red2) = match plan {
        // Partial b = o * chunks + c: [n_out, chunks], reduce the last axis.
        Plan::Rows { .. } => (
            Layout::new(vec![n_out], vec![chunks], 0),
            Layout::new(vec![chunks], vec![1], 0),
        ),
        // Partial t = c * n_out + o: [chunks, n_out], reduce the first axis.
        Plan::Cols { .. } => (
            Layout::new(vec![n_out], vec![1], 0),
            Layout::new(vec![chunks], vec![n_out], 0),
        ),
    };
    reduce_runs(&out, &kept2, &red2, op)
}

fn identity(op: ReduceOp) -> f64 {
    match op {
        ReduceOp::Sum => 0.0,
        ReduceOp::Max => f64::NEG_INFINITY,
        ReduceOp::Min => f64::INFINITY,
    }
}

/// `op` over the sorted unique `axes` of the view; the output is dense with the reduced axes kept
/// as size 1, like the CPU's `reduce`.
pub fn reduce<D: DeviceApi>(
    x: &CudaStorage<D>,
    l: &Layout,
    axes: &[usize],
    op: ReduceOp,
) -> Result<CudaStorage<D>> {
    x.require_compute("reduce")?;
    let rank = l.rank();
    if axes.windows(2).any(|w| w[0] >= w[1]) || axes.iter().any(|&a| a >= rank) {
        return Err(HeparError::invalid(
            "reduce",
            format!(
                "{} axes {axes:?} must be sorted, unique and below the rank of shape {:?}",
                op.name(),
                l.shape()
            ),
        ));
    }
    let mut reduced = vec![false; rank];
    for &a in axes {
        reduced[a] = true;
    }
    let (kept, red) = split(l, &reduced);
    let (n_out, inner) = (kept.numel(), red.numel());
    if n_out == 0 {
        return x.alloc_like(0, x.dtype());
    }
    if inner == 0 {
        // Reducing nothing gives the identity, as on the CPU (max over an empty axis is -inf).
        return copy::fill(x.context(), n_out, x.dtype(), identity(op));
    }
    reduce_runs(x, &kept, &red, op)
}

/// Softmax (or log-softmax) along `axis` of the view, written densely in its logical order, as
/// the CPU's `softmax`.
///
/// Dispatch rule: one block per row (`softmax_rows`: block-wide max, then block-wide sum) when
/// the row is long (at least 1024 values), or at least 64 values and either read along the unit
/// stride or too few rows (under 1024) to occupy a GPU one thread each; otherwise one thread per
/// row (`softmax_cols`), e.g. the channel softmax of [N, C, D, H, W], where neighbouring threads
/// read neighbouring voxels.
pub fn softmax<D: DeviceApi>(
    x: &CudaStorage<D>,
    l: &Layout,
    axis: usize,
    log: bool,
) -> Result<CudaStorage<D>> {
    let name = if log { "log_softmax" } else { "softmax" };
    x.require_compute("softmax")?;
    if axis >= l.rank() {
        return Err(HeparError::invalid(
            name,
            format!("axis {axis} out of range for shape {:?}", l.shape()),
        ));
    }
    let numel = l.numel();
    let y = x.alloc_like(numel, x.dtype())?;
    if numel == 0 {
        return Ok(y);
    }
    let len = l.shape()[axis];
    let step = l.strides()[axis];
    let inner: usize = l.shape()[axis + 1..].iter().product();
    let rows = numel / len;
    let mut reduced = vec![false; l.rank()];
    reduced[axis] = true;
    let (kept, _) = split(l, &reduced);
    let ctx = x.context();
    let args = [
        x.arg(),
        StridedView::new(name, &kept)?.arg(),
        (step as i64).into(),
        y.arg(),
        (rows as i64).into(),
        (len as i64).into(),
        (inner as i64).into(),
        i32::from(log).into(),
    ];
    let block_per_row = len >= 1024 || (len >= 64 && (step == 1 || rows < 1024));
    if block_per_row {
        let config = block_per_item(x, rows, block_threads(x, len));
        ctx.launch(FILE, &x.kernel_name("softmax_rows"), &config, &args)?;
    } else {
        ctx.launch(
            FILE,
            &x.kernel_name("softmax_cols"),
            &ctx.grid_stride(rows),
            &args,
        )?;
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simplify_drops_unit_axes_and_merges_even_steps() {
        // A contiguous [2, 1, 3, 4] is one run of 24.
        let (s, t) = simplify([(2, 12), (1, 12), (3, 4), (4, 1)].into_iter());
        assert_eq!((s, t), (vec![24], vec![1]));
        // A transposed [4, 3] does not merge.
        let (s, t) = simplify([(4, 1), (3, 4)].into_iter());
        assert_eq!((s, t), (vec![4, 3], vec![1, 4]));
        assert_eq!(simplify([(1, 5)].into_iter()), (vec![], vec![]));
    }

    #[test]
    fn plan_follows_the_dispatch_rule() {
        let lay = |s: &[usize], t: &[usize]| Layout::new(s.to_vec(), t.to_vec(), 0);
        // A whole 64^3 volume: block pieces, then a second pass.
        let (k, r) = (lay(&[], &[]), lay(&[262144], &[1]));
        assert_eq!(
            plan(1, 262144, &k, &r, 256),
            Plan::Rows {
                chunks: 64,
                block: 256
            }
        );
        // Spatial sums of [2, 32, 32768]: 64 blocks, split into 8 pieces each.
        let (k, r) = (lay(&[64], &[32768]), lay(&[32768], &[1]));
        assert_eq!(
            plan(64, 32768, &k, &r, 256),
            Plan::Rows {
                chunks: 8,
                block: 256
            }
        );
        // Summing [1000, 70001] over axis 0: thread per output, coalesced along the kept axis.
        let (k, r) = (lay(&[70001], &[1]), lay(&[1000], &[70001]));
        assert_eq!(plan(70001, 1000, &k, &r, 256), Plan::Cols { chunks: 1 });
        // Short runs, many outputs.
        let (k, r) = (lay(&[100000], &[8]), lay(&[8], &[1]));
        assert_eq!(plan(100000, 8, &k, &r, 256), Plan::Cols { chunks: 1 });
    }
}
