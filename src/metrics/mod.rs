//! Prometheus metrics of the daemons: what `queue-work` ran (jobs, run and wait times, queue
//! depth, failed jobs, PUBLISH receivers) and what `items-listen` rated (notifications,
//! alerts, the count, its state), with build info and process CPU and memory; served with the
//! health checks by [`server`]. Recording is a few atomic operations per job.

mod labels;
pub mod probe;
mod process;
pub mod server;

pub use labels::*;

use crate::event::Alert;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Every metric of one process (a daemon registers the ones it serves).
pub struct Metrics {
    registry: Registry,
    /// `inventory_jobs_total{queue,kind,outcome}`.
    pub jobs: Family<JobLabels, Counter>,
    /// `inventory_job_duration_seconds{queue,kind}`.
    pub job_duration: Family<KindLabels, Histogram>,
    /// `inventory_job_wait_seconds{queue}`.
    pub job_wait: Family<Queue, Histogram>,
    /// `inventory_queue_jobs{queue,state}`, read at scrape time.
    pub queue_jobs: Family<QueueState, Gauge<f64, AtomicU64>>,
    /// `inventory_queue_oldest_pending_seconds{queue}`, read at scrape time.
    pub oldest_pending: Family<Queue, Gauge<f64, AtomicU64>>,
    /// `inventory_failed_jobs{queue}`, from PostgreSQL, cached.
    pub failed_jobs: Family<Queue, Gauge>,
    /// `inventory_broadcast_receivers_total{driver}`.
    pub receivers: Family<DriverLabel, Counter>,
    /// `inventory_notifications_total{result}`.
    pub notifications: Family<ResultLabel, Counter>,
    /// `inventory_alerts_total{severity}`.
    pub alerts: Family<SeverityLabel, Counter>,
    /// `inventory_item_count`.
    pub item_count: Gauge,
    /// `inventory_item_threshold`.
    pub item_threshold: Gauge,
    /// `inventory_listener_active`: 1 active, 0 standby.
    pub listener_active: Gauge,
    /// `inventory_logical_slot_lag_bytes`: WAL written since the logical source's confirmed
    /// position (only with `INVENTORY_SOURCE=logical`), read at scrape time.
    pub slot_lag_bytes: Gauge<f64, AtomicU64>,
    /// `inventory_logical_slot_lag_seconds`: since the listener last confirmed it had read
    /// everything.
    pub slot_lag_seconds: Gauge<f64, AtomicU64>,
    /// `inventory_reconnects_total{server}`.
    pub reconnects: Family<ServerLabel, Counter>,
    /// When the process loop last went round (ms since the epoch): `/healthz` reads it.
    alive_ms: AtomicU64,
    /// PUBLISH receivers already counted into `receivers`.
    receivers_seen: AtomicU64,
    /// CPU and memory, refreshed at scrape time.
    process: process::Process,
}

/// Which daemon: each serves its own metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    /// `queue-work`: jobs and queues.
    Worker,
    /// `items-listen`: notifications, alerts, the count.
    Listener,
}

impl Metrics {
    /// The metrics `daemon` serves, registered and at zero.
    pub fn new(daemon: Daemon) -> Metrics {
        let seconds = || Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let waits = || Histogram::new(exponential_buckets(0.001, 4.0, 12));
        let mut m = Metrics {
            registry: Registry::with_prefix("inventory"),
            jobs: Family::default(),
            job_duration: Family::new_with_constructor(seconds),
            job_wait: Family::new_with_constructor(waits),
            queue_jobs: Family::default(),
            oldest_pending: Family::default(),
            failed_jobs: Family::default(),
            receivers: Family::default(),
            notifications: Family::default(),
            alerts: Family::default(),
            item_count: Gauge::default(),
            item_threshold: Gauge::default(),
            listener_active: Gauge::default(),
            slot_lag_bytes: Gauge::default(),
            slot_lag_seconds: Gauge::default(),
            reconnects: Family::default(),
            alive_ms: AtomicU64::new(crate::clock::now_ms()),
            receivers_seen: AtomicU64::new(0),
            process: process::Process::default(),
        };
        m.register(daemon);
        m
    }

