//! The coarse-to-fine pipeline of `hepar predict`, as the seed project ran it.
//!
//! Stage 1 (liver): the CT preprocessed as the liver network was trained, one forward pass, the
//! probabilities resampled onto the CT's own grid, thresholded at 0.5 and reduced to their largest
//! 26-connected component. Stage 2 (tumour): the CT cut into 2.5D stacks inside the liver's
//! bounding box (plus the configured margin), the stacks run in batches, each stack's map pasted
//! back onto every slice it covers (slices covered twice take the mean), restricted to the liver,
//! thresholded at 0.5, then per axial slice a closing and an opening with a radius-3 disk and hole
//! filling. Labels: 0 background, 1 liver, 2 tumour.
//!
//! Without a liver network, a liver mask read from a file stands in for stage 1 (the tumour
//! stage always needs to know where the liver is).

use super::model_source::ArchChoice;
use super::postprocess::{
    close_slices, fill_holes_slices, largest_component, open_slices, Connectivity,
};
use crate::backend::Device;
use crate::data::config::{DataParameters, Stage1Config, Stage2Config};
use crate::data::preprocess::{self, Stage2Case, LABEL_LIVER, LABEL_TUMOUR};
use crate::data::resize::{resize_yx, Interpolation};
use crate::data::restore::stage1_to_source;
use crate::data::Volume;
use crate::error::{HeparError, Result};
use crate::nn::{Arch, Network};
use crate::tensor::Tensor;
use crate::train::Stage;
use std::path::{Path, PathBuf};

/// Probability above which a voxel belongs to the mask.
pub const THRESHOLD: f32 = 0.5;
/// Radius of the disk used by the per-slice closing and opening of the tumour mask.
pub const TUMOUR_DISK_RADIUS: usize = 3;

/// A network with the preprocessing its inputs need.
pub struct StageModel<C> {
    pub network: Box<dyn Network>,
    pub preprocess: C,
    /// The file it came from (named in errors).
    pub path: PathBuf,
}

pub type LiverModel = StageModel<Stage1Config>;
pub type TumorModel = StageModel<Stage2Config>;

/// What the user named, the seed's network for the rest; naming another architecture drops the
/// seed's width and classes (that architecture's own defaults apply).
fn with_defaults(given: &ArchChoice, seed: ArchChoice) -> ArchChoice {
    let other_arch = given.arch.is_some() && given.arch != seed.arch;
    ArchChoice {
        arch: given.arch.or(seed.arch),
        in_channels: given.in_channels.or(seed.in_channels),
        base: given.base.or(if other_arch { None } else { seed.base }),
        classes: given
            .classes
            .or(if other_arch { None } else { seed.classes }),
    }
}

/// Whether `path` holds plain weights (a `.pth`, or a safetensors file that is not one of our
/// run checkpoints) rather than a run checkpoint.
fn is_state_dict(path: &Path) -> Result<bool> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("pth") || e.eq_ignore_ascii_case("pt"))
    {
        return Ok(true);
    }
    Ok(!crate::io::is_checkpoint(&crate::io::read_safetensors(
        path,
    )?))
}

/// The network in `path` and the data settings to preprocess with: a run checkpoint brings its
/// own (and must be of `stage`); a state dict (`.pth`, or plain safetensors weights) is the
/// network `seed_arch` describes, preprocessed with `fallback`.
fn load_stage(
    path: &Path,
    stage: Stage,
    seed_arch: super::model_source::ArchChoice,
    fallback: &DataParameters,
) -> Result<(Box<dyn Network>, DataParameters)> {
    if is_state_dict(path)? {
        let network = super::model_source::load_network(path, &seed_arch)?;
        return Ok((network, fallback.clone()));
    }
    let run = crate::train::load_run_checkpoint(path)?;
    if run.info.stage != stage {
        return Err(HeparError::format(
            path,
            format!(
                "this is a {} checkpoint, but it was given as the {} model",
                run.info.stage, stage
            ),
        ));
    }
    Ok((run.model(path)?, run.info.data.clone()))
}

