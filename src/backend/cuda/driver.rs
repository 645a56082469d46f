//! The device API on a real NVIDIA GPU, over cudarc's driver bindings: one primary context and
//! one stream per device, asynchronous launches, host waits only in copies back. cudarc panics
//! when it touches a missing `libcuda`, so the library is probed before the first call and a
//! machine without a driver or GPU gets an error naming the device.

use std::ffi::{c_void, CString};
use std::sync::{Arc, OnceLock};

use cudarc::driver::{result, sys};

use super::device::{DeviceApi, DevicePtr, KernelArg, LaunchConfig};
use super::nvrtc::Arch;
use crate::error::{HeparError, Result};

fn driver_error(device: &str, what: &str, e: result::DriverError) -> HeparError {
    HeparError::Backend {
        backend: "cuda",
        msg: format!("{device}: {what}: {e:?}"),
    }
}

/// Loads and initialises the driver once per process; the error says why there is none.
fn init_driver() -> Result<()> {
    static INIT: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let outcome = INIT.get_or_init(|| {
        // SAFETY: only tries to open the library by name; nothing from it is called.
        if !unsafe { sys::is_culib_present() } {
            return Err("no CUDA driver (libcuda.so) on this machine".to_string());
        }
        result::init().map_err(|e| format!("the CUDA driver failed to initialise: {e:?}"))
    });
    outcome.clone().map_err(|msg| HeparError::Backend {
        backend: "cuda",
        msg,
    })
}

/// How many GPUs the driver sees (an error when there is no driver).
pub fn device_count() -> Result<usize> {
    init_driver()?;
    result::device::get_count()
        .map(|n| n as usize)
        .map_err(|e| driver_error("cuda", "counting devices", e))
}

/// What `hepar version` prints about one GPU.
#[derive(Clone, Debug)]
pub struct GpuInfo {
    pub ordinal: usize,
    pub name: String,
    pub total_memory: usize,
    pub compute_capability: (i32, i32),
}

/// Every GPU the driver sees.
pub fn list_devices() -> Result<Vec<GpuInfo>> {
    (0..device_count()?).map(gpu_info).collect()
}

fn gpu_info(ordinal: usize) -> Result<GpuInfo> {
    let label = format!("cuda:{ordinal}");
    let dev = result::device::get(ordinal as i32)
        .map_err(|e| driver_error(&label, "opening the device", e))?;
    let name =
        result::device::get_name(dev).map_err(|e| driver_error(&label, "reading its name", e))?;
    // SAFETY: `dev` was returned by `device::get`.
    let total_memory = unsafe { result::device::total_mem(dev) }
        .map_err(|e| driver_error(&label, "reading its memory size", e))?;
    let attribute = |a| {
        // SAFETY: as above.
        unsafe { result::device::get_attribute(dev, a) }
            .map_err(|e| driver_error(&label, "reading its compute capability", e))
    };
    let major = attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?;
    let minor = attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?;
    Ok(GpuInfo {
        ordinal,
        name,
        total_memory,
        compute_capability: (major, minor),
    })
}

/// A loaded module; unloaded when the last handle goes.
pub struct ModuleHandle {
    module: sys::CUmodule,
    context: sys::CUcontext,
}

// SAFETY: CUDA module and function handles may be used from any thread once the owning context
// is current there, which every call below makes sure of.
unsafe impl Send for ModuleHandle {}
unsafe impl Sync for ModuleHandle {}

impl Drop for ModuleHandle {
    fn drop(&mut self) {
        // SAFETY: the module was loaded in `context` and is unloaded once.
        unsafe {
            if result::ctx::set_current(self.context).is_ok() {
                let _ = result::module::unload(self.module);
            }
        }
    }
}

#[derive(Clone)]
pub struct CudaModule {
    handle: Arc<ModuleHandle>,
    name: String,
}

#[derive(Clone)]
pub struct CudaFunction {
    function: sys::CUfunction,
    name: String,
    // Keeps the module loaded while the function may be launched.
    _module: Arc<ModuleHandle>,
}

// SAFETY: see `ModuleHandle`.
unsafe impl Send for CudaFunction {}
unsafe impl Sync for CudaFunction {}

/// One GPU: its primary context and the one stream all of Hepar's work goes to.
pub struct CudaDriver {
    label: String,
    info: GpuInfo,
    arch: Arch,
    context: sys::CUcontext,
    stream: sys::CUstream,
}

// SAFETY: the context is made current on the calling thread before every driver call, and the
// stream is only used through the driver, which is thread-safe.
unsafe impl Send for CudaDriver {}
unsafe impl Sync for CudaDriver {}

impl CudaDriver {
    /// Opens GPU `ordinal`: an error (never a panic) when there is no driver, no such GPU, or a
    /// GPU older than sm_80.
    pub fn new(ordinal: usize) -> Result<Self> {
        let label = format!("cuda:{ordinal}");
        let count = device_count().map_err(|e| match e {
            HeparError::Backend { msg, .. } => HeparError::Backend {
                backend: "cuda",
                msg: format!("{label}: {msg}"),
            },
            other => other,
        })?;
        if ordinal >= count {
            return Err(HeparError::Backend {
                backend: "cuda",
                msg: format!("{label}: no such GPU (this machine has {count})"),
            });
        }
        let info = gpu_info(ordinal)?;
        let arch = match info.compute_capability {
            (major, _) if major >= 9 => Arch::Sm90,
            (8, _) => Arch::Sm80,
            (major, minor) => {
                return Err(HeparError::Backend {
                    backend: "cuda",
                    msg: format!("{label}: {} has compute capability {major}.{minor}; Hepar's kernels need 8.0 or newer", info.name),
                })
            }
        };
        let dev = result::device::get(ordinal as i32)
            .map_err(|e| driver_error(&label, "opening the device", e))?;
        // SAFETY: `dev` is a valid device; the primary context is retained for the process.
        let context = unsafe { result::primary_ctx::retain(dev) }
            .map_err(|e| driver_error(&label, "retaining its context", e))?;
        // SAFETY: a just-retained context.
        unsafe { result::ctx::set_current(context) }
            .map_err(|e| driver_error(&label, "making its context current", e))?;
        let stream = result::stream::create(result::stream::StreamKind::NonBlocking)
            .map_err(|e| driver_error(&label, "creating a stream", e))?;
        Ok(CudaDriver {
            label,
            info,
            arch,
            context,
            stream,
        })
    }

