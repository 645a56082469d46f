//! Direct f32 convolution kernels for AVX-512. No im2col: a register tile of output channels x
//! output positions accumulates straight from shifted input rows, masked loads implement the zero
//! padding at the row ends, and rows that fall into the padding are skipped. Grouped convolutions
//! with 8 output channels per group, which give GEMM far too thin a matrix, run at full vector
//! width. Strides stay contiguous too: a width stride reads the input rewritten as width phases,
//! and the input gradient runs one unit-stride pass per stride phase.
//!
//! The callers in `conv` check the CPU feature and the geometry; these functions trust both.

// Register tiles are indexed by channel and lane in fixed-size loops the compiler unrolls.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use rayon::prelude::*;

use super::conv::ConvGeometry;
use super::fixed_split::{sum_of_tasks, REDUCTION_TASKS};

/// Lanes of one vector.
const LANES: usize = 16;
/// Widest kernel the forward tile handles (taps along the width, each needing its own load mask).
pub const MAX_KERNEL_WIDTH: usize = 16;

/// Whether the direct kernels (all three passes) can run this geometry on this CPU.
pub fn supports(geom: &ConvGeometry) -> bool {
    geom.kernel[2] <= MAX_KERNEL_WIDTH && is_x86_feature_detected!("avx512f")
}

