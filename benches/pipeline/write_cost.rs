//! Measure 5, write cost: INSERT transactions per second with our trigger, without it, and
//! with the logical source (issue 15: the slot and publication set up by `items-listen
//! migrate --source logical`, no trigger, a listener with `--source logical` reading and
//! confirming throughout), interleaved in one run (pgbench, 4 clients, the durable
//! PostgreSQL at `wal_level = logical`), on a table of 1,000 rows and of 1,000,000.

use crate::logical::{self, Switched};
use crate::report::{LogicalRun, Results, WriteCost};
use crate::support::Proc;
use crate::support::private::{PgServer, pg_bin};
use crate::sys::{self, CpuWatch};
use inventory_broadcast::db::{Db, migrate};
use std::process::Command;
use std::time::Duration;

const SIZES: [u64; 2] = [1_000, 1_000_000];
/// What the issue asks: 4 clients on 2 threads for 5 s, no vacuum before.
const CLIENTS: u32 = 4;
const THREADS: u32 = 2;
const SECONDS: u32 = 5;
const PGBENCH_DEADLINE: Duration = Duration::from_secs(60);
/// The transaction pgbench repeats.
const SCRIPT: &str = "INSERT INTO items (name) VALUES ('x');\n";
/// This phase's slot.
const SLOT: &str = "bench_write";
/// The logical listener's threshold: far above any count here, so every count is decoded,
/// counted and rated but none is an alert worth queueing (below the default minimum
/// severity, `warning`). The trigger runs have no listener at all: this keeps the comparison
/// to what the source costs, not what broadcasting alerts costs.
const QUIET_THRESHOLD: &str = "1000000000";
/// How long the listener may take to read what a run wrote.
const CATCH_UP: Duration = Duration::from_secs(60);

/// What a run has in the writers' path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The counting trigger (notify source).
    Trigger,
    /// Nothing: no trigger, no slot.
    Bare,
    /// The logical source: the slot and its listener, no trigger.
    Logical,
}

/// Trigger, bare, logical, logical, bare, trigger: a drift in the machine's speed (others'
/// load, the disk) during the runs weighs on all three alike, and the logical source is set
/// up once per size.
const ORDER: [Mode; 6] = [
    Mode::Trigger,
    Mode::Bare,
    Mode::Logical,
    Mode::Logical,
    Mode::Bare,
    Mode::Trigger,
];

/// The logical source switched on, its listener running. Dropping it stops the listener
/// before switching back.
struct Source {
    listener: Proc,
    switched: Switched,
}

impl Source {
    fn start(env: &[(String, String)], c: &mut postgres::Client) -> Source {
        let switched = Switched::on(env);
        let listener = crate::spawn("items-listen", env, &logical::LISTEN_ARGS);
        // Up and reading: it confirms everything written so far.
        logical::wait_caught_up(c, SLOT, CATCH_UP);
        Source { listener, switched }
    }

    fn stop(self, c: &mut postgres::Client) {
        let Source { listener, switched } = self;
        logical::stop_listener(listener, c, SLOT);
        switched.back();
    }
}

