//! f32 matrix multiply for AVX-512: packed panels and a 12 x 32 register tile.
//!
//! The `gemm` crate runs 256-bit kernels on stable Rust (its AVX-512 kernels need a nightly
//! compiler), which leaves half of an AVX-512 core's multiply-add width unused. This is the
//! classic blocked scheme: a KC x NC panel of B packed as 32-column slivers (two vectors per
//! k), an MC x KC block of A packed as 12-row slivers (one broadcast per row and k), and a
//! micro-kernel that keeps the 12 x 32 tile of C in 24 registers over the whole KC depth.
//!
//! Each element of C sums its KC blocks in ascending order, each block in k order, whatever the
//! split among threads (threads take disjoint ranges of rows or columns), so the bits do not
//! depend on the thread count.
//!
//! `gemm::gemm_raw` calls this for f32 when the CPU has AVX-512F and C's rows are contiguous.

// Register tiles are indexed by row and vector in fixed-size loops the compiler unrolls.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::conv::SharedMut;
use super::gemm::MatLayout;

/// Rows of the register tile (A values broadcast per k).
const MR: usize = 12;
/// Columns of the register tile (two 16-lane vectors of B per k).
const NR: usize = 32;
/// Depth of one packed block: a 12 x KC sliver of A and a KC x 32 sliver of B fit in L1.
const KC: usize = 256;
/// Rows of A packed at once (a multiple of MR; 144 x 256 floats, 144 KiB, stay in L2).
const MC: usize = 144;
/// Columns of B packed at once (a multiple of NR; 256 x 1024 floats, 1 MiB).
const NC: usize = 1024;

/// Whether this CPU runs the kernel.
pub fn available() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// `c = c + a @ b` when `accumulate`, else `c = a @ b`; `c_layout.col_stride` must be 1.
///
/// # Safety
/// As `gemm::gemm_raw`, and the CPU must have AVX-512F ([`available`]).
pub unsafe fn gemm(
    a: *const f32,
    a_layout: MatLayout,
    b: *const f32,
    b_layout: MatLayout,
    c: *mut f32,
    c_layout: MatLayout,
    accumulate: bool,
    threads: usize,
) {
    let (m, n) = (c_layout.rows, c_layout.cols);
    if threads <= 1 {
        return serial(a, a_layout, b, b_layout, c, c_layout, accumulate);
    }
    // Split the longer side of C into one range per thread, on tile boundaries. A and B are only
    // read through the shared pointers.
    let split_rows = m.div_ceil(MR) >= n.div_ceil(NR);
    let (extent, unit) = if split_rows { (m, MR) } else { (n, NR) };
    let per_task = extent.div_ceil(unit).div_ceil(threads) * unit;
    let (a, b, c) = (
        SharedMut(a.cast_mut()),
        SharedMut(b.cast_mut()),
        SharedMut(c),
    );
    rayon::scope(|s| {
        for start in (0..extent).step_by(per_task) {
            let len = per_task.min(extent - start);
            let at = start as isize;
            // The task's rows of A and C, or its columns of B and C.
            let (a_at, b_at, c_at, al, bl, cl) = if split_rows {
                let rows = |l: MatLayout| MatLayout { rows: len, ..l };
                let (a_at, c_at) = (at * a_layout.row_stride, at * c_layout.row_stride);
                (a_at, 0, c_at, rows(a_layout), b_layout, rows(c_layout))
            } else {
                let cols = |l: MatLayout| MatLayout { cols: len, ..l };
                let b_at = at * b_layout.col_stride;
                (0, b_at, at, a_layout, cols(b_layout), cols(c_layout))
            };
            s.spawn(move |_| {
                // SAFETY: each task's sub-views lie inside the caller's views, and tasks write
                // disjoint rows (or columns) of C.
                unsafe {
                    serial(
                        a.get().offset(a_at),
                        al,
                        b.get().offset(b_at),
                        bl,
                        c.get().offset(c_at),
                        cl,
                        accumulate,
                    )
                }
            });
        }
    });
}

thread_local! {
    /// Packed A block and B panel, kept per thread between calls.
    static PACKED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// One thread's product: the blocked loops around the micro-kernel.
unsafe fn serial(
    a: *const f32,
    a_layout: MatLayout,
    b: *const f32,
    b_layout: MatLayout,
    c: *mut f32,
    c_layout: MatLayout,
    accumulate: bool,
) {
    let (m, k, n) = (a_layout.rows, a_layout.cols, b_layout.cols);
    PACKED.with(|packed| {
        let (packed_a, packed_b) = &mut *packed.borrow_mut();
        packed_a.resize(MC * KC, 0.0);
        packed_b.resize(KC * NC, 0.0);
        for jc in (0..n).step_by(NC) {
            let nc = NC.min(n - jc);
            for pc in (0..k).step_by(KC) {
                let kc = KC.min(k - pc);
                // The first depth block writes C (unless accumulating), later ones add to it.
                let add = accumulate || pc > 0;
                pack::<NR>(b, b_layout, pc, kc, jc, nc, packed_b);
                for ic in (0..m).step_by(MC) {
                    let mc = MC.min(m - ic);
                    pack::<MR>(a, a_layout.t(), pc, kc, ic, mc, packed_a);
                    for jr in (0..nc).step_by(NR) {
                        let cols = NR.min(nc - jr);
                        let b_sliver = packed_b.as_ptr().add(jr * kc);
                        for ir in (0..mc).step_by(MR) {
                            let rows = MR.min(mc - ir);
                            let tile = c.offset(
                                (ic + ir) as isize * c_layout.row_stride + (jc + jr) as isize,
                            );
                            micro_kernel(
                                kc,
                                packed_a.as_ptr().add(ir * kc),
                                b_sliver,
                                tile,
                                c_layout.row_stride,
                                rows,
                                cols,
                                add,
                            );
                        }
                    }
                }
            }
        }
    });
}

/// Packs rows `pc..pc + kc`, columns `jc..jc + nc` of `m` as W-column slivers: sliver s holds,
/// for each row, the W values of columns `jc + s * W..` (zeros past the last column). B packs
/// as itself (W = NR); A packs as its transpose (W = MR rows of A per sliver).
unsafe fn pack<const W: usize>(
    m: *const f32,
    l: MatLayout,
    pc: usize,
    kc: usize,
    jc: usize,
    nc: usize,
    out: &mut [f32],
) {
    for (s, sliver) in out
        .chunks_exact_mut(W * kc)
        .take(nc.div_ceil(W))
        .enumerate()
    {
        let cols = W.min(nc - s * W);
        let first = m.offset(pc as isize * l.row_stride + (jc + s * W) as isize * l.col_stride);
        for p in 0..kc {
            let src = first.offset(p as isize * l.row_stride);
            let dst = &mut sliver[p * W..(p + 1) * W];
            if l.col_stride == 1 {
                std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), cols);
            } else {
                for j in 0..cols {
                    dst[j] = *src.offset(j as isize * l.col_stride);
                }
            }
            dst[cols..].fill(0.0);
        }
    }
}

