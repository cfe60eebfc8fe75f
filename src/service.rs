//! Rate a count, decide whether it is worth an alert, and dispatch the jobs that deliver it.

use crate::config::Config;
use crate::event::Alert;
use crate::queue::job::BROADCAST_KIND;
use crate::queue::{Job, Queue};
use crate::redis_conn::RedisError;

/// The key (under the queue prefix) whose absence tells the listener Redis lost its data.
const MARKER: &str = "listener:marker";

/// Turns counts into alerts and alerts into queued jobs.
pub struct Dispatcher {
    config: Config,
    queue: Queue,
}

impl Dispatcher {
    /// A dispatcher pushing onto the configured Redis queue.
    pub fn connect(config: &Config) -> Result<Dispatcher, RedisError> {
        Ok(Dispatcher {
            config: config.clone(),
            queue: Queue::connect(&config.redis_url, &config.queue.prefix)?,
        })
    }

    /// Rates `count`; returns the alert when it is at least the configured minimum severity.
    pub fn rate(&self, count: u64, source: &str) -> Option<Alert> {
        let alert = Alert::new(
            count,
            self.config.threshold,
            &self.config.boundaries,
            source,
        );
        (alert.severity >= self.config.min_severity).then_some(alert)
    }

    /// Sets the "Redis still has our data" marker; true when it was missing (first start, or
    /// Redis restarted without persistence or was flushed).
    pub fn claim_marker(&mut self) -> Result<bool, RedisError> {
        self.queue.claim_marker(MARKER)
    }

    /// Pushes one job per broadcast driver for `alert`, in one round trip.
    pub fn dispatch(&mut self, alert: &Alert) -> Result<Vec<Job>, RedisError> {
        self.dispatch_all(std::slice::from_ref(alert))
    }

    /// Pushes the jobs of several alerts, in order, in one round trip.
    pub fn dispatch_all(&mut self, alerts: &[Alert]) -> Result<Vec<Job>, RedisError> {
        let jobs: Vec<Job> = alerts
            .iter()
            .flat_map(|a| jobs_for(&self.config, a))
            .collect();
        self.queue.push(&self.config.queue.names[0], &jobs)?;
        Ok(jobs)
    }
}

/// The jobs that deliver `alert`: one per driver, so a slow driver never delays another.
pub fn jobs_for(config: &Config, alert: &Alert) -> Vec<Job> {
    let q = &config.queue;
    config
        .broadcast
        .drivers
        .iter()
        .map(|d| {
            let kind = format!("{BROADCAST_KIND}{}", d.as_str());
            Job::new(kind, alert.clone(), q.tries, q.backoff.clone(), q.timeout)
        })
        .collect()
}
