//! The NIfTI-1 (348-byte) and NIfTI-2 (540-byte) headers, decoded into one version-independent
//! struct, and the geometry rules nibabel applies (which affine is "best", the fixes it makes to
//! out-of-spec fields on load) so that Hepar reports the same geometry as the reference reader.

use crate::error::{HeparError, Result};
use std::path::Path;

pub const NIFTI1_HEADER_SIZE: usize = 348;
pub const NIFTI2_HEADER_SIZE: usize = 540;
const NIFTI2_MAGIC: [u8; 8] = *b"n+2\0\r\n\x1a\n";

/// Which of the two header layouts a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NiftiVersion {
    Nifti1,
    Nifti2,
}

/// Byte order of the header and the voxel data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endianness {
    Little,
    Big,
}

/// The voxel storage types Hepar reads and writes (NIfTI datatype codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NiftiDataType {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl NiftiDataType {
    pub fn from_code(code: i16) -> Option<Self> {
        Some(match code {
            2 => Self::U8,
            4 => Self::I16,
            8 => Self::I32,
            16 => Self::F32,
            64 => Self::F64,
            256 => Self::I8,
            512 => Self::U16,
            768 => Self::U32,
            1024 => Self::I64,
            1280 => Self::U64,
            _ => return None,
        })
    }

    pub fn code(self) -> i16 {
        match self {
            Self::U8 => 2,
            Self::I16 => 4,
            Self::I32 => 8,
            Self::F32 => 16,
            Self::F64 => 64,
            Self::I8 => 256,
            Self::U16 => 512,
            Self::U32 => 768,
            Self::I64 => 1024,
            Self::U64 => 1280,
        }
    }

    pub fn size_bytes(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::I64 | Self::U64 | Self::F64 => 8,
        }
    }

    /// The name numpy (and so nibabel) gives this type.
    pub fn name(self) -> &'static str {
        match self {
            Self::U8 => "uint8",
            Self::I8 => "int8",
            Self::I16 => "int16",
            Self::U16 => "uint16",
            Self::I32 => "int32",
            Self::U32 => "uint32",
            Self::I64 => "int64",
            Self::U64 => "uint64",
            Self::F32 => "float32",
            Self::F64 => "float64",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::U8,
            Self::I8,
            Self::I16,
            Self::U16,
            Self::I32,
            Self::U32,
            Self::I64,
            Self::U64,
            Self::F32,
            Self::F64,
        ]
        .into_iter()
        .find(|t| t.name() == name)
    }

    /// Names of datatype codes Hepar knows but does not read (for error messages).
    fn unsupported_name(code: i16) -> Option<&'static str> {
        Some(match code {
            0 => "unknown (0)",
            1 => "binary",
            32 => "complex64",
            128 => "rgb24",
            1536 => "float128",
            1792 => "complex128",
            2048 => "complex256",
            2304 => "rgba32",
            _ => return None,
        })
    }
}

/// A NIfTI header with every field Hepar uses, widened to the NIfTI-2 types.
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiHeader {
    pub version: NiftiVersion,
    pub endianness: Endianness,
    /// `dim[0]` is the number of dimensions, `dim[1..=dim[0]]` the sizes, fastest axis first.
    pub dim: [i64; 8],
    pub datatype: NiftiDataType,
    pub bitpix: i16,
    /// `pixdim[0]` is qfac, `pixdim[1..]` the voxel sizes along dim[1..].
    pub pixdim: [f64; 8],
    pub vox_offset: u64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub xyzt_units: i32,
    pub qform_code: i32,
    pub sform_code: i32,
    pub quatern_bcd: [f64; 3],
    pub qoffset: [f64; 3],
    pub srow: [[f64; 4]; 3],
    pub descrip: String,
}

pub type Affine = [[f64; 4]; 4];

