//! Surfaces of masks and exact Euclidean distances between them, in millimetres.
//!
//! A surface voxel is a mask voxel with a 6-neighbour outside the mask; voxels on the volume's
//! border count as having one (the outside of the volume is background). This is MONAI's
//! `get_mask_edges` without subvoxel spacing: `binary_erosion(mask) ^ mask` with the 6-connected
//! cross and scipy's default `border_value=0` (MONAI also pads the cropped box by one background
//! voxel, which gives the same edges).
//!
//! Distances come from an exact separable squared Euclidean distance transform (Felzenszwalb and
//! Huttenlocher's lower envelope of parabolas, one pass per axis, with the axis' spacing), run
//! only over the bounding box of the two masks: every surface voxel lies inside it, so distances
//! are unchanged. Lines of one pass are independent and run in parallel; each line's result does
//! not depend on scheduling.

use crate::error::{HeparError, Result};
use crate::infer::postprocess::check_mask;
use rayon::prelude::*;

/// The surface voxels of `mask` (shape `[z, y, x]`).
pub fn surface(mask: &[bool], shape: [usize; 3]) -> Result<Vec<bool>> {
    check_mask("surface", mask, shape)?;
    let [depth, height, width] = shape;
    let plane = height * width;
    let inside = |z: usize, y: usize, x: usize, dz: isize, dy: isize, dx: isize| match (
        z.checked_add_signed(dz).filter(|&v| v < depth),
        y.checked_add_signed(dy).filter(|&v| v < height),
        x.checked_add_signed(dx).filter(|&v| v < width),
    ) {
        (Some(z), Some(y), Some(x)) => mask[z * plane + y * width + x],
        _ => false,
    };
    const FACES: [(isize, isize, isize); 6] = [
        (-1, 0, 0),
        (1, 0, 0),
        (0, -1, 0),
        (0, 1, 0),
        (0, 0, -1),
        (0, 0, 1),
    ];
    Ok((0..mask.len())
        .into_par_iter()
        .map(|i| {
            if !mask[i] {
                return false;
            }
            let (z, y, x) = (i / plane, (i / width) % height, i % width);
            FACES
                .iter()
                .any(|&(dz, dy, dx)| !inside(z, y, x, dz, dy, dx))
        })
        .collect())
}

/// A box `start..start + size` inside a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub start: [usize; 3],
    pub size: [usize; 3],
}

/// The bounding box of the voxels set in any of `masks`, or `None` when all are empty.
pub fn bounding_box(masks: &[&[bool]], shape: [usize; 3]) -> Option<Bounds> {
    let [_, height, width] = shape;
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    let mut any = false;
    for mask in masks {
        for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
            let at = [i / (height * width), (i / width) % height, i % width];
            for a in 0..3 {
                lo[a] = lo[a].min(at[a]);
                hi[a] = hi[a].max(at[a]);
            }
            any = true;
        }
    }
    any.then(|| Bounds {
        start: lo,
        size: [0, 1, 2].map(|a| hi[a] - lo[a] + 1),
    })
}

/// The voxels of `data` inside `bounds`, C order.
fn crop<T: Copy>(data: &[T], shape: [usize; 3], bounds: Bounds) -> Vec<T> {
    let [_, height, width] = shape;
    let [bz, by, bx] = bounds.start;
    let [dz, dy, dx] = bounds.size;
    let mut out = Vec::with_capacity(dz * dy * dx);
    for z in bz..bz + dz {
        for y in by..by + dy {
            let row = (z * height + y) * width + bx;
            out.extend_from_slice(&data[row..row + dx]);
        }
    }
    out
}

/// Squared distances along one line to the nearest site, where `f` holds each position's
/// current squared distance (0 at sites, infinity where none is known) and positions lie
/// `spacing` mm apart. The lower envelope of the parabolas `f[p] + ((q - p) * spacing)^2`.
fn envelope_1d(f: &mut [f64], spacing: f64, vertices: &mut Vec<usize>, bounds: &mut Vec<f64>) {
    vertices.clear();
    bounds.clear();
    let pos = |p: usize| p as f64 * spacing;
    for (q, &fq) in f.iter().enumerate() {
        if !fq.is_finite() {
            continue;
        }
        // Pop parabolas that the new one hides everywhere to the right of their start.
        loop {
            let Some(&v) = vertices.last() else {
                vertices.push(q);
                bounds.push(f64::NEG_INFINITY);
                break;
            };
            let s = ((fq + pos(q) * pos(q)) - (f[v] + pos(v) * pos(v))) / (2.0 * (pos(q) - pos(v)));
            if s <= *bounds.last().expect("one bound per vertex") {
                vertices.pop();
                bounds.pop();
                continue;
            }
            vertices.push(q);
            bounds.push(s);
            break;
        }
    }
    if vertices.is_empty() {
        return;
    }
    let values: Vec<(usize, f64)> = vertices.iter().map(|&v| (v, f[v])).collect();
    let mut k = 0;
    for (q, out) in f.iter_mut().enumerate() {
        let x = pos(q);
        while k + 1 < values.len() && bounds[k + 1] < x {
            k += 1;
        }
        let (v, fv) = values[k];
        let d = x - pos(v);
        *out = fv + d * d;
    }
}

