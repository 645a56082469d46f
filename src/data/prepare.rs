//! Preprocessing a whole dataset for training: each case is read from the cache when its entry
//! exists, else read, preprocessed and stored. A case that fails is reported and skipped; the
//! others go on. A progress bar shows the work when asked for.

use super::cache::PreprocessCache;
use super::config::{DataParameters, Stage1Config, Stage2Config};
use super::dataset::{load_case, CaseFiles, CaseProblem, Dataset};
use super::liver_boxes::LiverBoxes;
use super::preprocess::{self, CropBox, Stack, StackKind, Stage2Case};
use crate::error::{HeparError, Result};
use std::path::Path;

/// A stage-1 training case: normalised image and label at the network's resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage1Sample {
    pub id: String,
    pub shape_zyx: [usize; 3],
    pub image: Vec<f32>,
    pub label: Vec<f32>,
}

/// The cases that were prepared and the ones that failed.
#[derive(Debug, Clone)]
pub struct Prepared<T> {
    pub items: Vec<T>,
    pub failures: Vec<CaseProblem>,
    /// How many items came from the cache.
    pub cache_hits: usize,
}

fn progress_bar(len: usize, show: bool, what: &str) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}

fn problem(case: &CaseFiles, e: &HeparError) -> CaseProblem {
    // Io and Format errors name their file already; other errors get the case id for context.
    let text = e.to_string();
    let names_a_file = [&case.image, &case.label]
        .iter()
        .any(|p| text.contains(&p.display().to_string()));
    CaseProblem {
        path: case.image.clone(),
        reason: if names_a_file {
            text
        } else {
            format!("case {}: {text}", case.id)
        },
    }
}

