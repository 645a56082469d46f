//! Seeded augmentation of a 2D photo and its class map (`[photos.augment]`): left-right and
//! up-down flips, and the U-Net course's elastic-affine transform, a rotation, scale and shift
//! about the centre plus a smooth random displacement field, resampled in one pass (bilinear
//! for the image, nearest for the classes, borders repeating the edge pixel).
//!
//! A photo is an [`Example`] with z = 1 and its colour planes as channels, so the volume
//! augmentation's flip and blur are reused.

use super::augment::{flip, gaussian_blur, Example};
use crate::error::{HeparError, Result};
use crate::util::rng::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhotoAugmentConfig {
    pub enabled: bool,
    /// Probability of a left-right flip.
    pub p_flip_horizontal: f64,
    /// Probability of an up-down flip.
    pub p_flip_vertical: f64,
    /// Probability of the elastic-affine transform.
    pub p_elastic_affine: f64,
    /// Rotation drawn uniformly in +-this many degrees.
    pub rotation_degrees: f64,
    /// Scale factor drawn uniformly in this range.
    pub scale_range: [f64; 2],
    /// Shift drawn uniformly in +-this fraction of the height and of the width.
    pub shift_fraction: f64,
    /// Largest displacement of the elastic field, in pixels (0 turns it off).
    pub elastic_alpha: f64,
    /// Smoothness of the elastic field: the Gaussian sigma (pixels) of its noise.
    pub elastic_sigma: f64,
}

impl Default for PhotoAugmentConfig {
    fn default() -> Self {
        PhotoAugmentConfig {
            enabled: true,
            p_flip_horizontal: 0.5,
            p_flip_vertical: 0.0,
            p_elastic_affine: 0.5,
            rotation_degrees: 15.0,
            scale_range: [0.9, 1.1],
            shift_fraction: 0.0625,
            elastic_alpha: 4.0,
            elastic_sigma: 8.0,
        }
    }
}

impl PhotoAugmentConfig {
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, msg: String| {
            Err(HeparError::Config(format!("photos.augment.{key}: {msg}")))
        };
        for (key, p) in [
            ("p_flip_horizontal", self.p_flip_horizontal),
            ("p_flip_vertical", self.p_flip_vertical),
            ("p_elastic_affine", self.p_elastic_affine),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(key, format!("{p} (a probability, between 0 and 1)"));
            }
        }
        let [lo, hi] = self.scale_range;
        if !(lo > 0.0 && lo <= hi && hi.is_finite()) {
            return bad(
                "scale_range",
                format!("{:?} (positive, low <= high)", self.scale_range),
            );
        }
        for (key, v) in [
            ("rotation_degrees", self.rotation_degrees),
            ("shift_fraction", self.shift_fraction),
            ("elastic_alpha", self.elastic_alpha),
            ("elastic_sigma", self.elastic_sigma),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(key, format!("{v} (must be finite and non-negative)"));
            }
        }
        Ok(())
    }
}

/// One drawn elastic-affine transform of an (h, w) photo.
#[derive(Debug, Clone, PartialEq)]
pub struct ElasticAffine {
    pub degrees: f64,
    pub scale: f64,
    /// Shift in pixels (rows, columns): content moves down and right for positive values.
    pub shift_yx: [f64; 2],
    /// Per-pixel displacement (rows, columns) of the sampling position, each (h, w); empty for
    /// none.
    pub displacement: [Vec<f32>; 2],
}

impl ElasticAffine {
    pub fn identity() -> Self {
        ElasticAffine {
            degrees: 0.0,
            scale: 1.0,
            shift_yx: [0.0, 0.0],
            displacement: [Vec::new(), Vec::new()],
        }
    }

