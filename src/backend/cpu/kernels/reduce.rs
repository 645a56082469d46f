//! Reductions over a set of axes, with the reduced axes kept as size 1 in the output.

use super::elementwise::StridedCursor;
use super::fixed_split::ordered_chunk_sum;
use super::scalar::Float;
use crate::backend::ops::ReduceOp;
use crate::tensor::layout::Layout;
use rayon::prelude::*;

/// Splits a layout into (kept axes view, reduced axes view) so each output element reduces one
/// contiguous run of the permuted view. Returns the output shape with reduced axes set to 1.
fn split_axes(layout: &Layout, axes: &[usize]) -> (Layout, Vec<usize>, usize, usize) {
    let rank = layout.rank();
    let kept: Vec<usize> = (0..rank).filter(|a| !axes.contains(a)).collect();
    let order: Vec<usize> = kept.iter().copied().chain(axes.iter().copied()).collect();
    let permuted = layout
        .permute("reduce", &order)
        .expect("axes validated by the caller");
    let outer: usize = kept.iter().map(|&a| layout.shape()[a]).product();
    let inner: usize = axes.iter().map(|&a| layout.shape()[a]).product();
    let mut out_shape = layout.shape().to_vec();
    for &a in axes {
        out_shape[a] = 1;
    }
    (permuted, out_shape, outer, inner)
}

/// Combines two partial results of a reduction.
#[inline(always)]
fn combine<T: Float>(op: ReduceOp, acc: T, v: T) -> T {
    match op {
        ReduceOp::Sum => acc + v,
        // NaN propagates, as in PyTorch.
        ReduceOp::Max => {
            if v > acc || v.is_nan() {
                v
            } else {
                acc
            }
        }
        ReduceOp::Min => {
            if v < acc || v.is_nan() {
                v
            } else {
                acc
            }
        }
    }
}

fn identity<T: Float>(op: ReduceOp) -> T {
    match op {
        ReduceOp::Sum => T::zero(),
        ReduceOp::Max => T::neg_infinity(),
        ReduceOp::Min => T::infinity(),
    }
}

/// Reduces dense data viewed as [outer, len, inner] over the middle axis: the common case of
/// reducing a block of adjacent axes (spatial sums, a batch sum, the CoT mean over k*k maps).
/// Each step reads a contiguous run, so loops vectorise; sums go through f64 per run.
fn reduce_middle<T: Float>(
    x: &[T],
    outer: usize,
    len: usize,
    inner: usize,
    op: ReduceOp,
) -> Vec<T> {
    let mut out = vec![identity::<T>(op); outer * inner];
    if inner == 1 {
        // Each output reduces one contiguous run.
        let run = |(o, slot): (usize, &mut T)| {
            let src = &x[o * len..(o + 1) * len];
            *slot = match op {
                ReduceOp::Sum => T::from_f64_lossy(
                    src.chunks(256)
                        .map(|c| c.iter().fold(T::zero(), |a, &v| a + v).to_f64_lossless())
                        .sum(),
                ),
                _ => src
                    .iter()
                    .fold(identity::<T>(op), |a, &v| combine(op, a, v)),
            };
        };
        if outer > 1 && outer * len >= 1 << 15 {
            out.par_iter_mut().enumerate().for_each(run);
        } else if outer == 1 && len >= 1 << 16 && op == ReduceOp::Sum {
            let total = ordered_chunk_sum(&x[..len], 1 << 14, |c| {
                c.iter().map(|v| v.to_f64_lossless()).sum::<f64>()
            });
            out[0] = T::from_f64_lossy(total);
        } else {
            out.iter_mut().enumerate().for_each(run);
        }
        return out;
    }
    // Several outputs per outer index: accumulate whole inner runs, split across threads by
    // output position so each thread owns its slice of the result.
    let tile = 4096.min(inner);
    let tiles_per_outer = inner.div_ceil(tile);
    let work = |(t, dst): (usize, &mut [T])| {
        let (o, i0) = (t / tiles_per_outer, (t % tiles_per_outer) * tile);
        let mut acc = vec![0.0f64; dst.len()];
        for k in 0..len {
            let src = &x[(o * len + k) * inner + i0..(o * len + k) * inner + i0 + dst.len()];
            match op {
                ReduceOp::Sum => acc
                    .iter_mut()
                    .zip(src)
                    .for_each(|(a, &v)| *a += v.to_f64_lossless()),
                _ => dst
                    .iter_mut()
                    .zip(src)
                    .for_each(|(d, &v)| *d = combine(op, *d, v)),
            }
        }
        if op == ReduceOp::Sum {
            dst.iter_mut()
                .zip(&acc)
                .for_each(|(d, &a)| *d = T::from_f64_lossy(a));
        }
    };
    // Tiles never straddle two outer indices: chunk each outer row separately.
    let chunks: Vec<(usize, &mut [T])> = out
        .chunks_mut(inner)
        .flat_map(|row| row.chunks_mut(tile))
        .enumerate()
        .collect();
    if outer * len * inner >= 1 << 15 {
        chunks.into_par_iter().for_each(work);
    } else {
        chunks.into_iter().for_each(work);
    }
    out
}

