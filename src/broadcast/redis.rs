//! The redis driver: PUBLISH in exactly the format of Laravel's RedisBroadcaster, so
//! laravel-echo-server and Echo clients receive our events unchanged.

use super::{BroadcastError, Broadcaster};
use crate::config::BroadcastConfig;
use crate::event::Alert;
use crate::redis_conn;

/// Publishes events to a Redis channel; reconnects on the next event after a failure.
pub struct RedisBroadcaster {
    url: String,
    channel: String,
    event: String,
    con: Option<::redis::Connection>,
}

impl RedisBroadcaster {
    /// A driver for the configured Redis, channel (with its prefix) and event name.
    pub fn new(config: &BroadcastConfig) -> Self {
        RedisBroadcaster {
            url: config.redis_url.clone(),
            channel: format!("{}{}", config.redis_prefix, config.channel),
            event: config.event.clone(),
            con: None,
        }
    }
}

impl Broadcaster for RedisBroadcaster {
    fn broadcast(&mut self, alert: &Alert) -> Result<(), BroadcastError> {
        let con = match &mut self.con {
            Some(con) => con,
            None => {
                let con = redis_conn::connect(&self.url)
                    .map_err(|e| BroadcastError::Retryable(e.to_string()))?;
                self.con.insert(con)
            }
        };
        let message = alert.redis_message(&self.event);
        let result: Result<i64, _> = ::redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(message)
            .query(con);
        result.map(drop).map_err(|e| {
            // Drop the connection: after an error it may be half-read or dead.
            self.con = None;
            BroadcastError::Retryable(
                redis_conn::error(&redis_conn::describe(&self.url), &e).to_string(),
            )
        })
    }
}