impl NiftiHeader {
    /// A fresh NIfTI-1 little-endian header for a volume of `dims` (fastest axis first).
    pub fn new(dims: &[usize], datatype: NiftiDataType) -> Self {
        let mut dim = [1i64; 8];
        dim[0] = dims.len() as i64;
        for (i, &d) in dims.iter().enumerate().take(7) {
            dim[i + 1] = d as i64;
        }
        let mut pixdim = [1.0f64; 8];
        pixdim[0] = 1.0;
        NiftiHeader {
            version: NiftiVersion::Nifti1,
            endianness: Endianness::Little,
            dim,
            datatype,
            bitpix: (datatype.size_bytes() * 8) as i16,
            pixdim,
            vox_offset: 352,
            scl_slope: 1.0,
            scl_inter: 0.0,
            xyzt_units: 2, // millimetres
            qform_code: 0,
            sform_code: 0,
            quatern_bcd: [0.0; 3],
            qoffset: [0.0; 3],
            srow: [
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
            ],
            descrip: String::new(),
        }
    }

    /// The sizes listed in the header, `dim[1]` first.
    pub fn shape(&self) -> Vec<usize> {
        let n = self.ndim();
        (1..=n).map(|i| self.dim[i].max(0) as usize).collect()
    }

    pub fn ndim(&self) -> usize {
        self.dim[0].clamp(0, 7) as usize
    }

    pub fn num_voxels(&self) -> usize {
        self.shape().iter().product()
    }

    /// Voxel sizes for the listed axes (`pixdim[1..=ndim]`).
    pub fn spacing(&self) -> Vec<f64> {
        (1..=self.ndim()).map(|i| self.pixdim[i]).collect()
    }

    /// The scaling nibabel applies: `None` when the slope is 0 or not finite (raw values are used).
    pub fn scaling(&self) -> Option<(f64, f64)> {
        if self.scl_slope == 0.0 || !self.scl_slope.is_finite() {
            return None;
        }
        let inter = if self.scl_inter.is_finite() {
            self.scl_inter
        } else {
            0.0
        };
        Some((self.scl_slope, inter))
    }

    /// The affine built from the quaternion, qfac and voxel sizes.
    pub fn qform_affine(&self) -> Affine {
        let [b, c, d] = self.quatern_bcd;
        let w2 = 1.0 - (b * b + c * c + d * d);
        // Stored as float32 in NIfTI-1, so a slightly negative w^2 is rounding, not an error.
        let a = if w2.abs() < 3.0 * f32::EPSILON as f64 || w2 < 0.0 {
            0.0
        } else {
            w2.sqrt()
        };
        let rotation = quaternion_to_matrix([a, b, c, d]);
        let qfac = if self.pixdim[0] == -1.0 { -1.0 } else { 1.0 };
        let voxel = [self.pixdim[1], self.pixdim[2], self.pixdim[3] * qfac];
        let mut m = identity_affine();
        for r in 0..3 {
            for col in 0..3 {
                m[r][col] = rotation[r][col] * voxel[col];
            }
            m[r][3] = self.qoffset[r];
        }
        m
    }

    pub fn sform_affine(&self) -> Affine {
        let mut m = identity_affine();
        m[..3].copy_from_slice(&self.srow);
        m
    }

    /// nibabel's fallback when neither form is set: pixdim scaling, x flipped, centred on the volume.
    pub fn base_affine(&self) -> Affine {
        let shape = self.shape();
        let mut full_shape = [1.0f64; 3];
        let mut zooms = [1.0f64; 3];
        for i in 0..shape.len().min(3) {
            full_shape[i] = shape[i] as f64;
            zooms[i] = self.pixdim[i + 1];
        }
        zooms[0] = -zooms[0];
        let mut m = identity_affine();
        for i in 0..3 {
            m[i][i] = zooms[i];
            m[i][3] = -(full_shape[i] - 1.0) / 2.0 * zooms[i];
        }
        m
    }

