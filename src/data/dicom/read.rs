//! A sorted series as a [`Volume`]: pixels stacked in (z, y, x) order, scaled to Hounsfield
//! units (or binarised for masks), with the RAS affine in both NIfTI forms.

use super::series::{SeriesListing, SortedSeries};
use crate::data::nifti::NiftiDataType;
use crate::data::Volume;
use crate::error::Result;
use rayon::prelude::*;
use std::path::Path;

/// A series read from a folder, with what it is and what went oddly.
#[derive(Debug, Clone)]
pub struct DicomVolume {
    pub volume: Volume,
    pub series_uid: String,
    pub slice_count: usize,
    /// The narrowest NIfTI type that holds every value exactly (int16 for most CT, float32 when
    /// a slope or intercept is fractional, uint8 for masks).
    pub stored_type: NiftiDataType,
    pub warnings: Vec<String>,
}

/// What each voxel holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Values {
    /// stored * RescaleSlope + RescaleIntercept (Hounsfield units for CT).
    Rescaled,
    /// 1 where the stored value is non-zero, else 0 (3Dircadb's mask series store 0 / 255).
    Mask,
}

/// Reads the image series of `folder` (the only one, or `series_uid`) in Hounsfield units.
pub fn read_series(folder: &Path, series_uid: Option<&str>) -> Result<DicomVolume> {
    read(folder, series_uid, Values::Rescaled)
}

/// Reads a mask stored as a DICOM series: non-zero stored values become 1.
pub fn read_mask_series(folder: &Path, series_uid: Option<&str>) -> Result<DicomVolume> {
    read(folder, series_uid, Values::Mask)
}

fn read(folder: &Path, series_uid: Option<&str>, values: Values) -> Result<DicomVolume> {
    let listing = SeriesListing::scan(folder)?;
    let (uid, slices) = listing.select(series_uid)?;
    let series = SortedSeries::new(uid, slices)?;
    let [depth, height, width] = [
        series.slices.len(),
        series.slices[0].rows,
        series.slices[0].columns,
    ];
    let planes: Vec<Vec<f32>> = series
        .slices
        .par_iter()
        .map(|slice| {
            let stored = slice.read_stored_values()?;
            Ok(match values {
                Values::Rescaled => stored
                    .iter()
                    .map(|&v| (v * slice.slope + slice.intercept) as f32)
                    .collect(),
                Values::Mask => stored.iter().map(|&v| (v != 0.0) as u8 as f32).collect(),
            })
        })
        .collect::<Result<_>>()?;
    let data: Vec<f32> = planes.concat();
    let mut volume = Volume::new(data, [depth, height, width], series.spacing_zyx)?;
    volume.header.set_affine(&series.affine_ras());
    volume.header.descrip = "hepar: DICOM series".to_string();
    let stored_type = match values {
        Values::Mask => NiftiDataType::U8,
        Values::Rescaled => narrowest_type(&volume.data),
    };
    Ok(DicomVolume {
        volume,
        series_uid: series.uid,
        slice_count: depth,
        stored_type,
        warnings: series.warnings,
    })
}

/// int16 when every value is an integer in its range, else float32.
fn narrowest_type(data: &[f32]) -> NiftiDataType {
    let integral = data
        .par_iter()
        .all(|&v| v.fract() == 0.0 && (i16::MIN as f32..=i16::MAX as f32).contains(&v));
    if integral {
        NiftiDataType::I16
    } else {
        NiftiDataType::F32
    }
}
