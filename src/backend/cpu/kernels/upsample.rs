//! Nearest and (bi/tri)linear resampling of [planes, D, H, W] data to a new spatial size, with
//! PyTorch's source-index conventions, and the adjoint for backward.

use super::scalar::Float;
use rayon::prelude::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpsampleMode {
    Nearest,
    Linear { align_corners: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpsampleGeometry {
    pub planes: usize,
    pub input: [usize; 3],
    pub output: [usize; 3],
}

/// For one axis: per output index, two source indices and their weights.
fn axis_taps(input: usize, output: usize, mode: UpsampleMode) -> Vec<(usize, usize, f64, f64)> {
    (0..output)
        .map(|o| match mode {
            UpsampleMode::Nearest => {
                let src = ((o as f64 * input as f64 / output as f64).floor() as usize).min(input - 1);
                (src, src, 1.0, 0.0)
            }
            UpsampleMode::Linear { align_corners } => {
                let src = if align_corners {
                    if output > 1 {
                        o as f64 * (input - 1) as f64 / (output - 1) as f64
                    } else {
                        0.0
                    }
                } else {
                    ((o as f64 + 0.5) * input as f64 / output as f64 - 0.5).max(0.0)
                };
                let i0 = (src.floor() as usize).min(input - 1);
                let i1 = (i0 + 1).min(input - 1);
                let lambda = src - i0 as f64;
                (i0, i1, 1.0 - lambda, lambda)
            }
        })
        .collect()
}

struct Taps<T> {
    d: Vec<(usize, usize, T, T)>,
    h: Vec<(usize, usize, T, T)>,
    w: Vec<(usize, usize, T, T)>,
}

fn taps<T: Float>(g: &UpsampleGeometry, mode: UpsampleMode) -> Taps<T> {
    let conv = |v: Vec<(usize, usize, f64, f64)>| v.into_iter().map(|(a, b, x, y)| (a, b, T::from_f64_lossy(x), T::from_f64_lossy(y))).collect();
    Taps { d: conv(axis_taps(g.input[0], g.output[0], mode)), h: conv(axis_taps(g.input[1], g.output[1], mode)), w: conv(axis_taps(g.input[2], g.output[2], mode)) }
}

pub fn upsample_forward<T: Float>(g: &UpsampleGeometry, mode: UpsampleMode, x: &[T], out: &mut [T]) {
    let pi: usize = g.input.iter().product();
    let po: usize = g.output.iter().product();
    assert!(x.len() == g.planes * pi && out.len() == g.planes * po, "upsample_forward: buffer sizes");
    let t = taps::<T>(g, mode);
    let [_, ih, iw] = g.input;
    out.par_chunks_mut(po.max(1)).zip(x.par_chunks(pi.max(1))).for_each(|(o, xp)| {
        let mut k = 0;
        for &(d0, d1, wd0, wd1) in &t.d {
            for &(h0, h1, wh0, wh1) in &t.h {
                let rows = [(d0 * ih + h0) * iw, (d0 * ih + h1) * iw, (d1 * ih + h0) * iw, (d1 * ih + h1) * iw];
                let row_w = [wd0 * wh0, wd0 * wh1, wd1 * wh0, wd1 * wh1];
                for &(w0, w1, ww0, ww1) in &t.w {
                    let mut acc = T::zero();
                    for (r, rw) in rows.iter().zip(row_w) {
                        acc += rw * (ww0 * xp[r + w0] + ww1 * xp[r + w1]);
                    }
                    o[k] = acc;
                    k += 1;
                }
            }
        }
    });
}

/// The adjoint of [`upsample_forward`]: spreads each output gradient onto its source taps.
pub fn upsample_backward<T: Float>(g: &UpsampleGeometry, mode: UpsampleMode, grad_out: &[T], grad_in: &mut [T]) {
    let pi: usize = g.input.iter().product();
    let po: usize = g.output.iter().product();
    assert!(grad_in.len() == g.planes * pi && grad_out.len() == g.planes * po, "upsample_backward: buffer sizes");
    let t = taps::<T>(g, mode);
    let [_, ih, iw] = g.input;
    grad_in.par_chunks_mut(pi.max(1)).zip(grad_out.par_chunks(po.max(1))).for_each(|(gi, go)| {
        gi.fill(T::zero());
        let mut k = 0;
        for &(d0, d1, wd0, wd1) in &t.d {
            for &(h0, h1, wh0, wh1) in &t.h {
                let rows = [(d0 * ih + h0) * iw, (d0 * ih + h1) * iw, (d1 * ih + h0) * iw, (d1 * ih + h1) * iw];
                let row_w = [wd0 * wh0, wd0 * wh1, wd1 * wh0, wd1 * wh1];
                for &(w0, w1, ww0, ww1) in &t.w {
                    let gv = go[k];
                    for (r, rw) in rows.iter().zip(row_w) {
                        gi[r + w0] += gv * rw * ww0;
                        gi[r + w1] += gv * rw * ww1;
                    }
                    k += 1;
                }
            }
        }
    });
}
