//! Inference back to the scan: network outputs mapped onto the source volume's grid, so a mask or
//! probability map can be written with the source geometry (`Volume::write_data`).

use super::preprocess::Stage2Case;
use super::resize::{resize_yx, resize_zyx, Interpolation};
use super::volume::Volume;
use crate::error::{HeparError, Result};

/// A stage-1 output of shape `prediction_zyx` resampled onto `source`'s grid (linear for
/// probabilities, nearest for masks).
pub fn stage1_to_source(
    prediction: &[f32],
    prediction_zyx: [usize; 3],
    source: &Volume,
    interp: Interpolation,
) -> Result<Volume> {
    let data = resize_zyx(prediction, prediction_zyx, source.shape_zyx, interp)?;
    source.with_data(data)
}

/// Stage-2 outputs (one (y, x) map of `case.shape_yx` per stack, for its middle slice) pasted into
/// the crop box on `source`'s grid. Crop slices between stack centres take the nearest centre's
/// map; everything outside the crop is 0.
pub fn stage2_to_source(
    case: &Stage2Case,
    predictions: &[Vec<f32>],
    source: &Volume,
    interp: Interpolation,
) -> Result<Volume> {
    if predictions.len() != case.stacks.len() {
        return Err(HeparError::shape(
            "stage2_to_source",
            format!(
                "{} predictions for {} stacks",
                predictions.len(),
                case.stacks.len()
            ),
        ));
    }
    if source.shape_zyx != case.source_shape_zyx {
        return Err(HeparError::shape(
            "stage2_to_source",
            format!(
                "source shape {:?}, the stacks were cut from {:?}",
                source.shape_zyx, case.source_shape_zyx
            ),
        ));
    }
    let [_, h, w] = source.shape_zyx;
    let [z0, y0, x0] = case.crop.start_zyx;
    let [cd, ch, cw] = case.crop.shape_zyx;
    let mut slices = Vec::with_capacity(predictions.len());
    for (i, p) in predictions.iter().enumerate() {
        if p.len() != case.shape_yx[0] * case.shape_yx[1] {
            return Err(HeparError::shape(
                "stage2_to_source",
                format!(
                    "prediction {i} has {} values, expected {:?}",
                    p.len(),
                    case.shape_yx
                ),
            ));
        }
        slices.push(resize_yx(p, case.shape_yx, [ch, cw], interp)?);
    }
    let mut out = vec![0f32; source.len()];
    if slices.is_empty() {
        return source.with_data(out);
    }
    for z in z0..z0 + cd {
        let nearest = (0..case.stacks.len())
            .min_by_key(|&i| (case.stacks[i].centre_z as isize - z as isize).unsigned_abs())
            .unwrap_or(0);
        let slice = &slices[nearest];
        for y in 0..ch {
            let dst = (z * h + y0 + y) * w + x0;
            out[dst..dst + cw].copy_from_slice(&slice[y * cw..(y + 1) * cw]);
        }
    }
    source.with_data(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::config::Stage2Config;
    use crate::data::preprocess::stage2;

    #[test]
    fn stage2_labels_pasted_back_reproduce_the_liver_box() {
        let (d, h, w) = (6, 8, 8);
        let mut label = vec![0f32; d * h * w];
        for z in 1..5 {
            for y in 2..6 {
                for x in 3..7 {
                    label[(z * h + y) * w + x] = 1.0;
                }
            }
        }
        let source = Volume::new(vec![50.0; d * h * w], [d, h, w], [2.0, 1.0, 1.0]).unwrap();
        let label = source.with_data(label).unwrap();
        let cfg = Stage2Config {
            crop_margin_zyx: [0, 0, 0],
            slice_shape_yx: [4, 4],
            stack_stride: 1,
            ..Default::default()
        };
        let case = stage2(source.clone(), Some(&label), &label, &cfg).unwrap();
        let predictions: Vec<Vec<f32>> = case.stacks.iter().map(|s| s.label.clone()).collect();
        let restored =
            stage2_to_source(&case, &predictions, &source, Interpolation::Nearest).unwrap();
        assert_eq!(restored.data, label.data);
        assert!(
            stage2_to_source(&case, &predictions[1..], &source, Interpolation::Nearest).is_err()
        );
    }

    #[test]
    fn stage1_mask_back_to_source_shape() {
        let source = Volume::new(vec![0.0; 4 * 6 * 6], [4, 6, 6], [3.0, 1.0, 1.0]).unwrap();
        let mask = vec![1.0; 8];
        let v = stage1_to_source(&mask, [2, 2, 2], &source, Interpolation::Nearest).unwrap();
        assert_eq!(v.shape_zyx, [4, 6, 6]);
        assert!(v.data.iter().all(|&x| x == 1.0));
        assert_eq!(v.affine(), source.affine());
    }
}
