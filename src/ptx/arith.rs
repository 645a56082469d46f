//! Value semantics of PTX's typed ALU instructions on raw register bits: integer widths and
//! signedness, IEEE floats with rounding modes and flush-to-zero, f16/bf16, and conversions.

use half::{bf16, f16};

use super::program::{AtomOp, Cmp, Rnd, TestKind, Ty};

#[inline]
pub fn mask(bits: u32) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// The value as an unsigned integer of the type's width.
#[inline]
pub fn as_u(ty: Ty, v: u64) -> u64 {
    v & mask(ty.bits())
}

/// The value sign-extended from the type's width.
#[inline]
pub fn as_s(ty: Ty, v: u64) -> i64 {
    let bits = ty.bits();
    if bits >= 64 {
        v as i64
    } else {
        let shift = 64 - bits;
        ((v << shift) as i64) >> shift
    }
}

#[inline]
fn f32_of(v: u64) -> f32 {
    f32::from_bits(v as u32)
}

#[inline]
fn bits32(x: f32) -> u64 {
    u64::from(x.to_bits())
}

#[inline]
fn flush32(x: f32, ftz: bool) -> f32 {
    if ftz && x.is_subnormal() {
        0.0f32.copysign(x)
    } else {
        x
    }
}

/// A scalar float type's value as f64 (exact for every float type).
#[inline]
pub fn float_value(ty: Ty, v: u64) -> f64 {
    match ty {
        Ty::F64 => f64::from_bits(v),
        Ty::F16 => f16::from_bits(v as u16).to_f64(),
        Ty::BF16 => bf16::from_bits(v as u16).to_f64(),
        _ => f64::from(f32_of(v)),
    }
}

/// Rounds an exact (or f64-rounded) value to f32 with a directed rounding mode.
pub fn round_to_f32(x: f64, rnd: Rnd) -> f32 {
    let r = x as f32;
    if x.is_nan() || r.is_infinite() && x.is_infinite() {
        return r;
    }
    let back = f64::from(r);
    match rnd {
        Rnd::Rz | Rnd::Rzi if back.abs() > x.abs() => {
            if r > 0.0 {
                r.next_down()
            } else {
                r.next_up()
            }
        }
        Rnd::Rm | Rnd::Rmi if back > x => r.next_down(),
        Rnd::Rp | Rnd::Rpi if back < x => r.next_up(),
        _ => r,
    }
}

/// Steps a 16-bit float's bits one unit towards +inf (`up`) or -inf.
fn step16(bits: u16, up: bool) -> u16 {
    let negative = bits & 0x8000 != 0;
    if bits & 0x7fff == 0 {
        return if up { 0x0001 } else { 0x8001 };
    }
    if negative == up {
        bits - 1
    } else {
        bits + 1
    }
}

/// Rounds to f16 or bf16 bits with a rounding mode; `satfinite` clamps infinities to the largest finite.
pub fn round_to_16(x: f64, ty: Ty, rnd: Rnd, sat: bool) -> u16 {
    let (bits, back) = if ty == Ty::BF16 {
        let h = bf16::from_f64(x);
        (h.to_bits(), h.to_f64())
    } else {
        let h = f16::from_f64(x);
        (h.to_bits(), h.to_f64())
    };
    if x.is_nan() {
        return bits;
    }
    let mut out = bits;
    let adjust = match rnd {
        Rnd::Rz | Rnd::Rzi => back.abs() > x.abs(),
        Rnd::Rm | Rnd::Rmi => back > x,
        Rnd::Rp | Rnd::Rpi => back < x,
        _ => false,
    };
    if adjust {
        let up = match rnd {
            Rnd::Rz | Rnd::Rzi => back < 0.0,
            Rnd::Rm | Rnd::Rmi => false,
            _ => true,
        };
        out = step16(bits, up);
    }
    if sat && out & 0x7fff == if ty == Ty::BF16 { 0x7f80 } else { 0x7c00 } {
        out -= 1;
    }
    out
}

