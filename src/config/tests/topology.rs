//! Unit tests of the Redis deployment settings: cluster seeds, Laravel's `REDIS_CLUSTER`,
//! Sentinel, and what a write must reach.

use super::{env, err};
use crate::config::{Config, Sources};
use crate::redis_conn::Topology;
use std::time::Duration;

fn resolve(pairs: &[(&str, &str)]) -> Config {
    Config::resolve(&Sources {
        env: env(pairs),
        ..Default::default()
    })
    .expect("valid")
}

fn error(pairs: &[(&str, &str)]) -> String {
    err(Sources {
        env: env(pairs),
        ..Default::default()
    })
}

fn exposed(urls: &[crate::secret::Secret]) -> Vec<&str> {
    urls.iter().map(|u| u.expose()).collect()
}

#[test]
fn cluster_seeds_share_the_password_and_tls_of_redis_url() {
    let c = resolve(&[
        ("REDIS_URL", "rediss://:pw@ignored:6379/2#insecure"),
        (
            "REDIS_CLUSTER_NODES",
            "10.0.0.1:7000, redis://:other@10.0.0.2:7001",
        ),
    ]);
    let Topology::Cluster { seeds } = &c.redis.topology else {
        panic!("{:?}", c.redis.topology);
    };
    assert_eq!(
        exposed(seeds),
        [
            "rediss://:pw@10.0.0.1:7000#insecure",
            "redis://:other@10.0.0.2:7001"
        ]
    );
    // The broadcast Redis is the queue's, so it is the cluster too.
    assert_eq!(c.broadcast.redis.topology, c.redis.topology);
    assert!(
        c.redis
            .describe()
            .starts_with("cluster 10.0.0.1:7000,10.0.0.2:7001")
    );
}

#[test]
fn laravels_redis_cluster_switch_reads_the_seed_list_from_redis_host() {
    let c = resolve(&[
        ("REDIS_CLUSTER", "redis"),
        ("REDIS_HOST", "10.0.0.1,10.0.0.2:7005"),
        ("REDIS_PORT", "7000"),
        ("REDIS_PASSWORD", "s3cret"),
    ]);
    let Topology::Cluster { seeds } = &c.redis.topology else {
        panic!("{:?}", c.redis.topology);
    };
    assert_eq!(
        exposed(seeds),
        [
            "redis://:s3cret@10.0.0.1:7000",
            "redis://:s3cret@10.0.0.2:7005"
        ]
    );
    let e = error(&[("REDIS_CLUSTER", "predis")]);
    assert!(
        e.contains("REDIS_CLUSTER") && e.contains("must be redis"),
        "{e}"
    );
}

#[test]
fn sentinels_get_their_own_password_and_the_data_nodes_tls() {
    let c = resolve(&[
        ("REDIS_URL", "rediss://:data@127.0.0.1:6379/0"),
        ("REDIS_SENTINELS", "10.0.0.1:26379,10.0.0.2:26379"),
        ("REDIS_SENTINEL_PASSWORD", "sentry"),
        ("REDIS_SENTINEL_SERVICE", "inventory"),
    ]);
    let Topology::Sentinel { sentinels, service } = &c.redis.topology else {
        panic!("{:?}", c.redis.topology);
    };
    assert_eq!(service, "inventory");
    assert_eq!(
        exposed(sentinels),
        [
            "rediss://:sentry@10.0.0.1:26379",
            "rediss://:sentry@10.0.0.2:26379"
        ]
    );
}

#[test]
fn bad_topology_settings_name_their_key_and_hide_passwords() {
    let e = error(&[
        ("REDIS_CLUSTER_NODES", "127.0.0.1:7000"),
        ("REDIS_SENTINELS", "127.0.0.1:26379"),
    ]);
    assert!(e.contains("REDIS_SENTINELS") && e.contains("either"), "{e}");
    let e = error(&[(
        "REDIS_CLUSTER_NODES",
        "redis://:pw1@h:1/0,http://:pw2@h:2,redis://:pw3@h:3",
    )]);
    assert!(
        e.contains("REDIS_CLUSTER_NODES") && e.contains("entry 2"),
        "{e}"
    );
    assert!(
        !e.contains("pw1") && !e.contains("pw2") && !e.contains("pw3"),
        "{e}"
    );
    let e = error(&[("REDIS_CLUSTER_NODES", "h")]);
    assert!(e.contains("entry 1") && e.contains("host:port"), "{e}");
    let e = error(&[
        ("REDIS_URL", "unix:///run/redis.sock"),
        ("REDIS_CLUSTER_NODES", "h:7000"),
    ]);
    assert!(e.contains("unix socket"), "{e}");
}

#[test]
fn durability_settings_and_their_bounds() {
    let c = resolve(&[]);
    assert_eq!(c.redis.topology, Topology::Single);
    assert_eq!(c.redis.durability.wait_replicas, 0);
    assert_eq!(c.redis.durability.failover_timeout, Duration::from_secs(30));
    let c = resolve(&[
        ("INVENTORY_REDIS_WAIT_REPLICAS", "1"),
        ("INVENTORY_REDIS_WAIT_TIMEOUT", "250ms"),
        ("INVENTORY_REDIS_FAILOVER_TIMEOUT", "2m"),
    ]);
    assert_eq!(c.redis.durability.wait_replicas, 1);
    assert_eq!(c.redis.durability.wait_timeout, Duration::from_millis(250));
    assert_eq!(
        c.redis.durability.failover_timeout,
        Duration::from_secs(120)
    );
    for (key, bad) in [
        ("INVENTORY_REDIS_WAIT_REPLICAS", "-1"),
        ("INVENTORY_REDIS_WAIT_REPLICAS", "101"),
        ("INVENTORY_REDIS_WAIT_TIMEOUT", "0"),
        ("INVENTORY_REDIS_FAILOVER_TIMEOUT", "2d"),
    ] {
        let e = error(&[(key, bad)]);
        assert!(e.contains(key), "{key}={bad}: {e}");
    }
}

#[test]
fn a_plain_text_password_to_a_remote_node_or_sentinel_is_warned_about_once_per_host() {
    let c = resolve(&[
        ("REDIS_URL", "redis://:pw@127.0.0.1:6379"),
        (
            "REDIS_CLUSTER_NODES",
            "10.0.0.1:7000,10.0.0.1:7001,127.0.0.1:7002",
        ),
    ]);
    let warnings = c.warnings();
    let about = |host: &str| warnings.iter().filter(|w| w.contains(host)).count();
    // Two seeds on one host, and the broadcast Redis is the same cluster: one line.
    assert_eq!(about("10.0.0.1"), 1, "{warnings:?}");
    assert!(!warnings.iter().any(|w| w.contains("pw")), "{warnings:?}");
    let c = resolve(&[
        ("REDIS_URL", "rediss://:pw@127.0.0.1:6379"),
        ("REDIS_SENTINELS", "10.0.0.2:26379"),
        ("REDIS_SENTINEL_PASSWORD", "sentry"),
    ]);
    assert!(
        c.warnings().is_empty(),
        "TLS everywhere: {:?}",
        c.warnings()
    );
}
