//! Which training samples are drawn, and how often.
//!
//! Stage 2: every stack with liver or tumour is kept, and a seeded fraction of the background-only
//! ones; draws are then weighted (tumour stacks `tumour_weight`, others `other_weight`).
//! Patch-wise 3D training: a patch is centred on a voxel of a class drawn with per-label
//! probabilities (classes absent from the case are dropped and the rest renormalised).

use super::config::{PatchProbabilities, SamplingConfig};
use super::preprocess::StackKind;
use crate::error::{HeparError, Result};
use crate::util::rng::Rng;

/// Weighted sampling with replacement over the kept stacks.
#[derive(Debug, Clone)]
pub struct StackSampler {
    /// Indices (into the caller's stack list) of the kept stacks.
    pub kept: Vec<usize>,
    cumulative: Vec<f64>,
}

impl StackSampler {
    /// `kinds[i]` is the kind of stack i; the background subset is chosen with `cfg.seed`.
    pub fn new(kinds: &[StackKind], cfg: &SamplingConfig) -> Result<Self> {
        let mut rng = Rng::derive(cfg.seed, &[0x5354_4143_4b53]);
        let mut background: Vec<usize> = kinds
            .iter()
            .enumerate()
            .filter(|(_, k)| **k == StackKind::Background)
            .map(|(i, _)| i)
            .collect();
        rng.shuffle(&mut background);
        let keep_background =
            (background.len() as f64 * cfg.background_keep_fraction).round() as usize;
        let mut keep = vec![false; kinds.len()];
        for (i, k) in kinds.iter().enumerate() {
            keep[i] = *k != StackKind::Background;
        }
        for &i in &background[..keep_background.min(background.len())] {
            keep[i] = true;
        }
        let kept: Vec<usize> = (0..kinds.len()).filter(|&i| keep[i]).collect();
        if kept.is_empty() {
            return Err(HeparError::invalid(
                "StackSampler",
                format!("no stack kept out of {}", kinds.len()),
            ));
        }
        let mut total = 0.0;
        let cumulative = kept
            .iter()
            .map(|&i| {
                total += if kinds[i] == StackKind::Tumour {
                    cfg.tumour_weight
                } else {
                    cfg.other_weight
                };
                total
            })
            .collect();
        Ok(StackSampler { kept, cumulative })
    }

    /// One stack index (into the caller's list), drawn by weight.
    pub fn draw(&self, rng: &mut Rng) -> usize {
        let total = *self.cumulative.last().unwrap_or(&0.0);
        let target = rng.uniform() * total;
        let pos = self
            .cumulative
            .partition_point(|&c| c <= target)
            .min(self.kept.len() - 1);
        self.kept[pos]
    }
}

/// Draws the class a patch is centred on, then a voxel of that class.
pub struct PatchSampler {
    /// Voxel indices of each label (0, 1, 2).
    by_label: [Vec<usize>; 3],
    probabilities: [f64; 3],
    shape_zyx: [usize; 3],
}

impl PatchSampler {
    pub fn new(
        label: &[f32],
        shape_zyx: [usize; 3],
        probabilities: &PatchProbabilities,
    ) -> Result<Self> {
        if label.len() != shape_zyx.iter().product::<usize>() {
            return Err(HeparError::shape(
                "PatchSampler",
                format!("{} labels for shape {shape_zyx:?}", label.len()),
            ));
        }
        let mut by_label: [Vec<usize>; 3] = Default::default();
        for (i, &v) in label.iter().enumerate() {
            let class = v.round().clamp(0.0, 2.0) as usize;
            by_label[class].push(i);
        }
        let mut p = [
            probabilities.background,
            probabilities.liver,
            probabilities.tumour,
        ];
        for c in 0..3 {
            if by_label[c].is_empty() {
                p[c] = 0.0;
            }
        }
        let total: f64 = p.iter().sum();
        if total <= 0.0 {
            return Err(HeparError::invalid(
                "PatchSampler",
                "no label present has a positive probability",
            ));
        }
        Ok(PatchSampler {
            by_label,
            probabilities: p.map(|v| v / total),
            shape_zyx,
        })
    }

    /// The effective class probabilities after dropping absent classes.
    pub fn class_probabilities(&self) -> [f64; 3] {
        self.probabilities
    }

    /// (class, centre voxel (z, y, x)).
    pub fn draw_centre(&self, rng: &mut Rng) -> (usize, [usize; 3]) {
        let u = rng.uniform();
        let mut class = 2;
        let mut acc = 0.0;
        for c in 0..3 {
            acc += self.probabilities[c];
            if u < acc && !self.by_label[c].is_empty() {
                class = c;
                break;
            }
        }
        while self.by_label[class].is_empty() {
            class -= 1; // only reached through rounding at u ~ 1
        }
        let voxels = &self.by_label[class];
        let i = voxels[rng.below(voxels.len())];
        let [_, h, w] = self.shape_zyx;
        (class, [i / (h * w), (i / w) % h, i % w])
    }

    /// Start corner of a `patch_zyx` patch centred on `centre`, kept inside the volume where it
    /// fits (it may start "before" 0 when the volume is smaller, handled by [`extract_patch`]).
    pub fn patch_start(&self, centre: [usize; 3], patch_zyx: [usize; 3]) -> [isize; 3] {
        [0, 1, 2].map(|a| {
            let n = self.shape_zyx[a] as isize;
            let p = patch_zyx[a] as isize;
            let start = centre[a] as isize - p / 2;
            if p >= n {
                (n - p) / 2
            } else {
                start.clamp(0, n - p)
            }
        })
    }
}

/// Copies a patch starting at `start` (may be negative or run past the end: those voxels get
/// `fill`) out of a (z, y, x) array.
pub fn extract_patch(
    data: &[f32],
    shape_zyx: [usize; 3],
    start: [isize; 3],
    patch_zyx: [usize; 3],
    fill: f32,
) -> Vec<f32> {
    let [d, h, w] = shape_zyx.map(|v| v as isize);
    let mut out = vec![fill; patch_zyx.iter().product()];
    for pz in 0..patch_zyx[0] {
        let z = start[0] + pz as isize;
        if z < 0 || z >= d {
            continue;
        }
        for py in 0..patch_zyx[1] {
            let y = start[1] + py as isize;
            if y < 0 || y >= h {
                continue;
            }
            let x0 = start[2].max(0);
            let x1 = (start[2] + patch_zyx[2] as isize).min(w);
            if x0 >= x1 {
                continue;
            }
            let src = ((z * h + y) * w) as usize;
            let dst = (pz * patch_zyx[1] + py) * patch_zyx[2];
            let off = (x0 - start[2]) as usize;
            out[dst + off..dst + off + (x1 - x0) as usize]
                .copy_from_slice(&data[src + x0 as usize..src + x1 as usize]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_inside_and_padded() {
        let data: Vec<f32> = (0..27).map(|v| v as f32).collect();
        let p = extract_patch(&data, [3, 3, 3], [1, 1, 1], [2, 2, 2], -1.0);
        assert_eq!(p, vec![13.0, 14.0, 16.0, 17.0, 22.0, 23.0, 25.0, 26.0]);
        let q = extract_patch(&data, [3, 3, 3], [-1, 0, 2], [2, 1, 2], -1.0);
        assert_eq!(q, vec![-1.0, -1.0, 2.0, -1.0]);
    }
}
