//! The PTX VM's tensor-core instructions (`mma.sync`, `ldmatrix`, `cvt.rna.tf32.f32`) on kernels
//! compiled by NVRTC for sm_80. The kernels only move registers to and from global memory; the
//! references here apply the PTX ISA's fragment layouts on their own, lane by lane, so a wrong
//! layout in the VM shows as wrong elements. Needs NVRTC: `pip install nvidia-cuda-nvrtc-cu12`.

use half::{bf16, f16};
use hepar::backend::cuda::{DeviceApi, LaunchConfig};
use hepar::kernel_args;
use hepar::ptx::{VirtualGpu, VmModule};

const SOURCE: &str = r#"
#include <cuda_fp16.h>

#define MMA_KERNEL(NAME, OPCODE)                                                              \
extern "C" __global__ void NAME(const unsigned* a, const unsigned* b, const float* c, float* d) { \
    int l = threadIdx.x;                                                                      \
    float d0, d1, d2, d3;                                                                     \
    asm volatile(OPCODE " {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%10, %11, %12, %13};" \
        : "=f"(d0), "=f"(d1), "=f"(d2), "=f"(d3)                                              \
        : "r"(a[4 * l]), "r"(a[4 * l + 1]), "r"(a[4 * l + 2]), "r"(a[4 * l + 3]),             \
          "r"(b[2 * l]), "r"(b[2 * l + 1]),                                                   \
          "f"(c[4 * l]), "f"(c[4 * l + 1]), "f"(c[4 * l + 2]), "f"(c[4 * l + 3]));            \
    d[4 * l] = d0; d[4 * l + 1] = d1; d[4 * l + 2] = d2; d[4 * l + 3] = d3;                   \
}

MMA_KERNEL(mma_tf32, "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32")
MMA_KERNEL(mma_f16, "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32")
MMA_KERNEL(mma_bf16, "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32")

extern "C" __global__ void round_tf32(const float* x, unsigned* y, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        unsigned r;
        asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x[i]));
        y[i] = r;
    }
}

// Four 8x8 tiles of 16-bit values; lane l gives the address of tile l / 8, row 7 - l % 8 (rows in
// reverse, so the test sees that each lane's address is used).
__device__ unsigned row_address(unsigned short* tiles, int l) {
    return (unsigned)__cvta_generic_to_shared(&tiles[(l / 8) * 64 + (7 - l % 8) * 8]);
}

extern "C" __global__ void ldmatrix_x4(const unsigned short* src, unsigned* out, int trans) {
    __shared__ __align__(16) unsigned short tiles[256];
    int l = threadIdx.x;
    for (int i = l; i < 256; i += 32) tiles[i] = src[i];
    __syncthreads();
    unsigned addr = row_address(tiles, l), r0, r1, r2, r3;
    if (trans)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3) : "r"(addr));
    out[4 * l] = r0; out[4 * l + 1] = r1; out[4 * l + 2] = r2; out[4 * l + 3] = r3;
}

extern "C" __global__ void ldmatrix_x1_x2(const unsigned short* src, unsigned* out) {
    __shared__ __align__(16) unsigned short tiles[256];
    int l = threadIdx.x;
    for (int i = l; i < 256; i += 32) tiles[i] = src[i];
    __syncthreads();
    unsigned addr = row_address(tiles, l), r0, r1, r2;
    asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared::cta.b16 {%0}, [%1];" : "=r"(r0) : "r"(addr));
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];"
                 : "=r"(r1), "=r"(r2) : "r"(addr));
    out[3 * l] = r0; out[3 * l + 1] = r1; out[3 * l + 2] = r2;
}
"#;

const LANES: usize = 32;

