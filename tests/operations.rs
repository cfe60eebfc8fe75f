//! Operating the daemons: `/metrics` while jobs run (done, retried, failed), `/healthz` and
//! `/readyz` as servers come and go, JSON logs, and a log file rotated under a running worker.

use crate::support::fake_pusher::FakePusher;
use crate::support::private::RedisServer;
use crate::support::{DEADLINE, Proc, World, eventually};
use std::io::{Read, Write};
use std::time::Duration;

/// `GET path` on `addr`: the status code and the body.
pub fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// The address a daemon started with `--metrics-addr 127.0.0.1:0` serves on (from its log).
pub fn metrics_addr(daemon: &Proc) -> String {
    let line = daemon.wait_for_log("serving metrics at http://");
    let rest = line.split("http://").nth(1).expect("an address");
    rest.split('/').next().expect("host:port").to_string()
}

/// The value of the sample `name{labels}` (labels as they appear, in order), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[test]
fn metrics_count_what_the_worker_did() {
    let fake = FakePusher::start("1", "key", "secret");
    let mut w = World::new();
    w.set("BROADCAST_DRIVER", "pusher");
    for (k, v) in fake.env("secret") {
        w.set(k, &v);
    }
    // The first attempt gets a 500 (retried), the second a 401 (failed), the rest succeed.
    fake.fail_next(&[500, 401]);
    w.push_jobs("default", "broadcast:pusher", 3);
    let worker = w.spawn(
        "queue-work",
        &[
            "--metrics-addr",
            "127.0.0.1:0",
            "--backoff",
            "0",
            "--tries",
            "3",
        ],
    );
    let addr = metrics_addr(&worker);
    let text = eventually("every job ended", DEADLINE, || {
        let (status, text) = get(&addr, "/metrics")?;
        assert_eq!(status, 200);
        let done =
            "inventory_jobs_total{queue=\"default\",kind=\"broadcast:pusher\",outcome=\"done\"}";
        (sample(&text, done) == Some(2.0)).then_some(text)
    });
    let series = |labels: &str| {
        format!("inventory_jobs_total{{queue=\"default\",kind=\"broadcast:pusher\",{labels}}}")
    };
    assert_eq!(
        sample(&text, &series("outcome=\"retried\"")),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &series("outcome=\"failed\"")),
        Some(1.0),
        "{text}"
    );
    let runs = "inventory_job_duration_seconds_count{queue=\"default\",kind=\"broadcast:pusher\"}";
    assert_eq!(sample(&text, runs), Some(4.0), "{text}");
    assert_eq!(
        sample(&text, "inventory_job_wait_seconds_count{queue=\"default\"}"),
        Some(3.0),
        "{text}"
    );
    // The counters move as each job ends; the queue empties when the batch is finished, a
    // moment later: the gauges are read again until they show it.
    eventually("the queue gauges at 0", DEADLINE, || {
        let (_, text) = get(&addr, "/metrics")?;
        ["pending", "delayed", "reserved"]
            .iter()
            .all(|state| {
                let gauge = format!("inventory_queue_jobs{{queue=\"default\",state=\"{state}\"}}");
                sample(&text, &gauge) == Some(0.0)
            })
            .then_some(())
    });
    assert!(text.contains("inventory_queue_oldest_pending_seconds{queue=\"default\"}"));
    let failed = eventually("the failed job counted", DEADLINE, || {
        let (_, text) = get(&addr, "/metrics")?;
        let n = sample(&text, "inventory_failed_jobs{queue=\"default\"}")?;
        (n == 1.0).then_some(n)
    });
    assert_eq!(failed, 1.0);
    // Forgotten, the queue's failed jobs read 0 again (after the few seconds' cache).
    assert!(w.run("queue-work", &["failed", "flush"]).status.success());
    eventually("the failed gauge back at 0", DEADLINE, || {
        let (_, text) = get(&addr, "/metrics")?;
        (sample(&text, "inventory_failed_jobs{queue=\"default\"}")? == 0.0).then_some(())
    });
    let version = format!(
        "inventory_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &version), Some(1.0), "{text}");
    assert!(
        sample(&text, "inventory_process_cpu_seconds_total").is_some(),
        "CPU time is a counter: {text}"
    );
    assert!(sample(&text, "inventory_process_resident_memory_bytes").is_some_and(|b| b > 1e5));
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );
    assert_eq!(get(&addr, "/healthz").map(|(s, _)| s), Some(200));
    assert_eq!(get(&addr, "/nowhere").map(|(s, _)| s), Some(404));
}

