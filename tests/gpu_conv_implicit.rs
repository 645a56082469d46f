//! The implicit-GEMM convolution kernel (`conv_forward_tiled_*` in kernels/conv.cu: the forward
//! pass, and the stride-1 input gradient as its adjoint) on each GPU test device (the PTX VM,
//! real GPUs where HEPAR_TEST_DEVICES lists them): against the CPU backend on geometries that are not multiples of its tiles (odd sizes,
//! channels not multiples of 8 or 16, groups 1 and 4, dilation 2 to 5, stride 2, several input
//! channel chunks), under racecheck, and by its counters on slices of the U-Net's big layers:
//! loads within 1.25x the ideal sectors, no shared-memory bank conflicts, and an arithmetic
//! intensity above the H100's ridge point. A deliberately unpadded tile shows that the
//! bank-conflict counter sees conflicts when there are some.

mod common;

use common::conv_cases::{assert_close_scaled, geometry, storage, values};
use common::gpu_test_devices;
use hepar::autograd::gradcheck::{gradcheck, GradcheckOptions};
use hepar::backend::cuda::context::ptx_vm;
use hepar::backend::cuda::{backward_input_path, forward_path, ConvPath, DeviceApi, LaunchConfig};
use hepar::backend::{BackendStorage, ConvGeometry, ConvTransposeGeometry, Device};
use hepar::kernel_args;
use hepar::ptx::VirtualGpu;
use hepar::tensor::{DType, Tensor};

/// f32 tolerance, relative to the largest expected magnitude.
const F32_TOL: f64 = 1e-5;

/// The tests of this file take turns on the process's VM: racecheck and the launch recording
/// are switches of the whole VM.
static VM_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn vm_turn() -> std::sync::MutexGuard<'static, ()> {
    VM_TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn randn(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    Tensor::randn(shape, DType::F64, seed)
        .to_dtype(dtype)
        .unwrap()
}

/// Geometries the dispatch rule sends to the tiled kernel.
fn tiled_cases() -> Vec<ConvGeometry> {
    vec![
        // 2D: two column tiles (the second a tail), 11 channels of a 16-channel tile.
        geometry(2, 5, 11, 1, [1, 9, 37], [1, 3, 3], 1, 1, 1),
        // 2D: 13 input channels over two chunks.
        geometry(1, 13, 8, 1, [1, 7, 33], [1, 3, 3], 1, 1, 1),
        // 2D, 4 groups of 3 -> 9 channels, dilation 2.
        geometry(1, 12, 36, 4, [1, 7, 35], [1, 3, 3], 1, 2, 2),
        // 2D, dilation 5.
        geometry(1, 3, 8, 1, [1, 13, 40], [1, 3, 3], 1, 5, 5),
        // 2D, stride 2 (phase-split patch rows), 4 groups.
        geometry(2, 8, 40, 4, [1, 11, 67], [1, 3, 3], 2, 1, 1),
        // 2D, the U-Net course's 4 x 4 stride-2 down-sampling with padding 1.
        geometry(1, 3, 9, 1, [1, 10, 66], [1, 4, 4], 2, 1, 1),
        // 3D: 17 channels (a full and a one-channel tile), two chunks of input channels.
        geometry(1, 5, 17, 1, [5, 9, 33], [3, 3, 3], 1, 1, 1),
        // 3D, 4 groups, stride 2.
        geometry(1, 8, 32, 4, [7, 6, 40], [3, 3, 3], 2, 1, 1),
        // 3D, dilation 3.
        geometry(1, 3, 9, 1, [7, 8, 36], [3, 3, 3], 1, 3, 3),
        // 3D, kernel 2 stride 2 without padding.
        geometry(2, 5, 8, 1, [4, 6, 34], [2, 2, 2], 2, 0, 1),
    ]
}

#[test]
fn tiled_forward_matches_the_cpu_on_awkward_geometries() {
    let _turn = vm_turn();
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            for (i, g) in tiled_cases().iter().enumerate() {
                // In f64 the largest patches exceed the shared-memory budget: direct there.
                let tiled = matches!(forward_path(g, dtype.size_in_bytes()), ConvPath::Tiled(_));
                assert!(
                    tiled || dtype == DType::F64 && (i == 7 || i == 9),
                    "{dtype} case {i} {g:?} should take the tiled kernel"
                );
                let seed = 10 * i as u64;
                let x = randn(&[g.input_len()], dtype, seed);
                let w = randn(&[g.weight_len()], dtype, seed + 1);
                let b = randn(&[g.out_channels], dtype, seed + 2);
                let cpu = |t: &Tensor| storage(t, Device::Cpu);
                let on = |t: &Tensor| storage(t, dev);
                for bias in [false, true] {
                    let want = cpu(&x)
                        .conv(&cpu(&w), bias.then(|| cpu(&b)).as_ref(), g)
                        .unwrap();
                    let got = on(&x)
                        .conv(&on(&w), bias.then(|| on(&b)).as_ref(), g)
                        .unwrap();
                    assert_close_scaled(
                        &values(&got),
                        &values(&want),
                        dtype,
                        F32_TOL,
                        &format!("{dtype} case {i} (bias {bias}) on {dev} {g:?}"),
                    );
                }
            }
        }
    }
}

