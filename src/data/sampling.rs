//! Which training samples are drawn, and how often.
//!
//! Stage 2: every stack with liver or tumour is kept, and a seeded fraction of the background-only
//! ones; draws are then weighted (tumour stacks `tumour_weight`, others `other_weight`).
//! Patch-wise 3D training: a patch is centred on a voxel of a class drawn with per-label
//! probabilities (classes absent from the case are dropped and the rest renormalised).

use super::config::SamplingConfig;
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
