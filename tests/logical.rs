//! The logical-decoding source (`INVENTORY_SOURCE=logical`): changes read from a `pgoutput`
//! replication slot instead of the trigger's NOTIFY. Each test runs its own PostgreSQL with
//! `wal_level = logical` (the shared server runs `replica`), the shared Redis under the
//! world's prefix.
//!
//! Several tests pin bugs found while writing them, all fixed: a standby taking over with a
//! stale count, the first step after a Redis outage, slots of another database, `migrate`
//! deadlocking writers, and tables whose DELETEs have no replica identity.

use crate::support::private::PgServer;
use crate::support::{DEADLINE, Proc, Subscriber, World, eventually, tag};
use serde_json::Value;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What the listener logs once it reads the slot.
const READING: &str = "reading changes from slot inventory_items at";

/// A private server, and a world whose `DATABASE_URL` names a fresh database on it (not
/// migrated yet) with `INVENTORY_SOURCE=logical`.
struct Rig {
    w: World,
    url: String,
    pg: PgServer,
}

impl Rig {
    /// On a `wal_level = logical` server of its own.
    fn logical() -> Rig {
        let pg = PgServer::start_logical();
        let db = format!("ib_logical_{}", tag());
        pg.admin()
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .expect("create database");
        let url = pg.url(&db);
        let mut w = World::new();
        w.set("DATABASE_URL", &url)
            .set("INVENTORY_SOURCE", "logical");
        Rig { w, url, pg }
    }

    fn client(&self) -> postgres::Client {
        postgres::Client::connect(&self.url, postgres::NoTls).expect("connect to the private db")
    }

