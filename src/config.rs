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

/// A secret value (password, API secret, webhook URL): its `Debug` never shows it, so a
/// logged or printed config cannot leak it. Read it with [`Secret::expose`] where it is used.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when no secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

/// Where the pusher driver sends events: Pusher itself (by cluster) or a compatible server
/// (Soketi, Laravel Reverb) by host, port and scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherConfig {
    /// `PUSHER_APP_ID`.
    pub app_id: String,
    /// `PUSHER_APP_KEY`, sent as `auth_key`.
    pub key: String,
    /// `PUSHER_APP_SECRET`, the HMAC key; never sent.
    pub secret: Secret,
    /// `scheme://host:port`, without a trailing slash.
    pub base_url: String,
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

/// How the SMTP connection is secured (`MAIL_ENCRYPTION`, as Laravel names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// `tls`: plain connection upgraded with STARTTLS, which is required (port 587).
    StartTls,
    /// `ssl`: TLS from the first byte (port 465).
    Tls,
    /// `null`: no encryption (a relay on localhost, a test server) (port 25).
    None,
}

impl Encryption {
    /// The usual port for this mode.
    pub fn default_port(self) -> u16 {
        match self {
            Encryption::StartTls => 587,
            Encryption::Tls => 465,
            Encryption::None => 25,
        }
    }
}

/// Slack: an incoming webhook.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// The webhook URL (its path is the credential).
    pub webhook_url: Secret,
    /// Lowest severity that is sent.
    pub min_severity: Severity,
}

/// Email over SMTP.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// SMTP server host name.
    pub host: String,
    /// SMTP port.
    pub port: u16,
    /// Connection security.
    pub encryption: Encryption,
    /// Login user; no login when empty.
    pub username: String,
    /// Login password.
    pub password: Secret,
    /// Sender address.
    pub from_address: String,
    /// Sender display name.
    pub from_name: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Lowest severity that is sent.
    pub min_severity: Severity,
}

/// Where a count falls back to "resolved" after an alert (hysteresis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveBelow {
    /// A percentage of the threshold, e.g. 95.
    Percent(u64),
    /// An absolute item count.
    Count(u64),
}

impl ResolveBelow {
    /// The count under which an alert is resolved: `count < limit`. A percentage rounds up, so
    /// 95 % of 20 gives 19 (and 19 itself is not below it).
    pub fn limit(self, threshold: u64) -> u64 {
        match self {
            ResolveBelow::Count(n) => n,
            ResolveBelow::Percent(p) => {
                let scaled = u128::from(threshold) * u128::from(p);
                u64::try_from(scaled.div_ceil(100)).unwrap_or(u64::MAX)
            }
        }
    }
}

/// Notifications for people (Slack, email) and the policy that keeps them quiet.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Slack, when `INVENTORY_SLACK_NOTIFICATIONS` is true.
    pub slack: Option<SlackConfig>,
    /// Email, when `INVENTORY_EMAIL_NOTIFICATIONS` is true.
    pub mail: Option<MailConfig>,
    /// An unchanged severity is sent again only after this long.
    pub repeat_interval: std::time::Duration,
    /// After an alert, "resolved" is sent once the count falls below this.
    pub resolve_below: ResolveBelow,
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

