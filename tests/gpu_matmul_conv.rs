//! The CUDA backend's matmul and reference convolution kernels on each GPU test device (the PTX
//! VM in every run, real GPUs where HEPAR_TEST_DEVICES lists them), against the CPU backend: odd
//! sizes that are not multiples of the tiles, strided and broadcast views, grouped, depthwise,
//! strided, padded and dilated convolutions in 2D and 3D, transposed convolutions, all three
//! passes, under two launch shapes and once under racecheck; f64 gradients checked on the VM.

mod common;

use common::gpu_test_devices;
use hepar::autograd::gradcheck::{gradcheck, GradcheckOptions};
use hepar::backend::cuda::context::ptx_vm;
use hepar::backend::cuda::matmul_with_precision;
use hepar::backend::precision::Precision;
use hepar::backend::{BackendStorage, ConvGeometry, ConvTransposeGeometry, Device, Storage};
use hepar::error::HeparError;
use hepar::ops::conv::ConvOptions;
use hepar::tensor::{DType, Layout, Tensor};

const DIMS: [usize; 5] = [1, 7, 33, 65, 100];

/// Racecheck is a switch of the whole VM: the tests that turn it on and off take turns, so none
/// turns it off under another's launch.
static RACECHECK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn racecheck_turn() -> std::sync::MutexGuard<'static, ()> {
    RACECHECK.lock().unwrap_or_else(|e| e.into_inner())
}

fn tolerance(dtype: DType) -> f64 {
    if dtype == DType::F64 {
        1e-12
    } else {
        1e-5
    }
}

/// Closeness relative to the largest expected magnitude: sums of many products in a different
/// order differ by a few ulps of the largest terms, not of the (possibly tiny) result.
fn assert_close_scaled(got: &[f64], want: &[f64], dtype: DType, what: &str) {
    let scale = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance(dtype) * scale,
            "{what}: element {i}: {g} vs expected {w}"
        );
    }
}

fn randn(shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    Tensor::randn(shape, DType::F64, seed)
        .to_dtype(dtype)
        .unwrap()
}

// ----- matmul ------------------------------------------------------------------------------------

fn check_matmul(a: &Tensor, b: &Tensor, dev: Device, what: &str) {
    let want = a.matmul(b).unwrap();
    let got = a
        .to_device(dev)
        .unwrap()
        .matmul(&b.to_device(dev).unwrap())
        .unwrap();
    assert_eq!(got.device(), dev);
    assert_eq!(got.shape(), want.shape(), "{what}");
    assert_close_scaled(
        &got.to_vec_f64(),
        &want.to_vec_f64(),
        a.dtype(),
        &format!("{what} on {dev}"),
    );
}

#[test]
fn matmul_matches_the_cpu_on_every_size_combination() {
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            for (i, &m) in DIMS.iter().enumerate() {
                for (j, &n) in DIMS.iter().enumerate() {
                    // Every K against every (M, N) diagonal keeps the VM time down while each size
                    // meets each other size on every axis pair.
                    for &k in &[DIMS[(i + j) % 5], DIMS[(i + 2 * j + 1) % 5]] {
                        let seed = (m * 10000 + n * 100 + k) as u64;
                        let a = randn(&[m, k], dtype, seed);
                        let b = randn(&[k, n], dtype, seed + 1);
                        check_matmul(&a, &b, dev, &format!("{dtype} {m}x{k} @ {k}x{n}"));
                    }
                }
            }
        }
    }
}

