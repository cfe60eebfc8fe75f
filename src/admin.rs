//! The operator's commands of `queue-work`: `status` and `failed` (list, show, retry, forget,
//! flush). Each returns the text to print, so the binary only parses flags and prints.

use crate::config::Config;
use crate::db::failed::{self, FailedJob, FindError, Selection};
use crate::db::{Db, DbError};
use crate::queue::workers::WorkerInfo;
use crate::queue::{Job, Queue};
use crate::redis_conn::RedisError;
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// PostgreSQL (`failed_jobs`) failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Redis (the queues) failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The id given matches no failed job, or several.
    #[error(transparent)]
    Find(#[from] FindError),
}

/// Longest error text shown in the `failed` table; `failed show` has all of it.
const ERROR_WIDTH: usize = 80;

/// One queue in `status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStatus {
    /// The queue's name.
    pub name: String,
    /// Jobs ready to run.
    pub pending: u64,
    /// Jobs waiting for a retry.
    pub delayed: u64,
    /// Jobs being run (or whose worker died, until `retry_after`).
    pub reserved: u64,
    /// Seconds since the job at the head of pending was created; `None` when nothing is
    /// pending or the head cannot be read (a malformed job).
    pub oldest_pending_age_s: Option<f64>,
    /// Rows of this queue in `failed_jobs`.
    pub failed: u64,
}

/// What `status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The queues asked for, then any other queue with failed jobs.
    pub queues: Vec<QueueStatus>,
    /// Workers whose heartbeat is alive.
    pub workers: Vec<WorkerInfo>,
}

/// Gathers `status` for `queues` (and every queue that has failed jobs).
pub fn status(config: &Config, queues: &[String]) -> Result<Status, AdminError> {
    let mut queue = Queue::connect(&config.redis_url, &config.queue.prefix)?;
    let mut db = Db::connect(&config.database_url)?;
    let failed: BTreeMap<String, u64> = failed::counts(&mut db)?.into_iter().collect();
    let mut names: Vec<String> = queues.to_vec();
    names.extend(failed.keys().filter(|q| !queues.contains(q)).cloned());
    let now = time::OffsetDateTime::now_utc();
    let mut out = Vec::new();
    for name in names {
        let sizes = queue.sizes(&name)?;
        let oldest = match queue.head(&name)? {
            Some(raw) => age_of(&raw, now),
            None => None,
        };
        out.push(QueueStatus {
            failed: failed.get(&name).copied().unwrap_or(0),
            name,
            pending: sizes.pending,
            delayed: sizes.delayed,
            reserved: sizes.reserved,
            oldest_pending_age_s: oldest,
        });
    }
    Ok(Status {
        queues: out,
        workers: queue.workers(false)?,
    })
}

/// Seconds since the job in `raw` was created; `None` when it is not a readable job.
fn age_of(raw: &[u8], now: time::OffsetDateTime) -> Option<f64> {
    let job = Job::decode(raw).ok()?;
    let created = time::OffsetDateTime::parse(
        &job.created_at,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    // A producer whose clock runs ahead would give a negative age: show 0.
    Some((now - created).as_seconds_f64().max(0.0))
}

impl Status {
    /// The JSON document for monitoring scripts.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// The tables for a terminal; `now_ms` is the current Unix time in ms.
    pub fn render(&self, now_ms: u64) -> String {
        let mut rows = vec![row(&[
            "QUEUE",
            "PENDING",
            "DELAYED",
            "RESERVED",
            "OLDEST PENDING",
            "FAILED",
        ])];
        for q in &self.queues {
            let oldest = match (q.pending, q.oldest_pending_age_s) {
                (0, _) => "-".to_string(),
                (_, Some(age)) => human_duration(age),
                (_, None) => "? (unreadable job)".to_string(),
            };
            rows.push(vec![
                q.name.clone(),
                q.pending.to_string(),
                q.delayed.to_string(),
                q.reserved.to_string(),
                oldest,
                q.failed.to_string(),
            ]);
        }
        let mut out = table(&rows, &[false, true, true, true, false, true]);
        if self.workers.is_empty() {
            out.push_str("\nno workers running\n");
            return out;
        }
        let _ = writeln!(out, "\nworkers ({}):", self.workers.len());
        let mut rows = vec![row(&[
            "NAME", "HOST", "PID", "QUEUES", "UP", "DONE", "FAILED", "STATE",
        ])];
        for w in &self.workers {
            let since = |ms: u64| human_duration(now_ms.saturating_sub(ms) as f64 / 1000.0);
            let state = match &w.current {
                Some(job) => format!("{} {} for {}", job.id, job.kind, since(job.started_ms)),
                None => "idle".to_string(),
            };
            rows.push(vec![
                w.name.clone().unwrap_or_else(|| "-".into()),
                w.host.clone(),
                w.pid.to_string(),
                w.queues.join(","),
                since(w.started_ms),
                w.done.to_string(),
                w.failed.to_string(),
                state,
            ]);
        }
        out.push_str(&table(
            &rows,
            &[false, false, true, false, false, true, true, false],
        ));
        out
    }
}

/// `failed` (list): the failed jobs as a table, or as JSON.
pub fn failed_list(
    config: &Config,
    queue: Option<&str>,
    as_json: bool,
) -> Result<String, AdminError> {
    let mut db = Db::connect(&config.database_url)?;
    let jobs = failed::list(&mut db, queue)?;
    if as_json {
        let items: Vec<_> = jobs.iter().map(job_json).collect();
        return Ok(serde_json::to_string_pretty(&items).unwrap_or_default());
    }
    if jobs.is_empty() {
        return Ok("no failed jobs".to_string());
    }
    let mut rows = vec![row(&["ID", "QUEUE", "KIND", "FAILED AT", "ERROR"])];
    for job in &jobs {
        rows.push(vec![
            job.uuid.clone(),
            job.queue.clone(),
            kind_of(&job.payload),
            job.failed_at.clone(),
            first_line(&job.exception, ERROR_WIDTH),
        ]);
    }
    Ok(table(&rows, &[false; 5]).trim_end().to_string())
}

/// `failed show ID`: one failed job with its whole payload and error. `id` may be a unique
/// prefix of at least [`failed::MIN_PREFIX`] characters.
pub fn failed_show(config: &Config, id: &str, as_json: bool) -> Result<String, AdminError> {
    let mut db = Db::connect(&config.database_url)?;
    let job = failed::find(&mut db, id)?;
    if as_json {
        return Ok(serde_json::to_string_pretty(&job_json(&job)).unwrap_or_default());
    }
    let payload = serde_json::from_str::<serde_json::Value>(&job.payload)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| job.payload.clone());
    Ok(format!(
        "id:        {}\nqueue:     {}\nkind:      {}\nfailed at: {}\n\nerror:\n{}\n\npayload:\n{}",
        job.uuid,
        job.queue,
        kind_of(&job.payload),
        job.failed_at,
        job.exception.trim_end(),
        payload
    ))
}