    /// The affine nibabel's `get_best_affine` returns: sform if set, else qform, else the base.
    pub fn best_affine(&self) -> Affine {
        if self.sform_code != 0 {
            self.sform_affine()
        } else if self.qform_code != 0 {
            self.qform_affine()
        } else {
            self.base_affine()
        }
    }

    /// Stores `affine` as both forms (codes 1, scanner-based), with voxel sizes from its column
    /// lengths and the quaternion of its nearest rotation (qfac -1 when it mirrors), as
    /// nibabel's `set_qform` / `set_sform` and dcm2niix store a DICOM series' geometry.
    pub fn set_affine(&mut self, affine: &Affine) {
        self.srow.copy_from_slice(&affine[..3]);
        self.sform_code = 1;
        self.qform_code = 1;
        let mut directions = [[0.0f64; 3]; 3];
        for col in 0..3 {
            let length = (0..3)
                .map(|r| affine[r][col] * affine[r][col])
                .sum::<f64>()
                .sqrt();
            self.pixdim[col + 1] = length;
            let length = if length == 0.0 { 1.0 } else { length };
            for r in 0..3 {
                directions[r][col] = affine[r][col] / length;
            }
        }
        let mut rotation = nearest_orthogonal(directions);
        let mirrored = determinant3(&rotation) < 0.0;
        self.pixdim[0] = if mirrored { -1.0 } else { 1.0 };
        if mirrored {
            for row in &mut rotation {
                row[2] = -row[2];
            }
        }
        let [_, b, c, d] = matrix_to_quaternion(&rotation);
        self.quatern_bcd = [b, c, d];
        self.qoffset = [affine[0][3], affine[1][3], affine[2][3]];
    }

    /// Applies the same repairs nibabel makes when it loads a header, so geometry agrees with it:
    /// qfac not +-1 becomes 1, zero spatial voxel sizes become 1, negative ones their absolute value.
    fn apply_load_fixes(&mut self) {
        if self.pixdim[0] != 1.0 && self.pixdim[0] != -1.0 {
            self.pixdim[0] = 1.0;
        }
        for i in 1..4 {
            if self.pixdim[i] == 0.0 {
                self.pixdim[i] = 1.0;
            } else if self.pixdim[i] < 0.0 {
                self.pixdim[i] = -self.pixdim[i];
            }
        }
    }