#[test]
fn matmul_reads_batched_transposed_broadcast_and_offset_views() {
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            let (m, k, n) = (33, 65, 7);
            // Batched, dense.
            let a = randn(&[3, m, k], dtype, 1);
            let b = randn(&[3, k, n], dtype, 2);
            check_matmul(&a, &b, dev, &format!("{dtype} batched"));
            // Both operands transposed views (unit row stride).
            let at = randn(&[3, k, m], dtype, 3).transpose(-1, -2).unwrap();
            let bt = randn(&[3, n, k], dtype, 4).transpose(-1, -2).unwrap();
            assert!(!at.is_contiguous() && !bt.is_contiguous());
            check_matmul(&at, &bt, dev, &format!("{dtype} transposed"));
            check_matmul(&a, &bt, dev, &format!("{dtype} B transposed"));
            check_matmul(&at, &b, dev, &format!("{dtype} A transposed"));
            // Broadcast batch axes (stride 0) and a batch axis permuted to the middle.
            let a4 = randn(&[2, 1, m, k], dtype, 5);
            let b3 = randn(&[3, k, n], dtype, 6);
            check_matmul(&a4, &b3, dev, &format!("{dtype} broadcast batch"));
            let ap = randn(&[m, 3, k], dtype, 7).permute(&[1, 0, 2]).unwrap();
            check_matmul(&ap, &b, dev, &format!("{dtype} permuted batch"));
            // A view with an offset and a row stride larger than its width.
            let an = randn(&[2, m + 5, k + 9], dtype, 8)
                .narrow(1, 3, m)
                .unwrap()
                .narrow(2, 4, k)
                .unwrap();
            let bn = randn(&[2, k, n], dtype, 9);
            check_matmul(&an, &bn, dev, &format!("{dtype} narrowed"));
            // K = 1 and a batch of 1x1 products.
            check_matmul(
                &randn(&[5, 1, 1], dtype, 10),
                &randn(&[5, 1, 1], dtype, 11),
                dev,
                &format!("{dtype} 1x1x1 batch"),
            );
        }
    }
}

#[test]
fn matmul_tiles_are_free_of_shared_memory_races() {
    let _turn = racecheck_turn();
    let vm = ptx_vm();
    vm.driver().set_racecheck(true);
    let a = randn(&[2, 70, 37], DType::F32, 1);
    let b = randn(&[2, 37, 67], DType::F32, 2);
    let result = a
        .to_device(Device::PtxVm)
        .unwrap()
        .matmul(&b.to_device(Device::PtxVm).unwrap());
    vm.driver().set_racecheck(false);
    let got = result.unwrap();
    assert_close_scaled(
        &got.to_vec_f64(),
        &a.matmul(&b).unwrap().to_vec_f64(),
        DType::F32,
        "matmul under racecheck",
    );
}

#[test]
fn matmul_loads_are_coalesced_and_shared_tiles_conflict_free_in_every_layout() {
    // Each operand is staged in the order its unit stride runs, so a warp's loads hit 4 sectors
    // of 32 bytes whether the operand is row-major or transposed.
    let vm = ptx_vm();
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = if ta {
            randn(&[64, 128], DType::F32, 1).transpose(0, 1).unwrap()
        } else {
            randn(&[128, 64], DType::F32, 1)
        };
        let b = if tb {
            randn(&[96, 64], DType::F32, 2).transpose(0, 1).unwrap()
        } else {
            randn(&[64, 96], DType::F32, 2)
        };
        let (ad, bd) = (
            a.to_device(Device::PtxVm).unwrap(),
            b.to_device(Device::PtxVm).unwrap(),
        );
        // Other tests launch on the same VM concurrently: retry until the last report is ours.
        let report = (0..20)
            .find_map(|_| {
                ad.matmul(&bd).unwrap();
                vm.driver()
                    .last_report()
                    .filter(|r| r.kernel == "matmul_f32")
            })
            .expect("a matmul launch report");
        let c = &report.counters;
        let what = format!("A transposed {ta}, B transposed {tb}\n{report}");
        assert!(c.sectors_per_load_request() <= 4.01, "{what}");
        assert!(c.sectors_per_store_request() <= 4.01, "{what}");
        assert_eq!(c.shared_bank_conflicts, 0, "{what}");
    }
}

