//! Background batch preparation: worker threads build batches ahead of the trainer (augmentation
//! included) and hand them over in order through a bounded queue, so the trainer does not wait
//! when the data fits in memory. Batch contents depend only on (seed, epoch, batch index), never on
//! thread timing.
//!
//! Batches are plain arrays: images (N, C, D, H, W) or (N, C, H, W), labels (N, 1, ...) holding
//! the label values 0 background, 1 liver, 2 tumour.

use super::augment::{augment, Example};
use super::config::AugmentConfig;
use super::prepare::{Stage1Sample, Stage2Sample};
use super::sampling::StackSampler;
use crate::error::{HeparError, Result};
use crate::util::rng::Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub images: Vec<f32>,
    pub image_shape: Vec<usize>,
    pub labels: Vec<f32>,
    pub label_shape: Vec<usize>,
}

impl Batch {
    /// A 0/1 target from the labels: 1 where the label is at least `min_label` (1 for the
    /// stage-1 liver target, tumour included; 2 for the stage-2 tumour target).
    pub fn mask_at_least(&self, min_label: f32) -> Vec<f32> {
        self.labels
            .iter()
            .map(|&l| if l >= min_label { 1.0 } else { 0.0 })
            .collect()
    }
}

/// Something that can build batch `index` of an epoch on any thread.
pub trait BatchSource: Send + Sync {
    fn batch_count(&self) -> usize;
    fn make_batch(&self, index: usize) -> Result<Batch>;
}

/// Iterates over a source's batches in order while workers build the next ones.
pub struct Prefetcher {
    receiver: Option<Receiver<(usize, Result<Batch>)>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    next: usize,
    count: usize,
    pending: BTreeMap<usize, Result<Batch>>,
}

impl Prefetcher {
    /// Starts `workers` threads (at least 1) that keep up to `prefetch` finished batches queued.
    pub fn start(source: Arc<dyn BatchSource>, workers: usize, prefetch: usize) -> Self {
        let count = source.batch_count();
        let (sender, receiver) = sync_channel(prefetch.max(1));
        let counter = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handles = (0..workers.max(1))
            .map(|_| {
                let (source, sender, counter, stop) = (
                    source.clone(),
                    sender.clone(),
                    counter.clone(),
                    stop.clone(),
                );
                std::thread::spawn(move || loop {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let index = counter.fetch_add(1, Ordering::Relaxed);
                    if index >= count {
                        break;
                    }
                    let batch = source.make_batch(index);
                    if sender.send((index, batch)).is_err() {
                        break; // the consumer is gone
                    }
                })
            })
            .collect();
        Prefetcher {
            receiver: Some(receiver),
            workers: handles,
            stop,
            next: 0,
            count,
            pending: BTreeMap::new(),
        }
    }
}

impl Iterator for Prefetcher {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.next >= self.count {
            return None;
        }
        loop {
            if let Some(batch) = self.pending.remove(&self.next) {
                self.next += 1;
                return Some(batch);
            }
            match self.receiver.as_ref()?.recv() {
                Ok((index, batch)) => {
                    self.pending.insert(index, batch);
                }
                Err(_) => {
                    self.next = self.count;
                    return Some(Err(HeparError::invalid(
                        "Prefetcher",
                        "a loader worker stopped before its batch was ready",
                    )));
                }
            }
        }
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.receiver = None; // unblocks workers waiting to send
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

fn augment_rng(seed: u64, epoch: u64, batch: usize, item: usize) -> Rng {
    Rng::derive(seed, &[epoch, batch as u64, item as u64])
}

/// Whole stage-1 volumes: an epoch visits every case once, in a seeded order.
pub struct VolumeBatches {
    samples: Arc<Vec<Stage1Sample>>,
    order: Vec<usize>,
    batch_size: usize,
    augment: AugmentConfig,
    seed: u64,
    epoch: u64,
}

impl VolumeBatches {
    pub fn new(
        samples: Arc<Vec<Stage1Sample>>,
        batch_size: usize,
        augment: AugmentConfig,
        seed: u64,
        epoch: u64,
        shuffle: bool,
    ) -> Result<Self> {
        require_batches("VolumeBatches", samples.len(), batch_size)?;
        if let Some(s) = samples.iter().find(|s| s.shape_zyx != samples[0].shape_zyx) {
            return Err(HeparError::shape(
                "VolumeBatches",
                format!(
                    "case {} has shape {:?}, the first {:?}",
                    s.id, s.shape_zyx, samples[0].shape_zyx
                ),
            ));
        }
        let mut order: Vec<usize> = (0..samples.len()).collect();
        if shuffle {
            Rng::derive(seed, &[epoch, u64::MAX]).shuffle(&mut order);
        }
        Ok(VolumeBatches {
            samples,
            order,
            batch_size,
            augment,
            seed,
            epoch,
        })
    }
}

impl BatchSource for VolumeBatches {
    fn batch_count(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }

