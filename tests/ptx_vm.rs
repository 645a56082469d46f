//! The PTX virtual machine against CPU references, on kernels compiled by NVRTC from
//! tests/ptx_kernels. Needs NVRTC: `pip install nvidia-cuda-nvrtc-cu12`.

use half::{bf16, f16};
use hepar::backend::cuda::nvrtc::Arch;
use hepar::backend::cuda::{DeviceApi, DevicePtr, LaunchConfig};
use hepar::kernel_args;
use hepar::ptx::program::InstrClass;
use hepar::ptx::{VirtualGpu, VmModule};

fn kernel_source(file: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/ptx_kernels")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load(gpu: &VirtualGpu, file: &str) -> VmModule {
    gpu.compile_module(&kernel_source(file), file)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Deterministic pseudo-random floats in [-1, 1).
fn test_data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn zeros(gpu: &VirtualGpu, bytes: usize) -> DevicePtr {
    gpu.upload(&vec![0u8; bytes]).unwrap()
}

#[test]
fn saxpy_matches_cpu() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "vector_ops.cu");
    let k = gpu.kernel(&m, "saxpy").unwrap();
    let n = 1000;
    let (x, y) = (test_data(n, 1), test_data(n, 2));
    let (dx, dy, dout) = (
        gpu.upload(&x).unwrap(),
        gpu.upload(&y).unwrap(),
        zeros(&gpu, n * 4),
    );
    gpu.launch(
        &k,
        &LaunchConfig::for_elements(n, 128),
        &kernel_args![1.5f32, dx, dy, dout, n as i32],
    )
    .unwrap();
    let out: Vec<f32> = gpu.download(dout, n).unwrap();
    for i in 0..n {
        assert_eq!(out[i], 1.5f32.mul_add(x[i], y[i]), "element {i}");
    }
}

#[test]
fn mixed_integer_float_and_double_ops_match_cpu() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "vector_ops.cu");
    let k = gpu.kernel(&m, "vector_mix").unwrap();
    let n = 777;
    let x: Vec<f32> = test_data(n, 3).iter().map(|v| v * 4.0).collect();
    let keys: Vec<i32> = (0..n as i32).map(|i| (i * 37 % 101) - 50).collect();
    let (dx, dk) = (gpu.upload(&x).unwrap(), gpu.upload(&keys).unwrap());
    let (dout, d64) = (zeros(&gpu, n * 4), zeros(&gpu, n * 8));
    gpu.launch(
        &k,
        &LaunchConfig::for_elements(n, 64),
        &kernel_args![dx, dk, dout, d64, n as i32],
    )
    .unwrap();
    let out: Vec<f32> = gpu.download(dout, n).unwrap();
    let out64: Vec<f64> = gpu.download(d64, n).unwrap();
    for i in 0..n {
        let (v, mk) = (x[i], keys[i]);
        let mut r = if mk % 3 == 0 {
            v.min(0.5)
        } else {
            (v * v).max((mk >> 1) as f32)
        };
        r += v.abs().sqrt() + (-v * v).exp() + (mk / 7) as f32 + v.abs();
        // expf is computed with ex2.approx on the GPU: allow a few ulps.
        assert!(
            (out[i] - r).abs() <= 1e-5 * r.abs().max(1.0),
            "element {i}: {} vs {r}",
            out[i]
        );
        let expect64 = v as f64 * 3.0 - mk as f64 / 9.0;
        assert_eq!(out64[i], expect64, "double element {i}");
    }
}

#[test]
fn block_reduction_with_shared_memory() {
    let gpu = VirtualGpu::default();
    gpu.set_racecheck(true);
    let m = load(&gpu, "reductions.cu");
    let k = gpu.kernel(&m, "block_sum_shared").unwrap();
    let n = 1000;
    let x = test_data(n, 4);
    let cfg = LaunchConfig::for_elements(n, 256);
    let blocks = cfg.grid_dim.0 as usize;
    let (dx, dp) = (gpu.upload(&x).unwrap(), zeros(&gpu, blocks * 4));
    gpu.launch(&k, &cfg, &kernel_args![dx, dp, n as i32])
        .unwrap();
    let partial: Vec<f32> = gpu.download(dp, blocks).unwrap();
    for b in 0..blocks {
        let expect: f64 = x[b * 256..((b + 1) * 256).min(n)]
            .iter()
            .map(|&v| v as f64)
            .sum();
        assert!(
            (partial[b] as f64 - expect).abs() < 1e-4,
            "block {b}: {} vs {expect}",
            partial[b]
        );
    }
    let report = gpu.last_report().unwrap();
    assert_eq!(
        report.hazard_count,
        0,
        "a correct reduction has no races: {:?}",
        report.hazards.first()
    );
}

#[test]
fn block_reduction_with_warp_shuffles() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "reductions.cu");
    let k = gpu.kernel(&m, "block_sum_shuffle").unwrap();
    let n = 5003;
    let x = test_data(n, 5);
    let blocks = 7usize;
    let cfg = LaunchConfig {
        grid_dim: (blocks as u32, 1, 1),
        block_dim: (96, 1, 1),
        shared_mem_bytes: 0,
    };
    let (dx, dp) = (gpu.upload(&x).unwrap(), zeros(&gpu, blocks * 4));
    gpu.launch(&k, &cfg, &kernel_args![dx, dp, n as i32])
        .unwrap();
    let partial: Vec<f32> = gpu.download(dp, blocks).unwrap();
    let total: f64 = partial.iter().map(|&v| v as f64).sum();
    let expect: f64 = x.iter().map(|&v| v as f64).sum();
    assert!((total - expect).abs() < 1e-3, "{total} vs {expect}");
    // Each block covers a grid-strided subset: check block 3 on its own.
    let b3: f64 = (0..n)
        .filter(|i| (i % (96 * blocks)) / 96 == 3)
        .map(|i| x[i] as f64)
        .sum();
    assert!(
        (partial[3] as f64 - b3).abs() < 1e-4,
        "block 3: {} vs {b3}",
        partial[3]
    );
}

