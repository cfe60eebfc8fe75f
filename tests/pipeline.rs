//! The whole pipeline: INSERT → trigger → items-listen → Redis queue → queue-work → PUBLISH.

use crate::support::private::PgServer;
use crate::support::{DEADLINE, World, eventually};
use postgres::fallible_iterator::FallibleIterator;
use serde_json::Value;

fn assert_event_shape(msg: &Value, channel_count: u64, severity: &str) {
    assert_eq!(msg["event"], "App\\Events\\ItemCountExeed");
    assert_eq!(msg["socket"], Value::Null);
    let data = &msg["data"];
    assert_eq!(data["count"], channel_count, "{msg}");
    assert_eq!(data["threshold"], 20);
    assert_eq!(data["severity"], severity, "{msg}");
    assert_eq!(data["socket"], Value::Null);
    assert_eq!(data["source"], "items-listen");
    let keys: Vec<&str> = data
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "count",
            "threshold",
            "severity",
            "percentage",
            "message",
            "timestamp",
            "source",
            "alert_id",
            "socket"
        ]
    );
    assert!(uuid::Uuid::parse_str(data["alert_id"].as_str().unwrap()).is_ok());
}

#[test]
fn inserting_25_rows_broadcasts_counts_20_to_25_in_order() {
    let w = World::new();
    let mut sub = w.subscribe();
    let listener = w.spawn("items-listen", &[]);
    let _worker = w.spawn("queue-work", &[]);
    listener.wait_for_log("listening on channel");
    w.db.insert(25);
    for (count, severity, pct) in crate::support::COUNTS_20_TO_25 {
        let msg = sub.next();
        assert_event_shape(&msg, count, severity);
        assert_eq!(msg["data"]["percentage"], pct);
    }
    // A sentinel through the same queue: if any extra broadcast had been made, it would
    // arrive before this one.
    let out = w.run("notify", &["--count", "999"]);
    assert!(out.status.success());
    assert_eq!(sub.next()["data"]["count"], 999);
}

#[test]
fn notifications_only_wake_the_listener_what_is_rated_is_the_databases_count() {
    let w = World::new();
    let mut sub = w.subscribe();
    // -v: payloads are logged (at debug), which is where a forged line would show.
    let listener = w.spawn("items-listen", &["-v"]);
    let _worker = w.spawn("queue-work", &[]);
    listener.wait_for_log("listening on channel");
    let mut c = w.db.client();
    for forged in [
        "21",
        "{\"count\": 22}",
        "garbage",
        "{\"count\": -3}",
        "{\"n\": 1}",
        "{\"count\": 1e400}",
        "{\"count\": 21}\n2026-11-30 INFO count 1000 is critical: FORGED",
    ] {
        c.execute("SELECT pg_notify('item_count', $1)", &[&forged])
            .unwrap();
    }
    // The first broadcast is the insert's own count: nothing before it came from a payload.
    c.batch_execute("INSERT INTO items (name) SELECT 'widget' FROM generate_series(1, 23)")
        .unwrap();
    assert_eq!(sub.next()["data"]["count"], 23);
    let log = listener.log();
    assert!(
        log.iter()
            .any(|l| l.contains("\\n2026-11-30 INFO count 1000 is critical: FORGED")),
        "the payload is shown escaped: {log:?}"
    );
    assert!(
        !log.iter().any(|l| l.starts_with("2026-11-30 INFO")),
        "a payload forged a log line: {log:?}"
    );
}

#[test]
fn the_current_count_is_rated_at_start() {
    let w = World::new();
    w.db.insert(31);
    let mut sub = w.subscribe();
    let _worker = w.spawn("queue-work", &[]);
    let _listener = w.spawn("items-listen", &[]);
    let msg = sub.next();
    assert_eq!(msg["data"]["count"], 31);
    assert_eq!(msg["data"]["severity"], "critical");
}

#[test]
fn delete_and_truncate_notify_the_new_count() {
    let w = World::new();
    w.db.insert(30);
    let mut sub = w.subscribe();
    let listener = w.spawn("items-listen", &["--min-severity", "info"]);
    let _worker = w.spawn("queue-work", &[]);
    assert_eq!(sub.next()["data"]["count"], 30, "{:?}", listener.log());
    let mut c = w.db.client();
    c.batch_execute("DELETE FROM items WHERE id IN (SELECT id FROM items LIMIT 5)")
        .unwrap();
    assert_eq!(sub.next()["data"]["count"], 25);
    c.batch_execute("TRUNCATE items").unwrap();
    let msg = sub.next();
    assert_eq!(msg["data"]["count"], 0);
    assert_eq!(msg["data"]["severity"], "info");
}

