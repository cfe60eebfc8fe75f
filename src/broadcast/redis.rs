//! The redis driver: PUBLISH in exactly the format of Laravel's RedisBroadcaster, so
//! laravel-echo-server and Echo clients receive our events unchanged.

use super::{BroadcastConfig, Broadcaster};
use crate::delivery::DeliveryError;
use crate::event::Alert;
use crate::redis_conn::{self, RedisConfig, Router};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Events published, and how many subscribers received them in all (Redis answers PUBLISH
/// with its receiver count); for the operator, and for metrics.
static PUBLISHED: AtomicU64 = AtomicU64::new(0);
static RECEIVERS: AtomicU64 = AtomicU64::new(0);
static UNHEARD: AtomicU64 = AtomicU64::new(0);

/// What this process's redis driver has published: events, receivers reached in all, and
/// events that reached no subscriber. An event nobody heard counts as delivered (as in
/// Laravel: PUBLISH has no one to retry for), so this is where it shows.
pub fn published() -> (u64, u64, u64) {
    (
        PUBLISHED.load(Ordering::Relaxed),
        RECEIVERS.load(Ordering::Relaxed),
        UNHEARD.load(Ordering::Relaxed),
    )
}

/// Publishes events to a Redis channel; reconnects on the next event after a failure.
pub struct RedisBroadcaster {
    server: RedisConfig,
    channel: String,
    event: String,
    /// Made on the first event. It does not wait out a failover: a failed broadcast is
    /// retried by the queue, with the job's own backoff.
    router: Option<Router>,
    stats: (u64, u64, u64),
}

impl RedisBroadcaster {
    /// A driver for the configured Redis, channel (with its prefix) and event name.
    pub fn new(config: &BroadcastConfig) -> Self {
        RedisBroadcaster {
            server: config.redis.clone(),
            channel: format!("{}{}", config.redis_prefix, config.channel),
            event: config.event.clone(),
            router: None,
            stats: (0, 0, 0),
        }
    }
}

impl RedisBroadcaster {
    /// What this driver has published: events, receivers reached in all, events unheard.
    pub fn stats(&self) -> (u64, u64, u64) {
        self.stats
    }

    /// Counts a batch's receivers, and says at debug when an event reached nobody.
    fn count(&mut self, receivers: &[u64]) {
        let unheard = receivers.iter().filter(|n| **n == 0).count() as u64;
        let (events, reached) = (receivers.len() as u64, receivers.iter().sum::<u64>());
        PUBLISHED.fetch_add(events, Ordering::Relaxed);
        RECEIVERS.fetch_add(reached, Ordering::Relaxed);
        UNHEARD.fetch_add(unheard, Ordering::Relaxed);
        let (p, r, u) = self.stats;
        self.stats = (p + events, r + reached, u + unheard);
        if unheard > 0 {
            log::debug!(
                "{unheard} of {} event(s) on {} reached no subscriber",
                receivers.len(),
                self.channel
            );
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
        let io = timeout.min(redis_conn::IO_TIMEOUT);
        let router = self.router.get_or_insert_with(|| {
            Router::lazy(&self.server, redis_conn::IO_TIMEOUT).without_failover_wait()
        });
        let mut pipe = ::redis::pipe();
        for alert in alerts {
            pipe.cmd("PUBLISH")
                .arg(&self.channel)
                .arg(alert.redis_message(&self.event));
        }
        // In a cluster any node will do: PUBLISH reaches the subscribers of every node (the
        // receiver count is then the node's own).
        let result: Result<Vec<u64>, _> = router.run(None, |con| {
            con.set_read_timeout(Some(io))?;
            con.set_write_timeout(Some(io))?;
            pipe.query(con)
        });
        if let Ok(receivers) = &result {
            self.count(receivers);
        }
        let result = result
            .map(drop)
            .map_err(|e| DeliveryError::Retryable(e.to_string()));
        vec![result; alerts.len()]
    }
}
