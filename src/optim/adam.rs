//! Adam and AdamW. Adam adds weight decay to the gradient (L2); AdamW decays the weights directly
//! (`p *= 1 - lr * wd`) before the Adam update, as in "Decoupled Weight Decay Regularization".

use super::{state_entry, zero_all, Optimizer, Param};
use crate::autograd::no_grad;
use crate::backend::{AdamStep, BackendStorage};
use crate::error::{HeparError, Result};
use crate::tensor::{Layout, Tensor};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// true: AdamW (decoupled decay); false: Adam with L2 decay in the gradient.
    pub decoupled: bool,
}

impl AdamConfig {
    pub fn adam(lr: f64) -> Self {
        AdamConfig {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
    pub fn adamw(lr: f64, weight_decay: f64) -> Self {
        AdamConfig {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            decoupled: true,
        }
    }
}

pub struct Adam {
    params: Vec<Param>,
    config: AdamConfig,
    first_moments: Vec<Option<Tensor>>,
    second_moments: Vec<Option<Tensor>>,
    steps: Vec<u64>,
}

impl Adam {
    pub fn new(params: Vec<Param>, config: AdamConfig) -> Self {
        let n = params.len();
        Adam {
            params,
            config,
            first_moments: vec![None; n],
            second_moments: vec![None; n],
            steps: vec![0; n],
        }
    }
}

impl Optimizer for Adam {
    /// One fused update kernel per parameter (`BackendStorage::adam_update`), on the device the
    /// parameter lives on.
    fn step(&mut self) -> Result<()> {
        no_grad(|| {
            let c = self.config;
            for i in 0..self.params.len() {
                let p = &self.params[i].tensor;
                let Some(g) = p.grad() else { continue };
                self.steps[i] += 1;
                let t = self.steps[i] as i32;
                let step = AdamStep {
                    lr: c.lr,
                    beta1: c.beta1,
                    beta2: c.beta2,
                    eps: c.eps,
                    weight_decay: c.weight_decay,
                    decoupled: c.decoupled,
                    bias1: 1.0 - c.beta1.powi(t),
                    bias2: 1.0 - c.beta2.powi(t),
                };
                let (ps, gs) = (p.dense_owned()?, g.dense_owned()?);
                let ms = self.first_moments[i]
                    .take()
                    .map(|m| m.dense_owned())
                    .transpose()?;
                let vs = self.second_moments[i]
                    .take()
                    .map(|v| v.dense_owned())
                    .transpose()?;
                let (new_p, new_m, new_v) = ps.storage().adam_update(
                    &gs.storage(),
                    ms.as_ref().map(|m| m.storage()).as_deref(),
                    vs.as_ref().map(|v| v.storage()).as_deref(),
                    &step,
                )?;
                let shape = Layout::contiguous(p.shape());
                p.replace_values(new_p)?;
                self.first_moments[i] = Some(Tensor::from_storage(new_m, shape.clone()));
                self.second_moments[i] = Some(Tensor::from_storage(new_v, shape));
            }
            Ok(())
        })
    }
    fn zero_grad(&self) {
        zero_all(&self.params)
    }
    fn learning_rate(&self) -> f64 {
        self.config.lr
    }
    fn set_learning_rate(&mut self, lr: f64) {
        self.config.lr = lr;
    }
    fn state(&self) -> BTreeMap<String, Tensor> {
        let mut s = BTreeMap::new();
        for i in 0..self.params.len() {
            let name = &self.params[i].name;
            if let (Some(m), Some(v)) = (&self.first_moments[i], &self.second_moments[i]) {
                s.insert(format!("{name}.exp_avg"), m.clone());
                s.insert(format!("{name}.exp_avg_sq"), v.clone());
                s.insert(
                    format!("{name}.step"),
                    Tensor::scalar(self.steps[i] as f64, crate::tensor::DType::F64),
                );
            }
        }
        s
    }
    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        for i in 0..self.params.len() {
            let p = &self.params[i];
            let key = format!("{}.step", p.name);
            match state.get(&key) {
                None => {
                    self.first_moments[i] = None;
                    self.second_moments[i] = None;
                    self.steps[i] = 0;
                }
                Some(step) => {
                    let step = step.to_scalar()?;
                    if step < 0.0 || step.fract() != 0.0 {
                        return Err(HeparError::Checkpoint(format!(
                            "optimizer state `{key}` = {step} is not a step count"
                        )));
                    }
                    self.steps[i] = step as u64;
                    self.first_moments[i] = Some(
                        state_entry(state, &format!("{}.exp_avg", p.name), &p.tensor)?
                            .to_device(p.tensor.device())?
                            .to_dtype(p.tensor.dtype())?,
                    );
                    self.second_moments[i] = Some(
                        state_entry(state, &format!("{}.exp_avg_sq", p.name), &p.tensor)?
                            .to_device(p.tensor.device())?
                            .to_dtype(p.tensor.dtype())?,
                    );
                }
            }
        }
        Ok(())
    }
}