/// C's `rows x cols` tile (row stride `ldc`) gets (or, with `add`, gains) the product of a packed
/// MR x kc sliver of A and a packed kc x NR sliver of B.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro_kernel(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: isize,
    rows: usize,
    cols: usize,
    add: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        let b0 = _mm512_loadu_ps(b);
        let b1 = _mm512_loadu_ps(b.add(16));
        for i in 0..MR {
            let ai = _mm512_set1_ps(*a.add(i));
            acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
        }
        a = a.add(MR);
        b = b.add(NR);
    }
    let mask = |from: usize| -> __mmask16 {
        let live = cols.saturating_sub(from).min(16);
        ((1u32 << live) - 1) as __mmask16
    };
    let masks = [mask(0), mask(16)];
    for i in 0..rows {
        let row = c.offset(i as isize * ldc);
        for v in 0..2 {
            let at = row.add(16 * v);
            let value = if add {
                _mm512_add_ps(_mm512_maskz_loadu_ps(masks[v], at), acc[i][v])
            } else {
                acc[i][v]
            };
            _mm512_mask_storeu_ps(at, masks[v], value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a @ b` in f64 for strided views.
    fn naive(a: &[f32], al: MatLayout, b: &[f32], bl: MatLayout) -> Vec<f64> {
        let at = |r: usize, c: usize| a[r * al.row_stride as usize + c * al.col_stride as usize];
        let bt = |r: usize, c: usize| b[r * bl.row_stride as usize + c * bl.col_stride as usize];
        let mut out = vec![0.0; al.rows * bl.cols];
        for i in 0..al.rows {
            for j in 0..bl.cols {
                out[i * bl.cols + j] = (0..al.cols)
                    .map(|p| at(i, p) as f64 * bt(p, j) as f64)
                    .sum();
            }
        }
        out
    }

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i * 37 + seed) % 101) as f32 / 50.0) - 1.0)
            .collect()
    }

    /// Against an f64 loop on sizes that are not multiples of the tiles or blocks (tails in
    /// every loop, K past one block, N past one panel), with transposed A and B, accumulation,
    /// and C inside a wider matrix; and the same bits on 1, 2 and 3 threads.
    #[test]
    fn matches_an_f64_loop_on_ragged_strided_shapes_with_bits_independent_of_threads() {
        if !available() {
            eprintln!("no AVX-512F on this CPU: the kernel cannot run here");
            return;
        }
        for (m, n, k, transpose_a, transpose_b) in [
            (37, 45, 29, false, false),
            (150, 1100, 600, false, true),
            (13, 33, 300, true, false),
            (290, 70, 257, true, true),
        ] {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let al = if transpose_a {
                MatLayout::row_major(k, m).t()
            } else {
                MatLayout::row_major(m, k)
            };
            let bl = if transpose_b {
                MatLayout::row_major(n, k).t()
            } else {
                MatLayout::row_major(k, n)
            };
            let expected = naive(&a, al, &b, bl);
            // C is the left n columns of an m x (n + 3) matrix, starting at 0.5 when accumulating.
            let cl = MatLayout {
                rows: m,
                cols: n,
                row_stride: (n + 3) as isize,
                col_stride: 1,
            };
            for accumulate in [false, true] {
                let mut bits = Vec::new();
                for threads in [1, 2, 3] {
                    let mut c = vec![0.5f32; m * (n + 3)];
                    // SAFETY: the views lie inside the vectors; AVX-512F checked above.
                    unsafe {
                        gemm(
                            a.as_ptr(),
                            al,
                            b.as_ptr(),
                            bl,
                            c.as_mut_ptr(),
                            cl,
                            accumulate,
                            threads,
                        )
                    };
                    for i in 0..m {
                        for j in 0..n + 3 {
                            let got = c[i * (n + 3) + j] as f64;
                            let want = if j >= n {
                                0.5
                            } else {
                                expected[i * n + j] + if accumulate { 0.5 } else { 0.0 }
                            };
                            let tol = 1e-5 * (k as f64).sqrt() * (1.0 + want.abs());
                            assert!(
                                (got - want).abs() <= tol,
                                "{m}x{n}x{k} ({i}, {j}): {got} vs {want}"
                            );
                        }
                    }
                    bits.push(c.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
                }
                assert!(
                    bits.iter().all(|b| *b == bits[0]),
                    "{m}x{n}x{k}: thread counts differ"
                );
            }
        }
    }
}
