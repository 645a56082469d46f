//! The per-epoch record of a run. It lives in the run's checkpoint (see `run_checkpoint`), so it
//! can never get ahead of or behind the weights; `history.csv` in the run folder is derived from
//! the checkpoint, rewritten atomically after each checkpoint and again at the next start.

use crate::error::{HeparError, Result};
use crate::util::atomic_write::write_atomic;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const HEADER: &str = "epoch,train_loss,val_loss,val_dice,learning_rate,seconds";

/// One finished epoch (`epoch` counts from 1). `seconds` is the only field that is not the same
/// bits from run to run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: u64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_dice: f64,
    pub learning_rate: f64,
    pub seconds: f64,
}

impl EpochRecord {
    fn to_csv_line(&self) -> String {
        format!(
            "{},{},{},{},{},{}",
            self.epoch,
            self.train_loss,
            self.val_loss,
            self.val_dice,
            self.learning_rate,
            self.seconds
        )
    }

    fn parse(line: &str, path: &Path, line_number: usize) -> Result<Self> {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = |what: &str| {
            HeparError::format(path, format!("line {line_number}: {what} in {line:?}"))
        };
        if fields.len() != 6 {
            return Err(bad(&format!(
                "{} fields, expected 6 ({HEADER})",
                fields.len()
            )));
        }
        let number = |i: usize| {
            fields[i]
                .parse::<f64>()
                .map_err(|_| bad(&format!("field {} is not a number", i + 1)))
        };
        Ok(EpochRecord {
            epoch: fields[0]
                .parse()
                .map_err(|_| bad("the epoch is not a whole number"))?,
            train_loss: number(1)?,
            val_loss: number(2)?,
            val_dice: number(3)?,
            learning_rate: number(4)?,
            seconds: number(5)?,
        })
    }
}

/// Writes the header and every record to `path` atomically.
pub fn write_history(path: &Path, records: &[EpochRecord]) -> Result<()> {
    let mut text = String::from(HEADER);
    text.push('\n');
    for r in records {
        text.push_str(&r.to_csv_line());
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// Reads a history written by [`write_history`]; a missing file is an empty history.
pub fn read_history(path: &Path) -> Result<Vec<EpochRecord>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(HeparError::io(path, e)),
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    match lines.next() {
        None => return Ok(Vec::new()),
        Some((_, header)) if header.trim() == HEADER => {}
        Some((_, header)) => {
            return Err(HeparError::format(
                path,
                format!("header {header:?}, expected {HEADER:?}"),
            ))
        }
    }
    lines
        .map(|(i, l)| EpochRecord::parse(l, path, i + 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_malformed_lines() {
        let dir = std::env::temp_dir().join(format!("hepar-history-{}", std::process::id()));
        let path = dir.join("history.csv");
        let records = vec![
            EpochRecord {
                epoch: 1,
                train_loss: 0.75,
                val_loss: 0.7,
                val_dice: 0.25,
                learning_rate: 1e-3,
                seconds: 2.5,
            },
            EpochRecord {
                epoch: 2,
                train_loss: 0.5,
                val_loss: 0.45,
                val_dice: 0.5,
                learning_rate: 5e-4,
                seconds: 2.25,
            },
        ];
        write_history(&path, &records).unwrap();
        assert_eq!(read_history(&path).unwrap(), records);
        std::fs::write(&path, format!("{HEADER}\n1,0.5,x,0.1,0.001,1.0\n")).unwrap();
        let err = read_history(&path).unwrap_err().to_string();
        assert!(
            err.contains("history.csv") && err.contains("line 2"),
            "{err}"
        );
        assert!(read_history(&dir.join("none.csv")).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
