//! Checks this build against PyTorch's reference numbers (the golden fixtures): forward logits of
//! the seed's checkpoints, and for small random networks the loss, every gradient, the BatchNorm
//! statistics and the weights after AdamW steps with cosine annealing.

use crate::backend::Device;
use crate::error::{HeparError, Result};
use crate::io::{
    self, tensor_bridge, Fixture, FixtureSchedule, FixtureTensors, HostTensor, NamedTensors,
    Tolerance, TrainSettings,
};
use crate::nn::{self, Arch, ModelConfig, Module, Network, NetworkOutput};
use crate::ops::loss;
use crate::optim::{Adam, AdamConfig, CosineAnnealing, LrSchedule, Optimizer, StepDecay};
use crate::tensor::{DType, Tensor};
use std::path::Path;

/// The worst score of one group of compared tensors.
#[derive(Clone, Debug)]
pub struct GroupScore {
    pub group: String,
    pub tensors: usize,
    pub worst_name: String,
    pub worst_score: f64,
}

impl GroupScore {
    pub fn passed(&self) -> bool {
        self.worst_score <= 1.0
    }
}

#[derive(Clone, Debug)]
pub struct VerifyReport {
    pub fixture: String,
    pub groups: Vec<GroupScore>,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        self.groups.iter().all(GroupScore::passed)
    }
    pub fn worst(&self) -> Option<&GroupScore> {
        self.groups
            .iter()
            .max_by(|a, b| a.worst_score.total_cmp(&b.worst_score))
    }
}

/// Accumulates per-group worst scores.
struct Scorer {
    groups: Vec<GroupScore>,
}

impl Scorer {
    fn add(
        &mut self,
        group: &str,
        name: &str,
        actual: &Tensor,
        reference: &HostTensor,
        tolerance: Tolerance,
    ) -> Result<()> {
        let s = io::score_tensors(name, &tensor_bridge::to_host(actual)?, reference, tolerance)?;
        let entry = match self.groups.iter_mut().find(|g| g.group == group) {
            Some(g) => g,
            None => {
                self.groups.push(GroupScore {
                    group: group.to_string(),
                    tensors: 0,
                    worst_name: String::new(),
                    worst_score: f64::NEG_INFINITY,
                });
                self.groups.last_mut().expect("just pushed")
            }
        };
        entry.tensors += 1;
        // NaN never compares greater, so treat it as the worst.
        if s > entry.worst_score || s.is_nan() {
            entry.worst_score = if s.is_nan() { f64::INFINITY } else { s };
            entry.worst_name = name.to_string();
        }
        Ok(())
    }
}

/// The network a fixture describes (`arch`, `dims`, channels, classes and width).
fn model_config_of(f: &Fixture) -> Result<ModelConfig> {
    let arch = Arch::from_name_and_dims(&f.arch, f.dims)
        .map_err(|e| HeparError::format(&f.path, e.to_string()))?;
    let dropout = match f.metadata.get("dropout") {
        Some(text) => text.trim().parse::<f64>().map_err(|_| {
            HeparError::format(
                &f.path,
                format!("metadata 'dropout' = '{text}' is not a number"),
            )
        })?,
        None => 0.0,
    };
    Ok(ModelConfig {
        arch,
        in_channels: f.in_channels,
        classes: f.n_classes,
        base: f.n_channels,
        dropout,
    })
}

/// Runs one fixture file on `device` and scores every tensor it holds.
pub fn verify_fixture(path: &Path, device: Device) -> Result<VerifyReport> {
    let fixture = Fixture::load(path)?;
    let mut model = nn::build(&model_config_of(&fixture)?, 0)?;
    nn::to_device(&*model, device)?;
    if let Some(settings) = &fixture.train {
        model.set_batchnorm_momentum(settings.bn_momentum);
    }
    let mut scorer = Scorer { groups: Vec::new() };
    match &fixture.tensors {
        FixtureTensors::Forward(t) => verify_forward(&fixture, t, &*model, device, &mut scorer)?,
        FixtureTensors::Train(t) => verify_training(&fixture, t, &*model, device, &mut scorer)?,
    }
    Ok(VerifyReport {
        fixture: path.display().to_string(),
        groups: scorer.groups,
    })
}

