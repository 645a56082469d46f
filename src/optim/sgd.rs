//! Stochastic gradient descent with momentum (PyTorch's formulation: no dampening,
//! `buf = momentum * buf + grad`, `p -= lr * buf`; weight decay added to the gradient).

use super::{state_entry, zero_all, Optimizer, Param};
use crate::autograd::no_grad;
use crate::error::Result;
use crate::tensor::Tensor;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug)]
pub struct SgdConfig {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-2,
            momentum: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

pub struct Sgd {
    params: Vec<Param>,
    config: SgdConfig,
    momentum_buffers: Vec<Option<Tensor>>,
}

impl Sgd {
    pub fn new(params: Vec<Param>, config: SgdConfig) -> Self {
        let n = params.len();
        Sgd {
            params,
            config,
            momentum_buffers: vec![None; n],
        }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self) -> Result<()> {
        no_grad(|| {
            let c = self.config;
            for (p, buf) in self.params.iter().zip(self.momentum_buffers.iter_mut()) {
                let Some(mut g) = p.tensor.grad() else {
                    continue;
                };
                if c.weight_decay != 0.0 {
                    g = g.add(&p.tensor.mul_scalar(c.weight_decay)?)?;
                }
                if c.momentum != 0.0 {
                    let b = match buf.take() {
                        Some(b) => b.mul_scalar(c.momentum)?.add(&g)?,
                        None => g.clone(),
                    };
                    g = if c.nesterov {
                        g.add(&b.mul_scalar(c.momentum)?)?
                    } else {
                        b.clone()
                    };
                    *buf = Some(b);
                }
                p.tensor.assign(&p.tensor.sub(&g.mul_scalar(c.lr)?)?)?;
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
        self.params
            .iter()
            .zip(&self.momentum_buffers)
            .filter_map(|(p, b)| {
                b.as_ref()
                    .map(|b| (format!("{}.momentum", p.name), b.clone()))
            })
            .collect()
    }
    fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        for (p, buf) in self.params.iter().zip(self.momentum_buffers.iter_mut()) {
            let key = format!("{}.momentum", p.name);
            *buf = if state.contains_key(&key) {
                Some(state_entry(state, &key, &p.tensor)?.to_device(p.tensor.device())?)
            } else {
                None
            };
        }
        Ok(())
    }
}
