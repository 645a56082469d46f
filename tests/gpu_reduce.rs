//! The reduce family of CUDA kernels (`kernels/reduce.cu`: sum / max / min over axes, softmax and
//! log-softmax) on each GPU test device, compared with the CPU backend: every op, single, adjacent,
//! non-adjacent and all axes, permuted, narrowed and broadcast views, sizes that are not block
//! multiples, both block- and thread-per-output kernels and their two-pass forms, NaN handling,
//! several launch shapes, racecheck, and f64 gradients on the VM.

mod common;

use common::gpu_test_devices;
use hepar::autograd::gradcheck::{gradcheck, GradcheckOptions};
use hepar::backend::cuda::context::ptx_vm;
use hepar::backend::cuda::LaunchShape;
use hepar::backend::{BackendStorage, Device, ReduceOp};
use hepar::tensor::{DType, Layout, Tensor};

fn input(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    Tensor::randn(shape, DType::F64, seed)
        .mul_scalar(3.0)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn tolerance(dtype: DType) -> f64 {
    if dtype == DType::F64 {
        1e-12
    } else {
        1e-5
    }
}

/// `actual` equals `expected` within `tol` relative to `scale` (the sum of |x| a value came
/// from, so sums with cancellation are judged by the size of what was added); NaN must meet NaN.
fn assert_close_scaled(actual: &[f64], expected: &[f64], scale: &[f64], tol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, ((a, e), s)) in actual.iter().zip(expected).zip(scale).enumerate() {
        let ok = if e.is_nan() {
            a.is_nan()
        } else if e.is_infinite() {
            a == e
        } else {
            (a - e).abs() <= tol * (1.0 + e.abs().max(*s))
        };
        assert!(ok, "{what}: element {i}: {a} vs expected {e}");
    }
}

/// The backend's reduce (sorted axes, reduced axes kept as size 1; `Tensor` has no min over
/// axes) of a tensor's view, read back as f64 values.
fn reduce(t: &Tensor, axes: &[usize], op: ReduceOp) -> Vec<f64> {
    let out = t.storage().reduce(t.layout(), axes, op).unwrap();
    assert_eq!(out.device(), t.device());
    let shape: Vec<usize> = (0..t.rank())
        .map(|a| if axes.contains(&a) { 1 } else { t.shape()[a] })
        .collect();
    let host = out.to_cpu().unwrap();
    assert_eq!(host.len(), shape.iter().product::<usize>());
    host.to_f64_vec(&Layout::contiguous(&shape))
}

/// Checks every ReduceOp of `view(x)` over `axes` on `dev` against the CPU.
fn check_reduce(
    x: &Tensor,
    view: &dyn Fn(&Tensor) -> Tensor,
    axes: &[usize],
    dev: Device,
    what: &str,
) {
    let cpu = view(x);
    let gpu = view(&x.to_device(dev).unwrap());
    assert_eq!(gpu.device(), dev);
    let scale = reduce(&cpu.abs().unwrap(), axes, ReduceOp::Sum);
    for op in ReduceOp::ALL {
        let got = reduce(&gpu, axes, op);
        let want = reduce(&cpu, axes, op);
        let what = format!(
            "{} {what} {:?} axes {axes:?} on {dev}",
            op.name(),
            cpu.shape()
        );
        let s = if op == ReduceOp::Sum {
            scale.clone()
        } else {
            vec![0.0; scale.len()]
        };
        assert_close_scaled(&got, &want, &s, tolerance(x.dtype()), &what);
    }
}

fn same(t: &Tensor) -> Tensor {
    t.clone()
}

#[test]
fn every_reduce_op_matches_the_cpu_on_axis_sets_and_sizes() {
    // (shape, axis sets): single, adjacent, non-adjacent, all, none; sizes off block multiples.
    let cases: &[(&[usize], &[&[usize]])] = &[
        (&[1], &[&[0], &[]]),
        (&[33], &[&[0]]),
        (&[1000], &[&[0]]),
        (&[70_001], &[&[0]]),
        (&[33, 1000], &[&[0], &[1], &[0, 1]]),
        (
            &[3, 5, 7, 11],
            &[&[1], &[3], &[1, 2], &[0, 2], &[1, 3], &[0, 1, 2, 3]],
        ),
        (&[2, 3, 4, 5, 6], &[&[0, 2, 4], &[1, 3], &[2, 3, 4]]),
        // Few long runs along the unit stride: block pieces, then a second pass.
        (&[2, 9000], &[&[1]]),
        // Few long runs across the unit stride: thread pieces, then a second pass.
        (&[1100, 7], &[&[0]]),
    ];
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            for (i, (shape, axis_sets)) in cases.iter().enumerate() {
                let x = input(shape, 10 + i as u64, dtype);
                for axes in axis_sets.iter() {
                    check_reduce(&x, &same, axes, dev, &format!("{dtype}"));
                }
            }
        }
    }
}

