//! Measure 10, cluster: the drain of phase 1 without a subscriber, over 3 queues with one
//! `queue-work --queue NAME` each, against one Redis and against a Redis Cluster of 3 primaries
//! with each queue on its own primary (`REDIS_CLUSTER_NODES`). Reported as a ratio, with the
//! CPU per job of the workers and of Redis (all nodes): on 2 cores, 3 workers and 3 nodes cannot
//! run side by side, so the CPU figures are what tells how it scales on a bigger machine.
//! Two runs of each of four kinds, mirrored so that a drift in the machine's load falls on all
//! alike: single and cluster with phase 1's redis driver, and the same with the null driver
//! (the queue alone, without the PUBLISH that a cluster relays to every node over its bus).

use crate::report::{ClusterDrain, ClusterScaling, pooled_rate};
use crate::support::Proc;
use crate::support::private::RedisServer;
use crate::support::topology::{RedisCluster, queue_key};
use crate::sys;
use inventory_broadcast::config::Config;
use inventory_broadcast::event::Alert;
use inventory_broadcast::queue::Queue;
use inventory_broadcast::service;
use std::time::{Duration, Instant};

/// Queues, each with its own worker (and, in the cluster, its own primary).
const QUEUES: usize = 3;
/// Jobs queued on each queue before the workers start: a run lasts 1.5-3 s here.
const JOBS_PER_QUEUE: usize = 30_000;
/// Jobs per `Queue::push` call while filling, as in phase 1.
const PUSH_BATCH: usize = 1_000;
/// The runs, in order: on the cluster or not, and with which broadcast driver.
const ORDER: [(bool, &str); 8] = [
    (false, "redis"),
    (true, "redis"),
    (true, "null"),
    (false, "null"),
    (false, "null"),
    (true, "null"),
    (true, "redis"),
    (false, "redis"),
];
/// Every worker must have emptied its queue by then.
const DRAIN_DEADLINE: Duration = Duration::from_secs(60);

pub fn run(redis: &RedisServer, db_url: &str) -> ClusterScaling {
    eprintln!("bench: cluster: starting a Redis Cluster of 3 primaries, no replicas");
    let cluster = RedisCluster::start(QUEUES, 0);
    let primaries = cluster.primary_ports();
    let mut nodes: Vec<redis::Connection> =
        primaries.iter().map(|&p| cluster.connection(p)).collect();
    for con in &mut nodes {
        sys::started(server_pid(con));
    }
    let mut single = [redis.connection()];
    let mut out = ClusterScaling {
        queues: QUEUES as u64,
        jobs_per_queue: JOBS_PER_QUEUE as u64,
        ..ClusterScaling::default()
    };
    for (n, &(clustered, driver)) in ORDER.iter().enumerate() {
        let prefix = format!("cluster-{n}:");
        // The names are the cluster's in both deployments: one queue on each primary there.
        let names = cluster.pick_queue_names(QUEUES, &prefix);
        let redis_url = if clustered {
            cluster.url_of(primaries[0])
        } else {
            redis.url()
        };
        let mut env = crate::env(db_url, &redis_url, &prefix, "bench-cluster");
        env.retain(|(k, _)| k != "BROADCAST_DRIVER");
        env.push(("BROADCAST_DRIVER".into(), driver.into()));
        env.push(("INVENTORY_QUEUE".into(), names.join(",")));
        if clustered {
            env.push(("REDIS_CLUSTER_NODES".into(), cluster.seeds()));
        }
        let deployment = crate::config(&env).redis.topology.name();
        assert_eq!(
            deployment,
            if clustered { "cluster" } else { "single" },
            "the workers' Redis configuration"
        );
        let d = if clustered {
            let owners: Vec<u16> = names
                .iter()
                .map(|q| cluster.owner_of_key(&queue_key(&prefix, q)))
                .collect();
            drain(&env, &names, &mut nodes, &primaries, owners)
        } else {
            let owners = vec![redis.port(); QUEUES];
            drain(&env, &names, &mut single, &[redis.port()], owners)
        };
        match (clustered, driver) {
            (true, "null") => out.cluster_null.push(d),
            (true, _) => out.cluster.push(d),
            (false, "null") => out.single_null.push(d),
            (false, _) => out.single.push(d),
        }
    }
    out.cluster_to_single = pooled_rate(&out.cluster) / pooled_rate(&out.single);
    out.null_cluster_to_single = pooled_rate(&out.cluster_null) / pooled_rate(&out.single_null);
    out
}

/// The pid a Redis server reports (`INFO server`), for the watchdog's last resort.
fn server_pid(con: &mut redis::Connection) -> Option<u32> {
    let info: String = redis::cmd("INFO").arg("server").query(con).ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))?
        .trim()
        .parse()
        .ok()
}

