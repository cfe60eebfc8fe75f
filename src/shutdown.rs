//! A shutdown token: the binaries wire it to SIGINT/SIGTERM, loops check it between units of
//! work so the one in hand always finishes, and waits ([`Shutdown::sleep`]) end the moment it
//! is set. Tests trigger it themselves.
//!
//! A loop blocked in a server call (Redis `BLPOP`, a wait for a NOTIFY) is not woken by the
//! token: it sees it when the call returns, so a stop takes at most one blocking timeout
//! (`--sleep` for the worker, 200 ms for the listener).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Inner {
    /// Set by [`Shutdown::trigger`] and, directly from the signal handler, by a signal.
    flag: Arc<AtomicBool>,
    /// Sleepers wait on it; it is notified after the flag is set.
    lock: Mutex<()>,
    wake: Condvar,
}

/// Set once when the process should stop; cheap to clone and check.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<Inner>);

impl Shutdown {
    /// A token that only [`Shutdown::trigger`] sets.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token set by the first SIGINT or SIGTERM. A second one ends the process at once
    /// (exit 130), for when the job in hand hangs.
    ///
    /// The signal handler only sets the flag (all a handler may safely do); a thread of its
    /// own then wakes the sleepers and logs the signal at once, since the loop that will act on
    /// it may be busy with a job for a while, and the operator (or a test) should know it
    /// arrived.
    pub fn on_signals() -> std::io::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let token = Shutdown::new();
        let flag = &token.0.flag;
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag as it was before this signal set it.
            signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(flag))?;
            signal_hook::flag::register(sig, Arc::clone(flag))?;
        }
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let waker = token.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                    log::info!(
                        "{name} received: stopping after the work in hand \
                         (send it again to stop at once)"
                    );
                    waker.trigger();
                }
            })?;
        Ok(token)
    }

    /// Asks every holder to stop, and wakes every [`Shutdown::sleep`].
    pub fn trigger(&self) {
        self.0.flag.store(true, Ordering::SeqCst);
        // Taking the lock orders this notify after a sleeper's check of the flag.
        let _guard = self.0.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.0.wake.notify_all();
    }

    /// True once a stop was asked for.
    pub fn requested(&self) -> bool {
        self.0.flag.load(Ordering::SeqCst)
    }

    /// Waits `duration`, or less if a stop is asked for meanwhile; true when it was.
    pub fn sleep(&self, duration: Duration) -> bool {
        let end = Instant::now().checked_add(duration);
        let mut guard = self.0.lock.lock().unwrap_or_else(|p| p.into_inner());
        while !self.requested() {
            let left = match end {
                Some(end) => end.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                break;
            }
            guard = match self.0.wake.wait_timeout(guard, left) {
                Ok((guard, _)) => guard,
                Err(p) => p.into_inner().0,
            };
        }
        self.requested()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_runs_its_course_without_a_stop() {
        let s = Shutdown::new();
        let started = Instant::now();
        assert!(!s.sleep(Duration::from_millis(30)));
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn a_trigger_ends_a_long_sleep_at_once() {
        let s = Shutdown::new();
        let other = s.clone();
        let started = Instant::now();
        let sleeper = std::thread::spawn(move || other.sleep(Duration::from_secs(3600)));
        s.trigger();
        assert!(sleeper.join().expect("sleeper thread"));
        assert!(started.elapsed() < Duration::from_secs(60));
        // Once set, a sleep returns at once.
        assert!(s.sleep(Duration::from_secs(3600)));
    }
}
