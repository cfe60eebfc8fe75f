//! `queue-work` as a job runner under stress: crashes, signals, timeouts, limits, many workers.
//! A job "hangs" by publishing to a private redis-server that the test pauses (SIGSTOP).

use crate::support::{DEADLINE, RedisServer, World};
use inventory_broadcast::queue::Sizes;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sizes(w: &World, queue: &str) -> (u64, u64, u64) {
    let Sizes {
        pending,
        delayed,
        reserved,
    } = w.queue().sizes(queue).expect("sizes");
    (pending, delayed, reserved)
}

/// Waits until nothing is pending, delayed or reserved (a worker's last finish may land just
/// after its DONE line).
fn wait_empty(w: &World, queue: &str) {
    crate::support::eventually("queue empty", DEADLINE, || {
        (sizes(w, queue) == (0, 0, 0)).then_some(())
    });
}

#[test]
fn a_worker_killed_mid_job_loses_nothing() {
    let mut w = World::new();
    let broadcast = RedisServer::start();
    w.set("BROADCAST_REDIS_URL", &broadcast.url());
    let mut sub = w.subscribe_at(&broadcast.url());
    let job = w.push_jobs("default", "broadcast:redis", 1).remove(0);
    let id = job.id.to_string();
    let args = ["--retry-after", "2", "--timeout", "1"];

    broadcast.pause();
    let mut first = w.spawn("queue-work", &args);
    first.wait_for_log(&format!("{id} broadcast:redis RUNNING (attempt 1)"));
    first.signal("KILL");
    let killed_at = Instant::now();
    assert_eq!(first.wait_exit(), None, "killed by SIGKILL");
    // It died mid-job: the job is still reserved, and no outcome was written.
    assert_eq!(sizes(&w, "default"), (0, 0, 1), "{:?}", first.log());
    // The killed worker's connection only ever sent its handshake (the server was frozen
    // before it could answer), so resuming cannot deliver a half-made PUBLISH.
    broadcast.resume();

    let second = w.spawn("queue-work", &args);
    let raw = sub.next_raw(DEADLINE).unwrap_or_else(|| {
        panic!(
            "no broadcast; second worker:\n{}\nfirst:\n{}",
            second.log().join("\n"),
            first.log().join("\n")
        )
    });
    let msg: serde_json::Value = serde_json::from_str(&raw).expect("JSON broadcast");
    let recovered = killed_at.elapsed();
    assert_eq!(msg["data"]["alert_id"], job.payload.alert_id.to_string());
    second.wait_for_log(&format!("{id} broadcast:redis DONE"));
    assert!(
        second
            .log()
            .iter()
            .any(|l| l.contains(&format!("{id} broadcast:redis DONE")) && l.contains("attempt 2")),
        "{:?}",
        second.log()
    );
    eprintln!(
        "recovery: a SIGKILLed worker's job completed on another worker {:.2} s after the kill \
         (retry_after 2 s)",
        recovered.as_secs_f64()
    );
    assert!(recovered < Duration::from_secs(10), "{recovered:?}");
    // Broadcast once more, and only once.
    assert_eq!(sub.next_raw(Duration::from_millis(500)), None);
    assert!(w.db.failed_jobs().is_empty());
    wait_empty(&w, "default");
}

#[test]
fn sigterm_during_a_job_finishes_it_and_exits_0() {
    let mut w = World::new();
    let broadcast = RedisServer::start();
    w.set("BROADCAST_REDIS_URL", &broadcast.url());
    let mut sub = w.subscribe_at(&broadcast.url());
    let job = w.push_jobs("default", "broadcast:redis", 1).remove(0);
    broadcast.pause();
    let mut worker = w.spawn("queue-work", &[]);
    worker.wait_for_log(&format!("{} broadcast:redis RUNNING", job.id));
    worker.signal("TERM");
    worker.wait_for_log("SIGTERM received");
    // The job is still in hand: let it finish.
    broadcast.resume();
    assert_eq!(worker.wait_exit(), Some(0), "{:?}", worker.log());
    assert_eq!(
        sub.next()["data"]["alert_id"],
        job.payload.alert_id.to_string()
    );
    assert_eq!(worker.count_log(" DONE ("), 1, "{:?}", worker.log());
    assert_eq!(sizes(&w, "default"), (0, 0, 0));
}

