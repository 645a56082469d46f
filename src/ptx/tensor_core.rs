//! Value semantics of the tensor-core instructions (`mma.sync`, `ldmatrix`, `cvt.rna.tf32.f32`):
//! pure functions over a whole warp's registers, so the fragment layouts of the PTX ISA are in one
//! place and `exec` only gathers registers and shared memory.
//!
//! Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k8 / m16n8k16"): with
//! `g = laneid >> 2` and `t = laneid % 4`, a lane holds
//! - tf32 A (16x8): `a[i]` at row `g + 8 * (i & 1)`, column `t + 4 * (i >> 1)`;
//! - tf32 B (8x8): `b[i]` at row `t + 4 * i`, column `g`;
//! - f16/bf16 A (16x16): register `r` packs columns `2t + 8 * (r >> 1)` and the next one (low half
//!   first) of row `g + 8 * (r & 1)`;
//! - f16/bf16 B (16x8): register `r` packs rows `2t + 8 * r` and the next one of column `g`;
//! - C and D (16x8 f32): `c[i]` at row `g + 8 * (i >> 1)`, column `2t + (i & 1)`.
//!
//! Arithmetic: TF32 operands are the top 19 bits of each 32-bit register (sign, 8 exponent, 10
//! mantissa bits); the hardware ignores the low 13 bits, which is modelled as truncation. Kernels
//! that want correct rounding apply `cvt.rna.tf32.f32` first. Products of tf32, f16 and bf16
//! values are exact in f64; each D element is C plus the k products summed in f64 and rounded once
//! to f32. Real tensor cores add in an unspecified order and width, so tests compare against an
//! error bound, never against bits.

use super::program::MmaKind;

pub const WARP: usize = 32;
const M: usize = 16;
const N: usize = 8;
const MAX_K: usize = 16;
const TF32_DROPPED_BITS: u32 = 0x1fff;

/// The value a tensor core reads from a 32-bit register holding a TF32 operand.
pub fn tf32_operand(bits: u32) -> f64 {
    let x = f32::from_bits(bits);
    if x.is_nan() {
        return f64::NAN;
    }
    f64::from(f32::from_bits(bits & !TF32_DROPPED_BITS))
}

/// `cvt.rna.tf32.f32`: round to nearest with ties away from zero to 10 mantissa bits; the low 13
/// bits of the result are zero. Infinities pass through; a NaN stays a (quiet) NaN.
pub fn round_to_tf32(bits: u32) -> u32 {
    let x = f32::from_bits(bits);
    if x.is_nan() {
        return (bits & !TF32_DROPPED_BITS) | 0x0040_0000;
    }
    if x.is_infinite() {
        return bits;
    }
    // Adding half a TF32 ulp to the magnitude and truncating rounds ties away from zero; a carry
    // out of the mantissa steps the exponent (up to infinity), as rounding should.
    bits.wrapping_add(0x1000) & !TF32_DROPPED_BITS
}

fn half_operand(kind: MmaKind, bits: u32) -> f64 {
    let h = bits as u16;
    match kind {
        MmaKind::Bf16M16n8k16 => f64::from(half::bf16::from_bits(h).to_f32()),
        _ => f64::from(half::f16::from_bits(h).to_f32()),
    }
}

/// A warp's A, B and C fragments as the matrices they describe.
struct Operands {
    a: [[f64; MAX_K]; M],
    b: [[f64; N]; MAX_K],
    c: [[f64; N]; M],
}

fn gather_operands(
    kind: MmaKind,
    a: &[[u32; 4]; WARP],
    b: &[[u32; 2]; WARP],
    c: &[[u32; 4]; WARP],
) -> Operands {
    let mut ops = Operands {
        a: [[0.0; MAX_K]; M],
        b: [[0.0; N]; MAX_K],
        c: [[0.0; N]; M],
    };
    for lane in 0..WARP {
        let (g, t) = (lane >> 2, lane & 3);
        match kind {
            MmaKind::Tf32M16n8k8 => {
                for (i, &bits) in a[lane].iter().enumerate() {
                    ops.a[g + 8 * (i & 1)][t + 4 * (i >> 1)] = tf32_operand(bits);
                }
                for (i, &bits) in b[lane].iter().enumerate() {
                    ops.b[t + 4 * i][g] = tf32_operand(bits);
                }
            }
            MmaKind::F16M16n8k16 | MmaKind::Bf16M16n8k16 => {
                for (r, &bits) in a[lane].iter().enumerate() {
                    for h in 0..2 {
                        let value = half_operand(kind, bits >> (16 * h));
                        ops.a[g + 8 * (r & 1)][2 * t + h + 8 * (r >> 1)] = value;
                    }
                }
                for (r, &bits) in b[lane].iter().enumerate() {
                    for h in 0..2 {
                        ops.b[2 * t + h + 8 * r][g] = half_operand(kind, bits >> (16 * h));
                    }
                }
            }
        }
        for (i, &bits) in c[lane].iter().enumerate() {
            ops.c[g + 8 * (i >> 1)][2 * t + (i & 1)] = f64::from(f32::from_bits(bits));
        }
    }
    ops
}