/// The pusher driver's settings; `None` when it is not selected and not configured.
fn pusher_config(l: &Layers, selected: bool) -> Result<Option<PusherConfig>, ConfigError> {
    let by = "the pusher driver is selected (BROADCAST_DRIVER)";
    let scheme = l.str("pusher.scheme").to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(l.invalid("pusher.scheme", "must be https or http"));
    }
    let port = l.port("pusher.port")?;
    let cluster = l.str("pusher.cluster");
    if !cluster
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(l.invalid("pusher.cluster", "must be a cluster name such as mt1 or eu"));
    }
    let host = if l.is_set("pusher.host") {
        let host = l.str("pusher.host");
        if host.contains("://") || host.contains('/') || host.contains('@') {
            return Err(l.invalid(
                "pusher.host",
                "must be a bare host name such as soketi or 127.0.0.1; set the scheme with \
                 PUSHER_SCHEME and the port with PUSHER_PORT",
            ));
        }
        host
    } else if cluster.is_empty() {
        return Err(l.invalid(
            "pusher.cluster",
            "must be set unless PUSHER_HOST is (the host is api-{cluster}.pusher.com)",
        ));
    } else {
        format!("api-{cluster}.pusher.com")
    };
    for key in ["pusher.app_id", "pusher.key"] {
        // Both travel in the URL and in the signed string, so they must need no escaping.
        let value = l.str(key);
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c))
        {
            return Err(l.invalid(key, "may hold only letters, digits and - _ . ~"));
        }
    }
    let (app_id, key, secret) = (
        l.str("pusher.app_id"),
        l.str("pusher.key"),
        l.str("pusher.secret"),
    );
    if !selected && (app_id.is_empty() || key.is_empty() || secret.is_empty()) {
        return Ok(None);
    }
    for (name, value) in [
        ("pusher.app_id", &app_id),
        ("pusher.key", &key),
        ("pusher.secret", &secret),
    ] {
        if value.is_empty() {
            return Err(l.required(name, by));
        }
    }
    if selected {
        let channel = l.str("broadcast.channel");
        crate::broadcast::pusher::check_channel(&channel)
            .map_err(|e| l.invalid("broadcast.channel", format!("{e} (pusher driver)")))?;
        crate::broadcast::pusher::check_event_name(&l.str("broadcast.event"))
            .map_err(|e| l.invalid("broadcast.event", format!("{e} (pusher driver)")))?;
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let host = if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else if host.contains(':') {
        return Err(l.invalid(
            "pusher.host",
            "must be a host name without a port; set the port with PUSHER_PORT",
        ));
    } else {
        host
    };
    Ok(Some(PusherConfig {
        app_id,
        key,
        secret: Secret::new(secret),
        base_url: format!("{scheme}://{host}:{}", port.unwrap_or(default_port)),
    }))
}

/// Parses a duration: whole seconds, or a number with `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| "must be a duration such as 3600, 90s, 30m or 1h".to_string())?;
    let scale = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err("must be a duration such as 3600, 90s, 30m or 1h".into()),
    };
    n.checked_mul(scale)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| "is too long".to_string())
}

/// A people channel's minimum severity: `info` would page someone for a count under the
/// threshold, and "resolved" would follow at once, so it starts at `warning`.
fn people_severity(l: &Layers, key: &'static str) -> Result<Severity, ConfigError> {
    let severity: Severity = l.str(key).parse().map_err(|e: String| l.invalid(key, e))?;
    if severity == Severity::Info {
        return Err(l.invalid(key, "must be warning, high or critical"));
    }
    Ok(severity)
}

fn email_address(l: &Layers, key: &'static str, value: &str) -> Result<String, ConfigError> {
    value
        .parse::<lettre::Address>()
        .map(|a| a.to_string())
        .map_err(|e| l.invalid(key, format!("`{value}` is not an email address ({e})")))
}

fn notify_config(l: &Layers, threshold: u64) -> Result<NotifyConfig, ConfigError> {
    let repeat_interval = parse_duration(&l.str("alerts.repeat_interval"))
        .map_err(|e| l.invalid("alerts.repeat_interval", e))?;
    if repeat_interval.is_zero() {
        return Err(l.invalid("alerts.repeat_interval", "must be longer than 0"));
    }
    let resolve_below = resolve_below(l, threshold)?;
    Ok(NotifyConfig {
        slack: slack_config(l)?,
        mail: mail_config(l)?,
        repeat_interval,
        resolve_below,
    })
}

