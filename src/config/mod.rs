//! Configuration: layered raw values (defaults < file < `.env` < env < flags), validated once
//! into a typed [`Config`]. Every error names the key and the layer its value came from.

mod delivery;

use crate::severity::{Boundaries, Severity};
pub use delivery::*;
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
    key("worker.batch", "INVENTORY_WORKER_BATCH", "100"),
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
    key("pusher.app_id", "PUSHER_APP_ID", ""),
    key("pusher.key", "PUSHER_APP_KEY", ""),
    secret("pusher.secret", "PUSHER_APP_SECRET", ""),
    // Laravel's config/broadcasting.php defaults the cluster to mt1 (us-east).
    key("pusher.cluster", "PUSHER_APP_CLUSTER", "mt1"),
    key("pusher.host", "PUSHER_HOST", ""),
    key("pusher.port", "PUSHER_PORT", ""),
    key("pusher.scheme", "PUSHER_SCHEME", "https"),
    key(
        "alerts.repeat_interval",
        "INVENTORY_ALERT_REPEAT_INTERVAL",
        "1h",
    ),
    key(
        "alerts.resolve_below",
        "INVENTORY_ALERT_RESOLVE_BELOW",
        "95%",
    ),
    key("slack.enabled", "INVENTORY_SLACK_NOTIFICATIONS", "false"),
    secret("slack.webhook_url", "INVENTORY_SLACK_WEBHOOK_URL", ""),
    key("slack.min_severity", "INVENTORY_SLACK_MIN_SEVERITY", "high"),
    key("mail.enabled", "INVENTORY_EMAIL_NOTIFICATIONS", "false"),
    key("mail.to", "INVENTORY_EMAIL_TO", ""),
    key(
        "mail.min_severity",
        "INVENTORY_EMAIL_MIN_SEVERITY",
        "critical",
    ),
    key("mail.host", "MAIL_HOST", ""),
    key("mail.port", "MAIL_PORT", ""),
    key("mail.username", "MAIL_USERNAME", ""),
    secret("mail.password", "MAIL_PASSWORD", ""),
    key("mail.encryption", "MAIL_ENCRYPTION", "tls"),
    key("mail.from_address", "MAIL_FROM_ADDRESS", ""),
    key("mail.from_name", "MAIL_FROM_NAME", "Inventory"),
];

/// Secret keys whose URL path is the secret (a Slack webhook's token lives in its path), so
/// only scheme and host are ever shown.
const SECRET_PATH: &[&str] = &["slack.webhook_url"];

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
            format!("\"{}\"", redact_secret(key, &raw.value))
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

    /// A switch: true/false, 1/0, yes/no, on/off (any case), as `.env` files write them.
    fn bool(&self, key: &'static str) -> Result<bool, ConfigError> {
        match self.str(key).to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "(true)" => Ok(true),
            "false" | "0" | "no" | "off" | "(false)" | "" => Ok(false),
            _ => Err(self.invalid(key, "must be true or false")),
        }
    }

    /// An optional port: empty means "the default for the protocol".
    fn port(&self, key: &'static str) -> Result<Option<u16>, ConfigError> {
        if !self.is_set(key) {
            return Ok(None);
        }
        match self.parse::<u16>(key, "must be a port number (1-65535)")? {
            0 => Err(self.invalid(key, "must be a port number (1-65535)")),
            p => Ok(Some(p)),
        }
    }

    /// An error for a key that must be set because a feature that needs it is on.
    fn required(&self, key: &'static str, by: &str) -> ConfigError {
        let env = spec(key).map_or("", |s| s.env);
        self.invalid(
            key,
            format!("must be set when {by}: set {env} or `{key}` in the config file"),
        )
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

/// How a secret value appears in an error: URLs keep scheme and host, anything else is `***`.
fn redact_secret(key: &str, value: &str) -> String {
    if value.trim().is_empty() {
        String::new()
    } else if !value.contains("://") {
        "***".into()
    } else if SECRET_PATH.contains(&key) {
        redact_url_path(value)
    } else {
        redact_url(value)
    }
}

/// `https://hooks.slack.com/services/T/B/token` → `https://hooks.slack.com/***`.
pub fn redact_url_path(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return "***".into();
    };
    let rest = &url[scheme_end + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    // Credentials in the authority are as secret as the path.
    let host = authority.rsplit('@').next().unwrap_or(authority);
    format!("{}{host}/***", &url[..scheme_end + 3])
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
    /// The Pusher HTTP API (Pusher, Soketi, Laravel Reverb).
    Pusher,
    /// One log line per event.
    Log,
    /// Discards events (useful to test the queue alone).
    Null,
}

impl Driver {
    /// Every driver, in the order error messages list them.
    pub const ALL: [Driver; 4] = [Driver::Redis, Driver::Pusher, Driver::Log, Driver::Null];

    /// The name used in config and job kinds.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Redis => "redis",
            Driver::Pusher => "pusher",
            Driver::Log => "log",
            Driver::Null => "null",
        }
    }

    /// Parses a driver name.
    pub fn parse(name: &str) -> Option<Driver> {
        Driver::ALL
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
    /// Jobs a worker reserves per round trip (1 to 1000).
    pub batch: usize,
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
    /// The pusher driver's server and credentials; set whenever they are configured (and
    /// always when the pusher driver is selected).
    pub pusher: Option<PusherConfig>,
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
    /// Slack and email notifications.
    pub notify: NotifyConfig,
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
        warn_about_readable_secrets(&sources);
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
        let drivers = drivers(&l)?;
        let broadcast = BroadcastConfig {
            channel: non_empty(&l, "broadcast.channel")?,
            event: non_empty(&l, "broadcast.event")?,
            redis_prefix: l.str("broadcast.redis_prefix"),
            redis_url: broadcast_redis_url,
            pusher: pusher_config(&l, drivers.contains(&Driver::Pusher))?,
            drivers,
        };
        Ok(Config {
            threshold,
            boundaries,
            min_severity,
            database_url: database_url(&l)?,
            listen_channel,
            redis_url,
            queue: queue_config(&l)?,
            broadcast,
            notify: notify_config(&l, threshold)?,
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
    // Only the error kind is shown: the message could echo the URL and its password.
    redis::Client::open(url.as_str())
        .map_err(|e| l.invalid(key, format!("not a valid Redis URL ({:?})", e.kind())))?;
    Ok(url)
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
mod tests;