#[test]
fn ballot_count_with_global_atomics() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "reductions.cu");
    let k = gpu.kernel(&m, "count_positive").unwrap();
    let n = 1001;
    let x = test_data(n, 6);
    let (dx, dc) = (gpu.upload(&x).unwrap(), zeros(&gpu, 4));
    gpu.launch(
        &k,
        &LaunchConfig::for_elements(n, 128),
        &kernel_args![dx, dc, n as i32],
    )
    .unwrap();
    let count: Vec<u32> = gpu.download(dc, 1).unwrap();
    assert_eq!(count[0] as usize, x.iter().filter(|&&v| v > 0.0).count());
}

fn cpu_sgemm(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    c
}

fn run_sgemm(
    arch: Arch,
    m: usize,
    n: usize,
    k: usize,
) -> (Vec<f32>, Vec<f32>, hepar::ptx::LaunchCounters) {
    let gpu = VirtualGpu::new(arch);
    gpu.set_racecheck(true);
    let module = load(&gpu, "sgemm.cu");
    assert!(
        module
            .target()
            .contains(if arch == Arch::Sm90 { "sm_90" } else { "sm_80" }),
        "{}",
        module.target()
    );
    let kernel = gpu.kernel(&module, "sgemm_tiled").unwrap();
    let (a, b) = (test_data(m * k, 7), test_data(k * n, 8));
    let (da, db, dc) = (
        gpu.upload(&a).unwrap(),
        gpu.upload(&b).unwrap(),
        zeros(&gpu, m * n * 4),
    );
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(16) as u32, m.div_ceil(16) as u32, 1),
        block_dim: (16, 16, 1),
        shared_mem_bytes: 0,
    };
    let report = gpu
        .launch_with_report(
            &kernel,
            &cfg,
            &kernel_args![da, db, dc, m as i32, n as i32, k as i32],
        )
        .unwrap();
    assert_eq!(
        report.hazard_count,
        0,
        "both barriers are in place: {:?}",
        report.hazards.first()
    );
    (
        gpu.download(dc, m * n).unwrap(),
        cpu_sgemm(&a, &b, m, n, k),
        report.counters,
    )
}

#[test]
fn tiled_sgemm_matches_cpu_and_counts_flops() {
    let (m, n, k) = (70, 45, 33);
    let (got, expect, counters) = run_sgemm(Arch::Sm80, m, n, k);
    for i in 0..m * n {
        assert!(
            (got[i] - expect[i]).abs() < 1e-4,
            "element {i}: {} vs {}",
            got[i],
            expect[i]
        );
    }
    // Every thread of the padded grid does TILE fmas per k-tile: 2 flops each.
    let threads = (n.div_ceil(16) * 16 * m.div_ceil(16) * 16) as u64;
    assert_eq!(
        counters.fp32_flops,
        threads * k.div_ceil(16) as u64 * 16 * 2
    );
    // As[ty][k] is a broadcast and Bs[k][tx] consecutive: no bank conflicts.
    assert_eq!(counters.shared_bank_conflicts, 0);
    assert!(counters.warp_instructions_of(InstrClass::Fp32) > 0);
    let table = counters.to_string();
    assert!(
        table.contains("global load sectors / request") && table.contains("fp32"),
        "{table}"
    );
}

#[test]
fn sm90_ptx_parses_and_runs() {
    let (m, n, k) = (20, 17, 19);
    let (got, expect, _) = run_sgemm(Arch::Sm90, m, n, k);
    for i in 0..m * n {
        assert!(
            (got[i] - expect[i]).abs() < 1e-4,
            "element {i}: {} vs {}",
            got[i],
            expect[i]
        );
    }
}

#[test]
fn histogram_with_shared_and_global_atomics() {
    let gpu = VirtualGpu::default();
    gpu.set_racecheck(true); // shared atomics do not race with each other
    let m = load(&gpu, "histogram.cu");
    let k = gpu.kernel(&m, "histogram256").unwrap();
    let n = 10007usize;
    let data: Vec<u8> = (0..n).map(|i| ((i * 7919) % 251 + i % 5) as u8).collect();
    let (dd, db) = (gpu.upload(&data).unwrap(), zeros(&gpu, 256 * 4));
    let cfg = LaunchConfig {
        grid_dim: (8, 1, 1),
        block_dim: (192, 1, 1),
        shared_mem_bytes: 0,
    };
    gpu.launch(&k, &cfg, &kernel_args![dd, db, n as i32])
        .unwrap();
    let bins: Vec<u32> = gpu.download(db, 256).unwrap();
    let mut expect = vec![0u32; 256];
    for &d in &data {
        expect[d as usize] += 1;
    }
    assert_eq!(bins, expect);
}

#[test]
fn float_atomics_and_atomic_max() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "histogram.cu");
    let k = gpu.kernel(&m, "bucket_sums").unwrap();
    let n = 999;
    let x = test_data(n, 9);
    let (dx, ds) = (gpu.upload(&x).unwrap(), zeros(&gpu, 5 * 4));
    let dmax = gpu.upload(&[i32::MIN]).unwrap();
    gpu.launch(
        &k,
        &LaunchConfig::for_elements(n, 100),
        &kernel_args![dx, ds, dmax, n as i32],
    )
    .unwrap();
    let sums: Vec<f32> = gpu.download(ds, 5).unwrap();
    for (b, s) in sums.iter().enumerate() {
        let expect: f64 = (0..n).filter(|i| i % 5 == b).map(|i| x[i] as f64).sum();
        assert!(
            (*s as f64 - expect).abs() < 1e-3,
            "bucket {b}: {s} vs {expect}"
        );
    }
    let max: Vec<i32> = gpu.download(dmax, 1).unwrap();
    assert_eq!(
        max[0],
        x.iter().map(|&v| (v * 1000.0) as i32).max().unwrap()
    );
}

