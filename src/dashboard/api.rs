//! The JSON behind the page: what is read from Redis and PostgreSQL for each endpoint, and
//! the actions on failed jobs (the same rules as `queue-work failed`: a row is deleted only
//! once its job is safely queued again).

use crate::admin::status::{QueueStatus, rows};
use crate::admin::{Admin, AdminError, RetryTarget};
use crate::db::failed;
use crate::db::logical::SlotStatus;
use crate::queue::recent::RecentAlert;
use crate::queue::registry::{ListenerInfo, WorkerInfo};
use crate::queue::stats::{Tally, minute_of};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Minutes the throughput chart covers.
const CHART_MINUTES: u64 = 60;
/// Longest error text in the failed-jobs list (the detail has all of it).
const EXCEPTION_HEAD: usize = 200;

/// `GET /api/status`.
#[derive(Debug, Serialize)]
pub struct Status {
    generated_ms: u64,
    now: Now,
    listeners: Vec<ListenerInfo>,
    queues: Vec<QueueStatus>,
    workers: Vec<WorkerInfo>,
    /// What could not be read (the rest is shown anyway).
    errors: Vec<String>,
}

/// The count as the front end last saw it (the newest alert), and the database's now.
#[derive(Debug, Default, Serialize)]
struct Now {
    count: Option<u64>,
    threshold: u64,
    severity: Option<String>,
    percentage: Option<f64>,
    changed_ms: Option<u64>,
    alert_id: Option<String>,
    live_count: Option<u64>,
    /// The logical source's slot and its lag, when there is one.
    slot: Option<SlotStatus>,
}

/// Reads the status of `queues` (the first is where alerts are pushed). PostgreSQL and Redis
/// are read apart, so one being down still shows what the other knows.
pub fn status(admin: &mut Admin, queues: &[String], threshold: u64, slot: &str) -> Status {
    let mut errors = Vec::new();
    let mut now = Now {
        threshold,
        ..Now::default()
    };
    let failed = match admin.db().map_err(AdminError::from).and_then(|db| {
        let counts = failed::counts(db)?;
        let slot = db.slot_status(slot)?;
        // With the logical source the trigger's counter is not kept: the slot's is.
        let live = match &slot {
            Some(s) => s.count,
            None => db.current()?.count,
        };
        Ok((counts, live, slot))
    }) {
        Ok((counts, live, slot)) => {
            now.live_count = u64::try_from(live).ok();
            now.slot = slot;
            counts.into_iter().collect()
        }
        Err(e) => {
            errors.push(e.to_string());
            admin.reset();
            BTreeMap::new()
        }
    };
    let mut out = Status {
        generated_ms: crate::clock::now_ms(),
        now,
        listeners: Vec::new(),
        queues: Vec::new(),
        workers: Vec::new(),
        errors,
    };
    let read = admin.queue().and_then(|q| {
        let queues_rows = rows(q, queues, &failed)?;
        let workers = q.workers(false)?;
        let listeners = q.members(false)?;
        let latest = match queues.first() {
            Some(first) => q.recent(first)?.into_iter().next(),
            None => None,
        };
        Ok((queues_rows, workers, listeners, latest))
    });
    match read {
        Ok((queues_rows, workers, listeners, latest)) => {
            out.queues = queues_rows;
            out.workers = workers;
            out.listeners = listeners;
            if let Some(a) = latest {
                out.now.count = Some(a.count);
                out.now.severity = Some(a.severity);
                out.now.percentage = Some(a.percentage);
                out.now.changed_ms = Some(a.time_ms);
                out.now.alert_id = Some(a.alert_id);
            }
        }
        Err(e) => {
            out.errors.push(e.to_string());
            admin.reset();
        }
    }
    out
}

/// `GET /api/throughput`: per queue, per minute of the last hour, oldest first.
pub fn throughput(admin: &mut Admin, queues: &[String]) -> Result<Value, AdminError> {
    let last = minute_of(crate::clock::now_ms());
    let first = last + 1 - CHART_MINUTES;
    let queue = admin.queue()?;
    let mut per_queue = serde_json::Map::new();
    for name in queues {
        let tallies = queue.throughput(name, last, CHART_MINUTES)?;
        let column = |f: fn(&Tally) -> u64| tallies.iter().map(f).collect::<Vec<u64>>();
        per_queue.insert(
            name.clone(),
            json!({
                "done": column(|t| t.done),
                "failed": column(|t| t.failed),
                "retried": column(|t| t.retried),
                "runtime_ms": column(|t| t.runtime_ms),
            }),
        );
    }
    Ok(json!({
        "minutes": (first..=last).collect::<Vec<u64>>(),
        "queues": per_queue,
    }))
}

/// `GET /api/alerts`: the newest first.
pub fn alerts(admin: &mut Admin, queues: &[String]) -> Result<Value, AdminError> {
    let recent: Vec<RecentAlert> = match queues.first() {
        Some(first) => admin.queue()?.recent(first)?,
        None => Vec::new(),
    };
    Ok(json!({ "alerts": recent }))
}

/// `GET /api/failed?queue=`: the list, each error cut to its first line.
pub fn failed_list(admin: &mut Admin, queue: Option<&str>) -> Result<Value, AdminError> {
    let db = admin.db()?;
    let queues: Vec<String> = failed::counts(db)?.into_iter().map(|(q, _)| q).collect();
    let jobs: Vec<Value> = admin
        .failed_list(queue)?
        .iter()
        .map(|j| {
            let first = j.exception.lines().next().unwrap_or("");
            json!({
                "uuid": j.uuid,
                "queue": j.queue,
                "failed_at": j.failed_at,
                "exception": first.chars().take(EXCEPTION_HEAD).collect::<String>(),
            })
        })
        .collect();
    Ok(json!({ "total": jobs.len(), "jobs": jobs, "queues": queues }))
}

/// `GET /api/failed/ID`.
pub fn failed_show(admin: &mut Admin, id: &str) -> Result<Value, AdminError> {
    let job = admin.failed_show(id)?;
    Ok(json!({
        "uuid": job.uuid,
        "queue": job.queue,
        "failed_at": job.failed_at,
        "exception": job.exception,
        "payload": job.payload,
    }))
}

/// `POST /api/failed/ID/retry` or `POST /api/failed/retry-all?queue=`.
pub fn retry(
    admin: &mut Admin,
    target: RetryTarget,
    queue: Option<&str>,
) -> Result<Value, AdminError> {
    let report = admin.failed_retry(&target, queue)?;
    let mut message = format!("{} job(s) queued again", report.retried.len());
    if !report.skipped.is_empty() {
        message.push_str(&format!("; {} not: ", report.skipped.len()));
        let why: Vec<String> = report
            .skipped
            .iter()
            .take(3)
            .map(|(id, why)| format!("{id}: {why}"))
            .collect();
        message.push_str(&why.join("; "));
    }
    Ok(json!({ "ok": report.complete(), "message": message }))
}

/// `POST /api/failed/ID/forget`.
pub fn forget(admin: &mut Admin, id: &str) -> Result<Value, AdminError> {
    let uuid = admin.failed_forget(id)?;
    Ok(json!({ "ok": true, "message": format!("failed job {uuid} forgotten") }))
}