    /// Decodes a header from the start of a file's bytes (at least 348 or 540 bytes).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        if bytes.len() < 4 {
            return Err(HeparError::format(
                path,
                "file too short for a NIfTI header",
            ));
        }
        let size_le = i32::from_le_bytes(bytes[0..4].try_into().unwrap_or([0; 4]));
        let size_be = i32::from_be_bytes(bytes[0..4].try_into().unwrap_or([0; 4]));
        let (version, endianness) = match (size_le, size_be) {
            (348, _) => (NiftiVersion::Nifti1, Endianness::Little),
            (540, _) => (NiftiVersion::Nifti2, Endianness::Little),
            (_, 348) => (NiftiVersion::Nifti1, Endianness::Big),
            (_, 540) => (NiftiVersion::Nifti2, Endianness::Big),
            _ => {
                return Err(HeparError::format(
                    path,
                    format!(
                        "not a NIfTI file: header size field is {size_le}, expected 348 or 540"
                    ),
                ))
            }
        };
        let needed = match version {
            NiftiVersion::Nifti1 => NIFTI1_HEADER_SIZE,
            NiftiVersion::Nifti2 => NIFTI2_HEADER_SIZE,
        };
        if bytes.len() < needed {
            return Err(HeparError::format(
                path,
                format!(
                    "truncated header: {} bytes, a {version:?} header needs {needed}",
                    bytes.len()
                ),
            ));
        }
        let r = FieldReader { bytes, endianness };
        let mut header = match version {
            NiftiVersion::Nifti1 => parse_nifti1(&r, path)?,
            NiftiVersion::Nifti2 => parse_nifti2(&r, path)?,
        };
        header.endianness = endianness;
        header.apply_load_fixes();
        header.validate(path)?;
        Ok(header)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let n = self.dim[0];
        if !(1..=7).contains(&n) {
            return Err(HeparError::format(
                path,
                format!("dim[0] = {n}, must be between 1 and 7"),
            ));
        }
        for i in 1..=n as usize {
            if self.dim[i] < 1 {
                return Err(HeparError::format(
                    path,
                    format!(
                        "dim[{i}] = {}, every listed dimension must be at least 1",
                        self.dim[i]
                    ),
                ));
            }
        }
        let count = self
            .shape()
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .and_then(|c| c.checked_mul(self.datatype.size_bytes()));
        if count.is_none() {
            return Err(HeparError::format(
                path,
                "dimensions overflow the addressable size",
            ));
        }
        Ok(())
    }

    /// Encodes the header (and the 4-byte empty extension block) as it goes on disk.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = FieldWriter {
            bytes: Vec::new(),
            endianness: self.endianness,
        };
        match self.version {
            NiftiVersion::Nifti1 => self.write_nifti1(&mut w),
            NiftiVersion::Nifti2 => self.write_nifti2(&mut w),
        }
        w.bytes.extend_from_slice(&[0, 0, 0, 0]);
        let offset = self.vox_offset as usize;
        if w.bytes.len() < offset {
            w.bytes.resize(offset, 0);
        }
        w.bytes
    }

    fn write_nifti1(&self, w: &mut FieldWriter) {
        w.bytes.resize(NIFTI1_HEADER_SIZE, 0);
        w.i32(0, 348);
        w.u8(38, b'r');
        for i in 0..8 {
            w.i16(
                40 + 2 * i,
                self.dim[i].clamp(i16::MIN as i64, i16::MAX as i64) as i16,
            );
        }
        w.i16(70, self.datatype.code());
        w.i16(72, self.bitpix);
        for i in 0..8 {
            w.f32(76 + 4 * i, self.pixdim[i] as f32);
        }
        w.f32(108, self.vox_offset as f32);
        w.f32(112, self.scl_slope as f32);
        w.f32(116, self.scl_inter as f32);
        w.u8(123, self.xyzt_units as u8);
        w.text(148, 80, &self.descrip);
        w.i16(252, self.qform_code as i16);
        w.i16(254, self.sform_code as i16);
        for i in 0..3 {
            w.f32(256 + 4 * i, self.quatern_bcd[i] as f32);
            w.f32(268 + 4 * i, self.qoffset[i] as f32);
        }
        for r in 0..3 {
            for c in 0..4 {
                w.f32(280 + 16 * r + 4 * c, self.srow[r][c] as f32);
            }
        }
        w.bytes[344..348].copy_from_slice(b"n+1\0");
    }

    fn write_nifti2(&self, w: &mut FieldWriter) {
        w.bytes.resize(NIFTI2_HEADER_SIZE, 0);
        w.i32(0, 540);
        w.bytes[4..12].copy_from_slice(&NIFTI2_MAGIC);
        w.i16(12, self.datatype.code());
        w.i16(14, self.bitpix);
        for i in 0..8 {
            w.i64(16 + 8 * i, self.dim[i]);
        }
        for i in 0..8 {
            w.f64(104 + 8 * i, self.pixdim[i]);
        }
        w.i64(168, self.vox_offset as i64);
        w.f64(176, self.scl_slope);
        w.f64(184, self.scl_inter);
        w.text(240, 80, &self.descrip);
        w.i32(344, self.qform_code);
        w.i32(348, self.sform_code);
        for i in 0..3 {
            w.f64(352 + 8 * i, self.quatern_bcd[i]);
            w.f64(376 + 8 * i, self.qoffset[i]);
        }
        for r in 0..3 {
            for c in 0..4 {
                w.f64(400 + 32 * r + 8 * c, self.srow[r][c]);
            }
        }
        w.i32(500, self.xyzt_units);
    }
}

