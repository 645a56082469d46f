//! Resampling of (z, y, x) volumes and (y, x) images: linear (trilinear / bilinear) for intensities,
//! nearest for labels. Both are separable, so each axis is resized in its own parallel pass, the
//! most shrinking axis first so later passes touch less data.
//!
//! Sample positions use half-voxel centres (PyTorch's `align_corners=False`): output voxel `i` sits
//! at input coordinate `(i + 0.5) * in / out - 0.5`, clamped to the volume.

use crate::error::{HeparError, Result};
use rayon::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Linear along each axis: trilinear in 3D, for intensities.
    Linear,
    /// The nearest input voxel: for labels, whose values must stay in their set.
    Nearest,
}

/// Resizes a C-order (z, y, x) array of shape `src_zyx` to `dst_zyx`.
pub fn resize_zyx(
    data: &[f32],
    src_zyx: [usize; 3],
    dst_zyx: [usize; 3],
    interp: Interpolation,
) -> Result<Vec<f32>> {
    let n: usize = src_zyx.iter().product();
    if data.len() != n {
        return Err(HeparError::shape(
            "resize_zyx",
            format!(
                "data has {} values, shape {src_zyx:?} needs {n}",
                data.len()
            ),
        ));
    }
    if src_zyx.contains(&0) || dst_zyx.contains(&0) {
        return Err(HeparError::invalid(
            "resize_zyx",
            format!("empty shape: {src_zyx:?} -> {dst_zyx:?}"),
        ));
    }
    // Pass order: the axis with the smallest out/in ratio first.
    let mut order = [0usize, 1, 2];
    order.sort_by(|&a, &b| {
        let ra = dst_zyx[a] as f64 / src_zyx[a] as f64;
        let rb = dst_zyx[b] as f64 / src_zyx[b] as f64;
        ra.partial_cmp(&rb).unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut shape = src_zyx;
    let mut current: Option<Vec<f32>> = None;
    for axis in order {
        if shape[axis] == dst_zyx[axis] {
            continue;
        }
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        let input = current.as_deref().unwrap_or(data);
        let resized = resize_axis(input, outer, shape[axis], inner, dst_zyx[axis], interp);
        shape[axis] = dst_zyx[axis];
        current = Some(resized);
    }
    Ok(current.unwrap_or_else(|| data.to_vec()))
}

/// Resizes a C-order (y, x) image.
pub fn resize_yx(
    data: &[f32],
    src_yx: [usize; 2],
    dst_yx: [usize; 2],
    interp: Interpolation,
) -> Result<Vec<f32>> {
    resize_zyx(
        data,
        [1, src_yx[0], src_yx[1]],
        [1, dst_yx[0], dst_yx[1]],
        interp,
    )
}

/// For each output index along an axis: the two input indices and the weight of the second.
pub(crate) fn axis_taps(
    n_in: usize,
    n_out: usize,
    interp: Interpolation,
) -> Vec<(usize, usize, f32)> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|i| match interp {
            Interpolation::Nearest => {
                let s = (((i as f64 + 0.5) * scale).floor() as usize).min(n_in - 1);
                (s, s, 0.0)
            }
            Interpolation::Linear => {
                let pos = ((i as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (pos.floor() as usize).min(n_in - 1);
                let i1 = (i0 + 1).min(n_in - 1);
                let w = if i1 == i0 {
                    0.0
                } else {
                    (pos - i0 as f64) as f32
                };
                (i0, i1, w)
            }
        })
        .collect()
}

/// Resizes the middle axis of an (outer, n_in, inner) array to n_out.
fn resize_axis(
    data: &[f32],
    outer: usize,
    n_in: usize,
    inner: usize,
    n_out: usize,
    interp: Interpolation,
) -> Vec<f32> {
    let taps = axis_taps(n_in, n_out, interp);
    let mut out = vec![0f32; outer * n_out * inner];
    if inner == 1 {
        // Resizing the fastest axis: one output row per input row.
        out.par_chunks_mut(n_out)
            .zip(data.par_chunks(n_in))
            .for_each(|(dst, src)| {
                for (d, &(i0, i1, w)) in dst.iter_mut().zip(&taps) {
                    *d = src[i0] + w * (src[i1] - src[i0]);
                }
            });
    } else {
        out.par_chunks_mut(inner)
            .enumerate()
            .for_each(|(row, dst)| {
                let (o, i) = (row / n_out, row % n_out);
                let (i0, i1, w) = taps[i];
                let base = o * n_in * inner;
                let a = &data[base + i0 * inner..base + (i0 + 1) * inner];
                if w == 0.0 {
                    dst.copy_from_slice(a);
                } else {
                    let b = &data[base + i1 * inner..base + (i1 + 1) * inner];
                    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
                        *d = x + w * (y - x);
                    }
                }
            });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_shape_is_identity() {
        let data: Vec<f32> = (0..24).map(|v| v as f32).collect();
        assert_eq!(
            resize_zyx(&data, [2, 3, 4], [2, 3, 4], Interpolation::Linear).unwrap(),
            data
        );
    }

    #[test]
    fn linear_downsample_by_two_averages_pairs() {
        let data = vec![0.0, 2.0, 4.0, 6.0];
        let out = resize_yx(&data, [1, 4], [1, 2], Interpolation::Linear).unwrap();
        assert_eq!(out, vec![1.0, 5.0]);
    }

    #[test]
    fn linear_upsample_matches_half_pixel_rule() {
        // in = [0, 4] -> out 4: positions -0.25(clamped 0), 0.25, 0.75, 1.25(clamped index)
        let out = resize_yx(&[0.0, 4.0], [1, 2], [1, 4], Interpolation::Linear).unwrap();
        assert_eq!(out, vec![0.0, 1.0, 3.0, 4.0]);
    }

    #[test]
    fn nearest_keeps_label_values() {
        let data: Vec<f32> = (0..27).map(|v| (v % 3) as f32).collect();
        let out = resize_zyx(&data, [3, 3, 3], [7, 5, 4], Interpolation::Nearest).unwrap();
        assert_eq!(out.len(), 140);
        assert!(out.iter().all(|v| [0.0, 1.0, 2.0].contains(v)));
    }

    #[test]
    fn wrong_length_is_an_error() {
        assert!(resize_zyx(&[1.0; 5], [1, 2, 3], [2, 2, 2], Interpolation::Linear).is_err());
    }
}
