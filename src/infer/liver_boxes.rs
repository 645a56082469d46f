//! Stage 1's liver boxes for a whole dataset, as the seed computed them before training its
//! tumour network (its `bbox.json`): every case's CT through the liver network, thresholded,
//! reduced to the largest 26-connected component, and boxed. Stage 2 then trains on stacks cut
//! from these boxes, the same crops it will see at inference, rather than from the labels.

use super::pipeline::{liver_mask, LiverModel};
use crate::backend::Device;
use crate::data::dataset::{CaseFiles, CaseProblem, Dataset};
use crate::data::liver_boxes::{LiverBoxes, BBOX_FILE};
use crate::data::preprocess::foreground_box;
use crate::data::Volume;
use crate::error::Result;
use crate::train::TrainParameters;
use std::path::Path;

/// The liver box of every case that stage 1 finds a liver in; the others are returned as
/// problems (they cannot enter stage 2).
pub fn predict_liver_boxes(
    model: &LiverModel,
    cases: &[CaseFiles],
    device: Device,
    show_progress: bool,
) -> Result<(LiverBoxes, Vec<CaseProblem>)> {
    let bar = progress_bar(show_progress, cases.len());
    let mut boxes = LiverBoxes::default();
    let mut problems = Vec::new();
    for case in cases {
        match case_box(model, case, device) {
            Ok(Some(liver_box)) => boxes.insert(case.number, liver_box),
            Ok(None) => problems.push(CaseProblem {
                path: case.image.clone(),
                reason: format!(
                    "the liver network {} finds no liver in it",
                    model.path.display()
                ),
            }),
            Err(e) => problems.push(CaseProblem {
                path: case.image.clone(),
                reason: e.to_string(),
            }),
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((boxes, problems))
}

fn case_box(
    model: &LiverModel,
    case: &CaseFiles,
    device: Device,
) -> Result<Option<crate::data::preprocess::CropBox>> {
    let source = Volume::read(&case.image)?;
    source.check_finite(&case.image)?;
    let (mask, _) = liver_mask(model, &source, device)?;
    let mask = source.with_data(mask.iter().map(|&m| f32::from(u8::from(m))).collect())?;
    Ok(foreground_box(&mask, [0; 3]))
}

/// The liver boxes a stage-2 run in `run_dir` trains on: its `bbox.json` when present (a resumed
/// run, or one given the boxes beforehand), else predicted by `liver_model` over the configured
/// dataset and written there; `None` without either (stage 2 then crops the labels' livers).
pub fn liver_boxes_for_run(
    run_dir: &Path,
    liver_model: Option<&Path>,
    params: &TrainParameters,
    device: Device,
    show_progress: bool,
) -> Result<Option<LiverBoxes>> {
    let file = run_dir.join(BBOX_FILE);
    if file.is_file() {
        if show_progress {
            println!("stage 2 crops the liver boxes in {}", file.display());
        }
        return LiverBoxes::read(&file).map(Some);
    }
    let Some(model_path) = liver_model else {
        return Ok(None);
    };
    let data = params.effective_data();
    let model = LiverModel::load(model_path, &data, &Default::default(), device)?;
    let dataset = Dataset::discover(&data.data.root)?;
    if show_progress {
        println!(
            "predicting the liver box of {} cases with {}",
            dataset.cases.len(),
            model_path.display()
        );
    }
    let (boxes, problems) = predict_liver_boxes(&model, &dataset.cases, device, show_progress)?;
    for p in &problems {
        eprintln!("warning: no liver box for {p}");
    }
    boxes.write(&file)?;
    if show_progress {
        println!(
            "wrote {} ({} boxes); stage 2 crops them",
            file.display(),
            boxes.len()
        );
    }
    Ok(Some(boxes))
}

fn progress_bar(show: bool, cases: usize) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(cases as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("liver boxes [{bar:30}] {pos}/{len} ({eta})")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
