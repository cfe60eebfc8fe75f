//! `queue-work`: reserve a batch of jobs, run each with a deadline, and acknowledge, retry or
//! fail each one; stop on a signal or on a limit (`--once`, `--max-jobs`, `--max-time`,
//! `--stop-when-empty`).

pub mod executor;
pub mod heartbeat;

use self::executor::{AttemptError, Executor, MAX_ABANDONED, Target};
use self::heartbeat::{Heartbeat, hostname, now_ms};
use crate::backoff::Backoff;
use crate::broadcast::BroadcastError;
use crate::config::{Config, Driver};
use crate::db::{Db, failed};
use crate::notify;
use crate::queue::job::BROADCAST_KIND;
use crate::queue::workers::{CurrentJob, WorkerInfo};
use crate::queue::{Job, Outcome, Queue, Reserved};
use crate::redis_conn::RedisError;
use crate::shutdown::Shutdown;
use log::{debug, error, info, warn};
use std::time::{Duration, Instant};

/// What the worker does and when it stops by itself (besides a signal).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Queues to take jobs from, highest priority first.
    pub queues: Vec<String>,
    /// Run one job, then stop; with nothing queued, wait at most `--sleep` for one.
    pub once: bool,
    /// Stop as soon as every queue is empty (nothing pending, delayed or reserved).
    pub stop_when_empty: bool,
    /// Stop after this many jobs.
    pub max_jobs: Option<u64>,
    /// Stop after this long (the job in hand finishes).
    pub max_time: Option<Duration>,
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
    let queue = Queue::connect(&config.redis_url, &config.queue.prefix)?;
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
    let host = hostname();
    let pid = std::process::id();
    let info = WorkerInfo {
        id: format!(
            "{host}:{pid}:{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        ),
        name: opts.name.clone(),
        host,
        pid,
        queues: opts.queues.clone(),
        started_ms: now_ms(),
        current: None,
        done: 0,
        retried: 0,
        failed: 0,
    };
    let heartbeat = Heartbeat::start(&config.redis_url, &config.queue.prefix, info);
    let mut worker = Worker {
        queue,
        executor: Executor::new(config),
        config: config.clone(),
        overrides: opts.overrides,
        db: None,
        redis: Backoff::new(),
        summary: Summary::default(),
        heartbeat,
        tag,
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
    /// The `failed_jobs` connection, opened when the first job fails.
    db: Option<Db>,
    redis: Backoff,
    summary: Summary,
    heartbeat: Heartbeat,
    /// `[name] ` or nothing: the start of every per-job line.
    tag: String,
}

impl Worker {
    fn run(&mut self, opts: &Options, shutdown: &Shutdown) -> Result<(), WorkerError> {
        let started = Instant::now();
        let retry_after = Duration::from_secs(self.config.queue.retry_after);
        let sleep = Duration::from_secs_f64(self.config.queue.sleep);
        let mut woke: Option<String> = None;
        loop {
            if shutdown.requested() || self.limit_reached(opts, started) {
                return Ok(());
            }
            let abandoned = self.executor.abandoned();
            if abandoned >= MAX_ABANDONED {
                return Err(WorkerError::Stuck(abandoned));
            }
            let max = self.batch_size(opts);
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
            }
            if jobs.is_empty() {
                // Empty means nothing pending and nothing delayed or reserved to come back.
                if opts.stop_when_empty && next_due.is_none() {
                    return Ok(());
                }
                // `--once` with nothing queued waits one `--sleep` for a job, as Laravel's does.
                if opts.once && started.elapsed() >= sleep {
                    return Ok(());
                }
                let mut wait = next_due.map_or(sleep, |due| due.min(sleep));
                if let Some(max) = opts.max_time {
                    wait = wait.min(max.saturating_sub(started.elapsed()));
                }
                if opts.once {
                    wait = wait.min(sleep.saturating_sub(started.elapsed()));
                }
                match self.queue.wait(&opts.queues, wait) {
                    Ok(w) => woke = w,
                    Err(e) => self.redis_down(&e, shutdown),
                }
                continue;
            }
            let stop = |w: &Worker| shutdown.requested() || w.limit_reached(opts, started);
            self.handle_batch(&jobs, reserved_at, stop);
        }
    }

    fn limit_reached(&self, opts: &Options, started: Instant) -> bool {
        let handled = self.summary.handled();
        (opts.once && handled >= 1)
            || opts.max_jobs.is_some_and(|max| handled >= max)
            || opts.max_time.is_some_and(|max| started.elapsed() >= max)
    }

    /// How many jobs to reserve: never more than the limits let this worker run.
    fn batch_size(&self, opts: &Options) -> usize {
        let mut max = self.config.queue.batch as u64;
        if opts.once {
            max = 1;
        }
        if let Some(limit) = opts.max_jobs {
            max = max.min(limit.saturating_sub(self.summary.handled()));
        }
        max.max(1) as usize
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

    /// Runs a reserved batch (all from one queue) and finishes all of it in one round trip.
    ///
    /// Broadcasts through drivers that can send a batch at once (redis, log, null) go out
    /// together, one call per driver. The other jobs run one by one; before each, the worker
    /// checks that the batch's reservation still covers the job's timeout, and hands back
    /// unrun (no attempt used) what it cannot start in time, or when it must stop.
    fn handle_batch(
        &mut self,
        jobs: &[Reserved],
        reserved_at: Instant,
        stop: impl Fn(&Worker) -> bool,
    ) {
        let mut finished: Vec<(&Reserved, Outcome)> = Vec::with_capacity(jobs.len());
        let mut groups: Vec<(Driver, Vec<(&Reserved, Prepared)>)> = Vec::new();
        let mut one_by_one = Vec::new();
        for reserved in jobs {
            let decoded = Job::decode(&reserved.raw).map(|job| self.prepare(job, reserved));
            let driver = decoded.as_ref().ok().and_then(Prepared::batchable);
            match (driver, decoded) {
                (Some(driver), Ok(p)) => match groups.iter_mut().find(|(d, _)| *d == driver) {
                    Some((_, group)) => group.push((reserved, p)),
                    None => groups.push((driver, vec![(reserved, p)])),
                },
                (_, decoded) => one_by_one.push((reserved, decoded)),
            }
        }
        for (driver, group) in groups {
            self.run_group(driver, group, &mut finished);
        }
        let retry_after = Duration::from_secs(self.config.queue.retry_after);
        let timeout = Duration::from_secs(self.config.queue.timeout);
        // The first job of a batch always runs, so a worker makes progress whatever happens.
        let mut ran_any = !finished.is_empty();
        let mut rest = one_by_one.into_iter();
        while let Some((reserved, decoded)) = rest.next() {
            let short = reserved_at.elapsed() + timeout >= retry_after;
            if ran_any && (stop(self) || short) {
                finished.push((reserved, Outcome::Release));
                finished.extend(rest.map(|(r, _)| (r, Outcome::Release)));
                break;
            }
            ran_any = true;
            if let Some(outcome) = self.handle(reserved, decoded) {
                finished.push((reserved, outcome));
            }
        }
        if let Err(e) = self.queue.finish(&jobs[0].queue, &finished) {
            // The reservations stay; after retry_after the jobs run again (at least once).
            error!("cannot finish {} job(s) on Redis: {e}", finished.len());
        }
    }

    /// Broadcasts a group of prepared jobs through one driver in one call.
    fn run_group<'a>(
        &mut self,
        driver: Driver,
        group: Vec<(&'a Reserved, Prepared)>,
        finished: &mut Vec<(&'a Reserved, Outcome)>,
    ) {
        let started = Instant::now();
        let timeout = group
            .iter()
            .map(|(_, p)| effective_timeout(p.job.timeout, self.config.queue.timeout))
            .min()
            .unwrap_or(Duration::from_secs(self.config.queue.timeout));
        for (reserved, p) in &group {
            info!(
                "{}{} {} RUNNING (attempt {})",
                self.tag, p.job.id, p.job.job, reserved.attempts
            );
        }
        let alerts = group.iter().map(|(_, p)| p.job.payload.clone()).collect();
        let results = match self.executor.run_batch(driver, alerts, timeout) {
            Ok(results) => results
                .into_iter()
                .map(|r| r.map_err(AttemptError::from))
                .collect(),
            Err(e) => vec![Err(e); group.len()],
        };
        for ((reserved, p), result) in group.into_iter().zip(results) {
            let ended = self.conclude(&p, reserved, result);
            let (id, kind) = (p.job.id.to_string(), p.job.job);
            if let Some(outcome) = self.report(reserved, &id, &kind, ended, started) {
                finished.push((reserved, outcome));
            }
        }
    }

    /// Runs one reserved job on its own and prints its line; the outcome to finish it with,
    /// or `None` when its failure could not be recorded (it stays reserved).
    fn handle(
        &mut self,
        reserved: &Reserved,
        decoded: Result<Prepared, String>,
    ) -> Option<Outcome> {
        let started = Instant::now();
        let (id, kind, ended) = match decoded {
            Ok(prepared) => {
                let ended = self.attempt(&prepared, reserved);
                (prepared.job.id.to_string(), prepared.job.job, ended)
            }
            Err(reason) => {
                // Derived from the bytes, so recording the same bad job twice stays one row.
                let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &reserved.raw);
                warn!("{}job {id} cannot be decoded: {reason}", self.tag);
                let payload = printable(&reserved.raw);
                let ended = self
                    .record(&id.to_string(), &reserved.queue, &payload, &reason)
                    .then_some(Ended::Failed);
                (id.to_string(), "(undecodable)".to_string(), ended)
            }
        };
        self.heartbeat.update(|w| w.current = None);
        self.report(reserved, &id, &kind, ended, started)
    }

    /// Counts a job's end, prints its line, and says how to finish it.
    fn report(
        &mut self,
        reserved: &Reserved,
        id: &str,
        kind: &str,
        ended: Option<Ended>,
        started: Instant,
    ) -> Option<Outcome> {
        // None: recording the failure failed; it stays reserved and returns after retry_after.
        let ended = ended?;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let (label, outcome) = match ended {
            Ended::Done => {
                self.summary.done += 1;
                ("DONE".to_string(), Outcome::Done)
            }
            Ended::Failed => {
                self.summary.failed += 1;
                ("FAIL".to_string(), Outcome::Done)
            }
            Ended::Retry(delay) => {
                self.summary.retried += 1;
                (
                    format!("RETRY in {}s", delay.as_secs()),
                    Outcome::RetryAfter(delay),
                )
            }
        };
        let summary = self.summary;
        self.heartbeat.update(|w| {
            (w.done, w.retried, w.failed) = (summary.done, summary.retried, summary.failed);
        });
        info!(
            "{}{id} {kind} {label} ({ms:.1} ms, attempt {})",
            self.tag, reserved.attempts
        );
        Some(outcome)
    }

    /// The job as it runs here (with this worker's overrides) and as it was queued.
    fn prepare(&self, queued: Job, reserved: &Reserved) -> Prepared {
        // `failed_jobs` keeps the job as it was queued (with its attempts), not with this
        // worker's overrides, so `failed retry` runs it under its own policy again.
        let as_queued = Job {
            attempts: reserved.attempts,
            ..queued
        };
        let mut job = as_queued.clone();
        if self.overrides.tries {
            job.max_tries = self.config.queue.tries;
        }
        if self.overrides.backoff {
            job.backoff = self.config.queue.backoff.clone();
        }
        Prepared { as_queued, job }
    }

    /// Runs one attempt of a prepared job; `None` when its failure could not be recorded.
    fn attempt(&mut self, p: &Prepared, reserved: &Reserved) -> Option<Ended> {
        if p.over_tries() {
            // Its last attempt was cut short (the worker died): do not run it again.
            let reason = format!(
                "attempted {} times, more than its {} tries (a worker running it stopped)",
                reserved.attempts, p.job.max_tries
            );
            return self.fail(&reserved.queue, &p.as_queued, &reason);
        }
        info!(
            "{}{} {} RUNNING (attempt {})",
            self.tag, p.job.id, p.job.job, reserved.attempts
        );
        let current = CurrentJob {
            id: p.job.id.to_string(),
            kind: p.job.job.clone(),
            started_ms: now_ms(),
        };
        self.heartbeat.update(|w| w.current = Some(current));
        let result = self.execute(&p.job);
        self.conclude(p, reserved, result)
    }

    /// Turns an attempt's result into how the job ends: done, retried after its backoff, or
    /// recorded in `failed_jobs` (`None` when that record could not be written).
    fn conclude(
        &mut self,
        p: &Prepared,
        reserved: &Reserved,
        result: Result<(), AttemptError>,
    ) -> Option<Ended> {
        let job = &p.job;
        match result {
            Ok(()) => Some(Ended::Done),
            Err(e) if e.is_retryable() && !job.is_last_attempt(reserved.attempts) => {
                warn!(
                    "{}job {} ({}) attempt {} failed: {e}",
                    self.tag, job.id, job.job, reserved.attempts
                );
                let delay = Duration::from_secs(job.backoff_after(reserved.attempts));
                Some(Ended::Retry(delay))
            }
            Err(e) => {
                let reason = format!("attempt {}: {e}", reserved.attempts);
                self.fail(&reserved.queue, &p.as_queued, &reason)
            }
        }
    }

    fn execute(&mut self, job: &Job) -> Result<(), AttemptError> {
        let timeout = effective_timeout(job.timeout, self.config.queue.timeout);
        self.executor.run(
            target(&job.job)?,
            &job.payload,
            job.notice.as_ref(),
            timeout,
        )
    }

    fn fail(&mut self, queue: &str, job: &Job, reason: &str) -> Option<Ended> {
        error!("{}job {} ({}) failed: {reason}", self.tag, job.id, job.job);
        let payload = String::from_utf8_lossy(&job.encode()).into_owned();
        self.record(&job.id.to_string(), queue, &payload, reason)
            .then_some(Ended::Failed)
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

/// A decoded job: as it runs here (with this worker's overrides) and as it was queued.
struct Prepared {
    as_queued: Job,
    job: Job,
}

impl Prepared {
    /// True when its attempts are past its tries (a worker died during its last one).
    fn over_tries(&self) -> bool {
        self.job.max_tries != 0 && self.as_queued.attempts > self.job.max_tries
    }

    /// The driver, when this job can go out in a batch with others: a broadcast through a
    /// driver that sends a batch in one call, and not past its tries.
    fn batchable(&self) -> Option<Driver> {
        match target(&self.job.job) {
            Ok(Target::Broadcast(d @ (Driver::Redis | Driver::Log | Driver::Null)))
                if !self.over_tries() =>
            {
                Some(d)
            }
            _ => None,
        }
    }
}

/// How a job's attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    Done,
    Retry(Duration),
    Failed,
}

/// Seconds one attempt may take: the job's own timeout, capped by the worker's. The cap is what
/// keeps an attempt shorter than this worker's `retry_after` (checked at start), so no job is
/// handed to a second worker while the first still runs it. 0 (a hand-made job) means unset.
pub fn effective_timeout(job: u64, worker: u64) -> Duration {
    let seconds = if job == 0 { worker } else { job.min(worker) };
    Duration::from_secs(seconds)
}

/// Where a job of `kind` delivers: `broadcast:<driver>` or `notify:<channel>`.
fn target(kind: &str) -> Result<Target, BroadcastError> {
    let broadcast = kind.strip_prefix(BROADCAST_KIND).and_then(Driver::parse);
    let people = kind
        .strip_prefix(notify::NOTIFY_KIND)
        .and_then(notify::Channel::parse);
    broadcast
        .map(Target::Broadcast)
        .or(people.map(Target::Notify))
        .ok_or_else(|| BroadcastError::Permanent(format!("unknown job kind `{kind}`")))
}

/// The job bytes as text PostgreSQL accepts: as they are when they are UTF-8 without NUL,
/// else escaped (`\xff`), so nothing about a malformed job is lost.
fn printable(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(text) if !text.contains('\0') => text.to_string(),
        _ => raw.escape_ascii().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worker_timeout_caps_the_job_timeout() {
        assert_eq!(effective_timeout(60, 1), Duration::from_secs(1));
        assert_eq!(effective_timeout(5, 60), Duration::from_secs(5));
        assert_eq!(effective_timeout(0, 7), Duration::from_secs(7));
    }

    #[test]
    fn printable_keeps_text_and_escapes_bytes() {
        assert_eq!(printable(b"not json"), "not json");
        assert_eq!(printable(&[0xff, 0x00]), "\\xff\\x00");
    }
}
