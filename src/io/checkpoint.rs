//! Our training checkpoint: one safetensors file holding the weights (`model.<name>`), the
//! optimizer's tensors (`optim.<name>`), and in the metadata its scalars (`optim.<name>`), the
//! epoch, the step and the run's configuration as JSON. Saved atomically, so an interrupted
//! save leaves the previous checkpoint intact.

use super::named_tensors::NamedTensors;
use super::safetensors_io::{read_safetensors, write_safetensors, TensorFile};
use crate::error::{HeparError, Result};
use std::collections::BTreeMap;
use std::path::Path;

const FORMAT_KEY: &str = "format";
const FORMAT_NAME: &str = "hepar-checkpoint";
const VERSION_KEY: &str = "format_version";
const VERSION: u32 = 1;
const MODEL_PREFIX: &str = "model.";
const OPTIM_PREFIX: &str = "optim.";

/// What an optimizer needs to resume: per-parameter tensors (moments...) and scalars (step
/// count, learning rate...), under names the optimizer chooses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptimizerState {
    pub tensors: NamedTensors,
    pub scalars: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainingCheckpoint {
    pub model: NamedTensors,
    pub optimizer: OptimizerState,
    pub epoch: u64,
    pub step: u64,
    /// The configuration the run was started with.
    pub config: serde_json::Value,
}

pub fn save_checkpoint(path: &Path, checkpoint: &TrainingCheckpoint) -> Result<()> {
    let mut tensors = NamedTensors::new();
    for (prefix, group) in [
        (MODEL_PREFIX, &checkpoint.model),
        (OPTIM_PREFIX, &checkpoint.optimizer.tensors),
    ] {
        for (name, tensor) in group.iter() {
            tensors
                .insert(format!("{prefix}{name}"), tensor.clone())
                .map_err(|e| HeparError::Checkpoint(format!("{}: {e}", path.display())))?;
        }
    }
    let mut metadata = BTreeMap::new();
    metadata.insert(FORMAT_KEY.to_string(), FORMAT_NAME.to_string());
    metadata.insert(VERSION_KEY.to_string(), VERSION.to_string());
    metadata.insert("epoch".to_string(), checkpoint.epoch.to_string());
    metadata.insert("step".to_string(), checkpoint.step.to_string());
    metadata.insert("config".to_string(), checkpoint.config.to_string());
    for (name, value) in &checkpoint.optimizer.scalars {
        // f64's Display is the shortest text that parses back to the same value.
        metadata.insert(format!("{OPTIM_PREFIX}{name}"), value.to_string());
    }
    write_safetensors(path, &tensors, &metadata)
}

/// Whether a parsed safetensors file is a training checkpoint (rather than, say, a plain state
/// dict saved by another tool).
pub fn is_checkpoint(file: &TensorFile) -> bool {
    file.metadata.contains_key(FORMAT_KEY)
}

pub fn load_checkpoint(path: &Path) -> Result<TrainingCheckpoint> {
    let file = read_safetensors(path)?;
    checkpoint_from_file(path, file)
}

