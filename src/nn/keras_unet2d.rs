//! The Keras liver U-Net (`../shared/design/seed-unets.md`, keras_unet2d), channels-first: double
//! 3x3 convolutions with bias and ReLU, 2x2 transposed convolutions, skips cropped to the
//! upsampled size (never padded), no normalisation.

use super::layers::{Conv, ConvTranspose};
use super::registry::{ModelConfig, Network, NetworkOutput};
use super::{join, Init, Module, TensorKind};
use crate::error::Result;
use crate::ops::pool::PoolOptions;
use crate::tensor::Tensor;

/// `convK_1`, `convK_2`: two Conv k3 with bias, each followed by ReLU.
struct Block {
    convs: [Conv; 2],
}

impl Block {
    fn new(init: &mut Init, cin: usize, cout: usize) -> Self {
        Block {
            convs: [
                Conv::new(init, 2, cin, cout, 3, 1, true),
                Conv::new(init, 2, cout, cout, 3, 1, true),
            ],
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.convs[1]
            .forward(&self.convs[0].forward(x)?.relu()?)?
            .relu()
    }
}

pub struct KerasUnet2d {
    config: ModelConfig,
    /// Blocks 1..=9.
    blocks: Vec<Block>,
    /// up6..=up9.
    ups: Vec<ConvTranspose>,
    head: Conv,
}

/// Trims `skip` to `like`'s spatial size: in each axis `c // 2` before and the rest after, as
/// Keras's `Cropping2D` with the crop shape computed from the two sizes.
pub fn crop_to(skip: &Tensor, like: &Tensor) -> Result<Tensor> {
    let mut y = skip.clone();
    for axis in 2..skip.rank() {
        let (s, u) = (skip.shape()[axis], like.shape()[axis]);
        let excess = s.saturating_sub(u);
        if excess > 0 {
            y = y.narrow(axis as isize, excess / 2, s - excess)?;
        }
    }
    Ok(y)
}

impl KerasUnet2d {
    pub fn new(config: ModelConfig, seed: u64) -> Self {
        let mut init = Init::new(seed);
        let w = |k: usize| k * config.base;
        // Widths of blocks 1..9 at base 32: 32, 64, 128, 256, 512, 256, 128, 64, 32.
        let widths = [w(1), w(2), w(4), w(8), w(16), w(8), w(4), w(2), w(1)];
        let mut blocks = Vec::with_capacity(9);
        let mut cin = config.in_channels;
        for &cout in &widths[..5] {
            blocks.push(Block::new(&mut init, cin, cout));
            cin = cout;
        }
        // up6..up8 halve the width; up9 keeps it (64 -> 64 at base 32).
        let up_outs = [w(8), w(4), w(2), w(2)];
        let mut ups = Vec::with_capacity(4);
        let mut deep = w(16);
        for (k, &up_out) in up_outs.iter().enumerate() {
            ups.push(ConvTranspose::new(&mut init, 2, deep, up_out, 2, 2, 0));
            let skip = widths[3 - k];
            let out = widths[5 + k];
            blocks.push(Block::new(&mut init, up_out + skip, out));
            deep = out;
        }
        let head = Conv::new(&mut init, 2, w(1), config.classes, 1, 1, true);
        KerasUnet2d {
            config,
            blocks,
            ups,
            head,
        }
    }
}

impl Network for KerasUnet2d {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn forward_all(&self, x: &Tensor, _training: bool) -> Result<NetworkOutput> {
        self.config.check_input(x.shape())?;
        let pool = PoolOptions::new(vec![2, 2]);
        let mut skips = vec![self.blocks[0].forward(x)?];
        for block in &self.blocks[1..5] {
            let pooled = skips.last().expect("block 1 output").max_pool(&pool)?;
            skips.push(block.forward(&pooled)?);
        }
        let mut y = skips.pop().expect("block 5 output");
        for (up, block) in self.ups.iter().zip(&self.blocks[5..]) {
            let skip = skips.pop().expect("one skip per up block");
            let u = up.forward(&y)?;
            let cropped = crop_to(&skip, &u)?;
            y = block.forward(&Tensor::cat(&[u, cropped], 1)?)?;
        }
        Ok(NetworkOutput {
            logits: self.head.forward(&y)?,
            deep: Vec::new(),
        })
    }

    fn set_batchnorm_momentum(&mut self, _momentum: f64) {}
}

impl Module for KerasUnet2d {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        for (k, block) in self.blocks.iter().enumerate() {
            for (j, conv) in block.convs.iter().enumerate() {
                conv.visit(&join(prefix, &format!("conv{}_{}", k + 1, j + 1)), f);
            }
        }
        for (k, up) in self.ups.iter().enumerate() {
            up.visit(&join(prefix, &format!("up{}", k + 6)), f);
        }
        self.head.visit(&join(prefix, "conv10"), f);
    }
}
