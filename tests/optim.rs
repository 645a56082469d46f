//! Optimizer steps against hand-computed values, state round trips, and LR schedules.

use hepar::optim::{
    Adam, AdamConfig, CosineAnnealing, LrSchedule, Optimizer, Param, Sgd, SgdConfig, StepDecay,
};
use hepar::tensor::Tensor;

mod common;

fn param(values: &[f64]) -> Param {
    Param {
        name: "w".into(),
        tensor: Tensor::from_vec(values.to_vec(), &[values.len()])
            .unwrap()
            .requires_grad_leaf(),
    }
}

/// One step on the loss sum(w^2), whose gradient is 2w.
fn step_on_square_loss(opt: &mut dyn Optimizer, p: &Param) {
    opt.zero_grad();
    p.tensor
        .square()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    opt.step().unwrap();
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn sgd_with_momentum_matches_hand_computation() {
    let p = param(&[1.0]);
    let mut opt = Sgd::new(
        vec![p.clone()],
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        },
    );
    // g=2 buf=2 p=0.8; g=1.6 buf=3.4 p=0.46; g=0.92 buf=3.98 p=0.062
    for expected in [0.8, 0.46, 0.062] {
        step_on_square_loss(&mut opt, &p);
        let got = p.tensor.to_vec_f64()[0];
        assert!(close(got, expected), "{got} vs {expected}");
    }
}

#[test]
fn adam_and_adamw_match_a_scalar_transcription() {
    for (decoupled, wd) in [(false, 0.0), (false, 0.05), (true, 0.1)] {
        let p = param(&[1.0, -0.5]);
        let config = AdamConfig {
            weight_decay: wd,
            decoupled,
            ..AdamConfig::adam(0.1)
        };
        let mut opt = Adam::new(vec![p.clone()], config);
        let mut expected = [1.0f64, -0.5];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        for t in 1..=3 {
            step_on_square_loss(&mut opt, &p);
            for i in 0..2 {
                let mut g = 2.0 * expected[i];
                if decoupled {
                    expected[i] *= 1.0 - 0.1 * wd;
                } else {
                    g += wd * expected[i];
                }
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                let mhat = m[i] / (1.0 - 0.9f64.powi(t));
                let vhat = v[i] / (1.0 - 0.999f64.powi(t));
                expected[i] -= 0.1 * mhat / (vhat.sqrt() + 1e-8);
            }
            let got = p.tensor.to_vec_f64();
            assert!(
                close(got[0], expected[0]) && close(got[1], expected[1]),
                "step {t}: {got:?} vs {expected:?}"
            );
        }
    }
    // First Adam step moves each weight by exactly lr (m_hat / sqrt(v_hat) = sign(g)).
    let p = param(&[1.0]);
    let mut opt = Adam::new(vec![p.clone()], AdamConfig::adam(0.1));
    step_on_square_loss(&mut opt, &p);
    assert!((p.tensor.to_vec_f64()[0] - 0.9).abs() < 1e-8);
}

#[test]
fn optimizer_state_round_trips_and_continues_identically() {
    let p1 = param(&[0.3, -1.2, 2.0]);
    let mut a = Adam::new(vec![p1.clone()], AdamConfig::adamw(0.05, 0.01));
    step_on_square_loss(&mut a, &p1);
    step_on_square_loss(&mut a, &p1);
    let p2 = param(&p1.tensor.to_vec_f64());
    let mut b = Adam::new(vec![p2.clone()], AdamConfig::adamw(0.05, 0.01));
    b.load_state(&a.state()).unwrap();
    step_on_square_loss(&mut a, &p1);
    step_on_square_loss(&mut b, &p2);
    assert_eq!(p1.tensor.to_vec_f64(), p2.tensor.to_vec_f64());

    let mut wrong = Adam::new(vec![param(&[1.0])], AdamConfig::adam(0.1));
    assert!(
        wrong.load_state(&a.state()).is_err(),
        "mis-shaped state is an error"
    );

    let q1 = param(&[1.0, 2.0]);
    let mut s = Sgd::new(
        vec![q1.clone()],
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        },
    );
    step_on_square_loss(&mut s, &q1);
    let q2 = param(&q1.tensor.to_vec_f64());
    let mut s2 = Sgd::new(
        vec![q2.clone()],
        SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            ..Default::default()
        },
    );
    s2.load_state(&s.state()).unwrap();
    step_on_square_loss(&mut s, &q1);
    step_on_square_loss(&mut s2, &q2);
    assert_eq!(q1.tensor.to_vec_f64(), q2.tensor.to_vec_f64());
}