#[test]
fn matmul_gradients_on_the_vm() {
    gradcheck(
        |t| t[0].matmul(&t[1])?.tanh(),
        &[
            Tensor::randn(&[2, 5, 7], DType::F64, 1)
                .to_device(Device::PtxVm)
                .unwrap(),
            Tensor::randn(&[2, 7, 3], DType::F64, 2)
                .to_device(Device::PtxVm)
                .unwrap(),
        ],
        GradcheckOptions::default(),
    )
    .unwrap();
}

// ----- matmul on TF32 tensor cores ----------------------------------------------------------------

/// `a @ b` (same batch axes) on `dev` at `precision`, through the launcher directly so that tests
/// running at the same time keep the process's precision setting.
fn matmul_at(a: &Tensor, b: &Tensor, dev: Device, precision: Precision) -> Vec<f64> {
    let (a_dev, b_dev) = (a.to_device(dev).unwrap(), b.to_device(dev).unwrap());
    let (al, bl) = (a_dev.layout().clone(), b_dev.layout().clone());
    let result = match (&*a_dev.storage(), &*b_dev.storage()) {
        (Storage::PtxVm(x), Storage::PtxVm(y)) => {
            Storage::PtxVm(matmul_with_precision(x, &al, y, &bl, precision).unwrap())
        }
        (Storage::Cuda(x), Storage::Cuda(y)) => {
            Storage::Cuda(matmul_with_precision(x, &al, y, &bl, precision).unwrap())
        }
        _ => panic!("{dev} is not a GPU"),
    };
    values(&result)
}

/// TF32's error bound for one element: each input rounded to nearest with 10 mantissa bits is
/// off by at most 2^-11 of itself, so a product by (2 + 2^-11) 2^-11 of |a||b|; the f32
/// accumulator rounds once per 8-deep mma step (K / 8 + 1 roundings of at most 2^-24 of the
/// running magnitude). The reference is exact (f64 products of the f32 inputs).
fn tf32_bound(k: usize, magnitude: f64) -> f64 {
    let inputs = (2.0 + 2f64.powi(-11)) * 2f64.powi(-11);
    let accumulation = (k / 8 + 1) as f64 * 2f64.powi(-24);
    (inputs + accumulation) * magnitude + f64::from(f32::MIN_POSITIVE)
}

/// The TF32 product against the exact product of the f32 inputs within `tf32_bound`; returns
/// the TF32 and fp32 kernels' results.
fn check_tf32_matmul(a: &Tensor, b: &Tensor, dev: Device, what: &str) -> (Vec<f64>, Vec<f64>) {
    let k = a.shape()[a.shape().len() - 1];
    let exact = |x: &Tensor| x.to_dtype(DType::F64).unwrap();
    let want = exact(a).matmul(&exact(b)).unwrap().to_vec_f64();
    let magnitude = exact(&a.abs().unwrap())
        .matmul(&exact(&b.abs().unwrap()))
        .unwrap()
        .to_vec_f64();
    let got = matmul_at(a, b, dev, Precision::Tf32);
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, ((g, w), s)) in got.iter().zip(&want).zip(&magnitude).enumerate() {
        assert!(
            (g - w).abs() <= tf32_bound(k, *s),
            "{what} on {dev}: element {i}: {g} vs {w} (bound {})",
            tf32_bound(k, *s)
        );
    }
    (got, matmul_at(a, b, dev, Precision::Fp32))
}

#[test]
fn tf32_matmul_is_within_the_tf32_bound_on_every_size() {
    for dev in gpu_test_devices() {
        for (i, &m) in DIMS.iter().enumerate() {
            for (j, &n) in DIMS.iter().enumerate() {
                let k = DIMS[(i + j) % 5];
                let seed = (m * 10000 + n * 100 + k) as u64;
                let a = randn(&[m, k], DType::F32, seed);
                let b = randn(&[k, n], DType::F32, seed + 1);
                check_tf32_matmul(&a, &b, dev, &format!("tf32 {m}x{k} @ {k}x{n}"));
            }
        }
    }
}

