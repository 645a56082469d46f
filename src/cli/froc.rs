//! `hepar froc --pred DIR --truth DIR [--json OUT] [--png OUT]`: detection FROC of label maps as
//! the RibFrac challenge scores them (see `eval::froc`), on its folder layout: truth
//! `<id>-label.nii.gz` with one CSV, predictions `<id>.nii.gz` with one CSV
//! (`public_id,label_id,confidence,label_code`).
//!
//! A case missing on either side (or unreadable) is named on stderr; the other cases are still
//! scored and the outputs written, and the command then fails.

use crate::error::{HeparError, Result};
use crate::eval::froc::froc_folders;
use crate::report::froc_curve::write_froc_png;
use crate::util::atomic_write::write_atomic;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct FrocArgs {
    /// Folder of predicted label maps `<id>.nii[.gz]` (components 1..n) with one CSV.
    #[arg(long)]
    pub pred: PathBuf,
    /// Folder of true label maps `<id>-label.nii[.gz]` with one CSV.
    #[arg(long)]
    pub truth: PathBuf,
    /// Write the curve and scores as JSON here (and the curve's picture beside it, `.png`).
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    /// Write the curve's picture here (default: beside --json).
    #[arg(long, value_name = "OUT.png")]
    pub png: Option<PathBuf>,
}

pub fn run(args: FrocArgs) -> Result<()> {
    let (report, problems) = froc_folders(&args.pred, &args.truth)?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        write_atomic(path, report.to_json()?.as_bytes())?;
        println!("wrote {}", path.display());
    }
    let png = args
        .png
        .clone()
        .or_else(|| args.json.as_ref().map(|j| j.with_extension("png")));
    if let Some(path) = &png {
        write_froc_png(path, &report)?;
        println!("wrote {}", path.display());
    }
    for p in &problems {
        eprintln!("error: {p}");
    }
    if !problems.is_empty() {
        return Err(HeparError::invalid(
            "froc",
            format!(
                "{} problem(s); {} case(s) scored without them",
                problems.len(),
                report.scans
            ),
        ));
    }
    Ok(())
}
