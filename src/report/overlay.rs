//! Case pictures: axial, coronal and sagittal slices through the liver's centre and through the
//! largest tumour's centre, the CT in a liver window (W 400, L 40), prediction and truth drawn as
//! contours in two colours, with a legend.
//!
//! Slices are resampled (nearest neighbour) to square millimetre pixels, so anisotropic volumes
//! keep their proportions. Axial slices show y down and x across as stored; coronal and sagittal
//! slices show z upward. Without a CT the background is plain dark grey.

use super::font;
use super::png::RgbImage;
use crate::error::{HeparError, Result};
use crate::eval::class_masks;
use crate::infer::postprocess::{label_components, Connectivity};

/// The liver window: level 40 HU, width 400 HU.
pub const WINDOW_LEVEL: f32 = 40.0;
pub const WINDOW_WIDTH: f32 = 400.0;

pub const PREDICTION_COLOUR: [u8; 3] = [255, 64, 64];
pub const TRUTH_COLOUR: [u8; 3] = [64, 230, 64];
/// Where both contours coincide.
pub const BOTH_COLOUR: [u8; 3] = [255, 230, 0];
const TEXT_COLOUR: [u8; 3] = [255, 255, 255];
const BACKGROUND: [u8; 3] = [0, 0, 0];
const NO_CT_GREY: u8 = 40;

/// The largest side of one panel in pixels.
const PANEL: usize = 300;
const GAP: usize = 6;
const TEXT_SCALE: usize = 2;

/// What a picture is drawn from: label maps and an optional CT on one grid.
pub struct CaseImages<'a> {
    pub shape_zyx: [usize; 3],
    pub spacing_zyx: [f64; 3],
    pub ct: Option<&'a [f32]>,
    pub prediction: &'a [f32],
    pub truth: Option<&'a [f32]>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    Axial,
    Coronal,
    Sagittal,
}

impl View {
    fn name(self) -> &'static str {
        match self {
            View::Axial => "axial",
            View::Coronal => "coronal",
            View::Sagittal => "sagittal",
        }
    }
}

/// The centroid (voxel indices z, y, x) of a mask, or `None` when it is empty.
fn centroid(mask: &[bool], shape: [usize; 3]) -> Option<[usize; 3]> {
    let [_, h, w] = shape;
    let mut sum = [0f64; 3];
    let mut n = 0usize;
    for (i, _) in mask.iter().enumerate().filter(|(_, &m)| m) {
        sum[0] += (i / (h * w)) as f64;
        sum[1] += ((i / w) % h) as f64;
        sum[2] += (i % w) as f64;
        n += 1;
    }
    (n > 0).then(|| sum.map(|s| (s / n as f64).round() as usize))
}

/// The centre of the largest 26-connected component of a mask.
fn largest_centre(mask: &[bool], shape: [usize; 3]) -> Result<Option<[usize; 3]>> {
    let components = label_components(mask, shape, Connectivity::Full)?;
    Ok(components
        .largest()
        .and_then(|label| centroid(&components.mask_of(label), shape)))
}

/// Draws a predicted label map against its truth (over the CT when given) and writes it as a
/// PNG: the one picture of a scored case that `hepar eval --png` and the main job both write.
pub fn write_scored_case_png(
    path: &std::path::Path,
    prediction: &crate::data::Volume,
    truth: &crate::data::Volume,
    ct: Option<&[f32]>,
) -> Result<()> {
    let picture = render_case(&CaseImages {
        shape_zyx: prediction.shape_zyx,
        spacing_zyx: prediction.spacing_zyx,
        ct,
        prediction: &prediction.data,
        truth: Some(&truth.data),
    })?;
    super::png::write_png(path, &picture)
}

/// Renders the picture of one case: a row through the liver centre and, when there is a
/// tumour, a row through the largest tumour (the truth's when given, else the prediction's).
pub fn render_case(case: &CaseImages) -> Result<RgbImage> {
    let n: usize = case.shape_zyx.iter().product();
    let sizes_ok = case.prediction.len() == n
        && case.truth.is_none_or(|t| t.len() == n)
        && case.ct.is_none_or(|c| c.len() == n);
    if n == 0 || !sizes_ok {
        return Err(HeparError::shape(
            "render_case",
            format!(
                "the CT, prediction and truth must all have shape (z, y, x) {:?}",
                case.shape_zyx
            ),
        ));
    }
    let (pred_liver, pred_tumor) = class_masks(case.prediction);
    let (truth_liver, truth_tumor) = match case.truth {
        Some(t) => class_masks(t),
        None => (vec![false; n], vec![false; n]),
    };
    let centre_of = |truth: &[bool], pred: &[bool]| -> Result<Option<[usize; 3]>> {
        Ok(match largest_centre(truth, case.shape_zyx)? {
            Some(c) => Some(c),
            None => largest_centre(pred, case.shape_zyx)?,
        })
    };
    let volume_centre = case.shape_zyx.map(|s| s / 2);
    let liver_centre = centroid(&truth_liver, case.shape_zyx)
        .or_else(|| centroid(&pred_liver, case.shape_zyx))
        .unwrap_or(volume_centre);
    let mut rows = vec![("liver", liver_centre, &pred_liver, &truth_liver)];
    if let Some(c) = centre_of(&truth_tumor, &pred_tumor)? {
        rows.push(("tumour", c, &pred_tumor, &truth_tumor));
    }
    let views = [View::Axial, View::Coronal, View::Sagittal];
    let row_images: Vec<Vec<RgbImage>> = rows
        .iter()
        .map(|(_, centre, pred, truth)| {
            views
                .iter()
                .map(|&v| render_panel(case, v, *centre, pred, truth))
                .collect()
        })
        .collect();
    Ok(compose(
        &rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        &views,
        row_images,
    ))
}