#[test]
fn a_second_signal_exits_at_once_and_the_job_comes_back() {
    let mut w = World::new();
    let broadcast = RedisServer::start();
    w.set("BROADCAST_REDIS_URL", &broadcast.url());
    let job = w.push_jobs("default", "broadcast:redis", 1).remove(0);
    // A 2 s window for the two signals while the job hangs.
    let args = ["--timeout", "2", "--retry-after", "3"];
    broadcast.pause();
    let mut worker = w.spawn("queue-work", &args);
    worker.wait_for_log(&format!("{} broadcast:redis RUNNING", job.id));
    worker.signal("INT");
    worker.wait_for_log("SIGINT received");
    worker.signal("INT");
    assert_eq!(worker.wait_exit(), Some(130), "{:?}", worker.log());
    assert_eq!(sizes(&w, "default"), (0, 0, 1), "left reserved");
    broadcast.resume();
    let mut again = w.spawn("queue-work", &[&args[..], &["--stop-when-empty"]].concat());
    assert_eq!(again.wait_exit(), Some(0), "{:?}", again.log());
    assert!(
        again.log_index("DONE (").is_some() && again.log_index("attempt 2").is_some(),
        "{:?}",
        again.log()
    );
    assert_eq!(sizes(&w, "default"), (0, 0, 0));
}

#[test]
fn four_workers_drain_10000_jobs_each_broadcast_once() {
    const JOBS: usize = 10_000;
    let w = World::new();
    let mut sub = w.subscribe();
    let started = Instant::now();
    let expected: HashSet<String> = w
        .push_jobs("default", "broadcast:redis", JOBS)
        .iter()
        .map(|j| j.payload.alert_id.to_string())
        .collect();
    let pushed = started.elapsed();
    let mut workers: Vec<_> = (0..4)
        .map(|i| {
            let name = format!("w{i}");
            w.spawn("queue-work", &["--stop-when-empty", "--name", &name])
        })
        .collect();
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut count = |raw: String| {
        let msg: serde_json::Value = serde_json::from_str(&raw).expect("JSON broadcast");
        let id = msg["data"]["alert_id"]
            .as_str()
            .expect("alert_id")
            .to_string();
        *seen.entry(id).or_default() += 1;
    };
    let end = Instant::now() + Duration::from_secs(120);
    let mut received = 0;
    while received < JOBS {
        assert!(
            Instant::now() < end,
            "only {received} of {JOBS} broadcasts arrived"
        );
        if let Some(raw) = sub.next_raw(Duration::from_secs(1)) {
            count(raw);
            received += 1;
        }
    }
    for worker in &mut workers {
        assert_eq!(
            worker.wait_exit_within(Duration::from_secs(60)),
            Some(0),
            "{:?}",
            worker.log().last()
        );
    }
    // Every publisher has exited, so a duplicate would already be on its way: drain it.
    while let Some(raw) = sub.next_raw(Duration::from_millis(300)) {
        count(raw);
    }
    eprintln!(
        "drain: {JOBS} jobs pushed in {:.2} s, run by 4 workers in {:.2} s",
        pushed.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let dupes: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(dupes.is_empty(), "broadcast more than once: {dupes:?}");
    assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), expected);
    let per_worker: Vec<usize> = workers.iter().map(|p| p.count_log(" DONE (")).collect();
    assert_eq!(per_worker.iter().sum::<usize>(), JOBS, "{per_worker:?}");
    assert!(per_worker.iter().all(|n| *n > 0), "{per_worker:?}");
    assert_eq!(sizes(&w, "default"), (0, 0, 0));
    assert!(w.db.failed_jobs().is_empty());
}

