//! The figures of one run, the targets beside them, and the table and JSON they become.

use serde::Serialize;

/// Reference figures quoted by the issue (same job, this kind of machine), for ratios.
const LARAVEL_JOBS_PER_S: f64 = 760.0;
const APALIS_JOBS_PER_S: f64 = 5_100.0;

/// The targets.
const DRAIN_TARGET: f64 = 20_000.0;
const LATENCY_50_P50_MS: f64 = 1.0;
const LATENCY_50_P99_MS: f64 = 5.0;
const LATENCY_500_P99_MS: f64 = 10.0;
const BACKLOG_TARGET: u64 = 100;
const WRITE_COST_TARGET: f64 = 0.60;
/// Issue 15's targets for the logical source: write cost, latency at 50/s.
const LOGICAL_WRITE_COST_TARGET: f64 = 0.90;
const LOGICAL_LATENCY_50_P50_MS: f64 = 5.0;
const LOGICAL_LATENCY_50_P99_MS: f64 = 20.0;
/// "The same at 1k and 1M rows", made measurable: the 1M ratio within 10 % of the 1k one.
const WRITE_COST_SAME: f64 = 0.10;
const MEMORY_TARGET_MB: f64 = 20.0;
/// "Flat", made measurable: the last RSS sample at most this much above the first.
const MEMORY_FLAT_MB: f64 = 1.0;

#[derive(Debug, Default, Serialize)]
pub struct Results {
    pub machine: Machine,
    pub limit: Vec<RedisBench>,
    pub drain: Option<Drain>,
    pub dispatch: Option<Dispatch>,
    pub latency: Vec<Latency>,
    pub sustained: Vec<Sustained>,
    pub memory: Vec<Memory>,
    /// The listener's CPU and its PostgreSQL backends', idle and at 50 inserts/s, per source.
    pub listener_cpu: Vec<ListenerCpu>,
    pub write_cost: Vec<WriteCost>,
    /// pgbench with one client and no trigger (1,000 rows): one commit and WAL flush at a time.
    pub serial_commit_tps: Option<f64>,
    /// pgbench, 4 clients, 1,000 rows, with a trigger that only NOTIFYs: the ceiling of any
    /// design that notifies on every commit (PostgreSQL holds a cluster-wide lock from a
    /// notifying transaction's pre-commit until after its WAL flush).
    pub notify_only_tps: Option<f64>,
    pub tls: Option<Tls>,
    pub metrics: Option<MetricsCost>,
    pub cluster: Option<ClusterScaling>,
    /// How long each phase took, and how loaded the machine was (others' work shows here).
    pub phases: Vec<Phase>,
    /// Phases that could not be measured, and why.
    pub errors: Vec<String>,
    /// The measuring run, without the build.
    pub seconds: f64,
    pub table: Vec<Row>,
}

#[derive(Debug, Default, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_mb: u64,
    pub kernel: String,
    pub postgres: String,
    /// The benchmark's PostgreSQL's `wal_level`: `logical` for the whole run (the logical
    /// source needs it), so the notify rows run on it too.
    pub wal_level: String,
    pub redis: String,
    /// /proc/loadavg (1, 5, 15 min) before and after the run: others' load shows here.
    pub load_before: String,
    pub load_after: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Phase {
    pub name: String,
    pub seconds: f64,
    /// /proc/loadavg when it ended.
    pub load_after: String,
}

