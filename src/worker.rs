//! `queue-work`: reserve jobs, run them, and acknowledge, retry or fail each one.

use crate::backoff::Backoff;
use crate::broadcast::{self, BroadcastError, Broadcaster};
use crate::config::{Config, Driver};
use crate::db::{Db, failed};
use crate::notify;
use crate::queue::job::BROADCAST_KIND;
use crate::queue::{Job, Outcome, Queue, Reserved};
use crate::redis_conn::RedisError;
use crate::shutdown::Shutdown;
use log::{debug, error, info, warn};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// When the worker stops by itself (besides a signal).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Queues to take jobs from, highest priority first.
    pub queues: Vec<String>,
    /// Run exactly one job, then stop.
    pub once: bool,
    /// Stop as soon as every queue is empty.
    pub stop_when_empty: bool,
    /// Stop after this many jobs.
    pub max_jobs: Option<u64>,
    /// Stop after this long (the job in hand finishes).
    pub max_time: Option<Duration>,
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

/// Runs jobs until a stop condition in `opts` or `shutdown`.
///
/// Fails at once when Redis cannot be reached at start; once running, it reconnects by itself.
pub fn run(config: &Config, opts: &Options, shutdown: &Shutdown) -> anyhow::Result<Summary> {
    let queue = Queue::connect(&config.redis_url, &config.queue.prefix)?;
    let drivers: Vec<&str> = config
        .broadcast
        .drivers
        .iter()
        .map(|d| d.as_str())
        .collect();
    info!(
        "working queue(s) {} at {} with driver(s) {}",
        opts.queues.join(","),
        queue.target(),
        drivers.join(",")
    );
    let mut worker = Worker {
        queue,
        runner: Runner::new(config, opts.overrides),
        config: config.clone(),
        redis: Backoff::new(),
        summary: Summary::default(),
    };
    worker.run(opts, shutdown);
    Ok(worker.summary)
}

struct Worker {
    config: Config,
    queue: Queue,
    runner: Runner,
    redis: Backoff,
    summary: Summary,
}

impl Worker {
    fn run(&mut self, opts: &Options, shutdown: &Shutdown) {
        let started = Instant::now();
        let retry_after = Duration::from_secs(self.config.queue.retry_after);
        let sleep = Duration::from_secs_f64(self.config.queue.sleep);
        let mut woke: Option<String> = None;
        loop {
            if shutdown.requested() || self.limit_reached(opts, started) {
                return;
            }
            let popped = self.reserve(&opts.queues, retry_after, woke.take());
            let (jobs, next_due) = match popped {
                Ok(p) => p,
                Err(e) => {
                    self.redis_down(&e, shutdown);
                    continue;
                }
            };
            if let Some(down) = self.redis.succeeded() {
                info!("Redis is back after {:.1} s", down.as_secs_f64());
            }
            if jobs.is_empty() {
                // Empty means nothing pending and nothing delayed or reserved to come back.
                if opts.stop_when_empty && next_due.is_none() {
                    return;
                }
                let wait = next_due.map_or(sleep, |due| due.min(sleep));
                match self.queue.wait(&opts.queues, wait) {
                    Ok(w) => woke = w,
                    Err(e) => self.redis_down(&e, shutdown),
                }
                continue;
            }
            for job in &jobs {
                self.handle(job);
            }
        }
    }

    fn limit_reached(&self, opts: &Options, started: Instant) -> bool {
        let handled = self.summary.handled();
        (opts.once && handled >= 1)
            || opts.max_jobs.is_some_and(|max| handled >= max)
            || opts.max_time.is_some_and(|max| started.elapsed() >= max)
    }

    /// Takes the next job from the first queue that has one.
    fn reserve(
        &mut self,
        queues: &[String],
        retry_after: Duration,
        woke: Option<String>,
    ) -> Result<(Vec<Reserved>, Option<Duration>), RedisError> {
        let mut next_due: Option<Duration> = None;
        for name in queues {
            let notify_taken = woke.as_deref() == Some(name.as_str());
            let popped = self.queue.pop(name, 1, retry_after, notify_taken)?;
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
        let end = Instant::now() + delay;
        while Instant::now() < end && !shutdown.requested() {
            std::thread::sleep(
                Duration::from_millis(50).min(end.saturating_duration_since(Instant::now())),
            );
        }
        match Queue::connect(&self.config.redis_url, &self.config.queue.prefix) {
            Ok(q) => self.queue = q,
            Err(e) => debug!("still cannot reach Redis: {e}"),
        }
    }

    /// Runs one reserved job and records its outcome.
    fn handle(&mut self, job: &Reserved) {
        let started = Instant::now();
        let outcome = self.runner.run(job);
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let Some(outcome) = outcome else {
            // Recording the failure failed: leave it reserved; it returns after retry_after.
            return;
        };
        let label = match outcome.result {
            Outcome::Done if outcome.failed => {
                self.summary.failed += 1;
                "FAIL".to_string()
            }
            Outcome::Done => {
                self.summary.done += 1;
                "DONE".to_string()
            }
            Outcome::RetryAfter(d) => {
                self.summary.retried += 1;
                format!("RETRY in {}s", d.as_secs())
            }
        };
        info!(
            "{} {} {label} ({ms:.1} ms, attempt {})",
            outcome.id, outcome.kind, job.attempts
        );
        if let Err(e) = self.queue.finish(&job.queue, &[(job, outcome.result)]) {
            // The reservation stays; after retry_after the job runs again (at least once).
            error!("cannot finish job {} on Redis: {e}", outcome.id);
        }
    }
}

/// What became of one job.
struct Ran {
    id: String,
    kind: String,
    result: Outcome,
    failed: bool,
}

/// Runs jobs: owns the drivers and the lazily opened `failed_jobs` connection.
struct Runner {
    config: Config,
    overrides: Overrides,
    drivers: HashMap<Driver, Box<dyn Broadcaster>>,
    notifiers: HashMap<notify::Channel, Box<dyn notify::Notifier>>,
    db: Option<Db>,
}

impl Runner {
    fn new(config: &Config, overrides: Overrides) -> Runner {
        Runner {
            config: config.clone(),
            overrides,
            drivers: HashMap::new(),
            notifiers: HashMap::new(),
            db: None,
        }
    }

