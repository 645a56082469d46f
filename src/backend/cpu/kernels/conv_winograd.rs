//! 3x3 stride-1 2D convolutions by Winograd's minimal filtering F(2x2, 3x3): each 2x2 output tile
//! is `A^T [(G g G^T) . (B^T d B)] A` for the 4x4 input patch `d`, so the channel reduction runs
//! as 16 GEMMs (one per transformed coordinate) with 16 multiplies per tile where direct
//! convolution needs 36: 2.25x fewer FLOPs on the U-Nets' 3x3 layers, which were bound by GEMM
//! speed. The input gradient is the same computation on the output gradient with the kernel
//! flipped and its channels swapped.
//!
//! Tasks own blocks of tiles (counted over the whole batch, so the deep levels' few tiles per item
//! still fill a GEMM); block sizes come from the geometry alone, so the bits never depend on the
//! thread count.

use rayon::prelude::*;

use super::conv::{ConvGeometry, SharedMut};
use super::gemm::{gemm_raw, MatLayout};
use super::scalar::Float;

/// Transformed coordinates per tile (4 x 4).
const COORDS: usize = 16;
/// The most elements of one block's transformed input and product (8 MiB of f32).
const BLOCK_ELEMENTS: usize = 1 << 21;
/// Fewest tiles per block: narrower GEMMs repack the transformed weights for too little work.
const MIN_BLOCK_TILES: usize = 64;
/// Where the transforms pay for themselves, measured on AVX2 (2026-12-06, batch 4, c -> c):
/// 64 channels at 128^2 ran 0.036 -> 0.028 s forward, 128 at 64^2 0.034 -> 0.021, 512 at 16^2
/// 0.042 -> 0.032; 32 channels at 256^2 broke even, and 1024 at 8^2 (16 tiles per item, where
/// transforming a million kernels outweighs the GEMM saved) lost, 0.037 -> 0.060.
const MIN_CHANNELS: usize = 64;
const MIN_OUTPUT_POSITIONS: usize = 16 * 16;

/// Whether `geom` runs here: 2D, kernel 3x3, stride and dilation 1, one group, padding at most 2
/// (so the input gradient's padding 2 - p is valid too), 64+ channels each side, planes of 16 x 16
/// and up (forward output and input alike, as the input gradient runs on the latter).
pub(super) fn applies(geom: &ConvGeometry) -> bool {
    let out = geom.output();
    let large = |h: usize, w: usize| h * w >= MIN_OUTPUT_POSITIONS;
    geom.input[0] == 1
        && geom.kernel == [1, 3, 3]
        && geom.stride == [1, 1, 1]
        && geom.dilation == [1, 1, 1]
        && geom.padding[0] == 0
        && geom.padding[1] <= 2
        && geom.padding[2] <= 2
        && geom.groups == 1
        && geom.in_channels.min(geom.out_channels) >= MIN_CHANNELS
        && large(out[1], out[2])
        && large(geom.input[1], geom.input[2])
}

/// One Winograd convolution: `src` [batch, cin, h, w] to `dst` [batch, cout, out_h, out_w].
struct Problem {
    batch: usize,
    cin: usize,
    cout: usize,
    src_hw: [usize; 2],
    pad: [usize; 2],
    dst_hw: [usize; 2],
}

impl Problem {
    fn tiles_hw(&self) -> [usize; 2] {
        [self.dst_hw[0].div_ceil(2), self.dst_hw[1].div_ceil(2)]
    }
}

/// `B^T d` for one 4-vector.
#[inline(always)]
fn input_1d<T: Float>(d: [T; 4]) -> [T; 4] {
    [d[0] - d[2], d[1] + d[2], d[2] - d[1], d[1] - d[3]]
}

/// `G g` for one 3-vector.
#[inline(always)]
fn weight_1d<T: Float>(g: [T; 3], half: T) -> [T; 4] {
    [
        g[0],
        (g[0] + g[1] + g[2]) * half,
        (g[0] - g[1] + g[2]) * half,
        g[2],
    ]
}

