//! NIfTI-1 and NIfTI-2 files (`.nii`, `.nii.gz`), little and big endian: our own implementation,
//! since the `nifti` crate does not read NIfTI-2.

pub mod header;
pub mod reader;
pub mod writer;

pub use header::{orientation_codes, Affine, Endianness, NiftiDataType, NiftiHeader, NiftiVersion};
pub use reader::{read_nifti, read_nifti_header, NiftiImage};
pub use writer::write_nifti;
