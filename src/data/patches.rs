//! Patch sampling for patch-based 3D training, with torchio's semantics.
//!
//! A patch of size `p` along an axis of `n` voxels starts at `centre - p / 2`; valid centres lie
//! in `p / 2 ..= n - 1 - (p - 1) / 2`, so a patch always lies inside the volume. A volume smaller
//! than the patch is padded first (centred, see `transforms::crop_or_pad`) or refused, as
//! configured.
//!
//! - [`UniformSampler`]: every valid start equally likely.
//! - [`LabelSampler`]: torchio's `LabelSampler`: voxel `v` of label `l` weighs `p_l / n_l` (`n_l`
//!   the voxels of label `l` in the volume), voxels that are no valid centre weigh 0, and a centre
//!   is drawn in proportion to the weights. Labels absent from a volume thereby drop out and the
//!   others are renormalised; probabilities naming no present label are an error.
//! - [`PatchQueue`]: torchio's `Queue`: volumes in a seeded shuffled order each epoch, taken a
//!   few at a time (`max_length / samples_per_volume`), `samples_per_volume` patches drawn from
//!   each, the batch of patches shuffled and handed out; the next batch is prepared by a
//!   background thread (its volumes sampled in parallel) while the trainer uses the current one.
//!   Every draw comes from a generator keyed by (seed, epoch, volume), and results are gathered
//!   in volume order, so the patch sequence depends on the seed alone, not on the threads.
//!   The queue's random transforms (a random affine) are applied to each volume once per epoch,
//!   before its patches are drawn, as torchio transforms a subject when the queue loads it.
//!   [`fill_groups`] and [`fill_patches`] are the queue's steps, for sources that need random
//!   access to an epoch's patches (the trainer's batch workers, see `train::patch_data`).

use super::transforms::{compose, crop_or_pad, Sample, Transform};
use crate::error::{HeparError, Result};
use crate::util::rng::Rng;
use rayon::prelude::*;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

/// What to do with a volume smaller than the patch along some axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchFit {
    /// Pad it (centred; image with `fill`, label with 0) to at least the patch size.
    Pad,
    /// Refuse it with an error naming both sizes.
    Error,
}

/// Makes `sample` at least `patch` along every axis, as `fit` says.
pub fn fit_to_patch(sample: Sample, patch: [usize; 3], fit: PatchFit, fill: f32) -> Result<Sample> {
    if sample.shape.iter().zip(&patch).all(|(n, p)| n >= p) {
        return Ok(sample);
    }
    if fit == PatchFit::Error {
        return Err(HeparError::shape(
            "patch sampling",
            format!(
                "patch {patch:?} is larger than the volume {:?}; pad first or use a smaller patch",
                sample.shape
            ),
        ));
    }
    let target: [usize; 3] = std::array::from_fn(|a| sample.shape[a].max(patch[a]));
    Ok(Sample {
        image: crop_or_pad(&sample.image, sample.shape, target, fill)?,
        label: sample
            .label
            .as_ref()
            .map(|l| crop_or_pad(l, sample.shape, target, 0.0))
            .transpose()?,
        shape: target,
        spacing_zyx: sample.spacing_zyx,
    })
}

fn check_patch(shape: [usize; 3], patch: [usize; 3]) -> Result<()> {
    if patch.contains(&0) || shape.iter().zip(&patch).any(|(n, p)| p > n) {
        return Err(HeparError::shape(
            "patch sampling",
            format!("patch {patch:?} does not fit the volume {shape:?}"),
        ));
    }
    Ok(())
}

/// The start corner of the patch centred on `centre`.
pub fn patch_start(centre: [usize; 3], patch: [usize; 3]) -> [usize; 3] {
    std::array::from_fn(|a| centre[a] - patch[a] / 2)
}

fn is_valid_centre(z: usize, y: usize, x: usize, shape: [usize; 3], patch: [usize; 3]) -> bool {
    [z, y, x]
        .iter()
        .enumerate()
        .all(|(a, &c)| c >= patch[a] / 2 && c + (patch[a] - 1) / 2 < shape[a])
}

/// Uniformly placed patches.
#[derive(Clone, Debug)]
pub struct UniformSampler {
    shape: [usize; 3],
    patch: [usize; 3],
}

