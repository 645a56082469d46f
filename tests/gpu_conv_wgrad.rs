//! The implicit-GEMM weight-gradient kernel (`conv_backward_weight_tiled_*` in kernels/conv.cu)
//! on each GPU test device: against the CPU backend on geometries that are not multiples of its
//! tiles (odd sizes, channels not multiples of 8, groups 1, 4 and depthwise in one launch,
//! dilation 2 to 5, stride 2, 1x1 kernels, several splits of the reduction), the transposed
//! convolutions' weight gradients (k2 s2, k4 s2 p1) through the dispatch, the same bits on every
//! run, under racecheck, an f64 gradient check, and by its counters on a slice of the U-Net's big
//! 3D layer: loads within 1.25x the ideal sectors, no shared-memory bank conflicts, and an
//! arithmetic intensity above the H100's ridge point.

mod common;

use common::conv_cases::{assert_close_scaled, geometry, storage, values};
use common::gpu_test_devices;
use hepar::autograd::gradcheck::{gradcheck, GradcheckOptions};
use hepar::backend::cuda::context::ptx_vm;
use hepar::backend::cuda::{
    backward_weight_path, storage_backward_weight_on, tiled_weight_path, WeightPath,
};
use hepar::backend::{BackendStorage, ConvGeometry, ConvTransposeGeometry, Device};
use hepar::tensor::{DType, Tensor};

/// f32 tolerance, relative to the largest expected magnitude.
const F32_TOL: f64 = 2e-5;

/// Racecheck and the launch recording are switches of the whole VM: the tests take turns.
static VM_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn vm_turn() -> std::sync::MutexGuard<'static, ()> {
    VM_TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn randn(len: usize, dtype: DType, seed: u64) -> Tensor {
    Tensor::randn(&[len], DType::F64, seed)
        .to_dtype(dtype)
        .unwrap()
}

fn tiled(g: &ConvGeometry, elem: usize) -> hepar::backend::cuda::WgTile {
    match tiled_weight_path(g, elem) {
        WeightPath::Tiled(t) => t,
        WeightPath::Direct => panic!("{g:?} has no weight-gradient tile"),
    }
}

/// Geometries for the tiled kernel (run on it whatever the dispatch rule says).
fn cases() -> Vec<ConvGeometry> {
    vec![
        // 2D: 11 output channels of a 16-channel tile, a column tail.
        geometry(2, 5, 11, 1, [1, 9, 37], [1, 3, 3], 1, 1, 1),
        // 2D: 13 input channels -> 117 (channel, tap) columns over several column blocks.
        geometry(1, 13, 8, 1, [1, 7, 33], [1, 3, 3], 1, 1, 1),
        // 2D, 4 groups of 3 -> 9 channels, dilation 2.
        geometry(1, 12, 36, 4, [1, 7, 35], [1, 3, 3], 1, 2, 2),
        // 2D, dilation 5.
        geometry(1, 3, 8, 1, [1, 13, 40], [1, 3, 3], 1, 5, 5),
        // 2D, stride 2 (phase-split patch rows), 4 groups.
        geometry(2, 8, 40, 4, [1, 11, 67], [1, 3, 3], 2, 1, 1),
        // 2D depthwise (groups = channels), one launch over all 6 groups.
        geometry(1, 6, 6, 6, [1, 9, 35], [1, 3, 3], 1, 1, 1),
        // 2D 1x1: the columns are 20 input channels.
        geometry(1, 20, 9, 1, [1, 5, 33], [1, 1, 1], 1, 0, 1),
        // 2D: enough position tiles for several splits of the reduction.
        geometry(2, 3, 8, 1, [1, 40, 40], [1, 3, 3], 1, 1, 1),
        // 3D: 17 output channels, 5 input channels.
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
fn tiled_weight_gradient_matches_the_cpu_on_awkward_geometries() {
    let _turn = vm_turn();
    let several_splits = cases().iter().filter(|g| tiled(g, 4).splits() > 1).count();
    assert!(several_splits > 0, "no case splits the reduction");
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            for (i, g) in cases().iter().enumerate() {
                let path = WeightPath::Tiled(tiled(g, dtype.size_in_bytes()));
                let x = randn(g.input_len(), dtype, 10 * i as u64);
                let gy = randn(g.output_len(), dtype, 10 * i as u64 + 1);
                let want = storage(&x, Device::Cpu)
                    .conv_backward_weight(&storage(&gy, Device::Cpu), g)
                    .unwrap();
                let got =
                    storage_backward_weight_on(&storage(&x, dev), &storage(&gy, dev), g, path)
                        .unwrap();
                assert_close_scaled(
                    &values(&got),
                    &values(&want),
                    dtype,
                    F32_TOL,
                    &format!("{dtype} weight gradient case {i} on {dev} {g:?}"),
                );
            }
        }
    }
}