/// Which failed jobs `failed retry` puts back.
#[derive(Debug, Clone)]
pub enum RetryTarget {
    /// Every failed job (of `--queue`, when given).
    All,
    /// These ids (or unique prefixes).
    Ids(Vec<String>),
}

/// What `failed retry` did.
#[derive(Debug, Clone, Default)]
pub struct RetryReport {
    /// `(uuid, queue)` of each job put back.
    pub retried: Vec<(String, String)>,
    /// `(id, why)` of each job asked for but not put back.
    pub skipped: Vec<(String, String)>,
    all: bool,
}

impl RetryReport {
    /// True when every job asked for was put back.
    pub fn complete(&self) -> bool {
        self.skipped.is_empty()
    }

    /// The lines to print.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if self.all {
            let mut per_queue: BTreeMap<&str, usize> = BTreeMap::new();
            for (_, q) in &self.retried {
                *per_queue.entry(q).or_default() += 1;
            }
            let parts: Vec<String> = per_queue.iter().map(|(q, n)| format!("{q} {n}")).collect();
            let _ = write!(out, "put {} failed job(s) back", self.retried.len());
            if !parts.is_empty() {
                let _ = write!(out, ": {}", parts.join(", "));
            }
            out.push('\n');
        } else {
            for (id, queue) in &self.retried {
                let _ = writeln!(out, "put {id} back on {queue}");
            }
        }
        for (id, why) in &self.skipped {
            let _ = writeln!(out, "not retried {id}: {why}");
        }
        out.trim_end().to_string()
    }
}

/// `failed retry`: puts failed jobs back on their queue with attempts reset to 0, and removes
/// each from `failed_jobs` only once it is safely queued (see [`failed::take`]).
pub fn failed_retry(
    config: &Config,
    target: &RetryTarget,
    queue_filter: Option<&str>,
) -> Result<RetryReport, AdminError> {
    let mut db = Db::connect(&config.database_url)?;
    let mut queue = Queue::connect(&config.redis_url, &config.queue.prefix)?;
    let mut report = RetryReport {
        all: matches!(target, RetryTarget::All),
        ..Default::default()
    };
    let uuids = match target {
        RetryTarget::All => None,
        RetryTarget::Ids(ids) => {
            let mut found = Vec::new();
            for id in ids {
                match failed::find(&mut db, id) {
                    Ok(job) => found.push(job.uuid),
                    Err(FindError::Db(e)) => return Err(e.into()),
                    Err(e) => report.skipped.push((id.clone(), e.to_string())),
                }
            }
            Some(found)
        }
    };
    let selection = Selection {
        uuids: uuids.clone(),
        queue: queue_filter.map(str::to_string),
    };
    failed::take(&mut db, &selection, |page| {
        let mut by_queue: BTreeMap<&str, Vec<(&FailedJob, Job)>> = BTreeMap::new();
        for row in page {
            match Job::decode(row.payload.as_bytes()) {
                Ok(mut job) => {
                    job.attempts = 0;
                    by_queue.entry(&row.queue).or_default().push((row, job));
                }
                Err(e) => report
                    .skipped
                    .push((row.uuid.clone(), format!("cannot be retried: {e}"))),
            }
        }
        let mut placed = Vec::new();
        for (name, rows) in by_queue {
            let jobs: Vec<Job> = rows.iter().map(|(_, job)| job.clone()).collect();
            queue.push(name, &jobs).map_err(AdminError::from)?;
            for (row, _) in rows {
                placed.push(row.row);
                report.retried.push((row.uuid.clone(), name.to_string()));
            }
        }
        Ok::<_, AdminError>(placed)
    })?;
    if let (Some(uuids), Some(q)) = (uuids, queue_filter) {
        for uuid in uuids {
            let seen = report.retried.iter().any(|(u, _)| *u == uuid)
                || report.skipped.iter().any(|(u, _)| *u == uuid);
            if !seen {
                report
                    .skipped
                    .push((uuid, format!("it did not come from queue {q}")));
            }
        }
    }
    Ok(report)
}

