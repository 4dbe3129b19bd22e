//! Kubernetes resource quantities (`250m`, `512Mi`, `1.5Gi`, `2e3`): an exact
//! parser and the canonical formatter.
//!
//! Values are held exactly in nano-units (10⁻⁹), so `cpu: 250m` is 250 milli-CPU
//! and `memory: 1Gi` is 1 073 741 824 bytes with no floating point on the way.
//! Like Kubernetes, a magnitude beyond 2⁶³−1 units is capped there and
//! precision beyond nano-units is rounded up (away from zero).

use std::cmp::Ordering;
use std::fmt;

/// A quantity that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The number part is malformed.
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Format,
    /// The suffix is not one Kubernetes knows.
    #[error("unable to parse quantity's suffix")]
    Suffix,
}

/// How a quantity was written, which decides how it is printed back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantityFormat {
    /// Powers of ten with SI suffixes: `m`, `k`, `M`, `G`, `T`, `P`, `E` (and `n`, `u`).
    DecimalSI,
    /// Powers of two: `Ki`, `Mi`, `Gi`, `Ti`, `Pi`, `Ei`.
    BinarySI,
    /// Scientific notation: `1e3`, `5E-3`.
    DecimalExponent,
}

/// An exact quantity.
#[derive(Clone, Copy, Debug)]
pub struct Quantity {
    nanos: i128,
    format: QuantityFormat,
}

const NANO: i128 = 1_000_000_000;
/// 2⁶³−1 units, in nano-units: the largest magnitude Kubernetes represents.
const MAX_NANOS: i128 = i64::MAX as i128 * NANO;

/// Parse a quantity string.
pub fn parse_quantity(s: &str) -> Result<Quantity, QuantityError> {
    Quantity::parse(s)
}

/// Format milli-CPU as Kubernetes would (`250m`, `1`, `1500m`).
pub fn format_milli(milli: i64) -> String {
    Quantity::from_milli(milli).to_string()
}

/// Format bytes as Kubernetes would for a binary quantity (`512Mi`, `1Gi`, `1000`).
pub fn format_bytes(bytes: u128) -> String {
    Quantity::from_bytes(bytes).to_string()
}

fn pow10(e: u32) -> Option<i128> {
    10i128.checked_pow(e)
}

/// `n / d` rounded up, for `n >= 0`, `d > 0`.
fn div_ceil(n: i128, d: i128) -> i128 {
    n / d + i128::from(n % d != 0)
}

impl Quantity {
    /// Parse a quantity string (`"250m"`, `"1Gi"`, `"1.5"`, `"2e3"`, `"-1"`).
    pub fn parse(s: &str) -> Result<Self, QuantityError> {
        let b = s.as_bytes();
        if b.is_empty() {
            return Err(QuantityError::Format);
        }
        let mut i = 0;
        let negative = match b[0] {
            b'-' => {
                i = 1;
                true
            }
            b'+' => {
                i = 1;
                false
            }
            _ => false,
        };
        // Digits with at most one decimal point.
        let mut frac_digits: &[u8] = &[];
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let int_digits = &b[start..i];
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let fstart = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            frac_digits = &b[fstart..i];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(QuantityError::Format);
        }
        let suffix = &s[i..];
        let (base10, base2, format) = parse_suffix(suffix)?;

