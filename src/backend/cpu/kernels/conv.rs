//! Convolution (2D and 3D, 2D being 3D with depth 1) in NCDHW layout, forward and both backward
//! passes, plus transposed convolution built from the same pieces.
//!
//! Two implementations behind one interface. f32 on a CPU with AVX-512 runs the direct kernels of
//! `conv_avx512` (no im2col at all). Everything else (f64, other CPUs, kernels wider than 16)
//! runs the portable path here: implicit im2col in bounded spatial tiles. A task owns one (batch
//! item, group, tile of output positions); it gathers the tile's columns into a per-thread buffer
//! of a few hundred KB (never the whole im2col matrix) and multiplies it with the weights through
//! the GEMM wrapper. Backward-input uses the same gather on the output gradient (each input
//! position reads the output positions that touched it), so every task writes a disjoint part of
//! its output and tiles parallelise without atomics. Pointwise convolutions (kernel 1, stride 1,
//! padding 0) skip the gather and multiply straight from the input.

use rayon::prelude::*;

use super::conv_batch_columns as batch_columns;
use super::conv_column_scatter as column_scatter;
use super::conv_winograd as winograd;
use super::fixed_split::{sum_of_tasks, PARALLEL_TASKS, REDUCTION_TASKS};
use super::gemm::{gemm_raw, MatLayout};
use super::scalar::Float;
pub use crate::backend::geometry::{ConvGeometry, ConvTransposeGeometry};

impl ConvGeometry {
    fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1, 1] && self.stride == [1, 1, 1] && self.padding == [0, 0, 0]
    }

    fn assert_valid(&self) {
        if let Err(e) = self.validate() {
            panic!("conv kernel called with an invalid geometry: {e}");
        }
    }
}

/// For one spatial axis: which source coordinate each destination coordinate reads for each kernel
/// tap, or none (padding, or an output position the tap does not land on under a stride).
struct AxisMap {
    dst_len: usize,
    /// `src[tap * dst_len + o]`, negative where nothing is read.
    src: Vec<isize>,
    /// Set when every tap is a plain shift `src = o + shift`, valid on the run `lo..hi`: the row
    /// is then copied rather than gathered. Per tap: (lo, hi, shift).
    shifts: Option<Vec<(usize, usize, isize)>>,
}

impl AxisMap {
    /// Convolution forward: output `o` reads input `o * stride + tap * dilation - padding`.
    fn forward(
        src_len: usize,
        dst_len: usize,
        taps: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
    ) -> Self {
        Self::build(src_len, dst_len, taps, stride == 1, |tap, o| {
            Some((o * stride + tap * dilation) as isize - padding as isize)
        })
    }

    /// The adjoint: input `i` receives from output `(i + padding - tap * dilation) / stride` when
    /// that division is exact.
    fn adjoint(
        src_len: usize,
        dst_len: usize,
        taps: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
    ) -> Self {
        Self::build(src_len, dst_len, taps, stride == 1, |tap, i| {
            let num = (i + padding) as isize - (tap * dilation) as isize;
            (num >= 0 && (num as usize).is_multiple_of(stride)).then(|| num / stride as isize)
        })
    }

    fn build(
        src_len: usize,
        dst_len: usize,
        taps: usize,
        is_shift: bool,
        f: impl Fn(usize, usize) -> Option<isize>,
    ) -> Self {
        let mut src = vec![-1isize; taps * dst_len];
        for tap in 0..taps {
            for o in 0..dst_len {
                if let Some(s) = f(tap, o) {
                    if s >= 0 && (s as usize) < src_len {
                        src[tap * dst_len + o] = s;
                    }
                }
            }
        }
        let shifts = is_shift.then(|| {
            (0..taps)
                .map(|tap| {
                    let row = &src[tap * dst_len..(tap + 1) * dst_len];
                    match row.iter().position(|&s| s >= 0) {
                        None => (0, 0, 0),
                        Some(lo) => {
                            let hi = row.iter().rposition(|&s| s >= 0).map_or(lo, |h| h + 1);
                            (lo, hi, row[lo] - lo as isize)
                        }
                    }
                })
                .collect()
        });
        AxisMap {
            dst_len,
            src,
            shifts,
        }
    }

    #[inline]
    fn src(&self, tap: usize, o: usize) -> isize {
        self.src[tap * self.dst_len + o]
    }

    /// Writes into `out` the values `row` gives destinations `o0 .. o0 + out.len()` for `tap`.
    #[inline]
    fn gather_row<T: Float>(&self, tap: usize, o0: usize, row: &[T], out: &mut [T]) {
        let o1 = o0 + out.len();
        match &self.shifts {
            Some(shifts) => {
                let (lo, hi, shift) = shifts[tap];
                let a = lo.clamp(o0, o1);
                let b = hi.clamp(a, o1);
                out[..a - o0].fill(T::zero());
                if b > a {
                    let s0 = (a as isize + shift) as usize;
                    out[a - o0..b - o0].copy_from_slice(&row[s0..s0 + (b - a)]);
                }
                out[b - o0..].fill(T::zero());
            }
            None => {
                let table = &self.src[tap * self.dst_len + o0..tap * self.dst_len + o1];
                for (v, &s) in out.iter_mut().zip(table) {
                    *v = if s >= 0 { row[s as usize] } else { T::zero() };
                }
            }
        }
    }
}

/// The three axis maps of a gather, with the source and destination spatial sizes.
pub(super) struct Gather {
    maps: [AxisMap; 3],
    taps: [usize; 3],
    pub(super) src_dims: [usize; 3],
    pub(super) dst_dims: [usize; 3],
}

impl Gather {
    pub(super) fn conv_forward(g: &ConvGeometry) -> Self {
        let out = g.output();
        Gather {
            maps: std::array::from_fn(|a| {
                AxisMap::forward(
                    g.input[a],
                    out[a],
                    g.kernel[a],
                    g.stride[a],
                    g.padding[a],
                    g.dilation[a],
                )
            }),
            taps: g.kernel,
            src_dims: g.input,
            dst_dims: out,
        }
    }

    fn conv_adjoint(g: &ConvGeometry) -> Self {
        let out = g.output();
        Gather {
            maps: std::array::from_fn(|a| {
                AxisMap::adjoint(
                    out[a],
                    g.input[a],
                    g.kernel[a],
                    g.stride[a],
                    g.padding[a],
                    g.dilation[a],
                )
            }),
            taps: g.kernel,
            src_dims: out,
            dst_dims: g.input,
        }
    }

    pub(super) fn taps_len(&self) -> usize {
        self.taps.iter().product()
    }