/// Runs `make` on each case through the cache, collecting failures.
fn prepare_all<T>(
    cases: &[CaseFiles],
    cache: Option<&PreprocessCache>,
    show_progress: bool,
    what: &str,
    load: impl Fn(&Path) -> Result<T>,
    store: impl Fn(&Path, &T) -> Result<()>,
    make: impl Fn(&CaseFiles) -> Result<T>,
) -> Prepared<T> {
    let bar = progress_bar(cases.len(), show_progress, what);
    let mut prepared = Prepared {
        items: Vec::new(),
        failures: Vec::new(),
        cache_hits: 0,
    };
    for case in cases {
        let entry = cache
            .map(|c| c.entry_path(&case.id, &[&case.image, &case.label]))
            .transpose();
        let result = entry.and_then(|entry| {
            if let Some(path) = entry.as_deref().filter(|p| p.is_file()) {
                match load(path) {
                    Ok(item) => return Ok((item, true)),
                    Err(e) => bar.println(format!("warning: rebuilding {}: {e}", path.display())),
                }
            }
            let item = make(case)?;
            if let Some(path) = entry.as_deref() {
                store(path, &item)?;
            }
            Ok((item, false))
        });
        match result {
            Ok((item, hit)) => {
                prepared.items.push(item);
                prepared.cache_hits += hit as usize;
            }
            Err(e) => {
                let p = problem(case, &e);
                bar.println(format!("skipping case {}: {}", case.id, p.reason));
                prepared.failures.push(p);
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    prepared
}

/// Stage 1 for every case (`cache_dir` None: no cache).
pub fn prepare_stage1(
    cases: &[CaseFiles],
    cfg: &Stage1Config,
    cache_dir: Option<&Path>,
    show_progress: bool,
) -> Result<Prepared<Stage1Sample>> {
    let cache = cache_dir
        .map(|d| PreprocessCache::new(d, "stage1", cfg))
        .transpose()?;
    Ok(prepare_all(
        cases,
        cache.as_ref(),
        show_progress,
        "preprocessing (stage 1)",
        |path| {
            let (meta, mut arrays) = PreprocessCache::read(path)?;
            let id = meta["id"].as_str().unwrap_or_default().to_string();
            if arrays.len() != 2
                || arrays[0].0.shape.len() != 3
                || arrays[0].0.shape != arrays[1].0.shape
            {
                return Err(HeparError::format(
                    path,
                    "corrupt cache entry: expected image and label of one 3D shape",
                ));
            }
            let label = arrays.pop().map(|a| a.1).unwrap_or_default();
            let (info, image) = arrays
                .pop()
                .ok_or_else(|| HeparError::format(path, "corrupt cache entry"))?;
            Ok(Stage1Sample {
                id,
                shape_zyx: [info.shape[0], info.shape[1], info.shape[2]],
                image,
                label,
            })
        },
        |path, s| {
            PreprocessCache::write(
                path,
                serde_json::json!({ "id": s.id }),
                &[
                    ("image", &s.shape_zyx, &s.image),
                    ("label", &s.shape_zyx, &s.label),
                ],
            )
        },
        |case| {
            let (image, label) = load_case(case)?;
            let (image, label) = preprocess::stage1(image, Some(&label), cfg)?;
            let label = label.map(|l| l.data).unwrap_or_default();
            Ok(Stage1Sample {
                id: case.id.clone(),
                shape_zyx: image.shape_zyx,
                image: image.data,
                label,
            })
        },
    ))
}

/// A stage-2 training case: its stacks (liver region taken from the label).
#[derive(Debug, Clone, PartialEq)]
pub struct Stage2Sample {
    pub id: String,
    pub case: Stage2Case,
}

/// Stage 2 for every case, the liver region given by each case's label.
pub fn prepare_stage2(
    cases: &[CaseFiles],
    cfg: &Stage2Config,
    cache_dir: Option<&Path>,
    show_progress: bool,
) -> Result<Prepared<Stage2Sample>> {
    prepare_stage2_cases(cases, cfg, None, cache_dir, show_progress)
}

/// Stage 2 for every case inside its box in `boxes` (predicted by a stage-1 network, as the
/// seed's `bbox.json`); a case without a box is left out and reported.
pub fn prepare_stage2_in_boxes(
    cases: &[CaseFiles],
    cfg: &Stage2Config,
    boxes: &LiverBoxes,
    cache_dir: Option<&Path>,
    show_progress: bool,
) -> Result<Prepared<Stage2Sample>> {
    prepare_stage2_cases(cases, cfg, Some(boxes), cache_dir, show_progress)
}

fn prepare_stage2_cases(
    cases: &[CaseFiles],
    cfg: &Stage2Config,
    boxes: Option<&LiverBoxes>,
    cache_dir: Option<&Path>,
    show_progress: bool,
) -> Result<Prepared<Stage2Sample>> {
    // The boxes are part of the settings: other boxes, another cache folder.
    let cache = match (cache_dir, boxes) {
        (Some(d), None) => Some(PreprocessCache::new(d, "stage2", cfg)?),
        (Some(d), Some(b)) => Some(PreprocessCache::new(
            d,
            "stage2-boxes",
            &(cfg, b.to_json()),
        )?),
        (None, _) => None,
    };
    Ok(prepare_all(
        cases,
        cache.as_ref(),
        show_progress,
        "preprocessing (stage 2)",
        read_stage2_entry,
        write_stage2_entry,
        |case| {
            let (image, label) = load_case(case)?;
            let stage2 = match boxes {
                None => preprocess::stage2(image, Some(&label), &label, cfg)?,
                Some(b) => {
                    let liver_box = b.get(case.number).ok_or_else(|| {
                        HeparError::invalid(
                            "stage 2",
                            format!(
                                "no liver box for patient_id {} (the stage-1 network found no liver)",
                                case.number
                            ),
                        )
                    })?;
                    preprocess::stage2_in_box(image, Some(&label), liver_box, cfg)?
                }
            };
            Ok(Stage2Sample {
                id: case.id.clone(),
                case: stage2,
            })
        },
    ))
}

/// Single-slice stage-2 samples from the Keras U-Net's CT steps (window, CLAHE, scaling, liver
/// slices less a margin), cached like stage 2.
pub fn prepare_keras_ct(
    cases: &[CaseFiles],
    keras: &crate::data::keras_ct::KerasCtConfig,
    shape_yx: [usize; 2],
    cache_dir: Option<&Path>,
    show_progress: bool,
) -> Result<Prepared<Stage2Sample>> {
    let cache = cache_dir
        .map(|d| PreprocessCache::new(d, "keras-ct", &(keras, shape_yx)))
        .transpose()?;
    Ok(prepare_all(
        cases,
        cache.as_ref(),
        show_progress,
        "preprocessing (Keras CT slices)",
        read_stage2_entry,
        write_stage2_entry,
        |case| {
            let (image, label) = load_case(case)?;
            Ok(Stage2Sample {
                id: case.id.clone(),
                case: keras.stage2_case(&image, &label, shape_yx)?,
            })
        },
    ))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Stage2Meta {
    id: String,
    slices: usize,
    shape_yx: [usize; 2],
    crop: CropBox,
    source_shape_zyx: [usize; 3],
    centres: Vec<usize>,
    kinds: Vec<StackKind>,
}

fn write_stage2_entry(path: &Path, s: &Stage2Sample) -> Result<()> {
    let c = &s.case;
    let meta = Stage2Meta {
        id: s.id.clone(),
        slices: c.slices,
        shape_yx: c.shape_yx,
        crop: c.crop,
        source_shape_zyx: c.source_shape_zyx,
        centres: c.stacks.iter().map(|st| st.centre_z).collect(),
        kinds: c.stacks.iter().map(|st| st.kind).collect(),
    };
    let images: Vec<f32> = c
        .stacks
        .iter()
        .flat_map(|st| st.image.iter().copied())
        .collect();
    let labels: Vec<f32> = c
        .stacks
        .iter()
        .flat_map(|st| st.label.iter().copied())
        .collect();
    let n = c.stacks.len();
    let meta = serde_json::to_value(meta).map_err(|e| HeparError::format(path, e.to_string()))?;
    PreprocessCache::write(
        path,
        meta,
        &[
            (
                "images",
                &[n, c.slices, c.shape_yx[0], c.shape_yx[1]],
                &images,
            ),
            ("labels", &[n, c.shape_yx[0], c.shape_yx[1]], &labels),
        ],
    )
}

fn read_stage2_entry(path: &Path) -> Result<Stage2Sample> {
    let (meta, arrays) = PreprocessCache::read(path)?;
    let meta: Stage2Meta = serde_json::from_value(meta)
        .map_err(|e| HeparError::format(path, format!("corrupt cache entry: {e}")))?;
    let n = meta.centres.len();
    let image_len = meta.slices * meta.shape_yx[0] * meta.shape_yx[1];
    let label_len = meta.shape_yx[0] * meta.shape_yx[1];
    if arrays.len() != 2
        || meta.kinds.len() != n
        || arrays[0].1.len() != n * image_len
        || arrays[1].1.len() != n * label_len
    {
        return Err(HeparError::format(
            path,
            "corrupt cache entry: stack arrays do not match their description",
        ));
    }
    let stacks = (0..n)
        .map(|i| Stack {
            image: arrays[0].1[i * image_len..(i + 1) * image_len].to_vec(),
            label: arrays[1].1[i * label_len..(i + 1) * label_len].to_vec(),
            centre_z: meta.centres[i],
            kind: meta.kinds[i],
        })
        .collect();
    Ok(Stage2Sample {
        id: meta.id,
        case: Stage2Case {
            stacks,
            slices: meta.slices,
            shape_yx: meta.shape_yx,
            crop: meta.crop,
            source_shape_zyx: meta.source_shape_zyx,
        },
    })
}

/// A dataset prepared and split for training: the fold in `[data]` is the validation set.
#[derive(Debug, Clone)]
pub struct PreparedSplit<T> {
    pub train: Vec<T>,
    pub validation: Vec<T>,
    /// Cases left out at discovery or preprocessing, with the reason.
    pub problems: Vec<CaseProblem>,
    pub cache_hits: usize,
}

fn prepare_split<T>(
    params: &DataParameters,
    prepare: impl Fn(&[CaseFiles]) -> Result<Prepared<T>>,
) -> Result<PreparedSplit<T>> {
    let d = &params.data;
    let dataset = Dataset::discover(&d.root)?;
    let (train_cases, validation_cases) = dataset.split(d.folds, d.fold, d.split_seed)?;
    let train = prepare(&train_cases)?;
    let validation = prepare(&validation_cases)?;
    let mut problems = dataset.problems;
    problems.extend(train.failures);
    problems.extend(validation.failures);
    if train.items.is_empty() {
        return Err(HeparError::format(
            &d.root,
            format!(
                "no usable training case in fold {} of {} ({} problems)",
                d.fold,
                d.folds,
                problems.len()
            ),
        ));
    }
    Ok(PreparedSplit {
        train: train.items,
        validation: validation.items,
        problems,
        cache_hits: train.cache_hits + validation.cache_hits,
    })
}

/// Discovers `[data] root`, splits it and prepares both sides for stage 1 (cached).
pub fn stage1_split(
    params: &DataParameters,
    show_progress: bool,
) -> Result<PreparedSplit<Stage1Sample>> {
    prepare_split(params, |cases| {
        prepare_stage1(
            cases,
            &params.preprocess.stage1,
            Some(&params.data.cache_dir),
            show_progress,
        )
    })
}

/// Whether stage 2's slices come from the `[keras_ct]` steps: a 3Dircadb folder with
/// `apply_to_3dircadb`.
pub fn keras_ct_applies(params: &DataParameters) -> Result<bool> {
    Ok(params.keras_ct.apply_to_3dircadb
        && Dataset::discover(&params.data.root)?.layout == crate::data::dataset::Layout::Ircadb)
}

/// Discovers `[data] root`, splits it and prepares both sides for stage 2 (cached): inside the
/// liver boxes when given, else inside each label's liver; a 3Dircadb folder goes through the
/// `[keras_ct]` steps when they apply to it.
pub fn stage2_split(
    params: &DataParameters,
    boxes: Option<&LiverBoxes>,
    show_progress: bool,
) -> Result<PreparedSplit<Stage2Sample>> {
    let keras = &params.keras_ct;
    if keras_ct_applies(params)? {
        return prepare_split(params, |cases| {
            prepare_keras_ct(
                cases,
                keras,
                params.preprocess.stage2.slice_shape_yx,
                Some(&params.data.cache_dir),
                show_progress,
            )
        });
    }
    prepare_split(params, |cases| {
        prepare_stage2_cases(
            cases,
            &params.preprocess.stage2,
            boxes,
            Some(&params.data.cache_dir),
            show_progress,
        )
    })
}
