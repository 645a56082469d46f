//! The `pipeline-512` workload of `hepar bench`: the whole coarse-to-fine `hepar predict` on a
//! 200 x 512 x 512 CT (a synthetic phantom at LiTS's in-plane size) with the seed's trained
//! networks, so the liver box, and with it the tumour stage's work, is the size real livers give.
//! Preprocessing, both networks, resampling and post-processing are all inside the timing;
//! reading and writing files are not.

use crate::backend::Device;
use crate::data::config::DataParameters;
use crate::data::Volume;
use crate::error::{HeparError, Result};
use crate::infer::pipeline::{predict_case, LiverModel, LiverSource, PipelineOptions, TumorModel};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// (z, y, x) of the benchmark CT.
pub const PIPELINE_SHAPE_ZYX: [usize; 3] = [200, 512, 512];

/// Where the seed's networks are read from: `HEPAR_SEED_MODELS`, else the shared fixtures folder
/// beside the checkout.
fn seed_models_dir() -> PathBuf {
    std::env::var_os("HEPAR_SEED_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new("..").join("shared").join("fixtures").join("seed"))
}

pub struct PreparedPipeline {
    liver: LiverModel,
    tumor: TumorModel,
    ct: Volume,
    device: Device,
}

impl PreparedPipeline {
    pub fn new(device: Device) -> Result<Self> {
        let dir = seed_models_dir();
        let (liver_path, tumor_path) = (dir.join("liver3d.pth"), dir.join("tumor2d.pth"));
        for path in [&liver_path, &tumor_path] {
            if !path.is_file() {
                return Err(HeparError::format(
                    path,
                    "the pipeline workload needs the seed's trained networks: set HEPAR_SEED_MODELS to the folder holding liver3d.pth and tumor2d.pth",
                ));
            }
        }
        // The seed's preprocessing: the [preprocess] defaults (128^3 volumes, 256^2 slices).
        let data = DataParameters::default();
        let liver = LiverModel::load(&liver_path, &data, &Default::default(), device)?;
        let tumor = TumorModel::load(&tumor_path, &data, &Default::default(), device)?;
        let (ct, _) = crate::data::synth::phantom(0, 0, PIPELINE_SHAPE_ZYX)?;
        Ok(PreparedPipeline {
            liver,
            tumor,
            ct,
            device,
        })
    }

    /// Seconds of one prediction.
    pub fn run(&mut self) -> Result<f64> {
        let start = Instant::now();
        let prediction = predict_case(
            &self.ct,
            Path::new("pipeline-512 phantom"),
            LiverSource::Model(&self.liver),
            Some(&self.tumor),
            PipelineOptions {
                batch: 16,
                device: self.device,
                show_progress: false,
            },
        )?;
        self.device.synchronize()?;
        let seconds = start.elapsed().as_secs_f64();
        if !prediction.labels.data.contains(&1.0) {
            return Err(HeparError::invalid(
                "bench pipeline-512",
                "the seed's liver network found no liver in the phantom: the timing would not cover the tumour stage",
            ));
        }
        Ok(seconds)
    }
}
