//! Sends each command to the server that owns its key, whatever the [`Topology`]: the one
//! server, the cluster node serving the key's slot, or the primary Sentinel names. While a
//! failover is in progress it follows `MOVED` and `ASK`, asks again where the primary is,
//! and retries with backoff for up to the failover timeout; and a write can be made to wait
//! until it reached the replicas (`WAIT`).

use super::slots::{SlotMap, slot_of};
use super::topology::{self, Topology};
use super::{RedisConfig, RedisError};
use crate::shutdown::Shutdown;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// First pause while a failover is waited out; it doubles up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(50);
const MAX_DELAY: Duration = Duration::from_secs(1);
/// Redirects followed in a row before they count as a failover in progress (a slot that
/// moves back and forth while it migrates).
const MAX_REDIRECTS: usize = 5;
/// The node of a [`Topology::Single`] server.
const SINGLE: &str = "";
/// How long the primary Sentinel named is used before the sentinels are asked again. Right
/// after a failover the old primary still accepts writes until Sentinel demotes it (seconds
/// later); this bounds how long a client that did not notice keeps writing there.
const RECHECK: Duration = Duration::from_secs(1);

/// Why one try failed.
enum Failed {
    /// A server answered with an error, or could not be reached.
    Redis {
        addr: String,
        error: redis::RedisError,
    },
    /// The node for the key is not known yet: no seed or sentinel answered, or the one named
    /// is not a primary (yet).
    Resolve(String),
    /// The write was applied but did not reach enough replicas in time.
    NotReplicated { addr: String, acked: i64 },
}

/// Connections to the nodes of one Redis deployment, and where each key lives.
pub struct Router {
    config: RedisConfig,
    timeout: Duration,
    failover: Duration,
    nodes: HashMap<String, redis::Connection>,
    slots: SlotMap,
    /// The primary Sentinel named, and when it was last confirmed.
    primary: Option<(String, Instant)>,
    shutdown: Option<Shutdown>,
}

impl Router {
    /// Connects (finding the primary or the cluster's slots) and checks the server answers;
    /// every command is bounded by `timeout`. A failover in progress is waited out.
    pub fn connect(config: &RedisConfig, timeout: Duration) -> Result<Router, RedisError> {
        let mut router = Router::lazy(config, timeout);
        router.ping()?;
        Ok(router)
    }

    /// Proves a primary answers (`PING`), finding it first when needed.
    pub fn ping(&mut self) -> Result<(), RedisError> {
        self.run(None, |con| redis::cmd("PING").exec(con))
    }

    /// A router that connects on its first command.
    pub fn lazy(config: &RedisConfig, timeout: Duration) -> Router {
        let failover = match config.topology {
            // One server has no failover to wait for: its outages are handled by the callers,
            // as they always were (the listener keeps its alerts, the worker reconnects).
            Topology::Single => Duration::ZERO,
            _ => config.durability.failover_timeout,
        };
        Router {
            config: config.clone(),
            timeout: timeout.max(Duration::from_millis(1)),
            failover,
            nodes: HashMap::new(),
            slots: SlotMap::default(),
            primary: None,
            shutdown: None,
        }
    }

    /// Fails at once instead of waiting out a failover (a broadcast, whose job is retried
    /// by the queue anyway).
    pub fn without_failover_wait(mut self) -> Router {
        self.failover = Duration::ZERO;
        self
    }

    /// Ends a failover wait early when `shutdown` is set.
    pub fn stop_on(&mut self, shutdown: &Shutdown) {
        self.shutdown = Some(shutdown.clone());
    }

    /// The deployment as shown in messages (never a password).
    pub fn target(&self) -> String {
        self.config.describe()
    }