    /// Fills `col` ([channels * taps, len], row-major) with the columns of destination positions
    /// `p0 .. p0 + len`; `src` holds `channels` planes of the source. Row order (channel, kd, kh,
    /// kw) matches the weight layout.
    pub(super) fn columns<T: Float>(
        &self,
        src: &[T],
        channels: usize,
        p0: usize,
        len: usize,
        col: &mut [T],
    ) {
        let [_, sh_len, sw_len] = self.src_dims;
        let src_plane = self.src_dims.iter().product::<usize>();
        let [_, dh, dw] = self.dst_dims;
        let [td, th, tw] = self.taps;
        let end = p0 + len;
        let mut p = p0;
        while p < end {
            let w0 = p % dw;
            let h = (p / dw) % dh;
            let d = p / (dw * dh);
            let seg = (dw - w0).min(end - p);
            let t0 = p - p0;
            let mut r = 0;
            for c in 0..channels {
                let plane = &src[c * src_plane..(c + 1) * src_plane];
                for kd in 0..td {
                    let sd = self.maps[0].src(kd, d);
                    for kh in 0..th {
                        let sh = self.maps[1].src(kh, h);
                        if sd < 0 || sh < 0 {
                            for _ in 0..tw {
                                col[r * len + t0..r * len + t0 + seg].fill(T::zero());
                                r += 1;
                            }
                            continue;
                        }
                        let row_start = (sd as usize * sh_len + sh as usize) * sw_len;
                        let row = &plane[row_start..row_start + sw_len];
                        for kw in 0..tw {
                            self.maps[2].gather_row(
                                kw,
                                w0,
                                row,
                                &mut col[r * len + t0..r * len + t0 + seg],
                            );
                            r += 1;
                        }
                    }
                }
            }
            p += seg;
        }
    }
}

/// The slice as f32 when `T` is f32: the SIMD kernels are written for f32 only.
fn as_f32<T: Float>(s: &[T]) -> Option<&[f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32, so the reinterpretation is the identity.
        .then(|| unsafe { std::slice::from_raw_parts(s.as_ptr() as *const f32, s.len()) })
}

fn as_f32_mut<T: Float>(s: &mut [T]) -> Option<&mut [f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32, so the reinterpretation is the identity.
        .then(|| unsafe { std::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut f32, s.len()) })
}

/// A buffer that parallel tasks write disjoint parts of through raw pointers.
#[derive(Clone, Copy)]
pub(super) struct SharedMut<T>(pub(super) *mut T);
// SAFETY: tasks only ever write disjoint elements (each use says which part is its own).
unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// Through a method, closures capture the whole (Send) wrapper rather than its raw pointer.
    pub(super) fn get(self) -> *mut T {
        self.0
    }
}

/// Positions of the gathered column tile a task works on, whatever its rows. Fewer starve the
/// GEMM (each call packs the whole weight block for the tile); a width that is not a multiple of
/// the GEMM's register tile runs its tails on every call. Measured on AVX2 (2026-12-06): conv3d
/// 128 -> 128 at 16^3 went from 88 to 149 GFLOP/s (tiles of 18 positions before, from a budget
/// of 64 Ki elements), 16 -> 16 at 128^3 from 80 to 121 (151 before); 96 and 192 were no better.
const COLUMN_TILE_POSITIONS: usize = 128;
/// Positions per task when there is no gather (pointwise convolutions).
const POINTWISE_TILE: usize = 4096;

/// Positions per tile: `COLUMN_TILE_POSITIONS` (or `POINTWISE_TILE`), but small enough to make
/// about `tasks` tasks. Never from the pool's size: the tile fixes the GEMM shapes (so the blocking of
/// each sum) and the weight gradient's sum order, so the bits would change with the thread count.
fn tile_len(positions: usize, outer_tasks: usize, pointwise: bool, tasks: usize) -> usize {
    let budget = if pointwise {
        POINTWISE_TILE
    } else {
        COLUMN_TILE_POSITIONS
    };
    let per_outer = tasks.div_ceil(outer_tasks.max(1));
    let for_parallelism = positions.div_ceil(per_outer).max(16);
    budget.min(for_parallelism).min(positions).max(1)
}

/// `out[n, g m + i, p] = bias + sum_r a_g[i, r] col[r, p]` for every batch item `n`, group `g` and
/// destination position `p`, where `col` gathers `src` (with `src_cpg` channels per group) through
/// `gather`, or is `src` itself when `identity`.
#[allow(clippy::too_many_arguments)]
fn gathered_product<T: Float>(
    batch: usize,
    groups: usize,
    src: &[T],
    src_cpg: usize,
    gather: &Gather,
    identity: bool,
    a: &[T],
    m: usize,
    bias: Option<&[T]>,
    out: &mut [T],
) {
    let src_plane = gather.src_dims.iter().product::<usize>();
    let positions = gather.dst_dims.iter().product::<usize>();
    let rows = src_cpg * gather.taps_len();
    let tile = tile_len(positions, batch * groups, identity, PARALLEL_TASKS);
    let tiles = positions.div_ceil(tile);
    let out_ptr = SharedMut(out.as_mut_ptr());
    (0..batch * groups * tiles)
        .into_par_iter()
        .for_each_init(Vec::<T>::new, |col, task| {
            let (ng, t) = (task / tiles, task % tiles);
            let (n, g) = (ng / groups, ng % groups);
            let p0 = t * tile;
            let len = tile.min(positions - p0);
            let src_group = &src[(n * groups + g) * src_cpg * src_plane..][..src_cpg * src_plane];
            let (b_ptr, b_layout) = if identity {
                (
                    src_group[p0..].as_ptr(),
                    MatLayout {
                        rows,
                        cols: len,
                        row_stride: src_plane as isize,
                        col_stride: 1,
                    },
                )
            } else {
                col.resize(rows * len, T::zero());
                gather.columns(src_group, src_cpg, p0, len, &mut col[..rows * len]);
                (col.as_ptr(), MatLayout::row_major(rows, len))
            };
            let out_offset = (n * groups + g) * m * positions + p0;
            let c_layout = MatLayout {
                rows: m,
                cols: len,
                row_stride: positions as isize,
                col_stride: 1,
            };
            // SAFETY: this task alone writes channels g m .. (g+1) m of item n at positions p0..p0+len,
            // all inside `out` (its length was checked by the caller).
            unsafe {
                let c = out_ptr.get().add(out_offset);
                if let Some(bias) = bias {
                    for i in 0..m {
                        std::slice::from_raw_parts_mut(c.add(i * positions), len)
                            .fill(bias[g * m + i]);
                    }
                }
                gemm_raw(
                    a[g * m * rows..].as_ptr(),
                    MatLayout::row_major(m, rows),
                    b_ptr,
                    b_layout,
                    c,
                    c_layout,
                    bias.is_some(),
                );
            }
        });
}

