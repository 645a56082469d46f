//! After each validation of a 2D network: `<run>/predictions/epoch-NNN.png`, the first few
//! validation samples as image | truth | prediction (see `report::prediction_panels`).

use super::config::TargetChoice;
use super::stage_data::ValidationBatch;
use super::trainer::target_tensor;
use crate::backend::Device;
use crate::error::Result;
use crate::nn::Network;
use crate::report::png::write_png;
use crate::report::prediction_panels::{render_predictions, PredictionSample};
use crate::tensor::Tensor;
use std::path::{Path, PathBuf};

/// How many validation samples the picture shows.
pub const SAMPLES_SHOWN: usize = 4;

pub fn prediction_image_path(run_dir: &Path, epoch: u64) -> PathBuf {
    run_dir
        .join("predictions")
        .join(format!("epoch-{epoch:03}.png"))
}

/// Class map of `logits` [k, classes, h, w]: `logit > 0` for one class, else the argmax.
fn predicted_classes(logits: &[f32], classes: usize, spatial: usize) -> Vec<f32> {
    if classes == 1 {
        return logits.iter().map(|&l| f32::from(l > 0.0)).collect();
    }
    let samples = logits.len() / (classes * spatial);
    let mut out = Vec::with_capacity(samples * spatial);
    for n in 0..samples {
        for v in 0..spatial {
            let score = |k: usize| logits[(n * classes + k) * spatial + v];
            let best = (1..classes).fold(0, |b, k| if score(k) > score(b) { k } else { b });
            out.push(best as f32);
        }
    }
    out
}

/// Predicts the first [`SAMPLES_SHOWN`] samples of 2D validation batches ([n, C, h, w]) and
/// writes their picture atomically to `path`; nothing for other batch shapes.
pub fn write_prediction_image(
    model: &dyn Network,
    batches: &[ValidationBatch],
    (target, classes): (TargetChoice, usize),
    device: Device,
    path: &Path,
) -> Result<()> {
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let &[_, channels, h, w] = first.image_shape.as_slice() else {
        return Ok(());
    };
    let spatial = h * w;
    let mut samples = Vec::new();
    for b in batches {
        let left = SAMPLES_SHOWN - samples.len();
        if left == 0 {
            break;
        }
        let k = b.image_shape[0].min(left);
        let x = Tensor::from_vec_on(
            b.images[..k * channels * spatial].to_vec(),
            &[k, channels, h, w],
            device,
        )?;
        let truth = target_tensor(&b.target[..k * spatial], &[k, 1, h, w], target, device)?
            .try_to_vec_f32()?;
        let logits = crate::no_grad(|| model.forward_all(&x, false))?
            .logits
            .try_to_vec_f32()?;
        let prediction = predicted_classes(&logits, classes, spatial);
        for i in 0..k {
            samples.push(PredictionSample {
                image: b.images[i * channels * spatial..(i + 1) * channels * spatial].to_vec(),
                truth: truth[i * spatial..(i + 1) * spatial].to_vec(),
                prediction: prediction[i * spatial..(i + 1) * spatial].to_vec(),
            });
        }
    }
    write_png(path, &render_predictions(&samples, channels, [h, w])?)
}