/// One `redis-benchmark` run against the private Redis.
#[derive(Debug, Serialize)]
pub struct RedisBench {
    pub command: String,
    pub clients: u32,
    pub pipeline: u32,
    pub requests: u64,
    pub per_s: f64,
    pub p50_ms: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Drain {
    pub jobs: u64,
    /// Events received, duplicates included.
    pub events: u64,
    pub duplicates: u64,
    /// Jobs whose event never arrived.
    pub missing: u64,
    /// Jobs per second between the first and the last event.
    pub events_per_s: f64,
    /// The worker process from start to exit.
    pub wall_s: f64,
    pub wall_per_s: f64,
    pub worker_cpu_us_per_job: f64,
    pub redis_cpu_us_per_job: f64,
    /// The benchmark process meanwhile: its subscriber reading and counting every event, on
    /// the same two cores.
    pub subscriber_cpu_us_per_job: f64,
    pub worker_exit: Option<i32>,
}

/// The drain with no subscriber (phase 8): done when the worker exits 0 and leaves no job.
#[derive(Debug, Default, Serialize)]
pub struct UnwatchedDrain {
    pub jobs: u64,
    /// Jobs pending, delayed or reserved after the worker exited.
    pub left: u64,
    /// The worker process from start to exit.
    pub wall_s: f64,
    /// Jobs done (queued minus left) per second of `wall_s`.
    pub wall_per_s: f64,
    pub worker_cpu_us_per_job: f64,
    pub redis_cpu_us_per_job: f64,
    pub worker_exit: Option<i32>,
}

/// Phase 8: plain against TLS, in the same run.
#[derive(Debug, Default, Serialize)]
pub struct Tls {
    /// `Db::connect` to the benchmark's durable server (trust auth, no password).
    pub postgres_trust: Option<Connects>,
    /// `Db::connect` with a password (scram-sha-256) over plain TCP.
    pub postgres_scram: Option<Connects>,
    /// `Db::connect` with `sslmode=verify-full`, `sslrootcert` and the same password check.
    pub postgres_tls: Option<Connects>,
    /// `redis_conn::connect` and a PING, plain.
    pub redis_plain: Option<Connects>,
    /// The same over `rediss://` with `REDIS_CA_CERT`.
    pub redis_tls: Option<Connects>,
    /// `tls::system_roots()` alone: each `rediss://` connect with a CA file loads them twice,
    /// once to add them to the CA file's and once inside the redis crate (which then uses ours).
    pub system_roots: Option<Connects>,
    /// Phase 1's fill and worker over the plain Redis, without a subscriber, in the order run.
    pub plain_drains: Vec<UnwatchedDrain>,
    /// The same over a TLS-only Redis: the queue and the broadcasts both over `rediss://`.
    pub tls_drains: Vec<UnwatchedDrain>,
    /// Jobs done per second of worker wall time over all plain drains, and over all TLS ones.
    pub plain_per_s: Option<f64>,
    pub tls_per_s: Option<f64>,
    /// `tls_per_s / plain_per_s`.
    pub tls_to_plain: Option<f64>,
    /// `tls_per_s` over phase 1's `wall_per_s` (plain, with its subscriber), when phase 1 ran
    /// in this run.
    pub tls_to_phase1: Option<f64>,
}

/// How long one kind of connect took, in milliseconds.
#[derive(Debug, Default, Serialize)]
pub struct Connects {
    pub what: String,
    pub samples: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Dispatch {
    pub alerts: u64,
    pub jobs: u64,
    pub seconds: f64,
    pub jobs_per_s: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Latency {
    /// The listener's change source: `notify` or `logical`.
    pub source: String,
    /// Inserts per second asked for, and achieved.
    pub rate: f64,
    pub achieved_rate: f64,
    pub inserts: u64,
    /// Inserts whose broadcast never arrived.
    pub missing: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Sustained {
    /// The listener's change source: `notify` or `logical`.
    pub source: String,
    pub clients: u32,
    pub seconds: f64,
    pub inserts: u64,
    pub inserts_per_s: f64,
    /// Broadcasts received while the inserts ran.
    pub broadcasts_per_s: f64,
    /// Inserts committed minus broadcasts received, when the inserts stopped.
    pub backlog: u64,
    /// From the inserts' end to the last broadcast; `None` when it never completed.
    pub drain_s: Option<f64>,
    pub missing: u64,
    /// Logical source: once drained, the count the listener confirmed in its state row
    /// equals `count(*)` of the table.
    pub count_exact: Option<bool>,
}

/// CPU of the listener process and of the PostgreSQL backends serving it, in % of one core.
#[derive(Debug, Default, Serialize)]
pub struct ListenerCpu {
    /// `notify` or `logical`.
    pub source: String,
    /// `idle` (nothing written) or `50/s` (the latency run).
    pub load: String,
    pub seconds: f64,
    pub listener_pct: f64,
    pub backend_pct: f64,
    pub backends: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Memory {
    pub process: String,
    /// VmHWM at the end: the peak RSS over the process's life.
    pub peak_mb: f64,
    pub first_mb: f64,
    pub last_mb: f64,
    pub max_sampled_mb: f64,
    pub samples: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct WriteCost {
    pub rows: u64,
    /// Means of the runs below.
    pub tps_with_trigger: f64,
    pub tps_without_trigger: f64,
    pub ratio: f64,
    /// Each pgbench run's TPS, in the order run: with, without, logical, logical, without,
    /// with.
    pub runs_with_trigger: Vec<f64>,
    pub runs_without_trigger: Vec<f64>,
    /// The logical source set up (slot, publication, no trigger) and its listener reading
    /// and confirming throughout: mean TPS and over the same runs without trigger.
    pub tps_logical: Option<f64>,
    pub ratio_logical: Option<f64>,
    pub runs_logical: Vec<LogicalRun>,
    /// After the logical runs (writers stopped, slot caught up): the listener's confirmed
    /// count equals `count(*)`.
    pub logical_count_exact: Option<bool>,
    /// The write path alone: the slot set up but nobody reading during the run (TPS, its
    /// ratio to without trigger), then how long the listener took to catch up.
    pub tps_logical_detached: Option<f64>,
    pub ratio_logical_detached: Option<f64>,
    pub catch_up_detached_s: Option<f64>,
}

/// One pgbench run with the logical source.
#[derive(Debug, Default, Serialize)]
pub struct LogicalRun {
    pub tps: f64,
    /// WAL the slot had not confirmed when pgbench ended, and how long until it had.
    pub lag_at_end_bytes: u64,
    pub catch_up_s: f64,
    /// During the run, in % of one core: `items-listen` and the backend decoding for it.
    pub listener_cpu_pct: f64,
    pub backend_cpu_pct: f64,
}

/// One line of the table.
#[derive(Debug, Serialize)]
pub struct Row {
    pub measure: String,
    pub result: String,
    pub target: String,
    /// `Some(true)` met, `Some(false)` missed, `None` for a figure without a target.
    pub met: Option<bool>,
}

fn row(measure: impl Into<String>, result: String, target: &str, met: Option<bool>) -> Row {
    Row {
        measure: measure.into(),
        result,
        target: target.to_string(),
        met,
    }
}

/// " (logical)" for the logical source's rows; the notify rows keep their names.
fn source_tag(source: &str) -> String {
    if source == "logical" {
        " (logical)".into()
    } else {
        String::new()
    }
}

/// 12345.6 → "12,346".
pub fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    let n = x.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn ms(x: f64) -> String {
    if x < 10.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.1}")
    }
}

/// "p50 / p90 ms", and what `c` adds to `base` at the median.
fn connects(c: &Connects, base: Option<(&str, &Connects)>) -> String {
    let mut out = format!("{} / {} ms", ms(c.p50_ms), ms(c.p90_ms));
    if let Some((name, b)) = base {
        out.push_str(&format!(
            "; {:+.2} ms ({:.1}×) over {name}",
            c.p50_ms - b.p50_ms,
            c.p50_ms / b.p50_ms
        ));
    }
    out
}

/// The pooled rate, each drain's, and the mean CPU per job.
fn unwatched(drains: &[UnwatchedDrain], pooled: Option<f64>) -> String {
    let n = drains.len().max(1) as f64;
    let each: Vec<String> = drains
        .iter()
        .map(|d| format!("{} in {:.2} s", thousands(d.wall_per_s), d.wall_s))
        .collect();
    format!(
        "{} ({}); CPU per job, worker / Redis: {:.0} / {:.0} µs",
        thousands(pooled.unwrap_or(f64::NAN)),
        each.join(", "),
        drains.iter().map(|d| d.worker_cpu_us_per_job).sum::<f64>() / n,
        drains.iter().map(|d| d.redis_cpu_us_per_job).sum::<f64>() / n,
    )
}

/// Phase 9: the drain with metrics served and scraped, against without.
#[derive(Debug, Default, Serialize)]
pub struct MetricsCost {
    /// Drains without `--metrics-addr`.
    pub off: Vec<UnwatchedDrain>,
    /// Drains with it, scraped every second.
    pub on: Vec<UnwatchedDrain>,
    /// Scrapes answered during the `on` drains.
    pub scrapes: u64,
    /// Jobs/s with over jobs/s without (worker wall time, all runs pooled).
    pub on_to_off: f64,
}

/// The target for the metrics' cost: the drain keeps 95 % of its rate.
const METRICS_RATIO_TARGET: f64 = 0.95;

/// Phase 9's rows.
fn metrics_rows(m: &MetricsCost, t: &mut Vec<Row>) {
    t.push(row(
        "9 metrics: drain as in 1, no subscriber, without `--metrics-addr`",
        unwatched(&m.off, None),
        "",
        None,
    ));
    t.push(row(
        format!(
            "9 metrics: the same with `--metrics-addr`, /metrics scraped every 1 s ({} scrapes)",
            m.scrapes
        ),
        unwatched(&m.on, None),
        "",
        None,
    ));
    t.push(row(
        "9 metrics: with / without",
        format!("{:.2}×", m.on_to_off),
        "≥ 0.95",
        Some(m.on_to_off >= METRICS_RATIO_TARGET),
    ));
}

/// Phase 10: 3 queues with a worker each, on one Redis and on a 3-primary Redis Cluster.
#[derive(Debug, Default, Serialize)]
pub struct ClusterScaling {
    pub queues: u64,
    pub jobs_per_queue: u64,
    /// With phase 1's redis driver, on the benchmark's one Redis, in the order run (1st, 8th).
    pub single: Vec<ClusterDrain>,
    /// The same on the cluster, one queue on each primary (2nd, 7th).
    pub cluster: Vec<ClusterDrain>,
    /// Jobs/s on the cluster over jobs/s on one Redis (wall time, all runs pooled).
    pub cluster_to_single: f64,
    /// The queue alone (the null driver publishes nothing): on the cluster (3rd, 6th), on one
    /// Redis (4th, 5th).
    pub cluster_null: Vec<ClusterDrain>,
    pub single_null: Vec<ClusterDrain>,
    pub null_cluster_to_single: f64,
}

/// One drain of every queue, a `queue-work --stop-when-empty --queue NAME` for each.
#[derive(Debug, Default, Serialize)]
pub struct ClusterDrain {
    /// `single` or `cluster`, as the configuration the workers got says.
    pub deployment: String,
    /// `BROADCAST_DRIVER`.
    pub driver: String,
    /// Over all queues.
    pub jobs: u64,
    /// Jobs pending, delayed or reserved after the workers exited.
    pub left: u64,
    /// From the workers' start to the last one's exit.
    pub wall_s: f64,
    /// Jobs done (queued minus left) per second of `wall_s`.
    pub wall_per_s: f64,
    /// Each worker from the common start to its exit, in the order of the queues.
    pub worker_wall_s: Vec<f64>,
    /// The workers' CPU time (user + system) in all.
    pub worker_cpu_s: f64,
    pub worker_cpu_us_per_job: f64,
    /// The Redis servers measured (`INFO cpu`: user + system), and each one's CPU time.
    pub redis_ports: Vec<u16>,
    pub redis_cpu_s: Vec<f64>,
    /// The server holding each queue, in the order of the queues.
    pub queue_owners: Vec<u16>,
    /// All servers' CPU time per job.
    pub redis_cpu_us_per_job: f64,
    /// The busiest server's CPU time per job of all queues: Redis runs commands on one
    /// thread, so with a core per server the drain cannot outrun 1 s / this.
    pub busiest_node_cpu_us_per_job: f64,
    pub worker_exits: Vec<Option<i32>>,
}

/// Jobs done per second of wall time, all of `runs` pooled.
pub fn pooled_rate(runs: &[ClusterDrain]) -> f64 {
    let done: u64 = runs.iter().map(|d| d.jobs - d.left).sum();
    done as f64 / runs.iter().map(|d| d.wall_s).sum::<f64>()
}

/// Means over `runs` of a figure.
fn mean(runs: &[ClusterDrain], f: fn(&ClusterDrain) -> f64) -> f64 {
    runs.iter().map(f).sum::<f64>() / runs.len().max(1) as f64
}

/// "workers / Redis (busiest server) µs", means over `runs`.
fn cpu_per_job(runs: &[ClusterDrain]) -> String {
    format!(
        "{:.0} / {:.0} ({:.0}) µs",
        mean(runs, |d| d.worker_cpu_us_per_job),
        mean(runs, |d| d.redis_cpu_us_per_job),
        mean(runs, |d| d.busiest_node_cpu_us_per_job),
    )
}

/// True when every worker exited 0 and left no job.
fn all_done(runs: &[ClusterDrain]) -> bool {
    runs.iter()
        .all(|d| d.left == 0 && d.worker_exits.iter().all(|e| *e == Some(0)))
}

/// Phase 10's rows.
fn cluster_rows(c: &ClusterScaling, t: &mut Vec<Row>) {
    let cpu = "CPU per job, workers / Redis, all servers (busiest):";
    for (runs, on) in [
        (
            &c.single,
            format!(
                "{} queues × {} jobs, a `queue-work` per queue, no subscriber, one Redis",
                c.queues,
                thousands(c.jobs_per_queue as f64)
            ),
        ),
        (
            &c.cluster,
            "the same on a Redis Cluster of 3 primaries, a queue on each".to_string(),
        ),
    ] {
        if runs.is_empty() {
            continue;
        }
        let each: Vec<String> = runs
            .iter()
            .map(|d| format!("{} in {:.2} s", thousands(d.wall_per_s), d.wall_s))
            .collect();
        let left: u64 = runs.iter().map(|d| d.left).sum();
        t.push(row(
            format!("10 cluster: {on}: jobs/s until the last worker exits (all runs; each run)"),
            format!(
                "{} ({}); {cpu} {}; {left} jobs left",
                thousands(pooled_rate(runs)),
                each.join(", "),
                cpu_per_job(runs)
            ),
            "every job done",
            Some(all_done(runs)),
        ));
    }
    let total =
        |runs: &[ClusterDrain]| mean(runs, |d| d.worker_cpu_us_per_job + d.redis_cpu_us_per_job);
    // Redis runs commands on one thread: with a core of its own, a server is saturated at
    // 1 s of CPU per second, whatever else the machine runs.
    let ceiling = |runs: &[ClusterDrain]| 1e6 / mean(runs, |d| d.busiest_node_cpu_us_per_job);
    t.push(row(
        "10 cluster: cluster / one Redis, jobs/s here (2 cores for 3 workers and the servers)",
        format!(
            "{:.2}×; CPU per job in all (workers + Redis): {:.0} µs on the cluster, {:.0} µs on \
             one Redis; with a core per server, Redis alone would allow 1 s / busiest server's \
             CPU per job = {} vs {} jobs/s ({:.2}×)",
            c.cluster_to_single,
            total(&c.cluster),
            total(&c.single),
            thousands(ceiling(&c.cluster)),
            thousands(ceiling(&c.single)),
            ceiling(&c.cluster) / ceiling(&c.single),
        ),
        "",
        None,
    ));
    if !c.cluster_null.is_empty() && !c.single_null.is_empty() {
        let redis = |runs: &[ClusterDrain]| mean(runs, |d| d.redis_cpu_us_per_job);
        t.push(row(
            "10 cluster: the queue alone (null driver): jobs/s, cluster / one Redis (all runs)",
            format!(
                "{} / {} = {:.2}×; {cpu} {} on the cluster, {} on one Redis. The redis \
                 driver's PUBLISH costs Redis {:.1} µs per job on the cluster (the node that gets it relays \
                 it to every other node over the cluster bus), {:.1} µs on one Redis",
                thousands(pooled_rate(&c.cluster_null)),
                thousands(pooled_rate(&c.single_null)),
                c.null_cluster_to_single,
                cpu_per_job(&c.cluster_null),
                cpu_per_job(&c.single_null),
                redis(&c.cluster) - redis(&c.cluster_null),
                redis(&c.single) - redis(&c.single_null),
            ),
            "every job done",
            Some(all_done(&c.cluster_null) && all_done(&c.single_null)),
        ));
    }
}

/// Phase 8's rows.
fn tls_rows(tls: &Tls, t: &mut Vec<Row>) {
    let pg = "8 TLS: PostgreSQL `Db::connect`, p50 / p90,";
    let redis = "8 TLS: Redis `redis_conn::connect` + PING, p50 / p90,";
    fn over<'a>(name: &'a str, base: &'a Option<Connects>) -> Option<(&'a str, &'a Connects)> {
        base.as_ref().map(|b| (name, b))
    }
    let connect_rows = [
        (pg, &tls.postgres_trust, None),
        (pg, &tls.postgres_scram, over("trust", &tls.postgres_trust)),
        (
            pg,
            &tls.postgres_tls,
            over("plain scram", &tls.postgres_scram),
        ),
        (redis, &tls.redis_plain, None),
        (redis, &tls.redis_tls, over("plain", &tls.redis_plain)),
        ("8 TLS: of that, p50 / p90,", &tls.system_roots, None),
    ];
    for (measure, c, base) in connect_rows {
        if let Some(c) = c {
            t.push(row(
                format!("{measure} {}", c.what),
                connects(c, base),
                "",
                None,
            ));
        }
    }
    if !tls.plain_drains.is_empty() {
        t.push(row(
            "8 TLS: drain as in 1, no subscriber, plain Redis: jobs/s over the worker's wall time \
             (all runs; each run)",
            unwatched(&tls.plain_drains, tls.plain_per_s),
            "",
            None,
        ));
    }
    if !tls.tls_drains.is_empty() {
        let exits: Vec<String> = tls
            .tls_drains
            .iter()
            .map(|d| d.worker_exit.map_or("none".into(), |c| c.to_string()))
            .collect();
        let left: u64 = tls.tls_drains.iter().map(|d| d.left).sum();
        t.push(row(
            "8 TLS: the same over TLS Redis (queue and broadcasts over rediss://, REDIS_CA_CERT)",
            format!(
                "{}; events not counted over TLS: worker exit {}, {left} jobs left",
                unwatched(&tls.tls_drains, tls.tls_per_s),
                exits.join(", "),
            ),
            "every job done",
            Some(
                tls.tls_drains
                    .iter()
                    .all(|d| d.worker_exit == Some(0) && d.left == 0),
            ),
        ));
    }
    if let Some(ratio) = tls.tls_to_plain {
        let phase1 = tls
            .tls_to_phase1
            .map_or("phase 1 not run".to_string(), |p| {
                format!("{p:.2}× phase 1's (plain, with its subscriber)")
            });
        t.push(row(
            "8 TLS: drain, TLS / plain, jobs/s over the worker's wall time, same run",
            format!("{ratio:.2}× the plain drains without subscriber; {phase1}"),
            "",
            None,
        ));
    }
}

impl Results {
    fn rtt(&self, command: &str, pipeline: u32) -> Option<f64> {
        self.limit
            .iter()
            .find(|b| b.command == command && b.pipeline == pipeline)
            .map(|b| b.per_s)
    }

    /// Builds [`Results::table`] from the figures.
    pub fn build_table(&mut self) {
        let mut t = Vec::new();
        if let Some(d) = &self.drain {
            t.push(row(
                "1 drain: jobs/s, one `queue-work`, first → last event",
                thousands(d.events_per_s),
                "≥ 20,000",
                Some(d.events_per_s >= DRAIN_TARGET),
            ));
            let mut ratios = format!(
                "{:.1}× Laravel's 760/s, {:.2}× apalis' 5,100/s (issue's figures)",
                d.events_per_s / LARAVEL_JOBS_PER_S,
                d.events_per_s / APALIS_JOBS_PER_S
            );
            if let Some(rt) = self.rtt("EVALSHA", 1) {
                ratios.push_str(&format!(
                    "; a job takes as long as {:.1} one-client EVALSHA round trips",
                    rt / d.events_per_s
                ));
            }
            if let Some(p) = self.rtt("PUBLISH", 16) {
                ratios.push_str(&format!(
                    "; {:.1} % of pipelined PUBLISH/s",
                    100.0 * d.events_per_s / p
                ));
            }
            t.push(row("1 drain: ratios", ratios, "", None));
            t.push(row(
                "1 drain: jobs/s over the worker's wall time",
                format!("{} ({:.1} s)", thousands(d.wall_per_s), d.wall_s),
                "",
                None,
            ));
            t.push(row(
                "1 drain: CPU per job, worker / Redis / subscriber (bench)",
                format!(
                    "{:.0} / {:.0} / {:.0} µs",
                    d.worker_cpu_us_per_job, d.redis_cpu_us_per_job, d.subscriber_cpu_us_per_job
                ),
                "",
                None,
            ));
            t.push(row(
                "1 drain: events received (duplicates, missing)",
                format!(
                    "{} ({}, {})",
                    thousands(d.events as f64),
                    d.duplicates,
                    d.missing
                ),
                "every job, at least once",
                Some(d.missing == 0 && d.worker_exit == Some(0)),
            ));
        }
        if let Some(d) = &self.dispatch {
            let vs = self
                .rtt("EVALSHA", 1)
                .map(|rt| format!(" ({:.2}× one-client EVALSHA/s)", d.jobs_per_s / rt))
                .unwrap_or_default();
            t.push(row(
                "2 dispatch: jobs/s, `Dispatcher::broadcast_all` of one alert in a loop",
                format!("{}{vs}", thousands(d.jobs_per_s)),
                "",
                None,
            ));
        }
        for l in &self.latency {
            let logical = l.source == "logical";
            let (target, met) = if logical {
                (
                    "p50 ≤ 5, p99 ≤ 20",
                    l.p50_ms <= LOGICAL_LATENCY_50_P50_MS && l.p99_ms <= LOGICAL_LATENCY_50_P99_MS,
                )
            } else if l.rate <= 50.0 {
                (
                    "p50 ≤ 1, p99 ≤ 5",
                    l.p50_ms <= LATENCY_50_P50_MS && l.p99_ms <= LATENCY_50_P99_MS,
                )
            } else {
                ("p99 ≤ 10", l.p99_ms <= LATENCY_500_P99_MS)
            };
            t.push(row(
                format!(
                    "3 latency at {}/s{} ({:.0}/s achieved): p50 / p95 / p99 / max, ms",
                    l.rate,
                    source_tag(&l.source),
                    l.achieved_rate
                ),
                format!(
                    "{} / {} / {} / {}{}",
                    ms(l.p50_ms),
                    ms(l.p95_ms),
                    ms(l.p99_ms),
                    ms(l.max_ms),
                    if l.missing > 0 {
                        format!(" ({} missing)", l.missing)
                    } else {
                        String::new()
                    }
                ),
                target,
                Some(met && l.missing == 0),
            ));
        }
        for s in &self.sustained {
            t.push(row(
                format!(
                    "4 sustained, {} client(s){}: inserts/s → broadcasts/s",
                    s.clients,
                    source_tag(&s.source)
                ),
                format!(
                    "{} → {} ({:.0} %)",
                    thousands(s.inserts_per_s),
                    thousands(s.broadcasts_per_s),
                    100.0 * s.broadcasts_per_s / s.inserts_per_s
                ),
                "keep pace",
                None,
            ));
            t.push(row(
                format!(
                    "4 sustained, {} client(s){}: backlog at stop, time to drain",
                    s.clients,
                    source_tag(&s.source)
                ),
                format!(
                    "{}, {}{}{}",
                    thousands(s.backlog as f64),
                    s.drain_s
                        .map_or("never".into(), |d| format!("{:.0} ms", d * 1000.0)),
                    if s.missing > 0 {
                        format!(" ({} missing)", s.missing)
                    } else {
                        String::new()
                    },
                    match s.count_exact {
                        Some(true) => "; slot's count = count(*)",
                        Some(false) => "; **slot's count ≠ count(*)**",
                        None => "",
                    }
                ),
                "< 100",
                Some(s.backlog < BACKLOG_TARGET && s.missing == 0 && s.count_exact != Some(false)),
            ));
        }
        let small = self.write_cost.first().map(|w| w.ratio);
        for w in &self.write_cost {
            let same = small.is_none_or(|s| (w.ratio / s - 1.0).abs() <= WRITE_COST_SAME);
            t.push(row(
                format!(
                    "5 write cost, {} rows: TPS with / without trigger (2 runs each)",
                    thousands(w.rows as f64)
                ),
                format!(
                    "{} / {} = {:.0} %",
                    thousands(w.tps_with_trigger),
                    thousands(w.tps_without_trigger),
                    100.0 * w.ratio
                ),
                "≥ 60 %, same at 1k and 1M (±10 %)",
                Some(w.ratio >= WRITE_COST_TARGET && same),
            ));
        }
        for w in &self.write_cost {
            let (Some(tps), Some(ratio)) = (w.tps_logical, w.ratio_logical) else {
                continue;
            };
            let runs = &w.runs_logical;
            let n = runs.len().max(1) as f64;
            let each =
                |f: fn(&LogicalRun) -> String| runs.iter().map(f).collect::<Vec<_>>().join(", ");
            t.push(row(
                format!(
                    "5 write cost (logical), {} rows: TPS with the slot and its listener \
                     reading, no trigger / without trigger ({} runs each, same run)",
                    thousands(w.rows as f64),
                    runs.len()
                ),
                format!(
                    "{} / {} = {:.0} %; slot lag when pgbench stopped {} kB, caught up in {} \
                     ms; CPU during the runs, items-listen / its backend: {:.0} / {:.0} % of a \
                     core{}",
                    thousands(tps),
                    thousands(w.tps_without_trigger),
                    100.0 * ratio,
                    each(|r| thousands(r.lag_at_end_bytes as f64 / 1024.0)),
                    each(|r| format!("{:.0}", r.catch_up_s * 1000.0)),
                    runs.iter().map(|r| r.listener_cpu_pct).sum::<f64>() / n,
                    runs.iter().map(|r| r.backend_cpu_pct).sum::<f64>() / n,
                    match w.logical_count_exact {
                        Some(false) => "; **slot's count ≠ count(*)**",
                        _ => "",
                    }
                ),
                "≥ 90 %",
                Some(ratio >= LOGICAL_WRITE_COST_TARGET && w.logical_count_exact != Some(false)),
            ));
        }
        for w in &self.write_cost {
            let (Some(tps), Some(ratio), Some(catch_up)) = (
                w.tps_logical_detached,
                w.ratio_logical_detached,
                w.catch_up_detached_s,
            ) else {
                continue;
            };
            t.push(row(
                format!(
                    "5 write cost (logical, nobody reading during the run: the write path \
                     alone), {} rows: TPS / without trigger",
                    thousands(w.rows as f64)
                ),
                format!(
                    "{} / {} = {:.0} %; the listener then caught up in {:.1} s",
                    thousands(tps),
                    thousands(w.tps_without_trigger),
                    100.0 * ratio,
                    catch_up
                ),
                "",
                None,
            ));
        }
        if let (Some(notify), Some(w)) = (self.notify_only_tps, self.write_cost.first()) {
            t.push(row(
                "5 write cost: a trigger that only NOTIFYs (the ceiling for a NOTIFY per commit)",
                format!(
                    "{notify:.0} TPS = {:.0} % of without; ours is {:.0} % of this",
                    100.0 * notify / w.tps_without_trigger,
                    100.0 * w.tps_with_trigger / notify
                ),
                "",
                None,
            ));
        }
        if let Some(serial) = self.serial_commit_tps {
            let with = self
                .write_cost
                .first()
                .map(|w| {
                    format!(
                        " (the 4-client runs with the trigger: {:.2}× this)",
                        w.tps_with_trigger / serial
                    )
                })
                .unwrap_or_default();
            t.push(row(
                "5 write cost: one client, no trigger (one commit, one WAL flush at a time)",
                format!("{} TPS{with}", thousands(serial)),
                "",
                None,
            ));
        }
        for c in &self.listener_cpu {
            t.push(row(
                format!(
                    "3 CPU, items-listen ({}), {}: the listener / its PostgreSQL backend(s)",
                    c.source, c.load
                ),
                format!(
                    "{:.1} / {:.1} % of a core over {:.1} s ({} backend(s))",
                    c.listener_pct, c.backend_pct, c.seconds, c.backends
                ),
                "",
                None,
            ));
        }
        for m in &self.memory {
            let flat = m.last_mb - m.first_mb <= MEMORY_FLAT_MB;
            t.push(row(
                format!("6 memory, {}: peak RSS; RSS first → last", m.process),
                format!(
                    "{:.1} MB; {:.1} → {:.1} MB ({} samples)",
                    m.peak_mb, m.first_mb, m.last_mb, m.samples
                ),
                "< 20 MB, flat (+≤ 1 MB)",
                Some(m.peak_mb < MEMORY_TARGET_MB && flat),
            ));
        }
        for b in &self.limit {
            t.push(row(
                format!(
                    "7 limit: redis-benchmark {} -c {} -P {}",
                    b.command, b.clients, b.pipeline
                ),
                format!("{}/s (p50 {} ms)", thousands(b.per_s), b.p50_ms),
                "",
                None,
            ));
        }
        if let Some(tls) = &self.tls {
            tls_rows(tls, &mut t);
        }
        if let Some(metrics) = &self.metrics {
            metrics_rows(metrics, &mut t);
        }
        if let Some(cluster) = &self.cluster {
            cluster_rows(cluster, &mut t);
        }
        let m = &self.machine;
        t.push(row(
            "machine",
            format!(
                "{} × {}, {} MB RAM, Linux {}, PostgreSQL {} (wal_level = {} for every row), \
                 Redis {}; load {} → {}",
                m.cpus,
                m.cpu_model,
                thousands(m.memory_mb as f64),
                m.kernel,
                m.postgres,
                m.wal_level,
                m.redis,
                m.load_before,
                m.load_after
            ),
            "",
            None,
        ));
        for e in &self.errors {
            t.push(row("NOT MEASURED", e.clone(), "", Some(false)));
        }
        self.table = t;
    }

    /// The table in Markdown, as the README quotes it.
    pub fn markdown(&self) -> String {
        let mut out = String::from("| measure | result | target | |\n|---|---|---|---|\n");
        for r in &self.table {
            let verdict = match r.met {
                Some(true) => "met",
                Some(false) => "**missed**",
                None => "",
            };
            out.push_str(&format!(
                "| {} | {} | {} | {verdict} |\n",
                r.measure, r.result, r.target
            ));
        }
        out
    }
}
