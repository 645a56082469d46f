//! The RibFrac residual 3D U-Net (`../shared/design/seed-unets.md`, res3dunet): residual blocks of
//! dilated 3x3x3 convolutions with BatchNorm and ReLU, strided-convolution downsampling,
//! transposed-convolution upsampling, dropout, and four deep-supervision heads.

use super::layers::{BatchNorm, Conv, ConvTranspose};
use super::registry::{ModelConfig, Network, NetworkOutput};
use super::{join, Init, Module, TensorKind};
use crate::error::Result;
use crate::ops::conv::ConvOptions;
use crate::tensor::Tensor;
use std::sync::atomic::{AtomicU64, Ordering};

/// A convolution (no bias) followed by its BatchNorm and ReLU.
struct ConvBnRelu {
    conv: Conv,
    norm: BatchNorm,
}

impl ConvBnRelu {
    fn new(init: &mut Init, cin: usize, cout: usize, kernel: usize, options: ConvOptions) -> Self {
        ConvBnRelu {
            conv: Conv::with_options(init, 3, cin, cout, kernel, false, options),
            norm: BatchNorm::new(cout),
        }
    }

    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        self.norm.forward(&self.conv.forward(x)?, training)?.relu()
    }
}

/// Convolutions `conv1..convK` (3x3x3, padding = dilation) with `bn1..bnK`; the first maps
/// cin -> cout, the others keep cout.
struct DilatedBlock {
    layers: Vec<ConvBnRelu>,
}

impl DilatedBlock {
    fn new(init: &mut Init, cin: usize, cout: usize, dilations: &[usize]) -> Self {
        let layers = dilations
            .iter()
            .enumerate()
            .map(|(i, &d)| {
                let options = ConvOptions {
                    padding: vec![d],
                    dilation: vec![d],
                    ..ConvOptions::default()
                };
                ConvBnRelu::new(init, if i == 0 { cin } else { cout }, cout, 3, options)
            })
            .collect();
        DilatedBlock { layers }
    }

    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let mut y = x.clone();
        for layer in &self.layers {
            y = layer.forward(&y, training)?;
        }
        Ok(y)
    }
}

impl Module for DilatedBlock {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        for (i, layer) in self.layers.iter().enumerate() {
            layer
                .conv
                .visit(&join(prefix, &format!("conv{}", i + 1)), f);
            layer.norm.visit(&join(prefix, &format!("bn{}", i + 1)), f);
        }
    }
}

/// Transposed conv k2 s2 with bias, BatchNorm, ReLU: entries `up.*`, `bn1.*`.
struct Up {
    up: ConvTranspose,
    norm: BatchNorm,
}

impl Up {
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        self.norm.forward(&self.up.forward(x)?, training)?.relu()
    }
}

/// Conv k1 with bias to the output channels, then trilinear upsampling (align_corners) by
/// `scale` back to the input's size.
struct Mapping {
    conv: Conv,
    scale: usize,
}

impl Mapping {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv.forward(x)?;
        if self.scale == 1 {
            return Ok(y);
        }
        let size: Vec<usize> = y.shape()[2..].iter().map(|s| s * self.scale).collect();
        y.upsample_linear(&size, true)
    }
}

pub struct Res3dUnet {
    config: ModelConfig,
    encoders: Vec<DilatedBlock>,
    decoders: Vec<DilatedBlock>,
    /// down1..down3 (k2 s2) and down4 (k3 p1): entries `down.*`, `bn1.*`.
    downs: Vec<ConvBnRelu>,
    ups: Vec<Up>,
    maps: Vec<Mapping>,
    dropout_seed: AtomicU64,
}

impl Res3dUnet {
    pub fn new(config: ModelConfig, seed: u64) -> Self {
        let mut init = Init::new(seed);
        let b = config.base;
        let encoders = vec![
            DilatedBlock::new(&mut init, config.in_channels, b, &[1, 1]),
            DilatedBlock::new(&mut init, 2 * b, 2 * b, &[1, 1, 1]),
            DilatedBlock::new(&mut init, 4 * b, 4 * b, &[1, 2, 4]),
            DilatedBlock::new(&mut init, 8 * b, 8 * b, &[3, 4, 5]),
        ];
        let decoders = vec![
            DilatedBlock::new(&mut init, 8 * b, 16 * b, &[1, 1, 1]),
            DilatedBlock::new(&mut init, 12 * b, 8 * b, &[1, 1, 1]),
            DilatedBlock::new(&mut init, 6 * b, 4 * b, &[1, 1, 1]),
            DilatedBlock::new(&mut init, 3 * b, 2 * b, &[1, 1]),
        ];
        let halve = ConvOptions {
            stride: vec![2],
            ..ConvOptions::default()
        };
        let same = ConvOptions {
            padding: vec![1],
            ..ConvOptions::default()
        };
        let downs = vec![
            ConvBnRelu::new(&mut init, b, 2 * b, 2, halve.clone()),
            ConvBnRelu::new(&mut init, 2 * b, 4 * b, 2, halve.clone()),
            ConvBnRelu::new(&mut init, 4 * b, 8 * b, 2, halve),
            ConvBnRelu::new(&mut init, 8 * b, 16 * b, 3, same),
        ];
        let ups = [(16 * b, 8 * b), (8 * b, 4 * b), (4 * b, 2 * b)]
            .iter()
            .map(|&(cin, cout)| Up {
                up: ConvTranspose::new(&mut init, 3, cin, cout, 2, 2, 0),
                norm: BatchNorm::new(cout),
            })
            .collect();
        let maps = [(16 * b, 8), (8 * b, 4), (4 * b, 2), (2 * b, 1)]
            .iter()
            .map(|&(cin, scale)| Mapping {
                conv: Conv::new(&mut init, 3, cin, config.classes, 1, 1, true),
                scale,
            })
            .collect();
        Res3dUnet {
            config,
            encoders,
            decoders,
            downs,
            ups,
            maps,
            dropout_seed: AtomicU64::new(seed),
        }
    }

