//! The two preprocessing stages of the cascade.
//!
//! Stage 1 (liver, whole volume): clip HU, z-score, resize to a fixed (z, y, x) shape.
//! Stage 2 (tumour, 2.5D): clip HU, z-score, crop to the liver bounding box plus a margin, cut
//! stacks of adjacent axial slices, resize each slice in-plane. The label of a stack is the label
//! of its middle slice.

use super::config::{Stage1Config, Stage2Config};
use super::resize::{resize_yx, Interpolation};
use super::volume::Volume;
use crate::error::{HeparError, Result};
use rayon::prelude::*;

/// Label values of the LiTS / MSD convention.
pub const LABEL_BACKGROUND: f32 = 0.0;
pub const LABEL_LIVER: f32 = 1.0;
pub const LABEL_TUMOUR: f32 = 2.0;

/// Mean and standard deviation used by a z-score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZScore {
    pub mean: f64,
    pub std: f64,
}

/// Clips `data` to `clip` in place and returns the statistics for the z-score: over the non-zero
/// (clipped) voxels when `nonzero_only`, else over all. A constant input gets std 1, so the
/// result is finite.
pub fn clip_and_stats(data: &mut [f32], clip: [f32; 2], nonzero_only: bool) -> ZScore {
    const CHUNK: usize = 1 << 16;
    let (count, sum, sum_sq) = data
        .par_chunks_mut(CHUNK)
        .map(|chunk| {
            let (mut n, mut s, mut ss) = (0u64, 0f64, 0f64);
            // Per-chunk partial sums in f32 would lose precision on 50M voxels; f64 keeps it.
            for v in chunk.iter_mut() {
                let c = v.clamp(clip[0], clip[1]);
                *v = c;
                if !nonzero_only || c != 0.0 {
                    n += 1;
                    s += c as f64;
                    ss += (c as f64) * (c as f64);
                }
            }
            (n, s, ss)
        })
        // Collected, then added in chunk order: a parallel reduce would add where work-stealing
        // split, and the statistics (so every normalised voxel) would change with the threads.
        .collect::<Vec<_>>()
        .into_iter()
        .fold((0, 0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
    if count == 0 {
        return ZScore {
            mean: 0.0,
            std: 1.0,
        };
    }
    let mean = sum / count as f64;
    let var = (sum_sq / count as f64 - mean * mean).max(0.0);
    let std = var.sqrt();
    ZScore {
        mean,
        std: if std > 1e-6 { std } else { 1.0 },
    }
}

/// `(v - mean) / std` for every voxel.
pub fn apply_zscore(data: &mut [f32], z: ZScore) {
    let (mean, inv) = (z.mean as f32, (1.0 / z.std) as f32);
    data.par_iter_mut().for_each(|v| *v = (*v - mean) * inv);
}

/// Clip, then z-score, in place.
pub fn clip_and_normalise(data: &mut [f32], clip: [f32; 2], nonzero_only: bool) -> ZScore {
    let z = clip_and_stats(data, clip, nonzero_only);
    apply_zscore(data, z);
    z
}

/// Stage 1: returns the normalised, resized image and the label resized by nearest neighbour.
pub fn stage1(
    mut image: Volume,
    label: Option<&Volume>,
    cfg: &Stage1Config,
) -> Result<(Volume, Option<Volume>)> {
    if let Some(l) = label {
        check_same_shape(&image, l)?;
    }
    clip_and_normalise(&mut image.data, cfg.hu_clip, cfg.zscore_nonzero_only);
    let resized = image.resized(cfg.shape_zyx, Interpolation::Linear)?;
    let label = label
        .map(|l| l.resized(cfg.shape_zyx, Interpolation::Nearest))
        .transpose()?;
    Ok((resized, label))
}

pub fn check_same_shape(image: &Volume, label: &Volume) -> Result<()> {
    if image.shape_zyx != label.shape_zyx {
        return Err(HeparError::shape(
            "case",
            format!(
                "label shape (z, y, x) {:?} differs from image shape {:?}",
                label.shape_zyx, image.shape_zyx
            ),
        ));
    }
    Ok(())
}

/// What a stack's middle slice contains; decides whether it is kept and how often it is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum StackKind {
    Background,
    Liver,
    Tumour,
}

/// A box in voxel coordinates (z, y, x).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CropBox {
    pub start_zyx: [usize; 3],
    pub shape_zyx: [usize; 3],
}

