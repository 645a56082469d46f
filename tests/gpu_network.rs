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

/// Losses and final parameters of two AdamW steps on `device`.
fn train_two_steps(device: Device) -> (Vec<f64>, Vec<(String, Vec<f32>)>) {
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
    for _ in 0..2 {
        optimizer.zero_grad();
        let loss = dice_bce(&model.forward(&x, true).unwrap(), &target, 0.7, 0.3, 1e-5).unwrap();
        losses.push(loss.to_scalar().unwrap());
        loss.backward().unwrap();
        optimizer.step().unwrap();
    }
    let params = parameters(&model)
        .into_iter()
        .map(|p| (p.name, p.tensor.to_vec_f32()))
        .collect();
    (losses, params)
}

#[test]
fn the_2d_seed_network_trains_on_the_gpu_devices_as_on_the_cpu() {
    let (cpu_losses, cpu_params) = train_two_steps(Device::Cpu);
    for dev in common::gpu_test_devices() {
        let (losses, params) = train_two_steps(dev);
        for (step, (g, c)) in losses.iter().zip(&cpu_losses).enumerate() {
            assert!(
                (g - c).abs() <= 1e-5 * c.abs().max(1.0),
                "step {step} loss on {dev}: {g} vs cpu {c}"
            );
        }
        for ((name, g), (_, c)) in params.iter().zip(&cpu_params) {
            // f32 sums in a different order: AdamW's first steps move each weight by about lr,
            // so agreement to 1e-4 absolute means every gradient sign and scale came out right.
            let worst = g
                .iter()
                .zip(c)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(worst <= 1e-4, "{name} on {dev}: worst difference {worst}");
        }
    }
}
