//! Measure 5, write cost: INSERT transactions per second with our trigger and without it
//! (pgbench, 4 clients, the durable PostgreSQL), on a table of 1,000 rows and of 1,000,000.

use crate::report::{Results, WriteCost};
use crate::support::private::{PgServer, pg_bin};
use crate::sys;
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

/// Removes the pgbench script when dropped.
struct TempFile(std::path::PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub fn run(pg: &PgServer, results: &mut Results) {
    let url = pg.create_db();
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
        // With, without, without, with: a drift in the machine's speed (others' load, the
        // disk) during the four runs weighs on both sides alike.
        let mut with = Vec::new();
        let mut without = Vec::new();
        for trigger in [true, false, false, true] {
            let switch = if trigger { "ENABLE" } else { "DISABLE" };
            c.batch_execute(&format!("ALTER TABLE items {switch} TRIGGER USER"))
                .expect("switch the trigger");
            let tps = pgbench(pg, &mut c, &db_name, &script.0, CLIENTS);
            if trigger { &mut with } else { &mut without }.push(tps);
            reset(&mut c);
        }
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
        results.write_cost.push(WriteCost {
            rows,
            tps_with_trigger: with_tps,
            tps_without_trigger: without_tps,
            ratio: with_tps / without_tps,
            runs_with_trigger: with,
            runs_without_trigger: without,
        });
    }
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