/// The bounding box of the voxels where `mask > 0`, grown by `margin_zyx` and clipped to the
/// volume; `None` when the mask is empty.
pub fn foreground_box(mask: &Volume, margin_zyx: [usize; 3]) -> Option<CropBox> {
    let [d, h, w] = mask.shape_zyx;
    let plane = h * w;
    let per_slice: Vec<Option<([usize; 2], [usize; 2])>> = mask
        .data
        .par_chunks(plane)
        .map(|slice| {
            let mut lo = [usize::MAX; 2];
            let mut hi = [0usize; 2];
            let mut any = false;
            for (i, &v) in slice.iter().enumerate() {
                if v > 0.0 {
                    let (y, x) = (i / w, i % w);
                    lo = [lo[0].min(y), lo[1].min(x)];
                    hi = [hi[0].max(y), hi[1].max(x)];
                    any = true;
                }
            }
            any.then_some((lo, hi))
        })
        .collect();
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    for (z, s) in per_slice.iter().enumerate() {
        if let Some((l, h2)) = s {
            lo = [lo[0].min(z), lo[1].min(l[0]), lo[2].min(l[1])];
            hi = [hi[0].max(z), hi[1].max(h2[0]), hi[2].max(h2[1])];
        }
    }
    if lo[0] == usize::MAX {
        return None;
    }
    let tight = CropBox {
        start_zyx: lo,
        shape_zyx: [0, 1, 2].map(|a| hi[a] + 1 - lo[a]),
    };
    Some(tight.grown(margin_zyx, [d, h, w]))
}

impl CropBox {
    /// The box grown by `margin_zyx` on every side, clipped to a volume of `dims_zyx`.
    pub fn grown(&self, margin_zyx: [usize; 3], dims_zyx: [usize; 3]) -> CropBox {
        let start = [0, 1, 2].map(|a| self.start_zyx[a].saturating_sub(margin_zyx[a]));
        let end = [0, 1, 2]
            .map(|a| (self.start_zyx[a] + self.shape_zyx[a] + margin_zyx[a]).min(dims_zyx[a]));
        CropBox {
            start_zyx: start,
            shape_zyx: [0, 1, 2].map(|a| end[a].saturating_sub(start[a])),
        }
    }

    /// Whether the box is non-empty and lies inside a volume of `dims_zyx`.
    pub fn fits(&self, dims_zyx: [usize; 3]) -> bool {
        (0..3)
            .all(|a| self.shape_zyx[a] > 0 && self.start_zyx[a] + self.shape_zyx[a] <= dims_zyx[a])
    }
}

/// One 2.5D training or inference sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    /// (slices, y, x): the normalised slices, resized in-plane.
    pub image: Vec<f32>,
    /// (y, x): labels 0/1/2 of the middle slice (all 0 at inference).
    pub label: Vec<f32>,
    /// Index of the middle slice in the source volume.
    pub centre_z: usize,
    pub kind: StackKind,
}

/// A case cut into stacks, with the crop it was cut from (to paste predictions back).
#[derive(Debug, Clone, PartialEq)]
pub struct Stage2Case {
    pub stacks: Vec<Stack>,
    pub slices: usize,
    pub shape_yx: [usize; 2],
    pub crop: CropBox,
    pub source_shape_zyx: [usize; 3],
}

/// Stage 2. `region` gives the liver (voxels > 0): the label in training, the stage-1 prediction
/// (at full resolution) at inference; `label` is optional and gives the stacks' labels.
pub fn stage2(
    image: Volume,
    label: Option<&Volume>,
    region: &Volume,
    cfg: &Stage2Config,
) -> Result<Stage2Case> {
    check_same_shape(&image, region)?;
    let liver_box = foreground_box(region, [0; 3]).ok_or_else(|| {
        HeparError::invalid(
            "preprocess::stage2",
            "the liver region is empty: nothing to crop",
        )
    })?;
    stage2_in_box(image, label, liver_box, cfg)
}

