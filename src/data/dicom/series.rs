//! A folder of DICOM files as series: files grouped by SeriesInstanceUID, one series chosen, its
//! slices checked for a common grid and sorted along the slice normal.

use super::slice::{has_dicom_magic, SliceHeader};
use crate::error::{HeparError, Result};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One series found in a folder.
#[derive(Debug, Clone)]
pub struct SeriesSummary {
    pub uid: String,
    pub description: String,
    pub modality: String,
    pub slices: usize,
}

/// Every image file of a folder (and its subfolders), grouped by series.
#[derive(Debug, Clone)]
pub struct SeriesListing {
    pub folder: PathBuf,
    /// Series by UID, each with its slice headers in path order.
    pub series: BTreeMap<String, Vec<SliceHeader>>,
    /// Files left out, with the reason (not DICOM, no pixel data).
    pub skipped: Vec<(PathBuf, String)>,
}

/// A series whose slices are sorted and share one grid.
#[derive(Debug, Clone)]
pub struct SortedSeries {
    pub uid: String,
    /// Slices in stacking order (increasing position along the normal).
    pub slices: Vec<SliceHeader>,
    /// Unit vectors (LPS) along the column index, the row index and the stacking order.
    pub row_direction: [f64; 3],
    pub column_direction: [f64; 3],
    pub normal: [f64; 3],
    /// Millimetres between slices, rows, columns.
    pub spacing_zyx: [f64; 3],
    /// Position (LPS) of the first voxel of the first slice.
    pub origin: [f64; 3],
    /// Things a user should know that did not stop the read (gaps, fallbacks).
    pub warnings: Vec<String>,
}

/// Relative tolerance for "the same" spacing or direction between slices (DS values carry
/// about six significant digits).
const SAME: f64 = 1e-4;

