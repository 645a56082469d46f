//! Normalisation kernels (GroupNorm, BatchNorm) fused into one pass each way, on dense
//! [N, C, S] data where S is the product of the spatial sizes.

use super::scalar::Float;
pub use crate::backend::geometry::NormActivation;
use rayon::prelude::*;

/// Elements summed in the element type before the partial sum moves to f64: short enough that
/// f32 rounding stays near 1e-6 relative, long enough that the loop runs in SIMD lanes.
const BLOCK: usize = 256;
const LANES: usize = 8;

/// Sum of `f(x[i])` with independent lane accumulators (so the loop vectorises), in f64.
#[inline(always)]
fn sum_map<T: Float>(x: &[T], f: impl Fn(T) -> T) -> f64 {
    let mut total = 0.0f64;
    for block in x.chunks(BLOCK) {
        let mut lanes = [T::zero(); LANES];
        let mut chunks = block.chunks_exact(LANES);
        for c in &mut chunks {
            for l in 0..LANES {
                lanes[l] += f(c[l]);
            }
        }
        let tail: T = chunks
            .remainder()
            .iter()
            .map(|&v| f(v))
            .fold(T::zero(), |a, b| a + b);
        total += lanes.iter().map(|v| v.to_f64_lossless()).sum::<f64>() + tail.to_f64_lossless();
    }
    total
}

/// Sums of `f(x[i], g[i])` and `h(x[i], g[i])` over two slices, lane-parallel, in f64.
#[inline(always)]
fn sum_map2<T: Float>(x: &[T], g: &[T], f: impl Fn(T, T) -> (T, T)) -> (f64, f64) {
    let (mut ta, mut tb) = (0.0f64, 0.0f64);
    for (xb, gb) in x.chunks(BLOCK).zip(g.chunks(BLOCK)) {
        let (mut la, mut lb) = ([T::zero(); LANES], [T::zero(); LANES]);
        let (mut xc, mut gc) = (xb.chunks_exact(LANES), gb.chunks_exact(LANES));
        for (cx, cg) in (&mut xc).zip(&mut gc) {
            for l in 0..LANES {
                let (a, b) = f(cx[l], cg[l]);
                la[l] += a;
                lb[l] += b;
            }
        }
        for (&xv, &gv) in xc.remainder().iter().zip(gc.remainder()) {
            let (a, b) = f(xv, gv);
            ta += a.to_f64_lossless();
            tb += b.to_f64_lossless();
        }
        ta += la.iter().map(|v| v.to_f64_lossless()).sum::<f64>();
        tb += lb.iter().map(|v| v.to_f64_lossless()).sum::<f64>();
    }
    (ta, tb)
}

/// Mean and biased variance of a slice (two passes: stable for large volumes).
fn mean_var<T: Float>(x: &[T]) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let mean = sum_map(x, |v| v) / n;
    let m = T::from_f64_lossy(mean);
    let var = sum_map(x, |v| (v - m) * (v - m)) / n;
    (mean, var)
}

#[inline(always)]
fn sigmoid<T: Float>(x: T) -> T {
    T::one() / (T::one() + (-x).exp_fast())
}

/// The gradient reaching the normalised value through a fused SiLU, for one channel plane:
/// `out = g * silu'(t)` with `t = (x - mean) * rstd * w + b`. Equal-length slices and no
/// branch, so the loop vectorises.
#[inline(always)]
fn silu_grad_plane<T: Float>(x: &[T], g: &[T], out: &mut [T], [m, r, w, b]: [T; 4]) {
    let one = T::one();
    let n = out.len();
    let (x, g) = (&x[..n], &g[..n]);
    for i in 0..n {
        let t = (x[i] - m) * r * w + b;
        let sg = sigmoid(t);
        out[i] = g[i] * sg * (one + t * (one - sg));
    }
}

