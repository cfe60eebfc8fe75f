//! Redis connections with timeouts and TLS, and errors that name the server (never the
//! password); [`Router`] sends each command to the right node of a cluster or to the primary
//! Sentinel names.

mod router;
pub mod slots;
pub mod topology;

pub use router::Router;
pub use topology::{Durability, Topology};

use crate::secret::Secret;
use std::path::PathBuf;
use std::time::Duration;

/// How long connecting may take before the server counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait for a reply to an ordinary command. Blocking commands raise it for their call,
/// because the `redis` crate drops a reply that arrives after its read timeout fired.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a Redis server is and how to reach it.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://`, `rediss://` (TLS) or `unix://`; it may hold a password.
    pub url: Secret,
    /// CA certificates (PEM) trusted beside the system's, for `rediss://`.
    pub ca_cert: Option<PathBuf>,
    /// A client certificate (PEM) to present, for servers that ask for one.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    pub client_key: Option<PathBuf>,
    /// One server (`url`), a cluster or a Sentinel setup. When it is not [`Topology::Single`],
    /// `url` only lends its credentials and TLS settings to every node.
    pub topology: Topology,
    /// Replicas to wait for, and how long to wait out a failover.
    pub durability: Durability,
}

impl RedisConfig {
    /// A server at `url`, with no certificate files: for tools and tests.
    pub fn url(url: &str) -> RedisConfig {
        RedisConfig {
            url: Secret::new(url),
            ca_cert: None,
            client_cert: None,
            client_key: None,
            topology: Topology::Single,
            durability: Durability::default(),
        }
    }

    /// The same settings for another server at `url` (a node of a cluster, a sentinel).
    pub fn with_url(&self, url: &str) -> RedisConfig {
        RedisConfig {
            url: Secret::new(url),
            topology: Topology::Single,
            ..self.clone()
        }
    }

    /// These settings for the one server at `url`, ignoring the topology.
    fn single(&self) -> RedisConfig {
        RedisConfig {
            topology: Topology::Single,
            ..self.clone()
        }
    }

    /// The deployment as shown in messages: `host:port/db`, or the cluster's seeds, or the
    /// sentinels and their service (never a password).
    pub fn describe(&self) -> String {
        let addrs = |urls: &[Secret]| {
            urls.iter()
                .map(|u| topology::addr_of(u.expose()))
                .collect::<Vec<_>>()
                .join(",")
        };
        match &self.topology {
            Topology::Single => describe(self.url.expose()),
            Topology::Cluster { seeds } => format!("cluster {}", addrs(seeds)),
            Topology::Sentinel { sentinels, service } => {
                format!("sentinel service {service:?} via {}", addrs(sentinels))
            }
        }
    }

    /// Every URL a connection may be opened with: the server's, each cluster seed's, each
    /// sentinel's (a cluster's other nodes share the seeds' scheme and credentials).
    pub fn urls(&self) -> Vec<&Secret> {
        let mut urls = vec![&self.url];
        match &self.topology {
            Topology::Single => {}
            Topology::Cluster { seeds } => urls.extend(seeds),
            Topology::Sentinel { sentinels, .. } => urls.extend(sentinels),
        }
        urls
    }

    /// True for `rediss://`.
    pub fn is_tls(&self) -> bool {
        self.url.expose().starts_with("rediss://")
    }

    /// True when `#insecure` turns certificate checks off (for a self-signed test server).
    pub fn is_insecure(&self) -> bool {
        self.is_tls() && self.url.expose().ends_with("#insecure")
    }

    /// The client for this server: with its certificate files when it is `rediss://`.
    fn client(&self) -> Result<redis::Client, redis::RedisError> {
        let url = self.url.expose();
        if !self.is_tls() || (self.ca_cert.is_none() && self.client_cert.is_none()) {
            return redis::Client::open(url);
        }
        let files = self.tls_files().map_err(|reason| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "TLS files", reason))
        })?;
        redis::Client::build_with_tls(url, files)
    }

    /// The PEM bytes the redis client wants. Its root certificate replaces the system's, so
    /// the system's are put first: `REDIS_CA_CERT` adds to them.
    fn tls_files(&self) -> Result<redis::TlsCertificates, String> {
        let read =
            |p: &PathBuf| std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()));
        let root_cert = match &self.ca_cert {
            Some(path) => {
                let mut pem = system_roots_pem();
                pem.extend(read(path)?);
                Some(pem)
            }
            None => None,
        };
        let client_tls = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read(cert)?,
                client_key: read(key)?,
            }),
            _ => None,
        };
        Ok(redis::TlsCertificates {
            client_tls,
            root_cert,
        })
    }
}

/// The system's trusted CAs as PEM text, read once per process: reading the store costs
/// milliseconds, and every reconnect would pay them.
fn system_roots_pem() -> Vec<u8> {
    static PEM: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    PEM.get_or_init(read_system_roots_pem).clone()
}

fn read_system_roots_pem() -> Vec<u8> {
    use base64::Engine as _;
    let mut pem = String::new();
    for cert in crate::tls::system_roots() {
        let text = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in text.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem.into_bytes()
}

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
    let reason = if let Some(tls) = crate::tls::explain(e) {
        tls
    } else if e.is_connection_refusal() {
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

/// Opens a connection to the one server of `config.url` with connect, read and write
/// timeouts (tools and benchmarks; the daemons use a [`Router`]).
pub fn connect(config: &RedisConfig) -> Result<redis::Connection, RedisError> {
    open(config, IO_TIMEOUT).map_err(|e| error(&describe(config.url.expose()), &e))
}

/// Opens a connection to the server of `config.url`; connecting (the TLS handshake included)
/// and every later read and write give up after at most `timeout` (and connecting after at
/// most [`CONNECT_TIMEOUT`]).
fn open(config: &RedisConfig, timeout: Duration) -> Result<redis::Connection, redis::RedisError> {
    let timeout = timeout.max(Duration::from_millis(1));
    let con = config
        .client()?
        .get_connection_with_timeout(timeout.min(CONNECT_TIMEOUT))?;
    con.set_read_timeout(Some(timeout))?;
    con.set_write_timeout(Some(timeout))?;
    Ok(con)
}
