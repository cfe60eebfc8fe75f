//! Test helpers: a fresh database and key prefix per test, the binaries run as a user runs
//! them (scrubbed environment), and a real Redis subscriber. Every wait has a deadline.

#![allow(dead_code)]

pub mod browser;
pub mod fake_pusher;
pub mod fake_smtp;
pub mod fake_webhook;
pub mod http;
pub mod private;
pub mod tls;
pub mod topology;

// Shared by the test, fault and bench binaries; not every one names it this way.
#[allow(unused_imports)]
pub use private::RedisServer;

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
        let mut db = inventory_broadcast::db::Db::connect(
            &inventory_broadcast::db::DatabaseConfig::plain(&url.clone()),
        )
        .expect("connect to the test database");
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

/// Waits for a binary to exit (a minute at most: then it is killed and the test fails) and
/// collects what it printed.
fn finish_within_a_minute(mut child: std::process::Child, bin: &str, args: &[&str]) -> Output {
    let end = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("{bin} {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
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
        let child = self
            .command(bin, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn binary");
        finish_within_a_minute(child, bin, args)
    }

    /// Runs a binary to completion with its standard output a pipe whose reading end is
    /// already closed, as `bin … | head -0` would leave it: every write gets EPIPE.
    pub fn run_into_closed_pipe(&self, bin: &str, args: &[&str]) -> Output {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let child = self
            .command(bin, args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn binary");
        finish_within_a_minute(child, bin, args)
    }

    /// Starts a long-running binary whose stderr is collected line by line.
    pub fn spawn(&self, bin: &str, args: &[&str]) -> Proc {
        Proc::from_command(self.command(bin, args), bin)
    }

    /// The configuration the binaries of this world load (its environment, no files).
    pub fn config(&self) -> inventory_broadcast::config::Config {
        inventory_broadcast::config::Config::resolve(&inventory_broadcast::config::Sources {
            env: self.env.clone(),
            ..Default::default()
        })
        .expect("the world's configuration")
    }

    pub fn queue(&self) -> inventory_broadcast::queue::Queue {
        inventory_broadcast::queue::Queue::connect(
            &inventory_broadcast::redis_conn::RedisConfig::url(&redis_url()),
            &self.prefix,
        )
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

/// What 25 single inserts at threshold 20 broadcast: count, severity, percentage.
pub const COUNTS_20_TO_25: [(u64, &str, f64); 6] = [
    (20, "warning", 100.0),
    (21, "warning", 105.0),
    (22, "warning", 110.0),
    (23, "warning", 115.0),
    (24, "high", 120.0),
    (25, "high", 125.0),
];

/// A job of `kind` carrying an alert for `count` (3 tries, backoff 1 s, timeout 60 s).
pub fn job(kind: &str, count: u64) -> Job {
    let alert = Alert::new(count, 20, &Boundaries::default(), "test");
    Job::new(kind.parse().expect("a job kind"), alert, 3, vec![1], 60)
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
    /// Spawns `cmd`, collecting its stderr line by line.
    pub fn from_command(mut cmd: Command, name: &str) -> Proc {
        let mut child = cmd
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
            name: name.to_string(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

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

/// A real Redis SUBSCRIBE on one channel, on a thread that resubscribes if the server goes
/// away. Uses the crate's PubSub reader: a plain connection's read timeout makes it skip the
/// next reply, which would silently drop messages.
pub struct Subscriber {
    got: Arc<Mutex<Vec<(Instant, String)>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    cursor: usize,
}

impl Subscriber {
    /// Subscribes on the shared test Redis.
    pub fn new(channel: &str) -> Subscriber {
        Subscriber::at(&redis_url(), channel)
    }

    /// Subscribes on the Redis at `url`; returns once the subscription is active.
    pub fn at(url: &str, channel: &str) -> Subscriber {
        use std::sync::atomic::{AtomicBool, Ordering};
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (sink, halt, url, channel) = (
            Arc::clone(&got),
            Arc::clone(&stop),
            url.to_string(),
            channel.to_string(),
        );
        std::thread::spawn(move || {
            while !halt.load(Ordering::SeqCst) {
                let client = redis::Client::open(url.as_str()).expect("redis url");
                let Ok(mut con) = client.get_connection_with_timeout(Duration::from_millis(300))
                else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let mut pubsub = con.as_pubsub();
                if pubsub.subscribe(&channel).is_err()
                    || pubsub
                        .set_read_timeout(Some(Duration::from_millis(100)))
                        .is_err()
                {
                    continue;
                }
                let _ = ready_tx.send(());
                while !halt.load(Ordering::SeqCst) {
                    match pubsub.get_message() {
                        Ok(msg) => {
                            let payload: String = msg.get_payload().unwrap_or_default();
                            sink.lock()
                                .expect("subscriber lock")
                                .push((Instant::now(), payload));
                        }
                        Err(e) if e.is_timeout() => {}
                        Err(_) => break,
                    }
                }
            }
        });
        ready_rx
            .recv_timeout(DEADLINE)
            .expect("subscription never became active");
        Subscriber {
            got,
            stop,
            cursor: 0,
        }
    }

    /// Every message so far, with when it arrived.
    pub fn all(&self) -> Vec<(Instant, String)> {
        self.got.lock().expect("subscriber lock").clone()
    }

    /// How many messages arrived so far (cheap: copies nothing).
    pub fn received(&self) -> usize {
        self.got.lock().expect("subscriber lock").len()
    }

    /// The messages from index `from` on, so a caller polling a long run copies each once.
    pub fn since(&self, from: usize) -> Vec<(Instant, String)> {
        let got = self.got.lock().expect("subscriber lock");
        got.get(from..).map(<[_]>::to_vec).unwrap_or_default()
    }

    /// The next message's raw payload, or `None` at the deadline.
    pub fn next_raw(&mut self, within: Duration) -> Option<String> {
        let end = Instant::now() + within;
        loop {
            if let Some((_, payload)) = self.got.lock().expect("subscriber lock").get(self.cursor) {
                self.cursor += 1;
                return Some(payload.clone());
            }
            if Instant::now() > end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
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

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}