impl UniformSampler {
    pub fn new(shape: [usize; 3], patch: [usize; 3]) -> Result<Self> {
        check_patch(shape, patch)?;
        Ok(UniformSampler { shape, patch })
    }

    /// A patch's start corner.
    pub fn draw_start(&self, rng: &mut Rng) -> [usize; 3] {
        std::array::from_fn(|a| rng.below(self.shape[a] - self.patch[a] + 1))
    }
}

/// Patches centred on voxels of labels drawn with given probabilities.
#[derive(Clone, Debug)]
pub struct LabelSampler {
    /// Cumulative weights over `centres`.
    cumulative: Vec<f64>,
    centres: Vec<usize>,
    shape: [usize; 3],
    patch: [usize; 3],
}

impl LabelSampler {
    /// `probabilities`: (label value, probability) pairs; labels are the rounded label values.
    pub fn new(
        label: &[f32],
        shape: [usize; 3],
        patch: [usize; 3],
        probabilities: &[(i64, f64)],
    ) -> Result<Self> {
        check_patch(shape, patch)?;
        if label.len() != shape.iter().product::<usize>() {
            return Err(HeparError::shape(
                "LabelSampler",
                format!("{} labels for shape {shape:?}", label.len()),
            ));
        }
        if probabilities
            .iter()
            .any(|(_, p)| !p.is_finite() || *p < 0.0)
        {
            return Err(HeparError::invalid(
                "LabelSampler",
                format!("label probabilities {probabilities:?} must be finite and >= 0"),
            ));
        }
        let class_of = |v: f32| v.round() as i64;
        let counts: Vec<usize> = probabilities
            .iter()
            .map(|(l, _)| label.iter().filter(|&&v| class_of(v) == *l).count())
            .collect();
        let [_, h, w] = shape;
        let (mut centres, mut cumulative, mut total) = (Vec::new(), Vec::new(), 0.0);
        for (i, &v) in label.iter().enumerate() {
            let Some(k) = probabilities.iter().position(|(l, _)| *l == class_of(v)) else {
                continue;
            };
            let weight = probabilities[k].1 / counts[k] as f64;
            if weight > 0.0 && is_valid_centre(i / (h * w), (i / w) % h, i % w, shape, patch) {
                total += weight;
                centres.push(i);
                cumulative.push(total);
            }
        }
        if centres.is_empty() {
            return Err(HeparError::invalid(
                "LabelSampler",
                format!(
                    "no voxel of the labels {:?} with a positive probability where a patch of \
                     {patch:?} fits in the volume {shape:?}",
                    probabilities.iter().map(|(l, _)| *l).collect::<Vec<_>>()
                ),
            ));
        }
        Ok(LabelSampler {
            cumulative,
            centres,
            shape,
            patch,
        })
    }

    /// A patch centre (z, y, x).
    pub fn draw_centre(&self, rng: &mut Rng) -> [usize; 3] {
        let total = *self.cumulative.last().expect("a sampler has centres");
        let u = rng.uniform() * total;
        let k = self
            .cumulative
            .partition_point(|&c| c <= u)
            .min(self.centres.len() - 1);
        let i = self.centres[k];
        let [_, h, w] = self.shape;
        [i / (h * w), (i / w) % h, i % w]
    }

    /// A patch's start corner.
    pub fn draw_start(&self, rng: &mut Rng) -> [usize; 3] {
        patch_start(self.draw_centre(rng), self.patch)
    }
}