fn verify_forward(
    fixture: &Fixture,
    t: &io::ForwardTensors,
    model: &dyn Network,
    device: Device,
    scorer: &mut Scorer,
) -> Result<()> {
    match &fixture.checkpoint {
        Some(checkpoint) => {
            let weights = io::load_pth(checkpoint)?;
            nn::load_state_dict(model, &weights, &checkpoint.display().to_string())?;
        }
        None => nn::load_state_dict(
            model,
            &t.init,
            &format!("{} (init.*)", fixture.path.display()),
        )?,
    }
    let input = tensor_bridge::to_tensor(&t.input)?
        .to_dtype(DType::F32)?
        .to_device(device)?;
    let training = fixture.mode == io::NetworkMode::Train;
    let out = crate::no_grad(|| model.forward_all(&input, training))?;
    scorer.add(
        "logits",
        "expected_logits",
        &out.logits,
        &t.expected_logits,
        fixture.tolerance,
    )?;
    if out.deep.len() < t.expected_deep.len() {
        return Err(HeparError::format(
            &fixture.path,
            format!(
                "the fixture has {} deep-supervision heads, {} gives {}",
                t.expected_deep.len(),
                model.config().arch,
                out.deep.len()
            ),
        ));
    }
    for (i, (head, reference)) in out.deep.iter().zip(&t.expected_deep).enumerate() {
        let name = format!("expected_deep.{i}");
        scorer.add("deep", &name, head, reference, fixture.tolerance)?;
    }
    Ok(())
}

/// The loss a `train` fixture's `loss` metadata names, with its settings.
#[derive(Clone, Debug, PartialEq)]
enum FixtureLoss {
    /// `"A*soft_dice+B*bce"` (the CoTNeXt files; 0.7 and 0.3 when the key is absent).
    DiceBce { dice: f64, bce: f64 },
    /// `cross_entropy`, with `class_weights` when present; the target holds class ids.
    CrossEntropy { class_weights: Option<Vec<f64>> },
    /// `neg_dice`: minus the whole-batch Dice, smoothed by `dice_smooth`.
    NegDice { smooth: f64 },
    /// `deep_supervision_bce_dice`: BCE + Dice on the main output and every deep head.
    DeepSupervision(loss::DeepSupervisionWeights),
}

fn metadata_number(fixture: &Fixture, key: &str, default: f64) -> Result<f64> {
    match fixture.metadata.get(key) {
        None => Ok(default),
        Some(text) => text.trim().parse().map_err(|_| {
            HeparError::format(
                &fixture.path,
                format!("metadata '{key}' = '{text}' is not a number"),
            )
        }),
    }
}

impl FixtureLoss {
    fn of(fixture: &Fixture) -> Result<FixtureLoss> {
        let text = fixture
            .metadata
            .get("loss")
            .map(|t| t.trim())
            .unwrap_or("0.7*soft_dice+0.3*bce");
        let smooth = metadata_number(fixture, "dice_smooth", 1.0)?;
        Ok(match text {
            "cross_entropy" => FixtureLoss::CrossEntropy {
                class_weights: match fixture.metadata.get("class_weights") {
                    None => None,
                    Some(list) => Some(
                        list.split(',')
                            .map(|w| w.trim().parse::<f64>())
                            .collect::<std::result::Result<Vec<_>, _>>()
                            .map_err(|_| {
                                HeparError::format(
                                    &fixture.path,
                                    format!("metadata 'class_weights' = '{list}' is not a list of numbers"),
                                )
                            })?,
                    ),
                },
            },
            "neg_dice" => FixtureLoss::NegDice { smooth },
            "deep_supervision_bce_dice" => {
                FixtureLoss::DeepSupervision(loss::DeepSupervisionWeights {
                    alpha: metadata_number(fixture, "deep_alpha", 0.33)?,
                    bce: metadata_number(fixture, "bce_weight", 0.5)?,
                    dice: metadata_number(fixture, "dice_weight", 1.0)?,
                    smooth,
                })
            }
            other => {
                let (dice, bce) = dice_bce_weights(other).ok_or_else(|| {
                    HeparError::format(
                        &fixture.path,
                        format!("loss `{other}` is not `cross_entropy`, `neg_dice`, `deep_supervision_bce_dice` or of the form `A*soft_dice+B*bce`"),
                    )
                })?;
                FixtureLoss::DiceBce { dice, bce }
            }
        })
    }

    fn compute(&self, out: &NetworkOutput, target: &Tensor, dice_eps: f64) -> Result<Tensor> {
        match self {
            FixtureLoss::DiceBce { dice, bce } => {
                loss::dice_bce(&out.logits, target, *dice, *bce, dice_eps)
            }
            FixtureLoss::CrossEntropy { class_weights } => {
                loss::cross_entropy(&out.logits, &target.squeeze(1)?, class_weights.as_deref())
            }
            FixtureLoss::NegDice { smooth } => loss::neg_dice(&out.logits, target, *smooth),
            FixtureLoss::DeepSupervision(weights) => {
                loss::deep_supervision_bce_dice(&out.logits, &out.deep, target, weights)
            }
        }
    }
}