    pub fn draw(cfg: &PhotoAugmentConfig, [h, w]: [usize; 2], rng: &mut Rng) -> Self {
        let sym = |rng: &mut Rng, r: f64| if r > 0.0 { rng.range(-r, r) } else { 0.0 };
        let degrees = sym(rng, cfg.rotation_degrees);
        let scale = rng.range(cfg.scale_range[0], cfg.scale_range[1]);
        let shift_yx = [
            sym(rng, cfg.shift_fraction) * h as f64,
            sym(rng, cfg.shift_fraction) * w as f64,
        ];
        let displacement = if cfg.elastic_alpha > 0.0 {
            elastic_field(cfg.elastic_alpha, cfg.elastic_sigma, [h, w], rng)
        } else {
            [Vec::new(), Vec::new()]
        };
        ElasticAffine {
            degrees,
            scale,
            shift_yx,
            displacement,
        }
    }

    /// Resamples the photo: output pixel p reads the input at
    /// `R(-degrees) (p - c - shift) / scale + c + displacement(p)`.
    pub fn apply(&self, example: &mut Example) -> Result<()> {
        let [z, h, w] = example.shape_zyx;
        let n = h * w;
        if z != 1
            || self
                .displacement
                .iter()
                .any(|d| !d.is_empty() && d.len() != n)
        {
            return Err(HeparError::shape(
                "ElasticAffine::apply",
                format!(
                    "a photo of (z, y, x) {:?} with a displacement of {} values",
                    example.shape_zyx,
                    self.displacement[0].len()
                ),
            ));
        }
        let (s, c) = (-self.degrees.to_radians()).sin_cos();
        let centre = [(h as f64 - 1.0) / 2.0, (w as f64 - 1.0) / 2.0];
        let mut sources = Vec::with_capacity(n);
        for y in 0..h {
            for x in 0..w {
                let dy = (y as f64 - centre[0] - self.shift_yx[0]) / self.scale;
                let dx = (x as f64 - centre[1] - self.shift_yx[1]) / self.scale;
                let field = |a: usize| {
                    self.displacement[a]
                        .get(y * w + x)
                        .map_or(0.0, |&v| v as f64)
                };
                let snap = |v: f64| {
                    if (v - v.round()).abs() < 1e-9 {
                        v.round()
                    } else {
                        v
                    }
                };
                let sy = snap(c * dy - s * dx + centre[0] + field(0));
                let sx = snap(s * dy + c * dx + centre[1] + field(1));
                sources.push((sy.clamp(0.0, (h - 1) as f64), sx.clamp(0.0, (w - 1) as f64)));
            }
        }
        let bilinear = |plane: &[f32], (sy, sx): (f64, f64)| {
            let (y0, x0) = (sy.floor() as usize, sx.floor() as usize);
            let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
            let (ty, tx) = ((sy - y0 as f64) as f32, (sx - x0 as f64) as f32);
            let row = |y: usize| plane[y * w + x0] * (1.0 - tx) + plane[y * w + x1] * tx;
            row(y0) * (1.0 - ty) + row(y1) * ty
        };
        let image: Vec<f32> = example
            .image
            .chunks_exact(n)
            .flat_map(|plane| sources.iter().map(|&p| bilinear(plane, p)))
            .collect();
        let label: Vec<f32> = sources
            .iter()
            .map(|&(sy, sx)| example.label[sy.round() as usize * w + sx.round() as usize])
            .collect();
        example.image = image;
        example.label = label;
        Ok(())
    }
}

/// A smooth random displacement (rows, columns): uniform noise blurred with `sigma`, scaled so
/// its largest magnitude is `alpha` pixels.
fn elastic_field(alpha: f64, sigma: f64, [h, w]: [usize; 2], rng: &mut Rng) -> [Vec<f32>; 2] {
    let n = h * w;
    let noise: Vec<f32> = (0..2 * n).map(|_| rng.range(-1.0, 1.0) as f32).collect();
    let mut field = match Example::new(noise, vec![0.0; n], 2, [1, h, w]) {
        Ok(f) => f,
        Err(_) => return [Vec::new(), Vec::new()],
    };
    gaussian_blur(&mut field, sigma);
    let peak = field.image.iter().fold(0f32, |m, v| m.max(v.abs()));
    let gain = if peak > 0.0 { alpha as f32 / peak } else { 0.0 };
    let (dy, dx) = field.image.split_at(n);
    [
        dy.iter().map(|v| v * gain).collect(),
        dx.iter().map(|v| v * gain).collect(),
    ]
}

