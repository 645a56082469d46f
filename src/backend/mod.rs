//! Backends: where tensor data lives and how primitive ops run on it.
//!
//! Every backend implements [`BackendStorage`]; [`Storage`] is the closed set of backends a tensor
//! can live on and dispatches each primitive to its implementation. Ops with autograd (in
//! `crate::ops`) only ever call these primitives, so a new backend is one trait implementation.

pub mod cpu;
pub mod cuda;
pub mod geometry;
pub mod ops;
pub mod precision;
pub mod probe;

use crate::error::{HeparError, Result};
use crate::ptx::VirtualGpu;
use crate::tensor::dtype::DType;
use crate::tensor::layout::Layout;
pub use cpu::storage::CpuStorage;
use cuda::{CudaDriver, CudaStorage, DeviceApi};
pub use geometry::{
    ConvGeometry, ConvTransposeGeometry, NormActivation, PoolGeometry, UpsampleGeometry,
    UpsampleMode,
};
pub use ops::{AdamStep, BinaryOp, ReduceOp, UnaryOp};

/// Where a tensor lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Device {
    #[default]
    Cpu,
    /// The PTX virtual machine: the CUDA kernels, run on the CPU with memcheck.
    PtxVm,
    /// A real NVIDIA GPU by ordinal.
    Cuda(usize),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::PtxVm => f.write_str("ptxvm"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for Device {
    type Err = HeparError;
    /// `cpu`, `ptxvm` (or `ptx-vm`), `cuda` (GPU 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "cpu" => Ok(Device::Cpu),
            "ptxvm" | "ptx-vm" => Ok(Device::PtxVm),
            "cuda" | "gpu" => Ok(Device::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| {
                    HeparError::invalid(
                        "device",
                        format!("`{other}` is not a device: use cpu, ptxvm, cuda or cuda:N"),
                    )
                }),
        }
    }
}

impl Device {
    /// The device named by `HEPAR_DEVICE`, else the CPU.
    pub fn from_env() -> Result<Device> {
        match std::env::var("HEPAR_DEVICE") {
            Ok(v) if !v.trim().is_empty() => v
                .parse()
                .map_err(|e| HeparError::Config(format!("HEPAR_DEVICE: {e}"))),
            _ => Ok(Device::Cpu),
        }
    }

    /// Opens the device now, so that a missing GPU or driver is reported before any work.
    pub fn ensure_available(self) -> Result<()> {
        match self {
            Device::Cpu | Device::PtxVm => Ok(()),
            Device::Cuda(n) => cuda::context::cuda(n).map(|_| ()),
        }
    }

    /// Allocator counters of a GPU device (`None` on the CPU).
    pub fn memory_stats(self) -> Option<cuda::MemoryStats> {
        match self {
            Device::Cpu => None,
            Device::PtxVm => Some(cuda::context::ptx_vm().memory_stats()),
            Device::Cuda(n) => cuda::context::cuda(n).ok().map(|c| c.memory_stats()),
        }
    }

    /// Starts a new peak-memory measurement of a GPU device's allocator.
    pub fn reset_peak_memory(self) {
        match self {
            Device::Cpu => {}
            Device::PtxVm => cuda::context::ptx_vm().reset_peak_memory(),
            Device::Cuda(n) => {
                if let Ok(c) = cuda::context::cuda(n) {
                    c.reset_peak_memory()
                }
            }
        }
    }