/// Reduces `x` over `axes` (sorted, unique, validated). f32 sums accumulate in f64.
pub fn reduce<T: Float>(
    x: &[T],
    layout: &Layout,
    axes: &[usize],
    op: ReduceOp,
) -> (Vec<T>, Vec<usize>) {
    let adjacent = axes.windows(2).all(|w| w[1] == w[0] + 1);
    if let (Some(r), true, Some(&first), Some(&last)) = (
        layout.contiguous_range(),
        adjacent,
        axes.first(),
        axes.last(),
    ) {
        let shape = layout.shape();
        let (outer, len, inner) = (
            shape[..first].iter().product(),
            shape[first..=last].iter().product(),
            shape[last + 1..].iter().product(),
        );
        let mut out_shape = shape.to_vec();
        for &a in axes {
            out_shape[a] = 1;
        }
        // Empty reductions (len 0) and empty outputs (inner 0) take the general path below.
        if len > 0 && inner > 0 {
            return (reduce_middle(&x[r], outer, len, inner, op), out_shape);
        }
    }
    let (permuted, out_shape, outer, inner) = split_axes(layout, axes);
    let mut out = vec![T::zero(); outer];
    let reduce_run = |o: usize, slot: &mut T| {
        let mut cur = StridedCursor::new(&permuted, o * inner);
        *slot = match op {
            ReduceOp::Sum => {
                let mut acc = 0.0f64;
                for _ in 0..inner {
                    acc += x[cur.next_index()].to_f64_lossless();
                }
                T::from_f64_lossy(acc)
            }
            ReduceOp::Max => {
                let mut acc = T::neg_infinity();
                for _ in 0..inner {
                    let v = x[cur.next_index()];
                    // NaN propagates, as in PyTorch.
                    if v > acc || v.is_nan() {
                        acc = v;
                    }
                }
                acc
            }
            ReduceOp::Min => {
                let mut acc = T::infinity();
                for _ in 0..inner {
                    let v = x[cur.next_index()];
                    if v < acc || v.is_nan() {
                        acc = v;
                    }
                }
                acc
            }
        };
    };
    if outer * inner >= 1 << 15 && outer > 1 {
        out.par_iter_mut()
            .enumerate()
            .for_each(|(o, slot)| reduce_run(o, slot));
    } else if outer == 1 && inner >= 1 << 16 && op == ReduceOp::Sum && permuted.is_contiguous() {
        // One long contiguous sum: split it across threads, partial sums added in order.
        let start = permuted.offset();
        let total = ordered_chunk_sum(&x[start..start + inner], 1 << 14, |c| {
            c.iter().map(|v| v.to_f64_lossless()).sum::<f64>()
        });
        out[0] = T::from_f64_lossy(total);
    } else {
        for (o, slot) in out.iter_mut().enumerate() {
            reduce_run(o, slot);
        }
    }
    (out, out_shape)
}

/// Softmax along a middle axis of dense data viewed as [outer, len, inner]: every step runs over
/// a contiguous run of `inner` values, so it vectorises (e.g. the channel softmax of [N, C, D, H, W]).
fn softmax_middle_axis<T: Float>(x: &[T], len: usize, inner: usize, log: bool) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    let plane = len * inner;
    let run = |(src, dst): (&[T], &mut [T])| {
        let mut max = src[..inner].to_vec();
        for k in 1..len {
            for (m, &v) in max.iter_mut().zip(&src[k * inner..(k + 1) * inner]) {
                *m = m.max(v);
            }
        }
        let mut sum = vec![T::zero(); inner];
        for k in 0..len {
            let (s, d) = (
                &src[k * inner..(k + 1) * inner],
                &mut dst[k * inner..(k + 1) * inner],
            );
            for (((o, &v), &m), acc) in d.iter_mut().zip(s).zip(&max).zip(sum.iter_mut()) {
                let e = (v - m).exp_fast();
                *acc += e;
                *o = if log { v - m } else { e };
            }
        }
        for k in 0..len {
            for (o, &acc) in dst[k * inner..(k + 1) * inner].iter_mut().zip(&sum) {
                *o = if log { *o - acc.ln() } else { *o / acc };
            }
        }
    };
    if x.len() >= 1 << 15 && x.len() > plane {
        x.par_chunks(plane)
            .zip(out.par_chunks_mut(plane))
            .for_each(run);
    } else {
        x.chunks(plane).zip(out.chunks_mut(plane)).for_each(run);
    }
    out
}

/// Values per lane block of `softmax_last_axis`: summed in the element type, then added in f64.
const SOFTMAX_BLOCK: usize = 256;
const SOFTMAX_LANES: usize = 8;

