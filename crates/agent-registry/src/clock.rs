//! Time sources.
//!
//! Every timestamp the service stores or compares (registration, heartbeats, expiry) comes from a
//! [`Clock`] held by the application state, so tests can drive TTL expiry and reaping without
//! waiting: [`ManualClock`] is set by hand, [`TokioClock`] follows tokio's clock and so obeys
//! `tokio::time::pause()` and `advance()`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// A source of the current wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// A shared, dynamically typed clock.
pub type SharedClock = Arc<dyn Clock>;

/// The system's wall clock: what production uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock anchored to the wall time at its creation that then advances with tokio's clock
/// (`tokio::time::Instant`). Under `tokio::time::pause()` it stands still until the test calls
/// `advance`, which moves it forward exactly as far as the timers.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall_base: Timestamp,
    instant_base: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `Timestamp::now()` at this instant of tokio's clock.
    pub fn new() -> Self {
        Self::starting_at(Timestamp::now())
    }

    /// A clock that reads `start` at this instant of tokio's clock.
    pub fn starting_at(start: Timestamp) -> Self {
        Self {
            wall_base: start,
            instant_base: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.instant_base);
        add(self.wall_base, elapsed)
    }
}

/// A clock that only moves when told to.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// A clock that reads `start` until it is advanced or set.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = add(*now, by);
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: Timestamp) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `t + d`, saturating at the largest representable timestamp.
fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// Milliseconds since the Unix epoch: the unit the database stores.
pub(crate) fn to_millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// The timestamp for milliseconds since the Unix epoch, clamped to the representable range.
pub(crate) fn from_millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn tokio_clock_follows_paused_time() {
        let start: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let clock = TokioClock::starting_at(start);
        assert_eq!(clock.now(), start);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert_eq!(
            clock.now(),
            "2025-01-01T00:00:31Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start: Timestamp = "2025-01-01T00:00:00Z".parse().unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(to_millis(clock.now()) - to_millis(start), 1500);
        clock.set(start);
        assert_eq!(clock.now(), start);
    }

    #[test]
    fn millis_round_trip() {
        let t: Timestamp = "2025-06-01T12:34:56.789Z".parse().unwrap();
        assert_eq!(from_millis(to_millis(t)), t);
        assert_eq!(from_millis(i64::MAX), Timestamp::MAX);
    }
}