#[test]
fn half_and_bfloat16_conversions() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "half_types.cu");
    let k = gpu.kernel(&m, "half_roundtrip").unwrap();
    let n = 300;
    let mut x: Vec<f32> = test_data(n, 10).iter().map(|v| v * 300.0).collect();
    x[0] = 65519.0; // rounds to infinity in f16 under rn...
    x[1] = 1.0e-6; // an f16 subnormal
    x[2] = -2.5e-8; // below half the smallest f16 subnormal
    let dx = gpu.upload(&x).unwrap();
    let (dh, db, drz, dback) = (
        zeros(&gpu, n * 2),
        zeros(&gpu, n * 2),
        zeros(&gpu, n * 2),
        zeros(&gpu, n * 4),
    );
    gpu.launch(
        &k,
        &LaunchConfig::for_elements(n, 64),
        &kernel_args![dx, dh, db, drz, dback, n as i32],
    )
    .unwrap();
    let h: Vec<u16> = gpu.download(dh, n).unwrap();
    let b: Vec<u16> = gpu.download(db, n).unwrap();
    let rz: Vec<u16> = gpu.download(drz, n).unwrap();
    let back: Vec<f32> = gpu.download(dback, n).unwrap();
    for i in 0..n {
        let hv = f16::from_f32(x[i]);
        assert_eq!(h[i], hv.to_bits(), "f16 of {}", x[i]);
        assert_eq!(b[i], bf16::from_f32(x[i]).to_bits(), "bf16 of {}", x[i]);
        // Round toward zero: never larger in magnitude, and within one f16 step of rn.
        let z = f16::from_bits(rz[i]).to_f32();
        assert!(
            z.abs() <= x[i].abs() && (z.is_finite()),
            "rz of {} gave {z}",
            x[i]
        );
        let step = (hv.to_f32() - f16::from_bits(hv.to_bits() ^ 1).to_f32()).abs();
        assert!(
            (z - x[i]).abs() <= step.max(1e-7) || !hv.is_finite(),
            "rz of {} gave {z}",
            x[i]
        );
        let fused = f16::from_f64(hv.to_f64() * 2.0 + hv.to_f64()).to_f32();
        let expect = fused + bf16::from_f32(x[i]).to_f32();
        assert!(
            back[i] == expect || (back[i].is_infinite() && expect.is_infinite()),
            "element {i}: {} vs {expect}",
            back[i]
        );
    }
    assert_eq!(
        f16::from_bits(rz[0]).to_f32(),
        65504.0,
        "rz saturates to the largest finite f16"
    );
}

#[test]
fn three_dimensional_grid() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "grid3d.cu");
    let k = gpu.kernel(&m, "volume_weight").unwrap();
    let (nx, ny, nz) = (19usize, 11usize, 7usize);
    let input = test_data(nx * ny * nz, 11);
    let (din, dout) = (gpu.upload(&input).unwrap(), zeros(&gpu, input.len() * 4));
    let block = (8u32, 4u32, 2u32);
    let grid = (
        nx.div_ceil(8) as u32,
        ny.div_ceil(4) as u32,
        nz.div_ceil(2) as u32,
    );
    let cfg = LaunchConfig {
        grid_dim: grid,
        block_dim: block,
        shared_mem_bytes: 0,
    };
    gpu.launch(
        &k,
        &cfg,
        &kernel_args![din, dout, nx as i32, ny as i32, nz as i32],
    )
    .unwrap();
    let out: Vec<f32> = gpu.download(dout, input.len()).unwrap();
    let bias = (grid.0 * 100 + grid.1 * 10 + grid.2) as f32;
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let i = (z * ny + y) * nx + x;
                // NVRTC contracts the multiply-add into one fma.
                let expect = input[i].mul_add((x + 2 * y + 3 * z) as f32, bias);
                assert_eq!(out[i], expect, "voxel ({x}, {y}, {z})");
            }
        }
    }
}

#[test]
fn memcheck_catches_off_by_one_write() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "broken.cu");
    let k = gpu.kernel(&m, "off_by_one_write").unwrap();
    let n = 100;
    let out = zeros(&gpu, n * 4);
    let err = gpu
        .launch(
            &k,
            &LaunchConfig::for_elements(n + 1, 64),
            &kernel_args![out, n as i32],
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("memcheck") && err.contains("write of size 4"),
        "{err}"
    );
    assert!(
        err.contains("off_by_one_write") && err.contains("thread (36, 0, 0) in block (1, 0, 0)"),
        "{err}"
    );
    assert!(
        err.contains("0 bytes after the end of the 400-byte allocation"),
        "{err}"
    );
}

#[test]
fn memcheck_catches_misaligned_load() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "broken.cu");
    let k = gpu.kernel(&m, "misaligned_load").unwrap();
    let (bytes, out) = (zeros(&gpu, 256), zeros(&gpu, 32 * 4));
    let cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (32, 1, 1),
        shared_mem_bytes: 0,
    };
    let err = gpu
        .launch(&k, &cfg, &kernel_args![bytes, out])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("misaligned") && err.contains("misaligned_load"),
        "{err}"
    );
}

