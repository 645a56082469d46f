//! A run's training curves as one picture (`curves.png` in the run folder): on the left the
//! training and validation loss per epoch, on the right the validation Dice, IoU, precision and
//! recall on a fixed 0..1 scale, each panel with axes, ticks, a legend, and the best epoch
//! marked by a dashed line.

use super::font::{draw_text, text_width, CELL_HEIGHT};
use super::png::{write_png, RgbImage};
use crate::error::Result;
use crate::train::history::EpochRecord;
use std::path::Path;

pub const WIDTH: usize = 1200;
pub const HEIGHT: usize = 460;
const PANEL_WIDTH: usize = WIDTH / 2;
pub(super) const TEXT_SCALE: usize = 2;
pub(super) const TEXT_HEIGHT: usize = CELL_HEIGHT * TEXT_SCALE;
/// Space around a panel's plot area: tick labels on the left, title and legend above, tick
/// labels and the axis name below.
pub(super) const MARGIN_LEFT: usize = 80;
pub(super) const MARGIN_RIGHT: usize = 24;
pub(super) const MARGIN_TOP: usize = 80;
pub(super) const MARGIN_BOTTOM: usize = 56;

pub(super) const BACKGROUND: [u8; 3] = [255, 255, 255];
pub(super) const INK: [u8; 3] = [40, 40, 40];
const GRID: [u8; 3] = [225, 225, 225];
const BEST: [u8; 3] = [150, 150, 150];

/// A quantity drawn as a line: its name in the legend, its colour, its value per epoch.
struct Series {
    name: &'static str,
    colour: [u8; 3],
    values: Vec<Option<f64>>,
}

/// The plot area of a panel in pixels and the value ranges it spans.
pub(super) struct Axes {
    pub left: usize,
    pub top: usize,
    pub width: usize,
    pub height: usize,
    pub x_range: (f64, f64),
    pub y_range: (f64, f64),
}

impl Axes {
    pub(super) fn pixel(&self, x: f64, y: f64) -> (f64, f64) {
        let fx = (x - self.x_range.0) / (self.x_range.1 - self.x_range.0);
        let fy = (y - self.y_range.0) / (self.y_range.1 - self.y_range.0);
        (
            self.left as f64 + fx * self.width as f64,
            (self.top + self.height) as f64 - fy.clamp(-0.02, 1.02) * self.height as f64,
        )
    }
}

/// A tick spacing of 1, 2, 2.5 or 5 times a power of ten giving at most `max_ticks` intervals.
pub(super) fn nice_step(span: f64, max_ticks: usize) -> f64 {
    let rough = span / max_ticks as f64;
    let power = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&s| s >= rough)
        .unwrap_or(10.0 * power)
}

/// Decimals that tell ticks `step` apart.
fn decimals(step: f64) -> usize {
    let mut d = 0;
    while d < 6
        && ((step * 10f64.powi(d as i32)).round() - step * 10f64.powi(d as i32)).abs() > 1e-9
    {
        d += 1;
    }
    d
}

/// The loss axis: the range of the finite losses widened to whole ticks (not from 0, so the
/// changes of a loss that stays near one value still show), and its tick spacing.
fn loss_range(series: &[Series]) -> (f64, f64, f64) {
    let finite = || {
        series
            .iter()
            .flat_map(|s| s.values.iter().flatten())
            .copied()
            .filter(|v| v.is_finite())
    };
    let (mut low, mut high) = (
        finite().fold(f64::INFINITY, f64::min),
        finite().fold(f64::NEG_INFINITY, f64::max),
    );
    if low > high {
        (low, high) = (0.0, 1.0);
    }
    if high - low < 1e-9 {
        let pad = (high.abs() * 0.05).max(1e-3);
        (low, high) = (low - pad, high + pad);
    }
    let step = nice_step(high - low, 5);
    // A loss on a tick stays on it despite rounding in the division.
    let bottom = (low / step + 1e-9).floor() * step;
    let top = ((high / step - 1e-9).ceil() * step).max(bottom + step);
    (bottom, top, step)
}

/// A line two pixels thick from `a` to `b` (pixel coordinates), clipped to the picture.
pub(super) fn draw_line(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), colour: [u8; 3]) {
    let steps = (b.0 - a.0).abs().max((b.1 - a.1).abs()).ceil().max(1.0) as usize;
    for i in 0..=steps {
        let t = i as f64 / steps as f64;
        let (x, y) = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
        if x >= 0.0 && y >= 0.0 {
            img.fill_rect(x.round() as usize, y.round() as usize, 2, 2, colour);
        }
    }
}

fn draw_series(img: &mut RgbImage, axes: &Axes, series: &Series) {
    let mut previous = None;
    for (i, value) in series.values.iter().enumerate() {
        let point = value
            .filter(|v| v.is_finite())
            .map(|v| axes.pixel((i + 1) as f64, v));
        if let (Some(a), Some(b)) = (previous, point) {
            draw_line(img, a, b, series.colour);
        }
        if let Some((x, y)) = point {
            img.fill_rect(
                (x as usize).saturating_sub(3),
                (y as usize).saturating_sub(3),
                7,
                7,
                series.colour,
            );
        }
        previous = point;
    }
}

