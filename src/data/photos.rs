//! 2D photo segmentation datasets, decoded with the `image` crate (PNG and JPEG):
//! - Kvasir-SEG: `images/` and `masks/`, an image and its mask paired by file stem; mask grey
//!   values above 127 are the polyp (class 1), the rest background (2 classes).
//! - Oxford-IIIT Pet: `images/*.jpg` with `annotations/trimaps/<stem>.png`; the class is the
//!   trimap value minus 1 (0 pet, 1 background, 2 contour: 3 classes).
//!
//! The layout is found from the folder (or its only subfolder holding one). Every photo is
//! resized to `[photos] size_hw` (bilinear for the image, nearest for the mask) and either kept
//! as RGB normalised with the ImageNet mean and standard deviation or turned into one grey
//! channel in [0, 1]. A photo that cannot be used (no mask, a mask of another size, a file that
//! does not decode, a trimap value outside 1..=3) is left out with the reason; the rest load.

use super::dataset::CaseProblem;
use super::photo_augment::PhotoAugmentConfig;
use super::resize::{resize_yx, Interpolation};
use crate::error::{HeparError, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// ImageNet's per-channel statistics (R, G, B) of pixel values in [0, 1].
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhotoColor {
    /// Three channels, ImageNet mean/std normalisation.
    Rgb,
    /// One luma channel in [0, 1].
    Grayscale,
}

impl PhotoColor {
    pub fn channels(self) -> usize {
        match self {
            PhotoColor::Rgb => 3,
            PhotoColor::Grayscale => 1,
        }
    }
}

/// `[photos]` in parameters.toml: how the photo datasets are loaded and augmented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhotoConfig {
    /// Network input size (height, width) every photo is resized to.
    pub size_hw: [usize; 2],
    pub color: PhotoColor,
    /// `[photos.augment]`: seeded flips and the U-Net course's elastic-affine transform.
    pub augment: PhotoAugmentConfig,
}

impl Default for PhotoConfig {
    fn default() -> Self {
        PhotoConfig {
            size_hw: [128, 128],
            color: PhotoColor::Rgb,
            augment: PhotoAugmentConfig::default(),
        }
    }
}

impl PhotoConfig {
    pub fn validate(&self) -> Result<()> {
        if self.size_hw.contains(&0) {
            return Err(HeparError::Config(format!(
                "photos.size_hw: {:?} has a zero",
                self.size_hw
            )));
        }
        self.augment.validate()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PhotoLayout {
    Kvasir,
    Pets,
}

impl PhotoLayout {
    pub fn classes(self) -> usize {
        match self {
            PhotoLayout::Kvasir => 2,
            PhotoLayout::Pets => 3,
        }
    }

    fn mask_dir(self, root: &Path) -> PathBuf {
        match self {
            PhotoLayout::Kvasir => root.join("masks"),
            PhotoLayout::Pets => root.join("annotations").join("trimaps"),
        }
    }

    /// Mask grey value -> class, `None` for a value the layout does not define.
    fn class_of(self, value: u8) -> Option<u8> {
        match self {
            PhotoLayout::Kvasir => Some(u8::from(value > 127)),
            PhotoLayout::Pets => (1..=3).contains(&value).then(|| value - 1),
        }
    }
}

/// The layout of `dir` itself, if it is a photo dataset folder.
fn layout_of(dir: &Path) -> Option<PhotoLayout> {
    if !dir.join("images").is_dir() {
        return None;
    }
    [PhotoLayout::Pets, PhotoLayout::Kvasir]
        .into_iter()
        .find(|l| l.mask_dir(dir).is_dir())
}

/// Finds a photo dataset at `root` or in one of its subfolders (Kvasir-SEG unpacks into
/// `Kvasir-SEG/`): the folder holding `images/` and its layout.
pub fn find_photo_dataset(root: &Path) -> Option<(PathBuf, PhotoLayout)> {
    if let Some(layout) = layout_of(root) {
        return Some((root.to_path_buf(), layout));
    }
    let mut subdirs: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    subdirs.sort();
    subdirs
        .into_iter()
        .find_map(|d| layout_of(&d).map(|l| (d, l)))
}

/// One photo and its classes, resized: image (channels, h, w), label (h, w) of class ids.
#[derive(Debug, Clone, PartialEq)]
pub struct PhotoSample {
    pub id: String,
    pub image: Vec<f32>,
    pub label: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct PhotoDataset {
    pub root: PathBuf,
    pub layout: PhotoLayout,
    pub channels: usize,
    pub size_hw: [usize; 2],
    /// Ordered by file stem.
    pub samples: Vec<PhotoSample>,
    pub problems: Vec<CaseProblem>,
}

impl PhotoDataset {
    pub fn classes(&self) -> usize {
        self.layout.classes()
    }
}

fn is_photo_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    // Archives made on macOS carry `._name` resource files beside the real ones.
    !name.starts_with('.')
        && path.is_file()
        && matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg"))
}

/// The photo files of `dir` by stem.
fn photos_by_stem(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| HeparError::io(dir, e))? {
        let path = entry.map_err(|e| HeparError::io(dir, e))?.path();
        if !is_photo_file(&path) {
            continue;
        }
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
            files.insert(stem.to_string(), path);
        }
    }
    Ok(files)
}

