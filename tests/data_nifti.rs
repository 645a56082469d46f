//! NIfTI round trips (every datatype, both versions, both byte orders, .nii and .nii.gz), scaling,
//! and clear errors on bad files.

use hepar::data::nifti::{
    read_nifti, read_nifti_header, write_nifti, Endianness, NiftiDataType, NiftiHeader,
    NiftiVersion,
};
use hepar::data::Volume;
use hepar::HeparError;
use std::path::PathBuf;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hepar-nifti-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const ALL_TYPES: [NiftiDataType; 10] = [
    NiftiDataType::U8,
    NiftiDataType::I8,
    NiftiDataType::I16,
    NiftiDataType::U16,
    NiftiDataType::I32,
    NiftiDataType::U32,
    NiftiDataType::I64,
    NiftiDataType::U64,
    NiftiDataType::F32,
    NiftiDataType::F64,
];

/// Values every type can hold exactly (unsigned types get the non-negative ones).
fn values_for(t: NiftiDataType, n: usize) -> Vec<f32> {
    let signed = !matches!(
        t,
        NiftiDataType::U8 | NiftiDataType::U16 | NiftiDataType::U32 | NiftiDataType::U64
    );
    let float = matches!(t, NiftiDataType::F32 | NiftiDataType::F64);
    (0..n)
        .map(|i| {
            let base = (i * 37 % 120) as f32;
            let v = if signed && i % 2 == 1 { -base } else { base };
            if float {
                v + 0.25
            } else {
                v
            }
        })
        .collect()
}

fn geometry_header(
    dims: &[usize],
    t: NiftiDataType,
    version: NiftiVersion,
    endianness: Endianness,
) -> NiftiHeader {
    let mut h = NiftiHeader::new(dims, t);
    h.version = version;
    h.endianness = endianness;
    h.pixdim[1..4].copy_from_slice(&[0.75, 0.8, 2.5]);
    h.qform_code = 1;
    h.sform_code = 2;
    h.quatern_bcd = [0.0, 0.0, 1.0];
    h.qoffset = [10.5, -3.0, 40.0];
    h.srow = [
        [-0.75, 0.01, 0.0, 10.5],
        [0.0, -0.8, 0.0, -3.0],
        [0.0, 0.0, 2.5, 40.0],
    ];
    h
}

