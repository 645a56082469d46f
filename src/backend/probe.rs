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
    let nvrtc = crate::backend::cuda::nvrtc::ensure_nvrtc();
    lines.push(match &nvrtc {
        Ok(origin) => format!("ptxvm: the PTX virtual machine, available (NVRTC from {origin})"),
        Err(e) => format!("ptxvm: unavailable: {e}"),
    });
    // The driver is probed before any cudarc call, which would abort on a missing libcuda.
    match crate::backend::cuda::driver::list_devices() {
        Ok(gpus) if gpus.is_empty() => lines.push("cuda: the driver sees no GPU".to_string()),
        Ok(gpus) => {
            for g in gpus {
                let (major, minor) = g.compute_capability;
                let usable = if major >= 8 {
                    ""
                } else {
                    " (unsupported: Hepar needs compute capability 8.0+)"
                };
                let compiler = if nvrtc.is_ok() {
                    ""
                } else {
                    "; kernels need NVRTC (see ptxvm above)"
                };
                lines.push(format!(
                    "cuda:{}: {}, {:.1} GiB, compute capability {major}.{minor}{usable}{compiler}",
                    g.ordinal,
                    g.name,
                    g.total_memory as f64 / (1u64 << 30) as f64,
                ));
            }
        }
        Err(crate::HeparError::Backend { msg, .. }) => {
            lines.push(format!("cuda: unavailable: {msg}"))
        }
        Err(e) => lines.push(format!("cuda: unavailable: {e}")),
    }
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
