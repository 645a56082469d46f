//! Normalisation layers as ops: GroupNorm and BatchNorm (train and eval), each fused into one
//! backend pass forward and one backward.

use crate::autograd::no_grad;
use crate::backend::{BackendStorage, NormActivation, NormStats, Storage};
use crate::error::{HeparError, Result};
use crate::tensor::layout::Layout;
use crate::tensor::Tensor;

fn check_affine(op: &'static str, x: &Tensor, p: Option<&Tensor>, what: &str) -> Result<()> {
    if let Some(p) = p {
        if p.shape() != [x.shape()[1]] {
            return Err(HeparError::shape(
                op,
                format!(
                    "{what} of shape {:?} for input {:?} (expected [{}])",
                    p.shape(),
                    x.shape(),
                    x.shape()[1]
                ),
            ));
        }
        if p.dtype() != x.dtype() {
            return Err(HeparError::dtype(
                op,
                format!("{what} is {} but input is {}", p.dtype(), x.dtype()),
            ));
        }
    }
    Ok(())
}

fn dense(t: Option<&Tensor>) -> Result<Option<Storage>> {
    t.map(|t| t.storage().copy_strided(t.layout())).transpose()
}

/// `1 / sqrt(var + eps)`, per channel, on the device of `var`.
fn rstd_of(var: &Tensor, eps: f64) -> Result<Tensor> {
    var.add_scalar(eps)?.sqrt()?.recip()
}

/// The dense storage of `t`: shared when `t` already covers all of it, else a copy.
fn dense_storage(t: &Tensor) -> Result<Storage> {
    let s = t.storage();
    if t.layout().contiguous_range() == Some(0..s.len()) {
        Ok(s.clone())
    } else {
        s.copy_strided(t.layout())
    }
}

/// Shape [1, C, 1, ...] for broadcasting a per-channel vector against `x`.
fn channel_shape(x: &Tensor) -> Vec<usize> {
    let mut s = vec![1; x.rank()];
    s[1] = x.shape()[1];
    s
}

impl Tensor {
    /// GroupNorm over [N, C, ...] with `groups` groups, optional per-channel affine.
    pub fn group_norm(
        &self,
        groups: usize,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        self.group_norm_with(groups, weight, bias, eps, NormActivation::Identity)
    }

    /// `silu(group_norm(x))` in one pass each way; the backward recomputes the normalised value
    /// from x and the statistics instead of keeping it, so it also saves an activation's memory.
    pub fn group_norm_silu(
        &self,
        groups: usize,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        self.group_norm_with(groups, weight, bias, eps, NormActivation::Silu)
    }

    fn group_norm_with(
        &self,
        groups: usize,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
        activation: NormActivation,
    ) -> Result<Tensor> {
        if self.rank() < 2 || groups == 0 || !self.shape()[1].is_multiple_of(groups) {
            return Err(HeparError::invalid(
                "group_norm",
                format!(
                    "{groups} groups for input {:?} (channels must divide evenly)",
                    self.shape()
                ),
            ));
        }
        check_affine("group_norm", self, weight, "weight")?;
        check_affine("group_norm", self, bias, "bias")?;
        let (w, b) = (dense(weight)?, dense(bias)?);
        let (y, stats) = self.storage().group_norm(
            self.layout(),
            groups,
            w.as_ref(),
            b.as_ref(),
            eps,
            activation,
        )?;
        let x = self.clone();
        let name = if activation == NormActivation::Silu {
            "group_norm_silu"
        } else {
            "group_norm"
        };
        Ok(record_norm(name, y, self, weight, bias, move |g| {
            let stats: NormStats<Storage> = stats;
            let (gx, gw, gb) = {
                let (xs, gs) = (x.storage(), g.storage());
                xs.group_norm_backward(
                    x.layout(),
                    &gs,
                    g.layout(),
                    groups,
                    w.as_ref(),
                    b.as_ref(),
                    &stats,
                    activation,
                )?
            };
            let c = [x.shape()[1]];
            Ok((
                Tensor::from_storage(gx, Layout::contiguous(x.shape())),
                Tensor::from_storage(gw, Layout::contiguous(&c)),
                Tensor::from_storage(gb, Layout::contiguous(&c)),
            ))
        }))
    }