#[test]
fn reductions_read_permuted_narrowed_and_broadcast_views() {
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            let x = input(&[7, 33, 5], 3, dtype);
            let permuted = |t: &Tensor| t.permute(&[2, 0, 1]).unwrap();
            assert!(!permuted(&x).is_contiguous());
            for axes in [&[0][..], &[1], &[2], &[1, 2], &[0, 2], &[0, 1, 2]] {
                check_reduce(&x, &permuted, axes, dev, &format!("{dtype} permuted"));
            }
            // An offset view whose rows skip values.
            let narrowed = |t: &Tensor| t.narrow(1, 4, 20).unwrap().transpose(0, 1).unwrap();
            for axes in [&[0][..], &[1], &[0, 2]] {
                check_reduce(&x, &narrowed, axes, dev, &format!("{dtype} narrowed"));
            }
            // Stride-0 axes, reduced and kept.
            let b = input(&[1, 40], 4, dtype);
            let broadcast = |t: &Tensor| t.broadcast_to(&[50, 40]).unwrap();
            for axes in [&[0][..], &[1], &[0, 1]] {
                check_reduce(&b, &broadcast, axes, dev, &format!("{dtype} broadcast"));
            }
        }
    }
}

#[test]
fn max_and_min_propagate_nan_and_empty_reductions_give_the_identity() {
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            // NaN first, in the middle, last in a run and in a long (two-pass) run.
            for (shape, nan_at) in [
                (vec![4usize, 37], vec![0usize, 37 + 18, 3 * 37 + 36]),
                (vec![3, 9000], vec![1, 9000 + 8999]),
                (vec![1100, 7], vec![1099 * 7 + 3]),
            ] {
                let mut v = input(&shape, 5, DType::F64).to_vec_f64();
                for &i in &nan_at {
                    v[i] = f64::NAN;
                }
                let x = Tensor::from_vec(v, &shape)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                for axes in [&[0][..], &[1], &[0, 1]] {
                    check_reduce(&x, &same, axes, dev, &format!("{dtype} with NaN"));
                }
            }
            // Reducing an empty axis: 0 for sum, -inf for max, +inf for min, as the CPU.
            let empty = Tensor::zeros(&[3, 0], dtype, Device::Cpu).unwrap();
            check_reduce(&empty, &same, &[1], dev, &format!("{dtype} empty"));
            // No outputs at all (the CPU's `reduce_middle` divides by zero on this one: it is
            // checked against the empty result directly).
            let gpu_empty = empty.to_device(dev).unwrap();
            for op in ReduceOp::ALL {
                assert!(
                    reduce(&gpu_empty, &[0], op).is_empty(),
                    "{dtype} no outputs"
                );
            }
        }
    }
}

#[test]
fn reduce_refuses_storage_dtypes_and_bad_axes() {
    let x = Tensor::randn(&[3, 4], DType::F32, 1)
        .to_device(Device::PtxVm)
        .unwrap();
    let half = x.to_dtype(DType::F16).unwrap();
    let err = half
        .storage()
        .reduce(half.layout(), &[0], ReduceOp::Sum)
        .unwrap_err()
        .to_string();
    assert!(err.contains("reduce") && err.contains("f16"), "{err}");
    let err = half.softmax(0).unwrap_err().to_string();
    assert!(err.contains("softmax") && err.contains("f16"), "{err}");
    for axes in [&[1, 0][..], &[0, 0], &[2]] {
        let err = x
            .storage()
            .reduce(x.layout(), axes, ReduceOp::Max)
            .unwrap_err()
            .to_string();
        assert!(err.contains("axes") && err.contains("[3, 4]"), "{err}");
    }
    let err = x
        .storage()
        .softmax(x.layout(), 2, true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("log_softmax") && err.contains("axis 2"),
        "{err}"
    );
}

/// Softmax and log-softmax of `view(x)` along `axis` on `dev` against the CPU.
fn check_softmax(
    x: &Tensor,
    view: &dyn Fn(&Tensor) -> Tensor,
    axis: isize,
    dev: Device,
    what: &str,
) {
    let cpu = view(x);
    let gpu = view(&x.to_device(dev).unwrap());
    for log in [false, true] {
        let (got, want) = if log {
            (
                gpu.log_softmax(axis).unwrap(),
                cpu.log_softmax(axis).unwrap(),
            )
        } else {
            (gpu.softmax(axis).unwrap(), cpu.softmax(axis).unwrap())
        };
        assert_eq!(got.device(), dev);
        assert_eq!(got.shape(), want.shape());
        let name = if log { "log_softmax" } else { "softmax" };
        let what = format!("{name} {what} {:?} axis {axis} on {dev}", cpu.shape());
        let zeros = vec![0.0; want.numel()];
        assert_close_scaled(
            &got.to_vec_f64(),
            &want.to_vec_f64(),
            &zeros,
            tolerance(x.dtype()),
            &what,
        );
    }
}