/// An output buffer parallel tasks write disjoint parts of.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: every task writes only its own (channel range, rows) block of the output.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// Through a method, closures capture the whole (Send) wrapper rather than its raw pointer.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Lanes `l` of a vector starting at coordinate `start` with `0 <= start + l < len`.
#[inline(always)]
fn range_mask(start: isize, len: usize) -> u16 {
    let lo = (-start).clamp(0, LANES as isize) as u32;
    let hi = (len as isize - start).clamp(0, LANES as isize) as u32;
    if hi <= lo {
        0
    } else {
        (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
    }
}

/// One input row the output row reads: its offset in the group's input, and the weight row of
/// its first width tap.
#[derive(Clone, Copy)]
struct RowTap {
    offset: isize,
    weight_row: usize,
}

/// Rows within one (batch item, group) handled by one task of a pass that writes each output
/// element from one task: enough tasks for every thread, each long enough to amortise its setup.
/// The split follows the pool's size; each element's sum runs inside its own task in the same
/// order whatever the split, so the bits do not.
fn rows_per_task(rows: usize, outer: usize) -> usize {
    split_rows(rows, outer, 8 * rayon::current_num_threads())
}

/// Rows per task for about `tasks` tasks over `outer` (batch item, group) pairs.
fn split_rows(rows: usize, outer: usize, tasks: usize) -> usize {
    let per_outer = tasks.div_ceil(outer.max(1));
    rows.div_ceil(per_outer).max(1)
}

/// How one spatial axis of a direct pass maps output to input coordinates: output `q` (stored at
/// coordinate `q * out_step + out_origin`) reads input `q * in_stride + offset` for each tap
/// `(offset, kernel index)`.
#[derive(Clone, Debug)]
struct AxisPlan {
    taps: Vec<(isize, usize)>,
    /// Width axis only: where each tap's source starts within a stored row, relative to the
    /// coordinate (they differ from the tap offsets when the row is stored deinterleaved).
    pointer_shifts: Vec<isize>,
    in_stride: usize,
    count: usize,
    out_step: usize,
    out_origin: usize,
}

impl AxisPlan {
    /// Convolution forward: output `o` reads `o * stride + k * dilation - padding`.
    fn forward(geom: &ConvGeometry, axis: usize) -> Self {
        let taps: Vec<(isize, usize)> = (0..geom.kernel[axis])
            .map(|k| {
                (
                    (k * geom.dilation[axis]) as isize - geom.padding[axis] as isize,
                    k,
                )
            })
            .collect();
        AxisPlan {
            pointer_shifts: taps.iter().map(|&(offset, _)| offset).collect(),
            taps,
            in_stride: geom.stride[axis],
            count: geom.output()[axis],
            out_step: 1,
            out_origin: 0,
        }
    }

    /// Phase `r` of the adjoint (input gradient): inputs `i = q * stride + r` receive from output
    /// `(i + padding - k * dilation) / stride` for the taps `k` where that division is exact,
    /// which is `q + offset_k`: a unit-stride correlation over `q` with a sparser kernel.
    fn adjoint_phase(geom: &ConvGeometry, axis: usize, r: usize) -> Self {
        let s = geom.stride[axis] as isize;
        // Descending kernel index = ascending source offset: rows are then visited in address
        // order, which measured 25% faster than the reverse.
        let taps = (0..geom.kernel[axis])
            .rev()
            .filter_map(|k| {
                let num = (r + geom.padding[axis]) as isize - (k * geom.dilation[axis]) as isize;
                (num.rem_euclid(s) == 0).then(|| (num.div_euclid(s), k))
            })
            .collect::<Vec<_>>();
        let len = geom.input[axis];
        AxisPlan {
            pointer_shifts: taps.iter().map(|&(offset, _)| offset).collect(),
            taps,
            in_stride: 1,
            count: if r < len {
                (len - r).div_ceil(geom.stride[axis])
            } else {
                0
            },
            out_step: geom.stride[axis],
            out_origin: r,
        }
    }
}

/// The width axis of a strided convolution read unit-stride: the stored rows hold the input's
/// `stride` width phases one after the other (element `w` at phase `w % stride`, position
/// `w / stride`), each zero-padded to `phase_len`. Tap offset `o` then reads phase `o % stride`
/// from position `q + o / stride` (Euclidean division): contiguous in `q`.
#[derive(Clone, Copy, Debug)]
struct WidthPhases {
    stride: usize,
    phase_len: usize,
}

impl WidthPhases {
    fn new(width: usize, stride: usize) -> Self {
        WidthPhases {
            stride,
            phase_len: width.div_ceil(stride),
        }
    }

    fn row_len(self) -> usize {
        self.stride * self.phase_len
    }

    /// (pointer shift within a stored row, coordinate shift) of tap offset `offset`.
    fn tap(self, offset: isize) -> (isize, isize) {
        let s = self.stride as isize;
        let position = offset.div_euclid(s);
        (
            offset.rem_euclid(s) * self.phase_len as isize + position,
            position,
        )
    }

    /// Rewrites `rows` (of `width` elements each) in this layout.
    fn store(self, rows: &[f32], width: usize) -> Vec<f32> {
        let mut out = vec![0f32; rows.len() / width.max(1) * self.row_len()];
        out.par_chunks_mut(self.row_len())
            .zip(rows.par_chunks(width))
            .for_each(|(dst, src)| {
                for (phase, dst) in dst.chunks_mut(self.phase_len).enumerate() {
                    for (d, &v) in dst
                        .iter_mut()
                        .zip(src.iter().skip(phase).step_by(self.stride))
                    {
                        *d = v;
                    }
                }
            });
        out
    }

    /// The width plan of a forward pass over rows stored this way.
    fn plan(self, mut plan: AxisPlan) -> AxisPlan {
        let (pointers, coordinates): (Vec<isize>, Vec<isize>) = plan
            .taps
            .iter()
            .map(|&(offset, _)| self.tap(offset))
            .unzip();
        plan.pointer_shifts = pointers;
        for (tap, c) in plan.taps.iter_mut().zip(coordinates) {
            tap.0 = c;
        }
        plan.in_stride = 1;
        plan
    }
}

/// One direct pass over a (batch item, group): source planes and their sizes, destination sizes,
/// and the per-axis plans. `src_dims[2]` is the stored row length, `src_width` the coordinates
/// valid in a row (they differ for deinterleaved rows).
struct Pass<'a> {
    src: &'a [f32],
    src_cpg: usize,
    src_dims: [usize; 3],
    src_width: usize,
    dst_cpg: usize,
    dst_dims: [usize; 3],
    axes: [AxisPlan; 3],
}

/// Convolution forward: `out = conv(input, weight) + bias`. A width stride > 1 first rewrites
/// the input rows as width phases so every load stays contiguous.
pub fn forward(
    geom: &ConvGeometry,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let geom = &as_long_rows(geom);
    let (cig, m) = (
        geom.in_channels / geom.groups,
        geom.out_channels / geom.groups,
    );
    let [kd, kh, kw] = geom.kernel;
    let mut axes: [AxisPlan; 3] = std::array::from_fn(|a| AxisPlan::forward(geom, a));
    let phased;
    let (src, src_dims, src_width) = if geom.stride[2] > 1 {
        let phases = WidthPhases::new(geom.input[2], geom.stride[2]);
        phased = phases.store(input, geom.input[2]);
        axes[2] = phases.plan(axes[2].clone());
        (
            &phased[..],
            [geom.input[0], geom.input[1], phases.row_len()],
            phases.phase_len,
        )
    } else {
        (input, geom.input, geom.input[2])
    };
    let pass = Pass {
        src,
        src_cpg: cig,
        src_dims,
        src_width,
        dst_cpg: m,
        dst_dims: geom.output(),
        axes,
    };
    let weight_at = |g: usize, co: usize, c: usize, k: [usize; 3]| {
        weight[((((g * m + co) * cig + c) * kd + k[0]) * kh + k[1]) * kw + k[2]]
    };
    run_passes(geom.batch, geom.groups, &[pass], &weight_at, bias, out);
}

