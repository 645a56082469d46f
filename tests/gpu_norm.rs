//! GroupNorm and BatchNorm on each GPU test device (the PTX VM in every run, real GPUs where
//! HEPAR_TEST_DEVICES lists them), against the CPU backend: forward, statistics and backward,
//! f32 and f64, odd spatial sizes, strided inputs, several launch shapes, racecheck, and f64
//! gradchecks on the device.
//!
//! Backward passes are driven through autograd with the loss taken on the CPU
//! (`y.to_device(Cpu)`), so that only the norm kernels (and the elementwise ones) run on the
//! device and the check does not depend on the device's reduction kernels.

mod common;

use common::{assert_close, gpu_test_devices};
use hepar::autograd::gradcheck::{gradcheck, GradcheckOptions};
use hepar::backend::cuda::context::ptx_vm;
use hepar::backend::cuda::LaunchShape;
use hepar::backend::{BackendStorage, Device, NormActivation, Storage};
use hepar::tensor::{DType, Layout, Tensor};

fn tol(dtype: DType) -> f64 {
    if dtype == DType::F64 {
        1e-12
    } else {
        2e-5
    }
}

fn randn(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    Tensor::randn(shape, DType::F64, seed)
        .to_dtype(dtype)
        .unwrap()
}

/// Values with a mean far from zero (so a naive sum of squares would cancel).
fn offset_randn(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
    Tensor::randn(shape, DType::F64, seed)
        .affine(1.5, 3.0)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
}

fn on(t: &Tensor, dev: Device) -> Tensor {
    t.to_device(dev).unwrap()
}

/// The values of a whole storage of `len` elements.
fn storage_values(s: &Storage, len: usize) -> Vec<f64> {
    assert_eq!(s.len(), len);
    s.to_cpu().unwrap().to_f64_vec(&Layout::contiguous(&[len]))
}

/// Backward of `sum(f(x, w, b) * proj)` with the loss on the CPU; the gradients of x, w and b
/// (those given), read back as f64.
fn grads(
    f: impl Fn(&Tensor, Option<&Tensor>, Option<&Tensor>) -> Tensor,
    x: &Tensor,
    w: Option<&Tensor>,
    b: Option<&Tensor>,
    proj: &Tensor,
) -> (Vec<f64>, Vec<f64>, Vec<Vec<f64>>) {
    let xl = x.detach().requires_grad_leaf();
    let wl = w.map(|w| w.detach().requires_grad_leaf());
    let bl = b.map(|b| b.detach().requires_grad_leaf());
    let y = f(&xl, wl.as_ref(), bl.as_ref());
    let yv = y.to_vec_f64();
    y.to_device(Device::Cpu)
        .unwrap()
        .mul(proj)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let mut params = Vec::new();
    for p in wl.iter().chain(bl.iter()) {
        let g = p.grad().expect("parameter gradient");
        assert_eq!(g.device(), x.device());
        params.push(g.to_vec_f64());
    }
    let gx = xl.grad().expect("input gradient");
    assert_eq!(gx.device(), x.device());
    (yv, gx.to_vec_f64(), params)
}

/// The group norm cases: (shape, groups).
fn group_cases() -> Vec<(Vec<usize>, usize)> {
    let mut v = Vec::new();
    for shape in [vec![2, 8, 5, 7, 3], vec![1, 12, 33, 17]] {
        let c = shape[1];
        for groups in [1, 4, c] {
            v.push((shape.clone(), groups));
        }
    }
    v
}

