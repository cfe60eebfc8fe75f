//! Private Redis Cluster and Redis Sentinel deployments of real `redis-server` processes on free
//! loopback ports, for the tests of the cluster and sentinel clients: never the shared Redis.
//! Each node has its own temp dir (config, log, `nodes.conf`); everything is killed and removed
//! when the value is dropped. Every wait polls with a deadline and panics with what it last saw
//! and the tail of every node's log.

#![allow(dead_code)]

use super::private::free_port;
use super::tls::TestPki;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a whole deployment may take to come up.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a failover (or a slot migration) may take to settle.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(30);
/// How long one node may take to answer PING after it was spawned.
const NODE_DEADLINE: Duration = Duration::from_secs(15);
/// How long one probe (connect + command) may take: a paused or dead node must not hang a wait.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(50);
/// Redis Cluster's slot count.
pub const SLOTS: u16 = 16384;

/// A node's slot map: `(first slot, last slot, primary port)`, sorted.
pub type SlotMap = Vec<(u16, u16, u16)>;

/// Polls `check` until it returns `Ok`; at the deadline panics with `what`, the last `Err`
/// (what was still missing) and `logs()`.
fn wait_for<T>(
    what: &str,
    within: Duration,
    logs: impl Fn() -> String,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let end = Instant::now() + within;
    loop {
        match check() {
            Ok(v) => return v,
            Err(missing) => {
                if Instant::now() >= end {
                    panic!(
                        "{what}: not within {within:?}; last seen: {missing}\n{}",
                        logs()
                    );
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

/// A value for a redis.conf line: double-quoted, with `\\`, `\"` and `\xHH` escapes (what
/// redis-server's config parser reads back).
fn conf_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for b in s.bytes() {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'"' => out.push_str("\\\""),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('"');
    out
}

fn conf_path(p: &Path) -> String {
    conf_quote(&p.to_string_lossy())
}

/// `key:value` from an `INFO` / `CLUSTER INFO` text.
fn info_field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix(':'))
            .map(str::trim)
    })
}

fn text_of(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Okay => Some("OK".into()),
        redis::Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn int_of(v: &redis::Value) -> Option<i64> {
    match v {
        redis::Value::Int(i) => Some(*i),
        other => text_of(other)?.parse().ok(),
    }
}

/// What `ROLE` says about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Master,
    /// `connected`: the replication link is up (ROLE state `connected`).
    Replica {
        master_port: u16,
        connected: bool,
    },
    Sentinel,
}

fn parse_role(v: &redis::Value) -> Option<Role> {
    let redis::Value::Array(items) = v else {
        return None;
    };
    match text_of(items.first()?)?.as_str() {
        "master" => Some(Role::Master),
        "sentinel" => Some(Role::Sentinel),
        "slave" => Some(Role::Replica {
            master_port: u16::try_from(int_of(items.get(2)?)?).ok()?,
            connected: text_of(items.get(3)?)? == "connected",
        }),
        _ => None,
    }
}

/// How to reach the nodes of one deployment: plain or TLS (trusting the test CA), with or
/// without a password.
#[derive(Clone)]
struct Access {
    ca_pem: Option<Vec<u8>>,
    password: Option<String>,
}

impl Access {
    /// Mirrors [`super::RedisServer::url`]: `redis://127.0.0.1:P`, or `rediss://localhost:P`
    /// (the test server certificate's name) for TLS; never a password.
    fn url(&self, port: u16) -> String {
        match self.ca_pem {
            None => format!("redis://127.0.0.1:{port}"),
            Some(_) => format!("rediss://localhost:{port}"),
        }
    }

    fn client(&self, port: u16) -> redis::Client {
        use redis::IntoConnectionInfo;
        let mut info = self
            .url(port)
            .into_connection_info()
            .expect("a valid redis URL");
        if let Some(pw) = &self.password {
            let settings = info.redis_settings().clone().set_password(pw);
            info = info.set_redis_settings(settings);
        }
        match &self.ca_pem {
            None => redis::Client::open(info).expect("redis client"),
            Some(ca) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca.clone()),
                },
            )
            .expect("redis TLS client"),
        }
    }

    /// A connection with connect, read and write timeouts (for probes).
    fn probe(&self, port: u16) -> redis::RedisResult<redis::Connection> {
        let con = self
            .client(port)
            .get_connection_with_timeout(PROBE_TIMEOUT)?;
        con.set_read_timeout(Some(PROBE_TIMEOUT))?;
        con.set_write_timeout(Some(PROBE_TIMEOUT))?;
        Ok(con)
    }

    /// A probe connection whose errors are strings naming the port.
    fn open(&self, port: u16) -> Result<Probe, String> {
        let con = self
            .probe(port)
            .map_err(|e| format!("{port}: connect: {e}"))?;
        Ok(Probe { port, con })
    }

    fn query<T: redis::FromRedisValue>(&self, port: u16, cmd: &redis::Cmd) -> Result<T, String> {
        self.open(port)?.query(cmd)
    }

    fn role(&self, port: u16) -> Result<Role, String> {
        self.open(port)?.role()
    }

    /// A connection without timeouts, for a test's own assertions (and blocking commands).
    fn connection(&self, port: u16) -> redis::Connection {
        self.client(port)
            .get_connection()
            .unwrap_or_else(|e| panic!("connect to the private redis on port {port}: {e}"))
    }
}

/// One connection to one node for a few probe commands in a row (over TLS a handshake per
/// command would make every poll slow in a debug build).
struct Probe {
    port: u16,
    con: redis::Connection,
}

impl Probe {
    fn query<T: redis::FromRedisValue>(&mut self, cmd: &redis::Cmd) -> Result<T, String> {
        cmd.query(&mut self.con)
            .map_err(|e| format!("{}: {e}", self.port))
    }

    fn role(&mut self) -> Result<Role, String> {
        let v: redis::Value = self.query(&redis::cmd("ROLE"))?;
        parse_role(&v).ok_or_else(|| format!("{}: unexpected ROLE reply {v:?}", self.port))
    }

