//! Inference: a CT volume preprocessed as in training, the networks' probabilities mapped back
//! onto the scan's own grid, masks with the scan's geometry.
//!
//! `pipeline` is the coarse-to-fine liver and tumour pipeline of `hepar predict`;
//! `sliding_window` runs any network over windows of a volume as MONAI does and
//! `volume_inference` applies it to a whole volume (`hepar infer`); `model_source` loads the
//! network from a run checkpoint or a `.pth`; `postprocess` holds the mask clean-up steps
//! (connected components, per-slice morphology, hole filling).

pub mod liver_boxes;
pub mod model_source;
pub mod pipeline;
pub mod postprocess;
pub mod predict_files;
pub mod rib_fracture;
pub mod sliding_window;
pub mod volume_inference;

use crate::backend::Device;
use crate::data::Volume;
use crate::error::{HeparError, Result};
use crate::train::run_checkpoint::LoadedRun;
use crate::train::Stage;
use pipeline::{predict_case, LiverModel, LiverSource, PipelineOptions};
use std::path::Path;

/// The liver mask (0/1) of `source` on its own grid (stage 1 of the pipeline: thresholded, largest
/// component), from a stage-1 run checkpoint (`checkpoint_path` names it in errors), running the
/// network on `device`.
pub fn predict_liver(
    run: &LoadedRun,
    checkpoint_path: &Path,
    source: &Volume,
    device: Device,
) -> Result<Volume> {
    if run.info.stage != Stage::Liver {
        return Err(HeparError::invalid(
            "predict",
            format!(
                "{} is a {} checkpoint; predict handles stage-1 (liver) checkpoints",
                checkpoint_path.display(),
                run.info.stage
            ),
        ));
    }
    let model = LiverModel {
        network: run.model(checkpoint_path)?,
        preprocess: run.info.data.preprocess.stage1.clone(),
        path: checkpoint_path.to_path_buf(),
    };
    crate::nn::to_device(&*model.network, device)?;
    let prediction = predict_case(
        source,
        Path::new("the input volume"),
        LiverSource::Model(&model),
        None,
        PipelineOptions {
            batch: 1,
            device,
            show_progress: false,
        },
    )?;
    Ok(prediction.labels)
}
