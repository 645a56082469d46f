//! 3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3): each 2x2 output tile is
//! `A^T [(G g G^T) . (B^T d B)] A` for the 4x4 input patch `d`, so the channel reduction runs as
//! 16 GEMMs (one per transformed coordinate) with 16 multiplies per tile where direct convolution
//! needs 36: 2.25x fewer FLOPs on the U-Nets' 3x3 layers, which were bound by GEMM speed. 3x3x3
//! kernels take F(2x2x2, 3x3x3) the same way (64 coordinates, 3.375x fewer). The input gradient
//! is the same computation on the output gradient with the kernel flipped and its channels
//! swapped. The weight gradient is the adjoint: per tile, the output gradient transformed by
//! `A dy A^T` times the transformed input, summed over tiles as one GEMM per coordinate, then
//! `G^T dU G` per kernel (measured on AVX2, batch 4: 128 channels at 64^2 0.032 -> 0.021 s,
//! 3D 32 at 48^3 batch 2 0.132 -> 0.078).
//!
//! Tasks own blocks of tiles (counted over the whole batch, so the deep levels' few tiles per item
//! still fill a GEMM); block sizes come from the geometry alone, so the bits never depend on the
//! thread count.

use rayon::prelude::*;

use super::conv::{ConvGeometry, SharedMut};
use super::fixed_split::sum_of_tasks;
use super::gemm::{gemm_raw, MatLayout};
use super::scalar::Float;

/// The most elements of one block's transformed input and product (8 MiB of f32).
const BLOCK_ELEMENTS: usize = 1 << 21;
/// Fewest tiles per block: narrower GEMMs repack the transformed weights for too little work.
const MIN_BLOCK_TILES: usize = 64;
/// Where the transforms pay for themselves, measured on AVX2 (2026-12-06, batch 4, c -> c):
/// 64 channels at 128^2 ran 0.036 -> 0.028 s forward, 128 at 64^2 0.034 -> 0.021, 512 at 16^2
/// 0.042 -> 0.032; 32 channels at 256^2 broke even, and 1024 at 8^2 (16 tiles per item, where
/// transforming a million kernels outweighs the GEMM saved) lost, 0.037 -> 0.060.
const MIN_CHANNELS: usize = 64;
/// With AVX-512 (the own GEMM, against the direct kernels) 32 channels pay already: on the Zen 5
/// EPYC, 2026-12-08, 32 -> 32 at 512^2 batch 2 ran 0.060-0.099 -> 0.049-0.052 s forward and at
/// 256^2 batch 16 0.124-0.136 -> 0.098-0.105 (three alternating runs each; forward + backward
/// was even to better), keras-unet2d-step 3.90 -> 3.36-3.72 s.
const MIN_CHANNELS_AVX512: usize = 32;
const MIN_OUTPUT_POSITIONS: usize = 16 * 16;
/// 3D (F(2x2x2, 3x3x3), 64 coordinates, 3.375x fewer multiplies): the same rule per plane, at
/// least 8 planes deep, from 32 channels (32 -> 32 at 96^3, batch 2: 0.75 -> 0.46 s forward;
/// 128 at 24^3 0.26 -> 0.085; 16 -> 16 at 128^3 broke even, 0.247 -> 0.251).
const MIN_DEPTH: usize = 8;
const MIN_CHANNELS_3D: usize = 32;

/// Whether `geom` runs here: kernel 3x3 (2D) or 3x3x3, stride and dilation 1, one group, padding
/// at most 2 (so the input gradient's padding 2 - p is valid too), 64+ channels each side (32+
/// in 3D, and in 2D with AVX-512), planes of 16 x 16 and up (forward output and input alike, as
/// the input gradient runs on the latter).
pub(super) fn applies(geom: &ConvGeometry) -> bool {
    let out = geom.output();
    let large = |d: &[usize; 3]| {
        d[1] * d[2] >= MIN_OUTPUT_POSITIONS && (geom.kernel[0] == 1 || d[0] >= MIN_DEPTH)
    };
    let flat = geom.input[0] == 1 && geom.kernel[0] == 1 && geom.padding[0] == 0;
    (flat || geom.kernel[0] == 3)
        && geom.kernel[1..] == [3, 3]
        && geom.stride == [1, 1, 1]
        && geom.dilation == [1, 1, 1]
        && geom.padding.iter().all(|&p| p <= 2)
        && geom.groups == 1
        && geom.in_channels.min(geom.out_channels)
            >= if geom.kernel[0] == 3 {
                MIN_CHANNELS_3D
            } else {
                min_channels_2d()
            }
        && large(&out)
        && large(&geom.input)
}

