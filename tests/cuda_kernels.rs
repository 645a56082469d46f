//! The CUDA backend's kernels through tensors on each GPU test device (the PTX VM in every run,
//! real GPUs where HEPAR_TEST_DEVICES lists them), compared with the CPU backend on sizes that are
//! not multiples of the block size, on strided views and under several launch shapes.

mod common;

use common::{assert_close, gpu_test_devices};
use hepar::backend::cuda::context::ptx_vm;
use hepar::backend::cuda::DeviceApi;
use hepar::backend::{BinaryOp, Device, UnaryOp};
use hepar::tensor::{DType, Tensor};

const SIZES: [usize; 4] = [1, 255, 1000, 4099];

fn input(n: usize, seed: u64, dtype: DType) -> Tensor {
    Tensor::randn(&[n], DType::F64, seed)
        .mul_scalar(2.0)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

/// Inputs valid for `op` (positive where it needs them).
fn op_input(op: UnaryOp, x: &Tensor) -> Tensor {
    if op.needs_positive_input() {
        x.abs().unwrap().add_scalar(0.1).unwrap()
    } else {
        x.clone()
    }
}

fn tolerance(dtype: DType) -> f64 {
    if dtype == DType::F64 {
        1e-12
    } else {
        2e-6
    }
}

#[test]
fn every_unary_op_and_its_gradient_matches_the_cpu() {
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            for &n in &SIZES {
                let x = input(n, n as u64, dtype);
                let g = input(n, 7, dtype);
                for op in UnaryOp::EXAMPLES {
                    let xi = op_input(op, &x);
                    let (xd, gd) = (xi.to_device(dev).unwrap(), g.to_device(dev).unwrap());
                    let what = format!("{} {dtype} n={n} on {dev}", op.name());
                    let got = xd.unary(op).unwrap();
                    assert_eq!(got.device(), dev);
                    assert_close(
                        &got.to_vec_f64(),
                        &xi.unary(op).unwrap().to_vec_f64(),
                        tolerance(dtype),
                        &what,
                    );
                    // The backward of the op: grad * op'(x), on the device.
                    let grad = |t: &Tensor, gt: &Tensor| {
                        let leaf = t.requires_grad_leaf();
                        leaf.unary(op)
                            .unwrap()
                            .mul(gt)
                            .unwrap()
                            .sum_all()
                            .unwrap()
                            .backward()
                            .unwrap();
                        leaf.grad().unwrap().to_vec_f64()
                    };
                    assert_close(
                        &grad(&xd, &gd),
                        &grad(&xi, &g),
                        tolerance(dtype),
                        &format!("{what} gradient"),
                    );
                }
            }
        }
    }
}

#[test]
fn binary_ops_broadcast_and_read_strided_views_under_every_launch_shape() {
    for dev in gpu_test_devices() {
        let a = Tensor::randn(&[3, 5, 7], DType::F32, 1);
        let b = Tensor::randn(&[1, 5], DType::F32, 2)
            .abs()
            .unwrap()
            .add_scalar(0.5)
            .unwrap();
        let (ad, bd) = (
            a.to_device(dev).unwrap().permute(&[2, 0, 1]).unwrap(),
            b.to_device(dev).unwrap(),
        );
        let a = a.permute(&[2, 0, 1]).unwrap();
        assert!(!ad.is_contiguous());
        common::with_launch_shapes(dev, |shape| {
            for op in BinaryOp::ALL {
                let what = format!("{} on {dev}, {shape:?}", op.name());
                let got = ad.binary(&bd, op).unwrap();
                assert_close(
                    &got.to_vec_f64(),
                    &a.binary(&b, op).unwrap().to_vec_f64(),
                    1e-6,
                    &what,
                );
            }
        });
    }
}

#[test]
fn copies_casts_and_fills_match_the_cpu() {
    for dev in gpu_test_devices() {
        let x = Tensor::randn(&[4, 9, 5], DType::F64, 3)
            .mul_scalar(100.0)
            .unwrap();
        let xd = x.to_device(dev).unwrap();
        let view = |t: &Tensor| t.transpose(0, 2).unwrap().narrow(1, 2, 5).unwrap();
        for from in [DType::F32, DType::F64, DType::F16, DType::BF16] {
            for to in [DType::F32, DType::F64, DType::F16, DType::BF16] {
                let cpu = view(&x.to_dtype(from).unwrap()).to_dtype(to).unwrap();
                let gpu = view(&xd.to_dtype(from).unwrap()).to_dtype(to).unwrap();
                // Both round the same way: the values must be identical.
                assert_eq!(
                    gpu.to_vec_f64(),
                    cpu.to_vec_f64(),
                    "{from} -> {to} on {dev}"
                );
            }
        }
        assert_eq!(
            view(&xd).contiguous().unwrap().to_vec_f64(),
            view(&x).contiguous().unwrap().to_vec_f64(),
            "strided copy on {dev}"
        );
        let filled = Tensor::full(&[3, 333], 1.25, DType::F32, dev).unwrap();
        assert!(filled.to_vec_f64().iter().all(|&v| v == 1.25));
        // write_strided: assigning into a view of a device tensor.
        let target = Tensor::zeros(&[5, 6], DType::F64, dev).unwrap();
        let value = Tensor::randn(&[6, 5], DType::F64, 4)
            .transpose(0, 1)
            .unwrap();
        target.assign(&value.to_device(dev).unwrap()).unwrap();
        assert_eq!(target.to_vec_f64(), value.to_vec_f64());
    }
}

#[test]
fn operands_on_different_devices_are_a_typed_error() {
    let a = Tensor::randn(&[4], DType::F32, 1);
    let b = a.to_device(Device::PtxVm).unwrap();
    let err = a.add(&b).unwrap_err().to_string();
    assert!(
        err.contains("add") && err.contains("cpu") && err.contains("ptxvm"),
        "{err}"
    );
    let missing = Tensor::zeros(&[2], DType::F32, Device::Cuda(7));
    assert!(
        missing.is_err(),
        "a GPU this machine does not have must be an error"
    );
}

#[test]
fn gradients_flow_back_across_devices() {
    let x = Tensor::randn(&[10], DType::F64, 5).requires_grad_leaf();
    x.to_device(Device::PtxVm)
        .unwrap()
        .square()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = x.grad().unwrap();
    assert_eq!(g.device(), Device::Cpu);
    assert_close(
        &g.to_vec_f64(),
        &x.mul_scalar(2.0).unwrap().to_vec_f64(),
        1e-12,
        "d(x^2)/dx through ptxvm",
    );
}

#[test]
fn kernels_access_memory_coalesced_and_in_bounds() {
    // A launch with more threads than elements must not touch memory past the end (memcheck
    // would fail the launch), and consecutive threads read consecutive words: 4 sectors of
    // 32 bytes per 32-thread load request.
    let vm = ptx_vm();
    let x = input(1000, 3, DType::F32).to_device(Device::PtxVm).unwrap();
    x.relu().unwrap();
    let report = vm.driver().last_report().expect("a launch was made");
    assert_eq!(report.kernel, "relu_f32");
    let c = &report.counters;
    let per_request = c.global_load_sectors as f64 / c.global_load_requests.max(1) as f64;
    assert!(
        per_request <= 4.01,
        "sectors per load request {per_request}\n{report}"
    );
    assert!(vm.memory_stats().peak_allocated_bytes >= 4000);
    let _ = vm.driver().synchronize();
}
