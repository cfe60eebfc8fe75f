//! Configuration: layered raw values (defaults < file < `.env` < env < flags), validated once
//! into a typed [`Config`]. Every error names the key and the layer its value came from.
//!
//! [`keys`] is the table of keys, [`layers`] merges the sources and reads typed values,
//! [`files`] reads the config and `.env` files, `servers` builds the PostgreSQL and Redis
//! connection settings, `delivery` loads the drivers' and channels' settings (whose checks
//! live with them), and `warnings` finds what is allowed but unwise (plain text off loopback).

mod delivery;
pub mod files;
pub mod keys;
pub mod layers;
mod servers;
mod topology;
mod warnings;

pub use files::{CONFIG_ENV, DEFAULT_CONFIG_PATH};
pub use layers::{DotEnv, Flag, Source, Sources, flags, parse_duration};

use crate::broadcast::{BroadcastConfig, Driver};
use crate::db::DatabaseConfig;
use crate::logging::{Format, LogConfig};
use crate::notify::NotifyConfig;
use crate::redis_conn::RedisConfig;
use crate::severity::{Boundaries, Severity};
use layers::Layers;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A configuration problem. Every variant names where the bad value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A value that does not parse or is out of range.
    #[error("invalid {key} = {shown} (from {origin}): {reason}")]
    Invalid {
        key: &'static str,
        shown: String,
        origin: Source,
        reason: String,
    },
    /// A key in a file that no tool understands (usually a typo).
    #[error("unknown key `{key}` in {origin}")]
    UnknownKey { key: String, origin: Source },
    /// A config or `.env` file that cannot be read or parsed.
    #[error("cannot read {path}: {reason}")]
    File { path: PathBuf, reason: String },
}

/// Where `queue-work dashboard` listens, and the token it asks for.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// `--listen` / `INVENTORY_DASHBOARD_ADDR`.
    pub addr: std::net::SocketAddr,
    /// `INVENTORY_DASHBOARD_TOKEN`; required off loopback.
    pub token: Option<crate::secret::Secret>,
    /// Where `addr` came from, for the error that refuses a public address without a token.
    pub addr_origin: Source,
}

impl DashboardConfig {
    /// Refuses a non-loopback address without a token: anyone who can reach it could retry
    /// and forget failed jobs.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.token.is_some() || self.addr.ip().is_loopback() {
            return Ok(());
        }
        Err(ConfigError::Invalid {
            key: "dashboard.addr",
            shown: format!("\"{}\"", self.addr),
            origin: self.addr_origin.clone(),
            reason: "is not a loopback address, and no INVENTORY_DASHBOARD_TOKEN is set: \
                     anyone who reaches it could retry and forget failed jobs; set a token \
                     (and send it as `Authorization: Bearer …` or log in), or listen on \
                     127.0.0.1"
                .into(),
        })
    }
}

/// The Redis job queue settings.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Prefix of every queue key, e.g. `inventory:`.
    pub prefix: String,
    /// Queue names, highest priority first. Jobs are pushed to the first.
    pub names: Vec<String>,
    /// Attempts before a job is failed (0 = unlimited).
    pub tries: u32,
    /// Seconds to wait before each retry; the last value repeats.
    pub backoff: Vec<u64>,
    /// Seconds a reserved job may stay reserved before it is handed out again.
    pub retry_after: u64,
    /// Seconds a single job may run.
    pub timeout: u64,
    /// Longest single blocking wait for new jobs, in seconds (bounds shutdown latency).
    pub sleep: f64,
    /// The worker's name in log lines and `queue-work status` (`None`: unnamed).
    pub worker_name: Option<String>,
    /// Jobs a worker reserves per round trip (1 to 1000).
    pub batch: usize,
}