        // Mantissa as an integer, dropping leading zeros; keep at most 36
        // significant digits (the rest can only round up).
        let mut mantissa: i128 = 0;
        let mut scale: i64 = 0; // value = mantissa * 10^scale
        let mut round_up = false;
        let mut significant = 0usize;
        for &d in int_digits {
            let d = i128::from(d - b'0');
            if significant >= 36 {
                scale += 1;
                round_up |= d != 0;
                continue;
            }
            if mantissa != 0 || d != 0 {
                significant += 1;
            }
            mantissa = mantissa * 10 + d;
        }
        for &d in frac_digits {
            let d = i128::from(d - b'0');
            if significant >= 36 {
                round_up |= d != 0;
                continue;
            }
            if mantissa != 0 || d != 0 {
                significant += 1;
            }
            mantissa = mantissa * 10 + d;
            scale -= 1;
        }
        if round_up {
            mantissa += 1;
        }
        // In nano-units: mantissa * 2^base2 * 10^(scale + base10 + 9).
        let exp10 = scale + i64::from(base10) + 9;
        let magnitude = if mantissa == 0 {
            0
        } else {
            scale_magnitude(mantissa, base2, exp10)
        };
        let nanos = if negative { -magnitude } else { magnitude };
        Ok(Self { nanos, format })
    }

    /// A quantity of `milli` thousandths (milli-CPU), printed in decimal SI.
    pub fn from_milli(milli: i64) -> Self {
        Self {
            nanos: i128::from(milli) * 1_000_000,
            format: QuantityFormat::DecimalSI,
        }
    }

    /// A quantity of whole units, printed in `format`.
    pub fn from_value(value: i64, format: QuantityFormat) -> Self {
        Self {
            nanos: i128::from(value) * NANO,
            format,
        }
    }

    /// A number of bytes, printed in binary SI (capped at 2⁶³−1).
    pub fn from_bytes(bytes: u128) -> Self {
        let nanos = i128::try_from(bytes)
            .ok()
            .and_then(|b| b.checked_mul(NANO))
            .map_or(MAX_NANOS, |n| n.min(MAX_NANOS));
        Self {
            nanos,
            format: QuantityFormat::BinarySI,
        }
    }

    /// The exact value in nano-units (10⁻⁹).
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// How the quantity was written.
    pub fn format(&self) -> QuantityFormat {
        self.format
    }

    /// The value in thousandths, rounded up (away from zero), as Kubernetes'
    /// `MilliValue`: CPU in milli-cores.
    pub fn milli_value(&self) -> i64 {
        saturate(round_away(self.nanos, 1_000_000))
    }

    /// The value in whole units, rounded up (away from zero), as Kubernetes' `Value`:
    /// memory in bytes, replicas, pods.
    pub fn value(&self) -> i64 {
        saturate(round_away(self.nanos, NANO))
    }

    /// The value in whole bytes, rounded up; 0 for a negative quantity.
    pub fn bytes(&self) -> u128 {
        if self.nanos <= 0 {
            0
        } else {
            div_ceil(self.nanos, NANO) as u128
        }
    }

    /// The value as a float (for ratios such as utilisation).
    pub fn as_f64(&self) -> f64 {
        self.nanos as f64 / NANO as f64
    }

    /// Whether the quantity is zero.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether the quantity is below zero.
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }
}

fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

fn round_away(n: i128, d: i128) -> i128 {
    if n >= 0 {
        div_ceil(n, d)
    } else {
        -div_ceil(-n, d)
    }
}

/// `mantissa * 2^base2 * 10^exp10` for a positive mantissa, rounded up and capped at [`MAX_NANOS`].
fn scale_magnitude(mantissa: i128, base2: u32, exp10: i64) -> i128 {
    let with_base2 = match mantissa.checked_mul(1i128 << base2) {
        Some(v) => v,
        None => return MAX_NANOS,
    };
    let v = if exp10 >= 0 {
        if exp10 > 38 {
            return MAX_NANOS;
        }
        match pow10(exp10 as u32).and_then(|p| with_base2.checked_mul(p)) {
            Some(v) => v,
            None => return MAX_NANOS,
        }
    } else if exp10 < -38 {
        1
    } else {
        div_ceil(with_base2, pow10((-exp10) as u32).unwrap_or(i128::MAX))
    };
    v.min(MAX_NANOS)
}