/// GroupNorm forward (optionally followed by SiLU). Returns `(y, mean, rstd)` with mean/rstd of
/// shape [N, G].
#[allow(clippy::too_many_arguments)]
pub fn group_norm_forward<T: Float>(
    x: &[T],
    n: usize,
    c: usize,
    s: usize,
    groups: usize,
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    eps: f64,
    activation: NormActivation,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    assert_eq!(x.len(), n * c * s, "norm: input length");
    let cg = c / groups;
    let group_len = cg * s;
    let mut y = vec![T::zero(); x.len()];
    let mut stats = vec![(T::zero(), T::zero()); n * groups];
    y.par_chunks_mut(group_len.max(1))
        .zip(x.par_chunks(group_len.max(1)))
        .zip(stats.par_iter_mut())
        .enumerate()
        .for_each(|(ng, ((yg, xg), stat))| {
            let g = ng % groups;
            let (mean, var) = mean_var(xg);
            let rstd = 1.0 / (var + eps).sqrt();
            *stat = (T::from_f64_lossy(mean), T::from_f64_lossy(rstd));
            for ci in 0..cg {
                let ch = g * cg + ci;
                let w = weight.map_or(1.0, |w| w[ch].to_f64_lossless());
                let b = bias.map_or(0.0, |b| b[ch].to_f64_lossless());
                // y = x * scale + shift folds the normalisation and affine into one multiply-add.
                let scale = T::from_f64_lossy(rstd * w);
                let shift = T::from_f64_lossy(b - mean * rstd * w);
                let (out, src) = (&mut yg[ci * s..(ci + 1) * s], &xg[ci * s..(ci + 1) * s]);
                match activation {
                    NormActivation::Identity => out
                        .iter_mut()
                        .zip(src)
                        .for_each(|(o, &v)| *o = v * scale + shift),
                    NormActivation::Silu => out.iter_mut().zip(src).for_each(|(o, &v)| {
                        let t = v * scale + shift;
                        *o = t * sigmoid(t);
                    }),
                }
            }
        });
    let (mean, rstd) = stats.into_iter().unzip();
    (y, mean, rstd)
}

/// GroupNorm backward (through the fused activation, recomputed from x and the statistics):
/// `(grad_x, grad_weight, grad_bias)` (weight/bias grads of length C).
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward<T: Float>(
    x: &[T],
    grad_out: &[T],
    mean: &[T],
    rstd: &[T],
    n: usize,
    c: usize,
    s: usize,
    groups: usize,
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    activation: NormActivation,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    assert_eq!(x.len(), n * c * s, "group_norm_backward: input length");
    let cg = c / groups;
    let group_len = (cg * s).max(1);
    let one = T::one();
    let mut grad_x = vec![T::zero(); x.len()];
    // Per (n, g): partial weight/bias grads for its channels, summed over n afterwards.
    let partials: Vec<(Vec<f64>, Vec<f64>)> = grad_x
        .par_chunks_mut(group_len)
        .zip(x.par_chunks(group_len))
        .zip(grad_out.par_chunks(group_len))
        .enumerate()
        .map(|(ng, ((gx, xg), gog))| {
            let g = ng % groups;
            let (m, r) = (mean[ng], rstd[ng]);
            let mut dw = vec![0.0; cg];
            let mut db = vec![0.0; cg];
            // The gradient reaching the normalised value goes into `gx` first (a fused SiLU's
            // exponential is then taken once per element), with its sums and those of
            // dxhat * xhat over the group.
            let (mut sum_dxhat, mut sum_dxhat_xhat) = (0.0f64, 0.0f64);
            for ci in 0..cg {
                let ch = g * cg + ci;
                let w = weight.map_or(one, |w| w[ch]);
                let b = bias.map_or(T::zero(), |b| b[ch]);
                let plane = ci * s..(ci + 1) * s;
                if activation != NormActivation::Identity {
                    silu_grad_plane(
                        &xg[plane.clone()],
                        &gog[plane.clone()],
                        &mut gx[plane.clone()],
                        [m, r, w, b],
                    );
                }
                let gy_plane = match activation {
                    NormActivation::Identity => &gog[plane.clone()],
                    NormActivation::Silu => &gx[plane.clone()],
                };
                let (a, bsum) = sum_map2(&xg[plane], gy_plane, |xv, gy| ((xv - m) * r * gy, gy));
                dw[ci] = a;
                db[ci] = bsum;
                sum_dxhat += w.to_f64_lossless() * bsum;
                sum_dxhat_xhat += w.to_f64_lossless() * a;
            }
            let len = (cg * s) as f64;
            let (mean_dxhat, mean_dxhat_xhat) = (
                T::from_f64_lossy(sum_dxhat / len),
                T::from_f64_lossy(sum_dxhat_xhat / len),
            );
            for ci in 0..cg {
                let ch = g * cg + ci;
                let w = weight.map_or(one, |w| w[ch]);
                let plane = ci * s..(ci + 1) * s;
                let finish =
                    |xv: T, gy: T| r * (gy * w - mean_dxhat - (xv - m) * r * mean_dxhat_xhat);
                match activation {
                    NormActivation::Identity => {
                        for ((o, &xv), &gy) in gx[plane.clone()]
                            .iter_mut()
                            .zip(&xg[plane.clone()])
                            .zip(&gog[plane])
                        {
                            *o = finish(xv, gy);
                        }
                    }
                    NormActivation::Silu => {
                        for (o, &xv) in gx[plane.clone()].iter_mut().zip(&xg[plane]) {
                            *o = finish(xv, *o);
                        }
                    }
                }
            }
            (dw, db)
        })
        .collect();
    let mut grad_w = vec![T::zero(); c];
    let mut grad_b = vec![T::zero(); c];
    for (ng, (dw, db)) in partials.into_iter().enumerate() {
        let g = ng % groups;
        for ci in 0..cg {
            grad_w[g * cg + ci] += T::from_f64_lossy(dw[ci]);
            grad_b[g * cg + ci] += T::from_f64_lossy(db[ci]);
        }
    }
    (grad_x, grad_w, grad_b)
}

