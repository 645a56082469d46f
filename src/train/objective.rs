//! What a run optimises, as `parameters.toml` names it: the loss (with the target it needs), the
//! optimizer and the learning-rate schedule. Each seed's recipe is one value of these types, so
//! a recipe is chosen by configuration, not by code.

use crate::error::{HeparError, Result};
use crate::nn::NetworkOutput;
use crate::ops::loss;
use crate::optim::{Adam, AdamConfig, CosineAnnealing, LrSchedule, Param, StepDecay};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// A loss over a network's outputs. Binary losses take a 0/1 mask per output channel; the
/// cross-entropy takes class ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum LossConfig {
    /// `dice * soft Dice + bce * BCE` (the CoTNeXt seed: 0.7 / 0.3).
    DiceBce { dice: f64, bce: f64, smooth: f64 },
    /// `tversky_weight * Tversky(alpha, beta) + bce * BCE` (the seed's tumour stage).
    TverskyBce {
        alpha: f64,
        beta: f64,
        tversky_weight: f64,
        bce: f64,
        smooth: f64,
    },
    /// Cross-entropy over classes, weighted per class (empty: all 1), with an optional ignored id.
    CrossEntropy {
        #[serde(default)]
        class_weights: Vec<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ignore_index: Option<i64>,
    },
    /// Minus the whole-batch Dice (the Keras liver U-Net).
    NegDice { smooth: f64 },
    /// BCE + Dice on the main output plus `alpha` times that on every deep head (res3dunet).
    DeepSupervision {
        alpha: f64,
        bce: f64,
        dice: f64,
        smooth: f64,
    },
}

/// The target a loss compares against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A 0/1 mask [N, 1, ...].
    Mask,
    /// Class ids [N, ...].
    ClassIds,
}

impl LossConfig {
    pub fn target_kind(&self) -> TargetKind {
        match self {
            LossConfig::CrossEntropy { .. } => TargetKind::ClassIds,
            _ => TargetKind::Mask,
        }
    }

    /// The loss of `out` against `target` (a mask [N, 1, ...] or class ids [N, ...], as
    /// [`Self::target_kind`] says).
    pub fn compute(&self, out: &NetworkOutput, target: &Tensor) -> Result<Tensor> {
        let logits = &out.logits;
        match self {
            LossConfig::DiceBce { dice, bce, smooth } => {
                loss::dice_bce(logits, target, *dice, *bce, *smooth)
            }
            LossConfig::TverskyBce {
                alpha,
                beta,
                tversky_weight,
                bce,
                smooth,
            } => loss::tversky(logits, target, *alpha, *beta, *smooth)?
                .mul_scalar(*tversky_weight)?
                .add(&loss::bce_with_logits(logits, target)?.mul_scalar(*bce)?),
            LossConfig::CrossEntropy {
                class_weights,
                ignore_index,
            } => {
                let weights = (!class_weights.is_empty()).then_some(class_weights.as_slice());
                loss::cross_entropy_ignoring(logits, target, weights, *ignore_index)
            }
            LossConfig::NegDice { smooth } => loss::neg_dice(logits, target, *smooth),
            LossConfig::DeepSupervision {
                alpha,
                bce,
                dice,
                smooth,
            } => loss::deep_supervision_bce_dice(
                logits,
                &out.deep,
                target,
                &loss::DeepSupervisionWeights {
                    alpha: *alpha,
                    bce: *bce,
                    dice: *dice,
                    smooth: *smooth,
                },
            ),
        }
    }

