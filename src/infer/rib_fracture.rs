//! The rib-fracture detection pipeline (FracNet's recipe for the residual 3D U-Net): the CT
//! windowed to -200..1000 HU and min-max normalised, the network slid over it in windows
//! (`sliding_window`, the one grid-inference path), then post-processing, each step optional:
//!
//! 1. probabilities at or below a threshold (0.1) set to 0;
//! 2. false positives on the spine removed: bone (HU > 300) counted along z for every (y, x),
//!    median-filtered over 10 x 10 pixels (edges reflected, the upper median), kept where above a
//!    third (integer division) of its maximum, opened and closed with a radius-7 disk; the convex
//!    hull of its largest 8-connected region (hull of the pixels' corners, pixels whose centre
//!    lies inside or on it) is zeroed in every slice;
//! 3. 6-connected regions of non-zero probability smaller than a voxel count (100) removed.
//!
//! The 26-connected components of what remains are the detections: an int16 label map 1..n on
//! the source grid and one CSV row each with the component's mean probability as confidence,
//! the layout `hepar froc` scores (see `eval::detection_csv`).

use super::postprocess::{close_slices, label_components, open_slices, Connectivity};
use super::sliding_window::WindowOptions;
use super::volume_inference::infer_volume;
use crate::backend::Device;
use crate::data::nifti::NiftiDataType;
use crate::data::transforms::ct_window_min_max;
use crate::data::Volume;
use crate::error::{HeparError, Result};
use crate::eval::detection_csv::{case_rows, to_detection_csv, DetectionRow};
use crate::nn::Network;
use std::path::{Path, PathBuf};

/// FracNet's CT window.
pub const CT_WINDOW: [f32; 2] = [-200.0, 1000.0];
/// The side of the spine projection's median filter.
pub const SPINE_MEDIAN_SIZE: usize = 10;

/// Spine false-positive removal settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpineRemoval {
    /// Bone is HU above this.
    pub bone_hu: f32,
    /// Radius of the opening and closing disk.
    pub disk_radius: usize,
}

/// The post-processing steps; `None` switches a step off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RibPostprocess {
    pub probability_threshold: Option<f32>,
    pub spine: Option<SpineRemoval>,
    pub min_voxels: Option<usize>,
}

impl Default for RibPostprocess {
    fn default() -> Self {
        RibPostprocess {
            probability_threshold: Some(0.1),
            spine: Some(SpineRemoval {
                bone_hu: 300.0,
                disk_radius: 7,
            }),
            min_voxels: Some(100),
        }
    }
}

fn check_len(op: &'static str, len: usize, shape: [usize; 3]) -> Result<()> {
    let n: usize = shape.iter().product();
    if len != n {
        return Err(HeparError::shape(
            op,
            format!("{len} voxels for shape (z, y, x) {shape:?}"),
        ));
    }
    Ok(())
}

/// Step 1: probabilities `<= threshold` (and NaN) become 0.
pub fn remove_low_probabilities(probability: &mut [f32], threshold: f32) {
    for p in probability.iter_mut() {
        if (*p).partial_cmp(&threshold) != Some(std::cmp::Ordering::Greater) {
            *p = 0.0;
        }
    }
}

/// scipy's `reflect` boundary: `d c b a | a b c d | d c b a`.
fn reflect(mut i: isize, n: usize) -> usize {
    let n = n as isize;
    loop {
        if i < 0 {
            i = -i - 1;
        } else if i >= n {
            i = 2 * n - i - 1;
        } else {
            return i as usize;
        }
    }
}

/// A `size` x `size` median filter of a `[h, w]` plane as `scipy.ndimage.median_filter`: the
/// window spans offsets `-size/2 ..= size - size/2 - 1`, edges reflect, and the value of rank
/// `size^2 / 2` (the upper median) is taken.
pub fn median_filter_2d(plane: &[u32], height: usize, width: usize, size: usize) -> Vec<u32> {
    let before = (size / 2) as isize;
    let mut window = Vec::with_capacity(size * size);
    let mut out = vec![0; plane.len()];
    for y in 0..height {
        for x in 0..width {
            window.clear();
            for dy in 0..size as isize {
                let yy = reflect(y as isize + dy - before, height);
                for dx in 0..size as isize {
                    window.push(plane[yy * width + reflect(x as isize + dx - before, width)]);
                }
            }
            let rank = window.len() / 2;
            out[y * width + x] = *window.select_nth_unstable(rank).1;
        }
    }
    out
}

