//! Transposed convolutions whose kernel equals their stride (the U-Nets' k2 s2 up-convolutions):
//! the output tiles do not overlap, so each input position writes one kernel-sized tile of its
//! own and the whole op is one GEMM per batch item plus a rearrangement ("pixel shuffle").
//! The general path runs them as an adjoint convolution through the direct kernels, which at
//! hundreds of channels reach a fraction of the GEMM's speed.
//!
//! Matrices per batch item (P input positions, K kernel taps, groups = 1):
//! weight W [Ci, Co*K] as stored; input X [Ci, P]; tiles T [Co*K, P] with
//! T[(co, tap), p] = output at position p's tile, tap `tap`, channel co.
//! forward T = W^T X; input gradient dX = W T(dY); weight gradient dW = sum over items X T(dY)^T.
//! On large planes the backward passes gather T(dY) transposed, as R = T(dY)^T [P, Co*K] (one
//! row per input position): the `gemm` crate reads a [Co*K, P] operand there with a stride of P
//! per reduction step and ran 3-4x slower (64 -> 64 channels at 256^2: 33 against 126 GFLOP/s).

use super::gemm::{gemm, MatLayout};
use super::scalar::Float;
use crate::backend::geometry::ConvTransposeGeometry;
use rayon::prelude::*;

/// Whether this geometry has non-overlapping tiles that cover the output exactly.
pub fn applies(g: &ConvTransposeGeometry) -> bool {
    g.groups == 1
        && g.kernel == g.stride
        && g.padding == [0; 3]
        && g.dilation == [1; 3]
        && g.output_padding == [0; 3]
}

struct Shape {
    in_channels: usize,
    out_channels: usize,
    input: [usize; 3],
    kernel: [usize; 3],
    positions: usize,
    taps: usize,
}

