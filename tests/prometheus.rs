//! A real Prometheus scraping the daemons: a private `prometheus` on a free loopback port
//! scrapes `queue-work` and `items-listen` every second and evaluates deploy/prometheus's
//! alerting rules; its HTTP API must answer with the jobs and counts the test made. And the
//! deploy files pass `promtool` (`check rules`, `check config`, `test rules`).
//!
//! Both tools come with Debian's `prometheus` package, which scripts/services installs.

use crate::operations::{get, metrics_addr, sample};
use crate::support::private::{free_port, output_within};
use crate::support::{DEADLINE, World, eventually};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The example config and the alerting rules.
const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");

/// One API call's deadline: a query on a few series answers in milliseconds.
const API_TIMEOUT: Duration = Duration::from_secs(5);

/// `name` on PATH; the test fails (never skips) without it, so CI cannot pass by not running.
fn tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` is not installed: run scripts/services (it installs Debian's \
                 prometheus package, which brings prometheus and promtool)"
            )
        })
}

/// A private Prometheus with its config and TSDB in a temp dir; killed and removed when
/// dropped.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
    agent: ureq::Agent,
}

impl Prometheus {
    /// Starts one that scrapes each `(job, host:port)` and evaluates `rules` every second,
    /// and waits (with a deadline) until it is ready.
    fn start(targets: &[(&str, &str)], rules: &Path) -> Prometheus {
        let bin = tool("prometheus");
        let dir = std::env::temp_dir().join(format!("ib-prometheus-{}", crate::support::tag()));
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\nscrape_configs:\n"
        );
        for (job, addr) in targets {
            config.push_str(&format!(
                "  - job_name: {job}\n    static_configs:\n      - targets: [{addr:?}]\n"
            ));
        }
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .timeout_global(Some(API_TIMEOUT))
                // A bad query is a 400 with the reason in the JSON body: read it.
                .http_status_as_error(false)
                .build(),
        );
        // Another process may take the free port between our probe and Prometheus's bind:
        // then it exits at once, and we try another port (in a fresh dir: the failed
        // attempt's guard removed its own).
        let mut log = String::new();
        for _ in 0..5 {
            std::fs::create_dir_all(&dir).expect("prometheus temp dir");
            std::fs::write(dir.join("prometheus.yml"), &config).expect("write prometheus.yml");
            let port = free_port();
            let log_file = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
            let child = Command::new(&bin)
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log file"))
                .stderr(log_file)
                .spawn()
                .expect("spawn prometheus");
            let mut prometheus = Prometheus {
                child,
                port,
                dir: dir.clone(),
                agent: agent.clone(),
            };
            if prometheus.wait_ready() {
                return prometheus;
            }
            log = prometheus.log();
        }
        panic!("prometheus did not start; its log:\n{log}");
    }

    /// True once `/-/ready` answers 200; false if the process ended (a taken port).
    fn wait_ready(&mut self) -> bool {
        let end = Instant::now() + DEADLINE;
        while Instant::now() < end {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            let url = format!("http://127.0.0.1:{}/-/ready", self.port);
            if self.agent.get(&url).call().is_ok_and(|r| r.status() == 200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "prometheus not ready within {DEADLINE:?}; log:\n{}",
            self.log()
        );
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/{path}` with `params`: its `data`. `None` when it cannot be reached; a
    /// refused query (an error in the test) panics with Prometheus's reason.
    fn api(&self, path: &str, params: &[(&str, &str)]) -> Option<Value> {
        let mut request = self
            .agent
            .get(format!("http://127.0.0.1:{}/api/v1/{path}", self.port));
        for (key, value) in params {
            request = request.query(key, value);
        }
        let text = request.call().ok()?.body_mut().read_to_string().ok()?;
        let mut answer: Value = serde_json::from_str(&text).expect("the API answers JSON");
        assert_eq!(answer["status"], "success", "{path} {params:?}: {answer}");
        Some(answer["data"].take())
    }

    /// The instant vector `promql` evaluates to now: each series' labels and value.
    fn query(&self, promql: &str) -> Option<Vec<(Value, f64)>> {
        let data = self.api("query", &[("query", promql)])?;
        let result = data["result"].as_array().expect("a vector result");
        Some(
            result
                .iter()
                .map(|s| {
                    let value = s["value"][1].as_str().expect("a sample value");
                    (s["metric"].clone(), value.parse().expect("a number"))
                })
                .collect(),
        )
    }

    /// Waits until `promql` is one series of value `expected`; at the deadline, panics with
    /// the last answer.
    fn wait_for(&self, promql: &str, expected: f64) -> Value {
        let end = Instant::now() + DEADLINE;
        loop {
            let answer = self.query(promql);
            if let Some([(labels, value)]) = answer.as_deref() {
                if *value == expected {
                    return labels.clone();
                }
            }
            assert!(
                Instant::now() < end,
                "Prometheus never answered {expected} for {promql} within {DEADLINE:?}; \
                 last answer: {answer:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Every alerting rule loaded: `(name, health, state)`.
    fn rules(&self) -> Option<Vec<(String, String, String)>> {
        let data = self.api("rules", &[("type", "alert")])?;
        let groups = data["groups"].as_array().expect("rule groups");
        let rules = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().expect("rules"))
            .map(|r| {
                let field = |name: &str| r[name].as_str().unwrap_or_default().to_string();
                (field("name"), field("health"), field("state"))
            });
        Some(rules.collect())
    }

    /// Waits until every rule has been evaluated without error and those named in `pending`
    /// are pending (`for` has not run out yet), the rest inactive.
    fn wait_for_alerts(&self, pending: &[&str]) {
        let end = Instant::now() + DEADLINE;
        loop {
            let rules = self.rules();
            let settled = rules.as_ref().is_some_and(|rules| {
                !rules.is_empty()
                    && rules.iter().all(|(name, health, state)| {
                        let want = if pending.contains(&name.as_str()) {
                            "pending"
                        } else {
                            "inactive"
                        };
                        health == "ok" && state == want
                    })
            });
            if settled {
                return;
            }
            assert!(
                Instant::now() < end,
                "alerts never became: pending {pending:?}, the rest inactive; last \
                 (name, health, state): {rules:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Jobs the test pushes straight onto the queue.
const PUSHED: usize = 5;

#[test]
fn prometheus_stores_what_the_daemons_serve() {
    let mut w = World::new();
    // Threshold 2: counts 1, 2, 3 are info (not broadcast), warning and critical.
    w.set("BROADCAST_DRIVER", "null")
        .set("INVENTORY_NOTIFICATION_THRESHOLD", "2");
    let worker = w.spawn("queue-work", &["--metrics-addr", "127.0.0.1:0"]);
    let listener = w.spawn("items-listen", &["--metrics-addr", "127.0.0.1:0"]);
    let (worker_addr, listener_addr) = (metrics_addr(&worker), metrics_addr(&listener));
    listener.wait_for_log("listening on channel");
    let prometheus = Prometheus::start(
        &[
            ("inventory-queue-work", worker_addr.as_str()),
            ("inventory-items-listen", listener_addr.as_str()),
        ],
        &Path::new(DEPLOY).join("alerts.yml"),
    );

    w.push_jobs("default", "broadcast:null", PUSHED);
    // One row at a time, each rated before the next goes in: rows that arrive together may
    // be rated as one count, and the test must know which counts were broadcast.
    for count in 1..=3 {
        w.db.insert(1);
        eventually(&format!("count {count} rated"), DEADLINE, || {
            let (_, text) = get(&listener_addr, "/metrics")?;
            (sample(&text, "inventory_item_count") == Some(f64::from(count))).then_some(())
        });
    }
    // The listener's warning (count 2) and critical (count 3), one broadcast:null job each.
    let done = (PUSHED + 2) as f64;

    let up = eventually("both targets scraped", DEADLINE, || {
        let up = prometheus.query("up")?;
        (up.len() == 2 && up.iter().all(|(_, v)| *v == 1.0)).then_some(up)
    });
    let mut jobs: Vec<&str> = up.iter().filter_map(|(l, _)| l["job"].as_str()).collect();
    jobs.sort_unstable();
    assert_eq!(jobs, ["inventory-items-listen", "inventory-queue-work"]);

    prometheus.wait_for(
        r#"inventory_jobs_total{job="inventory-queue-work",queue="default",kind="broadcast:null",outcome="done"}"#,
        done,
    );
    // The other outcomes are there from the start, at 0, so a first failure is an increase.
    let others = prometheus
        .query(r#"inventory_jobs_total{outcome!="done"}"#)
        .expect("a query answer");
    assert_eq!(others.len(), 2, "retried and failed series: {others:?}");
    assert!(
        others.iter().all(|(_, v)| *v == 0.0),
        "nothing retried or failed: {others:?}"
    );
    prometheus.wait_for(
        r#"inventory_job_duration_seconds_count{queue="default",kind="broadcast:null"}"#,
        done,
    );
    prometheus.wait_for(r#"inventory_job_wait_seconds_count{queue="default"}"#, done);
    // The buckets arrive with their `le` labels: a quantile can be computed from them.
    let p95 = prometheus
        .query("histogram_quantile(0.95, sum by (le) (inventory_job_duration_seconds_bucket))")
        .expect("an answer");
    assert!(
        matches!(p95.as_slice(), [(_, s)] if s.is_finite() && *s > 0.0),
        "{p95:?}"
    );
    for state in ["pending", "delayed", "reserved"] {
        prometheus.wait_for(
            &format!(r#"inventory_queue_jobs{{queue="default",state="{state}"}}"#),
            0.0,
        );
    }

    let listener_series = |name: &str| format!(r#"{name}{{job="inventory-items-listen"}}"#);
    prometheus.wait_for(&listener_series("inventory_item_count"), 3.0);
    prometheus.wait_for(&listener_series("inventory_item_threshold"), 2.0);
    prometheus.wait_for(&listener_series("inventory_listener_active"), 1.0);
    for severity in ["warning", "critical"] {
        prometheus.wait_for(
            &format!(r#"inventory_alerts_total{{severity="{severity}"}}"#),
            1.0,
        );
    }
    let version = env!("CARGO_PKG_VERSION");
    prometheus.wait_for(
        &format!(r#"count(inventory_build_info{{version="{version}"}} == 1)"#),
        2.0,
    );

    // With both daemons up and nothing failed, the deploy rules evaluate cleanly and none
    // is pending. When the listener goes away (its series go stale at the next scrape), the
    // two rules that watch for that go pending; `for` keeps them from firing in this test.
    prometheus.wait_for_alerts(&[]);
    drop(listener);
    prometheus.wait_for(r#"up{job="inventory-items-listen"}"#, 0.0);
    prometheus.wait_for_alerts(&["InventoryTargetDown", "InventoryListenerNotActive"]);
}

#[test]
fn promtool_passes_the_deploy_files() {
    let promtool = tool("promtool");
    // Run from the crate's root, as a user would: `check config` then finds alerts.yml only
    // because a relative rule_files path is read from the config's own directory (and
    // `test rules` likewise from the test file's).
    for args in [
        ["check", "rules", "deploy/prometheus/alerts.yml"],
        ["check", "config", "deploy/prometheus/prometheus.yml"],
        ["test", "rules", "deploy/prometheus/alerts_test.yml"],
    ] {
        let mut cmd = Command::new(&promtool);
        cmd.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
        let out = output_within(&mut cmd, DEADLINE);
        assert!(
            out.status.success(),
            "promtool {}: {}\n{}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
