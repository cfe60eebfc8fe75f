//! The operator's commands: `queue-work status` and `queue-work failed …`.

use crate::support::{DEADLINE, World, eventually};
use inventory_broadcast::db::{Db, failed};
use inventory_broadcast::queue::{Job, Outcome};
use std::collections::HashSet;
use std::time::Duration;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Pushes `n` jobs and lets a worker fail each on its first try (nothing listens on port 1).
fn failed_jobs(w: &mut World, n: usize) -> Vec<Job> {
    let jobs = w.push_jobs("default", "broadcast:redis", n);
    w.set("BROADCAST_REDIS_URL", "redis://127.0.0.1:1");
    let out = w.run("queue-work", &["--stop-when-empty", "--tries", "1"]);
    w.env.remove("BROADCAST_REDIS_URL");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let rows = w.db.failed_jobs();
    assert_eq!(rows.len(), n);
    for (_, payload, _) in rows {
        // Stored as queued (3 tries), not with the worker's --tries 1 override.
        let stored: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(
            (&stored["attempts"], &stored["max_tries"]),
            (&1.into(), &3.into())
        );
    }
    jobs
}

fn uuids(w: &World) -> HashSet<String> {
    w.db.failed_jobs().into_iter().map(|(u, _, _)| u).collect()
}

