//! Intensity and geometry transforms of the patch-based 3D recipes, applied to an image and its
//! label alike where the geometry changes. Volumes are `[z, y, x]` C order.
//!
//! - `crop_or_pad`: torchio's `CropOrPad`, centred: along each axis `ceil(d / 2)` voxels go
//!   before and `floor(d / 2)` after, where `d` is the size difference; padding takes a value
//!   (0 for labels).
//! - `rescale_intensity`: torchio's `RescaleIntensity`: values clipped to the given percentiles
//!   (numpy's linear interpolation) and mapped linearly onto a range; a constant image stays.
//! - `ct_window_min_max`: FracNet's input normalisation: HU clipped to a window, then mapped
//!   linearly from the window onto [0, 1].
//! - `random_affine`: a seeded scaling (per axis) and rotation (per axis, degrees) about the
//!   volume's centre in millimetres; the image resampled trilinearly (outside: its minimum), the
//!   label by nearest neighbour (outside: 0), as torchio's `RandomAffine`.

use crate::error::{HeparError, Result};
use crate::eval::metrics::percentile;
use crate::util::rng::Rng;

/// Crops or pads `data` (shape `shape`) to `target`, centred; new voxels take `fill`.
pub fn crop_or_pad(
    data: &[f32],
    shape: [usize; 3],
    target: [usize; 3],
    fill: f32,
) -> Result<Vec<f32>> {
    if data.len() != shape.iter().product::<usize>() || target.contains(&0) {
        return Err(HeparError::shape(
            "crop_or_pad",
            format!(
                "{} values for shape {shape:?}, target {target:?}",
                data.len()
            ),
        ));
    }
    // Source index of target index 0 along each axis (negative: padding first).
    let offset: [isize; 3] = std::array::from_fn(|a| {
        let d = target[a] as isize - shape[a] as isize;
        if d >= 0 {
            -((d + 1) / 2)
        } else {
            (-d + 1) / 2
        }
    });
    let mut out = vec![fill; target.iter().product()];
    for z in 0..target[0] {
        let sz = z as isize + offset[0];
        if sz < 0 || sz >= shape[0] as isize {
            continue;
        }
        for y in 0..target[1] {
            let sy = y as isize + offset[1];
            if sy < 0 || sy >= shape[1] as isize {
                continue;
            }
            for x in 0..target[2] {
                let sx = x as isize + offset[2];
                if sx >= 0 && sx < shape[2] as isize {
                    out[(z * target[1] + y) * target[2] + x] =
                        data[(sz as usize * shape[1] + sy as usize) * shape[2] + sx as usize];
                }
            }
        }
    }
    Ok(out)
}

/// Clips to the `percentiles` (0..=100) of `data` and maps them linearly onto `out_range`.
pub fn rescale_intensity(
    data: &mut [f32],
    out_range: [f32; 2],
    percentiles: [f64; 2],
) -> Result<()> {
    if !(0.0..=100.0).contains(&percentiles[0])
        || !(0.0..=100.0).contains(&percentiles[1])
        || percentiles[0] > percentiles[1]
    {
        return Err(HeparError::invalid(
            "rescale_intensity",
            format!("percentiles {percentiles:?} must be 0 <= low <= high <= 100"),
        ));
    }
    let values: Vec<f64> = data.iter().map(|&v| v as f64).collect();
    let (Some(low), Some(high)) = (
        percentile(&values, percentiles[0]),
        percentile(&values, percentiles[1]),
    ) else {
        return Ok(());
    };
    if high <= low {
        return Ok(());
    }
    let (out_low, out_span) = (out_range[0] as f64, (out_range[1] - out_range[0]) as f64);
    for v in data.iter_mut() {
        let clipped = (*v as f64).clamp(low, high);
        *v = ((clipped - low) / (high - low) * out_span + out_low) as f32;
    }
    Ok(())
}

