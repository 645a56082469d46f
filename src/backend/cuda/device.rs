//! The one device API of the CUDA backend: memory, modules, kernels and launches. Two drivers
//! implement [`DeviceApi`]: the PTX virtual machine (`crate::ptx::VirtualGpu`, every CI run) and
//! cudarc's driver API on a real GPU (`super::driver::CudaDriver`). Kernels, storage and the
//! allocator are written once against this trait.

use super::nvrtc::{compile_to_ptx, compile_to_ptx_with, Arch, NvrtcOptions};
use crate::error::Result;

/// A device pointer (an address in the virtual GPU's global space, or a real CUDA device address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DevicePtr(pub u64);

impl DevicePtr {
    /// The pointer `bytes` further on.
    pub fn offset(self, bytes: usize) -> DevicePtr {
        DevicePtr(self.0.wrapping_add(bytes as u64))
    }
}

/// Grid and block shape of a launch, named as in cudarc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid_dim: (u32, u32, u32),
    pub block_dim: (u32, u32, u32),
    /// Dynamic shared memory per block, in bytes.
    pub shared_mem_bytes: u32,
}

impl LaunchConfig {
    /// A 1D launch covering `n` elements with `threads` threads per block.
    pub fn for_elements(n: usize, threads: u32) -> Self {
        let threads = threads.max(1);
        let blocks = (n as u64)
            .div_ceil(u64::from(threads))
            .max(1)
            .min(u64::from(u32::MAX)) as u32;
        LaunchConfig {
            grid_dim: (blocks, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        }
    }
}

/// One kernel argument: the bytes of the value, as cudarc passes `&value` pointers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelArg {
    bytes: Vec<u8>,
}

impl KernelArg {
    /// An argument from raw bytes (a struct passed by value).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        KernelArg {
            bytes: bytes.to_vec(),
        }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

macro_rules! kernel_arg_from {
    ($($t:ty),*) => {$(
        impl From<$t> for KernelArg {
            fn from(v: $t) -> Self {
                KernelArg { bytes: v.to_le_bytes().to_vec() }
            }
        }
    )*};
}
kernel_arg_from!(
    u8,
    i8,
    u16,
    i16,
    u32,
    i32,
    u64,
    i64,
    f32,
    f64,
    half::f16,
    half::bf16
);

impl From<DevicePtr> for KernelArg {
    fn from(p: DevicePtr) -> Self {
        KernelArg {
            bytes: p.0.to_le_bytes().to_vec(),
        }
    }
}

/// Builds an array of `KernelArg`s from values: `kernel_args![x_ptr, n as i32, 0.5f32]`.
#[macro_export]
macro_rules! kernel_args {
    ($($a:expr),* $(,)?) => { [$($crate::backend::cuda::KernelArg::from($a)),*] };
}

/// The operations the CUDA backend needs from a device.
///
/// On real hardware through cudarc: `DevicePtr` is a `CUdeviceptr`, `load_ptx` is
/// `cuModuleLoadData`, and `launch` passes each `KernelArg`'s bytes as one entry of the kernel
/// parameter array (`cudarc::driver::result::launch_kernel`), exactly as the VM lays them out.
pub trait DeviceApi: Send + Sync + 'static {
    type Module: Clone + Send + Sync;
    type Kernel: Clone + Send + Sync;

    /// A short name for messages ("ptx-vm", "cuda:0").
    fn device_name(&self) -> String;
    fn alloc(&self, bytes: usize) -> Result<DevicePtr>;
    fn free(&self, ptr: DevicePtr) -> Result<()>;
    fn copy_to_device(&self, dst: DevicePtr, src: &[u8]) -> Result<()>;
    fn copy_from_device(&self, src: DevicePtr, dst: &mut [u8]) -> Result<()>;
    fn load_ptx(&self, ptx: &str, module_name: &str) -> Result<Self::Module>;
    fn kernel(&self, module: &Self::Module, name: &str) -> Result<Self::Kernel>;
    fn launch(
        &self,
        kernel: &Self::Kernel,
        config: &LaunchConfig,
        args: &[KernelArg],
    ) -> Result<()>;
    fn synchronize(&self) -> Result<()>;
    /// The architecture PTX is generated for.
    fn arch(&self) -> Arch;
    /// (free, total) bytes of device memory, where the driver can tell.
    fn memory_info(&self) -> Option<(usize, usize)> {
        None
    }

    /// Compiles CUDA C with NVRTC and loads the result.
    fn compile_module(&self, source: &str, module_name: &str) -> Result<Self::Module> {
        let ptx = compile_to_ptx(source, module_name, self.arch())?;
        self.load_ptx(&ptx, module_name)
    }

    /// Compiles with include directories, defines or fast math, and loads the result.
    fn compile_module_with(
        &self,
        source: &str,
        module_name: &str,
        options: &NvrtcOptions,
    ) -> Result<Self::Module> {
        let ptx = compile_to_ptx_with(source, module_name, self.arch(), options)?;
        self.load_ptx(&ptx, module_name)
    }

    /// Allocates and fills device memory with `data`.
    fn upload<T: bytemuck::Pod>(&self, data: &[T]) -> Result<DevicePtr>
    where
        Self: Sized,
    {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let ptr = self.alloc(bytes.len())?;
        self.copy_to_device(ptr, bytes)?;
        Ok(ptr)
    }

    /// Copies `len` elements back from device memory.
    fn download<T: bytemuck::Pod>(&self, src: DevicePtr, len: usize) -> Result<Vec<T>>
    where
        Self: Sized,
    {
        let mut out = vec![T::zeroed(); len];
        self.copy_from_device(src, bytemuck::cast_slice_mut(&mut out))?;
        Ok(out)
    }
}
