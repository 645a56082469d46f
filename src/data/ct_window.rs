//! A CT display window as 8-bit grey levels: Hounsfield units between `level - width / 2` and
//! `level + width / 2` mapped linearly onto 0..255, values outside clamped, then truncated to an
//! integer as numpy's `astype(np.uint8)` does after the Keras U-Net's `* 255`.

/// The window's grey level of each value (NaN becomes 0).
pub fn window_to_u8(hu: &[f32], level: f32, width: f32) -> Vec<u8> {
    let low = level - width / 2.0;
    hu.iter()
        .map(|&v| {
            let unit = ((v - low) / width).clamp(0.0, 1.0);
            // `as` maps NaN to 0
            (unit * 255.0) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_maps_its_ends_to_black_and_white() {
        // W500 L150: -100 HU is black, 400 HU white, 150 HU mid-grey
        let g = window_to_u8(
            &[-1000.0, -100.0, 150.0, 400.0, 3000.0, f32::NAN],
            150.0,
            500.0,
        );
        assert_eq!(g, vec![0, 0, 127, 255, 255, 0]);
    }
}
