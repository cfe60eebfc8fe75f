//! The null driver: accepts every event and sends it nowhere.

use super::Broadcaster;
use crate::delivery::DeliveryError;
use crate::event::Alert;
use std::time::Duration;

/// Discards events.
pub struct NullBroadcaster;

impl Broadcaster for NullBroadcaster {
    fn broadcast(&mut self, _alert: &Alert, _timeout: Duration) -> Result<(), DeliveryError> {
        Ok(())
    }
}