/// `U[xi][o][i] = (G g G^T)[xi]` for every (o, i) pair; `kernel(o, i)` gives the 3x3 kernel
/// that output channel `o` applies to input channel `i`.
fn transform_weights<T: Float>(
    outs: usize,
    ins: usize,
    kernel: impl Fn(usize, usize) -> [[T; 3]; 3] + Sync,
) -> Vec<T> {
    let half = T::from_f64_lossy(0.5);
    let mut u = vec![T::zero(); COORDS * outs * ins];
    let u_ptr = SharedMut(u.as_mut_ptr());
    (0..outs).into_par_iter().for_each(|o| {
        for i in 0..ins {
            let g = kernel(o, i);
            // Rows first (G g), then columns ((G g) G^T).
            let rows: [[T; 4]; 3] = std::array::from_fn(|r| weight_1d(g[r], half));
            for b in 0..4 {
                let col = weight_1d([rows[0][b], rows[1][b], rows[2][b]], half);
                for (a, &v) in col.iter().enumerate() {
                    // SAFETY: output channel o's entries are written by this task alone.
                    unsafe { *u_ptr.get().add(((a * 4 + b) * outs + o) * ins + i) = v };
                }
            }
        }
    });
    u
}

/// The runs of tiles `t0 .. t0 + len` along one tile row: (item, tile row, first tile column,
/// tiles in the run, index of its first tile within the block).
fn row_runs(p: &Problem, t0: usize, len: usize) -> impl Iterator<Item = [usize; 5]> {
    let [th, tw] = p.tiles_hw();
    let (mut t, end) = (t0, t0 + len);
    std::iter::from_fn(move || {
        if t >= end {
            return None;
        }
        let (n, ty, tx) = (t / (th * tw), (t / tw) % th, t % tw);
        let count = (tw - tx).min(end - t);
        let run = [n, ty, tx, count, t - t0];
        t += count;
        Some(run)
    })
}

/// `out[i] = f(e[2 i], e[2 i + 1], e[2 i + 2], e[2 i + 3])` for every tile `i` of a run.
#[inline(always)]
fn across_tiles<T: Float>(e: &[T], out: &mut [T], f: impl Fn(T, T, T, T) -> T) {
    for (i, o) in out.iter_mut().enumerate() {
        *o = f(e[2 * i], e[2 * i + 1], e[2 * i + 2], e[2 * i + 3]);
    }
}

/// The transformed input of tiles `t0 .. t0 + len` into `v` ([16, cin, len]). Per channel and
/// run of tiles, the four input rows are copied with their zero padding, transformed down the
/// columns (contiguous), then across each tile's four columns.
fn transform_input<T: Float>(p: &Problem, src: &[T], t0: usize, len: usize, v: &mut [T]) {
    let [h, w] = p.src_hw;
    let plane = h * w;
    let max_width = 2 * p.tiles_hw()[1] + 2;
    let (mut rows, mut mixed) = (
        vec![T::zero(); 4 * max_width],
        vec![T::zero(); 4 * max_width],
    );
    for [n, ty, tx0, count, j0] in row_runs(p, t0, len) {
        let width = 2 * count + 2;
        let x_start = (2 * tx0) as isize - p.pad[1] as isize;
        // Columns lo..hi of the run's window lie inside the input.
        let lo = ((-x_start).max(0) as usize).min(width);
        let hi = ((w as isize - x_start).max(0) as usize).clamp(lo, width);
        for c in 0..p.cin {
            let chan = &src[(n * p.cin + c) * plane..][..plane];
            for dy in 0..4 {
                let row = &mut rows[dy * width..(dy + 1) * width];
                let y = (2 * ty + dy) as isize - p.pad[0] as isize;
                if y < 0 || y as usize >= h {
                    row.fill(T::zero());
                    continue;
                }
                let from = y as usize * w;
                row[..lo].fill(T::zero());
                row[lo..hi]
                    .copy_from_slice(&chan[from + (x_start + lo as isize) as usize..][..hi - lo]);
                row[hi..].fill(T::zero());
            }
            for x in 0..width {
                let e = input_1d([
                    rows[x],
                    rows[width + x],
                    rows[2 * width + x],
                    rows[3 * width + x],
                ]);
                for (a, &val) in e.iter().enumerate() {
                    mixed[a * width + x] = val;
                }
            }
            for a in 0..4 {
                let e = &mixed[a * width..(a + 1) * width];
                let dst = |b: usize| ((a * 4 + b) * p.cin + c) * len + j0;
                across_tiles(e, &mut v[dst(0)..][..count], |d0, _, d2, _| d0 - d2);
                across_tiles(e, &mut v[dst(1)..][..count], |_, d1, d2, _| d1 + d2);
                across_tiles(e, &mut v[dst(2)..][..count], |_, d1, d2, _| d2 - d1);
                across_tiles(e, &mut v[dst(3)..][..count], |_, d1, _, d3| d1 - d3);
            }
        }
    }
}

