//! The Redis queue's semantics, against a real Redis.

use crate::support::World;
use inventory_broadcast::event::Alert;
use inventory_broadcast::queue::{Job, Outcome};
use inventory_broadcast::severity::Boundaries;
use std::time::{Duration, Instant};

fn job(count: u64) -> Job {
    let alert = Alert::new(count, 20, &Boundaries::default(), "test");
    Job::new("broadcast:null".parse().unwrap(), alert, 3, vec![1], 60)
}

const LONG: Duration = Duration::from_secs(60);

#[test]
fn push_pop_ack_in_order() {
    let w = World::new();
    let mut q = w.queue();
    q.push("default", &[job(1), job(2), job(3)]).unwrap();
    let popped = q.pop("default", 2, LONG, false).unwrap();
    let counts: Vec<u64> = popped
        .jobs
        .iter()
        .map(|r| Job::decode(&r.raw).unwrap().payload.count)
        .collect();
    assert_eq!(counts, [1, 2]);
    assert!(popped.jobs.iter().all(|r| r.attempts == 1));
    let sizes = q.sizes("default").unwrap();
    assert_eq!((sizes.pending, sizes.reserved), (1, 2));
    let done: Vec<_> = popped.jobs.iter().map(|r| (r, Outcome::Done)).collect();
    assert_eq!(q.finish("default", &done, &Default::default()).unwrap(), 2);
    let sizes = q.sizes("default").unwrap();
    assert_eq!((sizes.pending, sizes.reserved), (1, 0));
    // Every pushed job left one notify entry, and reserving took one per job.
    let mut con = w.redis();
    let notify: u64 = redis::cmd("LLEN")
        .arg(q.keys("default").notify)
        .query(&mut con)
        .unwrap();
    assert_eq!(notify, 1);
}

#[test]
fn an_expired_reservation_charges_only_the_jobs_that_started() {
    let w = World::new();
    let mut q = w.queue();
    q.push("default", &[job(1), job(2), job(3)]).unwrap();
    let batch = q
        .pop("default", 3, Duration::from_millis(200), false)
        .unwrap()
        .jobs;
    assert_eq!(batch.len(), 3);
    // The dead worker had started the first job only.
    assert_eq!(q.start("default", &[&batch[0]]).unwrap(), 1);
    let end = Instant::now() + Duration::from_secs(5);
    let mut back = Vec::new();
    while back.len() < 3 {
        assert!(
            Instant::now() < end,
            "the jobs never came back: {}",
            back.len()
        );
        let popped = q.pop("default", 3, LONG, false).unwrap();
        if popped.jobs.is_empty() {
            q.wait(&["default".to_string()], popped.next_due.unwrap_or(LONG))
                .unwrap();
        }
        back.extend(popped.jobs);
    }
    let attempts: Vec<(bool, u32)> = back
        .iter()
        .map(|r| (r.raw == batch[0].raw, r.attempts))
        .collect();
    assert!(attempts.contains(&(true, 2)), "{attempts:?}");
    assert_eq!(
        attempts.iter().filter(|a| **a == (false, 1)).count(),
        2,
        "{attempts:?}"
    );
}

#[test]
fn an_expired_reservation_comes_back_as_attempt_2() {
    let w = World::new();
    let mut q = w.queue();
    q.push("default", &[job(7)]).unwrap();
    let first = q
        .pop("default", 1, Duration::from_millis(200), false)
        .unwrap()
        .jobs
        .remove(0);
    assert_eq!(first.attempts, 1);
    // The "dead worker" started it, then never finished; wait for the reservation to expire.
    assert_eq!(q.start("default", &[&first]).unwrap(), 1);
    let end = Instant::now() + Duration::from_secs(5);
    let second = loop {
        let mut popped = q.pop("default", 1, LONG, false).unwrap();
        if let Some(r) = popped.jobs.pop() {
            break r;
        }
        assert!(Instant::now() < end, "the job never came back");
        q.wait(&["default".to_string()], popped.next_due.unwrap_or(LONG))
            .unwrap();
    };
    assert_eq!(second.raw, first.raw);
    assert_eq!(second.attempts, 2);
    // The first worker wakes up late: its stale reservation must not remove the new one.
    assert_eq!(
        q.finish("default", &[(&first, Outcome::Done)], &Default::default())
            .unwrap(),
        0
    );
    assert_eq!(q.sizes("default").unwrap().reserved, 1);
    assert_eq!(
        q.finish("default", &[(&second, Outcome::Done)], &Default::default())
            .unwrap(),
        1
    );
    assert_eq!(q.sizes("default").unwrap().reserved, 0);
}