fn all_files(folder: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| HeparError::io(&dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| HeparError::io(&dir, e))?.path();
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Whether `path` is a folder holding at least one DICOM file (the test `convert` and
/// `inspect` use to tell a series from a NIfTI file).
pub fn is_dicom_folder(path: &Path) -> bool {
    path.is_dir()
        && all_files(path)
            .map(|files| files.iter().any(|f| has_dicom_magic(f)))
            .unwrap_or(false)
}

impl SeriesListing {
    /// Reads the header of every DICOM file under `folder`. A file that starts like DICOM but
    /// cannot be parsed is an error naming it; other files are listed in `skipped`.
    pub fn scan(folder: &Path) -> Result<Self> {
        if !folder.is_dir() {
            return Err(HeparError::format(
                folder,
                "DICOM series folder does not exist or is not a folder",
            ));
        }
        let files = all_files(folder)?;
        let headers: Vec<Option<Result<SliceHeader>>> = files
            .par_iter()
            .map(|path| has_dicom_magic(path).then(|| SliceHeader::read(path)))
            .collect();
        let mut series: BTreeMap<String, Vec<SliceHeader>> = BTreeMap::new();
        let mut skipped = Vec::new();
        for (path, header) in files.into_iter().zip(headers) {
            match header {
                None => skipped.push((path, "not a DICOM file".to_string())),
                Some(Err(HeparError::Format { msg, .. })) if msg.starts_with("no valid Rows") => {
                    skipped.push((path, "no image (no Rows attribute)".to_string()))
                }
                Some(Err(e)) => return Err(e),
                Some(Ok(h)) => series.entry(h.series_uid.clone()).or_default().push(h),
            }
        }
        if series.is_empty() {
            return Err(HeparError::format(
                folder,
                format!(
                    "no DICOM image files in the folder ({} other files)",
                    skipped.len()
                ),
            ));
        }
        Ok(SeriesListing {
            folder: folder.to_path_buf(),
            series,
            skipped,
        })
    }

    pub fn summaries(&self) -> Vec<SeriesSummary> {
        self.series
            .iter()
            .map(|(uid, slices)| SeriesSummary {
                uid: uid.clone(),
                description: slices[0].series_description.clone(),
                modality: slices[0].modality.clone(),
                slices: slices.len(),
            })
            .collect()
    }

    /// The series `uid`, or the only one when `uid` is `None`; several series without a choice
    /// is an error listing them.
    pub fn select(&self, uid: Option<&str>) -> Result<(String, Vec<SliceHeader>)> {
        let list = || {
            self.summaries()
                .iter()
                .map(|s| {
                    format!(
                        "{} ({} slices{}{})",
                        if s.uid.is_empty() {
                            "<no SeriesInstanceUID>"
                        } else {
                            &s.uid
                        },
                        s.slices,
                        if s.modality.is_empty() {
                            String::new()
                        } else {
                            format!(", {}", s.modality)
                        },
                        if s.description.is_empty() {
                            String::new()
                        } else {
                            format!(", \"{}\"", s.description)
                        },
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        match uid {
            Some(wanted) => self
                .series
                .get_key_value(wanted)
                .map(|(k, v)| (k.clone(), v.clone()))
                .ok_or_else(|| {
                    HeparError::format(
                        &self.folder,
                        format!("no series {wanted} in the folder; it holds: {}", list()),
                    )
                }),
            None if self.series.len() == 1 => {
                let (k, v) = self.series.iter().next().expect("one series");
                Ok((k.clone(), v.clone()))
            }
            None => Err(HeparError::format(
                &self.folder,
                format!(
                    "{} DICOM series in the folder, choose one by its SeriesInstanceUID (--series UID): {}",
                    self.series.len(),
                    list()
                ),
            )),
        }
    }
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn unit(v: [f64; 3], path: &Path) -> Result<[f64; 3]> {
    let n = dot(v, v).sqrt();
    if n.is_nan() || n <= 1e-6 {
        return Err(HeparError::format(
            path,
            format!("ImageOrientationPatient has a zero direction {v:?}"),
        ));
    }
    Ok(v.map(|x| x / n))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= SAME * a.abs().max(b.abs()).max(1.0)
}

/// Checks that every slice has the first one's size, pixel spacing and orientation.
fn check_common_grid(slices: &[SliceHeader]) -> Result<()> {
    let first = &slices[0];
    for s in slices {
        if s.frames != 1 {
            return Err(HeparError::format(
                &s.path,
                format!(
                    "multi-frame DICOM ({} frames) is not supported; Hepar reads one slice per file",
                    s.frames
                ),
            ));
        }
        if s.samples_per_pixel != 1 {
            return Err(HeparError::format(
                &s.path,
                format!(
                    "{} samples per pixel (colour); a CT/MR series has one",
                    s.samples_per_pixel
                ),
            ));
        }
        if (s.rows, s.columns) != (first.rows, first.columns) {
            return Err(HeparError::format(
                &s.path,
                format!(
                    "slice of {} rows x {} columns in a series whose slice {} has {} x {}",
                    s.rows,
                    s.columns,
                    first.path.display(),
                    first.rows,
                    first.columns
                ),
            ));
        }
        let same_spacing = match (s.pixel_spacing, first.pixel_spacing) {
            (Some(a), Some(b)) => close(a[0], b[0]) && close(a[1], b[1]),
            (None, None) => true,
            _ => false,
        };
        if !same_spacing {
            return Err(HeparError::format(
                &s.path,
                format!(
                    "inconsistent PixelSpacing {:?}: slice {} has {:?}",
                    s.pixel_spacing,
                    first.path.display(),
                    first.pixel_spacing
                ),
            ));
        }
        let same_orientation = match (s.orientation, first.orientation) {
            (Some(a), Some(b)) => a.iter().zip(b).all(|(x, y)| (x - y).abs() <= SAME),
            (None, None) => true,
            _ => false,
        };
        if !same_orientation {
            return Err(HeparError::format(
                &s.path,
                format!(
                    "inconsistent ImageOrientationPatient {:?}: slice {} has {:?}",
                    s.orientation,
                    first.path.display(),
                    first.orientation
                ),
            ));
        }
    }
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

impl SortedSeries {
    /// Orders `slices` along the normal of their orientation (by InstanceNumber when positions
    /// are missing) and derives the slice spacing from the positions.
    pub fn new(uid: String, mut slices: Vec<SliceHeader>) -> Result<Self> {
        check_common_grid(&slices)?;
        let first = slices[0].clone();
        let mut warnings = Vec::new();
        let [row_spacing, column_spacing] = first.pixel_spacing.unwrap_or_else(|| {
            warnings.push(format!(
                "{}: no PixelSpacing; 1 mm assumed",
                first.path.display()
            ));
            [1.0, 1.0]
        });
        let orientation = first.orientation.unwrap_or_else(|| {
            warnings.push(format!(
                "{}: no ImageOrientationPatient; axial (1 0 0 0 1 0) assumed",
                first.path.display()
            ));
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        });
        let row_direction = unit(
            [orientation[0], orientation[1], orientation[2]],
            &first.path,
        )?;
        let column_direction = unit(
            [orientation[3], orientation[4], orientation[5]],
            &first.path,
        )?;
        let normal = unit(cross(row_direction, column_direction), &first.path)?;
        let positioned = slices.iter().all(|s| s.position.is_some());
        let spacing_z = if positioned {
            let key = |s: &SliceHeader| dot(s.position.expect("checked"), normal);
            slices.sort_by(|a, b| {
                key(a)
                    .total_cmp(&key(b))
                    .then(a.instance_number.cmp(&b.instance_number))
                    .then(a.path.cmp(&b.path))
            });
            let keys: Vec<f64> = slices.iter().map(key).collect();
            slice_spacing(&slices, &keys, &first, &mut warnings)?
        } else {
            if slices.len() > 1 {
                warnings.push(format!(
                    "{}: slices without ImagePositionPatient; ordered by InstanceNumber",
                    first.path.display()
                ));
            }
            slices.sort_by(|a, b| {
                a.instance_number
                    .cmp(&b.instance_number)
                    .then(a.path.cmp(&b.path))
            });
            fallback_spacing(&first, &mut warnings)
        };
        let origin = slices[0].position.unwrap_or([0.0; 3]);
        Ok(SortedSeries {
            uid,
            slices,
            row_direction,
            column_direction,
            normal,
            spacing_zyx: [spacing_z, row_spacing, column_spacing],
            origin,
            warnings,
        })
    }

    /// The voxel-to-world affine in NIfTI's RAS+ convention for voxels indexed (i = column,
    /// j = row, k = slice): DICOM's LPS axes with x and y negated, as dcm2niix and ITK write it.
    pub fn affine_ras(&self) -> crate::data::nifti::Affine {
        let columns = [
            self.row_direction.map(|v| v * self.spacing_zyx[2]),
            self.column_direction.map(|v| v * self.spacing_zyx[1]),
            self.normal.map(|v| v * self.spacing_zyx[0]),
            self.origin,
        ];
        let mut affine = [[0.0; 4]; 4];
        for (c, column) in columns.iter().enumerate() {
            for r in 0..3 {
                let lps_to_ras = if r < 2 { -1.0 } else { 1.0 };
                affine[r][c] = lps_to_ras * column[r];
            }
        }
        affine[3][3] = 1.0;
        affine
    }
}

/// Spacing along the normal from the sorted positions `keys`: the mean step of an evenly spaced
/// series; with gaps (a step over 1.5 times the median) or uneven steps, the median, warned.
fn slice_spacing(
    slices: &[SliceHeader],
    keys: &[f64],
    first: &SliceHeader,
    warnings: &mut Vec<String>,
) -> Result<f64> {
    if keys.len() < 2 {
        return Ok(fallback_spacing(first, warnings));
    }
    let steps: Vec<f64> = keys.windows(2).map(|w| w[1] - w[0]).collect();
    for (i, &step) in steps.iter().enumerate() {
        if step.abs() < 1e-4 {
            return Err(HeparError::format(
                &slices[i + 1].path,
                format!(
                    "two slices at the same position ({:.4} mm along the normal): this file and {} (several acquisitions in one series?)",
                    keys[i],
                    slices[i].path.display()
                ),
            ));
        }
    }
    let typical = median(&steps);
    let mut even = true;
    for (i, &step) in steps.iter().enumerate() {
        if step > 1.5 * typical {
            even = false;
            warnings.push(format!(
                "gap of {step:.3} mm between slices {} and {} (the others are {typical:.3} mm apart, about {} slice(s) missing); the volume stacks them at {typical:.3} mm",
                slices[i].path.display(),
                slices[i + 1].path.display(),
                (step / typical).round() as i64 - 1
            ));
        } else if !close(step, typical) && (step - typical).abs() > 1e-3 {
            even = false;
            warnings.push(format!(
                "uneven slice spacing: {step:.4} mm between {} and {} (median {typical:.4} mm)",
                slices[i].path.display(),
                slices[i + 1].path.display()
            ));
        }
    }
    Ok(if even {
        (keys[keys.len() - 1] - keys[0]) / (keys.len() - 1) as f64
    } else {
        typical
    })
}

/// Spacing of a single slice or of slices without positions: SpacingBetweenSlices, then
/// SliceThickness, then 1 mm.
fn fallback_spacing(first: &SliceHeader, warnings: &mut Vec<String>) -> f64 {
    first
        .spacing_between_slices
        .or(first.slice_thickness)
        .unwrap_or_else(|| {
            warnings.push(format!(
                "{}: no slice spacing (positions, SpacingBetweenSlices or SliceThickness); 1 mm assumed",
                first.path.display()
            ));
            1.0
        })
}
