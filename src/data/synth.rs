//! Synthetic abdominal CT phantoms, realistic enough to train the cascade on without a download:
//! air, body outline with subcutaneous fat and a muscle wall, bowel texture, spine (vertebral
//! bodies, discs, canal, spinous process) and ribs in bone HU, aorta and vena cava, kidneys,
//! spleen and stomach as distractors, and a deformed liver (about 60 HU) with contrast-filled
//! vessels and 0-4 hypodense tumours of varied size. Voxels are anisotropic (thicker slices than
//! in-plane pixels) and carry Gaussian scanner noise.
//!
//! Geometry is built in millimetres so the anatomy does not depend on the grid. Labels follow
//! LiTS: 0 background, 1 liver (vessels included), 2 tumour. Everything derives from
//! (seed, case index): the same arguments give the same files on any machine and thread count.

use super::nifti::NiftiDataType;
use super::volume::Volume;
use crate::error::{HeparError, Result};
use crate::util::rng::Rng;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Default (z, y, x) grid: small enough that the README's training job runs in minutes on 2 cores.
pub const DEFAULT_SHAPE_ZYX: [usize; 3] = [64, 128, 128];

/// Rib bone before noise (no other tissue takes these values, so they mark the ribs).
const RIB_CORTEX_HU: f64 = 800.0;
const RIB_MARROW_HU: f64 = 450.0;

/// An ellipsoid whose radius is modulated by smooth lobes, in mm.
#[derive(Debug, Clone)]
struct Blob {
    centre: [f64; 3], // x, y, z
    radii: [f64; 3],
    /// (direction weights, phase, amplitude) of each lobe.
    lobes: Vec<([f64; 3], f64, f64)>,
}

impl Blob {
    fn random(
        centre: [f64; 3],
        radii: [f64; 3],
        bumpiness: f64,
        lobes: usize,
        rng: &mut Rng,
    ) -> Self {
        let lobes = (0..lobes)
            .map(|_| {
                let dir = [
                    rng.range(-3.0, 3.0),
                    rng.range(-3.0, 3.0),
                    rng.range(-3.0, 3.0),
                ];
                (
                    dir,
                    rng.range(0.0, std::f64::consts::TAU),
                    rng.range(0.3, 1.0) * bumpiness,
                )
            })
            .collect();
        Blob {
            centre,
            radii,
            lobes,
        }
    }

