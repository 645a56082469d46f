//! Pooling and resampling kernels of the CUDA backend on each GPU test device (the PTX VM in every
//! run, real GPUs where HEPAR_TEST_DEVICES lists them), against the CPU backend: forward and
//! backward, f32 and f64, odd sizes, under several launch shapes, and f64 gradchecks on the VM.
//!
//! The kernels visit taps and add terms in the CPU's order with every product and sum rounded on
//! its own, so results are compared bit for bit (NaN matching NaN).

mod common;

use common::{assert_close, gpu_test_devices};
use hepar::autograd::gradcheck::{gradcheck, GradcheckOptions};
use hepar::backend::{
    BackendStorage, CpuStorage, Device, PoolGeometry, Storage, UpsampleGeometry, UpsampleMode,
};
use hepar::ops::pool::PoolOptions;
use hepar::tensor::{DType, Tensor};

/// Storage of `dtype` holding `v` (rounded to f32 if asked) on `dev`.
fn storage(v: &[f64], dtype: DType, dev: Device) -> Storage {
    let cpu = match dtype {
        DType::F32 => CpuStorage::F32(v.iter().map(|&x| x as f32).collect()),
        DType::F64 => CpuStorage::F64(v.to_vec()),
        other => panic!("no test data of {other}"),
    };
    Storage::from_cpu(cpu, dev).unwrap()
}

fn values(s: &Storage) -> Vec<f64> {
    let cpu = s.to_cpu().unwrap();
    match (cpu.as_f64(), cpu.as_f32()) {
        (Some(v), _) => v.to_vec(),
        (_, Some(v)) => v.iter().map(|&x| f64::from(x)).collect(),
        _ => panic!("not a compute dtype"),
    }
}

/// Bit-for-bit equality, NaN matching NaN.
fn assert_same(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "{what}: element {i}: {g} vs CPU {w}"
        );
    }
}

fn random(n: usize, seed: u64) -> Vec<f64> {
    Tensor::randn(&[n], DType::F64, seed).to_vec_f64()
}

/// Pooling inputs full of ties (multiples of 0.5), with NaNs and a -inf. The NaNs at (1, 1, 1)
/// and (1, 1, 3) of the first plane share a window of every test geometry with dilation 2, and a
/// window or neighbouring windows of the others.
fn tied_with_nans(g: &PoolGeometry, seed: u64) -> Vec<f64> {
    let n = g.input_len();
    let mut v: Vec<f64> = random(n, seed)
        .iter()
        .map(|x| (x * 2.0).round() / 2.0)
        .collect();
    let [id, ih, iw] = g.input;
    let d = 1.min(id - 1);
    for at in [
        (d * ih + 1) * iw + 1,
        (d * ih + 1) * iw + 3,
        n / 3,
        n / 3 + 1,
        (2 * n) / 3,
    ] {
        v[at] = f64::NAN;
    }
    v[n / 2] = f64::NEG_INFINITY;
    v
}

#[allow(clippy::too_many_arguments)]
fn pool(
    batch: usize,
    channels: usize,
    input: [usize; 3],
    kernel: [usize; 3],
    stride: [usize; 3],
    padding: [usize; 3],
    dilation: [usize; 3],
) -> PoolGeometry {
    PoolGeometry {
        batch,
        channels,
        input,
        kernel,
        stride,
        padding,
        dilation,
    }
}

/// Geometries for both poolings (dilation 1) and, last, one with dilation for max pooling only.
fn pool_cases() -> Vec<(&'static str, PoolGeometry)> {
    vec![
        (
            "3D 7x9x5 kernel 3 stride 2 pad 1",
            pool(2, 3, [7, 9, 5], [3; 3], [2; 3], [1; 3], [1; 3]),
        ),
        (
            "3D U-Net kernel 2 stride 2 on odd sizes",
            pool(1, 4, [5, 7, 9], [2; 3], [2; 3], [0; 3], [1; 3]),
        ),
        (
            "2D U-Net kernel 2 stride 2",
            pool(2, 3, [1, 9, 11], [1, 2, 2], [1, 2, 2], [0; 3], [1; 3]),
        ),
        (
            "2D kernel 3 stride 1 pad 1",
            pool(2, 2, [1, 9, 8], [1, 3, 3], [1; 3], [0, 1, 1], [1; 3]),
        ),
        (
            "3D mixed kernel, stride and padding per axis",
            pool(1, 2, [4, 7, 5], [3, 2, 3], [1, 3, 2], [1, 0, 1], [1; 3]),
        ),
        (
            "3D 7x9x5 kernel 3 stride 2 pad 1 dilation 2",
            pool(2, 3, [7, 9, 5], [3; 3], [2; 3], [1; 3], [2; 3]),
        ),
    ]
}

