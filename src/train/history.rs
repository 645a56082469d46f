//! The per-epoch record of a run. It lives in the run's checkpoint (see `run_checkpoint`), so it
//! can never get ahead of or behind the weights; the files people read are derived from the
//! checkpoint's history, each rewritten atomically after each checkpoint and again at the next
//! start: `history.csv`, `history.json` (the seed's keys) and the summary table printed at the
//! end of a run.

use crate::error::{HeparError, Result};
use crate::util::atomic_write::write_atomic;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub const HEADER: &str =
    "epoch,train_loss,val_loss,val_dice,val_iou,val_precision,val_recall,learning_rate,seconds";

/// The header of CSVs written before IoU, precision and recall were tracked; they still read.
const HEADER_DICE_ONLY: &str = "epoch,train_loss,val_loss,val_dice,learning_rate,seconds";

/// One finished epoch (`epoch` counts from 1). `seconds` is the only field that is not the same
/// bits from run to run. The validation scores are those of `train::metrics`; IoU, precision
/// and recall are `None` in epochs trained before they were tracked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: u64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_dice: f64,
    #[serde(default)]
    pub val_iou: Option<f64>,
    #[serde(default)]
    pub val_precision: Option<f64>,
    #[serde(default)]
    pub val_recall: Option<f64>,
    /// The validation Dice of each foreground class (1, 2, ...) of a class-id target; empty for
    /// one-class targets and in epochs trained before it was tracked. In `history.json`, not in
    /// the CSV.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub val_dice_per_class: Vec<f64>,
    pub learning_rate: f64,
    pub seconds: f64,
}

fn optional_field(value: Option<f64>) -> String {
    value.map_or(String::new(), |v| v.to_string())
}

