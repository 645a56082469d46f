//! The shared golden fixtures (`../shared/fixtures/*.safetensors`, described in their README):
//! settings from the string metadata, reference tensors grouped by their key prefix, every
//! shape checked against the settings so a malformed fixture fails here, by key, not deep in
//! the engine.

use super::host_tensor::HostTensor;
use super::named_tensors::NamedTensors;
use super::safetensors_io::{read_safetensors, TensorFile};
use crate::error::{HeparError, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The bounds of the fixtures' score: `rtol * ||r|| + atol * sqrt(numel)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixtureKind {
    /// Load a checkpoint, run the network in eval mode, compare the logits.
    Forward,
    /// Build the network from `init.*`, compare loss, gradients, statistics and trained weights.
    Train,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    Eval,
    Train,
}

/// How a `train` fixture's learning rate moves from step to step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FixtureSchedule {
    /// `schedule = none`: constant.
    Constant,
    /// `schedule = cosine` (the CoTNeXt files): cosine annealing over `t_max` to `eta_min`.
    Cosine,
    /// `schedule = step`: StepLR, `lr * gamma^floor(k / step_size)` after k steps.
    Step { step_size: usize, gamma: f64 },
}

/// The optimisation a `train` fixture reproduces. Values absent from the metadata take the ones
/// the fixtures README documents.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSettings {
    pub steps: usize,
    /// `optimizer = adamw` (decoupled weight decay, the CoTNeXt files) or `adam` (L2 weight decay
    /// added to the gradient, as PyTorch's Adam).
    pub decoupled_weight_decay: bool,
    pub schedule: FixtureSchedule,
    pub lr: f64,
    pub betas: (f64, f64),
    pub adam_eps: f64,
    pub weight_decay: f64,
    pub eta_min: f64,
    pub t_max: usize,
    pub bn_momentum: f64,
    pub dice_eps: f64,
    /// Tolerance for the `trained.*` tensors.
    pub trained_tolerance: Tolerance,
}

/// Reference tensors of a `forward` fixture.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardTensors {
    pub input: HostTensor,
    pub expected_logits: HostTensor,
    /// `expected_deep.0..`: the deep-supervision heads, coarsest first (res3dunet).
    pub expected_deep: Vec<HostTensor>,
    /// `init.*`: the network's own weights, for files without a `checkpoint`.
    pub init: NamedTensors,
}

