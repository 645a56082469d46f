//! Gradient checking: compares the gradients backward() computes with central finite
//! differences, in f64. Use it on any composition of ops:
//!
//! ```
//! use hepar::autograd::gradcheck::{gradcheck, GradcheckOptions};
//! use hepar::tensor::{DType, Tensor};
//! let x = Tensor::randn(&[3, 4], DType::F64, 1);
//! let w = Tensor::randn(&[4, 2], DType::F64, 2);
//! let report = gradcheck(|t| t[0].matmul(&t[1])?.tanh(), &[x, w], GradcheckOptions::default()).unwrap();
//! assert!(report.max_abs_error < 1e-6);
//! ```

use super::no_grad;
use crate::error::{HeparError, Result};
use crate::tensor::{DType, Tensor};
use crate::util::rng::Rng;

#[derive(Clone, Copy, Debug)]
pub struct GradcheckOptions {
    /// Finite-difference step.
    pub eps: f64,
    pub atol: f64,
    pub rtol: f64,
    /// Which inputs to check (all when `None`).
    pub max_elements_per_input: Option<usize>,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-6,
            atol: 1e-6,
            rtol: 1e-4,
            max_elements_per_input: None,
        }
    }
}

#[derive(Clone, Debug)]
pub struct GradcheckReport {
    pub max_abs_error: f64,
    pub elements_checked: usize,
}

/// Checks d(sum(f(inputs) * w))/d(inputs) for a fixed random projection `w`, element by element.
/// Inputs are converted to f64 and stay on their device. Returns an error describing the first mismatch.
pub fn gradcheck(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    opts: GradcheckOptions,
) -> Result<GradcheckReport> {
    let leaves: Vec<Tensor> = inputs
        .iter()
        .map(|t| {
            Ok(t.to_dtype(DType::F64)?
                .contiguous()?
                .detach()
                .requires_grad_leaf())
        })
        .collect::<Result<_>>()?;
    let out = f(&leaves)?;
    let projection =
        Tensor::rand_uniform(out.shape(), -1.0, 1.0, DType::F64, 0x5eed).to_device(out.device())?;
    let objective =
        |xs: &[Tensor]| -> Result<f64> { f(xs)?.mul(&projection)?.sum_all()?.to_scalar() };
    out.mul(&projection)?.sum_all()?.backward()?;
    let mut report = GradcheckReport {
        max_abs_error: 0.0,
        elements_checked: 0,
    };
    let mut rng = Rng::new(17);
    for (i, leaf) in leaves.iter().enumerate() {
        let analytic = match leaf.grad() {
            Some(g) => g.try_to_vec_f64()?,
            None => vec![0.0; leaf.numel()],
        };
        let base = leaf.try_to_vec_f64()?;
        let positions: Vec<usize> = match opts.max_elements_per_input {
            Some(m) if m < base.len() => (0..m).map(|_| rng.below(base.len())).collect(),
            _ => (0..base.len()).collect(),
        };
        for j in positions {
            let eval_at = |delta: f64| -> Result<f64> {
                let mut v = base.clone();
                v[j] += delta;
                let mut xs: Vec<Tensor> = leaves.iter().map(|t| t.detach()).collect();
                // Perturbed inputs live where the leaf does, so the check runs on any device.
                xs[i] = Tensor::from_vec_on(v, leaf.shape(), leaf.device())?;
                no_grad(|| objective(&xs))
            };
            let numeric = (eval_at(opts.eps)? - eval_at(-opts.eps)?) / (2.0 * opts.eps);
            let err = (analytic[j] - numeric).abs();
            report.max_abs_error = report.max_abs_error.max(err);
            report.elements_checked += 1;
            if err > opts.atol + opts.rtol * numeric.abs() {
                return Err(HeparError::Autograd(format!(
                    "gradcheck: input {i} (shape {:?}) element {j}: analytic {} vs numeric {numeric} (error {err})",
                    leaf.shape(),
                    analytic[j]
                )));
            }
        }
    }
    Ok(report)
}