/// Interprets a parsed safetensors file as a training checkpoint; `path` names it in errors.
pub fn checkpoint_from_file(path: &Path, file: TensorFile) -> Result<TrainingCheckpoint> {
    let fail = |msg: String| HeparError::format(path, msg);
    let meta = &file.metadata;
    match meta.get(FORMAT_KEY).map(String::as_str) {
        Some(FORMAT_NAME) => {}
        Some(other) => return Err(fail(format!("metadata '{FORMAT_KEY}' is '{other}', not a {FORMAT_NAME} file"))),
        None => {
            return Err(fail(format!(
                "not a hepar training checkpoint (no '{FORMAT_KEY}' metadata); PyTorch weights load from .pth"
            )))
        }
    }
    let required = |key: &str| {
        meta.get(key)
            .ok_or_else(|| fail(format!("metadata key '{key}' is missing")))
    };
    let version: u32 = required(VERSION_KEY)?
        .parse()
        .map_err(|_| fail(format!("metadata '{VERSION_KEY}' is not an integer")))?;
    if version > VERSION {
        return Err(fail(format!(
            "checkpoint format version {version} is newer than this build reads ({VERSION})"
        )));
    }
    let counter = |key: &str| -> Result<u64> {
        let text = required(key)?;
        text.parse().map_err(|_| {
            fail(format!(
                "metadata '{key}' = '{text}' is not a non-negative integer"
            ))
        })
    };
    let epoch = counter("epoch")?;
    let step = counter("step")?;
    let config = serde_json::from_str(required("config")?)
        .map_err(|e| fail(format!("metadata 'config' is not valid JSON: {e}")))?;

    let mut scalars = BTreeMap::new();
    for (key, text) in meta {
        if let Some(name) = key.strip_prefix(OPTIM_PREFIX) {
            let value = text
                .parse()
                .map_err(|_| fail(format!("metadata '{key}' = '{text}' is not a number")))?;
            scalars.insert(name.to_string(), value);
        }
    }
    if let Some(name) = file
        .tensors
        .names()
        .find(|n| !n.starts_with(MODEL_PREFIX) && !n.starts_with(OPTIM_PREFIX))
    {
        return Err(fail(format!(
            "tensor '{name}' is neither 'model.*' nor 'optim.*'"
        )));
    }
    Ok(TrainingCheckpoint {
        model: file.tensors.with_prefix(MODEL_PREFIX),
        optimizer: OptimizerState {
            tensors: file.tensors.with_prefix(OPTIM_PREFIX),
            scalars,
        },
        epoch,
        step,
        config,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::host_tensor::{HostData, HostTensor};
    use crate::io::safetensors_io::read_safetensors;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("hepar-ckpt-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn sample() -> TrainingCheckpoint {
        let mut model = NamedTensors::new();
        model
            .insert(
                "conv.double_conv.0.weight",
                HostTensor::from_f32(vec![2, 1, 3], vec![0.5; 6]).unwrap(),
            )
            .unwrap();
        model
            .insert(
                "bn.running_var",
                HostTensor::from_f32(vec![2], vec![1.0, 2.0]).unwrap(),
            )
            .unwrap();
        let mut optim = OptimizerState::default();
        optim
            .tensors
            .insert(
                "exp_avg.conv.double_conv.0.weight",
                HostTensor::from_f32(vec![2, 1, 3], vec![1e-3; 6]).unwrap(),
            )
            .unwrap();
        optim
            .tensors
            .insert(
                "step_count",
                HostTensor::new(vec![], HostData::I64(vec![12])).unwrap(),
            )
            .unwrap();
        optim.scalars.insert("lr".into(), 0.1 + 0.2); // not exactly representable in short decimal
        optim.scalars.insert("beta1".into(), 0.9);
        TrainingCheckpoint {
            model,
            optimizer: optim,
            epoch: 7,
            step: 1234,
            config: serde_json::json!({"n_channels": 16, "dims": 3, "lr": 1e-3}),
        }
    }

    #[test]
    fn round_trip_is_exact() {
        let dir = temp_dir("rt");
        let path = dir.join("ckpt.safetensors");
        let ckpt = sample();
        save_checkpoint(&path, &ckpt).unwrap();
        let back = load_checkpoint(&path).unwrap();
        assert_eq!(back.model, ckpt.model);
        assert_eq!(back, ckpt);
        assert_eq!(back.optimizer.scalars["lr"], 0.1 + 0.2);
        // Saving again over the file replaces it in place.
        let mut later = ckpt.clone();
        later.epoch = 8;
        save_checkpoint(&path, &later).unwrap();
        assert_eq!(load_checkpoint(&path).unwrap().epoch, 8);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn foreign_and_broken_files_are_clear_errors() {
        let dir = temp_dir("bad");
        let path = dir.join("ckpt.safetensors");
        save_checkpoint(&path, &sample()).unwrap();
        let file = read_safetensors(&path).unwrap();

        let mut no_format = file.clone();
        no_format.metadata.remove("format");
        let err = checkpoint_from_file(&path, no_format)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ckpt.safetensors") && err.contains("not a hepar training checkpoint"),
            "{err}"
        );

        let mut bad_config = file.clone();
        bad_config
            .metadata
            .insert("config".into(), "{n_channels: 16".into());
        let err = checkpoint_from_file(&path, bad_config)
            .unwrap_err()
            .to_string();
        assert!(err.contains("'config' is not valid JSON"), "{err}");

        let mut no_step = file.clone();
        no_step.metadata.remove("step");
        let err = checkpoint_from_file(&path, no_step)
            .unwrap_err()
            .to_string();
        assert!(err.contains("metadata key 'step' is missing"), "{err}");

        let mut stray = file.clone();
        stray
            .tensors
            .insert(
                "weights.x",
                HostTensor::from_f32(vec![1], vec![0.0]).unwrap(),
            )
            .unwrap();
        let err = checkpoint_from_file(&path, stray).unwrap_err().to_string();
        assert!(err.contains("'weights.x'"), "{err}");

        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = load_checkpoint(&path).unwrap_err().to_string();
        assert!(err.contains("ckpt.safetensors"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
