//! The fault-injection suite: each fault is injected into a running pipeline while inserts keep
//! going; once it is removed, the latest count must be broadcast within 10 s with no restart
//! by hand. Private PostgreSQL and Redis servers only. Prints a summary table.
//!
//! Its own test binary (harness = false): the faults run one after another, since they stop
//! and start servers, and the table is printed whatever happens.

mod support;

use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::RedisServer;
use support::private::PgServer;
use support::{Proc, bin_path};

/// The promise: the latest count is broadcast this soon after a fault is removed.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(10);
/// Inserts go on this long after the fault is removed, so there is a change to catch up on.
const INSERTS_AFTER: Duration = Duration::from_secs(1);

/// One received broadcast.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    count: u64,
    alert_id: String,
    timestamp: String,
}

/// Everything broadcast on the target Redis (the subscriber resubscribes after an outage).
struct Collector {
    sub: support::Subscriber,
}

impl Collector {
    fn start(url: String, channel: String) -> Collector {
        Collector {
            sub: support::Subscriber::at(&url, &channel),
        }
    }

    fn all(&self) -> Vec<Received> {
        self.sub
            .all()
            .iter()
            .filter_map(|(at, raw)| parse(*at, raw))
            .collect()
    }

    /// Waits for a broadcast of `count`; returns when it arrived.
    fn wait_for_count(&self, count: u64, deadline: Instant) -> Option<Instant> {
        loop {
            if let Some(r) = self.all().iter().find(|r| r.count == count) {
                return Some(r.at);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_for_n(&self, n: usize, deadline: Duration) {
        let end = Instant::now() + deadline;
        while self.all().len() < n {
            assert!(
                Instant::now() < end,
                "only {} broadcasts arrived",
                self.all().len()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn parse(at: Instant, payload: &str) -> Option<Received> {
    let v: serde_json::Value = serde_json::from_str(payload).ok()?;
    Some(Received {
        at,
        count: v["data"]["count"].as_u64()?,
        alert_id: v["data"]["alert_id"].as_str()?.to_string(),
        timestamp: v["data"]["timestamp"].as_str()?.to_string(),
    })
}

/// Inserts a row every 20 ms on its own connection, reconnecting through outages.
struct Inserter {
    stop: Arc<AtomicBool>,
    /// When the last insert committed.
    last: Arc<Mutex<Option<Instant>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Inserter {
    fn start(url: String) -> Inserter {
        let stop = Arc::new(AtomicBool::new(false));
        let last = Arc::new(Mutex::new(None));
        let (halt, committed) = (Arc::clone(&stop), Arc::clone(&last));
        let thread = std::thread::spawn(move || {
            let mut client: Option<postgres::Client> = None;
            while !halt.load(Ordering::SeqCst) {
                if client.is_none() {
                    client = postgres::Client::connect(&url, postgres::NoTls).ok();
                }
                if let Some(c) = &mut client {
                    match c.execute("INSERT INTO items (name) VALUES ('fault')", &[]) {
                        Ok(_) => *committed.lock().unwrap() = Some(Instant::now()),
                        Err(_) => client = None,
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Inserter {
            stop,
            last,
            thread: Some(thread),
        }
    }

    /// Stops inserting; returns when the last insert committed.
    fn finish(&mut self) -> Option<Instant> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        *self.last.lock().unwrap()
    }
}

impl Drop for Inserter {
    fn drop(&mut self) {
        self.finish();
    }
}

/// One fault's world: private servers, a database, the daemons, the subscriber, the inserts.
struct Rig<'a> {
    pg: &'a PgServer,
    queue_redis: RedisServer,
    target: RedisServer,
    db_url: String,
    channel: String,
    listeners: Vec<Proc>,
    workers: Vec<Proc>,
    dead: Vec<Proc>,
    collector: Collector,
    /// Listener log lines before this index (per listener) were written before the queue
    /// Redis lost its data: those alerts may be gone with it.
    lost_with_redis: Vec<usize>,
    /// The target Redis (and with it the test's subscription) went away: events published
    /// just before the subscriber was back reached Redis but no subscriber, so delivery is
    /// judged by the worker's acknowledgements instead.
    subscriber_gap: bool,
}

impl<'a> Rig<'a> {
    fn new(pg: &'a PgServer) -> Rig<'a> {
        let queue_redis = RedisServer::start();
        let target = RedisServer::start();
        let channel = format!("inventory-{}", support::tag());
        let collector = Collector::start(target.url(), channel.clone());
        Rig {
            pg,
            db_url: pg.create_db(),
            queue_redis,
            target,
            channel,
            listeners: Vec::new(),
            workers: Vec::new(),
            dead: Vec::new(),
            collector,
            lost_with_redis: Vec::new(),
            subscriber_gap: false,
        }
    }

    fn spawn(&self, bin: &str) -> Proc {
        let mut cmd = Command::new(bin_path(bin));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("DATABASE_URL", &self.db_url)
            .env("REDIS_URL", self.queue_redis.url())
            .env("BROADCAST_REDIS_URL", self.target.url())
            .env("INVENTORY_BROADCAST_CHANNEL", &self.channel)
            .env("INVENTORY_NOTIFICATION_THRESHOLD", "1")
            .current_dir(std::env::temp_dir());
        Proc::from_command(cmd, bin)
    }

    fn start_listener(&mut self) {
        let p = self.spawn("items-listen");
        self.listeners.push(p);
    }

    fn start_worker(&mut self) {
        let p = self.spawn("queue-work");
        self.workers.push(p);
    }

    fn kill(p: &Proc) {
        p.signal("KILL");
    }

    /// Alert ids the listeners dispatched (that Redis did not lose in a restart).
    fn dispatched(&self) -> HashSet<String> {
        let mut ids = HashSet::new();
        for (i, p) in self
            .listeners
            .iter()
            .chain(self.dead.iter().filter(|p| p.name() == "items-listen"))
            .enumerate()
        {
            let skip = self.lost_with_redis.get(i).copied().unwrap_or(0);
            for line in p.log().iter().skip(skip) {
                if let Some(id) = line
                    .split(", alert ")
                    .nth(1)
                    .filter(|_| line.contains("dispatched"))
                {
                    ids.insert(id.trim().to_string());
                }
            }
        }
        ids
    }

    fn failed_alert_ids(&self) -> HashSet<String> {
        let mut c = postgres::Client::connect(&self.db_url, postgres::NoTls).expect("connect");
        c.query("SELECT payload FROM failed_jobs", &[])
            .expect("failed_jobs")
            .iter()
            .filter_map(|r| {
                let payload: String = r.get(0);
                let v: serde_json::Value = serde_json::from_str(&payload).ok()?;
                Some(v["payload"]["alert_id"].as_str()?.to_string())
            })
            .collect()
    }

    fn latest_count(&self) -> u64 {
        let mut c = postgres::Client::connect(&self.db_url, postgres::NoTls).expect("connect");
        let n: i64 = c
            .query_one("SELECT n FROM inventory_item_count", &[])
            .expect("count")
            .get(0);
        u64::try_from(n).expect("count")
    }

    fn queue_empty(&self) -> bool {
        let Ok(mut q) = inventory_broadcast::queue::Queue::connect(
            &inventory_broadcast::redis_conn::RedisConfig::url(&self.queue_redis.url()),
            "inventory:",
        ) else {
            return false;
        };
        q.sizes("default")
            .map(|s| s.pending + s.delayed + s.reserved == 0)
            .unwrap_or(false)
    }
}

/// What one fault did.
struct Row {
    fault: &'static str,
    recovery: Option<Duration>,
    caught_up: Option<Duration>,
    lost: usize,
    duplicates: usize,
    failed: usize,
    problems: Vec<String>,
}

/// Runs one fault: start everything, inject, remove (the closure returns when it removed the
/// fault), then check the promise.
fn run_fault(
    pg: &PgServer,
    fault: &'static str,
    listeners: usize,
    inject: impl FnOnce(&mut Rig) -> Instant,
) -> Row {
    let mut rig = Rig::new(pg);
    rig.start_listener();
    rig.start_worker();
    rig.listeners[0].wait_for_log("listening on channel");
    // Standbys start after the first is active, so listeners[0] is the active one.
    for _ in 1..listeners {
        rig.start_listener();
    }
    let mut inserter = Inserter::start(rig.db_url.clone());
    rig.collector.wait_for_n(3, Duration::from_secs(10));
    let removed = inject(&mut rig);
    let at_removal = rig.latest_count();
    let until = removed + INSERTS_AFTER;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let last_insert = inserter.finish().unwrap_or(removed);
    let latest = rig.latest_count();
    let arrived = rig
        .collector
        .wait_for_count(latest, removed + INSERTS_AFTER + RECOVERY_DEADLINE);
    let mut problems = Vec::new();
    if arrived.is_none() {
        problems.push(format!(
            "latest count {latest} was not broadcast within {RECOVERY_DEADLINE:?}"
        ));
    }
    // Let retries finish before counting what was lost.
    let end = Instant::now() + Duration::from_secs(20);
    while !rig.queue_empty() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let got = rig.collector.all();
    let received: HashSet<String> = got.iter().map(|r| r.alert_id.clone()).collect();
    let failed_ids = rig.failed_alert_ids();
    let lost = if rig.subscriber_gap {
        // Each job acknowledged (DONE) was accepted by the target Redis.
        let done: usize = rig
            .workers
            .iter()
            .chain(&rig.dead)
            .map(|p| p.count_log("broadcast:redis DONE"))
            .sum();
        rig.dispatched().len().saturating_sub(done) + usize::from(!rig.queue_empty())
    } else {
        rig.dispatched()
            .iter()
            .filter(|id| !received.contains(*id) && !failed_ids.contains(*id))
            .count()
    };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for r in &got {
        *seen.entry(r.alert_id.as_str()).or_default() += 1;
    }
    let duplicates = seen.values().filter(|n| **n > 1).count();
    // The newest alert (by the time it was rated) must carry the latest count.
    if let Some(newest) = got.iter().max_by(|a, b| a.timestamp.cmp(&b.timestamp)) {
        if newest.count != latest {
            problems.push(format!(
                "newest broadcast has count {}, latest is {latest}",
                newest.count
            ));
        }
    }
    if lost > 0 {
        let example = rig
            .dispatched()
            .into_iter()
            .find(|id| !received.contains(id) && !failed_ids.contains(id))
            .unwrap_or_default();
        problems.push(format!(
            "{lost} dispatched alert(s) neither broadcast nor in failed_jobs, e.g. {example}; received {}",
            got.len()
        ));
        if std::env::var_os("FAULTS_DEBUG").is_some() {
            for p in rig.listeners.iter().chain(&rig.workers).chain(&rig.dead) {
                eprintln!("--- {}\n{}", p.name(), p.log().join("\n"));
            }
        }
    }
    Row {
        fault,
        // Recovery: from the fault's removal to the first broadcast of a change made after it.
        recovery: got
            .iter()
            .filter(|r| r.count > at_removal && r.count < 1_000_000)
            .map(|r| r.at)
            .min()
            .map(|a| a.saturating_duration_since(removed)),
        // Catch-up: from the last insert's commit to the broadcast of the final count.
        caught_up: arrived.map(|a| a.saturating_duration_since(last_insert)),
        lost,
        duplicates,
        failed: failed_ids.len(),
        problems,
    }
}

fn pause(d: Duration) {
    std::thread::sleep(d);
}

/// Injects a fault and removes it; returns when it was removed.
type Inject = Box<dyn FnOnce(&mut Rig) -> Instant>;

fn main() {
    let started = Instant::now();
    let pg = PgServer::start();
    let faults: Vec<(&'static str, usize, Inject)> = vec![
        (
            "PostgreSQL restarted (fast) under items-listen",
            1,
            Box::new(|rig: &mut Rig| {
                rig.pg.stop_fast();
                pause(Duration::from_secs(1));
                rig.pg.up();
                Instant::now()
            }),
        ),
        (
            "listener backend killed (pg_terminate_backend)",
            1,
            Box::new(|rig: &mut Rig| {
                let db = rig
                    .db_url
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let killed: i64 = rig
                    .pg
                    .admin()
                    .query_one(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                         WHERE datname = $1 AND application_name = 'items-listen'",
                        &[&db],
                    )
                    .expect("terminate")
                    .get(0);
                assert_eq!(killed, 1, "exactly one listener backend");
                Instant::now()
            }),
        ),
        (
            "Redis SIGKILLed, restarted empty",
            1,
            Box::new(|rig: &mut Rig| {
                rig.queue_redis.kill();
                rig.lost_with_redis = rig.listeners.iter().map(|p| p.log().len()).collect();
                pause(Duration::from_secs(1));
                rig.queue_redis.restart();
                Instant::now()
            }),
        ),
        (
            "items-listen SIGKILLed, started again",
            1,
            Box::new(|rig: &mut Rig| {
                Rig::kill(&rig.listeners[0]);
                let dead = rig.listeners.remove(0);
                rig.dead.push(dead);
                pause(Duration::from_millis(1500));
                rig.start_listener();
                Instant::now()
            }),
        ),
        (
            "two listeners, active one SIGKILLed",
            2,
            Box::new(|rig: &mut Rig| {
                rig.listeners[1].wait_for_log("standby");
                Rig::kill(&rig.listeners[0]);
                Instant::now()
            }),
        ),
        (
            "queue-work SIGKILLed mid-job + Redis restart",
            1,
            Box::new(|rig: &mut Rig| {
                rig.target.pause();
                let mut q = inventory_broadcast::queue::Queue::connect(
                    &inventory_broadcast::redis_conn::RedisConfig::url(&rig.queue_redis.url()),
                    "inventory:",
                )
                .unwrap();
                let end = Instant::now() + Duration::from_secs(10);
                while q.sizes("default").map(|s| s.reserved).unwrap_or(0) == 0 {
                    assert!(Instant::now() < end, "worker never took a job");
                    pause(Duration::from_millis(5));
                }
                Rig::kill(&rig.workers[0]);
                rig.target.resume();
                rig.queue_redis.kill();
                rig.lost_with_redis = rig.listeners.iter().map(|p| p.log().len()).collect();
                rig.queue_redis.restart();
                rig.start_worker();
                Instant::now()
            }),
        ),
        (
            "broadcast target Redis hung (SIGSTOP) for 5 s",
            1,
            // Hung rather than killed: a killed target would also drop the test's own
            // subscription, and PUBLISHes in the moment before it resubscribes would be
            // counted as lost although they were delivered to Redis.
            Box::new(|rig: &mut Rig| {
                rig.target.pause();
                pause(Duration::from_secs(5));
                rig.target.resume();
                Instant::now()
            }),
        ),
        (
            "broadcast target Redis SIGKILLed, back after 5 s",
            1,
            Box::new(|rig: &mut Rig| {
                rig.subscriber_gap = true;
                rig.target.kill();
                pause(Duration::from_secs(5));
                rig.target.restart();
                Instant::now()
            }),
        ),
        (
            "1,000 forged notifications among real inserts",
            1,
            Box::new(|rig: &mut Rig| {
                let mut c = postgres::Client::connect(&rig.db_url, postgres::NoTls).unwrap();
                let base = rig.latest_count();
                for i in 0..1000u32 {
                    // Malformed, absurd, or well-formed but false: none is rated.
                    let forged = match i % 4 {
                        0 => "not json".to_string(),
                        1 => "{\"count\": -1}".to_string(),
                        2 => format!("{{\"count\": \"{}\"}}", "9".repeat(7900)),
                        _ => format!("{{\"count\": {}}}", 5_000_000 + i),
                    };
                    c.execute("SELECT pg_notify('item_count', $1)", &[&forged])
                        .unwrap();
                    if i % 10 == 0 {
                        c.batch_execute("INSERT INTO items (name) VALUES ('real')")
                            .unwrap();
                    }
                }
                let end = Instant::now() + Duration::from_secs(20);
                for k in 1..=100u64 {
                    assert!(
                        rig.collector.wait_for_count(base + k, end).is_some(),
                        "real insert {k} was not rated"
                    );
                }
                assert!(
                    rig.collector.all().iter().all(|r| r.count < 5_000_000),
                    "a forged count was broadcast"
                );
                Instant::now()
            }),
        ),
    ];
    let mut rows = Vec::new();
    // FAULTS=3,7 runs only those faults (1-based), for debugging.
    let only: Option<Vec<usize>> = std::env::var("FAULTS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect());
    for (i, (name, listeners, inject)) in faults.into_iter().enumerate() {
        if only.as_ref().is_some_and(|o| !o.contains(&(i + 1))) {
            continue;
        }
        eprintln!("fault: {name}");
        let row = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_fault(&pg, name, listeners, inject)
        }))
        .unwrap_or_else(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into());
            Row {
                fault: name,
                recovery: None,
                caught_up: None,
                lost: 0,
                duplicates: 0,
                failed: 0,
                problems: vec![why],
            }
        });
        rows.push(row);
    }
    print_table(&rows);
    // Stop the private server before exiting: `exit` runs no destructors.
    drop(pg);
    let failed = rows.iter().filter(|r| !r.problems.is_empty()).count();
    println!("fault suite took {:.0} s", started.elapsed().as_secs_f64());
    println!("{} passed, {} failed", rows.len() - failed, failed);
    if failed > 0 {
        std::process::exit(1);
    }
}

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "| # | fault | recovery | last insert → broadcast | alerts lost | duplicates | failed jobs | result |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, r) in rows.iter().enumerate() {
        let recovery = r
            .recovery
            .map_or("—".to_string(), |d| format!("{:.2} s", d.as_secs_f64()));
        let result = if r.problems.is_empty() {
            "ok".to_string()
        } else {
            format!("FAIL: {}", r.problems.join("; "))
        };
        let caught_up = r.caught_up.map_or("—".to_string(), |d| {
            format!("{:.1} ms", d.as_secs_f64() * 1000.0)
        });
        println!(
            "| {} | {} | {recovery} | {caught_up} | {} | {} | {} | {result} |",
            i + 1,
            r.fault,
            r.lost,
            r.duplicates,
            r.failed
        );
    }
    println!();
}
