//! Redis connections with timeouts, and errors that name the server (never the password).

use std::time::Duration;

/// How long connecting may take before the server counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for a reply to an ordinary command. Blocking commands raise it for their call,
/// because the `redis` crate drops a reply that arrives after its read timeout fired.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A Redis problem, with the server named.
#[derive(Debug, thiserror::Error)]
#[error("Redis at {target}: {reason}")]
pub struct RedisError {
    /// `host:port/db`.
    pub target: String,
    /// What went wrong.
    pub reason: String,
    /// True when the connection is unusable and must be reopened.
    pub dropped: bool,
}

/// `host:port/db` for a Redis URL, without credentials.
pub fn describe(url: &str) -> String {
    match redis::Client::open(url) {
        Ok(client) => {
            let info = client.get_connection_info();
            format!("{}/{}", info.addr(), info.redis_settings().db())
        }
        Err(_) => "(unparsable URL)".to_string(),
    }
}

/// Builds a [`RedisError`] for `target` from a client error.
pub fn error(target: &str, e: &redis::RedisError) -> RedisError {
    let dropped =
        e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal();
    let reason = if e.is_connection_refusal() {
        format!("connection refused ({e}); is Redis running? scripts/services starts it")
    } else if e.is_timeout() {
        // The OS says "Resource temporarily unavailable" for a read timeout: say what it means.
        format!("timed out waiting for a reply ({e})")
    } else {
        e.to_string()
    };
    RedisError {
        target: target.to_string(),
        reason,
        dropped,
    }
}

/// Opens a connection with connect, read and write timeouts.
pub fn connect(url: &str) -> Result<redis::Connection, RedisError> {
    connect_within(url, IO_TIMEOUT)
}

/// Opens a connection; connecting and every later read and write give up after at most
/// `timeout` (and connecting after at most [`CONNECT_TIMEOUT`]).
pub fn connect_within(url: &str, timeout: Duration) -> Result<redis::Connection, RedisError> {
    let target = describe(url);
    let timeout = timeout.max(Duration::from_millis(1));
    let client = redis::Client::open(url).map_err(|e| error(&target, &e))?;
    let con = client
        .get_connection_with_timeout(timeout.min(CONNECT_TIMEOUT))
        .map_err(|e| error(&target, &e))?;
    con.set_read_timeout(Some(timeout))
        .map_err(|e| error(&target, &e))?;
    con.set_write_timeout(Some(timeout))
        .map_err(|e| error(&target, &e))?;
    Ok(con)
}