/// A slice of a volume as a 2D grid: its size in pixels (rows, columns), the mm per voxel
/// along each, and how to find the voxel of a slice position.
struct SliceGeometry {
    rows: usize,
    cols: usize,
    row_mm: f64,
    col_mm: f64,
}

fn slice_geometry(shape: [usize; 3], spacing: [f64; 3], view: View) -> SliceGeometry {
    let [d, h, w] = shape;
    let [sz, sy, sx] = spacing.map(|s| s.abs().max(1e-6));
    match view {
        View::Axial => SliceGeometry {
            rows: h,
            cols: w,
            row_mm: sy,
            col_mm: sx,
        },
        View::Coronal => SliceGeometry {
            rows: d,
            cols: w,
            row_mm: sz,
            col_mm: sx,
        },
        View::Sagittal => SliceGeometry {
            rows: d,
            cols: h,
            row_mm: sz,
            col_mm: sy,
        },
    }
}

/// The voxel index under slice cell (row, col) of `view` through `centre`.
fn voxel_at(shape: [usize; 3], view: View, centre: [usize; 3], row: usize, col: usize) -> usize {
    let [d, h, w] = shape;
    let (z, y, x) = match view {
        View::Axial => (centre[0], row, col),
        // z upward: the top row is the last slice.
        View::Coronal => (d - 1 - row, centre[1], col),
        View::Sagittal => (d - 1 - row, col, centre[2]),
    };
    (z * h + y) * w + x
}

fn window_grey(hu: f32) -> u8 {
    let lo = WINDOW_LEVEL - WINDOW_WIDTH / 2.0;
    let t = ((hu - lo) / WINDOW_WIDTH).clamp(0.0, 1.0);
    (t * 255.0).round() as u8
}

/// One slice at square mm pixels with both contours.
fn render_panel(
    case: &CaseImages,
    view: View,
    centre: [usize; 3],
    pred: &[bool],
    truth: &[bool],
) -> RgbImage {
    let g = slice_geometry(case.shape_zyx, case.spacing_zyx, view);
    let (height_mm, width_mm) = (g.rows as f64 * g.row_mm, g.cols as f64 * g.col_mm);
    let mm_per_pixel = height_mm.max(width_mm) / PANEL as f64;
    let (ph, pw) = (
        ((height_mm / mm_per_pixel).round() as usize).max(1),
        ((width_mm / mm_per_pixel).round() as usize).max(1),
    );
    // The voxel under every picture pixel (nearest neighbour in mm).
    let cell = |p: usize, mm: f64, count: usize| {
        (((p as f64 + 0.5) * mm_per_pixel / mm) as usize).min(count - 1)
    };
    let voxels: Vec<usize> = (0..ph)
        .flat_map(|py| {
            let row = cell(py, g.row_mm, g.rows);
            (0..pw).map(move |px| (row, cell(px, g.col_mm, g.cols)))
        })
        .map(|(row, col)| voxel_at(case.shape_zyx, view, centre, row, col))
        .collect();
    let mut img = RgbImage::new(pw, ph, BACKGROUND);
    for (i, &v) in voxels.iter().enumerate() {
        let grey = case.ct.map_or(NO_CT_GREY, |ct| window_grey(ct[v]));
        img.put(i % pw, i / pw, [grey; 3]);
    }
    let edge = |mask: &[bool], i: usize| {
        if !mask[voxels[i]] {
            return false;
        }
        let (x, y) = (i % pw, i / pw);
        let inside = |xx: usize, yy: usize| mask[voxels[yy * pw + xx]];
        x == 0
            || y == 0
            || x + 1 == pw
            || y + 1 == ph
            || !inside(x - 1, y)
            || !inside(x + 1, y)
            || !inside(x, y - 1)
            || !inside(x, y + 1)
    };
    for i in 0..voxels.len() {
        let colour = match (edge(pred, i), edge(truth, i)) {
            (true, true) => BOTH_COLOUR,
            (true, false) => PREDICTION_COLOUR,
            (false, true) => TRUTH_COLOUR,
            (false, false) => continue,
        };
        img.put(i % pw, i / pw, colour);
    }
    img
}