#[test]
fn tf32_matmul_reads_batched_transposed_and_narrowed_views() {
    for dev in gpu_test_devices() {
        let (m, k, n) = (33, 65, 7);
        let a = randn(&[3, m, k], DType::F32, 1);
        let b = randn(&[3, k, n], DType::F32, 2);
        check_tf32_matmul(&a, &b, dev, "tf32 batched");
        let at = randn(&[3, k, m], DType::F32, 3).transpose(-1, -2).unwrap();
        let bt = randn(&[3, n, k], DType::F32, 4).transpose(-1, -2).unwrap();
        check_tf32_matmul(&at, &bt, dev, "tf32 transposed");
        check_tf32_matmul(&a, &bt, dev, "tf32 B transposed");
        check_tf32_matmul(&at, &b, dev, "tf32 A transposed");
        let an = randn(&[2, m + 5, k + 9], DType::F32, 8)
            .narrow(1, 3, m)
            .unwrap()
            .narrow(2, 4, k)
            .unwrap();
        check_tf32_matmul(&an, &randn(&[2, k, n], DType::F32, 9), dev, "tf32 narrowed");
    }
}

#[test]
fn tf32_matmul_is_not_the_fp32_kernel() {
    // Random f32 inputs use all 23 mantissa bits: rounding them to 10 must show in the result.
    for dev in gpu_test_devices() {
        let a = randn(&[40, 50], DType::F32, 21);
        let b = randn(&[50, 30], DType::F32, 22);
        let (tf32, fp32) = check_tf32_matmul(&a, &b, dev, "tf32 vs fp32");
        let differing = tf32.iter().zip(&fp32).filter(|(x, y)| x != y).count();
        assert!(
            differing > tf32.len() / 2,
            "{differing} of {} differ",
            tf32.len()
        );
        // f64 ignores the precision.
        let (a64, b64) = (
            a.to_dtype(DType::F64).unwrap(),
            b.to_dtype(DType::F64).unwrap(),
        );
        assert_eq!(
            matmul_at(&a64, &b64, dev, Precision::Tf32),
            matmul_at(&a64, &b64, dev, Precision::Fp32)
        );
    }
}

#[test]
fn tf32_matmul_tiles_are_free_of_shared_memory_races() {
    let _turn = racecheck_turn();
    let vm = ptx_vm();
    vm.driver().set_racecheck(true);
    let a = randn(&[2, 70, 37], DType::F32, 1);
    let b = randn(&[2, 37, 67], DType::F32, 2);
    let result = std::panic::catch_unwind(|| check_tf32_matmul(&a, &b, Device::PtxVm, "racecheck"));
    vm.driver().set_racecheck(false);
    result.unwrap();
}

// ----- convolution ---------------------------------------------------------------------------------

fn storage(t: &Tensor, dev: Device) -> Storage {
    t.to_device(dev).unwrap().storage().clone()
}

fn values(s: &Storage) -> Vec<f64> {
    s.to_cpu()
        .unwrap()
        .to_f64_vec(&Layout::contiguous(&[s.len()]))
}

#[allow(clippy::too_many_arguments)]
fn geometry(
    batch: usize,
    cin: usize,
    cout: usize,
    groups: usize,
    input: [usize; 3],
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
    dilation: [usize; 3],
) -> ConvGeometry {
    let g = ConvGeometry {
        batch,
        in_channels: cin,
        out_channels: cout,
        groups,
        input,
        kernel,
        stride,
        padding,
        dilation,
    };
    g.validate().unwrap();
    g
}