#[test]
fn a_job_past_its_timeout_is_abandoned_retried_then_failed_and_the_worker_goes_on() {
    let mut w = World::new();
    let broadcast = RedisServer::start();
    w.set("BROADCAST_REDIS_URL", &broadcast.url());
    broadcast.pause();
    let hung = w.push_jobs("default", "broadcast:redis", 1).remove(0).id;
    let next = w.push_jobs("default", "broadcast:log", 1).remove(0).id;
    let out = w.run(
        "queue-work",
        &[
            "--stop-when-empty",
            "--timeout",
            "1",
            "--retry-after",
            "3",
            "--tries",
            "2",
            "--backoff",
            "1",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    let at = |needle: String| {
        lines
            .iter()
            .position(|l| l.contains(&needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{err}"))
    };
    let retry = at(format!("{hung} broadcast:redis RETRY in 1s"));
    let done = at(format!("{next} broadcast:log DONE"));
    let fail = at(format!("{hung} broadcast:redis FAIL"));
    assert!(retry < done && done < fail, "{err}");
    assert!(err.contains("timed out"), "{err}");
    let failed = w.db.failed_jobs();
    assert_eq!(failed.len(), 1, "{failed:?}");
    let (uuid, payload, exception) = &failed[0];
    assert_eq!(*uuid, hung.to_string());
    assert!(
        exception.contains("attempt 2") && exception.contains("timed out"),
        "{exception}"
    );
    let job: serde_json::Value = serde_json::from_str(payload).unwrap();
    assert_eq!(job["attempts"], 2);
    assert_eq!(sizes(&w, "default"), (0, 0, 0));
}

#[test]
fn max_jobs_max_time_and_once_stop_when_they_should() {
    let w = World::new();
    w.push_jobs("default", "broadcast:null", 8);

    let out = w.run("queue-work", &["--max-jobs", "5", "--name", "limits"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches(" DONE (").count(), 5, "{err}");
    assert!(
        err.lines()
            .filter(|l| l.contains(" DONE (") || l.contains(" RUNNING "))
            .all(|l| l.contains("[limits] ")),
        "per-job lines carry the name: {err}"
    );
    assert_eq!(sizes(&w, "default"), (3, 0, 0));

    let out = w.run("queue-work", &["--once"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches(" DONE (").count(), 1, "{err}");
    assert_eq!(sizes(&w, "default"), (2, 0, 0));

    // --max-time works on while there is work, and stops when the time is up.
    let started = Instant::now();
    let out = w.run("queue-work", &["--max-time", "2"]);
    let elapsed = started.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches(" DONE (").count(), 2, "{err}");
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(5),
        "{elapsed:?}"
    );

    // --once with nothing queued waits one --sleep for a job, then gives up.
    let started = Instant::now();
    let out = w.run("queue-work", &["--once", "--sleep", "0.5"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(4));

    // -q silences the per-job lines.
    w.push_jobs("default", "broadcast:null", 1);
    let out = w.run("queue-work", &["--once", "-q"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stderr(&out), "");
    assert_eq!(sizes(&w, "default"), (0, 0, 0));
}

#[test]
fn the_first_queue_has_priority_and_the_name_comes_from_the_environment() {
    let mut w = World::new();
    let low = w.push_jobs("default", "broadcast:null", 2);
    let high = w.push_jobs("high", "broadcast:null", 2);
    w.set("INVENTORY_WORKER_NAME", "from-env");
    let out = w.run(
        "queue-work",
        &["--queue", "high,default", "--stop-when-empty"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let done: Vec<&str> = err.lines().filter(|l| l.contains(" DONE (")).collect();
    assert_eq!(done.len(), 4, "{err}");
    for (line, job) in done.iter().zip(high.iter().chain(&low)) {
        assert!(line.contains(&format!("[from-env] {}", job.id)), "{err}");
    }
}

#[test]
fn a_worker_killed_mid_batch_charges_only_the_job_it_had_started() {
    // A target that takes the connection and never answers: the first job hangs in it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fake = crate::support::fake_pusher::FakePusher::start("1", "key", "secret");
    let mut w = World::new();
    w.set("BROADCAST_DRIVER", "pusher");
    for (k, v) in fake.env("secret") {
        w.set(k, &v);
    }
    w.set(
        "PUSHER_PORT",
        &silent.local_addr().unwrap().port().to_string(),
    );
    let jobs = w.push_jobs("default", "broadcast:pusher", 5);
    let args = ["--tries", "1", "--timeout", "2", "--retry-after", "3"];
    let mut first = w.spawn("queue-work", &args);
    first.wait_for_log(&format!(
        "{} broadcast:pusher RUNNING (attempt 1)",
        jobs[0].id
    ));
    first.signal("KILL");
    assert_eq!(first.wait_exit(), None, "killed by SIGKILL");
    assert_eq!(
        sizes(&w, "default"),
        (0, 0, 5),
        "the whole batch was reserved"
    );

    // The next worker reaches a target that answers.
    w.set("PUSHER_PORT", &fake.port().to_string());
    let second = w.spawn("queue-work", &args);
    crate::support::eventually("every job finished", Duration::from_secs(20), || {
        (sizes(&w, "default") == (0, 0, 0)).then_some(())
    });
    let failed = w.db.failed_jobs();
    assert_eq!(
        failed.len(),
        1,
        "only the started job is charged: {failed:?}"
    );
    assert_eq!(failed[0].0, jobs[0].id.to_string());
    assert!(
        failed[0].2.contains("more than its 1 tries"),
        "{}",
        failed[0].2
    );
    for job in &jobs[1..] {
        second.wait_for_log(&format!("{} broadcast:pusher DONE", job.id));
        assert!(
            second
                .log()
                .iter()
                .any(|l| l.contains(&format!("{} broadcast:pusher RUNNING (attempt 1)", job.id))),
            "{} ran with its full tries",
            job.id
        );
    }
    assert_eq!(fake.events().len(), 4);
    drop(silent);
}
