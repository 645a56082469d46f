//! The precision of f32 matrix products on GPUs: `--precision fp32|tf32`, one setting per process.
//!
//! `Tf32` runs the CUDA backend's f32 matmul on tensor cores (sm_80+): inputs rounded to TF32
//! (10 mantissa bits), products accumulated in f32, as PyTorch allows by default for
//! convolutions. Results then differ from the fp32 kernels within TF32's error bound, about
//! `2^-10` of the summed magnitudes. f64 products and the CPU backend ignore the setting.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::{HeparError, Result};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Precision {
    /// f32 inputs and f32 arithmetic throughout (the CPU's results up to summation order).
    #[default]
    Fp32,
    /// TF32 tensor-core inputs with f32 accumulation.
    Tf32,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Precision {
    type Err = HeparError;

    fn from_str(s: &str) -> Result<Precision> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" => Ok(Precision::Fp32),
            "tf32" => Ok(Precision::Tf32),
            other => Err(HeparError::invalid(
                "precision",
                format!("`{other}`: expected fp32 or tf32"),
            )),
        }
    }
}

static MATMUL_PRECISION: AtomicU8 = AtomicU8::new(0);

/// The precision f32 matrix products on GPUs use now.
pub fn matmul_precision() -> Precision {
    match MATMUL_PRECISION.load(Ordering::Relaxed) {
        0 => Precision::Fp32,
        _ => Precision::Tf32,
    }
}

/// Sets the precision of every later f32 matrix product on GPUs in this process.
pub fn set_matmul_precision(precision: Precision) {
    let code = match precision {
        Precision::Fp32 => 0,
        Precision::Tf32 => 1,
    };
    MATMUL_PRECISION.store(code, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for p in [Precision::Fp32, Precision::Tf32] {
            assert_eq!(p.name().parse::<Precision>().unwrap(), p);
        }
        assert!("bf16".parse::<Precision>().is_err());
        assert_eq!(Precision::default(), Precision::Fp32);
    }
}
