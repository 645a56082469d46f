//! A minimal PNG writer: 8-bit RGB, no interlacing, every row unfiltered, compressed with
//! zlib (flate2). Enough for report pictures without an image library.

use crate::error::{HeparError, Result};
use crate::util::atomic_write::write_atomic;
use std::io::Write;
use std::path::Path;

/// An RGB picture, rows top to bottom, 3 bytes a pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl RgbImage {
    pub fn new(width: usize, height: usize, fill: [u8; 3]) -> Self {
        RgbImage {
            width,
            height,
            pixels: fill.repeat(width * height),
        }
    }

    /// Sets one pixel; outside the picture nothing happens.
    pub fn put(&mut self, x: usize, y: usize, rgb: [u8; 3]) {
        if x < self.width && y < self.height {
            let i = 3 * (y * self.width + x);
            self.pixels[i..i + 3].copy_from_slice(&rgb);
        }
    }

    pub fn get(&self, x: usize, y: usize) -> [u8; 3] {
        let i = 3 * (y * self.width + x);
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    /// Copies `other` with its top-left corner at (x, y), clipped to this picture.
    pub fn blit(&mut self, other: &RgbImage, x: usize, y: usize) {
        for oy in 0..other.height {
            for ox in 0..other.width {
                self.put(x + ox, y + oy, other.get(ox, oy));
            }
        }
    }

    pub fn fill_rect(&mut self, x: usize, y: usize, w: usize, h: usize, rgb: [u8; 3]) {
        for yy in y..y + h {
            for xx in x..x + w {
                self.put(xx, yy, rgb);
            }
        }
    }
}

/// CRC-32 (the IEEE polynomial, reflected) as PNG chunks need it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// The PNG file bytes of `image`.
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>> {
    if image.width == 0 || image.height == 0 || image.pixels.len() != 3 * image.width * image.height
    {
        return Err(HeparError::shape(
            "encode_png",
            format!(
                "{} bytes for a {} x {} RGB picture",
                image.pixels.len(),
                image.width,
                image.height
            ),
        ));
    }
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&(image.width as u32).to_be_bytes());
    header.extend_from_slice(&(image.height as u32).to_be_bytes());
    // Bit depth 8, colour type 2 (RGB), deflate, adaptive filtering, no interlace.
    header.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut raw = Vec::with_capacity((3 * image.width + 1) * image.height);
    for row in image.pixels.chunks(3 * image.width) {
        raw.push(0); // filter type None
        raw.extend_from_slice(row);
    }
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(&raw)
        .and_then(|_| z.flush())
        .map_err(|e| HeparError::invalid("encode_png", e.to_string()))?;
    let compressed = z
        .finish()
        .map_err(|e| HeparError::invalid("encode_png", e.to_string()))?;
    let mut out = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    chunk(&mut out, b"IHDR", &header);
    chunk(&mut out, b"IDAT", &compressed);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

/// Writes `image` as a PNG file atomically.
pub fn write_png(path: &Path, image: &RgbImage) -> Result<()> {
    write_atomic(path, &encode_png(image)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_standard_check_value() {
        // The CRC-32 check value of the ASCII digits 1..9.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn encoded_png_has_signature_header_and_round_trips_through_zlib() {
        let mut img = RgbImage::new(3, 2, [10, 20, 30]);
        img.put(2, 1, [255, 0, 0]);
        let bytes = encode_png(&img).unwrap();
        assert_eq!(
            &bytes[..8],
            &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]
        );
        assert_eq!(&bytes[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 3);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 2);
        // IDAT follows IHDR (8 + 25 bytes in); inflate it back to the filtered rows.
        let len = u32::from_be_bytes(bytes[33..37].try_into().unwrap()) as usize;
        assert_eq!(&bytes[37..41], b"IDAT");
        let mut raw = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::ZlibDecoder::new(&bytes[41..41 + len]),
            &mut raw,
        )
        .unwrap();
        assert_eq!(raw.len(), 2 * (1 + 9));
        assert_eq!(&raw[10..], &[0, 10, 20, 30, 10, 20, 30, 255, 0, 0]);
        assert!(bytes.ends_with(&[0xAE, 0x42, 0x60, 0x82]), "IEND's CRC");
    }
}
