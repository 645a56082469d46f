//! Convolutions whose planes are small next to their channels: the deep levels of a U-Net (512
//! channels at 16x16, 1024 at 8x8). There a per-item column tile is a few dozen positions wide, so
//! every GEMM call repacks the whole weight matrix for a sliver of work, and the direct kernels
//! leave most vector lanes idle. Here the columns of the whole batch are gathered once per group
//! (`[channels * taps, batch * positions]`), so each GEMM multiplies all of them at once, and the
//! work splits over blocks of output rows instead: each task owns its block of the result and sums
//! its whole reduction in one call, so the bits never depend on the thread count.

use rayon::prelude::*;

use super::conv::{ConvGeometry, Gather, SharedMut};
use super::gemm::{gemm_raw, MatLayout};
use super::scalar::Float;

/// The most elements the gathered columns of one group may take (64 MiB of f32).
const MAX_COLUMN_ELEMENTS: usize = 1 << 24;
/// Positions per item at or below which a plane counts as small: 16 x 16 for the forward and
/// input-gradient products, 32 x 32 for the weight gradient (where the direct kernel's reduction
/// over positions is the weaker side sooner).
const MAX_PLANE: usize = 256;
const MAX_PLANE_WEIGHT: usize = 1024;
/// Result rows per task: large enough that the gathered columns, which each task packs for its
/// GEMM, are reused many times.
const ROW_BLOCK: usize = 128;

/// Whether a product with `rows` (channels per group x taps) reduction rows over `positions`
/// positions per item is better served by whole-batch columns. Measured on AVX-512 at the
/// classic U-Net's levels (batch 4, k3): at 8 x 8 and 16 x 16 with 256+ channels the direct and
/// per-item tiled paths reach 17-45 GFLOP/s, this one 45-85.
pub(super) fn wants(rows: usize, positions: usize, batch: usize) -> bool {
    fits(rows, positions, batch, MAX_PLANE)
}

/// Whether the weight gradient goes here: at 32 x 32 too (the direct kernel measured 33-37
/// GFLOP/s there, this path 45-70), and from 16 x 16 down by as much as 10x.
pub(super) fn wants_weight_gradient(rows: usize, positions: usize, batch: usize) -> bool {
    fits(rows, positions, batch, MAX_PLANE_WEIGHT)
}

fn fits(rows: usize, positions: usize, batch: usize, max_plane: usize) -> bool {
    positions <= max_plane && rows >= 256 && rows * positions * batch <= MAX_COLUMN_ELEMENTS
}

/// The columns of group `g` for every batch item: `[src_cpg * taps, batch * positions]`, item
/// `n`'s positions at columns `n * positions ..`.
fn batch_columns<T: Float>(
    batch: usize,
    groups: usize,
    g: usize,
    src: &[T],
    src_cpg: usize,
    gather: &Gather,
) -> Vec<T> {
    let src_plane: usize = gather.src_dims.iter().product();
    let positions: usize = gather.dst_dims.iter().product();
    let rows = src_cpg * gather.taps_len();
    let width = batch * positions;
    let mut col = vec![T::zero(); rows * width];
    let col_ptr = SharedMut(col.as_mut_ptr());
    (0..batch)
        .into_par_iter()
        .for_each_init(Vec::<T>::new, |tile, n| {
            let item = &src[(n * groups + g) * src_cpg * src_plane..][..src_cpg * src_plane];
            tile.resize(rows * positions, T::zero());
            gather.columns(item, src_cpg, 0, positions, tile);
            for r in 0..rows {
                // SAFETY: item n alone writes columns n * positions .. (n + 1) * positions of
                // each row, all inside `col` (rows * width elements).
                unsafe {
                    std::slice::from_raw_parts_mut(
                        col_ptr.get().add(r * width + n * positions),
                        positions,
                    )
                    .copy_from_slice(&tile[r * positions..(r + 1) * positions]);
                }
            }
        });
    col
}