#[test]
fn readyz_follows_redis_and_tells_active_from_standby() {
    let mut redis = RedisServer::start();
    let mut w = World::new();
    w.set("REDIS_URL", &redis.url());
    let worker = w.spawn("queue-work", &["--metrics-addr", "127.0.0.1:0"]);
    let addr = metrics_addr(&worker);
    let (status, body) = get(&addr, "/readyz").expect("an answer");
    assert_eq!(status, 200, "{body}");

    redis.stop();
    let stopped = std::time::Instant::now();
    let body = eventually("/readyz says 503", Duration::from_secs(5), || {
        let (status, body) = get(&addr, "/readyz")?;
        (status == 503).then_some(body)
    });
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "{:?}",
        stopped.elapsed()
    );
    assert!(body.contains("Redis"), "{body}");
    assert_eq!(
        get(&addr, "/healthz").map(|(s, _)| s),
        Some(200),
        "alive while Redis is away"
    );
    redis.restart();
    eventually("/readyz 200 again", DEADLINE, || {
        (get(&addr, "/readyz")?.0 == 200).then_some(())
    });

    let active = w.spawn("items-listen", &["--metrics-addr", "127.0.0.1:0"]);
    let active_addr = metrics_addr(&active);
    active.wait_for_log("listening on channel");
    let standby = w.spawn("items-listen", &["--metrics-addr", "127.0.0.1:0"]);
    let standby_addr = metrics_addr(&standby);
    standby.wait_for_log("standby:");
    let (status, body) = get(&active_addr, "/readyz").unwrap();
    assert_eq!((status, body.trim()), (200, "ready: active"));
    let (status, body) = get(&standby_addr, "/readyz").unwrap();
    assert_eq!((status, body.trim()), (200, "ready: standby"));
    let (_, text) = get(&active_addr, "/metrics").unwrap();
    assert_eq!(
        sample(&text, "inventory_listener_active"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "inventory_item_threshold"),
        Some(20.0),
        "{text}"
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_the_fields() {
    let mut w = World::new();
    w.set("LOG_FORMAT", "json").set("BROADCAST_DRIVER", "null");
    let jobs = w.push_jobs("default", "broadcast:null", 2);
    let out = w.run("queue-work", &["--stop-when-empty"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(lines.len() >= 3, "{text}");
    for line in &lines {
        for field in ["ts", "level", "target", "msg"] {
            assert!(line.get(field).is_some(), "{field} missing: {line}");
        }
    }
    let done: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["msg"].as_str().is_some_and(|m| m.contains("DONE")))
        .collect();
    assert_eq!(done.len(), 2, "{text}");
    for line in done {
        assert!(
            jobs.iter().any(|j| line["job_id"] == j.id.to_string()),
            "{line}"
        );
        assert_eq!(line["queue"], "default");
        assert_eq!(line["kind"], "broadcast:null");
        assert_eq!(line["attempt"], 1);
        assert!(line["duration_ms"].is_number(), "{line}");
    }
}

#[test]
fn a_log_file_moved_away_is_reopened_on_sighup() {
    let mut w = World::new();
    w.set("BROADCAST_DRIVER", "null");
    let log = w.dir.join("queue-work.log");
    let rotated = w.dir.join("queue-work.log.1");
    let worker = w.spawn("queue-work", &["--log-file", log.to_str().unwrap()]);
    let first = w.push_jobs("default", "broadcast:null", 1).remove(0);
    let has = |path: &std::path::Path, needle: &str| {
        std::fs::read_to_string(path).is_ok_and(|t| t.contains(needle))
    };
    eventually("the first job logged", DEADLINE, || {
        has(&log, &format!("{} broadcast:null DONE", first.id)).then_some(())
    });
    std::fs::rename(&log, &rotated).unwrap();
    worker.signal("HUP");
    // The file is reopened before the next line is written: a job makes one.
    let second = w.push_jobs("default", "broadcast:null", 1).remove(0);
    eventually("the second job logged in a new file", DEADLINE, || {
        has(&log, &format!("{} broadcast:null DONE", second.id)).then_some(())
    });
    assert!(has(&rotated, &first.id.to_string()));
    assert!(!has(&rotated, &second.id.to_string()));
    // With a log file, nothing goes to stderr.
    assert!(
        !worker.log().iter().any(|l| l.contains("DONE")),
        "{:?}",
        worker.log()
    );
}