    /// Waits until the work queued on the device is done (nothing to wait for on the CPU).
    pub fn synchronize(self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            Device::PtxVm => cuda::context::ptx_vm().driver().synchronize(),
            Device::Cuda(n) => cuda::context::cuda(n)?.driver().synchronize(),
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
    fn group_norm(
        &self,
        l: &Layout,
        groups: usize,
        weight: Option<&Self>,
        bias: Option<&Self>,
        eps: f64,
        activation: NormActivation,
    ) -> Result<(Self, NormStats<Self>)>;
    /// GroupNorm backward: (grad input, grad weight, grad bias).
    fn group_norm_backward(
        &self,
        l: &Layout,
        grad: &Self,
        gl: &Layout,
        groups: usize,
        weight: Option<&Self>,
        bias: Option<&Self>,
        stats: &NormStats<Self>,
        activation: NormActivation,
    ) -> Result<(Self, Self, Self)>;
    /// Per-channel mean and biased variance of [N, C, ...] over batch and space: two storages of
    /// length C in the input's dtype, left where the input lives.
    fn batch_norm_stats(&self, l: &Layout) -> Result<(Self, Self)>;
    /// `(x - mean[c]) * rstd[c] * w[c] + b[c]`; mean and rstd have length C and x's dtype.
    fn batch_norm_apply(
        &self,
        l: &Layout,
        mean: &Self,
        rstd: &Self,
        weight: Option<&Self>,
        bias: Option<&Self>,
    ) -> Result<Self>;
    /// BatchNorm backward with batch statistics: (grad input, grad weight, grad bias).
    fn batch_norm_train_backward(
        &self,
        l: &Layout,
        grad: &Self,
        gl: &Layout,
        mean: &Self,
        rstd: &Self,
        weight: Option<&Self>,
    ) -> Result<(Self, Self, Self)>;
    /// Convolution of dense [N, C, spatial] data with a dense weight (and bias).
    fn conv(&self, weight: &Self, bias: Option<&Self>, g: &ConvGeometry) -> Result<Self>;
    /// Gradient of `conv` w.r.t. its input, from the dense output gradient `self`.
    fn conv_backward_input(&self, weight: &Self, g: &ConvGeometry) -> Result<Self>;
    /// Gradient of `conv` w.r.t. its weight; `self` is the dense input.
    fn conv_backward_weight(&self, grad_out: &Self, g: &ConvGeometry) -> Result<Self>;
    fn conv_transpose(
        &self,
        weight: &Self,
        bias: Option<&Self>,
        g: &ConvTransposeGeometry,
    ) -> Result<Self>;
    fn conv_transpose_backward_input(
        &self,
        weight: &Self,
        g: &ConvTransposeGeometry,
    ) -> Result<Self>;
    fn conv_transpose_backward_weight(
        &self,
        grad_out: &Self,
        g: &ConvTransposeGeometry,
    ) -> Result<Self>;
    fn max_pool(&self, g: &PoolGeometry) -> Result<Self>;
    /// Gradient of `max_pool`; `self` is the dense input (the argmax is found again).
    fn max_pool_backward(&self, grad_out: &Self, g: &PoolGeometry) -> Result<Self>;
    fn avg_pool(&self, g: &PoolGeometry, count_include_pad: bool) -> Result<Self>;
    /// Gradient of `avg_pool` from the dense output gradient `self`.
    fn avg_pool_backward(&self, g: &PoolGeometry, count_include_pad: bool) -> Result<Self>;
    fn upsample(&self, g: &UpsampleGeometry) -> Result<Self>;
    /// Gradient of `upsample` from the dense output gradient `self`.
    fn upsample_backward(&self, g: &UpsampleGeometry) -> Result<Self>;
    /// An inverted-dropout mask of `numel` elements in this storage's dtype and place: 0 where
    /// Philox (seed, element index) drops the element with probability `p`, `1 / (1 - p)` elsewhere.
    fn dropout_mask(&self, numel: usize, p: f64, seed: u64) -> Result<Self>;
    /// One fused Adam/AdamW step of the dense parameter `self` with the dense gradient and
    /// moments (`None` before the first step): the new (parameter, first moment, second moment).
    fn adam_update(
        &self,
        grad: &Self,
        m: Option<&Self>,
        v: Option<&Self>,
        step: &AdamStep,
    ) -> Result<(Self, Self, Self)>;
}

/// Runs `$body` with `$x` bound to the storage of whichever backend `$s` lives on.
macro_rules! on_backend {
    ($s:expr, |$x:ident| $body:expr) => {
        match $s {
            Storage::Cpu($x) => $body,
            Storage::PtxVm($x) => $body,
            Storage::Cuda($x) => $body,
        }
    };
}

/// Tensor data on one of the backends.
#[derive(Clone, Debug)]
pub enum Storage {
    Cpu(CpuStorage),
    PtxVm(CudaStorage<VirtualGpu>),
    Cuda(CudaStorage<CudaDriver>),
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::PtxVm(_) => Device::PtxVm,
            Storage::Cuda(s) => s.device(),
        }
    }
    pub fn dtype(&self) -> DType {
        on_backend!(self, |s| s.dtype())
    }
    pub fn full(device: Device, numel: usize, dtype: DType, value: f64) -> Result<Storage> {
        Ok(match device {
            Device::Cpu => Storage::Cpu(CpuStorage::full(numel, dtype, value)),
            Device::PtxVm => Storage::PtxVm(CudaStorage::full(
                &cuda::context::ptx_vm(),
                numel,
                dtype,
                value,
            )?),
            Device::Cuda(n) => Storage::Cuda(CudaStorage::full(
                &cuda::context::cuda(n)?,
                numel,
                dtype,
                value,
            )?),
        })
    }
    /// Host storage of one value (cannot fail).
    pub fn host_full(numel: usize, dtype: DType, value: f64) -> Storage {
        Storage::Cpu(CpuStorage::full(numel, dtype, value))
    }
    /// Host data placed on `device` (a copy to the GPU for the GPU devices).
    pub fn from_cpu(cpu: CpuStorage, device: Device) -> Result<Storage> {
        Ok(match device {
            Device::Cpu => Storage::Cpu(cpu),
            Device::PtxVm => Storage::PtxVm(CudaStorage::upload(&cuda::context::ptx_vm(), &cpu)?),
            Device::Cuda(n) => Storage::Cuda(CudaStorage::upload(&cuda::context::cuda(n)?, &cpu)?),
        })
    }
    /// The whole storage in host memory: borrowed on the CPU, copied back from a GPU.
    pub fn to_cpu(&self) -> Result<std::borrow::Cow<'_, CpuStorage>> {
        Ok(match self {
            Storage::Cpu(s) => std::borrow::Cow::Borrowed(s),
            Storage::PtxVm(s) => std::borrow::Cow::Owned(s.download()?),
            Storage::Cuda(s) => std::borrow::Cow::Owned(s.download()?),
        })
    }
}

