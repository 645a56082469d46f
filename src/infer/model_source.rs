//! Networks for inference from a file: our run checkpoints (the architecture read from them), or
//! state dicts, PyTorch `.pth` or plain `.safetensors` (the architecture given by the user, as
//! `--arch` and friends).

use crate::error::{HeparError, Result};
use crate::nn::{self, Arch, ModelConfig, Network};
use crate::train::load_run_checkpoint;
use std::path::Path;

/// What the user said about the architecture; unset fields take the architecture's defaults
/// (for `.pth` files) or must agree with the checkpoint (for run checkpoints).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ArchChoice {
    pub arch: Option<Arch>,
    pub in_channels: Option<usize>,
    pub base: Option<usize>,
    pub classes: Option<usize>,
}

impl ArchChoice {
    /// The configuration a `.pth` file needs: `--arch` is required.
    fn for_state_dict(&self, path: &Path) -> Result<ModelConfig> {
        let arch = self.arch.ok_or_else(|| {
            let names: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
            HeparError::Config(format!(
                "{} is a state dict, which does not say its architecture: pass --arch ({})",
                path.display(),
                names.join(", ")
            ))
        })?;
        let defaults = ModelConfig::default_for(arch);
        Ok(ModelConfig {
            arch,
            in_channels: self.in_channels.unwrap_or(defaults.in_channels),
            base: self.base.unwrap_or(defaults.base),
            classes: self.classes.unwrap_or(defaults.classes),
            dropout: defaults.dropout,
        })
    }

    /// Every setting given must equal the checkpoint's.
    fn check_against(&self, stored: &ModelConfig, path: &Path) -> Result<()> {
        let conflicts: Vec<String> = [
            (
                "--arch",
                self.arch.map(|a| a.to_string()),
                stored.arch.to_string(),
            ),
            (
                "--in-channels",
                self.in_channels.map(|v| v.to_string()),
                stored.in_channels.to_string(),
            ),
            (
                "--n-channels",
                self.base.map(|v| v.to_string()),
                stored.base.to_string(),
            ),
            (
                "--classes",
                self.classes.map(|v| v.to_string()),
                stored.classes.to_string(),
            ),
        ]
        .into_iter()
        .filter_map(|(flag, given, stored)| {
            given
                .filter(|g| *g != stored)
                .map(|g| format!("{flag} {g} (the checkpoint has {stored})"))
        })
        .collect();
        if conflicts.is_empty() {
            Ok(())
        } else {
            Err(HeparError::Config(format!(
                "{} records its network; these options disagree with it: {}",
                path.display(),
                conflicts.join(", ")
            )))
        }
    }
}

/// Loads the network in `path`: a `.safetensors` run checkpoint of `hepar train`, or a state dict
/// described by `choice` (a PyTorch `.pth`, or a `.safetensors` file of plain weights). Weights
/// that do not fit name the first offending key.
pub fn load_network(path: &Path, choice: &ArchChoice) -> Result<Box<dyn Network>> {
    let is_pth = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("pth") || e.eq_ignore_ascii_case("pt"));
    let weights = if is_pth {
        crate::io::load_pth(path)?
    } else {
        let file = crate::io::read_safetensors(path)?;
        if crate::io::is_checkpoint(&file) {
            let run = load_run_checkpoint(path)?;
            choice.check_against(&run.info.model, path)?;
            return run.model(path);
        }
        file.tensors
    };
    let config = choice.for_state_dict(path)?;
    let model = nn::build(&config, 0)?;
    nn::load_state_dict(&model, &weights, &path.display().to_string())?;
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_dict_needs_an_architecture_and_takes_its_defaults() {
        let err = ArchChoice::default()
            .for_state_dict(Path::new("w.pth"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("pass --arch") && err.contains("unet3d_3class"),
            "{err}"
        );
        let config = ArchChoice {
            arch: Some(Arch::CotNext3d),
            base: Some(8),
            ..ArchChoice::default()
        }
        .for_state_dict(Path::new("w.pth"))
        .unwrap();
        assert_eq!((config.in_channels, config.classes, config.base), (1, 1, 8));
    }

    #[test]
    fn options_that_contradict_a_checkpoint_are_named() {
        let stored = ModelConfig::default_for(Arch::CotNext3d);
        let choice = ArchChoice {
            arch: Some(Arch::CotNext3d),
            base: Some(32),
            ..ArchChoice::default()
        };
        let err = choice
            .check_against(&stored, Path::new("best.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--n-channels 32 (the checkpoint has 16)"),
            "{err}"
        );
        ArchChoice::default()
            .check_against(&stored, Path::new("best.safetensors"))
            .unwrap();
    }
}
