//! Checks this build against PyTorch's reference numbers (the golden fixtures): forward logits of
//! the seed's checkpoints, and for small random networks the loss, every gradient, the BatchNorm
//! statistics and the weights after AdamW steps with cosine annealing.

use crate::backend::Device;
use crate::error::{HeparError, Result};
use crate::io::{
    self, tensor_bridge, Fixture, FixtureTensors, HostTensor, NamedTensors, Tolerance,
};
use crate::nn::cotnext::{CotNextConfig, CotNextUnet};
use crate::nn::{self, Module};
use crate::ops::loss;
use crate::optim::{Adam, AdamConfig, CosineAnnealing, LrSchedule, Optimizer};
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

fn config_of(f: &Fixture) -> CotNextConfig {
    CotNextConfig {
        dims: f.dims,
        in_channels: f.in_channels,
        classes: f.n_classes,
        width: f.n_channels,
    }
}

/// Runs one fixture file on `device` and scores every tensor it holds.
pub fn verify_fixture(path: &Path, device: Device) -> Result<VerifyReport> {
    let fixture = Fixture::load(path)?;
    let mut model = CotNextUnet::new(config_of(&fixture), 0)?;
    nn::to_device(&model, device)?;
    if let Some(settings) = &fixture.train {
        model.set_batchnorm_momentum(settings.bn_momentum);
    }
    let mut scorer = Scorer { groups: Vec::new() };
    match &fixture.tensors {
        FixtureTensors::Forward(t) => {
            let checkpoint = fixture
                .checkpoint
                .as_ref()
                .ok_or_else(|| HeparError::format(path, "forward fixture names no checkpoint"))?;
            let weights = io::load_pth(checkpoint)?;
            nn::load_state_dict(&model, &weights, &checkpoint.display().to_string())?;
            let input = tensor_bridge::to_tensor(&t.input)?
                .to_dtype(DType::F32)?
                .to_device(device)?;
            let training = fixture.mode == io::NetworkMode::Train;
            let logits = crate::no_grad(|| model.forward(&input, training))?;
            scorer.add(
                "logits",
                "expected_logits",
                &logits,
                &t.expected_logits,
                fixture.tolerance,
            )?;
        }
        FixtureTensors::Train(t) => verify_training(&fixture, t, &model, device, &mut scorer)?,
    }
    Ok(VerifyReport {
        fixture: path.display().to_string(),
        groups: scorer.groups,
    })
}

/// The Dice and BCE weights of a fixture's `loss` metadata, `"A*soft_dice+B*bce"` (the README's
/// 0.7 and 0.3 when absent).
fn loss_weights(fixture: &Fixture) -> Result<(f64, f64)> {
    let Some(text) = fixture.metadata.get("loss") else {
        return Ok((0.7, 0.3));
    };
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let parsed = compact.split_once('+').and_then(|(dice, bce)| {
        let dice = dice.strip_suffix("*soft_dice")?.parse::<f64>().ok()?;
        let bce = bce.strip_suffix("*bce")?.parse::<f64>().ok()?;
        Some((dice, bce))
    });
    parsed.ok_or_else(|| {
        HeparError::format(
            &fixture.path,
            format!("loss `{text}` is not of the form `A*soft_dice+B*bce`"),
        )
    })
}

fn verify_training(
    fixture: &Fixture,
    t: &io::TrainTensors,
    model: &CotNextUnet,
    device: Device,
    scorer: &mut Scorer,
) -> Result<()> {
    let settings = fixture.train.as_ref().ok_or_else(|| {
        HeparError::format(&fixture.path, "train fixture without training settings")
    })?;
    let (dice_weight, bce_weight) = loss_weights(fixture)?;
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
        decoupled: true,
    };
    let schedule = CosineAnnealing {
        base_lr: settings.lr,
        t_max: settings.t_max as u64,
        eta_min: settings.eta_min,
    };
    let mut optimizer = Adam::new(params.clone(), config);
    for step in 0..settings.steps {
        optimizer.zero_grad();
        let logits = model.forward(&input, true)?;
        let loss = loss::dice_bce(&logits, &target, dice_weight, bce_weight, settings.dice_eps)?;
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
