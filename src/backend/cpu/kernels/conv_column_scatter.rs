//! The input gradient of a strided convolution (and so the forward pass of a transposed one, e.g.
//! the classic U-Net's k4 s2 p1 up-convolutions) as one GEMM and a scatter ("col2im"). The
//! gathered path reads, for every input position, every tap of the output gradient, yet under a
//! stride s only 1 / s^d of those taps land on an output position: the rest are zeros that the
//! GEMM multiplies anyway (4x the work at stride 2 in 2D, 8x in 3D). Here
//! `cols[(ci, tap), p] = sum_co w[co, ci, tap] dy[co, p]` is computed over the output positions
//! only, then each column is added into the input position its tap reaches.
//!
//! Tasks own (items, block of input channels): each writes its own planes of the gradient and
//! sums taps in one fixed order, so the bits never depend on the thread count.

use rayon::prelude::*;

use super::conv::{ConvGeometry, SharedMut};
use super::fixed_split::PARALLEL_TASKS;
use super::gemm::{gemm_raw, MatLayout};
use super::scalar::Float;

/// Output positions of the whole batch at or below which one task multiplies all items at once
/// (the deep levels, where one item's plane is a few dozen positions wide).
pub(super) const WHOLE_BATCH_POSITIONS: usize = 4096;
/// The most elements of one task's column block (4 MiB of f32).
const COLUMN_BLOCK_ELEMENTS: usize = 1 << 20;

/// Whether the input gradient of `geom` goes here: some stride above 1, where the gathered path
/// multiplies zeros.
pub(super) fn applies(geom: &ConvGeometry) -> bool {
    geom.stride.iter().any(|&s| s > 1)
}

/// For one spatial axis and each tap: the output positions `lo..hi` whose input coordinate
/// `o * stride + offset` falls inside the input.
struct AxisReach {
    stride: usize,
    /// Per tap: (lo, hi, offset = tap * dilation - padding).
    taps: Vec<(usize, usize, isize)>,
}

impl AxisReach {
    fn new(geom: &ConvGeometry, axis: usize, out_len: usize) -> Self {
        let (stride, input) = (geom.stride[axis], geom.input[axis] as isize);
        let taps = (0..geom.kernel[axis])
            .map(|k| {
                let offset = (k * geom.dilation[axis]) as isize - geom.padding[axis] as isize;
                let s = stride as isize;
                // Smallest o with o * s + offset >= 0; one past the largest with it < input.
                let lo = if offset >= 0 {
                    0
                } else {
                    (-offset + s - 1) / s
                };
                let hi = if input - offset <= 0 {
                    0
                } else {
                    (input - offset + s - 1) / s
                };
                let lo = (lo as usize).min(out_len);
                (lo, (hi as usize).clamp(lo, out_len), offset)
            })
            .collect();
        AxisReach { stride, taps }
    }
}

