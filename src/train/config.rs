//! The training sections of `parameters.toml`: `[train.synthetic]`, `[train.liver]`,
//! `[train.tumor]`, `[model.liver]` and `[model.tumor]`, next to the data pipeline's sections
//! (read by `crate::data::config`). A section may list only the keys it changes; every key has a
//! default (the seed's value where it had one) and an unknown key is an error naming it.

use super::objective::{LossConfig, TargetKind};
use super::patch_data::PatchSettings;
use crate::data::config::DataParameters;
use crate::error::{HeparError, Result};
use crate::nn::Arch;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Which network a run trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Stage 1: whole CT volumes at low resolution, liver (tumour included) vs background, 3D.
    Liver,
    /// Stage 2: 2.5D stacks of axial slices inside the liver box, tumour vs the rest, 2D.
    Tumor,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Liver => "liver",
            Stage::Tumor => "tumor",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Optimiser, schedule, loss and epoch settings of one stage (`[train.liver]`, `[train.tumor]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageTraining {
    /// Passes over the training data; the cosine schedule spans them.
    pub epochs: u64,
    pub batch_size: usize,
    /// Tumour stage only: batches drawn per epoch (stacks are drawn with replacement by weight).
    /// The liver stage visits every training volume once per epoch instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batches_per_epoch: Option<usize>,
    /// AdamW (decoupled weight decay).
    pub learning_rate: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    /// Cosine annealing from `learning_rate` to `eta_min` over `cosine_fraction` of `epochs`,
    /// stepped per epoch.
    pub eta_min: f64,
    /// The share of the epochs the cosine anneals over (the seed's stage 2: 0.75); the rate then
    /// stays at `eta_min` for the rest of the run. (PyTorch's CosineAnnealingLR with a `T_max`
    /// shorter than the run would instead climb back towards `learning_rate`; the seed meant
    /// annealing over 75% of the run.)
    #[serde(default = "default_cosine_fraction")]
    pub cosine_fraction: f64,
    /// Loss = dice_weight * soft Dice + bce_weight * BCE (with logits).
    pub dice_weight: f64,
    pub bce_weight: f64,
    /// Smoothing term of the soft Dice.
    pub dice_smooth: f64,
    /// `adamw` (decoupled weight decay, the CoTNeXt seed) or `adam` (L2 decay in the gradient,
    /// as PyTorch's Adam).
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// `cosine` (to `eta_min` over the run), `step` (times `gamma` every `step_size` epochs) or
    /// `constant`.
    #[serde(default)]
    pub schedule: ScheduleKind,
    #[serde(default = "default_step_size")]
    pub step_size: u64,
    #[serde(default = "default_gamma")]
    pub gamma: f64,
    /// A loss other than the Dice + BCE above (`kind = "cross_entropy"`, `"neg_dice"`,
    /// `"deep_supervision"`, `"tversky_bce"`, `"dice_bce"`; see train::objective).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<LossConfig>,
    /// What the network learns: `liver` (labels >= 1), `tumor` (label 2) or `classes` (the
    /// label ids 0, 1, 2). Default: the stage's (liver for volumes, tumor for stacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetChoice>,
    /// Slices per 2.5D stack for 2D networks (their input channels); default
    /// `[preprocess.stage2] stack_slices`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slices: Option<usize>,
}

fn default_cosine_fraction() -> f64 {
    1.0
}

fn default_step_size() -> u64 {
    10
}

fn default_gamma() -> f64 {
    0.1
}

/// The optimiser of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    #[default]
    Adamw,
    Adam,
}

/// How the learning rate moves from epoch to epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    #[default]
    Cosine,
    Step,
    Constant,
}

/// The labels a run's target is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetChoice {
    /// 0/1: liver, tumour included (labels >= 1).
    Liver,
    /// 0/1: tumour (label 2).
    Tumor,
    /// The label ids themselves (background 0, liver 1, tumour 2), for cross-entropy.
    Classes,
}

impl TargetChoice {
    /// The name in config files and in the history's keys (`dice_liver`, ...).
    pub fn name(self) -> &'static str {
        match self {
            TargetChoice::Liver => "liver",
            TargetChoice::Tumor => "tumor",
            TargetChoice::Classes => "classes",
        }
    }

    /// The stage's own target: liver for volumes, tumour for stacks.
    pub fn of_stage(stage: Stage) -> TargetChoice {
        match stage {
            Stage::Liver => TargetChoice::Liver,
            Stage::Tumor => TargetChoice::Tumor,
        }
    }

    /// The classes a network needs for this target.
    pub fn classes(self) -> usize {
        match self {
            TargetChoice::Classes => 3,
            _ => 1,
        }
    }
}

impl StageTraining {
    /// The target this section trains on (its stage's when unset).
    pub fn target_for(&self, stage: Stage) -> TargetChoice {
        self.target.unwrap_or(TargetChoice::of_stage(stage))
    }

    /// The loss of this section: `loss` when set, else the Dice + BCE weights.
    pub fn loss_config(&self) -> LossConfig {
        self.loss.clone().unwrap_or(LossConfig::DiceBce {
            dice: self.dice_weight,
            bce: self.bce_weight,
            smooth: self.dice_smooth,
        })
    }

    fn seed_optimiser(epochs: u64, batch_size: usize, batches_per_epoch: Option<usize>) -> Self {
        StageTraining {
            epochs,
            batch_size,
            batches_per_epoch,
            learning_rate: 1e-3,
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 1e-5,
            eta_min: 1e-5,
            cosine_fraction: default_cosine_fraction(),
            dice_weight: 0.7,
            bce_weight: 0.3,
            dice_smooth: 1e-5,
            optimizer: OptimizerKind::Adamw,
            schedule: ScheduleKind::Cosine,
            step_size: default_step_size(),
            gamma: default_gamma(),
            loss: None,
            target: None,
            slices: None,
        }
    }

    /// A seed's Adam recipe (no weight decay, PyTorch's Adam) at a constant rate, sized for the
    /// synthetic phantoms.
    fn seed_adam(
        epochs: u64,
        batch_size: usize,
        batches_per_epoch: Option<usize>,
        lr: f64,
    ) -> Self {
        StageTraining {
            learning_rate: lr,
            weight_decay: 0.0,
            eta_min: 0.0,
            optimizer: OptimizerKind::Adam,
            schedule: ScheduleKind::Constant,
            ..Self::seed_optimiser(epochs, batch_size, batches_per_epoch)
        }
    }

    /// The defaults of `[train.<arch>]` for the other seeds' networks: each seed's optimiser,
    /// schedule, loss and target (the U-Net course: Adam 1e-3, 3-class cross-entropy; the Keras
    /// U-Net: Adam 1e-5, -dice, on single slices; the 3-class 3D U-Net: Adam 1e-4, weighted
    /// cross-entropy; the residual 3D U-Net: Adam 1e-3, StepLR 10 / 0.1, deep supervision).
    pub fn arch_default(arch: Arch) -> Option<Self> {
        Some(match arch {
            Arch::CotNext3d | Arch::CotNext2d => return None,
            Arch::Unet2dClassic => StageTraining {
                target: Some(TargetChoice::Classes),
                loss: Some(LossConfig::CrossEntropy {
                    class_weights: Vec::new(),
                    ignore_index: None,
                }),
                slices: Some(3),
                ..Self::seed_adam(6, 8, Some(10), 1e-3)
            },
            Arch::KerasUnet2d => StageTraining {
                target: Some(TargetChoice::Liver),
                loss: Some(LossConfig::NegDice { smooth: 1.0 }),
                slices: Some(1),
                ..Self::seed_adam(6, 8, Some(10), 1e-5)
            },
            Arch::Unet3d3Class => StageTraining {
                target: Some(TargetChoice::Classes),
                loss: Some(LossConfig::CrossEntropy {
                    class_weights: vec![1.0, 1.0, 3.0],
                    ignore_index: None,
                }),
                ..Self::seed_adam(6, 1, None, 1e-4)
            },
            Arch::Res3dUnet => StageTraining {
                target: Some(TargetChoice::Tumor),
                loss: Some(LossConfig::DeepSupervision {
                    alpha: 0.33,
                    bce: 0.5,
                    dice: 1.0,
                    smooth: 1.0,
                }),
                schedule: ScheduleKind::Step,
                ..Self::seed_adam(6, 1, None, 1e-3)
            },
        })
    }

    /// Liver defaults: the seed's optimiser and loss; few epochs so the first run is short.
    pub fn liver_default() -> Self {
        Self::seed_optimiser(6, 1, None)
    }

    /// Tumour defaults: the seed's optimiser, its stage-2 loss (Tversky with alpha 0.7 on false
    /// positives and beta 0.3 on false negatives, 0.7 of it plus 0.3 BCE) and cosine annealing
    /// over 75% of the epochs; batches of 16 stacks.
    pub fn tumor_default() -> Self {
        StageTraining {
            cosine_fraction: 0.75,
            loss: Some(LossConfig::TverskyBce {
                alpha: 0.7,
                beta: 0.3,
                tversky_weight: 0.7,
                bce: 0.3,
                smooth: 1e-5,
            }),
            ..Self::seed_optimiser(12, 16, Some(20))
        }
    }

    fn validate(&self, section: &str, stage: Stage) -> Result<()> {
        let bad =
            |key: &str, msg: String| Err(HeparError::Config(format!("{section}.{key}: {msg}")));
        if self.epochs == 0 {
            return bad("epochs", "0 (need at least 1)".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "0 (need at least 1)".into());
        }
        match (stage, self.batches_per_epoch) {
            (Stage::Liver, Some(_)) => {
                return bad(
                    "batches_per_epoch",
                    "the liver stage visits every training volume once per epoch; remove this key"
                        .into(),
                )
            }
            (Stage::Tumor, Some(0)) => {
                return bad("batches_per_epoch", "0 (need at least 1)".into())
            }
            (Stage::Tumor, None) => return bad("batches_per_epoch", "missing".into()),
            _ => {}
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(
                "learning_rate",
                format!("{} (must be positive and finite)", self.learning_rate),
            );
        }
        if !(self.eta_min.is_finite() && (0.0..=self.learning_rate).contains(&self.eta_min)) {
            return bad(
                "eta_min",
                format!(
                    "{} (must be between 0 and learning_rate = {})",
                    self.eta_min, self.learning_rate
                ),
            );
        }
        if !(self.cosine_fraction > 0.0 && self.cosine_fraction <= 1.0) {
            return bad(
                "cosine_fraction",
                format!("{} (must be in (0, 1])", self.cosine_fraction),
            );
        }
        if !self.betas.iter().all(|b| (0.0..1.0).contains(b)) {
            return bad("betas", format!("{:?} (each in [0, 1))", self.betas));
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return bad("eps", format!("{} (must be positive)", self.eps));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                "weight_decay",
                format!("{} (must be zero or positive)", self.weight_decay),
            );
        }
        let weights_ok = [self.dice_weight, self.bce_weight]
            .iter()
            .all(|w| w.is_finite() && *w >= 0.0);
        if !weights_ok || self.dice_weight + self.bce_weight <= 0.0 {
            return bad(
                "dice_weight / bce_weight",
                format!(
                    "{} / {} (non-negative, with a positive sum)",
                    self.dice_weight, self.bce_weight
                ),
            );
        }
        if !(self.dice_smooth.is_finite() && self.dice_smooth >= 0.0) {
            return bad(
                "dice_smooth",
                format!("{} (must be zero or positive)", self.dice_smooth),
            );
        }
        if self.schedule == ScheduleKind::Step
            && (self.step_size == 0 || !(self.gamma.is_finite() && self.gamma > 0.0))
        {
            return bad(
                "step_size / gamma",
                format!(
                    "{} / {} (a step of at least 1 epoch, a positive factor)",
                    self.step_size, self.gamma
                ),
            );
        }
        if self.slices == Some(0) {
            return bad("slices", "0 (need at least 1)".into());
        }
        if let Some(loss) = &self.loss {
            loss.validate(section, self.target_for(stage).classes())?;
            let wants_classes = loss.target_kind() == TargetKind::ClassIds;
            if wants_classes != (self.target_for(stage) == TargetChoice::Classes) {
                return bad(
                    "target",
                    format!(
                        "{:?} does not suit the loss {loss:?}: cross-entropy takes target = \"classes\", the other losses a 0/1 target (liver or tumor)",
                        self.target_for(stage)
                    ),
                );
            }
        } else if self.target_for(stage) == TargetChoice::Classes {
            return bad(
                "target",
                "\"classes\" needs a cross-entropy loss ([...loss] kind = \"cross_entropy\")"
                    .into(),
            );
        }
        Ok(())
    }
}

/// `[model.liver]`, `[model.tumor]`: what is not fixed by the stage (dims, channels, classes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// Base width n: the stages have n, 2n, 4n, 8n, 8n channels (a multiple of 8).
    pub width: usize,
    /// Seed of the weight initialisation.
    pub init_seed: u64,
}

/// `[train.synthetic]`: the phantoms a fresh machine trains on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSettings {
    /// When `[data] root` is this folder and it holds no case, `hepar train` writes phantoms
    /// there first.
    pub root: PathBuf,
    pub cases: usize,
    /// Phantom grid (z, y, x).
    pub shape_zyx: [usize; 3],
    pub seed: u64,
    /// Train on the phantoms at the reduced network inputs below instead of the `[preprocess]`
    /// sizes, so the first run takes minutes on a CPU.
    pub reduced_inputs: bool,
    pub stage1_shape_zyx: [usize; 3],
    pub stage2_slice_shape_yx: [usize; 2],
}

impl Default for SyntheticSettings {
    fn default() -> Self {
        SyntheticSettings {
            root: crate::data::config::DataConfig::default().root,
            cases: 16,
            shape_zyx: crate::data::synth::DEFAULT_SHAPE_ZYX,
            seed: 0,
            reduced_inputs: true,
            stage1_shape_zyx: [64, 64, 64],
            stage2_slice_shape_yx: [64, 64],
        }
    }
}

/// Everything `hepar train` reads from `parameters.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainParameters {
    pub data: DataParameters,
    pub synthetic: SyntheticSettings,
    pub liver: StageTraining,
    pub tumor: StageTraining,
    pub liver_model: ModelSettings,
    pub tumor_model: ModelSettings,
    /// `[train.<arch>]` and `[model.<arch>]` of the other seeds' networks (`--arch`).
    pub arch_training: BTreeMap<Arch, StageTraining>,
    pub arch_models: BTreeMap<Arch, ModelSettings>,
    /// The keys given in `[patches.<arch>]` (see `patch_data`); merged onto the recipe's
    /// defaults by [`TrainParameters::patch_settings`].
    pub patches: BTreeMap<Arch, toml::Table>,
}

/// The architectures with their own `[train.<arch>]` section (the CoTNeXt networks train as
/// the stages).
fn other_archs() -> impl Iterator<Item = Arch> {
    Arch::ALL
        .into_iter()
        .filter(|a| StageTraining::arch_default(*a).is_some())
}

/// The base width of each other seed network for the synthetic run (the seeds used 64, 32, 32
/// and 16; `[model.<arch>] width` sets it).
fn arch_model_default(arch: Arch) -> ModelSettings {
    let width = match arch {
        Arch::Res3dUnet => 4,
        _ => 8,
    };
    ModelSettings {
        width,
        init_seed: 0,
    }
}

impl Default for TrainParameters {
    fn default() -> Self {
        TrainParameters {
            data: DataParameters::default(),
            synthetic: SyntheticSettings::default(),
            liver: StageTraining::liver_default(),
            tumor: StageTraining::tumor_default(),
            liver_model: ModelSettings {
                width: 16,
                init_seed: 0,
            },
            tumor_model: ModelSettings {
                width: 32,
                init_seed: 0,
            },
            arch_training: other_archs()
                .filter_map(|a| StageTraining::arch_default(a).map(|t| (a, t)))
                .collect(),
            arch_models: other_archs().map(|a| (a, arch_model_default(a))).collect(),
            patches: BTreeMap::new(),
        }
    }
}

/// `default` with the keys of `value` (a TOML table) replacing its own; unknown keys and wrong
/// types are errors naming the key and its line in `text` (the whole file).
fn merged_section<T: Serialize + DeserializeOwned>(
    text: &str,
    value: Option<&toml::Value>,
    default: T,
    name: &str,
) -> Result<T> {
    let Some(value) = value else {
        return Ok(default);
    };
    let given = value.as_table().ok_or_else(|| {
        HeparError::Config(format!(
            "{}[{name}] must be a table, found {}",
            line_prefix(key_line(text, name, None)),
            value.type_str()
        ))
    })?;
    let defaults = match toml::Value::try_from(&default) {
        Ok(toml::Value::Table(t)) => t,
        _ => {
            return Err(HeparError::Config(format!(
                "[{name}]: default settings are not a table"
            )))
        }
    };
    let merge = |keys: &mut dyn Iterator<Item = (&String, &toml::Value)>| {
        let mut merged = defaults.clone();
        for (key, v) in keys {
            merged.insert(key.clone(), v.clone());
        }
        toml::Value::Table(merged).try_into::<T>()
    };
    merge(&mut given.iter()).map_err(|e: toml::de::Error| {
        // The key at fault: named by serde for an unknown one, else the first given key that
        // fails on its own.
        let message = e.message().to_string();
        let culprit = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_string)
            .or_else(|| {
                given
                    .iter()
                    .find(|entry| merge(&mut std::iter::once(*entry)).is_err())
                    .map(|(k, _)| k.clone())
            });
        let line = key_line(text, name, culprit.as_deref());
        match culprit {
            Some(key) => {
                HeparError::Config(format!("{}{name}.{key}: {message}", line_prefix(line)))
            }
            None => HeparError::Config(format!("{}[{name}] {message}", line_prefix(line))),
        }
    })
}