impl LiverModel {
    /// A liver network: a `hepar train` checkpoint of a 3D network, or a `.pth` of the seed's
    /// `cotnext3d` (1 channel, width 16; `choice` names another architecture or width)
    /// preprocessed with `fallback` (the seed's defaults).
    pub fn load(
        path: &Path,
        fallback: &DataParameters,
        choice: &ArchChoice,
        device: Device,
    ) -> Result<Self> {
        let seed = with_defaults(
            choice,
            ArchChoice {
                arch: Some(Arch::CotNext3d),
                in_channels: Some(1),
                base: Some(16),
                classes: Some(1),
            },
        );
        let (network, data) = load_stage(path, Stage::Liver, seed, fallback)?;
        let config = network.config();
        if config.dims() != 3 || config.in_channels != 1 {
            return Err(HeparError::format(
                path,
                format!(
                    "the liver network must be 3D with one input channel; this {} is {}D with {}",
                    config.arch,
                    config.dims(),
                    config.in_channels
                ),
            ));
        }
        crate::nn::to_device(&*network, device)?;
        Ok(StageModel {
            network,
            preprocess: data.preprocess.stage1,
            path: path.to_path_buf(),
        })
    }
}

impl TumorModel {
    /// A tumour network: a `hepar train` checkpoint of a 2D network, or a `.pth` of the seed's
    /// `cotnext2d` (3 channels, width 32; `choice` names another architecture or width)
    /// preprocessed with `fallback`.
    pub fn load(
        path: &Path,
        fallback: &DataParameters,
        choice: &ArchChoice,
        device: Device,
    ) -> Result<Self> {
        let seed = with_defaults(
            choice,
            ArchChoice {
                arch: Some(Arch::CotNext2d),
                in_channels: Some(fallback.preprocess.stage2.stack_slices),
                base: Some(32),
                classes: Some(1),
            },
        );
        let (network, data) = load_stage(path, Stage::Tumor, seed, fallback)?;
        let config = network.config();
        let slices = data.preprocess.stage2.stack_slices;
        if config.dims() != 2 || config.in_channels != slices {
            return Err(HeparError::format(
                path,
                format!(
                    "the tumour network must be 2D with one input channel per stacked slice \
                     ({slices}); this {} is {}D with {}",
                    config.arch,
                    config.dims(),
                    config.in_channels
                ),
            ));
        }
        crate::nn::to_device(&*network, device)?;
        Ok(StageModel {
            network,
            preprocess: data.preprocess.stage2,
            path: path.to_path_buf(),
        })
    }
}

/// Where the liver comes from.
pub enum LiverSource<'a> {
    Model(&'a LiverModel),
    /// A label map on the CT's grid; voxels > 0 are liver.
    Mask(&'a Volume, &'a Path),
}

/// What the pipeline produced for one CT, all on its grid.
pub struct Prediction {
    /// 0 background, 1 liver, 2 tumour, with the CT's geometry.
    pub labels: Volume,
    /// Stage 1's probabilities resampled to the CT (when a liver network ran).
    pub liver_probability: Option<Vec<f32>>,
    /// Stage 2's reassembled probabilities, 0 outside the liver (when a tumour network ran).
    pub tumor_probability: Option<Vec<f32>>,
}

/// How the networks run.
#[derive(Clone, Copy, Debug)]
pub struct PipelineOptions {
    /// Tumour-stage stacks per forward pass.
    pub batch: usize,
    pub device: Device,
    /// A progress bar over the tumour stacks on stderr (indicatif hides it when stderr is no
    /// terminal).
    pub show_progress: bool,
}