/// The concrete storage types `Storage` holds, so generic code can unwrap and re-wrap them.
trait Variant: Sized {
    fn wrap(self) -> Storage;
    fn unwrap(s: &Storage) -> Option<&Self>;
}

macro_rules! variant {
    ($ty:ty, $name:ident) => {
        impl Variant for $ty {
            fn wrap(self) -> Storage {
                Storage::$name(self)
            }
            fn unwrap(s: &Storage) -> Option<&Self> {
                match s {
                    Storage::$name(x) => Some(x),
                    _ => None,
                }
            }
        }
    };
}
variant!(CpuStorage, Cpu);
variant!(CudaStorage<VirtualGpu>, PtxVm);
variant!(CudaStorage<CudaDriver>, Cuda);

/// Another operand of an op on `device`; an error names the op and both devices.
fn operand<'a, T: Variant>(op: &str, device: Device, s: &'a Storage) -> Result<&'a T> {
    match T::unwrap(s) {
        Some(x) if s.device() == device => Ok(x),
        _ => Err(HeparError::invalid(
            "device",
            format!("{op}: operands live on different devices ({device} and {}); move them with to_device first", s.device()),
        )),
    }
}

fn optional<'a, T: Variant>(
    op: &str,
    device: Device,
    s: Option<&'a Storage>,
) -> Result<Option<&'a T>> {
    s.map(|s| operand(op, device, s)).transpose()
}

/// GroupNorm statistics unwrapped to the backend of `_like`.
fn stats_like<T: Variant + Clone>(
    _like: &T,
    op: &str,
    device: Device,
    stats: &NormStats<Storage>,
) -> Result<NormStats<T>> {
    Ok(NormStats {
        mean: operand::<T>(op, device, &stats.mean)?.clone(),
        rstd: operand::<T>(op, device, &stats.rstd)?.clone(),
    })
}

fn wrap3<T: Variant>((a, b, c): (T, T, T)) -> (Storage, Storage, Storage) {
    (a.wrap(), b.wrap(), c.wrap())
}

