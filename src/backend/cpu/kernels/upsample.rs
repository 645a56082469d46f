//! Upsampling (and resizing in general) by nearest neighbour and (bi/tri)linear interpolation,
//! NCDHW layout; 1D and 2D are 3D with unit leading axes. Index conventions follow PyTorch's
//! `interpolate` exactly, including which scale is used when `align_corners` is false: the
//! user's scale factor when one was given, else input size / output size.
//!
//! Interpolation is separable, so each axis gets a table of (source index, weight) pairs once and
//! every (batch item, channel) plane runs in parallel from those tables.

use rayon::prelude::*;

use super::scalar::Float;
pub use crate::backend::geometry::{UpsampleGeometry, UpsampleMode};

impl UpsampleGeometry {
    fn assert_valid(&self) {
        if let Err(e) = self.validate() {
            panic!("upsample kernel called with an invalid geometry: {e}");
        }
    }
}

/// One output coordinate's sources along one axis: `w0 * in[i0] + w1 * in[i1]`.
#[derive(Clone, Copy, Debug)]
struct Taps<T> {
    i0: usize,
    i1: usize,
    w0: T,
    w1: T,
}

/// PyTorch's nearest source index. Its scale is computed in f32 whatever the element type.
fn nearest_source(dst: usize, input: usize, output: usize, scale: Option<f64>) -> usize {
    if output == input {
        return dst;
    }
    if output == 2 * input {
        return dst >> 1;
    }
    let s: f32 = match scale {
        Some(s) if s > 0.0 => (1.0 / s) as f32,
        _ => input as f32 / output as f32,
    };
    ((dst as f32 * s).floor() as usize).min(input - 1)
}

/// PyTorch's linear source coordinate and weights, computed in the element type as it does.
fn linear_taps<T: Float>(
    dst: usize,
    input: usize,
    output: usize,
    scale: Option<f64>,
    align_corners: bool,
) -> Taps<T> {
    let t = |v: f64| T::from_f64_lossy(v);
    let from_usize = |v: usize| T::from_usize(v).expect("sizes fit a float");
    let ratio = if align_corners {
        if output > 1 {
            from_usize(input - 1) / from_usize(output - 1)
        } else {
            T::zero()
        }
    } else {
        match scale {
            Some(s) if s > 0.0 => t(1.0 / s),
            _ => from_usize(input) / from_usize(output),
        }
    };
    let real = if align_corners {
        ratio * from_usize(dst)
    } else {
        let r = ratio * (from_usize(dst) + t(0.5)) - t(0.5);
        if r < T::zero() {
            T::zero()
        } else {
            r
        }
    };
    let i0 = (real.floor().to_usize().unwrap_or(0)).min(input - 1);
    let lambda = (real - from_usize(i0)).max(T::zero()).min(T::one());
    let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
    Taps {
        i0,
        i1,
        w0: T::one() - lambda,
        w1: lambda,
    }
}

/// Per-axis tap tables for a geometry.
fn axis_tables<T: Float>(geom: &UpsampleGeometry) -> [Vec<Taps<T>>; 3] {
    std::array::from_fn(|a| {
        let (input, output, scale) = (geom.input[a], geom.output[a], geom.scale[a]);
        (0..output)
            .map(|dst| match geom.mode {
                UpsampleMode::Nearest => {
                    let i = nearest_source(dst, input, output, scale);
                    Taps {
                        i0: i,
                        i1: i,
                        w0: T::one(),
                        w1: T::zero(),
                    }
                }
                UpsampleMode::Linear { align_corners } => {
                    linear_taps(dst, input, output, scale, align_corners)
                }
            })
            .collect()
    })
}

