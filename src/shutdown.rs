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
    pub fn on_signals() -> std::io::Result<Self> {
        let token = Shutdown::new();
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Registered first, so it sees the flag as it was before this signal set it.
            signal_hook::flag::register_conditional_shutdown(sig, 130, Arc::clone(&token.0))?;
            signal_hook::flag::register(sig, Arc::clone(&token.0))?;
        }
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
