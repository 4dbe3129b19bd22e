//! Go-style durations as Istio writes them (`2s`, `30ms`, `1m`, `1h30m`, `1.5s`).

use std::time::Duration;

/// A duration that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The text is empty.
    #[error("empty duration")]
    Empty,
    /// A negative duration where only non-negative ones make sense.
    #[error("duration must not be negative")]
    Negative,
    /// A number without a unit, or an unknown unit.
    #[error(
        "invalid duration {0:?}: expected a number and a unit (ns, us, ms, s, m, h), e.g. 2s or 1h30m"
    )]
    Invalid(String),
    /// More than about 292 years.
    #[error("duration {0:?} is too large")]
    Overflow(String),
}

/// Parse a Go duration: one or more `<number><unit>` terms, units `ns`, `us`
/// (or `µs`), `ms`, `s`, `m`, `h`; the number may have a fraction. `"0"` alone is zero.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let invalid = || DurationError::Invalid(s.to_string());
    let overflow = || DurationError::Overflow(s.to_string());
    let mut rest = s;
    if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    } else if let Some(r) = rest.strip_prefix('-') {
        // Go accepts "-0s"; anything else negative is rejected.
        if parse_duration(r)?.is_zero() {
            return Ok(Duration::ZERO);
        }
        return Err(DurationError::Negative);
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0; // nanoseconds
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int_part, after) = rest.split_at(int_end);
        let (frac_part, after) = match after.strip_prefix('.') {
            Some(a) => {
                let end = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                a.split_at(end)
            }
            None => ("", after),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(invalid());
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(invalid()),
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| overflow())?
        };
        let mut value = whole.checked_mul(unit_nanos).ok_or_else(overflow)?;
        // The fraction, to nanosecond precision (further digits are dropped, as Go does).
        let mut scale = unit_nanos;
        for d in frac_part.bytes() {
            if scale < 10 {
                break;
            }
            scale /= 10;
            value += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(value).ok_or_else(overflow)?;
        if total > u128::from(i64::MAX as u64) {
            return Err(overflow());
        }
        rest = after;
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Format like Go's `Duration.String`: `1h30m0s`, `2s`, `1.5s`, `30ms`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1u128)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fraction(nanos, scale));
    }
    let total_secs = nanos / 1_000_000_000;
    let sub = nanos % 1_000_000_000;
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let secs = total_secs % 60;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&fraction(
        u128::from(secs as u64) * 1_000_000_000 + sub,
        1_000_000_000,
    ));
    out.push('s');
    out
}

fn fraction(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let mut frac = value % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let mut digits = String::new();
    let mut s = scale;
    while frac > 0 && s > 1 {
        s /= 10;
        digits.push(char::from(b'0' + (frac / s) as u8));
        frac %= s;
    }
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_go_durations() {
        let cases: &[(&str, u64)] = &[
            ("2s", 2_000_000_000),
            ("30ms", 30_000_000),
            ("1m", 60_000_000_000),
            ("1h", 3_600_000_000_000),
            ("1.5s", 1_500_000_000),
            (".5s", 500_000_000),
            ("1h30m", 5_400_000_000_000),
            ("1m30.5s", 90_500_000_000),
            ("7200s", 7_200_000_000_000),
            ("75s", 75_000_000_000),
            ("100us", 100_000),
            ("100µs", 100_000),
            ("10ns", 10),
            ("0", 0),
            ("0s", 0),
            ("-0s", 0),
            ("+5s", 5_000_000_000),
            ("1.0000000001s", 1_000_000_000),
        ];
        for (input, nanos) in cases {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_nanos(*nanos)),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for input in [
            "", "s", "5", "1d", "1.s.", "abc", "1 s", "5S", "-1s", "..s", "1e3s",
        ] {
            assert!(parse_duration(input).is_err(), "{input:?}");
        }
        assert_eq!(parse_duration("-1s"), Err(DurationError::Negative));
        assert!(matches!(
            parse_duration("99999999999999999999h"),
            Err(DurationError::Overflow(_))
        ));
        assert!(matches!(
            parse_duration("3000000h"),
            Err(DurationError::Overflow(_))
        ));
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (2_000_000_000, "2s"),
            (1_500_000_000, "1.5s"),
            (30_000_000, "30ms"),
            (5_400_000_000_000, "1h30m0s"),
            (61_000_000_000, "1m1s"),
            (1_500, "1.5µs"),
            (7, "7ns"),
        ];
        for (nanos, want) in cases {
            assert_eq!(format_duration(Duration::from_nanos(*nanos)), *want);
        }
    }

    proptest! {
        #[test]
        fn format_round_trips(nanos in 0u64..(i64::MAX as u64)) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }

        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = parse_duration(&s);
        }
    }
}
