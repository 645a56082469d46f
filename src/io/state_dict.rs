//! Compares the parameters a model expects (name -> shape) with those a file provides, and
//! reports missing, unexpected and mis-shaped keys by name.

use super::named_tensors::NamedTensors;
use crate::error::{HeparError, Result};
use std::collections::HashSet;

/// True for BatchNorm's running statistics and its batch counter, which are buffers, not
/// parameters.
pub fn is_batchnorm_statistic(name: &str) -> bool {
    name.ends_with(".running_mean")
        || name.ends_with(".running_var")
        || name.ends_with(".num_batches_tracked")
}

/// The number of parameter elements in a state_dict (buffers excluded), as PyTorch counts them.
pub fn parameter_count(state_dict: &NamedTensors) -> usize {
    state_dict
        .iter()
        .filter(|(n, _)| !is_batchnorm_statistic(n))
        .map(|(_, t)| t.numel())
        .sum()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    pub name: String,
    pub expected: Vec<usize>,
    pub found: Vec<usize>,
}

/// The differences between an expected and a found list of keys and shapes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateDictReport {
    /// Expected keys the file lacks, in the model's order.
    pub missing: Vec<String>,
    /// Keys in the file the model does not have, in the file's order.
    pub unexpected: Vec<String>,
    /// Keys present on both sides with different shapes, in the model's order.
    pub mismatched: Vec<ShapeMismatch>,
    /// The first problem in the model's order, worded for the error message.
    first_problem: Option<String>,
}

impl StateDictReport {
    /// Compares `expected` (from the model) with `found` (from a file). `num_batches_tracked`
    /// counters in the file are not reported as unexpected: our BatchNorm uses a fixed momentum,
    /// for which PyTorch never reads the counter either.
    pub fn compare(expected: &[(String, Vec<usize>)], found: &NamedTensors) -> StateDictReport {
        let mut report = StateDictReport::default();
        for (name, shape) in expected {
            let problem = match found.get(name) {
                None => {
                    report.missing.push(name.clone());
                    format!("key '{name}' (shape {shape:?}) is missing")
                }
                Some(t) if t.shape() != shape.as_slice() => {
                    report.mismatched.push(ShapeMismatch {
                        name: name.clone(),
                        expected: shape.clone(),
                        found: t.shape().to_vec(),
                    });
                    format!(
                        "key '{name}' has shape {:?}, the model expects {shape:?}",
                        t.shape()
                    )
                }
                Some(_) => continue,
            };
            report.first_problem.get_or_insert(problem);
        }
        let known: HashSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        report.unexpected = found
            .names()
            .filter(|n| !known.contains(n) && !n.ends_with(".num_batches_tracked"))
            .map(str::to_string)
            .collect();
        if let Some(name) = report.unexpected.first() {
            report
                .first_problem
                .get_or_insert(format!("key '{name}' is not a parameter of the model"));
        }
        report
    }

    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// `Ok` when everything matches; otherwise a `Checkpoint` error that names the first
    /// offending key (with expected vs found shape) and counts the rest.
    pub fn into_result(self, source: &str) -> Result<()> {
        if self.is_ok() {
            return Ok(());
        }
        Err(HeparError::Checkpoint(format!("{source}: {self}")))
    }
}