fn decode(path: &Path) -> std::result::Result<image::DynamicImage, String> {
    image::ImageReader::open(path)
        .map_err(|e| format!("cannot open: {e}"))?
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?
        .decode()
        .map_err(|e| format!("does not decode: {e}"))
}

fn problem(path: &Path, reason: impl Into<String>) -> CaseProblem {
    CaseProblem {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The image's channels in [0, 1] at its own size, (channels, h, w).
fn image_channels(photo: &image::DynamicImage, color: PhotoColor) -> Vec<f32> {
    match color {
        PhotoColor::Grayscale => photo
            .to_luma8()
            .into_raw()
            .into_iter()
            .map(|v| v as f32 / 255.0)
            .collect(),
        PhotoColor::Rgb => {
            let rgb = photo.to_rgb8();
            let n = (rgb.width() * rgb.height()) as usize;
            let raw = rgb.into_raw();
            let mut planes = vec![0f32; 3 * n];
            for (i, px) in raw.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    planes[c * n + i] = px[c] as f32 / 255.0;
                }
            }
            planes
        }
    }
}

/// Decodes, checks and resizes one image/mask pair.
fn load_pair(
    id: &str,
    image_path: &Path,
    mask_path: &Path,
    layout: PhotoLayout,
    config: &PhotoConfig,
) -> std::result::Result<PhotoSample, CaseProblem> {
    let photo = decode(image_path).map_err(|r| problem(image_path, r))?;
    let mask = decode(mask_path)
        .map_err(|r| problem(mask_path, r))?
        .to_luma8();
    let (w, h) = (photo.width() as usize, photo.height() as usize);
    if (mask.width() as usize, mask.height() as usize) != (w, h) {
        return Err(problem(
            mask_path,
            format!(
                "mask is {}x{} but its image {} is {w}x{h}",
                mask.width(),
                mask.height(),
                image_path.display()
            ),
        ));
    }
    let mut label = Vec::with_capacity(w * h);
    for &v in mask.as_raw() {
        match layout.class_of(v) {
            Some(class) => label.push(class as f32),
            None => {
                return Err(problem(
                    mask_path,
                    format!("trimap value {v} (expected 1, 2 or 3)"),
                ))
            }
        }
    }
    let size = config.size_hw;
    let resize = |data: &[f32], interp| {
        resize_yx(data, [h, w], size, interp).map_err(|e| problem(image_path, e.to_string()))
    };
    let label = resize(&label, Interpolation::Nearest)?;
    let planes = image_channels(&photo, config.color);
    let mut image = Vec::with_capacity(planes.len() / (w * h) * size[0] * size[1]);
    for (c, plane) in planes.chunks_exact(w * h).enumerate() {
        let resized = resize(plane, Interpolation::Linear)?;
        match config.color {
            PhotoColor::Rgb => image.extend(
                resized
                    .into_iter()
                    .map(|v| (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c]),
            ),
            PhotoColor::Grayscale => image.extend(resized),
        }
    }
    Ok(PhotoSample {
        id: id.to_string(),
        image,
        label,
    })
}

/// Loads the photo dataset at `root` (see the module documentation); an error when no layout is
/// found or no pair loads.
pub fn load_photos(root: &Path, config: &PhotoConfig) -> Result<PhotoDataset> {
    config.validate()?;
    let (dir, layout) = find_photo_dataset(root).ok_or_else(|| {
        HeparError::format(
            root,
            "not a photo dataset: expected images/ with masks/ (Kvasir-SEG) or with \
             annotations/trimaps/ (Oxford-IIIT Pet)",
        )
    })?;
    let images = photos_by_stem(&dir.join("images"))?;
    let masks = photos_by_stem(&layout.mask_dir(&dir))?;
    let mut problems: Vec<CaseProblem> = masks
        .iter()
        .filter(|(stem, _)| !images.contains_key(*stem))
        .map(|(_, path)| problem(path, "mask without an image"))
        .collect();
    let pairs: Vec<(&String, &PathBuf, Option<&PathBuf>)> = images
        .iter()
        .map(|(stem, path)| (stem, path, masks.get(stem)))
        .collect();
    let loaded: Vec<std::result::Result<PhotoSample, CaseProblem>> = pairs
        .par_iter()
        .map(|(stem, image, mask)| match mask {
            Some(mask) => load_pair(stem, image, mask, layout, config),
            None => Err(problem(
                image,
                format!(
                    "image without a mask in {}",
                    layout.mask_dir(&dir).display()
                ),
            )),
        })
        .collect();
    let mut samples = Vec::new();
    for result in loaded {
        match result {
            Ok(s) => samples.push(s),
            Err(p) => problems.push(p),
        }
    }
    if samples.is_empty() {
        let first = problems
            .first()
            .map(|p| format!(": {p}"))
            .unwrap_or_default();
        return Err(HeparError::format(
            &dir,
            format!(
                "no usable image/mask pair ({} left out){first}",
                problems.len()
            ),
        ));
    }
    Ok(PhotoDataset {
        root: dir,
        layout,
        channels: config.color.channels(),
        size_hw: config.size_hw,
        samples,
        problems,
    })
}
