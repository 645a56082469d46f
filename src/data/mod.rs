//! Everything between a folder of CT scans and a batch of f32 arrays: NIfTI files, volumes,
//! dataset layouts and splits, preprocessing with an on-disk cache, augmentation, sampling,
//! synthetic phantoms and background loading. Batches are plain `Vec<f32>` plus a shape
//! (N, C, D, H, W or N, C, H, W); turning them into tensors is the trainer's job.

pub mod augment;
pub mod cache;
pub mod clahe;
pub mod config;
pub mod ct_window;
pub mod dataset;
pub mod dicom;
pub mod keras_ct;
pub mod liver_boxes;
pub mod loader;
pub mod nifti;
pub mod patches;
pub mod photo_augment;
pub mod photos;
pub mod prepare;
pub mod preprocess;
pub mod resize;
pub mod restore;
pub mod sampling;
pub mod synth;
pub mod synth_photos;
pub mod transforms;
pub mod volume;

pub use volume::Volume;
