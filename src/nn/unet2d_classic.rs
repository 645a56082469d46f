//! The U-Net course's classic 2D U-Net (`../shared/design/seed-unets.md`, unet2d_classic): double
//! 3x3 convolutions with BatchNorm and ReLU, max-pool encoder, transposed-convolution decoder.

use super::layers::{BatchNorm, Conv, ConvTranspose};
use super::registry::{ModelConfig, Network, NetworkOutput};
use super::{join, Init, Module, TensorKind};
use crate::error::Result;
use crate::ops::pool::PoolOptions;
use crate::tensor::Tensor;

/// Conv k3 (no bias), BN, ReLU, twice: entries `conv_block.{0,1,3,4}`.
pub(crate) struct ConvBnBlock {
    convs: [Conv; 2],
    norms: [BatchNorm; 2],
}

impl ConvBnBlock {
    pub(crate) fn new(init: &mut Init, dims: usize, cin: usize, cout: usize) -> Self {
        ConvBnBlock {
            convs: [
                Conv::new(init, dims, cin, cout, 3, 1, false),
                Conv::new(init, dims, cout, cout, 3, 1, false),
            ],
            norms: [BatchNorm::new(cout), BatchNorm::new(cout)],
        }
    }

    pub(crate) fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let mut y = x.clone();
        for (conv, norm) in self.convs.iter().zip(&self.norms) {
            y = norm.forward(&conv.forward(&y)?, training)?.relu()?;
        }
        Ok(y)
    }

    fn set_momentum(&mut self, momentum: f64) {
        for n in &mut self.norms {
            n.momentum = momentum;
        }
    }
}

impl Module for ConvBnBlock {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        let p = join(prefix, "conv_block");
        self.convs[0].visit(&join(&p, "0"), f);
        self.norms[0].visit(&join(&p, "1"), f);
        self.convs[1].visit(&join(&p, "3"), f);
        self.norms[1].visit(&join(&p, "4"), f);
    }
}

/// Transposed conv k4 s2 p1 (doubles each size), then a block on `cat([skip, up])`.
struct Decoder {
    up: ConvTranspose,
    block: ConvBnBlock,
}

pub struct Unet2dClassic {
    config: ModelConfig,
    in_conv: ConvBnBlock,
    encoders: Vec<ConvBnBlock>,
    decoders: Vec<Decoder>,
    out_conv: Conv,
}

impl Unet2dClassic {
    pub fn new(config: ModelConfig, seed: u64) -> Self {
        let mut init = Init::new(seed);
        let b = config.base;
        let widths = [b, 2 * b, 4 * b, 8 * b, 16 * b];
        let in_conv = ConvBnBlock::new(&mut init, 2, config.in_channels, b);
        let encoders = widths
            .windows(2)
            .map(|w| ConvBnBlock::new(&mut init, 2, w[0], w[1]))
            .collect();
        let decoders = widths
            .windows(2)
            .rev()
            .map(|w| Decoder {
                up: ConvTranspose::new(&mut init, 2, w[1], w[0], 4, 2, 1),
                block: ConvBnBlock::new(&mut init, 2, w[1], w[0]),
            })
            .collect();
        let out_conv = Conv::new(&mut init, 2, b, config.classes, 1, 1, true);
        Unet2dClassic {
            config,
            in_conv,
            encoders,
            decoders,
            out_conv,
        }
    }
}

impl Network for Unet2dClassic {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn forward_all(&self, x: &Tensor, training: bool) -> Result<NetworkOutput> {
        self.config.check_input(x.shape())?;
        let pool = PoolOptions::new(vec![2, 2]);
        let mut skips = vec![self.in_conv.forward(x, training)?];
        for enc in &self.encoders {
            let pooled = skips.last().expect("in_conv output").max_pool(&pool)?;
            skips.push(enc.forward(&pooled, training)?);
        }
        let mut y = skips.pop().expect("deepest level");
        for dec in &self.decoders {
            let skip = skips.pop().expect("one skip per decoder");
            let up = dec.up.forward(&y)?;
            y = dec.block.forward(&Tensor::cat(&[skip, up], 1)?, training)?;
        }
        Ok(NetworkOutput {
            logits: self.out_conv.forward(&y)?,
            deep: Vec::new(),
        })
    }

    fn set_batchnorm_momentum(&mut self, momentum: f64) {
        self.in_conv.set_momentum(momentum);
        for e in &mut self.encoders {
            e.set_momentum(momentum);
        }
        for d in &mut self.decoders {
            d.block.set_momentum(momentum);
        }
    }
}

impl Module for Unet2dClassic {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        self.in_conv.visit(&join(prefix, "in_conv"), f);
        for (i, e) in self.encoders.iter().enumerate() {
            // `encoder.0` is the max pool, which has no entries.
            e.visit(&join(prefix, &format!("enc_{}.encoder.1", i + 1)), f);
        }
        for (i, d) in self.decoders.iter().enumerate() {
            let p = join(prefix, &format!("dec_{}", i + 1));
            d.up.visit(&join(&p, "conv_trans"), f);
            d.block.visit(&join(&p, "conv_block"), f);
        }
        self.out_conv.visit(&join(prefix, "out_conv"), f);
    }
}