#[test]
fn max_pool_forward_and_backward_match_the_cpu_with_ties_nans_and_launch_shapes() {
    for dev in gpu_test_devices() {
        for (seed, (name, g)) in pool_cases().into_iter().enumerate() {
            let x = tied_with_nans(&g, seed as u64);
            let gy = random(g.output_len(), 100 + seed as u64);
            for dtype in [DType::F32, DType::F64] {
                let (xc, gc) = (
                    storage(&x, dtype, Device::Cpu),
                    storage(&gy, dtype, Device::Cpu),
                );
                let want_y = values(&xc.max_pool(&g).unwrap());
                let want_gx = values(&xc.max_pool_backward(&gc, &g).unwrap());
                assert!(want_y.iter().any(|v| v.is_nan()), "{name}: a NaN window");
                let (xd, gd) = (storage(&x, dtype, dev), storage(&gy, dtype, dev));
                common::with_launch_shapes(dev, |shape| {
                    let what = format!("max_pool {name} {dtype} on {dev}, {shape:?}");
                    let y = xd.max_pool(&g).unwrap();
                    assert_eq!(y.device(), dev);
                    assert_same(&values(&y), &want_y, &what);
                    let gx = xd.max_pool_backward(&gd, &g).unwrap();
                    assert_same(&values(&gx), &want_gx, &format!("{what} backward"));
                });
            }
        }
    }
}

#[test]
fn avg_pool_forward_and_backward_match_the_cpu_both_divisor_rules() {
    for dev in gpu_test_devices() {
        // The last case has dilation, which average pooling refuses.
        let cases = pool_cases();
        for (seed, (name, g)) in cases[..cases.len() - 1].iter().enumerate() {
            let x = random(g.input_len(), 20 + seed as u64);
            let gy = random(g.output_len(), 200 + seed as u64);
            for dtype in [DType::F32, DType::F64] {
                let (xc, gc) = (
                    storage(&x, dtype, Device::Cpu),
                    storage(&gy, dtype, Device::Cpu),
                );
                let (xd, gd) = (storage(&x, dtype, dev), storage(&gy, dtype, dev));
                for include_pad in [true, false] {
                    let want_y = values(&xc.avg_pool(g, include_pad).unwrap());
                    let want_gx = values(&gc.avg_pool_backward(g, include_pad).unwrap());
                    common::with_launch_shapes(dev, |shape| {
                        let what = format!(
                            "avg_pool {name} include_pad {include_pad} {dtype} on {dev}, {shape:?}"
                        );
                        assert_same(
                            &values(&xd.avg_pool(g, include_pad).unwrap()),
                            &want_y,
                            &what,
                        );
                        assert_same(
                            &values(&gd.avg_pool_backward(g, include_pad).unwrap()),
                            &want_gx,
                            &format!("{what} backward"),
                        );
                    });
                }
            }
        }
        // A NaN spreads to the windows holding it, as on the CPU.
        let g = cases[0].1;
        let mut x = random(g.input_len(), 3);
        x[g.input_len() / 2] = f64::NAN;
        let want = values(
            &storage(&x, DType::F64, Device::Cpu)
                .avg_pool(&g, true)
                .unwrap(),
        );
        let got = values(&storage(&x, DType::F64, dev).avg_pool(&g, true).unwrap());
        assert!(got.iter().any(|v| v.is_nan()));
        assert_same(&got, &want, &format!("avg_pool with a NaN on {dev}"));
    }
}

