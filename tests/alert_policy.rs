//! The alert policy for people against a real Redis: a clock the test controls, several
//! listeners sharing one state, and the binaries obeying it.

use crate::support::World;
use crate::support::fake_webhook::FakeWebhook;
use inventory_broadcast::config::{Config, Sources};
use inventory_broadcast::event::Alert;
use inventory_broadcast::notify::NoticeKind;
use inventory_broadcast::queue::Job;
use inventory_broadcast::service::{Dispatcher, People, Plan};
use std::collections::HashMap;
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The config of a listener in `w` with Slack on at `min` (its webhook is never called here).
fn config(w: &World, min: &str) -> Config {
    let env: HashMap<String, String> = [
        ("REDIS_URL", crate::support::redis_url()),
        ("INVENTORY_QUEUE_PREFIX", w.prefix.clone()),
        ("INVENTORY_NOTIFICATION_THRESHOLD", "20".into()),
        ("BROADCAST_DRIVER", "null".into()),
        ("INVENTORY_SLACK_NOTIFICATIONS", "true".into()),
        (
            "INVENTORY_SLACK_WEBHOOK_URL",
            "http://127.0.0.1:1/never-called".into(),
        ),
        ("INVENTORY_SLACK_MIN_SEVERITY", min.into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Config::resolve(&Sources {
        env,
        ..Default::default()
    })
    .expect("valid config")
}

/// What people were told, as the listener would dispatch it: "warning", "still high",
/// "resolved".
fn told(jobs: &[Job]) -> Vec<String> {
    jobs.iter()
        .filter(|j| j.job == "notify:slack")
        .map(|j| {
            let notice = j.notice.as_ref().expect("a notify job carries its notice");
            match notice.kind {
                NoticeKind::Raised => j.payload.severity.to_string(),
                NoticeKind::Repeated => format!("still {}", j.payload.severity),
                NoticeKind::Resolved => "resolved".into(),
                NoticeKind::Manual => "manual".into(),
            }
        })
        .collect()
}

/// Dispatches `count` as items-listen does, at `now`.
fn listen(d: &mut Dispatcher, config: &Config, count: u64, now: SystemTime) -> Vec<Job> {
    let alert = Alert::new(count, config.threshold, &config.boundaries, "items-listen");
    let plan = Plan {
        broadcast: alert.severity >= config.min_severity,
        people: People::Policy,
    };
    d.dispatch(&alert, plan, now).expect("dispatch")
}

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

#[test]
fn the_issue_series_gives_warning_high_critical_resolved_warning() {
    let w = World::new();
    let config = config(&w, "warning");
    // Two listeners sharing the Redis state, taking turns: they must agree as one would.
    let mut a = Dispatcher::connect(&config).unwrap();
    let mut b = Dispatcher::connect(&config).unwrap();
    let series = [19, 20, 21, 24, 25, 30, 30, 18, 19, 20];
    let mut all = Vec::new();
    for (i, count) in series.into_iter().enumerate() {
        let now = t0() + Duration::from_secs(60 * i as u64);
        let d = if i % 2 == 0 { &mut a } else { &mut b };
        all.extend(listen(d, &config, count, now));
    }
    assert_eq!(
        told(&all),
        ["warning", "high", "critical", "resolved", "warning"]
    );
    // What was queued is exactly what dispatch reported.
    let mut q = w.queue();
    let popped = q
        .pop("default", 100, Duration::from_secs(60), false)
        .unwrap();
    let queued: Vec<Job> = popped
        .jobs
        .iter()
        .map(|r| Job::decode(&r.raw).unwrap())
        .collect();
    assert_eq!(
        told(&queued),
        ["warning", "high", "critical", "resolved", "warning"]
    );
    // Broadcasts still got every count at or above the minimum severity.
    let broadcasts = queued.iter().filter(|j| j.job == "broadcast:null").count();
    assert_eq!(broadcasts, 7);
    let resolved = queued
        .iter()
        .find(|j| told(std::slice::from_ref(j)) == ["resolved"]);
    let notice = resolved.unwrap().notice.clone().unwrap();
    assert_eq!(
        notice.previous.map(|s| s.to_string()),
        Some("critical".into())
    );
    assert_eq!(notice.resolve_below, 19);
}

#[test]
fn an_unchanged_severity_repeats_only_after_the_repeat_interval() {
    let w = World::new();
    let config = config(&w, "high");
    let mut d = Dispatcher::connect(&config).unwrap();
    let at = |minutes: u64| t0() + Duration::from_secs(60 * minutes);
    assert_eq!(told(&listen(&mut d, &config, 25, at(0))), ["high"]);
    assert!(told(&listen(&mut d, &config, 26, at(59))).is_empty());
    assert_eq!(told(&listen(&mut d, &config, 26, at(60))), ["still high"]);
    assert!(told(&listen(&mut d, &config, 25, at(61))).is_empty());
    // A restart (a new dispatcher) picks up the same state.
    let mut restarted = Dispatcher::connect(&config).unwrap();
    assert!(told(&listen(&mut restarted, &config, 25, at(62))).is_empty());
    assert_eq!(
        told(&listen(&mut restarted, &config, 30, at(63))),
        ["critical"]
    );
}

#[test]
fn two_listeners_racing_on_the_same_count_notify_once() {
    let w = World::new();
    let config = config(&w, "warning");
    const ROUNDS: usize = 20;
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let config = config.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let mut d = Dispatcher::connect(&config).unwrap();
                let mut sent = Vec::new();
                for round in 0..ROUNDS {
                    // Both see 20 at the same instant, then both see 0 (resolving it).
                    let now = t0() + Duration::from_secs(60 * round as u64);
                    barrier.wait();
                    sent.extend(told(&listen(&mut d, &config, 20, now)));
                    barrier.wait();
                    sent.extend(told(&listen(&mut d, &config, 0, now)));
                }
                sent
            })
        })
        .collect();
    let sent: Vec<String> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    assert_eq!(sent.iter().filter(|s| *s == "warning").count(), ROUNDS);
    assert_eq!(sent.iter().filter(|s| *s == "resolved").count(), ROUNDS);
}

