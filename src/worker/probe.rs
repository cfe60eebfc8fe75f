//! `queue-work`'s probe for `/readyz` and its scrape-time figures: queue depths and the age
//! of the oldest pending job per queue (read at each scrape, a few commands per queue), and
//! failed jobs per queue (from PostgreSQL, at most every [`FAILED_CACHE`]).

use crate::config::Config;
use crate::db::failed;
use crate::metrics::probe::Servers;
use crate::metrics::server::Probe;
use crate::metrics::{Metrics, Queue as QueueLabel, QueueState};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long a failed-jobs count is reused: a scrape every second must not be a query every
/// second on the database.
const FAILED_CACHE: Duration = Duration::from_secs(5);

/// The worker's probe.
pub(super) struct WorkerProbe {
    servers: Servers,
    queues: Vec<String>,
    failed_read: Option<Instant>,
    /// Every queue that has had failed jobs, and the configured ones.
    failed_seen: Vec<String>,
}

impl WorkerProbe {
    pub(super) fn new(config: &Config, queues: &[String]) -> WorkerProbe {
        WorkerProbe {
            servers: Servers::new(&config.redis, &config.queue.prefix, &config.database),
            queues: queues.to_vec(),
            failed_read: None,
            failed_seen: queues.to_vec(),
        }
    }

    fn depths(&mut self, metrics: &Metrics) -> Result<(), String> {
        let now = time::OffsetDateTime::now_utc();
        let queue = self.servers.queue()?;
        for name in &self.queues {
            let sizes = queue.sizes(name).map_err(|e| e.to_string())?;
            for (state, n) in [
                ("pending", sizes.pending),
                ("delayed", sizes.delayed),
                ("reserved", sizes.reserved),
            ] {
                let labels = QueueState {
                    queue: name.clone(),
                    state: state.into(),
                };
                metrics.queue_jobs.get_or_create(&labels).set(n as f64);
            }
            let age = queue
                .oldest_pending_age(name, now)
                .map_err(|e| e.to_string())?;
            let label = QueueLabel {
                queue: name.clone(),
            };
            metrics
                .oldest_pending
                .get_or_create(&label)
                .set(age.unwrap_or(0.0));
        }
        Ok(())
    }

    fn failed(&mut self, metrics: &Metrics) -> Result<(), String> {
        if self
            .failed_read
            .is_some_and(|at| at.elapsed() < FAILED_CACHE)
        {
            return Ok(());
        }
        let counts = failed::counts(self.servers.db()?).map_err(|e| e.to_string())?;
        // A queue whose rows were all retried or forgotten reads 0, not its last count.
        let mut all: BTreeMap<String, u64> =
            self.failed_seen.iter().map(|q| (q.clone(), 0)).collect();
        all.extend(counts);
        self.failed_seen = all.keys().cloned().collect();
        metrics.set_failed_jobs(&all.into_iter().collect::<Vec<_>>());
        self.failed_read = Some(Instant::now());
        Ok(())
    }
}

impl Probe for WorkerProbe {
    fn refresh(&mut self, metrics: &Metrics) {
        // A server that is away leaves the last figures; `/readyz` says what is wrong.
        if self.depths(metrics).and(self.failed(metrics)).is_err() {
            self.servers.reset();
        }
    }

    fn ready(&mut self) -> Result<String, String> {
        self.servers.check()?;
        Ok("Redis and PostgreSQL answer".into())
    }
}