/// Writes the output tiles `t0 .. t0 + len` from their products `m` ([16, cout, len]).
///
/// # Safety
/// `dst` must hold the whole output, and no other task may write these tiles.
unsafe fn transform_output<T: Float>(
    p: &Problem,
    m: &[T],
    t0: usize,
    len: usize,
    bias: Option<&[T]>,
    dst: SharedMut<T>,
) {
    let [oh, ow] = p.dst_hw;
    let max_count = p.tiles_hw()[1];
    // q[a][x][tile]: the products reduced across each tile's columns.
    let mut q = vec![T::zero(); 8 * max_count];
    for [n, ty, tx0, count, j0] in row_runs(p, t0, len) {
        for k in 0..p.cout {
            let shift = bias.map_or(T::zero(), |b| b[k]);
            for a in 0..4 {
                let at = |b: usize| &m[((a * 4 + b) * p.cout + k) * len + j0..][..count];
                let (m0, m1, m2, m3) = (at(0), at(1), at(2), at(3));
                let (q0, q1) = q[a * 2 * max_count..].split_at_mut(max_count);
                for i in 0..count {
                    q0[i] = m0[i] + m1[i] + m2[i];
                    q1[i] = m1[i] - m2[i] - m3[i];
                }
            }
            let plane = dst.get().add((n * p.cout + k) * oh * ow);
            let qa = |a: usize, x: usize, i: usize| q[(a * 2 + x) * max_count + i];
            for y in 0..2 {
                let oy = 2 * ty + y;
                if oy >= oh {
                    continue;
                }
                let row = plane.add(oy * ow);
                for i in 0..count {
                    for x in 0..2 {
                        let ox = 2 * (tx0 + i) + x;
                        if ox < ow {
                            let val = if y == 0 {
                                qa(0, x, i) + qa(1, x, i) + qa(2, x, i)
                            } else {
                                qa(1, x, i) - qa(2, x, i) - qa(3, x, i)
                            };
                            *row.add(ox) = val + shift;
                        }
                    }
                }
            }
        }
    }
}

/// Tiles per block for `p`: as many as the block budget allows, at least `MIN_BLOCK_TILES`.
fn block_tiles(p: &Problem) -> usize {
    let [th, tw] = p.tiles_hw();
    (BLOCK_ELEMENTS / (COORDS * (p.cin + p.cout)))
        .max(MIN_BLOCK_TILES)
        .min(p.batch * th * tw)
        .max(1)
}

/// Runs `p` with the transformed weights `u` ([16, cout, cin]), `per_block` tiles per task.
fn run<T: Float>(
    p: &Problem,
    src: &[T],
    u: &[T],
    bias: Option<&[T]>,
    dst: &mut [T],
    per_block: usize,
) {
    let [th, tw] = p.tiles_hw();
    let tiles = p.batch * th * tw;
    let blocks = tiles.div_ceil(per_block);
    let dst_ptr = SharedMut(dst.as_mut_ptr());
    let block = |scratch: &mut (Vec<T>, Vec<T>), b: usize| {
        let t0 = b * per_block;
        let len = per_block.min(tiles - t0);
        let (v, m) = scratch;
        v.resize(COORDS * p.cin * len, T::zero());
        m.resize(COORDS * p.cout * len, T::zero());
        transform_input(p, src, t0, len, v);
        for xi in 0..COORDS {
            // SAFETY: the views stay inside `u`, `v` and `m`.
            unsafe {
                gemm_raw(
                    u[xi * p.cout * p.cin..].as_ptr(),
                    MatLayout::row_major(p.cout, p.cin),
                    v[xi * p.cin * len..].as_ptr(),
                    MatLayout::row_major(p.cin, len),
                    m[xi * p.cout * len..].as_mut_ptr(),
                    MatLayout::row_major(p.cout, len),
                    false,
                );
            }
        }
        // SAFETY: block b alone owns tiles t0 .. t0 + len; `dst` holds the whole output.
        unsafe { transform_output(p, m, t0, len, bias, dst_ptr) };
    };
    if blocks >= 4 {
        (0..blocks)
            .into_par_iter()
            .for_each_init(|| (Vec::new(), Vec::new()), block);
    } else {
        // Too few blocks to share out: each GEMM spreads over the threads instead.
        let mut scratch = (Vec::new(), Vec::new());
        (0..blocks).for_each(|b| block(&mut scratch, b));
    }
}

