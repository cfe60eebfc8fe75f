//! Measures 3 (latency), 4 (sustained) and 6 (memory): the release `items-listen` and
//! `queue-work` running against the durable PostgreSQL, inserts going in, a subscriber timing
//! what comes out. First with the notify source (the trigger), then, on the same database
//! and worker, with the logical source (issue 15: `items-listen migrate --source logical`, the
//! listener started with `--source logical`): latency at 50/s and 4 sustained clients, then
//! back to notify. The listener's CPU and its backends' is measured idle and at 50/s for each.

use crate::events::Events;
use crate::logical::{self, Switched};
use crate::report::{Latency, ListenerCpu, Memory, Results, Sustained};
use crate::support::Proc;
use crate::sys::{self, CpuWatch};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Paced runs: inserts per second, for how long, on how many connections (one connection
/// commits at most ~1 / fsync time per second, ~600/s on this kind of disk: two keep the
/// 500/s pace).
const PACED: [(f64, Duration, usize); 2] = [
    (50.0, Duration::from_secs(10), 1),
    (500.0, Duration::from_secs(4), 2),
];
/// Sustained runs: clients inserting as fast as they can, for how long.
const SUSTAINED: [usize; 2] = [1, 4];
const SUSTAINED_FOR: Duration = Duration::from_secs(10);
/// With the logical source: the 50/s run, and the 4-client sustained run.
const LOGICAL_PACED: (f64, Duration, usize) = PACED[0];
const LOGICAL_SUSTAINED: usize = 4;
/// The slot of this phase's database (a slot's name is the server's, not the database's).
const SLOT: &str = "bench_live";
/// How long the idle listener's CPU is watched.
const IDLE_FOR: Duration = Duration::from_secs(3);
/// Deadlines: the pipeline ready after start; a paced run's last events; a backlog drained.
const READY: Duration = Duration::from_secs(20);
const LAST_EVENTS: Duration = Duration::from_secs(10);
const BACKLOG_DRAIN: Duration = Duration::from_secs(60);
/// How often the daemons' RSS is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// An insert that also returns the count its own commit produced: both statements run in one
/// transaction (one simple query), and the counter row it updated is visible to its SELECT.
const INSERT_COUNTED: &str =
    "INSERT INTO items (name) VALUES ('bench'); SELECT n FROM inventory_item_count";
/// The same for the logical source, which keeps no counter row: `count(*)` in the insert's
/// transaction. Exact with one writer (the 50/s run has one); the table is emptied before,
/// so it stays cheap.
const INSERT_COUNTED_ITEMS: &str =
    "INSERT INTO items (name) VALUES ('bench'); SELECT count(*) FROM items";
const INSERT: &str = "INSERT INTO items (name) VALUES ('bench')";

/// Where an insert learns the count its commit produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counted {
    /// The trigger's counter row (notify source).
    Counter,
    /// `count(*)` of the table (logical source).
    Items,
}

impl Counted {
    fn source(self) -> &'static str {
        match self {
            Counted::Counter => "notify",
            Counted::Items => "logical",
        }
    }
}

pub fn run(pg: &crate::support::private::PgServer, redis_url: &str, results: &mut Results) {
    let db_url = pg.create_db();
    let env = logical::with_slot(crate::env(&db_url, redis_url, "live:", "bench-live"), SLOT);
    let mut events = Events::subscribe(redis_url, "bench-live");
    let listener = crate::spawn("items-listen", &env, &["-q"]);
    let worker = crate::spawn("queue-work", &env, &["-q"]);
    let daemons = [&listener, &worker];
    let counted = Counted::Counter;
    warm_up(&db_url, &mut events, &daemons, counted);
    results.listener_cpu.push(idle(&db_url, &listener, counted));
    let sampler = Sampler::start(&daemons);
    for (rate, span, clients) in PACED {
        eprintln!("bench: latency at {rate}/s for {span:?}");
        let cpu = ListenerWatch::start(&db_url, &listener);
        results
            .latency
            .push(latency(&db_url, &mut events, rate, span, clients, counted));
        if rate == LOGICAL_PACED.0 {
            results.listener_cpu.push(cpu.finish(counted, rate));
        }
        alive(&daemons);
    }
    for clients in SUSTAINED {
        eprintln!("bench: sustained, {clients} client(s) for {SUSTAINED_FOR:?}");
        results
            .sustained
            .push(sustained(&db_url, &mut events, clients, counted));
        alive(&daemons);
    }
    results.memory = sampler.finish();
    drop(listener);
    drop(events);
    run_logical(&db_url, redis_url, &env, &worker, results);
}

