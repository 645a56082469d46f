//! Writing `.nii` / `.nii.gz` files atomically. The header passed in fixes version, byte order,
//! datatype, scaling and geometry; values are un-scaled, rounded and saturated to integer types.

use super::header::{Endianness, NiftiDataType, NiftiHeader, NiftiVersion};
use crate::error::{HeparError, Result};
use crate::util::atomic_write::write_atomic_with;
use rayon::prelude::*;
use std::io::Write;
use std::path::Path;

/// Writes `data` (file order, dim[1] fastest) with `header`; gzip-compressed when the path ends in
/// `.gz`. `vox_offset` and `bitpix` are set from the version and datatype.
pub fn write_nifti(path: &Path, header: &NiftiHeader, data: &[f32]) -> Result<()> {
    let expected = header.num_voxels();
    if data.len() != expected {
        return Err(HeparError::shape(
            "write_nifti",
            format!(
                "{}: header shape {:?} needs {expected} voxels, got {}",
                path.display(),
                header.shape(),
                data.len()
            ),
        ));
    }
    let mut header = header.clone();
    header.vox_offset = match header.version {
        NiftiVersion::Nifti1 => 352,
        NiftiVersion::Nifti2 => 544,
    };
    header.bitpix = (header.datatype.size_bytes() * 8) as i16;
    let (slope, inter) = header.scaling().unwrap_or((1.0, 0.0));
    let mut bytes = header.to_bytes();
    bytes.extend_from_slice(&encode_voxels(
        data,
        header.datatype,
        header.endianness,
        slope,
        inter,
    ));
    let gzip = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    write_atomic_with(path, |w| {
        if gzip {
            // Fast level: masks compress well at any level and large volumes are written often.
            let mut enc = flate2::write::GzEncoder::new(w, flate2::Compression::fast());
            enc.write_all(&bytes)?;
            enc.finish()?;
            Ok(())
        } else {
            w.write_all(&bytes)
        }
    })
}

fn encode_voxels(
    data: &[f32],
    datatype: NiftiDataType,
    endianness: Endianness,
    slope: f64,
    inter: f64,
) -> Vec<u8> {
    let elem = datatype.size_bytes();
    let mut out = vec![0u8; data.len() * elem];
    let big = endianness == Endianness::Big;
    let identity = slope == 1.0 && inter == 0.0;
    macro_rules! encode {
        ($t:ty, $integer:expr) => {{
            const CHUNK: usize = 1 << 16;
            out.par_chunks_mut(CHUNK * elem)
                .zip(data.par_chunks(CHUNK))
                .for_each(|(dst, src)| {
                    for (d, &v) in dst.chunks_exact_mut(elem).zip(src) {
                        let stored = if identity {
                            v as f64
                        } else {
                            (v as f64 - inter) / slope
                        };
                        // `as` saturates float-to-int casts and maps NaN to 0.
                        let value = if $integer {
                            stored.round() as $t
                        } else {
                            stored as $t
                        };
                        let b = if big {
                            value.to_be_bytes()
                        } else {
                            value.to_le_bytes()
                        };
                        d.copy_from_slice(&b);
                    }
                });
        }};
    }
    match datatype {
        NiftiDataType::U8 => encode!(u8, true),
        NiftiDataType::I8 => encode!(i8, true),
        NiftiDataType::I16 => encode!(i16, true),
        NiftiDataType::U16 => encode!(u16, true),
        NiftiDataType::I32 => encode!(i32, true),
        NiftiDataType::U32 => encode!(u32, true),
        NiftiDataType::I64 => encode!(i64, true),
        NiftiDataType::U64 => encode!(u64, true),
        NiftiDataType::F32 => encode!(f32, false),
        NiftiDataType::F64 => encode!(f64, false),
    }
    out
}
