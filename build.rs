//! Rebuild when a CUDA kernel changes: kernels are embedded in the binary with `include_str!` and
//! compiled at run time by NVRTC.
fn main() {
    println!("cargo:rerun-if-changed=kernels");
    println!("cargo:rerun-if-changed=build.rs");
}
