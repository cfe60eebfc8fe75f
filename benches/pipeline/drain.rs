//! Measure 1, drain: a full queue, one `queue-work` process, every event counted; and the same
//! drain unwatched (no subscriber), which phase 8 runs over plain and TLS Redis.
//! Measure 2, dispatch: the listener's dispatch path pushing jobs as fast as it can.

use crate::events::Events;
use crate::report::{Dispatch, Drain, UnwatchedDrain};
use crate::support::Proc;
use crate::sys;
use inventory_broadcast::config::Config;
use inventory_broadcast::event::Alert;
use inventory_broadcast::queue::Queue;
use inventory_broadcast::redis_conn;
use inventory_broadcast::service::{self, Dispatcher};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// Jobs queued before the worker starts.
const JOBS: usize = 50_000;
/// Jobs per `Queue::push` call while filling.
const PUSH_BATCH: usize = 1_000;
/// The worker must have emptied the queue by then (it would take 66 s at Laravel's rate).
const DRAIN_DEADLINE: Duration = Duration::from_secs(120);
/// After the worker exited, its last events must arrive within this.
const LATE_EVENTS: Duration = Duration::from_secs(5);
/// Alerts dispatched in the timed loop, after a warm-up.
const ALERTS: u64 = 20_000;
const WARM_UP: u64 = 100;
const DISPATCH_DEADLINE: Duration = Duration::from_secs(60);

pub fn drain(redis: &crate::support::private::RedisServer, db_url: &str) -> Drain {
    let env = crate::env(db_url, &redis.url(), "drain:", "bench-drain");
    let config = crate::config(&env);
    let ids = fill(&config);
    let mut events = Events::subscribe(
        config.broadcast.redis.url.expose(),
        &config.broadcast.channel,
    );
    let own_cpu = own_cpu();
    let worked = work(&env, &config);
    let own_cpu = self::own_cpu() - own_cpu;
    sys::wait_for(LATE_EVENTS, Duration::from_millis(20), || {
        events.ingest().ids.len() >= JOBS
    });
    let missing = ids
        .iter()
        .filter(|id| !events.ids.contains_key(*id))
        .count();
    if worked.exit != Some(0) || missing > 0 {
        eprintln!(
            "bench: drain: worker exit {:?}, {missing} missing; its log:\n{}",
            worked.exit,
            worked.worker.log().join("\n")
        );
    }
    let received = events.ids.len();
    let span = match (events.first_at, events.last_at) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64(),
        _ => f64::NAN,
    };
    let jobs = JOBS as f64;
    Drain {
        jobs: JOBS as u64,
        events: events.messages as u64,
        duplicates: events.duplicates() as u64,
        missing: missing as u64,
        events_per_s: (received.saturating_sub(1)) as f64 / span,
        wall_s: worked.wall_s,
        wall_per_s: received as f64 / worked.wall_s,
        worker_cpu_us_per_job: worked.worker_cpu_s * 1e6 / jobs,
        redis_cpu_us_per_job: worked.redis_cpu_s * 1e6 / jobs,
        subscriber_cpu_us_per_job: own_cpu * 1e6 / jobs,
        worker_exit: worked.exit,
    }
}

/// The drain without a subscriber, for a Redis that [`Events`] cannot read (TLS), and for the
/// plain runs it is compared with: no subscriber of ours takes CPU from the worker and Redis.
/// Every job counts as done when the worker exits 0 and leaves nothing pending, delayed or
/// reserved.
pub fn unwatched(env: &[(String, String)]) -> UnwatchedDrain {
    let config = crate::config(env);
    fill(&config);
    let worked = work(env, &config);
    let mut queue = Queue::connect(&config.redis, &config.queue.prefix).expect("connect");
    let sizes = queue.sizes(&config.queue.names[0]).expect("queue sizes");
    let left = sizes.pending + sizes.delayed + sizes.reserved;
    if worked.exit != Some(0) || left > 0 {
        eprintln!(
            "bench: drain: worker exit {:?}, {left} jobs left; its log:\n{}",
            worked.exit,
            worked.worker.log().join("\n")
        );
    }
    let jobs = JOBS as f64;
    UnwatchedDrain {
        jobs: JOBS as u64,
        left,
        wall_s: worked.wall_s,
        wall_per_s: JOBS.saturating_sub(left as usize) as f64 / worked.wall_s,
        worker_cpu_us_per_job: worked.worker_cpu_s * 1e6 / jobs,
        redis_cpu_us_per_job: worked.redis_cpu_s * 1e6 / jobs,
        worker_exit: worked.exit,
    }
}

