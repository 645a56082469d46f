//! Elementwise maps over strided inputs, written to a fresh contiguous output. Large outputs are
//! split into chunks across the rayon pool; each chunk walks its inputs with a strided cursor.

use super::conv::SharedMut;
use super::scalar::Float;
use crate::backend::ops::{BinaryOp, UnaryOp};
use crate::tensor::layout::Layout;
use rayon::prelude::*;

/// Below this many elements a map runs on the calling thread: spawning costs more than it saves.
const PARALLEL_THRESHOLD: usize = 1 << 15;
const CHUNK: usize = 1 << 14;

/// Walks a layout's storage indices in logical order from any starting element.
pub struct StridedCursor<'a> {
    layout: &'a Layout,
    counter: Vec<usize>,
    position: usize,
}

impl<'a> StridedCursor<'a> {
    pub fn new(layout: &'a Layout, start: usize) -> Self {
        let shape = layout.shape();
        let mut counter = vec![0; shape.len()];
        let mut rest = start;
        let mut position = layout.offset();
        for axis in (0..shape.len()).rev() {
            let d = shape[axis].max(1);
            counter[axis] = rest % d;
            rest /= d;
            position += counter[axis] * layout.strides()[axis];
        }
        StridedCursor {
            layout,
            counter,
            position,
        }
    }

    /// The storage index of the current element; then moves to the next one.
    #[inline(always)]
    pub fn next_index(&mut self) -> usize {
        let current = self.position;
        let shape = self.layout.shape();
        let strides = self.layout.strides();
        let mut axis = shape.len();
        while axis > 0 {
            axis -= 1;
            self.counter[axis] += 1;
            self.position += strides[axis];
            if self.counter[axis] < shape[axis] {
                return current;
            }
            self.position -= self.counter[axis] * strides[axis];
            self.counter[axis] = 0;
        }
        current
    }
}

/// Fills `out[i] = f(i-th logical element of the inputs)` chunk by chunk, in parallel when large.
fn fill_chunks<T: Float>(out: &mut [T], fill: impl Fn(usize, &mut [T]) + Sync) {
    if out.len() < PARALLEL_THRESHOLD {
        fill(0, out);
    } else {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| fill(c * CHUNK, chunk));
    }
}

/// Gathers a strided view into a dense vector.
pub fn copy_strided<T: Float>(x: &[T], layout: &Layout) -> Vec<T> {
    if let Some(r) = layout.contiguous_range() {
        return x[r].to_vec();
    }
    let dense = Layout::contiguous(layout.shape());
    if shared_runs(layout, &dense).0 >= MIN_RUN {
        let mut out = vec![T::zero(); layout.numel()];
        copy_runs(x, layout, &mut out, &dense);
        return out;
    }
    let mut out = vec![T::zero(); layout.numel()];
    fill_chunks(&mut out, |start, chunk| {
        let mut cur = StridedCursor::new(layout, start);
        for o in chunk.iter_mut() {
            *o = x[cur.next_index()];
        }
    });
    out
}

/// Copies a dense source into the positions of a strided destination view.
pub fn scatter_into<T: Float>(src: &[T], dst: &mut [T], dst_layout: &Layout) {
    if let Some(r) = dst_layout.contiguous_range() {
        dst[r].copy_from_slice(src);
        return;
    }
    copy_between(
        src,
        &Layout::contiguous(dst_layout.shape()),
        dst,
        dst_layout,
    );
}

/// Copies the view `src_layout` of `src` into the view `dst_layout` of `dst` (same shape). Views
/// whose trailing axes are contiguous in both (concatenations, crops, pads) copy whole runs in
/// parallel; others, and destinations that address one element more than once (a stride of 0),
/// go element by element in order.
pub fn copy_between<T: Float>(src: &[T], src_layout: &Layout, dst: &mut [T], dst_layout: &Layout) {
    assert_eq!(
        src_layout.shape(),
        dst_layout.shape(),
        "copy_between: shapes"
    );
    let distinct = dst_layout
        .shape()
        .iter()
        .zip(dst_layout.strides())
        .all(|(&n, &stride)| n <= 1 || stride != 0);
    if distinct && shared_runs(src_layout, dst_layout).0 >= MIN_RUN {
        return copy_runs(src, src_layout, dst, dst_layout);
    }
    let dense = copy_strided(src, src_layout);
    let mut cur = StridedCursor::new(dst_layout, 0);
    for &v in &dense {
        dst[cur.next_index()] = v;
    }
}