/// The largest value of a slice, in independent lanes so that the loop vectorises.
fn lane_max<T: Float>(row: &[T]) -> T {
    let mut lanes = [T::neg_infinity(); SOFTMAX_LANES];
    let mut chunks = row.chunks_exact(SOFTMAX_LANES);
    for c in &mut chunks {
        for l in 0..SOFTMAX_LANES {
            lanes[l] = lanes[l].max(c[l]);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(T::neg_infinity(), |m, &v| m.max(v));
    lanes.iter().fold(tail, |m, &v| m.max(v))
}

/// Softmax along the last axis of dense data, row by row in place (the CoT attention's softmax
/// over every voxel of a channel): the exponentials and their sum run in SIMD lanes.
fn softmax_last_axis<T: Float>(x: &[T], len: usize, log: bool) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    let run = |(src, dst): (&[T], &mut [T])| {
        let max = lane_max(src);
        let mut sum = 0.0f64;
        for (s, d) in src.chunks(SOFTMAX_BLOCK).zip(dst.chunks_mut(SOFTMAX_BLOCK)) {
            let mut lanes = [T::zero(); SOFTMAX_LANES];
            let pairs = s
                .chunks_exact(SOFTMAX_LANES)
                .zip(d.chunks_exact_mut(SOFTMAX_LANES));
            for (sc, dc) in pairs {
                for l in 0..SOFTMAX_LANES {
                    let e = (sc[l] - max).exp_fast();
                    lanes[l] += e;
                    dc[l] = if log { sc[l] - max } else { e };
                }
            }
            let done = s.len() - s.len() % SOFTMAX_LANES;
            for (o, &v) in d[done..].iter_mut().zip(&s[done..]) {
                let e = (v - max).exp_fast();
                sum += e.to_f64_lossless();
                *o = if log { v - max } else { e };
            }
            sum += lanes.iter().map(|v| v.to_f64_lossless()).sum::<f64>();
        }
        if log {
            let lse = T::from_f64_lossy(sum.ln());
            dst.iter_mut().for_each(|v| *v -= lse);
        } else {
            let inv = T::from_f64_lossy(1.0 / sum);
            dst.iter_mut().for_each(|v| *v *= inv);
        }
    };
    if x.len() >= 1 << 15 && x.len() > len {
        x.par_chunks(len).zip(out.par_chunks_mut(len)).for_each(run);
    } else {
        x.chunks(len).zip(out.chunks_mut(len)).for_each(run);
    }
    out
}

/// Softmax (or log-softmax) along one axis, written densely in the input's logical order.
pub fn softmax<T: Float>(x: &[T], layout: &Layout, axis: usize, log: bool) -> Vec<T> {
    let rank = layout.rank();
    let inner: usize = layout.shape()[axis + 1..].iter().product();
    if let (Some(r), true) = (layout.contiguous_range(), inner >= 16 && layout.numel() > 0) {
        return softmax_middle_axis(&x[r], layout.shape()[axis], inner, log);
    }
    if let (Some(r), true) = (layout.contiguous_range(), inner == 1 && layout.numel() > 0) {
        return softmax_last_axis(&x[r], layout.shape()[axis], log);
    }
    let order: Vec<usize> = (0..rank)
        .filter(|&a| a != axis)
        .chain(std::iter::once(axis))
        .collect();
    let permuted = layout
        .permute("softmax", &order)
        .expect("axis validated by the caller");
    let len = layout.shape()[axis];
    let rows = layout.numel().checked_div(len).unwrap_or(0);
    // Results in permuted order, then scattered back to the logical order.
    let mut out_perm = vec![T::zero(); layout.numel()];
    let row_fn = |r: usize, row: &mut [T]| {
        let mut cur = StridedCursor::new(&permuted, r * len);
        for v in row.iter_mut() {
            *v = x[cur.next_index()];
        }
        let max = row.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
        let mut sum = 0.0f64;
        for v in row.iter_mut() {
            let e = (*v - max).exp();
            sum += e.to_f64_lossless();
            if !log {
                *v = e;
            }
        }
        if log {
            let lse = max + T::from_f64_lossy(sum.ln());
            for v in row.iter_mut() {
                *v -= lse;
            }
        } else {
            let inv = T::from_f64_lossy(1.0 / sum);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    };
    if len > 0 {
        if layout.numel() >= 1 << 15 && rows > 1 {
            out_perm
                .par_chunks_mut(len)
                .enumerate()
                .for_each(|(r, row)| row_fn(r, row));
        } else {
            out_perm
                .chunks_mut(len)
                .enumerate()
                .for_each(|(r, row)| row_fn(r, row));
        }
    }
    if axis == rank - 1 {
        return out_perm;
    }
    // Undo the permutation: view the permuted-dense result with the inverse order.
    let perm_shape: Vec<usize> = order.iter().map(|&a| layout.shape()[a]).collect();
    let mut inverse = vec![0; rank];
    for (i, &a) in order.iter().enumerate() {
        inverse[a] = i;
    }
    let back = Layout::contiguous(&perm_shape)
        .permute("softmax", &inverse)
        .expect("inverse permutation");
    super::elementwise::copy_strided(&out_perm, &back)
}
