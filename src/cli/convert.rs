//! `hepar convert SRC DST`: a DICOM series folder (or a NIfTI file) to `.nii` / `.nii.gz`, with
//! its geometry (both forms) preserved. DICOM images become Hounsfield units stored as int16 when
//! every value is an integer in range (float32 otherwise); `--mask` binarises a mask series to
//! uint8 0/1.

use crate::data::dicom::{is_dicom_folder, read_mask_series, read_series};
use crate::data::nifti::{read_nifti, write_nifti};
use crate::{HeparError, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// A folder holding a DICOM series, or a .nii / .nii.gz file.
    pub src: PathBuf,
    /// The NIfTI file to write (.nii or .nii.gz).
    pub dst: PathBuf,
    /// The SeriesInstanceUID to convert when the folder holds several series.
    #[arg(long, value_name = "UID")]
    pub series: Option<String>,
    /// The series is a mask: non-zero stored values become 1 (uint8).
    #[arg(long)]
    pub mask: bool,
}

fn check_destination(dst: &Path) -> Result<()> {
    let name = dst.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".nii") || name.ends_with(".nii.gz") {
        Ok(())
    } else {
        Err(HeparError::invalid(
            "convert",
            format!(
                "{}: the destination must end in .nii or .nii.gz",
                dst.display()
            ),
        ))
    }
}

pub fn run(args: ConvertArgs) -> Result<()> {
    check_destination(&args.dst)?;
    if is_dicom_folder(&args.src) {
        let series = if args.mask {
            read_mask_series(&args.src, args.series.as_deref())?
        } else {
            read_series(&args.src, args.series.as_deref())?
        };
        for warning in &series.warnings {
            eprintln!("warning: {warning}");
        }
        series.volume.write(&args.dst, series.stored_type)?;
        println!(
            "{}: series {}, {} slices {:?} (z, y, x) -> {}",
            args.src.display(),
            series.series_uid,
            series.slice_count,
            series.volume.shape_zyx,
            args.dst.display()
        );
        return Ok(());
    }
    if args.src.is_dir() {
        return Err(HeparError::format(
            &args.src,
            "the folder holds no DICOM file (convert reads a DICOM series folder or a NIfTI file)",
        ));
    }
    if args.series.is_some() || args.mask {
        return Err(HeparError::invalid(
            "convert",
            "--series and --mask apply to DICOM folders only",
        ));
    }
    let image = read_nifti(&args.src)?;
    write_nifti(&args.dst, &image.header, &image.data)?;
    println!("{} -> {}", args.src.display(), args.dst.display());
    Ok(())
}