/// Per-channel mean and biased variance over batch and space, for BatchNorm in train mode. Two
/// passes as `mean_var`, each summed in SIMD lanes.
pub fn channel_stats<T: Float>(x: &[T], n: usize, c: usize, s: usize) -> (Vec<f64>, Vec<f64>) {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let count = (n * s).max(1) as f64;
            let plane = |b: usize| &x[(b * c + ch) * s..(b * c + ch + 1) * s];
            let mean = (0..n).map(|b| sum_map(plane(b), |v| v)).sum::<f64>() / count;
            let m = T::from_f64_lossy(mean);
            let var = (0..n)
                .map(|b| sum_map(plane(b), |v| (v - m) * (v - m)))
                .sum::<f64>()
                / count;
            (mean, var)
        })
        .unzip()
}

/// `y = (x - mean[c]) * rstd[c] * w[c] + b[c]`, the BatchNorm normalisation in either mode.
#[allow(clippy::too_many_arguments)]
pub fn channel_affine<T: Float>(
    x: &[T],
    n: usize,
    c: usize,
    s: usize,
    mean: &[f64],
    rstd: &[f64],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(s.max(1))
        .zip(x.par_chunks(s.max(1)))
        .enumerate()
        .for_each(|(bc, (yr, xr))| {
            let ch = bc % c;
            let w = weight.map_or(1.0, |w| w[ch].to_f64_lossless());
            let b = bias.map_or(0.0, |b| b[ch].to_f64_lossless());
            let scale = T::from_f64_lossy(rstd[ch] * w);
            let shift = T::from_f64_lossy(b - mean[ch] * rstd[ch] * w);
            for (o, &v) in yr.iter_mut().zip(xr) {
                *o = v * scale + shift;
            }
        });
    assert_eq!(x.len(), n * c * s, "norm: input length");
    y
}

/// BatchNorm backward in train mode (statistics from the batch): `(grad_x, grad_w, grad_b)`.
/// Per channel, `grad_x = w rstd (gy - mean(gy) - xhat mean(gy xhat))` is the affine map
/// `a gy + b x + k` whose coefficients come from two sums taken in SIMD lanes.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_backward<T: Float>(
    x: &[T],
    grad_y: &[T],
    n: usize,
    c: usize,
    s: usize,
    mean: &[f64],
    rstd: &[f64],
    weight: Option<&[T]>,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let count = (n * s) as f64;
    // Per channel: (sum gy, sum gy xhat).
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let m = T::from_f64_lossy(mean[ch]);
            let (mut sum_gy, mut sum_gy_centred) = (0.0, 0.0);
            for b in 0..n {
                let r = (b * c + ch) * s..(b * c + ch + 1) * s;
                let (a, g) = sum_map2(&x[r.clone()], &grad_y[r], |xv, gv| (gv, gv * (xv - m)));
                sum_gy += a;
                sum_gy_centred += g;
            }
            (sum_gy, sum_gy_centred * rstd[ch])
        })
        .collect();
    let coefficients: Vec<(T, T, T)> = (0..c)
        .map(|ch| {
            let w = weight.map_or(1.0, |w| w[ch].to_f64_lossless());
            let (sum_gy, sum_gy_xhat) = sums[ch];
            let a = w * rstd[ch];
            let b = -a * rstd[ch] * sum_gy_xhat / count;
            let k = -a * sum_gy / count - b * mean[ch];
            (
                T::from_f64_lossy(a),
                T::from_f64_lossy(b),
                T::from_f64_lossy(k),
            )
        })
        .collect();
    let mut grad_x = vec![T::zero(); x.len()];
    grad_x
        .par_chunks_mut(s.max(1))
        .zip(x.par_chunks(s.max(1)))
        .zip(grad_y.par_chunks(s.max(1)))
        .enumerate()
        .for_each(|(bc, ((gx, xr), gyr))| {
            let (a, b, k) = coefficients[bc % c];
            for ((o, &xv), &gv) in gx.iter_mut().zip(xr).zip(gyr) {
                *o = a * gv + b * xv + k;
            }
        });
    let grad_w = sums.iter().map(|&(_, a)| T::from_f64_lossy(a)).collect();
    let grad_b = sums.iter().map(|&(b, _)| T::from_f64_lossy(b)).collect();
    (grad_x, grad_w, grad_b)
}
