//! `CudaStorage`: tensor data in the memory of one GPU (real or virtual), and the CUDA
//! implementation of the backend trait. Each primitive launches the kernels of its family module
//! (`elementwise`, `copy`, ...); the host waits only when data is read back.

use std::sync::Arc;

use super::context::{GpuBuffer, GpuContext};
use super::device::{DeviceApi, DevicePtr, KernelArg};
use super::{conv, copy, elementwise, matmul, norm, optim, pool, random, reduce, upsample};
use crate::backend::ops::{AdamStep, BinaryOp, ReduceOp, UnaryOp};
use crate::backend::{
    BackendStorage, ConvGeometry, ConvTransposeGeometry, CpuStorage, Device, NormActivation,
    NormStats, PoolGeometry, UpsampleGeometry,
};
use crate::error::{HeparError, Result};
use crate::tensor::dtype::DType;
use crate::tensor::layout::Layout;

/// `len` elements of `dtype` in a device buffer. Clones share the buffer (like `Arc`); every op
/// writes a fresh buffer, and only `write_strided` (on storage its tensor owns) writes in place.
pub struct CudaStorage<D: DeviceApi> {
    buffer: Arc<GpuBuffer<D>>,
    dtype: DType,
    len: usize,
}

impl<D: DeviceApi> Clone for CudaStorage<D> {
    fn clone(&self) -> Self {
        CudaStorage {
            buffer: self.buffer.clone(),
            dtype: self.dtype,
            len: self.len,
        }
    }
}

impl<D: DeviceApi> std::fmt::Debug for CudaStorage<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CudaStorage({} x {}, {:?})",
            self.len, self.dtype, self.buffer
        )
    }
}

/// The suffix of a kernel for elements of `dtype` (`silu_f32`).
pub fn dtype_suffix(dtype: DType) -> &'static str {
    dtype.name()
}

impl<D: DeviceApi> CudaStorage<D> {
    /// Uninitialised storage for `len` elements.
    pub fn alloc(context: &Arc<GpuContext<D>>, len: usize, dtype: DType) -> Result<Self> {
        let buffer = context.alloc(len * dtype.size_in_bytes())?;
        Ok(CudaStorage {
            buffer: Arc::new(buffer),
            dtype,
            len,
        })
    }

    /// Storage like this one's context, of another length and dtype.
    pub fn alloc_like(&self, len: usize, dtype: DType) -> Result<Self> {
        Self::alloc(self.context(), len, dtype)
    }

    pub fn full(
        context: &Arc<GpuContext<D>>,
        len: usize,
        dtype: DType,
        value: f64,
    ) -> Result<Self> {
        copy::fill(context, len, dtype, value)
    }

    /// Copies host data to the device.
    pub fn upload(context: &Arc<GpuContext<D>>, cpu: &CpuStorage) -> Result<Self> {
        let bytes: &[u8] = match cpu {
            CpuStorage::F32(v) => bytemuck::cast_slice(v),
            CpuStorage::F64(v) => bytemuck::cast_slice(v),
            CpuStorage::F16(v) => bytemuck::cast_slice(v),
            CpuStorage::BF16(v) => bytemuck::cast_slice(v),
        };
        let s = Self::alloc(context, cpu.len(), cpu.dtype())?;
        context.driver().copy_to_device(s.ptr(), bytes)?;
        Ok(s)
    }

    /// Copies the whole buffer back to the host (waits for the work queued before it).
    pub fn download(&self) -> Result<CpuStorage> {
        let driver = self.context().driver();
        fn fetch<T: bytemuck::Pod, D: DeviceApi>(
            driver: &D,
            ptr: DevicePtr,
            len: usize,
        ) -> Result<Vec<T>> {
            let mut v = vec![T::zeroed(); len];
            driver.copy_from_device(ptr, bytemuck::cast_slice_mut(&mut v))?;
            Ok(v)
        }
        Ok(match self.dtype {
            DType::F32 => CpuStorage::F32(fetch(driver, self.ptr(), self.len)?),
            DType::F64 => CpuStorage::F64(fetch(driver, self.ptr(), self.len)?),
            DType::F16 => CpuStorage::F16(fetch(driver, self.ptr(), self.len)?),
            DType::BF16 => CpuStorage::BF16(fetch(driver, self.ptr(), self.len)?),
        })
    }

    pub fn ptr(&self) -> DevicePtr {
        self.buffer.ptr()
    }

    /// The pointer as a kernel argument.
    pub fn arg(&self) -> KernelArg {
        KernelArg::from(self.ptr())
    }

    pub fn context(&self) -> &Arc<GpuContext<D>> {
        self.buffer.context()
    }

    pub fn device(&self) -> Device {
        self.context().device()
    }

    /// The kernel name for this storage's dtype: `name_f32`.
    pub fn kernel_name(&self, base: &str) -> String {
        format!("{base}_{}", dtype_suffix(self.dtype))
    }

    /// Refuses f16/bf16 (storage-only types) for a compute op, as the CPU backend does.
    pub fn require_compute(&self, op: &'static str) -> Result<()> {
        if self.dtype.is_compute_type() {
            Ok(())
        } else {
            Err(HeparError::dtype(
                op,
                format!(
                    "{} tensors are storage only: convert to f32 first",
                    self.dtype
                ),
            ))
        }
    }

    /// Refuses operands of different dtypes.
    pub fn require_same_dtype(&self, op: &'static str, other: &Self) -> Result<()> {
        self.require_compute(op)?;
        if self.dtype == other.dtype {
            Ok(())
        } else {
            Err(HeparError::dtype(
                op,
                format!("operands are {} and {}", self.dtype, other.dtype),
            ))
        }
    }

