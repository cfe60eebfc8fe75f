//! PostgreSQL failover: a private primary with a streaming replica (`pg_basebackup -R`); the
//! primary is stopped and the replica promoted. The listener, given both hosts, broadcasts a
//! change made on the new primary, and a worker records its next failed job there, each
//! within 10 s of the promotion.

use crate::support::private::{PgServer, output_within};
use crate::support::{DEADLINE, World, bin_path, eventually};
use std::process::Command;
use std::time::{Duration, Instant};

/// The promise: after a promotion, work reaches the new primary this soon.
const RECOVERY: Duration = Duration::from_secs(10);

/// A primary with a migrated database and a replica of it; returns both and the database name.
fn primary_and_replica() -> (PgServer, PgServer, String) {
    let primary = PgServer::start();
    let url = primary.create_db();
    let db = url
        .rsplit_once('/')
        .expect("a database in the URL")
        .1
        .to_string();
    let replica = PgServer::start_replica_of(&primary);
    (primary, replica, db)
}

/// `postgres://postgres@127.0.0.1:P1,127.0.0.1:P2/db` with `query` appended.
fn multi_host_url(hosts: [&PgServer; 2], db: &str, query: &str) -> String {
    format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/{db}{query}",
        hosts[0].port, hosts[1].port
    )
}

fn insert(pg: &PgServer, db: &str, n: i32) {
    pg.admin_of(db)
        .execute(
            "INSERT INTO items (name) SELECT 'widget' FROM generate_series(1, $1)",
            &[&n],
        )
        .expect("insert");
}

/// The uuids in `failed_jobs` on `pg`.
fn failed_uuids(pg: &PgServer, db: &str) -> Vec<String> {
    pg.admin_of(db)
        .query("SELECT uuid FROM failed_jobs ORDER BY id", &[])
        .expect("read failed_jobs")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The arrival time of the first broadcast of `count` received from index `from` on.
fn broadcast_of(sub: &crate::support::Subscriber, from: usize, count: u64) -> Option<Instant> {
    sub.since(from).into_iter().find_map(|(at, raw)| {
        let v: serde_json::Value = serde_json::from_str(&raw).ok()?;
        (v["data"]["count"] == count).then_some(at)
    })
}

#[test]
fn listener_follows_promotion() {
    let (primary, replica, db) = primary_and_replica();

    // A listener given only the standby refuses it: nothing is ever notified there.
    let mut alone = Command::new(bin_path("items-listen"));
    alone
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", replica.url(&db))
        .env("REDIS_URL", crate::support::redis_url());
    let out = output_within(&mut alone, DEADLINE);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("standby (in recovery)"), "{err}");

    let mut w = World::new();
    w.set(
        "DATABASE_URL",
        &multi_host_url(
            [&primary, &replica],
            &db,
            "?target_session_attrs=read-write",
        ),
    );
    let sub = w.subscribe();
    let listener = w.spawn("items-listen", &[]);
    let _worker = w.spawn("queue-work", &[]);
    listener.wait_for_log("listening on channel");
    insert(&primary, &db, 20);
    eventually("count 20 broadcast from the primary", DEADLINE, || {
        broadcast_of(&sub, 0, 20)
    });
    replica.wait_caught_up(&primary);

    let before = sub.received();
    primary.stop_fast();
    let stopped = Instant::now();
    replica.promote();
    let promoted = Instant::now();
    insert(&replica, &db, 1);
    let at = eventually("count 21 broadcast from the new primary", RECOVERY, || {
        broadcast_of(&sub, before, 21)
    });
    let recovery = at.saturating_duration_since(promoted);
    println!(
        "listener: primary stopped, replica promoted in {:.2} s; count 21 broadcast {:.2} s \
         after the promotion",
        promoted.duration_since(stopped).as_secs_f64(),
        recovery.as_secs_f64()
    );
    assert!(recovery < RECOVERY, "{recovery:?}");
    listener.wait_for_log("PostgreSQL is back after");

    // The new session LISTENs there: a later change is notified, not only re-rated.
    let before = sub.received();
    insert(&replica, &db, 1);
    eventually("count 22 notified by the new primary", DEADLINE, || {
        broadcast_of(&sub, before, 22)
    });
}

#[test]
fn worker_records_failed_job_on_new_primary() {
    let (primary, replica, db) = primary_and_replica();
    let mut w = World::new();
    // The standby listed first and no target_session_attrs: the worker still wants the
    // primary. Every broadcast fails (nothing listens on port 1), and one try is all it gets.
    w.set(
        "DATABASE_URL",
        &multi_host_url([&replica, &primary], &db, ""),
    )
    .set("BROADCAST_REDIS_URL", "redis://127.0.0.1:1");
    let worker = w.spawn("queue-work", &["--tries", "1", "--sleep", "1"]);
    worker.wait_for_log("working queue(s)");

    let first = w.push_jobs("default", "broadcast:redis", 1)[0]
        .id
        .to_string();
    eventually(
        "the first failed job recorded on the primary",
        DEADLINE,
        || failed_uuids(&primary, &db).contains(&first).then_some(()),
    );
    replica.wait_caught_up(&primary);

    primary.stop_fast();
    replica.promote();
    let promoted = Instant::now();
    let second = w.push_jobs("default", "broadcast:redis", 1)[0]
        .id
        .to_string();
    eventually(
        "the next failed job recorded on the new primary",
        RECOVERY,
        || failed_uuids(&replica, &db).contains(&second).then_some(()),
    );
    let recovery = promoted.elapsed();
    println!(
        "worker: next failed job recorded on the new primary {:.2} s after the promotion",
        recovery.as_secs_f64()
    );
    assert!(recovery < RECOVERY, "{recovery:?}");
    assert_eq!(
        failed_uuids(&replica, &db),
        [first, second],
        "both jobs, each once"
    );
    // The kept connection to the old primary failed and a fresh one found the new primary
    // at once: the job was not left reserved for retry_after.
    assert_eq!(
        worker.count_log("cannot record failed job"),
        0,
        "{}",
        worker.log().join("\n")
    );
}
