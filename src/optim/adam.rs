//! Adam and AdamW. Adam adds weight decay to the gradient (L2); AdamW decays the weights directly
//! (`p *= 1 - lr * wd`) before the Adam update, as in "Decoupled Weight Decay Regularization".

use super::{state_entry, zero_all, Optimizer, Param};
use crate::autograd::no_grad;
use crate::error::{HeparError, Result};
use crate::tensor::Tensor;
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
    fn step(&mut self) -> Result<()> {
        no_grad(|| {
            let c = self.config;
            for i in 0..self.params.len() {
                let p = &self.params[i].tensor;
                let Some(mut g) = p.grad() else { continue };
                self.steps[i] += 1;
                let t = self.steps[i] as i32;
                if c.weight_decay != 0.0 {
                    if c.decoupled {
                        p.assign(&p.mul_scalar(1.0 - c.lr * c.weight_decay)?)?;
                    } else {
                        g = g.add(&p.mul_scalar(c.weight_decay)?)?;
                    }
                }
                let m = match self.first_moments[i].take() {
                    Some(m) => m.mul_scalar(c.beta1)?.add(&g.mul_scalar(1.0 - c.beta1)?)?,
                    None => g.mul_scalar(1.0 - c.beta1)?,
                };
                let v = match self.second_moments[i].take() {
                    Some(v) => v
                        .mul_scalar(c.beta2)?
                        .add(&g.square()?.mul_scalar(1.0 - c.beta2)?)?,
                    None => g.square()?.mul_scalar(1.0 - c.beta2)?,
                };
                let bias1 = 1.0 - c.beta1.powi(t);
                let bias2 = 1.0 - c.beta2.powi(t);
                // p -= lr / bias1 * m / (sqrt(v / bias2) + eps)
                let denom = v.mul_scalar(1.0 / bias2)?.sqrt()?.add_scalar(c.eps)?;
                let update = m.div(&denom)?.mul_scalar(c.lr / bias1)?;
                p.assign(&p.sub(&update)?)?;
                self.first_moments[i] = Some(m);
                self.second_moments[i] = Some(v);
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