impl Shape {
    fn of(g: &ConvTransposeGeometry) -> Self {
        Shape {
            in_channels: g.in_channels,
            out_channels: g.out_channels,
            input: g.input,
            kernel: g.kernel,
            positions: g.input.iter().product(),
            taps: g.kernel.iter().product(),
        }
    }
    fn item_in(&self) -> usize {
        self.in_channels * self.positions
    }
    fn item_out(&self) -> usize {
        self.out_channels * self.taps * self.positions
    }
    fn tile_rows(&self) -> usize {
        self.out_channels * self.taps
    }
    /// Visits every (tile row, input position, output offset within one channel's plane) of one
    /// output channel, in tile-row order.
    fn for_each_tap_of_channel(&self, mut visit: impl FnMut(usize, usize, usize)) {
        let [iz, iy, ix] = self.input;
        let [kz, ky, kx] = self.kernel;
        let (oy, ox) = (iy * ky, ix * kx);
        for a in 0..kz {
            for b in 0..ky {
                for c in 0..kx {
                    let tap = (a * ky + b) * kx + c;
                    for z in 0..iz {
                        for y in 0..iy {
                            let row_base = ((z * kz + a) * oy + y * ky + b) * ox + c;
                            let p_base = (z * iy + y) * ix;
                            for x in 0..ix {
                                visit(tap, p_base + x, row_base + x * kx);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Scatters one item's tiles [Co*K, P] into its output [Co, out positions].
fn tiles_to_output<T: Float>(s: &Shape, tiles: &[T], out: &mut [T]) {
    let plane = s.taps * s.positions;
    out.par_chunks_mut(plane)
        .enumerate()
        .for_each(|(co, out_plane)| {
            let channel_tiles = &tiles[co * plane..(co + 1) * plane];
            s.for_each_tap_of_channel(|tap, p, o| {
                out_plane[o] = channel_tiles[tap * s.positions + p];
            });
        });
}

/// Input positions from which the backward passes gather position rows rather than tiles,
/// measured on AVX2 (2026-12-07, batch 2, k2 s2): 64 -> 64 channels at 256^2 input gradient
/// 0.164 -> 0.074 s, weight gradient 0.177 -> 0.090; 128 -> 64 at 128^2 0.049 -> 0.026 (weight);
/// at 64^2 and below the rows' strided writes cost more than they save (512 -> 256 at 32^2:
/// 0.014 -> 0.021).
const POSITION_ROWS_FROM: usize = 128 * 128;

/// Gathers one item's output gradient [Co, out positions] into tiles [Co*K, P].
fn output_to_tiles<T: Float>(s: &Shape, grad_out: &[T], tiles: &mut [T]) {
    let plane = s.taps * s.positions;
    tiles
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(co, channel_tiles)| {
            let go_plane = &grad_out[co * plane..(co + 1) * plane];
            s.for_each_tap_of_channel(|tap, p, o| {
                channel_tiles[tap * s.positions + p] = go_plane[o];
            });
        });
}

/// Gathers one item's output gradient as the matrix T(dY) [Co*K, P] into `buf` and returns its
/// layout there: tiles, or position rows on large planes.
fn gather_output_gradient<T: Float>(s: &Shape, grad_out: &[T], buf: &mut [T]) -> MatLayout {
    if s.positions >= POSITION_ROWS_FROM {
        output_to_position_rows(s, grad_out, buf);
        MatLayout::row_major(s.positions, s.tile_rows()).t()
    } else {
        output_to_tiles(s, grad_out, buf);
        MatLayout::row_major(s.tile_rows(), s.positions)
    }
}

/// Gathers one item's output gradient [Co, out positions] into position rows [P, Co*K]: row p
/// holds the tile that input position p wrote, channel by channel.
fn output_to_position_rows<T: Float>(s: &Shape, grad_out: &[T], rows: &mut [T]) {
    let [_, iy, ix] = s.input;
    let [kz, ky, kx] = s.kernel;
    let (oy, ox) = (iy * ky, ix * kx);
    let (plane, width) = (s.taps * s.positions, s.tile_rows());
    rows.par_chunks_mut(ix * width)
        .enumerate()
        .for_each(|(r, block)| {
            let (z, y) = (r / iy, r % iy);
            for co in 0..s.out_channels {
                let go_plane = &grad_out[co * plane..(co + 1) * plane];
                for a in 0..kz {
                    for b in 0..ky {
                        for c in 0..kx {
                            let column = co * s.taps + (a * ky + b) * kx + c;
                            let base = ((z * kz + a) * oy + y * ky + b) * ox + c;
                            for x in 0..ix {
                                block[x * width + column] = go_plane[base + x * kx];
                            }
                        }
                    }
                }
            }
        });
}

/// `out = conv_transpose(input, weight)` (bias added by the caller).
pub fn forward<T: Float>(g: &ConvTransposeGeometry, input: &[T], weight: &[T], out: &mut [T]) {
    let s = Shape::of(g);
    let mut tiles = vec![T::zero(); s.item_out()];
    let w_t = MatLayout::row_major(s.in_channels, s.tile_rows()).t();
    let x = MatLayout::row_major(s.in_channels, s.positions);
    let t = MatLayout::row_major(s.tile_rows(), s.positions);
    for (x_item, out_item) in input.chunks(s.item_in()).zip(out.chunks_mut(s.item_out())) {
        gemm(weight, w_t, x_item, x, &mut tiles, t, false);
        tiles_to_output(&s, &tiles, out_item);
    }
}

/// Gradient with respect to the input.
pub fn backward_input<T: Float>(
    g: &ConvTransposeGeometry,
    grad_out: &[T],
    weight: &[T],
    grad_input: &mut [T],
) {
    let s = Shape::of(g);
    let mut tiles = vec![T::zero(); s.item_out()];
    let w = MatLayout::row_major(s.in_channels, s.tile_rows());
    let dx = MatLayout::row_major(s.in_channels, s.positions);
    for (go_item, dx_item) in grad_out
        .chunks(s.item_out())
        .zip(grad_input.chunks_mut(s.item_in()))
    {
        let t = gather_output_gradient(&s, go_item, &mut tiles);
        gemm(weight, w, &tiles, t, dx_item, dx, false);
    }
}

/// Gradient with respect to the weight [Ci, Co, K]; items are summed in order, so the bits do
/// not depend on the thread count.
pub fn backward_weight<T: Float>(
    g: &ConvTransposeGeometry,
    input: &[T],
    grad_out: &[T],
    grad_weight: &mut [T],
) {
    let s = Shape::of(g);
    let mut tiles = vec![T::zero(); s.item_out()];
    let x = MatLayout::row_major(s.in_channels, s.positions);
    let dw = MatLayout::row_major(s.in_channels, s.tile_rows());
    for (item, (x_item, go_item)) in input
        .chunks(s.item_in())
        .zip(grad_out.chunks(s.item_out()))
        .enumerate()
    {
        let t = gather_output_gradient(&s, go_item, &mut tiles);
        gemm(x_item, x, &tiles, t.t(), grad_weight, dw, item > 0);
    }
    if g.batch == 0 {
        grad_weight.iter_mut().for_each(|v| *v = T::zero());
    }
}
