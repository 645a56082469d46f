//! Max and average pooling over [planes, D, H, W] data (2D pools have depth 1), parallel across
//! planes (batch x channels).

use super::scalar::Float;
use rayon::prelude::*;

/// Sizes of a pooling window sweep; spatial arrays are (depth, height, width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeometry {
    /// batch * channels: pooling treats each plane independently.
    pub planes: usize,
    pub input: [usize; 3],
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub padding: [usize; 3],
    pub dilation: [usize; 3],
}

impl PoolGeometry {
    /// `(in + 2 pad - dil (k - 1) - 1) / stride + 1` per axis (floor, PyTorch's ceil_mode=False).
    pub fn output(&self) -> [usize; 3] {
        std::array::from_fn(|a| {
            let span = self.dilation[a] * (self.kernel[a] - 1) + 1;
            (self.input[a] + 2 * self.padding[a]).checked_sub(span).map_or(0, |r| r / self.stride[a].max(1) + 1)
        })
    }

    /// Why the sizes are not a valid pooling, if they are not.
    pub fn problem(&self) -> Option<String> {
        for a in 0..3 {
            if self.kernel[a] == 0 || self.stride[a] == 0 || self.dilation[a] == 0 {
                return Some(format!("kernel {:?}, stride {:?} and dilation {:?} must be positive", self.kernel, self.stride, self.dilation));
            }
            if 2 * self.padding[a] > self.kernel[a] {
                return Some(format!("padding {:?} must be at most half the kernel {:?}", self.padding, self.kernel));
            }
        }
        let o = self.output();
        if o.iter().any(|&v| v == 0) {
            return Some(format!("window {:?} (dilation {:?}) does not fit input {:?} with padding {:?}", self.kernel, self.dilation, self.input, self.padding));
        }
        None
    }

    fn plane_in(&self) -> usize {
        self.input.iter().product()
    }
    fn plane_out(&self) -> usize {
        self.output().iter().product()
    }

    /// Calls `f(output index, input index)` for every in-bounds tap of every output of a plane.
    #[inline]
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize)) {
        let o = self.output();
        let [_, ih, iw] = self.input;
        let mut out_index = 0;
        for od in 0..o[0] {
            for oh in 0..o[1] {
                for ow in 0..o[2] {
                    for kd in 0..self.kernel[0] {
                        let Some(d) = (od * self.stride[0] + kd * self.dilation[0]).checked_sub(self.padding[0]).filter(|&d| d < self.input[0]) else { continue };
                        for kh in 0..self.kernel[1] {
                            let Some(h) = (oh * self.stride[1] + kh * self.dilation[1]).checked_sub(self.padding[1]).filter(|&h| h < ih) else { continue };
                            for kw in 0..self.kernel[2] {
                                let Some(w) = (ow * self.stride[2] + kw * self.dilation[2]).checked_sub(self.padding[2]).filter(|&w| w < iw) else { continue };
                                f(out_index, (d * ih + h) * iw + w);
                            }
                        }
                    }
                    out_index += 1;
                }
            }
        }
    }

    /// Taps of the window of each output that `count_include_pad` counts.
    fn padded_window_size(&self, out_index: usize) -> usize {
        let o = self.output();
        let idx = [out_index / (o[1] * o[2]), (out_index / o[2]) % o[1], out_index % o[2]];
        (0..3)
            .map(|a| {
                // The window clipped to the padded input, as PyTorch's average pool counts it.
                let start = idx[a] * self.stride[a];
                let end = (start + self.kernel[a]).min(self.input[a] + 2 * self.padding[a]);
                end - start
            })
            .product()
    }
}

/// Max pool: writes the maximum of each window and its input position within the plane.
pub fn max_pool_forward<T: Float>(g: &PoolGeometry, x: &[T], out: &mut [T], argmax: &mut [u32]) {
    let (pi, po) = (g.plane_in(), g.plane_out());
    assert!(x.len() == g.planes * pi && out.len() == g.planes * po && argmax.len() == out.len(), "max_pool_forward: buffer sizes");
    out.par_chunks_mut(po.max(1)).zip(argmax.par_chunks_mut(po.max(1))).zip(x.par_chunks(pi.max(1))).for_each(|((o, a), xp)| {
        o.fill(T::neg_infinity());
        g.for_each_tap(|oi, ii| {
            let v = xp[ii];
            // `>` keeps the first maximum; NaN wins so it propagates as in PyTorch.
            if v > o[oi] || v.is_nan() {
                o[oi] = v;
                a[oi] = ii as u32;
            }
        });
    });
}

/// Max pool backward: each output gradient goes to the input position that was the maximum.
pub fn max_pool_backward<T: Float>(g: &PoolGeometry, grad_out: &[T], argmax: &[u32], grad_in: &mut [T]) {
    let (pi, po) = (g.plane_in(), g.plane_out());
    assert!(grad_in.len() == g.planes * pi && grad_out.len() == g.planes * po && argmax.len() == grad_out.len(), "max_pool_backward: buffer sizes");
    grad_in.par_chunks_mut(pi.max(1)).zip(grad_out.par_chunks(po.max(1))).zip(argmax.par_chunks(po.max(1))).for_each(|((gi, go), a)| {
        gi.fill(T::zero());
        for (&gv, &ai) in go.iter().zip(a) {
            gi[ai as usize] += gv;
        }
    });
}

fn divisors<T: Float>(g: &PoolGeometry, count_include_pad: bool) -> Vec<T> {
    let po = g.plane_out();
    let mut counts = vec![0usize; po];
    if count_include_pad {
        for (i, c) in counts.iter_mut().enumerate() {
            *c = g.padded_window_size(i);
        }
    } else {
        g.for_each_tap(|oi, _| counts[oi] += 1);
    }
    counts.into_iter().map(|c| T::one() / T::from_f64_lossy(c.max(1) as f64)).collect()
}

/// Average pool (dilation 1 in PyTorch's API; any dilation works here).
pub fn avg_pool_forward<T: Float>(g: &PoolGeometry, count_include_pad: bool, x: &[T], out: &mut [T]) {
    let (pi, po) = (g.plane_in(), g.plane_out());
    assert!(x.len() == g.planes * pi && out.len() == g.planes * po, "avg_pool_forward: buffer sizes");
    let inv = divisors::<T>(g, count_include_pad);
    out.par_chunks_mut(po.max(1)).zip(x.par_chunks(pi.max(1))).for_each(|(o, xp)| {
        o.fill(T::zero());
        g.for_each_tap(|oi, ii| o[oi] += xp[ii]);
        for (v, &s) in o.iter_mut().zip(&inv) {
            *v *= s;
        }
    });
}

pub fn avg_pool_backward<T: Float>(g: &PoolGeometry, count_include_pad: bool, grad_out: &[T], grad_in: &mut [T]) {
    let (pi, po) = (g.plane_in(), g.plane_out());
    assert!(grad_in.len() == g.planes * pi && grad_out.len() == g.planes * po, "avg_pool_backward: buffer sizes");
    let inv = divisors::<T>(g, count_include_pad);
    grad_in.par_chunks_mut(pi.max(1)).zip(grad_out.par_chunks(po.max(1))).for_each(|(gi, go)| {
        gi.fill(T::zero());
        g.for_each_tap(|oi, ii| gi[ii] += go[oi] * inv[oi]);
    });
}
