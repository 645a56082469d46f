//! Naive reference implementations: one obvious loop per op, in f64.

use super::{ravel, unravel};

/// Broadcast binary op with numpy rules, by explicit index mapping.
pub fn broadcast_binary(
    a: &[f64],
    sa: &[usize],
    b: &[f64],
    sb: &[usize],
    f: impl Fn(f64, f64) -> f64,
) -> (Vec<f64>, Vec<usize>) {
    let rank = sa.len().max(sb.len());
    let pad = |s: &[usize]| -> Vec<usize> {
        std::iter::repeat_n(1, rank - s.len())
            .chain(s.iter().copied())
            .collect()
    };
    let (pa, pb) = (pad(sa), pad(sb));
    let out_shape: Vec<usize> = pa.iter().zip(&pb).map(|(&x, &y)| x.max(y)).collect();
    let n: usize = out_shape.iter().product();
    let out = (0..n)
        .map(|i| {
            let idx = unravel(i, &out_shape);
            let ia: Vec<usize> = idx
                .iter()
                .zip(&pa)
                .map(|(&k, &d)| if d == 1 { 0 } else { k })
                .collect();
            let ib: Vec<usize> = idx
                .iter()
                .zip(&pb)
                .map(|(&k, &d)| if d == 1 { 0 } else { k })
                .collect();
            f(a[ravel(&ia, &pa)], b[ravel(&ib, &pb)])
        })
        .collect();
    (out, out_shape)
}

/// Reduction over `axes` with keepdim, by visiting every input element once.
pub fn reduce(
    x: &[f64],
    shape: &[usize],
    axes: &[usize],
    init: f64,
    f: impl Fn(f64, f64) -> f64,
) -> Vec<f64> {
    let out_shape: Vec<usize> = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if axes.contains(&i) { 1 } else { d })
        .collect();
    let mut out = vec![init; out_shape.iter().product()];
    for (i, &v) in x.iter().enumerate() {
        let mut idx = unravel(i, shape);
        for &a in axes {
            idx[a] = 0;
        }
        let o = ravel(&idx, &out_shape);
        out[o] = f(out[o], v);
    }
    out
}

pub fn softmax(x: &[f64], shape: &[usize], axis: usize, log: bool) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for i in 0..x.len() {
        let idx = unravel(i, shape);
        let mut others = idx.clone();
        let mut denom = 0.0;
        for k in 0..shape[axis] {
            others[axis] = k;
            denom += x[ravel(&others, shape)].exp();
        }
        out[i] = if log {
            x[i] - denom.ln()
        } else {
            x[i].exp() / denom
        };
    }
    out
}

pub fn matmul(a: &[f64], b: &[f64], batch: usize, m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; batch * m * n];
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                for p in 0..k {
                    c[(bi * m + i) * n + j] += a[(bi * m + i) * k + p] * b[(bi * k + p) * n + j];
                }
            }
        }
    }
    c
}

/// GroupNorm on [N, C, S...] flattened to (n, c, s).
pub fn group_norm(
    x: &[f64],
    n: usize,
    c: usize,
    s: usize,
    groups: usize,
    w: &[f64],
    b: &[f64],
    eps: f64,
) -> Vec<f64> {
    let mut y = vec![0.0; x.len()];
    let cg = c / groups;
    for ni in 0..n {
        for g in 0..groups {
            let members: Vec<usize> = (g * cg..(g + 1) * cg)
                .flat_map(|ch| (0..s).map(move |si| (ni * c + ch) * s + si))
                .collect();
            let mean = members.iter().map(|&i| x[i]).sum::<f64>() / members.len() as f64;
            let var =
                members.iter().map(|&i| (x[i] - mean).powi(2)).sum::<f64>() / members.len() as f64;
            for &i in &members {
                let ch = (i / s) % c;
                y[i] = (x[i] - mean) / (var + eps).sqrt() * w[ch] + b[ch];
            }
        }
    }
    y
}

