//! The CUDA backend: tensors in GPU memory, every primitive of `BackendStorage` a hand-written
//! kernel. Kernel sources live in `kernels/<family>.cu`, beside the CPU functions they must equal;
//! they are embedded in the binary and compiled at run time by NVRTC. The same kernels run on a
//! real GPU (cudarc's driver, `cuda:N`) and on the PTX virtual machine (`ptxvm`, every CI run),
//! both behind [`DeviceApi`].
//!
//! `device` is the driver API, `driver` its cudarc implementation, `nvrtc` the compiler,
//! `context` one GPU (allocator, compiled modules, launch shape), `alloc` the caching allocator,
//! `view` the strided-layout argument kernels index with, `storage` the tensor storage, and one
//! module per kernel family launches that family's kernels.

pub mod alloc;
pub mod context;
pub mod device;
pub mod driver;
pub mod kernel_budget;
pub mod kernel_report;
pub mod nvrtc;
pub mod roofline;
pub mod storage;
pub mod view;

mod conv;
mod copy;
mod elementwise;
mod matmul;
mod norm;
mod optim;
mod pool;
mod random;
mod reduce;
mod upsample;

pub use alloc::MemoryStats;
pub use context::{GpuBuffer, GpuContext, LaunchShape};
pub use conv::{
    backward_input_path, backward_weight_path, conv_backward_weight_on, forward_path,
    storage_backward_weight_on, tiled_weight_path, ConvPath, IgTile, WeightPath, WgTile,
};
pub use device::{DeviceApi, DevicePtr, KernelArg, LaunchConfig};
pub use driver::CudaDriver;
pub use matmul::matmul_with_precision;
pub use storage::CudaStorage;

use crate::error::{HeparError, Result};

/// Helpers every kernel file sees first: the strided-view argument and the grid-stride loop.
pub const PRELUDE: &str = include_str!("../../../kernels/common.cuh");

/// Every kernel file, with the name NVRTC reports in its messages.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "elementwise.cu",
        include_str!("../../../kernels/elementwise.cu"),
    ),
    ("copy.cu", include_str!("../../../kernels/copy.cu")),
    ("reduce.cu", include_str!("../../../kernels/reduce.cu")),
    ("norm.cu", include_str!("../../../kernels/norm.cu")),
    ("pool.cu", include_str!("../../../kernels/pool.cu")),
    ("upsample.cu", include_str!("../../../kernels/upsample.cu")),
    ("matmul.cu", include_str!("../../../kernels/matmul.cu")),
    ("conv.cu", include_str!("../../../kernels/conv.cu")),
    ("random.cu", include_str!("../../../kernels/random.cu")),
    ("optim.cu", include_str!("../../../kernels/optim.cu")),
];

/// What NVRTC compiles for one kernel file: the shared helpers first, then the file, with
/// `#line` keeping NVRTC's messages pointing into the file.
pub fn full_source(file: &str) -> Result<String> {
    Ok(format!("{PRELUDE}\n#line 1 \"{file}\"\n{}", source(file)?))
}

/// The text of one kernel file.
pub fn source(file: &str) -> Result<&'static str> {
    SOURCES
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, text)| *text)
        .ok_or_else(|| HeparError::Backend {
            backend: "cuda",
            msg: format!(
                "no kernel file `{file}` (files: {})",
                SOURCES
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
}
