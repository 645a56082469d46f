//! The `[data]`, `[preprocess]`, `[augment]` and `[sampling]` sections of `parameters.toml`.
//! Every field has a default: the seed project's value where it had one, a documented choice
//! otherwise. Unknown keys inside these sections are errors, so a typo is never silently ignored;
//! other sections of the file belong to other parts of Hepar and are skipped here.

use crate::error::{HeparError, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the cases come from and how they are split and loaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Dataset folder (LiTS or MSD Task03_Liver layout, detected automatically).
    pub root: PathBuf,
    /// Folder for preprocessed cases; entries are keyed by the preprocessing settings.
    pub cache_dir: PathBuf,
    /// Number of cross-validation folds.
    pub folds: usize,
    /// Which fold is held out for validation (0-based, below `folds`).
    pub fold: usize,
    /// Seed of the case shuffle that assigns cases to folds.
    pub split_seed: u64,
    /// Background threads that build batches.
    pub workers: usize,
    /// Batches prepared ahead of the trainer.
    pub prefetch: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            root: PathBuf::from("data/synth"),
            cache_dir: PathBuf::from("data/cache"),
            folds: 5,
            fold: 0,
            split_seed: 42,
            workers: 2,
            prefetch: 4,
        }
    }
}

/// Stage 1: the whole volume at low resolution, for the liver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stage1Config {
    /// HU window `[low, high]` applied before normalisation.
    pub hu_clip: [f32; 2],
    /// z-score statistics from the non-zero voxels only (true) or from every voxel.
    pub zscore_nonzero_only: bool,
    /// Network input shape (z, y, x).
    pub shape_zyx: [usize; 3],
}

impl Default for Stage1Config {
    fn default() -> Self {
        Stage1Config {
            hu_clip: [-200.0, 250.0],
            zscore_nonzero_only: true,
            shape_zyx: [128, 128, 128],
        }
    }
}

/// Stage 2: 2.5D stacks of axial slices inside the liver bounding box, for tumours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stage2Config {
    /// HU window `[low, high]`.
    pub hu_clip: [f32; 2],
    /// z-score statistics from the non-zero voxels only (true) or from every voxel.
    pub zscore_nonzero_only: bool,
    /// Margin around the liver bounding box, in voxels, along (z, y, x).
    pub crop_margin_zyx: [usize; 3],
    /// Adjacent slices per stack (the network's input channels).
    pub stack_slices: usize,
    /// Step between the first slices of consecutive stacks.
    pub stack_stride: usize,
    /// In-plane size (y, x) each slice is resized to.
    pub slice_shape_yx: [usize; 2],
}

impl Default for Stage2Config {
    fn default() -> Self {
        Stage2Config {
            hu_clip: [0.0, 200.0],
            zscore_nonzero_only: true,
            crop_margin_zyx: [2, 10, 10],
            stack_slices: 3,
            stack_stride: 2,
            slice_shape_yx: [256, 256],
        }
    }
}

/// `[preprocess]`: `[preprocess.stage1]` and `[preprocess.stage2]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PreprocessConfig {
    pub stage1: Stage1Config,
    pub stage2: Stage2Config,
}

/// `[augment]`: each transform is applied with its probability `p_*`, its strength drawn uniformly
/// from its range. Intensity values are in z-score units (the data is normalised first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Master switch (validation and inference never augment).
    pub enabled: bool,
    /// Probability of flipping along each spatial axis, drawn per axis.
    pub p_flip: f64,
    /// Probability of an isotropic zoom, with factor from `zoom_range`.
    pub p_zoom: f64,
    pub zoom_range: [f64; 2],
    /// Probability of a small rotation, each angle (degrees) from `rotation_degrees` (in-plane
    /// only for 2D stacks).
    pub p_rotate: f64,
    pub rotation_degrees: [f64; 2],
    /// Probability of an anisotropic scaling, a factor per axis from `scale_range`.
    pub p_scale: f64,
    pub scale_range: [f64; 2],
    /// Probability of adding a constant drawn from `intensity_shift_range`.
    pub p_intensity_shift: f64,
    pub intensity_shift_range: [f64; 2],
    /// Probability of Gaussian noise with standard deviation from `noise_std_range`.
    pub p_noise: f64,
    pub noise_std_range: [f64; 2],
    /// Probability of a smooth multiplicative bias field `exp(field)`, `field` a quadratic
    /// polynomial of the coordinates bounded by `bias_field_strength` in magnitude.
    pub p_bias_field: f64,
    pub bias_field_strength: f64,
    /// Probability of a Gaussian blur with sigma (voxels) from `blur_sigma_range`.
    pub p_blur: f64,
    pub blur_sigma_range: [f64; 2],
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            enabled: true,
            p_flip: 0.5,
            p_zoom: 0.3,
            zoom_range: [0.8, 1.2],
            p_rotate: 0.2,
            rotation_degrees: [-15.0, 15.0],
            p_scale: 0.2,
            scale_range: [0.9, 1.1],
            p_intensity_shift: 0.3,
            intensity_shift_range: [-0.1, 0.1],
            p_noise: 0.15,
            noise_std_range: [0.0, 0.1],
            p_bias_field: 0.2,
            bias_field_strength: 0.3,
            p_blur: 0.2,
            blur_sigma_range: [0.5, 1.0],
        }
    }
}