/// Runs the pipeline on `source` (read from `path`, named in errors).
pub fn predict_case(
    source: &Volume,
    path: &Path,
    liver: LiverSource,
    tumor: Option<&TumorModel>,
    options: PipelineOptions,
) -> Result<Prediction> {
    source.check_finite(path)?;
    let (liver_mask, liver_probability) = match liver {
        LiverSource::Model(model) => {
            let (mask, probability) = liver_mask(model, source, options.device)?;
            (mask, Some(probability))
        }
        LiverSource::Mask(mask, mask_path) => {
            if mask.shape_zyx != source.shape_zyx {
                return Err(HeparError::format(
                    mask_path,
                    format!(
                        "liver mask shape (z, y, x) {:?} differs from the CT {} with {:?}",
                        mask.shape_zyx,
                        path.display(),
                        source.shape_zyx
                    ),
                ));
            }
            (mask.data.iter().map(|&v| v > 0.0).collect(), None)
        }
    };
    let tumor_probability = match tumor {
        Some(model) => Some(tumor_probability(model, source, &liver_mask, options)?),
        None => None,
    };
    let tumour_mask = match &tumor_probability {
        Some(p) => Some(tumour_mask(p, source.shape_zyx)?),
        None => None,
    };
    let labels = liver_mask
        .iter()
        .enumerate()
        .map(|(i, &in_liver)| {
            if tumour_mask.as_ref().is_some_and(|t| t[i]) {
                LABEL_TUMOUR
            } else if in_liver {
                LABEL_LIVER
            } else {
                0.0
            }
        })
        .collect();
    Ok(Prediction {
        labels: source.with_data(labels)?,
        liver_probability,
        tumor_probability,
    })
}

/// The probability of the network's foreground: the sigmoid of one output channel, or for several
/// classes (background, liver, tumour) the softmax mass of the classes from `first_class` on.
fn foreground_probability(logits: &Tensor, first_class: usize) -> Result<Vec<f32>> {
    let shape = logits.shape().to_vec();
    let classes = shape[1];
    if classes == 1 {
        return logits.sigmoid()?.try_to_vec_f32();
    }
    let first_class = first_class.min(classes - 1);
    let values = logits.softmax(1)?.try_to_vec_f32()?;
    let per_class: usize = shape[2..].iter().product();
    Ok((0..shape[0])
        .flat_map(|n| {
            let sample = &values[n * classes * per_class..(n + 1) * classes * per_class];
            (0..per_class).map(move |i| {
                (first_class..classes)
                    .map(|k| sample[k * per_class + i])
                    .sum::<f32>()
            })
        })
        .collect())
}

/// Stage 1: the liver mask on the source grid (probability above the threshold, largest
/// 26-connected component), and the probability it came from.
pub fn liver_mask(
    model: &LiverModel,
    source: &Volume,
    device: Device,
) -> Result<(Vec<bool>, Vec<f32>)> {
    let probability = liver_probability(model, source, device)?;
    let above: Vec<bool> = probability.iter().map(|&p| p > THRESHOLD).collect();
    let mask = largest_component(&above, source.shape_zyx, Connectivity::Full)?;
    Ok((mask, probability))
}

/// Stage 1: the liver probability on the source grid.
fn liver_probability(model: &LiverModel, source: &Volume, device: Device) -> Result<Vec<f32>> {
    let (image, _) = preprocess::stage1(source.clone(), None, &model.preprocess)?;
    let [d, h, w] = image.shape_zyx;
    let shape = [1, 1, d, h, w];
    model.network.config().check_input(&shape).map_err(|e| {
        HeparError::format(
            &model.path,
            format!(
                "the stage-1 input {:?} does not suit this network: {e}",
                [d, h, w]
            ),
        )
    })?;
    let x = Tensor::from_vec_on(image.data, &shape, device)?;
    let probability =
        crate::no_grad(|| foreground_probability(&model.network.forward(&x, false)?, 1))?;
    // Resampling probabilities (then thresholding) gives smoother borders than resampling a mask.
    Ok(stage1_to_source(&probability, [d, h, w], source, Interpolation::Linear)?.data)
}

