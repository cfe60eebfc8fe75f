//! PostgreSQL: connections (TLS, timeouts, keepalives on both ends) with readable errors,
//! migrations, and the failed-jobs store.

pub mod count;
pub mod failed;
pub mod migrate;
pub mod recorder;
pub mod tls;

use crate::secret::Secret;
use std::time::Duration;
pub use tls::{PgTls, SslMode};

/// Where PostgreSQL is and how a session there behaves.
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// The connection URL, without the TLS parameters (they are in `tls`); it may hold a
    /// password.
    pub url: Secret,
    /// How the connection is secured.
    pub tls: PgTls,
    /// Longest a statement may run before the server cancels it (0: no limit).
    pub statement_timeout: Duration,
    /// Longest a statement may wait for a lock (0: no limit).
    pub lock_timeout: Duration,
}

impl DatabaseConfig {
    /// Plain text to `url` with the default timeouts: for tools and tests.
    pub fn plain(url: &str) -> DatabaseConfig {
        DatabaseConfig {
            url: Secret::new(url),
            tls: PgTls {
                mode: SslMode::Disable,
                ..PgTls::default()
            },
            statement_timeout: STATEMENT_TIMEOUT,
            lock_timeout: LOCK_TIMEOUT,
        }
    }
}

/// Default statement timeout: the daemons' statements take milliseconds, so a statement still
/// running after this is stuck (a lock, a synchronous replica gone), and failing it lets the
/// worker go on.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default lock wait: shorter than the statement timeout, so a lock is what the error names.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection attempt may take before we call the server unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalives: a half-open connection (server vanished without a FIN) is noticed after
/// about idle + interval * retries = 25 s, not after the kernel's default of over two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;
/// Unacknowledged sends fail after this long, for the same reason.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(25);

/// The server-side half of the same: the server probes our side of the connection too, so
/// after a half-open connection it ends the dead session (and frees the listener's advisory
/// lock) in about 25 s instead of waiting for the kernel's hours.
fn server_options(config: &DatabaseConfig) -> String {
    format!(
        "-c tcp_keepalives_idle={} -c tcp_keepalives_interval={} -c tcp_keepalives_count={} \
         -c tcp_user_timeout={} -c statement_timeout={} -c lock_timeout={}",
        KEEPALIVE_IDLE.as_secs(),
        KEEPALIVE_INTERVAL.as_secs(),
        KEEPALIVE_RETRIES,
        TCP_USER_TIMEOUT.as_millis(),
        config.statement_timeout.as_millis(),
        config.lock_timeout.as_millis(),
    )
}

/// A PostgreSQL problem, with the server named (never the password).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The server could not be reached or refused us.
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    Connect { target: String, reason: String },
    /// A query failed.
    #[error("PostgreSQL at {target}: {reason}")]
    Query { target: String, reason: String },
}

impl DbError {
    /// True when the connection is gone and reconnecting may help.
    pub fn is_connection(&self) -> bool {
        matches!(self, DbError::Connect { .. })
    }
}

/// A PostgreSQL connection that knows how to describe its server in errors.
pub struct Db {
    /// The open client.
    pub client: postgres::Client,
    target: String,
}

/// `host:port/database as user`, for messages; never contains the password.
pub fn describe(url: &str) -> String {
    let Ok(cfg) = url.parse::<postgres::Config>() else {
        return "(unparsable URL)".to_string();
    };
    let host = match cfg.get_hosts().first() {
        Some(postgres::config::Host::Tcp(h)) => h.clone(),
        Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    let db = cfg.get_dbname().unwrap_or("(default)");
    let user = cfg.get_user().unwrap_or("(default)");
    format!("{host}:{port}/{db} as {user}")
}

/// The innermost cause of a postgres error: the useful part ("Connection refused").
fn reason(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_string();
    }
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    let text = source.to_string();
    if text.is_empty() { e.to_string() } else { text }
}

/// Why connecting failed: a TLS failure in words, a refusal for want of TLS with what to do,
/// else the innermost cause.
fn connect_reason(e: &postgres::Error, mode: SslMode) -> String {
    if let Some(tls) = crate::tls::explain(e) {
        return tls;
    }
    let text = reason(e);
    let no_encryption = e.code()
        == Some(&postgres::error::SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
        && text.contains("no encryption");
    if no_encryption && mode == SslMode::Disable {
        return format!(
            "{text} (the server accepts only TLS connections: set sslmode=require or verify-full)"
        );
    }
    text
}

/// SQLSTATE class 08 (connection exception) and 57P01-57P03 (admin shutdown, crash shutdown,
/// cannot connect now): the server is going away or not yet back.
fn is_server_going_away(e: &postgres::Error) -> bool {
    e.code()
        .map(|c| c.code())
        .is_some_and(|c| c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03"))
}

impl Db {
    /// Connects with a timeout, TLS as configured, and TCP keepalives on both ends.
    pub fn connect(config: &DatabaseConfig) -> Result<Db, DbError> {
        Db::connect_as(config, "inventory-broadcast")
    }

    /// Connects, showing `application_name` in `pg_stat_activity` (so an administrator can
    /// tell the listener's session from the worker's).
    pub fn connect_as(config: &DatabaseConfig, application_name: &str) -> Result<Db, DbError> {
        let url = config.url.expose();
        let target = describe(url);
        let failed = |reason: String| DbError::Connect {
            target: target.clone(),
            reason,
        };
        let mut cfg: postgres::Config = url.parse().map_err(|e| failed(reason(&e)))?;
        let options = match cfg.get_options() {
            Some(own) if !own.trim().is_empty() => format!("{own} {}", server_options(config)),
            _ => server_options(config),
        };
        cfg.connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES)
            .tcp_user_timeout(TCP_USER_TIMEOUT)
            .options(&options)
            .application_name(application_name)
            .ssl_mode(config.tls.wire_mode());
        let client = match config.tls.client_config().map_err(failed)? {
            None => cfg.connect(postgres::NoTls),
            Some(tls) => cfg.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls)),
        };
        let client = client.map_err(|e| failed(connect_reason(&e, config.tls.mode)))?;
        Ok(Db { client, target })
    }

    /// Wraps a postgres error with the server name; a closed connection, or a server shutting
    /// down or starting up, becomes `Connect` (reconnecting helps).
    pub fn error(&self, e: postgres::Error) -> DbError {
        let target = self.target.clone();
        if e.is_closed() || self.client.is_closed() || is_server_going_away(&e) {
            DbError::Connect {
                target,
                reason: reason(&e),
            }
        } else {
            DbError::Query {
                target,
                reason: reason(&e),
            }
        }
    }

    /// The server as shown in messages.
    pub fn target(&self) -> &str {
        &self.target
    }
}