#[test]
fn items_listen_applies_the_policy_and_broadcasts_still_get_every_change() {
    let hook = FakeWebhook::start(&[]);
    let mut w = World::new();
    w.set("INVENTORY_SLACK_NOTIFICATIONS", "true")
        .set("INVENTORY_SLACK_WEBHOOK_URL", &hook.url())
        .set("INVENTORY_SLACK_MIN_SEVERITY", "warning");
    let mut sub = w.subscribe();
    let listener = w.spawn("items-listen", &[]);
    let _worker = w.spawn("queue-work", &[]);
    listener.wait_for_log("listening on channel");
    w.db.insert(25);
    for count in 20..=25 {
        assert_eq!(sub.next()["data"]["count"], count);
    }
    // 25 → 18 in one statement: one notification, which resolves the alert.
    w.db.client()
        .batch_execute("DELETE FROM items WHERE id IN (SELECT id FROM items LIMIT 7)")
        .unwrap();
    // Jobs run in order, so any extra message for 21…25 would arrive before "resolved".
    let texts = hook.wait_delivered(3);
    assert!(texts[0].contains("WARNING: 20 items"), "{texts:?}");
    assert!(texts[1].contains("HIGH: 24 items"), "{texts:?}");
    assert!(
        texts[2].contains("RESOLVED: 18 items, back below 19"),
        "{texts:?}"
    );
    assert!(texts[2].contains("alert was high"), "{texts:?}");
}

#[test]
fn notify_obeys_the_policy_unless_forced() {
    let hook = FakeWebhook::start(&[]);
    let mut w = World::new();
    w.set("INVENTORY_SLACK_NOTIFICATIONS", "true")
        .set("INVENTORY_SLACK_WEBHOOK_URL", &hook.url());
    let kinds = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = w.run("notify", &all);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["job"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        kinds(&["--count", "25"]),
        ["broadcast:redis", "notify:slack"]
    );
    assert_eq!(kinds(&["--count", "25"]), ["broadcast:redis"]);
    assert_eq!(
        kinds(&["--count", "25", "--force"]),
        ["broadcast:redis", "notify:slack"]
    );
    // --force recorded nothing: the policy still remembers "high", so critical is a rise.
    assert_eq!(
        kinds(&["--count", "30"]),
        ["broadcast:redis", "notify:slack"]
    );
    assert!(hook.delivered().is_empty(), "no worker ran");
}
