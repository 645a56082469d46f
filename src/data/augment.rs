//! Random augmentation of a training example, driven by a seeded [`Rng`] so a run is
//! reproducible. Spatial transforms move image and label together (labels by nearest neighbour,
//! so their values stay in their set); intensity transforms touch the image only.
//!
//! An example is `channels` images of shape (z, y, x) plus one label volume of the same shape. A
//! 2D stack is an example with z = 1 and the slices as channels: spatial transforms then stay in
//! the (y, x) plane.

use super::config::AugmentConfig;
use crate::error::{HeparError, Result};
use crate::util::rng::Rng;
use rayon::prelude::*;

#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// (channels, z, y, x).
    pub image: Vec<f32>,
    /// (z, y, x).
    pub label: Vec<f32>,
    pub channels: usize,
    pub shape_zyx: [usize; 3],
}

impl Example {
    pub fn new(
        image: Vec<f32>,
        label: Vec<f32>,
        channels: usize,
        shape_zyx: [usize; 3],
    ) -> Result<Self> {
        let n: usize = shape_zyx.iter().product();
        if n == 0 || channels == 0 || image.len() != channels * n || label.len() != n {
            return Err(HeparError::shape(
                "augment::Example",
                format!("image {} and label {} values for {channels} channels of (z, y, x) {shape_zyx:?}", image.len(), label.len()),
            ));
        }
        Ok(Example {
            image,
            label,
            channels,
            shape_zyx,
        })
    }

    fn voxels(&self) -> usize {
        self.shape_zyx.iter().product()
    }

    /// Spatial axes that can be transformed (z is left alone for a single slice).
    fn spatial_axes(&self) -> Vec<usize> {
        (0..3).filter(|&a| self.shape_zyx[a] > 1).collect()
    }
}

/// Applies the augmentations of `cfg`, each with its probability.
pub fn augment(example: &mut Example, cfg: &AugmentConfig, rng: &mut Rng) {
    if !cfg.enabled {
        return;
    }
    let axes = example.spatial_axes();
    for &axis in &axes {
        if rng.chance(cfg.p_flip) {
            flip(example, axis);
        }
    }
    let mut matrix = IDENTITY3;
    let mut transformed = false;
    if rng.chance(cfg.p_zoom) {
        let factor = rng.range(cfg.zoom_range[0], cfg.zoom_range[1]);
        let mut s = [1.0; 3];
        for &a in &axes {
            s[a] = 1.0 / factor; // zooming in by f samples a region 1/f as large
        }
        matrix = matmul3(&matrix, &diag3(s));
        transformed = true;
    }
    if rng.chance(cfg.p_scale) {
        let mut s = [1.0; 3];
        for &a in &axes {
            s[a] = 1.0 / rng.range(cfg.scale_range[0], cfg.scale_range[1]);
        }
        matrix = matmul3(&matrix, &diag3(s));
        transformed = true;
    }
    if rng.chance(cfg.p_rotate) {
        // Rotation planes: (y, x) always; (z, y) and (z, x) only for volumes.
        let planes: &[(usize, usize)] = if axes.contains(&0) {
            &[(1, 2), (0, 1), (0, 2)]
        } else {
            &[(1, 2)]
        };
        for &(a, b) in planes {
            let angle = rng
                .range(cfg.rotation_degrees[0], cfg.rotation_degrees[1])
                .to_radians();
            matrix = matmul3(&matrix, &rotation3(a, b, angle));
        }
        transformed = true;
    }
    if transformed {
        resample_affine(example, &matrix);
    }
    if rng.chance(cfg.p_blur) {
        let sigma = rng.range(cfg.blur_sigma_range[0], cfg.blur_sigma_range[1]);
        gaussian_blur(example, sigma);
    }
    if rng.chance(cfg.p_bias_field) {
        // Every term lies in [-1, 1], so scaling the coefficients to an absolute sum of
        // `strength` bounds the field by it: the image is multiplied by exp(+-strength) at most.
        let raw: Vec<f64> = (0..9).map(|_| rng.range(-1.0, 1.0)).collect();
        let total: f64 = raw.iter().map(|c| c.abs()).sum::<f64>().max(1e-12);
        let coefficients: Vec<f64> = raw
            .iter()
            .map(|c| c * cfg.bias_field_strength / total)
            .collect();
        bias_field(example, &coefficients);
    }
    if rng.chance(cfg.p_intensity_shift) {
        let shift = rng.range(cfg.intensity_shift_range[0], cfg.intensity_shift_range[1]) as f32;
        example.image.par_iter_mut().for_each(|v| *v += shift);
    }
    if rng.chance(cfg.p_noise) {
        let std = rng.range(cfg.noise_std_range[0], cfg.noise_std_range[1]);
        add_noise(example, std, rng.next_u64());
    }
}