#[test]
fn tiled_weight_gradient_gives_the_same_bits_on_every_run() {
    let _turn = vm_turn();
    let g = geometry(2, 3, 8, 1, [1, 40, 40], [1, 3, 3], 1, 1, 1);
    let tile = tiled(&g, 4);
    assert!(tile.splits() > 1, "{tile:?}");
    for dev in gpu_test_devices() {
        let x = storage(&randn(g.input_len(), DType::F32, 1), dev);
        let gy = storage(&randn(g.output_len(), DType::F32, 2), dev);
        let bits = || {
            let s = storage_backward_weight_on(&x, &gy, &g, WeightPath::Tiled(tile)).unwrap();
            values(&s)
                .iter()
                .map(|v| (*v as f32).to_bits())
                .collect::<Vec<_>>()
        };
        assert_eq!(bits(), bits(), "on {dev}");
    }
}

#[allow(clippy::too_many_arguments)]
fn transposed(
    cin: usize,
    cout: usize,
    input: [usize; 3],
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
) -> ConvTransposeGeometry {
    let t = ConvTransposeGeometry {
        batch: 2,
        in_channels: cin,
        out_channels: cout,
        groups: 1,
        input,
        kernel,
        stride,
        padding,
        dilation: [1; 3],
        output_padding: [0; 3],
    };
    t.validate().unwrap();
    t
}

#[test]
fn transposed_weight_gradients_run_on_the_tiles() {
    let _turn = vm_turn();
    let cases = [
        // The RibFrac decoder's ConvTranspose3d k2 s2.
        transposed(9, 5, [2, 3, 17], [2; 3], [2; 3], [0; 3]),
        // The U-Net course's ConvTranspose2d k4 s2 p1.
        transposed(10, 6, [1, 5, 17], [1, 4, 4], [1, 2, 2], [0, 1, 1]),
    ];
    for dev in gpu_test_devices() {
        for (i, t) in cases.iter().enumerate() {
            assert!(
                matches!(backward_weight_path(&t.as_conv(), 4), WeightPath::Tiled(_)),
                "case {i} {t:?} should take the tiled kernel"
            );
            let x = randn(t.input_len(), DType::F32, 1 + i as u64);
            let gy = randn(t.output_len(), DType::F32, 2 + i as u64);
            let want = storage(&x, Device::Cpu)
                .conv_transpose_backward_weight(&storage(&gy, Device::Cpu), t)
                .unwrap();
            let got = storage(&x, dev)
                .conv_transpose_backward_weight(&storage(&gy, dev), t)
                .unwrap();
            assert_close_scaled(
                &values(&got),
                &values(&want),
                DType::F32,
                F32_TOL,
                &format!("transposed weight gradient case {i} on {dev} {t:?}"),
            );
        }
    }
}

#[test]
fn weight_gradient_dispatch_tiles_the_big_layers_only() {
    let big3d = geometry(16, 16, 16, 1, [128, 128, 128], [3; 3], 1, 1, 1);
    let big2d = geometry(32, 32, 32, 1, [1, 256, 256], [1, 3, 3], 1, 1, 1);
    for g in [big3d, big2d] {
        match backward_weight_path(&g, 4) {
            WeightPath::Tiled(t) => assert!(t.splits() > 1, "{t:?}"),
            WeightPath::Direct => panic!("{g:?} should take the tiled kernel"),
        }
    }
    let depthwise = geometry(1, 16, 16, 16, [1, 9, 40], [1, 3, 3], 1, 1, 1);
    let narrow = geometry(1, 16, 16, 1, [1, 9, 12], [1, 3, 3], 1, 1, 1);
    for g in [depthwise, narrow] {
        assert_eq!(backward_weight_path(&g, 4), WeightPath::Direct, "{g:?}");
    }
    // One channel's 3D patch at dilation 12 does not fit even at the smallest position tile.
    let huge = geometry(1, 2, 16, 1, [30, 30, 60], [3, 3, 3], 1, 12, 12);
    assert_eq!(tiled_weight_path(&huge, 8), WeightPath::Direct);
}

