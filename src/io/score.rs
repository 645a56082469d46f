//! The fixtures' pass measure: `||a - r||_2 / (rtol * ||r||_2 + atol * sqrt(numel))` in f64; a
//! tensor passes when its score is at most 1.

use super::fixture::Tolerance;
use super::host_tensor::HostTensor;
use crate::error::{HeparError, Result};

/// The score of `actual` against `reference`. NaN or infinity in `actual` scores infinity so a
/// broken tensor always fails; an all-zero tolerance scores 0 for an exact match, else infinity.
pub fn score(actual: &[f64], reference: &[f64], tolerance: Tolerance) -> Result<f64> {
    if actual.len() != reference.len() {
        return Err(HeparError::shape(
            "score",
            format!(
                "{} values compared with {} reference values",
                actual.len(),
                reference.len()
            ),
        ));
    }
    let mut diff_sq = 0.0f64;
    let mut ref_sq = 0.0f64;
    for (&a, &r) in actual.iter().zip(reference) {
        diff_sq += (a - r) * (a - r);
        ref_sq += r * r;
    }
    let diff = diff_sq.sqrt();
    if !diff.is_finite() {
        return Ok(f64::INFINITY);
    }
    let bound = tolerance.rtol * ref_sq.sqrt() + tolerance.atol * (actual.len() as f64).sqrt();
    Ok(if diff == 0.0 {
        0.0
    } else if bound > 0.0 {
        diff / bound
    } else {
        f64::INFINITY
    })
}

/// [`score`] of two tensors, which must have the same shape; `name` labels the error.
pub fn score_tensors(
    name: &str,
    actual: &HostTensor,
    reference: &HostTensor,
    tolerance: Tolerance,
) -> Result<f64> {
    if actual.shape() != reference.shape() {
        return Err(HeparError::shape(
            "score",
            format!(
                "'{name}': computed shape {:?}, reference shape {:?}",
                actual.shape(),
                reference.shape()
            ),
        ));
    }
    score(&actual.to_f64_vec(), &reference.to_f64_vec(), tolerance)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: Tolerance = Tolerance {
        rtol: 1e-3,
        atol: 1e-6,
    };

    #[test]
    fn matches_the_formula() {
        let r = [3.0, 4.0, 0.0, 0.0];
        let a = [3.0, 4.0 + 6e-3, 0.0, 0.0];
        // ||a-r|| = 6e-3; bound = 1e-3 * 5 + 1e-6 * 2.
        let expected = 6e-3 / (5e-3 + 2e-6);
        assert!((score(&a, &r, TOL).unwrap() - expected).abs() < 1e-12);
        assert_eq!(score(&r, &r, TOL).unwrap(), 0.0);
    }

    #[test]
    fn non_finite_values_fail_and_lengths_must_match() {
        assert_eq!(
            score(&[f64::NAN, 1.0], &[1.0, 1.0], TOL).unwrap(),
            f64::INFINITY
        );
        assert_eq!(score(&[f64::INFINITY], &[1.0], TOL).unwrap(), f64::INFINITY);
        assert!(score(&[1.0], &[1.0, 2.0], TOL).is_err());
        let zero = Tolerance {
            rtol: 0.0,
            atol: 0.0,
        };
        assert_eq!(score(&[1.0], &[1.5], zero).unwrap(), f64::INFINITY);
    }

    #[test]
    fn tensor_shapes_must_match() {
        let a = HostTensor::from_f32(vec![2, 2], vec![0.0; 4]).unwrap();
        let r = HostTensor::from_f64(vec![4], vec![0.0; 4]).unwrap();
        let err = score_tensors("grad.x", &a, &r, TOL)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'grad.x'") && err.contains("[2, 2]") && err.contains("[4]"),
            "{err}"
        );
    }
}