/// The fewest channels a 2D convolution needs here, on this CPU.
fn min_channels_2d() -> usize {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        return MIN_CHANNELS_AVX512;
    }
    MIN_CHANNELS
}

/// One Winograd convolution: `src` [batch, cin, d, h, w] to `dst` [batch, cout, out_d, out_h,
/// out_w]. Without `volumetric` depth is one slice (2D: 4x4 coordinates, 2x2 tiles).
struct Problem {
    batch: usize,
    cin: usize,
    cout: usize,
    src: [usize; 3],
    pad: [usize; 3],
    dst: [usize; 3],
    volumetric: bool,
}

impl Problem {
    /// Patch depth, which is also the transformed coordinates along depth.
    fn depth_coords(&self) -> usize {
        if self.volumetric {
            4
        } else {
            1
        }
    }
    fn coords(&self) -> usize {
        16 * self.depth_coords()
    }
    /// Output tiles per axis (depth: one slice each in 2D).
    fn tiles(&self) -> [usize; 3] {
        let d = if self.volumetric {
            self.dst[0].div_ceil(2)
        } else {
            self.dst[0]
        };
        [d, self.dst[1].div_ceil(2), self.dst[2].div_ceil(2)]
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

/// `G g G^T` (and `G` along depth in 3D) of one kernel given as `at(kz, ky, kx)`: the first 16
/// (2D) or all 64 values, index `(az * 4 + ay) * 4 + ax`. No heap: it runs once per channel pair.
#[inline(always)]
fn transform_kernel<T: Float>(volumetric: bool, at: impl Fn(usize, usize, usize) -> T) -> [T; 64] {
    let half = T::from_f64_lossy(0.5);
    // Along x, then y, per kernel slice: xy[kz][ay][ax].
    let mut xy = [[[T::zero(); 4]; 4]; 3];
    let kd = if volumetric { 3 } else { 1 };
    for (kz, slice) in xy.iter_mut().enumerate().take(kd) {
        let rows: [[T; 4]; 3] = std::array::from_fn(|ky| {
            weight_1d([at(kz, ky, 0), at(kz, ky, 1), at(kz, ky, 2)], half)
        });
        for ax in 0..4 {
            let col = weight_1d([rows[0][ax], rows[1][ax], rows[2][ax]], half);
            for ay in 0..4 {
                slice[ay][ax] = col[ay];
            }
        }
    }
    let mut out = [T::zero(); 64];
    for ay in 0..4 {
        for ax in 0..4 {
            if volumetric {
                let z = weight_1d([xy[0][ay][ax], xy[1][ay][ax], xy[2][ay][ax]], half);
                for (az, &v) in z.iter().enumerate() {
                    out[(az * 4 + ay) * 4 + ax] = v;
                }
            } else {
                out[ay * 4 + ax] = xy[0][ay][ax];
            }
        }
    }
    out
}

/// `U[xi][o][i]` for every (o, i) pair; `kernel(o, i, kz, ky, kx)` gives the kernel that output
/// channel `o` applies to input channel `i`.
fn transform_weights<T: Float>(
    volumetric: bool,
    outs: usize,
    ins: usize,
    kernel: impl Fn(usize, usize, usize, usize, usize) -> T + Sync,
) -> Vec<T> {
    let coords = if volumetric { 64 } else { 16 };
    let mut u = vec![T::zero(); coords * outs * ins];
    let u_ptr = SharedMut(u.as_mut_ptr());
    (0..outs).into_par_iter().for_each(|o| {
        for i in 0..ins {
            let t = transform_kernel(volumetric, |z, y, x| kernel(o, i, z, y, x));
            for (xi, &v) in t[..coords].iter().enumerate() {
                // SAFETY: output channel o's entries are written by this task alone.
                unsafe { *u_ptr.get().add((xi * outs + o) * ins + i) = v };
            }
        }
    });
    u
}

/// The runs of tiles `t0 .. t0 + len` along one tile row: (item, tile slice, tile row, first tile
/// column, tiles in the run, index of its first tile within the block).
fn row_runs(p: &Problem, t0: usize, len: usize) -> impl Iterator<Item = [usize; 6]> {
    let [td, th, tw] = p.tiles();
    let (mut t, end) = (t0, t0 + len);
    std::iter::from_fn(move || {
        if t >= end {
            return None;
        }
        let (tx, rest) = (t % tw, t / tw);
        let (ty, rest) = (rest % th, rest / th);
        let (tz, n) = (rest % td, rest / td);
        let count = (tw - tx).min(end - t);
        let run = [n, tz, ty, tx, count, t - t0];
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

/// `B^T` down four rows of `width` values: `out[a]` from rows `rows[0..4]`, contiguous in x.
#[inline(always)]
fn down_rows<T: Float>(rows: [&[T]; 4], out: &mut [T], width: usize) {
    for x in 0..width {
        let e = input_1d([rows[0][x], rows[1][x], rows[2][x], rows[3][x]]);
        for (a, &v) in e.iter().enumerate() {
            out[a * width + x] = v;
        }
    }
}

/// The transformed input of tiles `t0 .. t0 + len` into `v` ([coords, cin, len]). Per channel
/// and run of tiles, the patch rows are copied with their zero padding, transformed down depth
/// and columns (contiguous in x), then across each tile's four columns.
fn transform_input<T: Float>(p: &Problem, src: &[T], t0: usize, len: usize, v: &mut [T]) {
    let [sd, h, w] = p.src;
    let volume = sd * h * w;
    let zc = p.depth_coords();
    let max_width = 2 * p.tiles()[2] + 2;
    // rows[dz][dy]; after depth: mixed_z[az][dy]; after rows: mixed[az][ay].
    let mut rows = vec![T::zero(); zc * 4 * max_width];
    let mut mixed_z = vec![T::zero(); zc * 4 * max_width];
    let mut mixed = vec![T::zero(); zc * 4 * max_width];
    let mut down = vec![T::zero(); 4 * max_width];
    for [n, tz, ty, tx0, count, j0] in row_runs(p, t0, len) {
        let width = 2 * count + 2;
        let x_start = (2 * tx0) as isize - p.pad[2] as isize;
        // Columns lo..hi of the run's window lie inside the input.
        let lo = ((-x_start).max(0) as usize).min(width);
        let hi = ((w as isize - x_start).max(0) as usize).clamp(lo, width);
        let z0 = if p.volumetric { 2 * tz } else { tz };
        for c in 0..p.cin {
            let chan = &src[(n * p.cin + c) * volume..][..volume];
            for dz in 0..zc {
                let z = (z0 + dz) as isize - p.pad[0] as isize;
                for dy in 0..4 {
                    let row = &mut rows[(dz * 4 + dy) * width..][..width];
                    let y = (2 * ty + dy) as isize - p.pad[1] as isize;
                    if z < 0 || z as usize >= sd || y < 0 || y as usize >= h {
                        row.fill(T::zero());
                        continue;
                    }
                    let from = (z as usize * h + y as usize) * w;
                    row[..lo].fill(T::zero());
                    row[lo..hi].copy_from_slice(
                        &chan[from + (x_start + lo as isize) as usize..][..hi - lo],
                    );
                    row[hi..].fill(T::zero());
                }
            }
            let after_depth: &[T] = if p.volumetric {
                for dy in 0..4 {
                    let r = |dz: usize| &rows[(dz * 4 + dy) * width..][..width];
                    down_rows([r(0), r(1), r(2), r(3)], &mut down, width);
                    for az in 0..4 {
                        mixed_z[(az * 4 + dy) * width..][..width]
                            .copy_from_slice(&down[az * width..][..width]);
                    }
                }
                &mixed_z
            } else {
                &rows
            };
            for az in 0..zc {
                let r = |dy: usize| &after_depth[(az * 4 + dy) * width..][..width];
                down_rows(
                    [r(0), r(1), r(2), r(3)],
                    &mut mixed[az * 4 * width..][..4 * width],
                    width,
                );
            }
            for a in 0..zc * 4 {
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

/// `A^T` over four slices of `count` values: `(q0 + q1 + q2, q1 - q2 - q3)`.
#[inline(always)]
fn reduce_four<T: Float>(q: [&[T]; 4], first: &mut [T], second: &mut [T]) {
    for i in 0..first.len() {
        first[i] = q[0][i] + q[1][i] + q[2][i];
        second[i] = q[1][i] - q[2][i] - q[3][i];
    }
}

/// Writes the output tiles `t0 .. t0 + len` from their products `m` ([coords, cout, len]).
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
    let [od, oh, ow] = p.dst;
    let zc = p.depth_coords();
    let mc = p.tiles()[2];
    // After x: qx[az][ay][x]; after y: qy[az][y][x]; after depth: qz[z][y][x]; each `mc` long.
    let mut qx = vec![T::zero(); zc * 8 * mc];
    let mut qy = vec![T::zero(); zc * 4 * mc];
    let mut qz = vec![T::zero(); 8 * mc];
    let (tile_z, out_z) = if p.volumetric { (2, 2) } else { (1, 1) };
    for [n, tz, ty, tx0, count, j0] in row_runs(p, t0, len) {
        for k in 0..p.cout {
            let shift = bias.map_or(T::zero(), |b| b[k]);
            let at = |xi: usize| &m[(xi * p.cout + k) * len + j0..][..count];
            for a in 0..zc * 4 {
                let (first, second) = qx[a * 2 * mc..][..2 * mc].split_at_mut(mc);
                reduce_four(
                    [at(a * 4), at(a * 4 + 1), at(a * 4 + 2), at(a * 4 + 3)],
                    &mut first[..count],
                    &mut second[..count],
                );
            }
            for az in 0..zc {
                for x in 0..2 {
                    let q = |ay: usize| &qx[((az * 4 + ay) * 2 + x) * mc..][..count];
                    let (y0, y1) = qy[az * 4 * mc..][..4 * mc].split_at_mut(2 * mc);
                    reduce_four(
                        [q(0), q(1), q(2), q(3)],
                        &mut y0[x * mc..][..count],
                        &mut y1[x * mc..][..count],
                    );
                }
            }
            // qy[az][y][x] at ((az * 2 + y) * 2 + x) * mc.
            let result: &[T] = if p.volumetric {
                for yx in 0..4 {
                    let q = |az: usize| &qy[(az * 4 + yx) * mc..][..count];
                    let (z0, z1) = qz.split_at_mut(4 * mc);
                    reduce_four(
                        [q(0), q(1), q(2), q(3)],
                        &mut z0[yx * mc..][..count],
                        &mut z1[yx * mc..][..count],
                    );
                }
                &qz
            } else {
                &qy
            };
            let volume = od * oh * ow;
            let base = dst.get().add((n * p.cout + k) * volume);
            for z in 0..out_z {
                let oz = tz * tile_z + z;
                if oz >= od {
                    continue;
                }
                for y in 0..2 {
                    let oy = 2 * ty + y;
                    if oy >= oh {
                        continue;
                    }
                    let row = base.add((oz * oh + oy) * ow);
                    for x in 0..2 {
                        let vals = &result[((z * 2 + y) * 2 + x) * mc..][..count];
                        for (i, &val) in vals.iter().enumerate() {
                            let ox = 2 * (tx0 + i) + x;
                            if ox < ow {
                                *row.add(ox) = val + shift;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Tiles per block for `p`: as many as the block budget allows, at least `MIN_BLOCK_TILES`.
fn block_tiles(p: &Problem) -> usize {
    let [td, th, tw] = p.tiles();
    (BLOCK_ELEMENTS / (p.coords() * (p.cin + p.cout)))
        .max(MIN_BLOCK_TILES)
        .min(p.batch * td * th * tw)
        .max(1)
}

/// Runs `p` with the transformed weights `u` ([coords, cout, cin]), `per_block` tiles per task.
fn run<T: Float>(
    p: &Problem,
    src: &[T],
    u: &[T],
    bias: Option<&[T]>,
    dst: &mut [T],
    per_block: usize,
) {
    let [td, th, tw] = p.tiles();
    let tiles = p.batch * td * th * tw;
    let blocks = tiles.div_ceil(per_block);
    let coords = p.coords();
    let dst_ptr = SharedMut(dst.as_mut_ptr());
    let block = |scratch: &mut (Vec<T>, Vec<T>), b: usize| {
        let t0 = b * per_block;
        let len = per_block.min(tiles - t0);
        let (v, m) = scratch;
        v.resize(coords * p.cin * len, T::zero());
        m.resize(coords * p.cout * len, T::zero());
        transform_input(p, src, t0, len, v);
        for xi in 0..coords {
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
        // Scratch goes back to a shared pool after each block: rayon's `for_each_init` builds
        // fresh scratch per work split, and zero-filling 2 x 8 MiB each time took 7% of a layer.
        let pool = std::sync::Mutex::new(Vec::new());
        (0..blocks).into_par_iter().for_each(|b| {
            let taken = pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut scratch = taken.unwrap_or_else(|| (Vec::new(), Vec::new()));
            block(&mut scratch, b);
            pool.lock().unwrap_or_else(|e| e.into_inner()).push(scratch);
        });
    } else {
        // Too few blocks to share out: each GEMM spreads over the threads instead.
        let mut scratch = (Vec::new(), Vec::new());
        (0..blocks).for_each(|b| block(&mut scratch, b));
    }
}

/// Kernel taps per axis and the offset of tap (z, y, x) in one (out, in) kernel.
fn tap_index(volumetric: bool, z: usize, y: usize, x: usize) -> usize {
    if volumetric {
        (z * 3 + y) * 3 + x
    } else {
        y * 3 + x
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
    let volumetric = geom.kernel[0] == 3;
    let taps = geom.kernel.iter().product::<usize>();
    let u = transform_weights(volumetric, cout, cin, |o, i, z, y, x| {
        weight[(o * cin + i) * taps + tap_index(volumetric, z, y, x)]
    });
    let p = Problem {
        batch: geom.batch,
        cin,
        cout,
        src: geom.input,
        pad: geom.padding,
        dst: geom.output(),
        volumetric,
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
    let volumetric = geom.kernel[0] == 3;
    let taps = geom.kernel.iter().product::<usize>();
    let last = if volumetric { 2 } else { 0 };
    let u = transform_weights(volumetric, cin, cout, |i, o, z, y, x| {
        weight[(o * cin + i) * taps + tap_index(volumetric, last - z, 2 - y, 2 - x)]
    });
    let pad = |a: usize| {
        if a == 0 && !volumetric {
            0
        } else {
            2 - geom.padding[a]
        }
    };
    let p = Problem {
        batch: geom.batch,
        cin: cout,
        cout: cin,
        src: geom.output(),
        pad: [pad(0), pad(1), pad(2)],
        dst: geom.input,
        volumetric,
    };
    run(&p, grad_out, &u, None, grad_input, block_tiles(&p));
}

/// `A y` for one 2-vector, written as `out[k * stride]` for the four coordinates `k`, over
/// slices of tiles: `(y0, y0 + y1, y0 - y1, -y1)`, the adjoint of the output transform's `A^T`.
#[inline(always)]
fn grad_output_1d<T: Float>(y0: &[T], y1: &[T], out: &mut [T], stride: usize) {
    for (i, (&a, &b)) in y0.iter().zip(y1).enumerate() {
        out[i] = a;
        out[stride + i] = a + b;
        out[2 * stride + i] = a - b;
        out[3 * stride + i] = -b;
    }
}

/// `A dy A^T` (and `A` along depth in 3D) of the output-gradient tiles `t0 .. t0 + len` into `dm`
/// ([coords, cout, len]); positions past the output's edge count as zero.
fn transform_grad_output<T: Float>(p: &Problem, dy: &[T], t0: usize, len: usize, dm: &mut [T]) {
    let [od, oh, ow] = p.dst;
    let volume = od * oh * ow;
    let mc = p.tiles()[2];
    let zo = if p.volumetric { 2 } else { 1 };
    // Even and odd columns of one row; after x: xt[z][y][ax]; after y (3D): yt[z][ay][ax].
    let (mut even, mut odd) = (vec![T::zero(); mc], vec![T::zero(); mc]);
    let mut xt = vec![T::zero(); zo * 8 * mc];
    let mut yt = vec![T::zero(); zo * 16 * mc];
    let plane = p.cout * len;
    for [n, tz, ty, tx0, count, j0] in row_runs(p, t0, len) {
        for o in 0..p.cout {
            let chan = &dy[(n * p.cout + o) * volume..][..volume];
            for z in 0..zo {
                let oz = if p.volumetric { 2 * tz + z } else { tz };
                for y in 0..2 {
                    let oy = 2 * ty + y;
                    for i in 0..count {
                        let ox = 2 * (tx0 + i);
                        let at = |x: usize| {
                            if oz < od && oy < oh && x < ow {
                                chan[(oz * oh + oy) * ow + x]
                            } else {
                                T::zero()
                            }
                        };
                        even[i] = at(ox);
                        odd[i] = at(ox + 1);
                    }
                    let out = &mut xt[(z * 2 + y) * 4 * mc..][..4 * mc];
                    grad_output_1d(&even[..count], &odd[..count], out, mc);
                }
            }
            for z in 0..zo {
                for ax in 0..4 {
                    let row = |y: usize| &xt[((z * 2 + y) * 4 + ax) * mc..][..count];
                    let (y0, y1) = (row(0), row(1));
                    if p.volumetric {
                        let out = &mut yt[(z * 16 + ax) * mc..];
                        grad_output_1d(y0, y1, out, 4 * mc);
                    } else {
                        let out = &mut dm[(ax * p.cout + o) * len + j0..];
                        grad_output_1d(y0, y1, out, 4 * plane);
                    }
                }
            }
            if p.volumetric {
                for s in 0..16 {
                    let (z0, z1) = (&yt[s * mc..][..count], &yt[(16 + s) * mc..][..count]);
                    let out = &mut dm[(s * p.cout + o) * len + j0..];
                    grad_output_1d(z0, z1, out, 16 * plane);
                }
            }
        }
    }
}

/// `G^T u` for one 4-vector: the adjoint of `weight_1d`.
#[inline(always)]
fn weight_grad_1d<T: Float>(u: [T; 4], half: T) -> [T; 3] {
    let (sum, diff) = ((u[1] + u[2]) * half, (u[1] - u[2]) * half);
    [u[0] + sum, diff, sum + u[3]]
}

/// `G^T du G` (and `G^T` along depth in 3D) of one transformed kernel gradient given as
/// `at(xi)`, into the kernel's taps (z, y, x order).
#[inline(always)]
fn untransform_kernel<T: Float>(volumetric: bool, at: impl Fn(usize) -> T, taps: &mut [T]) {
    let half = T::from_f64_lossy(0.5);
    let zc = if volumetric { 4 } else { 1 };
    // Along x, then y, per coordinate slice: xy[az][ky][kx].
    let mut xy = [[[T::zero(); 3]; 3]; 4];
    for (az, slice) in xy.iter_mut().enumerate().take(zc) {
        let rows: [[T; 3]; 4] = std::array::from_fn(|ay| {
            let xi = (az * 4 + ay) * 4;
            weight_grad_1d([at(xi), at(xi + 1), at(xi + 2), at(xi + 3)], half)
        });
        for kx in 0..3 {
            let col = weight_grad_1d([rows[0][kx], rows[1][kx], rows[2][kx], rows[3][kx]], half);
            for ky in 0..3 {
                slice[ky][kx] = col[ky];
            }
        }
    }
    for ky in 0..3 {
        for kx in 0..3 {
            if volumetric {
                let z = weight_grad_1d(
                    [xy[0][ky][kx], xy[1][ky][kx], xy[2][ky][kx], xy[3][ky][kx]],
                    half,
                );
                for (kz, &v) in z.iter().enumerate() {
                    taps[tap_index(true, kz, ky, kx)] = v;
                }
            } else {
                taps[tap_index(false, 0, ky, kx)] = xy[0][ky][kx];
            }
        }
    }
}

/// `dU[xi] = sum over tiles of dM[xi] V[xi]^T` ([coords, cout, cin]) for the forward problem
/// `p`: per block of `per_block` tiles, the transformed input `V` and output gradient `dM`, then
/// one GEMM per coordinate with the block's tiles as its reduction. Blocks add up in a fixed order
/// (`sum_of_tasks`), so the bits do not depend on the thread count.
fn transformed_weight_gradient<T: Float>(
    p: &Problem,
    input: &[T],
    grad_out: &[T],
    per_block: usize,
) -> Vec<T> {
    let [td, th, tw] = p.tiles();
    let tiles = p.batch * td * th * tw;
    let (coords, cin, cout) = (p.coords(), p.cin, p.cout);
    let mut du = vec![T::zero(); coords * cout * cin];
    sum_of_tasks(
        tiles.div_ceil(per_block),
        &mut du,
        || (Vec::new(), Vec::new()),
        |(v, dm): &mut (Vec<T>, Vec<T>), b, acc| {
            let t0 = b * per_block;
            let len = per_block.min(tiles - t0);
            v.resize(coords * cin * len, T::zero());
            dm.resize(coords * cout * len, T::zero());
            transform_input(p, input, t0, len, v);
            transform_grad_output(p, grad_out, t0, len, dm);
            for xi in 0..coords {
                // SAFETY: the views stay inside `dm`, `v` and this run's own accumulator.
                unsafe {
                    gemm_raw(
                        dm[xi * cout * len..].as_ptr(),
                        MatLayout::row_major(cout, len),
                        v[xi * cin * len..].as_ptr(),
                        MatLayout::row_major(cin, len).t(),
                        acc[xi * cout * cin..].as_mut_ptr(),
                        MatLayout::row_major(cout, cin),
                        true,
                    );
                }
            }
        },
    );
    du
}

/// The weight gradient (sizes checked by the caller): each kernel's gradient is `G^T dU G` of
/// its transformed gradient `dU`.
pub(super) fn backward_weight<T: Float>(
    geom: &ConvGeometry,
    input: &[T],
    grad_out: &[T],
    grad_weight: &mut [T],
) {
    let volumetric = geom.kernel[0] == 3;
    let p = Problem {
        batch: geom.batch,
        cin: geom.in_channels,
        cout: geom.out_channels,
        src: geom.input,
        pad: geom.padding,
        dst: geom.output(),
        volumetric,
    };
    let du = transformed_weight_gradient(&p, input, grad_out, block_tiles(&p));
    let taps = geom.kernel.iter().product::<usize>();
    let pairs = p.cout * p.cin;
    grad_weight
        .par_chunks_mut(taps)
        .enumerate()
        .for_each(|(pair, kernel)| {
            untransform_kernel(volumetric, |xi| du[xi * pairs + pair], kernel)
        });
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
            src: [1, 9, 11],
            pad: [0, 1, 2],
            dst: [1, 9, 13],
            volumetric: false,
        };
        let src: Vec<f64> = random(p.batch * p.cin * 99, 1);
        let u: Vec<f64> = random(p.coords() * p.cout * p.cin, 2);
        let bias: Vec<f64> = random(p.cout, 3);
        let len = p.batch * p.cout * 9 * 13;
        let (mut whole, mut split) = (vec![0.0; len], vec![0.0; len]);
        run(&p, &src, &u, Some(&bias), &mut whole, block_tiles(&p));
        let tiles = p.batch * 5 * 7;
        assert_eq!(block_tiles(&p), tiles);
        run(&p, &src, &u, Some(&bias), &mut split, 11);
        assert!(tiles.div_ceil(11) >= 4 && tiles % 11 != 0);
        assert_near(&whole, &split);
        let dy: Vec<f64> = random(len, 4);
        assert_near(
            &transformed_weight_gradient(&p, &src, &dy, block_tiles(&p)),
            &transformed_weight_gradient(&p, &src, &dy, 11),
        );
    }

    fn assert_near(whole: &[f64], split: &[f64]) {
        assert_eq!(whole.len(), split.len());
        for (i, (a, b)) in whole.iter().zip(split).enumerate() {
            assert!(
                (a - b).abs() <= 1e-12 * (1.0 + a.abs()),
                "element {i}: {a} vs {b}"
            );
        }
    }
}