/// Queues [`JOBS`] jobs on the configuration's first queue; returns their alert ids.
fn fill(config: &Config) -> HashSet<String> {
    let name = &config.queue.names[0];
    let mut queue = Queue::connect(&config.redis, &config.queue.prefix).expect("connect");
    eprintln!("bench: drain: queueing {JOBS} jobs");
    let mut ids = HashSet::with_capacity(JOBS);
    let mut count = 0;
    while ids.len() < JOBS {
        sys::check();
        let mut jobs = Vec::with_capacity(PUSH_BATCH);
        while jobs.len() < PUSH_BATCH.min(JOBS - ids.len()) {
            count += 1;
            let alert = Alert::new(count, config.threshold, &config.boundaries, "bench");
            jobs.extend(service::jobs_for(config, &alert));
        }
        queue.push(name, &jobs).expect("push jobs");
        ids.extend(jobs.iter().map(|j| j.payload.alert_id.to_string()));
    }
    let sizes = queue.sizes(name).expect("queue sizes");
    assert_eq!(sizes.pending, JOBS as u64, "queued jobs");
    ids
}

/// One worker run over the full queue.
struct Worked {
    /// From the worker's start to its exit.
    wall_s: f64,
    worker_cpu_s: f64,
    /// Redis's CPU time meanwhile (`INFO cpu`).
    redis_cpu_s: f64,
    exit: Option<i32>,
    /// The exited worker, for its log.
    worker: Proc,
}

/// Runs one `queue-work -q --stop-when-empty` with `env` until it exits (within
/// [`DRAIN_DEADLINE`]), timing it and taking its and Redis's CPU time.
fn work(env: &[(String, String)], config: &Config) -> Worked {
    // The product's connection, so a rediss:// queue is read the way the worker reads it.
    let mut con = redis_conn::connect(&config.redis).expect("connect for INFO cpu");
    let redis_cpu = sys::redis_cpu(&mut con);
    eprintln!("bench: drain: one queue-work --stop-when-empty");
    let started = Instant::now();
    let mut worker = crate::spawn("queue-work", env, &["-q", "--stop-when-empty"]);
    let (worker_cpu_s, exited) = sys::wait_exit_with_cpu(&mut worker.child, DRAIN_DEADLINE);
    let redis_cpu_s = sys::redis_cpu(&mut con) - redis_cpu;
    let exit = worker.child.wait().ok().and_then(|s| s.code());
    Worked {
        wall_s: exited.duration_since(started).as_secs_f64(),
        worker_cpu_s,
        redis_cpu_s,
        exit,
        worker,
    }
}

/// This process's CPU time (its subscriber thread is what runs during the drain), in seconds.
fn own_cpu() -> f64 {
    sys::cpu_ticks(std::process::id()).map_or(0.0, |(_, t)| t as f64 / sys::clock_ticks())
}

pub fn dispatch(redis: &crate::support::private::RedisServer, db_url: &str) -> Dispatch {
    let env = crate::env(db_url, &redis.url(), "dispatch:", "bench-dispatch");
    let config = crate::config(&env);
    let mut dispatcher = Dispatcher::connect(&config).expect("connect dispatcher");
    // What `items-listen` does per notification: rate the count, then dispatch its jobs.
    let mut one = |count: u64| -> usize {
        let alert = service::rate(&config, count, "items-listen");
        assert!(
            alert.severity >= config.min_severity,
            "threshold 1 rates every count"
        );
        dispatcher
            .broadcast_all(std::slice::from_ref(&alert))
            .expect("dispatch")
            .len()
    };
    for count in 1..=WARM_UP {
        one(count);
    }
    eprintln!("bench: dispatch: {ALERTS} alerts through Dispatcher::broadcast_all");
    let started = Instant::now();
    let mut jobs = 0;
    for count in WARM_UP + 1..=WARM_UP + ALERTS {
        jobs += one(count);
        if count % 1_000 == 0 {
            sys::check();
            assert!(
                started.elapsed() < DISPATCH_DEADLINE,
                "dispatching {ALERTS} alerts took over {DISPATCH_DEADLINE:?}"
            );
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let name = &config.queue.names[0];
    let mut queue = Queue::connect(&config.redis, &config.queue.prefix).expect("connect");
    let pending = queue.sizes(name).expect("sizes").pending;
    assert_eq!(
        pending,
        (jobs as u64) + WARM_UP * config.broadcast.drivers.len() as u64,
        "every dispatched job is queued"
    );
    let k = queue.keys(name);
    let mut con = redis.connection();
    let _: () = redis::cmd("DEL")
        .arg(vec![k.pending, k.notify, k.delayed, k.reserved, k.attempts])
        .query(&mut con)
        .expect("empty the dispatch queue");
    Dispatch {
        alerts: ALERTS,
        jobs: jobs as u64,
        seconds,
        jobs_per_s: jobs as f64 / seconds,
    }
}
