//! Reverse-mode automatic differentiation.
//!
//! Each op that needs gradients stores a [`GradFn`] in its output: the inputs and a one-shot
//! closure that turns the output's gradient into the inputs' gradients. `backward` walks the graph
//! in reverse topological order, consuming each closure, so activations an op saved are freed as
//! soon as its backward step has run. Gradients of leaves accumulate until `zero_grad`.

pub mod gradcheck;

use crate::error::{HeparError, Result};
use crate::tensor::{Tensor, TensorId};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};

/// Maps the gradient of an op's output to the gradients of its inputs (`None`: no gradient).
pub type BackwardFn = Box<dyn FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>> + Send + Sync>;

pub(crate) struct GradFn {
    pub name: &'static str,
    pub inputs: Vec<Tensor>,
    pub backward: BackwardFn,
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// While alive, ops record no graph (inference, optimizer updates). Restores the previous state
/// when dropped.
pub struct NoGradGuard {
    previous: bool,
}

impl NoGradGuard {
    pub fn new() -> Self {
        NoGradGuard {
            previous: GRAD_ENABLED.with(|g| g.replace(false)),
        }
    }
}

impl Default for NoGradGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Runs `f` without recording gradients.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Tensors reachable from `root` through recorded ops, inputs before the ops that use them.
fn topological_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    // Iterative DFS: deep networks would overflow the stack with recursion.
    let mut stack: Vec<(Tensor, bool)> = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        let inputs: Vec<Tensor> =
            t.0.grad_fn
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|g| g.inputs.clone())
                .unwrap_or_default();
        for input in inputs {
            if input.requires_grad() && !visited.contains(&input.id()) {
                stack.push((input, false));
            }
        }
    }
    order
}

/// Backpropagates from a scalar: accumulates d(root)/d(leaf) into every leaf that requires grad.
pub fn backward(root: &Tensor) -> Result<()> {
    if root.numel() != 1 {
        return Err(HeparError::Autograd(format!(
            "backward() needs a scalar (one element), got shape {:?}",
            root.shape()
        )));
    }
    if !root.requires_grad() {
        return Err(HeparError::Autograd("backward() on a tensor that does not require grad (no input required it, or it was made under no_grad)".into()));
    }
    let value = root.to_scalar()?;
    if !value.is_finite() {
        let op = root
            .0
            .grad_fn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or("leaf", |g| g.name);
        return Err(HeparError::NonFinite {
            op: "backward",
            msg: format!("the loss is {value} (produced by op `{op}`)"),
        });
    }
    let _guard = NoGradGuard::new();
    let order = topological_order(root);
    let mut grads: HashMap<TensorId, Tensor> = HashMap::new();
    grads.insert(root.id(), root.ones_like()?);
    // Consuming the order from the output back drops each node once processed.
    for node in order.into_iter().rev() {
        let Some(grad) = grads.remove(&node.id()) else {
            continue;
        };
        if node.is_leaf() {
            node.accumulate_grad(grad)?;
            continue;
        }
        let grad_fn = node
            .0
            .grad_fn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(GradFn {
            name,
            inputs,
            backward,
        }) = grad_fn
        else {
            return Err(HeparError::Autograd(
                "this graph was already freed by an earlier backward(); run the forward pass again"
                    .into(),
            ));
        };
        let input_grads = crate::util::op_profile::time_backward(name, || backward(&grad))?;
        for (input, g) in inputs.into_iter().zip(input_grads) {
            let Some(g) = g else { continue };
            if !input.requires_grad() {
                continue;
            }
            if g.shape() != input.shape() {
                return Err(HeparError::Autograd(format!(
                    "backward of `{name}` produced a gradient of shape {:?} for an input of shape {:?}",
                    g.shape(),
                    input.shape()
                )));
            }
            let merged = match grads.remove(&input.id()) {
                Some(prev) => prev.add(&g)?,
                None => g,
            };
            grads.insert(input.id(), merged);
        }
    }
    Ok(())
}