/// Reverses the example along one axis (0 = z, 1 = y, 2 = x), image and label alike.
pub fn flip(example: &mut Example, axis: usize) {
    if example.voxels() == 0 || axis > 2 {
        return;
    }
    let shape = example.shape_zyx;
    let n = example.voxels();
    let flip_one = |data: &mut [f32]| {
        let outer: usize = shape[..axis].iter().product();
        let len = shape[axis];
        let inner: usize = shape[axis + 1..].iter().product();
        for o in 0..outer {
            for i in 0..len / 2 {
                let a = (o * len + i) * inner;
                let b = (o * len + len - 1 - i) * inner;
                for k in 0..inner {
                    data.swap(a + k, b + k);
                }
            }
        }
    };
    example.image.par_chunks_mut(n).for_each(flip_one);
    flip_one(&mut example.label);
}

type Mat3 = [[f64; 3]; 3];
const IDENTITY3: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

fn diag3(d: [f64; 3]) -> Mat3 {
    [[d[0], 0.0, 0.0], [0.0, d[1], 0.0], [0.0, 0.0, d[2]]]
}

fn rotation3(a: usize, b: usize, angle: f64) -> Mat3 {
    let mut m = IDENTITY3;
    let (s, c) = angle.sin_cos();
    m[a][a] = c;
    m[a][b] = -s;
    m[b][a] = s;
    m[b][b] = c;
    m
}

fn matmul3(x: &Mat3, y: &Mat3) -> Mat3 {
    let mut m = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = (0..3).map(|k| x[i][k] * y[k][j]).sum();
        }
    }
    m
}

/// Resamples about the volume centre: output voxel p reads input `matrix * (p - c) + c`, with
/// coordinates clamped to the volume (border padding). Image: trilinear; label: nearest.
pub fn resample_affine(example: &mut Example, matrix: &[[f64; 3]; 3]) {
    if example.voxels() == 0 {
        return; // nothing to move; also keeps chunk sizes non-zero
    }
    let [d, h, w] = example.shape_zyx;
    let n = d * h * w;
    let centre = [
        (d as f64 - 1.0) / 2.0,
        (h as f64 - 1.0) / 2.0,
        (w as f64 - 1.0) / 2.0,
    ];
    let limit = [d as f64 - 1.0, h as f64 - 1.0, w as f64 - 1.0];
    let source = |z: usize, y: usize, x: usize| -> [f64; 3] {
        let p = [
            z as f64 - centre[0],
            y as f64 - centre[1],
            x as f64 - centre[2],
        ];
        let mut q = [0.0; 3];
        for i in 0..3 {
            q[i] = (matrix[i][0] * p[0] + matrix[i][1] * p[1] + matrix[i][2] * p[2] + centre[i])
                .clamp(0.0, limit[i]);
        }
        q
    };
    let mut image = vec![0f32; example.image.len()];
    let mut label = vec![0f32; n];
    let src_image = &example.image;
    let src_label = &example.label;
    // One output row (fixed z, y) per task.
    label.par_chunks_mut(w).enumerate().for_each(|(row, out)| {
        let (z, y) = (row / h, row % h);
        for (x, o) in out.iter_mut().enumerate() {
            let q = source(z, y, x);
            let idx =
                (q[0].round() as usize * h + q[1].round() as usize) * w + q[2].round() as usize;
            *o = src_label[idx];
        }
    });
    image.par_chunks_mut(w).enumerate().for_each(|(row, out)| {
        let c = row / (d * h);
        let zy = row % (d * h);
        let (z, y) = (zy / h, zy % h);
        let channel = &src_image[c * n..(c + 1) * n];
        for (x, o) in out.iter_mut().enumerate() {
            *o = trilinear(channel, [d, h, w], source(z, y, x));
        }
    });
    example.image = image;
    example.label = label;
}