/// Reference tensors of a `train` fixture; the groups are keyed without their prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainTensors {
    pub input: HostTensor,
    pub target: HostTensor,
    pub loss: HostTensor,
    pub grad_input: HostTensor,
    /// `init.*`: the starting state_dict (parameters and BatchNorm running statistics).
    pub init: NamedTensors,
    /// `grad.*` except `grad.input`: gradients by parameter name.
    pub grads: NamedTensors,
    /// `stats.*`: BatchNorm running statistics after one forward pass.
    pub stats: NamedTensors,
    /// `trained.*`: the state after `steps` optimizer steps.
    pub trained: NamedTensors,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FixtureTensors {
    Forward(ForwardTensors),
    Train(Box<TrainTensors>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Fixture {
    pub path: PathBuf,
    /// The `arch` key (`cotnext_unet` when absent, as the first files were).
    pub arch: String,
    pub dims: usize,
    pub in_channels: usize,
    pub n_classes: usize,
    /// The base width: `n_channels` in the CoTNeXt files, `base` in the others.
    pub n_channels: usize,
    pub mode: NetworkMode,
    pub tolerance: Tolerance,
    /// `forward` fixtures: the checkpoint, resolved against the fixture's folder.
    pub checkpoint: Option<PathBuf>,
    /// `train` fixtures: the optimisation settings.
    pub train: Option<TrainSettings>,
    /// Every metadata string, including those parsed above.
    pub metadata: BTreeMap<String, String>,
    pub tensors: FixtureTensors,
    /// Tensors with no known role, kept for tools that want to look at them.
    pub extra: NamedTensors,
}

impl Fixture {
    pub fn load(path: &Path) -> Result<Fixture> {
        let file = read_safetensors(path)?;
        Fixture::from_file(path, file)
    }

    /// Builds a fixture from an already-parsed file; `path` names it in errors and anchors the
    /// checkpoint path.
    pub fn from_file(path: &Path, file: TensorFile) -> Result<Fixture> {
        let meta = Metadata {
            path,
            map: &file.metadata,
        };
        let kind = match meta.required("kind")? {
            "forward" => FixtureKind::Forward,
            "train" => FixtureKind::Train,
            other => return Err(meta.invalid("kind", other, "'forward' or 'train'")),
        };
        let dims: usize = meta.parse("dims")?;
        if dims != 2 && dims != 3 {
            return Err(meta.invalid("dims", &dims.to_string(), "2 or 3"));
        }
        let in_channels = meta.positive("in_channels")?;
        let n_classes = meta.positive("n_classes")?;
        let arch = meta.optional("arch").unwrap_or("cotnext_unet").to_string();
        let n_channels = match meta.optional("base") {
            Some(_) => meta.positive("base")?,
            None => meta.positive("n_channels")?,
        };
        let mode = match meta.required("mode")? {
            "eval" => NetworkMode::Eval,
            "train" => NetworkMode::Train,
            other => return Err(meta.invalid("mode", other, "'eval' or 'train'")),
        };
        let tolerance = Tolerance {
            rtol: meta.non_negative("rtol")?,
            atol: meta.non_negative("atol")?,
        };
        // Class-id targets have one channel; masks have one per class.
        let target_channels = if meta.optional("loss") == Some("cross_entropy") {
            1
        } else {
            n_classes
        };

        let shapes = ShapeRules {
            path,
            dims,
            in_channels,
        };
        let mut groups = Groups::split(path, file.tensors)?;
        let input = groups.take_top("input")?;
        let batch = shapes.check_input(&input)?;

        let (checkpoint, train, tensors) = match kind {
            FixtureKind::Forward => {
                let init = groups.take_group("init.");
                let checkpoint = match meta.optional("checkpoint") {
                    Some(file) => Some(path.parent().unwrap_or(Path::new(".")).join(file)),
                    None if !init.is_empty() => None,
                    None => {
                        return Err(HeparError::format(
                            path,
                            "a forward fixture needs a 'checkpoint' key or 'init.*' weights",
                        ))
                    }
                };
                let expected_logits = groups.take_top("expected_logits")?;
                shapes.check_output(
                    "expected_logits",
                    &expected_logits,
                    batch,
                    n_classes,
                    &input,
                )?;
                let mut expected_deep = Vec::new();
                while let Ok(head) =
                    groups.take_top(&format!("expected_deep.{}", expected_deep.len()))
                {
                    shapes.check_output("expected_deep", &head, batch, n_classes, &input)?;
                    expected_deep.push(head);
                }
                (
                    checkpoint,
                    None,
                    FixtureTensors::Forward(ForwardTensors {
                        input,
                        expected_logits,
                        expected_deep,
                        init,
                    }),
                )
            }
            FixtureKind::Train => {
                let train = train_settings(&meta)?;
                let target = groups.take_top("target")?;
                shapes.check_output("target", &target, batch, target_channels, &input)?;
                let loss = groups.take_top("loss")?;
                if loss.numel() != 1 {
                    return Err(HeparError::format(
                        path,
                        format!("'loss' has shape {:?}, expected one value", loss.shape()),
                    ));
                }
                let grad_input = groups.take_top("grad.input")?;
                shapes.check_like_input("grad.input", &grad_input, batch, in_channels, &input)?;
                let init = groups.take_group("init.");
                if init.is_empty() {
                    return Err(HeparError::format(
                        path,
                        "no 'init.*' tensors: a train fixture needs the starting weights",
                    ));
                }
                let grads = groups.take_group("grad.");
                let stats = groups.take_group("stats.");
                let trained = groups.take_group("trained.");
                check_group_against_init(path, "grad.", &grads, &init)?;
                check_group_against_init(path, "stats.", &stats, &init)?;
                check_group_against_init(path, "trained.", &trained, &init)?;
                for (name, _) in init.iter() {
                    if !trained.contains(name) {
                        return Err(HeparError::format(
                            path,
                            format!("'init.{name}' has no 'trained.{name}'"),
                        ));
                    }
                }
                let tensors = TrainTensors {
                    input,
                    target,
                    loss,
                    grad_input,
                    init,
                    grads,
                    stats,
                    trained,
                };
                (None, Some(train), FixtureTensors::Train(Box::new(tensors)))
            }
        };
        Ok(Fixture {
            path: path.to_path_buf(),
            arch,
            dims,
            in_channels,
            n_classes,
            n_channels,
            mode,
            tolerance,
            checkpoint,
            train,
            metadata: file.metadata,
            tensors,
            extra: groups.rest,
        })
    }

    pub fn kind(&self) -> FixtureKind {
        match self.tensors {
            FixtureTensors::Forward(_) => FixtureKind::Forward,
            FixtureTensors::Train(_) => FixtureKind::Train,
        }
    }

    /// The tolerance for a tensor key of the file: `trained.*` uses the trained tolerance.
    pub fn tolerance_for(&self, key: &str) -> Tolerance {
        match (&self.train, key.starts_with("trained.")) {
            (Some(train), true) => train.trained_tolerance,
            _ => self.tolerance,
        }
    }
}

struct Metadata<'a> {
    path: &'a Path,
    map: &'a BTreeMap<String, String>,
}

impl<'a> Metadata<'a> {
    fn optional(&self, key: &str) -> Option<&'a str> {
        self.map.get(key).map(|s| s.trim())
    }
    fn required(&self, key: &str) -> Result<&'a str> {
        self.optional(key).ok_or_else(|| {
            HeparError::format(self.path, format!("metadata key '{key}' is missing"))
        })
    }
    fn invalid(&self, key: &str, value: &str, expected: &str) -> HeparError {
        HeparError::format(
            self.path,
            format!("metadata '{key}' = '{value}': expected {expected}"),
        )
    }
    fn parse<T: FromStr>(&self, key: &str) -> Result<T> {
        let value = self.required(key)?;
        value
            .parse()
            .map_err(|_| self.invalid(key, value, std::any::type_name::<T>()))
    }
    fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T> {
        match self.optional(key) {
            None => Ok(default),
            Some(_) => self.parse(key),
        }
    }
    fn positive(&self, key: &str) -> Result<usize> {
        let v: usize = self.parse(key)?;
        if v == 0 {
            return Err(self.invalid(key, "0", "a positive integer"));
        }
        Ok(v)
    }
    fn non_negative(&self, key: &str) -> Result<f64> {
        let v: f64 = self.parse(key)?;
        if !(v.is_finite() && v >= 0.0) {
            return Err(self.invalid(key, &v.to_string(), "a finite number >= 0"));
        }
        Ok(v)
    }
}

