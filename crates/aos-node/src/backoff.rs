//! The kubelet's crash-loop back-off: the first restart is immediate, then 10 s doubling to
//! 300 s; an entry untouched for 10 minutes (twice the maximum) starts over.

use std::time::Duration;

/// The first delay.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The largest delay.
pub const MAX: Duration = Duration::from_secs(300);

/// The back-off of one container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    entry: Option<(Duration, jiff::Timestamp)>,
}

impl Backoff {
    fn expired(&self, now: jiff::Timestamp) -> bool {
        match self.entry {
            Some((_, updated)) => {
                now.duration_since(updated)
                    > jiff::SignedDuration::try_from(2 * MAX).unwrap_or_default()
            }
            None => true,
        }
    }

    /// The current delay, if any.
    pub fn delay(&self) -> Option<Duration> {
        self.entry.map(|(d, _)| d)
    }

    /// Whether a container that finished at `finished` must still wait at `now`; if so, when
    /// the wait ends.
    pub fn waiting_until(
        &self,
        now: jiff::Timestamp,
        finished: jiff::Timestamp,
    ) -> Option<jiff::Timestamp> {
        if self.expired(now) {
            return None;
        }
        let (delay, _) = self.entry?;
        let until = finished + jiff::SignedDuration::try_from(delay).ok()?;
        (now < until).then_some(until)
    }

    /// Record a restart at `now`: the next delay doubles (or starts at [`INITIAL`]).
    pub fn next(&mut self, now: jiff::Timestamp) {
        let delay = match self.entry {
            Some((d, _)) if !self.expired(now) => (d * 2).min(MAX),
            _ => INITIAL,
        };
        self.entry = Some((delay, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn doubles_caps_and_resets() {
        let mut b = Backoff::default();
        // First crash: restart at once.
        assert_eq!(b.waiting_until(at(0), at(0)), None);
        b.next(at(0));
        assert_eq!(b.delay(), Some(Duration::from_secs(10)));
        // Second crash at t=1: wait until 11.
        assert_eq!(b.waiting_until(at(2), at(1)), Some(at(11)));
        assert_eq!(b.waiting_until(at(11), at(1)), None);
        b.next(at(11));
        assert_eq!(b.delay(), Some(Duration::from_secs(20)));
        let mut t = 11;
        for _ in 0..10 {
            t += 1;
            b.next(at(t));
        }
        assert_eq!(b.delay(), Some(MAX));
        // Ten minutes without a restart: back to the start.
        assert_eq!(b.waiting_until(at(t + 601), at(t + 600)), None);
        b.next(at(t + 601));
        assert_eq!(b.delay(), Some(INITIAL));
    }
}
