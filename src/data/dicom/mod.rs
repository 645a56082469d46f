//! DICOM series (one file per slice) read through the dicom-rs crates: files grouped by
//! SeriesInstanceUID, slices sorted along the normal of ImageOrientationPatient (InstanceNumber
//! when positions are missing), stored values rescaled to Hounsfield units, spacing from
//! PixelSpacing and the slice positions, and the LPS geometry turned into NIfTI's RAS affine.
//! Uncompressed (explicit/implicit VR, little/big endian), deflated and RLE Lossless files are
//! decoded; any other compressed transfer syntax is an error naming it.

pub mod read;
pub mod series;
pub mod slice;

pub use read::{read_mask_series, read_series, DicomVolume};
pub use series::{is_dicom_folder, SeriesListing, SeriesSummary, SortedSeries};
pub use slice::SliceHeader;
