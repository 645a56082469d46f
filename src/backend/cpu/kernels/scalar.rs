//! The floating-point element types the CPU kernels are generic over: f32 for speed, f64 for
//! gradient checks.

/// A float type the CPU kernels compute in.
pub trait Float:
    num_traits::Float
    + num_traits::FromPrimitive
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::ops::DivAssign
    + Default
    + Send
    + Sync
    + std::fmt::Debug
    + std::fmt::Display
    + 'static
{
    /// Converts from f64, rounding to nearest.
    fn from_f64_lossy(v: f64) -> Self;
    fn to_f64_lossless(self) -> f64;
    /// e^x written so loops over it vectorise (f32: a few ulp; f64: the exact library call).
    fn exp_fast(self) -> Self;
}

/// e^x for f32 in straight-line arithmetic the compiler can vectorise: split x = n ln2 + r with
/// |r| <= ln2 / 2, a degree-6 polynomial for e^r, and 2^n built in the exponent bits.
/// Relative error below 2e-7 over the whole range; saturates to 0 and f32::MAX beyond it.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // Adding and removing 1.5 * 2^23 rounds to the nearest integer without a library call
    // (roundf is not inlined on baseline x86-64, and a call per element stops vectorisation).
    const ROUNDER: f32 = 12_582_912.0;
    let x = x.clamp(-87.33654, 88.72283);
    let shifted = x * std::f32::consts::LOG2_E + ROUNDER;
    let n = shifted - ROUNDER;
    // ln2 split in a high part exact in f32 and a low correction, so r keeps its precision.
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (0.166_666_67
                    + r * (0.041_666_668 + r * (0.008_333_334 + r * 0.001_388_889)))));
    // n is in [-126, 128]; 2^128 overflows the exponent field, so scale in two halves. The
    // integer n sits in the low mantissa bits of `shifted` (1.5 * 2^23 + n has an ulp of 1): a
    // bit cast, where `n as i32` (a saturating conversion) kept loops from vectorising.
    let ni = shifted.to_bits() as i32 - ROUNDER.to_bits() as i32;
    let half = ni >> 1;
    let scale_a = f32::from_bits(((half + 127) as u32) << 23);
    let scale_b = f32::from_bits(((ni - half + 127) as u32) << 23);
    p * scale_a * scale_b
}

impl Float for f32 {
    #[inline(always)]
    fn from_f64_lossy(v: f64) -> Self {
        v as f32
    }
    #[inline(always)]
    fn to_f64_lossless(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        exp_f32(self)
    }
}

impl Float for f64 {
    #[inline(always)]
    fn from_f64_lossy(v: f64) -> Self {
        v
    }
    #[inline(always)]
    fn to_f64_lossless(self) -> f64 {
        self
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        self.exp()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_is_accurate_over_the_whole_f32_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let exact = (x as f64).exp();
            worst = worst.max(((exp_f32(x) as f64) - exact).abs() / exact);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "worst relative error {worst}");
        assert_eq!(exp_f32(-200.0), exp_f32(-87.33654));
        assert!(exp_f32(200.0).is_finite() && exp_f32(0.0) == 1.0);
    }
}
