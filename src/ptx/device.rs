//! The PTX virtual machine as a device: [`VirtualGpu`] implements the CUDA backend's
//! [`DeviceApi`] (memory, modules, kernels, launches) by interpreting PTX on the CPU.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::counters::LaunchCounters;
use super::exec::{run_grid, shared_size, LaunchEnv};
use super::memory::{GlobalMemory, GlobalView};
use super::parser::{parse_module, GlobalPlacer};
use super::program::{GlobalVar, Module};
use super::racecheck::RaceHazard;
use crate::backend::cuda::device::{DeviceApi, DevicePtr, KernelArg, LaunchConfig};
use crate::backend::cuda::nvrtc::Arch;
use crate::error::{HeparError, Result};

/// What one launch on the virtual GPU observed.
#[derive(Debug, Clone)]
pub struct LaunchReport {
    pub kernel: String,
    pub counters: LaunchCounters,
    /// The first hazards found by the race checker (empty when it is off).
    pub hazards: Vec<RaceHazard>,
    /// All hazards found, including those not kept.
    pub hazard_count: u64,
    /// What the kernel printed with `printf`, ordered by block (the order within a block is the
    /// order of execution).
    pub printf_output: String,
}

impl std::fmt::Display for LaunchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "kernel `{}`", self.kernel)?;
        write!(f, "{}", self.counters)?;
        for h in &self.hazards {
            writeln!(f, "{h}")?;
        }
        if self.hazard_count > self.hazards.len() as u64 {
            writeln!(
                f,
                "... {} more race hazards",
                self.hazard_count - self.hazards.len() as u64
            )?;
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct VmModule {
    module: Arc<Module>,
    name: String,
    globals: Arc<HashMap<String, (DevicePtr, usize)>>,
}

impl VmModule {
    /// Device address and size of a module-level `__device__` or `__constant__` variable.
    pub fn global(&self, name: &str) -> Result<(DevicePtr, usize)> {
        self.globals.get(name).copied().ok_or_else(|| {
            HeparError::invalid(
                "ptx module",
                format!("module `{}` has no global variable `{name}`", self.name),
            )
        })
    }

    pub fn kernel_names(&self) -> Vec<String> {
        self.module.kernels.iter().map(|k| k.name.clone()).collect()
    }

    pub fn target(&self) -> &str {
        &self.module.target
    }
}

#[derive(Clone)]
pub struct VmKernel {
    module: Arc<Module>,
    index: usize,
}

impl VmKernel {
    pub fn name(&self) -> &str {
        &self.module.kernels[self.index].name
    }
}

/// The PTX virtual machine as a device. Memcheck is always on; the race checker is optional
/// (it slows shared-memory accesses).
pub struct VirtualGpu {
    memory: Mutex<GlobalMemory>,
    racecheck: AtomicBool,
    step_limit: AtomicU64,
    last_report: Mutex<Option<LaunchReport>>,
    /// Reports of every launch since `start_recording`, when recording.
    recording: Mutex<Option<Vec<LaunchReport>>>,
    arch: Arch,
}

const MAX_THREADS_PER_BLOCK: u64 = 1024;
/// Warp instructions one block may execute before the launch is declared stuck (minutes of work).
const DEFAULT_STEP_LIMIT: u64 = 1 << 32;
/// CUDA's limit on local memory per thread.
const MAX_LOCAL_BYTES_PER_THREAD: usize = 512 * 1024;

impl VirtualGpu {
    pub fn new(arch: Arch) -> Self {
        VirtualGpu {
            memory: Mutex::new(GlobalMemory::new()),
            racecheck: AtomicBool::new(false),
            step_limit: AtomicU64::new(DEFAULT_STEP_LIMIT),
            last_report: Mutex::new(None),
            recording: Mutex::new(None),
            arch,
        }
    }

    /// Turns the shared-memory race checker on or off for later launches. With it on, `launch`
    /// fails when a hazard is found; `launch_with_report` returns the hazards.
    pub fn set_racecheck(&self, on: bool) {
        self.racecheck.store(on, Ordering::Relaxed);
    }

    /// Sets how many warp-level instructions one block may execute before the launch fails as stuck
    /// in an endless loop.
    pub fn set_step_limit(&self, warp_instructions_per_block: u64) {
        self.step_limit
            .store(warp_instructions_per_block.max(1), Ordering::Relaxed);
    }

    /// The report of the most recent launch through [`DeviceApi::launch`].
    pub fn last_report(&self) -> Option<LaunchReport> {
        self.lock_report().clone()
    }

    /// Starts keeping the report of every later launch through [`DeviceApi::launch`] (profiling
    /// one op's kernels); [`VirtualGpu::take_recording`] returns them and stops.
    pub fn start_recording(&self) {
        *self.lock_recording() = Some(Vec::new());
    }

    /// The reports recorded since [`VirtualGpu::start_recording`], in launch order.
    pub fn take_recording(&self) -> Vec<LaunchReport> {
        self.lock_recording().take().unwrap_or_default()
    }

    fn lock_recording(&self) -> MutexGuard<'_, Option<Vec<LaunchReport>>> {
        self.recording.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Shared memory a block may use: 163 KiB on sm_80, 227 KiB on sm_90 (with opt-in, as the
    /// backend's kernels request).
    pub fn max_shared_bytes(&self) -> usize {
        match self.arch {
            Arch::Sm80 => 163 * 1024,
            Arch::Sm90 => 227 * 1024,
        }
    }

    fn lock_memory(&self) -> MutexGuard<'_, GlobalMemory> {
        // A poisoned lock only means another launch failed midway; the memory map is still valid.
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_report(&self) -> MutexGuard<'_, Option<LaunchReport>> {
        self.last_report.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Launches and returns what the launch observed (counters, race hazards).
    pub fn launch_with_report(
        &self,
        kernel: &VmKernel,
        config: &LaunchConfig,
        args: &[KernelArg],
    ) -> Result<LaunchReport> {
        let k = &kernel.module.kernels[kernel.index];
        let invalid =
            |msg: String| HeparError::invalid("ptx launch", format!("kernel `{}`: {msg}", k.name));
        let (bx, by, bz) = config.block_dim;
        let (gx, gy, gz) = config.grid_dim;
        if bx == 0 || by == 0 || bz == 0 || gx == 0 || gy == 0 || gz == 0 {
            return Err(invalid(format!(
                "grid {:?} and block {:?} must have no zero dimension",
                config.grid_dim, config.block_dim
            )));
        }
        let threads = u64::from(bx) * u64::from(by) * u64::from(bz);
        if threads > MAX_THREADS_PER_BLOCK || bz > 64 {
            return Err(invalid(format!(
                "block {:?} has {threads} threads; the limit is {MAX_THREADS_PER_BLOCK} (and z <= 64)",
                config.block_dim
            )));
        }
        if let Some(max) = k.max_threads {
            if threads > u64::from(max) {
                return Err(invalid(format!(
                    "block has {threads} threads but the kernel declares at most {max}"
                )));
            }
        }
        if gy > 65535 || gz > 65535 || gx > i32::MAX as u32 {
            return Err(invalid(format!(
                "grid {:?} exceeds (2^31-1, 65535, 65535)",
                config.grid_dim
            )));
        }
        if args.len() != k.params.len() {
            return Err(invalid(format!(
                "expects {} arguments, got {}",
                k.params.len(),
                args.len()
            )));
        }
        let mut params = vec![0u8; k.param_bytes];
        for (i, (p, a)) in k.params.iter().zip(args).enumerate() {
            if a.as_bytes().len() != p.size {
                return Err(invalid(format!(
                    "argument {i} (`{}`) must be {} bytes, got {}",
                    p.name,
                    p.size,
                    a.as_bytes().len()
                )));
            }
            params[p.offset..p.offset + p.size].copy_from_slice(a.as_bytes());
        }
        if k.local_bytes > MAX_LOCAL_BYTES_PER_THREAD {
            return Err(invalid(format!(
                "needs {} bytes of local memory per thread; the limit is {MAX_LOCAL_BYTES_PER_THREAD}",
                k.local_bytes
            )));
        }
        let racecheck = self.racecheck.load(Ordering::Relaxed);
        let mut memory = self.lock_memory();
        let view = GlobalView {
            regions: memory.regions(),
        };
        let env = LaunchEnv {
            kernel: k,
            grid: [gx, gy, gz],
            block: [bx, by, bz],
            dynamic_shared_bytes: config.shared_mem_bytes as usize,
            global: &view,
            params: &params,
            racecheck,
            max_warp_steps_per_block: self.step_limit.load(Ordering::Relaxed),
        };
        let shared = shared_size(&env);
        if shared > self.max_shared_bytes() {
            return Err(invalid(format!(
                "needs {shared} bytes of shared memory; the limit is {}",
                self.max_shared_bytes()
            )));
        }
        let mut outcome = run_grid(&env)?;
        drop(memory);
        outcome.printf.sort_by_key(|(block, _)| *block);
        let printf_output = outcome
            .printf
            .into_iter()
            .map(|(_, text)| text)
            .collect::<String>();
        Ok(LaunchReport {
            kernel: k.name.clone(),
            counters: outcome.counters,
            hazards: outcome.hazards,
            hazard_count: outcome.hazard_count,
            printf_output,
        })
    }
}

impl Default for VirtualGpu {
    fn default() -> Self {
        VirtualGpu::new(Arch::Sm80)
    }
}

struct Placer<'a> {
    memory: &'a mut GlobalMemory,
    placed: HashMap<String, (DevicePtr, usize)>,
}

impl GlobalPlacer for Placer<'_> {
    fn place(&mut self, var: &GlobalVar) -> Result<u64> {
        let ptr = self.memory.alloc(var.size.max(1)).ok_or_else(|| {
            HeparError::invalid(
                "ptx module",
                format!("cannot allocate {} bytes for `{}`", var.size, var.name),
            )
        })?;
        if !var.init.is_empty() {
            let n = var.init.len().min(var.size);
            let dst = self
                .memory
                .slice_mut(ptr.0, n)
                .map_err(|e| HeparError::invalid("ptx module", e))?;
            dst.copy_from_slice(&var.init[..n]);
        }
        self.placed.insert(var.name.clone(), (ptr, var.size));
        Ok(ptr.0)
    }
}