/// The squared distance (mm^2) from every voxel of a `[z, y, x]` grid to the nearest site,
/// infinity everywhere when there is no site.
pub fn squared_distance_transform(
    sites: &[bool],
    shape: [usize; 3],
    spacing_zyx: [f64; 3],
) -> Result<Vec<f64>> {
    check_mask("squared_distance_transform", sites, shape)?;
    // NIfTI pixdims may carry a sign; distances need the sizes, which must be positive.
    let spacing_zyx = spacing_zyx.map(f64::abs);
    if spacing_zyx.iter().any(|s| !s.is_normal()) {
        return Err(HeparError::invalid(
            "squared_distance_transform",
            format!("voxel spacing (z, y, x) {spacing_zyx:?} mm must be positive and finite"),
        ));
    }
    let [depth, height, width] = shape;
    let mut f: Vec<f64> = sites
        .iter()
        .map(|&s| if s { 0.0 } else { f64::INFINITY })
        .collect();
    if width == 0 || height == 0 || depth == 0 {
        return Ok(f);
    }
    // x: rows are contiguous.
    f.par_chunks_mut(width).for_each_init(
        || (Vec::new(), Vec::new()),
        |(v, b), row| envelope_1d(row, spacing_zyx[2], v, b),
    );
    // y: within each z plane, columns of stride `width`.
    f.par_chunks_mut(height * width).for_each_init(
        || (Vec::new(), Vec::new(), vec![0.0; height]),
        |(v, b, line), plane| {
            for x in 0..width {
                for y in 0..height {
                    line[y] = plane[y * width + x];
                }
                envelope_1d(line, spacing_zyx[1], v, b);
                for y in 0..height {
                    plane[y * width + x] = line[y];
                }
            }
        },
    );
    // z: lines of stride `height * width`, gathered per (y, x) row block.
    let plane = height * width;
    let columns: Vec<Vec<f64>> = (0..plane)
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new()),
            |(v, b), i| {
                let mut line: Vec<f64> = (0..depth).map(|z| f[z * plane + i]).collect();
                envelope_1d(&mut line, spacing_zyx[0], v, b);
                line
            },
        )
        .collect();
    for (i, line) in columns.iter().enumerate() {
        for (z, &value) in line.iter().enumerate() {
            f[z * plane + i] = value;
        }
    }
    Ok(f)
}

/// For every set voxel of `from` (C order), the distance in mm to the nearest set voxel of
/// `to`; empty when `from` is empty, infinities when `to` is empty.
pub fn directed_distances(
    from: &[bool],
    to: &[bool],
    shape: [usize; 3],
    spacing_zyx: [f64; 3],
) -> Result<Vec<f64>> {
    check_mask("directed_distances", from, shape)?;
    check_mask("directed_distances", to, shape)?;
    let Some(bounds) = bounding_box(&[from, to], shape) else {
        return Ok(Vec::new());
    };
    let (from, to) = (crop(from, shape, bounds), crop(to, shape, bounds));
    let squared = squared_distance_transform(&to, bounds.size, spacing_zyx)?;
    Ok(from
        .iter()
        .zip(&squared)
        .filter(|(&f, _)| f)
        .map(|(_, &d)| d.sqrt())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force: the nearest site by checking all of them.
    fn brute(sites: &[bool], shape: [usize; 3], spacing: [f64; 3]) -> Vec<f64> {
        let [_, h, w] = shape;
        let coords = |i: usize| [i / (h * w), (i / w) % h, i % w];
        let site_list: Vec<[usize; 3]> =
            (0..sites.len()).filter(|&i| sites[i]).map(coords).collect();
        (0..sites.len())
            .map(|i| {
                let c = coords(i);
                site_list
                    .iter()
                    .map(|s| {
                        (0..3)
                            .map(|a| ((c[a] as f64 - s[a] as f64) * spacing[a]).powi(2))
                            .sum::<f64>()
                    })
                    .fold(f64::INFINITY, f64::min)
            })
            .collect()
    }

    #[test]
    fn distance_transform_is_exact_against_brute_force() {
        let shape = [5, 7, 6];
        let mut state = 99u64;
        let sites: Vec<bool> = (0..5 * 7 * 6)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33).is_multiple_of(17)
            })
            .collect();
        assert!(sites.iter().any(|&s| s));
        for spacing in [[1.0, 1.0, 1.0], [2.5, 0.7, 0.9], [0.3, 3.0, 1.1]] {
            let fast = squared_distance_transform(&sites, shape, spacing).unwrap();
            let slow = brute(&sites, shape, spacing);
            for (i, (a, b)) in fast.iter().zip(&slow).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-9 * b.max(1.0),
                    "voxel {i}: {a} vs {b} ({spacing:?})"
                );
            }
        }
        let none = squared_distance_transform(&[false; 8], [2, 2, 2], [1.0; 3]).unwrap();
        assert!(none.iter().all(|d| d.is_infinite()));
        // A negative pixdim is a size; a zero one is an error.
        let flipped = squared_distance_transform(&sites, shape, [-2.5, 0.7, -0.9]).unwrap();
        assert_eq!(
            flipped,
            squared_distance_transform(&sites, shape, [2.5, 0.7, 0.9]).unwrap()
        );
        assert!(squared_distance_transform(&sites, shape, [0.0, 1.0, 1.0]).is_err());
    }

    #[test]
    fn surface_of_a_cube_is_its_shell_and_border_voxels_count() {
        // A 3 x 3 x 3 cube inside a 5^3 volume: 26 surface voxels, the centre is interior.
        let shape = [5, 5, 5];
        let mut mask = vec![false; 125];
        for z in 1..4 {
            for y in 1..4 {
                for x in 1..4 {
                    mask[z * 25 + y * 5 + x] = true;
                }
            }
        }
        let s = surface(&mask, shape).unwrap();
        assert_eq!(s.iter().filter(|&&v| v).count(), 26);
        assert!(!s[2 * 25 + 2 * 5 + 2]);
        // The full volume: only its border is surface (3^3 interior of 5^3 is not).
        let full = surface(&[true; 125], shape).unwrap();
        assert_eq!(full.iter().filter(|&&v| v).count(), 125 - 27);
    }
}