    /// A dense row-major copy of a view, or this storage when the view already is one from its
    /// start; what kernels that need dense operands read.
    pub fn dense(&self, l: &Layout) -> Result<Self> {
        if l.is_contiguous() && l.offset() == 0 && l.numel() == self.len {
            Ok(self.clone())
        } else {
            copy::copy_strided(self, l)
        }
    }
}

impl<D: DeviceApi> BackendStorage for CudaStorage<D> {
    const BACKEND: &'static str = "cuda";

    fn dtype(&self) -> DType {
        self.dtype
    }
    fn len(&self) -> usize {
        self.len
    }
    fn to_dtype(&self, l: &Layout, dtype: DType) -> Result<Self> {
        copy::to_dtype(self, l, dtype)
    }
    fn copy_strided(&self, l: &Layout) -> Result<Self> {
        copy::copy_strided(self, l)
    }
    fn write_strided(&mut self, dst: &Layout, src: &Self, src_layout: &Layout) -> Result<()> {
        copy::write_strided(self, dst, src, src_layout)
    }
    fn unary(&self, l: &Layout, op: UnaryOp) -> Result<Self> {
        elementwise::unary(self, l, op)
    }
    fn unary_grad(&self, l: &Layout, grad: &Self, gl: &Layout, op: UnaryOp) -> Result<Self> {
        elementwise::unary_grad(self, l, grad, gl, op)
    }
    fn binary(&self, l: &Layout, rhs: &Self, rl: &Layout, op: BinaryOp) -> Result<Self> {
        elementwise::binary(self, l, rhs, rl, op)
    }
    fn reduce(&self, l: &Layout, axes: &[usize], op: ReduceOp) -> Result<Self> {
        reduce::reduce(self, l, axes, op)
    }
    fn softmax(&self, l: &Layout, axis: usize, log: bool) -> Result<Self> {
        reduce::softmax(self, l, axis, log)
    }
    fn matmul(&self, l: &Layout, rhs: &Self, rl: &Layout) -> Result<Self> {
        matmul::matmul(self, l, rhs, rl)
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
        norm::group_norm(self, l, groups, weight, bias, eps, activation)
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
        norm::group_norm_backward(self, l, grad, gl, groups, weight, bias, stats, activation)
    }
    fn batch_norm_stats(&self, l: &Layout) -> Result<(Self, Self)> {
        norm::batch_norm_stats(self, l)
    }
    fn batch_norm_apply(
        &self,
        l: &Layout,
        mean: &Self,
        rstd: &Self,
        weight: Option<&Self>,
        bias: Option<&Self>,
    ) -> Result<Self> {
        norm::batch_norm_apply(self, l, mean, rstd, weight, bias)
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
        norm::batch_norm_train_backward(self, l, grad, gl, mean, rstd, weight)
    }
    fn conv(&self, weight: &Self, bias: Option<&Self>, g: &ConvGeometry) -> Result<Self> {
        conv::conv(self, weight, bias, g)
    }
    fn conv_backward_input(&self, weight: &Self, g: &ConvGeometry) -> Result<Self> {
        conv::conv_backward_input(self, weight, g)
    }
    fn conv_backward_weight(&self, grad_out: &Self, g: &ConvGeometry) -> Result<Self> {
        conv::conv_backward_weight(self, grad_out, g)
    }
    fn conv_transpose(
        &self,
        weight: &Self,
        bias: Option<&Self>,
        g: &ConvTransposeGeometry,
    ) -> Result<Self> {
        conv::conv_transpose(self, weight, bias, g)
    }
    fn conv_transpose_backward_input(
        &self,
        weight: &Self,
        g: &ConvTransposeGeometry,
    ) -> Result<Self> {
        conv::conv_transpose_backward_input(self, weight, g)
    }
    fn conv_transpose_backward_weight(
        &self,
        grad_out: &Self,
        g: &ConvTransposeGeometry,
    ) -> Result<Self> {
        conv::conv_transpose_backward_weight(self, grad_out, g)
    }
    fn max_pool(&self, g: &PoolGeometry) -> Result<Self> {
        pool::max_pool(self, g)
    }
    fn max_pool_backward(&self, grad_out: &Self, g: &PoolGeometry) -> Result<Self> {
        pool::max_pool_backward(self, grad_out, g)
    }
    fn avg_pool(&self, g: &PoolGeometry, count_include_pad: bool) -> Result<Self> {
        pool::avg_pool(self, g, count_include_pad)
    }
    fn avg_pool_backward(&self, g: &PoolGeometry, count_include_pad: bool) -> Result<Self> {
        pool::avg_pool_backward(self, g, count_include_pad)
    }
    fn upsample(&self, g: &UpsampleGeometry) -> Result<Self> {
        upsample::upsample(self, g)
    }
    fn upsample_backward(&self, g: &UpsampleGeometry) -> Result<Self> {
        upsample::upsample_backward(self, g)
    }
    fn adam_update(
        &self,
        grad: &Self,
        m: Option<&Self>,
        v: Option<&Self>,
        step: &AdamStep,
    ) -> Result<(Self, Self, Self)> {
        optim::adam_update(self, grad, m, v, step)
    }
    fn dropout_mask(&self, numel: usize, p: f64, seed: u64) -> Result<Self> {
        random::dropout_mask(self, numel, p, seed)
    }
}