#[test]
fn pooling_refuses_bad_input_with_errors() {
    for dev in gpu_test_devices() {
        let g = pool_cases()[0].1;
        let x = random(g.input_len(), 1);
        let half = Storage::from_cpu(
            CpuStorage::F16(x.iter().map(|&v| half::f16::from_f64(v)).collect()),
            dev,
        )
        .unwrap();
        let msg = half.max_pool(&g).unwrap_err().to_string();
        assert!(msg.contains("max_pool") && msg.contains("f16"), "{msg}");
        assert!(half.avg_pool(&g, true).is_err());
        // Storage that is not the dense input the geometry describes.
        let short = storage(&x[..x.len() - 1], DType::F32, dev);
        let msg = short.max_pool(&g).unwrap_err().to_string();
        assert!(msg.contains("max_pool"), "{msg}");
        assert!(short.avg_pool_backward(&g, true).is_err());
        let xd = storage(&x, DType::F32, dev);
        let gy = storage(&random(g.output_len(), 2), DType::F64, dev);
        assert!(xd.max_pool_backward(&gy, &g).is_err(), "mixed dtypes");
        let dilated = pool_cases().last().unwrap().1;
        let msg = storage(&random(dilated.input_len(), 3), DType::F64, dev)
            .avg_pool(&dilated, true)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("dilation"), "{msg}");
    }
}

fn upsample_cases() -> Vec<(&'static str, UpsampleGeometry)> {
    let by_size = |input, output| UpsampleGeometry {
        batch: 2,
        channels: 2,
        input,
        output,
        scale: [None; 3],
        mode: UpsampleMode::Nearest,
    };
    let by_scale = |input, scale| {
        UpsampleGeometry::from_scale(2, 2, input, scale, UpsampleMode::Nearest).unwrap()
    };
    vec![
        ("1D scale 2", by_scale([1, 1, 5], [1.0, 1.0, 2.0])),
        ("1D 5 -> 8", by_size([1, 1, 5], [1, 1, 8])),
        ("1D 7 -> 3", by_size([1, 1, 7], [1, 1, 3])),
        ("1D 4 -> 1", by_size([1, 1, 4], [1, 1, 1])),
        ("1D scale 1.7", by_scale([1, 1, 5], [1.0, 1.0, 1.7])),
        ("2D 5x6 -> 11x13", by_size([1, 5, 6], [1, 11, 13])),
        ("2D scale (2, 1.7)", by_scale([1, 4, 5], [1.0, 2.0, 1.7])),
        ("3D scale 2", by_scale([3, 4, 5], [2.0; 3])),
        ("3D 3x5x4 -> 7x4x9", by_size([3, 5, 4], [7, 4, 9])),
    ]
}

const MODES: [UpsampleMode; 3] = [
    UpsampleMode::Nearest,
    UpsampleMode::Linear {
        align_corners: false,
    },
    UpsampleMode::Linear {
        align_corners: true,
    },
];

#[test]
fn upsample_forward_and_backward_match_the_cpu_in_every_mode_and_launch_shape() {
    for dev in gpu_test_devices() {
        for (seed, (name, g)) in upsample_cases().into_iter().enumerate() {
            let x = random(g.input_len(), 40 + seed as u64);
            let gy = random(g.output_len(), 400 + seed as u64);
            for mode in MODES {
                let g = UpsampleGeometry { mode, ..g };
                for dtype in [DType::F32, DType::F64] {
                    let (xc, gc) = (
                        storage(&x, dtype, Device::Cpu),
                        storage(&gy, dtype, Device::Cpu),
                    );
                    let want_y = values(&xc.upsample(&g).unwrap());
                    let want_gx = values(&gc.upsample_backward(&g).unwrap());
                    let (xd, gd) = (storage(&x, dtype, dev), storage(&gy, dtype, dev));
                    common::with_launch_shapes(dev, |shape| {
                        let what = format!("upsample {name} {mode:?} {dtype} on {dev}, {shape:?}");
                        assert_same(&values(&xd.upsample(&g).unwrap()), &want_y, &what);
                        assert_same(
                            &values(&gd.upsample_backward(&g).unwrap()),
                            &want_gx,
                            &format!("{what} backward"),
                        );
                    });
                }
            }
        }
        let g = upsample_cases()[0].1;
        let half =
            Storage::from_cpu(CpuStorage::F16(vec![half::f16::ONE; g.input_len()]), dev).unwrap();
        let msg = half.upsample(&g).unwrap_err().to_string();
        assert!(msg.contains("upsample") && msg.contains("f16"), "{msg}");
        assert!(storage(&[1.0; 3], DType::F32, dev).upsample(&g).is_err());
    }
}

