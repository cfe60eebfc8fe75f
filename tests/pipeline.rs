//! The whole pipeline: INSERT → trigger → items-listen → Redis queue → queue-work → PUBLISH.

use crate::support::World;
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
fn bare_integer_and_malformed_notifications() {
    let w = World::new();
    let mut sub = w.subscribe();
    let listener = w.spawn("items-listen", &[]);
    let _worker = w.spawn("queue-work", &[]);
    listener.wait_for_log("listening on channel");
    let mut c = w.db.client();
    c.batch_execute("SELECT pg_notify('item_count', '21')")
        .unwrap();
    assert_eq!(sub.next()["data"]["count"], 21);
    for bad in [
        "garbage",
        "{\"count\": -3}",
        "{\"n\": 1}",
        "{\"count\": 1e400}",
    ] {
        c.execute("SELECT pg_notify('item_count', $1)", &[&bad])
            .unwrap();
    }
    c.batch_execute("SELECT pg_notify('item_count', '{\"count\": 22}')")
        .unwrap();
    assert_eq!(sub.next()["data"]["count"], 22);
    assert_eq!(
        listener.count_log("skipped notification"),
        4,
        "{:?}",
        listener.log()
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