    /// Checks the settings; `section` names the config section in errors.
    pub fn validate(&self, section: &str, classes: usize) -> Result<()> {
        let bad = |msg: String| Err(HeparError::Config(format!("{section}.loss: {msg}")));
        let finite_non_negative = |v: &[f64]| v.iter().all(|x| x.is_finite() && *x >= 0.0);
        match self {
            LossConfig::DiceBce { dice, bce, smooth }
                if !finite_non_negative(&[*dice, *bce, *smooth]) =>
            {
                bad("dice, bce and smooth must be finite and >= 0".into())
            }
            LossConfig::TverskyBce {
                alpha,
                beta,
                tversky_weight,
                bce,
                smooth,
            } if !finite_non_negative(&[*alpha, *beta, *tversky_weight, *bce, *smooth]) => {
                bad("alpha, beta, tversky_weight, bce and smooth must be finite and >= 0".into())
            }
            LossConfig::CrossEntropy { class_weights, .. }
                if !class_weights.is_empty() && class_weights.len() != classes =>
            {
                bad(format!(
                    "{} class_weights for a network with {classes} classes",
                    class_weights.len()
                ))
            }
            LossConfig::CrossEntropy { class_weights, .. }
                if !finite_non_negative(class_weights) =>
            {
                bad(format!(
                    "class_weights {class_weights:?} must be finite and >= 0"
                ))
            }
            LossConfig::CrossEntropy { .. } if classes < 2 => bad(format!(
                "cross_entropy needs at least 2 classes, the network has {classes}"
            )),
            LossConfig::NegDice { smooth } if !finite_non_negative(&[*smooth]) => {
                bad("smooth must be finite and >= 0".into())
            }
            LossConfig::DeepSupervision {
                alpha,
                bce,
                dice,
                smooth,
            } if !finite_non_negative(&[*alpha, *bce, *dice, *smooth]) => {
                bad("alpha, bce, dice and smooth must be finite and >= 0".into())
            }
            _ => Ok(()),
        }
    }
}

/// Adam (L2 weight decay in the gradient, as PyTorch's Adam) or AdamW (decoupled decay).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
    Adam {
        learning_rate: f64,
        betas: [f64; 2],
        eps: f64,
        weight_decay: f64,
    },
    Adamw {
        learning_rate: f64,
        betas: [f64; 2],
        eps: f64,
        weight_decay: f64,
    },
}

impl OptimizerConfig {
    pub fn learning_rate(&self) -> f64 {
        match self {
            OptimizerConfig::Adam { learning_rate, .. }
            | OptimizerConfig::Adamw { learning_rate, .. } => *learning_rate,
        }
    }

    pub fn build(&self, params: Vec<Param>) -> Adam {
        let (decoupled, learning_rate, betas, eps, weight_decay) = match *self {
            OptimizerConfig::Adam {
                learning_rate,
                betas,
                eps,
                weight_decay,
            } => (false, learning_rate, betas, eps, weight_decay),
            OptimizerConfig::Adamw {
                learning_rate,
                betas,
                eps,
                weight_decay,
            } => (true, learning_rate, betas, eps, weight_decay),
        };
        Adam::new(
            params,
            AdamConfig {
                lr: learning_rate,
                beta1: betas[0],
                beta2: betas[1],
                eps,
                weight_decay,
                decoupled,
            },
        )
    }

    pub fn validate(&self, section: &str) -> Result<()> {
        let (OptimizerConfig::Adam {
            learning_rate,
            betas,
            eps,
            weight_decay,
        }
        | OptimizerConfig::Adamw {
            learning_rate,
            betas,
            eps,
            weight_decay,
        }) = *self;
        let bad = |key: &str, msg: String| {
            Err(HeparError::Config(format!(
                "{section}.optimizer.{key}: {msg}"
            )))
        };
        if !(learning_rate.is_finite() && learning_rate > 0.0) {
            return bad(
                "learning_rate",
                format!("{learning_rate} (must be positive)"),
            );
        }
        if !betas.iter().all(|b| (0.0..1.0).contains(b)) {
            return bad("betas", format!("{betas:?} (each in [0, 1))"));
        }
        if !(eps.is_finite() && eps > 0.0) {
            return bad("eps", format!("{eps} (must be positive)"));
        }
        if !(weight_decay.is_finite() && weight_decay >= 0.0) {
            return bad("weight_decay", format!("{weight_decay} (must be >= 0)"));
        }
        Ok(())
    }
}

