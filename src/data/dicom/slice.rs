//! One DICOM file of a series: the attributes that place its slice in space and scale its values
//! (read without the pixel data), and its decoded pixels.

use crate::error::{HeparError, Result};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, ModalityLutOption, PixelDecoder};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use std::path::{Path, PathBuf};

/// What the series reader needs from one file's header.
#[derive(Debug, Clone)]
pub struct SliceHeader {
    pub path: PathBuf,
    /// SeriesInstanceUID; empty when the file has none.
    pub series_uid: String,
    pub series_description: String,
    pub modality: String,
    pub instance_number: Option<i64>,
    /// ImagePositionPatient: the centre of the first transmitted pixel, in LPS millimetres.
    pub position: Option<[f64; 3]>,
    /// ImageOrientationPatient: the row direction (along which the column index grows), then
    /// the column direction (along which the row index grows), both in LPS.
    pub orientation: Option<[f64; 6]>,
    /// PixelSpacing: (between rows, between columns) in mm.
    pub pixel_spacing: Option<[f64; 2]>,
    pub rows: usize,
    pub columns: usize,
    pub frames: usize,
    pub samples_per_pixel: usize,
    pub slope: f64,
    pub intercept: f64,
    pub slice_thickness: Option<f64>,
    pub spacing_between_slices: Option<f64>,
    /// Stored sample type: (bits allocated, signed).
    pub bits_allocated: u16,
    pub signed: bool,
    pub transfer_syntax: String,
}

/// Whether `path` starts like a DICOM Part 10 file ("DICM" after the 128-byte preamble, or at
/// the start when the preamble was left out).
pub fn has_dicom_magic(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let mut head = [0u8; 132];
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    (filled >= 132 && &head[128..132] == b"DICM") || (filled >= 4 && &head[..4] == b"DICM")
}

fn dicom_error(path: &Path, what: &str, e: impl std::fmt::Display) -> HeparError {
    HeparError::format(path, format!("{what}: {e}"))
}

fn open(path: &Path, until_pixels: bool) -> Result<DefaultDicomObject> {
    let options = OpenFileOptions::new();
    let options = if until_pixels {
        options.read_until(tags::PIXEL_DATA)
    } else {
        options
    };
    options.open_file(path).map_err(|e| {
        dicom_error(
            path,
            "not a readable DICOM file (corrupt or truncated)",
            error_chain(&e),
        )
    })
}

/// An error and its causes on one line (dicom-rs errors keep the detail in their sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

fn text(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    let element = obj.element_opt(tag).ok().flatten()?;
    let value = element.to_str().ok()?;
    Some(
        value
            .trim_matches(|c: char| c == '\0' || c.is_whitespace())
            .to_string(),
    )
}

fn floats(obj: &DefaultDicomObject, tag: Tag) -> Option<Vec<f64>> {
    let element = obj.element_opt(tag).ok().flatten()?;
    let values = element.to_multi_float64().ok()?;
    (!values.is_empty() && values.iter().all(|v| v.is_finite())).then_some(values)
}

fn integer(obj: &DefaultDicomObject, tag: Tag) -> Option<i64> {
    let element = obj.element_opt(tag).ok().flatten()?;
    element.to_int::<i64>().ok()
}

fn fixed<const N: usize>(values: Option<Vec<f64>>) -> Option<[f64; N]> {
    values.and_then(|v| v.get(..N).and_then(|s| s.try_into().ok()))
}

impl SliceHeader {
    /// Reads the header of `path` (everything before the pixel data).
    pub fn read(path: &Path) -> Result<Self> {
        let obj = open(path, true)?;
        Self::from_object(&obj, path)
    }

