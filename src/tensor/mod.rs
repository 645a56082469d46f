//! The n-dimensional tensor: a shared storage, a strided layout over it, and (when gradients are
//! recorded) the op that produced it.
//!
//! Tensors are cheap handles (`Arc`) and immutable from the outside; ops return new tensors. The
//! one mutation is [`Tensor::assign`], which optimizers use to update parameters in place.

pub mod dtype;
pub mod layout;

use crate::autograd::{self, GradFn};
use crate::backend::{BackendStorage, CpuStorage, Device, Storage};
use crate::error::{HeparError, Result};
pub use dtype::{DType, WithDType};
pub use layout::Layout;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

pub(crate) struct TensorInner {
    pub(crate) id: TensorId,
    pub(crate) storage: Arc<RwLock<Storage>>,
    pub(crate) layout: Layout,
    pub(crate) dtype: DType,
    pub(crate) requires_grad: bool,
    pub(crate) is_leaf: bool,
    /// How to backpropagate through the op that made this tensor; taken (and its saved tensors
    /// freed) by the first backward pass through it.
    pub(crate) grad_fn: Mutex<Option<GradFn>>,
    /// Accumulated gradient of a leaf that requires grad.
    pub(crate) grad: Mutex<Option<Tensor>>,
}

#[derive(Clone)]
pub struct Tensor(pub(crate) Arc<TensorInner>);

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({:?}, {}, {}{})",
            self.shape(),
            self.dtype(),
            self.device(),
            if self.requires_grad() {
                ", requires_grad"
            } else {
                ""
            }
        )
    }
}

impl Tensor {
    // ----- construction -------------------------------------------------------------------------

    pub(crate) fn from_storage(storage: Storage, layout: Layout) -> Tensor {
        Self::build(Arc::new(RwLock::new(storage)), layout, false, true, None)
    }

    fn build(
        storage: Arc<RwLock<Storage>>,
        layout: Layout,
        requires_grad: bool,
        is_leaf: bool,
        grad_fn: Option<GradFn>,
    ) -> Tensor {
        let dtype = storage.read().unwrap_or_else(|e| e.into_inner()).dtype();
        Tensor(Arc::new(TensorInner {
            id: TensorId::fresh(),
            storage,
            layout,
            dtype,
            requires_grad,
            is_leaf,
            grad_fn: Mutex::new(grad_fn),
            grad: Mutex::new(None),
        }))
    }

    /// The result of a differentiable op. The backward closure is kept only when gradients are
    /// being recorded and some input requires them; otherwise it is dropped at once, freeing what
    /// it saved.
    pub(crate) fn from_op(
        storage: Storage,
        layout: Layout,
        name: &'static str,
        inputs: &[&Tensor],
        backward: autograd::BackwardFn,
    ) -> Tensor {
        crate::util::op_profile::forward_op_done(name);
        let record = autograd::is_grad_enabled() && inputs.iter().any(|t| t.requires_grad());
        let grad_fn = record.then(|| GradFn {
            name,
            inputs: inputs.iter().map(|t| (*t).clone()).collect(),
            backward,
        });
        Self::build(
            Arc::new(RwLock::new(storage)),
            layout,
            record,
            !record,
            grad_fn,
        )
    }

    /// A view sharing this tensor's storage with another layout; differentiable.
    pub(crate) fn view_op(
        &self,
        layout: Layout,
        name: &'static str,
        backward: autograd::BackwardFn,
    ) -> Tensor {
        crate::util::op_profile::forward_op_done(name);
        let record = autograd::is_grad_enabled() && self.requires_grad();
        let grad_fn = record.then(|| GradFn {
            name,
            inputs: vec![self.clone()],
            backward,
        });
        Self::build(self.0.storage.clone(), layout, record, !record, grad_fn)
    }

