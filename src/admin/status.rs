//! What `queue-work status` reads: per queue its sizes, the age of its oldest pending job and
//! its failed jobs, and the workers whose heartbeat is alive.

use super::AdminError;
use crate::db::{Db, failed};
use crate::queue::workers::WorkerInfo;
use crate::queue::{Job, Queue};
use serde::Serialize;
use std::collections::BTreeMap;

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

impl Status {
    /// The JSON document for monitoring scripts.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Reads `status` for `queues` (and every queue that has failed jobs).
pub fn read(queue: &mut Queue, db: &mut Db, queues: &[String]) -> Result<Status, AdminError> {
    let failed: BTreeMap<String, u64> = failed::counts(db)?.into_iter().collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::Driver;
    use crate::queue::job::Kind;

    #[test]
    fn age_of_a_malformed_head_is_unknown() {
        let now = time::OffsetDateTime::now_utc();
        assert_eq!(age_of(b"garbage", now), None);
        let alert =
            crate::event::Alert::new(21, 20, &crate::severity::Boundaries::default(), "test");
        let mut job = Job::new(Kind::Broadcast(Driver::Null), alert, 3, vec![1], 60);
        job.created_at = "2000-01-01T00:00:00.000Z".into();
        assert!(age_of(&job.encode(), now).is_some_and(|a| a > 1e8));
        job.created_at = "yesterday".into();
        assert_eq!(age_of(&job.encode(), now), None);
    }
}
