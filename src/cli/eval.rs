//! `hepar eval --pred P --truth T [--json REPORT.json] [--csv DIR] [--probabilities DIR]
//! [--png DIR [--ct CT]]`: scores predicted label maps against the truth (two files, or two
//! folders paired by file name), prints a summary table and optionally writes the JSON report, the
//! per-component CSV and a picture per case.
//!
//! A case that cannot be evaluated (unreadable file, other shape or spacing, no partner) is
//! reported by name on stderr; the other cases are still evaluated, the outputs written, and the
//! command then fails.

use crate::data::Volume;
use crate::error::{HeparError, Result};
use crate::eval::components::{component_rows, to_csv, ComponentRow};
use crate::eval::{evaluate_files, pair_inputs, CasePair, CaseReport, EvalReport};
use crate::report::overlay::write_scored_case_png;
use crate::util::atomic_write::write_atomic;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Predicted label map (.nii / .nii.gz; 0 background, 1 liver, 2 tumour), or a folder of them.
    #[arg(long)]
    pub pred: PathBuf,
    /// True label map, or a folder whose files have the same names as the predictions.
    #[arg(long)]
    pub truth: PathBuf,
    /// Write the report as JSON here.
    #[arg(long, value_name = "REPORT.json")]
    pub json: Option<PathBuf>,
    /// Write DIR/components.csv: one row per predicted tumour component (a FROC analysis' input).
    #[arg(long, value_name = "DIR")]
    pub csv: Option<PathBuf>,
    /// Tumour probability maps for the CSV's mean probability: DIR/<prediction file name>, or
    /// DIR/<case>_tumor.nii[.gz].
    #[arg(long, value_name = "DIR")]
    pub probabilities: Option<PathBuf>,
    /// Write DIR/<case>.png: axial, coronal and sagittal slices through the liver and the largest
    /// tumour with prediction and truth contours.
    #[arg(long, value_name = "DIR")]
    pub png: Option<PathBuf>,
    /// The CT behind the pictures (liver window): a file, or a folder with files named as the
    /// predictions.
    #[arg(long, value_name = "CT")]
    pub ct: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let pairing = pair_inputs(&args.pred, &args.truth)?;
    let mut problems = pairing.unpaired.clone();
    let mut reports = Vec::new();
    let mut rows = Vec::new();
    for pair in &pairing.pairs {
        match evaluate_pair(pair, &args) {
            Ok((report, case_rows)) => {
                reports.push(report);
                match case_rows {
                    Ok(r) => rows.extend(r),
                    Err(e) => problems.push(format!("{}: {e}", pair.case)),
                }
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    let report = EvalReport::new(reports);
    print!("{}", summary_table(&report));
    if let Some(path) = &args.json {
        write_atomic(path, report.to_json()?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    if let Some(dir) = &args.csv {
        let path = dir.join("components.csv");
        write_atomic(&path, to_csv(&rows).as_bytes())?;
        println!("wrote {} ({} components)", path.display(), rows.len());
    }
    for p in &problems {
        eprintln!("error: {p}");
    }
    if !problems.is_empty() {
        return Err(HeparError::invalid(
            "eval",
            format!(
                "{} problem(s); {} of {} case(s) evaluated",
                problems.len(),
                report.cases.len(),
                pairing.pairs.len() + pairing.unpaired.len()
            ),
        ));
    }
    Ok(())
}

/// Reads and scores one pair; the component rows and the picture fail separately (a bad
/// probability map or CT does not lose the metrics).
fn evaluate_pair(
    pair: &CasePair,
    args: &EvalArgs,
) -> Result<(CaseReport, Result<Vec<ComponentRow>>)> {
    let (report, pred, truth) = evaluate_files(&pair.case, &pair.pred, &pair.truth)?;
    let mut rows = if args.csv.is_some() {
        case_components(pair, &pred, &truth, args.probabilities.as_deref())
    } else {
        Ok(Vec::new())
    };
    if let Some(dir) = &args.png {
        if let Err(e) = case_picture(pair, &pred, &truth, args.ct.as_deref(), dir) {
            rows = Err(e);
        }
    }
    Ok((report, rows))
}

/// Draws DIR/<case>.png, over the CT when one is given.
fn case_picture(
    pair: &CasePair,
    pred: &Volume,
    truth: &Volume,
    ct: Option<&Path>,
    dir: &Path,
) -> Result<()> {
    let ct = match ct {
        Some(p) => {
            let path = if p.is_dir() {
                p.join(pair.pred.file_name().unwrap_or_default())
            } else {
                p.to_path_buf()
            };
            let volume = Volume::read(&path)?;
            if volume.shape_zyx != pred.shape_zyx {
                return Err(HeparError::format(
                    &path,
                    format!(
                        "CT shape (z, y, x) {:?} differs from the prediction {} with {:?}",
                        volume.shape_zyx,
                        pair.pred.display(),
                        pred.shape_zyx
                    ),
                ));
            }
            Some(volume.data)
        }
        None => None,
    };
    write_scored_case_png(
        &dir.join(format!("{}.png", pair.case)),
        pred,
        truth,
        ct.as_deref(),
    )
}

fn case_components(
    pair: &CasePair,
    pred: &Volume,
    truth: &Volume,
    probabilities: Option<&Path>,
) -> Result<Vec<ComponentRow>> {
    let probability = match probabilities {
        Some(dir) => {
            let path = probability_file(dir, pair)?;
            let map = Volume::read(&path)?;
            if map.shape_zyx != pred.shape_zyx {
                return Err(HeparError::format(
                    &path,
                    format!(
                        "shape (z, y, x) {:?} differs from the prediction {} with {:?}",
                        map.shape_zyx,
                        pair.pred.display(),
                        pred.shape_zyx
                    ),
                ));
            }
            Some(map.data)
        }
        None => None,
    };
    component_rows(&pair.case, pred, &truth.data, probability.as_deref())
}

/// The probability map of a case: the prediction's file name, else `<case>_tumor.nii[.gz]`.
fn probability_file(dir: &Path, pair: &CasePair) -> Result<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(name) = pair.pred.file_name() {
        candidates.push(dir.join(name));
    }
    for suffix in ["_tumor.nii.gz", "_tumor.nii"] {
        candidates.push(dir.join(format!("{}{suffix}", pair.case)));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            HeparError::format(
                dir,
                format!(
                    "no probability map for case {} (looked for {})",
                    pair.case,
                    candidates
                        .iter()
                        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
}

fn cell(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.decimals$}"))
}

/// The terminal summary: one line per case and the means.
pub fn summary_table(report: &EvalReport) -> String {
    let width = report
        .cases
        .iter()
        .map(|c| c.case.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!(
        "{:<width$}  {:>11} {:>9} {:>9}  {:>11} {:>9} {:>9}  {:>9}\n",
        "case", "liver dice", "hd95 mm", "assd mm", "tumour dice", "hd95 mm", "assd mm", "lesions"
    );
    let line = |name: &str,
                liver: &crate::eval::metrics::ClassMetrics,
                tumor: &crate::eval::metrics::ClassMetrics,
                lesions: String| {
        format!(
            "{name:<width$}  {:>11} {:>9} {:>9}  {:>11} {:>9} {:>9}  {lesions:>9}\n",
            cell(liver.dice, 4),
            cell(liver.hd95_mm, 2),
            cell(liver.assd_mm, 2),
            cell(tumor.dice, 4),
            cell(tumor.hd95_mm, 2),
            cell(tumor.assd_mm, 2),
        )
    };
    for c in &report.cases {
        let l = &c.tumor.lesions;
        out += &line(
            &c.case,
            &c.liver,
            &c.tumor.overlap,
            format!("{}/{}", l.detected, l.truth),
        );
    }
    if report.cases.len() > 1 {
        let m = &report.mean;
        let recall = cell(m.tumor.lesions.recall, 2);
        out += &line("mean", &m.liver, &m.tumor.overlap, format!("rec {recall}"));
    }
    out
}
