//! Every op's backward pass against central finite differences in f64, and the tape's semantics.

mod common;

use common::{for_each_device, rand_on};
use hepar::autograd::gradcheck::{gradcheck, GradcheckOptions};
use hepar::backend::Device;
use hepar::ops::loss;
use hepar::tensor::{DType, Tensor};
use hepar::{no_grad, HeparError};

fn check(name: &str, f: impl Fn(&[Tensor]) -> hepar::Result<Tensor>, inputs: &[Tensor]) {
    if let Err(e) = gradcheck(f, inputs, GradcheckOptions::default()) {
        panic!("{name}: {e}");
    }
}

/// Values away from 0 so kinks (relu, abs, clamp) are not straddled by the finite difference.
fn away_from_zero(shape: &[usize], seed: u64, dev: Device) -> Tensor {
    let t = rand_on(shape, seed, dev);
    let v: Vec<f64> = t
        .to_vec_f64()
        .into_iter()
        .map(|x| {
            if x.abs() < 0.05 {
                x + 0.1_f64.copysign(x)
            } else {
                x
            }
        })
        .collect();
    Tensor::from_vec_on(v, shape, dev).unwrap()
}

#[test]
fn unary_ops_backward() {
    for_each_device(|dev| {
        let x = away_from_zero(&[3, 4, 5], 1, dev);
        let pos = x.abs().unwrap().add_scalar(0.2).unwrap();
        check("exp", |t| t[0].exp(), &[x.clone()]);
        check("log", |t| t[0].log(), &[pos.clone()]);
        check("sqrt", |t| t[0].sqrt(), &[pos.clone()]);
        check("powf", |t| t[0].powf(2.3), &[pos.clone()]);
        check("recip", |t| t[0].recip(), &[pos]);
        check("abs", |t| t[0].abs(), &[x.clone()]);
        check("square", |t| t[0].square(), &[x.clone()]);
        check("relu", |t| t[0].relu(), &[x.clone()]);
        check("leaky_relu", |t| t[0].leaky_relu(0.2), &[x.clone()]);
        check("sigmoid", |t| t[0].sigmoid(), &[x.clone()]);
        check("silu", |t| t[0].silu(), &[x.clone()]);
        check("gelu", |t| t[0].gelu(), &[x.clone()]);
        check("tanh", |t| t[0].tanh(), &[x.clone()]);
        check("clamp", |t| t[0].clamp(-0.7, 0.6), &[x.clone()]);
        check("affine", |t| t[0].affine(-1.5, 0.3), &[x.clone()]);
        // Through a non-contiguous view.
        check("exp of transposed", |t| t[0].transpose(0, 2)?.exp(), &[x]);
    });
}

#[test]
fn binary_ops_backward_with_broadcasting() {
    for_each_device(|dev| {
        let a = rand_on(&[4, 1, 3], 2, dev);
        let b = rand_on(&[5, 1], 3, dev)
            .abs()
            .unwrap()
            .add_scalar(0.5)
            .unwrap();
        check("add", |t| t[0].add(&t[1]), &[a.clone(), b.clone()]);
        check("sub", |t| t[0].sub(&t[1]), &[a.clone(), b.clone()]);
        check("mul", |t| t[0].mul(&t[1]), &[a.clone(), b.clone()]);
        check("div", |t| t[0].div(&t[1]), &[a.clone(), b.clone()]);
        check(
            "maximum",
            |t| t[0].maximum(&t[1]),
            &[a.clone(), rand_on(&[4, 5, 3], 4, dev)],
        );
        check(
            "minimum",
            |t| t[0].minimum(&t[1]),
            &[a.clone(), rand_on(&[4, 5, 3], 5, dev)],
        );
        // The same tensor used twice accumulates both paths.
        check("x * x + x", |t| t[0].mul(&t[0])?.add(&t[0]), &[a]);
    });
}