    /// Runs `op` on the node that owns `key` (any primary for `None`), following redirects
    /// and waiting out a failover. `op` may run more than once.
    pub fn run<T>(
        &mut self,
        key: Option<&str>,
        op: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, RedisError> {
        self.run_with(key, false, op)
    }

    /// [`Router::run`] for a write that must survive a failover: it is acknowledged only
    /// once `WAIT` confirms it reached the configured number of replicas. A write that was
    /// applied but could not be confirmed is an error (the caller keeps what it wrote and
    /// tries again later, so it may arrive twice but is not lost).
    pub fn write<T>(
        &mut self,
        key: Option<&str>,
        op: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, RedisError> {
        let durable = self.config.durability.wait_replicas > 0;
        self.run_with(key, durable, op)
    }

    fn run_with<T>(
        &mut self,
        key: Option<&str>,
        durable: bool,
        mut op: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, RedisError> {
        let deadline = Instant::now() + self.failover;
        let mut delay = FIRST_DELAY;
        let mut ask: Option<String> = None;
        let mut redirects = 0;
        loop {
            let failed = match self.attempt(key, ask.take(), durable, deadline, &mut op) {
                Ok(value) => return Ok(value),
                Err(failed) => failed,
            };
            if redirects < MAX_REDIRECTS
                && let Some(next) = self.redirect(&failed)
            {
                redirects += 1;
                ask = next;
                continue;
            }
            if !transient(&failed) || Instant::now() + delay > deadline {
                return Err(self.error(failed));
            }
            log::debug!(
                "waiting out a Redis failover: {}",
                self.error_ref(&failed).reason
            );
            self.forget(&failed);
            if self.pause(delay) {
                return Err(self.error(failed));
            }
            delay = (delay * 2).min(MAX_DELAY);
        }
    }

    /// One try: find the node, run `op` there (after `ASKING` when redirected by `ASK`),
    /// then wait for the replicas when `durable`.
    fn attempt<T>(
        &mut self,
        key: Option<&str>,
        ask: Option<String>,
        durable: bool,
        deadline: Instant,
        op: &mut impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, Failed> {
        let asking = ask.is_some();
        let addr = match ask {
            Some(addr) => addr,
            None => self.node_for(key)?,
        };
        let con = self.connection(&addr)?;
        let on = |error| Failed::Redis {
            addr: addr.clone(),
            error,
        };
        if asking {
            redis::cmd("ASKING").exec(con).map_err(on)?;
        }
        let value = op(con).map_err(on)?;
        if durable {
            self.await_replicas(&addr, deadline)?;
        }
        Ok(value)
    }

    /// `WAIT`s until the configured replicas have everything written on `addr`, retrying
    /// until `deadline` (or once, when the failover window is shorter than one wait).
    fn await_replicas(&mut self, addr: &str, deadline: Instant) -> Result<(), Failed> {
        let want = i64::from(self.config.durability.wait_replicas);
        let wait = self.config.durability.wait_timeout;
        let until = deadline.max(Instant::now() + wait);
        loop {
            let acked = self.wait_once(addr, want, wait)?;
            if acked >= want {
                return Ok(());
            }
            if Instant::now() >= until {
                return Err(Failed::NotReplicated {
                    addr: addr.to_string(),
                    acked,
                });
            }
            if !self.still_primary(addr) {
                // A primary cut off by a failover: what it took is lost when it is demoted,
                // so the write is made again on the new one.
                return Err(Failed::Resolve(format!(
                    "{addr} is no longer the primary; the write is made again on the new one"
                )));
            }
        }
    }

    /// One `WAIT want wait` on `addr`: how many replicas confirmed.
    fn wait_once(&mut self, addr: &str, want: i64, wait: Duration) -> Result<i64, Failed> {
        let io = self.timeout;
        let con = self.connection(addr)?;
        let on = |error| Failed::Redis {
            addr: addr.to_string(),
            error,
        };
        con.set_read_timeout(Some(wait + io)).map_err(on)?;
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        let acked = redis::cmd("WAIT")
            .arg(want)
            .arg(ms)
            .query(con)
            .map_err(on)?;
        con.set_read_timeout(Some(io)).map_err(on)?;
        Ok(acked)
    }

    /// The node that serves `key`, or any primary for `None`.
    fn node_for(&mut self, key: Option<&str>) -> Result<String, Failed> {
        match &self.config.topology {
            Topology::Single => Ok(SINGLE.to_string()),
            Topology::Sentinel { .. } => match self.primary.clone() {
                Some((addr, at)) if at.elapsed() < RECHECK => Ok(addr),
                Some((addr, _)) if self.sentinels_still_name(&addr) => {
                    self.primary = Some((addr.clone(), Instant::now()));
                    Ok(addr)
                }
                _ => self.find_primary(),
            },
            Topology::Cluster { .. } => {
                if self.slots.is_empty() {
                    self.slots = self.load_slots()?;
                }
                let node = match key {
                    Some(key) => self.slots.node(slot_of(key.as_bytes())).map(str::to_string),
                    None => self.slots.primaries().into_iter().next(),
                };
                node.ok_or_else(|| Failed::Resolve("no node serves the key's slot".into()))
            }
        }
    }

    /// The open connection to `addr`, opened when there is none.
    fn connection(&mut self, addr: &str) -> Result<&mut redis::Connection, Failed> {
        if !self.nodes.contains_key(addr) {
            let con = self.open(addr)?;
            self.nodes.insert(addr.to_string(), con);
        }
        self.nodes
            .get_mut(addr)
            .ok_or_else(|| Failed::Resolve(format!("no connection to {addr}")))
    }

    fn open(&self, addr: &str) -> Result<redis::Connection, Failed> {
        let config = self.node_config(addr).map_err(Failed::Resolve)?;
        let on = |error| Failed::Redis {
            addr: addr.to_string(),
            error,
        };
        let mut con = super::open(&config, self.timeout).map_err(on)?;
        if matches!(self.config.topology, Topology::Sentinel { .. }) {
            // A sentinel may still name the old primary while it fails over.
            let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut con).map_err(on)?;
            if !is_primary(&role) {
                return Err(Failed::Resolve(format!(
                    "{addr} is not the primary yet (a failover is in progress; ROLE says {:?})",
                    role.first()
                )));
            }
        }
        Ok(con)
    }

    /// The settings for one node: the configured URL itself for one server, else that URL
    /// (or the matching seed's) with the node's address.
    fn node_config(&self, addr: &str) -> Result<RedisConfig, String> {
        let url = match &self.config.topology {
            Topology::Single => return Ok(self.config.single()),
            Topology::Sentinel { .. } => topology::node_url(self.config.url.expose(), addr, false)?,
            Topology::Cluster { seeds } => {
                let seed = seeds
                    .iter()
                    .find(|s| topology::addr_of(s.expose()) == addr)
                    .or(seeds.first())
                    .ok_or("no cluster seed node is configured")?;
                topology::node_url(seed.expose(), addr, true)?
            }
        };
        Ok(self.config.with_url(&url))
    }

    /// The first address the sentinels name that answers as a primary: right after a
    /// failover some sentinels still name the old one (it now answers as a replica).
    fn find_primary(&mut self) -> Result<String, Failed> {
        let mut last = Failed::Resolve("no sentinel named a primary".into());
        for addr in self.ask_sentinels()? {
            match self.connection(&addr) {
                Ok(_) => {
                    if let Some((old, _)) = &self.primary
                        && *old != addr
                    {
                        log::info!("Redis primary moved from {old} to {addr} (Sentinel)");
                        let old = old.clone();
                        self.nodes.remove(&old);
                    }
                    self.primary = Some((addr.clone(), Instant::now()));
                    return Ok(addr);
                }
                Err(failed) => last = failed,
            }
        }
        Err(last)
    }

    /// True while `addr` is still the primary: the one Sentinel names, or a node that says
    /// it is a primary.
    fn still_primary(&mut self, addr: &str) -> bool {
        if matches!(self.config.topology, Topology::Sentinel { .. }) {
            self.primary = None;
            return self.find_primary().is_ok_and(|p| p == addr);
        }
        let Ok(con) = self.connection(addr) else {
            return false;
        };
        let role: redis::RedisResult<Vec<redis::Value>> = redis::cmd("ROLE").query(con);
        role.is_ok_and(|r| is_primary(&r))
    }

    /// Asks every sentinel where the primary is; the distinct answers, in sentinel order.
    fn ask_sentinels(&mut self) -> Result<Vec<String>, Failed> {
        let count = self.sentinel_count();
        let mut last = String::from("no sentinel is configured");
        let mut named: Vec<String> = Vec::new();
        for i in 0..count {
            match self.ask_sentinel(i) {
                Ok(addr) if !named.contains(&addr) => named.push(addr),
                Ok(_) => {}
                Err(why) => last = why,
            }
        }
        if named.is_empty() {
            return Err(Failed::Resolve(last));
        }
        Ok(named)
    }

    /// True when the first sentinel that answers still names `current`: the cheap check
    /// made every [`RECHECK`].
    fn sentinels_still_name(&mut self, current: &str) -> bool {
        (0..self.sentinel_count())
            .find_map(|i| self.ask_sentinel(i).ok())
            .is_some_and(|addr| addr == current)
    }

    fn sentinel_count(&self) -> usize {
        match &self.config.topology {
            Topology::Sentinel { sentinels, .. } => sentinels.len(),
            _ => 0,
        }
    }

    /// The primary sentinel `i` names, over a connection kept between asks.
    fn ask_sentinel(&mut self, i: usize) -> Result<String, String> {
        let Topology::Sentinel { sentinels, service } = &self.config.topology else {
            return Err("not a sentinel setup".into());
        };
        let Some(sentinel) = sentinels.get(i) else {
            return Err("no such sentinel".into());
        };
        let (service, at) = (service.clone(), topology::addr_of(sentinel.expose()));
        let key = format!("sentinel {at}");
        if !self.nodes.contains_key(&key) {
            let config = self.config.with_url(sentinel.expose());
            let con = super::open(&config, self.timeout.min(super::CONNECT_TIMEOUT))
                .map_err(|e| format!("{key}: {}", super::error(&at, &e).reason))?;
            self.nodes.insert(key.clone(), con);
        }
        let con = self.nodes.get_mut(&key).ok_or("no connection")?;
        let asked = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(&service)
            .query::<Option<(String, u16)>>(con);
        match asked {
            Ok(Some((host, port))) if host.contains(':') => Ok(format!("[{host}]:{port}")),
            Ok(Some((host, port))) => Ok(format!("{host}:{port}")),
            Ok(None) => Err(format!("{key} does not know service {service:?}")),
            Err(e) => {
                self.nodes.remove(&key);
                Err(format!("{key}: {}", super::error(&at, &e).reason))
            }
        }
    }

    /// Reads the slot map from the first node that answers: known primaries, then seeds.
    fn load_slots(&mut self) -> Result<SlotMap, Failed> {
        let Topology::Cluster { seeds } = &self.config.topology else {
            return Err(Failed::Resolve("not a cluster".into()));
        };
        let mut candidates: Vec<String> = self.nodes.keys().cloned().collect();
        for seed in seeds {
            let addr = topology::addr_of(seed.expose());
            if !candidates.contains(&addr) {
                candidates.push(addr);
            }
        }
        let mut last = String::from("no cluster seed node is configured");
        for addr in candidates {
            let reply = self.connection(&addr).and_then(|con| {
                redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query::<redis::Value>(con)
                    .map_err(|error| Failed::Redis {
                        addr: addr.clone(),
                        error,
                    })
            });
            match reply {
                Ok(reply) => match SlotMap::parse(&reply, &addr) {
                    Ok(map) => return Ok(map),
                    Err(reason) => last = format!("{addr}: {reason}"),
                },
                Err(failed) => {
                    last = self.error_ref(&failed).to_string();
                    self.forget(&failed);
                }
            }
        }
        Err(Failed::Resolve(format!(
            "no cluster node answered CLUSTER SLOTS ({last})"
        )))
    }

    /// Follows a `MOVED` (the map is corrected; `Some(None)`: retry at once) or an `ASK`
    /// (`Some(Some(node))`: retry once there).
    fn redirect(&mut self, failed: &Failed) -> Option<Option<String>> {
        let Failed::Redis { error, .. } = failed else {
            return None;
        };
        let (addr, slot) = error.redirect_node()?;
        let addr = addr.to_string();
        match error.kind() {
            redis::ErrorKind::Server(redis::ServerErrorKind::Moved) => {
                self.slots.moved(slot, &addr);
                Some(None)
            }
            _ => Some(Some(addr)),
        }
    }

    /// After a failure that may mean the deployment changed: drops the failed connection and
    /// forgets where the primary or the slots were, so the next try asks again.
    fn forget(&mut self, failed: &Failed) {
        match failed {
            Failed::Redis { addr, error } => {
                let busy = matches!(
                    error.kind(),
                    redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain)
                );
                if !busy {
                    self.nodes.remove(addr);
                    self.primary = None;
                    self.slots = SlotMap::default();
                }
            }
            Failed::Resolve(_) => {
                self.primary = None;
                self.slots = SlotMap::default();
            }
            Failed::NotReplicated { .. } => {}
        }
    }

    /// Sleeps `delay`; true when a shutdown ended the sleep.
    fn pause(&self, delay: Duration) -> bool {
        match &self.shutdown {
            Some(shutdown) => shutdown.sleep(delay),
            None => {
                std::thread::sleep(delay);
                false
            }
        }
    }

    fn error(&mut self, failed: Failed) -> RedisError {
        let error = self.error_ref(&failed);
        if error.dropped
            && let Failed::Redis { addr, .. } = &failed
        {
            self.nodes.remove(addr);
        }
        error
    }

    fn error_ref(&self, failed: &Failed) -> RedisError {
        let target = self.target();
        match failed {
            Failed::Redis { addr, error } => {
                let mut e = super::error(&target, error);
                if addr != SINGLE {
                    e.target = format!("{target}, node {addr}");
                }
                e
            }
            Failed::Resolve(reason) => RedisError {
                target,
                reason: reason.clone(),
                dropped: true,
            },
            Failed::NotReplicated { addr, acked } => RedisError {
                target: format!("{target}, node {addr}"),
                reason: format!(
                    "the write reached {acked} of {} replica(s) within {:.1} s \
                     (INVENTORY_REDIS_WAIT_REPLICAS); it is kept and tried again",
                    self.config.durability.wait_replicas,
                    self.failover
                        .max(self.config.durability.wait_timeout)
                        .as_secs_f64()
                ),
                dropped: false,
            },
        }
    }
}

/// True for what a failover looks like from a client: the node cannot be reached or is not
/// the primary any more, the cluster is reconfiguring, or the primary is not known yet.
fn transient(failed: &Failed) -> bool {
    use redis::ServerErrorKind as S;
    let error = match failed {
        Failed::Resolve(_) => return true,
        Failed::NotReplicated { .. } => return false,
        Failed::Redis { error, .. } => error,
    };
    if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
    {
        return true;
    }
    match error.kind() {
        redis::ErrorKind::Server(kind) => matches!(
            kind,
            S::Moved
                | S::Ask
                | S::TryAgain
                | S::ClusterDown
                | S::MasterDown
                | S::ReadOnly
                | S::BusyLoading
        ),
        // A client blocked on a primary that became a replica is told `UNBLOCKED`.
        _ => error.code() == Some("UNBLOCKED"),
    }
}

/// True for a `ROLE` reply of a primary.
fn is_primary(role: &[redis::Value]) -> bool {
    matches!(role.first(), Some(redis::Value::BulkString(r)) if r.as_slice() == b"master")
}
