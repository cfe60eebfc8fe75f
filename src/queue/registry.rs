//! The registry of running workers and listeners, for `queue-work status` and the
//! dashboard: each process keeps a heartbeat key with a time to live, so one that died
//! (SIGKILL, lost machine) drops out by itself.

use super::{Queue, keys};
use crate::redis_conn::RedisError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a registered process tells about itself.
pub trait Member: Serialize + DeserializeOwned + Clone + Send + 'static {
    /// `worker` or `listener`: names its keys ([`keys::members`]).
    const KIND: &'static str;
    /// Unique per process.
    fn id(&self) -> &str;
    /// Orders a listing.
    fn sort_key(&self) -> (Option<&str>, &str);
}

/// Where the listener is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerState {
    /// Connecting, or checking the schema.
    Starting,
    /// Holds the lock: it rates and dispatches.
    Active,
    /// Another listener is active; this one waits to take over.
    Standby,
}

/// What a listener tells about itself in its heartbeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListenerInfo {
    /// Unique per process: `host:pid:random`.
    pub id: String,
    /// The machine it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// Active or standby.
    pub state: ListenerState,
    /// When it started, Unix time in ms.
    pub started_ms: u64,
}

impl ListenerInfo {
    /// This process, starting now.
    pub fn new() -> ListenerInfo {
        let (id, host, pid) = process_id();
        ListenerInfo {
            id,
            host,
            pid,
            state: ListenerState::Starting,
            started_ms: crate::clock::now_ms(),
        }
    }
}

impl Default for ListenerInfo {
    fn default() -> Self {
        ListenerInfo::new()
    }
}

impl Member for ListenerInfo {
    const KIND: &'static str = "listener";
    fn id(&self) -> &str {
        &self.id
    }
    fn sort_key(&self) -> (Option<&str>, &str) {
        (Some(&self.host), &self.id)
    }
}

impl Member for WorkerInfo {
    const KIND: &'static str = "worker";
    fn id(&self) -> &str {
        &self.id
    }
    fn sort_key(&self) -> (Option<&str>, &str) {
        (self.name.as_deref(), &self.id)
    }
}

/// `host:pid:random`, the host and the pid of this process.
fn process_id() -> (String, String, u32) {
    let host = crate::host::name();
    let pid = std::process::id();
    let random = uuid::Uuid::new_v4().simple().to_string();
    (format!("{host}:{pid}:{}", &random[..6]), host, pid)
}

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
        let (id, host, pid) = process_id();
        WorkerInfo {
            id,
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
    /// Writes (or refreshes) a member's heartbeat; it vanishes after `ttl` unless refreshed.
    /// The two keys live in different cluster slots, so they are written one by one: the
    /// heartbeat first, so the set never names a member whose heartbeat is not there yet
    /// (another process starting meanwhile would prune it).
    pub fn beat<M: Member>(&mut self, info: &M, ttl: Duration) -> Result<(), RedisError> {
        let json = serde_json::to_string(info).unwrap_or_default();
        let key = keys::member(&self.prefix, M::KIND, info.id());
        let ttl_ms = ttl.as_millis().max(1) as u64;
        self.on(&key, |con| {
            redis::cmd("SET")
                .arg(&key)
                .arg(&json)
                .arg("PX")
                .arg(ttl_ms)
                .exec(con)
        })?;
        let set = keys::members(&self.prefix, M::KIND);
        self.on(&set, |con| {
            redis::cmd("SADD").arg(&set).arg(info.id()).exec(con)
        })
    }

    /// Removes a member's heartbeat (it is stopping).
    pub fn unregister<M: Member>(&mut self, id: &str) -> Result<(), RedisError> {
        let key = keys::member(&self.prefix, M::KIND, id);
        self.on(&key, |con| redis::cmd("DEL").arg(&key).exec(con))?;
        let set = keys::members(&self.prefix, M::KIND);
        self.on(&set, |con| redis::cmd("SREM").arg(&set).arg(id).exec(con))
    }

    /// The workers whose heartbeat is alive ([`Queue::members`]).
    pub fn workers(&mut self, prune: bool) -> Result<Vec<WorkerInfo>, RedisError> {
        self.members(prune)
    }

    /// The members whose heartbeat is alive, sorted by name then id. With `prune`, the ids
    /// of members whose heartbeat expired are removed from the set (a process does it at
    /// start; `status` only reads).
    pub fn members<M: Member>(&mut self, prune: bool) -> Result<Vec<M>, RedisError> {
        let set = keys::members(&self.prefix, M::KIND);
        let ids: Vec<String> = self.on(&set, |con| redis::cmd("SMEMBERS").arg(&set).query(con))?;
        let mut alive: Vec<M> = Vec::new();
        let mut gone = Vec::new();
        // One GET per key rather than MGET: the keys are in different cluster slots.
        for id in ids {
            let key = keys::member(&self.prefix, M::KIND, &id);
            let value: Option<String> =
                self.on(&key, |con| redis::cmd("GET").arg(&key).query(con))?;
            // An unreadable entry is shown as gone rather than failing the whole status.
            match value.and_then(|v| serde_json::from_str::<M>(&v).ok()) {
                Some(info) => alive.push(info),
                None => gone.push(id),
            }
        }
        if prune && !gone.is_empty() {
            self.on(&set, |con| {
                redis::cmd("SREM").arg(&set).arg(&gone).exec(con)
            })?;
        }
        alive.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        Ok(alive)
    }
}
