//! Max and average pooling, 2D and 3D (2D being 3D with depth 1), NCDHW layout, floor mode
//! (PyTorch's `ceil_mode=False`). Each (batch item, channel) plane is independent, so planes run in
//! parallel and backward passes scatter into their own plane without contention.

use rayon::prelude::*;

use super::scalar::Float;
pub use crate::backend::geometry::PoolGeometry;

impl PoolGeometry {
    /// For output coordinate `o` on `axis`: the first input coordinate of the window (possibly in
    /// the padding, hence signed).
    #[inline]
    fn window_start(&self, axis: usize, o: usize) -> isize {
        (o * self.stride[axis]) as isize - self.padding[axis] as isize
    }

    fn assert_valid(&self, op: &'static str) {
        if let Err(e) = self.validate(op) {
            panic!("{op} kernel called with an invalid geometry: {e}");
        }
    }
}

/// Max pooling: `out` gets each window's maximum and `argmax` its index within the input plane
/// (`(d * H + h) * W + w`, as PyTorch returns). Padding never wins; a NaN in a window wins.
pub fn max_pool_forward<T: Float>(
    geom: &PoolGeometry,
    input: &[T],
    out: &mut [T],
    argmax: &mut [usize],
) {
    geom.assert_valid("max_pool");
    assert_eq!(
        input.len(),
        geom.input_len(),
        "max_pool_forward: input length"
    );
    assert_eq!(
        out.len(),
        geom.output_len(),
        "max_pool_forward: output length"
    );
    assert_eq!(
        argmax.len(),
        geom.output_len(),
        "max_pool_forward: argmax length"
    );
    let in_plane = geom.input.iter().product::<usize>();
    let out_dims = geom.output();
    let out_plane = out_dims.iter().product::<usize>();
    if out_plane == 0 {
        return;
    }
    let [_, ih, iw] = geom.input;
    let [taps_d, taps_h, taps_w] = tap_tables(geom);
    let width_taps = width_tap_ranges(geom);
    let ow = out_dims[2];
    out.par_chunks_mut(out_plane)
        .zip(argmax.par_chunks_mut(out_plane))
        .enumerate()
        .for_each(|(nc, (out, argmax))| {
            let x = &input[nc * in_plane..(nc + 1) * in_plane];
            let mut rows = out.chunks_exact_mut(ow).zip(argmax.chunks_exact_mut(ow));
            for td in &taps_d {
                for th in &taps_h {
                    let (best, best_index) =
                        rows.next().expect("one output row per (depth, height)");
                    // A whole output row at a time, visiting each window's taps in PyTorch's
                    // order (depth, height, width): independent outputs in the inner loop
                    // vectorise, where one window at a time is a chain of dependent selects.
                    best.fill(T::neg_infinity());
                    for (i, tw) in best_index.iter_mut().zip(&taps_w) {
                        *i = ((td.first * ih) + th.first) * iw + tw.first;
                    }
                    for d in td.iter() {
                        for h in th.iter() {
                            let row = (d * ih + h) * iw;
                            for &(lo, hi, offset) in &width_taps {
                                for o in lo..hi {
                                    let w = (o * geom.stride[2]) as isize + offset;
                                    let at = row + w as usize;
                                    let v = x[at];
                                    // PyTorch's rule, including its choice of the last NaN.
                                    let take = v > best[o] || v.is_nan();
                                    best[o] = if take { v } else { best[o] };
                                    best_index[o] = if take { at } else { best_index[o] };
                                }
                            }
                        }
                    }
                }
            }
        });
}

/// Per width tap: the outputs `lo..hi` whose tap lies inside the input row, and the tap's
/// coordinate offset (output `o` reads `o * stride + offset`).
fn width_tap_ranges(geom: &PoolGeometry) -> Vec<(usize, usize, isize)> {
    let out = geom.output()[2];
    let (stride, width) = (geom.stride[2] as isize, geom.input[2] as isize);
    (0..geom.kernel[2])
        .map(|k| {
            let offset = (k * geom.dilation[2]) as isize - geom.padding[2] as isize;
            // lo: first o with o * stride + offset >= 0; hi: past the last with it < width.
            let lo = if offset >= 0 {
                0
            } else {
                ((-offset) as usize).div_ceil(stride as usize)
            };
            let hi = if width - 1 - offset < 0 {
                0
            } else {
                ((width - 1 - offset) / stride + 1) as usize
            };
            (lo.min(out), hi.min(out).max(lo.min(out)), offset)
        })
        .collect()
}

