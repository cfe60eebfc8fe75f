//! One job's attempt: prepare it (the worker's overrides), run it, and turn the result into
//! how it ends (done, retried after its backoff, or recorded in `failed_jobs`), with the
//! job's log line and counters.

use super::Worker;
use super::executor::AttemptError;
use crate::broadcast::Driver;
use crate::queue::job::Kind;
use crate::queue::registry::CurrentJob;
use crate::queue::{Job, Outcome, Reserved};
use crate::text::escape;
use log::{error, info, warn};
use std::time::{Duration, Instant};

/// A decoded job: as it runs here (with this worker's overrides) and as it was queued.
pub(super) struct Prepared {
    pub(super) as_queued: Job,
    pub(super) job: Job,
}

impl Prepared {
    /// True when its attempts are past its tries (a worker died during its last one).
    fn over_tries(&self) -> bool {
        self.job.max_tries != 0 && self.as_queued.attempts > self.job.max_tries
    }

    /// The driver, when this job can go out in a batch with others: a broadcast through a
    /// driver that sends a batch in one call, and not past its tries.
    pub(super) fn batchable(&self) -> Option<Driver> {
        match self.job.job {
            Kind::Broadcast(d) if d.sends_batches() && !self.over_tries() => Some(d),
            _ => None,
        }
    }
}

/// How a job's attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    Done,
    Retry(Duration),
    Failed,
}

impl Worker {
    /// The job as it runs here (with this worker's overrides) and as it was queued.
    pub(super) fn prepare(&self, queued: Job, reserved: &Reserved) -> Prepared {
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

    /// Runs one reserved job on its own and prints its line; the outcome to finish it with,
    /// or `None` when its failure could not be recorded (it stays reserved).
    pub(super) fn run_one(
        &mut self,
        reserved: &Reserved,
        decoded: Result<Prepared, String>,
    ) -> Option<Outcome> {
        let started = Instant::now();
        let (id, kind, ended) = match decoded {
            Ok(prepared) => {
                let ended = self.attempt(&prepared, reserved);
                let (id, kind) = (prepared.job.id.to_string(), prepared.job.job.to_string());
                (id, kind, ended)
            }
            Err(reason) => {
                // Derived from the bytes, so recording the same bad job twice stays one row.
                let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, &reserved.raw);
                warn!(
                    "{}job {id} cannot be decoded: {}",
                    self.tag,
                    escape(&reason)
                );
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
    pub(super) fn report(
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
        if let Some(m) = &self.metrics {
            let name = match ended {
                Ended::Done => "done",
                Ended::Failed => "failed",
                Ended::Retry(_) => "retried",
            };
            m.job_ended(&reserved.queue, kind, name, started.elapsed());
        }
        self.tally.runtime_ms += started.elapsed().as_millis() as u64;
        let (label, outcome) = match ended {
            Ended::Done => {
                self.summary.done += 1;
                self.tally.done += 1;
                ("DONE".to_string(), Outcome::Done)
            }
            Ended::Failed => {
                self.summary.failed += 1;
                self.tally.failed += 1;
                ("FAIL".to_string(), Outcome::Done)
            }
            Ended::Retry(delay) => {
                self.summary.retried += 1;
                self.tally.retried += 1;
                let label = format!("RETRY in {}s", delay.as_secs());
                (label, Outcome::RetryAfter(delay))
            }
        };
        let summary = self.summary;
        self.heartbeat.update(|w| {
            (w.done, w.retried, w.failed) = (summary.done, summary.retried, summary.failed);
        });
        info!(
            job_id = id, queue = reserved.queue.as_str(), kind = kind,
            attempt = reserved.attempts, duration_ms = ms, worker = self.name();
            "{}{id} {kind} {label} ({ms:.1} ms, attempt {})",
            self.tag, reserved.attempts
        );
        Some(outcome)
    }

    /// Runs one attempt of a prepared job; `None` when it could not be marked started or its
    /// failure could not be recorded (it stays reserved either way).
    fn attempt(&mut self, p: &Prepared, reserved: &Reserved) -> Option<Ended> {
        if p.over_tries() {
            // Its last attempt was cut short (the worker died): do not run it again.
            let reason = format!(
                "attempted {} times, more than its {} tries (a worker running it stopped)",
                reserved.attempts, p.job.max_tries
            );
            return self.fail(&reserved.queue, &p.as_queued, &reason);
        }
        if !self.mark_started(&[reserved]) {
            return None;
        }
        self.observe_wait(reserved, &p.job);
        info!(
            "{}{} {} RUNNING (attempt {})",
            self.tag, p.job.id, p.job.job, reserved.attempts
        );
        let current = CurrentJob {
            id: p.job.id.to_string(),
            kind: p.job.job.to_string(),
            started_ms: crate::clock::now_ms(),
        };
        self.heartbeat.update(|w| w.current = Some(current));
        let timeout = effective_timeout(p.job.timeout, self.config.queue.timeout);
        let result = self
            .executor
            .run(p.job.job, &p.job.payload, p.job.notice.as_ref(), timeout);
        self.conclude(p, reserved, result)
    }

    /// This worker's name for structured log fields (empty when unnamed).
    fn name(&self) -> &str {
        self.tag.trim_matches(|c| c == '[' || c == ']' || c == ' ')
    }

    /// A first attempt's wait, from the job's creation, for the metrics.
    pub(super) fn observe_wait(&self, reserved: &Reserved, job: &Job) {
        let Some(m) = &self.metrics else {
            return;
        };
        if reserved.attempts != 1 {
            return;
        }
        let format = time::format_description::well_known::Rfc3339;
        if let Ok(created) = time::OffsetDateTime::parse(&job.created_at, &format) {
            let waited = time::OffsetDateTime::now_utc() - created;
            let waited = Duration::try_from(waited).unwrap_or(Duration::ZERO);
            m.job_waited(&reserved.queue, waited);
        }
    }

    /// Turns an attempt's result into how the job ends: done, retried after its backoff, or
    /// recorded in `failed_jobs` (`None` when that record could not be written).
    pub(super) fn conclude(
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
                    "{}job {} ({}) attempt {} failed: {}",
                    self.tag,
                    job.id,
                    job.job,
                    reserved.attempts,
                    escape(&e.to_string())
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

    fn fail(&mut self, queue: &str, job: &Job, reason: &str) -> Option<Ended> {
        error!(
            "{}job {} ({}) failed: {}",
            self.tag,
            job.id,
            job.job,
            escape(reason)
        );
        let payload = String::from_utf8_lossy(&job.encode()).into_owned();
        self.record(&job.id.to_string(), queue, &payload, reason)
            .then_some(Ended::Failed)
    }

    /// Writes a `failed_jobs` row; false (and logged) when PostgreSQL cannot take it.
    fn record(&mut self, id: &str, queue: &str, payload: &str, reason: &str) -> bool {
        let result = self.failed.record(id, queue, payload, reason);
        if let Err(e) = &result {
            error!(
                "cannot record failed job {id}: {e}; it stays reserved and returns after retry_after"
            );
        }
        result.is_ok()
    }
}

/// Seconds one attempt may take: the job's own timeout, capped by the worker's. The cap is what
/// keeps an attempt shorter than this worker's `retry_after` (checked at start), so no job is
/// handed to a second worker while the first still runs it. 0 (a hand-made job) means unset.
pub fn effective_timeout(job: u64, worker: u64) -> Duration {
    let seconds = if job == 0 { worker } else { job.min(worker) };
    Duration::from_secs(seconds)
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