    fn make_batch(&self, index: usize) -> Result<Batch> {
        check_index(index, self.batch_count())?;
        let members = &self.order
            [index * self.batch_size..((index + 1) * self.batch_size).min(self.order.len())];
        let shape = self.samples[0].shape_zyx;
        let mut batch = empty_batch(members.len(), 1, &shape);
        for (item, &i) in members.iter().enumerate() {
            let s = &self.samples[i];
            let mut example = Example::new(s.image.clone(), s.label.clone(), 1, shape)?;
            augment(
                &mut example,
                &self.augment,
                &mut augment_rng(self.seed, self.epoch, index, item),
            );
            batch.images.extend_from_slice(&example.image);
            batch.labels.extend_from_slice(&example.label);
        }
        Ok(batch)
    }
}

fn check_index(index: usize, count: usize) -> Result<()> {
    if index >= count {
        return Err(HeparError::invalid(
            "make_batch",
            format!("batch {index} of an epoch of {count}"),
        ));
    }
    Ok(())
}

fn empty_batch(n: usize, channels: usize, spatial: &[usize]) -> Batch {
    let mut image_shape = vec![n, channels];
    image_shape.extend_from_slice(spatial);
    let mut label_shape = vec![n, 1];
    label_shape.extend_from_slice(spatial);
    let per: usize = spatial.iter().product();
    Batch {
        images: Vec::with_capacity(n * channels * per),
        image_shape,
        labels: Vec::with_capacity(n * per),
        label_shape,
    }
}

/// Stage-2 stacks drawn by [`StackSampler`] weights: `batches` batches of `batch_size` per epoch.
pub struct StackBatches {
    samples: Arc<Vec<Stage2Sample>>,
    /// (sample, stack) of every stack, the sampler's index space.
    index: Vec<(usize, usize)>,
    sampler: StackSampler,
    batches: usize,
    batch_size: usize,
    augment: AugmentConfig,
    /// Keras `ImageDataGenerator`'s affine instead of `augment`: the Keras U-Net's slices.
    keras_augment: Option<super::keras_ct::KerasAugmentConfig>,
    seed: u64,
    epoch: u64,
}

impl StackBatches {
    pub fn new(
        samples: Arc<Vec<Stage2Sample>>,
        sampling: &super::config::SamplingConfig,
        batches: usize,
        batch_size: usize,
        augment: AugmentConfig,
        epoch: u64,
    ) -> Result<Self> {
        let index: Vec<(usize, usize)> = samples
            .iter()
            .enumerate()
            .flat_map(|(i, s)| (0..s.case.stacks.len()).map(move |j| (i, j)))
            .collect();
        let first = samples
            .first()
            .ok_or_else(|| HeparError::invalid("StackBatches", "no stage-2 samples"))?;
        if let Some(s) = samples
            .iter()
            .find(|s| s.case.slices != first.case.slices || s.case.shape_yx != first.case.shape_yx)
        {
            return Err(HeparError::shape(
                "StackBatches",
                format!(
                    "case {} stacks differ in shape from case {}",
                    s.id, first.id
                ),
            ));
        }
        let kinds: Vec<_> = index
            .iter()
            .map(|&(i, j)| samples[i].case.stacks[j].kind)
            .collect();
        let sampler = StackSampler::new(&kinds, sampling)?;
        if batch_size == 0 {
            return Err(HeparError::invalid("StackBatches", "batch size 0"));
        }
        Ok(StackBatches {
            samples,
            index,
            sampler,
            batches,
            batch_size,
            augment,
            keras_augment: None,
            seed: sampling.seed,
            epoch,
        })
    }

    /// Augments with `[keras_ct.augment]` (its own seed) instead of `[augment]`.
    pub fn with_keras_augment(mut self, keras: super::keras_ct::KerasAugmentConfig) -> Self {
        self.keras_augment = Some(keras);
        self
    }

    /// How many stacks the sampler keeps.
    pub fn kept_stacks(&self) -> usize {
        self.sampler.kept.len()
    }
}

impl BatchSource for StackBatches {
    fn batch_count(&self) -> usize {
        self.batches
    }

    fn make_batch(&self, index: usize) -> Result<Batch> {
        check_index(index, self.batch_count())?;
        let first = &self.samples[0].case;
        let (c, [h, w]) = (first.slices, first.shape_yx);
        let mut batch = empty_batch(self.batch_size, c, &[h, w]);
        let mut draw_rng = Rng::derive(self.seed, &[self.epoch, index as u64, 0x4452_4157]);
        for item in 0..self.batch_size {
            let (i, j) = self.index[self.sampler.draw(&mut draw_rng)];
            let stack = &self.samples[i].case.stacks[j];
            let mut example = Example::new(stack.image.clone(), stack.label.clone(), c, [1, h, w])?;
            match &self.keras_augment {
                Some(keras) => keras.augment_example(
                    &mut example,
                    &mut augment_rng(keras.seed, self.epoch, index, item),
                ),
                None => augment(
                    &mut example,
                    &self.augment,
                    &mut augment_rng(self.seed, self.epoch, index, item),
                ),
            }
            batch.images.extend_from_slice(&example.image);
            batch.labels.extend_from_slice(&example.label);
        }
        Ok(batch)
    }
}

/// A batch source needs at least one sample and a positive batch size.
fn require_batches(source: &'static str, samples: usize, batch_size: usize) -> Result<()> {
    if samples == 0 || batch_size == 0 {
        return Err(HeparError::invalid(
            source,
            format!("{samples} samples, batch size {batch_size}"),
        ));
    }
    Ok(())
}