fn train_settings(meta: &Metadata) -> Result<TrainSettings> {
    let decoupled_weight_decay = match meta.optional("optimizer").unwrap_or("adamw") {
        "adamw" => true,
        "adam" => false,
        other => return Err(meta.invalid("optimizer", other, "'adamw' or 'adam'")),
    };
    let schedule = match meta.optional("schedule").unwrap_or("cosine") {
        "cosine" => FixtureSchedule::Cosine,
        "none" => FixtureSchedule::Constant,
        "step" => FixtureSchedule::Step {
            step_size: meta.positive("step_size")?,
            gamma: meta.non_negative("gamma")?,
        },
        other => return Err(meta.invalid("schedule", other, "'cosine', 'step' or 'none'")),
    };
    let steps = meta.positive("steps")?;
    let betas = match meta.optional("betas") {
        None => (0.9, 0.999),
        Some(text) => {
            let parts: Vec<f64> = text
                .split(',')
                .map(|p| p.trim().parse())
                .collect::<Result<_, _>>()
                .map_err(|_| meta.invalid("betas", text, "two comma-separated numbers"))?;
            match parts[..] {
                [b1, b2] => (b1, b2),
                _ => return Err(meta.invalid("betas", text, "two comma-separated numbers")),
            }
        }
    };
    Ok(TrainSettings {
        steps,
        decoupled_weight_decay,
        schedule,
        lr: meta.parse_or("lr", 1e-3)?,
        betas,
        adam_eps: meta.parse_or("adam_eps", 1e-8)?,
        weight_decay: meta.parse_or("weight_decay", 1e-5)?,
        eta_min: meta.parse_or("eta_min", 1e-5)?,
        t_max: meta.parse_or("t_max", steps)?,
        bn_momentum: meta.parse_or("bn_momentum", 0.1)?,
        dice_eps: meta.parse_or("dice_eps", 1e-5)?,
        trained_tolerance: Tolerance {
            rtol: meta.non_negative("trained_rtol")?,
            atol: meta.non_negative("trained_atol")?,
        },
    })
}

