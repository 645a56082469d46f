//! The seed's CoTNeXt U-Net (../shared/design/cotnext-unet.md): a U-Net whose encoder and decoder
//! stages are ResNeXt bottleneck blocks with Contextual Transformer (CoT) attention, in 2D or 3D.

use super::layers::{BatchNorm, Conv, GroupNorm};
use super::registry::{Arch, ModelConfig, Network, NetworkOutput};
use super::{join, Init, Module, TensorKind};
use crate::error::{HeparError, Result};
use crate::ops::pool::PoolOptions;
use crate::tensor::Tensor;

/// Architecture settings of one network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CotNextConfig {
    /// 2 (tumour stage, slices as channels) or 3 (liver stage, volumes).
    pub dims: usize,
    pub in_channels: usize,
    pub classes: usize,
    /// Base width `n`: stages have n, 2n, 4n, 8n, 8n channels.
    pub width: usize,
}

impl CotNextConfig {
    pub fn validate(&self) -> Result<()> {
        if !(self.dims == 2 || self.dims == 3) {
            return Err(HeparError::Config(format!(
                "dims must be 2 or 3, got {}",
                self.dims
            )));
        }
        // GroupNorm(8) on n channels, GroupNorm(4) and 4 conv groups on n/2 channels.
        if self.width < 8
            || !self.width.is_multiple_of(8)
            || self.in_channels == 0
            || self.classes == 0
        {
            return Err(HeparError::Config(format!("width must be a positive multiple of 8 and channels/classes positive, got {self:?}")));
        }
        Ok(())
    }
}

impl From<CotNextConfig> for ModelConfig {
    fn from(c: CotNextConfig) -> ModelConfig {
        ModelConfig {
            arch: if c.dims == 3 {
                Arch::CotNext3d
            } else {
                Arch::CotNext2d
            },
            in_channels: c.in_channels,
            classes: c.classes,
            base: c.width,
            dropout: 0.0,
        }
    }
}

/// Conv, GroupNorm, optional SiLU: state_dict entries `.0` (conv) and `.1` (norm).
struct ConvNorm {
    conv: Conv,
    norm: GroupNorm,
    activate: bool,
}

impl ConvNorm {
    fn new(
        init: &mut Init,
        dims: usize,
        cin: usize,
        cout: usize,
        kernel: usize,
        groups: usize,
        norm_groups: usize,
        activate: bool,
    ) -> Self {
        ConvNorm {
            conv: Conv::new(init, dims, cin, cout, kernel, groups, false),
            norm: GroupNorm::new(norm_groups, cout),
            activate,
        }
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.conv.forward(x)?;
        if self.activate {
            self.norm.forward_silu(&y)
        } else {
            self.norm.forward(&y)
        }
    }
}

impl Module for ConvNorm {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        self.conv.visit(&join(prefix, "0"), f);
        self.norm.visit(&join(prefix, "1"), f);
    }
}

/// Contextual Transformer attention with a 3-wide kernel: static context from a grouped conv
/// (keys), dynamic context from attention weights computed on [keys, input].
struct CotAttention {
    key_conv: Conv,
    key_norm: BatchNorm,
    value_conv: Conv,
    value_norm: BatchNorm,
    attention_reduce: Conv,
    attention_norm: BatchNorm,
    attention_expand: Conv,
    kernel_positions: usize,
}

impl CotAttention {
    const KERNEL: usize = 3;

    fn new(init: &mut Init, dims: usize, c: usize) -> Self {
        let kk = Self::KERNEL * Self::KERNEL;
        CotAttention {
            key_conv: Conv::new(init, dims, c, c, Self::KERNEL, 4, false),
            key_norm: BatchNorm::new(c),
            value_conv: Conv::new(init, dims, c, c, 1, 1, false),
            value_norm: BatchNorm::new(c),
            attention_reduce: Conv::new(init, dims, 2 * c, 2 * c / 4, 1, 1, false),
            attention_norm: BatchNorm::new(2 * c / 4),
            attention_expand: Conv::new(init, dims, 2 * c / 4, kk * c, 1, 1, true),
            kernel_positions: kk,
        }
    }

