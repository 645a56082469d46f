//! Normalisation kernels (GroupNorm, BatchNorm) fused into one pass each way, on dense
//! [N, C, S] data where S is the product of the spatial sizes.

use super::scalar::Float;
use rayon::prelude::*;

/// Mean and biased variance of a slice, in f64 (two-pass: stable for large volumes).
fn mean_var<T: Float>(x: &[T]) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let mean = x.iter().map(|v| v.to_f64_lossless()).sum::<f64>() / n;
    let var = x.iter().map(|v| (v.to_f64_lossless() - mean).powi(2)).sum::<f64>() / n;
    (mean, var)
}

/// GroupNorm forward. Returns `(y, mean, rstd)` with mean/rstd of shape [N, G].
pub fn group_norm_forward<T: Float>(
    x: &[T],
    n: usize,
    c: usize,
    s: usize,
    groups: usize,
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    eps: f64,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    assert_eq!(x.len(), n * c * s, "norm: input length");
    let cg = c / groups;
    let group_len = cg * s;
    let mut y = vec![T::zero(); x.len()];
    let mut stats = vec![(T::zero(), T::zero()); n * groups];
    y.par_chunks_mut(group_len.max(1)).zip(x.par_chunks(group_len.max(1))).zip(stats.par_iter_mut()).enumerate().for_each(
        |(ng, ((yg, xg), stat))| {
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
                for (o, &v) in yg[ci * s..(ci + 1) * s].iter_mut().zip(&xg[ci * s..(ci + 1) * s]) {
                    *o = v * scale + shift;
                }
            }
        },
    );
    let (mean, rstd) = stats.into_iter().unzip();
    (y, mean, rstd)
}

/// GroupNorm backward: `(grad_x, grad_weight, grad_bias)` (weight/bias grads of length C).
#[allow(clippy::too_many_arguments)]
pub fn group_norm_backward<T: Float>(
    x: &[T],
    grad_y: &[T],
    mean: &[T],
    rstd: &[T],
    n: usize,
    c: usize,
    s: usize,
    groups: usize,
    weight: Option<&[T]>,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    assert_eq!(x.len(), n * c * s, "group_norm_backward: input length");
    let cg = c / groups;
    let group_len = (cg * s).max(1);
    let mut grad_x = vec![T::zero(); x.len()];
    // Per (n, g): partial weight/bias grads for its channels, summed over n afterwards.
    let partials: Vec<(Vec<f64>, Vec<f64>)> = grad_x
        .par_chunks_mut(group_len)
        .zip(x.par_chunks(group_len))
        .zip(grad_y.par_chunks(group_len))
        .enumerate()
        .map(|(ng, ((gx, xg), gyg))| {
            let g = ng % groups;
            let m = mean[ng].to_f64_lossless();
            let r = rstd[ng].to_f64_lossless();
            let mut dw = vec![0.0; cg];
            let mut db = vec![0.0; cg];
            // Sums of dxhat and dxhat * xhat over the group.
            let (mut sum_dxhat, mut sum_dxhat_xhat) = (0.0f64, 0.0f64);
            for ci in 0..cg {
                let w = weight.map_or(1.0, |w| w[g * cg + ci].to_f64_lossless());
                let (mut a, mut b) = (0.0f64, 0.0f64);
                for (&xv, &gv) in xg[ci * s..(ci + 1) * s].iter().zip(&gyg[ci * s..(ci + 1) * s]) {
                    let xhat = (xv.to_f64_lossless() - m) * r;
                    let gy = gv.to_f64_lossless();
                    a += gy * xhat;
                    b += gy;
                }
                dw[ci] = a;
                db[ci] = b;
                sum_dxhat += w * b;
                sum_dxhat_xhat += w * a;
            }
            let len = (cg * s) as f64;
            let (mean_dxhat, mean_dxhat_xhat) = (sum_dxhat / len, sum_dxhat_xhat / len);
            for ci in 0..cg {
                let w = weight.map_or(1.0, |w| w[g * cg + ci].to_f64_lossless());
                for ((o, &xv), &gv) in gx[ci * s..(ci + 1) * s].iter_mut().zip(&xg[ci * s..(ci + 1) * s]).zip(&gyg[ci * s..(ci + 1) * s]) {
                    let xhat = (xv.to_f64_lossless() - m) * r;
                    let dxhat = gv.to_f64_lossless() * w;
                    *o = T::from_f64_lossy(r * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat));
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

/// Per-channel mean and biased variance over batch and space, for BatchNorm in train mode.
pub fn channel_stats<T: Float>(x: &[T], n: usize, c: usize, s: usize) -> (Vec<f64>, Vec<f64>) {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let count = (n * s).max(1) as f64;
            let mut sum = 0.0;
            for b in 0..n {
                sum += x[(b * c + ch) * s..(b * c + ch + 1) * s].iter().map(|v| v.to_f64_lossless()).sum::<f64>();
            }
            let mean = sum / count;
            let mut sq = 0.0;
            for b in 0..n {
                sq += x[(b * c + ch) * s..(b * c + ch + 1) * s].iter().map(|v| (v.to_f64_lossless() - mean).powi(2)).sum::<f64>();
            }
            (mean, sq / count)
        })
        .unzip()
}

/// `y = (x - mean[c]) * rstd[c] * w[c] + b[c]`, the BatchNorm normalisation in either mode.
pub fn channel_affine<T: Float>(x: &[T], n: usize, c: usize, s: usize, mean: &[f64], rstd: &[f64], weight: Option<&[T]>, bias: Option<&[T]>) -> Vec<T> {
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(s.max(1)).zip(x.par_chunks(s.max(1))).enumerate().for_each(|(bc, (yr, xr))| {
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
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train_backward<T: Float>(x: &[T], grad_y: &[T], n: usize, c: usize, s: usize, mean: &[f64], rstd: &[f64], weight: Option<&[T]>) -> (Vec<T>, Vec<T>, Vec<T>) {
    let count = (n * s) as f64;
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mut sum_gy, mut sum_gy_xhat) = (0.0, 0.0);
            for b in 0..n {
                let r = (b * c + ch) * s..(b * c + ch + 1) * s;
                for (&xv, &gv) in x[r.clone()].iter().zip(&grad_y[r]) {
                    let gy = gv.to_f64_lossless();
                    sum_gy += gy;
                    sum_gy_xhat += gy * (xv.to_f64_lossless() - mean[ch]) * rstd[ch];
                }
            }
            (sum_gy, sum_gy_xhat)
        })
        .collect();
    let mut grad_x = vec![T::zero(); x.len()];
    grad_x.par_chunks_mut(s.max(1)).zip(x.par_chunks(s.max(1))).zip(grad_y.par_chunks(s.max(1))).enumerate().for_each(|(bc, ((gx, xr), gyr))| {
        let ch = bc % c;
        let w = weight.map_or(1.0, |w| w[ch].to_f64_lossless());
        let (sum_gy, sum_gy_xhat) = sums[ch];
        for ((o, &xv), &gv) in gx.iter_mut().zip(xr).zip(gyr) {
            let xhat = (xv.to_f64_lossless() - mean[ch]) * rstd[ch];
            let v = w * rstd[ch] * (gv.to_f64_lossless() - sum_gy / count - xhat * sum_gy_xhat / count);
            *o = T::from_f64_lossy(v);
        }
    });
    let grad_w = sums.iter().map(|&(_, a)| T::from_f64_lossy(a)).collect();
    let grad_b = sums.iter().map(|&(b, _)| T::from_f64_lossy(b)).collect();
    (grad_x, grad_w, grad_b)
}