/// Clips `data` to `[low, high]` and maps that range linearly onto [0, 1].
pub fn ct_window_min_max(data: &mut [f32], low: f32, high: f32) -> Result<()> {
    if !(low.is_finite() && high.is_finite() && high > low) {
        return Err(HeparError::invalid(
            "ct_window_min_max",
            format!("window [{low}, {high}] must be finite with low < high"),
        ));
    }
    let span = high - low;
    for v in data.iter_mut() {
        *v = (v.clamp(low, high) - low) / span;
    }
    Ok(())
}

/// The ranges of [`random_affine`]'s draws (the 3D U-Net's recipe: scales 0.9..1.1, degrees
/// -10..10).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AffineRanges {
    pub scales: [f64; 2],
    pub degrees: [f64; 2],
}

impl Default for AffineRanges {
    fn default() -> Self {
        AffineRanges {
            scales: [0.9, 1.1],
            degrees: [-10.0, 10.0],
        }
    }
}

/// One drawn affine: scale and rotation (degrees) per axis (z, y, x).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine3 {
    pub scales: [f64; 3],
    pub degrees: [f64; 3],
}

impl Affine3 {
    pub fn draw(ranges: &AffineRanges, rng: &mut Rng) -> Self {
        Affine3 {
            scales: std::array::from_fn(|_| rng.range(ranges.scales[0], ranges.scales[1])),
            degrees: std::array::from_fn(|_| rng.range(ranges.degrees[0], ranges.degrees[1])),
        }
    }

    /// The matrix mapping an output offset from the centre (mm, z y x) to the source offset: the
    /// inverse of scaling then rotating about x, y, z in turn.
    fn inverse_matrix(&self) -> [[f64; 3]; 3] {
        let rotation = |axis: usize, degrees: f64| {
            let (s, c) = (-degrees.to_radians()).sin_cos();
            let (i, j) = match axis {
                0 => (1, 2), // about z: the (y, x) plane
                1 => (0, 2),
                _ => (0, 1),
            };
            let mut m = [[0.0; 3]; 3];
            m[axis][axis] = 1.0;
            m[i][i] = c;
            m[j][j] = c;
            m[i][j] = -s;
            m[j][i] = s;
            m
        };
        let mul = |a: [[f64; 3]; 3], b: [[f64; 3]; 3]| {
            std::array::from_fn(|r| {
                std::array::from_fn(|c| (0..3).map(|k| a[r][k] * b[k][c]).sum())
            })
        };
        // Forward: R_z R_y R_x S; inverse: S^-1 R_x^-1 R_y^-1 R_z^-1.
        let mut m = rotation(0, self.degrees[0]);
        m = mul(rotation(1, self.degrees[1]), m);
        m = mul(rotation(2, self.degrees[2]), m);
        let inv_scale: [[f64; 3]; 3] = std::array::from_fn(|r| {
            std::array::from_fn(|c| if r == c { 1.0 / self.scales[r] } else { 0.0 })
        });
        mul(inv_scale, m)
    }
}