/// Pixels of a `[h, w]` plane inside or on the convex hull of the corners of `mask`'s pixels.
pub fn convex_hull_mask(mask: &[bool], height: usize, width: usize) -> Vec<bool> {
    let mut corners: Vec<(f64, f64)> = Vec::new();
    for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
        let (y, x) = ((i / width) as f64, (i % width) as f64);
        for (dy, dx) in [(-0.5, -0.5), (-0.5, 0.5), (0.5, -0.5), (0.5, 0.5)] {
            corners.push((x + dx, y + dy));
        }
    }
    let hull = convex_hull(corners);
    let inside = |px: f64, py: f64| {
        // Counter-clockwise hull: inside or on every edge means a cross product >= 0.
        hull.len() >= 3
            && (0..hull.len()).all(|k| {
                let (a, b) = (hull[k], hull[(k + 1) % hull.len()]);
                (b.0 - a.0) * (py - a.1) - (b.1 - a.1) * (px - a.0) >= -1e-10
            })
    };
    (0..height * width)
        .map(|i| inside((i % width) as f64, (i / width) as f64))
        .collect()
}

/// Andrew's monotone chain: the hull's vertices counter-clockwise, collinear points dropped.
fn convex_hull(mut points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    points.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    points.dedup();
    if points.len() < 3 {
        return points;
    }
    let cross = |o: (f64, f64), a: (f64, f64), b: (f64, f64)| {
        (a.0 - o.0) * (b.1 - o.1) - (a.1 - o.1) * (b.0 - o.0)
    };
    let mut hull: Vec<(f64, f64)> = Vec::new();
    for pass in 0..2 {
        let start = hull.len();
        let ordered: Box<dyn Iterator<Item = &(f64, f64)>> = if pass == 0 {
            Box::new(points.iter())
        } else {
            Box::new(points.iter().rev())
        };
        for &p in ordered {
            while hull.len() >= start + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// Step 2's mask: the spine's `[y, x]` region from the CT in HU (shape `[z, y, x]`).
pub fn spine_region(image_hu: &[f32], shape: [usize; 3], spine: SpineRemoval) -> Result<Vec<bool>> {
    check_len("spine_region", image_hu.len(), shape)?;
    let [depth, height, width] = shape;
    let plane = height * width;
    let mut bone_count = vec![0u32; plane];
    for z in 0..depth {
        for (count, &hu) in bone_count
            .iter_mut()
            .zip(&image_hu[z * plane..(z + 1) * plane])
        {
            *count += (hu > spine.bone_hu) as u32;
        }
    }
    let filtered = median_filter_2d(&bone_count, height, width, SPINE_MEDIAN_SIZE);
    let cut = filtered.iter().copied().max().unwrap_or(0) / 3;
    let mask: Vec<bool> = filtered.iter().map(|&c| c > cut).collect();
    let flat = [1, height, width];
    let mask = open_slices(&mask, flat, spine.disk_radius)?;
    let mask = close_slices(&mask, flat, spine.disk_radius)?;
    let regions = label_components(&mask, flat, Connectivity::Full)?;
    Ok(match regions.largest() {
        Some(largest) => convex_hull_mask(&regions.mask_of(largest), height, width),
        None => vec![false; plane],
    })
}

/// Step 3: 6-connected regions of non-zero probability with fewer than `min_voxels` voxels
/// become 0.
pub fn remove_small_regions(
    probability: &mut [f32],
    shape: [usize; 3],
    min_voxels: usize,
) -> Result<()> {
    let mask: Vec<bool> = probability.iter().map(|&p| p > 0.0).collect();
    let regions = label_components(&mask, shape, Connectivity::Faces)?;
    for (p, &l) in probability.iter_mut().zip(&regions.labels) {
        if l > 0 && regions.sizes[l as usize - 1] < min_voxels {
            *p = 0.0;
        }
    }
    Ok(())
}

/// Runs the enabled steps on a probability map with the CT in HU behind it (both `[z, y, x]`).
pub fn postprocess(
    probability: &mut [f32],
    image_hu: &[f32],
    shape: [usize; 3],
    steps: &RibPostprocess,
) -> Result<()> {
    check_len("rib postprocess", probability.len(), shape)?;
    if let Some(t) = steps.probability_threshold {
        remove_low_probabilities(probability, t);
    }
    if let Some(spine) = steps.spine {
        let region = spine_region(image_hu, shape, spine)?;
        for slice in probability.chunks_mut(shape[1] * shape[2]) {
            for (p, &s) in slice.iter_mut().zip(&region) {
                if s {
                    *p = 0.0;
                }
            }
        }
    }
    if let Some(min) = steps.min_voxels {
        remove_small_regions(probability, shape, min)?;
    }
    Ok(())
}

/// The detections: component labels 1..n (26-connected, numbered in C order of their first
/// voxel) and each one's mean probability.
#[derive(Clone, Debug, PartialEq)]
pub struct Detections {
    pub labels: Vec<i16>,
    pub confidences: Vec<f64>,
}

pub fn detections(probability: &[f32], shape: [usize; 3]) -> Result<Detections> {
    let mask: Vec<bool> = probability.iter().map(|&p| p > 0.0).collect();
    let components = label_components(&mask, shape, Connectivity::Full)?;
    if components.count() > i16::MAX as usize {
        return Err(HeparError::invalid(
            "rib detections",
            format!(
                "{} components do not fit an int16 label map",
                components.count()
            ),
        ));
    }
    let mut sums = vec![0f64; components.count()];
    for (&l, &p) in components.labels.iter().zip(probability) {
        if l > 0 {
            sums[l as usize - 1] += p as f64;
        }
    }
    Ok(Detections {
        labels: components.labels.iter().map(|&l| l as i16).collect(),
        confidences: sums
            .iter()
            .zip(&components.sizes)
            .map(|(s, &n)| s / n as f64)
            .collect(),
    })
}

/// How a CT becomes detections.
#[derive(Clone, Debug)]
pub struct RibFracOptions {
    /// The window (z, y, x); FracNet's patches are 64^3.
    pub roi: [usize; 3],
    pub window: WindowOptions,
    pub postprocess: RibPostprocess,
}

impl Default for RibFracOptions {
    fn default() -> Self {
        RibFracOptions {
            roi: [64, 64, 64],
            window: WindowOptions::default(),
            postprocess: RibPostprocess::default(),
        }
    }
}

/// The fracture probability (the last output channel) of a CT in HU, then its detections.
pub fn predict_rib_fractures(
    model: &dyn Network,
    image: &Volume,
    path: &Path,
    options: &RibFracOptions,
    device: Device,
) -> Result<(Vec<f32>, Detections)> {
    let mut normalised = image.data.clone();
    ct_window_min_max(&mut normalised, CT_WINDOW[0], CT_WINDOW[1])?;
    let input = image.with_data(normalised)?;
    let probabilities = infer_volume(
        model,
        &input,
        path,
        Some(&options.roi),
        &options.window,
        device,
    )?;
    let mut fracture = probabilities
        .channels
        .into_iter()
        .last()
        .ok_or_else(|| HeparError::invalid("rib fractures", "the network has no output"))?;
    postprocess(
        &mut fracture,
        &image.data,
        image.shape_zyx,
        &options.postprocess,
    )?;
    let found = detections(&fracture, image.shape_zyx)?;
    Ok((fracture, found))
}

/// FracNet's case id of an image file: its name up to the first `-` (`RibFrac12-image.nii.gz`
/// gives `RibFrac12`), or without `.nii` / `.nii.gz`.
pub fn case_id(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".nii.gz")
        .or_else(|| name.strip_suffix(".nii"))
        .unwrap_or(&name);
    stem.split('-').next().unwrap_or(stem).to_string()
}

/// Predicts every CT of `inputs` into `out_dir`: `<id>.nii.gz` (int16 components, the CT's
/// geometry) and one `ribfrac-pred.csv`; returns the CSV's path. A case that fails is named
/// in the error after the others are written (and the CSV lists those).
pub fn predict_rib_files(
    model: &dyn Network,
    inputs: &[PathBuf],
    out_dir: &Path,
    options: &RibFracOptions,
    device: Device,
) -> Result<PathBuf> {
    std::fs::create_dir_all(out_dir).map_err(|e| HeparError::io(out_dir, e))?;
    let mut rows: Vec<DetectionRow> = Vec::new();
    let mut problems = Vec::new();
    for path in inputs {
        let id = case_id(path);
        let result = Volume::read(path).and_then(|image| {
            let (_, found) = predict_rib_fractures(model, &image, path, options, device)?;
            let labels: Vec<f32> = found.labels.iter().map(|&l| l as f32).collect();
            image.write_data(
                &out_dir.join(format!("{id}.nii.gz")),
                &labels,
                NiftiDataType::I16,
            )?;
            Ok(found.confidences)
        });
        match result {
            Ok(confidences) => rows.extend(case_rows(&id, &confidences)),
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
    }
    let csv = out_dir.join("ribfrac-pred.csv");
    crate::util::atomic_write::write_atomic(&csv, to_detection_csv(&rows).as_bytes())?;
    if !problems.is_empty() {
        return Err(HeparError::invalid(
            "rib fractures",
            format!("{} case(s) failed: {}", problems.len(), problems.join("; ")),
        ));
    }
    Ok(csv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_probabilities_and_small_regions_go() {
        let mut p = vec![0.05, 0.1, 0.5, 0.0, 0.9, 0.9, 0.9, 0.0];
        remove_low_probabilities(&mut p, 0.1);
        assert_eq!(p, [0.0, 0.0, 0.5, 0.0, 0.9, 0.9, 0.9, 0.0]);
        remove_small_regions(&mut p, [1, 1, 8], 2).unwrap();
        assert_eq!(p, [0.0, 0.0, 0.0, 0.0, 0.9, 0.9, 0.9, 0.0]);
        // Diagonal neighbours are separate regions for the size rule (6-connectivity).
        let mut d = vec![0.5, 0.0, 0.0, 0.5];
        remove_small_regions(&mut d, [1, 2, 2], 2).unwrap();
        assert_eq!(d, [0.0; 4]);
    }

    #[test]
    fn the_median_filter_takes_the_upper_median_with_reflected_edges() {
        // 1 x 4 row, size 2: window offsets -1..=0, left edge reflects to itself.
        let row = [4, 1, 3, 2];
        // Windows: [4,4] [4,1] [1,3] [3,2] (each twice over the reflected rows): upper medians.
        assert_eq!(median_filter_2d(&row, 1, 4, 2), vec![4, 4, 3, 3]);
        assert_eq!(median_filter_2d(&[7], 1, 1, 10), vec![7]);
    }

    #[test]
    fn the_hull_of_an_l_fills_its_diagonal() {
        // An L of 3 + 2 pixels in a 3 x 3 plane: the hull of its corners covers the middle, and the
        // pixels whose centres lie on its diagonal edge (borders included, as skimage's).
        #[rustfmt::skip]
        let l = [true, false, false,
                 true, false, false,
                 true, true, true];
        let hull = convex_hull_mask(&l, 3, 3);
        #[rustfmt::skip]
        let want = [true, true, false,
                    true, true, true,
                    true, true, true];
        assert_eq!(hull, want);
    }

    #[test]
    fn the_spine_is_zeroed_in_every_slice_and_components_get_mean_confidences() {
        // 4 slices of 40 x 40; a bone column (HU 700) at y 20..32, x 14..26 in every slice.
        let shape = [4, 40, 40];
        let mut image = vec![0f32; 4 * 40 * 40];
        for z in 0..4 {
            for y in 20..32 {
                for x in 14..26 {
                    image[(z * 40 + y) * 40 + x] = 700.0;
                }
            }
        }
        let region = spine_region(
            &image,
            shape,
            SpineRemoval {
                bone_hu: 300.0,
                disk_radius: 3,
            },
        )
        .unwrap();
        assert!(region[25 * 40 + 20] && !region[5 * 40 + 5]);
        let mut p = vec![0f32; image.len()];
        // One detection on the spine, one away from it (2 voxels at 0.4 and 0.8).
        p[(40 + 25) * 40 + 20] = 0.9;
        p[(2 * 40 + 5) * 40 + 5] = 0.4;
        p[(3 * 40 + 6) * 40 + 6] = 0.8;
        let steps = RibPostprocess {
            probability_threshold: Some(0.1),
            spine: Some(SpineRemoval {
                bone_hu: 300.0,
                disk_radius: 3,
            }),
            min_voxels: None,
        };
        postprocess(&mut p, &image, shape, &steps).unwrap();
        assert_eq!(p[(40 + 25) * 40 + 20], 0.0);
        let found = detections(&p, shape).unwrap();
        assert_eq!(found.confidences.len(), 1);
        assert!((found.confidences[0] - 0.6).abs() < 1e-6);
        assert_eq!(found.labels[(2 * 40 + 5) * 40 + 5], 1);
    }

    #[test]
    fn case_ids_follow_fracnet() {
        assert_eq!(case_id(Path::new("d/RibFrac12-image.nii.gz")), "RibFrac12");
        assert_eq!(case_id(Path::new("scan.nii")), "scan");
    }
}
