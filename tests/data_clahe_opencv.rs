//! CLAHE against OpenCV's `createCLAHE(2.0, (8, 8)).apply` on images of several sizes (tile
//! multiples and not, so the padding path runs), within one grey level everywhere.
//!
//! Needs python3 with opencv-python-headless (`bash scripts/setup.sh`); fails loudly without it.

mod common;

use common::tiny_data::temp_dir;
use hepar::data::clahe::Clahe;
use hepar::util::rng::Rng;
use std::process::Command;

/// A CT-like test image: smooth blobs of different brightness, a gradient and noise.
fn test_image(height: usize, width: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let blobs: Vec<[f64; 4]> = (0..5)
        .map(|_| {
            [
                rng.uniform() * height as f64,
                rng.uniform() * width as f64,
                4.0 + rng.uniform() * width as f64 / 4.0,
                rng.uniform() * 150.0,
            ]
        })
        .collect();
    let mut out = Vec::with_capacity(height * width);
    for y in 0..height {
        for x in 0..width {
            let mut v = 30.0 + 60.0 * x as f64 / width as f64;
            for [cy, cx, r, a] in &blobs {
                let d2 = (y as f64 - cy).powi(2) + (x as f64 - cx).powi(2);
                v += a * (-d2 / (2.0 * r * r)).exp();
            }
            v += 12.0 * (rng.uniform() - 0.5);
            out.push(v.clamp(0.0, 255.0) as u8);
        }
    }
    out
}

const SCRIPT: &str = r#"
import sys
import numpy as np
import cv2
src, dst, h, w, clip, tx, ty = sys.argv[1], sys.argv[2], *map(float, sys.argv[3:8])
img = np.fromfile(src, dtype=np.uint8).reshape(int(h), int(w))
out = cv2.createCLAHE(clipLimit=clip, tileGridSize=(int(tx), int(ty))).apply(img)
out.astype(np.uint8).tofile(dst)
"#;

fn opencv_clahe(dir: &std::path::Path, image: &[u8], h: usize, w: usize, clahe: &Clahe) -> Vec<u8> {
    let src = dir.join(format!("in-{h}x{w}.u8"));
    let dst = dir.join(format!("out-{h}x{w}.u8"));
    std::fs::write(&src, image).unwrap();
    let out = Command::new("python3")
        .args(["-c", SCRIPT])
        .arg(&src)
        .arg(&dst)
        .args([h, w].map(|v| v.to_string()))
        .arg(clahe.clip_limit.to_string())
        .args(clahe.tiles_xy.map(|v| v.to_string()))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run python3 ({e}); this test needs opencv-python-headless")
        });
    assert!(
        out.status.success(),
        "OpenCV helper failed (install opencv-python-headless: bash scripts/setup.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&dst).unwrap()
}

#[test]
fn clahe_matches_opencv_within_one_grey_level() {
    let dir = temp_dir("clahe", "opencv");
    let cases = [
        (64, 64, Clahe::default()),
        (100, 75, Clahe::default()),
        (37, 53, Clahe::default()),
        (
            128,
            96,
            Clahe {
                clip_limit: 4.0,
                tiles_xy: [4, 6],
            },
        ),
        (
            40,
            40,
            Clahe {
                clip_limit: 0.0,
                tiles_xy: [8, 8],
            },
        ),
    ];
    for (seed, (h, w, clahe)) in cases.into_iter().enumerate() {
        let image = test_image(h, w, seed as u64);
        let ours = clahe.apply(&image, h, w).unwrap();
        let theirs = opencv_clahe(&dir, &image, h, w, &clahe);
        assert_eq!(ours.len(), theirs.len());
        let mut worst = 0;
        let mut differ = 0;
        for (a, b) in ours.iter().zip(&theirs) {
            let d = (*a as i32 - *b as i32).abs();
            worst = worst.max(d);
            differ += usize::from(d > 0);
        }
        assert!(
            worst <= 1,
            "{h}x{w} {clahe:?}: differs from OpenCV by up to {worst} grey levels"
        );
        // the equalisation must have done something, or the comparison proves nothing
        assert!(ours.iter().zip(&image).filter(|(a, b)| a != b).count() > h * w / 2);
        eprintln!("{h}x{w}: {differ} pixels off by one");
    }
}