    /// The slot → primary port map this node has (`CLUSTER SLOTS`): `(first, last, port)`.
    fn slot_map(&mut self) -> Result<SlotMap, String> {
        let port = self.port;
        let v: redis::Value = self.query(redis::cmd("CLUSTER").arg("SLOTS"))?;
        let redis::Value::Array(ranges) = v else {
            return Err(format!("{port}: CLUSTER SLOTS reply {v:?}"));
        };
        let mut map = Vec::new();
        for range in &ranges {
            let parsed = (|| {
                let redis::Value::Array(items) = range else {
                    return None;
                };
                let redis::Value::Array(master) = items.get(2)? else {
                    return None;
                };
                Some((
                    u16::try_from(int_of(items.first()?)?).ok()?,
                    u16::try_from(int_of(items.get(1)?)?).ok()?,
                    u16::try_from(int_of(master.get(1)?)?).ok()?,
                ))
            })();
            map.push(parsed.ok_or_else(|| format!("{port}: CLUSTER SLOTS entry {range:?}"))?);
        }
        map.sort_unstable();
        Ok(map)
    }
}

/// One `redis-server` process with its dir (`redis.conf`, `log`, `stderr`, `nodes.conf`).
struct Node {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// `--sentinel`.
    sentinel: bool,
    /// The cluster node id (`CLUSTER MYID`); empty outside a cluster.
    id: String,
    /// The slots a cluster primary served when it was killed.
    served_at_kill: Vec<u16>,
}

