//! The binaries as a user runs them: exit codes, one-line errors, retries and failed_jobs.

use crate::support::World;
use std::time::Instant;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn invalid_config_exits_2_naming_key_and_source() {
    let mut w = World::new();
    w.set("INVENTORY_NOTIFICATION_THRESHOLD", "0");
    for bin in ["items-listen", "queue-work", "notify"] {
        let args: &[&str] = if bin == "notify" {
            &["--count", "1"]
        } else {
            &[]
        };
        let out = w.run(bin, args);
        assert_eq!(out.status.code(), Some(2), "{bin}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("inventory.threshold"), "{err}");
        assert!(err.contains("INVENTORY_NOTIFICATION_THRESHOLD"), "{err}");
    }
    w.set("INVENTORY_NOTIFICATION_THRESHOLD", "20");
    let out = w.run("queue-work", &["--tries", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("flag --tries"), "{}", stderr(&out));
    let out = w.run("queue-work", &["--timeout", "100", "--retry-after", "50"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("retry_after"), "{}", stderr(&out));
}

#[test]
fn config_file_then_env_then_flag() {
    let mut w = World::new();
    w.env.remove("INVENTORY_NOTIFICATION_THRESHOLD");
    let file = w.dir.join("custom.toml");
    std::fs::write(&file, "[inventory]\nthreshold = 50\n").unwrap();
    let path = file.to_str().unwrap().to_string();
    let pct = |w: &World, extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["--count", "100", "--dry-run", "--config", &path];
        args.extend_from_slice(extra);
        let out = w.run("notify", &args);
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["data"]["threshold"].clone()
    };
    assert_eq!(pct(&w, &[]), 50);
    w.set("INVENTORY_NOTIFICATION_THRESHOLD", "40");
    assert_eq!(pct(&w, &[]), 40);
    assert_eq!(pct(&w, &["--threshold", "30"]), 30);
    std::fs::write(&file, "[inventory]\nthreshold = \"many\"\n").unwrap();
    w.env.remove("INVENTORY_NOTIFICATION_THRESHOLD");
    let out = w.run("notify", &["--count", "1", "--dry-run", "--config", &path]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("custom.toml"), "{}", stderr(&out));
}

#[test]
fn unreachable_servers_exit_1_with_host_and_port_and_no_password() {
    let mut w = World::new();
    w.set(
        "DATABASE_URL",
        "postgres://inventory:s3cret-pw@127.0.0.1:1/inventory",
    );
    let out = w.run("items-listen", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("127.0.0.1:1") && !err.contains("s3cret-pw"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let mut w = World::new();
    w.set("REDIS_URL", "redis://:s3cret-pw@127.0.0.1:1");
    for bin in ["queue-work", "notify"] {
        let args: &[&str] = if bin == "notify" {
            &["--count", "1"]
        } else {
            &[]
        };
        let out = w.run(bin, args);
        assert_eq!(out.status.code(), Some(1), "{bin}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("127.0.0.1:1") && !err.contains("s3cret-pw"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn dry_run_touches_nothing() {
    let mut w = World::new();
    w.set("DATABASE_URL", "postgres://x:y@127.0.0.1:1/none");
    w.set("REDIS_URL", "redis://127.0.0.1:1");
    let out = w.run("notify", &["--count", "24", "--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["event"], "App\\Events\\ItemCountExeed");
    assert_eq!(v["data"]["severity"], "high");
}

#[test]
fn stop_when_empty_exits_0_on_an_empty_queue() {
    let w = World::new();
    let started = Instant::now();
    let out = w.run("queue-work", &["--stop-when-empty"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn failing_broadcast_is_retried_with_backoff_then_recorded() {
    let mut w = World::new();
    // Nothing listens on port 1: every publish fails with "connection refused".
    w.set("BROADCAST_REDIS_URL", "redis://127.0.0.1:1");
    let out = w.run("notify", &["--count", "25"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let started = Instant::now();
    let out = w.run(
        "queue-work",
        &["--stop-when-empty", "--tries", "3", "--backoff", "1,2"],
    );
    let elapsed = started.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("RETRY in 1s") && err.contains("RETRY in 2s"),
        "{err}"
    );
    assert_eq!(err.matches(" FAIL ").count(), 1, "{err}");
    assert!(
        elapsed.as_secs_f64() >= 3.0,
        "backoff 1 s + 2 s, took {elapsed:?}"
    );
    let failed = w.db.failed_jobs();
    assert_eq!(failed.len(), 1);
    let (_, payload, exception) = &failed[0];
    assert!(
        exception.contains("attempt 3") && exception.contains("127.0.0.1:1"),
        "{exception}"
    );
    let job: serde_json::Value = serde_json::from_str(payload).unwrap();
    assert_eq!(job["attempts"], 3);
    assert_eq!(job["payload"]["count"], 25);
    let sizes = w.queue().sizes("default").unwrap();
    assert_eq!((sizes.pending, sizes.delayed, sizes.reserved), (0, 0, 0));
}

#[test]
fn malformed_jobs_go_to_failed_jobs_and_the_worker_goes_on() {
    let w = World::new();
    let mut q = w.queue();
    q.push_raw(
        "default",
        &[
            b"not json".to_vec(),
            vec![0xff, 0xfe, 0x00],
            b"{\"id\": 5}".to_vec(),
        ],
    )
    .unwrap();
    let out = w.run("notify", &["--count", "21"]);
    assert!(out.status.success());
    let mut sub = w.subscribe();
    let out = w.run("queue-work", &["--stop-when-empty"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(sub.next()["data"]["count"], 21);
    let failed = w.db.failed_jobs();
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(
        failed
            .iter()
            .all(|(_, _, e)| e.contains("not UTF-8") || e.contains("not a valid job"))
    );
}

#[test]
fn a_closed_output_pipe_ends_quietly_with_exit_0() {
    let w = World::new();
    let runs: [(&str, &[&str]); 4] = [
        ("queue-work", &["status"]),
        ("queue-work", &["status", "--json"]),
        ("queue-work", &["failed", "list"]),
        ("notify", &["--count", "25", "--dry-run"]),
    ];
    for (bin, args) in runs {
        let out = w.run_into_closed_pipe(bin, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{bin} {args:?}: {}",
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("panicked"),
            "{bin} {args:?}: {}",
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("error"),
            "{bin} {args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn a_listener_on_another_channel_than_the_trigger_stops_and_says_why() {
    let mut w = World::new();
    w.set("INVENTORY_LISTEN_CHANNEL", "stock_levels");
    let out = w.run("items-listen", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("notifies channel item_count") && err.contains("listens on stock_levels"),
        "{err}"
    );
    assert!(
        err.contains("items-listen migrate --channel stock_levels"),
        "{err}"
    );

    // Unmigrated: the listener says what to run.
    let name = format!("ib_bare_{}", crate::support::tag());
    let mut admin =
        postgres::Client::connect(&crate::support::admin_url(), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    w.set(
        "DATABASE_URL",
        &crate::support::with_database(&w.db.url, &name),
    );
    let out = w.run("items-listen", &[]);
    let _ = admin.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("run `items-listen migrate`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn absurd_numbers_are_refused_at_start_naming_the_flag() {
    let w = World::new();
    for (bin, args, named) in [
        (
            "queue-work",
            &[
                "--timeout",
                "18446744073709551614",
                "--retry-after",
                "18446744073709551615",
            ][..],
            "--retry-after",
        ),
        (
            "queue-work",
            &["--retry-after", "18446744073709551615"][..],
            "--retry-after",
        ),
        (
            "queue-work",
            &["--backoff", "18446744073709551615"][..],
            "--backoff",
        ),
        ("queue-work", &["--tries", "4294967295"][..], "--tries"),
        (
            "queue-work",
            &["--max-time", "18446744073709551615"][..],
            "--max-time",
        ),
        ("notify", &["--count", "9007199254740992"][..], "--count"),
    ] {
        let out = w.run(bin, args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bin} {args:?}: {}",
            stderr(&out)
        );
        assert!(
            stderr(&out).contains(named),
            "{bin} {args:?}: {}",
            stderr(&out)
        );
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
}
