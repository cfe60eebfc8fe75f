//! Delivery to third parties, against local fakes started by each test: the Pusher HTTP API,
//! a Slack-like webhook, and SMTP. The pipeline around them (queue, worker, failed_jobs) is
//! the real one.

use crate::support::World;
use crate::support::fake_pusher::FakePusher;
use crate::support::fake_smtp::FakeSmtp;
use crate::support::fake_webhook::{FakeWebhook, Step};
use std::process::Output;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "pusher-test-secret";

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

/// A world whose pusher driver points at `fake`, signing with `secret`.
fn pusher_world(fake: &FakePusher, secret: &str, drivers: &str) -> World {
    let mut w = World::new();
    w.set("BROADCAST_DRIVER", drivers);
    for (k, v) in fake.env(secret) {
        w.set(k, &v);
    }
    w
}

fn slack_world(hook: &FakeWebhook) -> World {
    let mut w = World::new();
    w.set("BROADCAST_DRIVER", "null")
        .set("INVENTORY_SLACK_NOTIFICATIONS", "true")
        .set("INVENTORY_SLACK_WEBHOOK_URL", &hook.url());
    w
}

#[test]
fn fake_pusher_checks_what_pusher_checks() {
    use inventory_broadcast::broadcast::pusher::{body, signed_query};
    let fake = FakePusher::start("77", "key77", SECRET);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let post = |query: &str, body: &[u8]| -> u16 {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build(),
        );
        let url = format!("http://127.0.0.1:{}/apps/77/events?{query}", fake.port());
        agent
            .post(&url)
            .content_type("application/json")
            .send(body)
            .expect("fake answers")
            .status()
            .as_u16()
    };
    let good = body("e", &["c".into()], "{\"a\":1}").unwrap();
    assert_eq!(
        post(&signed_query("77", "key77", SECRET, &good, now), &good),
        200
    );
    let wrong_secret = signed_query("77", "key77", "not-the-secret", &good, now);
    assert_eq!(post(&wrong_secret, &good), 401);
    let stale = signed_query("77", "key77", SECRET, &good, now - 601);
    assert_eq!(post(&stale, &good), 401);
    let other = body("e", &["c".into()], "{\"a\":2}").unwrap();
    let md5_of_other = signed_query("77", "key77", SECRET, &other, now);
    assert_eq!(post(&md5_of_other, &good), 401, "body_md5 of another body");
    let wrong_key = signed_query("77", "other-key", SECRET, &good, now);
    assert_eq!(post(&wrong_key, &good), 401);
    // The fake's limits are Pusher's: a body the driver would refuse to build gets 413.
    let big =
        serde_json::json!({"name": "e", "channels": ["c"], "data": "x".repeat(10 * 1024 + 1)})
            .to_string()
            .into_bytes();
    assert_eq!(
        post(&signed_query("77", "key77", SECRET, &big, now), &big),
        413
    );
    assert_eq!(fake.events().len(), 1);
}