    /// Below 1 inside, 1 on the surface.
    fn level(&self, p: [f64; 3]) -> f64 {
        let d = [0, 1, 2].map(|a| (p[a] - self.centre[a]) / self.radii[a]);
        let r = (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt();
        if r < 1e-9 {
            return 0.0;
        }
        let u = d.map(|v| v / r);
        let bump: f64 = self
            .lobes
            .iter()
            .map(|(w, ph, amp)| amp * (w[0] * u[0] + w[1] * u[1] + w[2] * u[2] + ph).sin())
            .sum();
        r / (1.0 + bump).max(0.3)
    }
}

/// A capsule (line segment with radius), for vessels and ribs.
#[derive(Debug, Clone)]
struct Tube {
    a: [f64; 3],
    b: [f64; 3],
    radius: f64,
}

impl Tube {
    fn contains(&self, p: [f64; 3]) -> bool {
        let ab = [0, 1, 2].map(|i| self.b[i] - self.a[i]);
        let ap = [0, 1, 2].map(|i| p[i] - self.a[i]);
        let len2 = ab.iter().map(|v| v * v).sum::<f64>().max(1e-9);
        let t = (ap.iter().zip(&ab).map(|(x, y)| x * y).sum::<f64>() / len2).clamp(0.0, 1.0);
        let d2: f64 = (0..3).map(|i| (ap[i] - t * ab[i]).powi(2)).sum();
        d2 <= self.radius * self.radius
    }
}

struct Tumour {
    blob: Blob,
    hu: f64,
}

/// Everything random about one phantom, drawn once; voxels are then evaluated in parallel.
struct Anatomy {
    spacing_xyz: [f64; 3],
    body_centre: [f64; 2],
    body_radii: [f64; 2],
    fat_thickness: f64,
    muscle_thickness: f64,
    spine_centre: [f64; 2],
    vertebra_radius: f64,
    disc_period: f64,
    disc_phase: f64,
    rib_angles: Vec<f64>,
    rib_period: f64,
    rib_top_z: f64,
    aorta: [f64; 3],
    cava: [f64; 3],
    kidneys: [Blob; 2],
    spleen: Blob,
    stomach: Blob,
    liver: [Blob; 2],
    liver_hu: f64,
    vessels: Vec<Tube>,
    tumours: Vec<Tumour>,
    bowel_phase: [f64; 6],
    /// Plane waves (direction in cycles per mm, phase) mixed into the bowel texture.
    bowel_waves: Vec<([f64; 3], f64)>,
    noise_std: f64,
}

impl Anatomy {
    fn draw(rng: &mut Rng, shape_zyx: [usize; 3]) -> Self {
        let [nz, ny, nx] = shape_zyx.map(|v| v as f64);
        let fov = rng.range(330.0, 400.0);
        let pixel = fov / nx.max(ny);
        let extent_z = rng.range(190.0, 250.0);
        let slice = (extent_z / nz).max(pixel * 1.2); // always thicker slices than pixels
        let spacing_xyz = [pixel, pixel, slice];
        let (w, h, depth) = (nx * pixel, ny * pixel, nz * slice);
        let body_centre = [
            w / 2.0 + rng.range(-8.0, 8.0),
            h / 2.0 + rng.range(-5.0, 8.0),
        ];
        let body_radii = [w * rng.range(0.42, 0.47), h * rng.range(0.32, 0.38)];
        let [cx, cy] = body_centre;
        let [ax, ay] = body_radii;
        let spine_centre = [cx + rng.range(-4.0, 4.0), cy + ay * 0.62];
        let liver_z = depth * rng.range(0.58, 0.68);
        let liver_main = Blob::random(
            [
                cx - ax * rng.range(0.32, 0.42),
                cy - ay * rng.range(0.0, 0.12),
                liver_z,
            ],
            [
                ax * rng.range(0.42, 0.5),
                ay * rng.range(0.62, 0.75),
                depth * rng.range(0.22, 0.28),
            ],
            0.12,
            4,
            rng,
        );
        let liver_left_lobe = Blob::random(
            [
                cx + ax * rng.range(0.0, 0.12),
                cy - ay * rng.range(0.35, 0.45),
                liver_z + depth * rng.range(0.0, 0.08),
            ],
            [
                ax * rng.range(0.25, 0.32),
                ay * rng.range(0.25, 0.32),
                depth * rng.range(0.12, 0.16),
            ],
            0.10,
            3,
            rng,
        );
        let liver_hu = rng.range(55.0, 68.0);
        let liver = [liver_main, liver_left_lobe];
        // Vessels: branches from the hilum (medial, lower part of the liver) towards the periphery.
        let hilum = [
            liver[0].centre[0] + liver[0].radii[0] * 0.35,
            liver[0].centre[1] + liver[0].radii[1] * 0.15,
            liver[0].centre[2] - liver[0].radii[2] * 0.3,
        ];
        let mut vessels = Vec::new();
        for _ in 0..rng.below(4) + 4 {
            let target = random_point_in(rng, &liver[0], 0.85);
            let radius = rng.range(2.0, 4.5);
            vessels.push(Tube {
                a: hilum,
                b: target,
                radius,
            });
            let twig = random_point_in(rng, &liver[0], 0.95);
            vessels.push(Tube {
                a: target,
                b: twig,
                radius: radius * 0.6,
            });
        }
        let n_tumours = rng.below(5);
        let tumours = (0..n_tumours)
            .map(|_| {
                let which = if rng.chance(0.85) { 0 } else { 1 };
                let centre = random_point_in(rng, &liver[which], 0.8);
                // Log-uniform radius: many small lesions, some large ones, as in LiTS.
                let r = (rng.range(4.0f64.ln(), 28.0f64.ln())).exp();
                let radii = [
                    r * rng.range(0.8, 1.2),
                    r * rng.range(0.8, 1.2),
                    r * rng.range(0.8, 1.2),
                ];
                let blob = Blob::random(centre, radii, 0.15, 3, rng);
                Tumour {
                    blob,
                    hu: liver_hu - rng.range(18.0, 50.0),
                }
            })
            .collect();
        let kidney = |rng: &mut Rng, side: f64| {
            Blob::random(
                [
                    cx + side * ax * rng.range(0.38, 0.46),
                    cy + ay * rng.range(0.35, 0.45),
                    depth * rng.range(0.3, 0.4),
                ],
                [
                    rng.range(25.0, 32.0),
                    rng.range(22.0, 28.0),
                    rng.range(45.0, 55.0),
                ],
                0.08,
                2,
                rng,
            )
        };
        let kidneys = [kidney(rng, -1.0), kidney(rng, 1.0)];
        let spleen = Blob::random(
            [
                cx + ax * rng.range(0.55, 0.65),
                cy + ay * rng.range(0.2, 0.35),
                depth * rng.range(0.62, 0.72),
            ],
            [
                rng.range(22.0, 30.0),
                rng.range(40.0, 55.0),
                rng.range(40.0, 55.0),
            ],
            0.1,
            3,
            rng,
        );
        let stomach = Blob::random(
            [
                cx + ax * rng.range(0.25, 0.4),
                cy - ay * rng.range(0.25, 0.4),
                depth * rng.range(0.6, 0.75),
            ],
            [
                rng.range(30.0, 45.0),
                rng.range(25.0, 35.0),
                rng.range(35.0, 50.0),
            ],
            0.15,
            3,
            rng,
        );
        Anatomy {
            spacing_xyz,
            body_centre,
            body_radii,
            fat_thickness: rng.range(6.0, 18.0),
            muscle_thickness: rng.range(8.0, 14.0),
            spine_centre,
            vertebra_radius: rng.range(16.0, 21.0),
            disc_period: rng.range(28.0, 34.0),
            disc_phase: rng.range(0.0, 30.0),
            rib_angles: (0..9)
                .map(|k| {
                    -0.9 * std::f64::consts::PI
                        + k as f64 * 0.225 * std::f64::consts::PI
                        + rng.range(-0.05, 0.05)
                })
                .collect(),
            rib_period: rng.range(22.0, 28.0),
            rib_top_z: depth * rng.range(0.35, 0.5),
            aorta: [
                spine_centre[0] + rng.range(8.0, 16.0),
                spine_centre[1] - 30.0,
                rng.range(10.0, 13.0),
            ],
            cava: [
                spine_centre[0] - rng.range(18.0, 26.0),
                spine_centre[1] - 28.0,
                rng.range(9.0, 12.0),
            ],
            kidneys,
            spleen,
            stomach,
            liver,
            liver_hu,
            vessels,
            tumours,
            bowel_phase: [0.0; 6].map(|_| rng.range(0.0, std::f64::consts::TAU)),
            bowel_waves: (0..6)
                .map(|_| {
                    let (theta, phi) = (
                        rng.range(0.0, std::f64::consts::TAU),
                        rng.range(-1.0, 1.0f64).acos(),
                    );
                    let k = std::f64::consts::TAU / rng.range(18.0, 45.0);
                    (
                        [
                            k * phi.sin() * theta.cos(),
                            k * phi.sin() * theta.sin(),
                            k * phi.cos(),
                        ],
                        rng.range(0.0, std::f64::consts::TAU),
                    )
                })
                .collect(),
            noise_std: rng.range(8.0, 18.0),
        }
    }