/// The suffix as (power of ten, power of two, format).
fn parse_suffix(suffix: &str) -> Result<(i32, u32, QuantityFormat), QuantityError> {
    use QuantityFormat::*;
    let decimal = |e| Ok((e, 0, DecimalSI));
    let binary = |p| Ok((0, p, BinarySI));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let rest = suffix
                .strip_prefix('e')
                .or_else(|| suffix.strip_prefix('E'))
                .ok_or(QuantityError::Suffix)?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(QuantityError::Suffix);
            }
            // Anything past ±1000 is far outside the representable range;
            // clamp instead of failing on a long exponent.
            let magnitude: i32 = digits
                .trim_start_matches('0')
                .parse::<i32>()
                .unwrap_or(if digits.trim_start_matches('0').is_empty() {
                    0
                } else {
                    1000
                })
                .min(1000);
            let e = if rest.starts_with('-') {
                -magnitude
            } else {
                magnitude
            };
            Ok((e, 0, DecimalExponent))
        }
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Quantity {
    /// The canonical form: no fraction, the largest exact suffix, the sign only when negative.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let sign = if self.nanos < 0 { "-" } else { "" };
        let magnitude = self.nanos.unsigned_abs();
        if self.format == QuantityFormat::BinarySI && magnitude.is_multiple_of(NANO as u128) {
            let mut units = magnitude / NANO as u128;
            let mut suffix = 0;
            const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            while suffix < 6 && units >= 1024 && units.is_multiple_of(1024) {
                units /= 1024;
                suffix += 1;
            }
            return write!(f, "{sign}{units}{}", SUFFIXES[suffix]);
        }
        // Decimal: the largest power of 1000 (from 10⁻⁹ to 10¹⁸) that divides exactly.
        let mut mantissa = magnitude;
        let mut exp: i32 = -9;
        while exp < 18 && mantissa.is_multiple_of(1000) {
            mantissa /= 1000;
            exp += 3;
        }
        if self.format == QuantityFormat::DecimalExponent {
            if exp == 0 {
                write!(f, "{sign}{mantissa}")
            } else {
                write!(f, "{sign}{mantissa}e{exp}")
            }
        } else {
            let suffix = match exp {
                -9 => "n",
                -6 => "u",
                -3 => "m",
                0 => "",
                3 => "k",
                6 => "M",
                9 => "G",
                12 => "T",
                15 => "P",
                _ => "E",
            };
            write!(f, "{sign}{mantissa}{suffix}")
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_like_kubernetes() {
        let cases: &[(&str, i64, i64, &str)] = &[
            // input, milli, value (rounded up), canonical
            ("250m", 250, 1, "250m"),
            ("0.5", 500, 1, "500m"),
            (".5", 500, 1, "500m"),
            ("1.", 1000, 1, "1"),
            ("1", 1000, 1, "1"),
            ("2", 2000, 2, "2"),
            ("1000", 1_000_000, 1000, "1k"),
            ("1500m", 1500, 2, "1500m"),
            ("1k", 1_000_000, 1000, "1k"),
            ("1M", 1_000_000_000, 1_000_000, "1M"),
            ("1Ki", 1_024_000, 1024, "1Ki"),
            ("512Mi", 536_870_912_000, 536_870_912, "512Mi"),
            ("1Gi", 1_073_741_824_000, 1_073_741_824, "1Gi"),
            ("1.5Gi", 1_610_612_736_000, 1_610_612_736, "1536Mi"),
            ("0.5Ki", 512_000, 512, "512"),
            ("1e3", 1_000_000, 1000, "1e3"),
            ("1E3", 1_000_000, 1000, "1e3"),
            ("5e-3", 5, 1, "5e-3"),
            ("1e0", 1000, 1, "1"),
            ("+1", 1000, 1, "1"),
            ("-1", -1000, -1, "-1"),
            ("-250m", -250, -1, "-250m"),
            ("100n", 1, 1, "100n"),
            ("1u", 1, 1, "1u"),
            ("0", 0, 0, "0"),
            ("0Gi", 0, 0, "0"),
            ("0.0001", 1, 1, "100u"),
            ("1E", i64::MAX, 1_000_000_000_000_000_000, "1E"),
        ];
        for (input, milli, value, canonical) in cases {
            let q = parse_quantity(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(q.milli_value(), *milli, "milli of {input}");
            assert_eq!(q.value(), *value, "value of {input}");
            assert_eq!(q.to_string(), *canonical, "canonical of {input}");
        }
    }

    #[test]
    fn rejects_malformed() {
        let cases: &[(&str, QuantityError)] = &[
            ("", QuantityError::Format),
            (".", QuantityError::Format),
            ("-", QuantityError::Format),
            ("abc", QuantityError::Format),
            ("m", QuantityError::Format),
            ("1.2.3", QuantityError::Suffix),
            ("1 Gi", QuantityError::Suffix),
            ("1gi", QuantityError::Suffix),
            ("1KiB", QuantityError::Suffix),
            ("1e", QuantityError::Suffix),
            ("1e+", QuantityError::Suffix),
            ("1x", QuantityError::Suffix),
            ("--1", QuantityError::Format),
        ];
        for (input, want) in cases {
            assert_eq!(parse_quantity(input).unwrap_err(), *want, "{input:?}");
        }
    }

    #[test]
    fn huge_values_cap_instead_of_overflowing() {
        let q = parse_quantity("99999999999999999999999999999999999999999999Ei").unwrap();
        assert_eq!(q.value(), i64::MAX);
        let q = parse_quantity("1e99999999999999").unwrap();
        assert_eq!(q.value(), i64::MAX);
        let q = parse_quantity("1e-99999999999").unwrap();
        assert_eq!(q.nanos(), 1);
        let q = parse_quantity("-8Ei").unwrap();
        assert_eq!(q.value(), -i64::MAX);
    }

    #[test]
    fn compares_by_value() {
        assert_eq!(
            parse_quantity("1Ki").unwrap(),
            parse_quantity("1024").unwrap()
        );
        assert!(parse_quantity("2").unwrap() > parse_quantity("500m").unwrap());
        assert!(parse_quantity("1Gi").unwrap() > parse_quantity("1G").unwrap());
    }

    #[test]
    fn helpers_format() {
        assert_eq!(format_milli(250), "250m");
        assert_eq!(format_milli(2000), "2");
        assert_eq!(format_bytes(536_870_912), "512Mi");
        assert_eq!(format_bytes(1000), "1000");
        assert_eq!(Quantity::from_bytes(1 << 30).bytes(), 1 << 30);
    }

    fn suffixes() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "", "n", "u", "m", "k", "M", "G", "T", "P", "Ki", "Mi", "Gi", "Ti", "e3", "e-3", "E6",
        ])
    }

    proptest! {
        #[test]
        fn canonical_form_round_trips(milli in -1_000_000_000_000i64..1_000_000_000_000, binary in any::<bool>()) {
            let q = if binary {
                Quantity::from_bytes(milli.unsigned_abs() as u128)
            } else {
                Quantity::from_milli(milli)
            };
            let text = q.to_string();
            let back = parse_quantity(&text).unwrap();
            prop_assert_eq!(back, q);
            // A binary quantity that is not a multiple of 1024 prints as a plain
            // number, which parses back as decimal: stable from then on.
            let canonical = back.to_string();
            prop_assert_eq!(parse_quantity(&canonical).unwrap().to_string(), canonical);
        }

        #[test]
        fn parse_then_print_is_stable(int in 0u32..1_000_000, frac in 0u32..1000, neg in any::<bool>(), suffix in suffixes()) {
            let text = format!("{}{int}.{frac:03}{suffix}", if neg { "-" } else { "" });
            let q = parse_quantity(&text).unwrap();
            let canonical = q.to_string();
            let again = parse_quantity(&canonical).unwrap();
            prop_assert_eq!(again, q);
            prop_assert_eq!(again.to_string(), canonical);
        }

        #[test]
        fn never_panics(s in "\\PC{0,40}") {
            let _ = parse_quantity(&s).map(|q| q.to_string());
        }

        #[test]
        fn integers_parse_exactly(v in any::<i64>()) {
            let q = parse_quantity(&v.to_string()).unwrap();
            prop_assert_eq!(q.value(), v.max(-i64::MAX));
        }
    }
}
