//! Contrast-limited adaptive histogram equalisation of 8-bit images, computed as OpenCV's
//! `createCLAHE(clipLimit, tileGridSize).apply` does: the image padded (reflect-101) to whole
//! tiles, one clipped 256-bin histogram per tile with the excess spread evenly and the remainder
//! one count per step, a cumulative lookup table per tile, and each pixel mapped through the
//! four nearest tiles' tables with bilinear weights (single precision, as OpenCV).

use crate::error::{HeparError, Result};

const BINS: usize = 256;

/// CLAHE settings: OpenCV's clip limit (a multiple of the mean bin count) and tile grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clahe {
    pub clip_limit: f64,
    /// Tiles along (x, y), OpenCV's `tileGridSize` order.
    pub tiles_xy: [usize; 2],
}

impl Default for Clahe {
    /// The Keras liver U-Net's settings: clip limit 2, 8 x 8 tiles.
    fn default() -> Self {
        Clahe {
            clip_limit: 2.0,
            tiles_xy: [8, 8],
        }
    }
}

/// Index `i` of a line of `n` pixels mirrored without repeating the edge (OpenCV's
/// BORDER_REFLECT_101), for `i` up to `2n - 2`.
fn reflect_101(i: usize, n: usize) -> usize {
    if n == 1 {
        0
    } else if i < n {
        i
    } else {
        2 * (n - 1) - i
    }
}

/// OpenCV's `cvRound` for non-negative values: nearest, ties to even.
fn round_to_u8(v: f32) -> u8 {
    v.round_ties_even().clamp(0.0, 255.0) as u8
}

impl Clahe {
    /// Equalises a `height x width` image stored row by row.
    pub fn apply(&self, image: &[u8], height: usize, width: usize) -> Result<Vec<u8>> {
        let [tiles_x, tiles_y] = self.tiles_xy;
        if image.len() != height * width || height == 0 || width == 0 {
            return Err(HeparError::shape(
                "Clahe::apply",
                format!("{} pixels for a {height} x {width} image", image.len()),
            ));
        }
        if tiles_x == 0 || tiles_y == 0 || self.clip_limit.is_nan() || self.clip_limit < 0.0 {
            return Err(HeparError::invalid(
                "Clahe::apply",
                format!(
                    "tiles {:?} and clip limit {} (tiles must be positive, the limit >= 0)",
                    self.tiles_xy, self.clip_limit
                ),
            ));
        }
        // OpenCV pads the bottom and right when either size is not a multiple of the grid, and
        // then pads both, by `tiles - n % tiles` (a whole tile's width for a multiple).
        let (ext_h, ext_w) = if height.is_multiple_of(tiles_y) && width.is_multiple_of(tiles_x) {
            (height, width)
        } else {
            (
                height + tiles_y - height % tiles_y,
                width + tiles_x - width % tiles_x,
            )
        };
        // reflect-101 can mirror at most n - 1 pixels
        if ext_h - height >= height || ext_w - width >= width {
            return Err(HeparError::invalid(
                "Clahe::apply",
                format!("a {height} x {width} image is too small for {tiles_x} x {tiles_y} tiles"),
            ));
        }
        let (tile_w, tile_h) = (ext_w / tiles_x, ext_h / tiles_y);
        let luts = self.tile_luts(image, width, height, [tile_w, tile_h]);
        Ok(interpolate(
            image,
            height,
            width,
            [tile_w, tile_h],
            self.tiles_xy,
            &luts,
        ))
    }

