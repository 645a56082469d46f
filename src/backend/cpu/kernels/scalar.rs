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
}
