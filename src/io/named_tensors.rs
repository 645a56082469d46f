//! `NamedTensors`: tensors by name in insertion order (a state_dict keeps PyTorch's module
//! order, which makes reports and diffs read in the network's order).

use super::host_tensor::HostTensor;
use crate::error::{HeparError, Result};
use std::collections::HashMap;

#[derive(Debug, Clone, Default)]
pub struct NamedTensors {
    entries: Vec<(String, HostTensor)>,
    index: HashMap<String, usize>,
}

impl NamedTensors {
    pub fn new() -> NamedTensors {
        NamedTensors::default()
    }

    /// Adds a tensor; a name already present is an error (files never hold a key twice).
    pub fn insert(&mut self, name: impl Into<String>, tensor: HostTensor) -> Result<()> {
        let name = name.into();
        if self.index.contains_key(&name) {
            return Err(HeparError::invalid(
                "NamedTensors::insert",
                format!("duplicate tensor name '{name}'"),
            ));
        }
        self.index.insert(name.clone(), self.entries.len());
        self.entries.push((name, tensor));
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&HostTensor> {
        self.index.get(name).map(|&i| &self.entries[i].1)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &HostTensor)> {
        self.entries.iter().map(|(n, t)| (n.as_str(), t))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// The tensors whose names start with `prefix`, with the prefix removed, in order.
    pub fn with_prefix(&self, prefix: &str) -> NamedTensors {
        let mut out = NamedTensors::new();
        for (name, tensor) in self.iter() {
            if let Some(rest) = name.strip_prefix(prefix) {
                // Names are unique in `self`, so stripping one prefix keeps them unique.
                out.index.insert(rest.to_string(), out.entries.len());
                out.entries.push((rest.to_string(), tensor.clone()));
            }
        }
        out
    }

    /// The name -> shape list, e.g. to compare with a model's parameters.
    pub fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.entries
            .iter()
            .map(|(n, t)| (n.clone(), t.shape().to_vec()))
            .collect()
    }
}

/// Equal when the same names map to equal tensors, in any order: safetensors files store
/// tensors sorted by dtype and name, so order is not part of a file's content.
impl PartialEq for NamedTensors {
    fn eq(&self, other: &NamedTensors) -> bool {
        self.len() == other.len() && self.iter().all(|(name, t)| other.get(name) == Some(t))
    }
}

impl IntoIterator for NamedTensors {
    type Item = (String, HostTensor);
    type IntoIter = std::vec::IntoIter<(String, HostTensor)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_rejects_duplicates_and_strips_prefixes() {
        let t = |v: f32| HostTensor::from_f32(vec![1], vec![v]).unwrap();
        let mut named = NamedTensors::new();
        named.insert("init.b", t(1.0)).unwrap();
        named.insert("grad.b", t(2.0)).unwrap();
        named.insert("init.a", t(3.0)).unwrap();
        let err = named.insert("init.a", t(4.0)).unwrap_err();
        assert!(err.to_string().contains("'init.a'"), "{err}");
        let init = named.with_prefix("init.");
        assert_eq!(init.names().collect::<Vec<_>>(), vec!["b", "a"]);
        assert_eq!(init.get("a").unwrap().to_f32_vec(), vec![3.0]);
        assert!(init.get("init.a").is_none());
    }
}
