//! A PTX virtual machine: compiles CUDA C with NVRTC and executes the PTX on the CPU with CUDA's
//! semantics, checking memory accesses (memcheck) and shared-memory races (racecheck) and counting
//! what the kernel does.
//!
//! `nvrtc` finds and calls the compiler, `parser` turns PTX text into the pre-decoded `program`,
//! `exec` interprets it with `arith` for value semantics and `memory` for the address spaces,
//! `racecheck` and `counters` observe it, and `device` exposes it all as a driver-like API.

mod arith;
pub mod counters;
pub mod device;
mod exec;
pub mod memory;
pub mod nvrtc;
pub mod parser;
pub mod program;
pub mod racecheck;

pub use counters::LaunchCounters;
pub use device::{DeviceApi, KernelArg, LaunchConfig, LaunchReport, VirtualGpu, VmKernel, VmModule};
pub use memory::DevicePtr;
pub use nvrtc::{compile_to_ptx, compile_to_ptx_with, Arch, NvrtcOptions};
pub use racecheck::RaceHazard;