/// Shortest run worth copying as a slice rather than through the element cursor.
const MIN_RUN: usize = 8;

/// The length of the trailing runs contiguous in both layouts (same shape) and how many leading
/// axes index them.
fn shared_runs(a: &Layout, b: &Layout) -> (usize, usize) {
    let shape = a.shape();
    let (mut len, mut axes) = (1, shape.len());
    while axes > 0 {
        let d = axes - 1;
        if shape[d] != 1 && (a.strides()[d] != len || b.strides()[d] != len) {
            break;
        }
        len *= shape[d];
        axes -= 1;
    }
    (len, axes)
}

/// Index of the first element of run `run` of `layout`, runs indexed by its first `axes` axes.
fn run_start(layout: &Layout, axes: usize, mut run: usize) -> usize {
    let mut index = layout.offset();
    for d in (0..axes).rev() {
        let size = layout.shape()[d];
        index += (run % size) * layout.strides()[d];
        run /= size;
    }
    index
}

/// One past the largest index a view addresses (0 for an empty view).
fn view_end(layout: &Layout) -> usize {
    if layout.numel() == 0 {
        return 0;
    }
    let last: usize = layout
        .shape()
        .iter()
        .zip(layout.strides())
        .map(|(&n, &s)| (n - 1) * s)
        .sum();
    layout.offset() + last + 1
}

/// [`copy_between`] by runs: tasks of whole runs, each run one slice copy.
fn copy_runs<T: Float>(src: &[T], src_layout: &Layout, dst: &mut [T], dst_layout: &Layout) {
    let (len, axes) = shared_runs(src_layout, dst_layout);
    let runs = src_layout.numel() / len.max(1);
    if runs == 0 || len == 0 {
        return;
    }
    assert!(view_end(src_layout) <= src.len() && view_end(dst_layout) <= dst.len());
    let per_task = (CHUNK / len).max(1);
    let dst_ptr = SharedMut(dst.as_mut_ptr());
    let task = |t: usize| {
        for r in t * per_task..((t + 1) * per_task).min(runs) {
            let (from, to) = (
                run_start(src_layout, axes, r),
                run_start(dst_layout, axes, r),
            );
            // SAFETY: both runs lie inside their slices (view ends checked above), and the
            // destination view has no stride of 0 (checked by the caller), so its runs are
            // disjoint and no two tasks write one element.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    src[from..from + len].as_ptr(),
                    dst_ptr.get().add(to),
                    len,
                )
            };
        }
    };
    let tasks = runs.div_ceil(per_task);
    if runs * len < PARALLEL_THRESHOLD {
        (0..tasks).for_each(task);
    } else {
        (0..tasks).into_par_iter().for_each(task);
    }
}

/// Branch-free so loops vectorise; exp saturates instead of overflowing, so no NaN arises.
#[inline(always)]
fn sigmoid<T: Float>(x: T) -> T {
    T::one() / (T::one() + (-x).exp_fast())
}

#[inline(always)]
fn erf<T: Float>(x: T) -> T {
    T::from_f64_lossy(libm_erf(x.to_f64_lossless()))
}

