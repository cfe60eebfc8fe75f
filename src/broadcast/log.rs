//! The log driver: one info line per event, for development and audits.

use super::{BroadcastConfig, Broadcaster};
use crate::delivery::DeliveryError;
use crate::event::Alert;
use std::time::Duration;

/// Writes each event to the log.
pub struct LogBroadcaster {
    channel: String,
    event: String,
}

impl LogBroadcaster {
    /// A log driver naming the configured channel and event.
    pub fn new(config: &BroadcastConfig) -> Self {
        LogBroadcaster {
            channel: config.channel.clone(),
            event: config.event.clone(),
        }
    }
}

impl Broadcaster for LogBroadcaster {
    fn broadcast(&mut self, alert: &Alert, _timeout: Duration) -> Result<(), DeliveryError> {
        log::info!(
            "broadcast [{}] {} on {}: {}",
            alert.severity,
            self.event,
            self.channel,
            alert.event_data()
        );
        Ok(())
    }
}