#[test]
fn racecheck_catches_missing_syncthreads() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "broken.cu");
    let k = gpu.kernel(&m, "missing_sync").unwrap();
    let n = 200;
    let (din, dout) = (gpu.upload(&test_data(n, 12)).unwrap(), zeros(&gpu, n * 4));
    let cfg = LaunchConfig::for_elements(n, 128);
    // Without the checker the launch completes...
    gpu.launch(&k, &cfg, &kernel_args![din, dout, n as i32])
        .unwrap();
    // ...with it, the read of the neighbour's slot is a read-after-write hazard across warps.
    gpu.set_racecheck(true);
    let report = gpu
        .launch_with_report(&k, &cfg, &kernel_args![din, dout, n as i32])
        .unwrap();
    assert!(report.hazard_count > 0);
    let first = report.hazards[0].to_string();
    assert!(
        first.contains("missing_sync") && first.contains("hazard"),
        "{first}"
    );
    let err = gpu
        .launch(&k, &cfg, &kernel_args![din, dout, n as i32])
        .unwrap_err()
        .to_string();
    assert!(err.contains("racecheck"), "{err}");
}

#[test]
fn uncoalesced_access_touches_more_sectors() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "broken.cu");
    let k = gpu.kernel(&m, "strided_copy").unwrap();
    let n = 4099;
    let (din, dout) = (gpu.upload(&test_data(n, 13)).unwrap(), zeros(&gpu, n * 4));
    let cfg = LaunchConfig::for_elements(n, 128);
    let mut sectors = Vec::new();
    for stride in [1i32, 33] {
        let report = gpu
            .launch_with_report(&k, &cfg, &kernel_args![din, dout, n as i32, stride])
            .unwrap();
        sectors.push(report.counters.sectors_per_load_request());
        // Stores are always coalesced.
        assert!(report.counters.sectors_per_store_request() <= 5.0);
    }
    assert!(
        sectors[0] <= 5.0,
        "coalesced: {} sectors/request",
        sectors[0]
    );
    assert!(
        sectors[1] >= 30.0,
        "stride 33: {} sectors/request",
        sectors[1]
    );
}

#[test]
fn shared_bank_conflicts_are_counted() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "broken.cu");
    let k = gpu.kernel(&m, "shared_stride_read").unwrap();
    let out = zeros(&gpu, 64 * 4);
    let cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (64, 1, 1),
        shared_mem_bytes: 0,
    };
    let clean = gpu
        .launch_with_report(&k, &cfg, &kernel_args![out, 1i32])
        .unwrap()
        .counters;
    let conflicted = gpu
        .launch_with_report(&k, &cfg, &kernel_args![out, 32i32])
        .unwrap()
        .counters;
    assert_eq!(clean.shared_bank_conflicts, 0);
    // Two warps, one read each, 32 distinct words in bank 0: 31 extra wavefronts per warp.
    assert_eq!(conflicted.shared_bank_conflicts, 62);
    let values: Vec<f32> = gpu.download(out, 64).unwrap();
    assert_eq!(values[5], 160.0, "lane 5 reads tile[5 * 32]");
}

#[test]
fn unknown_instruction_is_an_error_naming_it_and_the_kernel() {
    let ptx = ".version 8.0\n.target sm_80\n.address_size 64\n\
        .visible .entry weird(.param .u64 weird_param_0)\n{\n.reg .b32 %r<3>;\n\
        mov.u32 %r1, 7;\nfrobnicate.sync.b32 %r2, %r1;\nret;\n}\n";
    let gpu = VirtualGpu::default();
    let err = gpu
        .load_ptx(ptx, "weird.ptx")
        .err()
        .expect("unknown instruction must fail")
        .to_string();
    assert!(
        err.contains("frobnicate.sync.b32") && err.contains("weird"),
        "{err}"
    );
}

#[test]
fn launch_validates_arguments_and_block_size() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "vector_ops.cu");
    let k = gpu.kernel(&m, "saxpy").unwrap();
    let p = zeros(&gpu, 64);
    // a double where a float is expected
    let err = gpu
        .launch(
            &k,
            &LaunchConfig::for_elements(16, 16),
            &kernel_args![1.5f64, p, p, p, 16i32],
        )
        .unwrap_err();
    assert!(err.to_string().contains("argument 0"), "{err}");
    let err = gpu
        .launch(
            &k,
            &LaunchConfig::for_elements(16, 16),
            &kernel_args![1.5f32, p, p, p],
        )
        .unwrap_err();
    assert!(err.to_string().contains("expects 5 arguments"), "{err}");
    let too_big = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (1025, 1, 1),
        shared_mem_bytes: 0,
    };
    let err = gpu
        .launch(&k, &too_big, &kernel_args![1.5f32, p, p, p, 16i32])
        .unwrap_err();
    assert!(err.to_string().contains("1025 threads"), "{err}");
    let huge_shared = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (32, 1, 1),
        shared_mem_bytes: 1 << 20,
    };
    let err = gpu
        .launch(&k, &huge_shared, &kernel_args![1.5f32, p, p, p, 16i32])
        .unwrap_err();
    assert!(err.to_string().contains("shared memory"), "{err}");
    assert!(gpu.kernel(&m, "no_such_kernel").is_err());
}

fn close(got: f32, expect: f64, rel: f64) -> bool {
    let e = expect as f32;
    got == e
        || (got.is_nan() && e.is_nan())
        || ((got as f64) - expect).abs() <= rel * expect.abs().max(1e-3)
}

