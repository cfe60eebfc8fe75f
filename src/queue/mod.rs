//! The reliable Redis job queue: push, reserve (with a deadline), block for work, finish.
//!
//! Semantics follow Laravel's Redis queue: a reserved job sits in a sorted set scored by its
//! reservation deadline, so a job whose worker died goes back to pending after `retry_after`
//! and nothing is lost. Every multi-key step is one Lua script, so there is no moment in which
//! a job has left pending without being reserved.

mod inspect;
pub mod job;
pub mod keys;
pub mod recent;
pub mod registry;
pub mod stats;
mod waiters;

pub use inspect::Sizes;
pub use job::Job;
pub use keys::Keys;
pub use stats::Tally;

use crate::redis_conn::{self, RedisConfig, RedisError, Router, Topology};
use crate::shutdown::Shutdown;
use std::time::Duration;

static POP: &str = include_str!("pop.lua");
static PUSH: &str = include_str!("push.lua");
static FINISH: &str = include_str!("finish.lua");
static START: &str = include_str!("start.lua");

/// Most jobs one reserve call takes: bounds the work of one script call (and Lua's unpack).
pub const MAX_BATCH: usize = 1000;

/// Shortest blocking wait: Redis treats 0 as "forever".
const MIN_BLOCK: Duration = Duration::from_millis(1);

/// How often [`Queue::push_guarded`] re-reads after losing a race: contention comes from a
/// handful of listeners, so a few tries always suffice; the bound only stops a runaway loop.
const GUARDED_TRIES: usize = 100;

/// What a [`Queue::push_guarded`] decision applies.
#[derive(Debug, Default)]
pub struct Guarded<T> {
    /// Keys to set (`Some`) or delete (`None`).
    pub writes: Vec<(String, Option<String>)>,
    /// Jobs to push.
    pub jobs: Vec<Job>,
    /// Alerts to add to the queue's recent list with them ([`recent`]).
    pub recent: Vec<recent::RecentAlert>,
    /// What the caller gets back.
    pub value: T,
}

/// A job taken from a queue, owned by this worker until its deadline.
#[derive(Debug, Clone)]
pub struct Reserved {
    /// The queue it came from.
    pub queue: String,
    /// The job's exact bytes, as stored (the handle for finishing it).
    pub raw: Vec<u8>,
    /// Attempts including this one.
    pub attempts: u32,
    /// Reservation deadline, Redis time in ms; also proves the reservation is still ours.
    pub deadline_ms: i64,
}

/// What one reserve call found.
#[derive(Debug, Default)]
pub struct Popped {
    /// The jobs now reserved by the caller.
    pub jobs: Vec<Reserved>,
    /// How long until a delayed or reserved job becomes due, if any is waiting.
    pub next_due: Option<Duration>,
}

/// How a reserved job ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Remove it: it ran, or it is recorded in `failed_jobs`.
    Done,
    /// Run it again after this delay (a failed attempt).
    RetryAfter(Duration),
    /// Hand it back untouched: it was reserved in a batch but never started (the worker is
    /// stopping). It goes back to the head of pending and this attempt does not count.
    Release,
}

/// A connection to the queue's Redis and the scripts that operate on it.
pub struct Queue {
    router: Router,
    server: RedisConfig,
    timeout: Duration,
    /// Blocks on several queues of a cluster at once (made on the first such wait).
    waiters: Option<waiters::Waiters>,
    shutdown: Option<Shutdown>,
    prefix: String,
    pop: redis::Script,
    push: redis::Script,
    finish: redis::Script,
    start: redis::Script,
}

impl Queue {
    /// Connects to Redis at `url`; keys live under `prefix`. A cluster or Sentinel failover
    /// in progress is waited out, here and in every later command.
    pub fn connect(server: &RedisConfig, prefix: &str) -> Result<Queue, RedisError> {
        Queue::open(Router::lazy(server, redis_conn::IO_TIMEOUT), server, prefix)
    }