#[test]
fn pusher_events_are_signed_and_accepted() {
    let fake = FakePusher::start("4242", "test-key", SECRET);
    let w = pusher_world(&fake, SECRET, "pusher");
    ok(w.run("notify", &["--count", "25"]));
    let out = ok(w.run("queue-work", &["--stop-when-empty"]));
    assert!(
        stderr(&out).contains("broadcast:pusher DONE"),
        "{}",
        stderr(&out)
    );
    let events = fake.events();
    assert_eq!(events.len(), 1, "{:?}", fake.answers());
    let e = &events[0];
    assert_eq!(e.name, "App\\Events\\ItemCountExeed");
    assert_eq!(e.channels, std::slice::from_ref(&w.channel));
    assert_eq!(e.data["count"], 25);
    assert_eq!(e.data["severity"], "high");
    assert_eq!(e.data["threshold"], 20);
    assert!(e.data.get("socket").is_none(), "{}", e.raw_data);
    assert!(
        e.raw_data.starts_with("{\"count\":25,"),
        "data is a JSON string: {}",
        e.raw_data
    );

    // --sync goes through the same driver, without the queue.
    let out = ok(w.run("notify", &["--count", "31", "--sync"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("via pusher"));
    assert_eq!(fake.events()[1].data["severity"], "critical");
}

#[test]
fn pusher_500_is_retried_then_accepted() {
    let fake = FakePusher::start("4242", "test-key", SECRET);
    fake.fail_next(&[500, 503]);
    let w = pusher_world(&fake, SECRET, "pusher");
    ok(w.run("notify", &["--count", "21"]));
    let out = ok(w.run("queue-work", &["--stop-when-empty", "--backoff", "0"]));
    let err = stderr(&out);
    assert_eq!(err.matches("RETRY").count(), 2, "{err}");
    assert!(
        err.contains("answered 500") && err.contains("answered 503"),
        "{err}"
    );
    assert_eq!(err.matches("broadcast:pusher DONE").count(), 1, "{err}");
    assert_eq!(fake.events().len(), 1);
    assert!(w.db.failed_jobs().is_empty());
}

#[test]
fn pusher_wrong_secret_fails_at_once_with_the_response_body() {
    let fake = FakePusher::start("4242", "test-key", "the-real-secret");
    let w = pusher_world(&fake, "a-wrong-secret", "pusher");
    ok(w.run("notify", &["--count", "21"]));
    let out = ok(w.run("queue-work", &["--stop-when-empty", "--tries", "5"]));
    let err = stderr(&out);
    assert!(!err.contains("RETRY"), "a 401 is not retried: {err}");
    assert_eq!(fake.answers().len(), 1);
    let failed = w.db.failed_jobs();
    assert_eq!(failed.len(), 1);
    let exception = &failed[0].2;
    assert!(
        exception.contains("attempt 1") && exception.contains("401"),
        "{exception}"
    );
    assert!(exception.contains("Invalid signature"), "{exception}");
    for text in [exception.as_str(), err.as_str()] {
        assert!(!text.contains("a-wrong-secret") && !text.contains("the-real-secret"));
    }
}

#[test]
fn pusher_413_is_permanent() {
    let fake = FakePusher::start("4242", "test-key", SECRET);
    fake.set_max_data(100);
    let w = pusher_world(&fake, SECRET, "pusher");
    ok(w.run("notify", &["--count", "21"]));
    ok(w.run("queue-work", &["--stop-when-empty"]));
    let failed = w.db.failed_jobs();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].2.contains("413"), "{}", failed[0].2);
    assert_eq!(fake.answers().len(), 1);
}

#[test]
fn a_pusher_outage_neither_delays_nor_repeats_the_redis_broadcast() {
    let fake = FakePusher::start("4242", "test-key", SECRET);
    fake.fail_next(&[500; 10]);
    // Pusher first on purpose: its failures must not hold up the redis job behind it.
    let w = pusher_world(&fake, SECRET, "pusher,redis");
    let mut sub = w.subscribe();
    let out = ok(w.run("notify", &["--count", "25", "--json"]));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = printed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["broadcast:pusher", "broadcast:redis"]);
    let worker = w.spawn(
        "queue-work",
        &["--tries", "3", "--backoff", "1", "--sleep", "0.2"],
    );
    let msg = sub.next();
    assert_eq!(msg["data"]["count"], 25);
    // The redis broadcast did not wait for Pusher's retries (1 s + 1 s) to run out.
    assert!(
        w.db.failed_jobs().is_empty(),
        "redis arrived only after the pusher job failed for good"
    );
    worker.wait_for_log("broadcast:pusher FAIL");
    assert_eq!(fake.answers().len(), 3);
    // Nothing repeated the redis broadcast: the next message on the channel is the sentinel.
    ok(w.run("notify", &["--count", "999"]));
    assert_eq!(sub.next()["data"]["count"], 999);
    assert_eq!(
        worker.count_log("broadcast:redis DONE"),
        2,
        "{:?}",
        worker.log()
    );
}