/// Removes the pgbench script when dropped.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn run(pg: &PgServer, redis_url: &str, results: &mut Results) {
    let url = pg.create_db();
    let mut env = logical::with_slot(crate::env(&url, redis_url, "wc:", "bench-wc"), SLOT);
    for (k, v) in env.iter_mut() {
        if k == "INVENTORY_NOTIFICATION_THRESHOLD" {
            *v = QUIET_THRESHOLD.into();
        }
    }
    let db_name = url.rsplit('/').next().expect("database name").to_string();
    let script = TempFile(
        std::env::temp_dir().join(format!("ib-bench-insert-{}.sql", crate::support::tag())),
    );
    std::fs::write(&script.0, SCRIPT).expect("write the pgbench script");
    let mut c = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    for rows in SIZES {
        eprintln!("bench: write cost: {rows} rows");
        c.batch_execute("TRUNCATE items").expect("truncate");
        c.execute(
            "INSERT INTO items (name) SELECT 'x' FROM generate_series(1, $1::bigint)",
            &[&(rows as i64)],
        )
        .expect("fill items");
        recount(&url);
        c.batch_execute("VACUUM ANALYZE items").expect("vacuum");
        let filled: i64 = c
            .query_one("SELECT max(id) FROM items", &[])
            .expect("max id")
            .get(0);
        // Back to `rows` rows after each run, so every run sees the same table. The counter
        // stays right: with the trigger on, the delete counts down what the run counted up;
        // with it off, neither the run's inserts nor the delete touch it.
        let reset = |c: &mut postgres::Client| {
            c.execute("DELETE FROM items WHERE id > $1", &[&filled])
                .expect("reset items");
            c.batch_execute("VACUUM items").expect("vacuum");
        };
        let mut with = Vec::new();
        let mut without = Vec::new();
        let mut logical_runs = Vec::new();
        let mut source: Option<Source> = None;
        let mut count_exact = None;
        for mode in ORDER {
            if mode == Mode::Logical {
                if source.is_none() {
                    eprintln!("bench: write cost: switching to the logical source");
                    source = Some(Source::start(&env, &mut c));
                }
            } else {
                if let Some(s) = source.take() {
                    s.stop(&mut c);
                }
                let switch = if mode == Mode::Trigger {
                    "ENABLE"
                } else {
                    "DISABLE"
                };
                c.batch_execute(&format!("ALTER TABLE items {switch} TRIGGER USER"))
                    .expect("switch the trigger");
            }
            match &source {
                Some(s) if mode == Mode::Logical => {
                    let (run, exact) = logical_run(pg, &mut c, &db_name, &script.0, s);
                    logical_runs.push(run);
                    count_exact = Some(count_exact.unwrap_or(true) && exact);
                }
                _ => {
                    let tps = pgbench(pg, &mut c, &db_name, &script.0, CLIENTS);
                    if mode == Mode::Trigger {
                        &mut with
                    } else {
                        &mut without
                    }
                    .push(tps);
                }
            }
            reset(&mut c);
        }
        if let Some(s) = source.take() {
            s.stop(&mut c);
        }
        let (detached_tps, catch_up_s) = detached_run(pg, &mut c, &env, &db_name, &script.0);
        reset(&mut c);
        if rows == SIZES[0] {
            results.notify_only_tps = Some(notify_only(pg, &mut c, &db_name, &script.0));
            reset(&mut c);
            // One client, no trigger: commits one at a time, each waiting for its own WAL
            // flush. With one counter row, writers queue on its lock across their flush, so
            // this is what the trigger runs approach when the disk is the bottleneck.
            c.batch_execute("ALTER TABLE items DISABLE TRIGGER USER")
                .expect("disable the trigger");
            let tps = pgbench(pg, &mut c, &db_name, &script.0, 1);
            results.serial_commit_tps = Some(tps);
            reset(&mut c);
        }
        c.batch_execute("ALTER TABLE items ENABLE TRIGGER USER")
            .expect("enable trigger");
        recount(&url);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (with_tps, without_tps) = (mean(&with), mean(&without));
        let logical_tps = (!logical_runs.is_empty())
            .then(|| mean(&logical_runs.iter().map(|r| r.tps).collect::<Vec<_>>()));
        results.write_cost.push(WriteCost {
            rows,
            tps_with_trigger: with_tps,
            tps_without_trigger: without_tps,
            ratio: with_tps / without_tps,
            runs_with_trigger: with,
            runs_without_trigger: without,
            tps_logical: logical_tps,
            ratio_logical: logical_tps.map(|l| l / without_tps),
            runs_logical: logical_runs,
            logical_count_exact: count_exact,
            tps_logical_detached: Some(detached_tps),
            ratio_logical_detached: Some(detached_tps / without_tps),
            catch_up_detached_s: Some(catch_up_s),
        });
    }
}

