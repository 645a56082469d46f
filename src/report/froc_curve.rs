//! The FROC curve of `hepar froc` as a picture: recall against false positives per scan, the
//! points of the key FP values marked, and the FROC score in the title.

use super::curves::{
    draw_frame, draw_line, nice_step, Axes, BACKGROUND, INK, MARGIN_BOTTOM, MARGIN_LEFT,
    MARGIN_RIGHT, MARGIN_TOP, TEXT_SCALE,
};
use super::font::draw_text;
use super::png::{write_png, RgbImage};
use crate::error::Result;
use crate::eval::froc::FrocReport;
use std::path::Path;

pub const WIDTH: usize = 720;
pub const HEIGHT: usize = 520;
pub const CURVE: [u8; 3] = [31, 119, 180];
pub const KEY_POINT: [u8; 3] = [214, 39, 40];

/// The picture of `report`'s curve; the FP axis spans at least 0..8 (the largest key FP).
pub fn render_froc(report: &FrocReport) -> RgbImage {
    let mut img = RgbImage::new(WIDTH, HEIGHT, BACKGROUND);
    let max_fp = report
        .fp
        .iter()
        .chain(&report.key_fp)
        .copied()
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max);
    let x_step = nice_step(max_fp, 8);
    let axes = Axes {
        left: MARGIN_LEFT,
        top: MARGIN_TOP,
        width: WIDTH - MARGIN_LEFT - MARGIN_RIGHT,
        height: HEIGHT - MARGIN_TOP - MARGIN_BOTTOM,
        x_range: (0.0, (max_fp / x_step).ceil() * x_step),
        y_range: (0.0, 1.0),
    };
    let title = format!("FROC  score {:.4}", report.average_recall);
    draw_text(&mut img, &title, (axes.left, 12), TEXT_SCALE, INK);
    draw_text(&mut img, "recall", (axes.left, 44), TEXT_SCALE, INK);
    draw_frame(&mut img, &axes, (x_step, 0.2), "false positives per scan");
    let mut points: Vec<(f64, f64)> = report
        .fp
        .iter()
        .copied()
        .zip(report.recall.iter().copied())
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    for pair in points.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        draw_line(&mut img, axes.pixel(a.0, a.1), axes.pixel(b.0, b.1), CURVE);
    }
    for (&fp, &recall) in report.key_fp.iter().zip(&report.key_recall) {
        let (x, y) = axes.pixel(fp, recall);
        img.fill_rect(
            (x as usize).saturating_sub(4),
            (y as usize).saturating_sub(4),
            9,
            9,
            KEY_POINT,
        );
    }
    img
}

/// Writes [`render_froc`] to `path` atomically.
pub fn write_froc_png(path: &Path, report: &FrocReport) -> Result<()> {
    write_png(path, &render_froc(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::froc::{froc, match_scan};

    #[test]
    fn the_curve_and_its_key_points_are_drawn() {
        let map = [0u8, 1, 1, 0, 2, 0];
        let rows = crate::eval::detection_csv::case_rows("a", &[0.9, 0.2]);
        let scan = match_scan("a", &map, &[0, 1, 1, 0, 0, 3], [1, 1, 6], &rows, &rows).unwrap();
        let img = render_froc(&froc(&[scan]));
        let count = |colour: [u8; 3]| {
            (0..img.height)
                .flat_map(|y| (0..img.width).map(move |x| (x, y)))
                .filter(|&(x, y)| img.get(x, y) == colour)
                .count()
        };
        assert_eq!((img.width, img.height), (WIDTH, HEIGHT));
        assert!(count(CURVE) > 50, "the curve is hardly drawn");
        assert!(count(KEY_POINT) >= 5 * 9 * 9 - 4 * 81, "key points missing");
    }
}