/// Every output coordinate's window taps, per axis, computed once per call.
fn tap_tables(geom: &PoolGeometry) -> [Vec<Taps>; 3] {
    let out = geom.output();
    std::array::from_fn(|a| (0..out[a]).map(|o| valid_taps(geom, a, o)).collect())
}

/// Gradient of max pooling: each output gradient goes to its window's argmax; `grad_input` is
/// overwritten.
pub fn max_pool_backward<T: Float>(
    geom: &PoolGeometry,
    grad_out: &[T],
    argmax: &[usize],
    grad_input: &mut [T],
) {
    geom.assert_valid("max_pool");
    assert_eq!(
        grad_out.len(),
        geom.output_len(),
        "max_pool_backward: grad_out length"
    );
    assert_eq!(
        argmax.len(),
        geom.output_len(),
        "max_pool_backward: argmax length"
    );
    assert_eq!(
        grad_input.len(),
        geom.input_len(),
        "max_pool_backward: grad_input length"
    );
    let in_plane = geom.input.iter().product::<usize>();
    let out_plane = geom.output().iter().product::<usize>();
    if in_plane == 0 {
        return;
    }
    grad_input
        .par_chunks_mut(in_plane)
        .enumerate()
        .for_each(|(nc, gx)| {
            gx.fill(T::zero());
            let range = nc * out_plane..(nc + 1) * out_plane;
            for (&g, &i) in grad_out[range.clone()].iter().zip(&argmax[range]) {
                gx[i] += g;
            }
        });
}

/// Input coordinates of one window along one axis: `first + k * step` for `k` in `0..count`,
/// padding excluded.
#[derive(Clone, Copy)]
struct Taps {
    first: usize,
    step: usize,
    count: usize,
}

impl Taps {
    /// The taps' coordinates. (A `step_by` range would divide to find its length on every use.)
    #[inline]
    fn iter(self) -> impl Iterator<Item = usize> {
        let Taps { first, step, count } = self;
        (0..count).map(move |k| first + k * step)
    }
}

/// The window taps of output `o` on `axis` that fall inside the input.
fn valid_taps(geom: &PoolGeometry, axis: usize, o: usize) -> Taps {
    let start = geom.window_start(axis, o);
    let step = geom.dilation[axis];
    // Skip the taps in the leading padding, stop at the input's end.
    let skip = if start < 0 {
        ((-start) as usize).div_ceil(step)
    } else {
        0
    };
    let first = start + (skip * step) as isize;
    let len = geom.input[axis] as isize;
    let count = if first >= len || skip >= geom.kernel[axis] {
        0
    } else {
        ((len - 1 - first) as usize / step + 1).min(geom.kernel[axis] - skip)
    };
    Taps {
        first: first.max(0) as usize,
        step,
        count,
    }
}

/// Average pooling's divisor for one window and the input taps it averages, per axis.
fn average_window(
    geom: &PoolGeometry,
    axis: usize,
    o: usize,
    count_include_pad: bool,
) -> (Taps, usize) {
    let taps = valid_taps(geom, axis, o);
    // PyTorch counts the window clipped to the padded input when padding is included.
    let start = geom.window_start(axis, o);
    let end =
        (start + geom.kernel[axis] as isize).min((geom.input[axis] + geom.padding[axis]) as isize);
    let size = if count_include_pad {
        (end - start) as usize
    } else {
        taps.count
    };
    (taps, size)
}

/// Every output coordinate's averaging window and divisor factor, per axis.
fn average_tables(geom: &PoolGeometry, count_include_pad: bool) -> [Vec<(Taps, usize)>; 3] {
    let out = geom.output();
    std::array::from_fn(|a| {
        (0..out[a])
            .map(|o| average_window(geom, a, o, count_include_pad))
            .collect()
    })
}

fn assert_average_geometry(geom: &PoolGeometry) {
    geom.assert_valid("avg_pool");
    assert_eq!(geom.dilation, [1, 1, 1], "avg_pool: dilation must be 1");
}

