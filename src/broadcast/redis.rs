//! The redis driver: PUBLISH in exactly the format of Laravel's RedisBroadcaster, so
//! laravel-echo-server and Echo clients receive our events unchanged.

use super::{BroadcastError, Broadcaster};
use crate::config::BroadcastConfig;
use crate::event::Alert;
use crate::redis_conn;
use std::time::Duration;

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
    fn broadcast(&mut self, alert: &Alert, timeout: Duration) -> Result<(), BroadcastError> {
        let io = timeout.min(redis_conn::IO_TIMEOUT);
        let retryable = |e: redis_conn::RedisError| BroadcastError::Retryable(e.to_string());
        let con = match &mut self.con {
            Some(con) => con,
            None => self
                .con
                .insert(redis_conn::connect_within(&self.url, io).map_err(retryable)?),
        };
        let message = alert.redis_message(&self.event);
        let result: Result<i64, _> = con
            .set_read_timeout(Some(io))
            .and_then(|()| con.set_write_timeout(Some(io)))
            .and_then(|()| {
                ::redis::cmd("PUBLISH")
                    .arg(&self.channel)
                    .arg(message)
                    .query(con)
            });
        result.map(drop).map_err(|e| {
            // Drop the connection: after an error it may be half-read or dead.
            self.con = None;
            retryable(redis_conn::error(&redis_conn::describe(&self.url), &e))
        })
    }
}
