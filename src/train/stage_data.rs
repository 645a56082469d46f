//! A stage's prepared cases as the trainer sees them: a batch source per training epoch
//! (augmented, built by the loader's workers) and fixed, unaugmented validation batches grouped
//! by case.

use super::config::{Stage, StageTraining};
use super::patch_data::{PatchSettings, PatchTraining, ValidationWindow};
use crate::data::config::DataParameters;
use crate::data::liver_boxes::LiverBoxes;
use crate::data::loader::{BatchSource, StackBatches, VolumeBatches};
use crate::data::prepare::{stage1_split, stage2_split, Stage1Sample, Stage2Sample};
use crate::error::{HeparError, Result};
use std::sync::Arc;

/// One validation forward pass: inputs and the label map (0 background, 1 liver, 2 tumour; the
/// trainer makes the run's target from it), tagged with the case it belongs to.
pub struct ValidationBatch {
    pub case: usize,
    pub images: Vec<f32>,
    pub image_shape: Vec<usize>,
    pub target: Vec<f32>,
    pub target_shape: Vec<usize>,
}

enum TrainingCases {
    Volumes(Arc<Vec<Stage1Sample>>),
    Stacks(Arc<Vec<Stage2Sample>>),
    Photos(super::photo_data::PhotoTraining),
    /// 3D patches from the patch queue (see `patch_data`).
    Patches(Arc<PatchTraining>),
}

pub struct StageData {
    training: TrainingCases,
    data: DataParameters,
    batch_size: usize,
    batches_per_epoch: usize,
    pub validation: Vec<ValidationBatch>,
    pub validation_cases: usize,
    pub training_cases: usize,
    /// Network input channels and spatial shape.
    pub in_channels: usize,
    pub input_shape: Vec<usize>,
    /// The classes a photo dataset defines (2 or 3); `None`: the target's.
    pub classes: Option<usize>,
    /// The Keras U-Net's slices (`[keras_ct]`) train with its own augmentation.
    keras_augment: Option<crate::data::keras_ct::KerasAugmentConfig>,
}

fn report_problems(problems: &[crate::data::dataset::CaseProblem]) {
    for p in problems {
        eprintln!("warning: left out {p}");
    }
}

fn no_validation(data: &DataParameters) -> HeparError {
    HeparError::format(
        &data.data.root,
        format!(
            "no usable validation case in fold {} of {}: add cases or lower data.folds",
            data.data.fold, data.data.folds
        ),
    )
}

impl StageData {
    /// Discovers, splits and preprocesses the dataset for `stage` (through the cache); stage 2
    /// inside `liver_boxes` when given (predicted by a stage-1 network), else inside each label's
    /// liver.
    pub fn prepare(
        stage: Stage,
        data: &DataParameters,
        training: &StageTraining,
        liver_boxes: Option<&LiverBoxes>,
        show_progress: bool,
    ) -> Result<Self> {
        if super::photo_data::is_photo_dataset(&data.data.root) {
            let photos = super::photo_data::prepare_photos(data, training, show_progress)?;
            return Ok(StageData {
                training_cases: photos.training_cases,
                validation_cases: photos.validation_cases,
                batches_per_epoch: photos.training.batches_per_epoch(),
                training: TrainingCases::Photos(photos.training),
                data: data.clone(),
                batch_size: training.batch_size,
                validation: photos.validation,
                in_channels: photos.in_channels,
                input_shape: photos.input_shape,
                classes: Some(photos.classes),
                keras_augment: None,
            });
        }
        let batch_size = training.batch_size;
        match stage {
            Stage::Liver => {
                let split = stage1_split(data, show_progress)?;
                report_problems(&split.problems);
                if split.validation.is_empty() {
                    return Err(no_validation(data));
                }
                let shape = split.train[0].shape_zyx;
                let mut validation = Vec::new();
                for (case, s) in split.validation.iter().enumerate() {
                    validation.push(ValidationBatch {
                        case,
                        images: s.image.clone(),
                        image_shape: vec![1, 1, shape[0], shape[1], shape[2]],
                        target: s.label.clone(),
                        target_shape: vec![1, 1, shape[0], shape[1], shape[2]],
                    });
                }
                Ok(StageData {
                    training_cases: split.train.len(),
                    validation_cases: split.validation.len(),
                    batches_per_epoch: split.train.len().div_ceil(batch_size),
                    training: TrainingCases::Volumes(Arc::new(split.train)),
                    data: data.clone(),
                    batch_size,
                    validation,
                    in_channels: 1,
                    input_shape: shape.to_vec(),
                    classes: None,
                    keras_augment: None,
                })
            }
            Stage::Tumor => {
                let split = stage2_split(data, liver_boxes, show_progress)?;
                report_problems(&split.problems);
                let first = &split.train[0].case;
                let (slices, [h, w]) = (first.slices, first.shape_yx);
                let mut validation = Vec::new();
                for (case, s) in split.validation.iter().enumerate() {
                    for chunk in s.case.stacks.chunks(batch_size) {
                        let n = chunk.len();
                        validation.push(ValidationBatch {
                            case,
                            images: chunk
                                .iter()
                                .flat_map(|st| st.image.iter().copied())
                                .collect(),
                            image_shape: vec![n, slices, h, w],
                            target: chunk
                                .iter()
                                .flat_map(|st| st.label.iter().copied())
                                .collect(),
                            target_shape: vec![n, 1, h, w],
                        });
                    }
                }
                if validation.is_empty() {
                    return Err(no_validation(data));
                }
                Ok(StageData {
                    training_cases: split.train.len(),
                    validation_cases: split.validation.len(),
                    batches_per_epoch: training.batches_per_epoch.unwrap_or(1),
                    training: TrainingCases::Stacks(Arc::new(split.train)),
                    data: data.clone(),
                    batch_size,
                    validation,
                    in_channels: slices,
                    input_shape: vec![h, w],
                    classes: None,
                    keras_augment: crate::data::prepare::keras_ct_applies(data)?
                        .then(|| data.keras_ct.augment.clone()),
                })
            }
        }
    }