/// Axes, grid, ticks and their labels; `x_name` names the horizontal axis.
pub(super) fn draw_frame(
    img: &mut RgbImage,
    axes: &Axes,
    (x_step, y_step): (f64, f64),
    x_name: &str,
) {
    let bottom = axes.top + axes.height;
    let (x0, x1) = axes.x_range;
    let mut x = x0.ceil();
    while x <= x1 + 1e-9 {
        let (px, _) = axes.pixel(x, axes.y_range.0);
        let px = px.round() as usize;
        img.fill_rect(px, axes.top, 1, axes.height, GRID);
        img.fill_rect(px, bottom, 1, 6, INK);
        let label = format!("{x:.places$}", places = decimals(x_step));
        let lx = px.saturating_sub(text_width(&label, TEXT_SCALE) / 2);
        draw_text(img, &label, (lx, bottom + 10), TEXT_SCALE, INK);
        x += x_step;
    }
    let (y0, y1) = axes.y_range;
    let places = decimals(y_step);
    let ticks = ((y1 - y0) / y_step).round() as usize;
    for k in 0..=ticks {
        let y = y0 + k as f64 * y_step;
        let (_, py) = axes.pixel(x0, y);
        let py = py.round() as usize;
        img.fill_rect(axes.left, py, axes.width, 1, GRID);
        img.fill_rect(axes.left - 6, py, 6, 1, INK);
        let label = format!("{y:.places$}");
        let lx = axes
            .left
            .saturating_sub(10 + text_width(&label, TEXT_SCALE));
        draw_text(
            img,
            &label,
            (lx, py.saturating_sub(TEXT_HEIGHT / 2)),
            TEXT_SCALE,
            INK,
        );
    }
    img.fill_rect(axes.left, axes.top, 2, axes.height + 1, INK);
    img.fill_rect(axes.left, bottom, axes.width + 1, 2, INK);
    let name = x_name;
    let nx = axes.left + axes.width / 2 - text_width(name, TEXT_SCALE) / 2;
    draw_text(img, name, (nx, bottom + 14 + TEXT_HEIGHT), TEXT_SCALE, INK);
}

/// A dashed vertical line at the best epoch, labelled.
fn draw_best(img: &mut RgbImage, axes: &Axes, best_epoch: u64) {
    let (px, _) = axes.pixel(best_epoch as f64, axes.y_range.0);
    let px = px.round() as usize;
    for y in (axes.top..axes.top + axes.height).step_by(10) {
        img.fill_rect(px, y, 2, 5, BEST);
    }
    // The label goes right of the line, or left of it near the panel's right edge.
    let label = "best";
    let width = text_width(label, TEXT_SCALE);
    let lx = if px + 6 + width > axes.left + axes.width {
        px.saturating_sub(6 + width)
    } else {
        px + 6
    };
    draw_text(img, label, (lx, axes.top + 4), TEXT_SCALE, BEST);
}

/// One panel: title, legend, frame, the series and the best epoch.
fn draw_panel(
    img: &mut RgbImage,
    left: usize,
    title: &str,
    series: &[Series],
    (y_range, y_step): ((f64, f64), f64),
    best_epoch: u64,
) {
    let epochs = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let x_max = epochs.max(2) as f64;
    let axes = Axes {
        left: left + MARGIN_LEFT,
        top: MARGIN_TOP,
        width: PANEL_WIDTH - MARGIN_LEFT - MARGIN_RIGHT,
        height: HEIGHT - MARGIN_TOP - MARGIN_BOTTOM,
        x_range: (1.0, x_max),
        y_range,
    };
    draw_text(img, title, (axes.left, 12), TEXT_SCALE, INK);
    let mut x = axes.left;
    for s in series {
        img.fill_rect(x, 44, 24, 4, s.colour);
        draw_text(img, s.name, (x + 30, 46 - TEXT_HEIGHT / 2), TEXT_SCALE, INK);
        x += 30 + text_width(s.name, TEXT_SCALE) + 24;
    }
    let x_step = nice_step(x_max - 1.0, 10).max(1.0).round();
    draw_frame(img, &axes, (x_step, y_step), "epoch");
    if (1..=epochs as u64).contains(&best_epoch) {
        draw_best(img, &axes, best_epoch);
    }
    for s in series {
        draw_series(img, &axes, s);
    }
}