/// Rounds an f64 to the destination float type's bits.
pub fn round_to_float(x: f64, ty: Ty, rnd: Rnd) -> u64 {
    match ty {
        Ty::F64 => x.to_bits(),
        Ty::F16 | Ty::BF16 => u64::from(round_to_16(x, ty, rnd, false)),
        _ => bits32(round_to_f32(x, rnd)),
    }
}

/// Applies a binary float op to scalar or packed (x2) float types. `f32_op` is used for f32 with
/// round-to-nearest; the f64 path covers directed rounding and the other types.
#[allow(clippy::too_many_arguments)] // the instruction's modifiers travel as plain values
pub fn float_binary(
    ty: Ty,
    rnd: Rnd,
    ftz: bool,
    sat: bool,
    a: u64,
    b: u64,
    f32_op: fn(f32, f32) -> f32,
    f64_op: fn(f64, f64) -> f64,
) -> u64 {
    match ty {
        Ty::F32 => {
            let (x, y) = (flush32(f32_of(a), ftz), flush32(f32_of(b), ftz));
            let r = if matches!(rnd, Rnd::Rz | Rnd::Rm | Rnd::Rp) {
                round_to_f32(f64_op(f64::from(x), f64::from(y)), rnd)
            } else {
                f32_op(x, y)
            };
            bits32(saturate32(flush32(r, ftz), sat))
        }
        Ty::F64 => f64_op(f64::from_bits(a), f64::from_bits(b)).to_bits(),
        Ty::F16 | Ty::BF16 => {
            let r = f64_op(float_value(ty, a), float_value(ty, b));
            u64::from(round_to_16(
                if sat { r.clamp(0.0, 1.0) } else { r },
                ty,
                rnd,
                false,
            ))
        }
        Ty::F16x2 | Ty::BF16x2 => {
            let scalar = if ty == Ty::F16x2 { Ty::F16 } else { Ty::BF16 };
            let lo = float_binary(
                scalar,
                rnd,
                ftz,
                sat,
                a & 0xffff,
                b & 0xffff,
                f32_op,
                f64_op,
            );
            let hi = float_binary(
                scalar,
                rnd,
                ftz,
                sat,
                (a >> 16) & 0xffff,
                (b >> 16) & 0xffff,
                f32_op,
                f64_op,
            );
            lo | (hi << 16)
        }
        _ => 0,
    }
}