    pub fn info(&self) -> &GpuInfo {
        &self.info
    }

    fn bind(&self) -> Result<()> {
        // SAFETY: the context was retained in `new` and is never released.
        unsafe { result::ctx::set_current(self.context) }
            .map_err(|e| driver_error(&self.label, "making its context current", e))
    }

    fn check(&self, what: &str, r: std::result::Result<(), result::DriverError>) -> Result<()> {
        r.map_err(|e| driver_error(&self.label, what, e))
    }
}

impl DeviceApi for CudaDriver {
    type Module = CudaModule;
    type Kernel = CudaFunction;

    fn device_name(&self) -> String {
        format!("{} ({})", self.label, self.info.name)
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr> {
        self.bind()?;
        // SAFETY: plain device allocation; the memory is uninitialised, as the trait allows.
        let ptr = unsafe { result::malloc_sync(bytes.max(1)) }
            .map_err(|e| driver_error(&self.label, &format!("allocating {bytes} bytes"), e))?;
        Ok(DevicePtr(ptr))
    }

    fn free(&self, ptr: DevicePtr) -> Result<()> {
        self.bind()?;
        // Work queued on the stream may still read the block.
        self.synchronize()?;
        // SAFETY: `ptr` came from `alloc` and the caller frees it once.
        self.check("freeing memory", unsafe { result::free_sync(ptr.0) })
    }

    fn copy_to_device(&self, dst: DevicePtr, src: &[u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: `dst` holds at least `src.len()` bytes; waiting below keeps `src` alive long enough.
        self.check("copying to the device", unsafe {
            result::memcpy_htod_async(dst.0, src, self.stream)
        })?;
        self.synchronize()
    }

    fn copy_from_device(&self, src: DevicePtr, dst: &mut [u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: `src` holds at least `dst.len()` bytes; the stream is waited for before `dst` is read.
        self.check("copying from the device", unsafe {
            result::memcpy_dtoh_async(dst, src.0, self.stream)
        })?;
        self.synchronize()
    }

    fn load_ptx(&self, ptx: &str, module_name: &str) -> Result<CudaModule> {
        self.bind()?;
        let image = CString::new(ptx).map_err(|_| HeparError::Backend {
            backend: "cuda",
            msg: format!("{module_name}: PTX contains a NUL byte"),
        })?;
        // SAFETY: a NUL-terminated PTX image.
        let module = unsafe { result::module::load_data(image.as_ptr() as *const c_void) }
            .map_err(|e| driver_error(&self.label, &format!("loading module {module_name}"), e))?;
        Ok(CudaModule {
            handle: Arc::new(ModuleHandle {
                module,
                context: self.context,
            }),
            name: module_name.to_string(),
        })
    }

    fn kernel(&self, module: &CudaModule, name: &str) -> Result<CudaFunction> {
        self.bind()?;
        let c_name = CString::new(name).map_err(|_| {
            HeparError::invalid(
                "cuda kernel lookup",
                format!("kernel name {name:?} contains a NUL byte"),
            )
        })?;
        // SAFETY: the module is loaded (its handle is alive).
        let function = unsafe { result::module::get_function(module.handle.module, c_name) }
            .map_err(|e| {
                driver_error(
                    &self.label,
                    &format!("module `{}` has no kernel `{name}`", module.name),
                    e,
                )
            })?;
        Ok(CudaFunction {
            function,
            name: name.to_string(),
            _module: module.handle.clone(),
        })
    }

    fn launch(
        &self,
        kernel: &CudaFunction,
        config: &LaunchConfig,
        args: &[KernelArg],
    ) -> Result<()> {
        self.bind()?;
        // cuLaunchKernel copies every parameter's bytes before it returns.
        let mut params: Vec<*mut c_void> = args
            .iter()
            .map(|a| a.as_bytes().as_ptr() as *mut c_void)
            .collect();
        // SAFETY: each pointer points at the bytes of one parameter, laid out as the kernel declares.
        let r = unsafe {
            result::launch_kernel(
                kernel.function,
                config.grid_dim,
                config.block_dim,
                config.shared_mem_bytes,
                self.stream,
                &mut params,
            )
        };
        self.check(
            &format!(
                "launching `{}` (grid {:?}, block {:?})",
                kernel.name, config.grid_dim, config.block_dim
            ),
            r,
        )
    }

    fn synchronize(&self) -> Result<()> {
        self.bind()?;
        // SAFETY: our stream, alive for the process.
        self.check("waiting for the stream", unsafe {
            result::stream::synchronize(self.stream)
        })
    }

    fn arch(&self) -> Arch {
        self.arch
    }

    fn memory_info(&self) -> Option<(usize, usize)> {
        self.bind().ok()?;
        result::mem_get_info().ok()
    }
}
