//! `hepar inspect FILE [--json]`: a NIfTI file's shape, datatype, spacing, affine, orientation and
//! value statistics, reported as nibabel reports them. A DICOM series folder is reported as
//! `hepar convert` would write it, plus its SeriesInstanceUID and slice count.

use crate::data::dicom::{is_dicom_folder, read_series, DicomVolume};
use crate::data::nifti::{orientation_codes, read_nifti, NiftiImage};
use crate::Result;
use rayon::prelude::*;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// A .nii or .nii.gz file (NIfTI-1 or NIfTI-2), or a folder holding a DICOM series.
    pub file: PathBuf,
    /// The SeriesInstanceUID to report when the folder holds several series.
    #[arg(long, value_name = "UID")]
    pub series: Option<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What `inspect` reports; also the JSON layout.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// Sizes as the header lists them, dim[1] first.
    pub shape: Vec<usize>,
    /// numpy's name of the stored type (int16, float32...).
    pub datatype: String,
    /// pixdim for the listed axes.
    pub spacing: Vec<f64>,
    /// 4x4 voxel-to-world rows: sform if set, else qform, else pixdim scaling (nibabel's choice).
    pub affine: [[f64; 4]; 4],
    /// Three letters such as "RAS" or "LPS".
    pub orientation: String,
    /// Statistics of the scaled voxel values (NaN, written as JSON null, when any voxel is NaN).
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// DICOM only: the series reported and its number of slices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slice_count: Option<usize>,
}

impl Inspection {
    pub fn of(image: &NiftiImage) -> Self {
        let h = &image.header;
        let affine = h.best_affine();
        // NaN anywhere makes every statistic NaN, as numpy's min/max/mean (and so nibabel) do.
        let (min, max, sum) = image
            .data
            .par_chunks(1 << 16)
            .map(|c| {
                c.iter().fold(
                    (f64::INFINITY, f64::NEG_INFINITY, 0f64),
                    |(lo, hi, s), &v| (nan_min(lo, v as f64), nan_max(hi, v as f64), s + v as f64),
                )
            })
            // In chunk order, so the mean's bits do not depend on the thread count.
            .collect::<Vec<_>>()
            .into_iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY, 0.0), |a, b| {
                (nan_min(a.0, b.0), nan_max(a.1, b.1), a.2 + b.2)
            });
        let n = image.data.len().max(1) as f64;
        Inspection {
            shape: h.shape(),
            datatype: h.datatype.name().to_string(),
            spacing: h.spacing(),
            affine,
            orientation: orientation_codes(&affine).iter().collect(),
            min,
            max,
            mean: sum / n,
            series_uid: None,
            slice_count: None,
        }
    }

    /// A DICOM series as the NIfTI file `hepar convert` writes from it.
    pub fn of_dicom(series: &DicomVolume) -> Self {
        let mut header = series.volume.header.clone();
        header.datatype = series.stored_type;
        let image = NiftiImage {
            header,
            data: series.volume.data.clone(),
        };
        Inspection {
            series_uid: Some(series.series_uid.clone()),
            slice_count: Some(series.slice_count),
            ..Self::of(&image)
        }
    }
}

fn nan_min(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

fn nan_max(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

pub fn run(args: InspectArgs) -> Result<()> {
    if is_dicom_folder(&args.file) {
        return run_dicom(&args);
    }
    let image = read_nifti(&args.file)?;
    let report = Inspection::of(&image);
    if args.json {
        let text = serde_json::to_string(&report)
            .map_err(|e| crate::HeparError::format(&args.file, e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    let h = &image.header;
    println!("file:        {}", args.file.display());
    println!("format:      {:?}, {:?} endian", h.version, h.endianness);
    println!("shape:       {:?}", report.shape);
    println!("datatype:    {}", report.datatype);
    println!("spacing:     {:?}", report.spacing);
    println!("orientation: {}", report.orientation);
    println!("affine:");
    for row in &report.affine {
        println!(
            "  [{:>12.5} {:>12.5} {:>12.5} {:>12.5}]",
            row[0], row[1], row[2], row[3]
        );
    }
    if let Some((slope, inter)) = h.scaling().filter(|&s| s != (1.0, 0.0)) {
        println!("scaling:     value * {slope} + {inter}");
    }
    println!(
        "min / max / mean: {} / {} / {}",
        report.min, report.max, report.mean
    );
    Ok(())
}

fn run_dicom(args: &InspectArgs) -> Result<()> {
    let series = read_series(&args.file, args.series.as_deref())?;
    for warning in &series.warnings {
        eprintln!("warning: {warning}");
    }
    let report = Inspection::of_dicom(&series);
    if args.json {
        let text = serde_json::to_string(&report)
            .map_err(|e| crate::HeparError::format(&args.file, e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    println!("folder:      {}", args.file.display());
    println!("series:      {}", series.series_uid);
    println!("slices:      {}", series.slice_count);
    println!("shape:       {:?}", report.shape);
    println!(
        "datatype:    {} (as `hepar convert` writes it)",
        report.datatype
    );
    println!("spacing:     {:?}", report.spacing);
    println!("orientation: {}", report.orientation);
    println!("affine (RAS):");
    for row in &report.affine {
        println!(
            "  [{:>12.5} {:>12.5} {:>12.5} {:>12.5}]",
            row[0], row[1], row[2], row[3]
        );
    }
    println!(
        "min / max / mean: {} / {} / {}",
        report.min, report.max, report.mean
    );
    Ok(())
}