#[test]
fn notify_sync_broadcasts_without_the_queue() {
    let w = World::new();
    let mut sub = w.subscribe();
    let out = w.run("notify", &["--count", "5", "--sync"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let msg = sub.next();
    assert_eq!(msg["data"]["count"], 5);
    assert_eq!(msg["data"]["severity"], "info");
    assert_eq!(msg["data"]["source"], "notify");
    assert_eq!(w.queue().sizes("default").unwrap().pending, 0);
}

#[test]
fn notify_queues_a_job_of_any_severity() {
    let w = World::new();
    let out = w.run("notify", &["--count", "3", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["alert"]["severity"], "info");
    let id = printed["jobs"][0]["id"].as_str().unwrap().to_string();
    let mut q = w.queue();
    assert_eq!(q.sizes("default").unwrap().pending, 1);
    let popped = q
        .pop("default", 10, std::time::Duration::from_secs(5), false)
        .unwrap();
    let job = inventory_broadcast::queue::Job::decode(&popped.jobs[0].raw).unwrap();
    assert_eq!(job.id.to_string(), id);
    assert_eq!(job.job, "broadcast:redis");
    assert_eq!(
        (job.max_tries, job.backoff.clone(), job.timeout),
        (3, vec![1, 5, 10], 60)
    );
    assert_eq!(job.payload.count, 3);

    let text = w.run("notify", &["--count", "25"]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("queued job") && stdout.contains("high"),
        "{stdout}"
    );
}

#[test]
fn a_channel_name_with_quotes_and_spaces_is_quoted_not_spliced() {
    let mut w = World::new();
    let channel = "inventory \"odd\"; DROP TABLE items; --";
    w.set("INVENTORY_LISTEN_CHANNEL", channel);
    let out = w.run("items-listen", &["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sub = w.subscribe();
    let listener = w.spawn("items-listen", &[]);
    let _worker = w.spawn("queue-work", &[]);
    listener.wait_for_log("listening on channel");
    w.db.insert(20);
    assert_eq!(sub.next()["data"]["count"], 20);
}

#[test]
fn a_role_that_cannot_write_items_can_neither_raise_nor_clear_an_alert() {
    // A private server: the test creates a role, which the shared server's login may not.
    let pg = PgServer::start();
    let url = pg.create_db();
    let mut w = World::new();
    w.set("DATABASE_URL", &url)
        .set("INVENTORY_SLACK_NOTIFICATIONS", "true")
        .set(
            "INVENTORY_SLACK_WEBHOOK_URL",
            "https://hooks.example.com/services/T/B/x",
        );
    let listener = w.spawn("items-listen", &[]);
    listener.wait_for_log("listening on channel");
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute("INSERT INTO items (name) SELECT 'widget' FROM generate_series(1, 25)")
        .unwrap();
    let mut q = w.queue();
    // Its broadcast and its Slack message (no worker runs: they stay pending).
    let raised = eventually("the real alert queued", DEADLINE, || {
        let s = q.sizes("default").ok()?;
        (s.pending == 2).then_some(s)
    });
    let state_key = q.keys("default").alert_state("slack");
    let mut redis = w.redis();
    let mut state =
        || -> Option<String> { redis::cmd("GET").arg(&state_key).query(&mut redis).unwrap() };
    let before = state();
    assert!(
        before.is_some(),
        "the real alert opened a Slack alert state"
    );

    // A login with CONNECT and nothing else: it cannot even read the count.
    pg.admin()
        .batch_execute("CREATE ROLE forger LOGIN")
        .unwrap();
    let forger_url = url.replacen("postgres@", "forger@", 1);
    let mut forger = postgres::Client::connect(&forger_url, postgres::NoTls).unwrap();
    assert!(
        forger
            .query("SELECT n FROM inventory_item_count", &[])
            .is_err()
    );
    for forged in ["{\"count\": 1000}", "{\"count\": 0}", "0", "garbage"] {
        forger
            .execute("SELECT pg_notify('item_count', $1)", &[&forged])
            .unwrap();
    }
    // A real change after the forgeries: once it is queued, they were all seen before it.
    c.batch_execute("INSERT INTO items (name) VALUES ('widget')")
        .unwrap();
    let after = eventually("the real change queued", DEADLINE, || {
        let s = q.sizes("default").ok()?;
        (s.pending > raised.pending).then_some(s)
    });
    assert_eq!(
        after.pending,
        raised.pending + 1,
        "only its broadcast: Slack stays quiet"
    );
    assert_eq!(state(), before, "forgeries changed the alert state");
    drop(listener);
}

#[test]
fn a_real_notification_replayed_is_not_rated_again() {
    let mut w = World::new();
    w.set("INVENTORY_MIN_SEVERITY", "info");
    let mut sub = w.subscribe();
    let listener = w.spawn("items-listen", &[]);
    let _worker = w.spawn("queue-work", &[]);
    listener.wait_for_log("listening on channel");
    assert_eq!(sub.next()["data"]["count"], 0, "the starting count");
    // Anyone may LISTEN, and so see the trigger's signed payloads.
    let mut spy = w.db.client();
    spy.batch_execute("LISTEN item_count").unwrap();
    let mut c = w.db.client();
    c.batch_execute("INSERT INTO items (name) SELECT 'widget' FROM generate_series(1, 21)")
        .unwrap();
    assert_eq!(sub.next()["data"]["count"], 21);
    let signed = spy
        .notifications()
        .timeout_iter(DEADLINE)
        .next()
        .unwrap()
        .expect("the spy saw the trigger's notification")
        .payload()
        .to_string();
    assert!(signed.contains("\"mac\""), "{signed}");
    c.batch_execute("DELETE FROM items WHERE id IN (SELECT id FROM items LIMIT 1)")
        .unwrap();
    assert_eq!(sub.next()["data"]["count"], 20);
    // The old, validly signed payload again: its version is behind, so it is not rated.
    c.execute("SELECT pg_notify('item_count', $1)", &[&signed])
        .unwrap();
    c.batch_execute("INSERT INTO items (name) VALUES ('a'), ('b')")
        .unwrap();
    assert_eq!(
        sub.next()["data"]["count"],
        22,
        "the replayed 21 was broadcast again"
    );
}
