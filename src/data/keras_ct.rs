//! The Keras liver U-Net's CT pipeline as configurable steps (`[keras_ct]` in parameters.toml):
//! Hounsfield units (the DICOM reader's rescale), a CT window to 0..255, CLAHE on the 8-bit
//! slices, scaling to [0, 1], the axial slices that contain liver less a margin at each end, and
//! a seeded affine augmentation with Keras' `ImageDataGenerator` parameters (rotation, shifts,
//! shear, zoom, nearest fill).

use super::clahe::Clahe;
use super::ct_window::window_to_u8;
use super::preprocess::{CropBox, Stack, StackKind, Stage2Case};
use super::resize::{resize_yx, Interpolation};
use super::volume::Volume;
use crate::error::{HeparError, Result};
use crate::util::rng::Rng;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// `[keras_ct]`: every step and its parameters; defaults are the Keras seed's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KerasCtConfig {
    /// CT window centre and width, HU.
    pub window_level: f32,
    pub window_width: f32,
    /// CLAHE on the windowed 8-bit slices, with OpenCV's clip limit and tile grid (x, y).
    pub clahe: bool,
    pub clahe_clip_limit: f64,
    pub clahe_tiles: [usize; 2],
    /// Divide the 0..255 grey levels by 255.
    pub scale_to_unit: bool,
    /// Keep the slices from the first liver slice + margin to the last liver slice - margin.
    pub liver_margin: usize,
    /// Stage-2 (2D) training on a 3Dircadb folder takes its slices from these steps instead of
    /// `[preprocess.stage2]`.
    pub apply_to_3dircadb: bool,
    pub augment: KerasAugmentConfig,
}

impl Default for KerasCtConfig {
    fn default() -> Self {
        KerasCtConfig {
            window_level: 150.0,
            window_width: 500.0,
            clahe: true,
            clahe_clip_limit: 2.0,
            clahe_tiles: [8, 8],
            scale_to_unit: true,
            liver_margin: 5,
            apply_to_3dircadb: true,
            augment: KerasAugmentConfig::default(),
        }
    }
}

/// `[keras_ct.augment]`: Keras `ImageDataGenerator` ranges; each draw is uniform in +-range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KerasAugmentConfig {
    pub enabled: bool,
    pub seed: u64,
    /// `rotation_range`, degrees.
    pub rotation_degrees: f64,
    /// `width_shift_range` / `height_shift_range`, fractions of the slice size.
    pub width_shift: f64,
    pub height_shift: f64,
    /// `shear_range`, degrees.
    pub shear_degrees: f64,
    /// `zoom_range`: factors drawn per axis in [1 - zoom, 1 + zoom].
    pub zoom: f64,
}

impl Default for KerasAugmentConfig {
    fn default() -> Self {
        KerasAugmentConfig {
            enabled: true,
            seed: 42,
            rotation_degrees: 3.0,
            width_shift: 0.01,
            height_shift: 0.01,
            shear_degrees: 0.01,
            zoom: 0.01,
        }
    }
}