#[test]
fn float_math_library_matches_cpu() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "math_ops.cu");
    let k = gpu.kernel(&m, "float_math").unwrap();
    let n = 203;
    let mut x: Vec<f32> = test_data(n, 14).iter().map(|v| v * 6.0).collect();
    x[0] = 0.0;
    x[1] = -0.0;
    x[2] = 1.0;
    let (dx, dout) = (gpu.upload(&x).unwrap(), zeros(&gpu, n * 32 * 4));
    gpu.launch(
        &k,
        &LaunchConfig::for_elements(n, 64),
        &kernel_args![dx, dout, n as i32],
    )
    .unwrap();
    let out: Vec<f32> = gpu.download(dout, n * 32).unwrap();
    for i in 0..n {
        let v = x[i] as f64;
        let a = (x[i].abs() + 0.1) as f64;
        let sat = |t: f64| t.clamp(0.0, 1.0);
        let v33 = (x[i] * 3.3) as f64;
        let expect: [(f64, f64); 32] = [
            (v.exp(), 1e-6),
            (a.ln(), 1e-6),
            (v.tanh(), 1e-6),
            (libm::erf(v), 1e-6),
            (a.powf(1.7), 1e-6),
            (v.sin(), 1e-6),
            (v.cos(), 1e-6),
            (1.0 / a.sqrt(), 1e-6),
            (v / a, 1e-6),
            (v33.floor(), 0.0),
            (v33.ceil(), 0.0),
            (v33.round(), 0.0),
            (v33.trunc(), 0.0),
            (((x[i] * 10.0) % 3.0) as f64, 1e-6),
            (((x[i] * 7.5) as f64).round_ties_even(), 0.0),
            (v / a, 1e-7),
            (a.sqrt(), 1e-7),
            (1.0 / (1.0 + (-v).exp()), 1e-6),
            (a.ln_1p(), 1e-6),
            (v.exp2(), 1e-6),
            (a.log2(), 1e-6),
            (v.atan2(a), 1e-6),
            (v.max(0.0) + v.min(0.0) * 0.01, 1e-6),
            (v.exp(), 1e-7),
            (a.ln(), 1e-7),
            (a.sqrt(), 1e-7),
            (a.copysign(v), 0.0),
            (((x[i].abs() + 0.1) * 100.0) as u32 as f64, 0.0),
            (if v == 0.0 { 1.0 } else { 2.0 }, 0.0),
            (sat(v * 2.0), 0.0),
            (((x[i] * 2.5) as f64).round_ties_even(), 0.0),
            (v.hypot(a), 1e-6),
        ];
        for (c, (e, rel)) in expect.iter().enumerate() {
            let got = out[i * 32 + c];
            assert!(
                close(got, *e, rel.max(2e-7)),
                "x = {}, column {c}: got {got}, expected {e}",
                x[i]
            );
        }
    }
}

#[test]
fn integer_and_bit_operations_match_cpu() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "math_ops.cu");
    let k = gpu.kernel(&m, "int_bits").unwrap();
    let n = 517usize;
    let mut x: Vec<u32> = (0..n as u32)
        .map(|i| i.wrapping_mul(2654435761).rotate_left(i % 29) ^ (i << 3))
        .collect();
    x[0] = 0;
    x[1] = 1;
    x[2] = 0x8000_0000;
    x[3] = u32::MAX;
    let (dx, dout) = (gpu.upload(&x).unwrap(), zeros(&gpu, n * 16 * 4));
    gpu.launch(
        &k,
        &LaunchConfig::for_elements(n, 96),
        &kernel_args![dx, dout, n as i32],
    )
    .unwrap();
    let out: Vec<u32> = gpu.download(dout, n * 16).unwrap();
    for i in 0..n {
        let v = x[i];
        let s = v as i32;
        let w = (v as u64).wrapping_mul(2654435761).wrapping_add(12345);
        let sel = 0x3210u32 ^ (i as u32 & 0x7777);
        let pool = (v as u64) | (0x0123_4567u64 << 32);
        let perm = (0..4).fold(0u32, |acc, b| {
            acc | ((((pool >> (8 * ((sel >> (4 * b)) & 7))) & 0xff) as u32) << (8 * b))
        });
        let hi = v ^ 0xdead_beef;
        let funnel = ((((hi as u64) << 32 | v as u64) << (i & 31)) >> 32) as u32;
        let divisor = i as i32 - 300 + (i == 300) as i32;
        let expect: [u32; 16] = [
            v.leading_zeros(),
            v.count_ones(),
            v.reverse_bits(),
            if s == 0 { 0 } else { s.trailing_zeros() + 1 },
            perm,
            funnel,
            s.wrapping_div(divisor) as u32,
            s.wrapping_rem(97) as u32,
            v / 13 + v % 13,
            ((w >> 17) as u32) ^ ((w % 1_000_003) as u32),
            (s.max(-12345) as u32).wrapping_add(v.min(777)),
            (((v as u64 * 0x9e37_79b9u64) >> 32) as u32)
                .wrapping_add(((s as i64 * -7) >> 32) as u32),
            (((s as i64) * (s as i64)) >> 20) as u32,
            (v >> (i & 31)) | ((s >> (i & 31)) as u32),
            w.count_ones() + w.leading_zeros(),
            (s.wrapping_abs() as u32) ^ (v << (i & 15)),
        ];
        for c in 0..16 {
            assert_eq!(
                out[i * 16 + c],
                expect[c],
                "x = {v:#x}, i = {i}, column {c}"
            );
        }
    }
}

#[test]
fn local_arrays_and_dynamic_shared_memory() {
    let gpu = VirtualGpu::default();
    gpu.set_racecheck(true);
    let m = load(&gpu, "math_ops.cu");
    let k = gpu.kernel(&m, "local_and_dynamic_shared").unwrap();
    let n = 150;
    let idx: Vec<i32> = (0..n as i32).map(|i| (i * 7) % 31).collect();
    let (didx, dout) = (gpu.upload(&idx).unwrap(), zeros(&gpu, n * 4));
    let threads = 64usize;
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(threads) as u32, 1, 1),
        block_dim: (threads as u32, 1, 1),
        shared_mem_bytes: (threads * 4) as u32,
    };
    gpu.launch(&k, &cfg, &kernel_args![didx, dout, n as i32])
        .unwrap();
    let out: Vec<f32> = gpu.download(dout, n).unwrap();
    let slot = |i: usize| -> f32 {
        if i >= n {
            return 0.0;
        }
        let t = (i % threads) as f32;
        let k = (idx[i] % 12) as f32;
        k * k + t
    };
    for (i, &got) in out.iter().enumerate() {
        let b = i / threads;
        let next = b * threads + (i % threads + 1) % threads;
        assert_eq!(got, slot(i) + slot(next), "element {i}");
    }
    // Too little dynamic shared memory for the block is an out-of-bounds shared access.
    let small = LaunchConfig {
        shared_mem_bytes: 16,
        ..cfg
    };
    let err = gpu
        .launch(&k, &small, &kernel_args![didx, dout, n as i32])
        .unwrap_err()
        .to_string();
    assert!(err.contains("__shared__"), "{err}");
}

