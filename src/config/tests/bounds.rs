//! Unit tests of the bounds: each is refused at start naming its key, and no value the
//! configuration accepts can overflow the arithmetic done with it.

use super::{env, err};
use crate::bounds::*;
use crate::config::{Config, Sources};
use crate::event::MAX_COUNT;
use crate::queue::Job;
use std::time::{Duration, Instant};

#[test]
fn each_bound_is_refused_naming_its_key() {
    let over = |n: u64| (n + 1).to_string();
    let steps = vec!["1"; MAX_BACKOFF_STEPS + 1].join(",");
    for (var, value, key) in [
        (
            "INVENTORY_QUEUE_TRIES",
            over(u64::from(MAX_TRIES)),
            "queue.tries",
        ),
        (
            "INVENTORY_QUEUE_BACKOFF",
            format!("1,{}", over(MAX_BACKOFF_S)),
            "queue.backoff",
        ),
        ("INVENTORY_QUEUE_BACKOFF", steps, "queue.backoff"),
        (
            "INVENTORY_QUEUE_TIMEOUT",
            over(MAX_TIMEOUT_S),
            "queue.timeout",
        ),
        (
            "INVENTORY_QUEUE_RETRY_AFTER",
            over(MAX_RETRY_AFTER_S),
            "queue.retry_after",
        ),
        (
            "INVENTORY_QUEUE_RETRY_AFTER",
            "18446744073709551615".into(),
            "queue.retry_after",
        ),
        (
            "INVENTORY_QUEUE_TIMEOUT",
            "18446744073709551614".into(),
            "queue.timeout",
        ),
        (
            "INVENTORY_ALERT_REPEAT_INTERVAL",
            "367d".into(),
            "alerts.repeat_interval",
        ),
        (
            "INVENTORY_DB_STATEMENT_TIMEOUT",
            "367d".into(),
            "database.statement_timeout",
        ),
        (
            "INVENTORY_NOTIFICATION_THRESHOLD",
            over(MAX_COUNT),
            "inventory.threshold",
        ),
        (
            "INVENTORY_SEVERITY_CRITICAL",
            over(u64::from(MAX_PERCENT)),
            "severity.critical",
        ),
        ("INVENTORY_QUEUE", "a{b}".into(), "queue.names"),
    ] {
        let msg = err(Sources {
            env: env(&[(var, value.as_str())]),
            ..Default::default()
        });
        assert!(
            msg.contains(key) && msg.contains(var),
            "{var}={value}: {msg}"
        );
    }
}

/// A small deterministic generator (xorshift64*), so the property needs no extra crate and
/// a failure repeats.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }

    /// Mostly the edges (0, 1, max), sometimes anything in between.
    fn upto(&mut self, max: u64) -> u64 {
        match self.below(4) {
            0 => max,
            1 => 1.min(max),
            _ => self.below(max.saturating_add(1)),
        }
    }
}

#[test]
fn no_accepted_value_can_overflow() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    // Lua numbers are doubles: a deadline in ms must stay exact, a century from now included.
    let now_ms = crate::clock::now_ms() + 100 * 366 * 86_400_000;
    let exact = 1u64 << 53;
    let mut accepted = 0;
    for _ in 0..3_000 {
        let retry_after = rng.upto(MAX_RETRY_AFTER_S).max(2);
        let timeout = rng.upto(retry_after - 1).max(1);
        let steps = (rng.upto(4) + 1) as usize;
        let backoff: Vec<String> = (0..steps)
            .map(|_| rng.upto(MAX_BACKOFF_S).to_string())
            .collect();
        let tries = rng.upto(u64::from(MAX_TRIES));
        let pairs = [
            ("INVENTORY_QUEUE_RETRY_AFTER", retry_after.to_string()),
            ("INVENTORY_QUEUE_TIMEOUT", timeout.to_string()),
            ("INVENTORY_QUEUE_BACKOFF", backoff.join(",")),
            ("INVENTORY_QUEUE_TRIES", tries.to_string()),
            (
                "INVENTORY_NOTIFICATION_THRESHOLD",
                rng.upto(MAX_COUNT).max(1).to_string(),
            ),
        ];
        let env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let Ok(c) = Config::resolve(&Sources {
            env,
            ..Default::default()
        }) else {
            continue;
        };
        accepted += 1;
        let q = &c.queue;
        // The reservation deadline the pop script computes.
        let retry_ms = u64::try_from(Duration::from_secs(q.retry_after).as_millis()).unwrap();
        assert!(
            now_ms.checked_add(retry_ms).is_some_and(|d| d < exact),
            "{q:?}"
        );
        // The worker's own deadline check and its waits.
        let t = Duration::from_secs(q.timeout);
        assert!(
            Instant::now()
                .checked_add(t + Duration::from_secs(q.retry_after))
                .is_some()
        );
        // Every retry's delay, for every attempt a job can reach, also for a job whose own
        // backoff (from the queue, untrusted) is absurd.
        let alert = crate::event::Alert::new(21, c.threshold, &c.boundaries, "test");
        let kind = "broadcast:null".parse().unwrap();
        let ours = Job::new(kind, alert.clone(), q.tries, q.backoff.clone(), q.timeout);
        let theirs = Job::new(kind, alert, u32::MAX, vec![u64::MAX], u64::MAX);
        for job in [&ours, &theirs] {
            for attempts in [1, 2, q.tries, q.tries.saturating_add(1), u32::MAX] {
                let delay_ms = job.backoff_after(attempts) * 1000;
                assert!(
                    now_ms.checked_add(delay_ms).is_some_and(|d| d < exact),
                    "{job:?}"
                );
            }
        }
        let capped = crate::worker::effective_timeout(theirs.timeout, q.timeout);
        assert!(capped <= t);
    }
    assert!(
        accepted > 1_000,
        "the generator mostly made valid configurations: {accepted}"
    );
}