/// Applies `[photos.augment]` to one photo with `rng`: the flips, then the elastic-affine
/// transform, each with its probability.
pub fn augment_photo(example: &mut Example, cfg: &PhotoAugmentConfig, rng: &mut Rng) -> Result<()> {
    if !cfg.enabled {
        return Ok(());
    }
    if rng.chance(cfg.p_flip_horizontal) {
        flip(example, 2);
    }
    if rng.chance(cfg.p_flip_vertical) {
        flip(example, 1);
    }
    if rng.chance(cfg.p_elastic_affine) {
        let [_, h, w] = example.shape_zyx;
        ElasticAffine::draw(cfg, [h, w], rng).apply(example)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(h: usize, w: usize) -> Example {
        let image: Vec<f32> = (0..h * w).map(|v| v as f32).collect();
        let label: Vec<f32> = (0..h * w).map(|v| (v % 3) as f32).collect();
        Example::new(image, label, 1, [1, h, w]).unwrap()
    }

    #[test]
    fn identity_transform_gives_the_photo_back() {
        let mut e = ramp(5, 7);
        let before = e.clone();
        ElasticAffine::identity().apply(&mut e).unwrap();
        assert_eq!(e, before);
    }

    #[test]
    fn a_shift_moves_content_down_and_right_repeating_the_edge() {
        let mut e = ramp(4, 5);
        let before = e.clone();
        let t = ElasticAffine {
            shift_yx: [1.0, 2.0],
            ..ElasticAffine::identity()
        };
        t.apply(&mut e).unwrap();
        for y in 0..4 {
            for x in 0..5 {
                let (sy, sx) = (y.max(1) - 1, x.max(2) - 2);
                assert_eq!(e.image[y * 5 + x], before.image[sy * 5 + sx], "({y}, {x})");
                assert_eq!(e.label[y * 5 + x], before.label[sy * 5 + sx]);
            }
        }
    }

    #[test]
    fn a_quarter_turn_rotates_a_square_photo() {
        let mut e = ramp(3, 3);
        let before = e.clone();
        let t = ElasticAffine {
            degrees: 90.0,
            ..ElasticAffine::identity()
        };
        t.apply(&mut e).unwrap();
        // Output (y, x) reads R(-90) (y - 1, x - 1) + 1 = (x, 2 - y).
        for y in 0..3 {
            for x in 0..3 {
                assert!((e.image[y * 3 + x] - before.image[x * 3 + (2 - y)]).abs() < 1e-5);
                assert_eq!(e.label[y * 3 + x], before.label[x * 3 + (2 - y)]);
            }
        }
    }

    #[test]
    fn same_seed_same_output_and_labels_keep_their_values() {
        let cfg = PhotoAugmentConfig {
            p_elastic_affine: 1.0,
            ..PhotoAugmentConfig::default()
        };
        let run = |seed| {
            let mut e = ramp(16, 12);
            augment_photo(&mut e, &cfg, &mut Rng::new(seed)).unwrap();
            e
        };
        let a = run(5);
        assert_eq!(a, run(5));
        assert_ne!(a, run(6));
        assert!(a.label.iter().all(|&l| l == 0.0 || l == 1.0 || l == 2.0));
        assert_ne!(a, ramp(16, 12));
    }

    #[test]
    fn elastic_field_is_bounded_by_alpha() {
        let [dy, dx] = elastic_field(3.0, 2.0, [10, 9], &mut Rng::new(1));
        let peak = dy.iter().chain(&dx).fold(0f32, |m, v| m.max(v.abs()));
        assert!((peak - 3.0).abs() < 1e-5, "{peak}");
    }

    #[test]
    fn bad_settings_are_named() {
        let cfg = PhotoAugmentConfig {
            p_flip_horizontal: 1.5,
            ..PhotoAugmentConfig::default()
        };
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("p_flip_horizontal"), "{err}");
    }
}