#[test]
fn constant_memory_and_device_globals() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "math_ops.cu");
    let k = gpu.kernel(&m, "constant_scale").unwrap();
    let n = 1234;
    let x = test_data(n, 15);
    let (dx, dout) = (gpu.upload(&x).unwrap(), zeros(&gpu, n * 4));
    let cfg = LaunchConfig {
        grid_dim: (3, 1, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    };
    gpu.launch(&k, &cfg, &kernel_args![dx, dout, n as i32])
        .unwrap();
    let out: Vec<f32> = gpu.download(dout, n).unwrap();
    for i in 0..n {
        assert_eq!(out[i], x[i] * [0.5, 1.0, 2.0, 4.0][i & 3], "element {i}");
    }
    let (calls, size) = m.global("calls").unwrap();
    assert_eq!(size, 4);
    assert_eq!(gpu.download::<u32>(calls, 1).unwrap()[0], n as u32);
    // Constant memory is writable from the host, as with cudaMemcpyToSymbol.
    let (table, _) = m.global("scale_table").unwrap();
    gpu.copy_to_device(table, bytemuck::cast_slice(&[1.0f32, 1.0, 1.0, 1.0]))
        .unwrap();
    gpu.launch(&k, &cfg, &kernel_args![dx, dout, n as i32])
        .unwrap();
    assert_eq!(gpu.download::<f32>(dout, n).unwrap(), x);
}

#[test]
fn warp_primitives_match_cpu() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "warp_ops.cu");
    let k = gpu.kernel(&m, "warp_primitives").unwrap();
    let n = 150usize;
    let threads = 64usize;
    let blocks = n.div_ceil(threads);
    let x: Vec<i32> = (0..n as i32)
        .map(|i| (i * 37 % 23) - 4 + (i == 77) as i32 * 1000)
        .collect();
    let (dx, dout) = (
        gpu.upload(&x).unwrap(),
        zeros(&gpu, blocks * threads * 10 * 4),
    );
    gpu.launch(
        &k,
        &LaunchConfig::for_elements(n, threads as u32),
        &kernel_args![dx, dout, n as i32],
    )
    .unwrap();
    let out: Vec<i32> = gpu.download(dout, n * 10).unwrap();
    let v = |i: usize| if i < n { x[i] } else { -1 };
    for i in 0..n {
        let lane = i % 32;
        let warp0 = i - lane;
        let warp: Vec<i32> = (0..32).map(|l| v(warp0 + l)).collect();
        let odd = |l: usize| if l & 1 == 1 { warp[l] * 3 } else { warp[l] - 5 };
        let same = (0..32)
            .filter(|&l| warp[l] & 3 == warp[lane] & 3)
            .fold(0u32, |m, l| m | 1 << l);
        let expect = [
            warp[(lane * 7) & 31],
            if lane >= 3 {
                warp[lane - 3]
            } else {
                warp[lane]
            },
            warp[lane ^ 1],
            warp.iter().any(|&w| w < 0) as i32,
            warp.iter().all(|&w| w > 0) as i32,
            same as i32,
            warp.iter().sum::<i32>(),
            *warp.iter().max().unwrap(),
            if lane < 31 { odd(lane + 1) } else { odd(lane) },
            -1,
        ];
        assert_eq!(&out[i * 10..i * 10 + 10], &expect, "thread {i}");
    }
}

#[test]
fn float4_vectors_and_packed_half2() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "warp_ops.cu");
    let k = gpu.kernel(&m, "float4_axpy_half2").unwrap();
    let n4 = 77usize;
    let (x, y) = (test_data(n4 * 4, 16), test_data(n4 * 4, 17));
    let (dx, dy, dh) = (
        gpu.upload(&x).unwrap(),
        gpu.upload(&y).unwrap(),
        zeros(&gpu, n4 * 4),
    );
    let report = gpu
        .launch_with_report(
            &k,
            &LaunchConfig::for_elements(n4, 32),
            &kernel_args![dx, dy, dh, n4 as i32],
        )
        .unwrap();
    let out: Vec<f32> = gpu.download(dy, n4 * 4).unwrap();
    for i in 0..n4 * 4 {
        assert_eq!(out[i], 2.0f32.mul_add(x[i], y[i]), "element {i}");
    }
    let h: Vec<u32> = gpu.download(dh, n4).unwrap();
    for i in 0..n4 {
        let (hi, lo) = (f16::from_f32(x[4 * i]), f16::from_f32(x[4 * i + 1]));
        let expect_hi = f16::from_f64(hi.to_f64() * 2.0 + hi.to_f64()).to_bits() as u32;
        let expect_lo = f16::from_f64(lo.to_f64() * 0.5 + lo.to_f64()).to_bits() as u32;
        assert_eq!(h[i], expect_hi << 16 | expect_lo, "pair {i}");
    }
    // Two float4 loads per warp: 32 lanes x 16 bytes = 16 sectors, the last warp's 13 lanes 7 sectors.
    let c = &report.counters;
    assert_eq!(
        (c.global_load_requests, c.global_load_sectors),
        (6, 2 * (16 + 16 + 7)),
        "{c}"
    );
    // One packed fma per element pair: 2 halves x 2 flops.
    assert_eq!(c.fp16_flops, 4 * n4 as u64);
}