#[test]
fn failed_retry_all_puts_every_job_back_and_they_complete() {
    let mut w = World::new();
    let jobs = failed_jobs(&mut w, 3);
    let mut sub = w.subscribe();
    let out = w.run("queue-work", &["failed", "retry", "all"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "put 3 failed job(s) back: default 3");
    assert!(w.db.failed_jobs().is_empty());
    // Attempts start again from 0: nothing is left in the attempts hash.
    let mut con = w.redis();
    let attempts: u64 = redis::cmd("HLEN")
        .arg(w.queue().keys("default").attempts)
        .query(&mut con)
        .unwrap();
    assert_eq!(attempts, 0);

    let out = w.run("queue-work", &["--stop-when-empty"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("DONE (").count(), 3, "{err}");
    let firsts = err
        .lines()
        .filter(|l| l.contains("DONE (") && l.ends_with("attempt 1)"));
    assert_eq!(firsts.count(), 3, "attempts start again at 1: {err}");
    let got: HashSet<String> = (0..3)
        .map(|_| sub.next()["data"]["alert_id"].as_str().unwrap().to_string())
        .collect();
    let want: HashSet<String> = jobs
        .iter()
        .map(|j| j.payload.alert_id.to_string())
        .collect();
    assert_eq!(got, want);
    assert_eq!(w.queue().sizes("default").unwrap().pending, 0);
}

#[test]
fn failed_retry_by_id_prefix_and_its_refusals() {
    let mut w = World::new();
    let jobs = failed_jobs(&mut w, 2);
    let (first, second) = (jobs[0].id.to_string(), jobs[1].id.to_string());

    let out = w.run("queue-work", &["failed", "retry", &first[..8]]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), format!("put {first} back on default"));
    assert_eq!(uuids(&w), HashSet::from([second.clone()]));
    assert_eq!(w.queue().sizes("default").unwrap().pending, 1);

    // Unknown ids and other queues are refused, with exit 1; nothing else changes.
    let out = w.run("queue-work", &["failed", "retry", "0000dead"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("no failed job has id 0000dead"));
    assert!(stderr(&out).contains("1 failed job(s) not retried"));
    let out = w.run(
        "queue-work",
        &["failed", "retry", &second, "--queue", "other"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("did not come from queue other"),
        "{}",
        stdout(&out)
    );
    assert_eq!(uuids(&w), HashSet::from([second]));
    assert_eq!(w.queue().sizes("default").unwrap().pending, 1);
}

#[test]
fn forget_and_flush_delete_what_they_say_and_nothing_else() {
    let mut w = World::new();
    let ids: Vec<String> = failed_jobs(&mut w, 4)
        .iter()
        .map(|j| j.id.to_string())
        .collect();

    let out = w.run("queue-work", &["failed", "forget", &ids[0]]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), format!("forgot failed job {}", ids[0]));
    assert_eq!(uuids(&w), ids[1..].iter().cloned().collect());
    let out = w.run("queue-work", &["failed", "forget", &ids[0]]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no failed job has id"),
        "{}",
        stderr(&out)
    );

    // Two of the three failed three hours ago.
    w.db.client()
        .execute(
            "UPDATE failed_jobs SET failed_at = now() - interval '3 hours' WHERE uuid = ANY($1)",
            &[&ids[1..3].to_vec()],
        )
        .unwrap();
    let out = w.run("queue-work", &["failed", "flush", "--hours", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("deleted 2 failed job(s)"),
        "{}",
        stdout(&out)
    );
    assert_eq!(uuids(&w), HashSet::from([ids[3].clone()]));
    let out = w.run("queue-work", &["failed", "flush"]);
    assert_eq!(stdout(&out).trim(), "deleted 1 failed job(s)");
    assert!(w.db.failed_jobs().is_empty());
}

#[test]
fn failed_lists_and_shows_jobs_as_text_and_json() {
    let w = World::new();
    let job = crate::support::job("broadcast:redis", 25);
    let mut db = Db::connect(&inventory_broadcast::db::DatabaseConfig::plain(
        &w.db.url.clone(),
    ))
    .unwrap();
    let payload = String::from_utf8(job.encode()).unwrap();
    let error = "attempt 3: Redis at 127.0.0.1:1/0: connection refused\nsecond line";
    failed::record(&mut db, &job.id.to_string(), "default", &payload, error).unwrap();
    failed::record(
        &mut db,
        "bad-1",
        "other",
        "not json",
        "job is not a valid job",
    )
    .unwrap();

    let out = w.run("queue-work", &["failed"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header, ["ID", "QUEUE", "KIND", "FAILED", "AT", "ERROR"]);
    assert!(lines[1].starts_with(&job.id.to_string()), "{text}");
    assert!(
        lines[1].contains("broadcast:redis") && lines[1].ends_with("connection refused"),
        "{text}"
    );
    assert!(lines[2].contains("(undecodable)"), "{text}");
    assert!(!text.contains("second line"), "{text}");

    let out = w.run(
        "queue-work",
        &["failed", "list", "--json", "--queue", "default"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], job.id.to_string());
    assert_eq!(v[0]["kind"], "broadcast:redis");
    assert_eq!(v[0]["payload"]["payload"]["count"], 25);
    assert_eq!(v[0]["exception"], error);

    let out = w.run("queue-work", &["failed", "show", &job.id.to_string()]);
    let text = stdout(&out);
    assert!(
        text.contains("second line") && text.contains("\"count\": 25"),
        "{text}"
    );
    let out = w.run("queue-work", &["failed", "show", "bad-1", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["payload"], "not json");
    let out = w.run("queue-work", &["failed", "list", "--queue", "nowhere"]);
    assert_eq!(stdout(&out).trim(), "no failed jobs");
}

#[test]
fn status_matches_the_keys_and_shows_named_workers() {
    let w = World::new();
    w.push_jobs("default", "broadcast:null", 5);
    let mut q = w.queue();
    let long = Duration::from_secs(60);
    q.pop("default", 1, long, false).unwrap();
    let r = q.pop("default", 1, long, false).unwrap().jobs.remove(0);
    q.finish(
        "default",
        &[(&r, Outcome::RetryAfter(long))],
        &Default::default(),
    )
    .unwrap();
    q.push_raw("bad", &[b"garbage".to_vec()]).unwrap();
    let mut db = Db::connect(&inventory_broadcast::db::DatabaseConfig::plain(
        &w.db.url.clone(),
    ))
    .unwrap();
    failed::record(&mut db, "f-1", "default", "{}", "x").unwrap();
    failed::record(&mut db, "f-2", "other", "{}", "x").unwrap();
    failed::record(&mut db, "f-3", "other", "{}", "x").unwrap();

    let mut worker = w.spawn("queue-work", &["--queue", "idle", "--name", "probe-7"]);
    let v = eventually("the worker shows in status", DEADLINE, || {
        let v = w.status(&["--queue", "default,bad"]);
        (v["workers"][0]["name"] == "probe-7").then_some(v)
    });
    let mut con = w.redis();
    let queues = v["queues"].as_array().unwrap();
    let names: Vec<&str> = queues.iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "bad", "other"]);
    for entry in queues {
        let k = q.keys(entry["name"].as_str().unwrap());
        let (pending, delayed, reserved): (u64, u64, u64) = redis::pipe()
            .llen(&k.pending)
            .zcard(&k.delayed)
            .zcard(&k.reserved)
            .query(&mut con)
            .unwrap();
        assert_eq!(entry["pending"], pending, "{entry}");
        assert_eq!(entry["delayed"], delayed, "{entry}");
        assert_eq!(entry["reserved"], reserved, "{entry}");
    }
    let default = &queues[0];
    assert_eq!(
        (
            &default["pending"],
            &default["delayed"],
            &default["reserved"]
        ),
        (&3.into(), &1.into(), &1.into())
    );
    assert_eq!(default["failed"], 1);
    let age = default["oldest_pending_age_s"].as_f64().unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");
    // A malformed head does not break status: its age is unknown.
    assert_eq!(queues[1]["pending"], 1);
    assert!(queues[1]["oldest_pending_age_s"].is_null());
    assert_eq!(queues[2]["failed"], 2);
    assert_eq!(v["workers"][0]["queues"][0], "idle");
    assert_eq!(v["workers"][0]["pid"], worker.pid());

    let out = w.run("queue-work", &["status", "--queue", "default,bad"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("probe-7") && text.contains("idle"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().take(4).eq(["default", "3", "1", "1"])),
        "{text}"
    );

    worker.signal("TERM");
    assert_eq!(worker.wait_exit(), Some(0));
    assert!(w.status(&[])["workers"].as_array().unwrap().is_empty());
}

#[test]
fn control_characters_from_failed_rows_print_escaped() {
    let w = World::new();
    let mut db = Db::connect(&inventory_broadcast::db::DatabaseConfig::plain(&w.db.url)).unwrap();
    // What a hostile or broken producer could leave: terminal escapes and a forged line.
    let payload = "\u{1b}]0;pwned\u{7}\u{1b}[2J not json\n2026-11-30 INFO forged";
    let error = "attempt 1: \u{1b}[31mred\u{1b}[0m\r\nand more";
    failed::record(&mut db, "ctl-1", "default", payload, error).unwrap();
    for args in [&["failed"][..], &["failed", "show", "ctl-1"]] {
        let out = w.run("queue-work", args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{args:?}: {text:?}"
        );
        assert!(!text.contains('\r'), "{args:?}: {text:?}");
        assert!(text.contains("\\x1b"), "{args:?}: {text}");
    }
    let shown = stdout(&w.run("queue-work", &["failed", "show", "ctl-1"]));
    assert!(shown.contains("\\x1b]0;pwned\\x07"), "{shown}");
    // A payload's own lines stay lines in `show`, but none can pass for a log line: the row
    // is one block under `payload:`.
    assert!(shown.contains("\\x1b[31mred\\x1b[0m\\r"), "{shown}");
}

#[test]
fn a_failed_row_with_an_invalid_queue_is_kept_not_retried() {
    let w = World::new();
    let job = crate::support::job("broadcast:redis", 25);
    let mut db = Db::connect(&inventory_broadcast::db::DatabaseConfig::plain(&w.db.url)).unwrap();
    let payload = String::from_utf8(job.encode()).unwrap();
    failed::record(
        &mut db,
        &job.id.to_string(),
        "",
        &payload,
        "attempt 3: refused",
    )
    .unwrap();
    let out = w.run("queue-work", &["failed", "retry", "all"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("not retried {}", job.id)) && text.contains("not a queue name"),
        "{text}"
    );
    assert_eq!(
        uuids(&w),
        HashSet::from([job.id.to_string()]),
        "the row is kept"
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", w.prefix))
        .query(&mut w.redis())
        .unwrap();
    assert!(
        !keys.iter().any(|k| k.contains("{queues:}")),
        "nothing was pushed to a queue without a name: {keys:?}"
    );
}