/// The picture of `history`: `class` names the scored class in the right panel's title.
pub fn render_curves(history: &[EpochRecord], class: &str, best_epoch: u64) -> RgbImage {
    let column = |f: fn(&EpochRecord) -> Option<f64>| history.iter().map(f).collect::<Vec<_>>();
    let losses = [
        Series {
            name: "train loss",
            colour: [31, 119, 180],
            values: column(|r| Some(r.train_loss)),
        },
        Series {
            name: "val loss",
            colour: [255, 127, 14],
            values: column(|r| Some(r.val_loss)),
        },
    ];
    let scores = [
        Series {
            name: "Dice",
            colour: [214, 39, 40],
            values: column(|r| Some(r.val_dice)),
        },
        Series {
            name: "IoU",
            colour: [44, 160, 44],
            values: column(|r| r.val_iou),
        },
        Series {
            name: "precision",
            colour: [148, 103, 189],
            values: column(|r| r.val_precision),
        },
        Series {
            name: "recall",
            colour: [23, 190, 207],
            values: column(|r| r.val_recall),
        },
    ];
    let mut img = RgbImage::new(WIDTH, HEIGHT, BACKGROUND);
    let (low, high, step) = loss_range(&losses);
    draw_panel(
        &mut img,
        0,
        "loss",
        &losses,
        ((low, high), step),
        best_epoch,
    );
    let title = format!("validation {class}");
    draw_panel(
        &mut img,
        PANEL_WIDTH,
        &title,
        &scores,
        ((0.0, 1.0), 0.2),
        best_epoch,
    );
    img
}

/// Writes [`render_curves`] to `path` atomically.
pub fn write_curves(
    path: &Path,
    history: &[EpochRecord],
    class: &str,
    best_epoch: u64,
) -> Result<()> {
    write_png(path, &render_curves(history, class, best_epoch))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: u64, loss: f64, dice: f64) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: loss,
            val_loss: loss * 1.1,
            val_dice: dice,
            val_iou: Some(dice * 0.8),
            val_precision: Some(dice * 0.9),
            val_recall: Some(1.0 - dice / 2.0),
            val_dice_per_class: Vec::new(),
            learning_rate: 1e-3,
            seconds: 1.0,
        }
    }

    #[test]
    fn ticks_are_round_numbers() {
        assert_eq!(nice_step(1.0, 5), 0.2);
        assert_eq!(nice_step(0.9, 5), 0.2);
        assert_eq!(nice_step(11.0, 10), 2.0);
        assert_eq!(nice_step(0.0123, 5), 0.0025);
        assert_eq!((decimals(0.2), decimals(0.0025), decimals(5.0)), (1, 4, 0));
    }

    #[test]
    fn the_loss_axis_spans_the_losses_in_whole_ticks() {
        let series = |values: Vec<f64>| Series {
            name: "loss",
            colour: INK,
            values: values.into_iter().map(Some).collect(),
        };
        let (low, high, step) = loss_range(&[series(vec![0.94, 0.9, f64::NAN])]);
        assert_eq!(step, 0.01);
        assert!(
            (low - 0.9).abs() < 1e-12 && (high - 0.94).abs() < 1e-12,
            "{low} {high}"
        );
        assert_eq!(loss_range(&[series(vec![-0.2, -0.9])]), (-1.0, -0.2, 0.2));
        let (low, high, _) = loss_range(&[series(vec![0.5, 0.5])]);
        assert!(low < 0.5 && high > 0.5);
        assert_eq!(loss_range(&[]), (0.0, 1.0, 0.2));
    }

    #[test]
    fn each_series_is_drawn_in_its_colour() {
        let history: Vec<EpochRecord> = (1..=6)
            .map(|e| record(e, 1.0 / e as f64, 0.1 * e as f64))
            .collect();
        let img = render_curves(&history, "liver", 5);
        assert_eq!((img.width, img.height), (WIDTH, HEIGHT));
        let count = |colour: [u8; 3]| {
            (0..img.height)
                .flat_map(|y| (0..img.width).map(move |x| (x, y)))
                .filter(|&(x, y)| img.get(x, y) == colour)
                .count()
        };
        for colour in [
            [31, 119, 180],
            [255, 127, 14],
            [214, 39, 40],
            [44, 160, 44],
            [23, 190, 207],
            BEST,
        ] {
            assert!(count(colour) > 100, "{colour:?} is hardly drawn");
        }
        // An empty history still gives a picture with axes and no lines.
        let empty = render_curves(&[], "tumor", 0);
        assert_eq!((empty.width, empty.height), (WIDTH, HEIGHT));
        assert_eq!(empty.get(MARGIN_LEFT, MARGIN_TOP + 10), INK);
    }

    #[test]
    fn the_written_file_is_a_png_of_the_picture_size() {
        let dir = std::env::temp_dir().join(format!("hepar-curves-{}", std::process::id()));
        let path = dir.join("curves.png");
        let history: Vec<EpochRecord> = (1..=12)
            .map(|e| record(e, 0.9 / e as f64 + 0.05, (0.08 * e as f64).min(0.93)))
            .collect();
        write_curves(&path, &history, "tumor", 11).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&bytes[12..16], b"IHDR");
        let side = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        assert_eq!((side(16), side(20)), (WIDTH as u32, HEIGHT as u32));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
