//! Scaling out on real Redis deployments, started by the tests on free loopback ports: a
//! 3-primary Redis Cluster with a replica each (the pipeline on queues held by different
//! nodes, a failover and a slot migration mid-stream, TLS), and a primary with a replica
//! watched by 3 sentinels (a failover during 1,000 alerts).

use crate::support::topology::{RedisCluster, SentinelGroup, queue_key};
use crate::support::{DEADLINE, Proc, Subscriber, World, eventually, job};
use inventory_broadcast::queue::Queue;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A world whose queue is `cluster`: the first primary's URL lends password and TLS.
fn cluster_world(cluster: &RedisCluster) -> World {
    let mut w = World::new();
    let first = cluster.primary_ports()[0];
    w.set("REDIS_URL", &cluster.url_of(first));
    w.set("REDIS_CLUSTER_NODES", &cluster.seeds());
    w
}

/// A world working one queue of `cluster`: its name, the port of the primary holding it, and
/// a subscriber on another primary.
fn one_queue_world(cluster: &RedisCluster) -> (World, String, u16, Subscriber) {
    let mut w = cluster_world(cluster);
    let name = cluster.pick_queue_names(1, &w.prefix).remove(0);
    w.set("INVENTORY_QUEUE", &name);
    let holder = cluster.owner_of_key(&queue_key(&w.prefix, &name));
    let sub = w.subscribe_at(&cluster.url_of(other_primary(cluster, holder)));
    (w, name, holder, sub)
}

/// A primary of `cluster` other than `port`.
fn other_primary(cluster: &RedisCluster, port: u16) -> u16 {
    cluster
        .primary_ports()
        .into_iter()
        .find(|p| *p != port)
        .expect("another primary")
}

/// The item counts of the broadcasts received so far.
fn counts(sub: &Subscriber) -> Vec<u64> {
    sub.all()
        .iter()
        .filter_map(|(_, m)| serde_json::from_str::<serde_json::Value>(m).ok())
        .filter_map(|m| m["data"]["count"].as_u64())
        .collect()
}

