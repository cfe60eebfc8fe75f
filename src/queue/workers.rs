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
    pub fn beat(&mut self, info: &WorkerInfo, ttl: Duration) -> Result<(), RedisError> {
        let json = serde_json::to_string(info).unwrap_or_default();
        redis::pipe()
            .cmd("SET")
            .arg(keys::worker(&self.prefix, &info.id))
            .arg(json)
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .ignore()
            .cmd("SADD")
            .arg(keys::workers(&self.prefix))
            .arg(&info.id)
            .ignore()
            .exec(&mut self.con)
            .map_err(|e| self.err(e))
    }

    /// Removes a worker's heartbeat (it is stopping).
    pub fn unregister(&mut self, id: &str) -> Result<(), RedisError> {
        redis::pipe()
            .cmd("DEL")
            .arg(keys::worker(&self.prefix, id))
            .ignore()
            .cmd("SREM")
            .arg(keys::workers(&self.prefix))
            .arg(id)
            .ignore()
            .exec(&mut self.con)
            .map_err(|e| self.err(e))
    }

    /// The workers whose heartbeat is alive, sorted by name then id. With `prune`, the ids of
    /// workers whose heartbeat expired are removed from the set (a worker does it at start;
    /// `status` only reads).
    pub fn workers(&mut self, prune: bool) -> Result<Vec<WorkerInfo>, RedisError> {
        let set = keys::workers(&self.prefix);
        let ids: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&set)
            .query(&mut self.con)
            .map_err(|e| self.err(e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // One GET per key in a pipeline rather than MGET: the keys are in different slots.
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("GET").arg(keys::worker(&self.prefix, id));
        }
        let values: Vec<Option<String>> = pipe.query(&mut self.con).map_err(|e| self.err(e))?;
        let mut alive = Vec::new();
        let mut gone = Vec::new();
        for (id, value) in ids.into_iter().zip(values) {
            // An unreadable entry is shown as gone rather than failing the whole status.
            match value.and_then(|v| serde_json::from_str::<WorkerInfo>(&v).ok()) {
                Some(info) => alive.push(info),
                None => gone.push(id),
            }
        }
        if prune && !gone.is_empty() {
            redis::cmd("SREM")
                .arg(&set)
                .arg(&gone)
                .exec(&mut self.con)
                .map_err(|e| self.err(e))?;
        }
        alive.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
        Ok(alive)
    }
}
