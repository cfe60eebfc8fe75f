//! The key table: every configurable key, its environment variable, its built-in default,
//! and whether it is secret. `config/inventory.toml` documents each one.

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
    /// A second environment variable (libpq's `PGSSLMODE` beside `DB_SSLMODE`); `env` wins
    /// when both are set. Empty: none.
    pub alias: &'static str,
}

impl KeySpec {
    /// This key, also read from `alias`.
    const fn or(self, alias: &'static str) -> KeySpec {
        KeySpec { alias, ..self }
    }

    /// The environment variables that set this key, lowest precedence first.
    pub fn vars(&self) -> impl Iterator<Item = &'static str> {
        [self.alias, self.env].into_iter().filter(|v| !v.is_empty())
    }
}

const fn key(key: &'static str, env: &'static str, default: &'static str) -> KeySpec {
    KeySpec {
        key,
        env,
        default,
        secret: false,
        alias: "",
    }
}

const fn secret(key: &'static str, env: &'static str, default: &'static str) -> KeySpec {
    KeySpec {
        key,
        env,
        default,
        secret: true,
        alias: "",
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
    key("database.sslmode", "DB_SSLMODE", "prefer").or("PGSSLMODE"),
    key("database.sslrootcert", "DB_SSLROOTCERT", "").or("PGSSLROOTCERT"),
    key("database.sslcert", "DB_SSLCERT", "").or("PGSSLCERT"),
    key("database.sslkey", "DB_SSLKEY", "").or("PGSSLKEY"),
    key(
        "database.statement_timeout",
        "INVENTORY_DB_STATEMENT_TIMEOUT",
        "30s",
    ),
    key("database.lock_timeout", "INVENTORY_DB_LOCK_TIMEOUT", "10s"),
    key("listener.channel", "INVENTORY_LISTEN_CHANNEL", "item_count"),
    key("listener.source", "INVENTORY_SOURCE", "notify"),
    key("listener.slot", "INVENTORY_LOGICAL_SLOT", "inventory_items"),
    secret("redis.url", "REDIS_URL", ""),
    key("redis.host", "REDIS_HOST", "127.0.0.1"),
    key("redis.port", "REDIS_PORT", "6379"),
    secret("redis.password", "REDIS_PASSWORD", ""),
    key("redis.scheme", "REDIS_SCHEME", "tcp"),
    key("redis.ca_cert", "REDIS_CA_CERT", ""),
    key("redis.client_cert", "REDIS_CLIENT_CERT", ""),
    key("redis.client_key", "REDIS_CLIENT_KEY", ""),
    secret("redis.cluster_nodes", "REDIS_CLUSTER_NODES", ""),
    key("redis.cluster", "REDIS_CLUSTER", ""),
    secret("redis.sentinels", "REDIS_SENTINELS", ""),
    key(
        "redis.sentinel_service",
        "REDIS_SENTINEL_SERVICE",
        "mymaster",
    ),
    secret("redis.sentinel_password", "REDIS_SENTINEL_PASSWORD", ""),
    key(
        "redis.failover_timeout",
        "INVENTORY_REDIS_FAILOVER_TIMEOUT",
        "30s",
    ),
    key("redis.wait_replicas", "INVENTORY_REDIS_WAIT_REPLICAS", "0"),
    key("redis.wait_timeout", "INVENTORY_REDIS_WAIT_TIMEOUT", "1s"),
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
    key("log.format", "LOG_FORMAT", "text"),
    key("log.file", "LOG_FILE", ""),
    key("metrics.addr", "INVENTORY_METRICS_ADDR", ""),
    key(
        "dashboard.addr",
        "INVENTORY_DASHBOARD_ADDR",
        "127.0.0.1:8080",
    ),
    secret("dashboard.token", "INVENTORY_DASHBOARD_TOKEN", ""),
];

/// Secret keys whose URL path is the secret (a Slack webhook's token lives in its path), so
/// only scheme and host are ever shown.
pub(super) const SECRET_PATH: &[&str] = &["slack.webhook_url"];

/// Secret keys that hold a comma-separated list of URLs: each is hidden on its own.
pub(super) const SECRET_LISTS: &[&str] = &["redis.cluster_nodes", "redis.sentinels"];

/// The key named `name` (`section.name`).
pub fn spec(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.key == name)
}

/// The key that environment variable `var` sets (as its name or its alias).
pub fn by_env(var: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.vars().any(|v| v == var))
}