/// The public ops on device tensors, views included (the ops make them dense first), with their
/// autograd backward.
#[test]
fn pooling_and_upsampling_ops_on_device_views_match_the_cpu() {
    for dev in gpu_test_devices() {
        // [2, 3, 9, 7] viewed from a [2, 3, 7, 9] tensor: not contiguous.
        let base = Tensor::randn(&[2, 3, 7, 9], DType::F32, 5);
        let x = base.transpose(2, 3).unwrap();
        let xd = base.to_device(dev).unwrap().transpose(2, 3).unwrap();
        assert!(!xd.is_contiguous());
        type Op = Box<dyn Fn(&Tensor) -> Tensor>;
        let ops: Vec<(&str, Op)> = vec![
            (
                "max_pool",
                Box::new(|t| {
                    t.max_pool(&PoolOptions {
                        kernel: vec![3],
                        stride: vec![2],
                        padding: vec![1],
                        dilation: vec![1],
                    })
                    .unwrap()
                }),
            ),
            (
                "avg_pool",
                Box::new(|t| t.avg_pool(&PoolOptions::new(vec![2]), true).unwrap()),
            ),
            (
                "upsample_linear",
                Box::new(|t| t.upsample_linear(&[13, 8], false).unwrap()),
            ),
            (
                "upsample_nearest",
                Box::new(|t| t.upsample_nearest(&[18, 14]).unwrap()),
            ),
        ];
        for (name, op) in &ops {
            // The weighted sum is taken on the CPU (`to_device` is differentiable), so only the op
            // and its backward run on the device.
            let run = |t: &Tensor| {
                let leaf = t.requires_grad_leaf();
                let y = op(&leaf);
                assert_eq!(y.device(), t.device());
                let w = Tensor::randn(y.shape(), DType::F32, 9);
                let y = y.to_device(Device::Cpu).unwrap();
                y.mul(&w).unwrap().sum_all().unwrap().backward().unwrap();
                let gx = leaf.grad().unwrap();
                assert_eq!(gx.device(), t.device());
                (y.to_vec_f64(), gx.to_vec_f64())
            };
            let (y, gx) = run(&xd);
            let (want_y, want_gx) = run(&x);
            assert_close(&y, &want_y, 1e-6, &format!("{name} on {dev}"));
            assert_close(&gx, &want_gx, 1e-6, &format!("{name} gradient on {dev}"));
        }
    }
}

#[test]
fn f64_gradchecks_on_the_vm() {
    let opts = GradcheckOptions::default();
    let x2 = Tensor::randn(&[1, 2, 5, 6], DType::F64, 11)
        .to_device(Device::PtxVm)
        .unwrap();
    let x3 = Tensor::randn(&[1, 1, 3, 4, 5], DType::F64, 12)
        .to_device(Device::PtxVm)
        .unwrap();
    let window = PoolOptions {
        kernel: vec![3],
        stride: vec![2],
        padding: vec![1],
        dilation: vec![1],
    };
    // The op and its backward run on the VM; the check's weighted sum is taken on the CPU
    // (`to_device` is differentiable), so it does not depend on the VM's reductions.
    let check = |name: &str, f: &dyn Fn(&Tensor) -> hepar::Result<Tensor>, x: &Tensor| {
        assert_eq!(f(x).unwrap().device(), Device::PtxVm, "{name}");
        let report = gradcheck(
            |t| f(&t[0])?.to_device(Device::Cpu),
            std::slice::from_ref(x),
            opts,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(report.elements_checked, x.numel(), "{name}");
    };
    check("max_pool 2D", &|t| t.max_pool(&window), &x2);
    check(
        "max_pool 3D dilation 2",
        &|t| {
            t.max_pool(&PoolOptions {
                kernel: vec![2],
                stride: vec![1],
                padding: vec![1],
                dilation: vec![2],
            })
        },
        &x3,
    );
    check("avg_pool 2D", &|t| t.avg_pool(&window, true), &x2);
    check("avg_pool 3D", &|t| t.avg_pool(&window, false), &x3);
    check(
        "upsample_linear 2D",
        &|t| t.upsample_linear(&[9, 13], false),
        &x2,
    );
    check(
        "upsample_linear 3D align_corners",
        &|t| t.upsample_linear(&[5, 7, 8], true),
        &x3,
    );
    check(
        "upsample_linear 1D",
        &|t| t.upsample_linear(&[11], false),
        &{
            Tensor::randn(&[2, 1, 6], DType::F64, 13)
                .to_device(Device::PtxVm)
                .unwrap()
        },
    );
}