/// The write path alone: the logical source set up (slot, publication, no trigger) but no
/// listener reading during the run; then one is started and timed until it caught up.
fn detached_run(
    pg: &PgServer,
    c: &mut postgres::Client,
    env: &[(String, String)],
    db: &str,
    script: &std::path::Path,
) -> (f64, f64) {
    let switched = Switched::on(env);
    let tps = pgbench(pg, c, db, script, CLIENTS);
    let started = std::time::Instant::now();
    let listener = crate::spawn("items-listen", env, &logical::LISTEN_ARGS);
    logical::wait_caught_up(c, SLOT, CATCH_UP);
    let catch_up = started.elapsed().as_secs_f64();
    logical::stop_listener(listener, c, SLOT);
    switched.back();
    (tps, catch_up)
}

/// One pgbench run with the logical source, the listener caught up first; the CPU of the
/// listener and its backend meanwhile, how far behind the slot was when pgbench stopped and
/// how long it took to catch up, and whether the count it confirmed is then exact.
fn logical_run(
    pg: &PgServer,
    c: &mut postgres::Client,
    db: &str,
    script: &std::path::Path,
    source: &Source,
) -> (LogicalRun, bool) {
    logical::wait_caught_up(c, SLOT, CATCH_UP);
    let listener = CpuWatch::start(vec![source.listener.child.id()]);
    let backend = CpuWatch::start(logical::listener_backends(c));
    let tps = pgbench(pg, c, db, script, CLIENTS);
    let (listener_cpu_pct, _) = listener.percent();
    let (backend_cpu_pct, _) = backend.percent();
    let lag_at_end_bytes = logical::lag_bytes(c, SLOT);
    let catch_up = logical::wait_caught_up(c, SLOT, CATCH_UP);
    let run = LogicalRun {
        tps,
        lag_at_end_bytes,
        catch_up_s: catch_up.as_secs_f64(),
        listener_cpu_pct,
        backend_cpu_pct,
    };
    (run, logical::count_exact(c, SLOT))
}

/// 4 clients with a trigger that only NOTIFYs a constant: what a NOTIFY per commit costs by
/// itself, whatever keeps the count.
fn notify_only(pg: &PgServer, c: &mut postgres::Client, db: &str, script: &std::path::Path) -> f64 {
    c.batch_execute(
        "ALTER TABLE items DISABLE TRIGGER USER;
         CREATE OR REPLACE FUNCTION bench_notify_only() RETURNS trigger LANGUAGE plpgsql AS
           $$ BEGIN PERFORM pg_notify('item_count', '{\"count\": 0}'); RETURN NULL; END $$;
         CREATE TRIGGER bench_notify_only AFTER INSERT ON items
           FOR EACH STATEMENT EXECUTE FUNCTION bench_notify_only();",
    )
    .expect("create the NOTIFY-only trigger");
    let tps = pgbench(pg, c, db, script, CLIENTS);
    c.batch_execute("DROP TRIGGER bench_notify_only ON items; DROP FUNCTION bench_notify_only();")
        .expect("drop the NOTIFY-only trigger");
    tps
}

/// `items-listen migrate`: the same schema again, and the counter recounted.
fn recount(url: &str) {
    let mut db =
        Db::connect(&inventory_broadcast::db::DatabaseConfig::plain(url)).expect("connect");
    migrate::migrate(&mut db, "item_count").expect("migrate (recount)");
}

/// One pgbench run; its TPS. A checkpoint first, so none falls inside the run.
fn pgbench(
    pg: &PgServer,
    c: &mut postgres::Client,
    db: &str,
    script: &std::path::Path,
    clients: u32,
) -> f64 {
    c.batch_execute("CHECKPOINT").expect("checkpoint");
    sys::check();
    let out = sys::run(
        Command::new(pg_bin("pgbench"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port.to_string(),
                "-U",
                "postgres",
                "-n",
            ])
            .args(["-c", &clients.to_string()])
            .args(["-j", &clients.min(THREADS).to_string()])
            .args(["-T", &SECONDS.to_string()])
            .arg("-f")
            .arg(script)
            .arg(db),
        PGBENCH_DEADLINE,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pgbench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no TPS in pgbench output:\n{text}"))
}