/// Resamples `input` [batch, channels, input] into `out` [batch, channels, output].
pub fn upsample_forward<T: Float>(geom: &UpsampleGeometry, input: &[T], out: &mut [T]) {
    geom.assert_valid();
    assert_eq!(
        input.len(),
        geom.input_len(),
        "upsample_forward: input length"
    );
    assert_eq!(
        out.len(),
        geom.output_len(),
        "upsample_forward: output length"
    );
    let [td, th, tw] = axis_tables::<T>(geom);
    let in_plane = geom.input.iter().product::<usize>();
    let out_plane = geom.output.iter().product::<usize>();
    let [_, ih, iw] = geom.input;
    let nearest = geom.mode == UpsampleMode::Nearest;
    out.par_chunks_mut(out_plane).enumerate().for_each_init(
        || vec![T::zero(); iw],
        |blended, (nc, out)| {
            let x = &input[nc * in_plane..(nc + 1) * in_plane];
            let mut rows = out.chunks_exact_mut(geom.output[2]);
            for d in &td {
                for h in &th {
                    let out_row = rows
                        .next()
                        .expect("one output row per (depth, height) pair");
                    if nearest {
                        let row = &x[(d.i0 * ih + h.i0) * iw..][..iw];
                        for (v, w) in out_row.iter_mut().zip(&tw) {
                            *v = row[w.i0];
                        }
                        continue;
                    }
                    // Separable: blend the four source rows along depth and height (contiguous,
                    // vectorised), then interpolate the blended row along the width.
                    let r00 = &x[(d.i0 * ih + h.i0) * iw..][..iw];
                    let r01 = &x[(d.i0 * ih + h.i1) * iw..][..iw];
                    let r10 = &x[(d.i1 * ih + h.i0) * iw..][..iw];
                    let r11 = &x[(d.i1 * ih + h.i1) * iw..][..iw];
                    let (c00, c01, c10, c11) = (d.w0 * h.w0, d.w0 * h.w1, d.w1 * h.w0, d.w1 * h.w1);
                    for (k, b) in blended.iter_mut().enumerate() {
                        *b = c00 * r00[k] + c01 * r01[k] + c10 * r10[k] + c11 * r11[k];
                    }
                    for (v, w) in out_row.iter_mut().zip(&tw) {
                        *v = w.w0 * blended[w.i0] + w.w1 * blended[w.i1];
                    }
                }
            }
        },
    );
}

