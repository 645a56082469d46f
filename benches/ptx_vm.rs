//! The PTX virtual machine's speed: a tiled 256 x 256 x 256 SGEMM (16 x 16 tiles, 256 blocks) and an
//! elementwise kernel over 1M elements.

use criterion::{criterion_group, criterion_main, Criterion};
use hepar::backend::cuda::{DeviceApi, LaunchConfig};
use hepar::kernel_args;
use hepar::ptx::VirtualGpu;

fn sgemm_256(c: &mut Criterion) {
    let source_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ptx_kernels/sgemm.cu");
    let source = std::fs::read_to_string(&source_path)
        .unwrap_or_else(|e| panic!("{}: {e}", source_path.display()));
    let gpu = VirtualGpu::default();
    let module = gpu
        .compile_module(&source, "sgemm.cu")
        .unwrap_or_else(|e| panic!("{e}"));
    let kernel = gpu.kernel(&module, "sgemm_tiled").unwrap();
    let n = 256usize;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 17) as f32 * 0.125).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 13) as f32 * 0.25).collect();
    let (da, db) = (gpu.upload(&a).unwrap(), gpu.upload(&b).unwrap());
    let dc = gpu.alloc(n * n * 4).unwrap();
    let cfg = LaunchConfig {
        grid_dim: (16, 16, 1),
        block_dim: (16, 16, 1),
        shared_mem_bytes: 0,
    };
    let args = kernel_args![da, db, dc, n as i32, n as i32, n as i32];
    let mut group = c.benchmark_group("ptx_vm");
    group.sample_size(10);
    group.bench_function("sgemm_tiled_256", |bench| {
        bench.iter(|| gpu.launch(&kernel, &cfg, &args).unwrap())
    });
    group.finish();
}

/// Elementwise throughput: saxpy over 1M elements in 4096 blocks of 256 threads.
fn saxpy_1m(c: &mut Criterion) {
    let source_path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ptx_kernels/vector_ops.cu");
    let source = std::fs::read_to_string(&source_path)
        .unwrap_or_else(|e| panic!("{}: {e}", source_path.display()));
    let gpu = VirtualGpu::default();
    let module = gpu
        .compile_module(&source, "vector_ops.cu")
        .unwrap_or_else(|e| panic!("{e}"));
    let kernel = gpu.kernel(&module, "saxpy").unwrap();
    let n = 1 << 20;
    let x: Vec<f32> = (0..n).map(|i| (i % 101) as f32).collect();
    let (dx, dy) = (gpu.upload(&x).unwrap(), gpu.upload(&x).unwrap());
    let out = gpu.alloc(n * 4).unwrap();
    let cfg = LaunchConfig::for_elements(n, 256);
    let args = kernel_args![2.0f32, dx, dy, out, n as i32];
    let mut group = c.benchmark_group("ptx_vm");
    group.sample_size(10);
    group.bench_function("saxpy_1m", |bench| {
        bench.iter(|| gpu.launch(&kernel, &cfg, &args).unwrap())
    });
    group.finish();
}

criterion_group!(benches, sgemm_256, saxpy_1m);
criterion_main!(benches);