#[inline]
fn saturate32(x: f32, sat: bool) -> f32 {
    if !sat {
        x
    } else if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

pub fn float_fma(ty: Ty, rnd: Rnd, ftz: bool, sat: bool, a: u64, b: u64, c: u64) -> u64 {
    match ty {
        Ty::F32 => {
            let (x, y, z) = (
                flush32(f32_of(a), ftz),
                flush32(f32_of(b), ftz),
                flush32(f32_of(c), ftz),
            );
            let r = if matches!(rnd, Rnd::Rz | Rnd::Rm | Rnd::Rp) {
                // The f64 product of two f32 is exact; the sum is rounded once to f64 then to f32.
                round_to_f32(f64::from(x).mul_add(f64::from(y), f64::from(z)), rnd)
            } else {
                x.mul_add(y, z)
            };
            bits32(saturate32(flush32(r, ftz), sat))
        }
        Ty::F64 => f64::from_bits(a)
            .mul_add(f64::from_bits(b), f64::from_bits(c))
            .to_bits(),
        Ty::F16 | Ty::BF16 => {
            let r = float_value(ty, a).mul_add(float_value(ty, b), float_value(ty, c));
            u64::from(round_to_16(
                if sat { r.clamp(0.0, 1.0) } else { r },
                ty,
                rnd,
                false,
            ))
        }
        Ty::F16x2 | Ty::BF16x2 => {
            let scalar = if ty == Ty::F16x2 { Ty::F16 } else { Ty::BF16 };
            let lo = float_fma(scalar, rnd, ftz, sat, a & 0xffff, b & 0xffff, c & 0xffff);
            let hi = float_fma(
                scalar,
                rnd,
                ftz,
                sat,
                (a >> 16) & 0xffff,
                (b >> 16) & 0xffff,
                (c >> 16) & 0xffff,
            );
            lo | (hi << 16)
        }
        _ => 0,
    }
}

/// Unary float functions (neg, abs, rcp, sqrt, ...), applied per half for packed types.
pub fn float_unary(ty: Ty, rnd: Rnd, ftz: bool, a: u64, f: fn(f64) -> f64) -> u64 {
    match ty {
        Ty::F32 => {
            let x = flush32(f32_of(a), ftz);
            let r = round_to_f32(
                f(f64::from(x)),
                if rnd == Rnd::Default { Rnd::Rn } else { rnd },
            );
            bits32(flush32(r, ftz))
        }
        Ty::F64 => f(f64::from_bits(a)).to_bits(),
        Ty::F16 | Ty::BF16 => u64::from(round_to_16(f(float_value(ty, a)), ty, rnd, false)),
        Ty::F16x2 | Ty::BF16x2 => {
            let scalar = if ty == Ty::F16x2 { Ty::F16 } else { Ty::BF16 };
            float_unary(scalar, rnd, ftz, a & 0xffff, f)
                | (float_unary(scalar, rnd, ftz, (a >> 16) & 0xffff, f) << 16)
        }
        _ => 0,
    }
}

/// Sign-bit operations (neg, abs) work on bits so NaN payloads and -0 behave as on the GPU.
pub fn float_sign_op(ty: Ty, ftz: bool, a: u64, negate: bool) -> u64 {
    let (sign, width_mask) = match ty {
        Ty::F64 => (1u64 << 63, u64::MAX),
        Ty::F16 | Ty::BF16 => (0x8000, 0xffff),
        Ty::F16x2 | Ty::BF16x2 => (0x8000_8000, 0xffff_ffff),
        _ => (0x8000_0000, 0xffff_ffff),
    };
    let mut v = a & width_mask;
    if ty == Ty::F32 && ftz {
        v = bits32(flush32(f32_of(v), true));
    }
    if negate {
        v ^ sign
    } else {
        v & !sign
    }
}

pub fn float_min_max(ty: Ty, a: u64, b: u64, is_max: bool) -> u64 {
    if matches!(ty, Ty::F16x2 | Ty::BF16x2) {
        let scalar = if ty == Ty::F16x2 { Ty::F16 } else { Ty::BF16 };
        return float_min_max(scalar, a & 0xffff, b & 0xffff, is_max)
            | (float_min_max(scalar, (a >> 16) & 0xffff, (b >> 16) & 0xffff, is_max) << 16);
    }
    let (x, y) = (float_value(ty, a), float_value(ty, b));
    let pick_a = if x.is_nan() {
        false
    } else if y.is_nan() {
        true
    } else if x == y {
        // -0 is smaller than +0 for min/max.
        let x_neg = x.is_sign_negative();
        if is_max {
            !x_neg
        } else {
            x_neg
        }
    } else if is_max {
        x > y
    } else {
        x < y
    };
    as_u(ty, if pick_a { a } else { b })
}

pub fn int_min_max(ty: Ty, a: u64, b: u64, is_max: bool) -> u64 {
    let pick_a = if ty.is_signed() {
        let (x, y) = (as_s(ty, a), as_s(ty, b));
        if is_max {
            x >= y
        } else {
            x <= y
        }
    } else {
        let (x, y) = (as_u(ty, a), as_u(ty, b));
        if is_max {
            x >= y
        } else {
            x <= y
        }
    };
    if pick_a {
        a
    } else {
        b
    }
}

/// `mul.lo/hi/wide` and the product part of `mad`.
pub fn int_mul(ty: Ty, a: u64, b: u64, mode: super::program::MulMode) -> u64 {
    use super::program::MulMode;
    let bits = ty.bits();
    let prod: i128 = if ty.is_signed() {
        i128::from(as_s(ty, a)) * i128::from(as_s(ty, b))
    } else {
        (u128::from(as_u(ty, a)) * u128::from(as_u(ty, b))) as i128
    };
    match mode {
        MulMode::Lo => prod as u64 & mask(bits),
        MulMode::Hi => (prod >> bits) as u64 & mask(bits),
        MulMode::Wide => prod as u64 & mask(2 * bits),
    }
}

pub fn int_div(ty: Ty, a: u64, b: u64, remainder: bool) -> u64 {
    if ty.is_signed() {
        let (x, y) = (as_s(ty, a), as_s(ty, b));
        if y == 0 {
            // Division by zero is undefined in PTX; return all ones like the hardware's sequence does.
            return if remainder { x as u64 } else { u64::MAX } & mask(ty.bits());
        }
        (if remainder {
            x.wrapping_rem(y)
        } else {
            x.wrapping_div(y)
        }) as u64
            & mask(ty.bits())
    } else {
        let (x, y) = (as_u(ty, a), as_u(ty, b));
        if y == 0 {
            return if remainder { x } else { mask(ty.bits()) };
        }
        if remainder {
            x % y
        } else {
            x / y
        }
    }
}

pub fn compare(ty: Ty, cmp: Cmp, a: u64, b: u64) -> bool {
    if ty.is_float() {
        let (x, y) = (float_value(ty, a), float_value(ty, b));
        let unordered = x.is_nan() || y.is_nan();
        return match cmp {
            Cmp::Eq => !unordered && x == y,
            Cmp::Ne => !unordered && x != y,
            Cmp::Lt | Cmp::Lo => !unordered && x < y,
            Cmp::Le | Cmp::Ls => !unordered && x <= y,
            Cmp::Gt | Cmp::Hi => !unordered && x > y,
            Cmp::Ge | Cmp::Hs => !unordered && x >= y,
            Cmp::Equ => unordered || x == y,
            Cmp::Neu => unordered || x != y,
            Cmp::Ltu => unordered || x < y,
            Cmp::Leu => unordered || x <= y,
            Cmp::Gtu => unordered || x > y,
            Cmp::Geu => unordered || x >= y,
            Cmp::Num => !unordered,
            Cmp::Nan => unordered,
        };
    }
    let signed = ty.is_signed() && !matches!(cmp, Cmp::Lo | Cmp::Ls | Cmp::Hi | Cmp::Hs);
    let ord = if signed {
        as_s(ty, a).cmp(&as_s(ty, b))
    } else {
        as_u(ty, a).cmp(&as_u(ty, b))
    };
    use std::cmp::Ordering::*;
    match cmp {
        Cmp::Eq | Cmp::Equ => ord == Equal,
        Cmp::Ne | Cmp::Neu => ord != Equal,
        Cmp::Lt | Cmp::Lo | Cmp::Ltu => ord == Less,
        Cmp::Le | Cmp::Ls | Cmp::Leu => ord != Greater,
        Cmp::Gt | Cmp::Hi | Cmp::Gtu => ord == Greater,
        Cmp::Ge | Cmp::Hs | Cmp::Geu => ord != Less,
        Cmp::Num => true,
        Cmp::Nan => false,
    }
}

pub fn test_float(ty: Ty, kind: TestKind, a: u64) -> bool {
    let x = float_value(ty, a);
    let subnormal = match ty {
        Ty::F64 => x.is_subnormal(),
        Ty::F32 => f32_of(a).is_subnormal(),
        // 16-bit subnormals: zero exponent field, non-zero mantissa.
        Ty::F16 => a & 0x7c00 == 0 && a & 0x03ff != 0,
        _ => a & 0x7f80 == 0 && a & 0x007f != 0,
    };
    match kind {
        TestKind::Finite => x.is_finite(),
        TestKind::Infinite => x.is_infinite(),
        TestKind::Number => !x.is_nan(),
        TestKind::NotANumber => x.is_nan(),
        TestKind::Normal => x.is_finite() && x != 0.0 && !subnormal,
        TestKind::Subnormal => subnormal,
    }
}

/// `cvt` between any two scalar types (packed x2 destinations are handled by the caller).
pub fn convert(dst: Ty, src: Ty, rnd: Rnd, sat: bool, ftz: bool, a: u64) -> u64 {
    if src.is_float() {
        let mut x = float_value(src, a);
        if ftz && src == Ty::F32 && f32_of(a).is_subnormal() {
            x = 0.0;
        }
        if dst.is_float() {
            // Rounding to an integral value in float format (`cvt.rni.f32.f32`).
            let x = match rnd {
                Rnd::Rni => x.round_ties_even(),
                Rnd::Rzi => x.trunc(),
                Rnd::Rmi => x.floor(),
                Rnd::Rpi => x.ceil(),
                _ => x,
            };
            let x = if sat {
                if x.is_nan() {
                    0.0
                } else {
                    x.clamp(0.0, 1.0)
                }
            } else {
                x
            };
            let mut out = match dst {
                Ty::F16 | Ty::BF16 => u64::from(round_to_16(x, dst, rnd, false)),
                _ => round_to_float(x, dst, rnd),
            };
            if ftz && dst == Ty::F32 && f32_of(out).is_subnormal() {
                out = bits32(0.0f32.copysign(f32_of(out)));
            }
            return out;
        }
        if x.is_nan() {
            return 0;
        }
        let r = match rnd {
            Rnd::Rni | Rnd::Rn => x.round_ties_even(),
            Rnd::Rmi | Rnd::Rm => x.floor(),
            Rnd::Rpi | Rnd::Rp => x.ceil(),
            _ => x.trunc(),
        };
        // Float-to-integer conversions saturate to the destination range.
        let bits = dst.bits();
        return if dst.is_signed() {
            let lo = -(2f64.powi(bits as i32 - 1));
            let hi = 2f64.powi(bits as i32 - 1) - 1.0;
            (r.clamp(lo, hi) as i64) as u64 & mask(bits)
        } else {
            let hi = 2f64.powi(bits as i32) - 1.0;
            r.clamp(0.0, hi) as u64 & mask(bits)
        };
    }
    if dst.is_float() {
        let rnd = if rnd == Rnd::Default { Rnd::Rn } else { rnd };
        return if src.is_signed() {
            let v = as_s(src, a);
            match dst {
                Ty::F64 => (v as f64).to_bits(),
                _ => round_to_float(v as f64, dst, rnd),
            }
        } else {
            let v = as_u(src, a);
            match dst {
                Ty::F64 => (v as f64).to_bits(),
                _ => round_to_float(v as f64, dst, rnd),
            }
        };
    }
    // Integer to integer: extend by the source's signedness, then truncate or saturate.
    let wide: i128 = if src.is_signed() {
        i128::from(as_s(src, a))
    } else {
        i128::from(as_u(src, a))
    };
    let bits = dst.bits();
    if sat {
        let (lo, hi) = if dst.is_signed() {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        } else {
            (0, (1i128 << bits) - 1)
        };
        return wide.clamp(lo, hi) as u64 & mask(bits);
    }
    let v = wide as u64 & mask(bits);
    if dst.is_signed() {
        as_s(dst, v) as u64
    } else {
        v
    }
}

/// The new memory value of an atomic read-modify-write.
pub fn atomic_update(op: AtomOp, ty: Ty, old: u64, b: u64, c: u64) -> u64 {
    let m = mask(ty.bits());
    match op {
        AtomOp::Add if ty.is_float() => float_binary(
            ty,
            Rnd::Rn,
            false,
            false,
            old,
            b,
            |x, y| x + y,
            |x, y| x + y,
        ),
        AtomOp::Add => old.wrapping_add(b) & m,
        AtomOp::Min if ty.is_float() => float_min_max(ty, old, b, false),
        AtomOp::Max if ty.is_float() => float_min_max(ty, old, b, true),
        AtomOp::Min => int_min_max(ty, old, b, false) & m,
        AtomOp::Max => int_min_max(ty, old, b, true) & m,
        AtomOp::Inc => {
            if as_u(ty, old) >= as_u(ty, b) {
                0
            } else {
                (old + 1) & m
            }
        }
        AtomOp::Dec => {
            if as_u(ty, old) == 0 || as_u(ty, old) > as_u(ty, b) {
                as_u(ty, b)
            } else {
                (old - 1) & m
            }
        }
        AtomOp::And => old & b & m,
        AtomOp::Or => (old | b) & m,
        AtomOp::Xor => (old ^ b) & m,
        AtomOp::Exch => b & m,
        AtomOp::Cas => {
            if as_u(ty, old) == as_u(ty, b) {
                c & m
            } else {
                old
            }
        }
    }
}

/// `prmt.b32` default mode: picks four bytes of {b, a} by the selector's nibbles.
pub fn permute_bytes(a: u64, b: u64, selector: u64) -> u64 {
    let source = (a & 0xffff_ffff) | ((b & 0xffff_ffff) << 32);
    let mut out = 0u64;
    for i in 0..4 {
        let sel = (selector >> (4 * i)) & 0xf;
        let byte = (source >> (8 * (sel & 7))) & 0xff;
        let byte = if sel & 8 != 0 {
            // Replicate the byte's sign bit.
            if byte & 0x80 != 0 {
                0xff
            } else {
                0
            }
        } else {
            byte
        };
        out |= byte << (8 * i);
    }
    out
}

pub fn lop3(a: u64, b: u64, c: u64, lut: u64) -> u64 {
    let mut r = 0u64;
    for i in 0..8 {
        if lut >> i & 1 == 1 {
            let x = if i & 4 != 0 { a } else { !a };
            let y = if i & 2 != 0 { b } else { !b };
            let z = if i & 1 != 0 { c } else { !c };
            r |= x & y & z;
        }
    }
    r & 0xffff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ptx::program::MulMode;

    #[test]
    fn directed_rounding_to_f32_brackets_the_exact_value() {
        let x = 1.0f64 + 2f64.powi(-30); // between two f32 neighbours of 1.0
        assert_eq!(round_to_f32(x, Rnd::Rn), 1.0);
        assert_eq!(round_to_f32(x, Rnd::Rz), 1.0);
        assert_eq!(round_to_f32(x, Rnd::Rm), 1.0);
        assert_eq!(round_to_f32(x, Rnd::Rp), 1.0f32.next_up());
        assert_eq!(round_to_f32(-x, Rnd::Rm), -(1.0f32.next_up()));
        assert_eq!(round_to_f32(-x, Rnd::Rz), -1.0);
    }

    #[test]
    fn f16_rounding_modes_and_saturation() {
        // 65519 is below the rn midpoint to infinity only for rz/rm.
        assert_eq!(round_to_16(65519.0, Ty::F16, Rnd::Rn, false), 0x7bff);
        assert_eq!(round_to_16(65520.0, Ty::F16, Rnd::Rn, false), 0x7c00);
        assert_eq!(round_to_16(65520.0, Ty::F16, Rnd::Rz, false), 0x7bff);
        assert_eq!(round_to_16(65520.0, Ty::F16, Rnd::Rn, true), 0x7bff);
        assert_eq!(round_to_16(1.0 + 1e-4, Ty::F16, Rnd::Rp, false), 0x3c01);
        assert_eq!(round_to_16(-(1.0 + 1e-4), Ty::F16, Rnd::Rp, false), 0xbc00);
        assert_eq!(round_to_16(1.0 + 1e-3, Ty::BF16, Rnd::Rz, false), 0x3f80);
    }

    #[test]
    fn float_to_int_conversions_saturate_and_round() {
        assert_eq!(
            convert(
                Ty::S32,
                Ty::F32,
                Rnd::Rzi,
                false,
                false,
                u64::from(3.9f32.to_bits())
            ),
            3
        );
        assert_eq!(
            convert(
                Ty::S32,
                Ty::F32,
                Rnd::Rmi,
                false,
                false,
                u64::from((-3.1f32).to_bits())
            ) as u32,
            (-4i32) as u32
        );
        assert_eq!(
            convert(
                Ty::S32,
                Ty::F32,
                Rnd::Rni,
                false,
                false,
                u64::from(2.5f32.to_bits())
            ),
            2
        );
        assert_eq!(
            convert(
                Ty::S32,
                Ty::F32,
                Rnd::Rzi,
                false,
                false,
                u64::from(1e20f32.to_bits())
            ),
            i32::MAX as u64
        );
        assert_eq!(
            convert(
                Ty::U32,
                Ty::F32,
                Rnd::Rzi,
                false,
                false,
                u64::from((-5.0f32).to_bits())
            ),
            0
        );
        assert_eq!(
            convert(
                Ty::S32,
                Ty::F32,
                Rnd::Rzi,
                false,
                false,
                u64::from(f32::NAN.to_bits())
            ),
            0
        );
        // Integer narrowing and sign extension.
        assert_eq!(
            convert(Ty::S64, Ty::S32, Rnd::Default, false, false, 0xffff_fffe),
            (-2i64) as u64
        );
        assert_eq!(
            convert(Ty::U8, Ty::S32, Rnd::Default, true, false, 300),
            255
        );
    }

    #[test]
    fn integer_multiply_modes() {
        assert_eq!(int_mul(Ty::U32, 0xffff_ffff, 2, MulMode::Hi), 1);
        assert_eq!(
            int_mul(Ty::S32, (-3i32) as u32 as u64, 5, MulMode::Wide),
            (-15i64) as u64
        );
        assert_eq!(
            int_mul(Ty::S32, (-1i32) as u32 as u64, 1, MulMode::Hi),
            0xffff_ffff
        );
        assert_eq!(
            int_div(
                Ty::S32,
                i32::MIN as u32 as u64,
                (-1i32) as u32 as u64,
                false
            ),
            i32::MIN as u32 as u64
        );
        assert_eq!(int_div(Ty::U32, 7, 0, false), 0xffff_ffff);
    }

    #[test]
    fn unordered_comparisons_see_nan() {
        let nan = u64::from(f32::NAN.to_bits());
        let one = u64::from(1.0f32.to_bits());
        assert!(!compare(Ty::F32, Cmp::Lt, nan, one));
        assert!(compare(Ty::F32, Cmp::Ltu, nan, one));
        assert!(!compare(Ty::F32, Cmp::Ne, nan, one));
        assert!(compare(Ty::F32, Cmp::Neu, nan, one));
        assert!(compare(Ty::S32, Cmp::Lt, 0xffff_ffff, 0));
        assert!(!compare(Ty::S32, Cmp::Lo, 0xffff_ffff, 0));
    }

    #[test]
    fn min_max_prefer_numbers_over_nan() {
        let nan = u64::from(f32::NAN.to_bits());
        let two = u64::from(2.0f32.to_bits());
        assert_eq!(float_min_max(Ty::F32, nan, two, false), two);
        assert_eq!(float_min_max(Ty::F32, two, nan, true), two);
    }

    #[test]
    fn byte_permute_and_lop3() {
        assert_eq!(permute_bytes(0x4433_2211, 0x8877_6655, 0x7654), 0x8877_6655);
        assert_eq!(permute_bytes(0x0000_0080, 0, 0x8888), 0xffff_ffff);
        // 0x96 is a ^ b ^ c.
        assert_eq!(lop3(0b1100, 0b1010, 0b0110, 0x96), 0b0000);
        assert_eq!(
            lop3(0xf0, 0xcc, 0xaa, 0xe8),
            (0xf0 & 0xcc) | (0xf0 & 0xaa) | (0xcc & 0xaa)
        );
    }
}
