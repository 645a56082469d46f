//! Backends: where tensor data lives and how primitive ops run on it.
//!
//! Every backend implements [`BackendStorage`]; [`Storage`] is the closed set of backends a tensor
//! can live on and dispatches each primitive to its implementation. Ops with autograd (in
//! `crate::ops`) only ever call these primitives, so a new backend is one trait implementation.

pub mod cpu;
pub mod cuda;
pub mod ops;
pub mod probe;

use crate::error::Result;
use crate::tensor::dtype::DType;
use crate::tensor::layout::Layout;
pub use cpu::storage::CpuStorage;
pub use cpu::kernels::conv::{ConvGeometry, ConvTransposeGeometry};
pub use cpu::kernels::norm::NormActivation;
pub use cpu::kernels::pool::PoolGeometry;
pub use cpu::kernels::upsample::{UpsampleGeometry, UpsampleMode};
pub use ops::{BinaryOp, ReduceOp, UnaryOp};

/// Where a tensor lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    #[default]
    Cpu,
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
        }
    }
}

/// Per-group (GroupNorm) statistics saved by the forward pass for the backward pass.
#[derive(Clone, Debug)]
pub struct NormStats<S> {
    pub mean: S,
    pub rstd: S,
}

/// The primitive ops a backend provides. Inputs are read through their layouts (strided views);
/// outputs are dense, row-major, in the input's dtype.
pub trait BackendStorage: Sized + Send + Sync + 'static {
    const BACKEND: &'static str;
    fn dtype(&self) -> DType;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn to_dtype(&self, l: &Layout, dtype: DType) -> Result<Self>;
    fn copy_strided(&self, l: &Layout) -> Result<Self>;
    /// Copies the view `src` into the view `dst` of this storage (shapes equal).
    fn write_strided(&mut self, dst: &Layout, src: &Self, src_layout: &Layout) -> Result<()>;
    fn unary(&self, l: &Layout, op: UnaryOp) -> Result<Self>;
    /// `grad * op'(self)`, the backward of `unary`.
    fn unary_grad(&self, l: &Layout, grad: &Self, gl: &Layout, op: UnaryOp) -> Result<Self>;
    fn binary(&self, l: &Layout, rhs: &Self, rl: &Layout, op: BinaryOp) -> Result<Self>;
    /// Reduces over sorted unique `axes`; the output keeps them as size 1.
    fn reduce(&self, l: &Layout, axes: &[usize], op: ReduceOp) -> Result<Self>;
    fn softmax(&self, l: &Layout, axis: usize, log: bool) -> Result<Self>;
    /// [..., M, K] @ [..., K, N] with identical batch axes.
    fn matmul(&self, l: &Layout, rhs: &Self, rl: &Layout) -> Result<Self>;
    /// GroupNorm over [N, C, ...]: output and per-(sample, group) statistics.
    fn group_norm(&self, l: &Layout, groups: usize, weight: Option<&Self>, bias: Option<&Self>, eps: f64, activation: NormActivation) -> Result<(Self, NormStats<Self>)>;
    /// GroupNorm backward: (grad input, grad weight, grad bias).
    fn group_norm_backward(&self, l: &Layout, grad: &Self, gl: &Layout, groups: usize, weight: Option<&Self>, bias: Option<&Self>, stats: &NormStats<Self>, activation: NormActivation) -> Result<(Self, Self, Self)>;
    /// Per-channel mean and biased variance of [N, C, ...] over batch and space.
    fn batch_norm_stats(&self, l: &Layout) -> Result<(Vec<f64>, Vec<f64>)>;
    /// `(x - mean[c]) * rstd[c] * w[c] + b[c]`.
    fn batch_norm_apply(&self, l: &Layout, mean: &[f64], rstd: &[f64], weight: Option<&Self>, bias: Option<&Self>) -> Result<Self>;
    /// BatchNorm backward with batch statistics: (grad input, grad weight, grad bias).
    fn batch_norm_train_backward(&self, l: &Layout, grad: &Self, gl: &Layout, mean: &[f64], rstd: &[f64], weight: Option<&Self>) -> Result<(Self, Self, Self)>;
    /// Convolution of dense [N, C, spatial] data with a dense weight (and bias).
    fn conv(&self, weight: &Self, bias: Option<&Self>, g: &ConvGeometry) -> Result<Self>;
    /// Gradient of `conv` w.r.t. its input, from the dense output gradient `self`.
    fn conv_backward_input(&self, weight: &Self, g: &ConvGeometry) -> Result<Self>;
    /// Gradient of `conv` w.r.t. its weight; `self` is the dense input.
    fn conv_backward_weight(&self, grad_out: &Self, g: &ConvGeometry) -> Result<Self>;
    fn conv_transpose(&self, weight: &Self, bias: Option<&Self>, g: &ConvTransposeGeometry) -> Result<Self>;
    fn conv_transpose_backward_input(&self, weight: &Self, g: &ConvTransposeGeometry) -> Result<Self>;
    fn conv_transpose_backward_weight(&self, grad_out: &Self, g: &ConvTransposeGeometry) -> Result<Self>;
    fn max_pool(&self, g: &PoolGeometry) -> Result<Self>;
    /// Gradient of `max_pool`; `self` is the dense input (the argmax is found again).
    fn max_pool_backward(&self, grad_out: &Self, g: &PoolGeometry) -> Result<Self>;
    fn avg_pool(&self, g: &PoolGeometry, count_include_pad: bool) -> Result<Self>;
    /// Gradient of `avg_pool` from the dense output gradient `self`.
    fn avg_pool_backward(&self, g: &PoolGeometry, count_include_pad: bool) -> Result<Self>;
    fn upsample(&self, g: &UpsampleGeometry) -> Result<Self>;
    /// Gradient of `upsample` from the dense output gradient `self`.
    fn upsample_backward(&self, g: &UpsampleGeometry) -> Result<Self>;
}