    /// One 256-entry table per tile, row-major over the tile grid.
    fn tile_luts(
        &self,
        image: &[u8],
        width: usize,
        height: usize,
        tile_wh: [usize; 2],
    ) -> Vec<[u8; BINS]> {
        let [tiles_x, tiles_y] = self.tiles_xy;
        let [tile_w, tile_h] = tile_wh;
        let tile_pixels = tile_w * tile_h;
        let clip = if self.clip_limit > 0.0 {
            ((self.clip_limit * tile_pixels as f64 / BINS as f64) as usize).max(1)
        } else {
            0
        };
        let lut_scale = (BINS - 1) as f32 / tile_pixels as f32;
        let mut luts = Vec::with_capacity(tiles_x * tiles_y);
        for ty in 0..tiles_y {
            for tx in 0..tiles_x {
                let mut hist = [0usize; BINS];
                for y in ty * tile_h..(ty + 1) * tile_h {
                    let row = reflect_101(y, height) * width;
                    for x in tx * tile_w..(tx + 1) * tile_w {
                        hist[image[row + reflect_101(x, width)] as usize] += 1;
                    }
                }
                if clip > 0 {
                    clip_histogram(&mut hist, clip);
                }
                let mut lut = [0u8; BINS];
                let mut sum = 0usize;
                for (entry, &count) in lut.iter_mut().zip(&hist) {
                    sum += count;
                    *entry = round_to_u8(sum as f32 * lut_scale);
                }
                luts.push(lut);
            }
        }
        luts
    }
}

/// Cuts every bin at `clip` and hands the excess back: evenly, then the remainder one count to
/// every `256 / remainder`-th bin from the first.
fn clip_histogram(hist: &mut [usize; BINS], clip: usize) {
    let mut clipped = 0;
    for count in hist.iter_mut() {
        if *count > clip {
            clipped += *count - clip;
            *count = clip;
        }
    }
    let batch = clipped / BINS;
    let mut residual = clipped - batch * BINS;
    for count in hist.iter_mut() {
        *count += batch;
    }
    if let Some(step) = BINS.checked_div(residual) {
        let step = step.max(1);
        let mut i = 0;
        while i < BINS && residual > 0 {
            hist[i] += 1;
            i += step;
            residual -= 1;
        }
    }
}

/// Where pixel `p` of a line falls between tile centres: the two tiles and the second's weight.
fn tile_weights(p: usize, tile: usize, tiles: usize) -> (usize, usize, f32) {
    let pos = p as f32 * (1.0 / tile as f32) - 0.5;
    let first = pos.floor();
    let weight = pos - first;
    let lo = (first as i64).max(0) as usize;
    let hi = ((first as i64 + 1).max(0) as usize).min(tiles - 1);
    (lo.min(tiles - 1), hi, weight)
}

fn interpolate(
    image: &[u8],
    height: usize,
    width: usize,
    tile_wh: [usize; 2],
    tiles_xy: [usize; 2],
    luts: &[[u8; BINS]],
) -> Vec<u8> {
    let [tiles_x, tiles_y] = tiles_xy;
    let columns: Vec<(usize, usize, f32)> = (0..width)
        .map(|x| tile_weights(x, tile_wh[0], tiles_x))
        .collect();
    let mut out = vec![0u8; image.len()];
    for y in 0..height {
        let (ty1, ty2, ya) = tile_weights(y, tile_wh[1], tiles_y);
        let ya1 = 1.0 - ya;
        for (x, &(tx1, tx2, xa)) in columns.iter().enumerate() {
            let v = image[y * width + x] as usize;
            let xa1 = 1.0 - xa;
            let top = luts[ty1 * tiles_x + tx1][v] as f32 * xa1
                + luts[ty1 * tiles_x + tx2][v] as f32 * xa;
            let bottom = luts[ty2 * tiles_x + tx1][v] as f32 * xa1
                + luts[ty2 * tiles_x + tx2][v] as f32 * xa;
            out[y * width + x] = round_to_u8(top * ya1 + bottom * ya);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_keeps_the_pixel_count() {
        let mut hist = [0usize; BINS];
        hist[10] = 1000;
        hist[200] = 37;
        clip_histogram(&mut hist, 20);
        assert_eq!(hist.iter().sum::<usize>(), 1037);
        assert!(hist.iter().all(|&c| c <= 20 + 4));
    }

    #[test]
    fn a_flat_image_stays_flat_and_bad_sizes_are_errors() {
        let out = Clahe::default().apply(&[90u8; 64 * 48], 64, 48).unwrap();
        assert!(out.iter().all(|&v| v == out[0]));
        assert!(Clahe::default().apply(&[0u8; 10], 3, 4).is_err());
        assert!(Clahe::default().apply(&[0u8; 12], 3, 4).is_err()); // fewer pixels than tiles
    }
}