/// Convolution forward: `out` [batch, out_channels, output()] from `input` [batch, in_channels,
/// input], `weight` [out_channels, in_channels / groups, kernel] and an optional `bias`
/// `[out_channels]`.
pub fn conv_forward<T: Float>(
    geom: &ConvGeometry,
    input: &[T],
    weight: &[T],
    bias: Option<&[T]>,
    out: &mut [T],
) {
    geom.assert_valid();
    assert_eq!(input.len(), geom.input_len(), "conv_forward: input length");
    assert_eq!(
        weight.len(),
        geom.weight_len(),
        "conv_forward: weight length"
    );
    assert_eq!(out.len(), geom.output_len(), "conv_forward: output length");
    if let Some(b) = bias {
        assert_eq!(b.len(), geom.out_channels, "conv_forward: bias length");
    }
    if out.is_empty() {
        return;
    }
    if winograd::applies(geom) {
        return winograd::forward(geom, input, weight, bias, out);
    }
    let (cig, taps) = (
        geom.in_channels / geom.groups,
        geom.kernel.iter().product::<usize>(),
    );
    if batch_columns::wants(cig * taps, geom.output().iter().product(), geom.batch) {
        let gather = Gather::conv_forward(geom);
        let cog = geom.out_channels / geom.groups;
        return batch_columns::product(
            geom.batch,
            geom.groups,
            input,
            cig,
            &gather,
            weight,
            cog,
            bias,
            out,
        );
    }
    #[cfg(target_arch = "x86_64")]
    if let (Some(x), Some(w), Some(y)) = (as_f32(input), as_f32(weight), as_f32_mut(out)) {
        if super::conv_avx512::supports(geom) {
            return super::conv_avx512::forward(
                geom,
                x,
                w,
                bias.map(|b| as_f32(b).expect("bias has the input's type")),
                y,
            );
        }
    }
    portable_forward(geom, input, weight, bias, out);
}

/// The forward pass of the portable path (any element type, any CPU); sizes already checked.
fn portable_forward<T: Float>(
    geom: &ConvGeometry,
    input: &[T],
    weight: &[T],
    bias: Option<&[T]>,
    out: &mut [T],
) {
    let gather = Gather::conv_forward(geom);
    let cig = geom.in_channels / geom.groups;
    let cog = geom.out_channels / geom.groups;
    gathered_product(
        geom.batch,
        geom.groups,
        input,
        cig,
        &gather,
        geom.is_pointwise(),
        weight,
        cog,
        bias,
        out,
    );
}

/// Gradient of the convolution with respect to its input: `grad_input` [batch, in_channels, input]
/// from `grad_out` [batch, out_channels, output()].
pub fn conv_backward_input<T: Float>(
    geom: &ConvGeometry,
    grad_out: &[T],
    weight: &[T],
    grad_input: &mut [T],
) {
    geom.assert_valid();
    assert_eq!(
        grad_out.len(),
        geom.output_len(),
        "conv_backward_input: grad_out length"
    );
    assert_eq!(
        weight.len(),
        geom.weight_len(),
        "conv_backward_input: weight length"
    );
    assert_eq!(
        grad_input.len(),
        geom.input_len(),
        "conv_backward_input: grad_input length"
    );
    if grad_input.is_empty() {
        return;
    }
    if winograd::applies(geom) {
        return winograd::backward_input(geom, grad_out, weight, grad_input);
    }
    let (cog, taps) = (
        geom.out_channels / geom.groups,
        geom.kernel.iter().product::<usize>(),
    );
    if batch_columns::wants(cog * taps, geom.input.iter().product(), geom.batch) {
        return portable_backward_input(geom, grad_out, weight, grad_input);
    }
    #[cfg(target_arch = "x86_64")]
    if let (Some(dy), Some(w), Some(dx)) =
        (as_f32(grad_out), as_f32(weight), as_f32_mut(grad_input))
    {
        if super::conv_avx512::supports(geom) {
            return super::conv_avx512::backward_input(geom, dy, w, dx);
        }
    }
    portable_backward_input(geom, grad_out, weight, grad_input);
}

/// The input gradient on the portable path; sizes already checked.
fn portable_backward_input<T: Float>(
    geom: &ConvGeometry,
    grad_out: &[T],
    weight: &[T],
    grad_input: &mut [T],
) {
    if column_scatter::applies(geom) {
        return column_scatter::backward_input(geom, grad_out, weight, grad_input);
    }
    let cig = geom.in_channels / geom.groups;
    let cog = geom.out_channels / geom.groups;
    let taps = geom.kernel.iter().product::<usize>();
    // Per group, weights as [in channel, (out channel, tap)]: the matrix the adjoint gather needs.
    let mut transposed = vec![T::zero(); weight.len()];
    for g in 0..geom.groups {
        for co in 0..cog {
            for ci in 0..cig {
                let from = ((g * cog + co) * cig + ci) * taps;
                let to = ((g * cig + ci) * cog + co) * taps;
                transposed[to..to + taps].copy_from_slice(&weight[from..from + taps]);
            }
        }
    }
    let gather = Gather::conv_adjoint(geom);
    if batch_columns::wants(cog * taps, geom.input.iter().product(), geom.batch) {
        return batch_columns::product(
            geom.batch,
            geom.groups,
            grad_out,
            cog,
            &gather,
            &transposed,
            cig,
            None,
            grad_input,
        );
    }
    gathered_product(
        geom.batch,
        geom.groups,
        grad_out,
        cog,
        &gather,
        geom.is_pointwise(),
        &transposed,
        cig,
        None,
        grad_input,
    );
}

/// Gradient of the convolution with respect to its weight, written (not accumulated) into
/// `grad_weight` [out_channels, in_channels / groups, kernel].
pub fn conv_backward_weight<T: Float>(
    geom: &ConvGeometry,
    input: &[T],
    grad_out: &[T],
    grad_weight: &mut [T],
) {
    geom.assert_valid();
    assert_eq!(
        input.len(),
        geom.input_len(),
        "conv_backward_weight: input length"
    );
    assert_eq!(
        grad_out.len(),
        geom.output_len(),
        "conv_backward_weight: grad_out length"
    );
    assert_eq!(
        grad_weight.len(),
        geom.weight_len(),
        "conv_backward_weight: grad_weight length"
    );
    grad_weight.fill(T::zero());
    if grad_out.is_empty() {
        return;
    }
    if winograd::applies(geom) {
        return winograd::backward_weight(geom, input, grad_out, grad_weight);
    }
    let (cig, taps) = (
        geom.in_channels / geom.groups,
        geom.kernel.iter().product::<usize>(),
    );
    if batch_columns::wants_weight_gradient(cig * taps, geom.output().iter().product(), geom.batch)
    {
        return batch_columns::weight_gradient(geom, input, grad_out, grad_weight);
    }
    #[cfg(target_arch = "x86_64")]
    if let (Some(x), Some(dy), Some(dw)) =
        (as_f32(input), as_f32(grad_out), as_f32_mut(grad_weight))
    {
        // A pointwise weight gradient is one GEMM with a long reduction, where GEMM's packing
        // beats the direct tile (measured 130 vs 50 GFLOP/s).
        if super::conv_avx512::supports(geom) && !geom.is_pointwise() {
            return super::conv_avx512::backward_weight(geom, x, dy, dw);
        }
    }
    portable_backward_weight(geom, input, grad_out, grad_weight);
}