impl EpochRecord {
    fn to_csv_line(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{}",
            self.epoch,
            self.train_loss,
            self.val_loss,
            self.val_dice,
            optional_field(self.val_iou),
            optional_field(self.val_precision),
            optional_field(self.val_recall),
            self.learning_rate,
            self.seconds
        )
    }

    /// Parses a line of a CSV whose header is `header` (one of the two above).
    fn parse(line: &str, header: &str, path: &Path, line_number: usize) -> Result<Self> {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let bad = |what: &str| {
            HeparError::format(path, format!("line {line_number}: {what} in {line:?}"))
        };
        let expected = header.split(',').count();
        if fields.len() != expected {
            return Err(bad(&format!(
                "{} fields, expected {expected} ({header})",
                fields.len()
            )));
        }
        let number = |i: usize| {
            fields[i]
                .parse::<f64>()
                .map_err(|_| bad(&format!("field {} is not a number", i + 1)))
        };
        let optional = |i: usize| match fields[i] {
            "" => Ok(None),
            _ => number(i).map(Some),
        };
        let epoch = fields[0]
            .parse()
            .map_err(|_| bad("the epoch is not a whole number"))?;
        if header == HEADER_DICE_ONLY {
            return Ok(EpochRecord {
                epoch,
                train_loss: number(1)?,
                val_loss: number(2)?,
                val_dice: number(3)?,
                val_iou: None,
                val_precision: None,
                val_recall: None,
                val_dice_per_class: Vec::new(),
                learning_rate: number(4)?,
                seconds: number(5)?,
            });
        }
        Ok(EpochRecord {
            epoch,
            train_loss: number(1)?,
            val_loss: number(2)?,
            val_dice: number(3)?,
            val_iou: optional(4)?,
            val_precision: optional(5)?,
            val_recall: optional(6)?,
            val_dice_per_class: Vec::new(),
            learning_rate: number(7)?,
            seconds: number(8)?,
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

/// Reads a history written by [`write_history`] (or by a version that tracked only the Dice);
/// a missing file is an empty history.
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
    let header = match lines.next() {
        None => return Ok(Vec::new()),
        Some((_, header)) if header.trim() == HEADER => HEADER,
        Some((_, header)) if header.trim() == HEADER_DICE_ONLY => HEADER_DICE_ONLY,
        Some((_, header)) => {
            return Err(HeparError::format(
                path,
                format!("header {header:?}, expected {HEADER:?}"),
            ))
        }
    };
    lines
        .map(|(i, l)| EpochRecord::parse(l, header, path, i + 1))
        .collect()
}

/// The history in the seed's JSON layout: a list per quantity, one value per epoch (`loss` the
/// training loss, `dice_<class>` and the other scores on the validation split, `null` where an
/// epoch predates the score), `best_epoch` (from 1) and `time_train` (seconds, all epochs).
/// `class` is the run's target: `liver`, `tumor`, or `classes` for class-id targets, whose
/// scores are the means over the foreground classes. `val_loss` and `learning_rate` are added
/// beside the seed's keys.
pub fn history_json(records: &[EpochRecord], class: &str, best_epoch: u64) -> serde_json::Value {
    let column = |value: &dyn Fn(&EpochRecord) -> Option<f64>| -> serde_json::Value {
        records.iter().map(value).collect::<Vec<_>>().into()
    };
    let time_train: f64 = records.iter().map(|r| r.seconds).sum();
    let mut json = serde_json::Map::new();
    json.insert("loss".into(), column(&|r| Some(r.train_loss)));
    json.insert(format!("dice_{class}"), column(&|r| Some(r.val_dice)));
    json.insert(format!("iou_{class}"), column(&|r| r.val_iou));
    json.insert(format!("precision_{class}"), column(&|r| r.val_precision));
    json.insert(format!("recall_{class}"), column(&|r| r.val_recall));
    // Class targets: the Dice of each foreground class too (`dice_class_1`, `dice_class_2`).
    let classes = records.iter().map(|r| r.val_dice_per_class.len()).max();
    for k in 0..classes.filter(|&n| n > 1).unwrap_or(0) {
        json.insert(
            format!("dice_class_{}", k + 1),
            column(&|r| r.val_dice_per_class.get(k).copied()),
        );
    }
    json.insert("val_loss".into(), column(&|r| Some(r.val_loss)));
    json.insert("learning_rate".into(), column(&|r| Some(r.learning_rate)));
    json.insert("best_epoch".into(), best_epoch.into());
    // Milliseconds, as the records keep them.
    json.insert(
        "time_train".into(),
        ((time_train * 1000.0).round() / 1000.0).into(),
    );
    serde_json::Value::Object(json)
}

/// Writes [`history_json`] to `path` atomically.
pub fn write_history_json(
    path: &Path,
    records: &[EpochRecord],
    class: &str,
    best_epoch: u64,
) -> Result<()> {
    let mut text = serde_json::to_string_pretty(&history_json(records, class, best_epoch))
        .map_err(|e| HeparError::format(path, e.to_string()))?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// The run's epochs as a table for the terminal, the best epoch marked.
pub fn summary_table(records: &[EpochRecord], best_epoch: u64) -> String {
    let score = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
    let mut table = format!(
        "{:>5}  {:>10}  {:>8}  {:>6}  {:>6}  {:>9}  {:>6}  {:>8}  {:>7}\n",
        "epoch", "train loss", "val loss", "Dice", "IoU", "precision", "recall", "lr", "seconds"
    );
    for r in records {
        table.push_str(&format!(
            "{:>5}  {:>10.4}  {:>8.4}  {:>6.3}  {:>6}  {:>9}  {:>6}  {:>8.2e}  {:>7.1}{}\n",
            r.epoch,
            r.train_loss,
            r.val_loss,
            r.val_dice,
            score(r.val_iou),
            score(r.val_precision),
            score(r.val_recall),
            r.learning_rate,
            r.seconds,
            if r.epoch == best_epoch {
                "  <- best"
            } else {
                ""
            }
        ));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<EpochRecord> {
        vec![
            EpochRecord {
                epoch: 1,
                train_loss: 0.75,
                val_loss: 0.7,
                val_dice: 0.25,
                val_iou: Some(1.0 / 7.0),
                val_precision: Some(0.3),
                val_recall: Some(0.2),
                val_dice_per_class: Vec::new(),
                learning_rate: 1e-3,
                seconds: 2.5,
            },
            EpochRecord {
                epoch: 2,
                train_loss: 0.5,
                val_loss: 0.45,
                val_dice: 0.5,
                val_iou: None,
                val_precision: Some(0.6),
                val_recall: Some(0.4),
                val_dice_per_class: Vec::new(),
                learning_rate: 5e-4,
                seconds: 2.25,
            },
        ]
    }

    #[test]
    fn round_trip_and_malformed_lines() {
        let dir = std::env::temp_dir().join(format!("hepar-history-{}", std::process::id()));
        let path = dir.join("history.csv");
        let records = records();
        write_history(&path, &records).unwrap();
        assert_eq!(read_history(&path).unwrap(), records);
        std::fs::write(&path, format!("{HEADER}\n1,0.5,x,0.1,,,,0.001,1.0\n")).unwrap();
        let err = read_history(&path).unwrap_err().to_string();
        assert!(
            err.contains("history.csv") && err.contains("line 2"),
            "{err}"
        );
        // A CSV from before IoU, precision and recall were tracked.
        std::fs::write(
            &path,
            format!("{HEADER_DICE_ONLY}\n1,0.5,0.4,0.1,0.001,1.0\n"),
        )
        .unwrap();
        let old = read_history(&path).unwrap();
        assert_eq!(
            (old[0].val_dice, old[0].val_iou, old[0].seconds),
            (0.1, None, 1.0)
        );
        assert!(read_history(&dir.join("none.csv")).unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn records_of_older_checkpoints_read_without_the_new_scores() {
        let old: EpochRecord = serde_json::from_str(
            r#"{"epoch": 3, "train_loss": 0.5, "val_loss": 0.4, "val_dice": 0.8,
                "learning_rate": 0.001, "seconds": 1.5}"#,
        )
        .unwrap();
        assert_eq!(
            (old.val_dice, old.val_iou, old.val_recall),
            (0.8, None, None)
        );
        let table = summary_table(&[old], 3);
        assert!(
            table.contains("0.800") && table.contains("<- best"),
            "{table}"
        );
    }

    #[test]
    fn json_has_the_seed_keys_with_one_value_per_epoch() {
        let json = history_json(&records(), "tumor", 2);
        let list = |key: &str| {
            json[key]
                .as_array()
                .unwrap_or_else(|| panic!("{key}"))
                .clone()
        };
        assert_eq!(
            list("loss"),
            vec![0.75.into(), 0.5.into()] as Vec<serde_json::Value>
        );
        assert_eq!(list("dice_tumor")[1], 0.5);
        assert_eq!(list("iou_tumor")[0], 1.0 / 7.0);
        assert!(list("iou_tumor")[1].is_null());
        assert_eq!(list("precision_tumor")[0], 0.3);
        assert_eq!(list("recall_tumor")[1], 0.4);
        assert_eq!(json["best_epoch"], 2);
        assert_eq!(json["time_train"], 4.75);
        assert!(json.get("dice_liver").is_none());
    }

    #[test]
    fn summary_table_has_a_row_per_epoch_and_marks_the_best() {
        let table = summary_table(&records(), 2);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].contains("precision") && lines[0].contains("IoU"));
        assert!(lines[1].contains("0.143") && !lines[1].contains("best"));
        assert!(lines[2].ends_with("<- best") && lines[2].contains(" - "));
    }
}
