//! A photo dataset (Kvasir-SEG or Oxford-IIIT Pet, see `data::photos`) as a 2D network's
//! training data: the photos split into folds as the CT cases are, seeded shuffled batches
//! augmented by `[photos.augment]`, and one validation batch per held-out photo (so the scores
//! are means over photos). The classes come from the dataset: 2 for Kvasir, 3 for the pets.

use super::config::StageTraining;
use super::stage_data::ValidationBatch;
use crate::data::augment::Example;
use crate::data::config::DataParameters;
use crate::data::dataset::fold_assignment;
use crate::data::loader::{Batch, BatchSource};
use crate::data::photo_augment::{augment_photo, PhotoAugmentConfig};
use crate::data::photos::{find_photo_dataset, load_photos, PhotoSample};
use crate::error::{HeparError, Result};
use crate::util::rng::Rng;
use std::path::Path;
use std::sync::Arc;

/// Whether `root` holds a photo dataset rather than CT cases.
pub fn is_photo_dataset(root: &Path) -> bool {
    root.is_dir() && find_photo_dataset(root).is_some()
}

/// The training photos and how an epoch's batches are drawn from them.
pub struct PhotoTraining {
    samples: Arc<Vec<PhotoSample>>,
    channels: usize,
    size_hw: [usize; 2],
    augment: PhotoAugmentConfig,
    seed: u64,
    batch_size: usize,
    batches_per_epoch: usize,
}

/// What `StageData` is built from.
pub struct PhotoData {
    pub training: PhotoTraining,
    pub validation: Vec<ValidationBatch>,
    /// Photos held out for validation.
    pub validation_cases: usize,
    pub training_cases: usize,
    pub in_channels: usize,
    pub input_shape: Vec<usize>,
    pub classes: usize,
}

/// Loads and splits the photo dataset at `[data] root`.
pub fn prepare_photos(
    data: &DataParameters,
    training: &StageTraining,
    show_progress: bool,
) -> Result<PhotoData> {
    let set = load_photos(&data.data.root, &data.photos)?;
    for p in &set.problems {
        eprintln!("warning: left out {p}");
    }
    let folds = fold_assignment(set.samples.len(), data.data.folds, data.data.split_seed)?;
    let (mut train, mut validation_photos) = (Vec::new(), Vec::new());
    for (sample, fold) in set.samples.iter().zip(folds) {
        if fold == data.data.fold {
            validation_photos.push(sample.clone());
        } else {
            train.push(sample.clone());
        }
    }
    if train.is_empty() || validation_photos.is_empty() {
        return Err(HeparError::format(
            &set.root,
            format!(
                "{} usable photos give {} for training and {} for validation in fold {} of {}: \
                 add photos or change data.folds",
                set.samples.len(),
                train.len(),
                validation_photos.len(),
                data.data.fold,
                data.data.folds
            ),
        ));
    }
    if show_progress {
        println!(
            "photo dataset {:?} at {}: {} photos ({} left out), {} classes, {}x{} x {} channel(s)",
            set.layout,
            set.root.display(),
            set.samples.len(),
            set.problems.len(),
            set.classes(),
            set.size_hw[0],
            set.size_hw[1],
            set.channels
        );
    }
    let [h, w] = set.size_hw;
    let validation = validation_photos
        .iter()
        .enumerate()
        .map(|(case, s)| ValidationBatch {
            case,
            images: s.image.clone(),
            image_shape: vec![1, set.channels, h, w],
            target: s.label.clone(),
            target_shape: vec![1, 1, h, w],
        })
        .collect();
    let batch_size = training.batch_size;
    Ok(PhotoData {
        training_cases: train.len(),
        training: PhotoTraining {
            batches_per_epoch: training
                .batches_per_epoch
                .unwrap_or(train.len().div_ceil(batch_size)),
            samples: Arc::new(train),
            channels: set.channels,
            size_hw: set.size_hw,
            augment: data.photos.augment.clone(),
            seed: data.sampling.seed,
            batch_size,
        },
        validation,
        validation_cases: validation_photos.len(),
        in_channels: set.channels,
        input_shape: vec![h, w],
        classes: set.classes(),
    })
}

impl PhotoTraining {
    pub fn batches_per_epoch(&self) -> usize {
        self.batches_per_epoch
    }

    /// Epoch `epoch`'s batches: the photos in seeded shuffled passes, each augmented from a seed
    /// of (epoch, batch, slot), so a resumed run draws the same batches.
    pub fn source(&self, epoch: u64) -> Arc<dyn BatchSource> {
        let n = self.samples.len();
        let wanted = self.batches_per_epoch * self.batch_size;
        let mut order = Vec::with_capacity(wanted);
        let mut pass = 0u64;
        while order.len() < wanted {
            let mut shuffled: Vec<usize> = (0..n).collect();
            Rng::derive(self.seed, &[PHOTO_ORDER_KEY, epoch, pass]).shuffle(&mut shuffled);
            order.extend(shuffled);
            pass += 1;
        }
        order.truncate(wanted);
        Arc::new(PhotoBatches {
            samples: self.samples.clone(),
            channels: self.channels,
            size_hw: self.size_hw,
            augment: self.augment.clone(),
            seed: self.seed,
            epoch,
            batch_size: self.batch_size,
            order,
        })
    }
}

/// Keeps the photo order's and the augmentation's random streams apart.
const PHOTO_ORDER_KEY: u64 = 0x70686f746f;
const PHOTO_AUGMENT_KEY: u64 = 0x6175676d;

struct PhotoBatches {
    samples: Arc<Vec<PhotoSample>>,
    channels: usize,
    size_hw: [usize; 2],
    augment: PhotoAugmentConfig,
    seed: u64,
    epoch: u64,
    batch_size: usize,
    order: Vec<usize>,
}

impl BatchSource for PhotoBatches {
    fn batch_count(&self) -> usize {
        self.order.len() / self.batch_size
    }

    fn make_batch(&self, index: usize) -> Result<Batch> {
        let [h, w] = self.size_hw;
        let picks = &self.order[index * self.batch_size..(index + 1) * self.batch_size];
        let (mut images, mut labels) = (Vec::new(), Vec::new());
        for (slot, &i) in picks.iter().enumerate() {
            let s = &self.samples[i];
            let mut example =
                Example::new(s.image.clone(), s.label.clone(), self.channels, [1, h, w])?;
            let mut rng = Rng::derive(
                self.seed,
                &[PHOTO_AUGMENT_KEY, self.epoch, index as u64, slot as u64],
            );
            augment_photo(&mut example, &self.augment, &mut rng)?;
            images.extend(example.image);
            labels.extend(example.label);
        }
        let n = picks.len();
        Ok(Batch {
            images,
            image_shape: vec![n, self.channels, h, w],
            labels,
            label_shape: vec![n, 1, h, w],
        })
    }
}
