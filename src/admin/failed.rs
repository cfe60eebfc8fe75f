//! What `queue-work failed …` does to the `failed_jobs` table and the queues: find, retry,
//! forget, flush. Printing is [`super::render`]'s.

use super::AdminError;
use crate::db::failed::{self, FailedJob, FindError, Selection};
use crate::db::{Db, DbError};
use crate::queue::{Job, Queue, keys};
use std::collections::BTreeMap;
use std::time::Duration;

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
    /// True when every failed job was asked for (the report then counts per queue).
    pub all: bool,
}

impl RetryReport {
    /// True when every job asked for was put back.
    pub fn complete(&self) -> bool {
        self.skipped.is_empty()
    }
}

/// The failed jobs, oldest first (only those of `queue`, when given).
pub fn list(db: &mut Db, queue: Option<&str>) -> Result<Vec<FailedJob>, AdminError> {
    Ok(failed::list(db, queue)?)
}

/// One failed job; `id` may be a unique prefix of at least [`failed::MIN_PREFIX`] characters.
pub fn show(db: &mut Db, id: &str) -> Result<FailedJob, AdminError> {
    Ok(failed::find(db, id)?)
}

/// Puts failed jobs back on their queue with attempts reset to 0, and removes each from
/// `failed_jobs` only once it is safely queued (see [`failed::take`]).
pub fn retry(
    db: &mut Db,
    queue: &mut Queue,
    target: &RetryTarget,
    queue_filter: Option<&str>,
) -> Result<RetryReport, AdminError> {
    let mut report = RetryReport {
        all: matches!(target, RetryTarget::All),
        ..Default::default()
    };
    let uuids = match target {
        RetryTarget::All => None,
        RetryTarget::Ids(ids) => Some(find_all(db, ids, &mut report)?),
    };
    let selection = Selection {
        uuids: uuids.clone(),
        queue: queue_filter.map(str::to_string),
    };
    failed::take(db, &selection, |page| place(queue, page, &mut report))?;
    if let (Some(uuids), Some(q)) = (uuids, queue_filter) {
        for uuid in uuids {
            let seen = report.retried.iter().any(|(u, _)| *u == uuid)
                || report.skipped.iter().any(|(u, _)| *u == uuid);
            if !seen {
                let why = format!("it did not come from queue {q}");
                report.skipped.push((uuid, why));
            }
        }
    }
    Ok(report)
}

/// The uuids of `ids`; those not found are reported as skipped.
fn find_all(db: &mut Db, ids: &[String], report: &mut RetryReport) -> Result<Vec<String>, DbError> {
    let mut found = Vec::new();
    for id in ids {
        match failed::find(db, id) {
            Ok(job) => found.push(job.uuid),
            Err(FindError::Db(e)) => return Err(e),
            Err(e) => report.skipped.push((id.clone(), e.to_string())),
        }
    }
    Ok(found)
}

/// Pushes one page of failed rows back onto their queues; returns the rows placed.
fn place(
    queue: &mut Queue,
    page: &[FailedJob],
    report: &mut RetryReport,
) -> Result<Vec<i64>, AdminError> {
    let mut by_queue: BTreeMap<&str, Vec<(&FailedJob, Job)>> = BTreeMap::new();
    for row in page {
        // The row comes from outside (anyone with write access to the table): a queue no
        // worker serves would swallow the job, so the row is kept and reported instead.
        if let Err(why) = keys::check_name(&row.queue) {
            let why = format!(
                "its queue {:?} is not a queue name ({why}); kept",
                row.queue
            );
            report.skipped.push((row.uuid.clone(), why));
            continue;
        }
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
        queue.push(name, &jobs)?;
        for (row, _) in rows {
            placed.push(row.row);
            report.retried.push((row.uuid.clone(), name.to_string()));
        }
    }
    Ok(placed)
}

/// Deletes one failed job; returns its uuid.
pub fn forget(db: &mut Db, id: &str) -> Result<String, AdminError> {
    let job = failed::find(db, id)?;
    if !failed::forget(db, &job.uuid)? {
        // Deleted by someone else between find and delete.
        return Err(FindError::NotFound(id.to_string()).into());
    }
    Ok(job.uuid)
}

/// Deletes every failed job, or those that failed more than `hours` ago; returns how many.
pub fn flush(db: &mut Db, hours: Option<u64>) -> Result<u64, AdminError> {
    let older = hours.map(|h| Duration::from_secs(h.saturating_mul(3600)));
    Ok(failed::flush(db, older)?)
}