    fn set_batchnorm_momentum(&mut self, momentum: f64) {
        for bn in [
            &mut self.key_norm,
            &mut self.value_norm,
            &mut self.attention_norm,
        ] {
            bn.momentum = momentum;
        }
    }

    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let keys = self
            .key_norm
            .forward(&self.key_conv.forward(x)?, training)?
            .silu()?;
        let values = self
            .value_norm
            .forward(&self.value_conv.forward(x)?, training)?;
        let context = Tensor::cat(&[keys.clone(), x.clone()], 1)?;
        let hidden = self
            .attention_norm
            .forward(&self.attention_reduce.forward(&context)?, training)?
            .silu()?;
        // The expansion's output channels are grouped (c, k*k) and each channel's k*k maps are
        // averaged. Averaging is linear, so the expansion (a 1x1 conv) takes the averaged weights
        // and bias and gives the c maps directly: k*k times less work, and no [n, k*k*c,
        // positions] tensor forward or backward.
        let (n, c) = (x.shape()[0], x.shape()[1]);
        let positions: usize = x.shape()[2..].iter().product();
        let attention = self
            .averaged_expansion(c)?
            .forward(&hidden)?
            .reshape(&[n, c, positions])?;
        let weights = attention.softmax(-1)?;
        let dynamic = weights
            .mul(&values.reshape(&[n, c, positions])?)?
            .reshape(x.shape())?;
        keys.add(&dynamic)
    }
}

impl CotAttention {
    /// The attention expansion with its k*k maps per channel averaged into one (gradients flow
    /// back to the expansion's own weights through the average).
    fn averaged_expansion(&self, channels: usize) -> Result<Conv> {
        let expand = &self.attention_expand;
        let kk = self.kernel_positions;
        let mut grouped = expand.weight.shape().to_vec();
        grouped.splice(0..1, [channels, kk]);
        let weight = expand.weight.reshape(&grouped)?.mean_axes(&[1], false)?;
        let bias = match &expand.bias {
            Some(b) => Some(b.reshape(&[channels, kk])?.mean_axes(&[1], false)?),
            None => None,
        };
        Ok(Conv {
            weight,
            bias,
            options: expand.options.clone(),
        })
    }
}

impl Module for CotAttention {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        self.key_conv.visit(&join(prefix, "key_embed.0"), f);
        self.key_norm.visit(&join(prefix, "key_embed.1"), f);
        self.value_conv.visit(&join(prefix, "value_embed.0"), f);
        self.value_norm.visit(&join(prefix, "value_embed.1"), f);
        self.attention_reduce
            .visit(&join(prefix, "attention_embed.0"), f);
        self.attention_norm
            .visit(&join(prefix, "attention_embed.1"), f);
        self.attention_expand
            .visit(&join(prefix, "attention_embed.3"), f);
    }
}

/// ResNeXt bottleneck with CoT attention in the middle; a projected residual when widths differ.
struct Block {
    reduce: ConvNorm,
    grouped: ConvNorm,
    attention: CotAttention,
    attention_norm: GroupNorm,
    expand: ConvNorm,
    residual: Option<ConvNorm>,
}

impl Block {
    fn new(init: &mut Init, dims: usize, cin: usize, cout: usize) -> Self {
        let m = cout / 2;
        Block {
            reduce: ConvNorm::new(init, dims, cin, m, 1, 1, 4, true),
            grouped: ConvNorm::new(init, dims, m, m, 3, 4, 4, true),
            attention: CotAttention::new(init, dims, m),
            attention_norm: GroupNorm::new(4, m),
            expand: ConvNorm::new(init, dims, m, cout, 1, 1, 4, false),
            residual: (cin != cout).then(|| ConvNorm::new(init, dims, cin, cout, 1, 1, 4, false)),
        }
    }

    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let y = self.grouped.forward(&self.reduce.forward(x)?)?;
        let y = self
            .attention_norm
            .forward_silu(&self.attention.forward(&y, training)?)?;
        let y = self.expand.forward(&y)?;
        let shortcut = match &self.residual {
            Some(r) => r.forward(x)?,
            None => x.clone(),
        };
        y.add(&shortcut)?.silu()
    }
}

impl Module for Block {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        self.reduce.visit(&join(prefix, "conv1"), f);
        self.grouped.visit(&join(prefix, "conv2"), f);
        self.attention.visit(&join(prefix, "conv3.0"), f);
        self.attention_norm.visit(&join(prefix, "conv3.1"), f);
        self.expand.visit(&join(prefix, "conv4"), f);
        if let Some(r) = &self.residual {
            r.visit(&join(prefix, "residual"), f);
        }
    }
}

/// The CoTNeXt U-Net. State_dict keys: `conv.double_conv.*`, `enc{1..4}.encoder.1.*`,
/// `dec{1..4}.conv.*`, `out.conv.*`.
pub struct CotNextUnet {
    pub config: CotNextConfig,
    /// The same settings as the registry names them.
    registry_config: ModelConfig,
    stem: [ConvNorm; 2],
    encoders: Vec<Block>,
    decoders: Vec<Block>,
    head: Conv,
}