/// Applies `affine` to an image (trilinear) and optionally its label (nearest), both of shape
/// `shape` with voxel spacing `spacing_zyx` (mm).
pub fn apply_affine(
    affine: &Affine3,
    image: &[f32],
    label: Option<&[f32]>,
    shape: [usize; 3],
    spacing_zyx: [f64; 3],
) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
    let n: usize = shape.iter().product();
    if image.len() != n || label.is_some_and(|l| l.len() != n) {
        return Err(HeparError::shape(
            "random_affine",
            format!("image or label size differs from shape {shape:?}"),
        ));
    }
    let m = affine.inverse_matrix();
    let centre: [f64; 3] = std::array::from_fn(|a| (shape[a] as f64 - 1.0) / 2.0);
    let outside = image.iter().copied().fold(f32::INFINITY, f32::min);
    let at = |z: usize, y: usize, x: usize| (z * shape[1] + y) * shape[2] + x;
    let mut out_image = vec![0f32; n];
    let mut out_label = label.map(|_| vec![0f32; n]);
    for z in 0..shape[0] {
        for y in 0..shape[1] {
            for x in 0..shape[2] {
                let offset_mm = [z, y, x]
                    .iter()
                    .enumerate()
                    .map(|(a, &v)| (v as f64 - centre[a]) * spacing_zyx[a])
                    .collect::<Vec<_>>();
                let source: [f64; 3] = std::array::from_fn(|r| {
                    let s = (0..3).map(|k| m[r][k] * offset_mm[k]).sum::<f64>() / spacing_zyx[r]
                        + centre[r];
                    // Exact turns and scales land on voxels despite rounding in sin and cos.
                    if (s - s.round()).abs() < 1e-9 {
                        s.round()
                    } else {
                        s
                    }
                });
                let i = at(z, y, x);
                out_image[i] = trilinear(image, shape, source).unwrap_or(outside);
                if let (Some(l), Some(out)) = (label, out_label.as_mut()) {
                    let nearest = source.map(|s| s.round());
                    let inside = (0..3).all(|a| nearest[a] >= 0.0 && nearest[a] < shape[a] as f64);
                    out[i] = if inside {
                        l[at(
                            nearest[0] as usize,
                            nearest[1] as usize,
                            nearest[2] as usize,
                        )]
                    } else {
                        0.0
                    };
                }
            }
        }
    }
    Ok((out_image, out_label))
}

/// Trilinear sample at a source position, `None` outside the grid.
fn trilinear(data: &[f32], shape: [usize; 3], p: [f64; 3]) -> Option<f32> {
    if (0..3).any(|a| p[a] < 0.0 || p[a] > (shape[a] - 1) as f64) {
        return None;
    }
    let lo: [usize; 3] = std::array::from_fn(|a| (p[a].floor() as usize).min(shape[a] - 1));
    let hi: [usize; 3] = std::array::from_fn(|a| (lo[a] + 1).min(shape[a] - 1));
    let t: [f64; 3] = std::array::from_fn(|a| p[a] - lo[a] as f64);
    let mut sum = 0.0;
    for corner in 0..8 {
        let pick = |a: usize| corner >> (2 - a) & 1 == 1;
        let idx: [usize; 3] = std::array::from_fn(|a| if pick(a) { hi[a] } else { lo[a] });
        let w: f64 = (0..3)
            .map(|a| if pick(a) { t[a] } else { 1.0 - t[a] })
            .product();
        sum += w * data[(idx[0] * shape[1] + idx[1]) * shape[2] + idx[2]] as f64;
    }
    Some(sum as f32)
}

/// Draws an affine from `ranges` with `rng` and applies it to the image and label alike.
pub fn random_affine(
    rng: &mut Rng,
    ranges: &AffineRanges,
    image: &[f32],
    label: Option<&[f32]>,
    shape: [usize; 3],
    spacing_zyx: [f64; 3],
) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
    apply_affine(
        &Affine3::draw(ranges, rng),
        image,
        label,
        shape,
        spacing_zyx,
    )
}

/// An image with its optional label on one grid: what [`Transform`]s act on.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub image: Vec<f32>,
    pub label: Option<Vec<f32>>,
    pub shape: [usize; 3],
    pub spacing_zyx: [f64; 3],
}

/// One step of a recipe; geometric steps move the label with the image, intensity steps touch
/// the image only.
#[derive(Clone, Debug, PartialEq)]
pub enum Transform {
    /// Centred crop or pad to a shape; the image pads with `image_fill`, the label with 0.
    CropOrPad {
        target: [usize; 3],
        image_fill: f32,
    },
    RescaleIntensity {
        out_range: [f32; 2],
        percentiles: [f64; 2],
    },
    CtWindowMinMax {
        low: f32,
        high: f32,
    },
    RandomAffine(AffineRanges),
}

