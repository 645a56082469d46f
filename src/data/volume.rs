//! A 3D scan in memory: f32 voxels in C order (z, y, x), x fastest, with its voxel spacing and
//! the NIfTI header it came from, which carries the geometry (qform, sform) for writing outputs.

use super::nifti::{self, Affine, NiftiDataType, NiftiHeader};
use super::resize::{resize_zyx, Interpolation};
use crate::error::{HeparError, Result};
use std::path::Path;

#[derive(Debug, Clone)]
pub struct Volume {
    /// Voxels, index `(z * height_y + y) * width_x + x`.
    pub data: Vec<f32>,
    /// `[depth_z, height_y, width_x]`.
    pub shape_zyx: [usize; 3],
    /// Voxel size in mm along z, y, x (NIfTI pixdim[3], pixdim[2], pixdim[1]).
    pub spacing_zyx: [f64; 3],
    /// The geometry source: a header whose dims, pixdim, qform and sform describe this volume.
    pub header: NiftiHeader,
}

impl Volume {
    /// Refuses a volume holding NaN or infinite voxels, naming the file it came from and the
    /// count (no network or statistic can read them).
    pub fn check_finite(&self, path: &Path) -> Result<()> {
        let bad = self.data.iter().filter(|v| !v.is_finite()).count();
        if bad > 0 {
            return Err(HeparError::format(
                path,
                format!("{bad} of {} voxels are NaN or infinite", self.data.len()),
            ));
        }
        Ok(())
    }

    /// A volume with a plain geometry: axes along world x, y, z (RAS), origin 0, both forms set.
    pub fn new(data: Vec<f32>, shape_zyx: [usize; 3], spacing_zyx: [f64; 3]) -> Result<Self> {
        let n: usize = shape_zyx.iter().product();
        if n == 0 || data.len() != n {
            return Err(HeparError::shape(
                "Volume::new",
                format!("{} values for shape (z, y, x) {shape_zyx:?}", data.len()),
            ));
        }
        let mut header = NiftiHeader::new(
            &[shape_zyx[2], shape_zyx[1], shape_zyx[0]],
            NiftiDataType::F32,
        );
        header.pixdim[1] = spacing_zyx[2];
        header.pixdim[2] = spacing_zyx[1];
        header.pixdim[3] = spacing_zyx[0];
        header.qform_code = 1;
        header.sform_code = 1;
        header.srow = [
            [spacing_zyx[2], 0.0, 0.0, 0.0],
            [0.0, spacing_zyx[1], 0.0, 0.0],
            [0.0, 0.0, spacing_zyx[0], 0.0],
        ];
        Ok(Volume {
            data,
            shape_zyx,
            spacing_zyx,
            header,
        })
    }

    /// Wraps a decoded NIfTI image; it must be 3D (or 2D, or 4D+ with trailing sizes of 1).
    pub fn from_nifti(image: nifti::NiftiImage, path: &Path) -> Result<Self> {
        let shape = image.header.shape();
        if shape.len() > 3 && shape[3..].iter().any(|&d| d != 1) {
            return Err(HeparError::format(
                path,
                format!("expected a 3D volume, the header lists shape {shape:?}"),
            ));
        }
        let dim = |i: usize| shape.get(i).copied().unwrap_or(1);
        let pix = |i: usize| {
            if i < shape.len() {
                image.header.pixdim[i + 1]
            } else {
                1.0
            }
        };
        Ok(Volume {
            data: image.data,
            shape_zyx: [dim(2), dim(1), dim(0)],
            spacing_zyx: [pix(2), pix(1), pix(0)],
            header: image.header,
        })
    }

    /// Reads a `.nii` / `.nii.gz` file as a (z, y, x) volume.
    pub fn read(path: &Path) -> Result<Self> {
        Self::from_nifti(nifti::read_nifti(path)?, path)
    }

    /// Writes the volume with its own geometry and the given storage type (no scaling).
    pub fn write(&self, path: &Path, datatype: NiftiDataType) -> Result<()> {
        self.write_data(path, &self.data, datatype)
    }

