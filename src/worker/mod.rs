//! `queue-work`: reserve a batch of jobs, run each with a deadline, and acknowledge, retry or
//! fail each one; stop on a signal or on a [`Limits`] (`--once`, `--max-jobs`, `--max-time`,
//! `--stop-when-empty`).
//!
//! This file is the run loop (reserve, wait, reconnect); [`batch`] runs a reserved batch, and
//! `attempt` runs one job and turns its result into an outcome.

mod attempt;
mod batch;
pub mod executor;
mod limits;
mod probe;

pub use attempt::effective_timeout;
pub use limits::Limits;

use self::executor::{Executor, MAX_ABANDONED};
use crate::backoff::Backoff;
use crate::broadcast::Driver;
use crate::config::Config;
use crate::db::recorder::Recorder;
use crate::heartbeat::Heartbeat;
use crate::metrics::{Daemon, Metrics};
use crate::queue::job::Kind;
use crate::queue::registry::WorkerInfo;
use crate::queue::{Queue, Reserved, Tally};
use crate::redis_conn::RedisError;
use crate::shutdown::Shutdown;
use log::{debug, info, warn};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the worker does and when it stops by itself (besides a signal).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Queues to take jobs from, highest priority first.
    pub queues: Vec<String>,
    /// When to stop by itself.
    pub limits: Limits,
    /// Shown in log lines and in `status`.
    pub name: Option<String>,
    /// Settings given to the worker that win over the ones each job was queued with.
    pub overrides: Overrides,
}

/// Which of the worker's queue settings replace the job's own (as `queue:work --tries` does
/// for an operator who must change a policy without re-queueing).
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    /// Use the worker's `queue.tries`.
    pub tries: bool,
    /// Use the worker's `queue.backoff`.
    pub backoff: bool,
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Jobs that ran to completion.
    pub done: u64,
    /// Jobs released for a retry.
    pub retried: u64,
    /// Jobs recorded in `failed_jobs`.
    pub failed: u64,
}

impl Summary {
    fn handled(&self) -> u64 {
        self.done + self.retried + self.failed
    }
}

/// Why the worker could not run or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Redis could not be reached at start (later outages are waited out).
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The metrics address could not be served.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::server::ServeError),
    /// Too many abandoned job threads are still running.
    #[error(
        "{0} timed-out jobs are still running in the background (a driver ignores its \
         deadline); stopping so a supervisor can start a clean worker"
    )]
    Stuck(usize),
}

/// Runs jobs until a stop condition in `opts` or `shutdown`.
///
/// Fails at once when Redis cannot be reached at start; once running, it reconnects by itself.
pub fn run(config: &Config, opts: &Options, shutdown: &Shutdown) -> Result<Summary, WorkerError> {
    let mut queue = Queue::connect(&config.redis, &config.queue.prefix)?;
    queue.stop_on(shutdown);
    let drivers: Vec<&str> = config
        .broadcast
        .drivers
        .iter()
        .map(|d| d.as_str())
        .collect();
    let tag = opts
        .name
        .as_ref()
        .map_or_else(String::new, |n| format!("[{n}] "));
    info!(
        "{tag}working queue(s) {} at {} with driver(s) {}",
        opts.queues.join(","),
        queue.target(),
        drivers.join(",")
    );
    let metrics = serve_metrics(config, &opts.queues)?;
    let info = WorkerInfo::new(opts.name.clone(), opts.queues.clone());
    let heartbeat = Heartbeat::start(&config.redis, &config.queue.prefix, info);
    let mut worker = Worker {
        queue,
        executor: Executor::new(config),
        config: config.clone(),
        overrides: opts.overrides,
        failed: Recorder::new(&config.database),
        redis: Backoff::new(),
        summary: Summary::default(),
        tally: Tally::default(),
        heartbeat,
        tag,
        metrics,
    };
    let result = worker.run(opts, shutdown);
    worker.heartbeat.stop();
    result.map(|()| worker.summary)
}

struct Worker {
    config: Config,
    overrides: Overrides,
    queue: Queue,
    executor: Executor,
    /// Where failed jobs go (connects when the first one fails).
    failed: Recorder,
    redis: Backoff,
    summary: Summary,
    /// What the batch in hand did, for the per-minute counters ([`crate::queue::stats`]).
    tally: Tally,
    heartbeat: Heartbeat<WorkerInfo>,
    /// `[name] ` or nothing: the start of every per-job line.
    tag: String,
    /// Recorded when `--metrics-addr` serves them.
    metrics: Option<Arc<Metrics>>,
}

