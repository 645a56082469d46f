//! Inference with a trained run: a CT volume preprocessed as in training, the network's
//! probabilities resampled onto the scan's own grid, thresholded into a mask with the scan's
//! geometry. Stage 1 (liver) for now.
//!
//! `sliding_window` runs any network over windows of a volume as MONAI does and
//! `volume_inference` applies it to a whole volume (`hepar infer`); `model_source` loads the
//! network from a run checkpoint or a `.pth`; `postprocess` holds the mask clean-up steps
//! (connected components, per-slice morphology, hole filling).

pub mod model_source;
pub mod postprocess;
pub mod sliding_window;
pub mod volume_inference;

use crate::backend::Device;
use crate::data::preprocess;
use crate::data::resize::Interpolation;
use crate::data::restore::stage1_to_source;
use crate::data::Volume;
use crate::error::{HeparError, Result};
use crate::tensor::Tensor;
use crate::train::run_checkpoint::LoadedRun;
use crate::train::Stage;
use std::path::Path;

/// The liver mask (0/1) of `source` on its own grid, from a stage-1 run checkpoint
/// (`checkpoint_path` names it in errors), running the network on `device`.
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
    let model = run.model(checkpoint_path)?;
    crate::nn::to_device(&*model, device)?;
    let cfg = &run.info.data.preprocess.stage1;
    let (image, _) = preprocess::stage1(source.clone(), None, cfg)?;
    let [d, h, w] = image.shape_zyx;
    let x = Tensor::from_vec_on(image.data, &[1, 1, d, h, w], device)?;
    let probabilities = crate::no_grad(|| model.forward(&x, false)?.sigmoid())?.try_to_vec_f32()?;
    // Resampling probabilities (then thresholding) gives smoother borders than resampling a mask.
    let restored = stage1_to_source(&probabilities, [d, h, w], source, Interpolation::Linear)?;
    let mask = restored
        .data
        .iter()
        .map(|&p| if p > 0.5 { 1.0 } else { 0.0 })
        .collect();
    source.with_data(mask)
}
