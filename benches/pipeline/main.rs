//! The whole-pipeline benchmark (issue 6): `scripts/bench`, or
//! `cargo bench --bench pipeline`. Release binaries against a private PostgreSQL (durable:
//! fsync and synchronous_commit on) and a private Redis, never the shared services.
//!
//! Phases, in this order: 7 the limit (`redis-benchmark`), 1 drain, 9 metrics, 8 TLS, 10 cluster,
//! 2 dispatch, 3 latency, 4 sustained and 6 memory (one listener and worker), 5 write cost
//! (`pgbench`). The PostgreSQL runs with `wal_level = logical`: 3, 4 and 5 measure the
//! notify source, then the logical one (issue 15, `items-listen migrate --source logical`,
//! `--source logical`) in the same phase, and switch back.
//! 8 TLS compares plain and TLS in the same run, against TLS-only private servers it starts:
//! connect times to PostgreSQL (trust, scram-sha-256, TLS verify-full with scram-sha-256) and
//! to Redis, and the drain of 1 without a subscriber over plain and over TLS Redis (right
//! after 1, so that the machine is as alike as it gets). 9 metrics runs the same drain with
//! `--metrics-addr` and a scrape every second, against without. 10 cluster drains 3 queues, a
//! worker each, on the one Redis and on a Redis Cluster of 3 primaries it starts (a queue on
//! each), with the CPU per job of workers and Redis. A phase that fails is reported and
//! the others still run. Every wait has a deadline, SIGINT/SIGTERM or
//! the overall budget abort the run, and everything started is stopped on the way out.
//! Prints a Markdown table and writes `<target>/bench/results.json`; exit 1 when a phase could
//! not be measured (a missed target is a result, not a failure).

#[path = "../../tests/support/mod.rs"]
mod support;

mod cluster;
mod drain;
mod events;
mod limit;
mod live;
mod logical;
mod metrics;
mod report;
mod sys;
mod tls;
mod write_cost;

use inventory_broadcast::config::{Config, Sources};
use report::{Machine, Results};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};
use support::Proc;
use support::private::{Durability, PgServer, RedisServer};

/// The measuring run must end within this; with the release build on top, `scripts/bench`
/// stays under 5 minutes. A normal run takes about 200 s of it: the logical source's rows
/// (issue 15) added about 50 s, and this budget 40 s (it was 240).
const BUDGET: Duration = Duration::from_secs(280);

fn main() -> ExitCode {
    let started = Instant::now();
    sys::install_abort();
    // An abort unwinds every phase with the same panic: one line says it, not a backtrace each.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !sys::aborted() {
            report(info);
        }
    }));
    // BENCH_BUDGET=S shortens the budget (to try the abort path).
    let budget = std::env::var("BENCH_BUDGET")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(BUDGET, Duration::from_secs);
    sys::watchdog(budget);
    let mut results = Results {
        machine: machine(),
        ..Results::default()
    };
    eprintln!("bench: starting a private Redis and a durable private PostgreSQL");
    let redis = RedisServer::start();
    let mut con = redis.connection();
    // A subscriber that falls behind must not be disconnected by Redis: count, don't drop.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("client-output-buffer-limit")
        .arg("pubsub 0 0 0")
        .query(&mut con)
        .expect("CONFIG SET");
    sys::started(redis.pid());
    let pg = PgServer::start_with(Durability::Durable);
    logical_wal(&pg);
    sys::started(pg.postmaster_pid());
    results.machine.redis = info_field(&mut con, "server", "redis_version");
    results.machine.postgres = pg
        .admin()
        .query_one("SHOW server_version", &[])
        .map(|r| r.get(0))
        .unwrap_or_default();
    results.machine.wal_level = pg
        .admin()
        .query_one("SHOW wal_level", &[])
        .map(|r| r.get(0))
        .unwrap_or_default();
    // The worker needs a database only to record failed jobs.
    let spare_db = pg.create_db();

    phase(&mut results, "limit", "7 limit (redis-benchmark)", |r| {
        let message = sample_message();
        r.limit = limit::measure(redis.port(), &mut redis.connection(), &message);
    });
    phase(&mut results, "drain", "1 drain", |r| {
        r.drain = Some(drain::drain(&redis, &spare_db));
    });
    phase(&mut results, "metrics", "9 metrics", |r| {
        r.metrics = Some(metrics::run(&redis, &spare_db));
    });
    phase(&mut results, "tls", "8 TLS", |r| {
        tls::run(&pg, &redis, &spare_db, r);
    });
    phase(&mut results, "cluster", "10 cluster", |r| {
        r.cluster = Some(cluster::run(&redis, &spare_db));
    });
    phase(&mut results, "dispatch", "2 dispatch", |r| {
        r.dispatch = Some(drain::dispatch(&redis, &spare_db));
    });
    phase(
        &mut results,
        "live",
        "3 latency, 4 sustained, 6 memory",
        |r| {
            live::run(&pg, &redis.url(), r);
        },
    );
    phase(&mut results, "write-cost", "5 write cost (pgbench)", |r| {
        write_cost::run(&pg, &redis.url(), r);
    });

    drop(con);
    drop(pg);
    drop(redis);
    results.machine.load_after = sys::loadavg();
    results.seconds = started.elapsed().as_secs_f64();
    results.build_table();
    println!("\n{}", results.markdown());
    println!(
        "measured in {:.0} s on {} × {}",
        results.seconds, results.machine.cpus, results.machine.cpu_model
    );
    let path = results_path();
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            std::fs::write(
                &path,
                serde_json::to_string_pretty(&results).unwrap_or_default() + "\n",
            )
        });
    match written {
        Ok(()) => println!("results: {}", path.display()),
        Err(e) => eprintln!("bench: cannot write {}: {e}", path.display()),
    }
    if results.errors.is_empty() && !sys::aborted() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `wal_level = logical`, which the logical source (issue 15) needs: set with ALTER SYSTEM and