    /// Connects with every command bounded by `timeout` and no failover waited out: for
    /// health probes, which must answer within their own deadline.
    pub fn connect_within(
        server: &RedisConfig,
        prefix: &str,
        timeout: Duration,
    ) -> Result<Queue, RedisError> {
        let router = Router::lazy(server, timeout).without_failover_wait();
        Queue::open(router, server, prefix)
    }

    fn open(mut router: Router, server: &RedisConfig, prefix: &str) -> Result<Queue, RedisError> {
        router.ping()?;
        Ok(Queue {
            router,
            server: server.clone(),
            timeout: redis_conn::IO_TIMEOUT,
            waiters: None,
            shutdown: None,
            prefix: prefix.to_string(),
            pop: redis::Script::new(POP),
            push: redis::Script::new(PUSH),
            finish: redis::Script::new(FINISH),
            start: redis::Script::new(START),
        })
    }

    /// The keys of queue `name`.
    pub fn keys(&self, name: &str) -> Keys {
        Keys::new(&self.prefix, name)
    }

    /// Ends a wait for a failover early when `shutdown` is set.
    pub fn stop_on(&mut self, shutdown: &Shutdown) {
        self.router.stop_on(shutdown);
        self.shutdown = Some(shutdown.clone());
    }

    /// Pushes jobs onto queue `name` in one round trip.
    pub fn push(&mut self, name: &str, jobs: &[Job]) -> Result<(), RedisError> {
        let raw: Vec<Vec<u8>> = jobs.iter().map(Job::encode).collect();
        self.push_raw(name, &raw)
    }

    /// Pushes jobs onto queue `name` and adds `recent` to its recent list, in one round trip.
    pub fn push_with(
        &mut self,
        name: &str,
        jobs: &[Job],
        recent: &[recent::RecentAlert],
    ) -> Result<(), RedisError> {
        if recent.is_empty() {
            return self.push(name, jobs);
        }
        let k = self.keys(name);
        let mut pipe = redis::pipe();
        if !jobs.is_empty() {
            add_push(&mut pipe, &k, jobs);
            pipe.ignore();
        }
        recent::add_to(&mut pipe, &k.recent(), recent);
        self.router.write(Some(&k.pending), |con| pipe.exec(con))
    }

    /// Pushes raw job bytes (tests use it to push malformed jobs).
    pub fn push_raw(&mut self, name: &str, raw: &[Vec<u8>]) -> Result<(), RedisError> {
        if raw.is_empty() {
            return Ok(());
        }
        let k = self.keys(name);
        let mut inv = self.push.key(&k.pending);
        inv.key(&k.notify).key(&k.attempts);
        for job in raw {
            inv.arg(job.as_slice());
        }
        self.router
            .write(Some(&k.pending), |con| inv.invoke::<i64>(con))?;
        Ok(())
    }

    /// Reads `keys`, lets `decide` choose from their values what to write and which jobs to
    /// push onto queue `name`, and applies both in one MULTI/EXEC.
    ///
    /// Optimistic locking: the keys are WATCHed, so when another client changes one between
    /// the read and the EXEC, nothing is applied and `decide` runs again on the new values.
    /// Two listeners deciding about the same state can therefore never both act on it. In a
    /// cluster the keys share the queue's hash tag, so the transaction stays on one node.
    /// Returns the decision that was applied.
    pub fn push_guarded<T>(
        &mut self,
        name: &str,
        keys: &[String],
        mut decide: impl FnMut(&[Option<String>]) -> Guarded<T>,
    ) -> Result<Guarded<T>, RedisError> {
        let k = self.keys(name);
        for _ in 0..GUARDED_TRIES {
            let applied = self.router.write(Some(&k.pending), |con| {
                guarded_try(con, &k, keys, &mut decide)
            })?;
            if let Some(guarded) = applied {
                return Ok(guarded);
            }
        }
        Err(RedisError {
            target: self.target(),
            reason: format!(
                "alert state kept changing under {GUARDED_TRIES} tries; another process \
                 writes it constantly"
            ),
            dropped: false,
        })
    }