fn trilinear(data: &[f32], shape: [usize; 3], q: [f64; 3]) -> f32 {
    let i0 = [0, 1, 2].map(|a| (q[a].floor() as usize).min(shape[a] - 1));
    let i1 = [0, 1, 2].map(|a| (i0[a] + 1).min(shape[a] - 1));
    let f = [0, 1, 2].map(|a| (q[a] - i0[a] as f64) as f32);
    let at = |z: usize, y: usize, x: usize| data[(z * shape[1] + y) * shape[2] + x];
    let lerp = |a: f32, b: f32, t: f32| a + t * (b - a);
    let c00 = lerp(at(i0[0], i0[1], i0[2]), at(i0[0], i0[1], i1[2]), f[2]);
    let c01 = lerp(at(i0[0], i1[1], i0[2]), at(i0[0], i1[1], i1[2]), f[2]);
    let c10 = lerp(at(i1[0], i0[1], i0[2]), at(i1[0], i0[1], i1[2]), f[2]);
    let c11 = lerp(at(i1[0], i1[1], i0[2]), at(i1[0], i1[1], i1[2]), f[2]);
    lerp(lerp(c00, c01, f[1]), lerp(c10, c11, f[1]), f[0])
}

/// Separable Gaussian blur of the image along every spatial axis of size > 1 (edges replicated).
pub fn gaussian_blur(example: &mut Example, sigma: f64) {
    if example.voxels() == 0 {
        return;
    }
    if sigma <= 0.0 {
        return;
    }
    let radius = (3.0 * sigma).ceil() as isize;
    let mut kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let total: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|k| *k /= total);
    let shape = example.shape_zyx;
    let n = example.voxels();
    for axis in example.spatial_axes() {
        let len = shape[axis];
        let inner: usize = shape[axis + 1..].iter().product();
        example.image.par_chunks_mut(n).for_each(|channel| {
            let src = channel.to_vec();
            let outer: usize = shape[..axis].iter().product();
            for o in 0..outer {
                for i in 0..len {
                    for k in 0..inner {
                        let mut acc = 0f32;
                        for (t, &kv) in kernel.iter().enumerate() {
                            let j = (i as isize + t as isize - radius).clamp(0, len as isize - 1)
                                as usize;
                            acc += kv * src[(o * len + j) * inner + k];
                        }
                        channel[(o * len + i) * inner + k] = acc;
                    }
                }
            }
        });
    }
}

/// Multiplies the image by `exp(field)`, `field` a quadratic polynomial of the normalised
/// coordinates in [-1, 1]: terms z, y, x, z^2, y^2, x^2, zy, zx, yx (9 coefficients).
pub fn bias_field(example: &mut Example, coefficients: &[f64]) {
    if example.voxels() == 0 {
        return;
    }
    let [d, h, w] = example.shape_zyx;
    let norm = |i: usize, n: usize| {
        if n > 1 {
            2.0 * i as f64 / (n - 1) as f64 - 1.0
        } else {
            0.0
        }
    };
    let n = example.voxels();
    let c = |i: usize| coefficients.get(i).copied().unwrap_or(0.0);
    let field: Vec<f32> = (0..n)
        .into_par_iter()
        .map(|i| {
            let (z, y, x) = (norm(i / (h * w), d), norm((i / w) % h, h), norm(i % w, w));
            let f = c(0) * z
                + c(1) * y
                + c(2) * x
                + c(3) * z * z
                + c(4) * y * y
                + c(5) * x * x
                + c(6) * z * y
                + c(7) * z * x
                + c(8) * y * x;
            f.exp() as f32
        })
        .collect();
    example
        .image
        .par_chunks_mut(n)
        .for_each(|channel| channel.iter_mut().zip(&field).for_each(|(v, f)| *v *= f));
}