/// A pointwise convolution (kernel 1, stride 1, no padding) sees no spatial structure, so its
/// (depth, height, width) is viewed as (1, depth, height x width): rows of whole planes, which
/// stream from memory better than short rows.
fn as_long_rows(geom: &ConvGeometry) -> ConvGeometry {
    if geom.kernel == [1, 1, 1] && geom.stride == [1, 1, 1] && geom.padding == [0, 0, 0] {
        let [d, h, w] = geom.input;
        ConvGeometry {
            input: [1, d, h * w],
            ..*geom
        }
    } else {
        *geom
    }
}

/// Gradient of the input, any stride: one unit-stride pass per stride phase of the input, each
/// with only the kernel taps that reach it (no multiplications by the zeros a strided
/// convolution's adjoint would otherwise insert).
pub fn backward_input(
    geom: &ConvGeometry,
    grad_out: &[f32],
    weight: &[f32],
    grad_input: &mut [f32],
) {
    let geom = &as_long_rows(geom);
    let (cig, m) = (
        geom.in_channels / geom.groups,
        geom.out_channels / geom.groups,
    );
    let [kd, kh, kw] = geom.kernel;
    let [sd, sh, sw] = geom.stride;
    let mut passes = vec![];
    for rd in 0..sd {
        for rh in 0..sh {
            for rw in 0..sw {
                let axes = [
                    AxisPlan::adjoint_phase(geom, 0, rd),
                    AxisPlan::adjoint_phase(geom, 1, rh),
                    AxisPlan::adjoint_phase(geom, 2, rw),
                ];
                if axes.iter().all(|a| a.count > 0) {
                    passes.push(Pass {
                        src: grad_out,
                        src_cpg: m,
                        src_dims: geom.output(),
                        src_width: geom.output()[2],
                        dst_cpg: cig,
                        dst_dims: geom.input,
                        axes,
                    });
                }
            }
        }
    }
    // Here the pass's output channel is the convolution's input channel and vice versa.
    let weight_at = |g: usize, ci: usize, co: usize, k: [usize; 3]| {
        weight[((((g * m + co) * cig + ci) * kd + k[0]) * kh + k[1]) * kw + k[2]]
    };
    run_passes(
        geom.batch,
        geom.groups,
        &passes,
        &weight_at,
        None,
        grad_input,
    );
}

fn run_passes(
    batch: usize,
    groups: usize,
    passes: &[Pass],
    weight_at: &(dyn Fn(usize, usize, usize, [usize; 3]) -> f32 + Sync),
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    let m = passes.first().map_or(1, |p| p.dst_cpg);
    // Output channels per register tile, and vectors along the width: about 16 accumulators.
    match m {
        8.. => run_passes_tiled::<8, 2>(batch, groups, passes, weight_at, bias, out),
        4..=7 => run_passes_tiled::<4, 4>(batch, groups, passes, weight_at, bias, out),
        2..=3 => run_passes_tiled::<2, 4>(batch, groups, passes, weight_at, bias, out),
        _ => run_passes_tiled::<1, 4>(batch, groups, passes, weight_at, bias, out),
    }
}