/// 3D and 2D (depth 1) convolutions: odd sizes, channels not multiples of 8, groups 1, 2 and C,
/// strides, paddings and dilations.
fn conv_cases() -> Vec<ConvGeometry> {
    vec![
        geometry(2, 3, 5, 1, [5, 7, 6], [3, 3, 3], [1; 3], [1; 3], [1; 3]),
        geometry(2, 6, 10, 2, [5, 6, 7], [3, 3, 3], [2; 3], [1; 3], [1; 3]),
        geometry(1, 5, 5, 5, [6, 5, 7], [3, 3, 3], [1; 3], [2; 3], [2; 3]),
        geometry(2, 3, 4, 1, [5, 7, 6], [2, 2, 2], [2; 3], [0; 3], [1; 3]),
        geometry(2, 7, 3, 1, [3, 5, 4], [1, 1, 1], [1; 3], [0; 3], [1; 3]),
        geometry(
            1,
            4,
            6,
            2,
            [5, 6, 5],
            [3, 2, 3],
            [1, 2, 1],
            [1, 0, 1],
            [2, 1, 1],
        ),
        geometry(2, 3, 5, 1, [1, 9, 11], [1, 3, 3], [1; 3], [0, 1, 1], [1; 3]),
        geometry(
            2,
            6,
            4,
            2,
            [1, 11, 9],
            [1, 3, 3],
            [1, 2, 2],
            [0, 1, 1],
            [1, 2, 2],
        ),
        geometry(
            1,
            7,
            7,
            7,
            [1, 10, 13],
            [1, 3, 3],
            [1, 2, 2],
            [0, 1, 1],
            [1; 3],
        ),
        geometry(
            1,
            3,
            2,
            1,
            [1, 9, 8],
            [1, 5, 3],
            [1, 2, 1],
            [0, 2, 0],
            [1, 1, 2],
        ),
    ]
}

#[test]
fn conv_forward_and_backward_passes_match_the_cpu() {
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            for (i, g) in conv_cases().iter().enumerate() {
                let seed = 10 * i as u64;
                let spatial = |c: usize, s: [usize; 3]| [g.batch, c, s[0], s[1], s[2]];
                let x = randn(&spatial(g.in_channels, g.input), dtype, seed);
                let w = randn(&[g.weight_len()], dtype, seed + 1);
                let b = randn(&[g.out_channels], dtype, seed + 2);
                let gy = randn(&spatial(g.out_channels, g.output()), dtype, seed + 3);
                let cpu = |t: &Tensor| storage(t, Device::Cpu);
                let on = |t: &Tensor| storage(t, dev);
                let (xd, wd, bd, gyd) = (on(&x), on(&w), on(&b), on(&gy));
                common::with_launch_shapes(dev, |shape| {
                    let what = format!("{dtype} case {i} {g:?} on {dev}, {shape:?}");
                    for bias in [false, true] {
                        let want = cpu(&x)
                            .conv(&cpu(&w), bias.then(|| cpu(&b)).as_ref(), g)
                            .unwrap();
                        let got = xd.conv(&wd, bias.then_some(&bd), g).unwrap();
                        assert_eq!(got.device(), dev);
                        assert_close_scaled(
                            &values(&got),
                            &values(&want),
                            dtype,
                            &format!("forward (bias {bias}) {what}"),
                        );
                    }
                    let want = cpu(&gy).conv_backward_input(&cpu(&w), g).unwrap();
                    let got = gyd.conv_backward_input(&wd, g).unwrap();
                    assert_close_scaled(
                        &values(&got),
                        &values(&want),
                        dtype,
                        &format!("backward input {what}"),
                    );
                    let want = cpu(&x).conv_backward_weight(&cpu(&gy), g).unwrap();
                    let got = xd.conv_backward_weight(&gyd, g).unwrap();
                    assert_close_scaled(
                        &values(&got),
                        &values(&want),
                        dtype,
                        &format!("backward weight {what}"),
                    );
                });
            }
        }
    }
}

