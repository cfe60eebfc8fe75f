//! Which Redis deployment the queue uses: one server (`REDIS_URL`), a Redis Cluster
//! (`REDIS_CLUSTER_NODES`, or Laravel's `REDIS_CLUSTER=redis` with `REDIS_HOST` holding the
//! seed list) or a Sentinel setup (`REDIS_SENTINELS`); and what a write must reach
//! (`INVENTORY_REDIS_WAIT_REPLICAS`). The one URL lends its password and TLS settings to every
//! node.

use super::ConfigError;
use super::layers::Layers;
use crate::redis_conn::topology::node_url;
use crate::redis_conn::{Durability, Topology};
use crate::secret::Secret;

/// Most replicas a write may be made to wait for: more than any real deployment has.
const MAX_WAIT_REPLICAS: u32 = 100;

/// The hosts of `REDIS_HOST` when Laravel's `REDIS_CLUSTER=redis` makes it a seed list.
pub(super) fn laravel_cluster_hosts(l: &Layers) -> Result<Option<Vec<String>>, ConfigError> {
    let key = "redis.cluster";
    match l.str(key).to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "redis" => Ok(Some(l.list("redis.host"))),
        _ => Err(l.invalid(key, "must be redis (a Redis Cluster) or empty")),
    }
}

/// The deployment; `template` is the one server's URL, whose scheme, credentials and TLS
/// marker every node shares. `laravel_seeds`: `REDIS_HOST`'s list under `REDIS_CLUSTER=redis`.
pub(super) fn topology(
    l: &Layers,
    template: &Secret,
    laravel_seeds: Option<Vec<String>>,
) -> Result<Topology, ConfigError> {
    let nodes = l.list("redis.cluster_nodes");
    let sentinels = l.list("redis.sentinels");
    if !sentinels.is_empty() && (!nodes.is_empty() || laravel_seeds.is_some()) {
        return Err(l.invalid(
            "redis.sentinels",
            "is set together with a cluster (REDIS_CLUSTER_NODES or REDIS_CLUSTER): a \
             deployment is either a Redis Cluster or a Sentinel setup",
        ));
    }
    if !nodes.is_empty() {
        let seeds = node_urls(l, "redis.cluster_nodes", &nodes, template)?;
        return Ok(Topology::Cluster { seeds });
    }
    if let Some(hosts) = laravel_seeds {
        let port = l.str("redis.port");
        let hosts: Vec<String> = hosts
            .into_iter()
            .map(|h| {
                if h.contains(':') {
                    h
                } else {
                    format!("{h}:{port}")
                }
            })
            .collect();
        let seeds = node_urls(l, "redis.host", &hosts, template)?;
        return Ok(Topology::Cluster { seeds });
    }
    if !sentinels.is_empty() {
        return Ok(Topology::Sentinel {
            sentinels: sentinel_urls(l, &sentinels, template)?,
            service: sentinel_service(l)?,
        });
    }
    Ok(Topology::Single)
}

/// Each entry of `key` as a full URL: `host:port` entries take `template`'s scheme,
/// credentials and TLS marker. Errors name the entry by position only (it may hold a
/// password).
fn node_urls(
    l: &Layers,
    key: &'static str,
    entries: &[String],
    template: &Secret,
) -> Result<Vec<Secret>, ConfigError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let url = if entry.contains("://") {
                given_node_url(entry)
            } else {
                node_url(template.expose(), entry, true).map_err(|e| {
                    if template.expose().starts_with("unix:") {
                        "a cluster node needs host:port, and REDIS_URL is a unix socket".into()
                    } else {
                        e
                    }
                })
            };
            url.map(Secret::new)
                .map_err(|reason| l.invalid(key, format!("entry {}: {reason}", i + 1)))
        })
        .collect()
}

/// A node given as a whole URL: `redis://` or `rediss://`, readable by the client.
fn given_node_url(entry: &str) -> Result<String, String> {
    if !(entry.starts_with("redis://") || entry.starts_with("rediss://")) {
        return Err("must be host:port or a redis:// or rediss:// URL".into());
    }
    // Only the error kind is shown: the message could echo the URL and its password.
    redis::Client::open(entry).map_err(|e| format!("not a valid Redis URL ({:?})", e.kind()))?;
    Ok(entry.to_string())
}

/// The sentinels' URLs: `host:port` entries get the data nodes' scheme and TLS marker and
/// the sentinel password (sentinels have their own, or none), never the data password.
fn sentinel_urls(
    l: &Layers,
    entries: &[String],
    template: &Secret,
) -> Result<Vec<Secret>, ConfigError> {
    let key = "redis.sentinels";
    let template = url::Url::parse(template.expose()).ok();
    let scheme = template.as_ref().map_or("redis", |u| {
        if u.scheme() == "rediss" {
            "rediss"
        } else {
            "redis"
        }
    });
    let fragment = template.as_ref().and_then(|u| u.fragment()).unwrap_or("");
    let password = l.str("redis.sentinel_password");
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let bad = |reason: String| l.invalid(key, format!("entry {}: {reason}", i + 1));
            if entry.contains("://") {
                return given_node_url(entry).map(Secret::new).map_err(bad);
            }
            let base = format!("{scheme}://placeholder");
            let mut url = url::Url::parse(&node_url(&base, entry, true).map_err(bad)?)
                .map_err(|e| bad(e.to_string()))?;
            if !password.is_empty() {
                super::servers::set_credentials(&mut url, "", &password);
            }
            if !fragment.is_empty() {
                url.set_fragment(Some(fragment));
            }
            Ok(Secret::new(url.to_string()))
        })
        .collect()
}

fn sentinel_service(l: &Layers) -> Result<String, ConfigError> {
    let key = "redis.sentinel_service";
    let service = l.str(key);
    if service.is_empty() || service.len() > 200 || service.chars().any(char::is_control) {
        return Err(l.invalid(
            key,
            "must be the name the sentinels monitor (1-200 characters)",
        ));
    }
    Ok(service)
}

/// `INVENTORY_REDIS_WAIT_REPLICAS`, `INVENTORY_REDIS_WAIT_TIMEOUT` and
/// `INVENTORY_REDIS_FAILOVER_TIMEOUT`.
pub(super) fn durability(l: &Layers) -> Result<Durability, ConfigError> {
    let max = std::time::Duration::from_secs(crate::bounds::MAX_TIMEOUT_S);
    let bounded = |key: &'static str, min_ms: u64| {
        let d = l.duration(key)?;
        if d > max || d.as_millis() < u128::from(min_ms) {
            let low = if min_ms == 0 { "0" } else { "1 ms" };
            return Err(l.invalid(
                key,
                format!("must be from {low} to {} s (a day)", max.as_secs()),
            ));
        }
        Ok(d)
    };
    let key = "redis.wait_replicas";
    let wait_replicas: u32 = l.parse(key, "must be a whole number of replicas")?;
    if wait_replicas > MAX_WAIT_REPLICAS {
        return Err(l.invalid(key, format!("must be at most {MAX_WAIT_REPLICAS}")));
    }
    Ok(Durability {
        wait_replicas,
        wait_timeout: bounded("redis.wait_timeout", 1)?,
        failover_timeout: bounded("redis.failover_timeout", 0)?,
    })
}
