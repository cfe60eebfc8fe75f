//! Test helpers: a fresh database and key prefix per test, the binaries run as a user runs
//! them (scrubbed environment), and a real Redis subscriber. Every wait has a deadline.

#![allow(dead_code)]

use inventory_broadcast::event::Alert;
use inventory_broadcast::queue::Job;
use inventory_broadcast::severity::Boundaries;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default deadline for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// The admin URL tests create their databases with (the role needs CREATEDB).
pub fn admin_url() -> String {
    std::env::var("INVENTORY_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://inventory:inventory@127.0.0.1:5432/inventory".into())
}

/// The shared Redis the tests use, each under its own prefix.
pub fn redis_url() -> String {
    std::env::var("INVENTORY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A short unique tag for names.
pub fn tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

/// Replaces the database name in a postgres URL.
pub fn with_database(url: &str, db: &str) -> String {
    let base = url.rsplit_once('/').map_or(url, |(head, _)| head);
    format!("{base}/{db}")
}

/// A database of its own, migrated, dropped (with FORCE) when the test ends.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        let name = format!("ib_test_{}", tag());
        let mut admin = postgres::Client::connect(&admin_url(), postgres::NoTls)
            .expect("connect as the test admin; run scripts/services");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create test database");
        let url = with_database(&admin_url(), &name);
        let mut db =
            inventory_broadcast::db::Db::connect(&url).expect("connect to the test database");
        inventory_broadcast::db::migrate::migrate(&mut db, "item_count").expect("migrate");
        TestDb { name, url }
    }

    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the test database")
    }

    /// Inserts `n` rows, one statement (and one notification) each.
    pub fn insert(&self, n: usize) {
        let mut c = self.client();
        for _ in 0..n {
            c.execute("INSERT INTO items (name) VALUES ('widget')", &[])
                .expect("insert");
        }
    }

    pub fn failed_jobs(&self) -> Vec<(String, String, String)> {
        self.client()
            .query(
                "SELECT uuid, payload, exception FROM failed_jobs ORDER BY id",
                &[],
            )
            .expect("read failed_jobs")
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&admin_url(), postgres::NoTls) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// One test's world: database, Redis key prefix, broadcast channel, and the env the binaries get.
pub struct World {
    pub db: TestDb,
    pub prefix: String,
    pub channel: String,
    pub env: HashMap<String, String>,
    pub dir: PathBuf,
}

impl World {
    pub fn new() -> World {
        let db = TestDb::new();
        let t = tag();
        let prefix = format!("test-{t}:");
        let channel = format!("inventory-{t}");
        let dir = std::env::temp_dir().join(format!("ib-test-{t}"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut env = HashMap::new();
        env.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
        env.insert("DATABASE_URL".into(), db.url.clone());
        env.insert("REDIS_URL".into(), redis_url());
        env.insert("INVENTORY_QUEUE_PREFIX".into(), prefix.clone());
        env.insert("INVENTORY_BROADCAST_CHANNEL".into(), channel.clone());
        env.insert("INVENTORY_NOTIFICATION_THRESHOLD".into(), "20".into());
        World {
            db,
            prefix,
            channel,
            env,
            dir,
        }
    }

    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        self.env.insert(key.into(), value.into());
        self
    }

    fn command(&self, bin: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin_path(bin));
        cmd.args(args)
            .env_clear()
            .envs(&self.env)
            .current_dir(&self.dir);
        cmd
    }