/// `mma.sync` for a full warp: the registers every lane receives in D.
pub fn mma(
    kind: MmaKind,
    a: &[[u32; 4]; WARP],
    b: &[[u32; 2]; WARP],
    c: &[[u32; 4]; WARP],
) -> [[u32; 4]; WARP] {
    let ops = gather_operands(kind, a, b, c);
    let mut d = [[0.0f32; N]; M];
    for (row, d_row) in d.iter_mut().enumerate() {
        for (col, out) in d_row.iter_mut().enumerate() {
            let products: f64 = (0..kind.k()).map(|k| ops.a[row][k] * ops.b[k][col]).sum();
            *out = (ops.c[row][col] + products) as f32;
        }
    }
    let mut regs = [[0u32; 4]; WARP];
    for (lane, lane_regs) in regs.iter_mut().enumerate() {
        let (g, t) = (lane >> 2, lane & 3);
        for (i, reg) in lane_regs.iter_mut().enumerate() {
            *reg = d[g + 8 * (i >> 1)][2 * t + (i & 1)].to_bits();
        }
    }
    regs
}

/// One 8x8 tile of 16-bit elements as `ldmatrix` read it: `rows[r][c]`.
pub type Tile = [[u16; 8]; 8];

/// `ldmatrix`: the register each lane receives from one tile. Lane `l` gets row `l / 4`, columns
/// `2 * (l % 4)` and the next one (low half first); with `.trans`, the same of the transposed tile.
pub fn ldmatrix_register(tile: &Tile, lane: usize, trans: bool) -> u32 {
    let (g, t) = (lane >> 2, lane & 3);
    let (lo, hi) = if trans {
        (tile[2 * t][g], tile[2 * t + 1][g])
    } else {
        (tile[g][2 * t], tile[g][2 * t + 1])
    };
    u32::from(lo) | u32::from(hi) << 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf32_rounding_ties_away_and_keeps_specials() {
        let one = 1.0f32.to_bits();
        assert_eq!(round_to_tf32(one | 0x0fff), one, "below half an ulp");
        assert_eq!(
            round_to_tf32(one | 0x1000),
            one + 0x2000,
            "tie away from zero"
        );
        let minus = (-1.0f32).to_bits();
        assert_eq!(
            round_to_tf32(minus | 0x1000),
            minus + 0x2000,
            "negative tie"
        );
        assert_eq!(round_to_tf32(f32::MAX.to_bits()), f32::INFINITY.to_bits());
        assert_eq!(
            round_to_tf32(f32::INFINITY.to_bits()),
            f32::INFINITY.to_bits()
        );
        assert!(f32::from_bits(round_to_tf32(0x7f80_0001)).is_nan());
        assert_eq!(tf32_operand(one | 0x1fff), 1.0);
        assert!(tf32_operand(0x7f80_0001).is_nan());
    }

    #[test]
    fn identity_times_b_gives_b_in_the_c_layout() {
        // A = [I8; 0] (16x8), B[k][n] = k * 8 + n: D's rows 0..8 are B, rows 8..16 are zero.
        let mut a = [[0u32; 4]; WARP];
        let mut b = [[0u32; 2]; WARP];
        for (lane, (a_regs, b_regs)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
            let (g, t) = (lane >> 2, lane & 3);
            for (i, reg) in a_regs.iter_mut().enumerate() {
                let (row, col) = (g + 8 * (i & 1), t + 4 * (i >> 1));
                *reg = if row == col { 1.0f32.to_bits() } else { 0 };
            }
            for (i, reg) in b_regs.iter_mut().enumerate() {
                *reg = (((t + 4 * i) * 8 + g) as f32).to_bits();
            }
        }
        let d = mma(MmaKind::Tf32M16n8k8, &a, &b, &[[0; 4]; WARP]);
        for (lane, regs) in d.iter().enumerate() {
            let (g, t) = (lane >> 2, lane & 3);
            for (i, &bits) in regs.iter().enumerate() {
                let (row, col) = (g + 8 * (i >> 1), 2 * t + (i & 1));
                let expect = if row < 8 { (row * 8 + col) as f32 } else { 0.0 };
                assert_eq!(f32::from_bits(bits), expect, "lane {lane} d{i}");
            }
        }
    }
}
