//! A PTX virtual machine: executes PTX (compiled from CUDA C by NVRTC, see
//! `crate::backend::cuda::nvrtc`) on the CPU with CUDA's semantics, checking memory accesses
//! (memcheck) and shared-memory races (racecheck) and counting what the kernel does. It is one of
//! the two drivers of the CUDA backend's `DeviceApi`; the other is a real GPU through cudarc.
//!
//! `parser` turns PTX text into the pre-decoded `program`, `exec` interprets it with `arith` for
//! value semantics and `memory` for the address spaces, `racecheck` and `counters` observe it,
//! `printf` formats device printf output, and `device` implements the device API over it all.
//!
//! ```no_run
//! use hepar::kernel_args;
//! use hepar::backend::cuda::{DeviceApi, LaunchConfig};
//! use hepar::ptx::VirtualGpu;
//!
//! # fn main() -> hepar::Result<()> {
//! let gpu = VirtualGpu::default(); // sm_80; memcheck always on
//! let module = gpu.compile_module(
//!     r#"extern "C" __global__ void scale(float* x, float a, int n) {
//!            int i = blockIdx.x * blockDim.x + threadIdx.x;
//!            if (i < n) x[i] *= a;
//!        }"#,
//!     "scale.cu",
//! )?;
//! let kernel = gpu.kernel(&module, "scale")?;
//! let x = gpu.upload(&[1.0f32, 2.0, 3.0])?;
//! let report = gpu.launch_with_report(&kernel, &LaunchConfig::for_elements(3, 128), &kernel_args![x, 2.0f32, 3i32])?;
//! println!("{report}"); // instruction mix, sectors per request, bank conflicts, FLOPs
//! assert_eq!(gpu.download::<f32>(x, 3)?, vec![2.0, 4.0, 6.0]);
//! # Ok(())
//! # }
//! ```
//!
//! Scheduling follows Volta's independent threads in a simple form: a warp issues the instruction
//! at its lowest program counter for all lanes there, so lanes reconverge after structured
//! branches; a warp-synchronous instruction whose member mask names a lane that is elsewhere is
//! reported. Tensor cores: `mma.sync` m16n8k8 .tf32 and m16n8k16 .f16/.bf16 (f32 accumulators),
//! `ldmatrix` and `cvt.rna.tf32.f32` execute with the ISA's fragment layouts and TF32's truncation
//! of unrounded inputs; see `tensor_core` for the arithmetic model (one rounding per output, so
//! tests compare with an error bound). Not modelled (a clear error names the instruction): other
//! `mma` shapes and types, `wgmma`, `stmatrix`, textures and surfaces, indirect calls and
//! recursion, 128-bit types, and carry-chain arithmetic (`add.cc`).
//!
//! Environment: `HEPAR_NVRTC_LIB` (path to libnvrtc.so.12) and `HEPAR_CUDA_INCLUDE` (a folder with
//! cuda_fp16.h) override the automatic search of the `nvidia-cuda-nvrtc-cu12` and
//! `nvidia-cuda-runtime-cu12` pip wheels.

mod arith;
pub mod counters;
pub mod device;
mod exec;
pub mod memory;
pub mod parser;
mod printf;
pub mod program;
pub mod racecheck;
mod tensor_core;

pub use counters::LaunchCounters;
pub use device::{LaunchReport, VirtualGpu, VmKernel, VmModule};
pub use racecheck::RaceHazard;