fn resolve_below(l: &Layers, threshold: u64) -> Result<ResolveBelow, ConfigError> {
    let key = "alerts.resolve_below";
    let text = l.str(key);
    let value = match text.strip_suffix('%') {
        Some(p) => {
            let p: u64 = p
                .trim()
                .parse()
                .map_err(|_| l.invalid(key, "must be a count or a percentage such as 95%"))?;
            if !(1..=100).contains(&p) {
                return Err(l.invalid(key, "must be a percentage from 1% to 100% of the threshold"));
            }
            ResolveBelow::Percent(p)
        }
        None => {
            let n: u64 = l.parse(key, "must be a count or a percentage such as 95%")?;
            if n == 0 || n > threshold {
                return Err(l.invalid(
                    key,
                    format!("must be a count from 1 to the threshold ({threshold})"),
                ));
            }
            ResolveBelow::Count(n)
        }
    };
    Ok(value)
}

fn slack_config(l: &Layers) -> Result<Option<SlackConfig>, ConfigError> {
    let key = "slack.webhook_url";
    let enabled = l.bool("slack.enabled")?;
    let min_severity = people_severity(l, "slack.min_severity")?;
    let url = l.str(key);
    if !url.is_empty() {
        check_http_url(&url).map_err(|e| l.invalid(key, e))?;
    }
    if !enabled {
        return Ok(None);
    }
    if url.is_empty() {
        return Err(l.required(
            key,
            "Slack notifications are on (INVENTORY_SLACK_NOTIFICATIONS)",
        ));
    }
    Ok(Some(SlackConfig {
        webhook_url: Secret::new(url),
        min_severity,
    }))
}

/// An absolute http(s) URL with a host.
fn check_http_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|_| "must be an https:// URL".to_string())?;
    if !matches!(uri.scheme_str(), Some("https" | "http")) {
        return Err("must be an https:// URL".into());
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("must be an https:// URL with a host".into());
    }
    Ok(())
}

fn mail_config(l: &Layers) -> Result<Option<MailConfig>, ConfigError> {
    let by = "email notifications are on (INVENTORY_EMAIL_NOTIFICATIONS)";
    let enabled = l.bool("mail.enabled")?;
    let min_severity = people_severity(l, "mail.min_severity")?;
    let encryption = match l.str("mail.encryption").to_ascii_lowercase().as_str() {
        "tls" => Encryption::StartTls,
        "ssl" => Encryption::Tls,
        "null" => Encryption::None,
        _ => {
            return Err(l.invalid(
                "mail.encryption",
                "must be tls (STARTTLS), ssl (TLS from the start) or null (none)",
            ));
        }
    };
    let port = l.port("mail.port")?;
    let from_address = l.str("mail.from_address");
    let from_address = if from_address.is_empty() {
        from_address
    } else {
        email_address(l, "mail.from_address", &from_address)?
    };
    let to = l
        .list("mail.to")
        .iter()
        .map(|a| email_address(l, "mail.to", a))
        .collect::<Result<Vec<_>, _>>()?;
    let host = l.str("mail.host");
    if !enabled {
        return Ok(None);
    }
    if host.is_empty() {
        return Err(l.required("mail.host", by));
    }
    if from_address.is_empty() {
        return Err(l.required("mail.from_address", by));
    }
    if to.is_empty() {
        return Err(l.required("mail.to", by));
    }
    Ok(Some(MailConfig {
        host,
        port: port.unwrap_or(encryption.default_port()),
        encryption,
        username: l.str("mail.username"),
        password: Secret::new(l.str("mail.password")),
        from_address,
        from_name: l.str("mail.from_name"),
        to,
        min_severity,
    }))
}