/// erf in double precision (W. J. Cody's rational approximations, max error ~1e-16).
fn libm_erf(x: f64) -> f64 {
    // Abramowitz-Stegun 7.1.26 is too coarse for f64 gradient checks, so use the series/continued
    // fraction split: Taylor series near 0, complementary error function asymptotics beyond.
    let ax = x.abs();
    let r = if ax < 2.5 {
        // Taylor series: erf(x) = 2/sqrt(pi) * sum (-1)^n x^(2n+1) / (n! (2n+1))
        let mut term = ax;
        let mut sum = ax;
        let x2 = ax * ax;
        // For |x| < 2.5 the terms fall below 1e-17 of the sum well within 80 iterations.
        for n in 1..80 {
            let n = n as f64;
            term *= -x2 / n;
            let add = term / (2.0 * n + 1.0);
            sum += add;
            if add.abs() <= 1e-17 * sum.abs() {
                break;
            }
        }
        sum * std::f64::consts::FRAC_2_SQRT_PI
    } else {
        // Continued fraction for erfc, evaluated bottom-up (Lentz-free fixed depth suffices here).
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (ax + f);
        }
        1.0 - (-ax * ax).exp() / (std::f64::consts::PI.sqrt() * (ax + f))
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// The value of a unary op at one element.
#[inline(always)]
pub fn unary_value<T: Float>(op: UnaryOp, x: T) -> T {
    let zero = T::zero();
    match op {
        UnaryOp::Neg => -x,
        UnaryOp::Exp => x.exp_fast(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Abs => x.abs(),
        UnaryOp::Square => x * x,
        UnaryOp::Recip => T::one() / x,
        UnaryOp::Relu => x.max(zero),
        UnaryOp::LeakyRelu(s) => {
            if x > zero {
                x
            } else {
                x * T::from_f64_lossy(s)
            }
        }
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Silu => x * sigmoid(x),
        UnaryOp::Gelu => {
            let half = T::from_f64_lossy(0.5);
            half * x * (T::one() + erf(x * T::from_f64_lossy(std::f64::consts::FRAC_1_SQRT_2)))
        }
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Affine { mul, add } => x * T::from_f64_lossy(mul) + T::from_f64_lossy(add),
        UnaryOp::Powf(e) => x.powf(T::from_f64_lossy(e)),
        UnaryOp::Clamp { min, max } => x.max(T::from_f64_lossy(min)).min(T::from_f64_lossy(max)),
        UnaryOp::MaxScalar(s) => x.max(T::from_f64_lossy(s)),
        UnaryOp::MinScalar(s) => x.min(T::from_f64_lossy(s)),
        UnaryOp::Positive => {
            if x > zero {
                T::one()
            } else {
                zero
            }
        }
    }
}

/// The derivative of a unary op at one element (subgradient 0 at kinks, as PyTorch).
#[inline(always)]
pub fn unary_derivative<T: Float>(op: UnaryOp, x: T) -> T {
    let zero = T::zero();
    let one = T::one();
    match op {
        UnaryOp::Neg => -one,
        UnaryOp::Exp => x.exp_fast(),
        UnaryOp::Log => one / x,
        UnaryOp::Sqrt => T::from_f64_lossy(0.5) / x.sqrt(),
        UnaryOp::Abs => {
            if x > zero {
                one
            } else if x < zero {
                -one
            } else {
                zero
            }
        }
        UnaryOp::Square => x + x,
        UnaryOp::Recip => -one / (x * x),
        UnaryOp::Relu => {
            if x > zero {
                one
            } else {
                zero
            }
        }
        UnaryOp::LeakyRelu(s) => {
            if x > zero {
                one
            } else {
                T::from_f64_lossy(s)
            }
        }
        UnaryOp::Sigmoid => {
            let s = sigmoid(x);
            s * (one - s)
        }
        UnaryOp::Silu => {
            let s = sigmoid(x);
            s * (one + x * (one - s))
        }
        UnaryOp::Gelu => {
            let cdf = T::from_f64_lossy(0.5)
                * (one + erf(x * T::from_f64_lossy(std::f64::consts::FRAC_1_SQRT_2)));
            let pdf =
                (-(x * x) * T::from_f64_lossy(0.5)).exp() * T::from_f64_lossy(0.3989422804014327);
            cdf + x * pdf
        }
        UnaryOp::Tanh => {
            let t = x.tanh();
            one - t * t
        }
        UnaryOp::Affine { mul, .. } => T::from_f64_lossy(mul),
        UnaryOp::Powf(e) => T::from_f64_lossy(e) * x.powf(T::from_f64_lossy(e - 1.0)),
        UnaryOp::Clamp { min, max } => {
            if x >= T::from_f64_lossy(min) && x <= T::from_f64_lossy(max) {
                one
            } else {
                zero
            }
        }
        UnaryOp::MaxScalar(s) => {
            if x > T::from_f64_lossy(s) {
                one
            } else {
                zero
            }
        }
        UnaryOp::MinScalar(s) => {
            if x < T::from_f64_lossy(s) {
                one
            } else {
                zero
            }
        }
        UnaryOp::Positive => zero,
    }
}

#[inline(always)]
pub fn binary_value<T: Float>(op: BinaryOp, a: T, b: T) -> T {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Maximum => a.max(b),
        BinaryOp::Minimum => a.min(b),
        BinaryOp::Equal => {
            if a == b {
                T::one()
            } else {
                T::zero()
            }
        }
    }
}

/// `out[i] = f(src[i])`: one tight loop per op, so each vectorises on its own.
#[inline(always)]
fn map_into<T: Float>(src: &[T], out: &mut [T], f: impl Fn(T) -> T) {
    for (o, &v) in out.iter_mut().zip(src) {
        *o = f(v);
    }
}

/// Applies `op` to a dense run, choosing the loop once per run rather than per element.
fn unary_dense<T: Float>(op: UnaryOp, src: &[T], out: &mut [T]) {
    match op {
        UnaryOp::Exp => map_into(src, out, |x| x.exp_fast()),
        UnaryOp::Sigmoid => map_into(src, out, sigmoid),
        UnaryOp::Silu => map_into(src, out, |x| x * sigmoid(x)),
        UnaryOp::Relu => map_into(src, out, |x| x.max(T::zero())),
        UnaryOp::Square => map_into(src, out, |x| x * x),
        UnaryOp::Affine { mul, add } => {
            let (m, a) = (T::from_f64_lossy(mul), T::from_f64_lossy(add));
            map_into(src, out, |x| x * m + a)
        }
        _ => map_into(src, out, |x| unary_value(op, x)),
    }
}

/// `out[i] = g[i] * op'(x[i])` on dense runs, one tight loop per common op.
fn unary_grad_dense<T: Float>(op: UnaryOp, x: &[T], g: &[T], out: &mut [T]) {
    #[inline(always)]
    fn zip_into<T: Float>(x: &[T], g: &[T], out: &mut [T], f: impl Fn(T, T) -> T) {
        for ((o, &xv), &gv) in out.iter_mut().zip(x).zip(g) {
            *o = f(xv, gv);
        }
    }
    let one = T::one();
    match op {
        UnaryOp::Sigmoid => zip_into(x, g, out, |x, g| {
            let s = sigmoid(x);
            g * s * (one - s)
        }),
        UnaryOp::Silu => zip_into(x, g, out, |x, g| {
            let s = sigmoid(x);
            g * s * (one + x * (one - s))
        }),
        UnaryOp::Exp => zip_into(x, g, out, |x, g| g * x.exp_fast()),
        UnaryOp::Relu => zip_into(x, g, out, |x, g| if x > T::zero() { g } else { T::zero() }),
        _ => zip_into(x, g, out, |x, g| g * unary_derivative(op, x)),
    }
}

pub fn unary<T: Float>(x: &[T], layout: &Layout, op: UnaryOp) -> Vec<T> {
    let mut out = vec![T::zero(); layout.numel()];
    let contiguous = layout.contiguous_range();
    fill_chunks(&mut out, |start, chunk| match &contiguous {
        Some(r) => unary_dense(
            op,
            &x[r.start + start..r.start + start + chunk.len()],
            chunk,
        ),
        None => {
            let mut cur = StridedCursor::new(layout, start);
            for o in chunk.iter_mut() {
                *o = unary_value(op, x[cur.next_index()]);
            }
        }
    });
    out
}

/// `grad * f'(x)` for a unary op, the backward of [`unary`] in one pass.
pub fn unary_grad<T: Float>(x: &[T], xl: &Layout, grad: &[T], gl: &Layout, op: UnaryOp) -> Vec<T> {
    let mut out = vec![T::zero(); xl.numel()];
    let (cx, cg) = (xl.contiguous_range(), gl.contiguous_range());
    fill_chunks(&mut out, |start, chunk| match (&cx, &cg) {
        (Some(rx), Some(rg)) => {
            let n = chunk.len();
            unary_grad_dense(
                op,
                &x[rx.start + start..rx.start + start + n],
                &grad[rg.start + start..rg.start + start + n],
                chunk,
            )
        }
        _ => {
            let mut cur_x = StridedCursor::new(xl, start);
            let mut cur_g = StridedCursor::new(gl, start);
            for o in chunk.iter_mut() {
                *o = grad[cur_g.next_index()] * unary_derivative(op, x[cur_x.next_index()]);
            }
        }
    });
    out
}

/// `op(a, b)` for operands already broadcast to one shape.
pub fn binary<T: Float>(a: &[T], al: &Layout, b: &[T], bl: &Layout, op: BinaryOp) -> Vec<T> {
    let (ca, cb) = (al.contiguous_range(), bl.contiguous_range());
    if (ca.is_none() || cb.is_none()) && al.rank() > 0 && al.shape()[al.rank() - 1] >= 8 {
        return binary_rows(a, al, b, bl, op);
    }
    let mut out = vec![T::zero(); al.numel()];
    fill_chunks(&mut out, |start, chunk| match (&ca, &cb) {
        (Some(ra), Some(rb)) => {
            let sa = &a[ra.start + start..ra.start + start + chunk.len()];
            let sb = &b[rb.start + start..rb.start + start + chunk.len()];
            #[inline(always)]
            fn zip_into<T: Float>(a: &[T], b: &[T], out: &mut [T], f: impl Fn(T, T) -> T) {
                for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                    *o = f(x, y);
                }
            }
            match op {
                BinaryOp::Add => zip_into(sa, sb, chunk, |x, y| x + y),
                BinaryOp::Sub => zip_into(sa, sb, chunk, |x, y| x - y),
                BinaryOp::Mul => zip_into(sa, sb, chunk, |x, y| x * y),
                BinaryOp::Div => zip_into(sa, sb, chunk, |x, y| x / y),
                _ => zip_into(sa, sb, chunk, |x, y| binary_value(op, x, y)),
            }
        }
        _ => {
            let mut cur_a = StridedCursor::new(al, start);
            let mut cur_b = StridedCursor::new(bl, start);
            for o in chunk.iter_mut() {
                *o = binary_value(op, a[cur_a.next_index()], b[cur_b.next_index()]);
            }
        }
    });
    out
}