fn module(gpu: &VirtualGpu) -> VmModule {
    gpu.compile_module(SOURCE, "tensor_core.cu")
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Deterministic pseudo-random floats in [-1, 1) with all 23 mantissa bits in use.
fn test_data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Inputs {
    Tf32,
    F16,
    Bf16,
}

/// Lane `l`'s A, B and C registers and the matrices they stand for, laid out per the PTX ISA.
struct Fragments {
    a_regs: Vec<u32>,
    b_regs: Vec<u32>,
    c_regs: Vec<f32>,
    a: Vec<Vec<f64>>,
    b: Vec<Vec<f64>>,
    c: Vec<Vec<f64>>,
    k: usize,
}

fn random_fragments(inputs: Inputs, seed: u64) -> Fragments {
    let k = if inputs == Inputs::Tf32 { 8 } else { 16 };
    let values = test_data(4 * LANES * 4, seed);
    let mut next = values.into_iter();
    let mut f = Fragments {
        a_regs: vec![0; 4 * LANES],
        b_regs: vec![0; 2 * LANES],
        c_regs: vec![0.0; 4 * LANES],
        a: vec![vec![0.0; k]; 16],
        b: vec![vec![0.0; 8]; k],
        c: vec![vec![0.0; 8]; 16],
        k,
    };
    // A 16-bit value and what it means, for the packed f16/bf16 registers.
    let half = |x: f32| -> (u32, f64) {
        match inputs {
            Inputs::F16 => {
                let h = f16::from_f32(x * 4.0);
                (u32::from(h.to_bits()), f64::from(h.to_f32()))
            }
            _ => {
                let h = bf16::from_f32(x * 4.0);
                (u32::from(h.to_bits()), f64::from(h.to_f32()))
            }
        }
    };
    for lane in 0..LANES {
        let (g, t) = (lane / 4, lane % 4);
        for i in 0..4 {
            if inputs == Inputs::Tf32 {
                // Unrounded f32 bits: the tensor core reads only the top 19.
                let x = next.next().unwrap() * 4.0;
                f.a_regs[4 * lane + i] = x.to_bits();
                let (row, col) = (
                    if i % 2 == 0 { g } else { g + 8 },
                    if i < 2 { t } else { t + 4 },
                );
                f.a[row][col] = truncated_tf32(x);
            } else {
                let (lo, lo_value) = half(next.next().unwrap());
                let (hi, hi_value) = half(next.next().unwrap());
                f.a_regs[4 * lane + i] = lo | hi << 16;
                let row = if i % 2 == 0 { g } else { g + 8 };
                let col = 2 * t + if i < 2 { 0 } else { 8 };
                f.a[row][col] = lo_value;
                f.a[row][col + 1] = hi_value;
            }
        }
        for i in 0..2 {
            if inputs == Inputs::Tf32 {
                let x = next.next().unwrap();
                f.b_regs[2 * lane + i] = x.to_bits();
                f.b[t + 4 * i][g] = truncated_tf32(x);
            } else {
                let (lo, lo_value) = half(next.next().unwrap());
                let (hi, hi_value) = half(next.next().unwrap());
                f.b_regs[2 * lane + i] = lo | hi << 16;
                f.b[2 * t + 8 * i][g] = lo_value;
                f.b[2 * t + 8 * i + 1][g] = hi_value;
            }
        }
        for i in 0..4 {
            let x = next.next().unwrap();
            f.c_regs[4 * lane + i] = x;
            let (row, col) = (if i < 2 { g } else { g + 8 }, 2 * t + i % 2);
            f.c[row][col] = f64::from(x);
        }
    }
    f
}

fn truncated_tf32(x: f32) -> f64 {
    f64::from(f32::from_bits(x.to_bits() & 0xffff_e000))
}

fn run_mma(gpu: &VirtualGpu, kernel: &str, f: &Fragments, threads: u32) -> hepar::Result<Vec<f32>> {
    let m = module(gpu);
    let k = gpu.kernel(&m, kernel)?;
    let (a, b, c) = (
        gpu.upload(&f.a_regs)?,
        gpu.upload(&f.b_regs)?,
        gpu.upload(&f.c_regs)?,
    );
    let d = gpu.upload(&vec![0.0f32; 4 * LANES])?;
    let config = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    };
    gpu.launch(&k, &config, &kernel_args![a, b, c, d])?;
    gpu.download(d, 4 * LANES)
}

/// Each D register against C plus the dot product of its row of A and column of B, within a few
/// f32 ulps of the magnitudes summed.
fn check_mma(inputs: Inputs, kernel: &str, seed: u64) {
    let gpu = VirtualGpu::default();
    let f = random_fragments(inputs, seed);
    let d = run_mma(&gpu, kernel, &f, 32).unwrap_or_else(|e| panic!("{e}"));
    for lane in 0..LANES {
        let (g, t) = (lane / 4, lane % 4);
        for i in 0..4 {
            let (row, col) = (if i < 2 { g } else { g + 8 }, 2 * t + i % 2);
            let products: Vec<f64> = (0..f.k).map(|k| f.a[row][k] * f.b[k][col]).collect();
            let want = f.c[row][col] + products.iter().sum::<f64>();
            let magnitude = f.c[row][col].abs() + products.iter().map(|p| p.abs()).sum::<f64>();
            let got = f64::from(d[4 * lane + i]);
            assert!(
                (got - want).abs() <= 4.0 * f64::from(f32::EPSILON) * magnitude,
                "{kernel} lane {lane} d{i} (row {row}, col {col}): {got} vs {want}"
            );
        }
    }
}

