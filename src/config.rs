//! Configuration: layered raw values (defaults < file < `.env` < env < flags), validated once
//! into a typed [`Config`]. Every error names the key and the layer its value came from.

use crate::severity::{Boundaries, Severity};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The config file read when neither `--config` nor `INVENTORY_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "config/inventory.toml";
/// The environment variable that names a config file.
pub const CONFIG_ENV: &str = "INVENTORY_CONFIG";

/// One configurable key: its dotted name in the TOML file, its environment variable, its
/// built-in default, and whether its value must never be shown.
#[derive(Debug, Clone, Copy)]
pub struct KeySpec {
    /// `section.name`, as in `config/inventory.toml`.
    pub key: &'static str,
    /// The environment variable (empty: none).
    pub env: &'static str,
    /// The built-in default, as it would be written in the environment.
    pub default: &'static str,
    /// Secrets are never echoed in errors or logs.
    pub secret: bool,
}

const fn key(key: &'static str, env: &'static str, default: &'static str) -> KeySpec {
    KeySpec {
        key,
        env,
        default,
        secret: false,
    }
}

const fn secret(key: &'static str, env: &'static str, default: &'static str) -> KeySpec {
    KeySpec {
        key,
        env,
        default,
        secret: true,
    }
}

/// Every key the tools understand. `config/inventory.toml` documents each one.
pub const KEYS: &[KeySpec] = &[
    key(
        "inventory.threshold",
        "INVENTORY_NOTIFICATION_THRESHOLD",
        "20",
    ),
    key(
        "inventory.min_severity",
        "INVENTORY_MIN_SEVERITY",
        "warning",
    ),
    key("severity.warning", "INVENTORY_SEVERITY_WARNING", "100"),
    key("severity.high", "INVENTORY_SEVERITY_HIGH", "120"),
    key("severity.critical", "INVENTORY_SEVERITY_CRITICAL", "150"),
    secret("database.url", "DATABASE_URL", ""),
    key("database.host", "DB_HOST", "127.0.0.1"),
    key("database.port", "DB_PORT", "5432"),
    key("database.database", "DB_DATABASE", "inventory"),
    key("database.username", "DB_USERNAME", "inventory"),
    secret("database.password", "DB_PASSWORD", "inventory"),
    key("listener.channel", "INVENTORY_LISTEN_CHANNEL", "item_count"),
    secret("redis.url", "REDIS_URL", ""),
    key("redis.host", "REDIS_HOST", "127.0.0.1"),
    key("redis.port", "REDIS_PORT", "6379"),
    secret("redis.password", "REDIS_PASSWORD", ""),
    key("queue.prefix", "INVENTORY_QUEUE_PREFIX", "inventory:"),
    key("queue.names", "INVENTORY_QUEUE", "default"),
    key("queue.tries", "INVENTORY_QUEUE_TRIES", "3"),
    key("queue.backoff", "INVENTORY_QUEUE_BACKOFF", "1,5,10"),
    key("queue.retry_after", "INVENTORY_QUEUE_RETRY_AFTER", "90"),
    key("queue.timeout", "INVENTORY_QUEUE_TIMEOUT", "60"),
    key("queue.sleep", "INVENTORY_QUEUE_SLEEP", "1"),
    key("worker.name", "INVENTORY_WORKER_NAME", ""),
    key("broadcast.drivers", "BROADCAST_DRIVER", "redis"),
    key(
        "broadcast.channel",
        "INVENTORY_BROADCAST_CHANNEL",
        "inventory",
    ),
    key(
        "broadcast.event",
        "INVENTORY_BROADCAST_EVENT",
        "App\\Events\\ItemCountExeed",
    ),
    key("broadcast.redis_prefix", "BROADCAST_REDIS_PREFIX", ""),
    secret("broadcast.redis_url", "BROADCAST_REDIS_URL", ""),
];

fn spec(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.key == name)
}

/// Where a raw value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// A TOML config file.
    File(PathBuf),
    /// A variable in a `.env` file.
    DotEnv { path: PathBuf, var: String },
    /// An environment variable.
    Env(String),
    /// A command-line flag, e.g. `--threshold`.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("the built-in default"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::DotEnv { path, var } => write!(f, "{var} in {}", path.display()),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

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

/// A value given on the command line, tied to the config key it overrides.
#[derive(Debug, Clone)]
pub struct Flag {
    /// The config key, e.g. `queue.tries`.
    pub key: &'static str,
    /// The flag as the user typed it, e.g. `--tries`.
    pub flag: &'static str,
    /// The raw value.
    pub value: String,
}

impl Flag {
    /// A flag override for `key`; `None` values are skipped by [`flags`].
    pub fn new(key: &'static str, flag: &'static str, value: impl ToString) -> Self {
        Flag {
            key,
            flag,
            value: value.to_string(),
        }
    }
}

/// Builds the flag layer from optional values, skipping the flags that were not given.
pub fn flags<const N: usize>(
    given: [(&'static str, &'static str, Option<String>); N],
) -> Vec<Flag> {
    given
        .into_iter()
        .filter_map(|(key, flag, value)| value.map(|v| Flag::new(key, flag, v)))
        .collect()
}

/// A `.env` file's path and its variables, in file order.
pub type DotEnv = (PathBuf, Vec<(String, String)>);

/// The raw inputs, already read: everything [`Config::resolve`] needs, so tests need no files.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The config file's path and text.
    pub file: Option<(PathBuf, String)>,
    /// The `.env` file's path and its variables.
    pub dotenv: Option<DotEnv>,
    /// The environment variables (only the known names are read).
    pub env: HashMap<String, String>,
    /// Command-line overrides.
    pub flags: Vec<Flag>,
}

#[derive(Debug, Clone)]
struct Raw {
    value: String,
    source: Source,
}

/// The merged raw layers, highest precedence applied last.
struct Layers {
    values: HashMap<&'static str, Raw>,
}

impl Layers {
    fn build(sources: &Sources) -> Result<Layers, ConfigError> {
        let mut values: HashMap<&'static str, Raw> = KEYS
            .iter()
            .map(|k| {
                let raw = Raw {
                    value: k.default.to_string(),
                    source: Source::Default,
                };
                (k.key, raw)
            })
            .collect();
        if let Some((path, text)) = &sources.file {
            for (name, value) in parse_toml(path, text)? {
                let spec = spec(&name).ok_or_else(|| ConfigError::UnknownKey {
                    key: name.clone(),
                    origin: Source::File(path.clone()),
                })?;
                let source = Source::File(path.clone());
                values.insert(spec.key, Raw { value, source });
            }
        }
        if let Some((path, vars)) = &sources.dotenv {
            for (var, value) in vars {
                if let Some(spec) = KEYS.iter().find(|k| !k.env.is_empty() && k.env == var) {
                    let source = Source::DotEnv {
                        path: path.clone(),
                        var: var.clone(),
                    };
                    values.insert(
                        spec.key,
                        Raw {
                            value: value.clone(),
                            source,
                        },
                    );
                }
            }
        }
        for spec in KEYS.iter().filter(|k| !k.env.is_empty()) {
            if let Some(value) = sources.env.get(spec.env) {
                let source = Source::Env(spec.env.to_string());
                values.insert(
                    spec.key,
                    Raw {
                        value: value.clone(),
                        source,
                    },
                );
            }
        }
        for flag in &sources.flags {
            let spec = spec(flag.key).ok_or_else(|| ConfigError::UnknownKey {
                key: flag.key.to_string(),
                origin: Source::Flag(flag.flag.to_string()),
            })?;
            let source = Source::Flag(flag.flag.to_string());
            values.insert(
                spec.key,
                Raw {
                    value: flag.value.clone(),
                    source,
                },
            );
        }
        Ok(Layers { values })
    }

    fn raw(&self, key: &'static str) -> &Raw {
        // Every key in KEYS has a default, and callers only ask for keys in KEYS.
        &self.values[key]
    }

    fn str(&self, key: &'static str) -> String {
        self.raw(key).value.trim().to_string()
    }

    fn is_set(&self, key: &'static str) -> bool {
        !self.raw(key).value.trim().is_empty()
    }

    fn source(&self, key: &'static str) -> &Source {
        &self.raw(key).source
    }

    fn invalid(&self, key: &'static str, reason: impl Into<String>) -> ConfigError {
        let raw = self.raw(key);
        let secret = spec(key).is_some_and(|s| s.secret);
        let shown = if secret {
            format!("\"{}\"", redact_url(&raw.value))
        } else {
            format!("\"{}\"", raw.value)
        };
        ConfigError::Invalid {
            key,
            shown,
            origin: raw.source.clone(),
            reason: reason.into(),
        }
    }

    fn parse<T: std::str::FromStr>(&self, key: &'static str, what: &str) -> Result<T, ConfigError> {
        self.str(key).parse().map_err(|_| self.invalid(key, what))
    }

    fn positive(&self, key: &'static str) -> Result<u64, ConfigError> {
        match self.parse::<u64>(key, "must be a positive whole number")? {
            0 => Err(self.invalid(key, "must be a positive whole number")),
            n => Ok(n),
        }
    }

    fn list(&self, key: &'static str) -> Vec<String> {
        self.str(key)
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// Flattens a TOML document into `section.key = raw value` pairs; arrays become comma lists.
fn parse_toml(path: &Path, text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let file_error = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_error(e.to_string()))?;
    let mut out = Vec::new();
    for (section, value) in table {
        let toml::Value::Table(inner) = value else {
            return Err(file_error(format!(
                "`{section}` must be a [section]; keys live in sections such as [inventory]"
            )));
        };
        for (name, value) in inner {
            let key = format!("{section}.{name}");
            let raw = toml_scalar(&value).ok_or_else(|| {
                file_error(format!(
                    "`{key}` must be a string, number, boolean or list of them"
                ))
            })?;
            out.push((key, raw));
        }
    }
    Ok(out)
}

fn toml_scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => {
            let parts: Option<Vec<String>> = items.iter().map(toml_scalar).collect();
            parts.map(|p| p.join(","))
        }
        _ => None,
    }
}

/// Replaces the password in a `scheme://user:password@host/...` URL with `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let shown = match userinfo.find(':') {
        Some(colon) => format!("{}:***", &userinfo[..colon]),
        None if url.starts_with("redis") && !userinfo.is_empty() => "***".to_string(),
        None => userinfo.to_string(),
    };
    format!("{}{}{}", &url[..scheme_end + 3], shown, &rest[at..])
}

