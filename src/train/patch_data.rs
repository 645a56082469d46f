//! Patch-based training data for the 3D networks of torchio-style seeds (`unet3d_3class`,
//! `res3dunet`): `[patches.<arch>]` of `parameters.toml`, the cases read and normalised once, the
//! training batches of an epoch cut from the patch queue's fills (`data::patches`), and the
//! validation volumes, predicted whole by the sliding window (`infer::sliding_window`).
//!
//! The recipes:
//! - `unet3d_3class`: crop-or-pad to 200 x 256 x 256 (z, y, x), intensities rescaled to [-1, 1],
//!   a random affine per volume and epoch, 96^3 patches centred on labels 0 / 1 / 2 with
//!   probabilities 0.2 / 0.3 / 0.5, a queue of 40 patches, 5 per volume.
//! - `res3dunet`: CT window -200..1000 HU mapped onto [0, 1], 64^3 patches centred on the lesion
//!   label (fractures, or tumours on liver data) with probability 0.75, else on background.
//!
//! On the synthetic phantoms with `[train.synthetic] reduced_inputs` (and no `[patches.<arch>]`
//! section) volumes are cropped or padded to the reduced stage-1 shape and patches are 32^3.
//!
//! Data folders: any layout `data::dataset` reads (labels 0 / 1 / 2), or the RibFrac layout that
//! `hepar synth --kind ribfrac` writes (`images/<id>-image.nii.gz`, `labels/<id>-label.nii.gz`,
//! fracture components 1..n): there every fracture voxel becomes label 2, the lesion label of
//! the trainer's convention (0 background, 1 organ, 2 lesion), so the lesion target reads it.
//!
//! Batches are deterministic: batch `k` of epoch `e` holds patches `k * batch .. (k + 1) * batch`
//! of the epoch's patch sequence (its fills in order), and a fill depends only on (seed, epoch,
//! fill). The loader's workers build batches ahead of the trainer; the first worker that needs a
//! fill computes it (its volumes in parallel), the others wait for that one result, and a fill
//! is dropped once every batch that uses it is built.

use crate::data::config::DataParameters;
use crate::data::dataset::{fold_assignment, load_case, CaseFiles, CaseProblem, Dataset};
use crate::data::loader::{Batch, BatchSource};
use crate::data::patches::{
    fill_groups, fill_patches, fit_to_patch, LabelSampler, Patch, PatchFit, PatchPlacement,
    QueueConfig,
};
use crate::data::transforms::{compose, AffineRanges, Sample, Transform};
use crate::error::{HeparError, Result};
use crate::infer::sliding_window::{Blend, WindowOptions};
use crate::nn::Arch;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// How intensities are normalised before sampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntensityStep {
    /// `rescale_percentiles` of the volume mapped onto `rescale_range` (torchio).
    Rescale,
    /// HU clipped to `ct_window` and mapped onto [0, 1] (FracNet).
    CtWindow,
}

/// `[patches.<arch>]`: the transforms, the sampler and the queue of one network's recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchSettings {
    /// Centred crop or pad of every volume first (z, y, x; the image pads with 0, as torchio's
    /// `CropOrPad`); unset keeps each volume's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop_or_pad_zyx: Option<[usize; 3]>,
    pub intensity: IntensityStep,
    pub rescale_range: [f32; 2],
    pub rescale_percentiles: [f64; 2],
    pub ct_window: [f32; 2],
    /// A random affine (scales, degrees) of each training volume once per epoch.
    pub random_affine: bool,
    pub affine_scales: [f64; 2],
    pub affine_degrees: [f64; 2],
    pub patch_zyx: [usize; 3],
    /// Patch centres fall on voxels of `sample_labels[i]` with `sample_probabilities[i]`
    /// (absent labels drop out, the others renormalised).
    pub sample_labels: Vec<i64>,
    pub sample_probabilities: Vec<f64>,
    pub queue_length: usize,
    pub samples_per_volume: usize,
    /// A volume smaller than the patch: `pad` it or refuse it (`error`; the case is left out).
    pub small_volumes: PatchFit,
    /// The sliding window's overlap over the validation volumes.
    pub validation_overlap: f64,
}

