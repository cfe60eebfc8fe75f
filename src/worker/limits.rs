//! When a worker stops by itself: Laravel's `--once`, `--max-jobs`, `--max-time` and
//! `--stop-when-empty`, in one place, with what they imply for batch sizes and idle waits.

use std::time::Duration;

/// The worker's own stop conditions (a signal stops it too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Run one job, then stop; with nothing queued, wait at most `--sleep` for one.
    pub once: bool,
    /// Stop as soon as every queue is empty (nothing pending, delayed or reserved).
    pub stop_when_empty: bool,
    /// Stop after this many jobs.
    pub max_jobs: Option<u64>,
    /// Stop after this long (the job in hand finishes).
    pub max_time: Option<Duration>,
}

impl Limits {
    /// True once `handled` jobs in `elapsed` reach a limit.
    pub fn reached(&self, handled: u64, elapsed: Duration) -> bool {
        (self.once && handled >= 1)
            || self.max_jobs.is_some_and(|max| handled >= max)
            || self.max_time.is_some_and(|max| elapsed >= max)
    }

    /// How many jobs to reserve next: never more than the limits let the worker run, so no
    /// job is reserved only to be handed back.
    pub fn batch_size(&self, batch: usize, handled: u64) -> usize {
        let mut max = u64::try_from(batch).unwrap_or(u64::MAX);
        if self.once {
            max = 1;
        }
        if let Some(limit) = self.max_jobs {
            max = max.min(limit.saturating_sub(handled));
        }
        usize::try_from(max.max(1)).unwrap_or(1)
    }

    /// With nothing to run: true when the worker should stop now. `next_due` is how long
    /// until a delayed or reserved job comes back (`None`: the queues are empty).
    pub fn stop_when_idle(
        &self,
        next_due: Option<Duration>,
        elapsed: Duration,
        sleep: Duration,
    ) -> bool {
        (self.stop_when_empty && next_due.is_none()) || (self.once && elapsed >= sleep)
    }

    /// With nothing to run: how long to block for work. At most `sleep` (so a stop is seen),
    /// no longer than until a job comes back, and within `--max-time` and `--once`'s wait.
    pub fn idle_wait(
        &self,
        next_due: Option<Duration>,
        elapsed: Duration,
        sleep: Duration,
    ) -> Duration {
        let mut wait = next_due.map_or(sleep, |due| due.min(sleep));
        if let Some(max) = self.max_time {
            wait = wait.min(max.saturating_sub(elapsed));
        }
        if self.once {
            wait = wait.min(sleep.saturating_sub(elapsed));
        }
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn limits_are_reached() {
        let none = Limits::default();
        assert!(!none.reached(1_000_000, Duration::from_secs(86_400)));
        let once = Limits { once: true, ..none };
        assert!(!once.reached(0, S) && once.reached(1, S));
        let jobs = Limits {
            max_jobs: Some(3),
            ..none
        };
        assert!(!jobs.reached(2, S) && jobs.reached(3, S));
        let time = Limits {
            max_time: Some(S),
            ..none
        };
        assert!(!time.reached(0, S / 2) && time.reached(0, S));
    }

    #[test]
    fn batches_never_exceed_what_may_run() {
        let none = Limits::default();
        assert_eq!(none.batch_size(100, 0), 100);
        let once = Limits { once: true, ..none };
        assert_eq!(once.batch_size(100, 0), 1);
        let jobs = Limits {
            max_jobs: Some(10),
            ..none
        };
        assert_eq!(jobs.batch_size(100, 7), 3);
        assert_eq!(jobs.batch_size(100, 10), 1);
    }

    #[test]
    fn idle_waits_and_stops() {
        let none = Limits::default();
        let due = Some(Duration::from_millis(200));
        assert_eq!(none.idle_wait(None, S, S), S);
        assert_eq!(none.idle_wait(due, S, S), Duration::from_millis(200));
        assert!(!none.stop_when_idle(None, S, S));
        let empty = Limits {
            stop_when_empty: true,
            ..none
        };
        assert!(empty.stop_when_idle(None, Duration::ZERO, S));
        assert!(!empty.stop_when_idle(due, Duration::ZERO, S));
        let once = Limits { once: true, ..none };
        assert_eq!(once.idle_wait(None, S / 4, S), S * 3 / 4);
        assert!(once.stop_when_idle(None, S, S));
        let time = Limits {
            max_time: Some(S),
            ..none
        };
        assert_eq!(time.idle_wait(None, S * 3 / 4, S * 5), S / 4);
    }
}