/// A broadcast driver, chosen by `BROADCAST_DRIVER` (a comma list sends to each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Driver {
    /// Redis PUBLISH in Laravel Echo's format.
    Redis,
    /// One log line per event.
    Log,
    /// Discards events (useful to test the queue alone).
    Null,
}

impl Driver {
    /// The name used in config and job kinds.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Redis => "redis",
            Driver::Log => "log",
            Driver::Null => "null",
        }
    }

    /// Parses a driver name.
    pub fn parse(name: &str) -> Option<Driver> {
        [Driver::Redis, Driver::Log, Driver::Null]
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(name))
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
}

/// Broadcast settings.
#[derive(Debug, Clone)]
pub struct BroadcastConfig {
    /// Where events go; one job per driver.
    pub drivers: Vec<Driver>,
    /// The channel events are broadcast on.
    pub channel: String,
    /// The event name (Laravel's class name by default).
    pub event: String,
    /// Prefix the redis driver puts before the channel (Laravel's Redis key prefix).
    pub redis_prefix: String,
    /// The Redis server the redis driver publishes to.
    pub redis_url: String,
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
    /// PostgreSQL connection URL (holds a password: show it with [`redact_url`]).
    pub database_url: String,
    /// The NOTIFY channel the trigger uses and the listener listens on.
    pub listen_channel: String,
    /// Redis connection URL for the queue.
    pub redis_url: String,
    /// Queue settings.
    pub queue: QueueConfig,
    /// Broadcast settings.
    pub broadcast: BroadcastConfig,
}