    /// Writes other voxels (a mask, a probability map) with this volume's geometry.
    pub fn write_data(&self, path: &Path, data: &[f32], datatype: NiftiDataType) -> Result<()> {
        nifti::write_nifti(path, &self.output_header(datatype, 1), data)
    }

    /// This volume's header for `maps` unscaled maps of `datatype` (4D when more than one).
    fn output_header(&self, datatype: NiftiDataType, maps: usize) -> NiftiHeader {
        let mut header = self.header.clone();
        header.datatype = datatype;
        header.scl_slope = 1.0;
        header.scl_inter = 0.0;
        header.dim[0] = if maps > 1 { 4 } else { 3 };
        header.dim[1] = self.shape_zyx[2] as i64;
        header.dim[2] = self.shape_zyx[1] as i64;
        header.dim[3] = self.shape_zyx[0] as i64;
        for d in &mut header.dim[4..] {
            *d = 1;
        }
        if maps > 1 {
            header.dim[4] = maps as i64;
            header.pixdim[4] = 1.0;
        }
        header
    }

    /// Writes several maps on this volume's grid as one file: 3D for one map, else 4D with the
    /// maps along the fourth axis (NIfTI's order: x fastest, the map index slowest).
    pub fn write_channels(
        &self,
        path: &Path,
        channels: &[Vec<f32>],
        datatype: NiftiDataType,
    ) -> Result<()> {
        if let [only] = channels {
            return self.write_data(path, only, datatype);
        }
        if channels.is_empty() || channels.iter().any(|c| c.len() != self.data.len()) {
            return Err(HeparError::shape(
                "Volume::write_channels",
                format!(
                    "{}: {} maps for a volume of {} voxels (every map must have them all)",
                    path.display(),
                    channels.len(),
                    self.data.len()
                ),
            ));
        }
        let data: Vec<f32> = channels.iter().flatten().copied().collect();
        nifti::write_nifti(path, &self.output_header(datatype, channels.len()), &data)
    }

