//! The DICOM series reader on synthetic series written with dicom-rs: slice order from positions
//! (files shuffled on disk, InstanceNumber against the normal), Hounsfield units from the
//! rescale, spacing and the RAS affine, every encoding (explicit/implicit VR, big endian), masks,
//! and the bad inputs (two series, gaps, inconsistent slices, truncated files).

mod common;
#[path = "dicom_support/mod.rs"]
mod dicom_support;

use common::tiny_data::temp_dir;
use dicom_dictionary_std::uids;
use dicom_support::{coronal_series, write_shuffled, write_slice, SliceSpec};
use hepar::data::dicom::{read_mask_series, read_series, SeriesListing};
use hepar::data::nifti::NiftiDataType;

/// World position (RAS) of voxel (i, j, k) by the affine.
fn apply(affine: &[[f64; 4]; 4], ijk: [f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|r| (0..3).map(|c| affine[r][c] * ijk[c]).sum::<f64>() + affine[r][3])
}

/// DICOM's own placement of pixel (column i, row j) of `slice`, in LPS, turned to RAS.
fn dicom_world_ras(slice: &SliceSpec, i: usize, j: usize) -> [f64; 3] {
    let p = slice.position.unwrap();
    let o = slice.orientation;
    let [dr, dc] = slice.pixel_spacing;
    let lps = [0, 1, 2].map(|a| p[a] + i as f64 * dc * o[a] + j as f64 * dr * o[3 + a]);
    [-lps[0], -lps[1], lps[2]]
}

fn check_reads_back(transfer_syntax: &'static str, tag: &str) {
    let dir = temp_dir("dicom", tag);
    let slices = coronal_series(5, transfer_syntax);
    write_shuffled(&dir, &slices);
    let read = read_series(&dir, None).unwrap();
    let v = &read.volume;
    assert_eq!(read.slice_count, 5);
    assert_eq!(read.series_uid, "2.25.777");
    assert!(read.warnings.is_empty(), "{:?}", read.warnings);
    assert_eq!(v.shape_zyx, [5, 3, 4]);
    assert_eq!(read.stored_type, NiftiDataType::I16);
    for (k, slice) in slices.iter().enumerate() {
        for y in 0..3 {
            for x in 0..4 {
                let expected = slice.stored[y * 4 + x] as f32 - 1024.0;
                assert_eq!(
                    v.data[v.index(k, y, x)],
                    expected,
                    "{tag}: voxel {k} {y} {x}"
                );
            }
        }
    }
    for (a, b) in v.spacing_zyx.iter().zip([2.5, 0.8, 0.6]) {
        assert!((a - b).abs() < 1e-9, "{tag}: spacing {:?}", v.spacing_zyx);
    }
    let affine = v.affine();
    let qform = v.header.qform_affine();
    for (k, slice) in slices.iter().enumerate() {
        for (i, j) in [(0, 0), (3, 0), (0, 2), (3, 2)] {
            let want = dicom_world_ras(slice, i, j);
            for form in [&affine, &qform] {
                let got = apply(form, [i as f64, j as f64, k as f64]);
                for a in 0..3 {
                    assert!(
                        (got[a] - want[a]).abs() < 1e-6,
                        "{tag}: voxel ({i},{j},{k}) at {got:?}, DICOM puts it at {want:?}"
                    );
                }
            }
        }
    }
    // coronal, rows to patient left (-R), columns to the feet, slices to anterior (-P)
    assert_eq!(
        hepar::data::nifti::orientation_codes(&affine),
        ['L', 'I', 'P']
    );
}

#[test]
fn explicit_little_endian_series_reads_in_position_order_in_hu() {
    check_reads_back(uids::EXPLICIT_VR_LITTLE_ENDIAN, "explicit-le");
}

#[test]
fn implicit_vr_series_reads_the_same() {
    check_reads_back(uids::IMPLICIT_VR_LITTLE_ENDIAN, "implicit-le");
}

#[test]
#[allow(deprecated)] // retired by DICOM, still found in archives
fn big_endian_series_reads_the_same() {
    check_reads_back(uids::EXPLICIT_VR_BIG_ENDIAN, "explicit-be");
}

#[test]
fn deflated_series_reads_the_same() {
    check_reads_back(uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, "deflated");
}