    /// Runs `reserved`; `None` when its failure could not be recorded.
    fn run(&mut self, reserved: &Reserved) -> Option<Ran> {
        let mut job = match Job::decode(&reserved.raw) {
            Ok(job) => job,
            Err(reason) => return self.fail_undecodable(reserved, &reason),
        };
        job.attempts = reserved.attempts;
        if self.overrides.tries {
            job.max_tries = self.config.queue.tries;
        }
        if self.overrides.backoff {
            job.backoff = self.config.queue.backoff.clone();
        }
        let id = job.id.to_string();
        let ran = |result, failed| Ran {
            id: id.clone(),
            kind: job.job.clone(),
            result,
            failed,
        };
        if job.max_tries != 0 && reserved.attempts > job.max_tries {
            // Its last attempt was cut short (the worker died): do not run it again.
            let reason = format!(
                "attempted {} times, more than its {} tries (a worker running it stopped)",
                reserved.attempts, job.max_tries
            );
            return self
                .fail(&reserved.queue, &job, &reason)
                .then(|| ran(Outcome::Done, true));
        }
        match self.execute(&job) {
            Ok(()) => Some(ran(Outcome::Done, false)),
            Err(e) if e.is_retryable() && !job.is_last_attempt(reserved.attempts) => {
                let delay = Duration::from_secs(job.backoff_after(reserved.attempts));
                warn!(
                    "job {id} ({}) attempt {} failed: {e}",
                    job.job, reserved.attempts
                );
                Some(ran(Outcome::RetryAfter(delay), false))
            }
            Err(e) => {
                let reason = format!("attempt {}: {e}", reserved.attempts);
                self.fail(&reserved.queue, &job, &reason)
                    .then(|| ran(Outcome::Done, true))
            }
        }
    }

    fn execute(&mut self, job: &Job) -> Result<(), BroadcastError> {
        if let Some(name) = job.job.strip_prefix(notify::NOTIFY_KIND) {
            return self.notify(name, job);
        }
        let driver = job
            .job
            .strip_prefix(BROADCAST_KIND)
            .and_then(Driver::parse)
            .ok_or_else(|| BroadcastError::Permanent(format!("unknown job kind `{}`", job.job)))?;
        let config = &self.config.broadcast;
        let broadcaster = self
            .drivers
            .entry(driver)
            .or_insert_with(|| broadcast::build(driver, config));
        broadcaster.broadcast(&job.payload, Duration::from_secs(job.timeout))
    }

    /// Runs a `notify:<channel>` job: the message for people that the alert policy decided on.
    fn notify(&mut self, name: &str, job: &Job) -> Result<(), BroadcastError> {
        let channel = notify::Channel::parse(name)
            .ok_or_else(|| BroadcastError::Permanent(format!("unknown job kind `{}`", job.job)))?;
        let notice = job.notice.as_ref().ok_or_else(|| {
            BroadcastError::Permanent(format!("{} job without its notice", job.job))
        })?;
        let config = &self.config.notify;
        let notifier = self
            .notifiers
            .entry(channel)
            .or_insert_with(|| notify::build(channel, config));
        let message = notify::Message::new(&job.payload, notice);
        notifier.send(&message, Duration::from_secs(job.timeout))
    }

    fn fail_undecodable(&mut self, reserved: &Reserved, reason: &str) -> Option<Ran> {
        // Derived from the bytes, so recording the same bad job twice stays one row.
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &reserved.raw).to_string();
        let payload = printable(&reserved.raw);
        warn!("job {id} cannot be decoded: {reason}");
        self.record(&id, &reserved.queue, &payload, reason)
            .then(|| Ran {
                id,
                kind: "(undecodable)".into(),
                result: Outcome::Done,
                failed: true,
            })
    }

    fn fail(&mut self, queue: &str, job: &Job, reason: &str) -> bool {
        error!("job {} ({}) failed: {reason}", job.id, job.job);
        let payload = String::from_utf8_lossy(&job.encode()).into_owned();
        self.record(&job.id.to_string(), queue, &payload, reason)
    }

    /// Writes a `failed_jobs` row; false (and logged) when PostgreSQL cannot take it.
    fn record(&mut self, id: &str, queue: &str, payload: &str, reason: &str) -> bool {
        let result = self
            .db()
            .and_then(|db| failed::record(db, id, queue, payload, reason));
        if let Err(e) = &result {
            error!(
                "cannot record failed job {id}: {e}; it stays reserved and returns after retry_after"
            );
            self.db = None;
        }
        result.is_ok()
    }

    fn db(&mut self) -> Result<&mut Db, crate::db::DbError> {
        let db = match self.db.take() {
            Some(db) => db,
            None => Db::connect(&self.config.database_url)?,
        };
        Ok(self.db.insert(db))
    }
}

/// The job bytes as text PostgreSQL accepts: as they are when they are UTF-8 without NUL,
/// else escaped (`\xff`), so nothing about a malformed job is lost.
fn printable(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(text) if !text.contains('\0') => text.to_string(),
        _ => raw.escape_ascii().to_string(),
    }
}