#[test]
fn slack_message_arrives_with_the_right_text() {
    let hook = FakeWebhook::start(&[]);
    let w = slack_world(&hook);
    let out = ok(w.run("notify", &["--count", "31"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("(notify:slack)"), "{stdout}");
    ok(w.run("queue-work", &["--stop-when-empty"]));
    let texts = hook.wait_delivered(1);
    let text = &texts[0];
    for needle in [
        ":rotating_light: *CRITICAL: 31 items (155% of threshold 20)*",
        "Item count: 31",
        "Threshold: 20 (155% reached)",
        "Severity: critical",
        "Time: ",
        " UTC",
        "Host: ",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }

    // Below Slack's minimum (high) nothing is queued for it; --sync --force sends at once.
    let out = ok(w.run("notify", &["--count", "21"]));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("notify:slack"));
    let out = ok(w.run("notify", &["--count", "21", "--sync", "--force"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("notified slack"));
    let texts = hook.wait_delivered(2);
    assert!(
        texts[1].contains("WARNING (sent by hand): 21 items"),
        "{}",
        texts[1]
    );
}

#[test]
fn a_webhook_failing_twice_then_succeeding_delivers_exactly_once() {
    let hook = FakeWebhook::start(&[Step::Status(500), Step::Status(503)]);
    let w = slack_world(&hook);
    ok(w.run("notify", &["--count", "31"]));
    let out = ok(w.run(
        "queue-work",
        &["--stop-when-empty", "--backoff", "0", "--tries", "5"],
    ));
    let err = stderr(&out);
    assert_eq!(err.matches("notify:slack RETRY").count(), 2, "{err}");
    assert_eq!(err.matches("notify:slack DONE").count(), 1, "{err}");
    assert_eq!(hook.delivered().len(), 1);
    assert_eq!(hook.attempts(), 3);
    // The webhook's path is its credential: never in a log line.
    assert!(!err.contains("webhook-s3cret-token"), "{err}");
}

#[test]
fn a_hanging_webhook_is_cut_off_by_the_timeout_and_retried() {
    let hook = FakeWebhook::start(&[Step::Hang]);
    let mut w = slack_world(&hook);
    // The job carries the timeout it was queued with.
    w.set("INVENTORY_QUEUE_TIMEOUT", "2");
    ok(w.run("notify", &["--count", "31"]));
    let started = Instant::now();
    let out = ok(w.run("queue-work", &["--stop-when-empty", "--backoff", "0"]));
    let elapsed = started.elapsed();
    let err = stderr(&out);
    // Cut off by the HTTP client's timeout or by the worker's deadline for the job, whichever
    // notices first: both are the job's 2 s.
    assert!(
        err.contains("no answer within 2.0 s") || err.contains("timed out after 2 s"),
        "{err}"
    );
    assert_eq!(err.matches("notify:slack RETRY").count(), 1, "{err}");
    assert_eq!(hook.wait_delivered(1).len(), 1);
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
}

#[test]
fn email_arrives_over_smtp_with_the_right_text() {
    let smtp = FakeSmtp::start();
    let mut w = World::new();
    w.set("BROADCAST_DRIVER", "null")
        .set("INVENTORY_EMAIL_NOTIFICATIONS", "true")
        .set("MAIL_HOST", "127.0.0.1")
        .set("MAIL_PORT", &smtp.port.to_string())
        .set("MAIL_ENCRYPTION", "null")
        .set("MAIL_FROM_ADDRESS", "alerts@example.test")
        .set(
            "INVENTORY_EMAIL_TO",
            "ops@example.test, oncall@example.test",
        );
    // Email's minimum is critical: 25 (high) queues nothing for it, 31 does.
    let out = ok(w.run("notify", &["--count", "25"]));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("notify:mail"));
    let out = ok(w.run("notify", &["--count", "31"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(notify:mail)"));
    let out = ok(w.run("queue-work", &["--stop-when-empty"]));
    assert!(
        stderr(&out).contains("notify:mail DONE"),
        "{}",
        stderr(&out)
    );
    let mails = smtp.wait_mails(1);
    assert_eq!(mails.len(), 1);
    let m = &mails[0];
    assert_eq!(m.from, "alerts@example.test");
    assert_eq!(m.to, ["ops@example.test", "oncall@example.test"]);
    for needle in [
        "Subject: [inventory] CRITICAL: 31 items (155% of threshold 20)",
        "From: Inventory <alerts@example.test>",
        "Item count: 31",
        "Threshold: 20 (155% reached)",
        "Severity: critical",
        "Host: ",
    ] {
        assert!(m.data.contains(needle), "{needle:?} not in\n{}", m.data);
    }
}

#[test]
fn an_unreachable_smtp_server_is_retried_then_failed() {
    let mut w = World::new();
    w.set("BROADCAST_DRIVER", "null")
        .set("INVENTORY_EMAIL_NOTIFICATIONS", "true")
        .set("MAIL_HOST", "127.0.0.1")
        .set("MAIL_PORT", "1")
        .set("MAIL_ENCRYPTION", "null")
        .set("MAIL_USERNAME", "me")
        .set("MAIL_PASSWORD", "smtp-pa55word")
        .set("MAIL_FROM_ADDRESS", "alerts@example.test")
        .set("INVENTORY_EMAIL_TO", "ops@example.test");
    ok(w.run("notify", &["--count", "31"]));
    let out = ok(w.run(
        "queue-work",
        &["--stop-when-empty", "--backoff", "0", "--tries", "2"],
    ));
    let err = stderr(&out);
    assert!(err.contains("notify:mail RETRY"), "{err}");
    let failed = w.db.failed_jobs();
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0].2.contains("SMTP server 127.0.0.1:1"),
        "{}",
        failed[0].2
    );
    assert!(!err.contains("smtp-pa55word") && !failed[0].2.contains("smtp-pa55word"));
}

#[test]
fn pusher_without_credentials_is_a_config_error() {
    let mut w = World::new();
    w.set("BROADCAST_DRIVER", "redis,pusher")
        .set("PUSHER_APP_ID", "1")
        .set("PUSHER_APP_SECRET", "s3cret");
    for bin in ["queue-work", "items-listen"] {
        let out = w.run(bin, &[]);
        assert_eq!(out.status.code(), Some(2), "{bin}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("pusher.key") && err.contains("PUSHER_APP_KEY"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }
    w.set("MAIL_ENCRYPTION", "starttls");
    let out = w.run("notify", &["--count", "1", "--dry-run"]);
    assert_eq!(out.status.code(), Some(2));
}

#[cfg(unix)]
#[test]
fn a_config_file_with_a_secret_readable_by_others_gets_one_warning() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new();
    let file = w.dir.join("secret.toml");
    std::fs::write(
        &file,
        "[pusher]\nsecret = \"file-s3cret-value\"\n[mail]\npassword = \"mail-s3cret\"\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = ok(w.run("notify", &["--count", "1", "--dry-run", "--config", path]));
    let err = stderr(&out);
    assert_eq!(err.matches("WARN").count(), 1, "{err}");
    assert!(
        err.contains(path) && err.contains("pusher.secret") && err.contains("mail.password"),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "{err}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = ok(w.run("notify", &["--count", "1", "--dry-run", "--config", path]));
    assert!(!stderr(&out).contains("WARN"), "{}", stderr(&out));
}

#[test]
fn slow_jobs_of_a_batch_are_handed_back_before_their_reservation_runs_short() {
    // Every call hangs: each attempt of each Slack job takes its whole 1 s timeout.
    let hook = FakeWebhook::start(&[Step::Hang; 12]);
    let mut w = slack_world(&hook);
    w.set("INVENTORY_QUEUE_TIMEOUT", "1");
    for _ in 0..3 {
        ok(w.run("notify", &["--count", "31", "--force"]));
    }
    // The first worker reserves all six jobs (3 null broadcasts, 3 Slack) in one batch; with
    // retry_after 2 it can start only one 1-s job per reservation, so it must hand the others
    // back unrun. Were they left to expire, the second worker would take them over while the
    // first still meant to run them: some job would run three times, or fail unrun.
    let args = [
        "--stop-when-empty",
        "--tries",
        "2",
        "--backoff",
        "0",
        "--timeout",
        "1",
        "--retry-after",
        "2",
    ];
    let mut first = w.spawn("queue-work", &args);
    first.wait_for_log("RUNNING");
    let mut second = w.spawn("queue-work", &args);
    assert_eq!(first.wait_exit_within(Duration::from_secs(30)), Some(0));
    assert_eq!(second.wait_exit_within(Duration::from_secs(30)), Some(0));
    let log = [first.log(), second.log()].concat().join("\n");
    let failed = w.db.failed_jobs();
    assert_eq!(failed.len(), 3, "{log}");
    for (id, _, exception) in &failed {
        // Two real attempts each: no attempt was used up by waiting in a batch.
        assert!(exception.starts_with("attempt 2:"), "{exception}\n{log}");
        let running = log
            .lines()
            .filter(|l| l.contains(id.as_str()) && l.contains("RUNNING"))
            .count();
        assert_eq!(running, 2, "job {id}:\n{log}");
    }
    assert!(!log.contains("more than its"), "{log}");
}

#[test]
fn a_publish_counts_its_receivers_and_one_nobody_heard() {
    use inventory_broadcast::broadcast::{Broadcaster, RedisBroadcaster};
    let w = World::new();
    let config = w.config();
    let mut driver = RedisBroadcaster::new(&config.broadcast);
    let alert = crate::support::job("broadcast:redis", 25).payload;
    driver.broadcast(&alert, Duration::from_secs(5)).unwrap();
    assert_eq!(
        driver.stats(),
        (1, 0, 1),
        "nobody listened: delivered, and counted as unheard"
    );
    let mut sub = w.subscribe();
    driver.broadcast(&alert, Duration::from_secs(5)).unwrap();
    assert!(sub.next_raw(crate::support::DEADLINE).is_some());
    assert_eq!(driver.stats(), (2, 1, 1));
    let (published, _, _) = inventory_broadcast::broadcast::published();
    assert!(published >= 2);
}