/// The weight gradient on the portable path; sizes already checked, `grad_weight` zeroed.
fn portable_backward_weight<T: Float>(
    geom: &ConvGeometry,
    input: &[T],
    grad_out: &[T],
    grad_weight: &mut [T],
) {
    let (batch, groups) = (geom.batch, geom.groups);
    let cig = geom.in_channels / groups;
    let cog = geom.out_channels / groups;
    let gather = Gather::conv_forward(geom);
    let identity = geom.is_pointwise();
    let rows = cig * gather.taps_len();
    let src_plane = geom.input.iter().product::<usize>();
    let positions = gather.dst_dims.iter().product::<usize>();
    let tile = tile_len(positions, batch * groups, identity, REDUCTION_TASKS);
    let tiles = positions.div_ceil(tile);
    sum_of_tasks(
        batch * groups * tiles,
        grad_weight,
        Vec::<T>::new,
        |col, task, acc| {
            let (ng, t) = (task / tiles, task % tiles);
            let (n, g) = (ng / groups, ng % groups);
            let p0 = t * tile;
            let len = tile.min(positions - p0);
            let src_group = &input[(n * groups + g) * cig * src_plane..][..cig * src_plane];
            let (b_ptr, b_layout) = if identity {
                (
                    src_group[p0..].as_ptr(),
                    MatLayout {
                        rows: len,
                        cols: rows,
                        row_stride: 1,
                        col_stride: src_plane as isize,
                    },
                )
            } else {
                col.resize(rows * len, T::zero());
                gather.columns(src_group, cig, p0, len, &mut col[..rows * len]);
                (col.as_ptr(), MatLayout::row_major(rows, len).t())
            };
            let a = &grad_out[(n * groups + g) * cog * positions + p0..];
            let a_layout = MatLayout {
                rows: cog,
                cols: len,
                row_stride: positions as isize,
                col_stride: 1,
            };
            let c = &mut acc[g * cog * rows..(g + 1) * cog * rows];
            // SAFETY: the views stay inside `grad_out`, the column tile (or `input`) and this
            // run's own accumulator.
            unsafe {
                gemm_raw(
                    a.as_ptr(),
                    a_layout,
                    b_ptr,
                    b_layout,
                    c.as_mut_ptr(),
                    MatLayout::row_major(cog, rows),
                    true,
                );
            }
        },
    );
}

/// Gradient with respect to a per-channel bias: `grad_out` [batch, channels, positions] summed over
/// batch and positions into `grad_bias` `[channels]`.
pub fn conv_backward_bias<T: Float>(
    batch: usize,
    channels: usize,
    positions: usize,
    grad_out: &[T],
    grad_bias: &mut [T],
) {
    assert_eq!(
        grad_out.len(),
        batch * channels * positions,
        "conv_backward_bias: grad_out length"
    );
    assert_eq!(
        grad_bias.len(),
        channels,
        "conv_backward_bias: grad_bias length"
    );
    grad_bias.par_iter_mut().enumerate().for_each(|(c, gb)| {
        *gb = (0..batch)
            .map(|n| {
                grad_out[(n * channels + c) * positions..][..positions]
                    .iter()
                    .copied()
                    .sum::<T>()
            })
            .sum();
    });
}

/// Transposed convolution forward: `out` [batch, out_channels, output()] from `input` [batch,
/// in_channels, input], `weight` [in_channels, out_channels / groups, kernel], optional `bias`.
pub fn conv_transpose_forward<T: Float>(
    geom: &ConvTransposeGeometry,
    input: &[T],
    weight: &[T],
    bias: Option<&[T]>,
    out: &mut [T],
) {
    if let Err(e) = geom.validate() {
        panic!("conv_transpose kernel called with an invalid geometry: {e}");
    }
    let conv = geom.as_conv();
    if super::conv_transpose_tiles::applies(geom) {
        super::conv_transpose_tiles::forward(geom, input, weight, out);
    } else {
        conv_backward_input(&conv, input, weight, out);
    }
    if let Some(bias) = bias {
        assert_eq!(
            bias.len(),
            geom.out_channels,
            "conv_transpose_forward: bias length"
        );
        let positions = conv.input.iter().product::<usize>();
        out.par_chunks_mut(positions.max(1))
            .enumerate()
            .for_each(|(nc, plane)| {
                let b = bias[nc % geom.out_channels];
                plane.iter_mut().for_each(|v| *v += b);
            });
    }
}

/// Gradient of the transposed convolution with respect to its input.
pub fn conv_transpose_backward_input<T: Float>(
    geom: &ConvTransposeGeometry,
    grad_out: &[T],
    weight: &[T],
    grad_input: &mut [T],
) {
    if let Err(e) = geom.validate() {
        panic!("conv_transpose kernel called with an invalid geometry: {e}");
    }
    if super::conv_transpose_tiles::applies(geom) {
        return super::conv_transpose_tiles::backward_input(geom, grad_out, weight, grad_input);
    }
    conv_forward(&geom.as_conv(), grad_out, weight, None, grad_input);
}