impl Transform {
    pub fn apply(&self, sample: Sample, rng: &mut Rng) -> Result<Sample> {
        let Sample {
            mut image,
            label,
            shape,
            spacing_zyx,
        } = sample;
        Ok(match self {
            Transform::CropOrPad { target, image_fill } => Sample {
                image: crop_or_pad(&image, shape, *target, *image_fill)?,
                label: label
                    .map(|l| crop_or_pad(&l, shape, *target, 0.0))
                    .transpose()?,
                shape: *target,
                spacing_zyx,
            },
            Transform::RescaleIntensity {
                out_range,
                percentiles,
            } => {
                rescale_intensity(&mut image, *out_range, *percentiles)?;
                Sample {
                    image,
                    label,
                    shape,
                    spacing_zyx,
                }
            }
            Transform::CtWindowMinMax { low, high } => {
                ct_window_min_max(&mut image, *low, *high)?;
                Sample {
                    image,
                    label,
                    shape,
                    spacing_zyx,
                }
            }
            Transform::RandomAffine(ranges) => {
                let (image, label) =
                    random_affine(rng, ranges, &image, label.as_deref(), shape, spacing_zyx)?;
                Sample {
                    image,
                    label,
                    shape,
                    spacing_zyx,
                }
            }
        })
    }
}

