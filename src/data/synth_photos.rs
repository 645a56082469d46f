//! Synthetic photo datasets in the two layouts of `photos` (`hepar synth --kind photos`): under
//! `OUT/kvasir` (`images/*.jpg`, `masks/*.png`, the polyp white) and `OUT/pets` (`images/*.jpg`,
//! `annotations/trimaps/*.png`, 1 pet, 2 background, 3 contour). Each photo is a rotated
//! ellipse of its own colour over a striped, noisy background; the masks are the ellipse
//! exactly. The same seed writes the same files.

use crate::error::{HeparError, Result};
use crate::util::atomic_write::write_atomic;
use crate::util::rng::Rng;
use std::path::Path;

/// Default photo size (height, width): not square, so loading exercises the resize.
pub const DEFAULT_PHOTO_SIZE_HW: [usize; 2] = [96, 128];

/// Half the width, in pixels, of the Pet trimaps' contour band.
const CONTOUR_HALF_WIDTH: f64 = 1.5;

/// One drawn scene: the ellipse and the colours.
struct Scene {
    centre: [f64; 2],
    radii: [f64; 2],
    angle: f64,
    shape_rgb: [f64; 3],
    background_rgb: [f64; 3],
    stripe_frequency: [f64; 2],
}

impl Scene {
    fn draw([h, w]: [usize; 2], rng: &mut Rng) -> Self {
        let (h, w) = (h as f64, w as f64);
        let short = h.min(w);
        Scene {
            centre: [rng.range(0.35, 0.65) * h, rng.range(0.35, 0.65) * w],
            radii: [rng.range(0.15, 0.3) * short, rng.range(0.15, 0.3) * short],
            angle: rng.range(0.0, std::f64::consts::PI),
            shape_rgb: [
                rng.range(170.0, 240.0),
                rng.range(60.0, 120.0),
                rng.range(60.0, 120.0),
            ],
            background_rgb: [
                rng.range(40.0, 110.0),
                rng.range(80.0, 150.0),
                rng.range(40.0, 110.0),
            ],
            stripe_frequency: [rng.range(0.1, 0.5), rng.range(0.1, 0.5)],
        }
    }

    /// The ellipse's radial coordinate at a pixel: below 1 inside, 1 on the boundary.
    fn radius_at(&self, y: usize, x: usize) -> f64 {
        let (dy, dx) = (y as f64 - self.centre[0], x as f64 - self.centre[1]);
        let (s, c) = self.angle.sin_cos();
        let u = (c * dx + s * dy) / self.radii[1];
        let v = (-s * dx + c * dy) / self.radii[0];
        (u * u + v * v).sqrt()
    }

    /// The photo's RGB pixels (row-major) and the radial coordinate of each pixel.
    fn render(&self, [h, w]: [usize; 2], rng: &mut Rng) -> (Vec<u8>, Vec<f64>) {
        let mut rgb = Vec::with_capacity(h * w * 3);
        let mut radius = Vec::with_capacity(h * w);
        for y in 0..h {
            for x in 0..w {
                let r = self.radius_at(y, x);
                let stripes = (x as f64 * self.stripe_frequency[1]
                    + y as f64 * self.stripe_frequency[0])
                    .sin();
                let base = if r < 1.0 {
                    self.shape_rgb
                } else {
                    self.background_rgb
                };
                for channel in base {
                    let v = channel + 25.0 * stripes + rng.range(-15.0, 15.0);
                    rgb.push(v.clamp(0.0, 255.0) as u8);
                }
                radius.push(r);
            }
        }
        (rgb, radius)
    }
}

fn encode(image: image::DynamicImage, format: image::ImageFormat, path: &Path) -> Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, format)
        .map_err(|e| HeparError::format(path, format!("cannot encode: {e}")))?;
    write_atomic(path, bytes.get_ref())
}

fn rgb_image(rgb: Vec<u8>, [h, w]: [usize; 2], path: &Path) -> Result<image::DynamicImage> {
    image::RgbImage::from_raw(w as u32, h as u32, rgb)
        .map(image::DynamicImage::ImageRgb8)
        .ok_or_else(|| HeparError::format(path, "pixel count does not match the size"))
}

fn grey_image(values: Vec<u8>, [h, w]: [usize; 2], path: &Path) -> Result<image::DynamicImage> {
    image::GrayImage::from_raw(w as u32, h as u32, values)
        .map(image::DynamicImage::ImageLuma8)
        .ok_or_else(|| HeparError::format(path, "pixel count does not match the size"))
}

fn check_args(count: usize, size_hw: [usize; 2]) -> Result<()> {
    if count == 0 || size_hw.iter().any(|&s| s < 8) {
        return Err(HeparError::invalid(
            "synth photos",
            format!("{count} photos of {size_hw:?}: need at least one photo of at least 8x8"),
        ));
    }
    Ok(())
}