/// `[sampling]`: which stage-2 stacks are trained on and how often.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    /// Fraction of background-only stacks kept (all liver and tumour stacks are kept).
    pub background_keep_fraction: f64,
    /// Sampling weight of a stack whose middle slice contains tumour.
    pub tumour_weight: f64,
    /// Sampling weight of every other kept stack.
    pub other_weight: f64,
    /// Seed of the stack selection and the samplers.
    pub seed: u64,
}

impl Default for SamplingConfig {
    fn default() -> Self {
        SamplingConfig {
            background_keep_fraction: 0.4,
            tumour_weight: 5.0,
            other_weight: 1.0,
            seed: 42,
        }
    }
}

/// The data pipeline's sections of `parameters.toml`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DataParameters {
    pub data: DataConfig,
    pub preprocess: PreprocessConfig,
    pub augment: AugmentConfig,
    pub sampling: SamplingConfig,
    /// `[keras_ct]`: the Keras liver U-Net's slice preprocessing (src/data/keras_ct.rs).
    pub keras_ct: super::keras_ct::KerasCtConfig,
    /// `[photos]`: the 2D photo datasets' size, colour and augmentation (src/data/photos.rs).
    pub photos: super::photos::PhotoConfig,
}

impl DataParameters {
    pub fn from_toml_str(text: &str) -> Result<Self> {
        let params: DataParameters =
            toml::from_str(text).map_err(|e| HeparError::Config(e.to_string()))?;
        params.validate()?;
        Ok(params)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| HeparError::io(path, e))?;
        Self::from_toml_str(&text)
            .map_err(|e| HeparError::Config(format!("{}: {e}", path.display())))
    }

    /// Range and consistency checks that serde cannot express.
    pub fn validate(&self) -> Result<()> {
        let bad = |key: &str, msg: String| Err(HeparError::Config(format!("{key}: {msg}")));
        self.keras_ct.validate()?;
        self.photos.validate()?;
        let d = &self.data;
        if d.folds < 2 {
            return bad("data.folds", format!("{} (need at least 2)", d.folds));
        }
        if d.fold >= d.folds {
            return bad(
                "data.fold",
                format!("{} (must be below data.folds = {})", d.fold, d.folds),
            );
        }
        for (key, clip) in [
            ("preprocess.stage1.hu_clip", self.preprocess.stage1.hu_clip),
            ("preprocess.stage2.hu_clip", self.preprocess.stage2.hu_clip),
        ] {
            if clip[0].partial_cmp(&clip[1]) != Some(std::cmp::Ordering::Less) {
                return bad(key, format!("{clip:?} (low must be below high)"));
            }
        }
        if self.preprocess.stage1.shape_zyx.contains(&0) {
            return bad(
                "preprocess.stage1.shape_zyx",
                format!("{:?} has a zero", self.preprocess.stage1.shape_zyx),
            );
        }
        let s2 = &self.preprocess.stage2;
        if s2.stack_slices == 0 || s2.stack_stride == 0 || s2.slice_shape_yx.contains(&0) {
            return bad(
                "preprocess.stage2",
                "stack_slices, stack_stride and slice_shape_yx must be positive".into(),
            );
        }
        let a = &self.augment;
        for (key, p) in [
            ("augment.p_flip", a.p_flip),
            ("augment.p_zoom", a.p_zoom),
            ("augment.p_rotate", a.p_rotate),
            ("augment.p_scale", a.p_scale),
            ("augment.p_intensity_shift", a.p_intensity_shift),
            ("augment.p_noise", a.p_noise),
            ("augment.p_bias_field", a.p_bias_field),
            ("augment.p_blur", a.p_blur),
            (
                "sampling.background_keep_fraction",
                self.sampling.background_keep_fraction,
            ),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return bad(key, format!("{p} (a probability, between 0 and 1)"));
            }
        }
        for (key, r) in [
            ("augment.zoom_range", a.zoom_range),
            ("augment.rotation_degrees", a.rotation_degrees),
            ("augment.scale_range", a.scale_range),
            ("augment.intensity_shift_range", a.intensity_shift_range),
            ("augment.noise_std_range", a.noise_std_range),
            ("augment.blur_sigma_range", a.blur_sigma_range),
        ] {
            if !matches!(
                r[0].partial_cmp(&r[1]),
                Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal)
            ) {
                return bad(key, format!("{r:?} (low must not exceed high)"));
            }
        }
        if a.zoom_range[0] <= 0.0 || a.scale_range[0] <= 0.0 {
            return bad(
                "augment.zoom_range / scale_range",
                "factors must be positive".into(),
            );
        }
        let s = &self.sampling;
        if !(s.tumour_weight > 0.0 && s.other_weight > 0.0) {
            return bad(
                "sampling.tumour_weight / other_weight",
                "weights must be positive".into(),
            );
        }
        Ok(())
    }
}