fn parse_nifti1(r: &FieldReader, path: &Path) -> Result<NiftiHeader> {
    let magic = &r.bytes[344..348];
    if magic == b"ni1\0" {
        return Err(HeparError::format(
            path,
            "a two-file (.hdr/.img) NIfTI-1 header; only single-file .nii / .nii.gz is supported",
        ));
    }
    if magic != b"n+1\0" {
        return Err(HeparError::format(
            path,
            format!("bad NIfTI-1 magic {magic:?}, expected \"n+1\""),
        ));
    }
    let mut dim = [0i64; 8];
    for (i, d) in dim.iter_mut().enumerate() {
        *d = r.i16(40 + 2 * i) as i64;
    }
    let mut pixdim = [0f64; 8];
    for (i, p) in pixdim.iter_mut().enumerate() {
        *p = r.f32(76 + 4 * i) as f64;
    }
    let code = r.i16(70);
    let vox_offset = r.f32(108);
    if !(vox_offset.is_finite() && vox_offset >= 0.0) {
        return Err(HeparError::format(
            path,
            format!("invalid vox_offset {vox_offset}"),
        ));
    }
    let mut srow = [[0f64; 4]; 3];
    for (row, out) in srow.iter_mut().enumerate() {
        for (c, v) in out.iter_mut().enumerate() {
            *v = r.f32(280 + 16 * row + 4 * c) as f64;
        }
    }
    Ok(NiftiHeader {
        version: NiftiVersion::Nifti1,
        endianness: r.endianness,
        dim,
        datatype: datatype_from_code(code, path)?,
        bitpix: r.i16(72),
        pixdim,
        // The spec puts data at least after the 352-byte header + extension flag.
        vox_offset: (vox_offset as u64).max(352),
        scl_slope: r.f32(112) as f64,
        scl_inter: r.f32(116) as f64,
        xyzt_units: r.bytes[123] as i32,
        qform_code: r.i16(252) as i32,
        sform_code: r.i16(254) as i32,
        quatern_bcd: [r.f32(256) as f64, r.f32(260) as f64, r.f32(264) as f64],
        qoffset: [r.f32(268) as f64, r.f32(272) as f64, r.f32(276) as f64],
        srow,
        descrip: r.text(148, 80),
    })
}

fn parse_nifti2(r: &FieldReader, path: &Path) -> Result<NiftiHeader> {
    let magic = &r.bytes[4..12];
    if magic[..4] == *b"ni2\0" {
        return Err(HeparError::format(
            path,
            "a two-file (.hdr/.img) NIfTI-2 header; only single-file .nii / .nii.gz is supported",
        ));
    }
    if magic[..4] != NIFTI2_MAGIC[..4] {
        return Err(HeparError::format(
            path,
            format!("bad NIfTI-2 magic {magic:?}, expected \"n+2\""),
        ));
    }
    let mut dim = [0i64; 8];
    for (i, d) in dim.iter_mut().enumerate() {
        *d = r.i64(16 + 8 * i);
    }
    let mut pixdim = [0f64; 8];
    for (i, p) in pixdim.iter_mut().enumerate() {
        *p = r.f64(104 + 8 * i);
    }
    let code = r.i16(12);
    let vox_offset = r.i64(168);
    if vox_offset < 0 {
        return Err(HeparError::format(
            path,
            format!("invalid vox_offset {vox_offset}"),
        ));
    }
    let mut srow = [[0f64; 4]; 3];
    for (row, out) in srow.iter_mut().enumerate() {
        for (c, v) in out.iter_mut().enumerate() {
            *v = r.f64(400 + 32 * row + 8 * c);
        }
    }
    Ok(NiftiHeader {
        version: NiftiVersion::Nifti2,
        endianness: r.endianness,
        dim,
        datatype: datatype_from_code(code, path)?,
        bitpix: r.i16(14),
        pixdim,
        vox_offset: (vox_offset as u64).max(544),
        scl_slope: r.f64(176),
        scl_inter: r.f64(184),
        xyzt_units: r.i32(500),
        qform_code: r.i32(344),
        sform_code: r.i32(348),
        quatern_bcd: [r.f64(352), r.f64(360), r.f64(368)],
        qoffset: [r.f64(376), r.f64(384), r.f64(392)],
        srow,
        descrip: r.text(240, 80),
    })
}