    fn from_object(obj: &DefaultDicomObject, path: &Path) -> Result<Self> {
        let required = |tag: Tag, name: &str| {
            integer(obj, tag)
                .filter(|&v| v > 0)
                .map(|v| v as usize)
                .ok_or_else(|| HeparError::format(path, format!("no valid {name} attribute")))
        };
        let rows = required(tags::ROWS, "Rows")?;
        let columns = required(tags::COLUMNS, "Columns")?;
        let bits_allocated = required(tags::BITS_ALLOCATED, "BitsAllocated")? as u16;
        let slope = floats(obj, tags::RESCALE_SLOPE)
            .map(|v| v[0])
            .filter(|&s| s != 0.0)
            .unwrap_or(1.0);
        let intercept = floats(obj, tags::RESCALE_INTERCEPT)
            .map(|v| v[0])
            .unwrap_or(0.0);
        Ok(SliceHeader {
            path: path.to_path_buf(),
            series_uid: text(obj, tags::SERIES_INSTANCE_UID).unwrap_or_default(),
            series_description: text(obj, tags::SERIES_DESCRIPTION).unwrap_or_default(),
            modality: text(obj, tags::MODALITY).unwrap_or_default(),
            instance_number: integer(obj, tags::INSTANCE_NUMBER),
            position: fixed::<3>(floats(obj, tags::IMAGE_POSITION_PATIENT)),
            orientation: fixed::<6>(floats(obj, tags::IMAGE_ORIENTATION_PATIENT)),
            pixel_spacing: fixed::<2>(floats(obj, tags::PIXEL_SPACING))
                .filter(|s| s.iter().all(|&v| v > 0.0)),
            rows,
            columns,
            frames: integer(obj, tags::NUMBER_OF_FRAMES)
                .filter(|&v| v > 0)
                .unwrap_or(1) as usize,
            samples_per_pixel: integer(obj, tags::SAMPLES_PER_PIXEL)
                .filter(|&v| v > 0)
                .unwrap_or(1) as usize,
            slope,
            intercept,
            slice_thickness: floats(obj, tags::SLICE_THICKNESS)
                .map(|v| v[0])
                .filter(|&v| v > 0.0),
            spacing_between_slices: floats(obj, tags::SPACING_BETWEEN_SLICES)
                .map(|v| v[0].abs())
                .filter(|&v| v > 0.0),
            bits_allocated,
            signed: integer(obj, tags::PIXEL_REPRESENTATION) == Some(1),
            transfer_syntax: obj
                .meta()
                .transfer_syntax()
                .trim_end_matches('\0')
                .to_string(),
        })
    }

    /// Fails, naming the transfer syntax, when its pixel data cannot be decoded by this build.
    pub fn check_transfer_syntax(&self) -> Result<()> {
        let uid = self.transfer_syntax.as_str();
        match TransferSyntaxRegistry.get(uid) {
            None => Err(HeparError::format(
                &self.path,
                format!("unknown transfer syntax {uid}"),
            )),
            Some(ts) if !ts.can_decode_all() => Err(HeparError::format(
                &self.path,
                format!(
                    "unsupported transfer syntax {} ({uid}): Hepar decodes uncompressed, deflated and RLE Lossless DICOM; decompress the series first (e.g. `gdcmconv --raw` or `dcmdjpeg`)",
                    ts.name()
                ),
            )),
            Some(_) => Ok(()),
        }
    }

    /// Decodes the pixels of this file as stored values (no rescale), row by row, for a
    /// single-frame, single-sample image of `rows x columns`.
    pub fn read_stored_values(&self) -> Result<Vec<f64>> {
        self.check_transfer_syntax()?;
        let obj = open(&self.path, false)?;
        let decoded = obj.decode_pixel_data().map_err(|e| {
            dicom_error(&self.path, "cannot decode the pixel data", error_chain(&e))
        })?;
        let options = ConvertOptions::new().with_modality_lut(ModalityLutOption::None);
        let values: Vec<f64> = decoded.to_vec_with_options(&options).map_err(|e| {
            dicom_error(&self.path, "cannot convert the pixel data", error_chain(&e))
        })?;
        let expected = self.rows * self.columns * self.frames * self.samples_per_pixel;
        if values.len() < expected {
            return Err(HeparError::format(
                &self.path,
                format!(
                    "truncated pixel data: {} values for {} rows x {} columns",
                    values.len(),
                    self.rows,
                    self.columns
                ),
            ));
        }
        Ok(values[..expected].to_vec())
    }
}
