//! The model registry: every network Hepar can build, by the name `--arch` takes, with the
//! settings that rebuild it (recorded in checkpoints, so a checkpoint knows its architecture).

use super::cotnext::{CotNextConfig, CotNextUnet};
use super::keras_unet2d::KerasUnet2d;
use super::res3dunet::Res3dUnet;
use super::unet2d_classic::Unet2dClassic;
use super::unet3d::Unet3d3Class;
use super::Module;
use crate::error::{HeparError, Result};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A network architecture, named as `--arch` and the fixtures' `arch` key name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// The seed's CoTNeXt U-Net on volumes (liver stage).
    #[serde(rename = "cotnext3d")]
    CotNext3d,
    /// The seed's CoTNeXt U-Net on 2D slices (tumour stage).
    #[serde(rename = "cotnext2d")]
    CotNext2d,
    /// The U-Net course's classic 2D U-Net (transposed-convolution decoder, BatchNorm).
    Unet2dClassic,
    /// The Keras liver U-Net (cropped skips, no normalisation).
    KerasUnet2d,
    /// The 3-class 3D U-Net (background, liver, tumour).
    #[serde(rename = "unet3d_3class")]
    Unet3d3Class,
    /// The residual 3D U-Net with dilations and deep supervision (rib fractures).
    #[serde(rename = "res3dunet")]
    Res3dUnet,
}

/// What every architecture states about itself.
#[derive(Clone, Copy, Debug)]
pub struct ArchInfo {
    pub name: &'static str,
    pub dims: usize,
    /// The seed's width (`base`, `n_channels` for CoTNeXt).
    pub default_base: usize,
    pub default_in_channels: usize,
    pub default_classes: usize,
    /// Every spatial size must be a multiple of this (1: no such rule).
    pub size_multiple: usize,
    /// Every spatial size must be at least this.
    pub min_size: usize,
}

impl Arch {
    pub const ALL: [Arch; 6] = [
        Arch::CotNext3d,
        Arch::CotNext2d,
        Arch::Unet2dClassic,
        Arch::KerasUnet2d,
        Arch::Unet3d3Class,
        Arch::Res3dUnet,
    ];