impl KerasCtConfig {
    /// The `[keras_ct]` section of a parameters.toml text (defaults when it is absent).
    pub fn from_parameters_toml(text: &str) -> Result<Self> {
        let table: toml::Table =
            toml::from_str(text).map_err(|e| HeparError::Config(e.to_string()))?;
        let config: KerasCtConfig = match table.get("keras_ct") {
            None => KerasCtConfig::default(),
            Some(section) => section
                .clone()
                .try_into()
                .map_err(|e| HeparError::Config(format!("[keras_ct]: {e}")))?,
        };
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(HeparError::Config(format!("[keras_ct] {msg}")));
        if self.window_width.is_nan() || self.window_width <= 0.0 || !self.window_level.is_finite()
        {
            return bad(format!(
                "window_width {} must be positive and window_level {} finite",
                self.window_width, self.window_level
            ));
        }
        if self.clahe
            && (self.clahe_tiles.contains(&0)
                || self.clahe_clip_limit.is_nan()
                || self.clahe_clip_limit < 0.0)
        {
            return bad(format!(
                "clahe_tiles {:?} must be positive and clahe_clip_limit {} non-negative",
                self.clahe_tiles, self.clahe_clip_limit
            ));
        }
        let a = &self.augment;
        for (key, v) in [
            ("rotation_degrees", a.rotation_degrees),
            ("width_shift", a.width_shift),
            ("height_shift", a.height_shift),
            ("shear_degrees", a.shear_degrees),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(format!("augment.{key} {v} must be a non-negative range"));
            }
        }
        if !(0.0..1.0).contains(&a.zoom) {
            return bad(format!("augment.zoom {} must lie in [0, 1)", a.zoom));
        }
        Ok(())
    }

    /// Window, CLAHE and scaling of one axial slice of Hounsfield units.
    pub fn preprocess_slice(&self, hu: &[f32], height: usize, width: usize) -> Result<Vec<f32>> {
        let grey = window_to_u8(hu, self.window_level, self.window_width);
        let grey = if self.clahe {
            Clahe {
                clip_limit: self.clahe_clip_limit,
                tiles_xy: self.clahe_tiles,
            }
            .apply(&grey, height, width)?
        } else {
            grey
        };
        let divisor = if self.scale_to_unit { 255.0 } else { 1.0 };
        Ok(grey.iter().map(|&g| g as f32 / divisor).collect())
    }

    /// The kept axial slices of a case: preprocessed image and 0/1 liver mask per slice.
    pub fn case_slices(&self, image: &Volume, liver: &Volume) -> Result<Vec<(Vec<f32>, Vec<f32>)>> {
        if image.shape_zyx != liver.shape_zyx {
            return Err(HeparError::shape(
                "KerasCtConfig::case_slices",
                format!(
                    "mask {:?} differs from its image {:?} (z, y, x)",
                    liver.shape_zyx, image.shape_zyx
                ),
            ));
        }
        let [_, h, w] = image.shape_zyx;
        let plane = h * w;
        liver_slice_range(liver, self.liver_margin)
            .map(|z| {
                let hu = &image.data[z * plane..(z + 1) * plane];
                let mask = liver.data[z * plane..(z + 1) * plane]
                    .iter()
                    .map(|&v| (v > 0.0) as u8 as f32)
                    .collect();
                Ok((self.preprocess_slice(hu, h, w)?, mask))
            })
            .collect()
    }
}

impl KerasCtConfig {
    /// A case as single-slice stage-2 stacks: the kept slices, resized to `shape_yx` (bilinear
    /// images, nearest masks), labelled 0/1, so the trainer's 2D path can train on them.
    pub fn stage2_case(
        &self,
        image: &Volume,
        liver: &Volume,
        shape_yx: [usize; 2],
    ) -> Result<Stage2Case> {
        let [_, h, w] = image.shape_zyx;
        let range = liver_slice_range(liver, self.liver_margin);
        if range.is_empty() {
            return Err(HeparError::invalid(
                "keras_ct",
                format!(
                    "the liver spans too few slices to keep any after dropping {} at each end",
                    self.liver_margin
                ),
            ));
        }
        let mut stacks = Vec::new();
        for (z, (slice, mask)) in range.clone().zip(self.case_slices(image, liver)?) {
            let slice = resize_yx(&slice, [h, w], shape_yx, Interpolation::Linear)?;
            let mask = resize_yx(&mask, [h, w], shape_yx, Interpolation::Nearest)?;
            let kind = if mask.iter().any(|&v| v > 0.0) {
                StackKind::Liver
            } else {
                StackKind::Background
            };
            stacks.push(Stack {
                image: slice,
                label: mask,
                centre_z: z,
                kind,
            });
        }
        Ok(Stage2Case {
            stacks,
            slices: 1,
            shape_yx,
            crop: CropBox {
                start_zyx: [range.start, 0, 0],
                shape_zyx: [range.len(), h, w],
            },
            source_shape_zyx: image.shape_zyx,
        })
    }
}

