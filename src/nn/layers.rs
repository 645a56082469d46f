//! Basic layers: convolution, transposed convolution, GroupNorm, BatchNorm.

use super::{join, Init, Module, TensorKind};
use crate::error::Result;
use crate::ops::conv::ConvOptions;
use crate::tensor::{DType, Tensor};

/// A 2D or 3D convolution (the weight's rank decides).
pub struct Conv {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub options: ConvOptions,
}

impl Conv {
    /// `kernel` in every spatial axis, padding `kernel / 2`, stride 1.
    pub fn new(
        init: &mut Init,
        dims: usize,
        cin: usize,
        cout: usize,
        kernel: usize,
        groups: usize,
        bias: bool,
    ) -> Self {
        let mut shape = vec![cout, cin / groups];
        shape.extend(std::iter::repeat_n(kernel, dims));
        let fan_in = (cin / groups) * kernel.pow(dims as u32);
        let bound = 1.0 / (fan_in as f64).sqrt();
        let weight = init.uniform(&shape, bound);
        let bias = bias.then(|| init.uniform(&[cout], bound));
        Conv {
            weight,
            bias,
            options: ConvOptions {
                padding: vec![kernel / 2],
                groups,
                ..ConvOptions::default()
            },
        }
    }

    /// `kernel` in every spatial axis with explicit stride, padding and dilation (`options`).
    pub fn with_options(
        init: &mut Init,
        dims: usize,
        cin: usize,
        cout: usize,
        kernel: usize,
        bias: bool,
        options: ConvOptions,
    ) -> Self {
        let mut conv = Conv::new(init, dims, cin, cout, kernel, options.groups, bias);
        conv.options = options;
        conv
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv(&self.weight, self.bias.as_ref(), &self.options)
    }
}

/// A 2D or 3D transposed convolution with a bias; the weight is [in, out, k...] as PyTorch's.
pub struct ConvTranspose {
    pub weight: Tensor,
    pub bias: Tensor,
    pub options: ConvOptions,
}

impl ConvTranspose {
    /// `kernel` in every spatial axis, stride `stride`, padding `padding`.
    pub fn new(
        init: &mut Init,
        dims: usize,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Self {
        let mut shape = vec![cin, cout];
        shape.extend(std::iter::repeat_n(kernel, dims));
        // PyTorch takes the fan-in of a transposed convolution from the weight's second axis.
        let fan_in = cout * kernel.pow(dims as u32);
        let bound = 1.0 / (fan_in as f64).sqrt();
        ConvTranspose {
            weight: init.uniform(&shape, bound),
            bias: init.uniform(&[cout], bound),
            options: ConvOptions {
                stride: vec![stride],
                padding: vec![padding],
                ..ConvOptions::default()
            },
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv_transpose(&self.weight, Some(&self.bias), &self.options)
    }
}

impl Module for ConvTranspose {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        f(&join(prefix, "weight"), &self.weight, TensorKind::Parameter);
        f(&join(prefix, "bias"), &self.bias, TensorKind::Parameter);
    }
}

impl Module for Conv {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        f(&join(prefix, "weight"), &self.weight, TensorKind::Parameter);
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b, TensorKind::Parameter);
        }
    }
}

pub struct GroupNorm {
    pub groups: usize,
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl GroupNorm {
    pub fn new(groups: usize, channels: usize) -> Self {
        GroupNorm {
            groups,
            weight: Tensor::host_full(&[channels], 1.0, DType::F32).requires_grad_leaf(),
            bias: Tensor::host_full(&[channels], 0.0, DType::F32).requires_grad_leaf(),
            eps: 1e-5,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.group_norm(self.groups, Some(&self.weight), Some(&self.bias), self.eps)
    }

    /// `silu(self.forward(x))`, fused.
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        x.group_norm_silu(self.groups, Some(&self.weight), Some(&self.bias), self.eps)
    }
}

impl Module for GroupNorm {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        f(&join(prefix, "weight"), &self.weight, TensorKind::Parameter);
        f(&join(prefix, "bias"), &self.bias, TensorKind::Parameter);
    }
}

pub struct BatchNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    /// PyTorch's `num_batches_tracked` (kept for checkpoint compatibility).
    pub num_batches_tracked: Tensor,
    pub momentum: f64,
    pub eps: f64,
}

impl BatchNorm {
    pub fn new(channels: usize) -> Self {
        BatchNorm {
            weight: Tensor::host_full(&[channels], 1.0, DType::F32).requires_grad_leaf(),
            bias: Tensor::host_full(&[channels], 0.0, DType::F32).requires_grad_leaf(),
            running_mean: Tensor::host_full(&[channels], 0.0, DType::F32),
            running_var: Tensor::host_full(&[channels], 1.0, DType::F32),
            num_batches_tracked: Tensor::host_full(&[], 0.0, DType::F32),
            momentum: 0.1,
            eps: 1e-5,
        }
    }

    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        if training {
            // Counted where the layer lives: no host round trip per step on a GPU.
            let counter = &self.num_batches_tracked;
            counter.assign(&crate::no_grad(|| counter.add_scalar(1.0))?)?;
        }
        x.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            &self.running_mean,
            &self.running_var,
            training,
            self.momentum,
            self.eps,
        )
    }
}

impl Module for BatchNorm {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        f(&join(prefix, "weight"), &self.weight, TensorKind::Parameter);
        f(&join(prefix, "bias"), &self.bias, TensorKind::Parameter);
        f(
            &join(prefix, "running_mean"),
            &self.running_mean,
            TensorKind::Buffer,
        );
        f(
            &join(prefix, "running_var"),
            &self.running_var,
            TensorKind::Buffer,
        );
        f(
            &join(prefix, "num_batches_tracked"),
            &self.num_batches_tracked,
            TensorKind::Buffer,
        );
    }
}