/// Stage 2 inside a given liver box (e.g. one predicted by the stage-1 network, as in the
/// seed's `bbox.json`), grown by the configured margin.
pub fn stage2_in_box(
    mut image: Volume,
    label: Option<&Volume>,
    liver_box: CropBox,
    cfg: &Stage2Config,
) -> Result<Stage2Case> {
    if let Some(l) = label {
        check_same_shape(&image, l)?;
    }
    if !liver_box.fits(image.shape_zyx) {
        return Err(HeparError::invalid(
            "preprocess::stage2",
            format!(
                "liver box from {:?} of size {:?} does not fit the volume {:?}",
                liver_box.start_zyx, liver_box.shape_zyx, image.shape_zyx
            ),
        ));
    }
    let crop = liver_box.grown(cfg.crop_margin_zyx, image.shape_zyx);
    clip_and_normalise(&mut image.data, cfg.hu_clip, cfg.zscore_nonzero_only);

    let [_, h, w] = image.shape_zyx;
    let [z0, y0, x0] = crop.start_zyx;
    let [cd, ch, cw] = crop.shape_zyx;
    let out_yx = cfg.slice_shape_yx;
    let crop_slice = |vol: &Volume, z: usize| -> Vec<f32> {
        let mut s = Vec::with_capacity(ch * cw);
        for y in y0..y0 + ch {
            let row = (z * h + y) * w + x0;
            s.extend_from_slice(&vol.data[row..row + cw]);
        }
        s
    };
    // Stack starts cover the crop; a crop thinner than a stack repeats its edge slices.
    let n_stacks = if cd <= cfg.stack_slices {
        1
    } else {
        (cd - cfg.stack_slices) / cfg.stack_stride + 1
    };
    let stacks: Result<Vec<Stack>> = (0..n_stacks)
        .into_par_iter()
        .map(|s| {
            let first = z0 + s * cfg.stack_stride;
            let last_z = z0 + cd - 1;
            let mut img = Vec::with_capacity(cfg.stack_slices * out_yx[0] * out_yx[1]);
            for k in 0..cfg.stack_slices {
                let z = (first + k).min(last_z);
                img.extend(resize_yx(
                    &crop_slice(&image, z),
                    [ch, cw],
                    out_yx,
                    Interpolation::Linear,
                )?);
            }
            let centre_z = (first + cfg.stack_slices / 2).min(last_z);
            let (lab, kind) = match label {
                Some(l) => {
                    let lab = resize_yx(
                        &crop_slice(l, centre_z),
                        [ch, cw],
                        out_yx,
                        Interpolation::Nearest,
                    )?;
                    let kind = stack_kind(&crop_slice(l, centre_z));
                    (lab, kind)
                }
                None => (vec![0.0; out_yx[0] * out_yx[1]], StackKind::Background),
            };
            Ok(Stack {
                image: img,
                label: lab,
                centre_z,
                kind,
            })
        })
        .collect();
    Ok(Stage2Case {
        stacks: stacks?,
        slices: cfg.stack_slices,
        shape_yx: out_yx,
        crop,
        source_shape_zyx: image.shape_zyx,
    })
}

/// Classifies a label slice at full resolution (so small tumours are not lost by resizing).
pub fn stack_kind(label_slice: &[f32]) -> StackKind {
    let mut kind = StackKind::Background;
    for &v in label_slice {
        if v == LABEL_TUMOUR {
            return StackKind::Tumour;
        }
        if v == LABEL_LIVER {
            kind = StackKind::Liver;
        }
    }
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zscore_uses_nonzero_voxels_after_clipping() {
        // clipped: [0, 0, 100, 200, 200] -> non-zero {100, 200, 200}: mean 500/3
        let mut d = vec![-50.0, 0.0, 100.0, 200.0, 900.0];
        let z = clip_and_normalise(&mut d, [0.0, 200.0], true);
        let mean = 500.0 / 3.0;
        let std =
            ((100.0f64 - mean).powi(2) + 2.0 * (200.0f64 - mean).powi(2)).sqrt() / 3f64.sqrt();
        assert!((z.mean - mean).abs() < 1e-9 && (z.std - std).abs() < 1e-6);
        assert!((d[0] as f64 - (-mean / std)).abs() < 1e-5);
        assert!((d[4] as f64 - ((200.0 - mean) / std)).abs() < 1e-5);
    }

    #[test]
    fn constant_input_stays_finite() {
        let mut d = vec![5.0; 10];
        clip_and_normalise(&mut d, [-10.0, 10.0], false);
        assert!(d.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn foreground_box_with_margin_is_clipped_to_volume() {
        let mut v = Volume::new(vec![0.0; 5 * 6 * 7], [5, 6, 7], [1.0; 3]).unwrap();
        let i = v.index(1, 2, 5);
        v.data[i] = 1.0;
        let j = v.index(3, 4, 6);
        v.data[j] = 2.0;
        let b = foreground_box(&v, [1, 1, 1]).unwrap();
        assert_eq!(b.start_zyx, [0, 1, 4]);
        assert_eq!(b.shape_zyx, [5, 5, 3]);
        assert!(foreground_box(
            &Volume::new(vec![0.0; 8], [2, 2, 2], [1.0; 3]).unwrap(),
            [0; 3]
        )
        .is_none());
    }
}
