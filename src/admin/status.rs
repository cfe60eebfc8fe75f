//! What `queue-work status` reads: per queue its sizes, the age of its oldest pending job and
//! its failed jobs, and the workers whose heartbeat is alive.

use super::AdminError;
use crate::db::logical::SlotStatus;
use crate::db::{Db, failed};
use crate::queue::Queue;
use crate::queue::registry::{ListenerInfo, WorkerInfo};
use crate::redis_conn::RedisError;
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
    /// Listeners whose heartbeat is alive (one active, the others on standby).
    pub listeners: Vec<ListenerInfo>,
    /// The logical source's replication slot and its lag, when there is one.
    pub slot: Option<SlotStatus>,
}

impl Status {
    /// The JSON document for monitoring scripts.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Reads `status` for `queues` (and every queue that has failed jobs).
pub fn read(
    queue: &mut Queue,
    db: &mut Db,
    queues: &[String],
    slot: &str,
) -> Result<Status, AdminError> {
    let failed: BTreeMap<String, u64> = failed::counts(db)?.into_iter().collect();
    Ok(Status {
        queues: rows(queue, queues, &failed)?,
        workers: queue.workers(false)?,
        listeners: queue.members(false)?,
        slot: db.slot_status(slot)?,
    })
}

/// One row per queue of `queues`, then per other queue in `failed` (the failed-job counts
/// per queue, from PostgreSQL).
pub fn rows(
    queue: &mut Queue,
    queues: &[String],
    failed: &BTreeMap<String, u64>,
) -> Result<Vec<QueueStatus>, RedisError> {
    let mut names: Vec<String> = queues.to_vec();
    names.extend(failed.keys().filter(|q| !queues.contains(q)).cloned());
    let now = time::OffsetDateTime::now_utc();
    let mut out = Vec::new();
    for name in names {
        let sizes = queue.sizes(&name)?;
        let oldest = queue.oldest_pending_age(&name, now)?;
        out.push(QueueStatus {
            failed: failed.get(&name).copied().unwrap_or(0),
            name,
            pending: sizes.pending,
            delayed: sizes.delayed,
            reserved: sizes.reserved,
            oldest_pending_age_s: oldest,
        });
    }
    Ok(out)
}