/// Slices from the first slice with liver + `margin` to the last - `margin` (empty when the
/// liver spans too few slices).
pub fn liver_slice_range(liver: &Volume, margin: usize) -> Range<usize> {
    let [depth, h, w] = liver.shape_zyx;
    let has_liver = |z: usize| {
        liver.data[z * h * w..(z + 1) * h * w]
            .iter()
            .any(|&v| v > 0.0)
    };
    let Some(first) = (0..depth).find(|&z| has_liver(z)) else {
        return 0..0;
    };
    let last = (0..depth).rev().find(|&z| has_liver(z)).unwrap_or(first);
    let start = first + margin;
    let end = (last + 1).saturating_sub(margin);
    if start < end {
        start..end
    } else {
        0..0
    }
}

/// One draw of Keras' `random_transform` parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffineDraw {
    pub theta_degrees: f64,
    /// Shifts in pixels along rows (tx) and columns (ty), Keras' naming.
    pub tx: f64,
    pub ty: f64,
    pub shear_degrees: f64,
    pub zx: f64,
    pub zy: f64,
}

impl KerasAugmentConfig {
    pub fn draw(&self, height: usize, width: usize, rng: &mut Rng) -> AffineDraw {
        let sym = |rng: &mut Rng, r: f64| if r > 0.0 { rng.range(-r, r) } else { 0.0 };
        AffineDraw {
            theta_degrees: sym(rng, self.rotation_degrees),
            tx: sym(rng, self.height_shift) * height as f64,
            ty: sym(rng, self.width_shift) * width as f64,
            shear_degrees: sym(rng, self.shear_degrees),
            zx: 1.0 + sym(rng, self.zoom),
            zy: 1.0 + sym(rng, self.zoom),
        }
    }
}

type Mat3 = [[f64; 3]; 3];

fn matmul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut m = [[0.0; 3]; 3];
    for (r, row) in m.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[r][k] * b[k][c]).sum();
        }
    }
    m
}

impl KerasAugmentConfig {
    /// The loader's augmentation of a Keras U-Net stack: one draw for the example, applied to
    /// each slice of the image and to the mask alike.
    pub fn augment_example(&self, example: &mut super::augment::Example, rng: &mut Rng) {
        let [z, h, w] = example.shape_zyx;
        if !self.enabled || z != 1 {
            return;
        }
        let draw = self.draw(h, w, rng);
        let mut mask = Vec::new();
        let mut image = Vec::with_capacity(example.image.len());
        for (c, plane) in example.image.chunks_exact(h * w).enumerate() {
            let (moved, moved_mask) = draw.apply(plane, &example.label, h, w);
            image.extend(moved);
            if c == 0 {
                mask = moved_mask;
            }
        }
        example.image = image;
        example.label = mask;
    }
}

