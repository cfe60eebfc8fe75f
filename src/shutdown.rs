//! A shutdown token: the binaries wire it to SIGINT/SIGTERM, loops check it between units of
//! work so the one in hand always finishes, and tests trigger it themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once when the process should stop; cheap to clone and check.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// A token that only [`Shutdown::trigger`] sets.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token set by the first SIGINT or SIGTERM. A second one ends the process at once
    /// (exit 130), for when the job in hand hangs.
    ///
    /// The first signal is also logged from a thread of its own, at once: the loop that will
    /// act on it may be busy with a job for a while, and the operator (or a test) should know
    /// the signal arrived.
    pub fn on_signals() -> std::io::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let token = Shutdown::new();
        for sig in [SIGINT, SIGTERM] {
            // Registered first, so it sees the flag as it was before this signal set it.
            signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&token.0))?;
            signal_hook::flag::register(sig, Arc::clone(&token.0))?;
        }
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    let name = if sig == SIGINT { "SIGINT" } else { "SIGTERM" };
                    log::info!(
                        "{name} received: stopping after the work in hand \
                         (send it again to stop at once)"
                    );
                }
            })?;
        Ok(token)
    }

    /// Asks every holder to stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once a stop was asked for.
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}