/// BatchNorm with batch statistics; returns (y, batch mean, unbiased batch var).
pub fn batch_norm_train(
    x: &[f64],
    n: usize,
    c: usize,
    s: usize,
    w: &[f64],
    b: &[f64],
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut y = vec![0.0; x.len()];
    let (mut means, mut vars) = (vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let members: Vec<usize> = (0..n)
            .flat_map(|ni| (0..s).map(move |si| (ni * c + ch) * s + si))
            .collect();
        let m = members.len() as f64;
        let mean = members.iter().map(|&i| x[i]).sum::<f64>() / m;
        let var = members.iter().map(|&i| (x[i] - mean).powi(2)).sum::<f64>() / m;
        for &i in &members {
            y[i] = (x[i] - mean) / (var + eps).sqrt() * w[ch] + b[ch];
        }
        means[ch] = mean;
        vars[ch] = var * m / (m - 1.0);
    }
    (y, means, vars)
}

/// Convolution geometry for the naive loops: spatial sizes as 3 axes (2D has depth 1).
#[derive(Clone, Copy)]
pub struct NaiveConv {
    pub n: usize,
    pub cin: usize,
    pub cout: usize,
    pub groups: usize,
    pub input: [usize; 3],
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub padding: [usize; 3],
    pub dilation: [usize; 3],
}

impl NaiveConv {
    pub fn output(&self) -> [usize; 3] {
        std::array::from_fn(|a| {
            (self.input[a] + 2 * self.padding[a] - self.dilation[a] * (self.kernel[a] - 1) - 1)
                / self.stride[a]
                + 1
        })
    }

    /// out[n, co, o] = bias[co] + sum over (ci in group, k) of x[n, ci, o*s - p + k*d] * w[co, ci, k]
    pub fn forward(&self, x: &[f64], w: &[f64], bias: Option<&[f64]>) -> Vec<f64> {
        let o = self.output();
        let (cin_g, cout_g) = (self.cin / self.groups, self.cout / self.groups);
        let mut out = vec![0.0; self.n * self.cout * o[0] * o[1] * o[2]];
        for n in 0..self.n {
            for co in 0..self.cout {
                let g = co / cout_g;
                for od in 0..o[0] {
                    for oh in 0..o[1] {
                        for ow in 0..o[2] {
                            let mut acc = bias.map_or(0.0, |b| b[co]);
                            for cig in 0..cin_g {
                                let ci = g * cin_g + cig;
                                for kd in 0..self.kernel[0] {
                                    for kh in 0..self.kernel[1] {
                                        for kw in 0..self.kernel[2] {
                                            let pos = [
                                                od * self.stride[0] + kd * self.dilation[0],
                                                oh * self.stride[1] + kh * self.dilation[1],
                                                ow * self.stride[2] + kw * self.dilation[2],
                                            ];
                                            if (0..3).any(|a| {
                                                pos[a] < self.padding[a]
                                                    || pos[a] - self.padding[a] >= self.input[a]
                                            }) {
                                                continue;
                                            }
                                            let (id, ih, iw) = (
                                                pos[0] - self.padding[0],
                                                pos[1] - self.padding[1],
                                                pos[2] - self.padding[2],
                                            );
                                            let xi = (((n * self.cin + ci) * self.input[0] + id)
                                                * self.input[1]
                                                + ih)
                                                * self.input[2]
                                                + iw;
                                            let wi = (((co * cin_g + cig) * self.kernel[0] + kd)
                                                * self.kernel[1]
                                                + kh)
                                                * self.kernel[2]
                                                + kw;
                                            acc += x[xi] * w[wi];
                                        }
                                    }
                                }
                            }
                            out[(((n * self.cout + co) * o[0] + od) * o[1] + oh) * o[2] + ow] = acc;
                        }
                    }
                }
            }
        }
        out
    }
}