#[test]
fn conv_tensor_op_with_bias_matches_the_cpu_on_strided_inputs() {
    for dev in gpu_test_devices() {
        // A permuted (non-contiguous) input: the op makes it dense before the kernel runs.
        let x = randn(&[2, 6, 7, 5, 3], DType::F32, 1)
            .permute(&[0, 1, 4, 3, 2])
            .unwrap();
        let w = randn(&[4, 3, 3, 3, 3], DType::F32, 2);
        let b = randn(&[4], DType::F32, 3);
        let o = ConvOptions {
            stride: vec![1, 2, 1],
            padding: vec![1],
            groups: 2,
            ..Default::default()
        };
        let want = x.conv(&w, Some(&b), &o).unwrap();
        let got = x
            .to_device(dev)
            .unwrap()
            .conv(
                &w.to_device(dev).unwrap(),
                Some(&b.to_device(dev).unwrap()),
                &o,
            )
            .unwrap();
        assert_eq!(got.shape(), want.shape());
        assert_close_scaled(
            &got.to_vec_f64(),
            &want.to_vec_f64(),
            DType::F32,
            &format!("conv op on {dev}"),
        );
    }
}

#[test]
fn conv_weight_gradient_is_free_of_shared_memory_races() {
    let _turn = racecheck_turn();
    let vm = ptx_vm();
    let g = geometry(2, 4, 3, 1, [3, 5, 4], [3, 3, 3], [1; 3], [1; 3], [1; 3]);
    let x = randn(&[g.input_len()], DType::F32, 1);
    let gy = randn(&[g.output_len()], DType::F32, 2);
    let (xd, gyd) = (storage(&x, Device::PtxVm), storage(&gy, Device::PtxVm));
    vm.driver().set_racecheck(true);
    let got = xd.conv_backward_weight(&gyd, &g);
    vm.driver().set_racecheck(false);
    let want = storage(&x, Device::Cpu)
        .conv_backward_weight(&storage(&gy, Device::Cpu), &g)
        .unwrap();
    assert_close_scaled(
        &values(&got.unwrap()),
        &values(&want),
        DType::F32,
        "weight gradient under racecheck",
    );
    // More taps than one register chunk (5 x 5 x 2 = 50): two chunks per channel pair.
    let g = geometry(1, 2, 3, 1, [3, 6, 7], [2, 5, 5], [1; 3], [0, 2, 2], [1; 3]);
    let x = randn(&[g.input_len()], DType::F64, 3);
    let gy = randn(&[g.output_len()], DType::F64, 4);
    vm.driver().set_racecheck(true);
    let got = storage(&x, Device::PtxVm).conv_backward_weight(&storage(&gy, Device::PtxVm), &g);
    vm.driver().set_racecheck(false);
    let want = storage(&x, Device::Cpu)
        .conv_backward_weight(&storage(&gy, Device::Cpu), &g)
        .unwrap();
    assert_close_scaled(
        &values(&got.unwrap()),
        &values(&want),
        DType::F64,
        "weight gradient over two tap chunks",
    );
    // Few channel pairs over many positions (2 x 8 x 24 x 24 = 9216): the reduction of each pair is
    // split over several blocks and the parts added by a second kernel.
    let g = geometry(2, 1, 3, 1, [8, 24, 24], [3; 3], [1; 3], [1; 3], [1; 3]);
    let x = randn(&[g.input_len()], DType::F64, 5);
    let gy = randn(&[g.output_len()], DType::F64, 6);
    vm.driver().set_racecheck(true);
    let got = storage(&x, Device::PtxVm).conv_backward_weight(&storage(&gy, Device::PtxVm), &g);
    vm.driver().set_racecheck(false);
    let want = storage(&x, Device::Cpu)
        .conv_backward_weight(&storage(&gy, Device::Cpu), &g)
        .unwrap();
    assert_close_scaled(
        &values(&got.unwrap()),
        &values(&want),
        DType::F64,
        "weight gradient split over blocks",
    );
}

// ----- transposed convolution ----------------------------------------------------------------------

