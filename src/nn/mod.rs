//! Neural-network modules with named parameters and buffers. Names follow PyTorch's state_dict
//! keys so checkpoints map one to one.

pub mod cotnext;
pub mod layers;

use crate::error::{HeparError, Result};
use crate::optim::Param;
use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// Whether a named tensor is trained (parameter) or only tracked (buffer, e.g. BatchNorm stats).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKind {
    Parameter,
    Buffer,
}

/// A module exposes its tensors by name; everything else (state dicts, optimizers, checkpoint
/// checks) is built on that one method.
pub trait Module {
    /// Calls `f(name, tensor, kind)` for every tensor, names prefixed with `prefix`.
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind));
}

/// Joins a module path: `join("enc1", "conv")` is `enc1.conv`.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

pub fn named_tensors(m: &dyn Module) -> Vec<(String, Tensor, TensorKind)> {
    let mut out = Vec::new();
    m.visit("", &mut |name, t, kind| out.push((name.to_string(), t.clone(), kind)));
    out
}

/// The trainable parameters, for an optimizer.
pub fn parameters(m: &dyn Module) -> Vec<Param> {
    named_tensors(m).into_iter().filter(|(_, _, k)| *k == TensorKind::Parameter).map(|(name, tensor, _)| Param { name, tensor }).collect()
}

pub fn parameter_count(m: &dyn Module) -> usize {
    parameters(m).iter().map(|p| p.tensor.numel()).sum()
}

/// Parameters and buffers by name.
pub fn state_dict(m: &dyn Module) -> BTreeMap<String, Tensor> {
    named_tensors(m).into_iter().map(|(n, t, _)| (n, t)).collect()
}

/// What a non-strict load left out.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
}

/// Copies values into the module's tensors by name. Shapes must match exactly; the first
/// mismatch is an error naming the key with expected and found shapes. In strict mode, missing
/// or unexpected keys are errors too (the first one is named).
pub fn load_state_dict(m: &dyn Module, values: &BTreeMap<String, Tensor>, strict: bool) -> Result<LoadReport> {
    let targets = named_tensors(m);
    let mut report = LoadReport::default();
    for (name, target, _) in &targets {
        match values.get(name) {
            None => report.missing.push(name.clone()),
            Some(v) => {
                if v.shape() != target.shape() {
                    return Err(HeparError::Checkpoint(format!("key `{name}`: expected shape {:?}, found {:?}", target.shape(), v.shape())));
                }
            }
        }
    }
    let known: std::collections::HashSet<&str> = targets.iter().map(|(n, _, _)| n.as_str()).collect();
    report.unexpected = values.keys().filter(|k| !known.contains(k.as_str())).cloned().collect();
    if strict {
        if let Some(k) = report.missing.first() {
            let shape = targets.iter().find(|(n, _, _)| n == k).map(|(_, t, _)| t.shape().to_vec()).unwrap_or_default();
            return Err(HeparError::Checkpoint(format!("missing key `{k}` (expected shape {shape:?}); {} missing in all", report.missing.len())));
        }
        if let Some(k) = report.unexpected.first() {
            return Err(HeparError::Checkpoint(format!("unexpected key `{k}` (shape {:?}); {} unexpected in all", values[k].shape(), report.unexpected.len())));
        }
    }
    for (name, target, _) in &targets {
        if let Some(v) = values.get(name) {
            target.assign(&v.to_dtype(target.dtype())?)?;
        }
    }
    Ok(report)
}

/// Weight initialisation matching PyTorch's defaults for conv layers (Kaiming uniform with
/// a = sqrt(5), i.e. uniform in +-1/sqrt(fan_in)), drawn from a seeded generator.
pub struct Init {
    rng: crate::util::rng::Rng,
}

impl Init {
    pub fn new(seed: u64) -> Self {
        Init { rng: crate::util::rng::Rng::new(seed) }
    }

    pub fn uniform(&mut self, shape: &[usize], bound: f64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n).map(|_| self.rng.uniform_range(-bound, bound) as f32).collect();
        Tensor::from_vec(v, shape).expect("length matches shape").requires_grad_leaf()
    }
}