/// Fills every queue of `names`, starts one worker per queue at once and waits until all have
/// exited; `nodes` are the Redis servers (with their `ports`) whose CPU time counts.
fn drain(
    env: &[(String, String)],
    names: &[String],
    nodes: &mut [redis::Connection],
    ports: &[u16],
    owners: Vec<u16>,
) -> ClusterDrain {
    let config = crate::config(env);
    let deployment = config.redis.topology.name();
    let driver = config
        .broadcast
        .drivers
        .iter()
        .map(|d| d.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let mut queue = Queue::connect(&config.redis, &config.queue.prefix).expect("connect");
    fill(&config, &mut queue, names);
    let redis_cpu: Vec<f64> = nodes.iter_mut().map(sys::redis_cpu).collect();
    eprintln!(
        "bench: cluster: {deployment}, {driver} driver: {} × queue-work --stop-when-empty --queue",
        names.len()
    );
    let started = Instant::now();
    let mut workers: Vec<Proc> = names
        .iter()
        .map(|name| {
            crate::spawn(
                "queue-work",
                env,
                &["-q", "--stop-when-empty", "--queue", name],
            )
        })
        .collect();
    let exited = wait_all_with_cpu(&workers, DRAIN_DEADLINE);
    let redis_cpu_s: Vec<f64> = nodes
        .iter_mut()
        .zip(redis_cpu)
        .map(|(con, before)| sys::redis_cpu(con) - before)
        .collect();
    let worker_exits: Vec<Option<i32>> = workers
        .iter_mut()
        .map(|w| w.child.wait().ok().and_then(|s| s.code()))
        .collect();
    let left: u64 = names
        .iter()
        .map(|name| {
            let s = queue.sizes(name).expect("queue sizes");
            s.pending + s.delayed + s.reserved
        })
        .sum();
    if left > 0 || worker_exits.iter().any(|c| *c != Some(0)) {
        for (w, name) in workers.iter().zip(names) {
            eprintln!(
                "bench: cluster: {deployment}: worker of {name}: its log:\n{}",
                w.log().join("\n")
            );
        }
        eprintln!("bench: cluster: {deployment}: worker exits {worker_exits:?}, {left} jobs left");
    }
    let worker_wall_s: Vec<f64> = exited
        .iter()
        .map(|(_, at)| at.duration_since(started).as_secs_f64())
        .collect();
    let wall_s = worker_wall_s.iter().copied().fold(0.0, f64::max);
    let jobs = (names.len() * JOBS_PER_QUEUE) as u64;
    let worker_cpu_s: f64 = exited.iter().map(|(cpu, _)| cpu).sum();
    let per_job = |s: f64| s * 1e6 / jobs as f64;
    ClusterDrain {
        deployment: deployment.to_string(),
        driver,
        jobs,
        left,
        wall_s,
        wall_per_s: jobs.saturating_sub(left) as f64 / wall_s,
        worker_wall_s,
        worker_cpu_s,
        worker_cpu_us_per_job: per_job(worker_cpu_s),
        redis_ports: ports.to_vec(),
        queue_owners: owners,
        redis_cpu_us_per_job: per_job(redis_cpu_s.iter().sum()),
        busiest_node_cpu_us_per_job: per_job(redis_cpu_s.iter().copied().fold(0.0, f64::max)),
        redis_cpu_s,
        worker_exits,
    }
}

/// Queues [`JOBS_PER_QUEUE`] jobs on each queue of `names`, checking that they all arrived.
fn fill(config: &Config, queue: &mut Queue, names: &[String]) {
    eprintln!(
        "bench: cluster: queueing {JOBS_PER_QUEUE} jobs on each of {}",
        names.join(", ")
    );
    let mut count = 0;
    for name in names {
        let mut queued = 0;
        while queued < JOBS_PER_QUEUE {
            sys::check();
            let mut jobs = Vec::with_capacity(PUSH_BATCH);
            while jobs.len() < PUSH_BATCH.min(JOBS_PER_QUEUE - queued) {
                count += 1;
                let alert = Alert::new(count, config.threshold, &config.boundaries, "bench");
                jobs.extend(service::jobs_for(config, &alert));
            }
            queue.push(name, &jobs).expect("push jobs");
            queued += jobs.len();
        }
        let sizes = queue.sizes(name).expect("queue sizes");
        assert_eq!(
            sizes.pending, JOBS_PER_QUEUE as u64,
            "jobs queued on {name}"
        );
    }
}

/// Waits (reaping none) until every worker has exited; returns each one's final CPU time in
/// seconds and when it was seen exited (within 5 ms). Panics at the deadline.
fn wait_all_with_cpu(workers: &[Proc], within: Duration) -> Vec<(f64, Instant)> {
    let ticks = sys::clock_ticks();
    let end = Instant::now() + within;
    let mut exited: Vec<Option<(f64, Instant)>> = vec![None; workers.len()];
    loop {
        for (w, seen) in workers.iter().zip(exited.iter_mut()) {
            if seen.is_some() {
                continue;
            }
            let pid = w.child.id();
            match sys::cpu_ticks(pid) {
                // A zombie still shows its final times; the caller reaps it.
                Some(('Z', t)) => *seen = Some((t as f64 / ticks, Instant::now())),
                Some(_) => {}
                None => panic!("worker {pid} vanished before its CPU time was read"),
            }
        }
        if exited.iter().all(Option::is_some) {
            return exited.into_iter().flatten().collect();
        }
        sys::check();
        assert!(
            Instant::now() < end,
            "{} of {} workers did not exit within {within:?}",
            exited.iter().filter(|e| e.is_none()).count(),
            workers.len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