#[test]
fn tiled_weight_gradient_is_free_of_shared_memory_races() {
    let _turn = vm_turn();
    let vm = ptx_vm();
    for g in [
        geometry(1, 6, 9, 1, [5, 9, 33], [3, 3, 3], 1, 1, 1),
        geometry(2, 13, 10, 1, [1, 7, 40], [1, 3, 3], 2, 1, 1),
    ] {
        let x = randn(g.input_len(), DType::F32, 1);
        let gy = randn(g.output_len(), DType::F32, 2);
        let path = WeightPath::Tiled(tiled(&g, 4));
        vm.driver().set_racecheck(true);
        let got = storage_backward_weight_on(
            &storage(&x, Device::PtxVm),
            &storage(&gy, Device::PtxVm),
            &g,
            path,
        );
        vm.driver().set_racecheck(false);
        let want = storage(&x, Device::Cpu)
            .conv_backward_weight(&storage(&gy, Device::Cpu), &g)
            .unwrap();
        assert_close_scaled(
            &values(&got.unwrap()),
            &values(&want),
            DType::F32,
            F32_TOL,
            &format!("tiled weight gradient under racecheck {g:?}"),
        );
    }
}

#[test]
fn weight_gradient_through_the_tiled_kernel_in_f64() {
    let _turn = vm_turn();
    let g = geometry(1, 3, 8, 1, [1, 4, 17], [1, 3, 3], 1, 1, 1);
    assert!(matches!(backward_weight_path(&g, 8), WeightPath::Tiled(_)));
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
        |t| t[0].conv(&t[1], Some(&t[2]), &o),
        &[
            on_vm(&[1, 3, 4, 17], 1),
            on_vm(&[8, 3, 3, 3], 2),
            on_vm(&[8], 3),
        ],
        GradcheckOptions {
            max_elements_per_input: Some(16),
            ..Default::default()
        },
    )
    .unwrap();
}

#[test]
fn weight_gradient_tiles_are_coalesced_and_conflict_free_on_a_slice_of_the_big_3d_layer() {
    let _turn = vm_turn();
    // 3D n16 at 128^3, 16 -> 16 k3: a 4 x 8 x 128 slice.
    let g = geometry(1, 16, 16, 1, [4, 8, 128], [3, 3, 3], 1, 1, 1);
    assert!(matches!(backward_weight_path(&g, 4), WeightPath::Tiled(_)));
    let vm = ptx_vm();
    let x = storage(&randn(g.input_len(), DType::F32, 3), Device::PtxVm);
    let gy = storage(&randn(g.output_len(), DType::F32, 4), Device::PtxVm);
    vm.driver().start_recording();
    let result = x.conv_backward_weight(&gy, &g);
    let reports = vm.driver().take_recording();
    result.unwrap();
    let report = reports
        .into_iter()
        .find(|r| r.kernel == "conv_backward_weight_tiled_f32")
        .expect("a launch of the tiled weight-gradient kernel");
    println!("{g:?}\n{report}");
    let c = report.counters;
    assert!(
        c.load_sectors_over_ideal() <= 1.25,
        "{:.3} sectors over ideal",
        c.load_sectors_over_ideal()
    );
    assert_eq!(c.shared_bank_conflicts, 0);
    // Every multiply-add of the reduction is counted (2 FLOPs), padding taps included.
    let taps: usize = g.kernel.iter().product();
    let useful = 2 * g.output_len() * g.in_channels * taps;
    assert!(c.fp32_flops as usize >= useful, "{} FLOPs", c.fp32_flops);
    // Compute-bound on an H100 even if every requested byte came from DRAM.
    let ridge = hepar::backend::cuda::roofline::H100.fp32_ridge();
    let intensity = c.fp32_flops as f64 / c.global_bytes_read as f64;
    assert!(intensity > ridge, "{intensity:.1} FLOP/B, ridge {ridge:.1}");
}