impl DeviceApi for VirtualGpu {
    type Module = VmModule;
    type Kernel = VmKernel;

    fn device_name(&self) -> String {
        "ptx-vm".to_string()
    }

    fn arch(&self) -> Arch {
        self.arch
    }

    fn alloc(&self, bytes: usize) -> Result<DevicePtr> {
        self.lock_memory()
            .alloc(bytes)
            .ok_or_else(|| HeparError::Backend {
                backend: "ptx-vm",
                msg: format!("out of memory allocating {bytes} bytes"),
            })
    }

    fn free(&self, ptr: DevicePtr) -> Result<()> {
        if self.lock_memory().free(ptr) {
            Ok(())
        } else {
            Err(HeparError::invalid(
                "ptx free",
                format!("{:#x} is not the start of a live allocation", ptr.0),
            ))
        }
    }

    fn copy_to_device(&self, dst: DevicePtr, src: &[u8]) -> Result<()> {
        let mut memory = self.lock_memory();
        let slice = memory
            .slice_mut(dst.0, src.len())
            .map_err(|e| HeparError::invalid("ptx copy to device", e))?;
        slice.copy_from_slice(src);
        Ok(())
    }

    fn copy_from_device(&self, src: DevicePtr, dst: &mut [u8]) -> Result<()> {
        let mut memory = self.lock_memory();
        let slice = memory
            .slice_mut(src.0, dst.len())
            .map_err(|e| HeparError::invalid("ptx copy from device", e))?;
        dst.copy_from_slice(slice);
        Ok(())
    }