/// Tensor data on one of the backends.
#[derive(Clone, Debug)]
pub enum Storage {
    Cpu(CpuStorage),
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
        }
    }
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
        }
    }
    pub fn full(device: Device, numel: usize, dtype: DType, value: f64) -> Storage {
        match device {
            Device::Cpu => Storage::Cpu(CpuStorage::full(numel, dtype, value)),
        }
    }
    pub fn as_cpu(&self) -> &CpuStorage {
        match self {
            Storage::Cpu(s) => s,
        }
    }
}

/// Unwraps operands that must share one backend; an error names the op and both devices.
macro_rules! on_backend {
    ($op:expr, $a:expr) => {
        match $a {
            Storage::Cpu(a) => a,
        }
    };
    ($op:expr, $a:expr, $b:expr) => {
        match ($a, $b) {
            (Storage::Cpu(a), Storage::Cpu(b)) => (a, b),
        }
    };
}

fn opt_cpu(s: Option<&Storage>) -> Option<&CpuStorage> {
    s.map(|s| on_backend!("optional operand", s))
}

/// `Storage` dispatches every primitive to the backend its data lives on.
impl BackendStorage for Storage {
    const BACKEND: &'static str = "any";
    fn dtype(&self) -> DType {
        Storage::dtype(self)
    }
    fn len(&self) -> usize {
        on_backend!("len", self).len()
    }
    fn to_dtype(&self, l: &Layout, dtype: DType) -> Result<Self> {
        on_backend!("to_dtype", self).to_dtype(l, dtype).map(Storage::Cpu)
    }
    fn copy_strided(&self, l: &Layout) -> Result<Self> {
        on_backend!("copy", self).copy_strided(l).map(Storage::Cpu)
    }
    fn write_strided(&mut self, dst: &Layout, src: &Self, src_layout: &Layout) -> Result<()> {
        let (d, s) = on_backend!("write_strided", self, src);
        d.write_strided(dst, s, src_layout)
    }
    fn unary(&self, l: &Layout, op: UnaryOp) -> Result<Self> {
        on_backend!(op.name(), self).unary(l, op).map(Storage::Cpu)
    }
    fn unary_grad(&self, l: &Layout, grad: &Self, gl: &Layout, op: UnaryOp) -> Result<Self> {
        let (x, g) = on_backend!(op.name(), self, grad);
        x.unary_grad(l, g, gl, op).map(Storage::Cpu)
    }
    fn binary(&self, l: &Layout, rhs: &Self, rl: &Layout, op: BinaryOp) -> Result<Self> {
        let (a, b) = on_backend!(op.name(), self, rhs);
        a.binary(l, b, rl, op).map(Storage::Cpu)
    }
    fn reduce(&self, l: &Layout, axes: &[usize], op: ReduceOp) -> Result<Self> {
        on_backend!("reduce", self).reduce(l, axes, op).map(Storage::Cpu)
    }
    fn softmax(&self, l: &Layout, axis: usize, log: bool) -> Result<Self> {
        on_backend!("softmax", self).softmax(l, axis, log).map(Storage::Cpu)
    }
    fn matmul(&self, l: &Layout, rhs: &Self, rl: &Layout) -> Result<Self> {
        let (a, b) = on_backend!("matmul", self, rhs);
        a.matmul(l, b, rl).map(Storage::Cpu)
    }
    fn group_norm(&self, l: &Layout, groups: usize, weight: Option<&Self>, bias: Option<&Self>, eps: f64, activation: NormActivation) -> Result<(Self, NormStats<Self>)> {
        let (y, st) = on_backend!("group_norm", self).group_norm(l, groups, opt_cpu(weight), opt_cpu(bias), eps, activation)?;
        Ok((Storage::Cpu(y), NormStats { mean: Storage::Cpu(st.mean), rstd: Storage::Cpu(st.rstd) }))
    }
    fn group_norm_backward(&self, l: &Layout, grad: &Self, gl: &Layout, groups: usize, weight: Option<&Self>, bias: Option<&Self>, stats: &NormStats<Self>, activation: NormActivation) -> Result<(Self, Self, Self)> {
        let (x, g) = on_backend!("group_norm_backward", self, grad);
        let stats = NormStats { mean: on_backend!("group_norm_backward", &stats.mean).clone(), rstd: on_backend!("group_norm_backward", &stats.rstd).clone() };
        let (a, b, c) = x.group_norm_backward(l, g, gl, groups, opt_cpu(weight), opt_cpu(bias), &stats, activation)?;
        Ok((Storage::Cpu(a), Storage::Cpu(b), Storage::Cpu(c)))
    }
    fn batch_norm_stats(&self, l: &Layout) -> Result<(Vec<f64>, Vec<f64>)> {
        on_backend!("batch_norm", self).batch_norm_stats(l)
    }
    fn batch_norm_apply(&self, l: &Layout, mean: &[f64], rstd: &[f64], weight: Option<&Self>, bias: Option<&Self>) -> Result<Self> {
        on_backend!("batch_norm", self).batch_norm_apply(l, mean, rstd, opt_cpu(weight), opt_cpu(bias)).map(Storage::Cpu)
    }
    fn batch_norm_train_backward(&self, l: &Layout, grad: &Self, gl: &Layout, mean: &[f64], rstd: &[f64], weight: Option<&Self>) -> Result<(Self, Self, Self)> {
        let (x, g) = on_backend!("batch_norm_backward", self, grad);
        let (a, b, c) = x.batch_norm_train_backward(l, g, gl, mean, rstd, opt_cpu(weight))?;
        Ok((Storage::Cpu(a), Storage::Cpu(b), Storage::Cpu(c)))
    }
    fn conv(&self, weight: &Self, bias: Option<&Self>, g: &ConvGeometry) -> Result<Self> {
        let (x, w) = on_backend!("conv", self, weight);
        x.conv(w, opt_cpu(bias), g).map(Storage::Cpu)
    }
    fn conv_backward_input(&self, weight: &Self, g: &ConvGeometry) -> Result<Self> {
        let (go, w) = on_backend!("conv_backward_input", self, weight);
        go.conv_backward_input(w, g).map(Storage::Cpu)
    }
    fn conv_backward_weight(&self, grad_out: &Self, g: &ConvGeometry) -> Result<Self> {
        let (x, go) = on_backend!("conv_backward_weight", self, grad_out);
        x.conv_backward_weight(go, g).map(Storage::Cpu)
    }
    fn conv_transpose(&self, weight: &Self, bias: Option<&Self>, g: &ConvTransposeGeometry) -> Result<Self> {
        let (x, w) = on_backend!("conv_transpose", self, weight);
        x.conv_transpose(w, opt_cpu(bias), g).map(Storage::Cpu)
    }
    fn conv_transpose_backward_input(&self, weight: &Self, g: &ConvTransposeGeometry) -> Result<Self> {
        let (go, w) = on_backend!("conv_transpose_backward_input", self, weight);
        go.conv_transpose_backward_input(w, g).map(Storage::Cpu)
    }
    fn conv_transpose_backward_weight(&self, grad_out: &Self, g: &ConvTransposeGeometry) -> Result<Self> {
        let (x, go) = on_backend!("conv_transpose_backward_weight", self, grad_out);
        x.conv_transpose_backward_weight(go, g).map(Storage::Cpu)
    }
    fn max_pool(&self, g: &PoolGeometry) -> Result<Self> {
        on_backend!("max_pool", self).max_pool(g).map(Storage::Cpu)
    }
    fn max_pool_backward(&self, grad_out: &Self, g: &PoolGeometry) -> Result<Self> {
        let (x, go) = on_backend!("max_pool_backward", self, grad_out);
        x.max_pool_backward(go, g).map(Storage::Cpu)
    }
    fn avg_pool(&self, g: &PoolGeometry, count_include_pad: bool) -> Result<Self> {
        on_backend!("avg_pool", self).avg_pool(g, count_include_pad).map(Storage::Cpu)
    }
    fn avg_pool_backward(&self, g: &PoolGeometry, count_include_pad: bool) -> Result<Self> {
        on_backend!("avg_pool_backward", self).avg_pool_backward(g, count_include_pad).map(Storage::Cpu)
    }
    fn upsample(&self, g: &UpsampleGeometry) -> Result<Self> {
        on_backend!("upsample", self).upsample(g).map(Storage::Cpu)
    }
    fn upsample_backward(&self, g: &UpsampleGeometry) -> Result<Self> {
        on_backend!("upsample_backward", self).upsample_backward(g).map(Storage::Cpu)
    }
}