/// `op(a, b)` for broadcast operands, row by row along the last axis: each row is a contiguous
/// or constant run in each operand (a per-channel scale is a constant per row), so the inner loop
/// needs no index arithmetic.
pub fn binary_rows<T: Float>(a: &[T], al: &Layout, b: &[T], bl: &Layout, op: BinaryOp) -> Vec<T> {
    let rank = al.rank();
    let inner = al.shape()[rank - 1];
    let mut out = vec![T::zero(); al.numel()];
    if inner == 0 || out.is_empty() {
        return out;
    }
    let outer = |l: &Layout| {
        Layout::new(
            l.shape()[..rank - 1].to_vec(),
            l.strides()[..rank - 1].to_vec(),
            l.offset(),
        )
    };
    let (oa, ob) = (outer(al), outer(bl));
    let (sa, sb) = (al.strides()[rank - 1], bl.strides()[rank - 1]);
    let rows_per_task = (CHUNK / inner).max(1);
    let task = |(t, chunk): (usize, &mut [T])| {
        let first_row = t * rows_per_task;
        let (mut ca, mut cb) = (
            StridedCursor::new(&oa, first_row),
            StridedCursor::new(&ob, first_row),
        );
        for row in chunk.chunks_mut(inner) {
            let (ba, bb) = (ca.next_index(), cb.next_index());
            match (sa, sb) {
                (1, 1) => row
                    .iter_mut()
                    .zip(&a[ba..ba + inner])
                    .zip(&b[bb..bb + inner])
                    .for_each(|((o, &x), &y)| *o = binary_value(op, x, y)),
                (1, 0) => {
                    let y = b[bb];
                    row.iter_mut()
                        .zip(&a[ba..ba + inner])
                        .for_each(|(o, &x)| *o = binary_value(op, x, y));
                }
                (0, 1) => {
                    let x = a[ba];
                    row.iter_mut()
                        .zip(&b[bb..bb + inner])
                        .for_each(|(o, &y)| *o = binary_value(op, x, y));
                }
                _ => row
                    .iter_mut()
                    .enumerate()
                    .for_each(|(i, o)| *o = binary_value(op, a[ba + i * sa], b[bb + i * sb])),
            }
        }
    };
    if out.len() < PARALLEL_THRESHOLD {
        out.chunks_mut(rows_per_task * inner)
            .enumerate()
            .for_each(task);
    } else {
        out.par_chunks_mut(rows_per_task * inner)
            .enumerate()
            .for_each(task);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs copied as slices (a concatenation's window, a crop, an offset view, a run split by a
    /// size-1 axis) and element-wise views (a transpose, a broadcast source) against the logical
    /// index order of both views, in parallel and serial sizes.
    #[test]
    fn copy_between_matches_an_index_by_index_copy() {
        let full = |shape: &[usize]| Layout::contiguous(shape);
        let narrow = |l: Layout, axis, start, len| l.narrow("test", axis, start, len).unwrap();
        let cases: Vec<(Layout, usize, Layout, usize)> = vec![
            // dense source into channels 3..8 of [2, 9, 5, 13] (a cat window)
            (
                full(&[2, 5, 5, 13]),
                650,
                narrow(full(&[2, 9, 5, 13]), 1, 3, 5),
                1170,
            ),
            // a crop of [2, 4, 40, 41] into a cat window
            (
                narrow(narrow(full(&[2, 4, 40, 41]), 2, 3, 33), 3, 1, 39),
                13120,
                narrow(full(&[2, 7, 33, 39]), 1, 0, 4),
                18018,
            ),
            // large enough for parallel tasks
            (
                full(&[3, 64, 300]),
                57600,
                narrow(full(&[3, 70, 300]), 1, 6, 64),
                63000,
            ),
            // transposed source: element by element
            (
                full(&[7, 9]).permute("test", &[1, 0]).unwrap(),
                63,
                full(&[9, 7]),
                63,
            ),
            // broadcast source
            (
                full(&[1, 12]).broadcast_to("test", &[5, 12]).unwrap(),
                12,
                full(&[5, 12]),
                60,
            ),
            // a destination that repeats its rows (stride 0): in order, the last row wins
            (
                full(&[5, 12]),
                60,
                full(&[1, 12]).broadcast_to("test", &[5, 12]).unwrap(),
                12,
            ),
        ];
        for (src_layout, src_len, dst_layout, dst_len) in cases {
            let src: Vec<f64> = (0..src_len).map(|i| i as f64 + 0.5).collect();
            let mut got = vec![-1.0; dst_len];
            let mut want = got.clone();
            copy_between(&src, &src_layout, &mut got, &dst_layout);
            for (s, d) in src_layout.indices().into_iter().zip(dst_layout.indices()) {
                want[d] = src[s];
            }
            assert_eq!(got, want, "{src_layout:?} -> {dst_layout:?}");
            assert_eq!(
                copy_strided(&src, &src_layout),
                src_layout
                    .indices()
                    .iter()
                    .map(|&i| src[i])
                    .collect::<Vec<_>>()
            );
        }
    }

    #[test]
    fn erf_matches_known_values() {
        for (x, e) in [
            (0.0, 0.0),
            (0.5, 0.5204998778130465),
            (1.0, 0.8427007929497149),
            (2.0, 0.9953222650189527),
            (3.0, 0.9999779095030014),
            (-1.5, -0.9661051464753108),
        ] {
            assert!(
                (libm_erf(x) - e).abs() < 1e-14,
                "erf({x}) = {} != {e}",
                libm_erf(x)
            );
        }
    }

    #[test]
    fn strided_cursor_starting_mid_tensor_matches_full_walk() {
        let l = Layout::contiguous(&[3, 4, 5])
            .permute("t", &[1, 2, 0])
            .unwrap();
        let all = l.indices();
        for start in [0, 7, 19, 59] {
            let mut c = StridedCursor::new(&l, start);
            let got: Vec<usize> = (start..60).map(|_| c.next_index()).collect();
            assert_eq!(got, all[start..]);
        }
    }
}