/// `grad_input` [batch, in_channels, input] from `grad_out` [batch, out_channels, output()] and
/// `weight` [out_channels, in_channels / groups, kernel]; sizes checked by the caller.
pub(super) fn backward_input<T: Float>(
    geom: &ConvGeometry,
    grad_out: &[T],
    weight: &[T],
    grad_input: &mut [T],
) {
    let (batch, groups) = (geom.batch, geom.groups);
    let (cig, cog) = (geom.in_channels / groups, geom.out_channels / groups);
    let taps: usize = geom.kernel.iter().product();
    let out_dims = geom.output();
    let out_plane: usize = out_dims.iter().product();
    let in_plane: usize = geom.input.iter().product();
    let items = if batch * out_plane <= WHOLE_BATCH_POSITIONS {
        batch
    } else {
        1
    };
    let width = items * out_plane;
    let chunks = batch / items;
    let wanted_blocks = PARALLEL_TASKS.div_ceil(groups * chunks);
    let per_block = (COLUMN_BLOCK_ELEMENTS / (taps * width).max(1))
        .min(cig.div_ceil(wanted_blocks))
        .clamp(1, cig);
    let blocks = cig.div_ceil(per_block);
    let packed = (items > 1).then(|| group_major(geom, grad_out, out_plane));
    let reach: [AxisReach; 3] = std::array::from_fn(|a| AxisReach::new(geom, a, out_dims[a]));
    let dx_ptr = SharedMut(grad_input.as_mut_ptr());
    (0..groups * chunks * blocks)
        .into_par_iter()
        .for_each_init(Vec::<T>::new, |cols, task| {
            let (g, rest) = (task / (chunks * blocks), task % (chunks * blocks));
            let (chunk, block) = (rest / blocks, rest % blocks);
            let ci0 = block * per_block;
            let len = per_block.min(cig - ci0);
            // The output gradient of group g for this chunk's items as [cog, width].
            let dy = match &packed {
                Some(p) => &p[g * cog * width..],
                None => &grad_out[(chunk * groups + g) * cog * out_plane..],
            };
            cols.resize(len * taps * width, T::zero());
            // SAFETY: weight rows (ci, tap) of group g as a transposed view: row ci * taps + tap
            // is contiguous with the next, columns (output channels) cig * taps apart; every
            // view stays inside `weight`, `dy` and `cols`.
            unsafe {
                gemm_raw(
                    weight[(g * cog * cig + ci0) * taps..].as_ptr(),
                    MatLayout {
                        rows: len * taps,
                        cols: cog,
                        row_stride: 1,
                        col_stride: (cig * taps) as isize,
                    },
                    dy.as_ptr(),
                    MatLayout::row_major(cog, width),
                    cols.as_mut_ptr(),
                    MatLayout::row_major(len * taps, width),
                    false,
                );
            }
            for i in 0..items {
                let n = chunk * items + i;
                for c in 0..len {
                    let channel = g * cig + ci0 + c;
                    // SAFETY: this task alone writes input channels ci0 .. ci0 + len of group g
                    // for its items; the caller checked `grad_input` holds every plane.
                    let plane = unsafe {
                        std::slice::from_raw_parts_mut(
                            dx_ptr
                                .get()
                                .add((n * geom.in_channels + channel) * in_plane),
                            in_plane,
                        )
                    };
                    let rows = &cols[c * taps * width..(c + 1) * taps * width];
                    scatter_plane(geom, &reach, &out_dims, rows, i * out_plane, width, plane);
                }
            }
        });
}

/// `grad_out` reordered as [groups, cog, batch, out_plane], so that each group's gradient over the
/// whole batch is one [cog, batch * out_plane] matrix.
fn group_major<T: Float>(geom: &ConvGeometry, grad_out: &[T], out_plane: usize) -> Vec<T> {
    let (batch, groups) = (geom.batch, geom.groups);
    let cog = geom.out_channels / groups;
    let mut packed = vec![T::zero(); grad_out.len()];
    for n in 0..batch {
        for g in 0..groups {
            for co in 0..cog {
                let from = &grad_out[((n * groups + g) * cog + co) * out_plane..][..out_plane];
                let to = ((g * cog + co) * batch + n) * out_plane;
                packed[to..to + out_plane].copy_from_slice(from);
            }
        }
    }
    packed
}

/// Writes one input channel's plane: the sum, tap by tap in weight order, of the column rows
/// `rows` ([taps, width], this item's positions starting at column `first`) at the input
/// positions their taps reach.
fn scatter_plane<T: Float>(
    geom: &ConvGeometry,
    reach: &[AxisReach; 3],
    out_dims: &[usize; 3],
    rows: &[T],
    first: usize,
    width: usize,
    plane: &mut [T],
) {
    plane.fill(T::zero());
    let [_, ih, iw] = geom.input;
    let [_, oh, ow] = *out_dims;
    let mut tap = 0;
    for &(d_lo, d_hi, d_off) in &reach[0].taps {
        for &(h_lo, h_hi, h_off) in &reach[1].taps {
            for &(w_lo, w_hi, w_off) in &reach[2].taps {
                let row = &rows[tap * width + first..];
                tap += 1;
                for od in d_lo..d_hi {
                    let id = (od * reach[0].stride) as isize + d_off;
                    for oh_i in h_lo..h_hi {
                        let ihh = (oh_i * reach[1].stride) as isize + h_off;
                        let src = &row[(od * oh + oh_i) * ow..][w_lo..w_hi];
                        let dst_row = (id as usize * ih + ihh as usize) * iw;
                        let start =
                            (dst_row as isize + (w_lo * reach[2].stride) as isize + w_off) as usize;
                        let step = reach[2].stride;
                        for (j, &v) in src.iter().enumerate() {
                            plane[start + j * step] += v;
                        }
                    }
                }
            }
        }
    }
}