fn run_passes_tiled<const MR: usize, const NV: usize>(
    batch: usize,
    groups: usize,
    passes: &[Pass],
    weight_at: &(dyn Fn(usize, usize, usize, [usize; 3]) -> f32 + Sync),
    bias: Option<&[f32]>,
    out: &mut [f32],
) {
    // Weights per (pass, group, chunk of MR destination channels) as [weight row][MR], zero past
    // the last channel so the tile never branches on a short chunk. Weight rows follow the pass's
    // tap order: (source channel, depth tap, height tap, width tap).
    let packed: Vec<Vec<f32>> = passes
        .iter()
        .map(|pass| {
            let m = pass.dst_cpg;
            let chunks = m.div_ceil(MR);
            let [pd, ph, pw] = &pass.axes;
            let rows = pass.src_cpg * pd.taps.len() * ph.taps.len() * pw.taps.len();
            let mut packed = vec![0f32; groups * chunks * rows * MR];
            for g in 0..groups {
                for co in 0..m {
                    let base = (g * chunks + co / MR) * rows * MR + co % MR;
                    let mut r = 0;
                    for c in 0..pass.src_cpg {
                        for &(_, a) in &pd.taps {
                            for &(_, b) in &ph.taps {
                                for &(_, k) in &pw.taps {
                                    packed[base + r * MR] = weight_at(g, co, c, [a, b, k]);
                                    r += 1;
                                }
                            }
                        }
                    }
                }
            }
            packed
        })
        .collect();
    // Passes differing only in their width phase write interleaved elements of the same rows:
    // one task runs them back to back so each output row stays in cache between them.
    let mut families: Vec<Vec<usize>> = vec![];
    for (p, pass) in passes.iter().enumerate() {
        let key = (pass.axes[0].out_origin, pass.axes[1].out_origin);
        match families.iter_mut().find(|f| {
            let first = &passes[f[0]].axes;
            (first[0].out_origin, first[1].out_origin) == key
        }) {
            Some(family) => family.push(p),
            None => families.push(vec![p]),
        }
    }
    // Tasks: (family of passes, batch item x group, block of destination rows).
    let mut tasks = vec![];
    for (f, family) in families.iter().enumerate() {
        let axes = &passes[family[0]].axes;
        let rows = axes[0].count * axes[1].count;
        let per_task = rows_per_task(rows, batch * groups * families.len());
        for ng in 0..batch * groups {
            for start in (0..rows).step_by(per_task) {
                tasks.push((f, ng, start, (start + per_task).min(rows)));
            }
        }
    }
    // Positions per block: a few tiles, so a block's inputs stay in the L1 cache.
    const BLOCK: usize = 128;
    let out_ptr = SharedMut(out.as_mut_ptr());
    tasks.into_par_iter().for_each_init(
        || {
            (
                Vec::<RowTap>::new(),
                Vec::<RowTap>::new(),
                Vec::<f32>::new(),
            )
        },
        |(taps, staged_taps, staging), (f, ng, start, end)| {
            let g = ng % groups;
            for row in start..end {
                for &p in &families[f] {
                    let pass = &passes[p];
                    let m = pass.dst_cpg;
                    let chunks = m.div_ceil(MR);
                    let [pd, ph, pw] = &pass.axes;
                    let rows = pass.src_cpg * pd.taps.len() * ph.taps.len() * pw.taps.len();
                    let src_plane = pass.src_dims.iter().product::<usize>();
                    let dst_plane = pass.dst_dims.iter().product::<usize>();
                    let src = pass.src
                        [ng * pass.src_cpg * src_plane..(ng + 1) * pass.src_cpg * src_plane]
                        .as_ptr();
                    let mut shifts = [(0isize, 0isize); MAX_KERNEL_WIDTH];
                    for ((shift, &(offset, _)), &pointer) in
                        shifts.iter_mut().zip(&pw.taps).zip(&pw.pointer_shifts)
                    {
                        *shift = (pointer, offset);
                    }
                    let shifts = &shifts[..pw.taps.len()];
                    let (qd, qh) = (row / ph.count, row % ph.count);
                    collect_row_taps(pass, qd, qh, taps);
                    let dst_row = ((qd * pd.out_step + pd.out_origin) * pass.dst_dims[1]
                        + qh * ph.out_step
                        + ph.out_origin)
                        * pass.dst_dims[2]
                        + pw.out_origin;
                    // A single-tap pass (pointwise, or a k2 s2 phase) reads one row per source
                    // channel at the same offset of planes a power of two apart: those rows
                    // collide in the caches' sets. Each block of them is first copied side by
                    // side into a small buffer.
                    let single_tap = pd.taps.len() == 1
                        && ph.taps.len() == 1
                        && pw.taps.len() == 1
                        && shifts[0] == (0, 0)
                        && taps.len() > 1;
                    // Positions outer, channel chunks inner: a long row's inputs are read from
                    // memory once and reused from cache by every chunk.
                    for x0 in (0..pw.count).step_by(BLOCK) {
                        let x_end = (x0 + BLOCK).min(pw.count);
                        let (tile_src, tile_taps) = if single_tap {
                            staging.resize(taps.len() * BLOCK, 0.0);
                            staged_taps.clear();
                            for (i, tap) in taps.iter().enumerate() {
                                let from = &pass.src[ng * pass.src_cpg * src_plane..]
                                    [(tap.offset as usize + x0)..];
                                staging[i * BLOCK..i * BLOCK + (x_end - x0)]
                                    .copy_from_slice(&from[..x_end - x0]);
                                staged_taps.push(RowTap {
                                    offset: (i * BLOCK) as isize - x0 as isize,
                                    weight_row: tap.weight_row,
                                });
                            }
                            (staging.as_ptr(), &staged_taps[..])
                        } else {
                            (src, &taps[..])
                        };
                        for chunk in 0..chunks {
                            let w = packed[p][(g * chunks + chunk) * rows * MR..].as_ptr();
                            let live = MR.min(m - chunk * MR);
                            let mut init = [0f32; MR];
                            if let Some(b) = bias {
                                init[..live].copy_from_slice(
                                    &b[g * m + chunk * MR..g * m + chunk * MR + live],
                                );
                            }
                            let out_offset = (ng * m + chunk * MR) * dst_plane + dst_row;
                            for x1 in (x0..x_end).step_by(LANES * NV) {
                                // SAFETY: loads are masked to the source row (`collect_row_taps`
                                // keeps only rows inside the source), stores go to this task's
                                // rows and `live` channels.
                                unsafe {
                                    forward_tile::<MR, NV>(
                                        tile_src,
                                        tile_taps,
                                        shifts,
                                        pass.src_width,
                                        x1,
                                        pw.count,
                                        w,
                                        &init,
                                        out_ptr.get().add(out_offset),
                                        dst_plane,
                                        pw.out_step,
                                        live,
                                    );
                                }
                            }
                        }
                    }
                }
            }
        },
    );
}

