//! Matrix multiply on the CPU: an own AVX-512 kernel for f32 where the CPU has it
//! (`gemm_avx512`), else the `gemm` crate (blocked, SIMD, multithreaded).

use super::scalar::Float;

/// A strided matrix view: element (r, c) is at `offset + r * row_stride + c * col_stride`.
#[derive(Clone, Copy, Debug)]
pub struct MatLayout {
    pub rows: usize,
    pub cols: usize,
    pub row_stride: isize,
    pub col_stride: isize,
}

impl MatLayout {
    /// A dense row-major matrix.
    pub fn row_major(rows: usize, cols: usize) -> Self {
        MatLayout {
            rows,
            cols,
            row_stride: cols as isize,
            col_stride: 1,
        }
    }
    /// The transpose of this view, without moving data.
    pub fn t(self) -> Self {
        MatLayout {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }
}

/// How many threads a GEMM of this size should use: small products are faster on one thread.
/// The thread count does not change the bits: the `gemm` crate splits only the output among
/// threads, each element's sum over K running in the same blocks on any count (tested below).
fn parallelism(m: usize, n: usize, k: usize) -> gemm::Parallelism {
    let threads = rayon::current_num_threads();
    if threads <= 1 || (m * n * k) < 64 * 64 * 64 || rayon::current_thread_index().is_some() {
        gemm::Parallelism::None
    } else {
        gemm::Parallelism::Rayon(threads)
    }
}

/// `c = beta * c + a @ b` when `accumulate`, else `c = a @ b`, for strided views.
///
/// Panics if the layouts do not fit the slices: callers validate shapes before reaching a kernel.
pub fn gemm<T: Float>(
    a: &[T],
    a_layout: MatLayout,
    b: &[T],
    b_layout: MatLayout,
    c: &mut [T],
    c_layout: MatLayout,
    accumulate: bool,
) {
    let (m, k) = (a_layout.rows, a_layout.cols);
    let n = b_layout.cols;
    assert_eq!(b_layout.rows, k, "gemm: inner dimensions differ");
    assert_eq!((c_layout.rows, c_layout.cols), (m, n), "gemm: output shape");
    assert!(span(a_layout) <= a.len() && span(b_layout) <= b.len() && span(c_layout) <= c.len());
    // SAFETY: the asserts above keep every index the views can form inside the slices, and the
    // output view addresses distinct elements (callers pass dense or transposed-dense outputs).
    unsafe {
        gemm_raw(
            a.as_ptr(),
            a_layout,
            b.as_ptr(),
            b_layout,
            c.as_mut_ptr(),
            c_layout,
            accumulate,
        )
    }
}

/// [`gemm()`] on raw pointers, for kernels whose parallel tasks write disjoint parts of one output
/// (forming overlapping `&mut` slices for them would be undefined behaviour).
///
/// # Safety
/// Every element the three views address must be valid (reads for `a`, `b`; reads and writes for
/// `c`), `c` must address distinct elements, and no other thread may touch the elements of `c`
/// during the call.
pub unsafe fn gemm_raw<T: Float>(
    a: *const T,
    a_layout: MatLayout,
    b: *const T,
    b_layout: MatLayout,
    c: *mut T,
    c_layout: MatLayout,
    accumulate: bool,
) {
    let (m, k) = (a_layout.rows, a_layout.cols);
    let n = b_layout.cols;
    debug_assert_eq!(b_layout.rows, k, "gemm: inner dimensions differ");
    debug_assert_eq!((c_layout.rows, c_layout.cols), (m, n), "gemm: output shape");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for col in 0..n {
                    *c.offset(
                        r as isize * c_layout.row_stride + col as isize * c_layout.col_stride,
                    ) = T::zero();
                }
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if uses_avx512_kernel::<T>(m, n, k, c_layout) {
        let threads = match parallelism(m, n, k) {
            gemm::Parallelism::Rayon(t) => t,
            _ => 1,
        };
        // SAFETY: T is f32 (checked), and the caller's contract covers the views.
        return super::gemm_avx512::gemm(
            a.cast(),
            a_layout,
            b.cast(),
            b_layout,
            c.cast(),
            c_layout,
            accumulate,
            threads,
        );
    }
    gemm::gemm(
        m,
        n,
        k,
        c,
        c_layout.col_stride,
        c_layout.row_stride,
        accumulate,
        a,
        a_layout.col_stride,
        a_layout.row_stride,
        b,
        b_layout.col_stride,
        b_layout.row_stride,
        T::one(),
        T::one(),
        false,
        false,
        false,
        parallelism(m, n, k),
    );
}

/// Whether the AVX-512 f32 kernel takes this product: f32 on a CPU with AVX-512F, C's rows
/// contiguous, and enough rows that packing B pays (the `gemm` crate, which does not always
/// pack, is faster on thin products).
#[cfg(target_arch = "x86_64")]
fn uses_avx512_kernel<T: Float>(m: usize, n: usize, k: usize, c: MatLayout) -> bool {
    std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>()
        && c.col_stride == 1
        && m >= AVX512_MIN_ROWS
        && n >= 16
        && k >= 16
        && super::gemm_avx512::available()
}

/// See [`uses_avx512_kernel`].
#[cfg(target_arch = "x86_64")]
const AVX512_MIN_ROWS: usize = 24;

/// One past the largest index a view touches (views here have non-negative strides).
fn span(l: MatLayout) -> usize {
    if l.rows == 0 || l.cols == 0 {
        return 0;
    }
    ((l.rows - 1) as isize * l.row_stride + (l.cols - 1) as isize * l.col_stride) as usize + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, n: usize, k: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[i * n + j] += a[i * k + p] * b[p * n + j];
                }
            }
        }
        c
    }

    #[test]
    fn gemm_matches_naive_loop_including_transposed_views() {
        let (m, n, k) = (37, 29, 71);
        let a: Vec<f64> = (0..m * k).map(|i| ((i * 7 % 13) as f64) - 6.0).collect();
        let b: Vec<f64> = (0..k * n)
            .map(|i| ((i * 5 % 11) as f64) * 0.5 - 2.0)
            .collect();
        let expected = naive(m, n, k, &a, &b);
        let mut c = vec![0.0; m * n];
        gemm(
            &a,
            MatLayout::row_major(m, k),
            &b,
            MatLayout::row_major(k, n),
            &mut c,
            MatLayout::row_major(m, n),
            false,
        );
        assert_eq!(c, expected);
        // b stored transposed (n x k), read through a transposed view.
        let mut bt = vec![0.0; n * k];
        for p in 0..k {
            for j in 0..n {
                bt[j * k + p] = b[p * n + j];
            }
        }
        let mut c2 = vec![1.0; m * n];
        gemm(
            &a,
            MatLayout::row_major(m, k),
            &bt,
            MatLayout::row_major(n, k).t(),
            &mut c2,
            MatLayout::row_major(m, n),
            true,
        );
        let expected_acc: Vec<f64> = expected.iter().map(|v| v + 1.0).collect();
        assert_eq!(c2, expected_acc);
    }

    /// Many threads must give the bits of one: a K split across threads would change the order
    /// of each element's sum. Shapes cover the small-matrix and blocked paths, K over one block.
    #[test]
    fn gemm_bits_do_not_depend_on_the_thread_count() {
        for (m, n, k) in [(50, 40, 1500), (300, 257, 1100), (7, 2000, 3000)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 13 % 97) as f32).cos()).collect();
            let run = |parallelism: gemm::Parallelism| {
                let mut c = vec![0f32; m * n];
                // SAFETY: dense row-major views of exactly these sizes.
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        c.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        a.as_ptr(),
                        1,
                        k as isize,
                        b.as_ptr(),
                        1,
                        n as isize,
                        1f32,
                        1f32,
                        false,
                        false,
                        false,
                        parallelism,
                    );
                }
                c.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
            };
            let serial = run(gemm::Parallelism::None);
            for threads in [2, 3, 4] {
                assert!(
                    serial == run(gemm::Parallelism::Rayon(threads)),
                    "{m}x{n}x{k} on {threads} threads"
                );
            }
        }
    }
}