#[test]
fn group_norm_forward_statistics_and_backward_match_the_cpu() {
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            for (case, (shape, groups)) in group_cases().into_iter().enumerate() {
                let seed = 100 + case as u64;
                let c = shape[1];
                let x = offset_randn(&shape, seed, dtype);
                let w = randn(&[c], seed + 1, dtype);
                let b = randn(&[c], seed + 2, dtype);
                let proj = randn(&shape, seed + 3, dtype);
                for affine in [false, true] {
                    for act in [NormActivation::Identity, NormActivation::Silu] {
                        let what = format!(
                            "{shape:?} groups={groups} {dtype} affine={affine} {act:?} on {dev}"
                        );
                        let (wc, bc) = (affine.then_some(&w), affine.then_some(&b));
                        let (xd, wd, bd) =
                            (on(&x, dev), wc.map(|t| on(t, dev)), bc.map(|t| on(t, dev)));
                        // The statistics, through the primitive.
                        let stats = |x: &Tensor, w: Option<&Tensor>, b: Option<&Tensor>| {
                            let (ws, bs) = (
                                w.map(|w| w.storage().clone()),
                                b.map(|b| b.storage().clone()),
                            );
                            let (_, st) = x
                                .storage()
                                .group_norm(x.layout(), groups, ws.as_ref(), bs.as_ref(), 1e-5, act)
                                .unwrap();
                            let ng = shape[0] * groups;
                            (storage_values(&st.mean, ng), storage_values(&st.rstd, ng))
                        };
                        let (gm, gr) = stats(&xd, wd.as_ref(), bd.as_ref());
                        let (cm, cr) = stats(&x, wc, bc);
                        assert_close(&gm, &cm, tol(dtype), &format!("mean {what}"));
                        assert_close(&gr, &cr, tol(dtype), &format!("rstd {what}"));
                        // Output and gradients, through the op.
                        let f = |x: &Tensor, w: Option<&Tensor>, b: Option<&Tensor>| match act {
                            NormActivation::Identity => x.group_norm(groups, w, b, 1e-5).unwrap(),
                            NormActivation::Silu => x.group_norm_silu(groups, w, b, 1e-5).unwrap(),
                        };
                        let (gy, ggx, gp) = grads(f, &xd, wd.as_ref(), bd.as_ref(), &proj);
                        let (cy, cgx, cp) = grads(f, &x, wc, bc, &proj);
                        assert_close(&gy, &cy, tol(dtype), &format!("y {what}"));
                        assert_close(&ggx, &cgx, tol(dtype), &format!("grad x {what}"));
                        for (i, (g, e)) in gp.iter().zip(&cp).enumerate() {
                            assert_close(g, e, tol(dtype), &format!("grad param {i} {what}"));
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn group_norm_reads_strided_inputs() {
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            // [C, N, H, W] permuted to [N, C, H, W]: not contiguous.
            let base = offset_randn(&[6, 3, 5, 7], 7, dtype);
            let x = base.permute(&[1, 0, 2, 3]).unwrap();
            let xd = on(&base, dev).permute(&[1, 0, 2, 3]).unwrap();
            assert!(!xd.is_contiguous());
            let w = randn(&[6], 8, dtype);
            let b = randn(&[6], 9, dtype);
            let proj = randn(&[3, 6, 5, 7], 10, dtype);
            let f = |x: &Tensor, w: Option<&Tensor>, b: Option<&Tensor>| {
                x.group_norm_silu(3, w, b, 1e-5).unwrap()
            };
            let (gy, ggx, gp) = grads(f, &xd, Some(&on(&w, dev)), Some(&on(&b, dev)), &proj);
            let (cy, cgx, cp) = grads(f, &x, Some(&w), Some(&b), &proj);
            let what = format!("strided {dtype} on {dev}");
            assert_close(&gy, &cy, tol(dtype), &format!("y {what}"));
            assert_close(&ggx, &cgx, tol(dtype), &format!("grad x {what}"));
            for (g, e) in gp.iter().zip(&cp) {
                assert_close(g, e, tol(dtype), &format!("grad param {what}"));
            }
        }
    }
}

/// BatchNorm in training mode: output, running statistics, and the gradients.
fn batch_norm_train_case(dev: Device, shape: &[usize], dtype: DType, affine: bool, strided: bool) {
    let c = shape[1];
    let seed = shape.iter().product::<usize>() as u64;
    let x = offset_randn(shape, seed, dtype);
    let (x, xd) = if strided {
        // Transpose the last two axes and back: same values, a non-contiguous view.
        let r = shape.len();
        let mut t_shape = shape.to_vec();
        t_shape.swap(r - 1, r - 2);
        let base = offset_randn(&t_shape, seed, dtype);
        let v = |t: &Tensor| t.transpose(-1, -2).unwrap();
        (v(&base), v(&on(&base, dev)))
    } else {
        (x.clone(), on(&x, dev))
    };
    let w = randn(&[c], seed + 1, dtype);
    let b = randn(&[c], seed + 2, dtype);
    let proj = randn(shape, seed + 3, dtype);
    let rm = randn(&[c], seed + 4, dtype);
    let rv = randn(&[c], seed + 5, dtype)
        .abs()
        .unwrap()
        .add_scalar(0.5)
        .unwrap();
    let (wc, bc) = (affine.then_some(&w), affine.then_some(&b));
    let (wd, bd) = (wc.map(|t| on(t, dev)), bc.map(|t| on(t, dev)));
    let (rm_d, rv_d) = (on(&rm, dev), on(&rv, dev));
    // Fresh copies for the CPU run (both runs update their running statistics in place).
    let (rm_c, rv_c) = (rm.mul_scalar(1.0).unwrap(), rv.mul_scalar(1.0).unwrap());
    let what =
        format!("batch_norm train {shape:?} {dtype} affine={affine} strided={strided} on {dev}");
    let run = |rm: &Tensor, rv: &Tensor| {
        let (rm, rv) = (rm.clone(), rv.clone());
        move |x: &Tensor, w: Option<&Tensor>, b: Option<&Tensor>| {
            x.batch_norm(w, b, &rm, &rv, true, 0.1, 1e-5).unwrap()
        }
    };
    let (gy, ggx, gp) = grads(run(&rm_d, &rv_d), &xd, wd.as_ref(), bd.as_ref(), &proj);
    let (cy, cgx, cp) = grads(run(&rm_c, &rv_c), &x, wc, bc, &proj);
    assert_close(&gy, &cy, tol(dtype), &format!("y {what}"));
    assert_close(
        &rm_d.to_vec_f64(),
        &rm_c.to_vec_f64(),
        tol(dtype),
        &format!("running mean {what}"),
    );
    assert_close(
        &rv_d.to_vec_f64(),
        &rv_c.to_vec_f64(),
        tol(dtype),
        &format!("running var {what}"),
    );
    assert_eq!(rm_d.device(), dev);
    assert_close(&ggx, &cgx, tol(dtype), &format!("grad x {what}"));
    for (g, e) in gp.iter().zip(&cp) {
        assert_close(g, e, tol(dtype), &format!("grad param {what}"));
    }
    // The running statistics moved from their initial values.
    assert!(rm_c.to_vec_f64() != rm.to_vec_f64());
}

#[test]
fn batch_norm_train_forward_running_stats_and_backward_match_the_cpu() {
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            for shape in [vec![3, 5, 7, 4], vec![2, 6, 33, 17], vec![4, 3, 5, 3, 3]] {
                for affine in [false, true] {
                    batch_norm_train_case(dev, &shape, dtype, affine, false);
                }
            }
            batch_norm_train_case(dev, &[2, 5, 9, 7], dtype, true, true);
        }
    }
}

#[test]
fn batch_norm_eval_forward_matches_the_cpu() {
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            for shape in [vec![3, 5, 7, 4], vec![1, 7, 33, 5]] {
                let c = shape[1];
                let x = offset_randn(&shape, 31, dtype);
                let w = randn(&[c], 32, dtype);
                let b = randn(&[c], 33, dtype);
                let rm = randn(&[c], 34, dtype);
                let rv = randn(&[c], 35, dtype)
                    .abs()
                    .unwrap()
                    .add_scalar(0.5)
                    .unwrap();
                let (rm_d, rv_d) = (on(&rm, dev), on(&rv, dev));
                let got = on(&x, dev)
                    .batch_norm(
                        Some(&on(&w, dev)),
                        Some(&on(&b, dev)),
                        &rm_d,
                        &rv_d,
                        false,
                        0.1,
                        1e-5,
                    )
                    .unwrap();
                assert_eq!(got.device(), dev);
                let expected = x
                    .batch_norm(Some(&w), Some(&b), &rm, &rv, false, 0.1, 1e-5)
                    .unwrap();
                let what = format!("batch_norm eval {shape:?} {dtype} on {dev}");
                assert_close(&got.to_vec_f64(), &expected.to_vec_f64(), tol(dtype), &what);
                // Eval leaves the running statistics alone.
                assert_eq!(rm_d.to_vec_f64(), rm.to_vec_f64(), "{what}");
                assert_eq!(rv_d.to_vec_f64(), rv.to_vec_f64(), "{what}");
                let no_affine = on(&x, dev)
                    .batch_norm(None, None, &rm_d, &rv_d, false, 0.1, 1e-5)
                    .unwrap();
                let expected = x
                    .batch_norm(None, None, &rm, &rv, false, 0.1, 1e-5)
                    .unwrap();
                assert_close(
                    &no_affine.to_vec_f64(),
                    &expected.to_vec_f64(),
                    tol(dtype),
                    &what,
                );
            }
        }
    }
}