/// Waits until every count in `want` was broadcast; panics naming the missing ones.
fn await_counts(sub: &Subscriber, want: &BTreeSet<u64>, within: Duration) {
    let end = Instant::now() + within;
    loop {
        let got: BTreeSet<u64> = counts(sub).into_iter().collect();
        let missing: Vec<u64> = want.difference(&got).copied().collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < end,
            "{} of {} broadcasts missing after {within:?}, e.g. {:?}",
            missing.len(),
            want.len(),
            &missing[..missing.len().min(10)]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU time (user + system) a process used so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap_or(0) + fields[12].parse::<u64>().unwrap_or(0)
}

#[test]
fn a_cluster_runs_the_pipeline_with_two_workers_on_queues_held_by_two_nodes() {
    let cluster = RedisCluster::start(3, 1);
    let mut w = cluster_world(&cluster);
    let names = cluster.pick_queue_names(2, &w.prefix);
    w.set("INVENTORY_QUEUE", &names.join(","));
    let holder = cluster.owner_of_key(&queue_key(&w.prefix, &names[0]));
    let sub = w.subscribe_at(&cluster.url_of(other_primary(&cluster, holder)));
    let listener = w.spawn("items-listen", &[]);
    let both = names.join(",");
    let reversed = format!("{},{}", names[1], names[0]);
    let workers = [
        w.spawn("queue-work", &["--queue", &both, "--name", "a"]),
        w.spawn("queue-work", &["--queue", &reversed, "--name", "b"]),
    ];
    listener.wait_for_log("listening on channel");
    for worker in &workers {
        worker.wait_for_log("working queue(s)");
    }
    w.db.insert(25);
    let want: BTreeSet<u64> = (20..=25).collect();
    await_counts(&sub, &want, DEADLINE);

    // Idle, both workers block on both nodes: no busy loop.
    let before: Vec<u64> = workers.iter().map(|p| cpu_ticks(p.pid())).collect();
    std::thread::sleep(Duration::from_secs(2));
    for (worker, before) in workers.iter().zip(before) {
        let used = cpu_ticks(worker.pid()) - before;
        assert!(used <= 5, "an idle worker used {used} ticks of CPU in 2 s");
    }

    // A job on the second queue (another node) wakes a worker at once.
    let config = w.config();
    let mut queue = Queue::connect(&config.redis, &w.prefix).expect("connect to the cluster");
    let woke = Instant::now();
    queue
        .push(&names[1], &[job("broadcast:redis", 999)])
        .expect("push onto the second queue");
    eventually("the job on the second queue is broadcast", DEADLINE, || {
        counts(&sub).contains(&999).then_some(())
    });
    println!(
        "second-queue job broadcast {:.1} ms after its push",
        woke.elapsed().as_secs_f64() * 1e3
    );
    let mut all = counts(&sub);
    all.sort_unstable();
    assert_eq!(
        all,
        [20, 21, 22, 23, 24, 25, 999],
        "exactly the expected broadcasts"
    );
    assert_eq!(sub.all().len(), 7, "no duplicate broadcasts");

    // `status` reads every node: both workers' and the listener's heartbeats, both queues.
    let status = w.status(&[]);
    assert_eq!(
        status["workers"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    assert_eq!(status["listeners"][0]["state"], "active", "{status}");
    assert_eq!(
        status["queues"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
    // `failed retry` puts a job back on its queue's node, where a worker takes it.
    let failed = job("broadcast:redis", 4242);
    let mut db = inventory_broadcast::db::Db::connect(&config.database).expect("connect");
    inventory_broadcast::db::failed::record(
        &mut db,
        &failed.id.to_string(),
        &names[1],
        &String::from_utf8(failed.encode()).expect("UTF-8"),
        "test",
    )
    .expect("record");
    let out = w.run("queue-work", &["failed", "retry", "all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("the retried job is broadcast", DEADLINE, || {
        counts(&sub).contains(&4242).then_some(())
    });
}

/// Pushes jobs carrying counts 1..=n onto `name` at a steady pace, runs `during` once
/// `n / 4` are acknowledged, and returns the acknowledged counts and the longest push.
fn stream(w: &World, name: &str, n: u64, during: impl FnOnce()) -> (BTreeSet<u64>, Duration) {
    let config = w.config();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let done = Arc::new(AtomicBool::new(false));
    let (prefix, name) = (w.prefix.clone(), name.to_string());
    let (sink, finished) = (Arc::clone(&acked), Arc::clone(&done));
    let producer = std::thread::spawn(move || {
        let mut queue = Queue::connect(&config.redis, &prefix).expect("connect the producer");
        let mut slowest = Duration::ZERO;
        for count in 1..=n {
            let started = Instant::now();
            if queue.push(&name, &[job("broadcast:redis", count)]).is_ok() {
                sink.lock().expect("acked").insert(count);
            }
            slowest = slowest.max(started.elapsed());
            std::thread::sleep(Duration::from_millis(5));
        }
        finished.store(true, Ordering::SeqCst);
        slowest
    });
    eventually("a quarter of the stream is acknowledged", DEADLINE, || {
        (acked.lock().expect("acked").len() as u64 >= n / 4).then_some(())
    });
    during();
    let slowest = producer.join().expect("producer");
    assert!(done.load(Ordering::SeqCst));
    let acked = acked.lock().expect("acked").clone();
    (acked, slowest)
}

#[test]
fn a_cluster_failover_of_the_queues_node_mid_stream_loses_no_acknowledged_job() {
    let cluster = RedisCluster::start(3, 1);
    let (w, name, holder, sub) = one_queue_world(&cluster);
    let worker = w.spawn("queue-work", &[]);
    worker.wait_for_log("working queue(s)");
    let mut promoted = 0;
    let (acked, slowest) = stream(&w, &name, 400, || {
        let started = Instant::now();
        promoted = cluster.failover(holder);
        println!(
            "CLUSTER FAILOVER of {holder} to {promoted} took {:.0} ms",
            started.elapsed().as_secs_f64() * 1e3
        );
    });
    assert_eq!(
        cluster.owner_of_key(&queue_key(&w.prefix, &name)),
        promoted,
        "the queue moved to the promoted replica"
    );
    assert_eq!(
        acked.len(),
        400,
        "every push succeeded within the failover timeout"
    );
    await_counts(&sub, &acked, DEADLINE);
    println!(
        "failover: longest push {:.0} ms",
        slowest.as_secs_f64() * 1e3
    );
}

#[test]
fn a_slot_migration_of_the_queues_slot_mid_stream_loses_nothing() {
    let cluster = RedisCluster::start(3, 0);
    let mut w = cluster_world(&cluster);
    let name = cluster.pick_queue_names(1, &w.prefix).remove(0);
    w.set("INVENTORY_QUEUE", &name);
    let key = queue_key(&w.prefix, &name);
    let holder = cluster.owner_of_key(&key);
    let target = other_primary(&cluster, holder);
    let sub = w.subscribe_at(&cluster.url_of(holder));
    let worker = w.spawn("queue-work", &[]);
    worker.wait_for_log("working queue(s)");
    let slot = RedisCluster::slot_of(&key);
    let (acked, slowest) = stream(&w, &name, 400, || {
        cluster.migrate_slot_slowly(slot, target, Duration::from_millis(20));
    });
    println!(
        "migration: longest push {:.0} ms",
        slowest.as_secs_f64() * 1e3
    );
    assert_eq!(cluster.owner_of_key(&key), target, "the slot moved");
    assert_eq!(
        acked.len(),
        400,
        "every push succeeded during the migration"
    );
    await_counts(&sub, &acked, DEADLINE);
}

#[test]
fn a_cluster_over_tls_runs_notify_and_the_worker() {
    let pki = crate::support::tls::TestPki::new();
    let cluster = RedisCluster::start_tls(&pki, 3, 0);
    let mut w = cluster_world(&cluster);
    w.set("REDIS_CA_CERT", &pki.ca.cert.display().to_string());
    let node = cluster.url_of(cluster.primary_ports()[1]);
    let sub = w.subscribe_at(&format!("{node}/#insecure"));
    let worker = w.spawn("queue-work", &[]);
    worker.wait_for_log("working queue(s)");
    let out = w.run("notify", &["--count", "42"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually("the alert is broadcast over TLS", DEADLINE, || {
        counts(&sub).contains(&42).then_some(())
    });
}

#[test]
fn a_sentinel_failover_during_1000_alerts_loses_none_and_nothing_restarts() {
    let group = SentinelGroup::start();
    let mut w = World::new();
    w.set("REDIS_URL", &group.url_of(group.primary_port()));
    w.set("REDIS_SENTINELS", &group.sentinels());
    w.set("REDIS_SENTINEL_SERVICE", group.service());
    w.set("INVENTORY_REDIS_WAIT_REPLICAS", "1");
    // Both data nodes carry the subscriber: PUBLISH reaches only the node it was sent to.
    let subs: Vec<Subscriber> = group
        .data_ports()
        .into_iter()
        .map(|p| w.subscribe_at(&group.url_of(p)))
        .collect();
    let listener = w.spawn("items-listen", &[]);
    let worker = w.spawn("queue-work", &[]);
    listener.wait_for_log("listening on channel");
    worker.wait_for_log("working queue(s)");
    let inserts = 1019; // counts 20..=1019: 1,000 alerts
    let db = w.db.url.clone();
    let writer = std::thread::spawn(move || {
        let mut c = postgres::Client::connect(&db, postgres::NoTls).expect("connect");
        for _ in 0..inserts {
            c.execute("INSERT INTO items (name) VALUES ('widget')", &[])
                .expect("insert");
            std::thread::sleep(Duration::from_millis(3));
        }
    });
    let seen = |subs: &[Subscriber]| -> BTreeSet<u64> { subs.iter().flat_map(counts).collect() };
    eventually("a third of the alerts arrive", DEADLINE, || {
        (seen(&subs).len() > 330).then_some(())
    });
    let started = Instant::now();
    let promoted = group.failover();
    println!(
        "SENTINEL FAILOVER to {promoted} took {:.0} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    writer.join().expect("writer");
    let want: BTreeSet<u64> = (20..=1019).collect();
    let end = Instant::now() + Duration::from_secs(60);
    while !seen(&subs).is_superset(&want) {
        if Instant::now() > end {
            let got = seen(&subs);
            let missing: Vec<&u64> = want.difference(&got).take(20).collect();
            panic!(
                "{} alerts missing, e.g. {missing:?}\nlistener:\n{}\nworker:\n{}",
                want.difference(&got).count(),
                listener.log().join("\n"),
                worker.log().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(alive(&worker), "the worker was not restarted");
    assert!(alive(&listener), "the listener was not restarted");
}

/// True while the process runs (it has not exited, nor become a zombie).
fn alive(p: &Proc) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", p.pid()))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

#[test]
fn notify_during_a_cluster_failover_waits_and_the_blocked_worker_follows() {
    let mut cluster = RedisCluster::start(3, 1);
    let (w, name, holder, sub) = one_queue_world(&cluster);
    let worker = w.spawn("queue-work", &[]);
    worker.wait_for_log("working queue(s)");
    // The worker is blocked on the queue's node when it dies; its replica takes over after
    // the cluster's node timeout (2 s here).
    cluster.kill(holder);
    let started = Instant::now();
    let out = w.run("notify", &["--count", "77"]);
    let waited = started.elapsed();
    assert!(
        out.status.success(),
        "notify failed during the failover: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eventually(
        "the worker broadcasts from the promoted node",
        DEADLINE,
        || counts(&sub).contains(&77).then_some(()),
    );
    println!(
        "notify waited {:.1} s for the failover; broadcast {:.1} s after the kill",
        waited.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert_ne!(cluster.owner_of_key(&queue_key(&w.prefix, &name)), holder);
}