/// Stage 2: the tumour probability on the source grid, 0 outside the liver (and everywhere when
/// the liver is empty).
fn tumor_probability(
    model: &TumorModel,
    source: &Volume,
    liver: &[bool],
    options: PipelineOptions,
) -> Result<Vec<f32>> {
    if !liver.contains(&true) {
        return Ok(vec![0.0; source.len()]);
    }
    let region = source.with_data(liver.iter().map(|&l| f32::from(u8::from(l))).collect())?;
    let case = preprocess::stage2(source.clone(), None, &region, &model.preprocess)?;
    let maps = run_stacks(model, &case, options)?;
    let mut probability = reassemble_stacks(&case, &maps, model.preprocess.stack_stride)?;
    for (p, &in_liver) in probability.iter_mut().zip(liver) {
        if !in_liver {
            *p = 0.0;
        }
    }
    Ok(probability)
}

/// The network's map (y, x) for every stack, `batch` stacks per forward pass.
fn run_stacks(
    model: &TumorModel,
    case: &Stage2Case,
    options: PipelineOptions,
) -> Result<Vec<Vec<f32>>> {
    let [h, w] = case.shape_yx;
    let per_stack = case.slices * h * w;
    let mut maps = Vec::with_capacity(case.stacks.len());
    let bar = progress_bar(options.show_progress, case.stacks.len());
    for chunk in case.stacks.chunks(options.batch.max(1)) {
        let shape = [chunk.len(), case.slices, h, w];
        model.network.config().check_input(&shape).map_err(|e| {
            HeparError::format(
                &model.path,
                format!(
                    "the stage-2 slices {:?} do not suit this network: {e}",
                    [h, w]
                ),
            )
        })?;
        let mut data = Vec::with_capacity(chunk.len() * per_stack);
        for stack in chunk {
            data.extend_from_slice(&stack.image);
        }
        let x = Tensor::from_vec_on(data, &shape, options.device)?;
        let probability =
            crate::no_grad(|| foreground_probability(&model.network.forward(&x, false)?, 2))?;
        if probability.len() != chunk.len() * h * w {
            return Err(HeparError::format(
                &model.path,
                format!(
                    "the network returned {} values for {} slices of {:?}",
                    probability.len(),
                    chunk.len(),
                    [h, w]
                ),
            ));
        }
        maps.extend(probability.chunks(h * w).map(<[f32]>::to_vec));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(maps)
}

fn progress_bar(show: bool, stacks: usize) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(stacks as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "tumour stacks [{bar:30}] {pos}/{len} ({elapsed}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Pastes each stack's map (resized to the crop) onto every crop slice the stack covers; a slice
/// covered by several stacks takes their mean, one covered by none (the last slice when the stride
/// leaves it out) the nearest covered slice's. Outside the crop the probability is 0.
pub fn reassemble_stacks(case: &Stage2Case, maps: &[Vec<f32>], stride: usize) -> Result<Vec<f32>> {
    if maps.len() != case.stacks.len() {
        return Err(HeparError::shape(
            "reassemble_stacks",
            format!("{} maps for {} stacks", maps.len(), case.stacks.len()),
        ));
    }
    let [_, h, w] = case.source_shape_zyx;
    let [z0, y0, x0] = case.crop.start_zyx;
    let [cd, ch, cw] = case.crop.shape_zyx;
    let plane = ch * cw;
    let mut sums = vec![0f32; cd * plane];
    let mut covers = vec![0u32; cd];
    for (s, map) in maps.iter().enumerate() {
        let resized = resize_yx(map, case.shape_yx, [ch, cw], Interpolation::Linear)?;
        let first = s * stride;
        // A crop thinner than a stack repeats its last slice: count each slice once.
        let last = (first + case.slices).min(cd);
        for z in first..last {
            covers[z] += 1;
            for (acc, &p) in sums[z * plane..(z + 1) * plane].iter_mut().zip(&resized) {
                *acc += p;
            }
        }
    }
    let covered: Vec<usize> = (0..cd).filter(|&z| covers[z] > 0).collect();
    let mut out = vec![0f32; case.source_shape_zyx.iter().product()];
    for z in 0..cd {
        let from = if covers[z] > 0 {
            z
        } else {
            match covered.iter().min_by_key(|&&c| c.abs_diff(z)) {
                Some(&c) => c,
                None => continue,
            }
        };
        let count = covers[from] as f32;
        let slice = &sums[from * plane..(from + 1) * plane];
        for y in 0..ch {
            let dst = ((z0 + z) * h + y0 + y) * w + x0;
            for (o, &s) in out[dst..dst + cw]
                .iter_mut()
                .zip(&slice[y * cw..(y + 1) * cw])
            {
                *o = s / count;
            }
        }
    }
    Ok(out)
}

/// The tumour mask: thresholded, then per axial slice closed and opened with the disk and its
/// holes filled.
fn tumour_mask(probability: &[f32], shape: [usize; 3]) -> Result<Vec<bool>> {
    let above: Vec<bool> = probability.iter().map(|&p| p > THRESHOLD).collect();
    let closed = close_slices(&above, shape, TUMOUR_DISK_RADIUS)?;
    let opened = open_slices(&closed, shape, TUMOUR_DISK_RADIUS)?;
    fill_holes_slices(&opened, shape)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::preprocess::{CropBox, Stack, StackKind};

    fn case(stacks: usize, crop_depth: usize) -> Stage2Case {
        Stage2Case {
            stacks: (0..stacks)
                .map(|s| Stack {
                    image: vec![],
                    label: vec![],
                    centre_z: 1 + 2 * s,
                    kind: StackKind::Background,
                })
                .collect(),
            slices: 3,
            shape_yx: [1, 1],
            crop: CropBox {
                start_zyx: [1, 0, 0],
                shape_zyx: [crop_depth, 1, 1],
            },
            source_shape_zyx: [crop_depth + 2, 1, 1],
        }
    }

    #[test]
    fn overlapping_stacks_are_averaged_and_uncovered_slices_take_the_nearest() {
        // Crop of 6 slices at z = 1..7, stride 2: stacks cover crop slices 0-2 and 2-4; crop
        // slice 2 is shared, crop slice 5 is covered by none.
        let maps = vec![vec![0.2], vec![0.6]];
        let out = reassemble_stacks(&case(2, 6), &maps, 2).unwrap();
        let expected = [0.0, 0.2, 0.2, 0.4, 0.6, 0.6, 0.6, 0.0];
        for (o, e) in out.iter().zip(expected) {
            assert!((o - e).abs() < 1e-6, "{out:?}");
        }
        assert!(reassemble_stacks(&case(2, 6), &maps[..1], 2).is_err());
    }

    #[test]
    fn tumour_mask_drops_specks_and_fills_holes_slice_by_slice() {
        // One 1x20x20 slice: a disk of radius 6 with a one-pixel hole, and a lone speck.
        let (h, w) = (20, 20);
        let mut probability = vec![0f32; h * w];
        for y in 0..h {
            for x in 0..w {
                let (dy, dx) = (y as isize - 9, x as isize - 9);
                if dy * dy + dx * dx <= 36 {
                    probability[y * w + x] = 0.9;
                }
            }
        }
        probability[9 * w + 9] = 0.1;
        probability[18 * w + 18] = 0.95;
        let mask = tumour_mask(&probability, [1, h, w]).unwrap();
        assert!(mask[9 * w + 9], "the hole was not filled");
        assert!(!mask[18 * w + 18], "the speck survived the opening");
        assert!(
            mask[9 * w + 3] && mask[9 * w + 15],
            "the disk lost its edge"
        );
    }

    #[test]
    fn several_classes_give_the_mass_from_the_first_foreground_class() {
        // Logits [1, 3, 1, 1]: softmax of (0, ln 2, ln 3) is (1/6, 2/6, 3/6).
        let logits = Tensor::from_vec(vec![0.0, 2f32.ln(), 3f32.ln()], &[1, 3, 1, 1]).unwrap();
        let liver = foreground_probability(&logits, 1).unwrap();
        let tumour = foreground_probability(&logits, 2).unwrap();
        assert!((liver[0] - 5.0 / 6.0).abs() < 1e-6 && (tumour[0] - 0.5).abs() < 1e-6);
        let one = Tensor::from_vec(vec![0.0], &[1, 1, 1, 1]).unwrap();
        assert_eq!(foreground_probability(&one, 1).unwrap(), vec![0.5]);
    }
}
