//! The CUDA backend's kernels. Sources live in `kernels/*.cu`, are embedded in the binary and
//! compiled at run time by NVRTC; on machines without a GPU they run on the PTX virtual machine
//! (`crate::ptx`), which is how CI checks each kernel against the CPU backend.

/// Elementwise activations, their gradients and dense binary ops.
pub const ELEMENTWISE_SOURCE: &str = include_str!("../../../kernels/elementwise.cu");

/// Every kernel source, with the file name NVRTC reports in its messages.
pub const SOURCES: &[(&str, &str)] = &[("elementwise.cu", ELEMENTWISE_SOURCE)];