/// Applies `steps` in order with one generator seeded by `seed` (the same seed, the same result).
pub fn compose(steps: &[Transform], sample: Sample, seed: u64) -> Result<Sample> {
    let mut rng = Rng::new(seed);
    steps
        .iter()
        .try_fold(sample, |s, step| step.apply(s, &mut rng))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_composed_recipe_moves_the_label_with_the_image_and_repeats_for_a_seed() {
        let shape = [4, 6, 6];
        let image: Vec<f32> = (0..144).map(|i| i as f32).collect();
        let label: Vec<f32> = image.iter().map(|&v| (v > 70.0) as u8 as f32).collect();
        let sample = Sample {
            image,
            label: Some(label),
            shape,
            spacing_zyx: [2.0, 1.0, 1.0],
        };
        let recipe = [
            Transform::CropOrPad {
                target: [6, 4, 8],
                image_fill: -5.0,
            },
            Transform::RandomAffine(AffineRanges::default()),
            Transform::RescaleIntensity {
                out_range: [-1.0, 1.0],
                percentiles: [0.0, 100.0],
            },
        ];
        let a = compose(&recipe, sample.clone(), 11).unwrap();
        assert_eq!(a, compose(&recipe, sample.clone(), 11).unwrap());
        assert_ne!(a, compose(&recipe, sample, 12).unwrap());
        assert_eq!(a.shape, [6, 4, 8]);
        let label = a.label.unwrap();
        assert_eq!(label.len(), 6 * 4 * 8);
        assert!(label.iter().all(|&l| l == 0.0 || l == 1.0));
        let (lo, hi) = a
            .image
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        assert!((lo + 1.0).abs() < 1e-6 && (hi - 1.0).abs() < 1e-6);
    }

    #[test]
    fn crop_or_pad_is_centred_with_the_extra_voxel_first() {
        // 1 x 1 x 3 -> 1 x 1 x 6: pad 3 = 2 before, 1 after (torchio: ceil then floor).
        let out = crop_or_pad(&[1.0, 2.0, 3.0], [1, 1, 3], [1, 1, 6], -1.0).unwrap();
        assert_eq!(out, [-1.0, -1.0, 1.0, 2.0, 3.0, -1.0]);
        // 1 x 1 x 6 -> 1 x 1 x 3: crop 3 = 2 before, 1 after.
        let out = crop_or_pad(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1, 1, 6], [1, 1, 3], 0.0).unwrap();
        assert_eq!(out, [3.0, 4.0, 5.0]);
        // Crop one axis and pad another at once: 1 x 3 x 1 -> 2 x 1 x 1.
        let out = crop_or_pad(&[7.0, 8.0, 9.0], [1, 3, 1], [2, 1, 1], 0.0).unwrap();
        assert_eq!(out, [0.0, 8.0]);
        assert!(crop_or_pad(&[1.0], [1, 1, 2], [1, 1, 1], 0.0).is_err());
    }

    #[test]
    fn rescale_maps_the_percentiles_onto_the_range() {
        let mut v = [0.0, 1.0, 2.0, 3.0, 4.0];
        rescale_intensity(&mut v, [-1.0, 1.0], [0.0, 100.0]).unwrap();
        assert_eq!(v, [-1.0, -0.5, 0.0, 0.5, 1.0]);
        // Percentiles 25 and 75 of 0..=4 are 1 and 3: values beyond clip.
        let mut v = [0.0, 1.0, 2.0, 3.0, 4.0];
        rescale_intensity(&mut v, [0.0, 1.0], [25.0, 75.0]).unwrap();
        assert_eq!(v, [0.0, 0.0, 0.5, 1.0, 1.0]);
        let mut constant = [5.0; 4];
        rescale_intensity(&mut constant, [-1.0, 1.0], [0.0, 100.0]).unwrap();
        assert_eq!(constant, [5.0; 4]);
        assert!(rescale_intensity(&mut v, [0.0, 1.0], [80.0, 20.0]).is_err());
    }

    #[test]
    fn the_identity_affine_keeps_the_volume_and_labels_stay_labels() {
        let shape = [3, 4, 5];
        let image: Vec<f32> = (0..60).map(|i| i as f32).collect();
        let label: Vec<f32> = (0..60).map(|i| (i % 3) as f32).collect();
        let identity = Affine3 {
            scales: [1.0; 3],
            degrees: [0.0; 3],
        };
        let (i, l) = apply_affine(&identity, &image, Some(&label), shape, [2.0, 1.0, 1.0]).unwrap();
        assert_eq!(i, image);
        assert_eq!(l.unwrap(), label);
        // A 90 degree turn about z maps (y, x) offsets (1, 0) to (0, 1) on a square plane.
        let turn = Affine3 {
            scales: [1.0; 3],
            degrees: [90.0, 0.0, 0.0],
        };
        let plane: Vec<f32> = (0..9).map(|i| i as f32).collect();
        let (out, _) = apply_affine(&turn, &plane, None, [1, 3, 3], [1.0; 3]).unwrap();
        // Rotation permutes the 3 x 3 plane's voxels around its centre.
        let mut sorted = out.clone();
        sorted.sort_by(f32::total_cmp);
        assert_eq!(sorted, plane);
        assert_eq!(out[4], 4.0);
        // Output (y 0, x 1) reads source (y 1, x 2): the plane turns by a quarter.
        assert_eq!(out[1], 5.0);
        assert_ne!(out, plane);
        // Random draws: seeded, in range, labels keep their values.
        let mut rng = Rng::new(7);
        let (_, l) = random_affine(
            &mut rng,
            &AffineRanges::default(),
            &image,
            Some(&label),
            shape,
            [1.0; 3],
        )
        .unwrap();
        assert!(l.unwrap().iter().all(|v| [0.0, 1.0, 2.0].contains(v)));
        let a = Affine3::draw(&AffineRanges::default(), &mut Rng::new(3));
        assert_eq!(a, Affine3::draw(&AffineRanges::default(), &mut Rng::new(3)));
        assert!(a.scales.iter().all(|s| (0.9..=1.1).contains(s)));
        assert!(a.degrees.iter().all(|d| (-10.0..=10.0).contains(d)));
    }

    #[test]
    fn the_ct_window_clips_and_maps_to_the_unit_range() {
        let mut v = [-1000.0, -200.0, 400.0, 1000.0, 3000.0];
        ct_window_min_max(&mut v, -200.0, 1000.0).unwrap();
        assert_eq!(v, [0.0, 0.0, 0.5, 1.0, 1.0]);
        assert!(ct_window_min_max(&mut v, 5.0, 5.0).is_err());
    }
}