#[test]
fn fractional_rescale_gives_float_values() {
    let dir = temp_dir("dicom", "slope");
    let mut slices = coronal_series(3, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    for s in &mut slices {
        s.slope = 0.5;
        s.intercept = -1000.25;
    }
    write_shuffled(&dir, &slices);
    let read = read_series(&dir, None).unwrap();
    assert_eq!(read.stored_type, NiftiDataType::F32);
    let v = &read.volume;
    assert_eq!(v.data[v.index(2, 1, 3)], (213 - 7) as f32 * 0.5 - 1000.25);
}

#[test]
fn slices_without_positions_fall_back_to_instance_number() {
    let dir = temp_dir("dicom", "nopos");
    let mut slices = coronal_series(4, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    for s in &mut slices {
        s.position = None;
    }
    write_shuffled(&dir, &slices);
    let read = read_series(&dir, None).unwrap();
    // InstanceNumber runs against the position order: slice 0 along the normal has number 4
    let v = &read.volume;
    assert_eq!(
        v.data[v.index(0, 0, 0)],
        slices[3].stored[0] as f32 - 1024.0
    );
    assert_eq!(
        v.data[v.index(3, 0, 0)],
        slices[0].stored[0] as f32 - 1024.0
    );
    assert!(
        read.warnings.iter().any(|w| w.contains("InstanceNumber")),
        "{:?}",
        read.warnings
    );
    // no positions: SliceThickness (9) is the best spacing left
    assert!((v.spacing_zyx[0] - 9.0).abs() < 1e-9);
}

#[test]
fn mask_series_becomes_zero_and_one() {
    let dir = temp_dir("dicom", "mask");
    let mut slices = coronal_series(3, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    for s in &mut slices {
        s.intercept = -1024.0; // must not matter: masks look at stored values
        s.stored = (0..12).map(|i| if i % 3 == 0 { 255 } else { 0 }).collect();
    }
    write_shuffled(&dir, &slices);
    let read = read_mask_series(&dir, None).unwrap();
    assert_eq!(read.stored_type, NiftiDataType::U8);
    let v = &read.volume;
    for k in 0..3 {
        for i in 0..12 {
            let want = if i % 3 == 0 { 1.0 } else { 0.0 };
            assert_eq!(v.data[k * 12 + i], want);
        }
    }
}

#[test]
fn two_series_are_listed_unless_one_is_chosen() {
    let dir = temp_dir("dicom", "two");
    let first = coronal_series(3, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    let mut second = coronal_series(2, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    for s in &mut second {
        s.series_uid = "2.25.888".into();
        s.intercept = 0.0;
    }
    write_shuffled(&dir.join("a"), &first);
    write_shuffled(&dir.join("b"), &second);
    std::fs::write(dir.join("notes.txt"), "not DICOM").unwrap();
    let err = read_series(&dir, None).unwrap_err().to_string();
    assert!(
        err.contains("2.25.777") && err.contains("2.25.888"),
        "{err}"
    );
    assert!(
        err.contains("3 slices") && err.contains("2 slices"),
        "{err}"
    );
    let chosen = read_series(&dir, Some("2.25.888")).unwrap();
    assert_eq!(chosen.slice_count, 2);
    assert_eq!(chosen.volume.data[0], second[0].stored[0] as f32);
    let listing = SeriesListing::scan(&dir).unwrap();
    assert_eq!(listing.summaries().len(), 2);
    assert_eq!(listing.skipped.len(), 1);
    let missing = read_series(&dir, Some("2.25.999")).unwrap_err().to_string();
    assert!(
        missing.contains("2.25.999") && missing.contains("2.25.777"),
        "{missing}"
    );
}

#[test]
fn a_missing_slice_is_a_warning_naming_the_gap() {
    let dir = temp_dir("dicom", "gap");
    let mut slices = coronal_series(6, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    let removed = slices.remove(3);
    let paths = write_shuffled(&dir, &slices);
    let read = read_series(&dir, None).unwrap();
    assert_eq!(read.slice_count, 5);
    let gap: Vec<&String> = read.warnings.iter().filter(|w| w.contains("gap")).collect();
    assert_eq!(gap.len(), 1, "{:?}", read.warnings);
    assert!(gap[0].contains("5.000 mm"), "{}", gap[0]);
    assert!(
        gap[0].contains(&paths[2].display().to_string()),
        "{}",
        gap[0]
    );
    assert!(
        gap[0].contains(&paths[3].display().to_string()),
        "{}",
        gap[0]
    );
    assert!((read.volume.spacing_zyx[0] - 2.5).abs() < 1e-9);
    assert_ne!(read.volume.data[3 * 12], removed.stored[0] as f32 - 1024.0);
}

#[test]
fn inconsistent_slices_are_errors_naming_the_file() {
    let dir = temp_dir("dicom", "spacing");
    let mut slices = coronal_series(4, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    slices[2].pixel_spacing = [0.8, 0.7];
    let paths = write_shuffled(&dir, &slices);
    let err = read_series(&dir, None).unwrap_err().to_string();
    assert!(err.contains("PixelSpacing"), "{err}");
    assert!(
        err.contains(&paths[2].display().to_string())
            || err.contains(&paths[0].display().to_string()),
        "{err}"
    );

    let dir = temp_dir("dicom", "orientation");
    let mut slices = coronal_series(4, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    slices[1].orientation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
    write_shuffled(&dir, &slices);
    let err = read_series(&dir, None).unwrap_err().to_string();
    assert!(err.contains("ImageOrientationPatient"), "{err}");

    let dir = temp_dir("dicom", "duplicate");
    let mut slices = coronal_series(3, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    slices[2].position = slices[1].position;
    write_shuffled(&dir, &slices);
    let err = read_series(&dir, None).unwrap_err().to_string();
    assert!(err.contains("same position"), "{err}");
}

#[test]
fn a_truncated_file_is_an_error_naming_it() {
    let dir = temp_dir("dicom", "truncated");
    let slices = coronal_series(3, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    let paths = write_shuffled(&dir, &slices);
    let bytes = std::fs::read(&paths[1]).unwrap();
    std::fs::write(&paths[1], &bytes[..bytes.len() - 9]).unwrap();
    let err = read_series(&dir, None).unwrap_err().to_string();
    assert!(err.contains(&paths[1].display().to_string()), "{err}");

    // cut inside the header: the scan itself names the file
    std::fs::write(&paths[1], &bytes[..200]).unwrap();
    let err = read_series(&dir, None).unwrap_err().to_string();
    assert!(err.contains(&paths[1].display().to_string()), "{err}");
}

#[test]
fn a_single_slice_takes_its_thickness_as_spacing() {
    let dir = temp_dir("dicom", "single");
    let slices = coronal_series(1, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    write_slice(&dir.join("only.dcm"), &slices[0]);
    let read = read_series(&dir, None).unwrap();
    assert_eq!(read.volume.shape_zyx, [1, 3, 4]);
    assert!((read.volume.spacing_zyx[0] - 9.0).abs() < 1e-9);
}