/// `msg` ("section.key: problem", from a range check) with the key's line in front when the
/// text sets that key; messages that carry a line already stay as they are.
fn with_key_line(text: &str, msg: String) -> String {
    if msg.starts_with("line ") || msg.starts_with("TOML parse error") {
        return msg;
    }
    let Some((path, _)) = msg.split_once(':') else {
        return msg;
    };
    let Some((section, key)) = path.rsplit_once('.') else {
        return msg;
    };
    if path.contains(' ') {
        return msg;
    }
    match key_line(text, section, Some(key)) {
        // key_line falls back to the section header; only a line of the key itself is news.
        Some(line) if text.lines().nth(line - 1).is_some_and(|l| l.contains('=')) => {
            format!("line {line}: {msg}")
        }
        _ => msg,
    }
}

fn line_prefix(line: Option<usize>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}

/// The 1-based line of `key` in table `section` of a TOML text (or of the table's header when
/// `key` is `None` or not found there; a key that is itself a sub-table `[section.key]` is found
/// at that header). Plain line scanning: enough for the files people write by hand.
fn key_line(text: &str, section: &str, key: Option<&str>) -> Option<usize> {
    let header_of = |line: &str| -> Option<String> {
        let t = line.trim();
        let inner = t.strip_prefix('[')?.split(']').next()?;
        Some(
            inner
                .trim_matches('[')
                .split('.')
                .map(|p| p.trim().trim_matches('"'))
                .collect::<Vec<_>>()
                .join("."),
        )
    };
    let mut current = String::new();
    let mut header_line = None;
    for (i, line) in text.lines().enumerate() {
        if let Some(h) = header_of(line) {
            if let Some(k) = key {
                if h == format!("{section}.{k}") {
                    return Some(i + 1);
                }
            }
            if h == section {
                header_line = Some(i + 1);
            }
            current = h;
            continue;
        }
        if current != section {
            continue;
        }
        let Some(k) = key else { continue };
        let name = line
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        if line.contains('=') && name == k {
            return Some(i + 1);
        }
    }
    header_line
}