    /// Runs a binary to completion (with a deadline).
    pub fn run(&self, bin: &str, args: &[&str]) -> Output {
        let mut child = self
            .command(bin, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn binary");
        let end = Instant::now() + Duration::from_secs(60);
        loop {
            if child.try_wait().expect("wait").is_some() {
                return child.wait_with_output().expect("output");
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!("{bin} {args:?} did not finish within 60 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts a long-running binary whose stderr is collected line by line.
    pub fn spawn(&self, bin: &str, args: &[&str]) -> Proc {
        let mut child = self
            .command(bin, args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn binary");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log lock").push(line);
            }
        });
        Proc {
            child,
            lines,
            name: bin.to_string(),
        }
    }

    pub fn queue(&self) -> inventory_broadcast::queue::Queue {
        inventory_broadcast::queue::Queue::connect(&redis_url(), &self.prefix)
            .expect("connect queue")
    }

    pub fn subscribe(&self) -> Subscriber {
        Subscriber::new(&self.channel)
    }

    /// A subscriber on this world's channel at another Redis (e.g. a [`RedisServer`]).
    pub fn subscribe_at(&self, url: &str) -> Subscriber {
        Subscriber::at(url, &self.channel)
    }

    /// Pushes `n` jobs of `kind` onto queue `name`, in batches; returns them.
    pub fn push_jobs(&self, name: &str, kind: &str, n: usize) -> Vec<Job> {
        let jobs: Vec<Job> = (0..n).map(|i| job(kind, 20 + i as u64)).collect();
        let mut q = self.queue();
        for batch in jobs.chunks(1000) {
            q.push(name, batch).expect("push jobs");
        }
        jobs
    }

    /// Runs `queue-work status --json` (with `args`) and parses it.
    pub fn status(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["status", "--json"];
        all.extend_from_slice(args);
        let out = self.run("queue-work", &all);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status --json is JSON")
    }

    pub fn redis(&self) -> redis::Connection {
        redis::Client::open(redis_url())
            .expect("redis url")
            .get_connection()
            .expect("connect redis")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Ok(mut con) = redis::Client::open(redis_url()).and_then(|c| c.get_connection()) {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.prefix))
                .query(&mut con)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut con);
            }
        }
    }
}

/// A job of `kind` carrying an alert for `count` (3 tries, backoff 1 s, timeout 60 s).
pub fn job(kind: &str, count: u64) -> Job {
    let alert = Alert::new(count, 20, &Boundaries::default(), "test");
    Job::new(kind.into(), alert, 3, vec![1], 60)
}

