//! Intensity and geometry transforms of the patch-based 3D recipes, applied to an image and its
//! label alike where the geometry changes.
//!
//! `ct_window_min_max` is FracNet's input normalisation: HU clipped to a window, then mapped
//! linearly from the window onto [0, 1].

use crate::error::{HeparError, Result};

/// Clips `data` to `[low, high]` and maps that range linearly onto [0, 1].
pub fn ct_window_min_max(data: &mut [f32], low: f32, high: f32) -> Result<()> {
    if !(low.is_finite() && high.is_finite() && high > low) {
        return Err(HeparError::invalid(
            "ct_window_min_max",
            format!("window [{low}, {high}] must be finite with low < high"),
        ));
    }
    let span = high - low;
    for v in data.iter_mut() {
        *v = (v.clamp(low, high) - low) / span;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ct_window_clips_and_maps_to_the_unit_range() {
        let mut v = [-1000.0, -200.0, 400.0, 1000.0, 3000.0];
        ct_window_min_max(&mut v, -200.0, 1000.0).unwrap();
        assert_eq!(v, [0.0, 0.0, 0.5, 1.0, 1.0]);
        assert!(ct_window_min_max(&mut v, 5.0, 5.0).is_err());
    }
}