/// The logical source's runs, on the same database and worker: the notify listener is
/// stopped, the table emptied, the database switched with `items-listen migrate --source
/// logical`, a listener started with `--source logical`, and at the end switched back.
fn run_logical(
    db_url: &str,
    redis_url: &str,
    env: &[(String, String)],
    worker: &Proc,
    results: &mut Results,
) {
    eprintln!("bench: switching to the logical source (slot {SLOT})");
    let counted = Counted::Items;
    let mut c = connect(db_url);
    c.batch_execute("TRUNCATE items").expect("empty items");
    let switched = Switched::on(env);
    // A subscriber of its own: the counts start again from 0.
    let mut events = Events::subscribe(redis_url, "bench-live");
    let listener = crate::spawn("items-listen", env, &logical::LISTEN_ARGS);
    let daemons = [&listener, worker];
    warm_up(db_url, &mut events, &daemons, counted);
    results.listener_cpu.push(idle(db_url, &listener, counted));
    let sampler = Sampler::start(&[&listener]);
    let (rate, span, clients) = LOGICAL_PACED;
    eprintln!("bench: latency at {rate}/s for {span:?} (logical)");
    let cpu = ListenerWatch::start(db_url, &listener);
    results
        .latency
        .push(latency(db_url, &mut events, rate, span, clients, counted));
    results.listener_cpu.push(cpu.finish(counted, rate));
    alive(&daemons);
    eprintln!("bench: sustained, {LOGICAL_SUSTAINED} client(s) for {SUSTAINED_FOR:?} (logical)");
    let mut s = sustained(db_url, &mut events, LOGICAL_SUSTAINED, counted);
    alive(&daemons);
    logical::wait_caught_up(&mut c, SLOT, BACKLOG_DRAIN);
    s.count_exact = Some(logical::count_exact(&mut c, SLOT));
    results.sustained.push(s);
    results
        .memory
        .extend(sampler.finish().into_iter().map(|m| Memory {
            process: format!("{} --source logical", m.process),
            ..m
        }));
    logical::stop_listener(listener, &mut c, SLOT);
    switched.back();
}

/// The listener's CPU and its backends' while nothing is written.
fn idle(db_url: &str, listener: &Proc, counted: Counted) -> ListenerCpu {
    let watch = ListenerWatch::start(db_url, listener);
    sys::sleep(IDLE_FOR);
    let mut cpu = watch.finish(counted, 0.0);
    cpu.load = "idle".into();
    cpu
}

/// Watches the CPU of a listener and of the backends serving it.
struct ListenerWatch {
    listener: CpuWatch,
    backends: CpuWatch,
    count: usize,
}

impl ListenerWatch {
    fn start(db_url: &str, listener: &Proc) -> ListenerWatch {
        let backends = logical::listener_backends(&mut connect(db_url));
        ListenerWatch {
            listener: CpuWatch::start(vec![listener.child.id()]),
            count: backends.len(),
            backends: CpuWatch::start(backends),
        }
    }

    fn finish(self, counted: Counted, rate: f64) -> ListenerCpu {
        let (listener_pct, seconds) = self.listener.percent();
        let (backend_pct, _) = self.backends.percent();
        ListenerCpu {
            source: counted.source().into(),
            load: format!("{rate}/s"),
            seconds,
            listener_pct,
            backend_pct,
            backends: self.count,
        }
    }
}

fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).expect("connect to the bench database")
}

fn insert_counted(c: &mut postgres::Client, counted: Counted) -> u64 {
    let sql = match counted {
        Counted::Counter => INSERT_COUNTED,
        Counted::Items => INSERT_COUNTED_ITEMS,
    };
    c.simple_query(sql)
        .expect("insert")
        .iter()
        .find_map(|m| match m {
            postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse().ok(),
            _ => None,
        })
        .expect("the count after the insert")
}