impl Config {
    /// Reads the config file, `.env` and the environment, applies `flags`, and validates.
    ///
    /// `config_path` is `--config`; without it `INVENTORY_CONFIG`, then
    /// `config/inventory.toml` if it exists.
    pub fn load(config_path: Option<&Path>, flags: Vec<Flag>) -> Result<Config, ConfigError> {
        let mut env = HashMap::new();
        for spec in KEYS.iter().filter(|k| !k.env.is_empty()) {
            match std::env::var(spec.env) {
                Ok(v) => {
                    env.insert(spec.env.to_string(), v);
                }
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(ConfigError::Invalid {
                        key: spec.key,
                        shown: "(not UTF-8)".into(),
                        origin: Source::Env(spec.env.into()),
                        reason: "must be valid UTF-8".into(),
                    });
                }
                Err(std::env::VarError::NotPresent) => {}
            }
        }
        let sources = Sources {
            file: read_config_file(config_path)?,
            dotenv: read_dotenv(Path::new(".env"))?,
            env,
            flags,
        };
        Config::resolve(&sources)
    }

    /// Merges the layers and validates every value.
    pub fn resolve(sources: &Sources) -> Result<Config, ConfigError> {
        let l = Layers::build(sources)?;
        let threshold = l.positive("inventory.threshold")?;
        let boundaries = Boundaries {
            warning: l.parse("severity.warning", "must be a whole percentage")?,
            high: l.parse("severity.high", "must be a whole percentage")?,
            critical: l.parse("severity.critical", "must be a whole percentage")?,
        };
        if let Err(reason) = boundaries.validate() {
            let key = worst_boundary(&l, &boundaries);
            return Err(l.invalid(key, reason));
        }
        let min_severity = l
            .str("inventory.min_severity")
            .parse()
            .map_err(|e: String| l.invalid("inventory.min_severity", e))?;
        let listen_channel = l.str("listener.channel");
        check_channel(&listen_channel).map_err(|e| l.invalid("listener.channel", e))?;
        let redis_url = redis_url(&l, "redis.url")?;
        let broadcast_redis_url = if l.is_set("broadcast.redis_url") {
            redis_url_at(&l, "broadcast.redis_url")?
        } else {
            redis_url.clone()
        };
        Ok(Config {
            threshold,
            boundaries,
            min_severity,
            database_url: database_url(&l)?,
            listen_channel,
            redis_url,
            queue: queue_config(&l)?,
            broadcast: BroadcastConfig {
                drivers: drivers(&l)?,
                channel: non_empty(&l, "broadcast.channel")?,
                event: non_empty(&l, "broadcast.event")?,
                redis_prefix: l.str("broadcast.redis_prefix"),
                redis_url: broadcast_redis_url,
            },
        })
    }
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