#[test]
fn schedules_follow_their_formulas() {
    let cos = CosineAnnealing {
        base_lr: 1e-3,
        t_max: 3,
        eta_min: 1e-5,
    };
    assert!(close(cos.lr_at(0), 1e-3));
    assert!(close(cos.lr_at(3), 1e-5));
    // cos(pi/3) = 0.5 -> eta_min + 0.75 (base - eta_min)
    assert!(close(cos.lr_at(1), 1e-5 + 0.75 * (1e-3 - 1e-5)));
    let step = StepDecay {
        base_lr: 1.0,
        step_size: 2,
        gamma: 0.5,
    };
    let lrs: Vec<f64> = (0..5).map(|t| step.lr_at(t)).collect();
    assert_eq!(lrs, vec![1.0, 1.0, 0.5, 0.5, 0.25]);
}

/// The tensor-op formulation of one Adam/AdamW step the fused kernels replaced, element for
/// element in the same f32 operations: the fused updates must give the same bits.
fn adam_by_tensor_ops(
    p: &Tensor,
    g: &Tensor,
    m: Option<&Tensor>,
    v: Option<&Tensor>,
    c: AdamConfig,
    t: i32,
) -> (Tensor, Tensor, Tensor) {
    let mut p = p.clone();
    let mut g = g.clone();
    if c.decoupled {
        p = p.mul_scalar(1.0 - c.lr * c.weight_decay).unwrap();
    } else {
        g = g.add(&p.mul_scalar(c.weight_decay).unwrap()).unwrap();
    }
    let m = match m {
        Some(m) => m
            .mul_scalar(c.beta1)
            .unwrap()
            .add(&g.mul_scalar(1.0 - c.beta1).unwrap())
            .unwrap(),
        None => g.mul_scalar(1.0 - c.beta1).unwrap(),
    };
    let v = match v {
        Some(v) => v
            .mul_scalar(c.beta2)
            .unwrap()
            .add(&g.square().unwrap().mul_scalar(1.0 - c.beta2).unwrap())
            .unwrap(),
        None => g.square().unwrap().mul_scalar(1.0 - c.beta2).unwrap(),
    };
    let (bias1, bias2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
    let denom = v
        .mul_scalar(1.0 / bias2)
        .unwrap()
        .sqrt()
        .unwrap()
        .add_scalar(c.eps)
        .unwrap();
    let p = p
        .sub(&m.div(&denom).unwrap().mul_scalar(c.lr / bias1).unwrap())
        .unwrap();
    (p, m, v)
}

#[test]
fn fused_adam_steps_equal_the_tensor_op_formulation_bit_for_bit_on_every_device() {
    for dev in common::test_devices() {
        for config in [
            AdamConfig::adamw(1e-2, 0.05),
            AdamConfig {
                weight_decay: 0.01,
                ..AdamConfig::adam(3e-3)
            },
        ] {
            let init = Tensor::randn(&[1031], hepar::DType::F32, 3);
            let p = Param {
                name: "w".into(),
                tensor: init.to_device(dev).unwrap().requires_grad_leaf(),
            };
            let mut opt = Adam::new(vec![p.clone()], config);
            // A copy: on the CPU the parameter shares `init`'s storage and is updated in place.
            let (mut reference, mut m, mut v) = (
                Tensor::from_vec(init.to_vec_f32(), &[1031]).unwrap(),
                None,
                None,
            );
            for t in 1..=3 {
                opt.zero_grad();
                // Loss sum(w^3) / 3: gradient w^2, different in every step.
                p.tensor
                    .powf(3.0)
                    .unwrap()
                    .mul_scalar(1.0 / 3.0)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .backward()
                    .unwrap();
                let g = p
                    .tensor
                    .grad()
                    .unwrap()
                    .to_device(hepar::backend::Device::Cpu)
                    .unwrap();
                opt.step().unwrap();
                let (np, nm, nv) =
                    adam_by_tensor_ops(&reference, &g, m.as_ref(), v.as_ref(), config, t);
                (reference, m, v) = (np, Some(nm), Some(nv));
                assert_eq!(p.tensor.device(), dev);
                assert_eq!(
                    p.tensor.to_vec_f32(),
                    reference.to_vec_f32(),
                    "{config:?} step {t} on {dev}"
                );
            }
        }
    }
}