/// a restart (`PgServer::start_logical` starts a fast, not a durable, server). The whole run
/// is on it, notify rows included, so that both sources are measured on the same server.
fn logical_wal(pg: &PgServer) {
    pg.admin()
        .batch_execute("ALTER SYSTEM SET wal_level = logical")
        .expect("ALTER SYSTEM SET wal_level");
    pg.stop_fast();
    pg.up();
}

/// Runs one phase; a panic becomes an entry in `errors` and the next phase runs.
/// `BENCH_PHASES=drain,live` runs only those (limit, drain, metrics, tls, cluster, dispatch, live,
/// write-cost).
fn phase(results: &mut Results, key: &str, name: &str, f: impl FnOnce(&mut Results)) {
    if let Ok(only) = std::env::var("BENCH_PHASES") {
        if !only.split(',').any(|p| p.trim() == key) {
            return;
        }
    }
    if sys::aborted() {
        results
            .errors
            .push(format!("{name}: skipped (run aborted)"));
        return;
    }
    eprintln!("bench: == {name}");
    let started = Instant::now();
    if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| f(results))) {
        let why = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into());
        results.errors.push(format!("{name}: {why}"));
    }
    let seconds = started.elapsed().as_secs_f64();
    let load = sys::loadavg();
    eprintln!("bench: {name}: {seconds:.1} s (load average after: {load})");
    results.phases.push(report::Phase {
        name: name.to_string(),
        seconds,
        load_after: load,
    });
}

/// The environment the binaries get, and nothing else of the caller's: the private servers,
/// threshold 1 (every insert is an alert), and a key prefix and channel of the phase's own.
pub fn env(db_url: &str, redis_url: &str, prefix: &str, channel: &str) -> Vec<(String, String)> {
    [
        ("PATH", std::env::var("PATH").unwrap_or_default().as_str()),
        ("DATABASE_URL", db_url),
        ("REDIS_URL", redis_url),
        ("INVENTORY_QUEUE_PREFIX", prefix),
        ("INVENTORY_BROADCAST_CHANNEL", channel),
        ("INVENTORY_NOTIFICATION_THRESHOLD", "1"),
        ("BROADCAST_DRIVER", "redis"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The configuration the binaries would load from `env`.
pub fn config(env: &[(String, String)]) -> Config {
    Config::resolve(&Sources {
        env: env.iter().cloned().collect(),
        ..Sources::default()
    })
    .expect("bench configuration")
}

/// A release binary with `env` only, in the temp dir (no `.env` or config file there).
pub fn command(bin: &str, env: &[(String, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(support::bin_path(bin));
    cmd.args(args)
        .env_clear()
        .envs(env.iter().cloned())
        .current_dir(std::env::temp_dir());
    cmd
}

/// Starts a release binary with `env` only, in the temp dir.
pub fn spawn(bin: &str, env: &[(String, String)], args: &[&str]) -> Proc {
    let p = Proc::from_command(command(bin, env, args), bin);
    sys::started(Some(p.child.id()));
    p
}

/// A real event as the redis driver publishes it (~400 bytes), for `redis-benchmark`.
fn sample_message() -> String {
    let cfg = config(&env(
        "postgres://x@127.0.0.1/x",
        "redis://127.0.0.1",
        "x:",
        "inventory",
    ));
    let alert = inventory_broadcast::event::Alert::new(25, 20, &cfg.boundaries, "items-listen");
    alert.redis_message(&cfg.broadcast.event)
}

fn info_field(con: &mut redis::Connection, section: &str, key: &str) -> String {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query(con)
        .unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn machine() -> Machine {
    Machine {
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model: sys::proc_field("/proc/cpuinfo", "model name").unwrap_or_default(),
        memory_mb: sys::proc_field("/proc/meminfo", "MemTotal")
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024 / 1_000_000),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_string(),
        load_before: sys::loadavg(),
        ..Machine::default()
    }
}

/// `<target>/bench/results.json`, the target dir being the one this benchmark was built in
/// (`<target>/release/deps/pipeline-…`), so `CARGO_TARGET_DIR` is honoured.
fn results_path() -> PathBuf {
    let target = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("bench").join("results.json")
}