    /// BatchNorm over [N, C, ...]. In training it normalises with the batch statistics and
    /// updates the running ones (`momentum`, unbiased variance, as PyTorch); in eval it uses the
    /// running statistics.
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        running_mean: &Tensor,
        running_var: &Tensor,
        training: bool,
        momentum: f64,
        eps: f64,
    ) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(HeparError::shape(
                "batch_norm",
                format!("input {:?} has no channel axis", self.shape()),
            ));
        }
        check_affine("batch_norm", self, weight, "weight")?;
        check_affine("batch_norm", self, bias, "bias")?;
        check_affine("batch_norm", self, Some(running_mean), "running_mean")?;
        check_affine("batch_norm", self, Some(running_var), "running_var")?;
        let per_channel = self.numel() / self.shape()[1].max(1);
        let c = [self.shape()[1]];
        // Statistics stay where the data is: per-channel storages, updated with tensor ops.
        let (mean, rstd) = no_grad(|| -> Result<(Storage, Storage)> {
            if training {
                if per_channel <= 1 {
                    return Err(HeparError::invalid(
                        "batch_norm",
                        format!(
                            "training needs more than one value per channel, input {:?}",
                            self.shape()
                        ),
                    ));
                }
                let (mean, var) = self.storage().batch_norm_stats(self.layout())?;
                let mean_t = Tensor::from_storage(mean.clone(), Layout::contiguous(&c));
                let var_t = Tensor::from_storage(var, Layout::contiguous(&c));
                // Running statistics use the unbiased variance.
                let unbiased = per_channel as f64 / (per_channel as f64 - 1.0);
                running_mean.assign(
                    &running_mean
                        .mul_scalar(1.0 - momentum)?
                        .add(&mean_t.mul_scalar(momentum)?)?,
                )?;
                running_var.assign(
                    &running_var
                        .mul_scalar(1.0 - momentum)?
                        .add(&var_t.mul_scalar(momentum * unbiased)?)?,
                )?;
                Ok((mean, dense_storage(&rstd_of(&var_t, eps)?)?))
            } else {
                // A copy: the running mean is overwritten in place by later training steps.
                let mean = running_mean.storage().copy_strided(running_mean.layout())?;
                Ok((mean, dense_storage(&rstd_of(running_var, eps)?)?))
            }
        })?;
        let (w, b) = (dense(weight)?, dense(bias)?);
        let y =
            self.storage()
                .batch_norm_apply(self.layout(), &mean, &rstd, w.as_ref(), b.as_ref())?;
        let x = self.clone();
        let weight_t = weight.cloned();
        Ok(record_norm("batch_norm", y, self, weight, bias, move |g| {
            let c = x.shape()[1];
            if training {
                let (xs, gs) = (x.storage(), g.storage());
                let (a, b, cc) = xs.batch_norm_train_backward(
                    x.layout(),
                    &gs,
                    g.layout(),
                    &mean,
                    &rstd,
                    w.as_ref(),
                )?;
                Ok((
                    Tensor::from_storage(a, Layout::contiguous(x.shape())),
                    Tensor::from_storage(b, Layout::contiguous(&[c])),
                    Tensor::from_storage(cc, Layout::contiguous(&[c])),
                ))
            } else {
                // Eval mode is a per-channel affine map: compose its gradient from ops.
                let cs = channel_shape(&x);
                let rstd_t = Tensor::from_storage(rstd, Layout::contiguous(&cs));
                let mean_t = Tensor::from_storage(mean, Layout::contiguous(&cs));
                let scale = match &weight_t {
                    Some(w) => rstd_t.mul(&w.reshape(&cs)?)?,
                    None => rstd_t.clone(),
                };
                let xhat = x.sub(&mean_t)?.mul(&rstd_t)?;
                let reduce_axes: Vec<usize> = (0..x.rank()).filter(|&a| a != 1).collect();
                Ok((
                    g.mul(&scale)?,
                    g.mul(&xhat)?.sum_axes(&reduce_axes, false)?,
                    g.sum_axes(&reduce_axes, false)?,
                ))
            }
        }))
    }
}

/// Records a normalisation's output as an op over (x, weight?, bias?); `backward` returns the
/// gradients of x, weight and bias, and those of absent affine parameters are dropped.
fn record_norm(
    name: &'static str,
    y: Storage,
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    backward: impl FnOnce(&Tensor) -> Result<(Tensor, Tensor, Tensor)> + Send + Sync + 'static,
) -> Tensor {
    let mut inputs = vec![x];
    inputs.extend(weight);
    inputs.extend(bias);
    let (has_w, has_b) = (weight.is_some(), bias.is_some());
    Tensor::from_op(
        y,
        Layout::contiguous(x.shape()),
        name,
        &inputs,
        Box::new(move |g| {
            let (gx, gw, gb) = backward(g)?;
            let mut grads = vec![Some(gx)];
            if has_w {
                grads.push(Some(gw));
            }
            if has_b {
                grads.push(Some(gb));
            }
            Ok(grads)
        }),
    )
}