#[test]
fn mma_tf32_m16n8k8_follows_the_fragment_layout() {
    check_mma(Inputs::Tf32, "mma_tf32", 1);
    check_mma(Inputs::Tf32, "mma_tf32", 2);
}

#[test]
fn mma_f16_and_bf16_m16n8k16_follow_the_fragment_layout() {
    check_mma(Inputs::F16, "mma_f16", 3);
    check_mma(Inputs::Bf16, "mma_bf16", 4);
}

#[test]
fn tf32_operands_with_low_bits_set_are_truncated() {
    // A = I (row r, column r for r < 8) scaled by 1 + 2^-11, B = 1, C = 0: in f32 the product
    // would be 1 + 2^-11; the tensor core reads 1.0, as TF32 keeps 10 mantissa bits.
    let gpu = VirtualGpu::default();
    let mut f = random_fragments(Inputs::Tf32, 5);
    let one_plus = 1.0f32 + 2f32.powi(-11);
    for lane in 0..LANES {
        let (g, t) = (lane / 4, lane % 4);
        for i in 0..4 {
            let (row, col) = (
                if i % 2 == 0 { g } else { g + 8 },
                if i < 2 { t } else { t + 4 },
            );
            f.a_regs[4 * lane + i] = if row == col { one_plus.to_bits() } else { 0 };
        }
        for i in 0..2 {
            f.b_regs[2 * lane + i] = 1.0f32.to_bits();
        }
        f.c_regs[4 * lane..4 * lane + 4].fill(0.0);
    }
    let d = run_mma(&gpu, "mma_tf32", &f, 32).unwrap();
    for lane in 0..LANES {
        let g = lane / 4;
        for i in 0..4 {
            let row = if i < 2 { g } else { g + 8 };
            let want = if row < 8 { 1.0 } else { 0.0 };
            assert_eq!(d[4 * lane + i], want, "lane {lane} d{i}");
        }
    }
}

#[test]
fn a_partial_warp_mma_is_an_error() {
    let gpu = VirtualGpu::default();
    let f = random_fragments(Inputs::Tf32, 6);
    let err = run_mma(&gpu, "mma_tf32", &f, 16)
        .expect_err("16 lanes cannot execute mma.sync")
        .to_string();
    assert!(
        err.contains("mma.sync.aligned.m16n8k8") && err.contains("all 32 lanes"),
        "{err}"
    );
}

/// `cvt.rna.tf32.f32` in Rust: nearest, ties away from zero, 10 mantissa bits.
fn rna_tf32(x: f32) -> u32 {
    if x.is_nan() || x.is_infinite() {
        return x.to_bits();
    }
    let bits = x.to_bits();
    let (kept, dropped) = (bits & 0xffff_e000, bits & 0x1fff);
    if dropped >= 0x1000 {
        kept + 0x2000
    } else {
        kept
    }
}

#[test]
fn cvt_rna_tf32_rounds_ties_away_from_zero() {
    let gpu = VirtualGpu::default();
    let m = module(&gpu);
    let k = gpu.kernel(&m, "round_tf32").unwrap();
    let mut x: Vec<f32> = test_data(200, 7).iter().map(|v| v * 1000.0).collect();
    let one = 1.0f32.to_bits();
    x.extend([
        f32::from_bits(one | 0x1000),  // tie: away from zero
        f32::from_bits(one | 0x0fff),  // just below: down
        f32::from_bits(one | 0x3000),  // tie with an odd kept bit
        -f32::from_bits(one | 0x1000), // negative tie
        f32::from_bits(0x7f7f_f000),   // rounds up to infinity
        f32::INFINITY,
        0.0,
        -0.0,
        f32::from_bits(0x0000_1000), // subnormal tie
    ]);
    let n = x.len();
    let (dx, dy) = (gpu.upload(&x).unwrap(), gpu.upload(&vec![0u32; n]).unwrap());
    gpu.launch(
        &k,
        &LaunchConfig::for_elements(n, 64),
        &kernel_args![dx, dy, n as i32],
    )
    .unwrap();
    let y: Vec<u32> = gpu.download(dy, n).unwrap();
    for (i, (&xi, &yi)) in x.iter().zip(&y).enumerate() {
        assert_eq!(
            yi,
            rna_tf32(xi),
            "element {i}: {xi:e} ({:#010x})",
            xi.to_bits()
        );
        assert_eq!(yi & 0x1fff, 0, "element {i}: low bits cleared");
    }
    assert_eq!(y[n - 9], one + 0x2000);
    assert_eq!(y[n - 5], f32::INFINITY.to_bits());
}