/// The source rows destination row (qd, qh) of a pass reads, over all source channels.
fn collect_row_taps(pass: &Pass, qd: usize, qh: usize, taps: &mut Vec<RowTap>) {
    taps.clear();
    let [pd, ph, pw] = &pass.axes;
    let [id, ih, iw] = pass.src_dims.map(|v| v as isize);
    for c in 0..pass.src_cpg {
        for (a, &(off_d, _)) in pd.taps.iter().enumerate() {
            let sd = (qd * pd.in_stride) as isize + off_d;
            if sd < 0 || sd >= id {
                continue;
            }
            for (b, &(off_h, _)) in ph.taps.iter().enumerate() {
                let sh = (qh * ph.in_stride) as isize + off_h;
                if sh < 0 || sh >= ih {
                    continue;
                }
                taps.push(RowTap {
                    offset: (((c as isize) * id + sd) * ih + sh) * iw,
                    weight_row: ((c * pd.taps.len() + a) * ph.taps.len() + b) * pw.taps.len(),
                });
            }
        }
    }
}

/// Destination channels `MR` x positions `x0 .. x0 + 16 NV` of one row, accumulated over every
/// (row tap, width tap), then stored (every `out_step`-th element) for the first `live` channels.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn forward_tile<const MR: usize, const NV: usize>(
    src: *const f32,
    taps: &[RowTap],
    shifts: &[(isize, isize)],
    in_width: usize,
    x0: usize,
    out_count: usize,
    weights: *const f32,
    init: &[f32; MR],
    out: *mut f32,
    channel_stride: usize,
    out_step: usize,
    live: usize,
) {
    let kw = shifts.len();
    let mut masks = [[0u16; NV]; MAX_KERNEL_WIDTH];
    for (k, &(_, shift)) in shifts.iter().enumerate() {
        for v in 0..NV {
            let x = (x0 + v * LANES) as isize;
            masks[k][v] = range_mask(x, out_count) & range_mask(x + shift, in_width);
        }
    }
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    for co in 0..MR {
        for v in 0..NV {
            acc[co][v] = _mm512_set1_ps(init[co]);
        }
    }
    for tap in taps {
        let row = src.wrapping_offset(tap.offset + x0 as isize);
        let w_row = weights.add(tap.weight_row * MR);
        for k in 0..kw {
            let p = row.wrapping_offset(shifts[k].0);
            let mut x = [_mm512_setzero_ps(); NV];
            for v in 0..NV {
                // Masked-off lanes are never read, so `p` may point before or past the row.
                x[v] = _mm512_maskz_loadu_ps(masks[k][v], p.wrapping_add(v * LANES));
            }
            let w_k = w_row.add(k * MR);
            for co in 0..MR {
                let w = _mm512_set1_ps(*w_k.add(co));
                for v in 0..NV {
                    acc[co][v] = _mm512_fmadd_ps(w, x[v], acc[co][v]);
                }
            }
        }
    }
    for v in 0..NV {
        let first = x0 + v * LANES;
        if first >= out_count {
            break;
        }
        if out_step == 1 {
            let store = range_mask(first as isize, out_count);
            for co in 0..live.min(MR) {
                _mm512_mask_storeu_ps(out.add(co * channel_stride + first), store, acc[co][v]);
            }
        } else {
            let store = range_mask(first as isize, out_count);
            let step = out_step as i32;
            let index = _mm512_mullo_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm512_set1_epi32(step),
            );
            for co in 0..live.min(MR) {
                let base = out.add(co * channel_stride + first * out_step);
                _mm512_mask_i32scatter_ps::<4>(base, store, index, acc[co][v]);
            }
        }
    }
}

