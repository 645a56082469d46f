//! The 3-class 3D U-Net (`../shared/design/seed-unets.md`, unet3d_3class): double 3x3x3
//! convolutions with bias and ReLU, max-pool encoder, trilinear x2 upsampling (align_corners
//! false) in the decoder, one logit per class (background, liver, tumour).

use super::layers::Conv;
use super::registry::{ModelConfig, Network, NetworkOutput};
use super::{join, Init, Module, TensorKind};
use crate::error::Result;
use crate::ops::pool::PoolOptions;
use crate::tensor::Tensor;

/// `step.0` and `step.2`: Conv k3 with bias, ReLU, twice.
struct DoubleConv {
    convs: [Conv; 2],
}

impl DoubleConv {
    fn new(init: &mut Init, cin: usize, cout: usize) -> Self {
        DoubleConv {
            convs: [
                Conv::new(init, 3, cin, cout, 3, 1, true),
                Conv::new(init, 3, cout, cout, 3, 1, true),
            ],
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.convs[1]
            .forward(&self.convs[0].forward(x)?.relu()?)?
            .relu()
    }
}

impl Module for DoubleConv {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        self.convs[0].visit(&join(prefix, "step.0"), f);
        self.convs[1].visit(&join(prefix, "step.2"), f);
    }
}

pub struct Unet3d3Class {
    config: ModelConfig,
    /// layer1..layer7.
    layers: Vec<DoubleConv>,
    /// layer8.
    head: Conv,
}

/// x2 trilinear upsampling with align_corners false.
fn upsample2(x: &Tensor) -> Result<Tensor> {
    let size: Vec<usize> = x.shape()[2..].iter().map(|s| 2 * s).collect();
    x.upsample_linear(&size, false)
}

impl Unet3d3Class {
    pub fn new(config: ModelConfig, seed: u64) -> Self {
        let mut init = Init::new(seed);
        let b = config.base;
        let pairs = [
            (config.in_channels, b),
            (b, 2 * b),
            (2 * b, 4 * b),
            (4 * b, 8 * b),
            (8 * b + 4 * b, 4 * b),
            (4 * b + 2 * b, 2 * b),
            (2 * b + b, b),
        ];
        let layers = pairs
            .iter()
            .map(|&(cin, cout)| DoubleConv::new(&mut init, cin, cout))
            .collect();
        let head = Conv::new(&mut init, 3, b, config.classes, 1, 1, true);
        Unet3d3Class {
            config,
            layers,
            head,
        }
    }
}

impl Network for Unet3d3Class {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn forward_all(&self, x: &Tensor, _training: bool) -> Result<NetworkOutput> {
        self.config.check_input(x.shape())?;
        let pool = PoolOptions::new(vec![2, 2, 2]);
        let mut skips = vec![self.layers[0].forward(x)?];
        for layer in &self.layers[1..4] {
            let pooled = skips.last().expect("layer1 output").max_pool(&pool)?;
            skips.push(layer.forward(&pooled)?);
        }
        let mut y = skips.pop().expect("layer4 output");
        for layer in &self.layers[4..] {
            let skip = skips.pop().expect("one skip per decoder layer");
            y = layer.forward(&Tensor::cat(&[upsample2(&y)?, skip], 1)?)?;
        }
        Ok(NetworkOutput {
            logits: self.head.forward(&y)?,
            deep: Vec::new(),
        })
    }

    fn set_batchnorm_momentum(&mut self, _momentum: f64) {}
}

impl Module for Unet3d3Class {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        for (k, layer) in self.layers.iter().enumerate() {
            layer.visit(&join(prefix, &format!("layer{}", k + 1)), f);
        }
        self.head.visit(&join(prefix, "layer8"), f);
    }
}