/// Lays the panels out in a grid with view titles, row labels and the legend below.
fn compose(row_names: &[&str], views: &[View], panels: Vec<Vec<RgbImage>>) -> RgbImage {
    let text_h = 7 * TEXT_SCALE + 2 * GAP;
    let label_w = text_width("tumour") + 2 * GAP;
    let col_w: Vec<usize> = (0..views.len())
        .map(|c| panels.iter().map(|r| r[c].width).max().unwrap_or(0))
        .collect();
    let row_h: Vec<usize> = panels
        .iter()
        .map(|r| r.iter().map(|p| p.height).max().unwrap_or(0))
        .collect();
    let width = label_w + col_w.iter().map(|w| w + GAP).sum::<usize>() + GAP;
    let legend_h = text_h + GAP;
    let height = text_h + row_h.iter().map(|h| h + GAP).sum::<usize>() + legend_h;
    let mut img = RgbImage::new(width, height, BACKGROUND);
    let mut x = label_w;
    for (c, v) in views.iter().enumerate() {
        draw_text(&mut img, v.name(), x, GAP, TEXT_COLOUR);
        x += col_w[c] + GAP;
    }
    let mut y = text_h;
    for (r, row) in panels.iter().enumerate() {
        draw_text(&mut img, row_names[r], GAP, y + row_h[r] / 2, TEXT_COLOUR);
        let mut x = label_w;
        for (c, panel) in row.iter().enumerate() {
            img.blit(panel, x, y);
            x += col_w[c] + GAP;
        }
        y += row_h[r] + GAP;
    }
    // Legend: a swatch and a name per colour.
    let swatch = 7 * TEXT_SCALE;
    let mut x = label_w;
    for (name, colour) in [
        ("prediction", PREDICTION_COLOUR),
        ("truth", TRUTH_COLOUR),
        ("both", BOTH_COLOUR),
    ] {
        img.fill_rect(x, y + GAP, swatch, swatch, colour);
        draw_text(&mut img, name, x + swatch + GAP, y + GAP, TEXT_COLOUR);
        x += swatch + 2 * GAP + text_width(name) + 3 * GAP;
    }
    img
}

fn text_width(text: &str) -> usize {
    font::text_width(text, TEXT_SCALE)
}

fn draw_text(img: &mut RgbImage, text: &str, x: usize, y: usize, colour: [u8; 3]) {
    font::draw_text(img, text, (x, y), TEXT_SCALE, colour);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liver_window_maps_minus_160_to_black_and_240_to_white() {
        assert_eq!(window_grey(-160.0), 0);
        assert_eq!(window_grey(-1000.0), 0);
        assert_eq!(window_grey(240.0), 255);
        assert_eq!(window_grey(40.0), 128);
    }

    #[test]
    fn a_case_picture_has_both_contours_and_a_tumour_row() {
        let shape = [20, 30, 40];
        let n = 20 * 30 * 40;
        let mut truth = vec![0.0f32; n];
        let mut pred = vec![0.0f32; n];
        for z in 4..16 {
            for y in 5..25 {
                for x in 5..35 {
                    let i = (z * 30 + y) * 40 + x;
                    truth[i] =
                        if (8..12).contains(&z) && (10..15).contains(&y) && (10..16).contains(&x) {
                            2.0
                        } else {
                            1.0
                        };
                    pred[i] = if x < 33 { 1.0 } else { 0.0 };
                }
            }
        }
        let ct: Vec<f32> = (0..n).map(|i| (i % 400) as f32 - 160.0).collect();
        let img = render_case(&CaseImages {
            shape_zyx: shape,
            spacing_zyx: [2.5, 0.8, 0.8],
            ct: Some(&ct),
            prediction: &pred,
            truth: Some(&truth),
        })
        .unwrap();
        let count = |c: [u8; 3]| {
            (0..img.width * img.height)
                .filter(|&i| img.get(i % img.width, i / img.width) == c)
                .count()
        };
        assert!(count(PREDICTION_COLOUR) > 100, "prediction contours");
        assert!(count(TRUTH_COLOUR) > 100, "truth contours");
        // Two rows of panels: taller than one row of the largest panel.
        assert!(img.height > 2 * PANEL / 2, "{} x {}", img.width, img.height);
        assert!(crate::report::png::encode_png(&img).is_ok());
    }
}
