//! One row per predicted tumour component (26-connected): the input of a FROC analysis. Each row
//! has the component's voxel count, its centroid in world millimetres (the NIfTI affine applied
//! to the mean voxel index), whether it touches a true tumour voxel, and the mean tumour
//! probability over its voxels when a probability map is given.

use super::class_masks;
use crate::data::Volume;
use crate::error::{HeparError, Result};
use crate::infer::postprocess::{label_components, Connectivity};
use std::fmt::Write as _;

/// The label map value the rows describe (tumour).
pub const TUMOR_LABEL: u32 = 2;

#[derive(Clone, Debug, PartialEq)]
pub struct ComponentRow {
    pub case: String,
    /// Component number within the case, in scan order (1-based).
    pub component: u32,
    pub voxels: usize,
    /// World coordinates (x, y, z) in mm.
    pub centroid_mm: [f64; 3],
    pub touches_truth: bool,
    pub mean_probability: Option<f64>,
}

/// The rows of one case. `pred` carries the geometry; `truth` and `probability` (if any) must
/// have its shape.
pub fn component_rows(
    case: &str,
    pred: &Volume,
    truth_labels: &[f32],
    probability: Option<&[f32]>,
) -> Result<Vec<ComponentRow>> {
    if truth_labels.len() != pred.data.len()
        || probability.is_some_and(|p| p.len() != pred.data.len())
    {
        return Err(HeparError::shape(
            "component_rows",
            format!(
                "case {case}: the truth or probability map has another size than the prediction"
            ),
        ));
    }
    let (_, pred_tumor) = class_masks(&pred.data);
    let (_, truth_tumor) = class_masks(truth_labels);
    let components = label_components(&pred_tumor, pred.shape_zyx, Connectivity::Full)?;
    let count = components.count();
    // Sums of x, y, z indices and probabilities per component.
    let mut index_sums = vec![[0f64; 3]; count];
    let mut probability_sums = vec![0f64; count];
    let mut touches = vec![false; count];
    let [_, height, width] = pred.shape_zyx;
    for (i, &label) in components.labels.iter().enumerate() {
        if label == 0 {
            continue;
        }
        let k = label as usize - 1;
        let (z, y, x) = (i / (height * width), (i / width) % height, i % width);
        index_sums[k][0] += x as f64;
        index_sums[k][1] += y as f64;
        index_sums[k][2] += z as f64;
        touches[k] |= truth_tumor[i];
        if let Some(p) = probability {
            probability_sums[k] += p[i] as f64;
        }
    }
    let affine = pred.affine();
    Ok((0..count)
        .map(|k| {
            let n = components.sizes[k] as f64;
            let ijk = index_sums[k].map(|s| s / n);
            let world = [0, 1, 2].map(|r| {
                affine[r][0] * ijk[0] + affine[r][1] * ijk[1] + affine[r][2] * ijk[2] + affine[r][3]
            });
            ComponentRow {
                case: case.to_string(),
                component: k as u32 + 1,
                voxels: components.sizes[k],
                centroid_mm: world,
                touches_truth: touches[k],
                mean_probability: probability.map(|_| probability_sums[k] / n),
            }
        })
        .collect())
}

/// The CSV text of `rows` with a header line; an empty field where no probability was given.
pub fn to_csv(rows: &[ComponentRow]) -> String {
    let mut out = String::from(
        "case,label,component,voxels,centroid_x_mm,centroid_y_mm,centroid_z_mm,touches_truth,mean_probability\n",
    );
    for r in rows {
        let probability = r
            .mean_probability
            .map(|p| format!("{p:.6}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{},{},{},{},{:.3},{:.3},{:.3},{},{}",
            csv_field(&r.case),
            TUMOR_LABEL,
            r.component,
            r.voxels,
            r.centroid_mm[0],
            r.centroid_mm[1],
            r.centroid_mm[2],
            r.touches_truth as u8,
            probability
        );
    }
    out
}

/// Quotes a field holding a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