/// `Storage` dispatches every primitive to the backend its data lives on.
impl BackendStorage for Storage {
    const BACKEND: &'static str = "any";
    fn dtype(&self) -> DType {
        Storage::dtype(self)
    }
    fn len(&self) -> usize {
        on_backend!(self, |s| s.len())
    }
    fn to_dtype(&self, l: &Layout, dtype: DType) -> Result<Self> {
        on_backend!(self, |s| s.to_dtype(l, dtype).map(Variant::wrap))
    }
    fn copy_strided(&self, l: &Layout) -> Result<Self> {
        on_backend!(self, |s| s.copy_strided(l).map(Variant::wrap))
    }
    fn write_strided(&mut self, dst: &Layout, src: &Self, src_layout: &Layout) -> Result<()> {
        let device = self.device();
        on_backend!(self, |d| d.write_strided(
            dst,
            operand("write_strided", device, src)?,
            src_layout
        ))
    }
    fn unary(&self, l: &Layout, op: UnaryOp) -> Result<Self> {
        on_backend!(self, |s| s.unary(l, op).map(Variant::wrap))
    }
    fn unary_grad(&self, l: &Layout, grad: &Self, gl: &Layout, op: UnaryOp) -> Result<Self> {
        let device = self.device();
        on_backend!(self, |x| x
            .unary_grad(l, operand(op.name(), device, grad)?, gl, op)
            .map(Variant::wrap))
    }
    fn binary(&self, l: &Layout, rhs: &Self, rl: &Layout, op: BinaryOp) -> Result<Self> {
        let device = self.device();
        on_backend!(self, |a| a
            .binary(l, operand(op.name(), device, rhs)?, rl, op)
            .map(Variant::wrap))
    }
    fn reduce(&self, l: &Layout, axes: &[usize], op: ReduceOp) -> Result<Self> {
        on_backend!(self, |s| s.reduce(l, axes, op).map(Variant::wrap))
    }
    fn softmax(&self, l: &Layout, axis: usize, log: bool) -> Result<Self> {
        on_backend!(self, |s| s.softmax(l, axis, log).map(Variant::wrap))
    }
    fn matmul(&self, l: &Layout, rhs: &Self, rl: &Layout) -> Result<Self> {
        let device = self.device();
        on_backend!(self, |a| a
            .matmul(l, operand("matmul", device, rhs)?, rl)
            .map(Variant::wrap))
    }
    fn group_norm(
        &self,
        l: &Layout,
        groups: usize,
        weight: Option<&Self>,
        bias: Option<&Self>,
        eps: f64,
        activation: NormActivation,
    ) -> Result<(Self, NormStats<Self>)> {
        let (device, op) = (self.device(), "group_norm");
        on_backend!(self, |x| {
            let (y, st) = x.group_norm(
                l,
                groups,
                optional(op, device, weight)?,
                optional(op, device, bias)?,
                eps,
                activation,
            )?;
            Ok((
                y.wrap(),
                NormStats {
                    mean: st.mean.wrap(),
                    rstd: st.rstd.wrap(),
                },
            ))
        })
    }
    fn group_norm_backward(
        &self,
        l: &Layout,
        grad: &Self,
        gl: &Layout,
        groups: usize,
        weight: Option<&Self>,
        bias: Option<&Self>,
        stats: &NormStats<Self>,
        activation: NormActivation,
    ) -> Result<(Self, Self, Self)> {
        let (device, op) = (self.device(), "group_norm_backward");
        on_backend!(self, |x| {
            let stats = stats_like(x, op, device, stats)?;
            x.group_norm_backward(
                l,
                operand(op, device, grad)?,
                gl,
                groups,
                optional(op, device, weight)?,
                optional(op, device, bias)?,
                &stats,
                activation,
            )
            .map(wrap3)
        })
    }
    fn batch_norm_stats(&self, l: &Layout) -> Result<(Self, Self)> {
        on_backend!(self, |s| s
            .batch_norm_stats(l)
            .map(|(mean, var)| (mean.wrap(), var.wrap())))
    }
    fn batch_norm_apply(
        &self,
        l: &Layout,
        mean: &Self,
        rstd: &Self,
        weight: Option<&Self>,
        bias: Option<&Self>,
    ) -> Result<Self> {
        let (device, op) = (self.device(), "batch_norm");
        on_backend!(self, |x| x
            .batch_norm_apply(
                l,
                operand(op, device, mean)?,
                operand(op, device, rstd)?,
                optional(op, device, weight)?,
                optional(op, device, bias)?
            )
            .map(Variant::wrap))
    }
    fn batch_norm_train_backward(
        &self,
        l: &Layout,
        grad: &Self,
        gl: &Layout,
        mean: &Self,
        rstd: &Self,
        weight: Option<&Self>,
    ) -> Result<(Self, Self, Self)> {
        let (device, op) = (self.device(), "batch_norm_backward");
        on_backend!(self, |x| x
            .batch_norm_train_backward(
                l,
                operand(op, device, grad)?,
                gl,
                operand(op, device, mean)?,
                operand(op, device, rstd)?,
                optional(op, device, weight)?
            )
            .map(wrap3))
    }
    fn conv(&self, weight: &Self, bias: Option<&Self>, g: &ConvGeometry) -> Result<Self> {
        let (device, op) = (self.device(), "conv");
        on_backend!(self, |x| x
            .conv(operand(op, device, weight)?, optional(op, device, bias)?, g)
            .map(Variant::wrap))
    }
    fn conv_backward_input(&self, weight: &Self, g: &ConvGeometry) -> Result<Self> {
        let device = self.device();
        on_backend!(self, |go| go
            .conv_backward_input(operand("conv_backward_input", device, weight)?, g)
            .map(Variant::wrap))
    }
    fn conv_backward_weight(&self, grad_out: &Self, g: &ConvGeometry) -> Result<Self> {
        let device = self.device();
        on_backend!(self, |x| x
            .conv_backward_weight(operand("conv_backward_weight", device, grad_out)?, g)
            .map(Variant::wrap))
    }
    fn conv_transpose(
        &self,
        weight: &Self,
        bias: Option<&Self>,
        g: &ConvTransposeGeometry,
    ) -> Result<Self> {
        let (device, op) = (self.device(), "conv_transpose");
        on_backend!(self, |x| x
            .conv_transpose(operand(op, device, weight)?, optional(op, device, bias)?, g)
            .map(Variant::wrap))
    }
    fn conv_transpose_backward_input(
        &self,
        weight: &Self,
        g: &ConvTransposeGeometry,
    ) -> Result<Self> {
        let device = self.device();
        on_backend!(self, |go| go
            .conv_transpose_backward_input(
                operand("conv_transpose_backward_input", device, weight)?,
                g
            )
            .map(Variant::wrap))
    }
    fn conv_transpose_backward_weight(
        &self,
        grad_out: &Self,
        g: &ConvTransposeGeometry,
    ) -> Result<Self> {
        let device = self.device();
        on_backend!(self, |x| x
            .conv_transpose_backward_weight(
                operand("conv_transpose_backward_weight", device, grad_out)?,
                g
            )
            .map(Variant::wrap))
    }
    fn max_pool(&self, g: &PoolGeometry) -> Result<Self> {
        on_backend!(self, |x| x.max_pool(g).map(Variant::wrap))
    }
    fn max_pool_backward(&self, grad_out: &Self, g: &PoolGeometry) -> Result<Self> {
        let device = self.device();
        on_backend!(self, |x| x
            .max_pool_backward(operand("max_pool_backward", device, grad_out)?, g)
            .map(Variant::wrap))
    }
    fn avg_pool(&self, g: &PoolGeometry, count_include_pad: bool) -> Result<Self> {
        on_backend!(self, |x| x
            .avg_pool(g, count_include_pad)
            .map(Variant::wrap))
    }
    fn avg_pool_backward(&self, g: &PoolGeometry, count_include_pad: bool) -> Result<Self> {
        on_backend!(self, |go| go
            .avg_pool_backward(g, count_include_pad)
            .map(Variant::wrap))
    }
    fn upsample(&self, g: &UpsampleGeometry) -> Result<Self> {
        on_backend!(self, |x| x.upsample(g).map(Variant::wrap))
    }
    fn upsample_backward(&self, g: &UpsampleGeometry) -> Result<Self> {
        on_backend!(self, |go| go.upsample_backward(g).map(Variant::wrap))
    }
    fn dropout_mask(&self, numel: usize, p: f64, seed: u64) -> Result<Self> {
        on_backend!(self, |s| s.dropout_mask(numel, p, seed).map(Variant::wrap))
    }
    fn adam_update(
        &self,
        grad: &Self,
        m: Option<&Self>,
        v: Option<&Self>,
        step: &AdamStep,
    ) -> Result<(Self, Self, Self)> {
        let (device, op) = (self.device(), "adam");
        on_backend!(self, |p| p
            .adam_update(
                operand(op, device, grad)?,
                optional(op, device, m)?,
                optional(op, device, v)?,
                step
            )
            .map(wrap3))
    }
}