/// Writes `count` Kvasir-SEG-style photos into `dir` (`images/`, `masks/`).
pub fn write_kvasir_dataset(
    dir: &Path,
    count: usize,
    seed: u64,
    size_hw: [usize; 2],
) -> Result<()> {
    check_args(count, size_hw)?;
    for i in 0..count {
        let mut rng = Rng::derive(seed, &[1, i as u64]);
        let scene = Scene::draw(size_hw, &mut rng);
        let (rgb, radius) = scene.render(size_hw, &mut rng);
        let image_path = dir.join("images").join(format!("polyp_{i:03}.jpg"));
        let mask_path = dir.join("masks").join(format!("polyp_{i:03}.png"));
        let mask = radius
            .iter()
            .map(|&r| if r < 1.0 { 255 } else { 0 })
            .collect();
        encode(
            rgb_image(rgb, size_hw, &image_path)?,
            image::ImageFormat::Jpeg,
            &image_path,
        )?;
        encode(
            grey_image(mask, size_hw, &mask_path)?,
            image::ImageFormat::Png,
            &mask_path,
        )?;
    }
    Ok(())
}

/// Writes `count` Oxford-IIIT-Pet-style photos into `dir` (`images/`, `annotations/trimaps/`).
pub fn write_pets_dataset(dir: &Path, count: usize, seed: u64, size_hw: [usize; 2]) -> Result<()> {
    check_args(count, size_hw)?;
    for i in 0..count {
        let mut rng = Rng::derive(seed, &[2, i as u64]);
        let scene = Scene::draw(size_hw, &mut rng);
        let (rgb, radius) = scene.render(size_hw, &mut rng);
        let name = format!("pet_{i:03}");
        let image_path = dir.join("images").join(format!("{name}.jpg"));
        let trimap_path = dir
            .join("annotations")
            .join("trimaps")
            .join(format!("{name}.png"));
        let band = CONTOUR_HALF_WIDTH / scene.radii[0].min(scene.radii[1]);
        let trimap = radius
            .iter()
            .map(|&r| {
                if (r - 1.0).abs() < band {
                    3
                } else if r < 1.0 {
                    1
                } else {
                    2
                }
            })
            .collect();
        encode(
            rgb_image(rgb, size_hw, &image_path)?,
            image::ImageFormat::Jpeg,
            &image_path,
        )?;
        encode(
            grey_image(trimap, size_hw, &trimap_path)?,
            image::ImageFormat::Png,
            &trimap_path,
        )?;
    }
    Ok(())
}

/// Both layouts: `out/kvasir` and `out/pets`, `count` photos each.
pub fn write_photo_datasets(
    out: &Path,
    count: usize,
    seed: u64,
    size_hw: [usize; 2],
) -> Result<()> {
    write_kvasir_dataset(&out.join("kvasir"), count, seed, size_hw)?;
    write_pets_dataset(&out.join("pets"), count, seed, size_hw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::photos::{load_photos, PhotoConfig, PhotoLayout};

    #[test]
    fn both_layouts_load_back_with_matching_masks_and_are_seeded() {
        let dir = std::env::temp_dir().join(format!("hepar-synth-photos-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_photo_datasets(&dir, 3, 7, [24, 32]).unwrap();
        let config = PhotoConfig {
            size_hw: [24, 32],
            ..PhotoConfig::default()
        };
        let kvasir = load_photos(&dir.join("kvasir"), &config).unwrap();
        assert_eq!(
            (kvasir.layout, kvasir.samples.len()),
            (PhotoLayout::Kvasir, 3)
        );
        assert!(kvasir.problems.is_empty(), "{:?}", kvasir.problems);
        let pets = load_photos(&dir.join("pets"), &config).unwrap();
        assert_eq!((pets.layout, pets.samples.len()), (PhotoLayout::Pets, 3));
        for s in &pets.samples {
            for class in [0.0, 1.0, 2.0] {
                assert!(s.label.contains(&class), "{} lacks class {class}", s.id);
            }
        }
        for s in &kvasir.samples {
            let polyp = s.label.iter().filter(|&&l| l == 1.0).count();
            assert!(polyp > 0 && polyp < s.label.len() / 2, "{}: {polyp}", s.id);
            // The polyp is brighter in red than the background, where the mask says.
            let red = &s.image[..s.label.len()];
            let mean = |class: f32| {
                let v: Vec<f32> = red
                    .iter()
                    .zip(&s.label)
                    .filter(|(_, &l)| l == class)
                    .map(|(&r, _)| r)
                    .collect();
                v.iter().sum::<f32>() / v.len() as f32
            };
            assert!(mean(1.0) > mean(0.0) + 1.0, "{}", s.id);
        }
        let first = std::fs::read(dir.join("pets/images/pet_000.jpg")).unwrap();
        let again = dir.join("again");
        write_photo_datasets(&again, 1, 7, [24, 32]).unwrap();
        assert_eq!(
            first,
            std::fs::read(again.join("pets/images/pet_000.jpg")).unwrap()
        );
        let other = dir.join("other");
        write_photo_datasets(&other, 1, 8, [24, 32]).unwrap();
        assert_ne!(
            first,
            std::fs::read(other.join("pets/images/pet_000.jpg")).unwrap()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
