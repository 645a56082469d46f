//! Writes small synthetic DICOM series with dicom-rs for the reader's tests: one CT slice per
//! file, any transfer syntax dicom-rs can encode natively, every attribute chosen by the test.
#![allow(dead_code)]

use dicom_core::value::{PrimitiveValue, C};
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use std::path::Path;

/// One slice's attributes and stored values (row by row).
#[derive(Debug, Clone)]
pub struct SliceSpec {
    pub series_uid: String,
    pub instance_number: i64,
    pub position: Option<[f64; 3]>,
    pub orientation: [f64; 6],
    /// (between rows, between columns)
    pub pixel_spacing: [f64; 2],
    pub rows: usize,
    pub columns: usize,
    pub stored: Vec<i16>,
    pub slope: f64,
    pub intercept: f64,
    pub transfer_syntax: &'static str,
}

fn ds(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v}"))
        .collect::<Vec<_>>()
        .join("\\")
}

fn text(tag: dicom_core::Tag, vr: VR, value: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, vr, PrimitiveValue::from(value))
}

fn short(tag: dicom_core::Tag, value: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::U16(C::from_vec(vec![value])))
}

/// Writes `spec` as a DICOM Part 10 file at `path`.
pub fn write_slice(path: &Path, spec: &SliceSpec) {
    assert_eq!(spec.stored.len(), spec.rows * spec.columns);
    let sop_uid = format!(
        "2.25.{}{}",
        1000 + spec.instance_number,
        spec.series_uid.len()
    );
    let mut elements = vec![
        text(tags::SOP_CLASS_UID, VR::UI, uids::CT_IMAGE_STORAGE),
        text(tags::SOP_INSTANCE_UID, VR::UI, &sop_uid),
        text(tags::MODALITY, VR::CS, "CT"),
        text(tags::SERIES_DESCRIPTION, VR::LO, "synthetic"),
        text(tags::STUDY_INSTANCE_UID, VR::UI, "2.25.1"),
        text(tags::SERIES_INSTANCE_UID, VR::UI, &spec.series_uid),
        text(
            tags::INSTANCE_NUMBER,
            VR::IS,
            &spec.instance_number.to_string(),
        ),
        text(
            tags::IMAGE_ORIENTATION_PATIENT,
            VR::DS,
            &ds(&spec.orientation),
        ),
        text(tags::PIXEL_SPACING, VR::DS, &ds(&spec.pixel_spacing)),
        text(tags::SLICE_THICKNESS, VR::DS, "9"),
        short(tags::SAMPLES_PER_PIXEL, 1),
        text(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2"),
        short(tags::ROWS, spec.rows as u16),
        short(tags::COLUMNS, spec.columns as u16),
        short(tags::BITS_ALLOCATED, 16),
        short(tags::BITS_STORED, 16),
        short(tags::HIGH_BIT, 15),
        short(tags::PIXEL_REPRESENTATION, 1),
        text(tags::RESCALE_INTERCEPT, VR::DS, &ds(&[spec.intercept])),
        text(tags::RESCALE_SLOPE, VR::DS, &ds(&[spec.slope])),
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(spec.stored.iter().map(|&v| v as u16).collect()),
        ),
    ];
    if let Some(p) = spec.position {
        elements.push(text(tags::IMAGE_POSITION_PATIENT, VR::DS, &ds(&p)));
    }
    let obj = InMemDicomObject::from_element_iter(elements);
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(spec.transfer_syntax))
        .expect("file meta");
    file.write_to_file(path).expect("write DICOM slice");
}

/// The test series: `depth` slices of 3 rows x 4 columns, coronal (rows along patient left,
/// columns towards the feet), 2.5 mm apart, with InstanceNumber growing as the position along
/// the normal falls ("negative spacing"), stored value 100 k + 10 y + x - 7 for the k-th slice
/// along the normal, rescale intercept -1024. Returned in order along the normal.
pub fn coronal_series(depth: usize, transfer_syntax: &'static str) -> Vec<SliceSpec> {
    let (rows, columns) = (3, 4);
    (0..depth)
        .map(|k| {
            let stored = (0..rows * columns)
                .map(|i| (100 * k + 10 * (i / columns) + i % columns) as i16 - 7)
                .collect();
            SliceSpec {
                series_uid: "2.25.777".into(),
                instance_number: (depth - k) as i64,
                // normal = row x column = (1,0,0) x (0,0,-1) = (0,1,0)
                position: Some([-30.0, 12.5 + 2.5 * k as f64, 40.0]),
                orientation: [1.0, 0.0, 0.0, 0.0, 0.0, -1.0],
                pixel_spacing: [0.8, 0.6],
                rows,
                columns,
                stored,
                slope: 1.0,
                intercept: -1024.0,
                transfer_syntax,
            }
        })
        .collect()
}

/// Writes `slices` into `dir` under names that do not follow their order (a fixed shuffle).
pub fn write_shuffled(dir: &Path, slices: &[SliceSpec]) -> Vec<std::path::PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut paths = Vec::new();
    for (k, spec) in slices.iter().enumerate() {
        // multiplying by an odd constant permutes u64, so names are unique and out of order
        let name = format!(
            "{:016x}",
            (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        );
        let path = dir.join(name);
        write_slice(&path, spec);
        paths.push(path);
    }
    paths
}

/// An axial series of `depth` slices of `rows x columns`: image values from -300 HU to 500 HU;
/// with `mask`, a mask series instead: 255 inside the square rows and columns 4..12 on the
/// slices `mask` holds, 0 elsewhere.
pub fn axial(
    depth: usize,
    rows: usize,
    columns: usize,
    mask: Option<std::ops::Range<usize>>,
) -> Vec<SliceSpec> {
    (0..depth)
        .map(|k| SliceSpec {
            series_uid: if mask.is_some() { "2.25.2" } else { "2.25.1" }.into(),
            instance_number: k as i64 + 1,
            position: Some([-100.0, -120.0, -50.0 + 3.0 * k as f64]),
            orientation: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            pixel_spacing: [0.75, 0.75],
            rows,
            columns,
            stored: (0..rows * columns)
                .map(|i| match &mask {
                    Some(liver) => {
                        let (y, x) = (i / columns, i % columns);
                        let inside =
                            liver.contains(&k) && (4..12).contains(&y) && (4..12).contains(&x);
                        if inside {
                            255
                        } else {
                            0
                        }
                    }
                    None => (724 + (i * 800 / (rows * columns))) as i16,
                })
                .collect(),
            slope: 1.0,
            intercept: if mask.is_some() { 0.0 } else { -1024.0 },
            transfer_syntax: uids::EXPLICIT_VR_LITTLE_ENDIAN,
        })
        .collect()
}