    /// `items-listen ARGS`, which must succeed.
    fn ok(&self, args: &[&str]) -> Output {
        let out = self.w.run("items-listen", args);
        assert!(
            out.status.success(),
            "items-listen {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn count(&self) -> i64 {
        self.client()
            .query_one("SELECT count(*) FROM items", &[])
            .expect("count items")
            .get(0)
    }

    /// The count in the state row of the default slot.
    fn state_count(&self) -> i64 {
        self.client()
            .query_one(
                "SELECT count FROM inventory_logical WHERE slot = 'inventory_items'",
                &[],
            )
            .expect("read inventory_logical")
            .get(0)
    }

    /// Waits until the slot has confirmed every change written so far.
    fn wait_caught_up(&self, listener: &Proc) {
        let mut c = self.client();
        let lsn: String = c
            .query_one("SELECT pg_current_wal_insert_lsn()::text", &[])
            .expect("wal position")
            .get(0);
        eventually(
            &format!(
                "the slot confirming {lsn}; listener log tail:\n{}",
                tail(listener)
            ),
            Duration::from_secs(30),
            || {
                c.query_one(
                    "SELECT confirmed_flush_lsn >= $1::text::pg_lsn FROM pg_replication_slots \
                     WHERE slot_name = 'inventory_items'",
                    &[&lsn],
                )
                .ok()
                .and_then(|r| r.get::<_, Option<bool>>(0))
                .filter(|&done| done)
            },
        );
    }
}

fn tail(p: &Proc) -> String {
    let log = p.log();
    log[log.len().saturating_sub(20)..].join("\n")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn insert(c: &mut postgres::Client) {
    c.execute("INSERT INTO items (name) VALUES ('widget')", &[])
        .expect("insert");
}

/// The counts of the broadcasts `sub` received, in arrival order.
fn counts(sub: &Subscriber) -> Vec<u64> {
    sub.all()
        .iter()
        .map(|(_, raw)| {
            let v: Value = serde_json::from_str(raw).expect("broadcast is JSON");
            v["data"]["count"].as_u64().expect("a count")
        })
        .collect()
}

/// The count of the last alert the listener logged as dispatched.
fn last_rated(listener: &Proc) -> Option<i64> {
    listener.log().iter().rev().find_map(|l| {
        if !l.contains("dispatched") {
            return None;
        }
        let rest = &l[l.find(" count ")? + 7..];
        rest.split(' ').next()?.parse().ok()
    })
}

#[test]
fn the_pipeline_broadcasts_20_to_25_with_their_severities() {
    let r = Rig::logical();
    let out = r.ok(&["migrate", "--source", "logical"]);
    assert!(
        stderr(&out).contains("replication slot inventory_items"),
        "{}",
        stderr(&out)
    );
    let mut c = r.client();
    let triggers: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'items'::regclass AND NOT tgisinternal",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(triggers, 0, "no trigger left in the writers' path");

    let mut sub = r.w.subscribe();
    let listener = r.w.spawn("items-listen", &[]);
    let _worker = r.w.spawn("queue-work", &[]);
    listener.wait_for_log(READING);
    for _ in 0..25 {
        insert(&mut c);
    }
    for (count, severity, pct) in crate::support::COUNTS_20_TO_25 {
        let msg = sub.next();
        assert_eq!(msg["event"], "App\\Events\\ItemCountExeed");
        let data = &msg["data"];
        assert_eq!(data["count"], count, "{msg}");
        assert_eq!(data["threshold"], 20, "{msg}");
        assert_eq!(data["severity"], severity, "{msg}");
        assert_eq!(data["percentage"], pct, "{msg}");
        assert_eq!(data["source"], "items-listen", "{msg}");
        assert!(uuid::Uuid::parse_str(data["alert_id"].as_str().unwrap()).is_ok());
    }
    // A sentinel through the same queue: any extra broadcast would arrive before it.
    let out = r.w.run("notify", &["--count", "999"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sub.next()["data"]["count"], 999, "{:?}", listener.log());
}

#[test]
fn twenty_thousand_inserts_from_four_clients_are_rated_each_once_in_order() {
    const CLIENTS: usize = 4;
    const EACH: usize = 5_000;
    const TOTAL: usize = CLIENTS * EACH;
    let mut r = Rig::logical();
    // Threshold 1: every count from 1 on is at least a warning, so each one is broadcast.
    r.w.set("INVENTORY_NOTIFICATION_THRESHOLD", "1");
    r.ok(&["migrate", "--source", "logical"]);
    let sub = r.w.subscribe();
    let listener = r.w.spawn("items-listen", &[]);
    let _worker = r.w.spawn("queue-work", &["--batch", "1000"]);
    listener.wait_for_log(READING);

    let started = Instant::now();
    let writers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let mut c = r.client();
            std::thread::spawn(move || {
                for _ in 0..EACH {
                    insert(&mut c);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    let written = started.elapsed();
    assert_eq!(r.count(), TOTAL as i64);
    eventually(
        &format!(
            "{TOTAL} broadcasts (got {}); listener log tail:\n{}",
            sub.received(),
            tail(&listener)
        ),
        Duration::from_secs(60),
        || (sub.received() >= TOTAL).then_some(()),
    );
    let delivered = started.elapsed();
    let mut sentinel = r.w.subscribe();
    let out = r.w.run("notify", &["--count", "999999"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sentinel.next()["data"]["count"], 999_999);
    // The listener's sentinel arrives on `sub` too, after everything it queued before.
    eventually("the sentinel on the first subscriber", DEADLINE, || {
        (counts(&sub).last() == Some(&999_999)).then_some(())
    });
    let mut got = counts(&sub);
    got.pop();
    println!(
        "{TOTAL} inserts from {CLIENTS} clients written in {:.1} s, all broadcast after {:.1} s",
        written.as_secs_f64(),
        delivered.as_secs_f64()
    );
    assert_eq!(got.len(), TOTAL, "one broadcast per insert, no more");
    let out_of_order: Vec<_> = got.windows(2).filter(|p| p[1] <= p[0]).take(10).collect();
    assert!(
        out_of_order.is_empty(),
        "counts arrive strictly increasing: {out_of_order:?}"
    );
    let expected: Vec<u64> = (1..=TOTAL as u64).collect();
    assert!(got == expected, "each count from 1 to {TOTAL} exactly once");
    assert_eq!(got.last().copied(), Some(r.count() as u64));
}

#[test]
fn inserts_running_while_the_slot_is_created_keep_the_count_exact() {
    let r = Rig::logical();
    // Set up once with no writer running: the counting triggers are then gone for good. (With
    // them in place, `migrate` under write load can deadlock with the writers: see
    // `migrate_under_write_load_does_not_deadlock_the_writers`.)
    r.ok(&["migrate", "--source", "logical"]);
    for round in 1..=4 {
        // The slot is created below, under load, each round.
        r.ok(&["slot", "drop"]);
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let mut writers = Vec::new();
        for i in 0..4 {
            let (stop, written, mut c) = (Arc::clone(&stop), Arc::clone(&written), r.client());
            writers.push(std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if i == 3 {
                        // The deleter: one row now and then.
                        c.execute(
                            "DELETE FROM items WHERE id = (SELECT min(id) FROM items)",
                            &[],
                        )
                        .expect("delete");
                        std::thread::sleep(Duration::from_millis(5));
                    } else {
                        insert(&mut c);
                    }
                    written.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        eventually("writers under way", DEADLINE, || {
            (written.load(Ordering::Relaxed) > 200).then_some(())
        });
        r.ok(&["migrate", "--source", "logical"]);
        let listener = r.w.spawn("items-listen", &[]);
        listener.wait_for_log(READING);
        let at = written.load(Ordering::Relaxed);
        eventually("more writes after the listener started", DEADLINE, || {
            (written.load(Ordering::Relaxed) > at + 500).then_some(())
        });
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.join().expect("writer");
        }
        r.wait_caught_up(&listener);
        let (count, state) = (r.count(), r.state_count());
        println!(
            "round {round}: {} writes, count {count}, the slot's count {state}",
            written.load(Ordering::Relaxed)
        );
        assert_eq!(
            state,
            count,
            "round {round}: the slot's count drifted from count(*); listener log tail:\n{}",
            tail(&listener)
        );
        eventually(
            &format!("round {round}: the last alert logged for the real count {count}"),
            DEADLINE,
            || (last_rated(&listener) == Some(count)).then_some(()),
        );
        let mut listener = listener;
        listener.signal("TERM");
        assert_eq!(listener.wait_exit(), Some(0), "{}", tail(&listener));
    }
}

#[test]
fn a_listener_killed_mid_stream_loses_nothing_and_repeats_nothing_confirmed() {
    const N: i64 = 1_000;
    let r = Rig::logical();
    r.ok(&["migrate", "--source", "logical"]);
    let sub = r.w.subscribe();
    let _worker = r.w.spawn("queue-work", &[]);
    let first = r.w.spawn("items-listen", &[]);
    first.wait_for_log(READING);
    let done = Arc::new(AtomicU64::new(0));
    let writer = {
        let (done, mut c) = (Arc::clone(&done), r.client());
        std::thread::spawn(move || {
            for i in 1..=N {
                insert(&mut c);
                done.store(i as u64, Ordering::SeqCst);
                std::thread::sleep(Duration::from_micros(1_500));
            }
        })
    };
    eventually("the writer halfway", DEADLINE, || {
        (done.load(Ordering::SeqCst) >= N as u64 / 2).then_some(())
    });
    first.signal("KILL");
    let killed_at = done.load(Ordering::SeqCst);
    let second = r.w.spawn("items-listen", &[]);
    second.wait_for_log(READING);
    writer.join().expect("writer");
    eventually(
        &format!("the final count {N} broadcast; log:\n{}", tail(&second)),
        Duration::from_secs(30),
        || counts(&sub).contains(&(N as u64)).then_some(()),
    );
    // A sentinel: whatever the listeners queued arrives before it.
    let out = r.w.run("notify", &["--count", "99999"]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually("the sentinel", DEADLINE, || {
        (counts(&sub).last() == Some(&99_999)).then_some(())
    });
    let mut got = counts(&sub);
    got.pop();
    let mut distinct = got.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let expected: Vec<u64> = (20..=N as u64).collect();
    assert_eq!(
        distinct, expected,
        "every count from the threshold to {N} broadcast, no other"
    );
    let mut seen = std::collections::HashSet::new();
    let repeated: Vec<u64> = got.iter().copied().filter(|c| !seen.insert(*c)).collect();
    println!(
        "killed after {killed_at} inserts; {} broadcasts, {} repeated: {:?}",
        got.len(),
        repeated.len(),
        repeated.iter().take(40).collect::<Vec<_>>()
    );
    assert!(
        repeated.len() <= 200,
        "{} counts broadcast twice: more than the killed listener's last step",
        repeated.len()
    );
    // Saved within a short quiet of the last change.
    eventually("the saved count reaches the last insert", DEADLINE, || {
        (r.state_count() == N).then_some(())
    });
}

#[test]
fn wal_level_replica_and_a_role_without_replication_get_clear_errors() {
    // (i) wal_level = replica (PostgreSQL's default).
    let plain = PgServer::start();
    let url = plain.create_db();
    let mut w = World::new();
    w.set("DATABASE_URL", &url)
        .set("INVENTORY_SOURCE", "logical");
    let out = w.run("items-listen", &["migrate", "--source", "logical"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("wal_level") && err.contains("rds.logical_replication"),
        "{err}"
    );
    // The listener, which stops at once.
    let out = w.run("items-listen", &["--source", "logical"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("wal_level") && err.contains("rds.logical_replication"),
        "{err}"
    );

    // (ii) a login without REPLICATION that owns the database (and so may migrate it).
    let pg = PgServer::start_logical();
    pg.admin()
        .batch_execute("CREATE ROLE clerk LOGIN")
        .expect("create role");
    let db = format!("ib_logical_{}", tag());
    pg.create_database(&db, "clerk");
    let mut w = World::new();
    w.set(
        "DATABASE_URL",
        &format!("postgres://clerk@127.0.0.1:{}/{db}", pg.port),
    );
    let out = w.run("items-listen", &["migrate", "--source", "notify"]);
    assert!(out.status.success(), "{}", stderr(&out));
    w.set("INVENTORY_SOURCE", "logical");
    let out = w.run("items-listen", &["migrate"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("REPLICATION") && err.contains("ALTER ROLE clerk"),
        "{err}"
    );
    // The listener, which stops at once.
    let out = w.run("items-listen", &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("REPLICATION") && err.contains("ALTER ROLE clerk"),
        "{err}"
    );
}

#[test]
fn slot_status_reports_lag_and_drop_removes_the_slot() {
    let r = Rig::logical();
    r.ok(&["migrate", "--source", "logical"]);
    let status = |r: &Rig| -> Value {
        let out = r.ok(&["slot", "status", "--json"]);
        serde_json::from_slice(&out.stdout).expect("slot status --json is JSON")
    };
    let before = status(&r);
    assert_eq!(before["slot"], "inventory_items", "{before}");
    assert_eq!(before["count"], 0, "{before}");
    let mut c = r.client();
    for _ in 0..50 {
        insert(&mut c);
    }
    let after = status(&r);
    assert!(
        after["lag_bytes"].as_u64().unwrap() > before["lag_bytes"].as_u64().unwrap(),
        "no listener runs: the slot falls behind; {before} then {after}"
    );
    assert!(after["retained_bytes"].as_u64().unwrap() > 0, "{after}");

    // A listener catches up and the lag goes.
    let listener = r.w.spawn("items-listen", &[]);
    listener.wait_for_log(READING);
    r.wait_caught_up(&listener);
    assert_eq!(r.state_count(), 50);
    drop(listener);
    let caught_up = status(&r);
    assert_eq!(caught_up["count"], 50, "{caught_up}");
    assert!(
        caught_up["lag_bytes"].as_u64().unwrap() < after["lag_bytes"].as_u64().unwrap(),
        "{after} then {caught_up}"
    );

    let out = r.ok(&["slot", "drop"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("dropped replication slot inventory_items"),
        "{out:?}"
    );
    let slots: i64 =
        r.pg.admin()
            .query_one("SELECT count(*) FROM pg_replication_slots", &[])
            .unwrap()
            .get(0);
    assert_eq!(slots, 0);
    let out = r.w.run("items-listen", &["slot", "status"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // The listener, which stops at once.
    let out = r.w.run("items-listen", &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("migrate --source logical"), "{err}");
}

#[test]
fn migrate_under_write_load_does_not_deadlock_the_writers() {
    // Switching a running application's database from one source to the other: writers keep
    // writing meanwhile. `migrate` (sql/002_item_count.sql) takes inventory_item_count
    // (ALTER TABLE … ADD COLUMN IF NOT EXISTS) and then items (DROP/CREATE TRIGGER); a writer
    // holds items and its trigger then wants inventory_item_count: a lock-order inversion.
    let r = Rig::logical();
    r.ok(&["migrate", "--source", "notify"]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    let written = Arc::new(AtomicU64::new(0));
    for i in 0..3 {
        let (stop, written, mut c) = (Arc::clone(&stop), Arc::clone(&written), r.client());
        writers.push(std::thread::spawn(move || {
            let mut errors = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                written.fetch_add(1, Ordering::Relaxed);
                let sql = if i == 2 {
                    "DELETE FROM items WHERE id = (SELECT min(id) FROM items)"
                } else {
                    "INSERT INTO items (name) VALUES ('widget')"
                };
                if let Err(e) = c.execute(sql, &[]) {
                    errors.push(
                        e.as_db_error()
                            .map_or(e.to_string(), |d| d.message().into()),
                    );
                }
            }
            errors
        }));
    }
    // Each migration starts with the writers under way (a few dozen more writes since the last).
    let under_way = |from: u64| {
        eventually("the writers under way", DEADLINE, || {
            (written.load(Ordering::Relaxed) >= from + 30).then_some(())
        });
        written.load(Ordering::Relaxed)
    };
    let mut mark = under_way(0);
    let mut failed = Vec::new();
    for source in [
        "logical", "notify", "logical", "notify", "logical", "notify",
    ] {
        let out = r.w.run("items-listen", &["migrate", "--source", source]);
        if !out.status.success() {
            failed.push(format!("migrate --source {source}: {}", stderr(&out)));
        }
        mark = under_way(mark);
    }
    stop.store(true, Ordering::SeqCst);
    let errors: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().expect("writer"))
        .collect();
    assert!(
        failed.is_empty() && errors.is_empty(),
        "migrations failed: {failed:?}; writers' errors: {errors:?}"
    );
}

#[test]
fn an_invalidated_slot_is_recreated_with_a_warning_and_the_count_rated() {
    let r = Rig::logical();
    r.ok(&["migrate", "--source", "logical"]);
    let mut c = r.client();
    for _ in 0..25 {
        insert(&mut c);
    }
    // No listener runs: the slot keeps its WAL, until the server may keep no more of it.
    let mut admin = r.pg.admin();
    // (One statement a call: ALTER SYSTEM may not run in a multi-statement batch.)
    admin
        .batch_execute("ALTER SYSTEM SET max_slot_wal_keep_size = '1MB'")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    eventually("the slot invalidated", DEADLINE, || {
        for _ in 0..2 {
            insert(&mut c);
            c.batch_execute("DELETE FROM items WHERE id = (SELECT max(id) FROM items)")
                .unwrap();
            admin.batch_execute("SELECT pg_switch_wal()").unwrap();
        }
        admin.batch_execute("CHECKPOINT").unwrap();
        let status: String = admin
            .query_one(
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'inventory_items'",
                &[],
            )
            .unwrap()
            .get(0);
        (status == "lost").then_some(())
    });
    admin
        .batch_execute("ALTER SYSTEM RESET max_slot_wal_keep_size")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();

    let mut sub = r.w.subscribe();
    let _worker = r.w.spawn("queue-work", &[]);
    let listener = r.w.spawn("items-listen", &[]);
    listener.wait_for_log("was invalidated");
    listener.wait_for_log(READING);
    let msg = sub.next();
    assert_eq!(msg["data"]["count"], 25, "the current count, re-rated");
    assert_eq!(msg["data"]["severity"], "high");
    insert(&mut c);
    assert_eq!(sub.next()["data"]["count"], 26, "{:?}", listener.log());
    r.wait_caught_up(&listener);
    assert_eq!(r.state_count(), 26);
}

#[test]
fn a_second_database_on_the_server_does_not_take_over_the_first_ones_slot() {
    // Slots are the server's, publications and inventory_logical the database's: a second
    // database set up with the default slot name must not drop or take the first one's.
    let a = Rig::logical();
    a.ok(&["migrate", "--source", "logical"]);
    let db_b = format!("ib_logical_{}", tag());
    a.pg.admin()
        .batch_execute(&format!("CREATE DATABASE {db_b}"))
        .unwrap();
    let mut b = World::new();
    b.set("DATABASE_URL", &a.pg.url(&db_b))
        .set("INVENTORY_SOURCE", "logical");
    let out = b.run("items-listen", &["migrate", "--source", "logical"]);
    println!("B's migrate: {:?} {}", out.status, stderr(&out));
    let out = b.run("items-listen", &["migrate", "--source", "notify"]);
    println!("B's switch back: {:?} {}", out.status, stderr(&out));
    let a_db: String = a
        .client()
        .query_one("SELECT current_database()::text", &[])
        .unwrap()
        .get(0);
    let slots: Vec<(String, String)> =
        a.pg.admin()
            .query(
                "SELECT slot_name::text, database::text FROM pg_replication_slots",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    assert!(
        slots.contains(&("inventory_items".to_string(), a_db)),
        "A's slot is gone: {slots:?}"
    );
    let mut sub = a.w.subscribe();
    let _worker = a.w.spawn("queue-work", &[]);
    let listener = a.w.spawn("items-listen", &[]);
    listener.wait_for_log(READING);
    a.client()
        .batch_execute("INSERT INTO items (name) SELECT 'widget' FROM generate_series(1, 20)")
        .unwrap();
    assert_eq!(sub.next()["data"]["count"], 20, "{:?}", listener.log());
}

#[test]
fn deletes_truncates_and_multi_row_transactions_are_counted_per_transaction() {
    let mut r = Rig::logical();
    r.w.set("INVENTORY_MIN_SEVERITY", "info");
    r.ok(&["migrate", "--source", "logical"]);
    let mut sub = r.w.subscribe();
    let listener = r.w.spawn("items-listen", &[]);
    let _worker = r.w.spawn("queue-work", &[]);
    listener.wait_for_log(READING);
    // A slot just set up announces its starting count (0 here, shown with min severity info).
    assert_eq!(sub.next()["data"]["count"], 0);
    let mut c = r.client();
    let mut step = |sql: &str, expected: u64| {
        c.batch_execute(sql).unwrap();
        assert_eq!(
            sub.next()["data"]["count"],
            expected,
            "after {sql}: {:?}",
            listener.log()
        );
    };
    step(
        "INSERT INTO items (name) SELECT 'widget' FROM generate_series(1, 30)",
        30,
    );
    step(
        "DELETE FROM items WHERE id IN (SELECT id FROM items LIMIT 5)",
        25,
    );
    // A transaction that adds as many as it removes leaves the count alone: nothing is rated.
    // The next one's count is then the first broadcast.
    step(
        "BEGIN; INSERT INTO items (name) VALUES ('a'), ('b'); \
         DELETE FROM items WHERE id IN (SELECT id FROM items ORDER BY id LIMIT 2); COMMIT; \
         INSERT INTO items (name) VALUES ('c')",
        26,
    );
    step("TRUNCATE items", 0);
    // Rows before a TRUNCATE in the same transaction do not count, rows after it do.
    step(
        "BEGIN; INSERT INTO items (name) VALUES ('a'); TRUNCATE items; \
         INSERT INTO items (name) SELECT 'w' FROM generate_series(1, 3); COMMIT",
        3,
    );
    // Rolled back: nothing.
    step(
        "BEGIN; INSERT INTO items (name) VALUES ('x'); ROLLBACK; \
         INSERT INTO items (name) VALUES ('y')",
        4,
    );
    assert_eq!(r.count(), 4);
}

#[test]
fn alerts_made_while_the_queue_redis_is_down_go_out_in_order_once_it_is_back() {
    // The queue on a private Redis that the test kills; broadcasts on the shared one, so the
    // subscription is not cut.
    let mut redis = crate::support::RedisServer::start();
    let mut r = Rig::logical();
    r.w.set("REDIS_URL", &redis.url())
        .set("BROADCAST_REDIS_URL", &crate::support::redis_url());
    r.ok(&["migrate", "--source", "logical"]);
    let sub = r.w.subscribe();
    let listener = r.w.spawn("items-listen", &[]);
    let _worker = r.w.spawn("queue-work", &[]);
    listener.wait_for_log(READING);
    let mut c = r.client();
    for _ in 0..19 {
        insert(&mut c);
    }
    r.wait_caught_up(&listener);
    redis.kill();
    for _ in 0..6 {
        insert(&mut c);
    }
    // The push fails: nothing is confirmed, the changes stay in the slot.
    listener.wait_for_log("lost Redis");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(r.state_count(), 19);
    // Back, and empty (no persistence): the changes are read again from the slot.
    redis.restart();
    eventually(
        &format!("counts 20..=25 broadcast; log:\n{}", tail(&listener)),
        Duration::from_secs(30),
        || (counts(&sub).last() == Some(&25)).then_some(()),
    );
    // A sentinel through the same queue: whatever was queued before it arrives first.
    let out = r.w.run("notify", &["--count", "99999"]);
    assert!(out.status.success(), "{}", stderr(&out));
    eventually("the sentinel", DEADLINE, || {
        counts(&sub).contains(&99_999).then_some(())
    });
    let all = counts(&sub);
    let mut got: Vec<u64> = all.iter().copied().take_while(|c| *c != 99_999).collect();
    // The one re-rating of the latest count a listener makes when it finds Redis came back
    // empty (its queued jobs may be gone) lands after 25, or before 20 (19: not broadcast).
    got.dedup();
    assert_eq!(got, (20..=25).collect::<Vec<u64>>(), "{:?}", listener.log());
    eventually("the saved count reaches 25", DEADLINE, || {
        (r.state_count() == 25).then_some(())
    });
}

#[test]
fn a_standby_listener_takes_over_the_slot_when_the_active_one_dies() {
    let r = Rig::logical();
    r.ok(&["migrate", "--source", "logical"]);
    let mut sub = r.w.subscribe();
    let _worker = r.w.spawn("queue-work", &[]);
    let active = r.w.spawn("items-listen", &[]);
    active.wait_for_log(READING);
    let standby = r.w.spawn("items-listen", &[]);
    standby.wait_for_log("standby: another items-listen is active on slot inventory_items");
    let mut c = r.client();
    for _ in 0..20 {
        insert(&mut c);
    }
    let first = sub.next_raw(DEADLINE).unwrap_or_else(|| {
        panic!(
            "no broadcast; active:\n{}\nstandby:\n{}",
            active.log().join("\n"),
            standby.log().join("\n")
        )
    });
    assert!(first.contains("\"count\":20"), "{first}");
    active.signal("KILL");
    standby.wait_for_log("took over as the active listener");
    standby.wait_for_log(READING);
    insert(&mut c);
    // The active one may have died before saving its last step (it saves within a short
    // quiet, and every 100 ms): that step, count 20, may be repeated once, nothing more.
    let mut next = String::new();
    for _ in 0..2 {
        next = sub.next_raw(DEADLINE).unwrap_or_else(|| {
            r.wait_caught_up(&standby);
            panic!(
                "nothing after the takeover: the slot's count is {} (count(*) {}); standby:\n{}",
                r.state_count(),
                r.count(),
                standby.log().join("\n")
            )
        });
        if !next.contains("\"count\":20") {
            break;
        }
    }
    assert!(next.contains("\"count\":21"), "{next}");
    assert!(
        standby.count_log("count 20 is") <= 1,
        "only the unsaved last step is repeated"
    );
}

#[test]
fn an_existing_items_table_without_an_id_primary_key_keeps_its_deletes_working() {
    // README: an existing `items` table is used as it is. Publishing its deletes needs a
    // replica identity (a primary key, by default), inside the publication's column list: a
    // table without one is refused with the fix, and works once it has one.
    let no_key = "CREATE TABLE items (id bigserial, name text NOT NULL DEFAULT '')";
    let other_key = "CREATE TABLE items (sku text PRIMARY KEY DEFAULT gen_random_uuid()::text, \
                     id bigserial, name text NOT NULL DEFAULT '')";
    for (ddl, fix) in [
        (no_key, Some("ALTER TABLE items REPLICA IDENTITY FULL")),
        (other_key, None),
    ] {
        let r = Rig::logical();
        r.client().batch_execute(ddl).unwrap();
        if let Some(fix) = fix {
            let out = r.w.run("items-listen", &["migrate", "--source", "logical"]);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{ddl}: {stderr}");
            assert!(stderr.contains("REPLICA IDENTITY FULL"), "{stderr}");
            r.client().batch_execute(fix).unwrap();
        }
        r.ok(&["migrate", "--source", "logical"]);
        let mut c = r.client();
        insert(&mut c);
        let deleted = c.batch_execute("DELETE FROM items");
        assert!(
            deleted.is_ok(),
            "{ddl}: the application's DELETE fails after migrate --source logical: {:?}",
            deleted.map_err(|e| e.as_db_error().map(|d| d.message().to_string()))
        );
    }
}