/// Gradient of the transposed convolution with respect to its weight, written into `grad_weight`
/// [in_channels, out_channels / groups, kernel].
pub fn conv_transpose_backward_weight<T: Float>(
    geom: &ConvTransposeGeometry,
    input: &[T],
    grad_out: &[T],
    grad_weight: &mut [T],
) {
    if let Err(e) = geom.validate() {
        panic!("conv_transpose kernel called with an invalid geometry: {e}");
    }
    if super::conv_transpose_tiles::applies(geom) {
        return super::conv_transpose_tiles::backward_weight(geom, input, grad_out, grad_weight);
    }
    // In the adjoint convolution the roles swap: its input is our output gradient and its output
    // gradient is our input.
    conv_backward_weight(&geom.as_conv(), grad_out, input, grad_weight);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::test_util::{dot, random};
    use crate::error::HeparError;

    fn assert_close(got: &[f64], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-10 * (1.0 + w.abs()),
                "{what}: element {i}: got {g}, want {w}"
            );
        }
    }

    /// The input coordinate output `o` reads through `tap` on `axis`, if inside the input.
    fn source(g: &ConvGeometry, axis: usize, o: usize, tap: usize) -> Option<usize> {
        let s = (o * g.stride[axis] + tap * g.dilation[axis]) as isize - g.padding[axis] as isize;
        (s >= 0 && (s as usize) < g.input[axis]).then_some(s as usize)
    }

    /// Visits every (input index, weight index, output index) triple the convolution multiplies.
    fn for_each_term(g: &ConvGeometry, mut f: impl FnMut(usize, usize, usize)) {
        let out = g.output();
        let (cig, cog) = (g.in_channels / g.groups, g.out_channels / g.groups);
        let [id, ih, iw] = g.input;
        let [kd, kh, kw] = g.kernel;
        for n in 0..g.batch {
            for co in 0..g.out_channels {
                let grp = co / cog;
                for (od, oh, ow) in itertools3(out) {
                    let o_idx =
                        (((n * g.out_channels + co) * out[0] + od) * out[1] + oh) * out[2] + ow;
                    for ci in 0..cig {
                        let c_in = grp * cig + ci;
                        for (a, b, c) in itertools3([kd, kh, kw]) {
                            let (Some(sd), Some(sh), Some(sw)) = (
                                source(g, 0, od, a),
                                source(g, 1, oh, b),
                                source(g, 2, ow, c),
                            ) else {
                                continue;
                            };
                            let i_idx =
                                (((n * g.in_channels + c_in) * id + sd) * ih + sh) * iw + sw;
                            let w_idx = (((co * cig + ci) * kd + a) * kh + b) * kw + c;
                            f(i_idx, w_idx, o_idx);
                        }
                    }
                }
            }
        }
    }

    fn itertools3(d: [usize; 3]) -> impl Iterator<Item = (usize, usize, usize)> {
        (0..d[0]).flat_map(move |a| (0..d[1]).flat_map(move |b| (0..d[2]).map(move |c| (a, b, c))))
    }

    fn naive_forward(g: &ConvGeometry, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
        let positions: usize = g.output().iter().product();
        let mut out: Vec<f64> = (0..g.output_len())
            .map(|i| bias.map_or(0.0, |b| b[(i / positions) % g.out_channels]))
            .collect();
        for_each_term(g, |i, k, o| out[o] += x[i] * w[k]);
        out
    }

    fn naive_backward_input(g: &ConvGeometry, gy: &[f64], w: &[f64]) -> Vec<f64> {
        let mut gx = vec![0.0; g.input_len()];
        for_each_term(g, |i, k, o| gx[i] += gy[o] * w[k]);
        gx
    }

    fn naive_backward_weight(g: &ConvGeometry, x: &[f64], gy: &[f64]) -> Vec<f64> {
        let mut gw = vec![0.0; g.weight_len()];
        for_each_term(g, |i, k, o| gw[k] += gy[o] * x[i]);
        gw
    }

    #[allow(clippy::too_many_arguments)]
    fn geometry(
        batch: usize,
        cin: usize,
        cout: usize,
        groups: usize,
        input: [usize; 3],
        kernel: [usize; 3],
        stride: [usize; 3],
        padding: [usize; 3],
        dilation: [usize; 3],
    ) -> ConvGeometry {
        let g = ConvGeometry {
            batch,
            in_channels: cin,
            out_channels: cout,
            groups,
            input,
            kernel,
            stride,
            padding,
            dilation,
        };
        g.validate().unwrap();
        g
    }

    /// Odd sizes, strides, paddings, dilations, groups (1, 2, depthwise), 2D, pointwise.
    fn geometries() -> Vec<ConvGeometry> {
        vec![
            geometry(
                2,
                3,
                4,
                1,
                [5, 7, 6],
                [3, 3, 3],
                [1, 1, 1],
                [1, 1, 1],
                [1, 1, 1],
            ),
            geometry(
                1,
                3,
                5,
                1,
                [5, 7, 6],
                [3, 2, 3],
                [2, 2, 1],
                [1, 0, 2],
                [1, 2, 2],
            ),
            geometry(
                2,
                4,
                6,
                2,
                [5, 7, 6],
                [3, 3, 3],
                [2, 1, 2],
                [2, 1, 1],
                [2, 1, 1],
            ),
            geometry(
                1,
                6,
                6,
                6,
                [5, 7, 6],
                [3, 3, 3],
                [1, 2, 1],
                [1, 1, 1],
                [1, 1, 2],
            ),
            geometry(
                2,
                3,
                6,
                3,
                [1, 9, 11],
                [1, 3, 3],
                [1, 2, 2],
                [0, 1, 1],
                [1, 1, 1],
            ),
            geometry(
                2,
                5,
                3,
                1,
                [3, 4, 5],
                [1, 1, 1],
                [1, 1, 1],
                [0, 0, 0],
                [1, 1, 1],
            ),
            geometry(
                1,
                4,
                4,
                2,
                [3, 4, 5],
                [1, 1, 1],
                [2, 2, 2],
                [0, 1, 0],
                [1, 1, 1],
            ),
            geometry(
                1,
                2,
                3,
                1,
                [2, 40, 37],
                [2, 3, 3],
                [1, 1, 1],
                [1, 1, 1],
                [1, 1, 1],
            ),
            geometry(
                2,
                4,
                20,
                2,
                [3, 5, 37],
                [3, 3, 5],
                [1, 1, 1],
                [1, 2, 3],
                [1, 2, 2],
            ),
            geometry(
                1,
                6,
                9,
                1,
                [2, 3, 70],
                [1, 1, 1],
                [1, 1, 1],
                [1, 0, 1],
                [1, 1, 1],
            ),
            geometry(
                1,
                10,
                5,
                1,
                [4, 6, 33],
                [3, 1, 2],
                [2, 1, 1],
                [0, 0, 1],
                [1, 1, 3],
            ),
            geometry(
                1,
                3,
                5,
                1,
                [2, 5, 23],
                [1, 2, 3],
                [1, 2, 3],
                [0, 1, 2],
                [1, 1, 2],
            ),
        ]
        .into_iter()
        .chain(batch_column_geometries())
        .chain(column_scatter_geometries())
        .chain(winograd_geometries())
        .collect()
    }

    /// 3x3 stride-1 2D geometries for `conv_winograd`: odd sizes (partial 2x2 tiles), padding 0,
    /// 1 and 2, more channels out than in and the reverse.
    fn winograd_geometries() -> Vec<ConvGeometry> {
        let g = |batch, cin, cout, input, padding| {
            geometry(
                batch,
                cin,
                cout,
                1,
                input,
                [1, 3, 3],
                [1, 1, 1],
                padding,
                [1, 1, 1],
            )
        };
        vec![
            g(2, 64, 65, [1, 17, 19], [0, 1, 1]),
            g(1, 66, 64, [1, 18, 16], [0, 0, 2]),
            g(1, 64, 64, [1, 17, 21], [0, 2, 0]),
        ]
    }

    /// The Winograd kernels called directly (below the size rule) on small 2D and 3D geometries:
    /// odd sizes, paddings 0-2, one or two partial tiles per axis.
    #[test]
    fn winograd_kernels_match_naive_loops_in_2d_and_3d() {
        let cases = [
            geometry(2, 3, 4, 1, [1, 5, 7], [1, 3, 3], [1; 3], [0, 1, 2], [1; 3]),
            geometry(1, 4, 3, 1, [5, 6, 7], [3, 3, 3], [1; 3], [1, 1, 1], [1; 3]),
            geometry(2, 2, 5, 1, [4, 3, 6], [3, 3, 3], [1; 3], [2, 0, 1], [1; 3]),
        ];
        for (seed, g) in cases.iter().enumerate() {
            let x = random(g.input_len(), seed as u64);
            let w = random(g.weight_len(), 10 + seed as u64);
            let b = random(g.out_channels, 20 + seed as u64);
            let gy = random(g.output_len(), 30 + seed as u64);
            let mut y = vec![f64::NAN; g.output_len()];
            winograd::forward(g, &x, &w, Some(&b), &mut y);
            assert_close(
                &y,
                &naive_forward(g, &x, &w, Some(&b)),
                &format!("forward {g:?}"),
            );
            let mut gx = vec![f64::NAN; g.input_len()];
            winograd::backward_input(g, &gy, &w, &mut gx);
            assert_close(
                &gx,
                &naive_backward_input(g, &gy, &w),
                &format!("backward input {g:?}"),
            );
            let mut gw = vec![f64::NAN; g.weight_len()];
            winograd::backward_weight(g, &x, &gy, &mut gw);
            assert_close(
                &gw,
                &naive_backward_weight(g, &x, &gy),
                &format!("backward weight {g:?}"),
            );
        }
    }

    #[test]
    fn winograd_geometries_take_that_path() {
        assert!(winograd_geometries().iter().all(winograd::applies));
        let mut strided = winograd_geometries()[0];
        strided.stride = [1, 2, 1];
        assert!(!winograd::applies(&strided));
        let volume = geometry(1, 64, 64, 1, [8, 16, 16], [3; 3], [1; 3], [1; 3], [1; 3]);
        assert!(winograd::applies(&volume));
        let shallow = ConvGeometry {
            input: [4, 16, 16],
            ..volume
        };
        assert!(!winograd::applies(&shallow));
    }

    /// Strided geometries whose input gradient takes `conv_column_scatter` with one item per
    /// task (a plane larger than the whole-batch limit; the classic U-Net's k4 s2 p1 adjoint),
    /// grouped with several channel blocks, and with the whole batch per task.
    fn column_scatter_geometries() -> Vec<ConvGeometry> {
        vec![
            geometry(
                2,
                3,
                4,
                1,
                [1, 130, 70],
                [1, 4, 4],
                [1, 2, 2],
                [0, 1, 1],
                [1, 1, 1],
            ),
            geometry(
                3,
                8,
                6,
                2,
                [3, 9, 11],
                [2, 3, 3],
                [2, 2, 3],
                [1, 1, 2],
                [1, 2, 1],
            ),
        ]
    }

    #[test]
    fn column_scatter_geometries_cover_both_item_regimes() {
        let whole_batch = |g: &ConvGeometry| {
            g.batch * g.output().iter().product::<usize>() <= column_scatter::WHOLE_BATCH_POSITIONS
        };
        let gs = column_scatter_geometries();
        assert!(gs.iter().all(column_scatter::applies));
        assert!(!whole_batch(&gs[0]) && whole_batch(&gs[1]));
    }

    /// Small planes with 256+ reduction rows, which take `conv_batch_columns` in all three passes
    /// (grouped, strided and dilated; more output channels or input channels than one row block).
    fn batch_column_geometries() -> Vec<ConvGeometry> {
        vec![
            geometry(
                3,
                60,
                60,
                2,
                [1, 7, 9],
                [1, 3, 3],
                [1, 1, 1],
                [0, 1, 1],
                [1, 1, 1],
            ),
            geometry(
                2,
                32,
                29,
                1,
                [5, 6, 7],
                [3, 3, 3],
                [2, 1, 2],
                [1, 1, 2],
                [1, 2, 1],
            ),
            geometry(
                2,
                30,
                130,
                1,
                [1, 5, 6],
                [1, 3, 3],
                [1, 1, 1],
                [0, 1, 1],
                [1, 1, 1],
            ),
            geometry(
                1,
                130,
                3,
                1,
                [1, 4, 5],
                [1, 3, 3],
                [1, 1, 1],
                [0, 1, 1],
                [1, 1, 1],
            ),
        ]
    }

    #[test]
    fn batch_column_geometries_take_that_path() {
        for g in batch_column_geometries() {
            let taps: usize = g.kernel.iter().product();
            let rows = g.in_channels / g.groups * taps;
            let positions = g.output().iter().product();
            assert!(
                batch_columns::wants(rows, positions, g.batch)
                    && batch_columns::wants_weight_gradient(rows, positions, g.batch),
                "{g:?}"
            );
        }
        let g = &batch_column_geometries()[0];
        let back_rows = g.out_channels / g.groups * 9;
        assert!(batch_columns::wants(
            back_rows,
            g.input.iter().product(),
            g.batch
        ));
    }

    #[test]
    fn geometry_output_and_validation() {
        let g = geometry(
            1,
            3,
            4,
            1,
            [5, 7, 6],
            [3, 3, 3],
            [2, 1, 2],
            [1, 0, 2],
            [2, 1, 1],
        );
        assert_eq!(g.output(), [2, 5, 4]);
        let bad_groups = ConvGeometry { groups: 2, ..g };
        assert!(matches!(
            bad_groups.validate(),
            Err(HeparError::InvalidArgument { .. })
        ));
        let too_small = ConvGeometry {
            input: [1, 7, 6],
            padding: [0, 0, 0],
            ..g
        };
        assert!(matches!(
            too_small.validate(),
            Err(HeparError::Shape { .. })
        ));
        let zero_stride = ConvGeometry {
            stride: [1, 0, 1],
            ..g
        };
        assert!(zero_stride.validate().is_err());
    }

    #[test]
    fn forward_matches_naive_loop() {
        for (seed, g) in geometries().iter().enumerate() {
            let x = random(g.input_len(), seed as u64);
            let w = random(g.weight_len(), 100 + seed as u64);
            let b = random(g.out_channels, 200 + seed as u64);
            for bias in [None, Some(&b[..])] {
                let mut out = vec![f64::NAN; g.output_len()];
                conv_forward(g, &x, &w, bias, &mut out);
                assert_close(
                    &out,
                    &naive_forward(g, &x, &w, bias),
                    &format!("forward {g:?}"),
                );
            }
        }
    }

    #[test]
    fn backward_passes_match_naive_adjoints() {
        for (seed, g) in geometries().iter().enumerate() {
            let x = random(g.input_len(), seed as u64);
            let w = random(g.weight_len(), 100 + seed as u64);
            let gy = random(g.output_len(), 300 + seed as u64);
            let mut gx = vec![f64::NAN; g.input_len()];
            conv_backward_input(g, &gy, &w, &mut gx);
            assert_close(
                &gx,
                &naive_backward_input(g, &gy, &w),
                &format!("backward input {g:?}"),
            );
            let mut gw = vec![f64::NAN; g.weight_len()];
            conv_backward_weight(g, &x, &gy, &mut gw);
            assert_close(
                &gw,
                &naive_backward_weight(g, &x, &gy),
                &format!("backward weight {g:?}"),
            );
            // Adjoint identities: <gy, conv(x, w)> = <conv_backward_input(gy), x> = <conv_backward_weight(x, gy), w>.
            let mut y = vec![0.0; g.output_len()];
            conv_forward(g, &x, &w, None, &mut y);
            let lhs = dot(&gy, &y);
            assert!(
                (lhs - dot(&gx, &x)).abs() < 1e-9 * (1.0 + lhs.abs()),
                "input adjoint {g:?}"
            );
            assert!(
                (lhs - dot(&gw, &w)).abs() < 1e-9 * (1.0 + lhs.abs()),
                "weight adjoint {g:?}"
            );
            let mut gb = vec![0.0; g.out_channels];
            let positions = g.output().iter().product();
            conv_backward_bias(g.batch, g.out_channels, positions, &gy, &mut gb);
            for (c, v) in gb.iter().enumerate() {
                let want: f64 = (0..g.batch)
                    .flat_map(|n| gy[(n * g.out_channels + c) * positions..][..positions].iter())
                    .sum();
                assert!((v - want).abs() < 1e-12, "bias gradient channel {c}");
            }
        }
    }

    /// Central differences of L = <r, conv(x, w, b)> against the analytic gradients, on tiny sizes.
    #[test]
    fn gradients_match_finite_differences() {
        let g = geometry(
            2,
            4,
            2,
            2,
            [3, 4, 3],
            [2, 3, 2],
            [1, 2, 1],
            [1, 1, 0],
            [1, 1, 2],
        );
        let x = random(g.input_len(), 1);
        let w = random(g.weight_len(), 2);
        let b = random(g.out_channels, 3);
        let r = random(g.output_len(), 4);
        let loss = |x: &[f64], w: &[f64], b: &[f64]| {
            let mut y = vec![0.0; g.output_len()];
            conv_forward(&g, x, w, Some(b), &mut y);
            dot(&r, &y)
        };
        let mut gx = vec![0.0; x.len()];
        conv_backward_input(&g, &r, &w, &mut gx);
        let mut gw = vec![0.0; w.len()];
        conv_backward_weight(&g, &x, &r, &mut gw);
        let mut gb = vec![0.0; b.len()];
        conv_backward_bias(
            g.batch,
            g.out_channels,
            g.output().iter().product(),
            &r,
            &mut gb,
        );
        let h = 1e-5;
        let numeric = |which: usize, i: usize| {
            let mut args = [x.clone(), w.clone(), b.clone()];
            args[which][i] += h;
            let plus = loss(&args[0], &args[1], &args[2]);
            args[which][i] -= 2.0 * h;
            let minus = loss(&args[0], &args[1], &args[2]);
            (plus - minus) / (2.0 * h)
        };
        for (which, analytic) in [(0, &gx), (1, &gw), (2, &gb)] {
            for (i, a) in analytic.iter().enumerate() {
                let n = numeric(which, i);
                assert!(
                    (a - n).abs() < 1e-7,
                    "argument {which} element {i}: analytic {a}, numeric {n}"
                );
            }
        }
    }

    fn naive_transpose_forward(
        t: &ConvTransposeGeometry,
        x: &[f64],
        w: &[f64],
        bias: Option<&[f64]>,
    ) -> Vec<f64> {
        // Straight from the definition: every input element scatters weight * value onto the
        // output positions its kernel taps land on.
        let out = t.output();
        let positions: usize = out.iter().product();
        let mut y: Vec<f64> = (0..t.output_len())
            .map(|i| bias.map_or(0.0, |b| b[(i / positions) % t.out_channels]))
            .collect();
        let (cig, cog) = (t.in_channels / t.groups, t.out_channels / t.groups);
        for n in 0..t.batch {
            for ci in 0..t.in_channels {
                let grp = ci / cig;
                for (i0, i1, i2) in itertools3(t.input) {
                    let v = x[(((n * t.in_channels + ci) * t.input[0] + i0) * t.input[1] + i1)
                        * t.input[2]
                        + i2];
                    for co in 0..cog {
                        for (k0, k1, k2) in itertools3(t.kernel) {
                            let pos = [(i0, k0), (i1, k1), (i2, k2)]
                                .iter()
                                .enumerate()
                                .map(|(a, &(i, k))| {
                                    (i * t.stride[a] + k * t.dilation[a]) as isize
                                        - t.padding[a] as isize
                                })
                                .collect::<Vec<_>>();
                            if (0..3).any(|a| pos[a] < 0 || pos[a] as usize >= out[a]) {
                                continue;
                            }
                            let wv = w[(((ci * cog + co) * t.kernel[0] + k0) * t.kernel[1] + k1)
                                * t.kernel[2]
                                + k2];
                            let o = (((n * t.out_channels + grp * cog + co) * out[0]
                                + pos[0] as usize)
                                * out[1]
                                + pos[1] as usize)
                                * out[2]
                                + pos[2] as usize;
                            y[o] += v * wv;
                        }
                    }
                }
            }
        }
        y
    }

    #[test]
    fn transposed_convolution_matches_definition_and_adjoints() {
        let cases = [
            ConvTransposeGeometry {
                batch: 2,
                in_channels: 4,
                out_channels: 6,
                groups: 2,
                input: [3, 4, 5],
                kernel: [2, 2, 2],
                stride: [2, 2, 2],
                padding: [0, 0, 0],
                dilation: [1, 1, 1],
                output_padding: [0, 0, 0],
            },
            ConvTransposeGeometry {
                batch: 1,
                in_channels: 3,
                out_channels: 2,
                groups: 1,
                input: [3, 5, 4],
                kernel: [3, 3, 2],
                stride: [2, 1, 3],
                padding: [1, 1, 0],
                dilation: [1, 2, 1],
                output_padding: [1, 0, 2],
            },
            ConvTransposeGeometry {
                batch: 1,
                in_channels: 3,
                out_channels: 3,
                groups: 3,
                input: [1, 6, 5],
                kernel: [1, 3, 3],
                stride: [1, 2, 2],
                padding: [0, 1, 1],
                dilation: [1, 1, 1],
                output_padding: [0, 1, 0],
            },
            // Kernel = stride, groups 1: the non-overlapping tile path (conv_transpose_tiles).
            ConvTransposeGeometry {
                batch: 3,
                in_channels: 5,
                out_channels: 3,
                groups: 1,
                input: [3, 2, 5],
                kernel: [2, 2, 2],
                stride: [2, 2, 2],
                padding: [0, 0, 0],
                dilation: [1, 1, 1],
                output_padding: [0, 0, 0],
            },
            ConvTransposeGeometry {
                batch: 2,
                in_channels: 7,
                out_channels: 4,
                groups: 1,
                input: [1, 5, 3],
                kernel: [1, 3, 2],
                stride: [1, 3, 2],
                padding: [0, 0, 0],
                dilation: [1, 1, 1],
                output_padding: [0, 0, 0],
            },
            // Planes past `POSITION_ROWS_FROM`: the backward passes gather position rows.
            ConvTransposeGeometry {
                batch: 2,
                in_channels: 3,
                out_channels: 2,
                groups: 1,
                input: [1, 130, 127],
                kernel: [1, 2, 2],
                stride: [1, 2, 2],
                padding: [0, 0, 0],
                dilation: [1, 1, 1],
                output_padding: [0, 0, 0],
            },
            ConvTransposeGeometry {
                batch: 1,
                in_channels: 2,
                out_channels: 3,
                groups: 1,
                input: [3, 80, 71],
                kernel: [2, 2, 2],
                stride: [2, 2, 2],
                padding: [0, 0, 0],
                dilation: [1, 1, 1],
                output_padding: [0, 0, 0],
            },
        ];
        assert!(cases[3..]
            .iter()
            .all(super::super::conv_transpose_tiles::applies));
        assert!(!cases[..3]
            .iter()
            .any(super::super::conv_transpose_tiles::applies));
        for (seed, t) in cases.iter().enumerate() {
            t.validate().unwrap();
            let x = random(t.input_len(), seed as u64);
            let w = random(t.weight_len(), 10 + seed as u64);
            let b = random(t.out_channels, 20 + seed as u64);
            let mut y = vec![f64::NAN; t.output_len()];
            conv_transpose_forward(t, &x, &w, Some(&b), &mut y);
            assert_close(
                &y,
                &naive_transpose_forward(t, &x, &w, Some(&b)),
                &format!("transpose forward {t:?}"),
            );
            // The f32 path (stride-phase SIMD kernel where available) against the same loop.
            let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
            let mut y32 = vec![f32::NAN; t.output_len()];
            conv_transpose_forward(t, &to32(&x), &to32(&w), Some(&to32(&b)), &mut y32);
            for (i, (a, e)) in y32.iter().zip(&y).enumerate() {
                assert!(
                    (*a as f64 - e).abs() < 1e-5 * (1.0 + e.abs()),
                    "f32 transpose forward {t:?} element {i}"
                );
            }
            let gy = random(t.output_len(), 30 + seed as u64);
            let mut y0 = vec![0.0; t.output_len()];
            conv_transpose_forward(t, &x, &w, None, &mut y0);
            let lhs = dot(&gy, &y0);
            let mut gx = vec![0.0; x.len()];
            conv_transpose_backward_input(t, &gy, &w, &mut gx);
            let mut gw = vec![0.0; w.len()];
            conv_transpose_backward_weight(t, &x, &gy, &mut gw);
            assert!(
                (lhs - dot(&gx, &x)).abs() < 1e-9 * (1.0 + lhs.abs()),
                "transpose input adjoint {t:?}"
            );
            assert!(
                (lhs - dot(&gw, &w)).abs() < 1e-9 * (1.0 + lhs.abs()),
                "transpose weight adjoint {t:?}"
            );
        }
        let bad = ConvTransposeGeometry {
            output_padding: [2, 0, 0],
            ..cases[0]
        };
        assert!(bad.validate().is_err());
    }

    /// The f32 paths (direct SIMD kernels where the CPU has them) against the f64 loops.
    #[test]
    fn f32_forward_and_backward_match_naive_loops() {
        let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let check = |got: &[f32], want: &[f64], what: &str| {
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for (i, (a, b)) in got.iter().zip(want).enumerate() {
                assert!(
                    (*a as f64 - b).abs() < 1e-5 * scale,
                    "{what}: element {i}: {a} vs {b}"
                );
            }
        };
        for (seed, g) in geometries().iter().enumerate() {
            let x = random(g.input_len(), seed as u64);
            let w = random(g.weight_len(), 100 + seed as u64);
            let b = random(g.out_channels, 200 + seed as u64);
            let gy = random(g.output_len(), 300 + seed as u64);
            let mut y = vec![f32::NAN; g.output_len()];
            conv_forward(g, &to32(&x), &to32(&w), Some(&to32(&b)), &mut y);
            check(
                &y,
                &naive_forward(g, &x, &w, Some(&b)),
                &format!("f32 forward {g:?}"),
            );
            let mut gx = vec![f32::NAN; g.input_len()];
            conv_backward_input(g, &to32(&gy), &to32(&w), &mut gx);
            check(
                &gx,
                &naive_backward_input(g, &gy, &w),
                &format!("f32 backward input {g:?}"),
            );
            let mut gw = vec![f32::NAN; g.weight_len()];
            conv_backward_weight(g, &to32(&x), &to32(&gy), &mut gw);
            check(
                &gw,
                &naive_backward_weight(g, &x, &gy),
                &format!("f32 backward weight {g:?}"),
            );
        }
    }

    /// The portable path in f32, which on a CPU with AVX-512 the public functions never take.
    #[test]
    fn portable_f32_path_matches_naive_loops() {
        let to32 = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let check = |got: &[f32], want: &[f64], what: &str| {
            let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for (i, (a, b)) in got.iter().zip(want).enumerate() {
                assert!(
                    (*a as f64 - b).abs() < 1e-5 * scale,
                    "{what}: element {i}: {a} vs {b}"
                );
            }
        };
        for (seed, g) in geometries().iter().enumerate() {
            let x = random(g.input_len(), seed as u64);
            let w = random(g.weight_len(), 100 + seed as u64);
            let b = random(g.out_channels, 200 + seed as u64);
            let gy = random(g.output_len(), 300 + seed as u64);
            let mut y = vec![f32::NAN; g.output_len()];
            portable_forward(g, &to32(&x), &to32(&w), Some(&to32(&b)), &mut y);
            check(
                &y,
                &naive_forward(g, &x, &w, Some(&b)),
                &format!("portable forward {g:?}"),
            );
            let mut gx = vec![f32::NAN; g.input_len()];
            portable_backward_input(g, &to32(&gy), &to32(&w), &mut gx);
            check(
                &gx,
                &naive_backward_input(g, &gy, &w),
                &format!("portable backward input {g:?}"),
            );
            let mut gw = vec![0f32; g.weight_len()];
            portable_backward_weight(g, &to32(&x), &to32(&gy), &mut gw);
            check(
                &gw,
                &naive_backward_weight(g, &x, &gy),
                &format!("portable backward weight {g:?}"),
            );
        }
    }

    #[test]
    fn f32_matches_f64_on_a_tiled_problem() {
        // Large enough for several tiles per item, exercising the task split and bias path in f32.
        let g = geometry(
            1,
            8,
            8,
            1,
            [9, 17, 19],
            [3, 3, 3],
            [1, 1, 1],
            [1, 1, 1],
            [1, 1, 1],
        );
        let x = random(g.input_len(), 5);
        let w = random(g.weight_len(), 6);
        let want = naive_forward(&g, &x, &w, None);
        let (x32, w32): (Vec<f32>, Vec<f32>) = (
            x.iter().map(|&v| v as f32).collect(),
            w.iter().map(|&v| v as f32).collect(),
        );
        let mut out = vec![0f32; g.output_len()];
        conv_forward(&g, &x32, &w32, None, &mut out);
        for (i, (a, b)) in out.iter().zip(&want).enumerate() {
            assert!((*a as f64 - b).abs() < 1e-4, "element {i}: {a} vs {b}");
        }
    }
}