/// Gradient of the weights (width stride 1), written into `grad_weight`. Runs of tasks reduce
/// their rows into private copies of the gradient, added in run order (thread-count independent).
pub fn backward_weight(
    geom: &ConvGeometry,
    input: &[f32],
    grad_out: &[f32],
    grad_weight: &mut [f32],
) {
    let groups = geom.groups;
    let (cig, m) = (geom.in_channels / groups, geom.out_channels / groups);
    let [kd, kh, kw] = geom.kernel;
    let rows = cig * kd * kh * kw;
    let [od, oh, ow] = geom.output();
    let positions = od * oh * ow;
    let out_rows = od * oh;
    // Tasks from the problem alone (not the pool): they fix where the partial sums split.
    let per_task = split_rows(out_rows, geom.batch * groups, REDUCTION_TASKS).min(16);
    let tasks_per_group = out_rows.div_ceil(per_task);
    // Width taps as (pointer offset, coordinate shift); a width stride reads the input rewritten
    // as width phases, where both stay contiguous.
    let phases = WidthPhases::new(geom.input[2], geom.stride[2]);
    let phased;
    let (input, row_len, in_width) = if geom.stride[2] > 1 {
        phased = phases.store(input, geom.input[2]);
        (&phased[..], phases.row_len(), phases.phase_len)
    } else {
        (input, geom.input[2], geom.input[2])
    };
    let in_plane = geom.input[0] * geom.input[1] * row_len;
    let deltas: Vec<(isize, isize)> = (0..kw)
        .map(|k| phases.tap((k * geom.dilation[2]) as isize - geom.padding[2] as isize))
        .collect();
    sum_of_tasks(
        geom.batch * groups * tasks_per_group,
        grad_weight,
        Vec::<(isize, isize)>::new,
        |row_pairs, task, acc| {
            let (ng, t) = (task / tasks_per_group, task % tasks_per_group);
            let g = ng % groups;
            let src = input[ng * cig * in_plane..(ng + 1) * cig * in_plane].as_ptr();
            let dy = grad_out[ng * m * positions..(ng + 1) * m * positions].as_ptr();
            let row_range = t * per_task..((t + 1) * per_task).min(out_rows);
            let gw_group = &mut acc[g * m * rows..(g + 1) * m * rows];
            let mut co = 0;
            while co < m {
                // Four channels x three width taps: 12 accumulators. Eight channels ran out of registers.
                let mr = [4, 2, 1].into_iter().find(|&mr| mr <= m - co).unwrap_or(1);
                for c in 0..cig {
                    for a in 0..kd {
                        for b in 0..kh {
                            row_pairs.clear();
                            for row in row_range.clone() {
                                let (d, h) = (row / oh, row % oh);
                                let sd = (d * geom.stride[0] + a * geom.dilation[0]) as isize
                                    - geom.padding[0] as isize;
                                let sh = (h * geom.stride[1] + b * geom.dilation[1]) as isize
                                    - geom.padding[1] as isize;
                                if sd < 0
                                    || sd >= geom.input[0] as isize
                                    || sh < 0
                                    || sh >= geom.input[1] as isize
                                {
                                    continue;
                                }
                                let s = (((c * geom.input[0]) as isize + sd)
                                    * geom.input[1] as isize
                                    + sh)
                                    * row_len as isize;
                                row_pairs.push(((row * ow) as isize, s));
                            }
                            if row_pairs.is_empty() {
                                continue;
                            }
                            let r0 = ((c * kd + a) * kh + b) * kw;
                            // SAFETY: the row pairs address rows inside this item's input
                            // and output gradient, width taps are masked to the input row,
                            // and the gradient block lies in this task's accumulator.
                            unsafe {
                                weight_tile_dispatch(
                                    mr,
                                    kw,
                                    dy.add(co * positions),
                                    row_pairs,
                                    src,
                                    &deltas,
                                    positions,
                                    ow,
                                    in_width,
                                    gw_group[co * rows + r0..].as_mut_ptr(),
                                    rows,
                                );
                            }
                        }
                    }
                }
                co += mr;
            }
        },
    );
}