/// `failed forget ID`: deletes one failed job.
pub fn failed_forget(config: &Config, id: &str) -> Result<String, AdminError> {
    let mut db = Db::connect(&config.database_url)?;
    let job = failed::find(&mut db, id)?;
    if !failed::forget(&mut db, &job.uuid)? {
        // Deleted by someone else between find and delete.
        return Err(FindError::NotFound(id.to_string()).into());
    }
    Ok(format!("forgot failed job {}", job.uuid))
}

/// `failed flush`: deletes every failed job, or those that failed more than `hours` ago.
pub fn failed_flush(config: &Config, hours: Option<u64>) -> Result<String, AdminError> {
    let mut db = Db::connect(&config.database_url)?;
    let older = hours.map(|h| Duration::from_secs(h.saturating_mul(3600)));
    let n = failed::flush(&mut db, older)?;
    Ok(match hours {
        Some(h) => format!("deleted {n} failed job(s) that failed more than {h} hour(s) ago"),
        None => format!("deleted {n} failed job(s)"),
    })
}

/// A failed job as JSON: the payload as a document when it is one, else as text.
fn job_json(job: &FailedJob) -> serde_json::Value {
    let payload = serde_json::from_str::<serde_json::Value>(&job.payload)
        .unwrap_or_else(|_| serde_json::Value::String(job.payload.clone()));
    json!({
        "id": job.uuid,
        "queue": job.queue,
        "kind": kind_of(&job.payload),
        "failed_at": job.failed_at,
        "exception": job.exception,
        "payload": payload,
    })
}

/// The job kind in a stored payload, or `(undecodable)`.
fn kind_of(payload: &str) -> String {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("job")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "(undecodable)".to_string())
}

/// The first line of `text`, cut to `width` characters.
fn first_line(text: &str, width: usize) -> String {
    let line = text.lines().next().unwrap_or("").trim_end();
    if line.chars().count() <= width {
        return line.to_string();
    }
    let cut: String = line.chars().take(width.saturating_sub(1)).collect();
    format!("{cut}…")
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Aligned columns, two spaces apart; `right[i]` right-aligns column i (numbers).
fn table(rows: &[Vec<String>], right: &[bool]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if right.get(i).copied().unwrap_or(false) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `42s`, `3m05s`, `2h10m`, `4d3h`: short, for a terminal.
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(0.4), "0s");
        assert_eq!(human_duration(42.0), "42s");
        assert_eq!(human_duration(185.0), "3m05s");
        assert_eq!(human_duration(7800.0), "2h10m");
        assert_eq!(human_duration(97200.0), "1d3h");
        assert_eq!(human_duration(-5.0), "0s");
    }

    #[test]
    fn first_line_is_cut() {
        assert_eq!(first_line("a\nb", 10), "a");
        assert_eq!(first_line("abcdefghijkl", 5), "abcd…");
        assert_eq!(first_line("", 5), "");
    }

    #[test]
    fn kind_comes_from_the_payload() {
        assert_eq!(kind_of(r#"{"job":"broadcast:redis"}"#), "broadcast:redis");
        assert_eq!(kind_of("not json"), "(undecodable)");
        assert_eq!(kind_of(r#"{"id":5}"#), "(undecodable)");
    }

    #[test]
    fn tables_align() {
        let rows = vec![row(&["A", "NUM"]), row(&["long", "7"])];
        assert_eq!(table(&rows, &[false, true]), "A     NUM\nlong    7\n");
    }

    #[test]
    fn age_of_a_malformed_head_is_unknown() {
        let now = time::OffsetDateTime::now_utc();
        assert_eq!(age_of(b"garbage", now), None);
        let alert =
            crate::event::Alert::new(21, 20, &crate::severity::Boundaries::default(), "test");
        let mut job = Job::new("broadcast:null".into(), alert, 3, vec![1], 60);
        job.created_at = "2000-01-01T00:00:00.000Z".into();
        assert!(age_of(&job.encode(), now).is_some_and(|a| a > 1e8));
        job.created_at = "yesterday".into();
        assert_eq!(age_of(&job.encode(), now), None);
    }
}