/// Average pooling. With `count_include_pad` (PyTorch's default) zeros of the padding count in the
/// divisor; without it only input elements do.
pub fn avg_pool_forward<T: Float>(
    geom: &PoolGeometry,
    input: &[T],
    out: &mut [T],
    count_include_pad: bool,
) {
    assert_average_geometry(geom);
    assert_eq!(
        input.len(),
        geom.input_len(),
        "avg_pool_forward: input length"
    );
    assert_eq!(
        out.len(),
        geom.output_len(),
        "avg_pool_forward: output length"
    );
    let in_plane = geom.input.iter().product::<usize>();
    let out_dims = geom.output();
    let out_plane = out_dims.iter().product::<usize>();
    if out_plane == 0 {
        return;
    }
    let [_, ih, iw] = geom.input;
    let [wd, wh, ww] = average_tables(geom, count_include_pad);
    let width_taps = width_tap_ranges(geom);
    let ow = out_dims[2];
    out.par_chunks_mut(out_plane)
        .enumerate()
        .for_each(|(nc, out)| {
            let x = &input[nc * in_plane..(nc + 1) * in_plane];
            let mut rows = out.chunks_exact_mut(ow);
            for &(td, sd) in &wd {
                for &(th, sh) in &wh {
                    // A whole output row per pass over the window taps, as in max pooling.
                    let sums = rows.next().expect("one output row per (depth, height)");
                    sums.fill(T::zero());
                    for d in td.iter() {
                        for h in th.iter() {
                            let row = (d * ih + h) * iw;
                            for &(lo, hi, offset) in &width_taps {
                                for (o, sum) in sums.iter_mut().enumerate().take(hi).skip(lo) {
                                    *sum +=
                                        x[(row as isize + (o * geom.stride[2]) as isize + offset)
                                            as usize];
                                }
                            }
                        }
                    }
                    for (sum, &(_, sw)) in sums.iter_mut().zip(&ww) {
                        let divisor = sd * sh * sw;
                        *sum = if divisor == 0 {
                            T::zero()
                        } else {
                            *sum / T::from_usize(divisor).expect("window size fits a float")
                        };
                    }
                }
            }
        });
}