#[test]
fn device_function_calls_are_inlined() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "calls.cu");
    let k = gpu.kernel(&m, "call_chain").unwrap();
    let n = 100;
    let x = test_data(n, 18);
    let (dx, dout) = (gpu.upload(&x).unwrap(), zeros(&gpu, n * 4));
    gpu.launch(
        &k,
        &LaunchConfig::for_elements(n, 32),
        &kernel_args![dx, dout, n as i32],
    )
    .unwrap();
    let out: Vec<f32> = gpu.download(dout, n).unwrap();
    for i in 0..n {
        let kk = i as i32 - 3;
        let expect = if kk < 0 {
            -1.0
        } else {
            (x[i] * (kk % 6) as f32 + 1.0) * 0.5
        };
        assert_eq!(out[i], expect, "element {i}");
    }
}

#[test]
fn failed_device_assert_is_an_error() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "calls.cu");
    let k = gpu.kernel(&m, "checked_index").unwrap();
    let n = 40;
    let mut idx: Vec<i32> = (0..n as i32).collect();
    let (didx, dout) = (gpu.upload(&idx).unwrap(), zeros(&gpu, n * 4));
    gpu.launch(
        &k,
        &LaunchConfig::for_elements(n, 32),
        &kernel_args![didx, dout, n as i32],
    )
    .unwrap();
    assert_eq!(gpu.download::<i32>(dout, n).unwrap()[39], 78);
    idx[17] = -1;
    gpu.copy_to_device(didx, bytemuck::cast_slice(&idx))
        .unwrap();
    let err = gpu
        .launch(
            &k,
            &LaunchConfig::for_elements(n, 32),
            &kernel_args![didx, dout, n as i32],
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("trap") && err.to_string().contains("checked_index"),
        "{err}"
    );
}

#[test]
fn compile_options_reach_nvrtc() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ptx_vm_include");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("offset.cuh"), "#define BASE_OFFSET 40\n").unwrap();
    let source = "#include \"offset.cuh\"\n\
        extern \"C\" __global__ void fill(int* out) { out[threadIdx.x] = BASE_OFFSET + EXTRA + threadIdx.x; }";
    let options = hepar::backend::cuda::nvrtc::NvrtcOptions {
        include_dirs: vec![dir],
        defines: vec![("EXTRA".to_string(), "2".to_string())],
        fast_math: true,
    };
    let gpu = VirtualGpu::default();
    let m = gpu
        .compile_module_with(source, "fill.cu", &options)
        .unwrap_or_else(|e| panic!("{e}"));
    let k = gpu.kernel(&m, "fill").unwrap();
    let out = zeros(&gpu, 8 * 4);
    let cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (8, 1, 1),
        shared_mem_bytes: 0,
    };
    gpu.launch(&k, &cfg, &kernel_args![out]).unwrap();
    assert_eq!(
        gpu.download::<i32>(out, 8).unwrap(),
        (42..50).collect::<Vec<i32>>()
    );
    // Without the define the source does not compile, and the error carries NVRTC's log.
    let err = gpu
        .compile_module(source, "fill.cu")
        .err()
        .expect("must fail")
        .to_string();
    assert!(
        err.contains("fill.cu") && err.contains("compilation failed"),
        "{err}"
    );
}

#[test]
fn malformed_ptx_is_an_error_never_a_panic() {
    let ptx = hepar::backend::cuda::nvrtc::compile_to_ptx(
        &kernel_source("reductions.cu"),
        "reductions.cu",
        Arch::Sm80,
    )
    .unwrap();
    let gpu = VirtualGpu::default();
    let lines: Vec<&str> = ptx.lines().collect();
    let mut failures = 0;
    // Truncations, dropped lines and damaged operands.
    for cut in (0..ptx.len()).step_by(97) {
        failures += gpu
            .load_ptx(&ptx[..ptx.floor_char_boundary(cut)], "cut.ptx")
            .is_err() as usize;
    }
    for (i, line) in lines.iter().enumerate() {
        let mut damaged = lines.clone();
        let replaced = line.replace([',', '[', '%'], "");
        damaged[i] = &replaced;
        failures += gpu.load_ptx(&damaged.join("\n"), "damaged.ptx").is_err() as usize;
        let mut dropped = lines.clone();
        dropped.remove(i);
        let _ = gpu.load_ptx(&dropped.join("\n"), "dropped.ptx");
    }
    assert!(
        failures > 50,
        "damaged modules must be rejected ({failures} rejections)"
    );
}

#[test]
fn cuda_fp16_header_intrinsics() {
    assert!(
        hepar::backend::cuda::nvrtc::cuda_include_dir().is_some(),
        "cuda_fp16.h not found: `pip install nvidia-cuda-runtime-cu12` or set HEPAR_CUDA_INCLUDE"
    );
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "half_intrinsics.cu");
    let k = gpu.kernel(&m, "half_intrinsics").unwrap();
    let n = 97;
    let x: Vec<f32> = test_data(n, 19).iter().map(|v| v * 4.0).collect();
    let cols = 10;
    let (dx, dout) = (gpu.upload(&x).unwrap(), zeros(&gpu, n * cols * 4));
    gpu.launch(
        &k,
        &LaunchConfig::for_elements(n, 32),
        &kernel_args![dx, dout, n as i32],
    )
    .unwrap();
    let out: Vec<f32> = gpu.download(dout, n * cols).unwrap();
    let h = |v: f64| f16::from_f64(v).to_f32();
    for i in 0..n {
        let v = f16::from_f32(x[i]).to_f64();
        let b = bf16::from_f32(x[i]).to_f64();
        let expect = [
            h(v * v + v),
            h(0.75 * 0.75 + 0.75),
            h(v.exp()),
            h(v.max(0.75)),
            if v < 0.75 { 1.0 } else { 0.0 },
            bf16::from_f64(b * b).to_f32(),
            h(v.abs().sqrt()),
            h(v / 0.75),
            (v < 0.75) as u8 as f32 + 2.0 * (0.75 < v) as u8 as f32,
            (v <= 0.75) as u8 as f32,
        ];
        for c in 0..cols {
            let got = out[i * cols + c];
            // hexp is an approximation with a table of corrections: allow one f16 ulp.
            let ulp = if c == 2 {
                (expect[c].abs() * 2f32.powi(-10)).max(2f32.powi(-24))
            } else {
                0.0
            };
            assert!(
                (got - expect[c]).abs() <= ulp,
                "x = {}, column {c}: got {got}, expected {}",
                x[i],
                expect[c]
            );
        }
    }
}