fn transpose_cases() -> Vec<ConvTransposeGeometry> {
    let t = |cin, cout, groups, input, kernel, stride, padding, output_padding| {
        let g = ConvTransposeGeometry {
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
        g.validate().unwrap();
        g
    };
    vec![
        // 3D up-sampling of the U-Net decoders: kernel 2, stride 2.
        t(5, 3, 1, [3, 4, 5], [2; 3], [2; 3], [0; 3], [0; 3]),
        t(6, 4, 2, [3, 3, 4], [2; 3], [2; 3], [0; 3], [0; 3]),
        // 2D kernel 4, stride 2, padding 1 (exact doubling), and one with output padding.
        t(3, 5, 1, [1, 5, 6], [1, 4, 4], [1, 2, 2], [0, 1, 1], [0; 3]),
        t(
            4,
            6,
            2,
            [1, 4, 5],
            [1, 4, 4],
            [1, 2, 2],
            [0, 1, 1],
            [0, 1, 1],
        ),
    ]
}

#[test]
fn conv_transpose_passes_match_the_cpu() {
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            for (i, g) in transpose_cases().iter().enumerate() {
                let seed = 100 + 10 * i as u64;
                let x = randn(&[g.input_len()], dtype, seed);
                let w = randn(&[g.weight_len()], dtype, seed + 1);
                let b = randn(&[g.out_channels], dtype, seed + 2);
                let gy = randn(&[g.output_len()], dtype, seed + 3);
                let cpu = |t: &Tensor| storage(t, Device::Cpu);
                let on = |t: &Tensor| storage(t, dev);
                let (xd, wd, bd, gyd) = (on(&x), on(&w), on(&b), on(&gy));
                common::with_launch_shapes(dev, |shape| {
                    let what = format!("{dtype} case {i} {g:?} on {dev}, {shape:?}");
                    for bias in [false, true] {
                        let want = cpu(&x)
                            .conv_transpose(&cpu(&w), bias.then(|| cpu(&b)).as_ref(), g)
                            .unwrap();
                        let got = xd.conv_transpose(&wd, bias.then_some(&bd), g).unwrap();
                        assert_close_scaled(
                            &values(&got),
                            &values(&want),
                            dtype,
                            &format!("forward (bias {bias}) {what}"),
                        );
                    }
                    let want = cpu(&gy).conv_transpose_backward_input(&cpu(&w), g).unwrap();
                    let got = gyd.conv_transpose_backward_input(&wd, g).unwrap();
                    assert_close_scaled(
                        &values(&got),
                        &values(&want),
                        dtype,
                        &format!("backward input {what}"),
                    );
                    let want = cpu(&x)
                        .conv_transpose_backward_weight(&cpu(&gy), g)
                        .unwrap();
                    let got = xd.conv_transpose_backward_weight(&gyd, g).unwrap();
                    assert_close_scaled(
                        &values(&got),
                        &values(&want),
                        dtype,
                        &format!("backward weight {what}"),
                    );
                });
            }
        }
    }
}

// ----- gradients and errors ------------------------------------------------------------------------

fn vm_f64(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, DType::F64, seed)
        .to_device(Device::PtxVm)
        .unwrap()
}

/// A sample of each input's elements: every VM launch is interpreted.
fn sampled() -> GradcheckOptions {
    GradcheckOptions {
        max_elements_per_input: Some(24),
        ..Default::default()
    }
}

#[test]
fn conv3d_gradients_on_the_vm() {
    let o = ConvOptions {
        stride: vec![2, 1, 2],
        padding: vec![1],
        ..Default::default()
    };
    gradcheck(
        |t| t[0].conv(&t[1], None, &o),
        &[vm_f64(&[2, 3, 6, 7, 5], 1), vm_f64(&[4, 3, 3, 3, 3], 2)],
        sampled(),
    )
    .unwrap();
}

