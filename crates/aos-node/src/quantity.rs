//! Kubernetes resource quantities (`500m`, `1Gi`, `2`, `1e3`) as integers.

/// A quantity that does not parse, or that is negative where a size is needed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {0:?}")]
pub struct QuantityError(pub String);

/// Parse into thousandths of the unit (`"250m"` → 250, `"2"` → 2000): CPU in millicores.
pub fn parse_millis(s: &str) -> Result<u64, QuantityError> {
    non_negative(s, |q| q.milli_value())
}

/// Parse into whole units, rounding up (`"1Gi"` → 1073741824): memory in bytes.
pub fn parse_units(s: &str) -> Result<u64, QuantityError> {
    non_negative(s, |q| q.value())
}

/// The project's one quantity parser (`aos_types::quantity`), as an unsigned amount.
fn non_negative(
    s: &str,
    amount: impl Fn(&aos_types::quantity::Quantity) -> i64,
) -> Result<u64, QuantityError> {
    let bad = || QuantityError(s.to_owned());
    let q = aos_types::quantity::parse_quantity(s.trim()).map_err(|_| bad())?;
    if q.is_negative() {
        return Err(bad());
    }
    u64::try_from(amount(&q)).map_err(|_| bad())
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