impl Node {
    /// Writes `conf(port)` to `dir/redis.conf` and starts a server on a free port; retries
    /// with another port if the server exits (another process took the port meanwhile).
    /// Returns once `access` gets an answer to PING.
    fn start(
        dir: PathBuf,
        sentinel: bool,
        taken: &mut HashSet<u16>,
        access: &Access,
        conf: impl Fn(u16, &mut HashSet<u16>) -> String,
    ) -> Node {
        std::fs::create_dir_all(&dir).expect("node temp dir");
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = pick_port(taken);
            let mut node = Node {
                port,
                dir: dir.clone(),
                child: None,
                sentinel,
                id: String::new(),
                served_at_kill: Vec::new(),
            };
            std::fs::write(node.conf_file(), conf(port, taken)).expect("write redis.conf");
            if node.launch(access) {
                return node;
            }
            last_log = node.log_tail(30);
        }
        panic!(
            "could not start a private redis-server in {} (is it installed?)\n{last_log}",
            dir.display()
        );
    }

    fn conf_file(&self) -> PathBuf {
        self.dir.join("redis.conf")
    }

    /// Spawns the server from its config; true once it answers PING.
    fn launch(&mut self, access: &Access) -> bool {
        let stderr = File::create(self.dir.join("stderr")).expect("create stderr file");
        let mut cmd = Command::new("redis-server");
        cmd.arg(self.conf_file());
        if self.sentinel {
            cmd.arg("--sentinel");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let end = Instant::now() + NODE_DEADLINE;
        while Instant::now() < end {
            if !self.running() {
                return false;
            }
            let pong: Result<String, String> = access.query(self.port, &redis::cmd("PING"));
            if pong.is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    fn running(&mut self) -> bool {
        match &mut self.child {
            None => false,
            Some(child) => {
                if child.try_wait().ok().flatten().is_some() {
                    self.child = None;
                    false
                } else {
                    true
                }
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        let mut text = std::fs::read_to_string(self.dir.join("stderr")).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(self.dir.join("log")).unwrap_or_default());
        text
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        let from = all.len().saturating_sub(lines);
        let state = if self.child.is_some() {
            ""
        } else {
            " (not running)"
        };
        format!(
            "--- redis-server on port {}{state}, last {} log lines ---\n{}",
            self.port,
            all.len() - from,
            all[from..].join("\n")
        )
    }
}

/// A helper process (redis-cli) killed if a wait for it panics.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port that is free now and not yet given to another node of the same deployment.
fn pick_port(taken: &mut HashSet<u16>) -> u16 {
    loop {
        let port = free_port();
        if taken.insert(port) {
            return port;
        }
    }
}

fn logs_of(nodes: &[&Node]) -> String {
    nodes
        .iter()
        .map(|n| n.log_tail(25))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The slot of `key` as Redis Cluster computes it (the library's own function, which its unit
/// tests check against the values `CLUSTER KEYSLOT` gives).
pub fn slot_of(key: &str) -> u16 {
    inventory_broadcast::redis_conn::slots::slot_of(key.as_bytes())
}

/// The queue key a queue name maps to: `{prefix}{queues:NAME}` (hash tag `queues:NAME`).
pub fn queue_key(prefix: &str, name: &str) -> String {
    format!("{prefix}{{queues:{name}}}")
}

/// A Redis Cluster of real `redis-server --cluster-enabled yes` nodes on loopback, created with
/// `redis-cli --cluster create`; killed and removed when dropped.
///
/// Nodes run with `cluster-node-timeout 2000`, no persistence, and
/// `cluster-allow-replica-migration no` (a replica stays with the primary it was given).
/// The cluster bus port of each node is another free port (`cluster-port`), not port + 10000.
pub struct RedisCluster {
    dir: PathBuf,
    access: Access,
    nodes: Vec<Node>,
}

impl RedisCluster {
    /// `primaries` (at least 3: `redis-cli --cluster create` wants that) primaries with
    /// `replicas_per_primary` replicas each, plain TCP. Returns once every node reports
    /// `cluster_state:ok` with all slots covered and every replica's link is up.
    pub fn start(primaries: usize, replicas_per_primary: usize) -> RedisCluster {
        RedisCluster::start_inner(None, primaries, replicas_per_primary)
    }

    /// As [`RedisCluster::start`], but the nodes speak only TLS (`port 0`, `tls-port`,
    /// `tls-cluster yes`, `tls-replication yes`) with `pki.server` as their certificate, trust
    /// `pki.ca`, and need no client certificate. [`RedisCluster::url_of`] is then
    /// `rediss://localhost:PORT`; [`RedisCluster::connection`] trusts `pki.ca`.
    pub fn start_tls(pki: &TestPki, primaries: usize, replicas_per_primary: usize) -> RedisCluster {
        RedisCluster::start_inner(Some(pki), primaries, replicas_per_primary)
    }

    fn start_inner(pki: Option<&TestPki>, primaries: usize, replicas: usize) -> RedisCluster {
        assert!(
            primaries >= 3,
            "redis-cli --cluster create needs at least 3 primaries, not {primaries}"
        );
        let dir = std::env::temp_dir().join(format!("ib-cluster-{}", super::tag()));
        std::fs::create_dir_all(&dir).expect("cluster temp dir");
        // The certificate files are copied once; every node reads them at start. The cluster
        // bus always wants a client certificate, whatever `tls-auth-clients` says, so the nodes
        // present `pki.client` (clientAuth) when they connect to each other or to a primary:
        // `pki.server` is for serverAuth only and is refused there.
        let tls = pki.map(|pki| {
            let server = pki.server.copy_to(&dir, "server");
            let client = pki.client.copy_to(&dir, "client");
            let ca = dir.join("ca.crt");
            std::fs::copy(&pki.ca.cert, &ca).expect("copy the test CA");
            (server, client, ca)
        });
        let access = Access {
            ca_pem: tls
                .as_ref()
                .map(|(_, _, ca)| std::fs::read(ca).expect("read the test CA")),
            password: None,
        };
        let mut cluster = RedisCluster {
            dir: dir.clone(),
            access: access.clone(),
            nodes: Vec::new(),
        };
        let mut taken = HashSet::new();
        for i in 0..primaries * (1 + replicas) {
            let node_dir = dir.join(format!("node{i}"));
            let conf = |port: u16, taken: &mut HashSet<u16>| {
                let bus = pick_port(taken);
                let mut c = match &tls {
                    None => format!("port {port}\n"),
                    Some((server, client, ca)) => format!(
                        "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
                         tls-client-cert-file {}\ntls-client-key-file {}\n\
                         tls-ca-cert-file {}\ntls-auth-clients no\ntls-cluster yes\n\
                         tls-replication yes\n",
                        conf_path(&server.cert),
                        conf_path(&server.key),
                        conf_path(&client.cert),
                        conf_path(&client.key),
                        conf_path(ca)
                    ),
                };
                c.push_str(&format!(
                    "bind 127.0.0.1\ndaemonize no\ndir {d}\nlogfile {log}\nloglevel notice\n\
                     save \"\"\nappendonly no\nrepl-diskless-sync-delay 0\n\
                     cluster-enabled yes\ncluster-config-file {nodes}\ncluster-port {bus}\n\
                     cluster-node-timeout 2000\ncluster-allow-replica-migration no\n",
                    d = conf_path(&node_dir),
                    log = conf_path(&node_dir.join("log")),
                    nodes = conf_path(&node_dir.join("nodes.conf")),
                ));
                c
            };
            let mut node = Node::start(node_dir.clone(), false, &mut taken, &access, conf);
            node.id = access
                .query(node.port, redis::cmd("CLUSTER").arg("MYID"))
                .unwrap_or_else(|e| panic!("CLUSTER MYID: {e}\n{}", node.log_tail(25)));
            cluster.nodes.push(node);
        }

        let mut create = Command::new("redis-cli");
        create
            .env_remove("REDISCLI_AUTH")
            .args(["--cluster", "create"]);
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        create.args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"]);
        if let Some((_, _, ca)) = &tls {
            create.arg("--tls").arg("--cacert").arg(ca);
        }
        // Its output goes to a file, so a hang ("Waiting for the cluster to join" forever)
        // can be reported with what it printed and the nodes' logs.
        let out_file = dir.join("cluster-create.out");
        let out = File::create(&out_file).expect("create cluster-create.out");
        let mut child = KillOnDrop(
            create
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("clone file"))
                .stderr(out)
                .spawn()
                .expect("spawn redis-cli --cluster create"),
        );
        let status = wait_for(
            "redis-cli --cluster create to finish",
            START_DEADLINE,
            || {
                format!(
                    "redis-cli printed:\n{}\n{}",
                    std::fs::read_to_string(&out_file).unwrap_or_default(),
                    cluster.logs()
                )
            },
            || match child.0.try_wait() {
                Ok(Some(status)) => Ok(status),
                Ok(None) => Err("still running".to_string()),
                Err(e) => Err(format!("wait: {e}")),
            },
        );
        assert!(
            status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            std::fs::read_to_string(&out_file).unwrap_or_default(),
            cluster.logs()
        );
        cluster.wait_settled("the new cluster to be ok", START_DEADLINE, |_| Ok(()));
        let replica_count = cluster.replica_ports().len();
        assert_eq!(
            replica_count,
            primaries * replicas,
            "replicas in the new cluster\n{}",
            cluster.logs()
        );
        cluster
    }

    fn node(&self, port: u16) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    fn node_mut(&mut self, port: u16) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// Ports of the nodes whose process runs (not killed), in creation order.
    pub fn live_ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// Every node's port, in creation order.
    pub fn all_ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The tail of every node's log, for a panic message.
    pub fn logs(&self) -> String {
        logs_of(&self.nodes.iter().collect::<Vec<_>>())
    }

    /// One node's whole log.
    pub fn log(&self, port: u16) -> String {
        self.node(port).log()
    }

    /// What `ROLE` says about a live node.
    pub fn role(&self, port: u16) -> Result<Role, String> {
        self.access.role(port)
    }

    /// The live nodes that say they are primaries (`ROLE`), in creation order.
    pub fn primary_ports(&self) -> Vec<u16> {
        self.live_ports()
            .into_iter()
            .filter(|&p| self.access.role(p) == Ok(Role::Master))
            .collect()
    }

    /// The live nodes that say they are replicas (`ROLE`), in creation order.
    pub fn replica_ports(&self) -> Vec<u16> {
        self.live_ports()
            .into_iter()
            .filter(|&p| matches!(self.access.role(p), Ok(Role::Replica { .. })))
            .collect()
    }

    /// The live replicas of the primary on `primary_port`.
    pub fn replicas_of(&self, primary_port: u16) -> Vec<u16> {
        self.live_ports()
            .into_iter()
            .filter(|&p| {
                matches!(self.access.role(p),
                    Ok(Role::Replica { master_port, .. }) if master_port == primary_port)
            })
            .collect()
    }

    /// `127.0.0.1:P1,127.0.0.1:P2,…` of the current primaries (for `REDIS_CLUSTER_NODES`).
    pub fn seeds(&self) -> String {
        self.primary_ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// As [`super::RedisServer::url`]: `redis://127.0.0.1:PORT`, or `rediss://localhost:PORT`
    /// for a TLS cluster (no `#insecure`: a test adds what it needs).
    pub fn url_of(&self, port: u16) -> String {
        self.access.url(port)
    }

    pub fn is_tls(&self) -> bool {
        self.access.ca_pem.is_some()
    }

    /// A plain (non-cluster) connection to one node, for assertions; over TLS it trusts the
    /// test CA. Commands on keys of other nodes' slots get `MOVED`.
    pub fn connection(&self, port: u16) -> redis::Connection {
        self.access.connection(port)
    }

    /// `redis-cli -h 127.0.0.1 -p PORT` (plus `--tls --cacert` for TLS); add the command and run
    /// it with [`super::private::output_within`].
    pub fn cli(&self, port: u16) -> Command {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .env_remove("REDISCLI_AUTH");
        if self.is_tls() {
            cmd.arg("--tls")
                .arg("--cacert")
                .arg(self.dir.join("ca.crt"));
        }
        cmd
    }

    /// See [`slot_of`].
    pub fn slot_of(key: &str) -> u16 {
        slot_of(key)
    }

    /// The slot → primary port map as `port` sees it (`CLUSTER SLOTS`): `(first, last, port)`.
    fn slot_map_at(&self, port: u16) -> Result<SlotMap, String> {
        self.access.open(port)?.slot_map()
    }

    /// The port of the primary serving `slot`, from `CLUSTER SLOTS` of the first live node
    /// that answers.
    pub fn owner_of_slot(&self, slot: u16) -> u16 {
        let mut errors = Vec::new();
        for port in self.live_ports() {
            match self.slot_map_at(port) {
                Ok(map) => match map.iter().find(|(a, b, _)| (*a..=*b).contains(&slot)) {
                    Some(&(_, _, owner)) => return owner,
                    None => errors.push(format!("{port}: slot {slot} not served")),
                },
                Err(e) => errors.push(e),
            }
        }
        panic!(
            "no node told the owner of slot {slot}: {errors:?}\n{}",
            self.logs()
        );
    }

    /// The port of the primary serving `key`.
    pub fn owner_of_key(&self, key: &str) -> u16 {
        self.owner_of_slot(slot_of(key))
    }

    /// `n` queue names `q0`, `q1`, … whose keys ([`queue_key`]: `{prefix}{queues:NAME}`) live on
    /// `n` different primaries, in order of the names.
    pub fn pick_queue_names(&self, n: usize, prefix: &str) -> Vec<String> {
        let primaries = self.primary_ports().len();
        assert!(
            n <= primaries,
            "{n} queues on different primaries, but there are {primaries} primaries"
        );
        let map = self.slot_map();
        let owner = |slot: u16| {
            map.iter()
                .find(|(a, b, _)| (*a..=*b).contains(&slot))
                .map(|&(_, _, p)| p)
        };
        let mut used = HashSet::new();
        let mut names = Vec::new();
        for i in 0..100_000 {
            if names.len() == n {
                break;
            }
            let name = format!("q{i}");
            if let Some(port) = owner(slot_of(&queue_key(prefix, &name))) {
                if used.insert(port) {
                    names.push(name);
                }
            }
        }
        assert_eq!(names.len(), n, "queue names on {n} primaries: {names:?}");
        names
    }

    /// The slot map of the first live node that answers.
    fn slot_map(&self) -> SlotMap {
        let ports = self.live_ports();
        ports
            .iter()
            .find_map(|&p| self.slot_map_at(p).ok())
            .unwrap_or_else(|| panic!("no live node answered CLUSTER SLOTS\n{}", self.logs()))
    }

    /// The slots the primary on `port` serves (per the first node that answers).
    pub fn slots_of(&self, port: u16) -> Vec<u16> {
        self.slot_map()
            .into_iter()
            .filter(|&(_, _, p)| p == port)
            .flat_map(|(a, b, _)| a..=b)
            .collect()
    }

    /// Polls until every live node reports `cluster_state:ok` with all slots ok, knows every
    /// node, flags no live node as failing, shows the same slot map (and `extra` accepts it),
    /// and every live replica's link is up.
    fn wait_settled(
        &self,
        what: &str,
        within: Duration,
        extra: impl Fn(&[(u16, u16, u16)]) -> Result<(), String>,
    ) {
        let live_ids: HashSet<String> = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.id.clone())
            .collect();
        wait_for(
            what,
            within,
            || self.logs(),
            || {
                let mut first_map: Option<(u16, SlotMap)> = None;
                // What each node says of itself, and what each thinks of every node: a manual
                // failover, for one, needs the primary to know its replica as such.
                let mut own: HashMap<String, (bool, String)> = HashMap::new();
                let mut views = Vec::new();
                for port in self.live_ports() {
                    let mut probe = self.access.open(port)?;
                    let info: String = probe.query(redis::cmd("CLUSTER").arg("INFO"))?;
                    for (key, want) in [
                        ("cluster_state", "ok".to_string()),
                        ("cluster_slots_ok", SLOTS.to_string()),
                        ("cluster_known_nodes", self.nodes.len().to_string()),
                    ] {
                        if info_field(&info, key) != Some(want.as_str()) {
                            return Err(format!("{port}: {key}:{:?}", info_field(&info, key)));
                        }
                    }
                    let nodes: String = probe.query(redis::cmd("CLUSTER").arg("NODES"))?;
                    let mut view = HashMap::new();
                    for line in nodes.lines() {
                        let f: Vec<&str> = line.split(' ').collect();
                        let [id, _addr, flags, master, ..] = f[..] else {
                            continue;
                        };
                        let flags: Vec<&str> = flags.split(',').collect();
                        let bad = ["fail", "fail?", "handshake", "noaddr"];
                        if live_ids.contains(id) && flags.iter().any(|f| bad.contains(f)) {
                            return Err(format!("{port} sees: {line}"));
                        }
                        let role = (flags.contains(&"master"), master.to_string());
                        if flags.contains(&"myself") {
                            own.insert(id.to_string(), role.clone());
                        }
                        view.insert(id.to_string(), role);
                    }
                    views.push((port, view));
                    let map = probe.slot_map()?;
                    match &first_map {
                        None => {
                            extra(&map).map_err(|e| format!("{port}: {e}"))?;
                            first_map = Some((port, map));
                        }
                        Some((p0, m0)) if *m0 != map => {
                            return Err(format!("slot maps differ: {p0}: {m0:?}, {port}: {map:?}"));
                        }
                        Some(_) => {}
                    }
                    if let Role::Replica { connected, .. } = probe.role()? {
                        if !connected {
                            return Err(format!("{port}: replica link not up"));
                        }
                    }
                }
                for (port, view) in &views {
                    for (id, mine) in &own {
                        if view.get(id) != Some(mine) {
                            return Err(format!(
                                "{port} thinks {id} is {:?}, it says {mine:?} (master?, of)",
                                view.get(id)
                            ));
                        }
                    }
                }
                Ok(())
            },
        );
    }

    /// Fails over the primary on `primary_port` to one of its replicas: `CLUSTER FAILOVER` on
    /// the replica (`FORCE` when the primary was killed, unless the cluster already promoted
    /// one). Waits (30 s) until that replica is a primary, every live node is ok and agrees that
    /// it serves the old primary's slots, and a live old primary replicates from it. Returns the
    /// new primary's port.
    pub fn failover(&self, primary_port: u16) -> u16 {
        if self.node(primary_port).child.is_none() {
            return self.failover_dead(primary_port);
        }
        let old_slots = self.slots_of(primary_port);
        let replica = {
            let replicas = self.replicas_of(primary_port);
            let replica = *replicas.first().unwrap_or_else(|| {
                panic!(
                    "the primary on {primary_port} has no live replica\n{}",
                    self.logs()
                )
            });
            let reply: Result<String, String> = self
                .access
                .query(replica, redis::cmd("CLUSTER").arg("FAILOVER"));
            assert_eq!(
                reply.as_deref(),
                Ok("OK"),
                "CLUSTER FAILOVER on {replica}\n{}",
                self.logs()
            );
            replica
        };
        self.wait_settled(
            &format!("failover of {primary_port} to {replica}"),
            FAILOVER_DEADLINE,
            |map| {
                for slot in [old_slots.first(), old_slots.last()].into_iter().flatten() {
                    let owner = map
                        .iter()
                        .find(|(a, b, _)| (*a..=*b).contains(slot))
                        .map(|&(_, _, p)| p);
                    if owner != Some(replica) {
                        return Err(format!("slot {slot} served by {owner:?}"));
                    }
                }
                if self.access.role(replica)? != Role::Master {
                    return Err(format!("{replica} not a primary yet"));
                }
                match self.access.role(primary_port)? {
                    Role::Replica {
                        master_port,
                        connected: true,
                    } if master_port == replica => Ok(()),
                    other => Err(format!("old primary {primary_port}: {other:?}")),
                }
            },
        );
        replica
    }

    /// For a killed primary: waits for the replica the cluster promotes by itself, forcing the
    /// promotion (`CLUSTER FAILOVER FORCE`) if it has not happened yet.
    fn failover_dead(&self, primary_port: u16) -> u16 {
        let node = self.node(primary_port);
        let slot = *node.served_at_kill.first().unwrap_or_else(|| {
            panic!("the node on {primary_port} served no slots when it was killed")
        });
        if self.owner_of_slot(slot) == primary_port {
            // The replicas still name the dead primary's id as their master in CLUSTER NODES.
            let replica = self.live_ports().into_iter().find(|&p| {
                let nodes: Result<String, String> =
                    self.access.query(p, redis::cmd("CLUSTER").arg("NODES"));
                nodes.is_ok_and(|text| {
                    text.lines().any(|l| {
                        let f: Vec<&str> = l.split(' ').collect();
                        f.len() > 3 && f[2].split(',').any(|x| x == "myself") && f[3] == node.id
                    })
                })
            });
            if let Some(replica) = replica {
                // It may already be electing itself: then this is refused, which is fine.
                let _: Result<String, String> = self
                    .access
                    .query(replica, redis::cmd("CLUSTER").arg("FAILOVER").arg("FORCE"));
            }
        }
        self.wait_settled(
            &format!("failover of the killed primary {primary_port}"),
            FAILOVER_DEADLINE,
            |map| match map.iter().find(|(a, b, _)| (*a..=*b).contains(&slot)) {
                Some(&(_, _, p)) if p != primary_port => match self.access.role(p)? {
                    Role::Master => Ok(()),
                    other => Err(format!("slot {slot} at {p}: {other:?}")),
                },
                other => Err(format!("slot {slot} at {other:?}")),
            },
        );
        self.owner_of_slot(slot)
    }

    /// Moves `slot` (and its keys) from its primary to the primary on `to_port`, the way
    /// `redis-cli --cluster reshard` does: `SETSLOT IMPORTING` on the target, `SETSLOT MIGRATING`
    /// on the source, `MIGRATE … KEYS` until the source has no key in the slot, then `SETSLOT
    /// NODE` on the target, the source and every other primary. Waits until every live node
    /// agrees.
    pub fn migrate_slot(&self, slot: u16, to_port: u16) {
        self.migrate(slot, to_port, 100, None);
    }

    /// As [`RedisCluster::migrate_slot`], one key per `MIGRATE`, with `pause` after the slot is
    /// marked migrating and after each key: the slot stays in the ASK state (keys split between
    /// the two nodes) for at least `pause` × (keys + 1), so a test can run traffic meanwhile.
    pub fn migrate_slot_slowly(&self, slot: u16, to_port: u16, pause: Duration) {
        self.migrate(slot, to_port, 1, Some(pause));
    }

    fn migrate(&self, slot: u16, to_port: u16, batch: usize, pause: Option<Duration>) {
        let from_port = self.owner_of_slot(slot);
        if from_port == to_port {
            return;
        }
        assert_eq!(
            self.access.role(to_port),
            Ok(Role::Master),
            "migrate slot {slot} to {to_port}: not a primary"
        );
        let from_id = self.node(from_port).id.clone();
        let to_id = self.node(to_port).id.clone();
        let ok = |port: u16, cmd: &redis::Cmd| {
            let reply: Result<String, String> = self.access.query(port, cmd);
            assert_eq!(
                reply.as_deref(),
                Ok("OK"),
                "{cmd:?} on {port}\n{}",
                self.logs()
            );
        };
        let setslot = |state: &str, id: &str| {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SETSLOT").arg(slot).arg(state).arg(id);
            cmd
        };
        ok(to_port, &setslot("IMPORTING", &from_id));
        ok(from_port, &setslot("MIGRATING", &to_id));
        if let Some(p) = pause {
            std::thread::sleep(p);
        }
        loop {
            let keys: Vec<Vec<u8>> = self
                .access
                .query(
                    from_port,
                    redis::cmd("CLUSTER")
                        .arg("GETKEYSINSLOT")
                        .arg(slot)
                        .arg(batch),
                )
                .unwrap_or_else(|e| panic!("GETKEYSINSLOT: {e}\n{}", self.logs()));
            if keys.is_empty() {
                break;
            }
            let mut migrate = redis::cmd("MIGRATE");
            migrate
                .arg("127.0.0.1")
                .arg(to_port)
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys);
            let reply: Result<String, String> = self.access.query(from_port, &migrate);
            assert!(
                matches!(reply.as_deref(), Ok("OK") | Ok("NOKEY")),
                "MIGRATE from {from_port} to {to_port}: {reply:?}\n{}",
                self.logs()
            );
            if let Some(p) = pause {
                std::thread::sleep(p);
            }
        }
        ok(to_port, &setslot("NODE", &to_id));
        ok(from_port, &setslot("NODE", &to_id));
        for port in self.primary_ports() {
            if port != to_port && port != from_port {
                ok(port, &setslot("NODE", &to_id));
            }
        }
        self.wait_settled(
            &format!("slot {slot} moved from {from_port} to {to_port}"),
            FAILOVER_DEADLINE,
            |map| match map.iter().find(|(a, b, _)| (*a..=*b).contains(&slot)) {
                Some(&(_, _, p)) if p == to_port => Ok(()),
                other => Err(format!("slot {slot} at {other:?}")),
            },
        );
    }

    /// Kills one node (SIGKILL) and reaps it. The others notice within the node timeout (2 s);
    /// a killed primary with a replica is failed over by the cluster itself shortly after.
    pub fn kill(&mut self, port: u16) {
        let served = if self.access.role(port) == Ok(Role::Master) {
            self.slots_of(port)
        } else {
            Vec::new()
        };
        let node = self.node_mut(port);
        node.served_at_kill = served;
        node.kill();
    }

    /// Freezes one node (SIGSTOP) until [`RedisCluster::resume`].
    pub fn pause(&self, port: u16) {
        self.signal(port, "STOP");
    }

    /// Lets a paused node go on (SIGCONT).
    pub fn resume(&self, port: u16) {
        self.signal(port, "CONT");
    }

    fn signal(&self, port: u16, sig: &str) {
        let child = self
            .node(port)
            .child
            .as_ref()
            .unwrap_or_else(|| panic!("the node on {port} does not run"));
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig} redis-server on {port}");
    }

    /// Starts a killed node again on its port with its `nodes.conf` (it rejoins the cluster,
    /// as a replica if it was failed over meanwhile). Returns once it answers PING; use
    /// [`RedisCluster::wait_ok`] to wait for the cluster to converge.
    pub fn restart(&mut self, port: u16) {
        let access = self.access.clone();
        let node = self.node_mut(port);
        node.kill();
        if !node.launch(&access) {
            panic!("the node on {port} did not restart\n{}", node.log_tail(30));
        }
    }

    /// Waits until every live node is ok, agrees on the slot map and every live replica's link
    /// is up.
    pub fn wait_ok(&self) {
        self.wait_settled("the cluster to be ok", FAILOVER_DEADLINE, |_| Ok(()));
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The service name the sentinels monitor.
pub const SENTINEL_SERVICE: &str = "mymaster";

/// One primary, one replica and three sentinels (quorum 2, `down-after-milliseconds 1000`,
/// `failover-timeout 5000`), real processes on loopback; killed and removed when dropped.
pub struct SentinelGroup {
    dir: PathBuf,
    /// The data nodes: the first primary, then the first replica.
    data: Vec<Node>,
    sentinels: Vec<Node>,
    data_access: Access,
    sentinel_access: Access,
}

impl SentinelGroup {
    /// No passwords anywhere.
    pub fn start() -> SentinelGroup {
        SentinelGroup::start_with(None, None)
    }

    /// The data nodes want `password` (`requirepass`, `masterauth`; the sentinels get
    /// `sentinel auth-pass`); the sentinels want none.
    pub fn start_with_password(password: &str) -> SentinelGroup {
        SentinelGroup::start_with(Some(password), None)
    }

    /// `data_password` for the primary and replica; `sentinel_password` (`requirepass` on the
    /// sentinels, which they also use with each other) for the sentinels.
    pub fn start_with(
        data_password: Option<&str>,
        sentinel_password: Option<&str>,
    ) -> SentinelGroup {
        let dir = std::env::temp_dir().join(format!("ib-sentinel-{}", super::tag()));
        std::fs::create_dir_all(&dir).expect("sentinel temp dir");
        let data_access = Access {
            ca_pem: None,
            password: data_password.map(str::to_string),
        };
        let sentinel_access = Access {
            ca_pem: None,
            password: sentinel_password.map(str::to_string),
        };
        let mut group = SentinelGroup {
            dir: dir.clone(),
            data: Vec::new(),
            sentinels: Vec::new(),
            data_access: data_access.clone(),
            sentinel_access: sentinel_access.clone(),
        };
        let mut taken = HashSet::new();
        let data_conf = |node_dir: &Path, port: u16, replica_of: Option<u16>| {
            let mut c = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {}\nlogfile {}\nloglevel notice\n\
                 save \"\"\nappendonly no\nrepl-diskless-sync-delay 0\n",
                conf_path(node_dir),
                conf_path(&node_dir.join("log"))
            );
            if let Some(pw) = data_password {
                c.push_str(&format!(
                    "requirepass {0}\nmasterauth {0}\n",
                    conf_quote(pw)
                ));
            }
            if let Some(primary) = replica_of {
                c.push_str(&format!("replicaof 127.0.0.1 {primary}\n"));
            }
            c
        };
        let primary_dir = dir.join("data0");
        let primary = Node::start(
            primary_dir.clone(),
            false,
            &mut taken,
            &data_access,
            |p, _| data_conf(&primary_dir, p, None),
        );
        let primary_port = primary.port;
        group.data.push(primary);
        let replica_dir = dir.join("data1");
        let replica = Node::start(
            replica_dir.clone(),
            false,
            &mut taken,
            &data_access,
            |p, _| data_conf(&replica_dir, p, Some(primary_port)),
        );
        let replica_port = replica.port;
        group.data.push(replica);
        wait_for(
            "the replica's link to the primary",
            START_DEADLINE,
            || group.logs(),
            || match data_access.role(replica_port)? {
                Role::Replica {
                    master_port,
                    connected: true,
                } if master_port == primary_port => Ok(()),
                other => Err(format!("{replica_port}: {other:?}")),
            },
        );
        // Started after the replica is linked, so each sentinel's first INFO of the primary
        // already lists it (otherwise it learns of it at the next INFO, 10 s later).
        for i in 0..3 {
            let node_dir = dir.join(format!("sentinel{i}"));
            let sentinel = Node::start(
                node_dir.clone(),
                true,
                &mut taken,
                &sentinel_access,
                |p, _| {
                    let mut c = format!(
                        "port {p}\nbind 127.0.0.1\ndaemonize no\ndir {}\nlogfile {}\n\
                     loglevel notice\n\
                     sentinel monitor {SENTINEL_SERVICE} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {SENTINEL_SERVICE} 1000\n\
                     sentinel failover-timeout {SENTINEL_SERVICE} 5000\n\
                     sentinel parallel-syncs {SENTINEL_SERVICE} 1\n",
                        conf_path(&node_dir),
                        conf_path(&node_dir.join("log"))
                    );
                    if let Some(pw) = data_password {
                        c.push_str(&format!(
                            "sentinel auth-pass {SENTINEL_SERVICE} {}\n",
                            conf_quote(pw)
                        ));
                    }
                    if let Some(pw) = sentinel_password {
                        c.push_str(&format!("requirepass {}\n", conf_quote(pw)));
                    }
                    c
                },
            );
            group.sentinels.push(sentinel);
        }
        group.wait_sentinels_agree(
            "the sentinels to see the primary, the replica and each other",
            START_DEADLINE,
            primary_port,
            Some(replica_port),
            true,
        );
        group
    }

    /// Polls until every live sentinel names `primary` as the service's primary, sees the other
    /// live sentinels and says `CKQUORUM` OK, and every live sentinel (`all`) or the first one
    /// lists `replica` (if given) as a replica without trouble flags that reports `primary` as
    /// its primary and its link as ok. (Sentinels learn that from the replica's INFO, every
    /// 10 s: after a failover the others may take 10 s longer than the one that led it.)
    fn wait_sentinels_agree(
        &self,
        what: &str,
        within: Duration,
        primary: u16,
        replica: Option<u16>,
        all: bool,
    ) {
        let live = self.sentinel_ports();
        wait_for(
            what,
            within,
            || self.logs(),
            || {
                for (i, &s) in live.iter().enumerate() {
                    let mut probe = self.sentinel_access.open(s)?;
                    let (_host, addr): (String, u16) = probe.query(
                        redis::cmd("SENTINEL")
                            .arg("GET-MASTER-ADDR-BY-NAME")
                            .arg(SENTINEL_SERVICE),
                    )?;
                    if addr != primary {
                        return Err(format!("sentinel {s} names {addr} the primary"));
                    }
                    let others: Vec<BTreeMap<String, String>> = probe.query(
                        redis::cmd("SENTINEL")
                            .arg("SENTINELS")
                            .arg(SENTINEL_SERVICE),
                    )?;
                    if others.len() + 1 < live.len() {
                        return Err(format!(
                            "sentinel {s} sees {} other sentinels",
                            others.len()
                        ));
                    }
                    if let Some(replica) = replica.filter(|_| all || i == 0) {
                        let replicas: Vec<BTreeMap<String, String>> = probe
                            .query(redis::cmd("SENTINEL").arg("REPLICAS").arg(SENTINEL_SERVICE))?;
                        let field = |r: &BTreeMap<String, String>, k: &str| {
                            r.get(k).cloned().unwrap_or_default()
                        };
                        let healthy = replicas.iter().any(|r| {
                            field(r, "port") == replica.to_string()
                                && field(r, "flags") == "slave"
                                && field(r, "role-reported") == "slave"
                                && field(r, "master-port") == primary.to_string()
                                && field(r, "master-link-status") == "ok"
                        });
                        if !healthy {
                            return Err(format!("sentinel {s} replicas: {replicas:?}"));
                        }
                    }
                    let quorum: String = probe
                        .query(redis::cmd("SENTINEL").arg("CKQUORUM").arg(SENTINEL_SERVICE))?;
                    if !quorum.starts_with("OK") {
                        return Err(format!("sentinel {s}: CKQUORUM {quorum}"));
                    }
                }
                Ok(())
            },
        );
    }

    fn master_addr_at(&self, sentinel: u16) -> Result<u16, String> {
        let (_host, port): (String, u16) = self.sentinel_access.query(
            sentinel,
            redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg(SENTINEL_SERVICE),
        )?;
        Ok(port)
    }

    /// The tail of every process's log, for a panic message.
    pub fn logs(&self) -> String {
        logs_of(&self.data.iter().chain(&self.sentinels).collect::<Vec<_>>())
    }

    /// One process's whole log (a data node or a sentinel).
    pub fn log(&self, port: u16) -> String {
        self.data
            .iter()
            .chain(&self.sentinels)
            .find(|n| n.port == port)
            .map(Node::log)
            .unwrap_or_default()
    }

    /// `127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3` (for `REDIS_SENTINELS`).
    pub fn sentinels(&self) -> String {
        self.sentinels
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The ports of the live sentinels.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// `mymaster`.
    pub fn service(&self) -> &str {
        SENTINEL_SERVICE
    }

    /// The data nodes' password, if any.
    pub fn password(&self) -> Option<&str> {
        self.data_access.password.as_deref()
    }

    /// The current primary, as the first answering sentinel names it
    /// (`SENTINEL GET-MASTER-ADDR-BY-NAME`).
    pub fn primary_port(&self) -> u16 {
        let mut errors = Vec::new();
        for s in self.sentinel_ports() {
            match self.master_addr_at(s) {
                Ok(port) => return port,
                Err(e) => errors.push(e),
            }
        }
        panic!("no sentinel named the primary: {errors:?}\n{}", self.logs());
    }

    /// The data node that is not [`SentinelGroup::primary_port`].
    pub fn replica_port(&self) -> u16 {
        let primary = self.primary_port();
        self.data
            .iter()
            .map(|n| n.port)
            .find(|&p| p != primary)
            .expect("two data nodes")
    }

    /// Both data nodes' ports (first primary first).
    pub fn data_ports(&self) -> Vec<u16> {
        self.data.iter().map(|n| n.port).collect()
    }

    /// What `ROLE` says about a data node or a sentinel.
    pub fn role(&self, port: u16) -> Result<Role, String> {
        if self.sentinels.iter().any(|n| n.port == port) {
            self.sentinel_access.role(port)
        } else {
            self.data_access.role(port)
        }
    }

    /// `redis://127.0.0.1:PORT` (no password).
    pub fn url_of(&self, port: u16) -> String {
        self.data_access.url(port)
    }

    /// A connection to a data node (authenticated if it has a password) or a sentinel
    /// (authenticated with the sentinel password, if any).
    pub fn connection(&self, port: u16) -> redis::Connection {
        if self.sentinels.iter().any(|n| n.port == port) {
            self.sentinel_access.connection(port)
        } else {
            self.data_access.connection(port)
        }
    }

    /// `SENTINEL FAILOVER mymaster` on a sentinel (retried while it answers `INPROG` or
    /// `NOGOODSLAVE`, e.g. right after a previous failover), then waits (30 s) until every
    /// sentinel names another primary and that server's `ROLE` is master. Returns its port.
    ///
    /// The old primary is not reconfigured yet when this returns: sentinels turn it into a
    /// replica later (see [`SentinelGroup::wait_settled`]).
    pub fn failover(&self) -> u16 {
        let old = self.primary_port();
        let first = self.sentinel_ports()[0];
        wait_for(
            "SENTINEL FAILOVER to be accepted",
            FAILOVER_DEADLINE,
            || self.logs(),
            || {
                let reply: Result<String, String> = self.sentinel_access.query(
                    first,
                    redis::cmd("SENTINEL").arg("FAILOVER").arg(SENTINEL_SERVICE),
                );
                match reply {
                    Ok(_) => Ok(()),
                    // A failover already under way (say an automatic one) may be the one we want.
                    Err(_) if self.master_addr_at(first).is_ok_and(|p| p != old) => Ok(()),
                    Err(e) if e.contains("INPROG") || e.contains("NOGOODSLAVE") => Err(e),
                    Err(e) => panic!("SENTINEL FAILOVER on {first}: {e}\n{}", self.logs()),
                }
            },
        );
        self.wait_new_primary(old)
    }

    /// Waits (30 s) until every live sentinel names a primary other than `old`, the same one,
    /// and that server's `ROLE` is master; returns its port. For a failover the sentinels start
    /// by themselves, e.g. after `kill(primary_port())` (`down-after-milliseconds` is 1 s).
    pub fn wait_new_primary(&self, old: u16) -> u16 {
        wait_for(
            &format!("sentinels to promote a replica of {old}"),
            FAILOVER_DEADLINE,
            || self.logs(),
            || {
                let mut named = None;
                for s in self.sentinel_ports() {
                    let p = self.master_addr_at(s)?;
                    if p == old || named.is_some_and(|n| n != p) {
                        return Err(format!("sentinel {s} names {p}"));
                    }
                    named = Some(p);
                }
                let new = named.ok_or("no live sentinel")?;
                match self.data_access.role(new)? {
                    Role::Master => Ok(new),
                    other => Err(format!("{new}: {other:?}")),
                }
            },
        )
    }

    /// Waits (30 s) until the group is whole again after a failover: the other data node (the
    /// old primary) replicates from the current primary with its link up, every sentinel names
    /// the primary, and the first live sentinel (the one [`SentinelGroup::failover`] asks) lists
    /// the old primary as a healthy replica, so another failover can pick it. Sentinels turn
    /// the old primary into a replica about 10 s after the failover (it stays a writable master
    /// until then); the other sentinels see that at their next INFO of it, up to 10 s later.
    pub fn wait_settled(&self) {
        let primary = self.primary_port();
        let replica = self.replica_port();
        wait_for(
            &format!("{replica} to replicate from {primary}"),
            FAILOVER_DEADLINE,
            || self.logs(),
            || match self.data_access.role(replica)? {
                Role::Replica {
                    master_port,
                    connected: true,
                } if master_port == primary => Ok(()),
                other => Err(format!("{replica}: {other:?}")),
            },
        );
        self.wait_sentinels_agree(
            "the sentinels to see the new replica",
            FAILOVER_DEADLINE,
            primary,
            Some(replica),
            false,
        );
    }

    /// Kills a data node or a sentinel (SIGKILL).
    pub fn kill(&mut self, port: u16) {
        if let Some(n) = self
            .data
            .iter_mut()
            .chain(self.sentinels.iter_mut())
            .find(|n| n.port == port)
        {
            n.kill();
        }
    }
}

impl Drop for SentinelGroup {
    fn drop(&mut self) {
        for node in self.sentinels.iter_mut().chain(self.data.iter_mut()) {
            node.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