    fn register(&mut self, daemon: Daemon) {
        let r = &mut self.registry;
        let build: Family<VersionLabel, Gauge> = Family::default();
        let version = VersionLabel {
            version: env!("CARGO_PKG_VERSION").to_string(),
        };
        build.get_or_create(&version).set(1);
        r.register("build_info", "The running version (always 1)", build);
        r.register(
            "reconnects",
            "Connections re-established after a loss",
            self.reconnects.clone(),
        );
        self.process.register(r);
        match daemon {
            Daemon::Worker => {
                r.register(
                    "jobs",
                    "Jobs ended, by outcome (done, retried, failed)",
                    self.jobs.clone(),
                );
                r.register(
                    "job_duration_seconds",
                    "Run time of an attempt",
                    self.job_duration.clone(),
                );
                r.register(
                    "job_wait_seconds",
                    "From a job's creation to its first attempt",
                    self.job_wait.clone(),
                );
                r.register(
                    "queue_jobs",
                    "Jobs in a queue, by state",
                    self.queue_jobs.clone(),
                );
                r.register(
                    "queue_oldest_pending_seconds",
                    "Age of the job at the head of pending",
                    self.oldest_pending.clone(),
                );
                r.register(
                    "failed_jobs",
                    "Rows in failed_jobs, by queue",
                    self.failed_jobs.clone(),
                );
                r.register(
                    "broadcast_receivers",
                    "Subscribers reached by PUBLISH, in all",
                    self.receivers.clone(),
                );
            }
            Daemon::Listener => {
                r.register(
                    "notifications",
                    "Counts rated (signed notifications, the count at start), and notifications ignored",
                    self.notifications.clone(),
                );
                r.register("alerts", "Counts rated, by severity", self.alerts.clone());
                r.register(
                    "item_count",
                    "The count last rated",
                    self.item_count.clone(),
                );
                r.register(
                    "item_threshold",
                    "The configured threshold",
                    self.item_threshold.clone(),
                );
                r.register(
                    "listener_active",
                    "1 while this listener is the active one, 0 on standby",
                    self.listener_active.clone(),
                );
                r.register(
                    "logical_slot_lag_bytes",
                    "WAL written since the logical source's confirmed position",
                    self.slot_lag_bytes.clone(),
                );
                r.register(
                    "logical_slot_lag_seconds",
                    "Seconds since the logical source last confirmed it had read everything",
                    self.slot_lag_seconds.clone(),
                );
            }
        }
    }

    /// Creates the worker's series at zero, so a first failure is an increase that
    /// `increase()` and alert rules see, and a rate is 0 rather than absent: every queue with
    /// every kind the configuration can queue and every outcome.
    pub fn start_worker(&self, queues: &[String], kinds: &[String], publishes: bool) {
        for queue in queues {
            for kind in kinds {
                for outcome in ["done", "retried", "failed"] {
                    let labels = JobLabels {
                        queue: queue.clone(),
                        kind: kind.clone(),
                        outcome: outcome.into(),
                    };
                    let _created = self.jobs.get_or_create(&labels);
                }
            }
            let label = Queue {
                queue: queue.clone(),
            };
            let _created = self.failed_jobs.get_or_create(&label);
        }
        if publishes {
            let driver = DriverLabel {
                driver: "redis".into(),
            };
            let _created = self.receivers.get_or_create(&driver);
        }
        self.start_common();
    }

