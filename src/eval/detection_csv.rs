//! The RibFrac challenge's detection table: one CSV per folder with the columns
//! `public_id,label_id,confidence,label_code`, one row per component of a case's label map
//! (`label_id` 1..n), and by convention a row `label_id 0` for the background. Truth and
//! predictions use the same columns; FROC reads only `public_id`, `label_id` and `confidence`.

use crate::error::{HeparError, Result};
use std::fmt::Write as _;
use std::path::Path;

/// The header line, in the challenge's column order.
pub const HEADER: &str = "public_id,label_id,confidence,label_code";

/// The `label_code` of a background row, and the placeholder type of a detection (the
/// challenge's codes: 0 background, 1-4 fracture types, -1 ignore; detection ignores them).
pub const BACKGROUND_CODE: i32 = 0;
pub const PLACEHOLDER_TYPE_CODE: i32 = 1;

#[derive(Clone, Debug, PartialEq)]
pub struct DetectionRow {
    pub public_id: String,
    /// The component's value in the label map; kept as read (pandas compares `1.0` equal to 1).
    pub label_id: f64,
    /// NaN for an empty cell (such a row never passes a threshold).
    pub confidence: f64,
    pub label_code: String,
}

/// Whether a table must have the `confidence` column (predictions) or may lack it (truth).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfidenceColumn {
    Required,
    Optional,
}

/// Parses the table; the columns may come in any order, other columns are ignored.
pub fn parse_detection_csv(
    text: &str,
    path: &Path,
    confidence: ConfidenceColumn,
) -> Result<Vec<DetectionRow>> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, header) = lines
        .next()
        .ok_or_else(|| HeparError::format(path, format!("empty CSV; expected {HEADER}")))?;
    let names: Vec<&str> = split_row(header);
    let column = |name: &str| {
        names.iter().position(|n| *n == name).ok_or_else(|| {
            HeparError::format(
                path,
                format!("no column {name:?} in the header {header:?} (expected {HEADER})"),
            )
        })
    };
    let (id_col, label_col) = (column("public_id")?, column("label_id")?);
    // The challenge's truth tables have no confidence column; predictions need one.
    let conf_col = match confidence {
        ConfidenceColumn::Required => Some(column("confidence")?),
        ConfidenceColumn::Optional => names.iter().position(|n| *n == "confidence"),
    };
    let code_col = names.iter().position(|n| *n == "label_code");
    let mut rows = Vec::new();
    for (number, line) in lines {
        let cells = split_row(line);
        let bad =
            |what: &str| HeparError::format(path, format!("line {}: {what}: {line:?}", number + 1));
        if cells.len() != names.len() {
            return Err(bad(&format!(
                "{} cells for {} columns",
                cells.len(),
                names.len()
            )));
        }
        let label_id: f64 = cells[label_col]
            .parse()
            .map_err(|_| bad("label_id is not a number"))?;
        let confidence = match conf_col.map(|c| cells[c]) {
            None | Some("" | "nan" | "NaN") => f64::NAN,
            Some(text) => text
                .parse()
                .map_err(|_| bad("confidence is not a number"))?,
        };
        rows.push(DetectionRow {
            public_id: cells[id_col].to_string(),
            label_id,
            confidence,
            label_code: code_col.map(|c| cells[c].to_string()).unwrap_or_default(),
        });
    }
    Ok(rows)
}

fn split_row(line: &str) -> Vec<&str> {
    line.split(',')
        .map(|c| c.trim().trim_matches('"'))
        .collect()
}

/// Reads a detection CSV file.
pub fn read_detection_csv(path: &Path, confidence: ConfidenceColumn) -> Result<Vec<DetectionRow>> {
    let text = std::fs::read_to_string(path).map_err(|e| HeparError::io(path, e))?;
    parse_detection_csv(&text, path, confidence)
}

/// The rows of one case: the background row (confidence 0, code 0), then one per component with
/// its confidence and code 1 (a placeholder fracture type, as FracNet writes it).
pub fn case_rows(public_id: &str, confidences: &[f64]) -> Vec<DetectionRow> {
    let mut rows = vec![DetectionRow {
        public_id: public_id.to_string(),
        label_id: 0.0,
        confidence: 0.0,
        label_code: BACKGROUND_CODE.to_string(),
    }];
    rows.extend(
        confidences
            .iter()
            .enumerate()
            .map(|(k, &confidence)| DetectionRow {
                public_id: public_id.to_string(),
                label_id: (k + 1) as f64,
                confidence,
                label_code: PLACEHOLDER_TYPE_CODE.to_string(),
            }),
    );
    rows
}

/// The CSV text of `rows` with its header (label ids as integers, confidences with 6 decimals).
pub fn to_detection_csv(rows: &[DetectionRow]) -> String {
    let mut out = format!("{HEADER}\n");
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{:.6},{}",
            r.public_id, r.label_id as i64, r.confidence, r.label_code
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_with_the_background_row_first() {
        let rows = case_rows("RibFrac7", &[0.75, 0.5]);
        let text = to_detection_csv(&rows);
        assert_eq!(
            text,
            "public_id,label_id,confidence,label_code\nRibFrac7,0,0.000000,0\n\
             RibFrac7,1,0.750000,1\nRibFrac7,2,0.500000,1\n"
        );
        let back =
            parse_detection_csv(&text, Path::new("x.csv"), ConfidenceColumn::Required).unwrap();
        assert_eq!(back, rows);
    }

    #[test]
    fn columns_in_any_order_and_empty_confidences_read() {
        let text = "label_id,public_id,label_code,confidence\n1,a,1,\n2.0,a,1,0.25\n";
        let rows =
            parse_detection_csv(text, Path::new("x.csv"), ConfidenceColumn::Required).unwrap();
        assert!(rows[0].confidence.is_nan());
        assert_eq!((rows[1].label_id, rows[1].confidence), (2.0, 0.25));
    }

    #[test]
    fn bad_tables_name_the_line_or_column() {
        let err = |text: &str| {
            parse_detection_csv(text, Path::new("t.csv"), ConfidenceColumn::Required)
                .unwrap_err()
                .to_string()
        };
        assert!(err("public_id,label_id\n").contains("\"confidence\""));
        assert!(err(&format!("{HEADER}\na,1,high,0\n")).contains("line 2: confidence"));
        assert!(err(&format!("{HEADER}\na,1\n")).contains("2 cells for 4 columns"));
        assert!(err("").contains("empty CSV"));
        // A truth table without confidences reads with the optional column.
        let truth = parse_detection_csv(
            "public_id,label_id,label_code\na,0,0\n",
            Path::new("t.csv"),
            ConfidenceColumn::Optional,
        )
        .unwrap();
        assert!(truth[0].confidence.is_nan());
    }
}
