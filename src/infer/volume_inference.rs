//! One network over one volume exactly as given (no preprocessing): windows slid over it as MONAI
//! does, the blended logits turned into probabilities (sigmoid for one class, softmax over the
//! classes otherwise). 3D networks see the volume as `[1, 1, z, y, x]`; 2D networks see each
//! axial slice with its `in_channels` neighbours as channels (the seed's 2.5D stacks, edges
//! repeated), windows sliding over (y, x).

use super::sliding_window::{sliding_window, WindowOptions};
use crate::backend::Device;
use crate::data::Volume;
use crate::error::{HeparError, Result};
use crate::nn::Network;
use crate::tensor::Tensor;
use std::path::Path;

/// Probabilities per output channel, each on the volume's (z, y, x) grid.
pub struct VolumeProbabilities {
    pub channels: Vec<Vec<f32>>,
}

/// The window: `roi` in (z, y, x) order for 3D networks and (y, x) for 2D ones, the whole
/// volume (or slice) when absent; it must satisfy the network's shape rules and keep its size
/// through the network.
fn window_for(model: &dyn Network, volume: &Volume, roi: Option<&[usize]>) -> Result<Vec<usize>> {
    let config = model.config();
    let dims = config.dims();
    let spatial = &volume.shape_zyx[3 - dims..];
    let roi = match roi {
        Some(r) if r.len() != dims => {
            return Err(HeparError::Config(format!(
                "--roi {r:?} has {} values; {} is a {dims}D network and needs {dims} ({})",
                r.len(),
                config.arch,
                if dims == 3 { "z, y, x" } else { "y, x" }
            )))
        }
        Some(r) => r.to_vec(),
        None => spatial.to_vec(),
    };
    let mut shape = vec![1, config.in_channels];
    shape.extend(roi.iter().map(|&r| r.max(1)));
    config.check_input(&shape).map_err(|e| {
        HeparError::Config(format!(
            "window {roi:?} does not suit {}: {e}{}",
            config.arch,
            if matches!(roi.len(), n if n == dims) && spatial == roi.as_slice() {
                " (the window defaults to the whole volume; pass --roi)"
            } else {
                ""
            }
        ))
    })?;
    if config.output_spatial(&roi) != roi {
        return Err(HeparError::Config(format!(
            "window {roi:?}: {} returns {:?} for it, and windows must keep their size; use multiples of 16",
            config.arch,
            config.output_spatial(&roi)
        )));
    }
    Ok(roi)
}

/// The network's input: `[1, 1, z, y, x]` (3D) or one 2.5D stack per axial slice (2D).
fn network_input(
    model: &dyn Network,
    volume: &Volume,
    path: &Path,
    device: Device,
) -> Result<Tensor> {
    let config = model.config();
    let [d, h, w] = volume.shape_zyx;
    if config.dims() == 3 {
        if config.in_channels != 1 {
            return Err(HeparError::format(
                path,
                format!(
                    "one volume is one channel, but this {} takes {} input channels",
                    config.arch, config.in_channels
                ),
            ));
        }
        return Tensor::from_vec_on(volume.data.clone(), &[1, 1, d, h, w], device);
    }
    let c = config.in_channels;
    let plane = h * w;
    let mut stacks = Vec::with_capacity(d * c * plane);
    for z in 0..d {
        for k in 0..c {
            // Neighbours centred on z; beyond the ends the edge slice repeats.
            let source =
                (z as isize + k as isize - (c / 2) as isize).clamp(0, d as isize - 1) as usize;
            stacks.extend_from_slice(&volume.data[source * plane..(source + 1) * plane]);
        }
    }
    Tensor::from_vec_on(stacks, &[d, c, h, w], device)
}

/// Runs `model` over `volume` (`path` names it in errors) on `device`.
pub fn infer_volume(
    model: &dyn Network,
    volume: &Volume,
    path: &Path,
    roi: Option<&[usize]>,
    window: &WindowOptions,
    device: Device,
) -> Result<VolumeProbabilities> {
    volume.check_finite(path)?;
    let roi = window_for(model, volume, roi)?;
    let input = network_input(model, volume, path, device)?;
    let logits = crate::no_grad(|| {
        let mut predict = |w: &Tensor| model.forward(w, false);
        sliding_window(&input, &roi, window, &mut predict)
    })?;
    let classes = model.config().classes;
    let probabilities = if classes == 1 {
        logits.sigmoid()?
    } else {
        logits.softmax(1)?
    };
    let values = probabilities.try_to_vec_f32()?;
    let [d, h, w] = volume.shape_zyx;
    let voxels = d * h * w;
    let channels = (0..classes)
        .map(|k| {
            if model.config().dims() == 3 {
                // [1, K, z, y, x]: channel k is one contiguous run.
                values[k * voxels..(k + 1) * voxels].to_vec()
            } else {
                // [z, K, y, x]: gather slice by slice.
                (0..d)
                    .flat_map(|z| {
                        let start = (z * classes + k) * h * w;
                        values[start..start + h * w].iter().copied()
                    })
                    .collect()
            }
        })
        .collect();
    Ok(VolumeProbabilities { channels })
}