#[test]
fn memcheck_catches_local_array_overrun() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "broken.cu");
    let k = gpu.kernel(&m, "local_overrun").unwrap();
    let cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (8, 1, 1),
        shared_mem_bytes: 0,
    };
    let out = zeros(&gpu, 8 * 4);
    let in_range = gpu.upload(&[0i32, 1, 2, 3, 3, 2, 1, 0]).unwrap();
    gpu.launch(&k, &cfg, &kernel_args![in_range, out]).unwrap();
    assert_eq!(
        gpu.download::<f32>(out, 8).unwrap(),
        vec![0.0, 1.0, 2.0, 3.0, 3.0, 2.0, 1.0, 0.0]
    );
    let overrun = gpu.upload(&[0i32, 1, 2, 3, 4, 2, 1, 0]).unwrap();
    let err = gpu
        .launch(&k, &cfg, &kernel_args![overrun, out])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("__local__")
            && err.contains("thread (4, 0, 0)")
            && err.contains("local frame"),
        "{err}"
    );
}

#[test]
fn wild_pointers_are_reported_not_followed() {
    let ptx = ".version 8.0\n.target sm_80\n.address_size 64\n\
        .visible .entry wild(.param .u64 wild_param_0)\n{\n.reg .b32 %r<3>;\n.reg .b64 %rd<3>;\n\
        ld.param.u64 %rd1, [wild_param_0];\nld.global.u32 %r1, [%rd1];\nld.shared.u32 %r2, [%rd1];\nret;\n}\n";
    let gpu = VirtualGpu::default();
    let m = gpu.load_ptx(ptx, "wild.ptx").unwrap();
    let k = gpu.kernel(&m, "wild").unwrap();
    let cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (1, 1, 1),
        shared_mem_bytes: 0,
    };
    for address in [0u64, 4, u64::MAX - 3, 0x7fff_ffff_fff0] {
        let err = gpu
            .launch(&k, &cfg, &kernel_args![address])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("memcheck") && err.contains("__global__ read"),
            "{address:#x}: {err}"
        );
    }
}

#[test]
fn endless_loop_hits_the_step_limit() {
    let source = "extern \"C\" __global__ void spin(volatile int* flag) { while (*flag == 0) { } }";
    let gpu = VirtualGpu::default();
    gpu.set_step_limit(10_000);
    let m = gpu
        .compile_module(source, "spin.cu")
        .unwrap_or_else(|e| panic!("{e}"));
    let k = gpu.kernel(&m, "spin").unwrap();
    let flag = zeros(&gpu, 4);
    let cfg = LaunchConfig {
        grid_dim: (2, 1, 1),
        block_dim: (64, 1, 1),
        shared_mem_bytes: 0,
    };
    let err = gpu
        .launch(&k, &cfg, &kernel_args![flag])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("spin") && err.contains("endless loop"),
        "{err}"
    );
}

#[test]
fn device_printf_is_captured() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "calls.cu");
    let k = gpu.kernel(&m, "say_hello").unwrap();
    let cfg = LaunchConfig {
        grid_dim: (2, 1, 1),
        block_dim: (32, 1, 1),
        shared_mem_bytes: 0,
    };
    let report = gpu
        .launch_with_report(&k, &cfg, &kernel_args![3i32])
        .unwrap();
    let big = 3i64 << 33;
    let expect = format!(
        "block 0 thread 0: hi  0.00 {big} A\nblock 0 thread 1: hi  0.50 {big} B\n\
         block 1 thread 0: hi  0.00 {big} A\nblock 1 thread 1: hi  0.50 {big} B\n"
    );
    assert_eq!(report.printf_output, expect);
    // printf inside an inlined call chain, from a single thread.
    let k = gpu.kernel(&m, "call_chain").unwrap();
    let (dx, dout) = (gpu.upload(&[2.0f32, 1.0]).unwrap(), zeros(&gpu, 8));
    let report = gpu
        .launch_with_report(
            &k,
            &LaunchConfig::for_elements(2, 32),
            &kernel_args![dx, dout, 2i32],
        )
        .unwrap();
    assert_eq!(report.printf_output, "first output -1.000000\n");
}

#[test]
fn full_mask_shuffle_in_divergent_code_is_an_error() {
    let gpu = VirtualGpu::default();
    let m = load(&gpu, "broken.cu");
    let k = gpu.kernel(&m, "divergent_shuffle").unwrap();
    let out = zeros(&gpu, 32 * 4);
    let cfg = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (32, 1, 1),
        shared_mem_bytes: 0,
    };
    let err = gpu
        .launch(&k, &cfg, &kernel_args![out])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("divergent_shuffle") && err.contains("member mask 0xffffffff"),
        "{err}"
    );
    assert!(err.contains("lanes 0xffff0000"), "{err}");
}
