//! Durations as Istio writes them: Go's `time.ParseDuration` syntax (`2s`, `30ms`, `1.5s`, `1h30m`),
//! parsed by `aos_types::duration` (the same parser admission validates with).

use std::time::Duration;

/// Parse `2s`, `30ms`, `1.5s`, `1m30s`, `250us`, `0`. Negative durations are rejected.
pub(crate) fn parse(s: &str) -> Result<Duration, String> {
    aos_types::duration::parse_duration(s.trim()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_durations() {
        let ok = [
            ("2s", Duration::from_secs(2)),
            ("30ms", Duration::from_millis(30)),
            ("1.5s", Duration::from_millis(1500)),
            ("1m30s", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
            ("250us", Duration::from_micros(250)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
        ];
        for (s, want) in ok {
            assert_eq!(parse(s), Ok(want), "{s}");
        }
        for bad in ["", "5", "-1s", "1x", "s", "1.2.3s"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
