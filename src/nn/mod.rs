//! Neural-network modules with named parameters and buffers. Names follow PyTorch's state_dict
//! keys so checkpoints map one to one.

pub mod cotnext;
pub mod keras_unet2d;
pub mod layers;
pub mod registry;
pub mod res3dunet;
pub mod unet2d_classic;
pub mod unet3d;

pub use registry::{build, Arch, ModelConfig, Network, NetworkOutput};

use crate::error::Result;
use crate::io::{tensor_bridge, NamedTensors, StateDictReport};
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

/// A boxed network (what the registry builds) is a module too.
impl<T: Module + ?Sized> Module for Box<T> {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        (**self).visit(prefix, f)
    }
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
    m.visit("", &mut |name, t, kind| {
        out.push((name.to_string(), t.clone(), kind))
    });
    out
}

/// The trainable parameters, for an optimizer.
pub fn parameters(m: &dyn Module) -> Vec<Param> {
    named_tensors(m)
        .into_iter()
        .filter(|(_, _, k)| *k == TensorKind::Parameter)
        .map(|(name, tensor, _)| Param { name, tensor })
        .collect()
}

pub fn parameter_count(m: &dyn Module) -> usize {
    parameters(m).iter().map(|p| p.tensor.numel()).sum()
}

/// Parameters and buffers by name.
pub fn state_dict(m: &dyn Module) -> BTreeMap<String, Tensor> {
    named_tensors(m)
        .into_iter()
        .map(|(n, t, _)| (n, t))
        .collect()
}

/// Every named tensor as a host tensor, in the module's order (for checkpoints).
pub fn to_named_tensors(m: &dyn Module) -> Result<NamedTensors> {
    let mut out = NamedTensors::new();
    for (name, t, _) in named_tensors(m) {
        out.insert(name, tensor_bridge::to_host(&t)?)?;
    }
    Ok(out)
}

/// Moves every parameter, buffer and statistic of the module to `device`.
pub fn to_device(m: &dyn Module, device: crate::backend::Device) -> Result<()> {
    device.ensure_available()?;
    for (_, t, _) in named_tensors(m) {
        t.relocate(device)?;
    }
    Ok(())
}

/// Loads a state_dict into the module. Every parameter and running statistic must be present
/// with its exact shape; the error names the first offending key with expected and found
/// shapes (`source` names the file). `num_batches_tracked` counters are loaded when present.
pub fn load_state_dict(m: &dyn Module, values: &NamedTensors, source: &str) -> Result<()> {
    let targets = named_tensors(m);
    let expected: Vec<(String, Vec<usize>)> = targets
        .iter()
        .filter(|(n, _, _)| !n.ends_with(".num_batches_tracked"))
        .map(|(n, t, _)| (n.clone(), t.shape().to_vec()))
        .collect();
    StateDictReport::compare(&expected, values).into_result(source)?;
    for (name, target, _) in &targets {
        if let Some(v) = values.get(name) {
            let value = tensor_bridge::to_tensor(v)?
                .reshape(target.shape())?
                .to_dtype(target.dtype())?
                .to_device(target.device())?;
            target.assign(&value)?;
        }
    }
    Ok(())
}

/// Weight initialisation matching PyTorch's defaults for conv layers (Kaiming uniform with
/// a = sqrt(5), i.e. uniform in +-1/sqrt(fan_in)), drawn from a seeded generator.
pub struct Init {
    rng: crate::util::rng::Rng,
}

impl Init {
    pub fn new(seed: u64) -> Self {
        Init {
            rng: crate::util::rng::Rng::new(seed),
        }
    }

    pub fn uniform(&mut self, shape: &[usize], bound: f64) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|_| self.rng.range(-bound, bound) as f32)
            .collect();
        Tensor::from_vec(v, shape)
            .expect("length matches shape")
            .requires_grad_leaf()
    }
}
