//! What this machine offers each backend, found without touching anything that could panic:
//! cudarc aborts on a missing libcuda, so the driver library is probed first.

/// One line per backend: whether it is usable here and why not.
pub fn describe_backends() -> Vec<String> {
    let mut lines = Vec::new();
    let avx512 = cfg!(target_arch = "x86_64") && is_avx512();
    lines.push(format!(
        "cpu: {} threads, AVX-512 conv kernels {}",
        rayon::current_num_threads(),
        if avx512 {
            "on"
        } else {
            "off (portable im2col + GEMM path)"
        }
    ));
    // SAFETY: only tries to open the library by name; nothing from it is called.
    let driver = unsafe { cudarc::driver::sys::is_culib_present() };
    lines.push(format!(
        "cuda driver: {}",
        if driver {
            "libcuda found"
        } else {
            "not found (no GPU backend on this machine)"
        }
    ));
    lines.push(match crate::backend::cuda::nvrtc::ensure_nvrtc() {
        Ok(origin) => format!("nvrtc + ptx-vm: available (NVRTC from {origin})"),
        Err(e) => format!("nvrtc + ptx-vm: unavailable: {e}"),
    });
    lines
}

#[cfg(target_arch = "x86_64")]
fn is_avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
}

#[cfg(not(target_arch = "x86_64"))]
fn is_avx512() -> bool {
    false
}
