//! Reconnect backoff: start small, double, cap, reset after a good connection.

use std::time::{Duration, Instant};

/// First wait after a failure: short, so a blip costs almost nothing.
pub const START: Duration = Duration::from_millis(100);
/// Longest wait: an outage is retried at least this often.
pub const CAP: Duration = Duration::from_secs(10);

/// Doubling delays, and the outage they belong to (for "back after N s" log lines).
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    down_since: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: START,
            down_since: None,
        }
    }
}

impl Backoff {
    /// A fresh backoff.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a failure; returns the delay before the next try and whether this failure
    /// began an outage (so the caller logs once per outage, not once per try).
    pub fn failed(&mut self) -> (Duration, bool) {
        let first = self.down_since.is_none();
        self.down_since.get_or_insert_with(Instant::now);
        let delay = self.next;
        self.next = (self.next * 2).min(CAP);
        (delay, first)
    }

    /// Records a success; returns how long the outage lasted, if there was one.
    pub fn succeeded(&mut self) -> Option<Duration> {
        self.next = START;
        self.down_since.take().map(|t| t.elapsed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let mut b = Backoff::new();
        assert_eq!(b.failed(), (Duration::from_millis(100), true));
        assert_eq!(b.failed(), (Duration::from_millis(200), false));
        for _ in 0..10 {
            b.failed();
        }
        assert_eq!(b.failed().0, CAP);
        assert!(b.succeeded().is_some());
        assert_eq!(b.failed(), (START, true));
        assert!(Backoff::new().succeeded().is_none());
    }
}