impl PatchSettings {
    /// The seed recipe of `arch`, or `None` when it does not train on patches.
    pub fn seed_default(arch: Arch) -> Option<Self> {
        let unet = PatchSettings {
            crop_or_pad_zyx: Some([200, 256, 256]),
            intensity: IntensityStep::Rescale,
            rescale_range: [-1.0, 1.0],
            rescale_percentiles: [0.0, 100.0],
            ct_window: [-200.0, 1000.0],
            random_affine: true,
            affine_scales: AffineRanges::default().scales,
            affine_degrees: AffineRanges::default().degrees,
            patch_zyx: [96; 3],
            sample_labels: vec![0, 1, 2],
            sample_probabilities: vec![0.2, 0.3, 0.5],
            queue_length: 40,
            samples_per_volume: 5,
            small_volumes: PatchFit::Pad,
            validation_overlap: 0.5,
        };
        match arch {
            Arch::Unet3d3Class => Some(unet),
            Arch::Res3dUnet => Some(PatchSettings {
                crop_or_pad_zyx: None,
                intensity: IntensityStep::CtWindow,
                random_affine: false,
                patch_zyx: [64; 3],
                sample_labels: vec![0, 2],
                sample_probabilities: vec![0.25, 0.75],
                ..unet
            }),
            _ => None,
        }
    }

    /// The recipe of `arch` sized for the reduced synthetic inputs: volumes cropped or padded to
    /// `volume_zyx`, 32^3 patches.
    pub fn synthetic_default(arch: Arch, volume_zyx: [usize; 3]) -> Option<Self> {
        Self::seed_default(arch).map(|s| PatchSettings {
            crop_or_pad_zyx: Some(volume_zyx),
            patch_zyx: [32; 3],
            ..s
        })
    }

    /// Checks the settings; errors name `section.key`.
    pub fn validate(&self, section: &str) -> Result<()> {
        let bad =
            |key: &str, msg: String| Err(HeparError::Config(format!("{section}.{key}: {msg}")));
        if self.patch_zyx.contains(&0) {
            return bad("patch_zyx", format!("{:?} has a zero size", self.patch_zyx));
        }
        if self.crop_or_pad_zyx.is_some_and(|s| s.contains(&0)) {
            return bad(
                "crop_or_pad_zyx",
                format!("{:?} has a zero size", self.crop_or_pad_zyx),
            );
        }
        if self.sample_labels.is_empty()
            || self.sample_labels.len() != self.sample_probabilities.len()
        {
            return bad(
                "sample_probabilities",
                format!(
                    "{} probabilities for the {} labels {:?} (need one per label, at least one)",
                    self.sample_probabilities.len(),
                    self.sample_labels.len(),
                    self.sample_labels
                ),
            );
        }
        if self
            .sample_probabilities
            .iter()
            .any(|p| !p.is_finite() || *p < 0.0)
            || self.sample_probabilities.iter().sum::<f64>() <= 0.0
        {
            return bad(
                "sample_probabilities",
                format!(
                    "{:?} must be finite, >= 0 and not all 0",
                    self.sample_probabilities
                ),
            );
        }
        if self.queue_length == 0 || self.samples_per_volume == 0 {
            return bad(
                "queue_length",
                format!(
                    "queue_length {} and samples_per_volume {} must be at least 1",
                    self.queue_length, self.samples_per_volume
                ),
            );
        }
        if !(0.0..1.0).contains(&self.validation_overlap) {
            return bad(
                "validation_overlap",
                format!("{} is not in [0, 1)", self.validation_overlap),
            );
        }
        Ok(())
    }

    fn label_probabilities(&self) -> Vec<(i64, f64)> {
        self.sample_labels
            .iter()
            .copied()
            .zip(self.sample_probabilities.iter().copied())
            .collect()
    }

    /// The steps applied once to every case (training and validation): crop-or-pad, intensity.
    fn fixed_transforms(&self) -> Vec<Transform> {
        let mut steps = Vec::new();
        if let Some(target) = self.crop_or_pad_zyx {
            steps.push(Transform::CropOrPad {
                target,
                image_fill: 0.0,
            });
        }
        steps.push(match self.intensity {
            IntensityStep::Rescale => Transform::RescaleIntensity {
                out_range: self.rescale_range,
                percentiles: self.rescale_percentiles,
            },
            IntensityStep::CtWindow => Transform::CtWindowMinMax {
                low: self.ct_window[0],
                high: self.ct_window[1],
            },
        });
        steps
    }

    /// The value of "nothing" after the intensity step: what padding takes.
    fn pad_value(&self) -> f32 {
        match self.intensity {
            IntensityStep::Rescale => self.rescale_range[0],
            IntensityStep::CtWindow => 0.0,
        }
    }