/// Adds Gaussian noise; each row of voxels has its own derived stream, so the result does not
/// depend on thread scheduling.
pub fn add_noise(example: &mut Example, std: f64, seed: u64) {
    if example.voxels() == 0 {
        return; // nothing to move; also keeps chunk sizes non-zero
    }
    let w = example.shape_zyx[2];
    example
        .image
        .par_chunks_mut(w)
        .enumerate()
        .for_each(|(row, chunk)| {
            let mut rng = Rng::derive(seed, &[row as u64]);
            chunk
                .iter_mut()
                .for_each(|v| *v += (rng.normal() * std) as f32);
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(channels: usize, shape: [usize; 3]) -> Example {
        let n: usize = shape.iter().product();
        let image = (0..channels * n).map(|i| (i as f32 * 0.37).sin()).collect();
        let label = (0..n).map(|i| (i % 3) as f32).collect();
        Example::new(image, label, channels, shape).unwrap()
    }

    #[test]
    fn flip_is_its_own_inverse_and_reverses() {
        let original = ramp(2, [3, 4, 5]);
        for axis in 0..3 {
            let mut e = original.clone();
            flip(&mut e, axis);
            assert_ne!(e, original);
            flip(&mut e, axis);
            assert_eq!(e, original);
        }
        let mut e = Example::new(vec![1.0, 2.0, 3.0], vec![0.0, 1.0, 2.0], 1, [1, 1, 3]).unwrap();
        flip(&mut e, 2);
        assert_eq!(e.image, vec![3.0, 2.0, 1.0]);
        assert_eq!(e.label, vec![2.0, 1.0, 0.0]);
    }

    #[test]
    fn identity_transform_changes_nothing() {
        let original = ramp(1, [4, 5, 6]);
        let mut e = original.clone();
        resample_affine(&mut e, &IDENTITY3);
        assert_eq!(e, original);
    }

    #[test]
    fn quarter_turn_in_plane_moves_values_exactly() {
        let mut e = Example::new(
            (0..9).map(|v| v as f32).collect(),
            vec![0.0; 9],
            1,
            [1, 3, 3],
        )
        .unwrap();
        resample_affine(&mut e, &rotation3(1, 2, std::f64::consts::FRAC_PI_2));
        // output (y, x) reads input (y', x') = (-(x-1)+1, (y-1)+1) = (2-x, y)
        let expected: Vec<f32> = (0..9)
            .map(|i| {
                let (y, x) = (i / 3, i % 3);
                ((2 - x) * 3 + y) as f32
            })
            .collect();
        for (a, b) in e.image.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5, "{:?}", e.image);
        }
    }

    #[test]
    fn full_augmentation_keeps_labels_in_set_and_is_seeded() {
        let cfg = AugmentConfig {
            p_flip: 1.0,
            p_zoom: 1.0,
            p_rotate: 1.0,
            p_scale: 1.0,
            p_blur: 1.0,
            p_bias_field: 1.0,
            p_noise: 1.0,
            p_intensity_shift: 1.0,
            ..Default::default()
        };
        let original = ramp(3, [1, 16, 16]);
        let mut a = original.clone();
        let mut b = original.clone();
        augment(&mut a, &cfg, &mut Rng::new(5));
        augment(&mut b, &cfg, &mut Rng::new(5));
        assert_eq!(a, b);
        assert_ne!(a, original);
        assert!(a.label.iter().all(|v| [0.0, 1.0, 2.0].contains(v)));
        assert!(a.image.iter().all(|v| v.is_finite()));
        let mut v = ramp(1, [8, 8, 8]);
        augment(&mut v, &cfg, &mut Rng::new(6));
        assert!(v.label.iter().all(|x| [0.0, 1.0, 2.0].contains(x)));
    }

    #[test]
    fn blur_preserves_a_constant_and_smooths_a_spike() {
        let mut e = Example::new(vec![2.0; 27], vec![0.0; 27], 1, [3, 3, 3]).unwrap();
        gaussian_blur(&mut e, 1.0);
        assert!(e.image.iter().all(|v| (v - 2.0).abs() < 1e-5));
        let mut s =
            Example::new(vec![0.0, 0.0, 1.0, 0.0, 0.0], vec![0.0; 5], 1, [1, 1, 5]).unwrap();
        gaussian_blur(&mut s, 1.0);
        assert!(
            s.image[2] < 1.0 && s.image[1] > 0.0 && (s.image.iter().sum::<f32>() - 1.0).abs() < 0.1
        );
    }

    #[test]
    fn bias_field_stays_within_its_strength() {
        let cfg = AugmentConfig {
            p_bias_field: 1.0,
            bias_field_strength: 0.3,
            ..no_other_transforms()
        };
        for seed in 0..10 {
            let mut e = Example::new(vec![1.0; 4 * 6 * 5], vec![0.0; 120], 1, [4, 6, 5]).unwrap();
            augment(&mut e, &cfg, &mut Rng::new(seed));
            let (lo, hi) = ((-0.3f32).exp(), 0.3f32.exp());
            assert!(
                e.image.iter().all(|&v| v >= lo - 1e-5 && v <= hi + 1e-5),
                "{:?}",
                e.image
            );
            assert!(e.image.iter().any(|&v| (v - 1.0).abs() > 1e-3));
        }
    }

    fn no_other_transforms() -> AugmentConfig {
        AugmentConfig {
            p_flip: 0.0,
            p_zoom: 0.0,
            p_rotate: 0.0,
            p_scale: 0.0,
            p_intensity_shift: 0.0,
            p_noise: 0.0,
            p_bias_field: 0.0,
            p_blur: 0.0,
            ..Default::default()
        }
    }
}