/// How a queue places its patches.
#[derive(Clone, Debug, PartialEq)]
pub enum PatchPlacement {
    Uniform,
    /// (label, probability) pairs, as [`LabelSampler`].
    Labels(Vec<(i64, f64)>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct QueueConfig {
    pub patch: [usize; 3],
    pub max_length: usize,
    pub samples_per_volume: usize,
    pub placement: PatchPlacement,
    pub fit: PatchFit,
    /// The image's padding value when a volume is padded to the patch.
    pub pad_value: f32,
    /// Applied to each volume (image and label) once per epoch before sampling, seeded by
    /// (seed, epoch, volume).
    pub transforms: Vec<Transform>,
    pub seed: u64,
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

/// One patch: image and label voxels of shape `patch`, the volume it came from and its start.
#[derive(Clone, Debug, PartialEq)]
pub struct Patch {
    pub image: Vec<f32>,
    pub label: Option<Vec<f32>>,
    pub volume: usize,
    pub start: [usize; 3],
}

/// The patches of one volume in one epoch.
fn volume_patches(
    sample: &Sample,
    index: usize,
    epoch: u64,
    cfg: &QueueConfig,
) -> Result<Vec<Patch>> {
    sample_volume(sample, index, epoch, cfg)
        .map_err(|e| HeparError::invalid("PatchQueue", format!("volume {index}: {e}")))
}

fn sample_volume(
    sample: &Sample,
    index: usize,
    epoch: u64,
    cfg: &QueueConfig,
) -> Result<Vec<Patch>> {
    let mut sample = sample.clone();
    if !cfg.transforms.is_empty() {
        let seed = Rng::derive(cfg.seed, &[0x5452_4e53, epoch, index as u64]).next_u64();
        sample = compose(&cfg.transforms, sample, seed)?;
    }
    let sample = fit_to_patch(sample, cfg.patch, cfg.fit, cfg.pad_value)?;
    let mut rng = Rng::derive(cfg.seed, &[0x5155_4555, epoch, index as u64]);
    let label_sampler = match &cfg.placement {
        PatchPlacement::Uniform => None,
        PatchPlacement::Labels(p) => {
            let label = sample.label.as_ref().ok_or_else(|| {
                HeparError::invalid("PatchQueue", "the volume has no label to sample on")
            })?;
            Some(LabelSampler::new(label, sample.shape, cfg.patch, p)?)
        }
    };
    let uniform = UniformSampler::new(sample.shape, cfg.patch)?;
    Ok((0..cfg.samples_per_volume)
        .map(|_| {
            let start = match &label_sampler {
                Some(s) => s.draw_start(&mut rng),
                None => uniform.draw_start(&mut rng),
            };
            let at = start.map(|v| v as isize);
            Patch {
                image: extract_patch(&sample.image, sample.shape, at, cfg.patch, cfg.pad_value),
                label: sample
                    .label
                    .as_ref()
                    .map(|l| extract_patch(l, sample.shape, at, cfg.patch, 0.0)),
                volume: index,
                start,
            }
        })
        .collect())
}

/// The volumes of each fill of epoch `epoch`: a seeded shuffle of `volume_count` volumes cut
/// into groups of `max_length / samples_per_volume` (at least 1).
pub fn fill_groups(volume_count: usize, cfg: &QueueConfig, epoch: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..volume_count).collect();
    Rng::derive(cfg.seed, &[0x4f52_4445, epoch]).shuffle(&mut order);
    let per_fill = (cfg.max_length / cfg.samples_per_volume.max(1)).max(1);
    order.chunks(per_fill).map(|c| c.to_vec()).collect()
}

/// The shuffled patches of fill `fill` (its volumes `group`, from [`fill_groups`]) of epoch
/// `epoch`; the volumes are sampled in parallel and gathered in order. An error names the
/// volume as `volume N` (its index in `volumes`).
pub fn fill_patches(
    volumes: &[Arc<Sample>],
    cfg: &QueueConfig,
    epoch: u64,
    fill: usize,
    group: &[usize],
) -> Result<Vec<Patch>> {
    let patches: Vec<Vec<Patch>> = group
        .par_iter()
        .map(|&v| volume_patches(&volumes[v], v, epoch, cfg))
        .collect::<Result<_>>()?;
    let mut all: Vec<Patch> = patches.into_iter().flatten().collect();
    Rng::derive(cfg.seed, &[0x5348_5546, epoch, fill as u64]).shuffle(&mut all);
    Ok(all)
}

/// A patch queue over in-memory volumes; iterate it for patches (endless, epoch after epoch).
pub struct PatchQueue {
    receiver: Receiver<Result<Vec<Patch>>>,
    current: std::vec::IntoIter<Patch>,
    _worker: std::thread::JoinHandle<()>,
}

impl PatchQueue {
    pub fn new(volumes: Vec<Sample>, cfg: QueueConfig) -> Result<Self> {
        if volumes.is_empty() || cfg.samples_per_volume == 0 || cfg.max_length == 0 {
            return Err(HeparError::invalid(
                "PatchQueue",
                format!(
                    "needs volumes ({}), samples_per_volume ({}) and max_length ({}) above 0",
                    volumes.len(),
                    cfg.samples_per_volume,
                    cfg.max_length
                ),
            ));
        }
        let volumes: Vec<Arc<Sample>> = volumes.into_iter().map(Arc::new).collect();
        // One prepared batch waits while the trainer consumes the current one.
        let (sender, receiver) = sync_channel(1);
        let worker = std::thread::spawn(move || {
            for epoch in 0.. {
                let groups = fill_groups(volumes.len(), &cfg, epoch);
                for (fill, group) in groups.iter().enumerate() {
                    let batch = fill_patches(&volumes, &cfg, epoch, fill, group);
                    let failed = batch.is_err();
                    if sender.send(batch).is_err() || failed {
                        return;
                    }
                }
            }
        });
        Ok(PatchQueue {
            receiver,
            current: Vec::new().into_iter(),
            _worker: worker,
        })
    }

    /// The next patch (an error names the volume that could not be sampled).
    pub fn next_patch(&mut self) -> Result<Patch> {
        loop {
            if let Some(p) = self.current.next() {
                return Ok(p);
            }
            let batch = self.receiver.recv().map_err(|_| {
                HeparError::invalid("PatchQueue", "the background sampler stopped")
            })??;
            self.current = batch.into_iter();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 8 x 8 x 8: label 1 in a 3^3 block, label 2 in a 2^3 block, background elsewhere.
    fn labels() -> Vec<f32> {
        let mut v = vec![0f32; 512];
        for z in 0..8 {
            for y in 0..8 {
                for x in 0..8 {
                    let i = (z * 8 + y) * 8 + x;
                    if (2..5).contains(&z) && (2..5).contains(&y) && (2..5).contains(&x) {
                        v[i] = 1.0;
                    } else if (5..7).contains(&z) && (5..7).contains(&y) && (5..7).contains(&x) {
                        v[i] = 2.0;
                    }
                }
            }
        }
        v
    }

    #[test]
    fn centre_labels_follow_the_probabilities_and_absent_labels_drop_out() {
        let label = labels();
        // Patch 1: every voxel is a valid centre, so label frequencies are the probabilities.
        let p = [(0, 0.2), (1, 0.3), (2, 0.5)];
        let sampler = LabelSampler::new(&label, [8, 8, 8], [1, 1, 1], &p).unwrap();
        let mut rng = Rng::new(1);
        let draws = 20000;
        let mut counts = [0usize; 3];
        for _ in 0..draws {
            let [z, y, x] = sampler.draw_centre(&mut rng);
            counts[label[(z * 8 + y) * 8 + x] as usize] += 1;
        }
        for (c, want) in [0.2, 0.3, 0.5].iter().enumerate() {
            let got = counts[c] as f64 / draws as f64;
            // 4 standard deviations of a binomial frequency.
            let tol = 4.0 * (want * (1.0 - want) / draws as f64).sqrt();
            assert!((got - want).abs() < tol, "label {c}: {got} vs {want}");
        }
        // Label 3 is absent: 1 and 2 share its mass in proportion 0.3 : 0.5.
        let p = [(1, 0.3), (2, 0.5), (3, 0.2)];
        let sampler = LabelSampler::new(&label, [8, 8, 8], [1, 1, 1], &p).unwrap();
        let ones = (0..draws)
            .filter(|_| {
                let [z, y, x] = sampler.draw_centre(&mut rng);
                label[(z * 8 + y) * 8 + x] == 1.0
            })
            .count() as f64
            / draws as f64;
        assert!((ones - 0.375).abs() < 0.015, "{ones}");
        // Only absent labels: a clear error.
        let err = LabelSampler::new(&label, [8, 8, 8], [1, 1, 1], &[(7, 1.0)]).unwrap_err();
        assert!(err.to_string().contains("labels [7]"), "{err}");
    }

    fn queue_config(seed: u64) -> QueueConfig {
        QueueConfig {
            patch: [4, 4, 4],
            max_length: 6,
            samples_per_volume: 3,
            placement: PatchPlacement::Labels(vec![(0, 0.2), (1, 0.3), (2, 0.5)]),
            fit: PatchFit::Pad,
            pad_value: 0.0,
            transforms: Vec::new(),
            seed,
        }
    }

    fn volumes() -> Vec<Sample> {
        (0..5)
            .map(|k| Sample {
                image: (0..512).map(|i| (i + 1000 * k) as f32).collect(),
                label: Some(labels()),
                shape: [8, 8, 8],
                spacing_zyx: [1.0; 3],
            })
            .collect()
    }

    #[test]
    fn the_queue_repeats_for_a_seed_and_takes_each_volume_per_epoch() {
        let take = |seed: u64| {
            let mut q = PatchQueue::new(volumes(), queue_config(seed)).unwrap();
            (0..30).map(|_| q.next_patch().unwrap()).collect::<Vec<_>>()
        };
        let a = take(4);
        assert_eq!(a, take(4));
        assert_ne!(a, take(5));
        // One epoch is 5 volumes x 3 patches; each volume gives 3 of them.
        for epoch in a.chunks(15) {
            for v in 0..5 {
                assert_eq!(epoch.iter().filter(|p| p.volume == v).count(), 3);
            }
        }
        // Patches of a fill (2 volumes) are shuffled together, and the image follows the patch.
        let first_fill: Vec<usize> = a[..6].iter().map(|p| p.volume).collect();
        assert!(
            first_fill.windows(2).any(|w| w[0] != w[1]),
            "{first_fill:?}"
        );
        let p = &a[0];
        let [z, y, x] = p.start;
        assert_eq!(p.image[0], ((z * 8 + y) * 8 + x + 1000 * p.volume) as f32);
        assert_eq!(p.label.as_ref().unwrap().len(), 64);
        // A volume without the named labels stops the queue with its number.
        let mut cfg = queue_config(1);
        cfg.placement = PatchPlacement::Labels(vec![(9, 1.0)]);
        let mut q = PatchQueue::new(volumes(), cfg).unwrap();
        let err = q.next_patch().unwrap_err().to_string();
        assert!(
            err.contains("volume") && err.contains("labels [9]"),
            "{err}"
        );
    }

    #[test]
    fn a_patch_is_copied_inside_and_padded_outside() {
        let data: Vec<f32> = (0..27).map(|v| v as f32).collect();
        let p = extract_patch(&data, [3, 3, 3], [1, 1, 1], [2, 2, 2], -1.0);
        assert_eq!(p, vec![13.0, 14.0, 16.0, 17.0, 22.0, 23.0, 25.0, 26.0]);
        let q = extract_patch(&data, [3, 3, 3], [-1, 0, 2], [2, 1, 2], -1.0);
        assert_eq!(q, vec![-1.0, -1.0, 2.0, -1.0]);
    }

    #[test]
    fn patches_stay_inside_and_small_volumes_pad_or_fail() {
        let label = labels();
        // Label 2 sits at 5..7; a patch of 4 needs centres in 2..=6: it still fits there.
        let sampler = LabelSampler::new(&label, [8, 8, 8], [4, 4, 4], &[(2, 1.0)]).unwrap();
        let mut rng = Rng::new(2);
        for _ in 0..200 {
            let start = sampler.draw_start(&mut rng);
            assert!(start.iter().all(|&s| s + 4 <= 8), "{start:?}");
        }
        let uniform = UniformSampler::new([8, 8, 8], [8, 3, 1]).unwrap();
        for _ in 0..200 {
            let s = uniform.draw_start(&mut rng);
            assert!(s[0] == 0 && s[1] <= 5 && s[2] <= 7);
        }
        let small = Sample {
            image: vec![1.0; 2 * 2 * 2],
            label: Some(vec![1.0; 8]),
            shape: [2, 2, 2],
            spacing_zyx: [1.0; 3],
        };
        let err = fit_to_patch(small.clone(), [4, 2, 2], PatchFit::Error, 0.0).unwrap_err();
        assert!(err.to_string().contains("larger than the volume"), "{err}");
        let padded = fit_to_patch(small, [4, 2, 2], PatchFit::Pad, -1.0).unwrap();
        assert_eq!(padded.shape, [4, 2, 2]);
        assert_eq!(padded.image[..4], [-1.0; 4]);
        assert_eq!(padded.label.unwrap()[12..], [0.0; 4]);
        assert!(UniformSampler::new([2, 2, 2], [3, 1, 1]).is_err());
    }
}
