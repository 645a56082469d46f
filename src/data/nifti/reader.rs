//! Reading `.nii` and `.nii.gz` files: header, then voxels converted to f32 with the header's
//! scaling applied. Voxels stay in file order (dim[1] fastest), which for a 3D CT volume is the
//! C-order (z, y, x) array that [`crate::data::volume::Volume`] holds.

use super::header::{Endianness, NiftiDataType, NiftiHeader};
use crate::error::{HeparError, Result};
use rayon::prelude::*;
use std::io::Read;
use std::path::Path;

/// A decoded NIfTI file: its header and every voxel as a scaled f32, in file order.
#[derive(Debug, Clone)]
pub struct NiftiImage {
    pub header: NiftiHeader,
    pub data: Vec<f32>,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads a file's bytes, un-gzipping when the content starts with the gzip magic (whatever the
/// extension says, since mislabelled files are common in public datasets).
pub fn read_file_bytes(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| HeparError::io(path, e))?;
    if raw.len() >= 2 && raw[..2] == GZIP_MAGIC {
        // gzip stores the uncompressed size mod 2^32 in its last 4 bytes: a capacity hint only.
        let hint = if raw.len() >= 4 {
            u32::from_le_bytes(raw[raw.len() - 4..].try_into().unwrap_or([0; 4])) as usize
        } else {
            0
        };
        let mut out = Vec::with_capacity(hint.min(1 << 32));
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| {
                HeparError::format(path, format!("corrupt or truncated gzip stream: {e}"))
            })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Reads only the header (decompressing just enough of a .nii.gz).
pub fn read_nifti_header(path: &Path) -> Result<NiftiHeader> {
    let file = std::fs::File::open(path).map_err(|e| HeparError::io(path, e))?;
    let mut reader = std::io::BufReader::new(file);
    let mut magic = [0u8; 2];
    reader
        .read_exact(&mut magic)
        .map_err(|_| HeparError::format(path, "file too short for a NIfTI header"))?;
    let chained = std::io::Cursor::new(magic.to_vec()).chain(reader);
    let mut stream: Box<dyn Read> = if magic == GZIP_MAGIC {
        Box::new(flate2::read::MultiGzDecoder::new(chained))
    } else {
        Box::new(chained)
    };
    let mut bytes = Vec::with_capacity(544);
    stream
        .by_ref()
        .take(544)
        .read_to_end(&mut bytes)
        .map_err(|e| HeparError::format(path, format!("corrupt or truncated gzip stream: {e}")))?;
    NiftiHeader::parse(&bytes, path)
}

/// Reads a whole NIfTI file.
pub fn read_nifti(path: &Path) -> Result<NiftiImage> {
    let bytes = read_file_bytes(path)?;
    let header = NiftiHeader::parse(&bytes, path)?;
    let data = decode_voxels(&header, &bytes, path)?;
    Ok(NiftiImage { header, data })
}

/// Converts the voxel bytes after `vox_offset` to scaled f32 values, in parallel.
pub fn decode_voxels(header: &NiftiHeader, bytes: &[u8], path: &Path) -> Result<Vec<f32>> {
    let count = header.num_voxels();
    let elem = header.datatype.size_bytes();
    let start = usize::try_from(header.vox_offset).unwrap_or(usize::MAX);
    let needed = count * elem; // cannot overflow: NiftiHeader::parse checked it
    let available = bytes.len().saturating_sub(start);
    if available < needed || start.checked_add(needed).is_none() {
        return Err(HeparError::format(
            path,
            format!(
                "truncated voxel data: the header ({:?}, {} of shape {:?}) needs {needed} bytes after offset {start}, the file has {available}",
                header.version,
                header.datatype.name(),
                header.shape()
            ),
        ));
    }
    let raw = &bytes[start..start + needed];
    let big = header.endianness == Endianness::Big;
    let mut out = vec![0f32; count];
    macro_rules! convert {
        ($t:ty, $n:expr) => {{
            const CHUNK: usize = 1 << 16;
            out.par_chunks_mut(CHUNK)
                .zip(raw.par_chunks(CHUNK * $n))
                .for_each(|(dst, src)| {
                    for (d, s) in dst.iter_mut().zip(src.chunks_exact($n)) {
                        let mut b = [0u8; $n];
                        b.copy_from_slice(s);
                        let v = if big {
                            <$t>::from_be_bytes(b)
                        } else {
                            <$t>::from_le_bytes(b)
                        };
                        *d = v as f32;
                    }
                });
        }};
    }
    match header.datatype {
        NiftiDataType::U8 => convert!(u8, 1),
        NiftiDataType::I8 => convert!(i8, 1),
        NiftiDataType::I16 => convert!(i16, 2),
        NiftiDataType::U16 => convert!(u16, 2),
        NiftiDataType::I32 => convert!(i32, 4),
        NiftiDataType::U32 => convert!(u32, 4),
        NiftiDataType::I64 => convert!(i64, 8),
        NiftiDataType::U64 => convert!(u64, 8),
        NiftiDataType::F32 => convert!(f32, 4),
        NiftiDataType::F64 => convert!(f64, 8),
    }
    if let Some((slope, inter)) = header.scaling() {
        if slope != 1.0 || inter != 0.0 {
            out.par_iter_mut()
                .for_each(|v| *v = (*v as f64 * slope + inter) as f32);
        }
    }
    Ok(out)
}