fn current_count(c: &mut postgres::Client, counted: Counted) -> u64 {
    let sql = match counted {
        Counted::Counter => "SELECT n FROM inventory_item_count",
        Counted::Items => "SELECT count(*) FROM items",
    };
    let n: i64 = c.query_one(sql, &[]).expect("read the count").get(0);
    u64::try_from(n).expect("a count")
}

/// Panics, with its log, when a daemon has exited.
fn alive(daemons: &[&Proc]) {
    for p in daemons {
        let running = sys::cpu_ticks(p.child.id()).is_some_and(|(state, _)| state != 'Z');
        assert!(
            running,
            "{} exited; its log:\n{}",
            p.name(),
            p.log().join("\n")
        );
    }
}

/// Waits until an insert comes out of the other end (connections opened, LISTEN issued), then
/// sends a few more through, so the timed runs start warm.
fn warm_up(db_url: &str, events: &mut Events, daemons: &[&Proc], counted: Counted) {
    let mut c = connect(db_url);
    let end = Instant::now() + READY;
    loop {
        alive(daemons);
        let count = insert_counted(&mut c, counted);
        if sys::wait_for(Duration::from_millis(300), Duration::from_millis(5), || {
            events.ingest().first.contains_key(&count)
        }) {
            break;
        }
        assert!(
            Instant::now() < end,
            "no broadcast within {READY:?} of starting the daemons"
        );
    }
    let counts: Vec<u64> = (0..20).map(|_| insert_counted(&mut c, counted)).collect();
    let last = *counts.last().expect("warm-up inserts");
    assert!(
        sys::wait_for(LAST_EVENTS, Duration::from_millis(5), || {
            events.ingest().first.contains_key(&last)
        }),
        "warm-up broadcasts did not arrive"
    );
}

