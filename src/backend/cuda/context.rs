//! One GPU as the backend sees it: a driver, its caching allocator, the kernel modules compiled
//! for it (once per process and architecture), and the launch shape its kernels use. The
//! contexts of this process are made on first use and live until it ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::alloc::{CachingAllocator, MemoryStats};
use super::device::{DeviceApi, DevicePtr, KernelArg, LaunchConfig};
use super::driver::CudaDriver;
use super::full_source;
use crate::backend::Device;
use crate::error::{HeparError, Result};
use crate::ptx::VirtualGpu;

/// Threads per block and the most blocks of a grid-stride launch. Tests vary both so that tails
/// and several turns of each grid-stride loop are exercised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchShape {
    pub block: u32,
    pub max_blocks: u32,
}

impl Default for LaunchShape {
    fn default() -> Self {
        LaunchShape {
            block: 256,
            max_blocks: 65535,
        }
    }
}

pub struct GpuContext<D: DeviceApi> {
    driver: D,
    device: Device,
    allocator: CachingAllocator,
    modules: Mutex<HashMap<&'static str, D::Module>>,
    kernels: Mutex<HashMap<(&'static str, String), D::Kernel>>,
    block: AtomicU32,
    max_blocks: AtomicU32,
}

impl<D: DeviceApi> GpuContext<D> {
    pub fn new(driver: D, device: Device) -> Self {
        let shape = LaunchShape::default();
        GpuContext {
            driver,
            device,
            allocator: CachingAllocator::default(),
            modules: Mutex::new(HashMap::new()),
            kernels: Mutex::new(HashMap::new()),
            block: AtomicU32::new(shape.block),
            max_blocks: AtomicU32::new(shape.max_blocks),
        }
    }

    pub fn driver(&self) -> &D {
        &self.driver
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn memory_stats(&self) -> MemoryStats {
        self.allocator.stats()
    }

    pub fn reset_peak_memory(&self) {
        self.allocator.reset_peak()
    }

    /// Returns every cached block to the driver.
    pub fn empty_cache(&self) -> Result<()> {
        self.allocator.empty_cache(&self.driver)
    }

    pub fn launch_shape(&self) -> LaunchShape {
        LaunchShape {
            block: self.block.load(Ordering::Relaxed),
            max_blocks: self.max_blocks.load(Ordering::Relaxed),
        }
    }

    /// Sets the launch shape of grid-stride kernels (block 32..=1024, at least one block).
    pub fn set_launch_shape(&self, shape: LaunchShape) {
        self.block
            .store(shape.block.clamp(32, 1024), Ordering::Relaxed);
        self.max_blocks
            .store(shape.max_blocks.max(1), Ordering::Relaxed);
    }

    /// A 1D grid-stride launch over `n` items in the current launch shape.
    pub fn grid_stride(&self, n: usize) -> LaunchConfig {
        let shape = self.launch_shape();
        let blocks = (n as u64)
            .div_ceil(u64::from(shape.block))
            .clamp(1, u64::from(shape.max_blocks)) as u32;
        LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (shape.block, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// A device buffer of at least `bytes`, freed to the cache on drop.
    pub fn alloc(self: &Arc<Self>, bytes: usize) -> Result<GpuBuffer<D>> {
        let ptr = self.allocator.alloc(&self.driver, bytes)?;
        Ok(GpuBuffer {
            ptr,
            bytes,
            context: self.clone(),
        })
    }

    /// The kernel `name` of the kernel file `file` (one of `SOURCES`), compiled on first use.
    pub fn kernel(&self, file: &'static str, name: &str) -> Result<D::Kernel> {
        let key = (file, name.to_string());
        if let Some(k) = lock(&self.kernels).get(&key) {
            return Ok(k.clone());
        }
        let module = self.module(file)?;
        let kernel = self
            .driver
            .kernel(&module, name)
            .map_err(|e| self.error(file, name, e))?;
        lock(&self.kernels).insert(key, kernel.clone());
        Ok(kernel)
    }

    fn module(&self, file: &'static str) -> Result<D::Module> {
        if let Some(m) = lock(&self.modules).get(file) {
            return Ok(m.clone());
        }
        let full = full_source(file)?;
        let module = self.driver.compile_module(&full, file)?;
        lock(&self.modules).insert(file, module.clone());
        Ok(module)
    }

    /// Launches `name` from `file`; an error names the kernel, its file and this device.
    pub fn launch(
        &self,
        file: &'static str,
        name: &str,
        config: &LaunchConfig,
        args: &[KernelArg],
    ) -> Result<()> {
        let kernel = self.kernel(file, name)?;
        self.driver
            .launch(&kernel, config, args)
            .map_err(|e| self.error(file, name, e))
    }

    fn error(&self, file: &str, name: &str, e: HeparError) -> HeparError {
        HeparError::Backend {
            backend: "cuda",
            msg: format!("{}: kernel `{name}` ({file}): {e}", self.device),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked while holding a cache; entries are whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Device memory owned by one tensor storage; back to the allocator's cache on drop.
pub struct GpuBuffer<D: DeviceApi> {
    ptr: DevicePtr,
    bytes: usize,
    context: Arc<GpuContext<D>>,
}

impl<D: DeviceApi> GpuBuffer<D> {
    pub fn ptr(&self) -> DevicePtr {
        self.ptr
    }
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    pub fn context(&self) -> &Arc<GpuContext<D>> {
        &self.context
    }
}

impl<D: DeviceApi> Drop for GpuBuffer<D> {
    fn drop(&mut self) {
        self.context.allocator.release(self.ptr, self.bytes);
    }
}

impl<D: DeviceApi> std::fmt::Debug for GpuBuffer<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuBuffer({}, {:#x}, {} bytes)",
            self.context.device, self.ptr.0, self.bytes
        )
    }
}

/// The PTX virtual machine of this process (sm_80, memcheck on).
pub fn ptx_vm() -> Arc<GpuContext<VirtualGpu>> {
    static VM: OnceLock<Arc<GpuContext<VirtualGpu>>> = OnceLock::new();
    VM.get_or_init(|| Arc::new(GpuContext::new(VirtualGpu::default(), Device::PtxVm)))
        .clone()
}

/// The context of GPU `ordinal`, opened on first use; a missing driver or GPU is an error naming
/// the device.
pub fn cuda(ordinal: usize) -> Result<Arc<GpuContext<CudaDriver>>> {
    static GPUS: OnceLock<Mutex<HashMap<usize, Arc<GpuContext<CudaDriver>>>>> = OnceLock::new();
    let mut gpus = lock(GPUS.get_or_init(Default::default));
    if let Some(ctx) = gpus.get(&ordinal) {
        return Ok(ctx.clone());
    }
    let ctx = Arc::new(GpuContext::new(
        CudaDriver::new(ordinal)?,
        Device::Cuda(ordinal),
    ));
    gpus.insert(ordinal, ctx.clone());
    Ok(ctx)
}