#[test]
fn batch_norm_statistics_stay_on_the_device_in_the_input_dtype() {
    for dev in gpu_test_devices() {
        for dtype in [DType::F32, DType::F64] {
            let x = offset_randn(&[3, 4, 11, 3], 41, dtype);
            let xd = on(&x, dev);
            let (gm, gv) = xd.storage().batch_norm_stats(xd.layout()).unwrap();
            let (cm, cv) = x.storage().batch_norm_stats(x.layout()).unwrap();
            assert_eq!(gm.device(), dev);
            assert_eq!((gm.dtype(), gv.dtype()), (dtype, dtype));
            let what = format!("batch_norm_stats {dtype} on {dev}");
            assert_close(
                &storage_values(&gm, 4),
                &storage_values(&cm, 4),
                tol(dtype),
                &what,
            );
            assert_close(
                &storage_values(&gv, 4),
                &storage_values(&cv, 4),
                tol(dtype),
                &what,
            );
            // Statistics of the wrong length are refused with a shape error.
            let short = gm.copy_strided(&Layout::new(vec![3], vec![1], 0)).unwrap();
            let err = xd
                .storage()
                .batch_norm_apply(xd.layout(), &short, &gv, None, None)
                .unwrap_err();
            assert!(matches!(err, hepar::HeparError::Shape { .. }), "{err}");
        }
    }
}