/// The secret keys `file` sets, when others than its owner may read it.
#[cfg(unix)]
fn exposed_secrets(path: &Path, keys: &[&'static str]) -> Option<(u32, Vec<&'static str>)> {
    use std::os::unix::fs::PermissionsExt;
    if keys.is_empty() {
        return None;
    }
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then(|| (mode, keys.to_vec()))
}

#[cfg(not(unix))]
fn exposed_secrets(_path: &Path, _keys: &[&'static str]) -> Option<(u32, Vec<&'static str>)> {
    None
}

/// Warns once per file that holds a secret and that group or others can read. A warning, not
/// an error: the file may be shared on purpose (a container secret mount), but usually it is
/// an accident worth a `chmod 600`.
fn warn_about_readable_secrets(sources: &Sources) {
    let is_secret = |spec: &&KeySpec| spec.secret;
    if let Some((path, text)) = &sources.file {
        let keys: Vec<&'static str> = parse_toml(path, text)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .filter_map(|(name, _)| spec(&name).filter(is_secret).map(|s| s.key))
            .collect();
        warn_exposed(path, &keys);
    }
    if let Some((path, vars)) = &sources.dotenv {
        let keys: Vec<&'static str> = vars
            .iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .filter_map(|(var, _)| {
                KEYS.iter()
                    .find(|k| k.secret && !k.env.is_empty() && k.env == var)
                    .map(|k| k.env)
            })
            .collect();
        warn_exposed(path, &keys);
    }
}

fn warn_exposed(path: &Path, keys: &[&'static str]) {
    if let Some((mode, keys)) = exposed_secrets(path, keys) {
        log::warn!(
            "{} holds secrets ({}) and is readable by group or others (mode {mode:03o}); \
             run `chmod 600 {}` or move them to environment variables",
            path.display(),
            keys.join(", "),
            path.display()
        );
    }
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
    fn pusher_driver_needs_its_credentials_and_names_the_missing_key() {
        let msg = err(Sources {
            env: env(&[("BROADCAST_DRIVER", "redis,pusher")]),
            ..Default::default()
        });
        assert!(
            msg.contains("pusher.app_id") && msg.contains("PUSHER_APP_ID"),
            "{msg}"
        );
        let msg = err(Sources {
            env: env(&[
                ("BROADCAST_DRIVER", "pusher"),
                ("PUSHER_APP_ID", "1"),
                ("PUSHER_APP_KEY", "k"),
            ]),
            ..Default::default()
        });
        assert!(
            msg.contains("pusher.secret") && msg.contains("PUSHER_APP_SECRET"),
            "{msg}"
        );
    }

    fn pusher_env(extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut e = env(&[
            ("BROADCAST_DRIVER", "redis,pusher"),
            ("PUSHER_APP_ID", "123"),
            ("PUSHER_APP_KEY", "key"),
            ("PUSHER_APP_SECRET", "s3cret-value"),
        ]);
        e.extend(env(extra));
        e
    }

    #[test]
    fn pusher_host_from_cluster_or_host_port_scheme() {
        let c = |extra: &[(&str, &str)]| {
            let s = Sources {
                env: pusher_env(extra),
                ..Default::default()
            };
            Config::resolve(&s).unwrap().broadcast.pusher.unwrap()
        };
        assert_eq!(c(&[]).base_url, "https://api-mt1.pusher.com:443");
        assert_eq!(
            c(&[("PUSHER_APP_CLUSTER", "eu")]).base_url,
            "https://api-eu.pusher.com:443"
        );
        let soketi = [
            ("PUSHER_HOST", "127.0.0.1"),
            ("PUSHER_PORT", "6001"),
            ("PUSHER_SCHEME", "http"),
        ];
        assert_eq!(c(&soketi).base_url, "http://127.0.0.1:6001");
        assert_eq!(
            c(&[("PUSHER_HOST", "reverb.example.com")]).base_url,
            "https://reverb.example.com:443"
        );
        assert_eq!(
            c(&[("PUSHER_HOST", "ws.local"), ("PUSHER_SCHEME", "http")]).base_url,
            "http://ws.local:80"
        );
        assert_eq!(
            c(&[("PUSHER_HOST", "::1"), ("PUSHER_PORT", "6001")]).base_url,
            "https://[::1]:6001"
        );
        let all = c(&[]);
        assert_eq!((all.app_id.as_str(), all.key.as_str()), ("123", "key"));
        assert_eq!(all.secret.expose(), "s3cret-value");
    }

    #[test]
    fn bad_pusher_values() {
        for (var, value, key) in [
            ("PUSHER_SCHEME", "ftp", "pusher.scheme"),
            ("PUSHER_PORT", "70000", "pusher.port"),
            ("PUSHER_HOST", "http://soketi:6001", "pusher.host"),
            ("PUSHER_HOST", "soketi:6001", "pusher.host"),
            ("PUSHER_APP_CLUSTER", "eu/1", "pusher.cluster"),
            ("PUSHER_APP_KEY", "a&b", "pusher.key"),
            (
                "INVENTORY_BROADCAST_CHANNEL",
                "stock alerts",
                "broadcast.channel",
            ),
        ] {
            let msg = err(Sources {
                env: pusher_env(&[(var, value)]),
                ..Default::default()
            });
            assert!(msg.contains(key) && msg.contains(var), "{msg}");
            assert!(!msg.contains("s3cret-value"), "{msg}");
        }
    }

    #[test]
    fn secrets_never_show_in_errors_or_debug_output() {
        let msg = err(Sources {
            env: env(&[
                ("INVENTORY_SLACK_NOTIFICATIONS", "true"),
                (
                    "INVENTORY_SLACK_WEBHOOK_URL",
                    "hooks.slack.com/services/T0/B0/tok3n",
                ),
            ]),
            ..Default::default()
        });
        assert!(msg.contains("slack.webhook_url"), "{msg}");
        assert!(!msg.contains("tok3n"), "{msg}");
        let msg = err(Sources {
            env: env(&[(
                "INVENTORY_SLACK_WEBHOOK_URL",
                "ftp://hooks.slack.com/services/T0/B0/tok3n",
            )]),
            ..Default::default()
        });
        assert!(msg.contains("ftp://hooks.slack.com/***"), "{msg}");
        assert!(!msg.contains("tok3n"), "{msg}");

        let mut e = pusher_env(&[
            ("INVENTORY_SLACK_NOTIFICATIONS", "true"),
            (
                "INVENTORY_SLACK_WEBHOOK_URL",
                "https://hooks.slack.com/services/T0/B0/tok3n",
            ),
            ("MAIL_PASSWORD", "mail-pw-123"),
        ]);
        e.insert("MAIL_USERNAME".into(), "me".into());
        let c = Config::resolve(&Sources {
            env: e,
            ..Default::default()
        })
        .unwrap();
        let shown = format!("{c:?}");
        for secret in ["s3cret-value", "tok3n", "mail-pw-123"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
    }

    #[test]
    fn notification_defaults_are_off_with_the_issue_s_policy() {
        let c = Config::resolve(&Sources::default()).unwrap();
        assert!(c.notify.slack.is_none() && c.notify.mail.is_none());
        assert_eq!(c.notify.repeat_interval.as_secs(), 3600);
        assert_eq!(c.notify.resolve_below, ResolveBelow::Percent(95));
        assert_eq!(c.notify.resolve_below.limit(20), 19);
        assert!(c.broadcast.pusher.is_none());
    }

    #[test]
    fn slack_and_mail_switched_on() {
        let s = Sources {
            env: env(&[
                ("INVENTORY_SLACK_NOTIFICATIONS", "true"),
                ("INVENTORY_SLACK_WEBHOOK_URL", "https://hooks.slack.com/x"),
                ("INVENTORY_EMAIL_NOTIFICATIONS", "1"),
                ("MAIL_HOST", "smtp.example.com"),
                ("MAIL_ENCRYPTION", "ssl"),
                ("MAIL_FROM_ADDRESS", "alerts@example.com"),
                ("INVENTORY_EMAIL_TO", "a@example.com, b@example.com"),
            ]),
            ..Default::default()
        };
        let c = Config::resolve(&s).unwrap();
        let slack = c.notify.slack.unwrap();
        assert_eq!(slack.min_severity, Severity::High);
        let mail = c.notify.mail.unwrap();
        assert_eq!(mail.min_severity, Severity::Critical);
        assert_eq!((mail.encryption, mail.port), (Encryption::Tls, 465));
        assert_eq!(mail.to, ["a@example.com", "b@example.com"]);
    }

    #[test]
    fn bad_notification_values() {
        let on = [
            ("INVENTORY_EMAIL_NOTIFICATIONS", "true"),
            ("MAIL_HOST", "smtp.example.com"),
            ("MAIL_FROM_ADDRESS", "alerts@example.com"),
            ("INVENTORY_EMAIL_TO", "a@example.com"),
        ];
        for (var, value, key) in [
            ("MAIL_ENCRYPTION", "starttls", "mail.encryption"),
            ("MAIL_PORT", "x", "mail.port"),
            ("INVENTORY_EMAIL_TO", "a@example.com,nobody", "mail.to"),
            ("MAIL_FROM_ADDRESS", "alerts", "mail.from_address"),
            ("MAIL_HOST", "", "mail.host"),
            ("INVENTORY_EMAIL_TO", "", "mail.to"),
            ("INVENTORY_EMAIL_MIN_SEVERITY", "info", "mail.min_severity"),
            ("INVENTORY_EMAIL_NOTIFICATIONS", "maybe", "mail.enabled"),
            ("INVENTORY_SLACK_NOTIFICATIONS", "true", "slack.webhook_url"),
            (
                "INVENTORY_SLACK_WEBHOOK_URL",
                "not a url",
                "slack.webhook_url",
            ),
            (
                "INVENTORY_ALERT_REPEAT_INTERVAL",
                "soon",
                "alerts.repeat_interval",
            ),
            (
                "INVENTORY_ALERT_REPEAT_INTERVAL",
                "0",
                "alerts.repeat_interval",
            ),
            (
                "INVENTORY_ALERT_RESOLVE_BELOW",
                "21",
                "alerts.resolve_below",
            ),
            (
                "INVENTORY_ALERT_RESOLVE_BELOW",
                "120%",
                "alerts.resolve_below",
            ),
        ] {
            let mut e = env(&on);
            e.insert(var.into(), value.into());
            let msg = err(Sources {
                env: e,
                ..Default::default()
            });
            assert!(
                msg.contains(key) && msg.contains(var),
                "{var}={value}: {msg}"
            );
        }
        // A bad MAIL_ENCRYPTION is an error even while email is off.
        let msg = err(Sources {
            env: env(&[("MAIL_ENCRYPTION", "starttls")]),
            ..Default::default()
        });
        assert!(msg.contains("mail.encryption"), "{msg}");
    }

    #[test]
    fn resolve_below_as_count_or_percent() {
        let r = |v: &str| {
            let s = Sources {
                env: env(&[("INVENTORY_ALERT_RESOLVE_BELOW", v)]),
                ..Default::default()
            };
            Config::resolve(&s).unwrap().notify.resolve_below.limit(20)
        };
        assert_eq!(r("95%"), 19);
        assert_eq!(r("96%"), 20); // 19.2 rounds up: 19 is below it
        assert_eq!(r("100%"), 20);
        assert_eq!(r("15"), 15);
        assert_eq!(ResolveBelow::Percent(95).limit(1), 1);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3600").unwrap().as_secs(), 3600);
        assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
        assert_eq!(parse_duration("30m").unwrap().as_secs(), 1800);
        assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
        assert_eq!(parse_duration("2d").unwrap().as_secs(), 172_800);
        for bad in ["", "h", "1w", "-1", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_file_with_secrets_is_reported_by_key() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("ib-perm-{}.toml", std::process::id()));
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            exposed_secrets(&path, &["pusher.secret"]),
            Some((0o644, vec!["pusher.secret"]))
        );
        assert_eq!(exposed_secrets(&path, &[]), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(exposed_secrets(&path, &["pusher.secret"]), None);
        let _ = std::fs::remove_file(&path);
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
            let (section, name) = spec.key.split_once('.').unwrap();
            assert!(
                text.contains(&format!("[{section}]")),
                "config/inventory.toml has no [{section}] section"
            );
            assert!(
                text.contains(&format!("{name} =")),
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