    /// Reserves up to `max` jobs from queue `name` for `retry_after`.
    ///
    /// `notify_taken` is 1 when the caller's blocking wait already consumed this queue's
    /// notify entry, so the count of notify entries stays equal to available jobs.
    pub fn pop(
        &mut self,
        name: &str,
        max: usize,
        retry_after: Duration,
        notify_taken: bool,
    ) -> Result<Popped, RedisError> {
        let k = self.keys(name);
        type Reply = (i64, i64, Vec<Vec<u8>>, Vec<i64>, i64);
        let mut inv = self.pop.key(&k.pending);
        inv.key(&k.delayed)
            .key(&k.reserved)
            .key(&k.notify)
            .key(&k.attempts)
            .key(&k.started)
            .arg(u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX))
            .arg(max.clamp(1, MAX_BATCH))
            .arg(u8::from(notify_taken));
        let (now, next_due, jobs, attempts, deadline_ms): Reply =
            self.router.run(Some(&k.pending), |con| inv.invoke(con))?;
        let jobs = jobs
            .into_iter()
            .zip(attempts)
            .map(|(raw, attempts)| Reserved {
                queue: name.to_string(),
                raw,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                deadline_ms,
            })
            .collect();
        let next_due = (next_due >= 0)
            .then(|| Duration::from_millis(next_due.saturating_sub(now).max(0) as u64));
        Ok(Popped { jobs, next_due })
    }

    /// Blocks until one of `names` has a job or `timeout` passes; returns the queue that woke.
    ///
    /// One server takes a single `BLPOP` on every queue's notify list. A cluster cannot (the
    /// lists sit in different slots, often on different nodes), so there each queue has a
    /// thread of its own blocked on its node, and the first to wake answers.
    pub fn wait(
        &mut self,
        names: &[String],
        timeout: Duration,
    ) -> Result<Option<String>, RedisError> {
        let timeout = timeout.max(MIN_BLOCK);
        if names.len() > 1 && matches!(self.server.topology, Topology::Cluster { .. }) {
            let waiters = self.waiters.get_or_insert_with(|| {
                waiters::Waiters::start(&self.server, names, &self.prefix, self.shutdown.clone())
            });
            return waiters.wait(timeout);
        }
        let notify: Vec<String> = names.iter().map(|n| self.keys(n).notify).collect();
        let first = notify.first().cloned();
        let reply = self.router.run(first.as_deref(), |con| {
            block_pop(con, &notify, timeout, self.timeout)
        })?;
        Ok(reply.and_then(|(key, _)| {
            let i = notify.iter().position(|k| *k == key)?;
            Some(names[i].clone())
        }))
    }

    /// Finishes reserved jobs of one queue in one round trip. Returns how many were still
    /// ours (a reservation that expired and was taken over is left to its new owner).
    ///
    /// `tally` is what the batch did, added to this minute's counters ([`stats`]).
    pub fn finish(
        &mut self,
        name: &str,
        jobs: &[(&Reserved, Outcome)],
        tally: &Tally,
    ) -> Result<usize, RedisError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let k = self.keys(name);
        let minute = stats::minute_of(crate::clock::now_ms());
        let mut inv = self.finish.key(&k.reserved);
        inv.key(&k.delayed)
            .key(&k.attempts)
            .key(&k.pending)
            .key(&k.notify)
            .key(&k.started)
            .key(k.stats(minute));
        for n in tally.args() {
            inv.arg(n);
        }
        for (job, outcome) in jobs {
            let action = match outcome {
                Outcome::Done => "ack".to_string(),
                Outcome::Release => "release".to_string(),
                Outcome::RetryAfter(d) => d.as_millis().to_string(),
            };
            inv.arg(job.raw.as_slice()).arg(job.deadline_ms).arg(action);
        }
        let owned: i64 = self.router.write(Some(&k.pending), |con| inv.invoke(con))?;
        Ok(owned as usize)
    }

    /// Marks reserved jobs of queue `name` as started, just before they run: an attempt
    /// counts only once its job started, so a worker killed mid-batch charges only the job
    /// it was running. Returns how many were still ours to mark.
    pub fn start(&mut self, name: &str, jobs: &[&Reserved]) -> Result<usize, RedisError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let k = self.keys(name);
        let mut inv = self.start.key(&k.reserved);
        inv.key(&k.started);
        for job in jobs {
            inv.arg(job.raw.as_slice()).arg(job.deadline_ms);
        }
        let marked: i64 = self.router.run(Some(&k.pending), |con| inv.invoke(con))?;
        Ok(usize::try_from(marked).unwrap_or(0))
    }

    /// Sets the "Redis still has our data" marker ([`keys::marker`]) if it is missing; true
    /// when it was missing (first start, or Redis restarted without persistence or was
    /// flushed).
    pub fn claim_marker(&mut self) -> Result<bool, RedisError> {
        let marker = keys::marker(&self.prefix);
        let set: Option<String> = self.router.run(Some(&marker), |con| {
            redis::cmd("SET").arg(&marker).arg(1).arg("NX").query(con)
        })?;
        Ok(set.is_some())
    }

    /// Proves the connection works (`PING`).
    pub fn ping(&mut self) -> Result<(), RedisError> {
        self.router.ping()
    }

    /// The server as shown in messages.
    pub fn target(&self) -> String {
        self.router.target()
    }

    /// Runs `op` on the node holding `key` (for the readers in `inspect` and `workers`).
    fn on<T>(
        &mut self,
        key: &str,
        op: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, RedisError> {
        self.router.run(Some(key), op)
    }
}