/// GroupNorm forward and backward and BatchNorm train forward and backward on the VM: bits of
/// every output, for comparing launch shapes.
fn vm_norm_bits(dtype: DType) -> Vec<Vec<u64>> {
    let dev = Device::PtxVm;
    let shape = [2, 8, 5, 7, 3];
    let x = offset_randn(&shape, 51, dtype);
    let w = randn(&[8], 52, dtype);
    let b = randn(&[8], 53, dtype);
    let proj = randn(&shape, 54, dtype);
    let (xd, wd, bd) = (on(&x, dev), on(&w, dev), on(&b, dev));
    let bits = |v: Vec<f64>| v.into_iter().map(f64::to_bits).collect::<Vec<_>>();
    let mut out = Vec::new();
    let gn = |x: &Tensor, w: Option<&Tensor>, b: Option<&Tensor>| {
        x.group_norm_silu(4, w, b, 1e-5).unwrap()
    };
    let (y, gx, gp) = grads(gn, &xd, Some(&wd), Some(&bd), &proj);
    out.extend([bits(y), bits(gx)]);
    out.extend(gp.into_iter().map(bits));
    let rm = Tensor::zeros(&[8], dtype, dev).unwrap();
    let rv = Tensor::ones(&[8], dtype, dev).unwrap();
    let bn = |x: &Tensor, w: Option<&Tensor>, b: Option<&Tensor>| {
        x.batch_norm(w, b, &rm, &rv, true, 0.1, 1e-5).unwrap()
    };
    let (y, gx, gp) = grads(bn, &xd, Some(&wd), Some(&bd), &proj);
    out.extend([bits(y), bits(gx)]);
    out.extend(gp.into_iter().map(bits));
    out.extend([bits(rm.to_vec_f64()), bits(rv.to_vec_f64())]);
    out
}

#[test]
fn results_are_the_same_bits_under_every_launch_shape() {
    let vm = ptx_vm();
    for dtype in [DType::F32, DType::F64] {
        let mut first: Option<Vec<Vec<u64>>> = None;
        for shape in common::LAUNCH_SHAPES {
            vm.set_launch_shape(shape);
            let got = vm_norm_bits(dtype);
            match &first {
                None => first = Some(got),
                Some(f) => assert!(f == &got, "{dtype}: results differ under {shape:?}"),
            }
        }
        vm.set_launch_shape(LaunchShape::default());
    }
}