    pub fn from_vec<T: WithDType>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        Self::from_vec_on(data, shape, Device::Cpu)
    }

    pub fn from_vec_on<T: WithDType>(
        data: Vec<T>,
        shape: &[usize],
        device: Device,
    ) -> Result<Tensor> {
        let n = layout::numel(shape);
        if data.len() != n {
            return Err(HeparError::shape(
                "from_vec",
                format!(
                    "{} values do not fill shape {shape:?} ({n} elements)",
                    data.len()
                ),
            ));
        }
        let storage = Storage::from_cpu(cpu_storage_from_vec(data), device)?;
        Ok(Self::from_storage(storage, Layout::contiguous(shape)))
    }

    pub fn from_slice<T: WithDType>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        Self::from_vec(data.to_vec(), shape)
    }

    /// A tensor of one value; on a GPU the allocation can fail (out of memory, no device).
    pub fn full(shape: &[usize], value: f64, dtype: DType, device: Device) -> Result<Tensor> {
        Ok(Self::from_storage(
            Storage::full(device, layout::numel(shape), dtype, value)?,
            Layout::contiguous(shape),
        ))
    }
    pub fn zeros(shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        Self::full(shape, 0.0, dtype, device)
    }
    pub fn ones(shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        Self::full(shape, 1.0, dtype, device)
    }
    pub fn zeros_like(&self) -> Result<Tensor> {
        Self::zeros(self.shape(), self.dtype(), self.device())
    }
    pub fn ones_like(&self) -> Result<Tensor> {
        Self::ones(self.shape(), self.dtype(), self.device())
    }
    pub fn full_like(&self, value: f64) -> Result<Tensor> {
        Self::full(self.shape(), value, self.dtype(), self.device())
    }
    /// A host tensor of one value (cannot fail, unlike `full` on a GPU).
    pub fn host_full(shape: &[usize], value: f64, dtype: DType) -> Tensor {
        Self::from_storage(
            Storage::host_full(layout::numel(shape), dtype, value),
            Layout::contiguous(shape),
        )
    }
    /// A one-element host tensor.
    pub fn scalar(value: f64, dtype: DType) -> Tensor {
        Self::from_storage(Storage::host_full(1, dtype, value), Layout::contiguous(&[]))
    }

    /// Standard normal values from a seeded generator.
    pub fn randn(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
        let mut rng = crate::util::rng::Rng::new(seed);
        let v: Vec<f64> = (0..layout::numel(shape)).map(|_| rng.normal()).collect();
        Self::from_vec(v, shape)
            .and_then(|t| t.to_dtype(dtype))
            .expect("shape and length agree")
    }

    /// Uniform values in [low, high) from a seeded generator.
    pub fn rand_uniform(shape: &[usize], low: f64, high: f64, dtype: DType, seed: u64) -> Tensor {
        let mut rng = crate::util::rng::Rng::new(seed);
        let v: Vec<f64> = (0..layout::numel(shape))
            .map(|_| rng.range(low, high))
            .collect();
        Self::from_vec(v, shape)
            .and_then(|t| t.to_dtype(dtype))
            .expect("shape and length agree")
    }

    // ----- accessors ----------------------------------------------------------------------------

    pub fn id(&self) -> TensorId {
        self.0.id
    }
    pub fn shape(&self) -> &[usize] {
        self.0.layout.shape()
    }
    pub fn dims(&self) -> &[usize] {
        self.shape()
    }
    pub fn rank(&self) -> usize {
        self.0.layout.rank()
    }
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    /// Where the data lives (read from the storage: `relocate` can move it).
    pub fn device(&self) -> Device {
        self.storage().device()
    }
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }
    pub fn is_leaf(&self) -> bool {
        self.0.is_leaf
    }

    /// Read access to the underlying storage (shared with views).
    pub fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        self.0.storage.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The axis size, with negative axes counting from the end.
    /// The shared storage handle (e.g. to check with a `Weak` that memory was released).
    pub fn storage_handle(&self) -> Arc<RwLock<Storage>> {
        self.0.storage.clone()
    }

    pub fn dim(&self, axis: isize) -> Result<usize> {
        Ok(self.shape()[layout::resolve_axis("dim", axis, self.rank())?])
    }

    // ----- data out -----------------------------------------------------------------------------

    /// All values in logical order, converted to f64. Reading a GPU tensor waits for its work;
    /// a device failure there panics (use [`Tensor::try_to_vec_f64`] to get it as an error).
    pub fn to_vec_f64(&self) -> Vec<f64> {
        self.try_to_vec_f64()
            .unwrap_or_else(|e| panic!("reading a tensor from {}: {e}", self.device()))
    }

    /// All values in logical order, converted to f64, or the device's error.
    pub fn try_to_vec_f64(&self) -> Result<Vec<f64>> {
        Ok(self.storage().to_cpu()?.to_f64_vec(self.layout()))
    }

    /// All values in logical order, converted to f32.
    pub fn to_vec_f32(&self) -> Vec<f32> {
        self.try_to_vec_f32()
            .unwrap_or_else(|e| panic!("reading a tensor from {}: {e}", self.device()))
    }

    /// All values in logical order, converted to f32, or the device's error.
    pub fn try_to_vec_f32(&self) -> Result<Vec<f32>> {
        let storage = self.storage();
        let host = storage.to_cpu()?;
        if let (CpuStorage::F32(v), Some(r)) = (&*host, self.layout().contiguous_range()) {
            return Ok(v[r].to_vec());
        }
        Ok(host
            .to_f64_vec(self.layout())
            .into_iter()
            .map(|v| v as f32)
            .collect())
    }

    /// The value of a one-element tensor.
    pub fn to_scalar(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(HeparError::shape(
                "to_scalar",
                format!("tensor of shape {:?} is not a single value", self.shape()),
            ));
        }
        Ok(self.try_to_vec_f64()?[0])
    }

    /// Moves the storage this tensor shares with its views to `device`, in place: how a model's
    /// parameters and statistics go to a GPU (every view of them follows).
    pub fn relocate(&self, device: Device) -> Result<()> {
        if device == self.device() {
            return Ok(());
        }
        let mut storage = self.0.storage.write().unwrap_or_else(|e| e.into_inner());
        let host = storage.to_cpu()?.into_owned();
        *storage = Storage::from_cpu(host, device)?;
        Ok(())
    }

    /// This tensor on `device` (itself when already there); differentiable, the gradient goes
    /// back to this tensor's device.
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        let host = {
            let storage = self.storage();
            let cpu = storage.to_cpu()?;
            cpu.copy_strided(self.layout())?
        };
        let storage = Storage::from_cpu(host, device)?;
        let from = self.device();
        Ok(Tensor::from_op(
            storage,
            Layout::contiguous(self.shape()),
            "to_device",
            &[self],
            Box::new(move |g| Ok(vec![Some(g.to_device(from)?)])),
        ))
    }

    // ----- autograd handles ---------------------------------------------------------------------

    /// A new leaf sharing this tensor's data, recording gradients into its own `grad()`.
    pub fn requires_grad_leaf(&self) -> Tensor {
        Self::build(
            self.0.storage.clone(),
            self.0.layout.clone(),
            true,
            true,
            None,
        )
    }

    /// The same data, cut from the graph: no gradient flows through the result.
    pub fn detach(&self) -> Tensor {
        Self::build(
            self.0.storage.clone(),
            self.0.layout.clone(),
            false,
            true,
            None,
        )
    }

    /// The gradient accumulated in this leaf by backward passes, if any.
    pub fn grad(&self) -> Option<Tensor> {
        self.0
            .grad
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn zero_grad(&self) {
        *self.0.grad.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub(crate) fn accumulate_grad(&self, g: Tensor) -> Result<()> {
        let mut slot = self.0.grad.lock().unwrap_or_else(|e| e.into_inner());
        let new = match slot.take() {
            Some(prev) => prev.add(&g)?,
            None => g.contiguous()?,
        };
        *slot = Some(new.detach());
        Ok(())
    }

    pub fn backward(&self) -> Result<()> {
        autograd::backward(self)
    }

    /// Replaces this tensor's values in place (same shape and dtype); what optimizers use to
    /// update parameters. Views of the same storage see the change.
    pub fn assign(&self, value: &Tensor) -> Result<()> {
        if value.shape() != self.shape() || value.dtype() != self.dtype() {
            return Err(HeparError::shape(
                "assign",
                format!(
                    "target {:?} {} vs value {:?} {}",
                    self.shape(),
                    self.dtype(),
                    value.shape(),
                    value.dtype()
                ),
            ));
        }
        if value.device() != self.device() {
            return Err(HeparError::invalid(
                "assign",
                format!("target on {} vs value on {}", self.device(), value.device()),
            ));
        }
        // A dense copy first: the value may be a view of the very storage being written.
        let src = value.storage().copy_strided(value.layout())?;
        let mut dst = self.0.storage.write().unwrap_or_else(|e| e.into_inner());
        dst.write_strided(self.layout(), &src, &Layout::contiguous(self.shape()))
    }

    /// Makes the dense `storage` (this tensor's shape, dtype and device) this tensor's values:
    /// swapped in whole when the tensor is the whole of a dense storage, else copied in as
    /// `assign` does. The optimizers' update saves two full copies of every parameter this way.
    pub(crate) fn replace_values(&self, storage: Storage) -> Result<()> {
        let l = self.layout();
        let mut dst = self.0.storage.write().unwrap_or_else(|e| e.into_inner());
        let whole = l.is_contiguous() && l.offset() == 0 && dst.len() == self.numel();
        if whole
            && storage.len() == dst.len()
            && storage.dtype() == dst.dtype()
            && storage.device() == dst.device()
        {
            *dst = storage;
            return Ok(());
        }
        drop(dst);
        self.assign(&Tensor::from_storage(
            storage,
            Layout::contiguous(self.shape()),
        ))
    }

    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let storage = self.storage().to_dtype(self.layout(), dtype)?;
        let from = self.dtype();
        Ok(Tensor::from_op(
            storage,
            Layout::contiguous(self.shape()),
            "to_dtype",
            &[self],
            Box::new(move |g| Ok(vec![Some(g.to_dtype(from)?)])),
        ))
    }

    /// This tensor's values as the whole of a dense storage (itself when it already is one),
    /// for primitives that take storages without layouts. Not differentiable.
    pub(crate) fn dense_owned(&self) -> Result<Tensor> {
        let storage = self.storage();
        let l = self.layout();
        if l.is_contiguous() && l.offset() == 0 && storage.len() == self.numel() {
            drop(storage);
            return Ok(self.detach());
        }
        let copy = storage.copy_strided(l)?;
        Ok(Tensor::from_storage(copy, Layout::contiguous(self.shape())))
    }

    /// A dense row-major copy (or this tensor when already dense).
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        let storage = self.storage().copy_strided(self.layout())?;
        Ok(Tensor::from_op(
            storage,
            Layout::contiguous(self.shape()),
            "contiguous",
            &[self],
            Box::new(|g| Ok(vec![Some(g.clone())])),
        ))
    }
}

fn cpu_storage_from_vec<T: WithDType>(data: Vec<T>) -> CpuStorage {
    // Each arm reinterprets a Vec<T> whose T is known from DTYPE; bytemuck-free via Any.
    let any: Box<dyn std::any::Any> = Box::new(data);
    match T::DTYPE {
        DType::F32 => CpuStorage::F32(*any.downcast::<Vec<f32>>().expect("dtype tag matches type")),
        DType::F64 => CpuStorage::F64(*any.downcast::<Vec<f64>>().expect("dtype tag matches type")),
        DType::F16 => CpuStorage::F16(
            *any.downcast::<Vec<half::f16>>()
                .expect("dtype tag matches type"),
        ),
        DType::BF16 => CpuStorage::BF16(
            *any.downcast::<Vec<half::bf16>>()
                .expect("dtype tag matches type"),
        ),
    }
}