/// One WATCH, read, decide, MULTI/EXEC round; `None` when another client changed a watched
/// key first (nothing was applied).
fn guarded_try<T>(
    con: &mut redis::Connection,
    k: &Keys,
    keys: &[String],
    decide: &mut impl FnMut(&[Option<String>]) -> Guarded<T>,
) -> redis::RedisResult<Option<Guarded<T>>> {
    let values: Vec<Option<String>> = if keys.is_empty() {
        Vec::new()
    } else {
        redis::cmd("WATCH").arg(keys).exec(con)?;
        redis::cmd("MGET").arg(keys).query(con)?
    };
    let guarded = decide(&values);
    if guarded.writes.is_empty() && guarded.jobs.is_empty() {
        redis::cmd("UNWATCH").exec(con)?;
        return Ok(Some(guarded));
    }
    let mut pipe = redis::pipe();
    pipe.atomic();
    for (key, value) in &guarded.writes {
        match value {
            Some(v) => pipe.set(key, v),
            None => pipe.del(key),
        };
    }
    if !guarded.jobs.is_empty() {
        add_push(&mut pipe, k, &guarded.jobs);
    }
    recent::add_to(&mut pipe, &k.recent(), &guarded.recent);
    let reply: redis::Value = pipe.query(con)?;
    Ok((reply != redis::Value::Nil).then_some(guarded))
}

/// Adds the push script for `jobs` onto queue `k` to `pipe`, with its source: EVALSHA could
/// meet NOSCRIPT inside a pipeline or an EXEC.
fn add_push(pipe: &mut redis::Pipeline, k: &Keys, jobs: &[Job]) {
    let push = pipe
        .cmd("EVAL")
        .arg(PUSH)
        .arg(3)
        .arg(&k.pending)
        .arg(&k.notify)
        .arg(&k.attempts);
    for job in jobs {
        push.arg(job.encode());
    }
}

/// `BLPOP` on `notify` for up to `timeout`; the read timeout outlasts the block meanwhile, or
/// a late reply would be skipped.
pub(crate) fn block_pop(
    con: &mut redis::Connection,
    notify: &[String],
    timeout: Duration,
    io: Duration,
) -> redis::RedisResult<Option<(String, String)>> {
    con.set_read_timeout(Some(timeout.saturating_add(redis_conn::IO_TIMEOUT)))?;
    let reply = redis::cmd("BLPOP")
        .arg(notify)
        .arg(timeout.as_secs_f64())
        .query(con);
    con.set_read_timeout(Some(io))?;
    reply
}