    /// Patch-based training (`[patches.<arch>]`): validation volumes whole, predicted by the
    /// sliding window of [`Self::validation_window`].
    pub fn prepare_patches(
        data: &DataParameters,
        training: &StageTraining,
        patches: &PatchSettings,
        section: &str,
    ) -> Result<Self> {
        let prepared = PatchTraining::prepare(data, patches, training.batch_size, section)?;
        let validation = prepared
            .validation
            .iter()
            .enumerate()
            .map(|(case, v)| {
                let [z, y, x] = v.sample.shape;
                ValidationBatch {
                    case,
                    images: v.sample.image.clone(),
                    image_shape: vec![1, 1, z, y, x],
                    target: v.sample.label.clone().unwrap_or_default(),
                    target_shape: vec![1, 1, z, y, x],
                }
            })
            .collect();
        Ok(StageData {
            training_cases: prepared.training_cases(),
            validation_cases: prepared.validation.len(),
            batches_per_epoch: prepared.batches_per_epoch(),
            input_shape: prepared.patch().to_vec(),
            training: TrainingCases::Patches(Arc::new(prepared)),
            data: data.clone(),
            batch_size: training.batch_size,
            validation,
            in_channels: 1,
            classes: None,
            keras_augment: None,
        })
    }

    /// The window validation volumes are predicted through, when they are not one forward pass.
    pub fn validation_window(&self) -> Option<&ValidationWindow> {
        match &self.training {
            TrainingCases::Patches(p) => Some(&p.window),
            _ => None,
        }
    }

    pub fn batches_per_epoch(&self) -> usize {
        self.batches_per_epoch
    }

    /// The training batches of epoch `epoch` (0-based): shuffled and augmented from seeds, so a
    /// resumed run sees the batches it would have seen.
    pub fn training_source(&self, epoch: u64) -> Result<Arc<dyn BatchSource>> {
        let augment = self.data.augment.clone();
        Ok(match &self.training {
            TrainingCases::Volumes(samples) => Arc::new(VolumeBatches::new(
                samples.clone(),
                self.batch_size,
                augment,
                self.data.sampling.seed,
                epoch,
                true,
            )?),
            TrainingCases::Stacks(samples) => {
                let batches = StackBatches::new(
                    samples.clone(),
                    &self.data.sampling,
                    self.batches_per_epoch,
                    self.batch_size,
                    augment,
                    epoch,
                )?;
                Arc::new(match &self.keras_augment {
                    Some(keras) => batches.with_keras_augment(keras.clone()),
                    None => batches,
                })
            }
            TrainingCases::Photos(photos) => photos.source(epoch),
            TrainingCases::Patches(p) => Arc::new(p.epoch_batches(epoch)),
        })
    }
}