/// Stride-1 geometries whose input gradient the tiled kernel computes as the adjoint convolution.
fn adjoint_cases() -> Vec<ConvGeometry> {
    vec![
        geometry(1, 9, 5, 1, [5, 9, 33], [3, 3, 3], 1, 1, 1),
        geometry(1, 36, 12, 4, [1, 7, 35], [1, 3, 3], 1, 2, 2),
        // Padding 1 at dilation 3: the adjoint pads by 5.
        geometry(2, 8, 3, 1, [1, 12, 40], [1, 3, 3], 1, 1, 3),
        // An even kernel: the adjoint pads by 1 on each side of a 2-tap axis.
        geometry(1, 8, 4, 1, [4, 5, 20], [2, 2, 2], 1, 0, 1),
        // Stride 2: four (2D) and eight (3D) stride phases, odd input sizes.
        geometry(2, 9, 6, 1, [1, 11, 37], [1, 3, 3], 2, 1, 1),
        geometry(1, 16, 8, 2, [5, 7, 35], [3, 3, 3], 2, 1, 1),
        geometry(1, 8, 5, 1, [1, 10, 40], [1, 4, 4], 2, 1, 1),
    ]
}

#[test]
fn tiled_backward_input_matches_the_cpu() {
    let _turn = vm_turn();
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            for (i, g) in adjoint_cases().iter().enumerate() {
                assert!(
                    matches!(
                        backward_input_path(g, dtype.size_in_bytes()),
                        ConvPath::Tiled(_)
                    ),
                    "case {i} {g:?} should take the tiled kernel"
                );
                let gy = randn(&[g.output_len()], dtype, 50 + i as u64);
                let w = randn(&[g.weight_len()], dtype, 60 + i as u64);
                let want = storage(&gy, Device::Cpu)
                    .conv_backward_input(&storage(&w, Device::Cpu), g)
                    .unwrap();
                let got = storage(&gy, dev)
                    .conv_backward_input(&storage(&w, dev), g)
                    .unwrap();
                assert_close_scaled(
                    &values(&got),
                    &values(&want),
                    dtype,
                    F32_TOL,
                    &format!("{dtype} backward input case {i} on {dev} {g:?}"),
                );
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn transposed(
    cin: usize,
    cout: usize,
    groups: usize,
    input: [usize; 3],
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
    output_padding: [usize; 3],
) -> ConvTransposeGeometry {
    let t = ConvTransposeGeometry {
        batch: 2,
        in_channels: cin,
        out_channels: cout,
        groups,
        input,
        kernel,
        stride,
        padding,
        dilation: [1; 3],
        output_padding,
    };
    t.validate().unwrap();
    t
}

#[test]
fn transposed_convolutions_run_on_the_tiles_with_their_bias() {
    let _turn = vm_turn();
    let cases = [
        // Stride 1, 2 groups.
        transposed(4, 16, 2, [1, 6, 33], [1, 3, 3], [1; 3], [0, 1, 1], [0; 3]),
        // The RibFrac decoder's ConvTranspose3d k2 s2.
        transposed(5, 9, 1, [2, 3, 17], [2; 3], [2; 3], [0; 3], [0; 3]),
        // The U-Net course's ConvTranspose2d k4 s2 p1.
        transposed(6, 8, 1, [1, 5, 17], [1, 4, 4], [1, 2, 2], [0, 1, 1], [0; 3]),
        // With output padding and groups: phases of unequal lengths.
        transposed(
            4,
            16,
            2,
            [1, 4, 16],
            [1, 4, 4],
            [1, 2, 2],
            [0, 1, 1],
            [0, 1, 1],
        ),
    ];
    for dev in gpu_test_devices() {
        for (i, t) in cases.iter().enumerate() {
            assert!(
                matches!(backward_input_path(&t.as_conv(), 4), ConvPath::Tiled(_)),
                "case {i} {t:?} should take the tiled kernel"
            );
            let x = randn(&[t.input_len()], DType::F32, 1 + i as u64);
            let w = randn(&[t.weight_len()], DType::F32, 2 + i as u64);
            let b = randn(&[t.out_channels], DType::F32, 3 + i as u64);
            let want = storage(&x, Device::Cpu)
                .conv_transpose(
                    &storage(&w, Device::Cpu),
                    Some(&storage(&b, Device::Cpu)),
                    t,
                )
                .unwrap();
            let got = storage(&x, dev)
                .conv_transpose(&storage(&w, dev), Some(&storage(&b, dev)), t)
                .unwrap();
            assert_close_scaled(
                &values(&got),
                &values(&want),
                DType::F32,
                F32_TOL,
                &format!("conv_transpose case {i} on {dev} {t:?}"),
            );
        }
    }
}

#[test]
fn gradients_through_the_tiled_kernels_in_f64() {
    let _turn = vm_turn();
    // Forward and input gradient both tiled: 8 -> 8 channels, 17 output columns.
    let g = geometry(1, 8, 8, 1, [1, 4, 17], [1, 3, 3], 1, 1, 1);
    assert!(matches!(forward_path(&g, 8), ConvPath::Tiled(_)));
    assert!(matches!(backward_input_path(&g, 8), ConvPath::Tiled(_)));
    let o = hepar::ops::conv::ConvOptions {
        padding: vec![1],
        ..Default::default()
    };
    let on_vm = |shape: &[usize], seed| {
        Tensor::randn(shape, DType::F64, seed)
            .to_device(Device::PtxVm)
            .unwrap()
    };
    gradcheck(
        |t| t[0].conv(&t[1], None, &o),
        &[on_vm(&[1, 8, 4, 17], 1), on_vm(&[8, 8, 3, 3], 2)],
        GradcheckOptions {
            max_elements_per_input: Some(16),
            ..Default::default()
        },
    )
    .unwrap();
}

#[test]
fn dispatch_sends_depthwise_narrow_and_oversized_layers_to_the_direct_kernel() {
    let depthwise = geometry(1, 16, 16, 16, [1, 9, 40], [1, 3, 3], 1, 1, 1);
    let narrow = geometry(1, 16, 16, 1, [1, 9, 12], [1, 3, 3], 1, 1, 1);
    // One channel's 3D patch at dilation 5 exceeds 48 KiB in f64.
    let huge = geometry(1, 2, 16, 1, [12, 12, 40], [3, 3, 3], 1, 5, 5);
    for g in [depthwise, narrow] {
        assert_eq!(forward_path(&g, 4), ConvPath::Direct, "{g:?}");
    }
    assert_eq!(forward_path(&huge, 8), ConvPath::Direct);
    // Strided and dilated, or a stride above the kernel: phases the tiles do not serve.
    let dilated = geometry(1, 16, 16, 1, [1, 16, 64], [1, 3, 3], 2, 2, 2);
    assert_eq!(backward_input_path(&dilated, 4), ConvPath::Direct);
    let sparse = geometry(1, 16, 16, 1, [1, 16, 96], [1, 2, 2], 3, 0, 1);
    assert_eq!(backward_input_path(&sparse, 4), ConvPath::Direct);
    let big3d = geometry(1, 16, 16, 1, [128, 128, 128], [3; 3], 1, 1, 1);
    match forward_path(&big3d, 4) {
        ConvPath::Tiled(t) => assert!(t.chunk() >= 2, "{t:?}"),
        ConvPath::Direct => panic!("the big 3D layer should be tiled"),
    }
}

#[test]
fn tiled_forward_is_free_of_shared_memory_races() {
    let _turn = vm_turn();
    let vm = ptx_vm();
    for g in [
        geometry(1, 6, 9, 1, [5, 9, 33], [3, 3, 3], 1, 1, 1),
        geometry(1, 13, 10, 1, [1, 7, 40], [1, 3, 3], 2, 1, 1),
    ] {
        let x = randn(&[g.input_len()], DType::F32, 1);
        let w = randn(&[g.weight_len()], DType::F32, 2);
        vm.driver().set_racecheck(true);
        let got = storage(&x, Device::PtxVm).conv(&storage(&w, Device::PtxVm), None, &g);
        vm.driver().set_racecheck(false);
        let want = storage(&x, Device::Cpu)
            .conv(&storage(&w, Device::Cpu), None, &g)
            .unwrap();
        assert_close_scaled(
            &values(&got.unwrap()),
            &values(&want),
            DType::F32,
            F32_TOL,
            &format!("tiled forward under racecheck {g:?}"),
        );
    }
    // The stride phases of a k4 s2 p1 transposed convolution, one launch each.
    let t = transposed(6, 8, 1, [1, 5, 17], [1, 4, 4], [1, 2, 2], [0, 1, 1], [0; 3]);
    let x = randn(&[t.input_len()], DType::F32, 5);
    let w = randn(&[t.weight_len()], DType::F32, 6);
    vm.driver().set_racecheck(true);
    let got = storage(&x, Device::PtxVm).conv_transpose(&storage(&w, Device::PtxVm), None, &t);
    vm.driver().set_racecheck(false);
    let want = storage(&x, Device::Cpu)
        .conv_transpose(&storage(&w, Device::Cpu), None, &t)
        .unwrap();
    assert_close_scaled(
        &values(&got.unwrap()),
        &values(&want),
        DType::F32,
        F32_TOL,
        "transposed k4s2p1 under racecheck",
    );
}

/// The counters of the tiled kernel's launch for `g` (f32).
fn tiled_counters(g: &ConvGeometry) -> hepar::ptx::LaunchCounters {
    let vm = ptx_vm();
    let x = storage(&randn(&[g.input_len()], DType::F32, 3), Device::PtxVm);
    let w = storage(&randn(&[g.weight_len()], DType::F32, 4), Device::PtxVm);
    vm.driver().start_recording();
    let result = x.conv(&w, None, g);
    let reports = vm.driver().take_recording();
    result.unwrap();
    let report = reports
        .into_iter()
        .find(|r| r.kernel == "conv_forward_tiled_f32")
        .expect("a launch of the tiled kernel");
    println!("{g:?}\n{report}");
    report.counters
}

#[test]
fn tile_loads_are_coalesced_and_conflict_free_on_slices_of_the_big_layers() {
    let _turn = vm_turn();
    // 3D n16 at 128^3 (16 -> 16, k3): a 4 x 8 x 128 slice, one tile row of four column tiles.
    // 2D n32 at 256^2 (32 -> 32, k3): a 16 x 256 slice.
    for g in [
        geometry(1, 16, 16, 1, [4, 8, 128], [3, 3, 3], 1, 1, 1),
        geometry(1, 32, 32, 1, [1, 16, 256], [1, 3, 3], 1, 1, 1),
    ] {
        let c = tiled_counters(&g);
        assert!(
            c.load_sectors_over_ideal() <= 1.25,
            "{g:?}: {:.3} sectors over ideal",
            c.load_sectors_over_ideal()
        );
        assert!(c.sectors_per_store_request() <= 4.01, "{g:?}");
        assert_eq!(c.shared_bank_conflicts, 0, "{g:?}");
        // Every multiply-add of the convolution is counted once (2 FLOPs), padding taps included.
        let taps: usize = g.kernel.iter().product();
        let useful = 2 * g.output_len() * g.in_channels * taps;
        assert!(
            c.fp32_flops as usize >= useful,
            "{g:?}: {} FLOPs",
            c.fp32_flops
        );
        // Compute-bound on an H100 even if every requested byte came from DRAM.
        let ridge = hepar::backend::cuda::roofline::H100.fp32_ridge();
        let intensity = c.fp32_flops as f64 / c.global_bytes_read as f64;
        assert!(
            intensity > ridge,
            "{g:?}: {intensity:.1} FLOP/B, ridge {ridge:.1}"
        );
    }
}

/// A shared tile transposed through `tile[32][32 + PAD]`: a warp reads one column, 32 words one
/// row pitch apart.
const TRANSPOSE: &str = r#"
template <int PAD>
__device__ void transpose_tile(const float* in, float* out) {
    __shared__ float tile[32][32 + PAD];
    const int x = threadIdx.x, y = threadIdx.y;
    tile[y][x] = in[y * 32 + x];
    __syncthreads();
    out[y * 32 + x] = tile[x][y];
}
extern "C" __global__ void transpose_unpadded(const float* in, float* out) { transpose_tile<0>(in, out); }
extern "C" __global__ void transpose_padded(const float* in, float* out) { transpose_tile<1>(in, out); }
"#;

#[test]
fn an_unpadded_tile_shows_bank_conflicts_and_the_padded_one_none() {
    let gpu = VirtualGpu::default();
    let module = gpu.compile_module(TRANSPOSE, "transpose.cu").unwrap();
    let data: Vec<f32> = (0..1024).map(|i| i as f32).collect();
    let input = gpu.upload(&data).unwrap();
    let config = LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (32, 32, 1),
        shared_mem_bytes: 0,
    };
    let mut conflicts = Vec::new();
    for name in ["transpose_unpadded", "transpose_padded"] {
        let out = gpu.alloc(4096).unwrap();
        let kernel = gpu.kernel(&module, name).unwrap();
        let report = gpu
            .launch_with_report(&kernel, &config, &kernel_args![input, out])
            .unwrap();
        let got: Vec<f32> = gpu.download(out, 1024).unwrap();
        for (i, v) in got.iter().enumerate() {
            assert_eq!(*v, data[(i % 32) * 32 + i / 32], "{name} element {i}");
        }
        conflicts.push(report.counters.shared_bank_conflicts);
    }
    // Unpadded: each of the 32 warps' column reads hits one bank 32 times (31 extra wavefronts).
    assert_eq!(conflicts, vec![32 * 31, 0]);
}