fn datatype_from_code(code: i16, path: &Path) -> Result<NiftiDataType> {
    NiftiDataType::from_code(code).ok_or_else(|| match NiftiDataType::unsupported_name(code) {
        Some(name) => HeparError::format(
            path,
            format!("unsupported NIfTI datatype {name} (code {code})"),
        ),
        None => HeparError::format(path, format!("unknown NIfTI datatype code {code}")),
    })
}

pub fn identity_affine() -> Affine {
    let mut m = [[0.0; 4]; 4];
    for (i, row) in m.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    m
}

/// Rotation matrix of the unit quaternion (w, x, y, z).
fn quaternion_to_matrix(q: [f64; 4]) -> [[f64; 3]; 3] {
    let [w, x, y, z] = q;
    let norm = w * w + x * x + y * y + z * z;
    if norm < f64::EPSILON {
        return [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
    }
    let s = 2.0 / norm;
    let (xs, ys, zs) = (x * s, y * s, z * s);
    let (wx, wy, wz) = (w * xs, w * ys, w * zs);
    let (xx, xy, xz) = (x * xs, x * ys, x * zs);
    let (yy, yz, zz) = (y * ys, y * zs, z * zs);
    [
        [1.0 - (yy + zz), xy - wz, xz + wy],
        [xy + wz, 1.0 - (xx + zz), yz - wx],
        [xz - wy, yz + wx, 1.0 - (xx + yy)],
    ]
}

fn determinant3(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

/// The unit quaternion (w, x, y, z), w >= 0, of a proper rotation matrix: NIfTI's
/// `mat44_to_quatern` branches, which divide by the largest of the four components.
fn matrix_to_quaternion(r: &[[f64; 3]; 3]) -> [f64; 4] {
    let trace = r[0][0] + r[1][1] + r[2][2] + 1.0;
    let q = if trace > 0.5 {
        let a = 0.5 * trace.sqrt();
        [
            a,
            0.25 * (r[2][1] - r[1][2]) / a,
            0.25 * (r[0][2] - r[2][0]) / a,
            0.25 * (r[1][0] - r[0][1]) / a,
        ]
    } else {
        let xd = 1.0 + r[0][0] - (r[1][1] + r[2][2]);
        let yd = 1.0 + r[1][1] - (r[0][0] + r[2][2]);
        if xd > 1.0 {
            let b = 0.5 * xd.sqrt();
            [
                0.25 * (r[2][1] - r[1][2]) / b,
                b,
                0.25 * (r[0][1] + r[1][0]) / b,
                0.25 * (r[0][2] + r[2][0]) / b,
            ]
        } else if yd > 1.0 {
            let c = 0.5 * yd.sqrt();
            [
                0.25 * (r[0][2] - r[2][0]) / c,
                0.25 * (r[0][1] + r[1][0]) / c,
                c,
                0.25 * (r[1][2] + r[2][1]) / c,
            ]
        } else {
            let zd = 1.0 + r[2][2] - (r[0][0] + r[1][1]);
            let d = 0.5 * zd.max(0.0).sqrt();
            [
                0.25 * (r[1][0] - r[0][1]) / d,
                0.25 * (r[0][2] + r[2][0]) / d,
                0.25 * (r[1][2] + r[2][1]) / d,
                d,
            ]
        }
    };
    if q[0] < 0.0 {
        q.map(|v| -v)
    } else {
        q
    }
}

/// Orientation letters of an affine's voxel axes, as nibabel's `aff2axcodes` computes them: the
/// nearest orthogonal matrix to the direction cosines, each voxel axis then taking, greedily in
/// order, the world axis it points along most.
pub fn orientation_codes(affine: &Affine) -> [char; 3] {
    let mut rs = [[0.0f64; 3]; 3];
    for col in 0..3 {
        let norm = (0..3)
            .map(|r| affine[r][col] * affine[r][col])
            .sum::<f64>()
            .sqrt();
        let norm = if norm == 0.0 { 1.0 } else { norm };
        for r in 0..3 {
            rs[r][col] = affine[r][col] / norm;
        }
    }
    let mut rot = nearest_orthogonal(rs);
    let labels = [('L', 'R'), ('P', 'A'), ('I', 'S')];
    let mut codes = ['?'; 3];
    for (in_axis, code) in codes.iter_mut().enumerate() {
        let column: Vec<f64> = (0..3).map(|r| rot[r][in_axis]).collect();
        if column.iter().all(|v| v.abs() <= 1e-8) {
            continue;
        }
        let out_axis = (0..3)
            .max_by(|&a, &b| {
                column[a]
                    .abs()
                    .partial_cmp(&column[b].abs())
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .unwrap_or(0);
        *code = if column[out_axis] < 0.0 {
            labels[out_axis].0
        } else {
            labels[out_axis].1
        };
        rot[out_axis] = [0.0; 3];
    }
    codes
}

/// The orthogonal polar factor of `m` (Newton iteration `R <- (R + R^-T) / 2`), which is the
/// `U V^T` of its SVD; a singular `m` is returned unchanged (its null axes then get no letter).
fn nearest_orthogonal(m: [[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut r = m;
    for _ in 0..100 {
        let Some(inv) = invert3(&r) else { return m };
        let mut next = [[0.0; 3]; 3];
        let mut change = 0.0f64;
        for i in 0..3 {
            for j in 0..3 {
                next[i][j] = 0.5 * (r[i][j] + inv[j][i]);
                change = change.max((next[i][j] - r[i][j]).abs());
            }
        }
        r = next;
        if change < 1e-14 {
            break;
        }
    }
    r
}

#[allow(clippy::needless_range_loop)] // cofactor indices read best as indices
pub(crate) fn invert3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
        - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
    if det.abs() < 1e-12 || !det.is_finite() {
        return None;
    }
    let inv_det = 1.0 / det;
    let mut out = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            let (a, b) = ((j + 1) % 3, (j + 2) % 3);
            let (c, d) = ((i + 1) % 3, (i + 2) % 3);
            out[i][j] = (m[a][c] * m[b][d] - m[a][d] * m[b][c]) * inv_det;
        }
    }
    Some(out)
}

struct FieldReader<'a> {
    bytes: &'a [u8],
    endianness: Endianness,
}

impl FieldReader<'_> {
    fn array<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut a = [0u8; N];
        a.copy_from_slice(&self.bytes[at..at + N]);
        if self.endianness == Endianness::Big {
            a.reverse();
        }
        a
    }
    fn i16(&self, at: usize) -> i16 {
        i16::from_le_bytes(self.array(at))
    }
    fn i32(&self, at: usize) -> i32 {
        i32::from_le_bytes(self.array(at))
    }
    fn i64(&self, at: usize) -> i64 {
        i64::from_le_bytes(self.array(at))
    }
    fn f32(&self, at: usize) -> f32 {
        f32::from_le_bytes(self.array(at))
    }
    fn f64(&self, at: usize) -> f64 {
        f64::from_le_bytes(self.array(at))
    }
    fn text(&self, at: usize, len: usize) -> String {
        let raw = &self.bytes[at..at + len];
        let end = raw.iter().position(|&b| b == 0).unwrap_or(len);
        String::from_utf8_lossy(&raw[..end]).into_owned()
    }
}

