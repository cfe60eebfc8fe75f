//! PostgreSQL: connections with readable errors, migrations, and the failed-jobs store.

pub mod failed;
pub mod migrate;
pub mod recorder;

use crate::secret::Secret;
use std::time::Duration;

/// How long a connection attempt may take before we call the server unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalives: a half-open connection (server vanished without a FIN) is noticed after
/// about idle + interval * retries = 25 s, not after the kernel's default of over two hours.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;
/// Unacknowledged sends fail after this long, for the same reason.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(25);

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

/// SQLSTATE class 08 (connection exception) and 57P01-57P03 (admin shutdown, crash shutdown,
/// cannot connect now): the server is going away or not yet back.
fn is_server_going_away(e: &postgres::Error) -> bool {
    e.code()
        .map(|c| c.code())
        .is_some_and(|c| c.starts_with("08") || matches!(c, "57P01" | "57P02" | "57P03"))
}

impl Db {
    /// Connects with a timeout and TCP keepalives.
    pub fn connect(url: &Secret) -> Result<Db, DbError> {
        Db::connect_as(url, "inventory-broadcast")
    }

    /// Connects, showing `application_name` in `pg_stat_activity` (so an administrator can
    /// tell the listener's session from the worker's).
    pub fn connect_as(url: &Secret, application_name: &str) -> Result<Db, DbError> {
        let url = url.expose();
        let target = describe(url);
        let mut cfg: postgres::Config =
            url.parse().map_err(|e: postgres::Error| DbError::Connect {
                target: target.clone(),
                reason: reason(&e),
            })?;
        cfg.connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES)
            .tcp_user_timeout(TCP_USER_TIMEOUT)
            .application_name(application_name);
        let client = cfg.connect(postgres::NoTls).map_err(|e| DbError::Connect {
            target: target.clone(),
            reason: reason(&e),
        })?;
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

    /// The current item count, as the trigger keeps it.
    pub fn item_count(&mut self) -> Result<i64, DbError> {
        let row = self
            .client
            .query_one("SELECT n FROM inventory_item_count", &[])
            .map_err(|e| self.error(e))?;
        Ok(row.get(0))
    }
}
