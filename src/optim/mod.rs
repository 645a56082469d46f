//! Optimizers and learning-rate schedules. Optimizers update parameters in place with tensor ops
//! (so they run on any backend) and expose their state as named tensors for checkpoints.

pub mod adam;
pub mod schedule;
pub mod sgd;

use crate::error::{HeparError, Result};
use crate::tensor::Tensor;
use std::collections::BTreeMap;

pub use adam::{Adam, AdamConfig};
pub use schedule::{CosineAnnealing, LrSchedule, StepDecay};
pub use sgd::{Sgd, SgdConfig};

/// A named, trainable leaf tensor.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub tensor: Tensor,
}

/// What every optimizer offers the trainer.
pub trait Optimizer {
    /// Applies one update from the gradients accumulated in the parameters.
    fn step(&mut self) -> Result<()>;
    fn zero_grad(&self);
    fn learning_rate(&self) -> f64;
    fn set_learning_rate(&mut self, lr: f64);
    /// The optimizer's state (moments, step counts) as named tensors.
    fn state(&self) -> BTreeMap<String, Tensor>;
    /// Restores state saved by `state()`; names and shapes must match the parameters.
    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()>;
}

pub(crate) fn zero_all(params: &[Param]) {
    for p in params {
        p.tensor.zero_grad();
    }
}

/// Finds `key` in a saved state and checks it has the parameter's shape.
pub(crate) fn state_entry<'a>(
    state: &'a BTreeMap<String, Tensor>,
    key: &str,
    like: &Tensor,
) -> Result<&'a Tensor> {
    let t = state
        .get(key)
        .ok_or_else(|| HeparError::Checkpoint(format!("optimizer state has no entry `{key}`")))?;
    if t.shape() != like.shape() {
        return Err(HeparError::Checkpoint(format!(
            "optimizer state `{key}` has shape {:?}, parameter has {:?}",
            t.shape(),
            like.shape()
        )));
    }
    Ok(t)
}