    pub fn info(self) -> ArchInfo {
        let (name, dims, default_base, default_in_channels, default_classes) = match self {
            Arch::CotNext3d => ("cotnext3d", 3, 16, 1, 1),
            Arch::CotNext2d => ("cotnext2d", 2, 32, 3, 1),
            Arch::Unet2dClassic => ("unet2d_classic", 2, 64, 3, 3),
            Arch::KerasUnet2d => ("keras_unet2d", 2, 32, 1, 1),
            Arch::Unet3d3Class => ("unet3d_3class", 3, 32, 1, 3),
            Arch::Res3dUnet => ("res3dunet", 3, 16, 1, 1),
        };
        // CoTNeXt pads its skips and Keras crops them; the others concatenate as they are.
        let (size_multiple, min_size) = match self {
            Arch::CotNext3d | Arch::CotNext2d => (1, 16),
            Arch::KerasUnet2d => (1, 16),
            Arch::Unet2dClassic => (16, 16),
            Arch::Unet3d3Class | Arch::Res3dUnet => (8, 8),
        };
        ArchInfo {
            name,
            dims,
            default_base,
            default_in_channels,
            default_classes,
            size_multiple,
            min_size,
        }
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn dims(self) -> usize {
        self.info().dims
    }

    /// The architecture a fixture's or a checkpoint's `arch` string and `dims` name
    /// (`cotnext_unet` is the CoTNeXt files' name for both CoTNeXt networks).
    pub fn from_name_and_dims(name: &str, dims: usize) -> Result<Arch> {
        if name == "cotnext_unet" {
            return match dims {
                3 => Ok(Arch::CotNext3d),
                2 => Ok(Arch::CotNext2d),
                _ => Err(HeparError::Config(format!(
                    "cotnext_unet with dims {dims}: expected 2 or 3"
                ))),
            };
        }
        let arch: Arch = name.parse()?;
        if arch.dims() != dims {
            return Err(HeparError::Config(format!(
                "{name} is a {}D network, but dims is {dims}",
                arch.dims()
            )));
        }
        Ok(arch)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = HeparError;
    fn from_str(s: &str) -> Result<Arch> {
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
                HeparError::Config(format!(
                    "unknown architecture `{s}`; expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// Everything that rebuilds a network: architecture, channels, classes and width.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub arch: Arch,
    pub in_channels: usize,
    pub classes: usize,
    /// The base width (`n_channels` of the CoTNeXt networks); every width scales with it.
    pub base: usize,
    /// Dropout rate in training (res3dunet; 0 elsewhere).
    #[serde(default)]
    pub dropout: f64,
}

impl ModelConfig {
    /// The seed's settings for `arch`.
    pub fn default_for(arch: Arch) -> ModelConfig {
        let info = arch.info();
        ModelConfig {
            arch,
            in_channels: info.default_in_channels,
            classes: info.default_classes,
            base: info.default_base,
            dropout: if arch == Arch::Res3dUnet { 0.2 } else { 0.0 },
        }
    }

    pub fn dims(&self) -> usize {
        self.arch.dims()
    }

    pub fn validate(&self) -> Result<()> {
        let name = self.arch.name();
        if self.in_channels == 0 || self.classes == 0 || self.base == 0 {
            return Err(HeparError::Config(format!(
                "{name}: in_channels, classes and base must be positive, got {} / {} / {}",
                self.in_channels, self.classes, self.base
            )));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(HeparError::Config(format!(
                "{name}: dropout {} is not in [0, 1)",
                self.dropout
            )));
        }
        match self.arch {
            Arch::CotNext3d | Arch::CotNext2d => self.cotnext().validate(),
            // `l1 = en1(x) + x` adds the input to the first block's output.
            Arch::Res3dUnet if self.in_channels != 1 && self.in_channels != self.base => {
                Err(HeparError::Config(format!(
                    "res3dunet adds its input to its first block's {} channels, so in_channels must be 1 or {} (got {})",
                    self.base, self.base, self.in_channels
                )))
            }
            _ => Ok(()),
        }
    }

    pub(crate) fn cotnext(&self) -> CotNextConfig {
        CotNextConfig {
            dims: self.dims(),
            in_channels: self.in_channels,
            classes: self.classes,
            width: self.base,
        }
    }

    /// Checks an input shape [N, in_channels, spatial...] against the architecture's size rules
    /// before any work, with the rule stated.
    pub fn check_input(&self, shape: &[usize]) -> Result<()> {
        let info = self.arch.info();
        let name = info.name;
        let axes = axis_names(info.dims);
        if shape.len() != info.dims + 2 || shape[0] == 0 || shape[1] != self.in_channels {
            return Err(HeparError::shape(
                name,
                format!(
                    "input {shape:?}: expected [N, {}, {}]",
                    self.in_channels,
                    axes.join(", ")
                ),
            ));
        }
        for (axis, &size) in axes.iter().zip(&shape[2..]) {
            if size < info.min_size {
                return Err(HeparError::shape(
                    name,
                    format!(
                        "{axis} {size} is smaller than {} for {name} (input {shape:?})",
                        info.min_size
                    ),
                ));
            }
            if !size.is_multiple_of(info.size_multiple) {
                return Err(HeparError::shape(
                    name,
                    format!(
                        "{axis} {size} is not a multiple of {} for {name} (input {shape:?})",
                        info.size_multiple
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The spatial size of the output for an input of spatial size `input` (Keras's cropped
    /// skips give 16 * floor(s / 16); every other network keeps the size).
    pub fn output_spatial(&self, input: &[usize]) -> Vec<usize> {
        match self.arch {
            Arch::KerasUnet2d => input.iter().map(|s| s / 16 * 16).collect(),
            _ => input.to_vec(),
        }
    }
}

fn axis_names(dims: usize) -> &'static [&'static str] {
    if dims == 2 {
        &["height", "width"]
    } else {
        &["depth", "height", "width"]
    }
}

/// A network's outputs: the logits, and the deep-supervision heads (coarsest first, each at the
/// input's size) when the network has them.
pub struct NetworkOutput {
    pub logits: Tensor,
    pub deep: Vec<Tensor>,
}

/// A network of the registry.
pub trait Network: Module + Send + Sync {
    fn config(&self) -> &ModelConfig;

    /// The logits and every deep-supervision head.
    fn forward_all(&self, x: &Tensor, training: bool) -> Result<NetworkOutput>;

    /// The logits [N, classes, ...].
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        Ok(self.forward_all(x, training)?.logits)
    }

    /// The running-statistics momentum of every BatchNorm (PyTorch's default 0.1).
    fn set_batchnorm_momentum(&mut self, momentum: f64);

    /// The seed of the next training forward's dropout masks (each training forward then
    /// advances it), so a run can replay its masks exactly.
    fn set_dropout_seed(&self, _seed: u64) {}
}

/// A boxed network (what [`build`] returns) is a network too.
impl<T: Network + ?Sized> Network for Box<T> {
    fn config(&self) -> &ModelConfig {
        (**self).config()
    }
    fn forward_all(&self, x: &Tensor, training: bool) -> Result<NetworkOutput> {
        (**self).forward_all(x, training)
    }
    fn forward(&self, x: &Tensor, training: bool) -> Result<Tensor> {
        (**self).forward(x, training)
    }
    fn set_batchnorm_momentum(&mut self, momentum: f64) {
        (**self).set_batchnorm_momentum(momentum)
    }
    fn set_dropout_seed(&self, seed: u64) {
        (**self).set_dropout_seed(seed)
    }
}

/// Builds the network `config` describes, with PyTorch's default initialisation drawn from
/// `seed`.
pub fn build(config: &ModelConfig, seed: u64) -> Result<Box<dyn Network>> {
    config.validate()?;
    Ok(match config.arch {
        Arch::CotNext3d | Arch::CotNext2d => Box::new(CotNextUnet::new(config.cotnext(), seed)?),
        Arch::Unet2dClassic => Box::new(Unet2dClassic::new(*config, seed)),
        Arch::KerasUnet2d => Box::new(KerasUnet2d::new(*config, seed)),
        Arch::Unet3d3Class => Box::new(Unet3d3Class::new(*config, seed)),
        Arch::Res3dUnet => Box::new(Res3dUnet::new(*config, seed)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_choices() {
        for arch in Arch::ALL {
            assert_eq!(arch.name().parse::<Arch>().unwrap(), arch);
            let json = serde_json::to_string(&arch).unwrap();
            assert_eq!(json, format!("\"{}\"", arch.name()));
        }
        let err = "unet4d".parse::<Arch>().unwrap_err().to_string();
        assert!(err.contains("unet4d") && err.contains("res3dunet"), "{err}");
    }

    #[test]
    fn shape_rules_name_the_axis_and_the_rule() {
        let cfg = ModelConfig::default_for(Arch::Unet2dClassic);
        let err = cfg.check_input(&[1, 3, 40, 48]).unwrap_err().to_string();
        assert!(
            err.contains("height 40 is not a multiple of 16 for unet2d_classic"),
            "{err}"
        );
        cfg.check_input(&[1, 3, 48, 32]).unwrap();
        let cfg3 = ModelConfig::default_for(Arch::Unet3d3Class);
        let err = cfg3
            .check_input(&[1, 1, 16, 16, 12])
            .unwrap_err()
            .to_string();
        assert!(err.contains("width 12 is not a multiple of 8"), "{err}");
        let err = cfg3
            .check_input(&[1, 2, 16, 16, 16])
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected [N, 1,"), "{err}");
        let keras = ModelConfig::default_for(Arch::KerasUnet2d);
        keras.check_input(&[1, 1, 17, 40]).unwrap();
        assert_eq!(keras.output_spatial(&[17, 40]), vec![16, 32]);
        assert!(keras.check_input(&[1, 1, 15, 40]).is_err());
    }

    #[test]
    fn res3dunet_needs_one_or_base_input_channels() {
        let mut cfg = ModelConfig::default_for(Arch::Res3dUnet);
        cfg.in_channels = 3;
        assert!(cfg.validate().is_err());
        cfg.in_channels = cfg.base;
        cfg.validate().unwrap();
    }

    #[test]
    fn cotnext_fixture_name_picks_the_network_by_dims() {
        assert_eq!(
            Arch::from_name_and_dims("cotnext_unet", 3).unwrap(),
            Arch::CotNext3d
        );
        assert_eq!(
            Arch::from_name_and_dims("cotnext_unet", 2).unwrap(),
            Arch::CotNext2d
        );
        assert!(Arch::from_name_and_dims("unet3d_3class", 2).is_err());
    }
}