/// Gradient of average pooling; `grad_input` is overwritten.
pub fn avg_pool_backward<T: Float>(
    geom: &PoolGeometry,
    grad_out: &[T],
    grad_input: &mut [T],
    count_include_pad: bool,
) {
    assert_average_geometry(geom);
    assert_eq!(
        grad_out.len(),
        geom.output_len(),
        "avg_pool_backward: grad_out length"
    );
    assert_eq!(
        grad_input.len(),
        geom.input_len(),
        "avg_pool_backward: grad_input length"
    );
    let in_plane = geom.input.iter().product::<usize>();
    let out_dims = geom.output();
    let out_plane = out_dims.iter().product::<usize>();
    if in_plane == 0 {
        return;
    }
    let [_, ih, iw] = geom.input;
    let [wd, wh, ww] = average_tables(geom, count_include_pad);
    let width_taps = width_tap_ranges(geom);
    let ow = out_dims[2];
    grad_input
        .par_chunks_mut(in_plane)
        .enumerate()
        .for_each_init(
            || vec![T::zero(); ow],
            |shares, (nc, gx)| {
                gx.fill(T::zero());
                let gy = &grad_out[nc * out_plane..(nc + 1) * out_plane];
                let mut rows = gy.chunks_exact(ow);
                for &(td, sd) in &wd {
                    for &(th, sh) in &wh {
                        let g_row = rows.next().expect("one output row per (depth, height)");
                        for ((share, &g), &(_, sw)) in shares.iter_mut().zip(g_row).zip(&ww) {
                            let divisor = sd * sh * sw;
                            *share = if divisor == 0 {
                                T::zero()
                            } else {
                                g / T::from_usize(divisor).expect("window size fits a float")
                            };
                        }
                        for d in td.iter() {
                            for h in th.iter() {
                                let row = (d * ih + h) * iw;
                                for &(lo, hi, offset) in &width_taps {
                                    for (o, &share) in shares.iter().enumerate().take(hi).skip(lo) {
                                        gx[(row as isize + (o * geom.stride[2]) as isize + offset)
                                            as usize] += share;
                                    }
                                }
                            }
                        }
                    }
                }
            },
        );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::kernels::test_util::{dot, random};

    fn geometries() -> Vec<PoolGeometry> {
        let g = |input, kernel, stride, padding, dilation| PoolGeometry {
            batch: 2,
            channels: 3,
            input,
            kernel,
            stride,
            padding,
            dilation,
        };
        vec![
            g([5, 7, 6], [2, 2, 2], [2, 2, 2], [0, 0, 0], [1, 1, 1]),
            g([5, 7, 6], [3, 3, 3], [2, 1, 2], [1, 1, 1], [1, 1, 1]),
            g([1, 9, 8], [1, 3, 2], [1, 2, 1], [0, 1, 1], [1, 1, 1]),
            g([4, 7, 5], [3, 2, 3], [1, 3, 2], [1, 0, 1], [1, 1, 1]),
        ]
    }

    /// Max over the window read straight from the definition: every tap, padding skipped.
    fn naive_max(g: &PoolGeometry, x: &[f64]) -> (Vec<f64>, Vec<usize>) {
        let out = g.output();
        let in_plane: usize = g.input.iter().product();
        let mut values = vec![];
        let mut indices = vec![];
        for nc in 0..g.batch * g.channels {
            for od in 0..out[0] {
                for oh in 0..out[1] {
                    for ow in 0..out[2] {
                        let mut best = (f64::NEG_INFINITY, usize::MAX);
                        for kd in 0..g.kernel[0] {
                            for kh in 0..g.kernel[1] {
                                for kw in 0..g.kernel[2] {
                                    let pos = [(od, kd), (oh, kh), (ow, kw)]
                                        .iter()
                                        .enumerate()
                                        .map(|(a, &(o, k))| {
                                            (o * g.stride[a] + k * g.dilation[a]) as isize
                                                - g.padding[a] as isize
                                        })
                                        .collect::<Vec<_>>();
                                    if (0..3).any(|a| pos[a] < 0 || pos[a] >= g.input[a] as isize) {
                                        continue;
                                    }
                                    let i = ((pos[0] as usize * g.input[1]) + pos[1] as usize)
                                        * g.input[2]
                                        + pos[2] as usize;
                                    if x[nc * in_plane + i] > best.0 {
                                        best = (x[nc * in_plane + i], i);
                                    }
                                }
                            }
                        }
                        values.push(best.0);
                        indices.push(best.1);
                    }
                }
            }
        }
        (values, indices)
    }

    fn naive_avg(g: &PoolGeometry, x: &[f64], count_include_pad: bool) -> Vec<f64> {
        let out = g.output();
        let in_plane: usize = g.input.iter().product();
        let mut values = vec![];
        for nc in 0..g.batch * g.channels {
            for od in 0..out[0] {
                for oh in 0..out[1] {
                    for ow in 0..out[2] {
                        let (mut sum, mut inside, mut in_padded) = (0.0, 0usize, 0usize);
                        for kd in 0..g.kernel[0] {
                            for kh in 0..g.kernel[1] {
                                for kw in 0..g.kernel[2] {
                                    let pos = [(od, kd), (oh, kh), (ow, kw)]
                                        .iter()
                                        .enumerate()
                                        .map(|(a, &(o, k))| {
                                            (o * g.stride[a] + k) as isize - g.padding[a] as isize
                                        })
                                        .collect::<Vec<_>>();
                                    if (0..3).all(|a| pos[a] < (g.input[a] + g.padding[a]) as isize)
                                    {
                                        in_padded += 1;
                                    }
                                    if (0..3).any(|a| pos[a] < 0 || pos[a] >= g.input[a] as isize) {
                                        continue;
                                    }
                                    inside += 1;
                                    sum += x[nc * in_plane
                                        + ((pos[0] as usize * g.input[1]) + pos[1] as usize)
                                            * g.input[2]
                                        + pos[2] as usize];
                                }
                            }
                        }
                        values
                            .push(sum / if count_include_pad { in_padded } else { inside } as f64);
                    }
                }
            }
        }
        values
    }

    #[test]
    fn validation_rejects_bad_windows() {
        let g = geometries()[1];
        assert!(g.validate("max_pool").is_ok());
        assert!(PoolGeometry {
            padding: [2, 1, 1],
            ..g
        }
        .validate("max_pool")
        .is_err());
        assert!(PoolGeometry {
            stride: [0, 1, 1],
            ..g
        }
        .validate("max_pool")
        .is_err());
        assert_eq!(g.output(), [3, 7, 3]);
    }

    #[test]
    fn max_pool_matches_naive_loop_and_routes_gradients() {
        let mut cases = geometries();
        cases.push(PoolGeometry {
            batch: 1,
            channels: 2,
            input: [5, 7, 6],
            kernel: [2, 3, 2],
            stride: [1, 2, 2],
            padding: [1, 1, 0],
            dilation: [2, 2, 3],
        });
        for (seed, g) in cases.iter().enumerate() {
            let x = random(g.input_len(), seed as u64);
            let (want, want_idx) = naive_max(g, &x);
            let mut y = vec![0.0; g.output_len()];
            let mut idx = vec![0; g.output_len()];
            max_pool_forward(g, &x, &mut y, &mut idx);
            assert_eq!(y, want, "{g:?}");
            assert_eq!(idx, want_idx, "{g:?}");
            // Adjoint: <gy, maxpool(x)> = <backward(gy), x> for a fixed argmax.
            let gy = random(g.output_len(), 50 + seed as u64);
            let mut gx = vec![f64::NAN; g.input_len()];
            max_pool_backward(g, &gy, &idx, &mut gx);
            assert!((dot(&gy, &y) - dot(&gx, &x)).abs() < 1e-10, "{g:?}");
            // Central differences (values are distinct, so the argmax is stable for a small step).
            let h = 1e-6;
            for i in (0..x.len()).step_by(7) {
                let mut xp = x.clone();
                xp[i] += h;
                let mut xm = x.clone();
                xm[i] -= h;
                let (yp, _) = naive_max(g, &xp);
                let (ym, _) = naive_max(g, &xm);
                let numeric = (dot(&gy, &yp) - dot(&gy, &ym)) / (2.0 * h);
                assert!(
                    (numeric - gx[i]).abs() < 1e-6,
                    "element {i}: {numeric} vs {}",
                    gx[i]
                );
            }
        }
    }

    #[test]
    fn max_pool_propagates_nan_like_pytorch() {
        let g = PoolGeometry {
            batch: 1,
            channels: 1,
            input: [1, 2, 2],
            kernel: [1, 2, 2],
            stride: [1, 2, 2],
            padding: [0; 3],
            dilation: [1; 3],
        };
        let mut y = [0.0f32];
        let mut idx = [0usize];
        max_pool_forward(&g, &[1.0, f32::NAN, 3.0, 2.0], &mut y, &mut idx);
        assert!(y[0].is_nan());
        assert_eq!(idx[0], 1);
    }

    #[test]
    fn avg_pool_matches_naive_loop_both_divisor_rules() {
        for (seed, g) in geometries().iter().enumerate() {
            let x = random(g.input_len(), 10 + seed as u64);
            for include in [true, false] {
                let mut y = vec![0.0; g.output_len()];
                avg_pool_forward(g, &x, &mut y, include);
                let want = naive_avg(g, &x, include);
                for (a, b) in y.iter().zip(&want) {
                    assert!(
                        (a - b).abs() < 1e-12,
                        "{g:?} include_pad {include}: {a} vs {b}"
                    );
                }
                let gy = random(g.output_len(), 20 + seed as u64);
                let mut gx = vec![f64::NAN; g.input_len()];
                avg_pool_backward(g, &gy, &mut gx, include);
                assert!(
                    (dot(&gy, &y) - dot(&gx, &x)).abs() < 1e-10,
                    "adjoint {g:?} include_pad {include}"
                );
                // Linear op: a central difference is exact up to rounding.
                let h = 1e-4;
                for i in (0..x.len()).step_by(11) {
                    let mut xp = x.clone();
                    xp[i] += h;
                    let mut xm = x.clone();
                    xm[i] -= h;
                    let numeric = (dot(&gy, &naive_avg(g, &xp, include))
                        - dot(&gy, &naive_avg(g, &xm, include)))
                        / (2.0 * h);
                    assert!(
                        (numeric - gx[i]).abs() < 1e-8,
                        "element {i}: {numeric} vs {}",
                        gx[i]
                    );
                }
            }
        }
    }

    #[test]
    fn avg_pool_divisor_at_a_padded_corner() {
        // 1x3x3 ones, kernel 3, padding 1: the corner window holds 4 inputs out of 9 taps.
        let g = PoolGeometry {
            batch: 1,
            channels: 1,
            input: [1, 3, 3],
            kernel: [1, 3, 3],
            stride: [1, 1, 1],
            padding: [0, 1, 1],
            dilation: [1; 3],
        };
        let x = [1.0f64; 9];
        let mut y = [0.0; 9];
        avg_pool_forward(&g, &x, &mut y, true);
        assert!((y[0] - 4.0 / 9.0).abs() < 1e-15 && (y[4] - 1.0).abs() < 1e-15);
        avg_pool_forward(&g, &x, &mut y, false);
        assert!(y.iter().all(|&v| (v - 1.0).abs() < 1e-15));
    }
}