#[test]
fn grouped_conv2d_gradients_on_the_vm() {
    let o = ConvOptions {
        padding: vec![2],
        dilation: vec![2],
        groups: 3,
        ..Default::default()
    };
    gradcheck(
        |t| t[0].conv(&t[1], None, &o),
        &[vm_f64(&[2, 6, 7, 6], 3), vm_f64(&[3, 2, 3, 3], 4)],
        sampled(),
    )
    .unwrap();
}

#[test]
fn conv_transpose_gradients_on_the_vm() {
    let o3 = ConvOptions {
        stride: vec![2],
        ..Default::default()
    };
    gradcheck(
        |t| t[0].conv_transpose(&t[1], None, &o3),
        &[vm_f64(&[2, 4, 3, 2, 3], 5), vm_f64(&[4, 3, 2, 2, 2], 6)],
        sampled(),
    )
    .unwrap();
    let o2 = ConvOptions {
        stride: vec![2],
        padding: vec![1],
        output_padding: vec![1],
        groups: 2,
        ..Default::default()
    };
    gradcheck(
        |t| t[0].conv_transpose(&t[1], None, &o2),
        &[vm_f64(&[1, 4, 3, 4], 7), vm_f64(&[4, 2, 4, 4], 8)],
        sampled(),
    )
    .unwrap();
}

#[test]
fn bad_operands_are_typed_errors() {
    let dev = Device::PtxVm;
    let g = geometry(1, 4, 2, 2, [3, 4, 5], [3; 3], [1; 3], [1; 3], [1; 3]);
    let x = storage(&randn(&[g.input_len()], DType::F32, 1), dev);
    let w = storage(&randn(&[g.weight_len()], DType::F32, 2), dev);
    // Storage of the wrong length for the geometry.
    let short = storage(&randn(&[g.input_len() - 1], DType::F32, 3), dev);
    assert!(matches!(
        short.conv(&w, None, &g),
        Err(HeparError::Shape { .. })
    ));
    // A geometry that is not a convolution.
    let bad = ConvGeometry { groups: 3, ..g };
    assert!(matches!(
        x.conv(&w, None, &bad),
        Err(HeparError::InvalidArgument { .. })
    ));
    // Mixed and storage-only dtypes.
    let w64 = storage(&randn(&[g.weight_len()], DType::F64, 2), dev);
    assert!(matches!(
        x.conv_backward_weight(&w64, &g),
        Err(HeparError::DType { .. }) | Err(HeparError::Shape { .. })
    ));
    let x16 = storage(&randn(&[g.input_len()], DType::F16, 1), dev);
    let w16 = storage(&randn(&[g.weight_len()], DType::F16, 2), dev);
    assert!(matches!(
        x16.conv(&w16, None, &g),
        Err(HeparError::DType { .. })
    ));
    let a = Tensor::randn(&[3, 4], DType::F32, 1)
        .to_dtype(DType::BF16)
        .unwrap()
        .to_device(dev)
        .unwrap();
    let err = a.matmul(&a.transpose(0, 1).unwrap()).unwrap_err();
    assert!(matches!(err, HeparError::DType { .. }), "{err}");
    // Mismatched matmul operands at the storage level.
    let (sa, sb) = (
        storage(&randn(&[3, 4], DType::F32, 1), dev),
        storage(&randn(&[5, 2], DType::F32, 2), dev),
    );
    let err = sa
        .matmul(
            &Layout::contiguous(&[3, 4]),
            &sb,
            &Layout::contiguous(&[5, 2]),
        )
        .unwrap_err();
    assert!(matches!(err, HeparError::Shape { .. }), "{err}");
    // The error of a transposed convolution names the op.
    let t = ConvTransposeGeometry {
        batch: 1,
        in_channels: 4,
        out_channels: 2,
        groups: 1,
        input: [2, 2, 2],
        kernel: [2; 3],
        stride: [2; 3],
        padding: [0; 3],
        dilation: [1; 3],
        output_padding: [0; 3],
    };
    let err = x.conv_transpose(&w, None, &t).unwrap_err().to_string();
    assert!(err.contains("conv_transpose"), "{err}");
}
