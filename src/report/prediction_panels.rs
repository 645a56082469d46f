//! A 2D network's validation samples as the U-Net course shows them: one row per sample, the
//! input image, the true classes and the predicted classes side by side.
//!
//! Panels are the network's input size, enlarged by a whole factor to at least
//! [`MIN_PANEL`] pixels; the picture is `3 * side_w + 4 * GAP` wide and
//! `rows * side_h + (rows + 1) * GAP` high (see [`panel_scale`]).

use super::png::RgbImage;
use crate::error::{HeparError, Result};

pub const GAP: usize = 4;
/// The smallest panel side drawn, in pixels.
pub const MIN_PANEL: usize = 96;
const BACKGROUND: [u8; 3] = [0, 0, 0];
/// Colours of classes 0, 1, 2, ...: the background black, then distinct hues.
const CLASS_COLOURS: [[u8; 3]; 6] = [
    [0, 0, 0],
    [255, 64, 64],
    [64, 230, 64],
    [64, 128, 255],
    [255, 230, 0],
    [230, 64, 230],
];

/// One sample: the input (channels, h, w) and the true and predicted class maps (h, w).
pub struct PredictionSample {
    pub image: Vec<f32>,
    pub truth: Vec<f32>,
    pub prediction: Vec<f32>,
}

/// The enlargement of an (h, w) panel.
pub fn panel_scale([h, w]: [usize; 2]) -> usize {
    MIN_PANEL.div_ceil(h.max(w).max(1)).max(1)
}

fn class_colour(class: f32) -> [u8; 3] {
    let k = if class.is_finite() && class > 0.0 {
        class.round() as usize
    } else {
        0
    };
    CLASS_COLOURS[k % CLASS_COLOURS.len()]
}

/// The input as grey or colour pixels: each shown channel stretched to its own range. Three
/// channels are shown as RGB, any other count by its middle channel.
fn image_pixels(image: &[f32], channels: usize, n: usize) -> Vec<[u8; 3]> {
    let stretch = |plane: &[f32]| -> Vec<u8> {
        let (lo, hi) = plane
            .iter()
            .filter(|v| v.is_finite())
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        let span = if hi > lo { hi - lo } else { 1.0 };
        plane
            .iter()
            .map(|&v| {
                if v.is_finite() {
                    ((v - lo) / span * 255.0).round().clamp(0.0, 255.0) as u8
                } else {
                    0
                }
            })
            .collect()
    };
    if channels == 3 {
        let planes: Vec<Vec<u8>> = image.chunks_exact(n).map(stretch).collect();
        (0..n)
            .map(|i| [planes[0][i], planes[1][i], planes[2][i]])
            .collect()
    } else {
        let middle = channels / 2;
        stretch(&image[middle * n..(middle + 1) * n])
            .into_iter()
            .map(|g| [g, g, g])
            .collect()
    }
}

/// Draws the samples, one row each: image | truth | prediction.
pub fn render_predictions(
    samples: &[PredictionSample],
    channels: usize,
    [h, w]: [usize; 2],
) -> Result<RgbImage> {
    let n = h * w;
    if samples.is_empty()
        || n == 0
        || channels == 0
        || samples
            .iter()
            .any(|s| s.image.len() != channels * n || s.truth.len() != n || s.prediction.len() != n)
    {
        return Err(HeparError::shape(
            "render_predictions",
            format!(
                "{} samples of {channels} channel(s) at {h}x{w}: every image, truth and prediction must have that size",
                samples.len()
            ),
        ));
    }
    let scale = panel_scale([h, w]);
    let (side_h, side_w) = (h * scale, w * scale);
    let mut picture = RgbImage::new(
        3 * side_w + 4 * GAP,
        samples.len() * side_h + (samples.len() + 1) * GAP,
        BACKGROUND,
    );
    for (row, s) in samples.iter().enumerate() {
        let panels = [
            image_pixels(&s.image, channels, n),
            s.truth.iter().map(|&c| class_colour(c)).collect(),
            s.prediction.iter().map(|&c| class_colour(c)).collect(),
        ];
        let top = GAP + row * (side_h + GAP);
        for (column, pixels) in panels.iter().enumerate() {
            let left = GAP + column * (side_w + GAP);
            for (i, &rgb) in pixels.iter().enumerate() {
                let (y, x) = (i / w, i % w);
                picture.fill_rect(left + x * scale, top + y * scale, scale, scale, rgb);
            }
        }
    }
    Ok(picture)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_image_truth_and_prediction_at_their_places() {
        let (h, w) = (2, 3);
        let sample = PredictionSample {
            image: vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            truth: vec![0.0, 1.0, 2.0, 0.0, 0.0, 0.0],
            prediction: vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
        };
        let picture = render_predictions(&[sample], 1, [h, w]).unwrap();
        let scale = panel_scale([h, w]);
        assert_eq!(scale, 32);
        assert_eq!(picture.width, 3 * w * scale + 4 * GAP);
        assert_eq!(picture.height, h * scale + 2 * GAP);
        let at = |column: usize, y: usize, x: usize| {
            picture.get(
                GAP + column * (w * scale + GAP) + x * scale,
                GAP + y * scale,
            )
        };
        assert_eq!(at(0, 0, 0), [0, 0, 0]);
        assert_eq!(at(0, 1, 2), [255, 255, 255]);
        assert_eq!(at(1, 0, 1), CLASS_COLOURS[1]);
        assert_eq!(at(1, 0, 2), CLASS_COLOURS[2]);
        assert_eq!(at(2, 1, 0), CLASS_COLOURS[1]);
        let bad = PredictionSample {
            image: vec![0.0; 5],
            truth: vec![0.0; 6],
            prediction: vec![0.0; 6],
        };
        assert!(render_predictions(&[bad], 1, [h, w]).is_err());
    }
}