struct FieldWriter {
    bytes: Vec<u8>,
    endianness: Endianness,
}

impl FieldWriter {
    fn put<const N: usize>(&mut self, at: usize, mut le: [u8; N]) {
        if self.endianness == Endianness::Big {
            le.reverse();
        }
        self.bytes[at..at + N].copy_from_slice(&le);
    }
    fn u8(&mut self, at: usize, v: u8) {
        self.bytes[at] = v;
    }
    fn i16(&mut self, at: usize, v: i16) {
        self.put(at, v.to_le_bytes());
    }
    fn i32(&mut self, at: usize, v: i32) {
        self.put(at, v.to_le_bytes());
    }
    fn i64(&mut self, at: usize, v: i64) {
        self.put(at, v.to_le_bytes());
    }
    fn f32(&mut self, at: usize, v: f32) {
        self.put(at, v.to_le_bytes());
    }
    fn f64(&mut self, at: usize, v: f64) {
        self.put(at, v.to_le_bytes());
    }
    fn text(&mut self, at: usize, len: usize, s: &str) {
        let b = s.as_bytes();
        let n = b.len().min(len - 1);
        self.bytes[at..at + n].copy_from_slice(&b[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orientation_of_diagonal_affines() {
        let mut a = identity_affine();
        assert_eq!(orientation_codes(&a), ['R', 'A', 'S']);
        a[0][0] = -0.7;
        a[1][1] = -0.7;
        assert_eq!(orientation_codes(&a), ['L', 'P', 'S']);
    }

    #[test]
    fn orientation_of_permuted_axes() {
        // voxel i runs along world z, j along -x, k along y
        let a = [
            [0.0, -2.0, 0.0, 0.0],
            [0.0, 0.0, 3.0, 0.0],
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        assert_eq!(orientation_codes(&a), ['S', 'L', 'A']);
    }

    #[test]
    fn set_affine_round_trips_through_the_quaternion() {
        // LPS->RAS of a DICOM series: x along -R, y rotated about x by 30 degrees, mirrored.
        let (s, c) = (30f64.to_radians().sin(), 30f64.to_radians().cos());
        let affine = [
            [-0.7, 0.0, 0.0, 10.0],
            [0.0, -0.8 * c, 2.5 * s, -20.0],
            [0.0, 0.8 * s, 2.5 * c, 30.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let mut h = NiftiHeader::new(&[4, 5, 6], NiftiDataType::I16);
        h.set_affine(&affine);
        let q = h.qform_affine();
        for r in 0..3 {
            for col in 0..4 {
                assert!((q[r][col] - affine[r][col]).abs() < 1e-12, "{q:?}");
            }
        }
        assert_eq!(h.sform_affine(), affine);
        assert!((h.pixdim[3] - 2.5).abs() < 1e-12);
        // a 180-degree rotation takes the small-trace branches
        let flipped = [
            [-1.0, 0.0, 0.0, 0.0],
            [0.0, -1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        h.set_affine(&flipped);
        assert_eq!(h.pixdim[0], 1.0);
        let q = h.qform_affine();
        for r in 0..3 {
            for col in 0..4 {
                assert!((q[r][col] - flipped[r][col]).abs() < 1e-12, "{q:?}");
            }
        }
    }

    #[test]
    fn qform_with_identity_quaternion_is_pixdim_scaling() {
        let mut h = NiftiHeader::new(&[4, 5, 6], NiftiDataType::I16);
        h.pixdim[1..4].copy_from_slice(&[0.5, 0.75, 2.5]);
        h.pixdim[0] = -1.0;
        h.qoffset = [1.0, 2.0, 3.0];
        let q = h.qform_affine();
        assert_eq!(q[0][0], 0.5);
        assert_eq!(q[1][1], 0.75);
        assert_eq!(q[2][2], -2.5);
        assert_eq!([q[0][3], q[1][3], q[2][3]], [1.0, 2.0, 3.0]);
    }
}