/// The file's tensors, taken out by role; what is left over ends in `Fixture::extra`.
struct Groups<'a> {
    path: &'a Path,
    rest: NamedTensors,
}

impl<'a> Groups<'a> {
    fn split(path: &'a Path, tensors: NamedTensors) -> Result<Groups<'a>> {
        Ok(Groups {
            path,
            rest: tensors,
        })
    }

    fn take_top(&mut self, key: &str) -> Result<HostTensor> {
        let tensor =
            self.rest.get(key).cloned().ok_or_else(|| {
                HeparError::format(self.path, format!("tensor '{key}' is missing"))
            })?;
        self.keep(|name| name != key);
        Ok(tensor)
    }

    fn take_group(&mut self, prefix: &str) -> NamedTensors {
        let group = self.rest.with_prefix(prefix);
        self.keep(|name| !name.starts_with(prefix));
        group
    }

    fn keep(&mut self, keep: impl Fn(&str) -> bool) {
        let mut kept = NamedTensors::new();
        for (name, tensor) in std::mem::take(&mut self.rest) {
            if keep(&name) {
                // Names were unique before, so they still are.
                let _ = kept.insert(name, tensor);
            }
        }
        self.rest = kept;
    }
}

struct ShapeRules<'a> {
    path: &'a Path,
    dims: usize,
    in_channels: usize,
}

impl ShapeRules<'_> {
    /// `input` must be [N, in_channels, spatial...] with `dims` spatial axes; returns N.
    fn check_input(&self, input: &HostTensor) -> Result<usize> {
        let shape = input.shape();
        if shape.len() != self.dims + 2 || shape[1] != self.in_channels || shape.contains(&0) {
            return Err(HeparError::format(
                self.path,
                format!(
                    "'input' has shape {shape:?}, expected [N, {}, {}] (dims {}, in_channels {})",
                    self.in_channels,
                    vec!["S"; self.dims].join(", "),
                    self.dims,
                    self.in_channels
                ),
            ));
        }
        Ok(shape[0])
    }

    /// `tensor` must be [batch, channels, spatial...] with every spatial size at most the
    /// input's (a network that crops its skips, as the Keras U-Net, gives smaller outputs).
    fn check_output(
        &self,
        key: &str,
        tensor: &HostTensor,
        batch: usize,
        channels: usize,
        input: &HostTensor,
    ) -> Result<()> {
        let shape = tensor.shape();
        let fits = shape.len() == input.shape().len()
            && shape[..2] == [batch, channels]
            && shape[2..]
                .iter()
                .zip(&input.shape()[2..])
                .all(|(&s, &i)| s > 0 && s <= i);
        if !fits {
            return Err(HeparError::format(
                self.path,
                format!(
                    "'{key}' has shape {shape:?}, expected [{batch}, {channels}, spatial sizes up to the input's {:?}]",
                    &input.shape()[2..]
                ),
            ));
        }
        Ok(())
    }

    /// `tensor` must be [batch, channels, the input's spatial size].
    fn check_like_input(
        &self,
        key: &str,
        tensor: &HostTensor,
        batch: usize,
        channels: usize,
        input: &HostTensor,
    ) -> Result<()> {
        let mut expected = vec![batch, channels];
        expected.extend_from_slice(&input.shape()[2..]);
        if tensor.shape() != expected.as_slice() {
            return Err(HeparError::format(
                self.path,
                format!(
                    "'{key}' has shape {:?}, expected {expected:?}",
                    tensor.shape()
                ),
            ));
        }
        Ok(())
    }
}

/// Every tensor of a group must name an `init.*` tensor of the same shape.
fn check_group_against_init(
    path: &Path,
    prefix: &str,
    group: &NamedTensors,
    init: &NamedTensors,
) -> Result<()> {
    for (name, tensor) in group.iter() {
        match init.get(name) {
            None => {
                return Err(HeparError::format(
                    path,
                    format!("'{prefix}{name}' has no 'init.{name}'"),
                ))
            }
            Some(start) if start.shape() != tensor.shape() => {
                return Err(HeparError::format(
                    path,
                    format!(
                        "'{prefix}{name}' has shape {:?}, 'init.{name}' has {:?}",
                        tensor.shape(),
                        start.shape()
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}
