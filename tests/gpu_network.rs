//! A whole seed network on each GPU test device: the 2D CoTNeXt U-Net (convolutions, GroupNorm +
//! SiLU, CoT attention softmax, BatchNorm, pooling, upsampling, the Dice + BCE loss and AdamW)
//! trains two steps on the device and matches the CPU step for step.

mod common;

use hepar::backend::Device;
use hepar::nn::cotnext::{CotNextConfig, CotNextUnet};
use hepar::nn::{self, parameters};
use hepar::ops::loss::dice_bce;
use hepar::optim::{Adam, AdamConfig, Optimizer};
use hepar::tensor::{DType, Tensor};

/// What two AdamW steps on a device give: the losses, the first step's gradients and the final
/// parameters, by parameter name.
struct TwoSteps {
    losses: Vec<f64>,
    first_gradients: Vec<(String, Vec<f32>)>,
    params: Vec<(String, Vec<f32>)>,
}

/// The golden fixtures' score: `||a - r|| / (rtol ||r|| + atol sqrt(n))`, passing at 1.
fn score(a: &[f32], r: &[f32], rtol: f64, atol: f64) -> f64 {
    let diff: f64 = a
        .iter()
        .zip(r)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    let norm: f64 = r.iter().map(|y| (*y as f64).powi(2)).sum();
    diff.sqrt() / (rtol * norm.sqrt() + atol * (r.len() as f64).sqrt())
}

/// Losses, first gradients and final parameters of two AdamW steps on `device`.
fn train_two_steps(device: Device) -> TwoSteps {
    let config = CotNextConfig {
        dims: 2,
        in_channels: 3,
        classes: 1,
        width: 8,
    };
    let model = CotNextUnet::new(config, 7).unwrap();
    nn::to_device(&model, device).unwrap();
    let x = Tensor::randn(&[2, 3, 16, 16], DType::F32, 1)
        .to_device(device)
        .unwrap();
    let target = Tensor::rand_uniform(&[2, 1, 16, 16], 0.0, 1.0, DType::F32, 2)
        .affine(1.0, -0.6)
        .unwrap()
        .unary(hepar::backend::UnaryOp::Positive)
        .unwrap();
    let target = target.to_device(device).unwrap();
    let mut optimizer = Adam::new(parameters(&model), AdamConfig::adamw(1e-3, 1e-5));
    let mut losses = Vec::new();
    let mut first_gradients = Vec::new();
    for step in 0..2 {
        optimizer.zero_grad();
        let loss = dice_bce(&model.forward(&x, true).unwrap(), &target, 0.7, 0.3, 1e-5).unwrap();
        losses.push(loss.to_scalar().unwrap());
        loss.backward().unwrap();
        if step == 0 {
            for p in parameters(&model) {
                let g = p.tensor.grad().expect("every parameter gets a gradient");
                first_gradients.push((p.name, g.to_vec_f32()));
            }
        }
        optimizer.step().unwrap();
    }
    let params = parameters(&model)
        .into_iter()
        .map(|p| (p.name, p.tensor.to_vec_f32()))
        .collect();
    TwoSteps {
        losses,
        first_gradients,
        params,
    }
}

#[test]
fn the_2d_seed_network_trains_on_the_gpu_devices_as_on_the_cpu() {
    let cpu = train_two_steps(Device::Cpu);
    for dev in common::gpu_test_devices() {
        let run = train_two_steps(dev);
        for (step, (g, c)) in run.losses.iter().zip(&cpu.losses).enumerate() {
            assert!(
                (g - c).abs() <= 1e-5 * c.abs().max(1.0),
                "step {step} loss on {dev}: {g} vs cpu {c}"
            );
        }
        // f32 sums in another order: the gradients agree closely...
        for ((name, g), (_, c)) in run.first_gradients.iter().zip(&cpu.first_gradients) {
            let s = score(g, c, 1e-3, 1e-6);
            assert!(s <= 1.0, "gradient of {name} on {dev}: score {s}");
        }
        // ...and the weights after the steps as the fixtures score trained weights (10 lr and
        // lr / 100): Adam turns rounding noise in near-zero gradients into full-size steps, so
        // single elements may differ by up to 2 lr.
        for ((name, g), (_, c)) in run.params.iter().zip(&cpu.params) {
            let s = score(g, c, 1e-2, 1e-5);
            assert!(s <= 1.0, "{name} on {dev}: score {s}");
        }
    }
}
