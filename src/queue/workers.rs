//! The registry of running workers, for `queue-work status`: each worker keeps a heartbeat
//! key with a time to live, so one that died (SIGKILL, lost machine) drops out by itself.

use super::{Queue, keys};
use crate::redis_conn::RedisError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a worker tells about itself in its heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Unique per process: `host:pid:random`.
    pub id: String,
    /// `--name`, if one was given.
    pub name: Option<String>,
    /// The machine it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// The queues it works, highest priority first.
    pub queues: Vec<String>,
    /// When it started, Unix time in ms.
    pub started_ms: u64,
    /// The job it is running, if any.
    pub current: Option<CurrentJob>,
    /// Jobs done so far.
    pub done: u64,
    /// Attempts that failed and were released for a retry.
    pub retried: u64,
    /// Jobs recorded in `failed_jobs`.
    pub failed: u64,
}

impl WorkerInfo {
    /// This process, starting now, with nothing done yet.
    pub fn new(name: Option<String>, queues: Vec<String>) -> WorkerInfo {
        let host = crate::host::name();
        let pid = std::process::id();
        let random = uuid::Uuid::new_v4().simple().to_string();
        WorkerInfo {
            id: format!("{host}:{pid}:{}", &random[..6]),
            name,
            host,
            pid,
            queues,
            started_ms: crate::clock::now_ms(),
            current: None,
            done: 0,
            retried: 0,
            failed: 0,
        }
    }
}

/// The job a worker has in hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurrentJob {
    /// The job id.
    pub id: String,
    /// The job kind, e.g. `broadcast:redis`.
    pub kind: String,
    /// When it started, Unix time in ms.
    pub started_ms: u64,
}

impl Queue {
    /// Writes (or refreshes) a worker's heartbeat; it vanishes after `ttl` unless refreshed.
    /// The two keys live in different cluster slots, so they are written one by one: the
    /// entry in the set first, so a heartbeat is never there without it.
    pub fn beat(&mut self, info: &WorkerInfo, ttl: Duration) -> Result<(), RedisError> {
        let json = serde_json::to_string(info).unwrap_or_default();
        let set = keys::workers(&self.prefix);
        self.on(&set, |con| redis::cmd("SADD").arg(&set).arg(&info.id).exec(con))?;
        let key = keys::worker(&self.prefix, &info.id);
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.on(&key, |con| {
            redis::cmd("SET")
                .arg(&key)
                .arg(&json)
                .arg("PX")
                .arg(ttl_ms)
                .exec(con)
        })
    }

    /// Removes a worker's heartbeat (it is stopping).
    pub fn unregister(&mut self, id: &str) -> Result<(), RedisError> {
        let key = keys::worker(&self.prefix, id);
        self.on(&key, |con| redis::cmd("DEL").arg(&key).exec(con))?;
        let set = keys::workers(&self.prefix);
        self.on(&set, |con| redis::cmd("SREM").arg(&set).arg(id).exec(con))
    }

    /// The workers whose heartbeat is alive, sorted by name then id. With `prune`, the ids of
    /// workers whose heartbeat expired are removed from the set (a worker does it at start;
    /// `status` only reads).
    pub fn workers(&mut self, prune: bool) -> Result<Vec<WorkerInfo>, RedisError> {
        let set = keys::workers(&self.prefix);
        let ids: Vec<String> = self.on(&set, |con| redis::cmd("SMEMBERS").arg(&set).query(con))?;
        let mut alive = Vec::new();
        let mut gone = Vec::new();
        // One GET per key rather than MGET: the keys are in different cluster slots.
        for id in ids {
            let key = keys::worker(&self.prefix, &id);
            let value: Option<String> = self.on(&key, |con| redis::cmd("GET").arg(&key).query(con))?;
            // An unreadable entry is shown as gone rather than failing the whole status.
            match value.and_then(|v| serde_json::from_str::<WorkerInfo>(&v).ok()) {
                Some(info) => alive.push(info),
                None => gone.push(id),
            }
        }
        if prune && !gone.is_empty() {
            self.on(&set, |con| redis::cmd("SREM").arg(&set).arg(&gone).exec(con))?;
        }
        alive.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(alive)
    }
}
