//! A run's checkpoints (`last.safetensors`, `best.safetensors`): the network's weights and
//! statistics, AdamW's moments, the epoch and step counters, and a [`RunInfo`] JSON describing
//! the run, enough to resume it or to rebuild the network for inference.

use super::config::{Stage, StageTraining};
use super::history::EpochRecord;
use super::run_schedule::RunSchedule;
use crate::data::config::DataParameters;
use crate::error::{HeparError, Result};
use crate::io::{
    load_checkpoint, save_checkpoint, tensor_bridge, NamedTensors, OptimizerState,
    TrainingCheckpoint,
};
use crate::nn::cotnext::CotNextConfig;
use crate::nn::{load_state_dict, to_named_tensors, ModelConfig, Network};
use crate::optim::Optimizer;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const LAST: &str = "last.safetensors";
pub const BEST: &str = "best.safetensors";
pub const HISTORY: &str = "history.csv";
pub const HISTORY_JSON: &str = "history.json";
pub const CURVES: &str = "curves.png";

/// What a checkpoint says about its run (stored as the checkpoint's config JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub stage: Stage,
    /// The network (architecture, channels, classes, width); checkpoints written before the
    /// registry stored a CoTNeXt configuration, which still reads.
    #[serde(deserialize_with = "model_config_or_cotnext")]
    pub model: ModelConfig,
    pub training: StageTraining,
    /// Epoch count the learning-rate schedule spans (the schedule's total).
    pub epochs: u64,
    /// The learning rate per epoch; absent in checkpoints from before `--extend-epochs`, whose
    /// schedule is one cosine over `epochs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<RunSchedule>,
    /// The data settings actually used (preprocessing included, for inference).
    pub data: DataParameters,
    /// Best validation Dice so far and the epoch (from 1) it was reached at.
    pub best_val_dice: Option<f64>,
    pub best_epoch: u64,
    /// Every epoch trained up to this checkpoint; empty in checkpoints from before the history
    /// moved into them (their `history.csv` is read instead).
    #[serde(default)]
    pub history: Vec<EpochRecord>,
    /// Set when the run stopped inside an epoch (Ctrl-C): where to pick that epoch up again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_epoch: Option<PartialEpoch>,
}

/// How far an interrupted epoch got: batches trained, and their summed loss (the epoch's mean
/// loss continues from it, so it comes out as in an uninterrupted run).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PartialEpoch {
    pub batches_done: usize,
    pub loss_sum: f64,
}

impl RunInfo {
    /// The run's schedule, also for checkpoints that predate its field.
    pub fn schedule(&self) -> RunSchedule {
        self.schedule.clone().unwrap_or_else(|| {
            RunSchedule::new(&StageTraining {
                epochs: self.epochs,
                ..self.training.clone()
            })
        })
    }
}

fn model_config_or_cotnext<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<ModelConfig, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        Registry(ModelConfig),
        CotNext(CotNextConfig),
    }
    Ok(match Stored::deserialize(d)? {
        Stored::Registry(config) => config,
        Stored::CotNext(config) => config.into(),
    })
}

/// Where a run keeps its files.
#[derive(Debug, Clone)]
pub struct RunFolder {
    pub dir: PathBuf,
}

impl RunFolder {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RunFolder { dir: dir.into() }
    }
    pub fn last(&self) -> PathBuf {
        self.dir.join(LAST)
    }
    pub fn best(&self) -> PathBuf {
        self.dir.join(BEST)
    }
    pub fn history(&self) -> PathBuf {
        self.dir.join(HISTORY)
    }
    pub fn history_json(&self) -> PathBuf {
        self.dir.join(HISTORY_JSON)
    }
    pub fn curves(&self) -> PathBuf {
        self.dir.join(CURVES)
    }
}

/// Writes the model, optimizer and counters to `path` atomically.
pub fn save_run_checkpoint(
    path: &Path,
    model: &dyn Network,
    optimizer: &dyn Optimizer,
    epoch: u64,
    step: u64,
    info: &RunInfo,
) -> Result<()> {
    let mut tensors = NamedTensors::new();
    for (name, t) in optimizer.state() {
        tensors.insert(name, tensor_bridge::to_host(&t)?)?;
    }
    let mut scalars = BTreeMap::new();
    scalars.insert("learning_rate".to_string(), optimizer.learning_rate());
    let config = serde_json::to_value(info)
        .map_err(|e| HeparError::Checkpoint(format!("{}: run info: {e}", path.display())))?;
    save_checkpoint(
        path,
        &TrainingCheckpoint {
            model: to_named_tensors(model)?,
            optimizer: OptimizerState { tensors, scalars },
            epoch,
            step,
            config,
        },
    )
}

/// A checkpoint with its run description parsed.
pub struct LoadedRun {
    pub checkpoint: TrainingCheckpoint,
    pub info: RunInfo,
}

pub fn load_run_checkpoint(path: &Path) -> Result<LoadedRun> {
    let checkpoint = load_checkpoint(path)?;
    let info: RunInfo = serde_json::from_value(checkpoint.config.clone()).map_err(|e| {
        HeparError::format(
            path,
            format!("not a `hepar train` checkpoint: its config does not describe a run ({e})"),
        )
    })?;
    Ok(LoadedRun { checkpoint, info })
}

impl LoadedRun {
    /// A network built from the run's description, with the checkpoint's weights.
    pub fn model(&self, source: &Path) -> Result<Box<dyn Network>> {
        let model = crate::nn::build(&self.info.model, 0)?;
        load_state_dict(
            &*model,
            &self.checkpoint.model,
            &source.display().to_string(),
        )?;
        Ok(model)
    }

    /// Restores the optimizer's moments and step counts.
    pub fn restore_optimizer(&self, optimizer: &mut dyn Optimizer) -> Result<()> {
        let mut state: BTreeMap<String, Tensor> = BTreeMap::new();
        for (name, h) in self.checkpoint.optimizer.tensors.iter() {
            state.insert(name.to_string(), tensor_bridge::to_tensor(h)?);
        }
        optimizer.load_state(&state)
    }
}
