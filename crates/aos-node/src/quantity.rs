//! Kubernetes resource quantities (`500m`, `1Gi`, `2`, `1e3`) as integers.

/// A quantity that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {0:?}")]
pub struct QuantityError(pub String);

/// Parse into thousandths of the unit (`"250m"` → 250, `"2"` → 2000): CPU in millicores.
pub fn parse_millis(s: &str) -> Result<u64, QuantityError> {
    let milli = parse_scaled(s, 1000)?;
    Ok(milli)
}

/// Parse into whole units, rounding up (`"1Gi"` → 1073741824): memory in bytes.
pub fn parse_units(s: &str) -> Result<u64, QuantityError> {
    parse_scaled(s, 1)
}

/// `s` × `scale`, rounded up to an integer.
fn parse_scaled(s: &str, scale: u128) -> Result<u64, QuantityError> {
    let bad = || QuantityError(s.to_owned());
    let t = s.trim();
    if t.is_empty() || t.starts_with('-') {
        return Err(bad());
    }
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+'))
        .unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    // (numerator, denominator) of the suffix multiplier.
    let (mul, div): (u128, u128) = match suffix {
        "" => (1, 1),
        "m" => (1, 1000),
        "k" => (1_000, 1),
        "M" => (1_000_000, 1),
        "G" => (1_000_000_000, 1),
        "T" => (1_000_000_000_000, 1),
        "P" => (1_000_000_000_000_000, 1),
        "Ki" => (1 << 10, 1),
        "Mi" => (1 << 20, 1),
        "Gi" => (1 << 30, 1),
        "Ti" => (1 << 40, 1),
        "Pi" => (1 << 50, 1),
        e if e.starts_with(['e', 'E']) => {
            let exp: u32 = e[1..].parse().map_err(|_| bad())?;
            if exp > 18 {
                return Err(bad());
            }
            (10u128.pow(exp), 1)
        }
        _ => return Err(bad()),
    };
    let num = num.trim_start_matches('+');
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(bad());
    }
    if frac.len() > 9 || int.len() > 20 {
        return Err(bad());
    }
    let int: u128 = if int.is_empty() {
        0
    } else {
        int.parse().map_err(|_| bad())?
    };
    let frac_den = 10u128.pow(frac.len() as u32);
    let frac: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().map_err(|_| bad())?
    };
    // value = (int + frac/frac_den) * mul / div * scale, rounded up.
    let numer = (int * frac_den + frac)
        .checked_mul(mul)
        .and_then(|v| v.checked_mul(scale))
        .ok_or_else(bad)?;
    let denom = frac_den * div;
    let v = numer.div_ceil(denom);
    u64::try_from(v).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let millis = [
            ("250m", 250),
            ("0.5", 500),
            ("2", 2000),
            ("1.5", 1500),
            ("100m", 100),
            ("0.0001", 1),
        ];
        for (s, want) in millis {
            assert_eq!(parse_millis(s), Ok(want), "{s}");
        }
        let units = [
            ("1Gi", 1 << 30),
            ("512Mi", 512 << 20),
            ("128974848", 128974848),
            ("129e6", 129_000_000),
            ("129M", 129_000_000),
            ("1.5Gi", 3 << 29),
            ("64k", 64_000),
        ];
        for (s, want) in units {
            assert_eq!(parse_units(s), Ok(want), "{s}");
        }
        for bad in ["", "-1", "1x", "Gi", "1.2.3"] {
            assert!(parse_units(bad).is_err(), "{bad}");
        }
    }
}
