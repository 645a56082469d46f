//! Elementwise ops: unary functions, activations, scalar arithmetic and broadcasting binary ops.

use super::{with_storage, with_storages};
use crate::backend::{BackendStorage, BinaryOp, UnaryOp};
use crate::error::{HeparError, Result};
use crate::tensor::layout::{broadcast_shape, Layout};
use crate::tensor::Tensor;

impl Tensor {
    /// Applies a unary primitive; the backward pass is `grad * op'(x)` in one fused pass.
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        let out = with_storage(self, |s, l| s.unary(l, op))?;
        let x = self.clone();
        Ok(Tensor::from_op(
            out,
            Layout::contiguous(self.shape()),
            op.name(),
            &[self],
            Box::new(move |g| {
                let grad = with_storages(&x, g, |xs, xl, gs, gl| xs.unary_grad(xl, gs, gl, op))?;
                Ok(vec![Some(Tensor::from_storage(
                    grad,
                    Layout::contiguous(x.shape()),
                ))])
            }),
        ))
    }

    pub fn neg(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Neg)
    }
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Exp)
    }
    pub fn log(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Log)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt)
    }
    pub fn abs(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Abs)
    }
    pub fn square(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Square)
    }
    pub fn recip(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Recip)
    }
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Relu)
    }
    pub fn leaky_relu(&self, negative_slope: f64) -> Result<Tensor> {
        self.unary(UnaryOp::LeakyRelu(negative_slope))
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sigmoid)
    }
    pub fn silu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Silu)
    }
    /// GELU with the exact (erf) form, PyTorch's default.
    pub fn gelu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Gelu)
    }
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Tanh)
    }
    /// `x ^ exponent` for a scalar exponent.
    pub fn powf(&self, exponent: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Powf(exponent))
    }
    pub fn clamp(&self, min: f64, max: f64) -> Result<Tensor> {
        if min > max {
            return Err(HeparError::invalid(
                "clamp",
                format!("min {min} > max {max}"),
            ));
        }
        self.unary(UnaryOp::Clamp { min, max })
    }
    /// `x * mul + add`.
    pub fn affine(&self, mul: f64, add: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Affine { mul, add })
    }
    pub fn add_scalar(&self, v: f64) -> Result<Tensor> {
        self.affine(1.0, v)
    }
    pub fn mul_scalar(&self, v: f64) -> Result<Tensor> {
        self.affine(v, 0.0)
    }
    /// `v - x`.
    pub fn rsub_scalar(&self, v: f64) -> Result<Tensor> {
        self.affine(-1.0, v)
    }

    /// Applies a binary primitive after broadcasting both operands to a common shape.
    pub fn binary(&self, rhs: &Tensor, op: BinaryOp) -> Result<Tensor> {
        if self.dtype() != rhs.dtype() {
            return Err(HeparError::dtype(
                op.name(),
                format!(
                    "{} {:?} vs {} {:?}",
                    self.dtype(),
                    self.shape(),
                    rhs.dtype(),
                    rhs.shape()
                ),
            ));
        }
        let shape = broadcast_shape(op.name(), self.shape(), rhs.shape())?;
        let (la, lb) = (
            self.layout().broadcast_to(op.name(), &shape)?,
            rhs.layout().broadcast_to(op.name(), &shape)?,
        );
        let out = {
            let (sa, sb) = (self.storage(), rhs.storage());
            sa.binary(&la, &sb, &lb, op)?
        };
        let (a, b) = (self.clone(), rhs.clone());
        let (sa, sb) = (self.shape().to_vec(), rhs.shape().to_vec());
        let result_shape = shape.clone();
        Ok(Tensor::from_op(
            out,
            Layout::contiguous(&shape),
            op.name(),
            &[self, rhs],
            Box::new(move |g| {
                let (ga, gb) = match op {
                    BinaryOp::Add => (g.clone(), g.clone()),
                    BinaryOp::Sub => (g.clone(), g.neg()?),
                    BinaryOp::Mul => (g.mul(&b)?, g.mul(&a)?),
                    BinaryOp::Div => {
                        let ga = g.div(&b)?;
                        let gb = ga.mul(&a)?.div(&b)?.neg()?;
                        (ga, gb)
                    }
                    BinaryOp::Maximum | BinaryOp::Minimum => {
                        // The gradient goes to whichever operand was selected (`a` on ties).
                        let selected = a
                            .broadcast_to(&result_shape)?
                            .binary(&b.broadcast_to(&result_shape)?, op)?;
                        let mask_a =
                            selected.binary(&a.broadcast_to(&result_shape)?, BinaryOp::Equal)?;
                        let ga = g.mul(&mask_a)?;
                        let gb = g.mul(&mask_a.rsub_scalar(1.0)?)?;
                        (ga, gb)
                    }
                    BinaryOp::Equal => return Ok(vec![None, None]),
                };
                Ok(vec![
                    Some(ga.sum_to_shape(&sa)?),
                    Some(gb.sum_to_shape(&sb)?),
                ])
            }),
        ))
    }

    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Add)
    }
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Sub)
    }
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Mul)
    }
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Div)
    }
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Maximum)
    }
    pub fn minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Minimum)
    }
    /// 1 where equal, else 0 (not differentiable).
    pub fn eq_mask(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Equal)
    }
}
