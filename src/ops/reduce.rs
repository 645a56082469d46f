//! Reductions (sum, mean, max along axes) and softmax.

use super::with_storage;
use crate::backend::{BackendStorage, ReduceOp};
use crate::error::{HeparError, Result};
use crate::tensor::layout::{resolve_axis, Layout};
use crate::tensor::Tensor;

fn normalise_axes(op: &'static str, axes: &[usize], rank: usize) -> Result<Vec<usize>> {
    let mut v = axes.to_vec();
    v.sort_unstable();
    v.dedup();
    if v.iter().any(|&a| a >= rank) {
        return Err(HeparError::invalid(
            op,
            format!("axes {axes:?} out of range for rank {rank}"),
        ));
    }
    Ok(v)
}

fn kept_shape(shape: &[usize], axes: &[usize], keepdim: bool) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .filter_map(|(i, &d)| {
            if axes.contains(&i) {
                keepdim.then_some(1)
            } else {
                Some(d)
            }
        })
        .collect()
}

impl Tensor {
    fn reduce_raw(
        &self,
        axes: &[usize],
        op: ReduceOp,
    ) -> Result<(crate::backend::Storage, Vec<usize>)> {
        let out = with_storage(self, |s, l| s.reduce(l, axes, op))?;
        Ok((out, kept_shape(self.shape(), axes, true)))
    }

    pub fn sum_axes(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        self.scaled_sum("sum", axes, keepdim, None)
    }

    pub fn sum_all(&self) -> Result<Tensor> {
        let axes: Vec<usize> = (0..self.rank()).collect();
        self.sum_axes(&axes, false)
    }

    pub fn mean_axes(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let checked = normalise_axes("mean", axes, self.rank())?;
        let count: usize = checked.iter().map(|&a| self.shape()[a]).product();
        if count == 0 {
            return Err(HeparError::invalid(
                "mean",
                format!("mean over empty axes {axes:?} of {:?}", self.shape()),
            ));
        }
        self.scaled_sum("mean", axes, keepdim, Some(1.0 / count as f64))
    }

    pub fn mean_all(&self) -> Result<Tensor> {
        let axes: Vec<usize> = (0..self.rank()).collect();
        self.mean_axes(&axes, false)
    }

    /// Sum over axes, optionally scaled (the mean), as one op.
    fn scaled_sum(
        &self,
        name: &'static str,
        axes: &[usize],
        keepdim: bool,
        scale: Option<f64>,
    ) -> Result<Tensor> {
        let axes = normalise_axes(name, axes, self.rank())?;
        let (mut out, kshape) = self.reduce_raw(&axes, ReduceOp::Sum)?;
        if let Some(k) = scale {
            out = out.unary(
                &Layout::contiguous(&kshape),
                crate::backend::UnaryOp::Affine { mul: k, add: 0.0 },
            )?;
        }
        let input_shape = self.shape().to_vec();
        let shape = kept_shape(self.shape(), &axes, keepdim);
        Ok(Tensor::from_op(
            out,
            Layout::contiguous(&shape),
            name,
            &[self],
            Box::new(move |g| {
                let spread = g.reshape(&kshape)?.broadcast_to(&input_shape)?;
                Ok(vec![Some(match scale {
                    Some(k) => spread.mul_scalar(k)?,
                    None => spread,
                })])
            }),
        ))
    }

    /// Maximum over axes; the gradient is shared equally among tied maxima.
    pub fn max_axes(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let axes = normalise_axes("max", axes, self.rank())?;
        if axes.iter().any(|&a| self.shape()[a] == 0) {
            return Err(HeparError::invalid(
                "max",
                format!("max over an empty axis of {:?}", self.shape()),
            ));
        }
        let (out, kshape) = self.reduce_raw(&axes, ReduceOp::Max)?;
        let shape = kept_shape(self.shape(), &axes, keepdim);
        let x = self.clone();
        let axes2 = axes.clone();
        let kshape2 = kshape.clone();
        let max_val = Tensor::from_storage(out.clone(), Layout::contiguous(&kshape));
        Ok(Tensor::from_op(
            out,
            Layout::contiguous(&shape),
            "max",
            &[self],
            Box::new(move |g| {
                let mask = x.eq_mask(&max_val.broadcast_to(x.shape())?)?;
                let count = mask.sum_axes(&axes2, true)?;
                let share = g.reshape(&kshape2)?.div(&count)?;
                Ok(vec![Some(mask.mul(&share)?)])
            }),
        ))
    }

    pub fn softmax(&self, axis: isize) -> Result<Tensor> {
        self.softmax_impl(axis, false)
    }

    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        self.softmax_impl(axis, true)
    }

    fn softmax_impl(&self, axis: isize, log: bool) -> Result<Tensor> {
        let ax = resolve_axis(
            if log { "log_softmax" } else { "softmax" },
            axis,
            self.rank(),
        )?;
        let out = with_storage(self, |s, l| s.softmax(l, ax, log))?;
        let y = Tensor::from_storage(out.clone(), Layout::contiguous(self.shape()));
        Ok(Tensor::from_op(
            out,
            Layout::contiguous(self.shape()),
            if log { "log_softmax" } else { "softmax" },
            &[self],
            Box::new(move |g| {
                let gx = if log {
                    // d log_softmax: g - softmax * sum(g)
                    g.sub(&y.exp()?.mul(&g.sum_axes(&[ax], true)?)?)?
                } else {
                    // d softmax: y * (g - sum(g * y))
                    y.mul(&g.sub(&g.mul(&y)?.sum_axes(&[ax], true)?)?)?
                };
                Ok(vec![Some(gx)])
            }),
        ))
    }
}