/// Starts the metrics server when an address is configured.
fn serve_metrics(config: &Config, queues: &[String]) -> Result<Option<Arc<Metrics>>, WorkerError> {
    let Some(addr) = config.metrics_addr else {
        return Ok(None);
    };
    let metrics = Arc::new(Metrics::new(Daemon::Worker));
    let mut kinds: Vec<String> = config
        .broadcast
        .drivers
        .iter()
        .map(|d| Kind::Broadcast(*d).to_string())
        .collect();
    kinds.extend(
        crate::service::enabled(config)
            .iter()
            .map(|(channel, _)| Kind::Notify(*channel).to_string()),
    );
    let publishes = config.broadcast.drivers.contains(&Driver::Redis);
    metrics.start_worker(queues, &kinds, publishes);
    let probe = Box::new(probe::WorkerProbe::new(config, queues));
    // A job in hand (up to its timeout) or a blocking wait (up to --sleep) is not a stall.
    let stall_after = Duration::from_secs(config.queue.timeout)
        + Duration::from_secs_f64(config.queue.sleep)
        + STALL_MARGIN;
    crate::metrics::server::serve(addr, Arc::clone(&metrics), probe, stall_after)?;
    Ok(Some(metrics))
}

/// Slack added to the longest legitimate pause of the loop before `/healthz` calls it stuck.
const STALL_MARGIN: Duration = Duration::from_secs(10);

impl Worker {
    fn run(&mut self, opts: &Options, shutdown: &Shutdown) -> Result<(), WorkerError> {
        let started = Instant::now();
        let limits = opts.limits;
        let retry_after = Duration::from_secs(self.config.queue.retry_after);
        let sleep = Duration::from_secs_f64(self.config.queue.sleep);
        let mut woke: Option<String> = None;
        loop {
            if let Some(m) = &self.metrics {
                m.tick();
            }
            if shutdown.requested() || limits.reached(self.summary.handled(), started.elapsed()) {
                return Ok(());
            }
            let abandoned = self.executor.abandoned();
            if abandoned >= MAX_ABANDONED {
                return Err(WorkerError::Stuck(abandoned));
            }
            let max = limits.batch_size(self.config.queue.batch, self.summary.handled());
            let reserved_at = Instant::now();
            let (jobs, next_due) = match self.reserve(&opts.queues, max, retry_after, woke.take()) {
                Ok(p) => p,
                Err(e) => {
                    self.redis_down(&e, shutdown);
                    continue;
                }
            };
            if let Some(down) = self.redis.succeeded() {
                info!("Redis is back after {:.1} s", down.as_secs_f64());
                if let Some(m) = &self.metrics {
                    m.reconnected("redis");
                }
            }
            if !jobs.is_empty() {
                let stop = |w: &Worker| {
                    shutdown.requested() || limits.reached(w.summary.handled(), started.elapsed())
                };
                self.run_batch(&jobs, reserved_at, stop);
                continue;
            }
            // Empty means nothing pending and nothing delayed or reserved to come back.
            if limits.stop_when_idle(next_due, started.elapsed(), sleep) {
                return Ok(());
            }
            let wait = limits.idle_wait(next_due, started.elapsed(), sleep);
            match self.queue.wait(&opts.queues, wait) {
                Ok(w) => woke = w,
                Err(e) => self.redis_down(&e, shutdown),
            }
        }
    }

    /// Takes up to `max` jobs from the first queue that has any.
    fn reserve(
        &mut self,
        queues: &[String],
        max: usize,
        retry_after: Duration,
        woke: Option<String>,
    ) -> Result<(Vec<Reserved>, Option<Duration>), RedisError> {
        let mut next_due: Option<Duration> = None;
        for name in queues {
            let notify_taken = woke.as_deref() == Some(name.as_str());
            let popped = self.queue.pop(name, max, retry_after, notify_taken)?;
            if !popped.jobs.is_empty() {
                return Ok((popped.jobs, None));
            }
            next_due = match (next_due, popped.next_due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok((Vec::new(), next_due))
    }

    /// Logs once per outage, waits the backoff, and reopens the connection.
    fn redis_down(&mut self, e: &RedisError, shutdown: &Shutdown) {
        if shutdown.requested() {
            // The stop signal interrupted a blocking wait: not an outage.
            return;
        }
        let (delay, first) = self.redis.failed();
        if first {
            warn!("lost Redis: {e}; reconnecting");
        }
        if shutdown.sleep(delay) {
            return;
        }
        match Queue::connect(&self.config.redis, &self.config.queue.prefix) {
            Ok(mut q) => {
                q.stop_on(shutdown);
                self.queue = q;
            }
            Err(e) => debug!("still cannot reach Redis: {e}"),
        }
    }
}