/// The sub-tables of a top-level table, rejecting names outside `allowed`.
fn subsections<'a>(
    text: &str,
    doc: &'a toml::Table,
    name: &str,
    allowed: &[&str],
) -> Result<Option<&'a toml::Table>> {
    let Some(value) = doc.get(name) else {
        return Ok(None);
    };
    let table = value
        .as_table()
        .ok_or_else(|| HeparError::Config(format!("[{name}] must be a table")))?;
    if let Some(key) = table.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(HeparError::Config(format!(
            "{}{name}.{key}: unknown section (expected one of {})",
            line_prefix(key_line(text, name, Some(key))),
            allowed.join(", ")
        )));
    }
    Ok(Some(table))
}

impl TrainParameters {
    /// Parses and checks a settings file's text; every error names the key and, where the text
    /// has it, its line.
    pub fn from_toml_str(text: &str) -> Result<Self> {
        Self::parse_and_check(text).map_err(|e| match e {
            HeparError::Config(msg) => HeparError::Config(with_key_line(text, msg)),
            other => other,
        })
    }

    fn parse_and_check(text: &str) -> Result<Self> {
        let data = DataParameters::from_toml_str(text)?;
        let doc: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| HeparError::Config(e.to_string()))?;
        let defaults = TrainParameters::default();
        let arch_names: Vec<&str> = other_archs().map(Arch::name).collect();
        let allowed = |fixed: &[&'static str]| -> Vec<&str> {
            fixed
                .iter()
                .copied()
                .chain(arch_names.iter().copied())
                .collect()
        };
        let train = subsections(
            text,
            &doc,
            "train",
            &allowed(&["synthetic", "liver", "tumor"]),
        )?;
        let model = subsections(text, &doc, "model", &allowed(&["liver", "tumor"]))?;
        let patch_archs: Vec<&str> = other_archs()
            .filter(|a| PatchSettings::seed_default(*a).is_some())
            .map(Arch::name)
            .collect();
        let patch_sections = subsections(text, &doc, "patches", &patch_archs)?;
        let get = |t: Option<&toml::Table>, key: &str| t.and_then(|t| t.get(key)).cloned();
        let mut patches = BTreeMap::new();
        for arch in other_archs() {
            let Some(given) = get(patch_sections, arch.name()) else {
                continue;
            };
            // Checked here against the seed's recipe, so typos fail at load.
            let section = format!("patches.{}", arch.name());
            let default = PatchSettings::seed_default(arch).expect("listed above");
            merged_section(text, Some(&given), default, &section)?.validate(&section)?;
            if let toml::Value::Table(t) = given {
                patches.insert(arch, t);
            }
        }
        let mut arch_training = BTreeMap::new();
        let mut arch_models = BTreeMap::new();
        for arch in other_archs() {
            let name = arch.name();
            let default = StageTraining::arch_default(arch).expect("other archs have defaults");
            arch_training.insert(
                arch,
                merged_section(
                    text,
                    get(train, name).as_ref(),
                    default,
                    &format!("train.{name}"),
                )?,
            );
            arch_models.insert(
                arch,
                merged_section(
                    text,
                    get(model, name).as_ref(),
                    arch_model_default(arch),
                    &format!("model.{name}"),
                )?,
            );
        }
        let params = TrainParameters {
            patches,
            arch_training,
            arch_models,
            data,
            synthetic: merged_section(
                text,
                get(train, "synthetic").as_ref(),
                defaults.synthetic,
                "train.synthetic",
            )?,
            liver: merged_section(
                text,
                get(train, "liver").as_ref(),
                defaults.liver,
                "train.liver",
            )?,
            tumor: merged_section(
                text,
                get(train, "tumor").as_ref(),
                defaults.tumor,
                "train.tumor",
            )?,
            liver_model: merged_section(
                text,
                get(model, "liver").as_ref(),
                defaults.liver_model,
                "model.liver",
            )?,
            tumor_model: merged_section(
                text,
                get(model, "tumor").as_ref(),
                defaults.tumor_model,
                "model.tumor",
            )?,
        };
        params.validate()?;
        Ok(params)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| HeparError::io(path, e))?;
        Self::from_toml_str(&text).map_err(|e| match e {
            HeparError::Config(msg) => HeparError::Config(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    pub fn stage(&self, stage: Stage) -> &StageTraining {
        match stage {
            Stage::Liver => &self.liver,
            Stage::Tumor => &self.tumor,
        }
    }

    pub fn stage_mut(&mut self, stage: Stage) -> &mut StageTraining {
        match stage {
            Stage::Liver => &mut self.liver,
            Stage::Tumor => &mut self.tumor,
        }
    }

    /// The data a network trains on: volumes (stage 1) for 3D networks, 2.5D stacks (stage 2)
    /// for 2D ones.
    pub fn stage_of(arch: Arch) -> Stage {
        if arch.dims() == 3 {
            Stage::Liver
        } else {
            Stage::Tumor
        }
    }

    /// The config section of `arch`'s training: `train.liver` / `train.tumor` for the CoTNeXt
    /// networks, `train.<arch>` for the others.
    pub fn section_of(arch: Arch) -> String {
        match arch {
            Arch::CotNext3d | Arch::CotNext2d => format!("train.{}", Self::stage_of(arch)),
            other => format!("train.{}", other.name()),
        }
    }

    pub fn training_for(&self, arch: Arch) -> &StageTraining {
        match self.arch_training.get(&arch) {
            Some(t) => t,
            None => self.stage(Self::stage_of(arch)),
        }
    }

    pub fn training_for_mut(&mut self, arch: Arch) -> &mut StageTraining {
        if self.arch_training.contains_key(&arch) {
            return self.arch_training.get_mut(&arch).expect("checked");
        }
        self.stage_mut(Self::stage_of(arch))
    }

    pub fn model_for(&self, arch: Arch) -> &ModelSettings {
        match self.arch_models.get(&arch) {
            Some(m) => m,
            None => self.model(Self::stage_of(arch)),
        }
    }

    /// The patch recipe `arch` trains on (`None`: whole volumes or stacks): the keys of
    /// `[patches.<arch>]` over the seed's recipe, or over the reduced one on the synthetic
    /// phantoms with `reduced_inputs`.
    pub fn patch_settings(&self, arch: Arch) -> Result<Option<PatchSettings>> {
        let default = if self.uses_synthetic_data() && self.synthetic.reduced_inputs {
            PatchSettings::synthetic_default(arch, self.synthetic.stage1_shape_zyx)
        } else {
            PatchSettings::seed_default(arch)
        };
        let Some(default) = default else {
            return Ok(None);
        };
        let section = format!("patches.{}", arch.name());
        let given = self.patches.get(&arch).cloned().map(toml::Value::Table);
        let settings = merged_section("", given.as_ref(), default, &section)?;
        settings.validate(&section)?;
        Ok(Some(settings))
    }

    pub fn model(&self, stage: Stage) -> &ModelSettings {
        match stage {
            Stage::Liver => &self.liver_model,
            Stage::Tumor => &self.tumor_model,
        }
    }

    /// Whether `[data] root` is the synthetic folder (phantoms are generated there when empty).
    /// The same folder under two spellings counts, and so does any folder of phantoms
    /// (`hepar synth` marks them), e.g. a copy of the synthetic folder.
    pub fn uses_synthetic_data(&self) -> bool {
        let (root, synthetic) = (&self.data.data.root, &self.synthetic.root);
        if root == synthetic || crate::data::synth::is_synthetic_folder(root) {
            return true;
        }
        match (root.canonicalize(), synthetic.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
    }

    /// The data settings a run uses: `[preprocess]` input sizes replaced by the reduced ones when
    /// training on the synthetic phantoms with `reduced_inputs`.
    pub fn effective_data(&self) -> DataParameters {
        let mut data = self.data.clone();
        if self.uses_synthetic_data() && self.synthetic.reduced_inputs {
            data.preprocess.stage1.shape_zyx = self.synthetic.stage1_shape_zyx;
            data.preprocess.stage2.slice_shape_yx = self.synthetic.stage2_slice_shape_yx;
        }
        data
    }

    pub fn validate(&self) -> Result<()> {
        self.data.validate()?;
        self.liver.validate("train.liver", Stage::Liver)?;
        self.tumor.validate("train.tumor", Stage::Tumor)?;
        for (arch, training) in &self.arch_training {
            training.validate(&Self::section_of(*arch), Self::stage_of(*arch))?;
            let width = self.model_for(*arch).width;
            if width == 0 {
                return Err(HeparError::Config(format!(
                    "model.{}.width: 0 (need at least 1)",
                    arch.name()
                )));
            }
        }
        for (name, m) in [
            ("model.liver", &self.liver_model),
            ("model.tumor", &self.tumor_model),
        ] {
            if m.width < 8 || m.width % 8 != 0 {
                return Err(HeparError::Config(format!(
                    "{name}.width: {} (a positive multiple of 8)",
                    m.width
                )));
            }
        }
        let s = &self.synthetic;
        if s.cases < self.data.data.folds {
            return Err(HeparError::Config(format!(
                "train.synthetic.cases: {} (need at least data.folds = {} so every fold has a case)",
                s.cases, self.data.data.folds
            )));
        }
        if s.shape_zyx.iter().any(|&d| d < 8) {
            return Err(HeparError::Config(format!(
                "train.synthetic.shape_zyx: {:?} (each side at least 8)",
                s.shape_zyx
            )));
        }
        // The U-Net pools four times: every network input side must be at least 16.
        let data = self.effective_data();
        let too_small = |shape: &[usize]| shape.iter().any(|&d| d < 16);
        if too_small(&data.preprocess.stage1.shape_zyx) {
            let key = if data.preprocess.stage1.shape_zyx == self.data.preprocess.stage1.shape_zyx {
                "preprocess.stage1.shape_zyx"
            } else {
                "train.synthetic.stage1_shape_zyx"
            };
            return Err(HeparError::Config(format!(
                "{key}: {:?} (each side at least 16, the network pools four times)",
                data.preprocess.stage1.shape_zyx
            )));
        }
        if too_small(&data.preprocess.stage2.slice_shape_yx) {
            let key = if data.preprocess.stage2.slice_shape_yx
                == self.data.preprocess.stage2.slice_shape_yx
            {
                "preprocess.stage2.slice_shape_yx"
            } else {
                "train.synthetic.stage2_slice_shape_yx"
            };
            return Err(HeparError::Config(format!(
                "{key}: {:?} (each side at least 16, the network pools four times)",
                data.preprocess.stage2.slice_shape_yx
            )));
        }
        // Training-mode BatchNorm (inside the CoT attention) needs more than one value per
        // channel at the deepest stage, where each side is floor(side / 16).
        let deepest = |shape: &[usize]| shape.iter().map(|&d| d / 16).product::<usize>();
        let stage1 = data.preprocess.stage1.shape_zyx;
        if deepest(&stage1) < 2 {
            return Err(HeparError::Config(format!(
                "stage-1 input {stage1:?}: the deepest stage would hold one voxel, too few for BatchNorm in training \
                 (make one side of preprocess.stage1.shape_zyx / train.synthetic.stage1_shape_zyx at least 32)"
            )));
        }
        let stage2 = data.preprocess.stage2.slice_shape_yx;
        if deepest(&stage2) * self.tumor.batch_size < 2 {
            return Err(HeparError::Config(format!(
                "train.tumor.batch_size: 1 with slices {stage2:?} leaves one value per channel at the deepest stage, \
                 too few for BatchNorm in training (use batches of 2 or more, or larger slices)"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_override_only_their_keys() {
        let p =
            TrainParameters::from_toml_str("[train.liver]\nepochs = 3\n[model.tumor]\nwidth = 8\n")
                .unwrap();
        assert_eq!(p.liver.epochs, 3);
        assert_eq!(p.liver.learning_rate, 1e-3);
        assert_eq!(p.tumor_model.width, 8);
        assert_eq!(p.liver_model.width, 16);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = TrainParameters::from_toml_str("[train.liver]\nepoch = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("train.liver") && err.contains("epoch"),
            "{err}"
        );
        let err = TrainParameters::from_toml_str("[train.tumor]\nlearning_rate = -1.0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.tumor.learning_rate"), "{err}");
        let err = TrainParameters::from_toml_str("[train.liver]\nbatches_per_epoch = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.liver.batches_per_epoch"), "{err}");
        let err = TrainParameters::from_toml_str("[model.liver]\nwidth = 12\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("model.liver.width"), "{err}");
        let err = TrainParameters::from_toml_str("[train.lever]\nepochs = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.lever"), "{err}");
    }

    #[test]
    fn stage_two_defaults_to_the_seed_recipe() {
        let p = TrainParameters::default();
        assert_eq!(p.tumor.cosine_fraction, 0.75);
        assert_eq!(p.liver.cosine_fraction, 1.0);
        assert!(matches!(
            p.tumor.loss_config(),
            LossConfig::TverskyBce { alpha, beta, tversky_weight, bce, .. }
                if (alpha, beta, tversky_weight, bce) == (0.7, 0.3, 0.7, 0.3)
        ));
        assert!(matches!(p.liver.loss_config(), LossConfig::DiceBce { .. }));
        // Checkpoints written before the key anneal over the whole run.
        let mut stored = serde_json::to_value(&p.tumor).unwrap();
        stored.as_object_mut().unwrap().remove("cosine_fraction");
        let read: StageTraining = serde_json::from_value(stored).unwrap();
        assert_eq!(read.cosine_fraction, 1.0);
        let err = TrainParameters::from_toml_str("[train.tumor]\ncosine_fraction = 0.0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.tumor.cosine_fraction"), "{err}");
    }

    #[test]
    fn inputs_too_small_for_the_network_are_refused() {
        let err =
            TrainParameters::from_toml_str("[train.synthetic]\nstage1_shape_zyx = [8, 64, 64]\n")
                .unwrap_err()
                .to_string();
        assert!(err.contains("train.synthetic.stage1_shape_zyx"), "{err}");
        // 16^3 pools down to one voxel, which training-mode BatchNorm cannot normalise.
        let err =
            TrainParameters::from_toml_str("[train.synthetic]\nstage1_shape_zyx = [16, 16, 16]\n")
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("BatchNorm") && err.contains("at least 32"),
            "{err}"
        );
    }

    #[test]
    fn a_copy_of_the_phantoms_counts_as_synthetic() {
        let dir = std::env::temp_dir().join(format!("hepar-synth-copy-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        crate::data::synth::write_dataset(&dir.join("copy"), 1, 0, [8, 16, 16]).unwrap();
        std::fs::create_dir_all(dir.join("real")).unwrap();
        let with_root = |root: &std::path::Path| {
            TrainParameters::from_toml_str(&format!("[data]\nroot = \"{}\"\n", root.display()))
                .unwrap()
        };
        assert!(with_root(&dir.join("copy")).uses_synthetic_data());
        assert!(!with_root(&dir.join("real")).uses_synthetic_data());
        // Two spellings of one folder.
        let mut p = with_root(&dir.join("real"));
        p.synthetic.root = dir.join("copy/../real");
        assert!(p.uses_synthetic_data());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reduced_inputs_apply_only_to_the_synthetic_folder() {
        let p = TrainParameters::default();
        assert_eq!(p.effective_data().preprocess.stage1.shape_zyx, [64, 64, 64]);
        let p = TrainParameters::from_toml_str("[data]\nroot = \"/data/lits\"\n").unwrap();
        assert_eq!(
            p.effective_data().preprocess.stage1.shape_zyx,
            [128, 128, 128]
        );
    }
}
