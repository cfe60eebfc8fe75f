//! The redis driver: PUBLISH in exactly the format of Laravel's RedisBroadcaster, so
//! laravel-echo-server and Echo clients receive our events unchanged.

use super::{BroadcastConfig, Broadcaster};
use crate::delivery::DeliveryError;
use crate::event::Alert;
use crate::redis_conn::{self, RedisConfig};
use std::time::Duration;

/// Publishes events to a Redis channel; reconnects on the next event after a failure.
pub struct RedisBroadcaster {
    server: RedisConfig,
    channel: String,
    event: String,
    con: Option<::redis::Connection>,
}

impl RedisBroadcaster {
    /// A driver for the configured Redis, channel (with its prefix) and event name.
    pub fn new(config: &BroadcastConfig) -> Self {
        RedisBroadcaster {
            server: config.redis.clone(),
            channel: format!("{}{}", config.redis_prefix, config.channel),
            event: config.event.clone(),
            con: None,
        }
    }
}

impl Broadcaster for RedisBroadcaster {
    fn broadcast(&mut self, alert: &Alert, timeout: Duration) -> Result<(), DeliveryError> {
        let mut results = self.broadcast_batch(std::slice::from_ref(alert), timeout);
        results.pop().unwrap_or(Ok(()))
    }

    /// All PUBLISHes in one pipeline: one round trip for the batch. On an error every alert
    /// of the batch is retried (some may then arrive twice: delivery is at least once).
    fn broadcast_batch(
        &mut self,
        alerts: &[Alert],
        timeout: Duration,
    ) -> Vec<Result<(), DeliveryError>> {
        let all = |result: Result<(), DeliveryError>| vec![result; alerts.len()];
        let io = timeout.min(redis_conn::IO_TIMEOUT);
        let retryable = |e: redis_conn::RedisError| DeliveryError::Retryable(e.to_string());
        let con = match &mut self.con {
            Some(con) => con,
            None => match redis_conn::connect_within(&self.server, io) {
                Ok(con) => self.con.insert(con),
                Err(e) => return all(Err(retryable(e))),
            },
        };
        let mut pipe = ::redis::pipe();
        for alert in alerts {
            pipe.cmd("PUBLISH")
                .arg(&self.channel)
                .arg(alert.redis_message(&self.event))
                .ignore();
        }
        let result: Result<(), _> = con
            .set_read_timeout(Some(io))
            .and_then(|()| con.set_write_timeout(Some(io)))
            .and_then(|()| pipe.query(con));
        all(result.map_err(|e| {
            // Drop the connection: after an error it may be half-read or dead.
            self.con = None;
            retryable(redis_conn::error(
                &redis_conn::describe(self.server.url.expose()),
                &e,
            ))
        }))
    }
}