/// The validated configuration every binary works from.
#[derive(Debug, Clone)]
pub struct Config {
    /// Item count at which alerts start (`INVENTORY_NOTIFICATION_THRESHOLD`).
    pub threshold: u64,
    /// Percentages at which the severities start.
    pub boundaries: Boundaries,
    /// The listener dispatches only alerts at or above this severity.
    pub min_severity: Severity,
    /// PostgreSQL: where, over what TLS, with which session timeouts.
    pub database: DatabaseConfig,
    /// The NOTIFY channel the trigger uses and the listener listens on.
    pub listen_channel: String,
    /// The queue's Redis: where, and its TLS files.
    pub redis: RedisConfig,
    /// Queue settings.
    pub queue: QueueConfig,
    /// Broadcast settings.
    pub broadcast: BroadcastConfig,
    /// Slack and email notifications.
    pub notify: NotifyConfig,
    /// Where and how the daemons log.
    pub log: LogConfig,
    /// Where the daemons serve `/metrics`, `/healthz` and `/readyz` (`None`: nowhere).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Where the listener learns of changes: NOTIFY or a logical replication slot.
    pub source: crate::db::logical::ChangeSource,
    /// The logical source's slot (and publication) name.
    pub slot: String,
    /// `queue-work dashboard`'s address and token.
    pub dashboard: DashboardConfig,
    /// Warnings found while loading (secrets in files others may read), logged once logging
    /// is set up.
    file_warnings: Vec<String>,
}

impl Config {
    /// Reads the config file, `.env` and the environment, applies `flags`, and validates.
    ///
    /// `config_path` is `--config`; without it `INVENTORY_CONFIG`, then
    /// `config/inventory.toml` if it exists.
    pub fn load(config_path: Option<&Path>, flags: Vec<Flag>) -> Result<Config, ConfigError> {
        let mut env = HashMap::new();
        for spec in keys::KEYS {
            for var in spec.vars() {
                match std::env::var(var) {
                    Ok(v) => {
                        env.insert(var.to_string(), v);
                    }
                    Err(std::env::VarError::NotUnicode(_)) => {
                        return Err(ConfigError::Invalid {
                            key: spec.key,
                            shown: "(not UTF-8)".into(),
                            origin: Source::Env(var.into()),
                            reason: "must be valid UTF-8".into(),
                        });
                    }
                    Err(std::env::VarError::NotPresent) => {}
                }
            }
        }
        let sources = Sources {
            file: files::read_config_file(config_path)?,
            dotenv: files::read_dotenv(Path::new(".env"))?,
            env,
            flags,
        };
        let mut config = Config::resolve(&sources)?;
        config.file_warnings = files::readable_secrets(&sources);
        Ok(config)
    }

    /// What this configuration allows but should not: secrets in files others may read,
    /// credentials in plain text to another machine, certificate checks switched off. The
    /// binaries log them once, at start.
    pub fn warnings(&self) -> Vec<String> {
        let mut all = self.file_warnings.clone();
        all.extend(warnings::find(self));
        all
    }

