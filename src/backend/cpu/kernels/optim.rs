//! Fused optimizer updates: one pass over a parameter, its gradient and its moments. Each
//! element goes through the same f32/f64 operations, in the same order, as the tensor-op
//! formulation in `crate::optim` did, so the results are bit for bit the same (and the CUDA
//! twin in kernels/optim.cu uses non-contracting intrinsics to match them too).

use super::scalar::Float;
use crate::backend::ops::AdamStep;
use rayon::prelude::*;

/// New (parameter, first moment, second moment) after one Adam/AdamW step; `m`/`v` are `None`
/// on the first step (zero moments).
pub fn adam_update<T: Float>(
    p: &[T],
    g: &[T],
    m: Option<&[T]>,
    v: Option<&[T]>,
    s: &AdamStep,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let c = |x: f64| T::from_f64_lossy(x);
    let zero = T::zero();
    let (decay, l2) = match (s.weight_decay != 0.0, s.decoupled) {
        (true, true) => (Some(c(1.0 - s.lr * s.weight_decay)), None),
        (true, false) => (None, Some(c(s.weight_decay))),
        _ => (None, None),
    };
    let (b1, one_minus_b1, b2, one_minus_b2) =
        (c(s.beta1), c(1.0 - s.beta1), c(s.beta2), c(1.0 - s.beta2));
    let (inv_bias2, eps, step_size) = (c(1.0 / s.bias2), c(s.eps), c(s.lr / s.bias1));
    let n = p.len();
    let (mut new_p, mut new_m, mut new_v) = (vec![zero; n], vec![zero; n], vec![zero; n]);
    new_p
        .par_chunks_mut(1 << 14)
        .zip(new_m.par_chunks_mut(1 << 14))
        .zip(new_v.par_chunks_mut(1 << 14))
        .enumerate()
        .for_each(|(chunk, ((op, om), ov))| {
            let start = chunk << 14;
            for j in 0..op.len() {
                let i = start + j;
                let (mut pv, mut gv) = (p[i], g[i]);
                if let Some(d) = decay {
                    pv = pv * d + zero;
                }
                if let Some(wd) = l2 {
                    gv += pv * wd + zero;
                }
                // `x * s + 0` is how a scalar multiply is computed elsewhere (it turns -0 into +0).
                let mv = match m {
                    Some(m) => (m[i] * b1 + zero) + (gv * one_minus_b1 + zero),
                    None => gv * one_minus_b1 + zero,
                };
                let vv = match v {
                    Some(v) => (v[i] * b2 + zero) + (gv * gv * one_minus_b2 + zero),
                    None => gv * gv * one_minus_b2 + zero,
                };
                let denom = (vv * inv_bias2 + zero).sqrt() + eps;
                op[j] = pv - ((mv / denom) * step_size + zero);
                om[j] = mv;
                ov[j] = vv;
            }
        });
    (new_p, new_m, new_v)
}