#[test]
fn a_released_job_waits_its_backoff() {
    let w = World::new();
    let mut q = w.queue();
    q.push("default", &[job(9)]).unwrap();
    let r = q.pop("default", 1, LONG, false).unwrap().jobs.remove(0);
    let released_at = Instant::now();
    q.finish(
        "default",
        &[(&r, Outcome::RetryAfter(Duration::from_millis(300)))],
        &Default::default(),
    )
    .unwrap();
    let popped = q.pop("default", 1, LONG, false).unwrap();
    assert!(
        popped.jobs.is_empty(),
        "delayed job must not be handed out early"
    );
    let due = popped.next_due.expect("a delayed job is due later");
    assert!(due <= Duration::from_millis(300));
    q.wait(&["default".to_string()], due).unwrap();
    let again = loop {
        let mut p = q.pop("default", 1, LONG, false).unwrap();
        if let Some(j) = p.jobs.pop() {
            break j;
        }
        assert!(released_at.elapsed() < Duration::from_secs(5));
        q.wait(&["default".to_string()], p.next_due.unwrap_or(LONG))
            .unwrap();
    };
    assert!(released_at.elapsed() >= Duration::from_millis(300));
    assert_eq!(again.attempts, 2);
}

#[test]
fn a_push_wakes_a_blocked_worker() {
    let w = World::new();
    let mut q = w.queue();
    let prefix = w.prefix.clone();
    let pusher = std::thread::spawn(move || {
        let mut other = inventory_broadcast::queue::Queue::connect(
            &inventory_broadcast::redis_conn::RedisConfig::url(&crate::support::redis_url()),
            &prefix,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        other.push("default", &[job(1)]).unwrap();
    });
    let started = Instant::now();
    let woke = q
        .wait(
            &["other".to_string(), "default".to_string()],
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(woke.as_deref(), Some("default"));
    assert!(started.elapsed() < Duration::from_secs(5));
    let popped = q.pop("default", 1, LONG, true).unwrap();
    assert_eq!(popped.jobs.len(), 1);
    pusher.join().unwrap();
}

#[test]
fn a_released_job_goes_back_to_the_head_without_counting_an_attempt() {
    let w = World::new();
    let mut q = w.queue();
    q.push("default", &[job(1), job(2)]).unwrap();
    let mut popped = q.pop("default", 2, LONG, false).unwrap().jobs;
    let second = popped.pop().unwrap();
    assert_eq!(
        q.finish(
            "default",
            &[(&second, Outcome::Release)],
            &Default::default()
        )
        .unwrap(),
        1
    );
    let sizes = q.sizes("default").unwrap();
    assert_eq!((sizes.pending, sizes.reserved), (1, 1));
    let again = q.pop("default", 1, LONG, false).unwrap().jobs.remove(0);
    assert_eq!(again.raw, second.raw);
    assert_eq!(again.attempts, 1, "the released reservation did not count");
}

#[test]
fn a_job_pushed_again_starts_at_attempt_0() {
    let w = World::new();
    let mut q = w.queue();
    let j = job(4);
    q.push("default", std::slice::from_ref(&j)).unwrap();
    let r = q.pop("default", 1, LONG, false).unwrap().jobs.remove(0);
    // As if its worker died: the attempts entry stays behind; then the same bytes are pushed
    // again (what `failed retry` does).
    let mut con = w.redis();
    let _: () = redis::cmd("ZREM")
        .arg(q.keys("default").reserved)
        .arg(r.raw.as_slice())
        .query(&mut con)
        .unwrap();
    q.push("default", &[j]).unwrap();
    let again = q.pop("default", 1, LONG, false).unwrap().jobs.remove(0);
    assert_eq!(again.raw, r.raw);
    assert_eq!(again.attempts, 1);
}
