//! Broadcast drivers: where an alert's event goes. One file per driver.

mod log;
mod null;
pub mod pusher;
mod redis;

pub use self::log::LogBroadcaster;
pub use self::null::NullBroadcaster;
pub use self::pusher::PusherBroadcaster;
pub use self::redis::RedisBroadcaster;

use crate::config::{BroadcastConfig, Driver};
use crate::event::Alert;
use std::time::Duration;

/// Why a broadcast failed, and whether trying again can help.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BroadcastError {
    /// A passing fault (connection, timeout, 5xx): retry with backoff.
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help (rejected credentials, payload too large): fail at once.
    #[error("{0}")]
    Permanent(String),
}

impl BroadcastError {
    /// True when a retry may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BroadcastError::Retryable(_))
    }
}

/// Sends alerts' events somewhere.
pub trait Broadcaster: Send {
    /// Broadcasts one alert's event. Every network call inside must give up within
    /// `timeout` (the job's own deadline) with a retryable error.
    fn broadcast(&mut self, alert: &Alert, timeout: Duration) -> Result<(), BroadcastError>;

    /// Broadcasts several alerts, in order; one result per alert. Drivers that can send a
    /// batch in one round trip (redis) override this.
    fn broadcast_batch(
        &mut self,
        alerts: &[Alert],
        timeout: Duration,
    ) -> Vec<Result<(), BroadcastError>> {
        alerts.iter().map(|a| self.broadcast(a, timeout)).collect()
    }
}

/// Builds the broadcaster for `driver`. Connections are opened lazily, on first use.
pub fn build(driver: Driver, config: &BroadcastConfig) -> Box<dyn Broadcaster> {
    match driver {
        Driver::Redis => Box::new(RedisBroadcaster::new(config)),
        Driver::Pusher => Box::new(PusherBroadcaster::new(config)),
        Driver::Log => Box::new(LogBroadcaster::new(config)),
        Driver::Null => Box::new(NullBroadcaster),
    }
}