    /// Merges the layers and validates every value.
    pub fn resolve(sources: &Sources) -> Result<Config, ConfigError> {
        let l = Layers::build(sources)?;
        let threshold = l.positive("inventory.threshold")?;
        let max = crate::event::MAX_COUNT;
        at_most(&l, "inventory.threshold", threshold, max, " (2^53 - 1)")?;
        let boundaries = Boundaries {
            warning: l.parse("severity.warning", "must be a whole percentage")?,
            high: l.parse("severity.high", "must be a whole percentage")?,
            critical: l.parse("severity.critical", "must be a whole percentage")?,
        };
        if let Err(reason) = boundaries.validate() {
            let key = worst_boundary(&l, &boundaries);
            return Err(l.invalid(key, reason));
        }
        let max = u64::from(crate::bounds::MAX_PERCENT);
        at_most(
            &l,
            "severity.critical",
            u64::from(boundaries.critical),
            max,
            " %",
        )?;
        let min_severity = l
            .str("inventory.min_severity")
            .parse()
            .map_err(|e: String| l.invalid("inventory.min_severity", e))?;
        let listen_channel = l.str("listener.channel");
        check_channel(&listen_channel).map_err(|e| l.invalid("listener.channel", e))?;
        let redis = servers::redis(&l, "redis.url")?;
        let broadcast_redis = if l.is_set("broadcast.redis_url") {
            servers::redis_at(&l, "broadcast.redis_url")?
        } else {
            redis.clone()
        };
        if let Some(key) = servers::tls_files_unused(&l, &[&redis, &broadcast_redis]) {
            return Err(l.invalid(
                key,
                "is set, but no Redis URL is rediss:// (TLS): use rediss:// in REDIS_URL or \
                 BROADCAST_REDIS_URL, or REDIS_SCHEME=tls",
            ));
        }
        let drivers = drivers(&l)?;
        let broadcast = BroadcastConfig {
            channel: non_empty(&l, "broadcast.channel")?,
            event: non_empty(&l, "broadcast.event")?,
            redis_prefix: l.str("broadcast.redis_prefix"),
            redis: broadcast_redis,
            pusher: delivery::pusher_config(&l, drivers.contains(&Driver::Pusher))?,
            drivers,
        };
        Ok(Config {
            threshold,
            boundaries,
            min_severity,
            database: servers::database(&l)?,
            listen_channel,
            redis,
            queue: queue_config(&l)?,
            broadcast,
            notify: delivery::notify_config(&l, threshold)?,
            log: log_config(&l)?,
            metrics_addr: metrics_addr(&l)?,
            dashboard: dashboard_config(&l)?,
            source: crate::db::logical::ChangeSource::parse(&l.str("listener.source"))
                .ok_or_else(|| l.invalid("listener.source", "must be notify or logical"))?,
            slot: {
                let slot = l.str("listener.slot");
                crate::db::logical::check_slot_name(&slot)
                    .map_err(|e| l.invalid("listener.slot", e))?;
                slot
            },
            file_warnings: Vec::new(),
        })
    }
}

fn log_config(l: &Layers) -> Result<LogConfig, ConfigError> {
    let format = Format::parse(&l.str("log.format"))
        .ok_or_else(|| l.invalid("log.format", "must be text or json"))?;
    let file = Some(l.str("log.file"))
        .filter(|f| !f.is_empty())
        .map(PathBuf::from);
    Ok(LogConfig { format, file })
}

fn dashboard_config(l: &Layers) -> Result<DashboardConfig, ConfigError> {
    let key = "dashboard.addr";
    let addr = l.parse(
        key,
        "must be an address and port such as 127.0.0.1:8080 or [::1]:8080",
    )?;
    let token = Some(l.str("dashboard.token"))
        .filter(|t| !t.is_empty())
        .map(crate::secret::Secret::new);
    if token.as_ref().is_some_and(|t| t.expose().len() < 16) {
        return Err(l.invalid(
            "dashboard.token",
            "must be at least 16 characters (e.g. `openssl rand -hex 16`)",
        ));
    }
    Ok(DashboardConfig {
        addr,
        token,
        addr_origin: l.source(key).clone(),
    })
}

fn metrics_addr(l: &Layers) -> Result<Option<std::net::SocketAddr>, ConfigError> {
    let key = "metrics.addr";
    if !l.is_set(key) {
        return Ok(None);
    }
    l.parse(
        key,
        "must be an address and port such as 127.0.0.1:9187 or [::1]:9187",
    )
    .map(Some)
}

/// Names the boundary key to blame when the three are out of order: the one set last.
fn worst_boundary(l: &Layers, b: &Boundaries) -> &'static str {
    if b.warning == 0 {
        return "severity.warning";
    }
    let keys = ["severity.critical", "severity.high", "severity.warning"];
    keys.into_iter()
        .find(|k| *l.source(k) != Source::Default)
        .unwrap_or("severity.warning")
}

fn non_empty(l: &Layers, key: &'static str) -> Result<String, ConfigError> {
    let v = l.str(key);
    if v.is_empty() {
        return Err(l.invalid(key, "must not be empty"));
    }
    Ok(v)
}

/// PostgreSQL identifiers are at most 63 bytes; the name is quoted, so any other character is fine.
fn check_channel(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 63 {
        return Err("must be at most 63 bytes (a PostgreSQL identifier)".into());
    }
    if name.contains('\0') {
        return Err("must not contain a NUL byte".into());
    }
    Ok(())
}

