//! C `printf` formatting for device-side `printf` (`vprintf` in PTX). Arguments come from the
//! kernel's argument buffer, each aligned to its own size, with floats promoted to double and small
//! integers to int, as NVVM lays them out.

/// Where the formatter gets its arguments from.
pub trait PrintfArgs {
    /// The next argument of `size` bytes (4 or 8), aligned to its size in the buffer.
    fn next(&mut self, size: usize) -> Result<u64, String>;
    /// The NUL-terminated string at a device address.
    fn string_at(&mut self, address: u64) -> Result<String, String>;
}

#[derive(Default)]
struct Spec {
    left: bool,
    plus: bool,
    space: bool,
    alt: bool,
    zero: bool,
    width: usize,
    precision: Option<usize>,
}

/// Formats `format` with arguments from `args`.
pub fn format(format: &[u8], args: &mut dyn PrintfArgs) -> Result<String, String> {
    let mut out = String::new();
    let mut i = 0;
    while i < format.len() {
        let c = format[i];
        i += 1;
        if c != b'%' {
            out.push(c as char);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = format.get(i) {
            match f {
                b'-' => spec.left = true,
                b'+' => spec.plus = true,
                b' ' => spec.space = true,
                b'#' => spec.alt = true,
                b'0' => spec.zero = true,
                _ => break,
            }
            i += 1;
        }
        if format.get(i) == Some(&b'*') {
            let w = args.next(4)? as u32 as i32;
            spec.left |= w < 0;
            spec.width = w.unsigned_abs() as usize;
            i += 1;
        } else {
            while let Some(d) = format.get(i).filter(|d| d.is_ascii_digit()) {
                spec.width = spec.width * 10 + (d - b'0') as usize;
                i += 1;
            }
        }
        if format.get(i) == Some(&b'.') {
            i += 1;
            let mut p = 0usize;
            if format.get(i) == Some(&b'*') {
                p = (args.next(4)? as u32 as i32).max(0) as usize;
                i += 1;
            } else {
                while let Some(d) = format.get(i).filter(|d| d.is_ascii_digit()) {
                    p = p * 10 + (d - b'0') as usize;
                    i += 1;
                }
            }
            spec.precision = Some(p);
        }
        let mut long = false;
        while let Some(&l) = format.get(i) {
            match l {
                b'l' | b'z' | b'j' | b't' | b'L' => long = true,
                b'h' => {}
                _ => break,
            }
            i += 1;
        }
        let Some(&conv) = format.get(i) else {
            return Err("format string ends inside a conversion".to_string());
        };
        i += 1;
        let int_size = if long { 8 } else { 4 };
        let body = match conv {
            b'%' => {
                out.push('%');
                continue;
            }
            b'd' | b'i' => {
                let raw = args.next(int_size)?;
                let v = if long {
                    raw as i64
                } else {
                    raw as u32 as i32 as i64
                };
                let digits = with_precision(v.unsigned_abs().to_string(), spec.precision);
                let sign = if v < 0 {
                    "-"
                } else if spec.plus {
                    "+"
                } else if spec.space {
                    " "
                } else {
                    ""
                };
                pad_number(sign, &digits, &spec)
            }
            b'u' | b'x' | b'X' | b'o' => {
                let raw = args.next(int_size)?;
                let v = if long { raw } else { raw & 0xffff_ffff };
                let digits = match conv {
                    b'u' => v.to_string(),
                    b'x' => format!("{v:x}"),
                    b'X' => format!("{v:X}"),
                    _ => format!("{v:o}"),
                };
                let prefix = match conv {
                    b'x' if spec.alt && v != 0 => "0x",
                    b'X' if spec.alt && v != 0 => "0X",
                    b'o' if spec.alt => "0",
                    _ => "",
                };
                pad_number(prefix, &with_precision(digits, spec.precision), &spec)
            }
            b'c' => pad(((args.next(4)? as u8) as char).to_string(), &spec),
            b's' => {
                let address = args.next(8)?;
                let mut text = if address == 0 {
                    "(null)".to_string()
                } else {
                    args.string_at(address)?
                };
                if let Some(p) = spec.precision {
                    text = text.chars().take(p).collect();
                }
                pad(text, &spec)
            }
            b'p' => pad(format!("{:#x}", args.next(8)?), &spec),
            b'f' | b'F' | b'e' | b'E' | b'g' | b'G' => {
                let v = f64::from_bits(args.next(8)?);
                let upper = conv.is_ascii_uppercase();
                let sign = if v.is_sign_negative() && !v.is_nan() {
                    "-"
                } else if spec.plus {
                    "+"
                } else if spec.space {
                    " "
                } else {
                    ""
                };
                let magnitude = v.abs();
                let text = if magnitude.is_nan() {
                    "nan".to_string()
                } else if magnitude.is_infinite() {
                    "inf".to_string()
                } else {
                    let p = spec.precision.unwrap_or(6);
                    match conv.to_ascii_lowercase() {
                        b'f' => format!("{magnitude:.p$}"),
                        b'e' => c_exponent(magnitude, p),
                        _ => c_general(magnitude, p, spec.alt),
                    }
                };
                let text = if upper { text.to_uppercase() } else { text };
                if magnitude.is_finite() {
                    pad_number(sign, &text, &spec)
                } else {
                    pad(format!("{sign}{text}"), &spec)
                }
            }
            other => {
                return Err(format!(
                    "unsupported printf conversion `%{}`",
                    other as char
                ))
            }
        };
        out.push_str(&body);
    }
    Ok(out)
}

fn with_precision(digits: String, precision: Option<usize>) -> String {
    match precision {
        Some(0) if digits == "0" => String::new(),
        Some(p) if digits.len() < p => format!("{}{digits}", "0".repeat(p - digits.len())),
        _ => digits,
    }
}

fn pad(text: String, spec: &Spec) -> String {
    let n = text.chars().count();
    if n >= spec.width {
        text
    } else if spec.left {
        format!("{text}{}", " ".repeat(spec.width - n))
    } else {
        format!("{}{text}", " ".repeat(spec.width - n))
    }
}

/// Pads a number, putting zero padding between the sign/prefix and the digits.
fn pad_number(prefix: &str, digits: &str, spec: &Spec) -> String {
    let n = prefix.len() + digits.len();
    if spec.zero && !spec.left && spec.precision.is_none() && n < spec.width {
        format!("{prefix}{}{digits}", "0".repeat(spec.width - n))
    } else {
        pad(format!("{prefix}{digits}"), spec)
    }
}

/// `%e`: one digit, `precision` decimals, and an exponent of at least two digits with its sign.
fn c_exponent(v: f64, precision: usize) -> String {
    let text = format!("{v:.precision$e}");
    match text.split_once('e') {
        Some((mantissa, exp)) => {
            let e: i32 = exp.parse().unwrap_or(0);
            format!(
                "{mantissa}e{}{:02}",
                if e < 0 { '-' } else { '+' },
                e.unsigned_abs()
            )
        }
        None => text,
    }
}

/// `%g`: `%e` or `%f` by the exponent, trailing zeros removed unless `#`.
fn c_general(v: f64, precision: usize, alt: bool) -> String {
    let p = precision.max(1);
    let exponent = if v == 0.0 {
        0
    } else {
        let e_text = format!("{v:.prec$e}", prec = p - 1);
        e_text
            .split_once('e')
            .and_then(|(_, e)| e.parse::<i32>().ok())
            .unwrap_or(0)
    };
    let mut text = if exponent < -4 || exponent >= p as i32 {
        c_exponent(v, p - 1)
    } else {
        format!(
            "{v:.prec$}",
            prec = (p as i32 - 1 - exponent).max(0) as usize
        )
    };
    if !alt {
        let (mantissa, exp) = match text.find('e') {
            Some(pos) => (text[..pos].to_string(), text[pos..].to_string()),
            None => (text.clone(), String::new()),
        };
        let mantissa = if mantissa.contains('.') {
            mantissa
                .trim_end_matches('0')
                .trim_end_matches('.')
                .to_string()
        } else {
            mantissa
        };
        text = format!("{mantissa}{exp}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Arguments laid out as NVVM does: each aligned to its size.
    struct Buffer {
        bytes: Vec<u8>,
        cursor: usize,
    }

    impl PrintfArgs for Buffer {
        fn next(&mut self, size: usize) -> Result<u64, String> {
            self.cursor = self.cursor.div_ceil(size) * size;
            let mut b = [0u8; 8];
            b[..size].copy_from_slice(&self.bytes[self.cursor..self.cursor + size]);
            self.cursor += size;
            Ok(u64::from_le_bytes(b))
        }
        fn string_at(&mut self, address: u64) -> Result<String, String> {
            Ok(format!("<str@{address}>"))
        }
    }

    fn run(fmt: &str, parts: &[&[u8]]) -> String {
        let mut bytes = Vec::new();
        for p in parts {
            while bytes.len() % p.len() != 0 {
                bytes.push(0);
            }
            bytes.extend_from_slice(p);
        }
        format(fmt.as_bytes(), &mut Buffer { bytes, cursor: 0 }).unwrap()
    }

    #[test]
    fn integers_floats_and_padding_follow_c() {
        assert_eq!(
            run(
                "%d|%5d|%-5d|%05d|%+d",
                &[
                    &(-42i32).to_le_bytes(),
                    &7i32.to_le_bytes(),
                    &7i32.to_le_bytes(),
                    &(-7i32).to_le_bytes(),
                    &3i32.to_le_bytes()
                ]
            ),
            "-42|    7|7    |-0007|+3"
        );
        assert_eq!(
            run(
                "%x %#X %lu %o",
                &[
                    &255u32.to_le_bytes(),
                    &255u32.to_le_bytes(),
                    &(1u64 << 40).to_le_bytes(),
                    &8u32.to_le_bytes()
                ]
            ),
            "ff 0XFF 1099511627776 10"
        );
        assert_eq!(
            run(
                "%f %.2f %e %g %g %g",
                &[
                    &1.5f64.to_le_bytes(),
                    &2.345f64.to_le_bytes(),
                    &12345.678f64.to_le_bytes(),
                    &0.0001f64.to_le_bytes(),
                    &1e-5f64.to_le_bytes(),
                    &123456789.0f64.to_le_bytes()
                ]
            ),
            "1.500000 2.35 1.234568e+04 0.0001 1e-05 1.23457e+08"
        );
        assert_eq!(
            run(
                "%c%s%%",
                &[&(b'A' as i32).to_le_bytes(), &64u64.to_le_bytes()]
            ),
            "A<str@64>%"
        );
        assert_eq!(
            run(
                "%8.3f|%-8.1e|",
                &[&(-3.14259f64).to_le_bytes(), &0.5f64.to_le_bytes()]
            ),
            "  -3.143|5.0e-01 |"
        );
    }
}
