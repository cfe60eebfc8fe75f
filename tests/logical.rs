//! The logical-decoding source (`INVENTORY_SOURCE=logical`): changes read from a `pgoutput`
//! replication slot instead of the trigger's NOTIFY. Each test runs its own PostgreSQL with
//! `wal_level = logical` (the shared server runs `replica`), the shared Redis under the
//! world's prefix.

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
    /// On a `wal_level = logical` server.
    fn logical() -> Rig {
        Rig::on(PgServer::start_logical())
    }

    fn on(pg: PgServer) -> Rig {
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
    let expected = [
        (20, "warning", 100.0),
        (21, "warning", 105.0),
        (22, "warning", 110.0),
        (23, "warning", 115.0),
        (24, "high", 120.0),
        (25, "high", 125.0),
    ];
    for (count, severity, pct) in expected {
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
    // The items table first (notify source), so writers can run before the slot exists.
    r.ok(&["migrate", "--source", "notify"]);
    for round in 1..=4 {
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
        assert_eq!(
            last_rated(&listener),
            Some(count),
            "round {round}: the last alert is the real count"
        );
        let mut listener = listener;
        listener.signal("TERM");
        assert_eq!(listener.wait_exit(), Some(0), "{}", tail(&listener));
        let out = r.ok(&["slot", "drop"]);
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("dropped replication slot"),
            "{out:?}"
        );
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
    assert_eq!(r.state_count(), N);
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
    let mut listener = w.spawn("items-listen", &["--source", "logical"]);
    assert_eq!(listener.wait_exit(), Some(1));
    let err = listener.log().join("\n");
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
    let mut listener = w.spawn("items-listen", &[]);
    assert_eq!(listener.wait_exit(), Some(1));
    let err = listener.log().join("\n");
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
    let mut listener = r.w.spawn("items-listen", &[]);
    assert_eq!(listener.wait_exit(), Some(1));
    let err = listener.log().join("\n");
    assert!(err.contains("migrate --source logical"), "{err}");
}