fn database_url(l: &Layers) -> Result<String, ConfigError> {
    let key = "database.url";
    let url = if l.is_set(key) {
        l.str(key)
    } else {
        let port: u16 = l.parse("database.port", "must be a port number (1-65535)")?;
        format!(
            "postgres://{}:{}@{}:{}/{}",
            l.str("database.username"),
            l.str("database.password"),
            l.str("database.host"),
            port,
            l.str("database.database")
        )
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(l.invalid(key, "must be a postgres:// URL"));
    }
    url.parse::<postgres::Config>()
        .map_err(|e| l.invalid(key, format!("not a valid PostgreSQL URL ({e})")))?;
    Ok(url)
}

fn redis_url(l: &Layers, key: &'static str) -> Result<String, ConfigError> {
    if l.is_set(key) {
        return redis_url_at(l, key);
    }
    let port: u16 = l.parse("redis.port", "must be a port number (1-65535)")?;
    let password = l.str("redis.password");
    let auth = if password.is_empty() {
        String::new()
    } else {
        format!(":{password}@")
    };
    Ok(format!("redis://{auth}{}:{port}", l.str("redis.host")))
}

fn redis_url_at(l: &Layers, key: &'static str) -> Result<String, ConfigError> {
    let url = l.str(key);
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://"))
    {
        return Err(l.invalid(key, "must be a redis:// URL"));
    }
    redis::Client::open(url.as_str())
        .map_err(|e| l.invalid(key, format!("not a valid Redis URL ({})", e.kind_str())))?;
    Ok(url)
}