    fn queue_config(&self, seed: u64) -> QueueConfig {
        let mut transforms = Vec::new();
        if self.random_affine {
            transforms.push(Transform::RandomAffine(AffineRanges {
                scales: self.affine_scales,
                degrees: self.affine_degrees,
            }));
        }
        QueueConfig {
            patch: self.patch_zyx,
            max_length: self.queue_length,
            samples_per_volume: self.samples_per_volume,
            placement: PatchPlacement::Labels(self.label_probabilities()),
            fit: self.small_volumes,
            pad_value: self.pad_value(),
            transforms,
            seed,
        }
    }
}

/// The cases of a folder in the RibFrac layout (`images/<id>-image.nii[.gz]` with
/// `labels/<id>-label.nii[.gz]`), or `None` when `root` is not one.
fn ribfrac_cases(root: &Path) -> Result<Option<(Vec<CaseFiles>, Vec<CaseProblem>)>> {
    let (images, labels) = (root.join("images"), root.join("labels"));
    if !images.is_dir() || !labels.is_dir() {
        return Ok(None);
    }
    let mut names: Vec<PathBuf> = std::fs::read_dir(&images)
        .map_err(|e| HeparError::io(&images, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    names.sort();
    let (mut cases, mut problems) = (Vec::new(), Vec::new());
    for image in names {
        let name = image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some((id, ext)) = ["-image.nii.gz", "-image.nii"].iter().find_map(|suffix| {
            name.strip_suffix(suffix)
                .map(|id| (id.to_string(), *suffix))
        }) else {
            continue;
        };
        let label = labels.join(format!("{id}{}", ext.replacen("-image", "-label", 1)));
        if !label.is_file() {
            problems.push(CaseProblem {
                path: image.clone(),
                reason: format!("no label file {}", label.display()),
            });
            continue;
        }
        let number = id
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .unwrap_or(u64::MAX);
        cases.push(CaseFiles {
            id,
            number,
            image,
            label,
        });
    }
    cases.sort_by(|a, b| (a.number, &a.id).cmp(&(b.number, &b.id)));
    if cases.is_empty() {
        return Err(HeparError::format(
            root,
            "no case in the RibFrac layout (images/<id>-image.nii.gz with labels/<id>-label.nii.gz)",
        ));
    }
    Ok(Some((cases, problems)))
}

/// A case read and normalised, with its id.
struct LoadedCase {
    id: String,
    sample: Sample,
}

/// Reads one case and applies the fixed steps; RibFrac components become the lesion label 2.
fn load_patch_case(
    case: &CaseFiles,
    settings: &PatchSettings,
    fracture_labels: bool,
) -> Result<LoadedCase> {
    let (image, label) = load_case(case)?;
    let label_values = if fracture_labels {
        label
            .data
            .iter()
            .map(|&v| if v > 0.5 { 2.0 } else { 0.0 })
            .collect()
    } else {
        label.data
    };
    let sample = Sample {
        image: image.data,
        label: Some(label_values),
        shape: image.shape_zyx,
        spacing_zyx: image.spacing_zyx,
    };
    Ok(LoadedCase {
        id: case.id.clone(),
        sample: compose(&settings.fixed_transforms(), sample, 0)?,
    })
}

/// A training case must take a patch (as configured) and have a voxel of a sampled label where
/// a patch fits; errors name the case and the labels.
fn check_training_case(case: &LoadedCase, settings: &PatchSettings) -> Result<()> {
    let name =
        |e: HeparError| HeparError::invalid("patch sampling", format!("case {}: {e}", case.id));
    let fitted = fit_to_patch(
        case.sample.clone(),
        settings.patch_zyx,
        settings.small_volumes,
        settings.pad_value(),
    )
    .map_err(name)?;
    let label = fitted.label.as_deref().unwrap_or_default();
    LabelSampler::new(
        label,
        fitted.shape,
        settings.patch_zyx,
        &settings.label_probabilities(),
    )
    .map_err(name)?;
    Ok(())
}

/// The sliding window of the validation volumes.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidationWindow {
    pub roi: Vec<usize>,
    pub options: WindowOptions,
}

/// A validation volume: case id and the normalised sample.
pub struct ValidationVolume {
    pub id: String,
    pub sample: Sample,
}

/// The prepared training and validation cases of a patch-trained network.
pub struct PatchTraining {
    volumes: Vec<Arc<Sample>>,
    ids: Vec<String>,
    queue: QueueConfig,
    batch_size: usize,
    pub validation: Vec<ValidationVolume>,
    pub window: ValidationWindow,
    pub problems: Vec<CaseProblem>,
}

fn report(problem: &CaseProblem) {
    eprintln!("warning: left out {problem}");
}

impl PatchTraining {
    /// Discovers `[data] root`, splits it by `[data]` folds, reads and normalises every case
    /// (in parallel, in order) and checks the training cases; a case that fails is left out
    /// with a warning naming it, the rest still load.
    pub fn prepare(
        data: &DataParameters,
        settings: &PatchSettings,
        batch_size: usize,
        section: &str,
    ) -> Result<Self> {
        settings.validate(section)?;
        let root = &data.data.root;
        let (cases, mut problems, fracture_labels) = match ribfrac_cases(root)? {
            Some((cases, problems)) => (cases, problems, true),
            None => {
                let dataset = Dataset::discover(root)?;
                (dataset.cases, dataset.problems, false)
            }
        };
        let folds = fold_assignment(cases.len(), data.data.folds, data.data.split_seed)?;
        let loaded: Vec<(usize, Result<LoadedCase>)> = cases
            .par_iter()
            .zip(folds.par_iter())
            .map(|(case, &fold)| (fold, load_patch_case(case, settings, fracture_labels)))
            .collect();
        let (mut volumes, mut ids, mut validation) = (Vec::new(), Vec::new(), Vec::new());
        for ((fold, result), case) in loaded.into_iter().zip(&cases) {
            let problem = |e: HeparError| CaseProblem {
                path: case.image.clone(),
                reason: e.to_string(),
            };
            match result {
                Err(e) => problems.push(problem(e)),
                Ok(c) if fold == data.data.fold => validation.push(ValidationVolume {
                    id: c.id,
                    sample: c.sample,
                }),
                Ok(c) => match check_training_case(&c, settings) {
                    Err(e) => problems.push(problem(e)),
                    Ok(()) => {
                        ids.push(c.id);
                        volumes.push(Arc::new(c.sample));
                    }
                },
            }
        }
        problems.iter().for_each(report);
        let none_left = |what: &str| {
            HeparError::format(
                root,
                format!(
                    "no usable {what} case in fold {} of {} ({} left out: {})",
                    data.data.fold,
                    data.data.folds,
                    problems.len(),
                    problems
                        .iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )
        };
        if volumes.is_empty() {
            return Err(none_left("training"));
        }
        if validation.is_empty() {
            return Err(none_left("validation"));
        }
        Ok(PatchTraining {
            volumes,
            ids,
            queue: settings.queue_config(data.sampling.seed),
            batch_size,
            validation,
            window: ValidationWindow {
                roi: settings.patch_zyx.to_vec(),
                options: WindowOptions {
                    overlap: settings.validation_overlap,
                    blend: Blend::Constant,
                    pad_value: settings.pad_value(),
                    ..WindowOptions::default()
                },
            },
            problems,
        })
    }

    pub fn training_cases(&self) -> usize {
        self.volumes.len()
    }

    /// The training cases' ids, in the order the queue numbers its volumes.
    pub fn training_ids(&self) -> &[String] {
        &self.ids
    }

    pub fn patch(&self) -> [usize; 3] {
        self.queue.patch
    }

    /// Patches per epoch: every training volume gives `samples_per_volume`.
    fn patches_per_epoch(&self) -> usize {
        self.volumes.len() * self.queue.samples_per_volume
    }

    pub fn batches_per_epoch(&self) -> usize {
        self.patches_per_epoch().div_ceil(self.batch_size)
    }

    /// The batches of epoch `epoch` (0-based).
    pub fn epoch_batches(self: &Arc<Self>, epoch: u64) -> PatchEpochBatches {
        let groups = fill_groups(self.volumes.len(), &self.queue, epoch);
        let mut fill_starts = Vec::with_capacity(groups.len() + 1);
        let mut start = 0;
        for g in &groups {
            fill_starts.push(start);
            start += g.len() * self.queue.samples_per_volume;
        }
        fill_starts.push(start);
        let batches = self.batches_per_epoch();
        let uses: Vec<usize> = (0..groups.len())
            .map(|f| {
                (0..batches)
                    .filter(|&k| {
                        let (a, b) = self.batch_range(k);
                        a < fill_starts[f + 1] && b > fill_starts[f]
                    })
                    .count()
            })
            .collect();
        PatchEpochBatches {
            training: self.clone(),
            epoch,
            groups,
            fill_starts,
            uses,
            fills: Mutex::new(BTreeMap::new()),
        }
    }

    /// The patches `[a, b)` of an epoch's sequence that batch `k` holds.
    fn batch_range(&self, k: usize) -> (usize, usize) {
        let a = k * self.batch_size;
        (a, (a + self.batch_size).min(self.patches_per_epoch()))
    }
}

/// One fill of an epoch: computed once by the first worker that needs it.
struct FillSlot {
    patches: OnceLock<std::result::Result<Arc<Vec<Patch>>, String>>,
    uses_left: AtomicUsize,
}

/// The training batches of one epoch (see the module documentation).
pub struct PatchEpochBatches {
    training: Arc<PatchTraining>,
    epoch: u64,
    groups: Vec<Vec<usize>>,
    /// The first patch of each fill in the epoch's sequence, and the total at the end.
    fill_starts: Vec<usize>,
    /// How many batches take patches from each fill.
    uses: Vec<usize>,
    fills: Mutex<BTreeMap<usize, Arc<FillSlot>>>,
}

impl PatchEpochBatches {
    fn slot(&self, fill: usize) -> Arc<FillSlot> {
        let mut fills = self.fills.lock().unwrap_or_else(|p| p.into_inner());
        fills
            .entry(fill)
            .or_insert_with(|| {
                Arc::new(FillSlot {
                    patches: OnceLock::new(),
                    uses_left: AtomicUsize::new(self.uses[fill]),
                })
            })
            .clone()
    }

    /// Fill `fill`'s patches; an error names the case that could not be sampled.
    fn fill(&self, fill: usize) -> Result<Arc<Vec<Patch>>> {
        let t = &self.training;
        let slot = self.slot(fill);
        let computed = slot.patches.get_or_init(|| {
            let group = &self.groups[fill];
            fill_patches(&t.volumes, &t.queue, self.epoch, fill, group)
                .map(Arc::new)
                .map_err(|e| {
                    // Name the failing case: sample the fill's volumes one by one.
                    let culprit = group.iter().find(|&&v| {
                        fill_patches(&t.volumes, &t.queue, self.epoch, fill, &[v]).is_err()
                    });
                    match culprit {
                        Some(&v) => format!("case {} (epoch {}): {e}", t.ids[v], self.epoch + 1),
                        None => e.to_string(),
                    }
                })
        });
        computed
            .clone()
            .map_err(|msg| HeparError::invalid("patch queue", msg))
    }

    /// Batch `index` used fill `fill`: drops it when no other batch needs it.
    fn release(&self, fill: usize) {
        let slot = self.slot(fill);
        if slot.uses_left.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut fills = self.fills.lock().unwrap_or_else(|p| p.into_inner());
            fills.remove(&fill);
        }
    }
}

impl BatchSource for PatchEpochBatches {
    fn batch_count(&self) -> usize {
        self.training.batches_per_epoch()
    }

    fn make_batch(&self, index: usize) -> Result<Batch> {
        if index >= self.batch_count() {
            return Err(HeparError::invalid(
                "patch batches",
                format!("batch {index} of {}", self.batch_count()),
            ));
        }
        let (a, b) = self.training.batch_range(index);
        let patch = self.training.patch();
        let voxels: usize = patch.iter().product();
        let n = b - a;
        let mut images = Vec::with_capacity(n * voxels);
        let mut labels = Vec::with_capacity(n * voxels);
        let used: Vec<usize> = (0..self.groups.len())
            .filter(|&f| a < self.fill_starts[f + 1] && b > self.fill_starts[f])
            .collect();
        for &f in &used {
            let patches = self.fill(f)?;
            let (from, to) = (
                a.max(self.fill_starts[f]) - self.fill_starts[f],
                b.min(self.fill_starts[f + 1]) - self.fill_starts[f],
            );
            for p in &patches[from..to] {
                images.extend_from_slice(&p.image);
                match &p.label {
                    Some(l) => labels.extend_from_slice(l),
                    None => labels.resize(labels.len() + voxels, 0.0),
                }
            }
        }
        for f in used {
            self.release(f);
        }
        let mut shape = vec![n, 1];
        shape.extend_from_slice(&patch);
        Ok(Batch {
            images,
            image_shape: shape.clone(),
            labels,
            label_shape: shape,
        })
    }
}