/// 4 tiles of distinct 16-bit values, tile-major, row-major within a tile.
fn tile_values() -> Vec<u16> {
    (0..256u16)
        .map(|i| i.wrapping_mul(0x9e3) ^ 0x5a5a)
        .collect()
}

/// The element a lane receives from a tile per the ISA: lane l holds row l / 4, columns 2 (l % 4)
/// and the next one; transposed, row and column swap. Tile rows were addressed in reverse.
fn expected_register(values: &[u16], tile: usize, lane: usize, trans: bool) -> u32 {
    let stored = |row: usize, col: usize| u32::from(values[tile * 64 + (7 - row) * 8 + col]);
    let (g, t) = (lane / 4, lane % 4);
    if trans {
        stored(2 * t, g) | stored(2 * t + 1, g) << 16
    } else {
        stored(g, 2 * t) | stored(g, 2 * t + 1) << 16
    }
}

#[test]
fn ldmatrix_x4_with_and_without_trans() {
    let gpu = VirtualGpu::default();
    let m = module(&gpu);
    let k = gpu.kernel(&m, "ldmatrix_x4").unwrap();
    let values = tile_values();
    let src = gpu.upload(&values).unwrap();
    for trans in [false, true] {
        let out = gpu.upload(&vec![0u32; 4 * LANES]).unwrap();
        let report = gpu
            .launch_with_report(
                &k,
                &LaunchConfig::for_elements(32, 32),
                &kernel_args![src, out, i32::from(trans)],
            )
            .unwrap();
        let got: Vec<u32> = gpu.download(out, 4 * LANES).unwrap();
        for lane in 0..LANES {
            for tile in 0..4 {
                assert_eq!(
                    got[4 * lane + tile],
                    expected_register(&values, tile, lane, trans),
                    "trans {trans} lane {lane} tile {tile}"
                );
            }
        }
        // 16-byte rows, 8 per tile, at consecutive addresses: one wavefront per tile.
        let c = &report.counters;
        assert_eq!(c.shared_bank_conflicts, 0, "{report}");
        assert!(c.shared_load_requests >= 4, "{report}");
    }
}

#[test]
fn ldmatrix_x1_and_x2_use_the_first_8_and_16_lanes() {
    let gpu = VirtualGpu::default();
    let m = module(&gpu);
    let k = gpu.kernel(&m, "ldmatrix_x1_x2").unwrap();
    let values = tile_values();
    let src = gpu.upload(&values).unwrap();
    let out = gpu.upload(&vec![0u32; 3 * LANES]).unwrap();
    gpu.launch(
        &k,
        &LaunchConfig::for_elements(32, 32),
        &kernel_args![src, out],
    )
    .unwrap();
    let got: Vec<u32> = gpu.download(out, 3 * LANES).unwrap();
    for lane in 0..LANES {
        assert_eq!(
            got[3 * lane],
            expected_register(&values, 0, lane, false),
            "x1 lane {lane}"
        );
        for tile in 0..2 {
            assert_eq!(
                got[3 * lane + 1 + tile],
                expected_register(&values, tile, lane, true),
                "x2.trans lane {lane} tile {tile}"
            );
        }
    }
}

#[test]
fn unsupported_mma_shapes_are_errors_naming_them() {
    let ptx = ".version 8.0\n.target sm_80\n.address_size 64\n\
        .visible .entry k(.param .u64 k_param_0)\n{\n.reg .f32 %f<9>;\n.reg .b32 %r<9>;\n\
        mma.sync.aligned.m16n8k4.row.col.f32.tf32.tf32.f32 {%f1,%f2,%f3,%f4}, {%r1,%r2}, {%r3}, {%f5,%f6,%f7,%f8};\n\
        ret;\n}\n";
    let err = VirtualGpu::default()
        .load_ptx(ptx, "m16n8k4.ptx")
        .err()
        .expect("m16n8k4 is not modelled")
        .to_string();
    assert!(err.contains("mma.sync.aligned.m16n8k4"), "{err}");
}