/// A short description of a redis error kind that never contains the URL.
trait KindStr {
    fn kind_str(&self) -> String;
}

impl KindStr for redis::RedisError {
    fn kind_str(&self) -> String {
        format!("{:?}", self.kind())
    }
}

fn queue_config(l: &Layers) -> Result<QueueConfig, ConfigError> {
    let names = l.list("queue.names");
    if names.is_empty() {
        return Err(l.invalid("queue.names", "must name at least one queue"));
    }
    let backoff = l
        .list("queue.backoff")
        .iter()
        .map(|s| s.parse::<u64>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| l.invalid("queue.backoff", "must be whole seconds, e.g. 1,5,10"))?;
    let sleep: f64 = l.parse("queue.sleep", "must be a number of seconds")?;
    if !(sleep.is_finite() && sleep > 0.0 && sleep <= 60.0) {
        return Err(l.invalid("queue.sleep", "must be between 0 and 60 seconds"));
    }
    let retry_after = l.positive("queue.retry_after")?;
    let timeout = l.positive("queue.timeout")?;
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
    Ok(QueueConfig {
        prefix: l.str("queue.prefix"),
        names,
        tries: l.parse("queue.tries", "must be a whole number (0 = unlimited)")?,
        backoff,
        retry_after,
        timeout,
        sleep,
        worker_name: Some(l.str("worker.name")).filter(|n| !n.is_empty()),
    })
}

fn drivers(l: &Layers) -> Result<Vec<Driver>, ConfigError> {
    let key = "broadcast.drivers";
    let mut out = Vec::new();
    for name in l.list(key) {
        let driver = Driver::parse(&name).ok_or_else(|| {
            l.invalid(
                key,
                format!("unknown driver `{name}`; expected redis, log or null"),
            )
        })?;
        if !out.contains(&driver) {
            out.push(driver);
        }
    }
    if out.is_empty() {
        return Err(l.invalid(key, "must name at least one driver (redis, log or null)"));
    }
    Ok(out)
}

fn read_config_file(explicit: Option<&Path>) -> Result<Option<(PathBuf, String)>, ConfigError> {
    let from_env = std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let (path, required) = match (explicit, from_env) {
        (Some(p), _) => (p.to_path_buf(), true),
        (None, Some(p)) => (p, true),
        (None, None) => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some((path, text))),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::File {
            path,
            reason: e.to_string(),
        }),
    }
}