/// How the learning rate moves, stepped once per epoch (`t` counts finished epochs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleConfig {
    Constant,
    /// Cosine annealing to `eta_min` over `fraction` of the run's epochs (1: the whole run).
    Cosine {
        eta_min: f64,
        fraction: f64,
    },
    /// StepLR: times `gamma` every `step_size` epochs.
    Step {
        step_size: u64,
        gamma: f64,
    },
}

impl ScheduleConfig {
    /// The schedule of a run of `epochs` epochs starting at `base_lr`.
    pub fn build(&self, base_lr: f64, epochs: u64) -> Box<dyn LrSchedule + Send + Sync> {
        match *self {
            ScheduleConfig::Constant => Box::new(StepDecay {
                base_lr,
                step_size: 1,
                gamma: 1.0,
            }),
            ScheduleConfig::Cosine { eta_min, fraction } => Box::new(CosineAnnealing {
                base_lr,
                t_max: ((epochs as f64 * fraction).round() as u64).max(1),
                eta_min,
            }),
            ScheduleConfig::Step { step_size, gamma } => Box::new(StepDecay {
                base_lr,
                step_size,
                gamma,
            }),
        }
    }

    pub fn validate(&self, section: &str, base_lr: f64) -> Result<()> {
        let bad = |msg: String| Err(HeparError::Config(format!("{section}.schedule: {msg}")));
        match *self {
            ScheduleConfig::Cosine { eta_min, .. }
                if !(eta_min.is_finite() && (0.0..=base_lr).contains(&eta_min)) =>
            {
                bad(format!(
                    "eta_min {eta_min} must be between 0 and the learning rate {base_lr}"
                ))
            }
            ScheduleConfig::Cosine { fraction, .. } if !(fraction > 0.0 && fraction <= 1.0) => {
                bad(format!("fraction {fraction} must be in (0, 1]"))
            }
            ScheduleConfig::Step { step_size: 0, .. } => bad("step_size must be at least 1".into()),
            ScheduleConfig::Step { gamma, .. } if !(gamma.is_finite() && gamma > 0.0) => {
                bad(format!("gamma {gamma} must be positive"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_read_from_toml_tables_by_kind() {
        let loss: LossConfig =
            toml::from_str("kind = \"cross_entropy\"\nclass_weights = [1.0, 1.0, 3.0]").unwrap();
        assert_eq!(loss.target_kind(), TargetKind::ClassIds);
        loss.validate("train.unet3d_3class", 3).unwrap();
        assert!(loss.validate("train.unet3d_3class", 2).is_err());
        let err = toml::from_str::<LossConfig>("kind = \"dice\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("dice"), "{err}");
        let schedule: ScheduleConfig =
            toml::from_str("kind = \"step\"\nstep_size = 10\ngamma = 0.1").unwrap();
        let s = schedule.build(1e-3, 30);
        assert_eq!(s.lr_at(9), 1e-3);
        assert!((s.lr_at(10) - 1e-4).abs() < 1e-18);
        let cosine = ScheduleConfig::Cosine {
            eta_min: 0.0,
            fraction: 0.75,
        }
        .build(1.0, 8);
        // Over 6 of the 8 epochs: half-way at epoch 3, the minimum at 6.
        assert!((cosine.lr_at(3) - 0.5).abs() < 1e-12);
        assert!(cosine.lr_at(6).abs() < 1e-12);
        let opt: OptimizerConfig = toml::from_str(
            "kind = \"adam\"\nlearning_rate = 1e-4\nbetas = [0.9, 0.999]\neps = 1e-8\nweight_decay = 0.0",
        )
        .unwrap();
        assert_eq!(opt.learning_rate(), 1e-4);
        opt.validate("train.x").unwrap();
    }
}