/// Joins a thread, passing its panic on.
fn join<T>(h: JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Inserts at `rate` per second for `span`; the latency of each is from its commit (the
/// client's acknowledgement) to the first broadcast of the count that commit produced.
fn latency(
    db_url: &str,
    events: &mut Events,
    rate: f64,
    span: Duration,
    clients: usize,
    counted: Counted,
) -> Latency {
    assert!(
        counted == Counted::Counter || clients == 1,
        "count(*) tells each insert its count only with one writer"
    );
    let total = (rate * span.as_secs_f64()).round() as usize;
    let start = Instant::now() + Duration::from_millis(200);
    let threads: Vec<JoinHandle<Vec<(u64, Instant)>>> = (0..clients)
        .map(|j| {
            let url = db_url.to_string();
            std::thread::spawn(move || {
                let mut c = connect(&url);
                let mut commits = Vec::with_capacity(total / clients + 1);
                for k in (j..total).step_by(clients) {
                    sys::sleep_until(start + Duration::from_secs_f64(k as f64 / rate));
                    let count = insert_counted(&mut c, counted);
                    commits.push((count, Instant::now()));
                }
                commits
            })
        })
        .collect();
    let mut commits: Vec<(u64, Instant)> = threads.into_iter().flat_map(join).collect();
    commits.sort_by_key(|(_, at)| *at);
    let (first, last) = (commits[0].1, commits[commits.len() - 1].1);
    sys::wait_for(LAST_EVENTS, Duration::from_millis(10), || {
        events.ingest();
        commits.iter().all(|(c, _)| events.first.contains_key(c))
    });
    let mut ms: Vec<f64> = commits
        .iter()
        .filter_map(|(count, at)| {
            let got = events.first.get(count)?;
            Some(got.saturating_duration_since(*at).as_secs_f64() * 1000.0)
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    Latency {
        source: counted.source().into(),
        rate,
        achieved_rate: (commits.len() - 1) as f64 / last.duration_since(first).as_secs_f64(),
        inserts: commits.len() as u64,
        missing: (commits.len() - ms.len()) as u64,
        p50_ms: sys::quantile(&ms, 0.50),
        p95_ms: sys::quantile(&ms, 0.95),
        p99_ms: sys::quantile(&ms, 0.99),
        max_ms: ms.last().copied().unwrap_or(f64::NAN),
    }
}

/// Sets its flag when dropped, so inserting threads stop even when the run panics.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// `clients` connections inserting as fast as they can for [`SUSTAINED_FOR`].
fn sustained(db_url: &str, events: &mut Events, clients: usize, counted: Counted) -> Sustained {
    let base = current_count(&mut connect(db_url), counted);
    let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
    let go = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<JoinHandle<u64>> = (0..clients)
        .map(|_| {
            let (url, stop, go) = (db_url.to_string(), Arc::clone(&stop.0), Arc::clone(&go));
            std::thread::spawn(move || {
                let mut c = connect(&url);
                go.wait();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) && !sys::aborted() {
                    c.execute(INSERT, &[]).expect("insert");
                    n += 1;
                }
                n
            })
        })
        .collect();
    go.wait();
    let started = Instant::now();
    while started.elapsed() < SUSTAINED_FOR {
        sys::sleep(Duration::from_millis(100));
        events.ingest();
    }
    stop.0.store(true, Ordering::SeqCst);
    let inserts: u64 = threads.into_iter().map(join).sum();
    // Every insert has committed: what has not been broadcast yet is the backlog.
    let stopped = Instant::now();
    let window = stopped.duration_since(started).as_secs_f64();
    let range = base + 1..=base + inserts;
    events.ingest();
    let at_stop = events.counts_in(range.clone(), Some(stopped)) as u64;
    sys::wait_for(BACKLOG_DRAIN, Duration::from_millis(20), || {
        events.ingest().counts_in(range.clone(), None) as u64 == inserts
    });
    let received = events.counts_in(range.clone(), None) as u64;
    let done_at = range.clone().filter_map(|c| events.first.get(&c)).max();
    let in_window = events.counts_between(range, started, stopped);
    Sustained {
        source: counted.source().into(),
        clients: clients as u32,
        seconds: window,
        inserts,
        inserts_per_s: inserts as f64 / window,
        broadcasts_per_s: in_window as f64 / window,
        backlog: inserts - at_stop,
        drain_s: (received == inserts)
            .then(|| done_at.map_or(0.0, |d| d.saturating_duration_since(stopped).as_secs_f64())),
        missing: inserts - received,
        count_exact: None,
    }
}

/// Samples the daemons' RSS until finished.
struct Sampler {
    procs: Vec<(String, u32)>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Vec<u64>>>,
}

impl Sampler {
    fn start(daemons: &[&Proc]) -> Sampler {
        let procs: Vec<(String, u32)> = daemons
            .iter()
            .map(|p| (p.name().to_string(), p.child.id()))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let (pids, halt) = (
            procs.iter().map(|(_, pid)| *pid).collect::<Vec<_>>(),
            Arc::clone(&stop),
        );
        let thread = std::thread::spawn(move || {
            let mut samples = vec![Vec::new(); pids.len()];
            while !halt.load(Ordering::SeqCst) {
                for (pid, out) in pids.iter().zip(samples.iter_mut()) {
                    if let Some((rss, _)) = sys::rss_kib(*pid) {
                        out.push(rss);
                    }
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
            samples
        });
        Sampler {
            procs,
            stop,
            thread,
        }
    }

    fn finish(self) -> Vec<Memory> {
        let peaks: Vec<u64> = self
            .procs
            .iter()
            .map(|(_, pid)| sys::rss_kib(*pid).map_or(0, |(_, hwm)| hwm))
            .collect();
        self.stop.store(true, Ordering::SeqCst);
        let samples = join(self.thread);
        let mb = |kib: u64| kib as f64 * 1024.0 / 1e6;
        self.procs
            .iter()
            .zip(samples)
            .zip(peaks)
            .map(|(((name, _), s), peak)| Memory {
                process: name.clone(),
                peak_mb: mb(peak),
                first_mb: mb(s.first().copied().unwrap_or(0)),
                last_mb: mb(s.last().copied().unwrap_or(0)),
                max_sampled_mb: mb(s.iter().copied().max().unwrap_or(0)),
                samples: s.len(),
            })
            .collect()
    }
}