#[test]
fn softmax_matches_the_cpu_along_first_middle_and_last_axes() {
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            let x = input(&[2, 5, 3, 7], 6, dtype);
            for axis in [0, 1, 2, 3, -1] {
                check_softmax(&x, &same, axis, dev, &format!("{dtype}"));
            }
            // Long rows, few of them (block per row); 1 and 33 values (short rows).
            let long = input(&[3, 5000], 7, dtype);
            check_softmax(&long, &same, 1, dev, &format!("{dtype} long rows"));
            check_softmax(&long, &same, 0, dev, &format!("{dtype} short strided rows"));
            check_softmax(
                &input(&[1, 33], 8, dtype),
                &same,
                1,
                dev,
                &format!("{dtype}"),
            );
            check_softmax(
                &input(&[33, 1], 8, dtype),
                &same,
                1,
                dev,
                &format!("{dtype}"),
            );
            // A long axis across the unit stride (block per row reading with a stride), and a
            // permuted view.
            let t = |t: &Tensor| t.transpose(0, 1).unwrap();
            check_softmax(&long, &t, 0, dev, &format!("{dtype} transposed"));
            let p = |t: &Tensor| t.permute(&[3, 1, 0, 2]).unwrap();
            for axis in [0, 1, 3] {
                check_softmax(&x, &p, axis, dev, &format!("{dtype} permuted"));
            }
            // Channel softmax of [N, C, D, H, W] (thread per row, stride D*H*W).
            let vol = input(&[2, 4, 3, 5, 6], 9, dtype);
            check_softmax(&vol, &same, 1, dev, &format!("{dtype} channels"));
        }
    }
}

#[test]
fn softmax_of_a_feature_map_row_of_32768_voxels() {
    // The CoT attention's softmax over every voxel of a 32^3 map: a few rows of 32768 values.
    for dev in gpu_test_devices() {
        let x = input(&[2, 32768], 11, DType::F64);
        check_softmax(&x, &same, 1, dev, "attention rows");
    }
}

#[test]
fn softmax_rows_with_nan_or_infinity_are_nan_as_on_the_cpu() {
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            for (shape, axis) in [([4usize, 200], 1isize), ([200, 4], 0), ([6, 5], 1)] {
                let mut v = input(&shape, 12, DType::F64).to_vec_f64();
                let n = v.len();
                v[3] = f64::NAN;
                v[n - 2] = f64::INFINITY;
                v[n / 2] = f64::NEG_INFINITY;
                let x = Tensor::from_vec(v, &shape)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                check_softmax(&x, &same, axis, dev, &format!("{dtype} with NaN/inf"));
            }
        }
    }
}

#[test]
fn reduce_and_softmax_under_every_launch_shape() {
    for dev in gpu_test_devices() {
        let x = input(&[5, 1500], 13, DType::F64);
        let tall = input(&[1500, 5], 14, DType::F64);
        common::with_launch_shapes(dev, |shape| {
            let what = format!("{shape:?}");
            for axes in [&[0][..], &[1], &[0, 1]] {
                check_reduce(&x, &same, axes, dev, &what);
                check_reduce(&tall, &same, axes, dev, &what);
            }
            check_softmax(&x, &same, 1, dev, &what);
            check_softmax(&x, &same, 0, dev, &what);
            check_softmax(&tall, &same, 0, dev, &what);
        });
    }
}

#[test]
fn block_kernels_pass_racecheck() {
    // The shared-memory trees, with grid-stride loops reusing the buffer (few blocks, many items).
    let vm = ptx_vm();
    vm.set_launch_shape(LaunchShape {
        block: 96,
        max_blocks: 2,
    });
    vm.driver().set_racecheck(true);
    let x = input(&[5, 3000], 15, DType::F32);
    check_reduce(&x, &same, &[1], Device::PtxVm, "racecheck");
    check_reduce(&x, &same, &[0, 1], Device::PtxVm, "racecheck");
    check_softmax(&x, &same, 1, Device::PtxVm, "racecheck");
    vm.driver().set_racecheck(false);
    vm.set_launch_shape(LaunchShape::default());
}

fn vm_input(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, DType::F64, seed)
        .to_device(Device::PtxVm)
        .unwrap()
}

fn check_grad(name: &str, f: impl Fn(&[Tensor]) -> hepar::error::Result<Tensor>, x: Tensor) {
    let report = gradcheck(f, &[x], GradcheckOptions::default())
        .unwrap_or_else(|e| panic!("{name} on the VM: {e}"));
    assert!(report.elements_checked > 0, "{name}");
}

#[test]
fn gradients_of_reductions_and_softmax_on_the_vm() {
    check_grad(
        "sum_axes",
        |t| t[0].sum_axes(&[0, 2], true),
        vm_input(&[3, 4, 5], 20),
    );
    check_grad(
        "mean_axes",
        |t| t[0].mean_axes(&[1], false),
        vm_input(&[3, 4, 5], 21),
    );
    check_grad(
        "max_axes",
        |t| t[0].max_axes(&[2], true),
        vm_input(&[3, 4, 5], 22),
    );
    check_grad("softmax", |t| t[0].softmax(1), vm_input(&[3, 4, 5], 23));
    check_grad(
        "log_softmax",
        |t| t[0].log_softmax(-1),
        vm_input(&[3, 4, 5], 24),
    );
    // The gradient was computed on the VM, not on the CPU.
    let x = vm_input(&[4, 6], 25).requires_grad_leaf();
    x.softmax(0).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(x.grad().unwrap().device(), Device::PtxVm);
}