/// `"A*soft_dice+B*bce"` -> (A, B).
fn dice_bce_weights(text: &str) -> Option<(f64, f64)> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let (dice, bce) = compact.split_once('+')?;
    let dice = dice.strip_suffix("*soft_dice")?.parse::<f64>().ok()?;
    let bce = bce.strip_suffix("*bce")?.parse::<f64>().ok()?;
    Some((dice, bce))
}

fn schedule_of(settings: &TrainSettings) -> Box<dyn LrSchedule> {
    match settings.schedule {
        FixtureSchedule::Cosine => Box::new(CosineAnnealing {
            base_lr: settings.lr,
            t_max: settings.t_max as u64,
            eta_min: settings.eta_min,
        }),
        FixtureSchedule::Step { step_size, gamma } => Box::new(StepDecay {
            base_lr: settings.lr,
            step_size: step_size as u64,
            gamma,
        }),
        FixtureSchedule::Constant => Box::new(StepDecay {
            base_lr: settings.lr,
            step_size: 1,
            gamma: 1.0,
        }),
    }
}

fn verify_training(
    fixture: &Fixture,
    t: &io::TrainTensors,
    model: &dyn Network,
    device: Device,
    scorer: &mut Scorer,
) -> Result<()> {
    let settings = fixture.train.as_ref().ok_or_else(|| {
        HeparError::format(&fixture.path, "train fixture without training settings")
    })?;
    let fixture_loss = FixtureLoss::of(fixture)?;
    nn::load_state_dict(
        model,
        &t.init,
        &format!("{} (init.*)", fixture.path.display()),
    )?;
    let input = tensor_bridge::to_tensor(&t.input)?
        .to_dtype(DType::F32)?
        .to_device(device)?
        .requires_grad_leaf();
    let target = tensor_bridge::to_tensor(&t.target)?
        .to_dtype(DType::F32)?
        .to_device(device)?;
    let tol = fixture.tolerance;
    let params = nn::parameters(model);
    let config = AdamConfig {
        lr: settings.lr,
        beta1: settings.betas.0,
        beta2: settings.betas.1,
        eps: settings.adam_eps,
        weight_decay: settings.weight_decay,
        decoupled: settings.decoupled_weight_decay,
    };
    let schedule = schedule_of(settings);
    let mut optimizer = Adam::new(params.clone(), config);
    for step in 0..settings.steps {
        optimizer.zero_grad();
        let out = model.forward_all(&input, true)?;
        if out.logits.shape()[2..] != target.shape()[2..] {
            return Err(HeparError::format(
                &fixture.path,
                format!(
                    "'target' has shape {:?}, but {} gives logits {:?}",
                    target.shape(),
                    model.config().arch,
                    out.logits.shape()
                ),
            ));
        }
        let loss = fixture_loss.compute(&out, &target, settings.dice_eps)?;
        if step == 0 {
            scorer.add("loss", "loss", &loss.reshape(t.loss.shape())?, &t.loss, tol)?;
            score_named(scorer, "stats", "stats.", model, &t.stats, fixture)?;
        }
        loss.backward()?;
        if step == 0 {
            let grad_input = input
                .grad()
                .ok_or_else(|| HeparError::Autograd("no gradient reached the input".into()))?;
            scorer.add("grad.input", "grad.input", &grad_input, &t.grad_input, tol)?;
            for p in &params {
                let reference = t.grads.get(&p.name).ok_or_else(|| {
                    HeparError::format(
                        &fixture.path,
                        format!("no reference gradient `grad.{}`", p.name),
                    )
                })?;
                let g = match p.tensor.grad() {
                    Some(g) => g,
                    None => p.tensor.zeros_like()?,
                };
                scorer.add("grad", &format!("grad.{}", p.name), &g, reference, tol)?;
            }
        }
        optimizer.set_learning_rate(schedule.lr_at(step as u64));
        optimizer.step()?;
    }
    score_named(scorer, "trained", "trained.", model, &t.trained, fixture)
}

/// Scores every reference tensor of a group against the model tensor of the same name.
fn score_named(
    scorer: &mut Scorer,
    group: &str,
    prefix: &str,
    model: &dyn Module,
    reference: &NamedTensors,
    fixture: &Fixture,
) -> Result<()> {
    let state = nn::state_dict(model);
    for (name, r) in reference.iter() {
        let actual = state.get(name).ok_or_else(|| {
            HeparError::format(
                &fixture.path,
                format!("`{prefix}{name}` names no tensor of the model"),
            )
        })?;
        scorer.add(
            group,
            &format!("{prefix}{name}"),
            actual,
            r,
            fixture.tolerance_for(&format!("{prefix}{name}")),
        )?;
    }
    Ok(())
}