    fn load_ptx(&self, ptx: &str, module_name: &str) -> Result<VmModule> {
        let mut memory = self.lock_memory();
        let mut placer = Placer {
            memory: &mut memory,
            placed: HashMap::new(),
        };
        let module = parse_module(ptx, module_name, &mut placer)?;
        let globals = std::mem::take(&mut placer.placed);
        Ok(VmModule {
            module: Arc::new(module),
            name: module_name.to_string(),
            globals: Arc::new(globals),
        })
    }

    fn kernel(&self, module: &VmModule, name: &str) -> Result<VmKernel> {
        let index = *module.module.kernel_index.get(name).ok_or_else(|| {
            HeparError::invalid(
                "ptx kernel lookup",
                format!(
                    "module `{}` has no kernel `{name}` (it has: {})",
                    module.name,
                    module.kernel_names().join(", ")
                ),
            )
        })?;
        Ok(VmKernel {
            module: module.module.clone(),
            index,
        })
    }

    fn launch(&self, kernel: &VmKernel, config: &LaunchConfig, args: &[KernelArg]) -> Result<()> {
        let report = self.launch_with_report(kernel, config, args)?;
        // Like the CUDA runtime, device printf output appears on the host's stdout.
        if !report.printf_output.is_empty() {
            use std::io::Write;
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(report.printf_output.as_bytes());
            let _ = stdout.flush();
        }
        let first_hazard = report.hazards.first().map(|h| h.to_string());
        let count = report.hazard_count;
        if let Some(kept) = self.lock_recording().as_mut() {
            kept.push(report.clone());
        }
        *self.lock_report() = Some(report);
        match first_hazard {
            Some(h) => Err(HeparError::Backend {
                backend: "ptx-vm",
                msg: format!("{h} ({count} hazards in total)"),
            }),
            None => Ok(()),
        }
    }

    fn synchronize(&self) -> Result<()> {
        // Launches on the virtual GPU complete before `launch` returns.
        Ok(())
    }
}