fn read_dotenv(path: &Path) -> Result<Option<DotEnv>, ConfigError> {
    let iter = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter,
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ConfigError::File {
                path: path.to_path_buf(),
                reason: e.to_string(),
            });
        }
    };
    let vars = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::File {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    Ok(Some((path.to_path_buf(), vars)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> Option<(PathBuf, String)> {
        Some((PathBuf::from("test.toml"), text.to_string()))
    }

    fn err(sources: Sources) -> String {
        Config::resolve(&sources)
            .expect_err("must be rejected")
            .to_string()
    }

    #[test]
    fn defaults_alone() {
        let c = Config::resolve(&Sources::default()).expect("defaults are valid");
        assert_eq!(c.threshold, 20);
        assert_eq!(c.min_severity, Severity::Warning);
        assert_eq!(
            c.database_url,
            "postgres://inventory:inventory@127.0.0.1:5432/inventory"
        );
        assert_eq!(c.redis_url, "redis://127.0.0.1:6379");
        assert_eq!(c.queue.tries, 3);
        assert_eq!(c.queue.backoff, vec![1, 5, 10]);
        assert_eq!(c.queue.retry_after, 90);
        assert_eq!(c.queue.timeout, 60);
        assert_eq!(c.broadcast.drivers, vec![Driver::Redis]);
        assert_eq!(c.broadcast.event, "App\\Events\\ItemCountExeed");
        assert_eq!(c.broadcast.redis_url, c.redis_url);
    }

    #[test]
    fn each_layer_alone() {
        let from_file = Sources {
            file: file("[inventory]\nthreshold = 30\n"),
            ..Default::default()
        };
        assert_eq!(Config::resolve(&from_file).unwrap().threshold, 30);
        let from_dotenv = Sources {
            dotenv: Some((
                ".env".into(),
                vec![("INVENTORY_NOTIFICATION_THRESHOLD".into(), "31".into())],
            )),
            ..Default::default()
        };
        assert_eq!(Config::resolve(&from_dotenv).unwrap().threshold, 31);
        let from_env = Sources {
            env: env(&[("INVENTORY_NOTIFICATION_THRESHOLD", "32")]),
            ..Default::default()
        };
        assert_eq!(Config::resolve(&from_env).unwrap().threshold, 32);
        let from_flag = Sources {
            flags: vec![Flag::new("inventory.threshold", "--threshold", 33)],
            ..Default::default()
        };
        assert_eq!(Config::resolve(&from_flag).unwrap().threshold, 33);
    }

    #[test]
    fn precedence_file_dotenv_env_flag() {
        let mut s = Sources {
            file: file("[inventory]\nthreshold = 30\n"),
            dotenv: Some((
                ".env".into(),
                vec![("INVENTORY_NOTIFICATION_THRESHOLD".into(), "31".into())],
            )),
            env: env(&[("INVENTORY_NOTIFICATION_THRESHOLD", "32")]),
            flags: vec![Flag::new("inventory.threshold", "--threshold", 33)],
        };
        assert_eq!(Config::resolve(&s).unwrap().threshold, 33, "flag wins");
        s.flags.clear();
        assert_eq!(Config::resolve(&s).unwrap().threshold, 32, "env beats .env");
        s.env.clear();
        assert_eq!(
            Config::resolve(&s).unwrap().threshold,
            31,
            ".env beats file"
        );
    }

    #[test]
    fn bad_threshold_names_key_and_source() {
        for bad in ["0", "-5", "twenty", "1.5", ""] {
            let msg = err(Sources {
                env: env(&[("INVENTORY_NOTIFICATION_THRESHOLD", bad)]),
                ..Default::default()
            });
            assert!(msg.contains("inventory.threshold"), "{msg}");
            assert!(
                msg.contains("environment variable INVENTORY_NOTIFICATION_THRESHOLD"),
                "{msg}"
            );
        }
        let msg = err(Sources {
            file: file("[inventory]\nthreshold = 0\n"),
            ..Default::default()
        });
        assert!(
            msg.contains("inventory.threshold") && msg.contains("config file test.toml"),
            "{msg}"
        );
        let msg = err(Sources {
            flags: vec![Flag::new("inventory.threshold", "--threshold", "-1")],
            ..Default::default()
        });
        assert!(msg.contains("flag --threshold"), "{msg}");
    }

    #[test]
    fn unknown_driver() {
        let msg = err(Sources {
            env: env(&[("BROADCAST_DRIVER", "carrier-pigeon")]),
            ..Default::default()
        });
        assert!(
            msg.contains("broadcast.drivers") && msg.contains("BROADCAST_DRIVER"),
            "{msg}"
        );
        assert!(msg.contains("carrier-pigeon"), "{msg}");
    }

    #[test]
    fn several_drivers_as_list_or_comma_string() {
        let s = Sources {
            file: file("[broadcast]\ndrivers = [\"redis\", \"log\"]\n"),
            ..Default::default()
        };
        assert_eq!(
            Config::resolve(&s).unwrap().broadcast.drivers,
            vec![Driver::Redis, Driver::Log]
        );
        let s = Sources {
            env: env(&[("BROADCAST_DRIVER", "log, null")]),
            ..Default::default()
        };
        assert_eq!(
            Config::resolve(&s).unwrap().broadcast.drivers,
            vec![Driver::Log, Driver::Null]
        );
    }

    #[test]
    fn bad_urls_never_show_the_password() {
        let msg = err(Sources {
            env: env(&[("DATABASE_URL", "mysql://root:hunter2@db/x")]),
            ..Default::default()
        });
        assert!(
            msg.contains("database.url") && msg.contains("DATABASE_URL"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
        let msg = err(Sources {
            env: env(&[("REDIS_URL", "http://:hunter2@localhost")]),
            ..Default::default()
        });
        assert!(
            msg.contains("redis.url") && !msg.contains("hunter2"),
            "{msg}"
        );
        let msg = err(Sources {
            env: env(&[("DB_PORT", "99999")]),
            ..Default::default()
        });
        assert!(
            msg.contains("database.port") && msg.contains("DB_PORT"),
            "{msg}"
        );
    }

    #[test]
    fn db_parts_build_the_url() {
        let s = Sources {
            env: env(&[
                ("DB_HOST", "db.local"),
                ("DB_PORT", "6543"),
                ("DB_DATABASE", "shop"),
            ]),
            ..Default::default()
        };
        assert_eq!(
            Config::resolve(&s).unwrap().database_url,
            "postgres://inventory:inventory@db.local:6543/shop"
        );
    }

    #[test]
    fn boundaries_out_of_order() {
        let msg = err(Sources {
            env: env(&[("INVENTORY_SEVERITY_HIGH", "160")]),
            ..Default::default()
        });
        assert!(
            msg.contains("severity.high") && msg.contains("INVENTORY_SEVERITY_HIGH"),
            "{msg}"
        );
        assert!(msg.contains("must rise"), "{msg}");
    }

    #[test]
    fn unknown_file_key_is_an_error() {
        let msg = err(Sources {
            file: file("[queue]\ntrys = 3\n"),
            ..Default::default()
        });
        assert!(
            msg.contains("queue.trys") && msg.contains("test.toml"),
            "{msg}"
        );
    }

    #[test]
    fn timeout_must_be_below_retry_after() {
        let msg = err(Sources {
            flags: vec![Flag::new("queue.timeout", "--timeout", 90)],
            ..Default::default()
        });
        assert!(
            msg.contains("queue.timeout") && msg.contains("--timeout"),
            "{msg}"
        );
    }

    #[test]
    fn bad_backoff_and_tries() {
        let msg = err(Sources {
            env: env(&[("INVENTORY_QUEUE_BACKOFF", "1,x")]),
            ..Default::default()
        });
        assert!(msg.contains("queue.backoff"), "{msg}");
        let msg = err(Sources {
            flags: vec![Flag::new("queue.tries", "--tries", "-1")],
            ..Default::default()
        });
        assert!(
            msg.contains("queue.tries") && msg.contains("--tries"),
            "{msg}"
        );
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("redis://:secret@h:6379"), "redis://:***@h:6379");
        assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn the_shipped_config_file_is_valid_and_matches_the_defaults() {
        let text = include_str!("../config/inventory.toml");
        let s = Sources {
            file: file(text),
            ..Default::default()
        };
        let c = Config::resolve(&s).expect("config/inventory.toml is valid");
        assert_eq!(c.threshold, 20);
        for spec in KEYS {
            let name = spec.key.rsplit('.').next().unwrap();
            assert!(
                text.contains(name),
                "config/inventory.toml does not document {}",
                spec.key
            );
            assert!(
                spec.env.is_empty() || text.contains(spec.env),
                "{} is not named",
                spec.env
            );
        }
    }
}