    /// Creates the listener's series at zero (see [`Metrics::start_worker`]).
    pub fn start_listener(&self, threshold: u64) {
        for result in ["rated", "skipped"] {
            let label = ResultLabel {
                result: result.into(),
            };
            let _created = self.notifications.get_or_create(&label);
        }
        for severity in ["info", "warning", "high", "critical"] {
            let label = SeverityLabel {
                severity: severity.into(),
            };
            let _created = self.alerts.get_or_create(&label);
        }
        self.item_threshold
            .set(i64::try_from(threshold).unwrap_or(i64::MAX));
        self.start_common();
    }

    fn start_common(&self) {
        for server in ["postgres", "redis"] {
            let label = ServerLabel {
                server: server.into(),
            };
            let _created = self.reconnects.get_or_create(&label);
        }
    }

    /// Sets the failed-job gauges to `counts` (the caller includes the queues that have none
    /// any more, at 0).
    pub fn set_failed_jobs(&self, counts: &[(String, u64)]) {
        for (queue, n) in counts {
            let label = Queue {
                queue: queue.clone(),
            };
            self.failed_jobs
                .get_or_create(&label)
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    /// The process loop went round: `/healthz` stays 200.
    pub fn tick(&self) {
        self.alive_ms
            .store(crate::clock::now_ms(), Ordering::Relaxed);
    }

    /// How long since the loop last went round.
    pub fn since_tick(&self) -> Duration {
        let last = self.alive_ms.load(Ordering::Relaxed);
        Duration::from_millis(crate::clock::now_ms().saturating_sub(last))
    }

    /// A job's end: counted by outcome, its run time observed.
    pub fn job_ended(&self, queue: &str, kind: &str, outcome: &str, ran: Duration) {
        let labels = JobLabels {
            queue: queue.to_string(),
            kind: kind.to_string(),
            outcome: outcome.to_string(),
        };
        self.jobs.get_or_create(&labels).inc();
        let kind = KindLabels {
            queue: labels.queue,
            kind: labels.kind,
        };
        self.job_duration
            .get_or_create(&kind)
            .observe(ran.as_secs_f64());
    }

    /// A job's first attempt started `waited` after it was created.
    pub fn job_waited(&self, queue: &str, waited: Duration) {
        let queue = Queue {
            queue: queue.to_string(),
        };
        self.job_wait
            .get_or_create(&queue)
            .observe(waited.as_secs_f64());
    }

    /// A count was rated.
    pub fn rated(&self, alert: &Alert) {
        let result = ResultLabel {
            result: "rated".into(),
        };
        self.notifications.get_or_create(&result).inc();
        let severity = SeverityLabel {
            severity: alert.severity.as_str().into(),
        };
        self.alerts.get_or_create(&severity).inc();
        self.item_count
            .set(i64::try_from(alert.count).unwrap_or(i64::MAX));
        self.item_threshold
            .set(i64::try_from(alert.threshold).unwrap_or(i64::MAX));
    }

    /// This listener became the active one (`true`) or waits on standby.
    pub fn set_active(&self, active: bool) {
        self.listener_active.set(i64::from(active));
    }

    /// A notification found no new change (forged, or read together with an earlier one).
    pub fn skipped(&self) {
        let result = ResultLabel {
            result: "skipped".into(),
        };
        self.notifications.get_or_create(&result).inc();
    }

    /// A connection to `server` (`postgres`, `redis`) was re-established.
    pub fn reconnected(&self, server: &str) {
        let label = ServerLabel {
            server: server.into(),
        };
        self.reconnects.get_or_create(&label).inc();
    }

    /// The text Prometheus scrapes (OpenMetrics), with the process and receiver figures
    /// brought up to date first.
    pub fn encode(&self) -> String {
        self.process.refresh();
        let (_, reached, _) = crate::broadcast::published();
        let new = reached.saturating_sub(self.receivers_seen.swap(reached, Ordering::Relaxed));
        if new > 0 {
            let driver = DriverLabel {
                driver: "redis".into(),
            };
            self.receivers.get_or_create(&driver).inc_by(new);
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