    /// A volume with the same geometry and other voxels.
    pub fn with_data(&self, data: Vec<f32>) -> Result<Self> {
        if data.len() != self.data.len() {
            return Err(HeparError::shape(
                "Volume::with_data",
                format!("{} values for shape {:?}", data.len(), self.shape_zyx),
            ));
        }
        Ok(Volume {
            data,
            shape_zyx: self.shape_zyx,
            spacing_zyx: self.spacing_zyx,
            header: self.header.clone(),
        })
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn index(&self, z: usize, y: usize, x: usize) -> usize {
        (z * self.shape_zyx[1] + y) * self.shape_zyx[2] + x
    }

    /// The voxel-to-world (mm) affine, as nibabel's `get_best_affine` would choose it; voxel
    /// coordinates are in NIfTI order (i = x, j = y, k = z).
    pub fn affine(&self) -> Affine {
        self.header.best_affine()
    }

    /// Resamples to `shape_zyx`, keeping the physical extent: spacing and both forms are updated
    /// so the resized volume still lies where the original did.
    pub fn resized(&self, shape_zyx: [usize; 3], interp: Interpolation) -> Result<Self> {
        let data = resize_zyx(&self.data, self.shape_zyx, shape_zyx, interp)?;
        let scale_zyx = [0, 1, 2].map(|a| self.shape_zyx[a] as f64 / shape_zyx[a] as f64);
        Ok(Volume {
            data,
            shape_zyx,
            spacing_zyx: [0, 1, 2].map(|a| self.spacing_zyx[a] * scale_zyx[a]),
            header: rescaled_header(&self.header, shape_zyx, scale_zyx),
        })
    }

    /// Crops the box `start_zyx .. start_zyx + shape_zyx` (which must lie inside the volume).
    pub fn cropped(&self, start_zyx: [usize; 3], shape_zyx: [usize; 3]) -> Result<Self> {
        for a in 0..3 {
            if shape_zyx[a] == 0 || start_zyx[a] + shape_zyx[a] > self.shape_zyx[a] {
                return Err(HeparError::invalid(
                    "Volume::cropped",
                    format!(
                        "box start {start_zyx:?} shape {shape_zyx:?} outside volume {:?}",
                        self.shape_zyx
                    ),
                ));
            }
        }
        let mut data = Vec::with_capacity(shape_zyx.iter().product());
        for z in start_zyx[0]..start_zyx[0] + shape_zyx[0] {
            for y in start_zyx[1]..start_zyx[1] + shape_zyx[1] {
                let i = self.index(z, y, start_zyx[2]);
                data.extend_from_slice(&self.data[i..i + shape_zyx[2]]);
            }
        }
        let offset_xyz = [
            start_zyx[2] as f64,
            start_zyx[1] as f64,
            start_zyx[0] as f64,
        ];
        let mut header = self.header.clone();
        shift_forms(&mut header, offset_xyz);
        header.dim[1] = shape_zyx[2] as i64;
        header.dim[2] = shape_zyx[1] as i64;
        header.dim[3] = shape_zyx[0] as i64;
        Ok(Volume {
            data,
            shape_zyx,
            spacing_zyx: self.spacing_zyx,
            header,
        })
    }
}

#[allow(clippy::needless_range_loop)] // matrix-vector products over fixed 3x3 indices
/// Moves the origin of both forms to the old voxel coordinate `offset_xyz`.
fn shift_forms(header: &mut NiftiHeader, offset_xyz: [f64; 3]) {
    let q = header.qform_affine();
    for r in 0..3 {
        let q_shift: f64 = (0..3).map(|c| q[r][c] * offset_xyz[c]).sum();
        header.qoffset[r] += q_shift;
        let s_shift: f64 = (0..3).map(|c| header.srow[r][c] * offset_xyz[c]).sum();
        header.srow[r][3] += s_shift;
    }
}

#[allow(clippy::needless_range_loop)]
/// The header of a resampled volume: voxel sizes times `scale`, origin moved to the centre of the
/// new first voxel (half-voxel-centre convention of [`resize_zyx`]).
fn rescaled_header(
    header: &NiftiHeader,
    shape_zyx: [usize; 3],
    scale_zyx: [f64; 3],
) -> NiftiHeader {
    let mut out = header.clone();
    let scale_xyz = [scale_zyx[2], scale_zyx[1], scale_zyx[0]];
    let offset_xyz = scale_xyz.map(|s| 0.5 * s - 0.5);
    shift_forms(&mut out, offset_xyz);
    for c in 0..3 {
        for r in 0..3 {
            out.srow[r][c] *= scale_xyz[c];
        }
        out.pixdim[c + 1] *= scale_xyz[c];
    }
    out.dim[1] = shape_zyx[2] as i64;
    out.dim[2] = shape_zyx[1] as i64;
    out.dim[3] = shape_zyx[0] as i64;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resized_volume_keeps_its_world_extent() {
        let v = Volume::new(vec![0.0; 4 * 6 * 8], [4, 6, 8], [2.0, 1.0, 0.5]).unwrap();
        let r = v.resized([2, 3, 4], Interpolation::Linear).unwrap();
        assert_eq!(r.spacing_zyx, [4.0, 2.0, 1.0]);
        let a = r.affine();
        // new voxel 0 along x covers old voxels 0 and 1: centre at old 0.5 -> 0.25 mm
        assert!((a[0][3] - 0.25).abs() < 1e-12);
        assert!((a[0][0] - 1.0).abs() < 1e-12);
        assert!((a[2][3] - 1.0).abs() < 1e-12);
        let q = r.header.qform_affine();
        for row in 0..3 {
            for col in 0..4 {
                assert!((q[row][col] - a[row][col]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn crop_moves_origin() {
        let data: Vec<f32> = (0..60).map(|v| v as f32).collect();
        let v = Volume::new(data, [3, 4, 5], [3.0, 2.0, 1.0]).unwrap();
        let c = v.cropped([1, 1, 2], [2, 2, 3]).unwrap();
        assert_eq!(c.data[0], v.data[v.index(1, 1, 2)]);
        assert_eq!(c.data[c.len() - 1], v.data[v.index(2, 2, 4)]);
        let a = c.affine();
        assert_eq!([a[0][3], a[1][3], a[2][3]], [2.0, 2.0, 3.0]);
        assert!(v.cropped([2, 0, 0], [2, 1, 1]).is_err());
    }
}