/// Convolution forward (sizes checked by the caller).
pub(super) fn forward<T: Float>(
    geom: &ConvGeometry,
    input: &[T],
    weight: &[T],
    bias: Option<&[T]>,
    out: &mut [T],
) {
    let (cin, cout) = (geom.in_channels, geom.out_channels);
    let u = transform_weights(cout, cin, |o, i| {
        let w = &weight[(o * cin + i) * 9..][..9];
        std::array::from_fn(|r| [w[3 * r], w[3 * r + 1], w[3 * r + 2]])
    });
    let o = geom.output();
    let p = Problem {
        batch: geom.batch,
        cin,
        cout,
        src_hw: [geom.input[1], geom.input[2]],
        pad: [geom.padding[1], geom.padding[2]],
        dst_hw: [o[1], o[2]],
    };
    run(&p, input, &u, bias, out, block_tiles(&p));
}

/// The input gradient: a full correlation of `grad_out` with the flipped kernel (padding 2 - p),
/// input and output channels swapped (sizes checked by the caller).
pub(super) fn backward_input<T: Float>(
    geom: &ConvGeometry,
    grad_out: &[T],
    weight: &[T],
    grad_input: &mut [T],
) {
    let (cin, cout) = (geom.in_channels, geom.out_channels);
    let u = transform_weights(cin, cout, |i, o| {
        let w = &weight[(o * cin + i) * 9..][..9];
        std::array::from_fn(|r| [w[8 - 3 * r], w[7 - 3 * r], w[6 - 3 * r]])
    });
    let o = geom.output();
    let p = Problem {
        batch: geom.batch,
        cin: cout,
        cout: cin,
        src_hw: [o[1], o[2]],
        pad: [2 - geom.padding[1], 2 - geom.padding[2]],
        dst_hw: [geom.input[1], geom.input[2]],
    };
    run(&p, grad_out, &u, None, grad_input, block_tiles(&p));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::test_util::random;

    /// Blocks in parallel (with a short last block) give what one block gives.
    #[test]
    fn block_split_does_not_change_the_result() {
        let p = Problem {
            batch: 2,
            cin: 5,
            cout: 7,
            src_hw: [9, 11],
            pad: [1, 2],
            dst_hw: [9, 13],
        };
        let src: Vec<f64> = random(p.batch * p.cin * 99, 1);
        let u: Vec<f64> = random(COORDS * p.cout * p.cin, 2);
        let bias: Vec<f64> = random(p.cout, 3);
        let len = p.batch * p.cout * 9 * 13;
        let (mut whole, mut split) = (vec![0.0; len], vec![0.0; len]);
        run(&p, &src, &u, Some(&bias), &mut whole, block_tiles(&p));
        let tiles = p.batch * 5 * 7;
        assert_eq!(block_tiles(&p), tiles);
        run(&p, &src, &u, Some(&bias), &mut split, 11);
        assert!(tiles.div_ceil(11) >= 4 && tiles % 11 != 0);
        for (i, (a, b)) in whole.iter().zip(&split).enumerate() {
            assert!(
                (a - b).abs() <= 1e-12 * (1.0 + a.abs()),
                "element {i}: {a} vs {b}"
            );
        }
    }
}