/// Picks the register tile for `mr` output channels x `j` sources.
#[allow(clippy::too_many_arguments)]
unsafe fn weight_tile_dispatch(
    mr: usize,
    j: usize,
    dy: *const f32,
    row_pairs: &[(isize, isize)],
    src: *const f32,
    deltas: &[(isize, isize)],
    dy_channel_stride: usize,
    out_width: usize,
    in_width: usize,
    gw: *mut f32,
    gw_channel_stride: usize,
) {
    macro_rules! go {
        ($mr:literal, $j:literal) => {
            weight_tile::<$mr, $j>(
                dy,
                row_pairs,
                src,
                deltas,
                dy_channel_stride,
                out_width,
                in_width,
                gw,
                gw_channel_stride,
            )
        };
    }
    macro_rules! by_j {
        ($mr:literal) => {
            match j {
                1 => go!($mr, 1),
                2 => go!($mr, 2),
                3 => go!($mr, 3),
                _ => {
                    // Wider kernels: three sources at a time.
                    let mut q = 0;
                    while q < j {
                        let n = 3.min(j - q);
                        weight_tile_dispatch(
                            mr,
                            n,
                            dy,
                            row_pairs,
                            src,
                            &deltas[q..q + n],
                            dy_channel_stride,
                            out_width,
                            in_width,
                            gw.add(q),
                            gw_channel_stride,
                        );
                        q += n;
                    }
                }
            }
        };
    }
    match mr {
        8 => by_j!(8),
        4 => by_j!(4),
        2 => by_j!(2),
        _ => by_j!(1),
    }
}

/// `gw[co][j] += sum over rows and positions x of dy[co][row, x] * src[row + delta_j][x + shift_j]`
/// for `MR` output channels and `J` sources; `deltas[j]` = (pointer offset, coordinate shift used
/// to mask the row ends). Accumulates in registers across all rows, reduces once.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn weight_tile<const MR: usize, const J: usize>(
    dy: *const f32,
    row_pairs: &[(isize, isize)],
    src: *const f32,
    deltas: &[(isize, isize)],
    dy_channel_stride: usize,
    out_width: usize,
    in_width: usize,
    gw: *mut f32,
    gw_channel_stride: usize,
) {
    let mut acc = [[_mm512_setzero_ps(); J]; MR];
    // Positions outer, rows inner: the load masks are fixed for a whole pass over the rows.
    for x0 in (0..out_width).step_by(LANES) {
        let tail = range_mask(x0 as isize, out_width);
        let mut masks = [0u16; J];
        let mut offsets = [0isize; J];
        for q in 0..J {
            let (delta, shift) = deltas[q];
            masks[q] = tail & range_mask(x0 as isize + shift, in_width);
            offsets[q] = delta + x0 as isize;
        }
        for &(dy_offset, src_offset) in row_pairs {
            let dy_row = dy.offset(dy_offset).add(x0);
            let src_row = src.wrapping_offset(src_offset);
            let mut s = [_mm512_setzero_ps(); J];
            for q in 0..J {
                s[q] = _mm512_maskz_loadu_ps(masks[q], src_row.wrapping_offset(offsets[q]));
            }
            for co in 0..MR {
                let g = _mm512_maskz_loadu_ps(tail, dy_row.add(co * dy_channel_stride));
                for q in 0..J {
                    acc[co][q] = _mm512_fmadd_ps(g, s[q], acc[co][q]);
                }
            }
        }
    }
    for co in 0..MR {
        for q in 0..J {
            *gw.add(co * gw_channel_stride + q) += _mm512_reduce_add_ps(acc[co][q]);
        }
    }
}