/// Gradient of the resampling: each output gradient is spread back over its sources with the
/// forward weights; `grad_input` is overwritten.
pub fn upsample_backward<T: Float>(geom: &UpsampleGeometry, grad_out: &[T], grad_input: &mut [T]) {
    geom.assert_valid();
    assert_eq!(
        grad_out.len(),
        geom.output_len(),
        "upsample_backward: grad_out length"
    );
    assert_eq!(
        grad_input.len(),
        geom.input_len(),
        "upsample_backward: grad_input length"
    );
    let [td, th, tw] = axis_tables::<T>(geom);
    let in_plane = geom.input.iter().product::<usize>();
    let out_plane = geom.output.iter().product::<usize>();
    let [_, ih, iw] = geom.input;
    grad_input
        .par_chunks_mut(in_plane)
        .enumerate()
        .for_each_init(
            || vec![T::zero(); iw],
            |spread, (nc, gx)| {
                gx.fill(T::zero());
                let gy = &grad_out[nc * out_plane..(nc + 1) * out_plane];
                let mut rows = gy.chunks_exact(geom.output[2]);
                for d in &td {
                    for h in &th {
                        let g_row = rows
                            .next()
                            .expect("one output row per (depth, height) pair");
                        // The adjoint of the forward's two steps: spread along the width into one
                        // input-width row, then add it to the four source rows (contiguous).
                        spread.fill(T::zero());
                        for (&g, w) in g_row.iter().zip(&tw) {
                            spread[w.i0] += w.w0 * g;
                            spread[w.i1] += w.w1 * g;
                        }
                        let corners = [
                            (d.i0, h.i0, d.w0 * h.w0),
                            (d.i0, h.i1, d.w0 * h.w1),
                            (d.i1, h.i0, d.w1 * h.w0),
                            (d.i1, h.i1, d.w1 * h.w1),
                        ];
                        for (i_d, i_h, c) in corners {
                            if c == T::zero() {
                                continue;
                            }
                            let row = &mut gx[(i_d * ih + i_h) * iw..][..iw];
                            for (v, &s) in row.iter_mut().zip(spread.iter()) {
                                *v += c * s;
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

    fn line(
        input: usize,
        output: usize,
        scale: Option<f64>,
        mode: UpsampleMode,
    ) -> UpsampleGeometry {
        UpsampleGeometry {
            batch: 1,
            channels: 1,
            input: [1, 1, input],
            output: [1, 1, output],
            scale: [None, None, scale],
            mode,
        }
    }

    fn run(geom: &UpsampleGeometry, x: &[f64]) -> Vec<f64> {
        let mut y = vec![f64::NAN; geom.output_len()];
        upsample_forward(geom, x, &mut y);
        y
    }

    fn assert_values(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "got {got:?}, want {want:?}");
        }
    }

    /// Values PyTorch's `F.interpolate` gives on [1, 2, 3, 4].
    #[test]
    fn one_dimensional_values_match_pytorch() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let linear = |ac| UpsampleMode::Linear { align_corners: ac };
        assert_values(
            &run(&line(4, 8, Some(2.0), linear(false)), &x),
            &[1.0, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75, 4.0],
        );
        let step = 3.0 / 7.0;
        let want: Vec<f64> = (0..8).map(|i| 1.0 + step * i as f64).collect();
        assert_values(&run(&line(4, 8, None, linear(true)), &x), &want);
        assert_values(
            &run(&line(4, 7, None, UpsampleMode::Nearest), &x),
            &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0],
        );
        assert_values(
            &run(&line(4, 8, Some(2.0), UpsampleMode::Nearest), &x),
            &[1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0],
        );
        // Downsampling 4 -> 2, align_corners false: sources 0.5 and 2.5.
        assert_values(&run(&line(4, 2, None, linear(false)), &x), &[1.5, 3.5]);
        assert_values(&run(&line(4, 1, None, linear(true)), &x), &[1.0]);
    }

    /// With align_corners false a given scale factor, not input / output, sets the coordinates:
    /// 5 * 1.7 = 8 outputs; output 7 reads 7.5 / 1.7 - 0.5 = 3.9118 (between inputs 3 and 4),
    /// whereas the size ratio 5 / 8 would read 4.1875 (clamped onto input 4).
    #[test]
    fn scale_factor_rule_for_align_corners_false() {
        let x = [0.0, 10.0, 20.0, 30.0, 40.0];
        let mode = UpsampleMode::Linear {
            align_corners: false,
        };
        let with_scale =
            UpsampleGeometry::from_scale(1, 1, [1, 1, 5], [1.0, 1.0, 1.7], mode).unwrap();
        assert_eq!(with_scale.output, [1, 1, 8]);
        let y = run(&with_scale, &x);
        let real = 7.5 / 1.7 - 0.5;
        assert!((y[7] - 10.0 * real).abs() < 1e-9, "{}", y[7]);
        let by_size = run(&line(5, 8, None, mode), &x);
        assert!((by_size[7] - 40.0).abs() < 1e-12);
        // Nearest too: 1 / 1.7 = 0.588 maps output 5 to floor(2.94) = 2, the size ratio to floor(3.125) = 3.
        let nearest =
            UpsampleGeometry::from_scale(1, 1, [1, 1, 5], [1.0, 1.0, 1.7], UpsampleMode::Nearest)
                .unwrap();
        assert_eq!(run(&nearest, &x)[5], 20.0);
        assert_eq!(run(&line(5, 8, None, UpsampleMode::Nearest), &x)[5], 30.0);
    }

    /// Trilinear from the definition: the product of three 1D linear weights, written per voxel.
    fn naive(geom: &UpsampleGeometry, x: &[f64]) -> Vec<f64> {
        let mut y = vec![];
        let in_plane: usize = geom.input.iter().product();
        for nc in 0..geom.batch * geom.channels {
            for od in 0..geom.output[0] {
                for oh in 0..geom.output[1] {
                    for ow in 0..geom.output[2] {
                        let o = [od, oh, ow];
                        let taps: Vec<Vec<(usize, f64)>> = (0..3)
                            .map(|a| match geom.mode {
                                UpsampleMode::Nearest => {
                                    vec![(
                                        nearest_source(
                                            o[a],
                                            geom.input[a],
                                            geom.output[a],
                                            geom.scale[a],
                                        ),
                                        1.0,
                                    )]
                                }
                                UpsampleMode::Linear { align_corners } => {
                                    let t: Taps<f64> = linear_taps(
                                        o[a],
                                        geom.input[a],
                                        geom.output[a],
                                        geom.scale[a],
                                        align_corners,
                                    );
                                    vec![(t.i0, t.w0), (t.i1, t.w1)]
                                }
                            })
                            .collect();
                        let mut v = 0.0;
                        for &(a, wa) in &taps[0] {
                            for &(b, wb) in &taps[1] {
                                for &(c, wc) in &taps[2] {
                                    v += wa
                                        * wb
                                        * wc
                                        * x[nc * in_plane
                                            + (a * geom.input[1] + b) * geom.input[2]
                                            + c];
                                }
                            }
                        }
                        y.push(v);
                    }
                }
            }
        }
        y
    }

    fn geometries() -> Vec<UpsampleGeometry> {
        let mut out = vec![];
        for mode in [
            UpsampleMode::Nearest,
            UpsampleMode::Linear {
                align_corners: true,
            },
            UpsampleMode::Linear {
                align_corners: false,
            },
        ] {
            out.push(UpsampleGeometry {
                batch: 2,
                channels: 3,
                input: [3, 4, 5],
                output: [6, 8, 10],
                scale: [Some(2.0); 3],
                mode,
            });
            out.push(UpsampleGeometry {
                batch: 1,
                channels: 2,
                input: [3, 5, 4],
                output: [7, 4, 9],
                scale: [None; 3],
                mode,
            });
            out.push(UpsampleGeometry {
                batch: 1,
                channels: 2,
                input: [1, 5, 6],
                output: [1, 11, 13],
                scale: [None, Some(2.3), None],
                mode,
            });
        }
        out
    }

    #[test]
    fn forward_matches_naive_and_backward_is_its_adjoint() {
        for (seed, g) in geometries().iter().enumerate() {
            let x = random(g.input_len(), seed as u64);
            let y = run(g, &x);
            assert_values(&y, &naive(g, &x));
            let gy = random(g.output_len(), 40 + seed as u64);
            let mut gx = vec![f64::NAN; g.input_len()];
            upsample_backward(g, &gy, &mut gx);
            let lhs = dot(&gy, &y);
            assert!(
                (lhs - dot(&gx, &x)).abs() < 1e-10 * (1.0 + lhs.abs()),
                "{g:?}"
            );
            // Central differences of <gy, upsample(x)>.
            let h = 1e-5;
            for i in (0..x.len()).step_by(5) {
                let mut xp = x.clone();
                xp[i] += h;
                let mut xm = x.clone();
                xm[i] -= h;
                let numeric = (dot(&gy, &run(g, &xp)) - dot(&gy, &run(g, &xm))) / (2.0 * h);
                assert!(
                    (numeric - gx[i]).abs() < 1e-7,
                    "{g:?} element {i}: {numeric} vs {}",
                    gx[i]
                );
            }
        }
    }

    #[test]
    fn invalid_geometries_are_errors() {
        let mode = UpsampleMode::Nearest;
        assert!(UpsampleGeometry::from_scale(1, 1, [1, 2, 2], [1.0, 0.0, 2.0], mode).is_err());
        assert!(UpsampleGeometry::from_scale(1, 1, [1, 2, 2], [1.0, 0.2, 2.0], mode).is_err());
        assert!(UpsampleGeometry {
            batch: 1,
            channels: 1,
            input: [1, 0, 2],
            output: [1, 2, 2],
            scale: [None; 3],
            mode
        }
        .validate()
        .is_err());
    }
}
