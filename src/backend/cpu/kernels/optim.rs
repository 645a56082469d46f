//! Fused optimizer updates: one pass over a parameter, its gradient and its moments. Each
//! element goes through the same f32/f64 operations, in the same order, as the tensor-op
//! formulation in `crate::optim` did, so the results are bit for bit the same (and the CUDA
//! twin in kernels/optim.cu uses non-contracting intrinsics to match them too).

use super::scalar::Float;
use crate::backend::ops::AdamStep;
use rayon::prelude::*;

/// The constants of one Adam step, in the element type.
#[derive(Clone, Copy)]
struct AdamConstants<T> {
    /// `1 - lr wd` with decoupled (AdamW) decay.
    decay: Option<T>,
    /// `wd` with L2 (Adam) decay, added to the gradient.
    l2: Option<T>,
    b1: T,
    one_minus_b1: T,
    b2: T,
    one_minus_b2: T,
    inv_bias2: T,
    eps: T,
    step_size: T,
}

/// One chunk of the update. `m`/`v` are empty on the first step (zero moments). Every slice is
/// checked against the chunk's length up front, so the loop runs without bounds checks and
/// vectorises.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn adam_chunk<T: Float, const HAS_MOMENTS: bool>(
    k: AdamConstants<T>,
    p: &[T],
    g: &[T],
    m: &[T],
    v: &[T],
    out_p: &mut [T],
    out_m: &mut [T],
    out_v: &mut [T],
) {
    let n = out_p.len();
    assert!(p.len() == n && g.len() == n && out_m.len() == n && out_v.len() == n);
    if HAS_MOMENTS {
        assert!(m.len() == n && v.len() == n);
    }
    let zero = T::zero();
    for i in 0..n {
        let (mut pv, mut gv) = (p[i], g[i]);
        if let Some(d) = k.decay {
            pv = pv * d + zero;
        }
        if let Some(wd) = k.l2 {
            gv += pv * wd + zero;
        }
        // `x * s + 0` is how a scalar multiply is computed elsewhere (it turns -0 into +0).
        let mv = if HAS_MOMENTS {
            (m[i] * k.b1 + zero) + (gv * k.one_minus_b1 + zero)
        } else {
            gv * k.one_minus_b1 + zero
        };
        let vv = if HAS_MOMENTS {
            (v[i] * k.b2 + zero) + (gv * gv * k.one_minus_b2 + zero)
        } else {
            gv * gv * k.one_minus_b2 + zero
        };
        let denom = (vv * k.inv_bias2 + zero).sqrt() + k.eps;
        out_p[i] = pv - ((mv / denom) * k.step_size + zero);
        out_m[i] = mv;
        out_v[i] = vv;
    }
}

/// New (parameter, first moment, second moment) after one Adam/AdamW step; `m`/`v` are `None`
/// on the first step (zero moments).
pub fn adam_update<T: Float>(
    p: &[T],
    g: &[T],
    m: Option<&[T]>,
    v: Option<&[T]>,
    s: &AdamStep,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    const CHUNK: usize = 1 << 14;
    let c = |x: f64| T::from_f64_lossy(x);
    let (decay, l2) = match (s.weight_decay != 0.0, s.decoupled) {
        (true, true) => (Some(c(1.0 - s.lr * s.weight_decay)), None),
        (true, false) => (None, Some(c(s.weight_decay))),
        _ => (None, None),
    };
    let k = AdamConstants {
        decay,
        l2,
        b1: c(s.beta1),
        one_minus_b1: c(1.0 - s.beta1),
        b2: c(s.beta2),
        one_minus_b2: c(1.0 - s.beta2),
        inv_bias2: c(1.0 / s.bias2),
        eps: c(s.eps),
        step_size: c(s.lr / s.bias1),
    };
    let n = p.len();
    let zero = T::zero();
    let (mut new_p, mut new_m, mut new_v) = (vec![zero; n], vec![zero; n], vec![zero; n]);
    new_p
        .par_chunks_mut(CHUNK)
        .zip(new_m.par_chunks_mut(CHUNK))
        .zip(new_v.par_chunks_mut(CHUNK))
        .enumerate()
        .for_each(|(chunk, ((op, om), ov))| {
            let r = chunk * CHUNK..chunk * CHUNK + op.len();
            let (pc, gc) = (&p[r.clone()], &g[r.clone()]);
            match (m, v) {
                (Some(m), Some(v)) => {
                    adam_chunk::<T, true>(k, pc, gc, &m[r.clone()], &v[r], op, om, ov)
                }
                _ => adam_chunk::<T, false>(k, pc, gc, &[], &[], op, om, ov),
            }
        });
    (new_p, new_m, new_v)
}
