//! The pipeline over files (`hepar predict`): one CT or a folder of them in, a label map per CT
//! out, and on request the probability maps (`<case>_liver.nii.gz`, `<case>_tumor.nii.gz`, the
//! names `hepar eval --probabilities` reads) and a picture per case (`<case>.png`).
//!
//! In a folder every case is attempted; the failures are reported together at the end, each
//! naming its file.

use super::pipeline::{
    predict_case, LiverModel, LiverSource, PipelineOptions, Prediction, TumorModel,
};
use crate::data::nifti::NiftiDataType;
use crate::data::Volume;
use crate::error::{HeparError, Result};
use crate::eval::case_name;
use crate::report::overlay::{render_case, CaseImages};
use crate::report::png::write_png;
use std::path::{Path, PathBuf};

/// Everything `hepar predict` was asked to do.
pub struct PredictRequest<'a> {
    pub liver: Option<&'a LiverModel>,
    /// A liver label map (or a folder of them, named as the CTs) used when there is no liver
    /// network.
    pub liver_mask: Option<&'a Path>,
    pub tumor: Option<&'a TumorModel>,
    /// A CT file, or a folder of `.nii`/`.nii.gz` CTs.
    pub input: &'a Path,
    /// The label map, or a folder for them when `input` is a folder.
    pub output: &'a Path,
    pub probabilities: Option<&'a Path>,
    pub png: Option<&'a Path>,
    pub options: PipelineOptions,
}

/// What one case gave, for the terminal.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseSummary {
    pub case: String,
    pub output: PathBuf,
    pub shape_zyx: [usize; 3],
    pub liver_ml: f64,
    pub tumor_ml: f64,
    pub seconds: f64,
}

fn is_nifti_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    !name.starts_with('.') && (name.ends_with(".nii") || name.ends_with(".nii.gz"))
}

/// The CTs of a folder, in file-name order.
pub fn list_cases(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| HeparError::io(dir, e))?;
    let mut cases = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| HeparError::io(dir, e))?.path();
        if path.is_file() && is_nifti_name(&path) {
            cases.push(path);
        }
    }
    cases.sort();
    if cases.is_empty() {
        return Err(HeparError::format(dir, "holds no .nii or .nii.gz file"));
    }
    Ok(cases)
}

/// Runs the request; returns a summary per case, or an error naming every case that failed.
pub fn predict_files(
    request: &PredictRequest,
    mut on_case: impl FnMut(&CaseSummary),
) -> Result<Vec<CaseSummary>> {
    if request.liver.is_none() && request.liver_mask.is_none() {
        return Err(HeparError::Config(
            "predict needs a liver network (--liver-model) or a liver mask (--liver-mask): the \
             tumour stage looks for tumours inside the liver"
                .into(),
        ));
    }
    for dir in [request.probabilities, request.png].into_iter().flatten() {
        std::fs::create_dir_all(dir).map_err(|e| HeparError::io(dir, e))?;
    }
    if !request.input.is_dir() {
        let summary = predict_one(request, request.input, request.output, request.liver_mask)?;
        on_case(&summary);
        return Ok(vec![summary]);
    }
    if let Some(mask) = request.liver_mask.filter(|m| !m.is_dir()) {
        return Err(HeparError::format(
            mask,
            format!(
                "--input {} is a folder, so --liver-mask must be a folder of masks named as its CTs",
                request.input.display()
            ),
        ));
    }
    let cases = list_cases(request.input)?;
    std::fs::create_dir_all(request.output).map_err(|e| HeparError::io(request.output, e))?;
    let mut summaries = Vec::new();
    let mut failures = Vec::new();
    for ct in &cases {
        let name = ct.file_name().unwrap_or_default();
        let mask = request.liver_mask.map(|m| m.join(name));
        match predict_one(request, ct, &request.output.join(name), mask.as_deref()) {
            Ok(summary) => {
                on_case(&summary);
                summaries.push(summary);
            }
            Err(e) => failures.push(format!("{}: {e}", ct.display())),
        }
    }
    if failures.is_empty() {
        Ok(summaries)
    } else {
        Err(HeparError::invalid(
            "predict",
            format!(
                "{} of {} cases failed ({} written):\n  {}",
                failures.len(),
                cases.len(),
                summaries.len(),
                failures.join("\n  ")
            ),
        ))
    }
}

/// One CT to one label map (and its extras).
fn predict_one(
    request: &PredictRequest,
    ct_path: &Path,
    output: &Path,
    liver_mask: Option<&Path>,
) -> Result<CaseSummary> {
    let started = std::time::Instant::now();
    let source = Volume::read(ct_path)?;
    let mask = match (request.liver, liver_mask) {
        (None, Some(path)) => Some((Volume::read(path)?, path)),
        _ => None,
    };
    let liver = match (request.liver, &mask) {
        (Some(model), _) => LiverSource::Model(model),
        (None, Some((mask, path))) => LiverSource::Mask(mask, path),
        (None, None) => {
            return Err(HeparError::Config(
                "predict needs a liver network (--liver-model) or a liver mask (--liver-mask)"
                    .into(),
            ))
        }
    };
    let prediction = predict_case(&source, ct_path, liver, request.tumor, request.options)?;
    let labels = &prediction.labels;
    labels.write(output, NiftiDataType::U8)?;
    // Named after the output, so `hepar eval --pred OUTPUT --probabilities DIR` finds them.
    let case = case_name(output);
    if let Some(dir) = request.probabilities {
        write_probabilities(dir, &case, &source, &prediction)?;
    }
    if let Some(dir) = request.png {
        let image = render_case(&CaseImages {
            shape_zyx: source.shape_zyx,
            spacing_zyx: source.spacing_zyx,
            ct: Some(&source.data),
            prediction: &labels.data,
            truth: None,
        })?;
        write_png(&dir.join(format!("{case}.png")), &image)?;
    }
    let voxel_ml = source.spacing_zyx.iter().product::<f64>() / 1000.0;
    let count = |label: f32| labels.data.iter().filter(|&&v| v >= label).count() as f64;
    Ok(CaseSummary {
        case,
        output: output.to_path_buf(),
        shape_zyx: source.shape_zyx,
        liver_ml: count(1.0) * voxel_ml,
        tumor_ml: count(2.0) * voxel_ml,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn write_probabilities(
    dir: &Path,
    case: &str,
    source: &Volume,
    prediction: &Prediction,
) -> Result<()> {
    for (stage, map) in [
        ("liver", &prediction.liver_probability),
        ("tumor", &prediction.tumor_probability),
    ] {
        if let Some(map) = map {
            let path = dir.join(format!("{case}_{stage}.nii.gz"));
            source.write_data(&path, map, NiftiDataType::F32)?;
        }
    }
    Ok(())
}