#[test]
fn round_trip_every_datatype_version_order_and_compression() {
    let dir = temp_dir("roundtrip");
    let dims = [5, 4, 3];
    let n = 60;
    let mut files = 0;
    for version in [NiftiVersion::Nifti1, NiftiVersion::Nifti2] {
        for endianness in [Endianness::Little, Endianness::Big] {
            for t in ALL_TYPES {
                for ext in ["nii", "nii.gz"] {
                    let header = geometry_header(&dims, t, version, endianness);
                    let data = values_for(t, n);
                    let path = dir.join(format!("{version:?}-{endianness:?}-{}.{ext}", t.name()));
                    write_nifti(&path, &header, &data).unwrap();
                    let back = read_nifti(&path).unwrap();
                    assert_eq!(back.data, data, "{}", path.display());
                    let h = &back.header;
                    assert_eq!(
                        (h.version, h.endianness, h.datatype),
                        (version, endianness, t),
                        "{}",
                        path.display()
                    );
                    assert_eq!(h.shape(), dims.to_vec());
                    assert_eq!(h.qform_code, 1);
                    assert_eq!(h.sform_code, 2);
                    let (a, b) = (h.best_affine(), header.best_affine());
                    for r in 0..4 {
                        for c in 0..4 {
                            assert!(
                                (a[r][c] - b[r][c]).abs() < 1e-6,
                                "{}: affine",
                                path.display()
                            );
                        }
                    }
                    assert_eq!(read_nifti_header(&path).unwrap(), back.header);
                    files += 1;
                }
            }
        }
    }
    assert_eq!(files, 80);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn scaling_is_applied_on_read_and_undone_on_write() {
    let dir = temp_dir("scaling");
    let mut h = geometry_header(
        &[4, 2, 1],
        NiftiDataType::I16,
        NiftiVersion::Nifti1,
        Endianness::Little,
    );
    h.scl_slope = 0.5;
    h.scl_inter = -1024.0;
    let hu = vec![-1024.0, -1000.5, 0.0, 40.0, 1500.5, -3.0, 7.5, 100.0];
    let path = dir.join("scaled.nii");
    write_nifti(&path, &h, &hu).unwrap();
    // Stored integers are (hu + 1024) / 0.5.
    let bytes = std::fs::read(&path).unwrap();
    let stored: Vec<i16> = bytes[352..]
        .chunks(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect();
    assert_eq!(stored, vec![0, 47, 2048, 2128, 5049, 2042, 2063, 2248]);
    assert_eq!(read_nifti(&path).unwrap().data, hu);
    // A slope of 0 means "no scaling", as in nibabel.
    let mut raw = bytes.clone();
    raw[112..116].copy_from_slice(&0f32.to_le_bytes());
    std::fs::write(&path, &raw).unwrap();
    let unscaled = read_nifti(&path).unwrap().data;
    assert_eq!(unscaled[2], 2048.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mask_written_with_source_geometry() {
    let dir = temp_dir("mask");
    let header = geometry_header(
        &[6, 5, 4],
        NiftiDataType::I16,
        NiftiVersion::Nifti1,
        Endianness::Big,
    );
    let data: Vec<f32> = (0..120).map(|i| i as f32 - 60.0).collect();
    let source = dir.join("ct.nii.gz");
    write_nifti(&source, &header, &data).unwrap();
    let volume = Volume::read(&source).unwrap();
    assert_eq!(volume.shape_zyx, [4, 5, 6]);
    assert_eq!(volume.spacing_zyx, [2.5, 0.800000011920929, 0.75]);
    let mask: Vec<f32> = volume
        .data
        .iter()
        .map(|&v| (v > 0.0) as u8 as f32)
        .collect();
    let mask_path = dir.join("mask.nii.gz");
    volume
        .write_data(&mask_path, &mask, NiftiDataType::U8)
        .unwrap();
    let back = Volume::read(&mask_path).unwrap();
    assert_eq!(back.data, mask);
    assert_eq!(back.header.datatype, NiftiDataType::U8);
    assert_eq!(back.affine(), volume.affine());
    assert_eq!(back.header.qform_affine(), volume.header.qform_affine());
    assert_eq!(back.spacing_zyx, volume.spacing_zyx);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn expect_format_error(
    result: Result<impl std::fmt::Debug, HeparError>,
    path: &std::path::Path,
    words: &str,
) {
    let err = result.expect_err("bad file must be an error");
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()),
        "error does not name the file: {text}"
    );
    assert!(
        text.contains(words),
        "error {text:?} does not say {words:?}"
    );
}

#[test]
fn bad_files_give_errors_naming_the_file_and_problem() {
    let dir = temp_dir("bad");
    let header = geometry_header(
        &[8, 8, 8],
        NiftiDataType::I16,
        NiftiVersion::Nifti1,
        Endianness::Little,
    );
    let good = dir.join("good.nii");
    write_nifti(&good, &header, &vec![1.0; 512]).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let truncated = dir.join("truncated.nii");
    std::fs::write(&truncated, &bytes[..bytes.len() - 100]).unwrap();
    expect_format_error(read_nifti(&truncated), &truncated, "truncated voxel data");

    let short = dir.join("short.nii");
    std::fs::write(&short, &bytes[..200]).unwrap();
    expect_format_error(read_nifti(&short), &short, "truncated header");

    let mut unknown = bytes.clone();
    unknown[70..72].copy_from_slice(&77i16.to_le_bytes());
    let unknown_path = dir.join("unknown-type.nii");
    std::fs::write(&unknown_path, &unknown).unwrap();
    expect_format_error(
        read_nifti(&unknown_path),
        &unknown_path,
        "unknown NIfTI datatype code 77",
    );

    let mut complex = bytes.clone();
    complex[70..72].copy_from_slice(&32i16.to_le_bytes());
    let complex_path = dir.join("complex.nii");
    std::fs::write(&complex_path, &complex).unwrap();
    expect_format_error(
        read_nifti(&complex_path),
        &complex_path,
        "unsupported NIfTI datatype complex64",
    );

    let not_nifti = dir.join("text.nii");
    std::fs::write(
        &not_nifti,
        b"this is not an image at all, just some text that is long enough",
    )
    .unwrap();
    expect_format_error(read_nifti(&not_nifti), &not_nifti, "not a NIfTI file");

    let gz = dir.join("good.nii.gz");
    write_nifti(&gz, &header, &vec![1.0; 512]).unwrap();
    let gz_bytes = std::fs::read(&gz).unwrap();
    let cut_gz = dir.join("cut.nii.gz");
    std::fs::write(&cut_gz, &gz_bytes[..gz_bytes.len() / 2]).unwrap();
    expect_format_error(read_nifti(&cut_gz), &cut_gz, "gzip");

    let mut corrupt_gz = gz_bytes.clone();
    let mid = corrupt_gz.len() / 2;
    for b in &mut corrupt_gz[mid..mid + 8] {
        *b ^= 0xA5;
    }
    let corrupt_path = dir.join("corrupt.nii.gz");
    std::fs::write(&corrupt_path, &corrupt_gz).unwrap();
    assert!(
        read_nifti(&corrupt_path).is_err(),
        "a corrupted deflate stream (CRC) must not read"
    );

    let missing = dir.join("missing.nii");
    let err = read_nifti(&missing).unwrap_err();
    assert!(matches!(err, HeparError::Io { .. }) && err.to_string().contains("missing.nii"));

    let four_d = dir.join("4d.nii");
    write_nifti(
        &four_d,
        &NiftiHeader::new(&[2, 2, 2, 3], NiftiDataType::U8),
        &[0.0; 24],
    )
    .unwrap();
    expect_format_error(Volume::read(&four_d), &four_d, "expected a 3D volume");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn writer_rejects_data_of_the_wrong_size() {
    let dir = temp_dir("wrongsize");
    let h = NiftiHeader::new(&[2, 2, 2], NiftiDataType::F32);
    let err = write_nifti(&dir.join("x.nii"), &h, &[0.0; 7]).unwrap_err();
    assert!(err.to_string().contains("needs 8 voxels"), "{err}");
    assert!(!dir.join("x.nii").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