#[test]
fn block_kernels_pass_racecheck() {
    let vm = ptx_vm();
    vm.driver().set_racecheck(true);
    // Small sizes: racecheck makes every shared access slower. A launch with a hazard fails.
    let result = std::panic::catch_unwind(|| {
        for dtype in [DType::F32, DType::F64] {
            let dev = Device::PtxVm;
            let x = on(&offset_randn(&[2, 4, 37], 61, dtype), dev);
            let w = on(&randn(&[4], 62, dtype), dev);
            let proj = randn(&[2, 4, 37], 63, dtype);
            let gn = |x: &Tensor, w: Option<&Tensor>, b: Option<&Tensor>| {
                x.group_norm_silu(2, w, b, 1e-5).unwrap()
            };
            grads(gn, &x, Some(&w), None, &proj);
            let rm = Tensor::zeros(&[4], dtype, dev).unwrap();
            let rv = Tensor::ones(&[4], dtype, dev).unwrap();
            let bn = |x: &Tensor, w: Option<&Tensor>, b: Option<&Tensor>| {
                x.batch_norm(w, b, &rm, &rv, true, 0.1, 1e-5).unwrap()
            };
            grads(bn, &x, Some(&w), None, &proj);
        }
    });
    vm.driver().set_racecheck(false);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn group_norm_refuses_bad_input_with_typed_errors() {
    let dev = Device::PtxVm;
    let x = on(&randn(&[2, 6, 5], 71, DType::F32), dev);
    // Storage-only dtypes are refused as the CPU refuses them.
    let h = x.to_dtype(DType::F16).unwrap();
    let err = h.group_norm(2, None, None, 1e-5).unwrap_err();
    assert!(matches!(err, hepar::HeparError::DType { .. }), "{err}");
    // Groups that do not divide the channels.
    let err = x
        .storage()
        .group_norm(x.layout(), 4, None, None, 1e-5, NormActivation::Identity)
        .unwrap_err();
    assert!(
        matches!(err, hepar::HeparError::InvalidArgument { .. }),
        "{err}"
    );
    // A weight of another dtype.
    let w = on(&randn(&[6], 72, DType::F64), dev);
    let ws = w.storage().clone();
    let err = x
        .storage()
        .group_norm(
            x.layout(),
            2,
            Some(&ws),
            None,
            1e-5,
            NormActivation::Identity,
        )
        .unwrap_err();
    assert!(matches!(err, hepar::HeparError::DType { .. }), "{err}");
}

fn check(name: &str, f: impl Fn(&[Tensor]) -> hepar::Result<Tensor>, inputs: &[Tensor]) {
    if let Err(e) = gradcheck(f, inputs, GradcheckOptions::default()) {
        panic!("{name}: {e}");
    }
}

#[test]
fn f64_gradients_on_the_vm() {
    let dev = Device::PtxVm;
    let x = on(&Tensor::randn(&[2, 4, 3, 5], DType::F64, 81), dev);
    let w = on(&Tensor::randn(&[4], DType::F64, 82), dev);
    let b = on(&Tensor::randn(&[4], DType::F64, 83), dev);
    // The output is moved to the CPU so that the objective's sum runs there; the gradient comes
    // back through to_device into the device kernels.
    check(
        "group_norm_silu on the VM",
        |t| {
            t[0].group_norm_silu(2, Some(&t[1]), Some(&t[2]), 1e-5)?
                .to_device(Device::Cpu)
        },
        &[x.clone(), w.clone(), b.clone()],
    );
    check(
        "group_norm on the VM",
        |t| {
            t[0].group_norm(4, Some(&t[1]), None, 1e-5)?
                .to_device(Device::Cpu)
        },
        &[x.clone(), w.clone()],
    );
    check(
        "batch_norm train on the VM",
        |t| {
            let rm = Tensor::zeros(&[4], DType::F64, dev)?;
            let rv = Tensor::ones(&[4], DType::F64, dev)?;
            t[0].batch_norm(Some(&t[1]), Some(&t[2]), &rm, &rv, true, 0.1, 1e-5)?
                .to_device(Device::Cpu)
        },
        &[x, w, b],
    );
}
