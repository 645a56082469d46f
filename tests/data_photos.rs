//! The 2D photo datasets on tiny files written here with the `image` crate: Kvasir-SEG pairing
//! by stem and its mask threshold, Oxford-IIIT Pet trimap classes, bilinear/nearest resizing,
//! ImageNet normalisation and grey conversion, and bad input left out with a named file.

mod common;

use common::tiny_data::temp_dir;
use hepar::data::photos::{
    find_photo_dataset, load_photos, PhotoColor, PhotoConfig, PhotoLayout, IMAGENET_MEAN,
    IMAGENET_STD,
};
use std::path::Path;

fn write_rgb(path: &Path, w: u32, h: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::RgbImage::from_fn(w, h, |x, y| image::Rgb(pixel(x, y)))
        .save(path)
        .unwrap();
}

fn write_grey(path: &Path, w: u32, h: u32, value: impl Fn(u32, u32) -> u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_fn(w, h, |x, y| image::Luma([value(x, y)]))
        .save(path)
        .unwrap();
}

fn config(h: usize, w: usize, color: PhotoColor) -> PhotoConfig {
    PhotoConfig {
        size_hw: [h, w],
        color,
        ..PhotoConfig::default()
    }
}

#[test]
fn kvasir_pairs_by_stem_thresholds_masks_and_reports_bad_pairs() {
    let dir = temp_dir("photos", "kvasir");
    let root = dir.join("Kvasir-SEG"); // found one level down
                                       // A good pair: left half bright mask (200), right half 100 -> classes 1 / 0.
    write_rgb(&root.join("images/a.png"), 8, 4, |x, _| {
        [x as u8 * 30, 0, 0]
    });
    write_grey(&root.join("masks/a.png"), 8, 4, |x, _| {
        if x < 4 {
            200
        } else {
            100
        }
    });
    // A JPEG image with a PNG mask pairs by stem too.
    write_rgb(&root.join("images/b.jpg"), 8, 4, |_, _| [128, 128, 128]);
    write_grey(&root.join("masks/b.png"), 8, 4, |_, _| 255);
    // Bad input: no mask, a mask of another size, a truncated file, a mask without image.
    write_rgb(&root.join("images/c.png"), 8, 4, |_, _| [1, 2, 3]);
    write_rgb(&root.join("images/d.png"), 8, 4, |_, _| [1, 2, 3]);
    write_grey(&root.join("masks/d.png"), 6, 4, |_, _| 0);
    write_rgb(&root.join("images/e.png"), 8, 4, |_, _| [9, 9, 9]);
    let bytes = std::fs::read(root.join("images/a.png")).unwrap();
    std::fs::write(root.join("masks/e.png"), &bytes[..bytes.len() / 2]).unwrap();
    write_grey(&root.join("masks/f.png"), 8, 4, |_, _| 0);
    std::fs::write(root.join("images/notes.txt"), "not a photo").unwrap();

    let (found, layout) = find_photo_dataset(&dir).unwrap();
    assert_eq!((found.clone(), layout), (root.clone(), PhotoLayout::Kvasir));
    let set = load_photos(&dir, &config(4, 8, PhotoColor::Rgb)).unwrap();
    assert_eq!(set.classes(), 2);
    assert_eq!(set.channels, 3);
    let ids: Vec<&str> = set.samples.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    let a = &set.samples[0];
    for y in 0..4 {
        for x in 0..8 {
            assert_eq!(a.label[y * 8 + x], if x < 4 { 1.0 } else { 0.0 });
        }
    }
    // Same size: the image is the pixels, ImageNet-normalised per channel.
    let red = |x: usize| (x as f32 * 30.0 / 255.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0];
    assert!((a.image[5] - red(5)).abs() < 1e-5);
    let green0 = (0.0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1];
    assert!((a.image[32 + 3] - green0).abs() < 1e-5);
    assert!(set.samples[1].label.iter().all(|&l| l == 1.0));

    let problems: Vec<String> = set.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(problems.len(), 4, "{problems:#?}");
    let has = |file: &str, words: &str| {
        problems
            .iter()
            .any(|p| p.contains(file) && p.contains(words))
    };
    assert!(has("c.png", "without a mask"), "{problems:#?}");
    assert!(has("d.png", "6x4"), "{problems:#?}");
    assert!(has("e.png", "decode"), "{problems:#?}");
    assert!(has("f.png", "mask without an image"), "{problems:#?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pets_trimaps_map_to_three_classes_and_unknown_values_are_named() {
    let dir = temp_dir("photos", "pets");
    // trimap: 1 pet, 2 background, 3 contour -> 0, 1, 2
    write_rgb(&dir.join("images/Abyssinian_1.jpg"), 6, 3, |_, _| {
        [200, 100, 50]
    });
    write_grey(
        &dir.join("annotations/trimaps/Abyssinian_1.png"),
        6,
        3,
        |x, _| (x % 3) as u8 + 1,
    );
    write_rgb(&dir.join("images/beagle_2.jpg"), 6, 3, |_, _| [0, 0, 0]);
    write_grey(
        &dir.join("annotations/trimaps/beagle_2.png"),
        6,
        3,
        |x, _| if x == 5 { 7 } else { 2 },
    );
    // macOS resource files beside the real ones are not photos.
    std::fs::write(dir.join("annotations/trimaps/._beagle_2.png"), b"junk").unwrap();

    let set = load_photos(&dir, &config(3, 6, PhotoColor::Grayscale)).unwrap();
    assert_eq!(set.layout, PhotoLayout::Pets);
    assert_eq!(set.classes(), 3);
    assert_eq!(set.samples.len(), 1);
    let s = &set.samples[0];
    assert_eq!(&s.label[..6], &[0.0, 1.0, 2.0, 0.0, 1.0, 2.0]);
    // Grey: one channel in [0, 1], the JPEG's luma of (200, 100, 50) within JPEG error.
    assert_eq!(s.image.len(), 18);
    let luma = (0.2126 * 200.0 + 0.7152 * 100.0 + 0.0722 * 50.0) / 255.0;
    assert!(
        s.image.iter().all(|&v| (v - luma).abs() < 0.05),
        "{:?}",
        s.image
    );
    assert_eq!(set.problems.len(), 1);
    let p = set.problems[0].to_string();
    assert!(
        p.contains("beagle_2.png") && p.contains("trimap value 7"),
        "{p}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn resizing_is_bilinear_for_images_and_nearest_for_masks() {
    let dir = temp_dir("photos", "resize");
    // 4x4 image: columns 0..3 grey 0, 60, 120, 180; mask: left two columns polyp.
    write_rgb(&dir.join("images/x.png"), 4, 4, |x, _| {
        let v = x as u8 * 60;
        [v, v, v]
    });
    write_grey(
        &dir.join("masks/x.png"),
        4,
        4,
        |x, _| if x < 2 { 255 } else { 0 },
    );
    let set = load_photos(&dir, &config(2, 8, PhotoColor::Grayscale)).unwrap();
    let s = &set.samples[0];
    assert_eq!((s.image.len(), s.label.len()), (16, 16));
    // Upsampling 4 -> 8 columns with half-pixel centres: output x sits at (x + 0.5) / 2 - 0.5.
    for x in 0..8 {
        let src = ((x as f64 + 0.5) / 2.0 - 0.5).clamp(0.0, 3.0);
        let want = (src * 60.0 / 255.0) as f32;
        assert!((s.image[x] - want).abs() < 1e-4, "column {x}");
        assert!((s.image[8 + x] - want).abs() < 1e-4, "row 1 column {x}");
        // Nearest keeps the mask's values: the left half is the polyp.
        assert_eq!(s.label[x], if x < 4 { 1.0 } else { 0.0 }, "column {x}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn folders_without_a_layout_or_usable_pair_are_clear_errors() {
    let dir = temp_dir("photos", "empty");
    let err = load_photos(&dir, &PhotoConfig::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a photo dataset"), "{err}");
    write_rgb(&dir.join("images/only.png"), 4, 4, |_, _| [0, 0, 0]);
    std::fs::create_dir_all(dir.join("masks")).unwrap();
    let err = load_photos(&dir, &PhotoConfig::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no usable image/mask pair") && err.contains("only.png"),
        "{err}"
    );
    let bad = PhotoConfig {
        size_hw: [0, 4],
        ..PhotoConfig::default()
    };
    assert!(load_photos(&dir, &bad)
        .unwrap_err()
        .to_string()
        .contains("photos.size_hw"));
    std::fs::remove_dir_all(&dir).unwrap();
}