    /// (HU before noise, label) at a point in mm.
    fn voxel(&self, p: [f64; 3]) -> (f64, u8) {
        let [x, y, z] = p;
        let [cx, cy] = self.body_centre;
        let [ax, ay] = self.body_radii;
        // Elliptic "radius" of the body outline; the wall layers are measured in from it.
        let body_r = (((x - cx) / ax).powi(2) + ((y - cy) / ay).powi(2)).sqrt();
        if body_r > 1.0 {
            return (-1000.0, 0);
        }
        let depth_in = (1.0 - body_r) * ax.min(ay); // approximate mm from the skin
        if depth_in < 2.0 {
            return (40.0, 0); // skin
        }
        if depth_in < self.fat_thickness {
            return (-100.0, 0);
        }
        let angle = (y - cy).atan2(x - cx);
        if depth_in < self.fat_thickness + self.muscle_thickness {
            // Ribs sit in the wall of the upper abdomen, crossing slices obliquely.
            if z > self.rib_top_z {
                for (k, &a) in self.rib_angles.iter().enumerate() {
                    let da = (angle - a + std::f64::consts::PI).rem_euclid(std::f64::consts::TAU)
                        - std::f64::consts::PI;
                    let phase = (z + k as f64 * 7.0 + da * 40.0).rem_euclid(self.rib_period);
                    if da.abs() < 0.12 && phase < 9.0 {
                        return (
                            if !(2.0..=7.0).contains(&phase) {
                                RIB_CORTEX_HU
                            } else {
                                RIB_MARROW_HU
                            },
                            0,
                        );
                    }
                }
            }
            return (50.0, 0);
        }
        // Spine: vertebral body with cortical shell, discs, canal, spinous process.
        let [sx, sy] = self.spine_centre;
        let ds = ((x - sx).powi(2) + (y - sy).powi(2)).sqrt();
        if ds < self.vertebra_radius {
            let disc = (z - self.disc_phase).rem_euclid(self.disc_period) < 6.0;
            if disc {
                return (80.0, 0);
            }
            return (
                if ds > self.vertebra_radius - 2.5 {
                    750.0
                } else {
                    260.0
                },
                0,
            );
        }
        let canal_y = sy + self.vertebra_radius + 9.0;
        let dc = ((x - sx).powi(2) + (y - canal_y).powi(2)).sqrt();
        if dc < 8.0 {
            return (20.0, 0);
        }
        if dc < 13.0 || ((x - sx).abs() < 4.0 && y > canal_y && y < canal_y + 28.0) {
            return (650.0, 0);
        }
        let [axx, axy, ar] = self.aorta;
        if (x - axx).powi(2) + (y - axy).powi(2) < ar * ar {
            return (170.0, 0);
        }
        let [vcx, vcy, vr] = self.cava;
        if (x - vcx).powi(2) + (y - vcy).powi(2) < vr * vr {
            return (130.0, 0);
        }
        let in_liver = self.liver.iter().any(|b| b.level(p) < 1.0);
        if in_liver {
            for t in &self.tumours {
                let l = t.blob.level(p);
                if l < 1.0 {
                    // A faint enhancing rim on the larger lesions.
                    let rim = if t.blob.radii[0] > 12.0 && l > 0.85 {
                        25.0
                    } else {
                        0.0
                    };
                    return (t.hu + rim, 2);
                }
            }
            if self.vessels.iter().any(|v| v.contains(p)) {
                return (160.0, 1);
            }
            let texture = 4.0
                * ((x * 0.21 + self.bowel_phase[0]).sin() * (y * 0.17 + self.bowel_phase[1]).sin());
            return (self.liver_hu + texture, 1);
        }
        for k in &self.kidneys {
            let l = k.level(p);
            if l < 1.0 {
                return (if l > 0.6 { 180.0 } else { 30.0 }, 0);
            }
        }
        if self.spleen.level(p) < 1.0 {
            return (self.liver_hu - 10.0, 0);
        }
        let st = self.stomach.level(p);
        if st < 1.0 {
            // Gas rises anteriorly (smaller y); fluid below, wall around.
            return (
                if st > 0.9 {
                    45.0
                } else if y < self.stomach.centre[1] - self.stomach.radii[1] * 0.4 {
                    -950.0
                } else {
                    12.0
                },
                0,
            );
        }
        // Bowel and mesenteric fat: a smooth mix of soft tissue, fat and a few gas pockets.
        let mix: f64 = self
            .bowel_waves
            .iter()
            .map(|(k, ph)| (k[0] * x + k[1] * y + k[2] * z + ph).sin())
            .sum::<f64>()
            / 2.0;
        if mix > 1.3 {
            return (-900.0, 0);
        }
        (
            if mix > 0.0 {
                35.0
            } else if mix > -0.6 {
                -20.0
            } else {
                -90.0
            },
            0,
        )
    }
}

fn random_point_in(rng: &mut Rng, blob: &Blob, max_level: f64) -> [f64; 3] {
    for _ in 0..1000 {
        let p = [0, 1, 2].map(|a| blob.centre[a] + rng.range(-1.0, 1.0) * blob.radii[a]);
        if blob.level(p) < max_level {
            return p;
        }
    }
    blob.centre
}

/// One phantom: (image in HU, label) with LiTS-like geometry (axes L, P, S).
pub fn phantom(seed: u64, case: u64, shape_zyx: [usize; 3]) -> Result<(Volume, Volume)> {
    phantom_with_anatomy(seed, case, shape_zyx).map(|(image, label, _)| (image, label))
}

fn phantom_with_anatomy(
    seed: u64,
    case: u64,
    shape_zyx: [usize; 3],
) -> Result<(Volume, Volume, Anatomy)> {
    if shape_zyx.iter().any(|&d| d < 8) {
        return Err(HeparError::invalid(
            "synth::phantom",
            format!("shape (z, y, x) {shape_zyx:?}: every side must be at least 8"),
        ));
    }
    let mut rng = Rng::derive(seed, &[case]);
    let anatomy = Anatomy::draw(&mut rng, shape_zyx);
    let noise_seed = rng.next_u64();
    let [nz, ny, nx] = shape_zyx;
    let [px, py, pz] = anatomy.spacing_xyz;
    let n = nz * ny * nx;
    let mut image = vec![0f32; n];
    let mut label = vec![0f32; n];
    image
        .par_chunks_mut(nx)
        .zip(label.par_chunks_mut(nx))
        .enumerate()
        .for_each(|(row, (img, lab))| {
            let (k, j) = (row / ny, row % ny);
            let mut noise = Rng::derive(noise_seed, &[row as u64]);
            for i in 0..nx {
                let p = [
                    (i as f64 + 0.5) * px,
                    (j as f64 + 0.5) * py,
                    (k as f64 + 0.5) * pz,
                ];
                let (hu, l) = anatomy.voxel(p);
                let noisy = if hu <= -999.0 {
                    hu + noise.normal() * 3.0
                } else {
                    hu + noise.normal() * anatomy.noise_std
                };
                img[i] = noisy.round().clamp(-1024.0, 3071.0) as f32;
                lab[i] = l as f32;
            }
        });
    let mut image = Volume::new(image, shape_zyx, [pz, py, px])?;
    set_lps_geometry(&mut image, [nz, ny, nx], [pz, py, px]);
    let label = image.with_data(label)?;
    Ok((image, label, anatomy))
}

/// HU added to a fracture's voxels: a bright line across the rib (callus, displaced cortex).
const FRACTURE_EXTRA_HU: f32 = 700.0;

/// A rib-fracture phantom: the phantom of (seed, case) with 1-3 bright linear lesions, each a
/// capsule of radius 2.5 mm and length 16 mm through a rib voxel, running along z across the
/// rib. Returns (image in HU, label map of the lesions 1..n, n).
pub fn ribfrac_phantom(
    seed: u64,
    case: u64,
    shape_zyx: [usize; 3],
) -> Result<(Volume, Volume, usize)> {
    let (mut image, _, anatomy) = phantom_with_anatomy(seed, case, shape_zyx)?;
    let [nz, ny, nx] = shape_zyx;
    let [px, py, pz] = anatomy.spacing_xyz;
    let centre_of = |i: usize| {
        let (k, j, x) = (i / (ny * nx), (i / nx) % ny, i % nx);
        [
            (x as f64 + 0.5) * px,
            (j as f64 + 0.5) * py,
            (k as f64 + 0.5) * pz,
        ]
    };
    let rib_voxels: Vec<usize> = (0..nz * ny * nx)
        .filter(|&i| {
            let hu = anatomy.voxel(centre_of(i)).0;
            hu == RIB_CORTEX_HU || hu == RIB_MARROW_HU
        })
        .collect();
    let mut rng = Rng::derive(seed, &[case, 0xf4ac]);
    let mut labels = vec![0f32; image.data.len()];
    let mut count = 0;
    if !rib_voxels.is_empty() {
        for _ in 0..1 + rng.below(3) {
            let c = centre_of(rib_voxels[rng.below(rib_voxels.len())]);
            let lesion = Tube {
                a: [c[0], c[1], c[2] - 8.0],
                b: [c[0], c[1], c[2] + 8.0],
                radius: 2.5,
            };
            let label = (count + 1) as f32;
            let mut drawn = false;
            for (i, l) in labels.iter_mut().enumerate() {
                if *l == 0.0 && lesion.contains(centre_of(i)) {
                    *l = label;
                    image.data[i] += FRACTURE_EXTRA_HU;
                    drawn = true;
                }
            }
            count += drawn as usize;
        }
    }
    let label = image.with_data(labels)?;
    Ok((image, label, count))
}

/// Writes `cases` rib-fracture phantoms in the RibFrac layout: `out/images/RibFracK-image.nii.gz`
/// (int16 HU), `out/labels/RibFracK-label.nii.gz` (int16 components 1..n) and
/// `out/labels/ribfrac-info.csv` (`public_id,label_id,confidence,label_code`, a background row
/// per case), so `out/labels` is a truth folder of `hepar froc`.
pub fn write_ribfrac_dataset(
    out: &Path,
    cases: usize,
    seed: u64,
    shape_zyx: [usize; 3],
) -> Result<Vec<PathBuf>> {
    use crate::eval::detection_csv::{case_rows, to_detection_csv};
    let (images, labels) = (out.join("images"), out.join("labels"));
    for dir in [&images, &labels] {
        std::fs::create_dir_all(dir).map_err(|e| HeparError::io(dir, e))?;
    }
    let mut written = Vec::new();
    let mut rows = Vec::new();
    for case in 0..cases {
        let (image, label, count) = ribfrac_phantom(seed, case as u64, shape_zyx)?;
        let id = format!("RibFrac{case}");
        let image_path = images.join(format!("{id}-image.nii.gz"));
        let label_path = labels.join(format!("{id}-label.nii.gz"));
        image.write(&image_path, NiftiDataType::I16)?;
        label.write(&label_path, NiftiDataType::I16)?;
        rows.extend(case_rows(&id, &vec![1.0; count]));
        written.push(image_path);
        written.push(label_path);
    }
    let csv = labels.join("ribfrac-info.csv");
    crate::util::atomic_write::write_atomic(&csv, to_detection_csv(&rows).as_bytes())?;
    written.push(csv);
    Ok(written)
}

/// Voxel i runs to the patient's left, j to posterior, k to superior; the origin puts the volume
/// centre near world 0, as scanners roughly do.
fn set_lps_geometry(volume: &mut Volume, shape_zyx: [usize; 3], spacing_zyx: [f64; 3]) {
    let h = &mut volume.header;
    let [sz, sy, sx] = spacing_zyx;
    let origin = [
        (shape_zyx[2] as f64 - 1.0) / 2.0 * sx,
        (shape_zyx[1] as f64 - 1.0) / 2.0 * sy,
        -(shape_zyx[0] as f64 - 1.0) / 2.0 * sz,
    ];
    h.srow = [
        [-sx, 0.0, 0.0, origin[0]],
        [0.0, -sy, 0.0, origin[1]],
        [0.0, 0.0, sz, origin[2]],
    ];
    // Rotation by 180 degrees about z: quaternion (0, 0, 0, 1).
    h.quatern_bcd = [0.0, 0.0, 1.0];
    h.qoffset = origin;
    h.pixdim[0] = 1.0;
    h.qform_code = 1;
    h.sform_code = 1;
    h.descrip = "hepar synthetic CT phantom".into();
}

/// Writes `cases` phantoms as `volume-K.nii.gz` (int16 HU) and `segmentation-K.nii.gz` (uint8)
/// into `out`; returns the files written.
pub fn write_dataset(
    out: &Path,
    cases: usize,
    seed: u64,
    shape_zyx: [usize; 3],
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).map_err(|e| HeparError::io(out, e))?;
    let mut written = Vec::new();
    for case in 0..cases {
        let (image, label) = phantom(seed, case as u64, shape_zyx)?;
        let image_path = out.join(format!("volume-{case}.nii.gz"));
        let label_path = out.join(format!("segmentation-{case}.nii.gz"));
        image.write(&image_path, NiftiDataType::I16)?;
        label.write(&label_path, NiftiDataType::U8)?;
        written.push(image_path);
        written.push(label_path);
    }
    let marker = out.join(MARKER);
    let about = serde_json::json!({ "seed": seed, "cases": cases, "shape_zyx": shape_zyx });
    crate::util::atomic_write::write_atomic(&marker, format!("{about}\n").as_bytes())?;
    Ok(written)
}

/// The file `write_dataset` leaves beside the phantoms, so a folder of them is recognised as
/// synthetic wherever it is copied.
pub const MARKER: &str = "hepar-synthetic.json";

/// Whether `dir` holds phantoms written by [`write_dataset`].
pub fn is_synthetic_folder(dir: &Path) -> bool {
    dir.join(MARKER).is_file()
}