#[test]
fn reductions_and_softmax_backward() {
    for_each_device(|dev| {
        let x = rand_on(&[3, 4, 5], 6, dev);
        check("sum", |t| t[0].sum_axes(&[0, 2], false), &[x.clone()]);
        check("mean", |t| t[0].mean_axes(&[1], true), &[x.clone()]);
        check("max", |t| t[0].max_axes(&[2], false), &[x.clone()]);
        check("sum_all", |t| t[0].sum_all(), &[x.clone()]);
        for axis in 0..3 {
            check("softmax", |t| t[0].softmax(axis), &[x.clone()]);
            check("log_softmax", |t| t[0].log_softmax(axis), &[x.clone()]);
        }
    });
}

#[test]
fn shape_ops_backward() {
    for_each_device(|dev| {
        let x = rand_on(&[2, 3, 4], 7, dev);
        check(
            "reshape",
            |t| t[0].reshape(&[6, 4])?.mul(&t[0].reshape(&[6, 4])?),
            &[x.clone()],
        );
        check("permute", |t| t[0].permute(&[2, 0, 1]), &[x.clone()]);
        check("narrow", |t| t[0].narrow(2, 1, 2), &[x.clone()]);
        check(
            "broadcast_to",
            |t| t[0].narrow(0, 0, 1)?.broadcast_to(&[5, 3, 4]),
            &[x.clone()],
        );
        check(
            "cat",
            |t| Tensor::cat(&[t[0].clone(), t[1].clone()], 1),
            &[x.clone(), rand_on(&[2, 2, 4], 8, dev)],
        );
        check(
            "split",
            |t| Ok(t[0].split(2, &[1, 3])?[1].clone()),
            &[x.clone()],
        );
        check("pad", |t| t[0].pad(&[(1, 2), (0, 3)], 0.5), &[x]);
    });
}

#[test]
fn matmul_backward() {
    for_each_device(|dev| {
        check(
            "matmul",
            |t| t[0].matmul(&t[1]),
            &[
                rand_on(&[2, 3, 4], 9, dev),
                rand_on(&[4, 5], 10, dev).unsqueeze(0).unwrap(),
            ],
        );
        check(
            "matmul transposed",
            |t| t[0].transpose(0, 1)?.matmul(&t[1]),
            &[rand_on(&[4, 3], 11, dev), rand_on(&[4, 2], 12, dev)],
        );
    });
}

#[test]
fn norms_backward() {
    for_each_device(|dev| {
        let x = rand_on(&[2, 4, 3, 5], 13, dev);
        let w = rand_on(&[4], 14, dev);
        let b = rand_on(&[4], 15, dev);
        check(
            "group_norm",
            |t| t[0].group_norm(2, Some(&t[1]), Some(&t[2]), 1e-5),
            &[x.clone(), w.clone(), b.clone()],
        );
        check(
            "group_norm no affine",
            |t| t[0].group_norm(4, None, None, 1e-5),
            &[x.clone()],
        );
        check(
            "group_norm_silu",
            |t| t[0].group_norm_silu(2, Some(&t[1]), Some(&t[2]), 1e-5),
            &[x.clone(), w.clone(), b.clone()],
        );
        let stats = || {
            (
                Tensor::zeros(&[4], DType::F64, dev).unwrap(),
                Tensor::ones(&[4], DType::F64, dev).unwrap(),
            )
        };
        check(
            "batch_norm train",
            |t| {
                let (rm, rv) = stats();
                t[0].batch_norm(Some(&t[1]), Some(&t[2]), &rm, &rv, true, 0.1, 1e-5)
            },
            &[x.clone(), w.clone(), b.clone()],
        );
        check(
            "batch_norm eval",
            |t| {
                let rm = Tensor::from_vec_on(vec![0.1, -0.2, 0.3, 0.0], &[4], dev)?;
                let rv = Tensor::from_vec_on(vec![0.5, 1.5, 2.0, 0.9], &[4], dev)?;
                t[0].batch_norm(Some(&t[1]), Some(&t[2]), &rm, &rv, false, 0.1, 1e-5)
            },
            &[x, w, b],
        );
    });
}

