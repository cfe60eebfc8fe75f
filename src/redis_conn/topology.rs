//! How the Redis servers are laid out: one server, a Redis Cluster, or a primary watched by
//! Sentinel; and the URL of each node, made from the one the operator gave so that its
//! credentials and TLS settings apply to every node.

use crate::secret::Secret;
use std::time::Duration;

/// Which servers hold the data, and how the primary is found.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Topology {
    /// One server: [`super::RedisConfig::url`].
    #[default]
    Single,
    /// A Redis Cluster, reached through these seed nodes (full URLs); the rest of the
    /// cluster is learned from them.
    Cluster {
        /// `redis://` or `rediss://` URLs of some of the nodes.
        seeds: Vec<Secret>,
    },
    /// A primary and its replicas watched by Sentinel; the primary's address is asked from
    /// the sentinels.
    Sentinel {
        /// The sentinels' URLs (with the sentinel password, if any).
        sentinels: Vec<Secret>,
        /// The name the sentinels monitor the primary under (`mymaster`).
        service: String,
    },
}

impl Topology {
    /// `cluster`, `sentinel` or `single`, for messages and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Topology::Single => "single",
            Topology::Cluster { .. } => "cluster",
            Topology::Sentinel { .. } => "sentinel",
        }
    }
}

/// What a write must reach before it counts, and how long a failover may be waited out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Durability {
    /// Replicas a push, retry or finish must reach (`WAIT N`) before it is acknowledged.
    pub wait_replicas: u32,
    /// How long one `WAIT` may take.
    pub wait_timeout: Duration,
    /// How long a command is retried while a failover is in progress, before it fails.
    pub failover_timeout: Duration,
}

impl Default for Durability {
    fn default() -> Self {
        Durability {
            wait_replicas: 0,
            wait_timeout: Duration::from_secs(1),
            failover_timeout: Duration::from_secs(30),
        }
    }
}

/// `template` with its host and port replaced by `addr` (`host:port`), and the database
/// dropped when `no_db` (a cluster has only database 0). Credentials, scheme and the
/// `#insecure` marker stay.
pub fn node_url(template: &str, addr: &str, no_db: bool) -> Result<String, String> {
    let (host, port) = split_addr(addr)?;
    let mut url = url::Url::parse(template).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err("a cluster or sentinel node needs a redis:// or rediss:// URL".into());
    }
    url.set_host(Some(host))
        .map_err(|e| format!("bad host {host:?} ({e})"))?;
    url.set_port(Some(port))
        .map_err(|()| "cannot set the port".to_string())?;
    if no_db {
        url.set_path("");
    }
    Ok(url.to_string())
}

/// `host:port` (or `[v6]:port`) split in two; the port is required.
pub fn split_addr(addr: &str) -> Result<(&str, u16), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("{addr:?} is not host:port"))?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{addr:?} has no valid port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("{addr:?} has no host"));
    }
    Ok((host, port))
}

/// `host:port` of a Redis URL, for naming a node (never its credentials).
pub fn addr_of(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => {
            let host = u.host_str().unwrap_or("?");
            format!("{host}:{}", u.port().unwrap_or(6379))
        }
        Err(_) => "(unparsable URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_urls_keep_credentials_and_tls() {
        assert_eq!(
            node_url("rediss://:pw@seed:7000/3#insecure", "10.0.0.2:7001", true).as_deref(),
            Ok("rediss://:pw@10.0.0.2:7001#insecure")
        );
        assert_eq!(
            node_url("redis://u:p@h:6379/2", "127.0.0.1:6380", false).as_deref(),
            Ok("redis://u:p@127.0.0.1:6380/2")
        );
        assert!(node_url("unix:///tmp/r.sock", "h:1", true).is_err());
        assert!(node_url("redis://h", "h", true).is_err());
        assert!(node_url("redis://h", "h:0", true).is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(split_addr("[::1]:7000"), Ok(("::1", 7000)));
        assert_eq!(split_addr("a.b:1"), Ok(("a.b", 1)));
        assert!(split_addr(":1").is_err());
        assert_eq!(addr_of("redis://:secret@h:7000/0"), "h:7000");
        assert_eq!(addr_of("rediss://h"), "h:6379");
    }
}