impl CotNextUnet {
    pub fn new(config: CotNextConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut init = Init::new(seed);
        let (d, n) = (config.dims, config.width);
        let stem = [
            ConvNorm::new(&mut init, d, config.in_channels, n, 3, 1, 8, true),
            ConvNorm::new(&mut init, d, n, n, 3, 1, 8, true),
        ];
        let encoders = [(n, 2 * n), (2 * n, 4 * n), (4 * n, 8 * n), (8 * n, 8 * n)]
            .iter()
            .map(|&(i, o)| Block::new(&mut init, d, i, o))
            .collect();
        let decoders = [(16 * n, 4 * n), (8 * n, 2 * n), (4 * n, n), (2 * n, n)]
            .iter()
            .map(|&(i, o)| Block::new(&mut init, d, i, o))
            .collect();
        let head = Conv::new(&mut init, d, n, config.classes, 1, 1, true);
        Ok(CotNextUnet {
            config,
            registry_config: config.into(),
            stem,
            encoders,
            decoders,
            head,
        })
    }

    /// Sets the running-statistics momentum of every BatchNorm (PyTorch's default is 0.1).
    pub fn set_batchnorm_momentum(&mut self, momentum: f64) {
        for block in self.encoders.iter_mut().chain(self.decoders.iter_mut()) {
            block.attention.set_batchnorm_momentum(momentum);
        }
    }

    /// Logits [N, classes, ...] for input [N, in_channels, ...] (any spatial size >= 16).
    pub fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        let expected_rank = self.config.dims + 2;
        if x.rank() != expected_rank || x.shape()[1] != self.config.in_channels {
            return Err(HeparError::shape(
                "cotnext_unet",
                format!(
                    "input {:?}: expected [N, {}, {}]",
                    x.shape(),
                    self.config.in_channels,
                    vec!["size"; self.config.dims].join(", ")
                ),
            ));
        }
        if x.shape()[2..].iter().any(|&s| s < 16) {
            return Err(HeparError::shape(
                "cotnext_unet",
                format!(
                    "input {:?}: every spatial size must be at least 16 (four 2x poolings)",
                    x.shape()
                ),
            ));
        }
        let pool = PoolOptions::new(vec![2; self.config.dims]);
        let mut skips = vec![self.stem[1].forward(&self.stem[0].forward(x)?)?];
        for enc in &self.encoders {
            let pooled = skips.last().expect("stem output").max_pool(&pool)?;
            skips.push(enc.forward(&pooled, training)?);
        }
        let mut y = skips.pop().expect("deepest stage");
        for dec in &self.decoders {
            let skip = skips.pop().expect("one skip per decoder");
            y = dec.forward(&upsample_to_skip(&y, &skip)?, training)?;
        }
        self.head.forward(&y)
    }
}

/// Upsamples x2 (linear, align_corners), zero-pads to the skip's size (diff / 2 before), then
/// concatenates [skip, upsampled] along channels.
fn upsample_to_skip(x: &Tensor, skip: &Tensor) -> Result<Tensor> {
    let size: Vec<usize> = x.shape()[2..].iter().map(|s| s * 2).collect();
    let up = x.upsample_linear(&size, true)?;
    let pads: Vec<(usize, usize)> = skip.shape()[2..]
        .iter()
        .zip(&size)
        .map(|(&s, &u)| {
            let diff = s.saturating_sub(u);
            (diff / 2, diff - diff / 2)
        })
        .collect();
    let up = if pads.iter().any(|&(a, b)| a + b > 0) {
        up.pad(&pads, 0.0)?
    } else {
        up
    };
    Tensor::cat(&[skip.clone(), up], 1)
}

impl Network for CotNextUnet {
    fn config(&self) -> &ModelConfig {
        &self.registry_config
    }

    fn forward_all(&self, x: &Tensor, training: bool) -> Result<NetworkOutput> {
        Ok(NetworkOutput {
            logits: CotNextUnet::forward(self, x, training)?,
            deep: Vec::new(),
        })
    }

    fn set_batchnorm_momentum(&mut self, momentum: f64) {
        CotNextUnet::set_batchnorm_momentum(self, momentum)
    }
}

impl Module for CotNextUnet {
    fn visit(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor, TensorKind)) {
        self.stem[0]
            .conv
            .visit(&join(prefix, "conv.double_conv.0"), f);
        self.stem[0]
            .norm
            .visit(&join(prefix, "conv.double_conv.1"), f);
        self.stem[1]
            .conv
            .visit(&join(prefix, "conv.double_conv.3"), f);
        self.stem[1]
            .norm
            .visit(&join(prefix, "conv.double_conv.4"), f);
        for (i, e) in self.encoders.iter().enumerate() {
            e.visit(&join(prefix, &format!("enc{}.encoder.1", i + 1)), f);
        }
        for (i, d) in self.decoders.iter().enumerate() {
            d.visit(&join(prefix, &format!("dec{}.conv", i + 1)), f);
        }
        self.head.visit(&join(prefix, "out.conv"), f);
    }
}
