//! Roofline estimates of a kernel's time on a real GPU from what the PTX VM counted: the time is
//! at least its FLOPs over the arithmetic peak and its bytes over the memory bandwidth, and the
//! larger of the two names the bound.

/// Published peaks of one GPU (dense, without sparsity).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GpuPeaks {
    pub name: &'static str,
    /// FP32 FMA peak, FLOP/s.
    pub fp32_flops: f64,
    /// TF32 tensor-core peak, FLOP/s.
    pub tf32_flops: f64,
    /// DRAM bandwidth, bytes/s.
    pub dram_bytes: f64,
}

/// H100 SXM: 67 TFLOP/s FP32, about 495 TFLOP/s TF32, 3.35 TB/s HBM3.
pub const H100: GpuPeaks = GpuPeaks {
    name: "H100",
    fp32_flops: 67e12,
    tf32_flops: 495e12,
    dram_bytes: 3.35e12,
};

/// H200: the H100's arithmetic with 4.8 TB/s HBM3e.
pub const H200: GpuPeaks = GpuPeaks {
    name: "H200",
    fp32_flops: 67e12,
    tf32_flops: 495e12,
    dram_bytes: 4.8e12,
};

/// Which limit sets the roofline time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    Compute,
    Memory,
}

impl std::fmt::Display for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Bound::Compute => "compute-bound",
            Bound::Memory => "memory-bound",
        })
    }
}

/// The roofline time of `flops` arithmetic at `peak_flops` moving `bytes` through DRAM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RooflineTime {
    pub seconds: f64,
    pub compute_seconds: f64,
    pub memory_seconds: f64,
    pub bound: Bound,
}

impl GpuPeaks {
    /// FLOPs per DRAM byte above which an FP32 kernel is compute-bound.
    pub fn fp32_ridge(&self) -> f64 {
        self.fp32_flops / self.dram_bytes
    }

    pub fn time(&self, flops: f64, peak_flops: f64, bytes: f64) -> RooflineTime {
        let compute_seconds = flops / peak_flops;
        let memory_seconds = bytes / self.dram_bytes;
        RooflineTime {
            seconds: compute_seconds.max(memory_seconds),
            compute_seconds,
            memory_seconds,
            bound: if compute_seconds >= memory_seconds {
                Bound::Compute
            } else {
                Bound::Memory
            },
        }
    }
}

/// The roofline time of counted VM work on one GPU: moving only the compulsory bytes (each
/// crosses DRAM once: the lower bound), and moving every requested byte (no cache hits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RooflineEstimate {
    pub gpu: GpuPeaks,
    pub compulsory: RooflineTime,
    pub all_requested: RooflineTime,
}

/// The estimates on the H100 and H200 of the work in `counters` (FP64 at half the FP32 rate).
pub fn estimates(
    counters: &crate::ptx::LaunchCounters,
    compulsory_bytes: f64,
    f64_math: bool,
) -> Vec<RooflineEstimate> {
    let flops = counters.flops() as f64;
    let requested = (counters.global_bytes_read + counters.global_bytes_written) as f64;
    [H100, H200]
        .into_iter()
        .map(|gpu| {
            // FP64 FMA on Hopper runs at half the FP32 rate.
            let peak = if f64_math {
                gpu.fp32_flops / 2.0
            } else {
                gpu.fp32_flops
            };
            RooflineEstimate {
                gpu,
                compulsory: gpu.time(flops, peak, compulsory_bytes),
                all_requested: gpu.time(flops, peak, requested),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_larger_time_names_the_bound() {
        // 67 GFLOP in 1 ms of compute vs 3.35 GB in 1 ms of memory traffic: a tie is compute.
        let t = H100.time(67e9, H100.fp32_flops, 3.35e9);
        assert!((t.seconds - 1e-3).abs() < 1e-12 && t.bound == Bound::Compute);
        let t = H100.time(67e9, H100.fp32_flops, 6.7e9);
        assert!((t.seconds - 2e-3).abs() < 1e-12 && t.bound == Bound::Memory);
        assert!((H100.fp32_ridge() - 20.0).abs() < 0.01);
    }
}