/// `value` of `key`, refused above `max` (in `unit`).
fn at_most(
    l: &Layers,
    key: &'static str,
    value: u64,
    max: u64,
    unit: &str,
) -> Result<u64, ConfigError> {
    if value > max {
        return Err(l.invalid(key, format!("must be at most {max}{unit}")));
    }
    Ok(value)
}

fn queue_config(l: &Layers) -> Result<QueueConfig, ConfigError> {
    use crate::bounds::*;
    let names = l.list("queue.names");
    if names.is_empty() {
        return Err(l.invalid("queue.names", "must name at least one queue"));
    }
    for name in &names {
        crate::queue::keys::check_name(name).map_err(|e| l.invalid("queue.names", e))?;
    }
    let backoff = l
        .list("queue.backoff")
        .iter()
        .map(|s| s.parse::<u64>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| l.invalid("queue.backoff", "must be whole seconds, e.g. 1,5,10"))?;
    if backoff.len() > MAX_BACKOFF_STEPS {
        let reason = format!("must have at most {MAX_BACKOFF_STEPS} steps");
        return Err(l.invalid("queue.backoff", reason));
    }
    for step in &backoff {
        at_most(
            l,
            "queue.backoff",
            *step,
            MAX_BACKOFF_S,
            " seconds per step (a day)",
        )?;
    }
    let sleep: f64 = l.parse("queue.sleep", "must be a number of seconds")?;
    if !(sleep.is_finite() && sleep > 0.0 && sleep <= 60.0) {
        return Err(l.invalid("queue.sleep", "must be between 0 and 60 seconds"));
    }
    let retry_after = l.positive("queue.retry_after")?;
    at_most(
        l,
        "queue.retry_after",
        retry_after,
        MAX_RETRY_AFTER_S,
        " seconds (a week)",
    )?;
    let timeout = l.positive("queue.timeout")?;
    at_most(
        l,
        "queue.timeout",
        timeout,
        MAX_TIMEOUT_S,
        " seconds (a day)",
    )?;
    if timeout >= retry_after {
        let key = if *l.source("queue.timeout") == Source::Default {
            "queue.retry_after"
        } else {
            "queue.timeout"
        };
        return Err(l.invalid(
            key,
            format!(
                "the job timeout ({timeout} s) must be shorter than retry_after ({retry_after} s), \
                 or a job still running would be handed to a second worker"
            ),
        ));
    }
    let tries: u64 = l.parse("queue.tries", "must be a whole number (0 = unlimited)")?;
    let tries = at_most(l, "queue.tries", tries, u64::from(MAX_TRIES), "")?;
    Ok(QueueConfig {
        prefix: l.str("queue.prefix"),
        names,
        tries: u32::try_from(tries).unwrap_or(MAX_TRIES),
        backoff,
        retry_after,
        timeout,
        sleep,
        worker_name: Some(l.str("worker.name")).filter(|n| !n.is_empty()),
        batch: batch(l)?,
    })
}

fn batch(l: &Layers) -> Result<usize, ConfigError> {
    let key = "worker.batch";
    let what = "must be a whole number from 1 to 1000";
    match l.parse::<usize>(key, what)? {
        n @ 1..=crate::queue::MAX_BATCH => Ok(n),
        _ => Err(l.invalid(key, what)),
    }
}

fn drivers(l: &Layers) -> Result<Vec<Driver>, ConfigError> {
    let key = "broadcast.drivers";
    let mut out = Vec::new();
    for name in l.list(key) {
        let driver = Driver::parse(&name).ok_or_else(|| {
            l.invalid(
                key,
                format!("unknown driver `{name}`; expected redis, pusher, log or null"),
            )
        })?;
        if !out.contains(&driver) {
            out.push(driver);
        }
    }
    if out.is_empty() {
        return Err(l.invalid(
            key,
            "must name at least one driver (redis, pusher, log or null)",
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
