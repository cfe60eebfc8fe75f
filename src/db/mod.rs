//! PostgreSQL: connections (TLS, timeouts, keepalives on both ends) with readable errors,
//! migrations, and the failed-jobs store.

pub mod count;
pub mod failed;
pub mod logical;
pub mod migrate;
pub mod recorder;
pub mod replication;
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

/// `host:port/database as user` (`h1:port,h2:port/…` for a multi-host URL), for messages;
/// never contains the password.
pub fn describe(url: &str) -> String {
    let Ok(cfg) = url.parse::<postgres::Config>() else {
        return "(unparsable URL)".to_string();
    };
    let ports = cfg.get_ports();
    // As libpq: one port for every host, or one each.
    let port = |i: usize| ports.get(i).or(ports.first()).copied().unwrap_or(5432);
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| match host {
            postgres::config::Host::Tcp(h) => format!("{h}:{}", port(i)),
            postgres::config::Host::Unix(p) => format!("{}:{}", p.display(), port(i)),
        })
        .collect();
    let hosts = if hosts.is_empty() {
        format!("localhost:{}", port(0))
    } else {
        hosts.join(",")
    };
    let db = cfg.get_dbname().unwrap_or("(default)");
    let user = cfg.get_user().unwrap_or("(default)");
    format!("{hosts}/{db} as {user}")
}

/// True when a URL lists several hosts and does not say which kind of server it wants: then
/// we want the primary (`target_session_attrs=read-write`), not libpq's default `any` (the
/// first host that answers, maybe a standby). The worker writes `failed_jobs` and the listener
/// needs the server where changes are committed and notified, so a standby is no use to
/// either; an explicit `target_session_attrs` is kept.
fn wants_primary(url: &str, cfg: &postgres::Config) -> bool {
    let explicit = url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.starts_with("target_session_attrs="))
    });
    cfg.get_hosts().len() > 1 && !explicit
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
        if wants_primary(url, &cfg) {
            cfg.target_session_attrs(postgres::config::TargetSessionAttrs::ReadWrite);
        }
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
        let several = cfg.get_hosts().len() > 1;
        let client = client.map_err(|e| {
            let why = connect_reason(&e, config.tls.mode);
            // tokio-postgres tries the hosts in turn and returns the last one's error.
            failed(if several {
                let wanted = match cfg.get_target_session_attrs() {
                    postgres::config::TargetSessionAttrs::ReadWrite => "read-write",
                    postgres::config::TargetSessionAttrs::ReadOnly => "read-only",
                    _ => "any",
                };
                format!(
                    "no host took a session (target_session_attrs={wanted}); the last one \
                     tried: {why}"
                )
            } else {
                why
            })
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_multi_host_url_names_every_host_and_wants_the_primary_unless_told() {
        let url = "postgres://u:pw@h1:5432,h2:5433/inv";
        let cfg: postgres::Config = url.parse().unwrap();
        assert_eq!(describe(url), "h1:5432,h2:5433/inv as u");
        // A port for each host, or one for all (libpq's key=value form).
        assert_eq!(
            describe("postgres://u@h1,h2:6000/inv"),
            "h1:5432,h2:6000/inv as u"
        );
        assert_eq!(
            describe("host=h1,h2 port=6000 user=u dbname=inv"),
            "h1:6000,h2:6000/inv as u"
        );
        assert!(wants_primary(url, &cfg));
        for explicit in ["any", "read-write"] {
            let url = format!("{url}?connect_timeout=3&target_session_attrs={explicit}");
            assert!(!wants_primary(&url, &url.parse().unwrap()), "{url}");
        }
        let one = "postgres://u:pw@h1:5432/inv";
        assert_eq!(describe(one), "h1:5432/inv as u");
        assert!(!wants_primary(one, &one.parse().unwrap()));
    }
}