impl AffineDraw {
    /// Keras' `apply_affine_transform` matrix: rotation, shift, shear, zoom, about the slice
    /// centre; it maps an output (row, column) to the input position sampled there.
    pub fn matrix(&self, height: usize, width: usize) -> Mat3 {
        let (s, c) = self.theta_degrees.to_radians().sin_cos();
        let rotation = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]];
        let shift = [[1.0, 0.0, self.tx], [0.0, 1.0, self.ty], [0.0, 0.0, 1.0]];
        let (ss, sc) = self.shear_degrees.to_radians().sin_cos();
        let shear = [[1.0, -ss, 0.0], [0.0, sc, 0.0], [0.0, 0.0, 1.0]];
        let zoom = [[self.zx, 0.0, 0.0], [0.0, self.zy, 0.0], [0.0, 0.0, 1.0]];
        let m = matmul(&matmul(&matmul(&rotation, &shift), &shear), &zoom);
        let (ox, oy) = (height as f64 / 2.0 - 0.5, width as f64 / 2.0 - 0.5);
        let offset = [[1.0, 0.0, ox], [0.0, 1.0, oy], [0.0, 0.0, 1.0]];
        let reset = [[1.0, 0.0, -ox], [0.0, 1.0, -oy], [0.0, 0.0, 1.0]];
        matmul(&matmul(&offset, &m), &reset)
    }

    /// Applies the transform to an image (bilinear, as Keras' order 1) and its mask (nearest),
    /// borders filled with the nearest edge pixel (Keras' `fill_mode="nearest"`).
    pub fn apply(
        &self,
        image: &[f32],
        mask: &[f32],
        height: usize,
        width: usize,
    ) -> (Vec<f32>, Vec<f32>) {
        let m = self.matrix(height, width);
        let at = |data: &[f32], r: isize, c: isize| {
            let r = r.clamp(0, height as isize - 1) as usize;
            let c = c.clamp(0, width as isize - 1) as usize;
            data[r * width + c]
        };
        let mut out_image = Vec::with_capacity(image.len());
        let mut out_mask = Vec::with_capacity(mask.len());
        for r in 0..height {
            for c in 0..width {
                let (rf, cf) = (r as f64, c as f64);
                let sr = m[0][0] * rf + m[0][1] * cf + m[0][2];
                let sc = m[1][0] * rf + m[1][1] * cf + m[1][2];
                let (r0, c0) = (sr.floor(), sc.floor());
                let (wr, wc) = ((sr - r0) as f32, (sc - c0) as f32);
                let (r0, c0) = (r0 as isize, c0 as isize);
                let top = at(image, r0, c0) * (1.0 - wc) + at(image, r0, c0 + 1) * wc;
                let bottom = at(image, r0 + 1, c0) * (1.0 - wc) + at(image, r0 + 1, c0 + 1) * wc;
                out_image.push(top * (1.0 - wr) + bottom * wr);
                out_mask.push(at(mask, sr.round() as isize, sc.round() as isize));
            }
        }
        (out_image, out_mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_draw_leaves_the_slice_alone() {
        let draw = AffineDraw {
            theta_degrees: 0.0,
            tx: 0.0,
            ty: 0.0,
            shear_degrees: 0.0,
            zx: 1.0,
            zy: 1.0,
        };
        let image: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let (i, m) = draw.apply(&image, &image, 3, 4);
        assert_eq!(i, image);
        assert_eq!(m, image);
    }

    #[test]
    fn a_shift_moves_content_and_repeats_the_edge() {
        // tx = +1: output row r samples input row r + 1 (Keras' inverse mapping)
        let draw = AffineDraw {
            theta_degrees: 0.0,
            tx: 1.0,
            ty: 0.0,
            shear_degrees: 0.0,
            zx: 1.0,
            zy: 1.0,
        };
        let image: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let (i, _) = draw.apply(&image, &image, 3, 4);
        assert_eq!(&i[..8], &image[4..12]);
        assert_eq!(&i[8..], &image[8..12]);
    }

    #[test]
    fn a_90_degree_rotation_turns_a_square() {
        let draw = AffineDraw {
            theta_degrees: 90.0,
            tx: 0.0,
            ty: 0.0,
            shear_degrees: 0.0,
            zx: 1.0,
            zy: 1.0,
        };
        let image: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let (i, m) = draw.apply(&image, &image, 3, 3);
        // output (r, c) samples input (r', c') = R (r - 1, c - 1) + 1 with R = [[0,-1],[1,0]]
        for r in 0..3 {
            for c in 0..3 {
                let (sr, sc) = (1 - (c as i32 - 1), (r as i32 - 1) + 1);
                let want = image[(sr * 3 + sc) as usize];
                assert!((i[r * 3 + c] - want).abs() < 1e-4);
                assert_eq!(m[r * 3 + c], want);
            }
        }
    }

    #[test]
    fn draws_are_seeded_and_within_range() {
        let cfg = KerasAugmentConfig::default();
        let a = cfg.draw(512, 512, &mut Rng::new(3));
        assert_eq!(a, cfg.draw(512, 512, &mut Rng::new(3)));
        assert_ne!(a, cfg.draw(512, 512, &mut Rng::new(4)));
        assert!(a.theta_degrees.abs() <= 3.0 && a.tx.abs() <= 5.12 && (a.zx - 1.0).abs() <= 0.01);
    }

    #[test]
    fn loader_augmentation_is_seeded_and_moves_slices_and_mask_alike() {
        use crate::data::augment::Example;
        let (h, w) = (6, 5);
        let plane: Vec<f32> = (0..h * w).map(|v| v as f32).collect();
        let image: Vec<f32> = plane.iter().chain(&plane).copied().collect();
        let example = Example::new(image, plane.clone(), 2, [1, h, w]).unwrap();
        // Zero ranges: the identity, the example comes back as it was.
        let still = KerasAugmentConfig {
            rotation_degrees: 0.0,
            width_shift: 0.0,
            height_shift: 0.0,
            shear_degrees: 0.0,
            zoom: 0.0,
            ..KerasAugmentConfig::default()
        };
        let mut e = example.clone();
        still.augment_example(&mut e, &mut Rng::new(1));
        assert_eq!(e, example);
        // Large ranges so that the draw visibly moves a small slice.
        let strong = KerasAugmentConfig {
            rotation_degrees: 30.0,
            height_shift: 0.3,
            ..KerasAugmentConfig::default()
        };
        let run = |seed| {
            let mut e = example.clone();
            strong.augment_example(&mut e, &mut Rng::new(seed));
            e
        };
        let a = run(7);
        assert_eq!(a, run(7));
        assert_ne!(a, run(8));
        assert_ne!(a, example);
        // Both slices moved alike, and the mask is the nearest-sampled slice.
        let n = h * w;
        assert_eq!(&a.image[..n], &a.image[n..]);
        let draw = strong.draw(h, w, &mut Rng::new(7));
        let (moved, moved_mask) = draw.apply(&plane, &plane, h, w);
        assert_eq!(&a.image[..n], &moved[..]);
        assert_eq!(a.label, moved_mask);
    }

    #[test]
    fn liver_range_drops_the_margin_at_each_end() {
        let mut data = vec![0.0; 20 * 4];
        for z in 3..15 {
            data[z * 4 + 1] = 1.0;
        }
        let liver = Volume::new(data, [20, 2, 2], [1.0; 3]).unwrap();
        assert_eq!(liver_slice_range(&liver, 5), 8..10);
        assert_eq!(liver_slice_range(&liver, 0), 3..15);
        assert_eq!(liver_slice_range(&liver, 6), 0..0);
    }

    #[test]
    fn config_section_parses_with_defaults_and_rejects_typos() {
        let cfg =
            KerasCtConfig::from_parameters_toml("[keras_ct]\nwindow_width = 400.0\n").unwrap();
        assert_eq!(cfg.window_width, 400.0);
        assert_eq!(cfg.window_level, 150.0);
        assert_eq!(
            KerasCtConfig::from_parameters_toml("").unwrap(),
            KerasCtConfig::default()
        );
        assert!(KerasCtConfig::from_parameters_toml("[keras_ct]\nwindow_widht = 1.0\n").is_err());
        assert!(KerasCtConfig::from_parameters_toml("[keras_ct]\nwindow_width = -1.0\n").is_err());
    }

    #[test]
    fn preprocessing_chains_window_clahe_and_scale() {
        let cfg = KerasCtConfig::default();
        let hu: Vec<f32> = (0..64 * 64)
            .map(|i| -200.0 + (i % 64) as f32 * 10.0)
            .collect();
        let out = cfg.preprocess_slice(&hu, 64, 64).unwrap();
        let grey = window_to_u8(&hu, 150.0, 500.0);
        let eq = Clahe::default().apply(&grey, 64, 64).unwrap();
        for (o, e) in out.iter().zip(&eq) {
            assert_eq!(*o, *e as f32 / 255.0);
        }
        let plain = KerasCtConfig {
            clahe: false,
            scale_to_unit: false,
            ..cfg
        };
        let out = plain.preprocess_slice(&hu, 64, 64).unwrap();
        assert_eq!(out[0], grey[0] as f32);
    }
}