/// Waits until `check` returns `Some`, polling; panics with `what` at the deadline.
pub fn eventually<T>(what: &str, within: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < end, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn bin_path(bin: &str) -> PathBuf {
    match bin {
        "items-listen" => env!("CARGO_BIN_EXE_items-listen").into(),
        "queue-work" => env!("CARGO_BIN_EXE_queue-work").into(),
        "notify" => env!("CARGO_BIN_EXE_notify").into(),
        other => panic!("unknown binary {other}"),
    }
}

/// A running binary; killed when dropped.
pub struct Proc {
    pub child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    name: String,
}

impl Proc {
    pub fn log(&self) -> Vec<String> {
        self.lines.lock().expect("log lock").clone()
    }

    /// Waits until a log line contains `needle`; panics with the log at the deadline.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(line) = self.log().into_iter().find(|l| l.contains(needle)) {
                return line;
            }
            assert!(
                Instant::now() < end,
                "{} never logged {needle:?}; log:\n{}",
                self.name,
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn count_log(&self, needle: &str) -> usize {
        self.log().iter().filter(|l| l.contains(needle)).count()
    }

    /// Sends a signal by name (TERM, INT, KILL).
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Index of the first log line containing `needle`, if any.
    pub fn log_index(&self, needle: &str) -> Option<usize> {
        self.log().iter().position(|l| l.contains(needle))
    }

    /// Waits for the process to exit; returns its exit code (`None`: killed by a signal).
    pub fn wait_exit(&mut self) -> Option<i32> {
        self.wait_exit_within(DEADLINE)
    }

    /// As [`Proc::wait_exit`], with another deadline.
    pub fn wait_exit_within(&mut self, within: Duration) -> Option<i32> {
        let end = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.code();
            }
            assert!(
                Instant::now() < end,
                "{} did not exit; log:\n{}",
                self.name,
                self.log().join("\n")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Redis SUBSCRIBE on one channel, spoken in plain RESP over TCP.
///
/// Not the `redis` crate's connection: after a read timeout it skips the next reply it
/// reads, which in subscribe mode is the next message, so polling with a timeout would lose
/// messages. Here bytes are buffered and only whole frames are taken, so a timeout loses
/// nothing.
pub struct Subscriber {
    stream: std::net::TcpStream,
    buf: Vec<u8>,
}

impl Subscriber {
    pub fn new(channel: &str) -> Subscriber {
        Subscriber::at(&redis_url(), channel)
    }

    /// A subscriber on `channel` at the Redis at `url` (no password).
    pub fn at(url: &str, channel: &str) -> Subscriber {
        use std::io::Write;
        let client = redis::Client::open(url).expect("redis url");
        let addr = client.get_connection_info().addr().to_string();
        let mut stream = std::net::TcpStream::connect(&addr).expect("connect redis");
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let command = format!(
            "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{channel}\r\n",
            channel.len()
        );
        stream.write_all(command.as_bytes()).expect("subscribe");
        let mut sub = Subscriber {
            stream,
            buf: Vec::new(),
        };
        let confirmed = sub
            .next_frame(DEADLINE)
            .expect("subscribe confirmation before the deadline");
        assert_eq!(
            confirmed.first().map(Vec::as_slice),
            Some(&b"subscribe"[..])
        );
        sub
    }

    /// The next whole frame (an array of bulk strings or integers), or `None` at the deadline.
    fn next_frame(&mut self, within: Duration) -> Option<Vec<Vec<u8>>> {
        use std::io::Read;
        let end = Instant::now() + within;
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if Instant::now() >= end {
                return None;
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("subscriber: Redis closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("subscriber: {e}"),
            }
        }
    }

    /// The next message's raw payload, or `None` at the deadline.
    pub fn next_raw(&mut self, within: Duration) -> Option<String> {
        let end = Instant::now() + within;
        loop {
            let frame = self.next_frame(end.saturating_duration_since(Instant::now()))?;
            if frame.first().map(Vec::as_slice) == Some(b"message") {
                if let Some(payload) = frame.get(2) {
                    return Some(String::from_utf8_lossy(payload).into_owned());
                }
            }
        }
    }

    /// The next message as JSON; panics at the deadline.
    pub fn next(&mut self) -> serde_json::Value {
        let raw = self
            .next_raw(DEADLINE)
            .expect("no broadcast arrived before the deadline");
        serde_json::from_str(&raw).expect("broadcast is JSON")
    }
}

/// Parses one RESP2 array of bulk strings / integers from the start of `buf`; returns it and
/// the bytes it used, or `None` when the frame is not complete yet.
fn parse_frame(buf: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let rest = buf.get(at..)?;
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        Some((&rest[..end], at + end + 2))
    }
    fn number(bytes: &[u8]) -> i64 {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|s| s.parse().ok())
            .expect("RESP length")
    }
    let (head, mut at) = line(buf, 0)?;
    assert_eq!(head.first(), Some(&b'*'), "unexpected RESP frame {head:?}");
    let n = number(&head[1..]);
    let mut items = Vec::new();
    for _ in 0..n {
        let (item, next) = line(buf, at)?;
        match item.first() {
            Some(b'$') => {
                let len = number(&item[1..]) as usize;
                let data = buf.get(next..next + len)?;
                buf.get(next + len..next + len + 2)?;
                items.push(data.to_vec());
                at = next + len + 2;
            }
            Some(b':') => {
                items.push(item[1..].to_vec());
                at = next;
            }
            other => panic!("unexpected RESP item {other:?}"),
        }
    }
    Some((items, at))
}

/// A private `redis-server` on a free loopback port, for tests that must stop, pause or kill a
/// Redis (the shared one is never touched). Killed when dropped.
///
/// `pause` (SIGSTOP) makes every call to it hang: the kernel still accepts connections and
/// buffers what is sent, but nothing answers until `resume` (SIGCONT). That is a real "driver
/// that blocks until told".
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server and waits (with a deadline) until it answers PING.
    pub fn start() -> RedisServer {
        let dir = std::env::temp_dir().join(format!("ib-redis-{}", tag()));
        std::fs::create_dir_all(&dir).expect("redis temp dir");
        // Another process may take the free port between our probe and the server's bind:
        // then the server exits at once, and we try another port.
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                child: None,
                port,
                dir: dir.clone(),
            };
            if server.launch() {
                return server;
            }
        }
        panic!("could not start a private redis-server (is it installed? scripts/services)");
    }

    /// Starts the server process on `self.port`; true once it answers.
    fn launch(&mut self) -> bool {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .args(["--loglevel", "warning"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if let Some(child) = &mut self.child {
                if child.try_wait().ok().flatten().is_some() {
                    self.child = None;
                    return false;
                }
            }
            let ping = redis::Client::open(self.url()).and_then(|c| {
                let mut con = c.get_connection_with_timeout(Duration::from_millis(200))?;
                redis::cmd("PING").query::<String>(&mut con)
            });
            if ping.is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("the private redis-server runs");
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig} redis-server");
    }

    /// Freezes the server (SIGSTOP): calls to it hang until [`RedisServer::resume`].
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Kills the server (SIGKILL, works when paused too) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server politely (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) {
        if self.child.is_some() {
            self.signal("CONT");
            self.signal("TERM");
        }
        if let Some(mut child) = self.child.take() {
            let end = Instant::now() + DEADLINE;
            while child.try_wait().ok().flatten().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts a fresh, empty one on the same port.
    pub fn restart(&mut self) {
        self.kill();
        assert!(
            self.launch(),
            "redis-server did not restart on port {}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}