/// `out[n, g m + i, p] = bias + sum_r a_g[i, r] col[r, p]`, as `conv::gathered_product`, with the
/// columns of the whole batch gathered first.
#[allow(clippy::too_many_arguments)]
pub(super) fn product<T: Float>(
    batch: usize,
    groups: usize,
    src: &[T],
    src_cpg: usize,
    gather: &Gather,
    a: &[T],
    m: usize,
    bias: Option<&[T]>,
    out: &mut [T],
) {
    let positions: usize = gather.dst_dims.iter().product();
    let rows = src_cpg * gather.taps_len();
    let width = batch * positions;
    let blocks = m.div_ceil(ROW_BLOCK);
    let out_ptr = SharedMut(out.as_mut_ptr());
    for g in 0..groups {
        let col = batch_columns(batch, groups, g, src, src_cpg, gather);
        (0..blocks)
            .into_par_iter()
            .for_each_init(Vec::<T>::new, |result, block| {
                let i0 = block * ROW_BLOCK;
                let len = ROW_BLOCK.min(m - i0);
                result.resize(len * width, T::zero());
                // SAFETY: the views stay inside `a` (m x rows of group g), `col` and `result`.
                unsafe {
                    gemm_raw(
                        a[(g * m + i0) * rows..].as_ptr(),
                        MatLayout::row_major(len, rows),
                        col.as_ptr(),
                        MatLayout::row_major(rows, width),
                        result.as_mut_ptr(),
                        MatLayout::row_major(len, width),
                        false,
                    );
                }
                for i in 0..len {
                    let channel = g * m + i0 + i;
                    let shift = bias.map_or(T::zero(), |b| b[channel]);
                    for n in 0..batch {
                        let from = &result[i * width + n * positions..][..positions];
                        // SAFETY: this task alone writes channel `channel` of every item; the
                        // caller checked `out` holds batch x groups x m planes of `positions`.
                        let to = unsafe {
                            std::slice::from_raw_parts_mut(
                                out_ptr.get().add(((n * groups * m) + channel) * positions),
                                positions,
                            )
                        };
                        for (t, &f) in to.iter_mut().zip(from) {
                            *t = f + shift;
                        }
                    }
                }
            });
    }
}

/// The weight gradient `grad_weight[g m + i, r] = sum_{n, p} grad_out[n, g m + i, p] col[r, n, p]`,
/// written (not accumulated). Tasks own blocks of the `r` (input channel x tap) axis and reduce
/// over the whole batch in one GEMM.
pub(super) fn weight_gradient<T: Float>(
    geom: &ConvGeometry,
    input: &[T],
    grad_out: &[T],
    grad_weight: &mut [T],
) {
    let (batch, groups) = (geom.batch, geom.groups);
    let cig = geom.in_channels / groups;
    let cog = geom.out_channels / groups;
    let gather = Gather::conv_forward(geom);
    let rows = cig * gather.taps_len();
    let positions: usize = gather.dst_dims.iter().product();
    let width = batch * positions;
    let blocks = rows.div_ceil(ROW_BLOCK * gather.taps_len());
    let block_rows = ROW_BLOCK * gather.taps_len();
    let dw_ptr = SharedMut(grad_weight.as_mut_ptr());
    for g in 0..groups {
        let col = batch_columns(batch, groups, g, input, cig, &gather);
        // grad_out of group g as one [cog, batch * positions] matrix.
        let mut dy = vec![T::zero(); cog * width];
        for n in 0..batch {
            for i in 0..cog {
                let from = &grad_out[((n * groups + g) * cog + i) * positions..][..positions];
                dy[i * width + n * positions..][..positions].copy_from_slice(from);
            }
        }
        (0..blocks).into_par_iter().for_each(|block| {
            let r0 = block * block_rows;
            let len = block_rows.min(rows - r0);
            // SAFETY: this task alone writes columns r0 .. r0 + len of group g's
            // [cog, rows] gradient; the views stay inside `dy`, `col` and `grad_weight`.
            unsafe {
                gemm_raw(
                    dy.as_ptr(),
                    MatLayout::row_major(cog, width),
                    col[r0 * width..].as_ptr(),
                    MatLayout::row_major(len, width).t(),
                    dw_ptr.get().add(g * cog * rows + r0),
                    MatLayout {
                        rows: cog,
                        cols: len,
                        row_stride: rows as isize,
                        col_stride: 1,
                    },
                    false,
                );
            }
        });
    }
}