#[test]
fn losses_backward() {
    for_each_device(|dev| {
        let logits = rand_on(&[2, 2, 3, 3], 16, dev);
        let target = Tensor::from_vec_on(
            (0..36).map(|i| ((i * 5) % 3 == 0) as i32 as f64).collect(),
            &[2, 2, 3, 3],
            dev,
        )
        .unwrap();
        check(
            "bce",
            |t| loss::bce_with_logits(&t[0], &target),
            &[logits.clone()],
        );
        check(
            "dice",
            |t| loss::soft_dice(&t[0], &target, 1e-5),
            &[logits.clone()],
        );
        check(
            "tversky",
            |t| loss::tversky(&t[0], &target, 0.3, 0.7, 1e-5),
            &[logits.clone()],
        );
        let labels =
            Tensor::from_vec_on((0..18).map(|i| (i % 2) as f64).collect(), &[2, 3, 3], dev)
                .unwrap();
        check(
            "cross_entropy",
            |t| loss::cross_entropy(&t[0], &labels, Some(&[0.3, 2.0])),
            &[logits],
        );
    });
}

#[test]
fn gradients_accumulate_until_zeroed() {
    for_each_device(|dev| {
        let x = Tensor::from_vec_on(vec![1.0f64, 2.0, 3.0], &[3], dev)
            .unwrap()
            .requires_grad_leaf();
        for _ in 0..2 {
            x.mul(&x).unwrap().sum_all().unwrap().backward().unwrap();
        }
        assert_eq!(x.grad().unwrap().to_vec_f64(), vec![4.0, 8.0, 12.0]);
        x.zero_grad();
        assert!(x.grad().is_none());
        x.sum_all().unwrap().backward().unwrap();
        assert_eq!(x.grad().unwrap().to_vec_f64(), vec![1.0, 1.0, 1.0]);
    });
}

#[test]
fn tape_errors_are_typed_not_panics() {
    for_each_device(|dev| {
        let x = Tensor::from_vec_on(vec![1.0f64, -2.0], &[2], dev)
            .unwrap()
            .requires_grad_leaf();
        // backward on a non-scalar
        assert!(matches!(
            x.exp().unwrap().backward(),
            Err(HeparError::Autograd(_))
        ));
        // backward twice through the same graph: the first pass freed it.
        let y = x.exp().unwrap().sum_all().unwrap();
        y.backward().unwrap();
        assert!(matches!(y.backward(), Err(HeparError::Autograd(_))));
        // NaN in a loss names the op that produced it.
        let bad = x.log().unwrap().sum_all().unwrap();
        match bad.backward() {
            Err(HeparError::NonFinite { msg, .. }) => assert!(msg.contains("sum"), "{msg}"),
            other => panic!("expected a NonFinite error, got {other:?}"),
        }
        // no_grad and detach record nothing.
        let z = no_grad(|| x.exp().unwrap());
        assert!(!z.requires_grad());
        assert!(!x.detach().requires_grad());
        assert!(x
            .detach()
            .exp()
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .is_err());
    });
}

#[test]
fn saved_activations_are_freed_after_backward() {
    for_each_device(|dev| {
        let x = rand_on(&[64], 1, dev).requires_grad_leaf();
        let hidden = x.exp().unwrap();
        let weak = std::sync::Arc::downgrade(&hidden.storage_handle());
        let loss = hidden.sigmoid().unwrap().sum_all().unwrap();
        drop(hidden);
        assert!(
            weak.upgrade().is_some(),
            "the graph keeps the activation alive before backward"
        );
        loss.backward().unwrap();
        assert!(
            weak.upgrade().is_none(),
            "backward freed the saved activation"
        );
    });
}