    fn batchnorms_mut(&mut self) -> impl Iterator<Item = &mut BatchNorm> {
        let blocks = self
            .encoders
            .iter_mut()
            .chain(self.decoders.iter_mut())
            .flat_map(|b| b.layers.iter_mut().map(|l| &mut l.norm));
        let downs = self.downs.iter_mut().map(|d| &mut d.norm);
        let ups = self.ups.iter_mut().map(|u| &mut u.norm);
        blocks.chain(downs).chain(ups)
    }
}

impl Network for Res3dUnet {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn forward_all(&self, x: &Tensor, training: bool) -> Result<NetworkOutput> {
        self.config.check_input(x.shape())?;
        let p = self.config.dropout;
        // One seed per training forward; each of the six dropout sites derives its own from it.
        let seed = if training && p > 0.0 {
            self.dropout_seed.fetch_add(1, Ordering::Relaxed)
        } else {
            0
        };
        let site_seed = |site: u64| seed.wrapping_mul(8).wrapping_add(site);
        let drop = |t: Tensor, site: u64| -> Result<Tensor> {
            if training && p > 0.0 {
                t.dropout(p, true, site_seed(site))
            } else {
                Ok(t)
            }
        };
        let (en, de) = (&self.encoders, &self.decoders);
        // `x` has 1 channel (broadcast over the first block's) or as many.
        let l1 = en[0].forward(x, training)?.add(x)?;
        let s1 = self.downs[0].forward(&l1, training)?;
        let l2 = drop(en[1].forward(&s1, training)?.add(&s1)?, 0)?;
        let s2 = self.downs[1].forward(&l2, training)?;
        let l3 = drop(en[2].forward(&s2, training)?.add(&s2)?, 1)?;
        let s3 = self.downs[2].forward(&l3, training)?;
        let l4 = drop(en[3].forward(&s3, training)?.add(&s3)?, 2)?;
        let s4 = self.downs[3].forward(&l4, training)?;
        let out = drop(de[0].forward(&l4, training)?.add(&s4)?, 3)?;
        let o1 = self.maps[0].forward(&out)?;
        let mut out = out;
        let mut deep = vec![o1];
        for (k, skip) in [l3, l2, l1].iter().enumerate() {
            let up = self.ups[k].forward(&out, training)?;
            let joined = Tensor::cat(&[up.clone(), skip.clone()], 1)?;
            let y = de[k + 1].forward(&joined, training)?.add(&up)?;
            // The last level has no dropout.
            out = if k < 2 { drop(y, 4 + k as u64)? } else { y };
            deep.push(self.maps[k + 1].forward(&out)?);
        }
        let logits = deep.pop().expect("four heads");
        Ok(NetworkOutput { logits, deep })
    }

    fn set_batchnorm_momentum(&mut self, momentum: f64) {
        for n in self.batchnorms_mut() {
            n.momentum = momentum;
        }
    }

    fn set_dropout_seed(&self, seed: u64) {
        self.dropout_seed.store(seed, Ordering::Relaxed);
    }
}

impl Module for Res3dUnet {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        for (i, e) in self.encoders.iter().enumerate() {
            e.visit(&join(prefix, &format!("en{}", i + 1)), f);
        }
        for (i, d) in self.decoders.iter().enumerate() {
            d.visit(&join(prefix, &format!("de{}", i + 1)), f);
        }
        for (i, d) in self.downs.iter().enumerate() {
            let p = join(prefix, &format!("down{}", i + 1));
            d.conv.visit(&join(&p, "down"), f);
            d.norm.visit(&join(&p, "bn1"), f);
        }
        for (i, u) in self.ups.iter().enumerate() {
            let p = join(prefix, &format!("up{}", i + 2));
            u.up.visit(&join(&p, "up"), f);
            u.norm.visit(&join(&p, "bn1"), f);
        }
        for (i, m) in self.maps.iter().enumerate() {
            let p = join(prefix, &format!("map{}", i + 1));
            m.conv.visit(&join(&p, "conv"), f);
        }
    }
}