impl std::fmt::Display for StateDictReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_ok() {
            return f.write_str("state_dict matches the model");
        }
        f.write_str(
            self.first_problem
                .as_deref()
                .unwrap_or("state_dict differs from the model"),
        )?;
        write!(
            f,
            " ({} mis-shaped, {} missing, {} unexpected keys",
            self.mismatched.len(),
            self.missing.len(),
            self.unexpected.len()
        )?;
        let list =
            |f: &mut std::fmt::Formatter<'_>, label: &str, names: &[String]| -> std::fmt::Result {
                if !names.is_empty() {
                    let shown: Vec<&str> = names.iter().take(5).map(String::as_str).collect();
                    let more = if names.len() > 5 { ", ..." } else { "" };
                    write!(f, "; {label}: {}{more}", shown.join(", "))?;
                }
                Ok(())
            };
        let mis: Vec<String> = self.mismatched.iter().map(|m| m.name.clone()).collect();
        list(f, "mis-shaped", &mis)?;
        list(f, "missing", &self.missing)?;
        list(f, "unexpected", &self.unexpected)?;
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::host_tensor::{HostData, HostTensor};

    fn found(entries: &[(&str, &[usize])]) -> NamedTensors {
        let mut out = NamedTensors::new();
        for (name, shape) in entries {
            let n = shape.iter().product();
            out.insert(
                *name,
                HostTensor::from_f32(shape.to_vec(), vec![0.0; n]).unwrap(),
            )
            .unwrap();
        }
        out
    }

    fn expected(entries: &[(&str, &[usize])]) -> Vec<(String, Vec<usize>)> {
        entries
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_vec()))
            .collect()
    }

    #[test]
    fn matching_state_dict_passes_and_ignores_batch_counters() {
        let model = expected(&[("a.weight", &[2, 3]), ("a.bias", &[2])]);
        let mut file = found(&[("a.weight", &[2, 3]), ("a.bias", &[2])]);
        file.insert(
            "bn.num_batches_tracked",
            HostTensor::new(vec![], HostData::I64(vec![3])).unwrap(),
        )
        .unwrap();
        let report = StateDictReport::compare(&model, &file);
        assert!(report.is_ok(), "{report}");
        assert!(report.into_result("x.pth").is_ok());
    }

    #[test]
    fn reports_each_kind_of_difference_by_name() {
        let model = expected(&[
            ("conv.weight", &[16, 1, 3, 3, 3]),
            ("gn.weight", &[16]),
            ("out.bias", &[1]),
        ]);
        let file = found(&[
            ("conv.weight", &[8, 1, 3, 3, 3]),
            ("out.bias", &[1]),
            ("extra.weight", &[4]),
        ]);
        let report = StateDictReport::compare(&model, &file);
        assert_eq!(report.missing, vec!["gn.weight"]);
        assert_eq!(report.unexpected, vec!["extra.weight"]);
        assert_eq!(
            report.mismatched,
            vec![ShapeMismatch {
                name: "conv.weight".into(),
                expected: vec![16, 1, 3, 3, 3],
                found: vec![8, 1, 3, 3, 3]
            }]
        );
        let err = report
            .into_result("seed/liver3d.pth")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("seed/liver3d.pth: key 'conv.weight' has shape [8, 1, 3, 3, 3], the model expects [16, 1, 3, 3, 3]"),
            "{err}"
        );
        assert!(
            err.contains("missing: gn.weight") && err.contains("unexpected: extra.weight"),
            "{err}"
        );
    }

    #[test]
    fn first_offending_key_follows_the_model_order() {
        let model = expected(&[("a", &[1]), ("b", &[2])]);
        let err = StateDictReport::compare(&model, &found(&[("b", &[3])]))
            .into_result("f")
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("checkpoint: f: key 'a' (shape [1]) is missing"),
            "{err}"
        );
    }

    #[test]
    fn missing_key_named_when_shapes_agree() {
        let model = expected(&[("a", &[1]), ("b", &[2])]);
        let err = StateDictReport::compare(&model, &found(&[("a", &[1])]))
            .into_result("f")
            .unwrap_err();
        assert!(
            err.to_string().contains("key 'b' (shape [2]) is missing"),
            "{err}"
        );
        let err =
            StateDictReport::compare(&model, &found(&[("a", &[1]), ("b", &[2]), ("c", &[1])]))
                .into_result("f")
                .unwrap_err();
        assert!(
            err.to_string()
                .contains("key 'c' is not a parameter of the model"),
            "{err}"
        );
    }
}
