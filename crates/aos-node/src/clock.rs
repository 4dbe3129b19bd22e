//! Wall-clock time that follows tokio's clock, so that time logic runs under
//! `tokio::time::pause()` in tests and in real time in production.

/// Wall time anchored at creation and advanced by tokio's monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: jiff::Timestamp,
    mono: tokio::time::Instant,
}

impl Clock {
    /// A clock reading the current wall time now.
    pub fn new() -> Self {
        Self {
            wall: jiff::Timestamp::now(),
            mono: tokio::time::Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> jiff::Timestamp {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.mono);
        let span = jiff::SignedDuration::try_from(elapsed).unwrap_or(jiff::SignedDuration::MAX);
        self.wall.checked_add(span).unwrap_or(self.wall)
    }

    /// How long until `t` (zero when past).
    pub fn until(&self, t: jiff::Timestamp) -> std::time::Duration {
        let d = t.duration_since(self.now());
        std::time::Duration::try_from(d).unwrap_or_default()
    }

    /// How long since `t` (zero when in the future).
    pub fn since(&self, t: jiff::Timestamp) -> std::time::Duration {
        let d = self.now().duration_since(t);
        std::time::Duration::try_from(d).unwrap_or_default()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// `t` as `metav1.Time` (seconds precision, UTC).
pub fn format_time(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn follows_paused_time() {
        let c = Clock::new();
        let t0 = c.now();
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!(c.since(t0), Duration::from_secs(90));
        let later = t0 + jiff::SignedDuration::from_secs(100);
        assert_eq!(c.until(later), Duration::from_secs(10));
        assert_eq!(c.until(t0), Duration::ZERO);
        assert!(format_time(t0).ends_with('Z'));
    }
}
