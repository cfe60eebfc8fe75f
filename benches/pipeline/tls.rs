//! Measure 8, TLS: what TLS adds to a connection to PostgreSQL and to Redis, and to a drain,
//! against TLS-only private servers started here, beside the benchmark's plain ones.

use crate::drain;
use crate::report::{Connects, Results, Tls, UnwatchedDrain};
use crate::support::private::{PgServer, RedisServer, RedisTls};
use crate::support::tls::{AWKWARD_PASSWORD, TestPki};
use crate::sys;
use inventory_broadcast::db::{DatabaseConfig, Db};
use inventory_broadcast::redis_conn::{self, RedisConfig};
use std::time::{Duration, Instant};

/// Timed connects per target, enough for a steady median and a p90 in a second or two.
const CONNECTS: usize = 30;
/// Untimed rounds first: a new server's first sessions warm its caches.
const WARM_UP: usize = 3;
/// All rounds of one comparison must be done by then (a connect takes milliseconds; each has
/// its own connect timeout too).
const CONNECTS_DEADLINE: Duration = Duration::from_secs(20);
/// The login role on the password servers, and its database.
const ROLE: &str = "inventory";
const DATABASE: &str = "inv";
/// The drains, plain (false) and TLS (true), in this order: a drift in the machine's load over
/// the phase (others work on it too) then falls on both sides alike. One drain is a ~1.5 s
/// worker run after a ~1 s fill, so the four stay well within the phase's half minute.
const DRAIN_ORDER: [bool; 4] = [false, true, true, false];

/// Runs phase 8 into `r.tls`, keeping what was measured when a later step fails. `pg` and
/// `redis` are the benchmark's plain servers; `db_url` is the database the workers record
/// failed jobs in (plain in both drains, so that only the Redis connection differs).
pub fn run(pg: &PgServer, redis: &RedisServer, db_url: &str, r: &mut Results) {
    let phase1 = r.drain.as_ref().map(|d| d.wall_per_s);
    let t = r.tls.insert(Tls::default());
    let pki = TestPki::new();

    eprintln!("bench: tls: starting a TLS-only and a password PostgreSQL");
    let tls_pg = PgServer::start_tls(&pki);
    sys::started(tls_pg.postmaster_pid());
    let scram_pg = PgServer::start_password();
    sys::started(scram_pg.postmaster_pid());
    for server in [&tls_pg, &scram_pg] {
        server.create_role(ROLE, AWKWARD_PASSWORD);
        server.create_database(DATABASE, ROLE);
    }
    // The same host name everywhere (the certificate's), so name resolution costs all alike.
    let trust = DatabaseConfig::plain(&format!(
        "postgres://postgres@localhost:{}/postgres",
        pg.port
    ));
    let scram = DatabaseConfig::plain(&scram_pg.url_as(ROLE, AWKWARD_PASSWORD, DATABASE));
    let verify_full = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        tls_pg.url_as(ROLE, AWKWARD_PASSWORD, DATABASE),
        pki.ca.cert.display()
    );
    let tls = crate::config(&crate::env(&verify_full, &redis.url(), "tls:", "bench-tls")).database;
    assert!(!encrypted(&scram), "the password server is plain text");
    assert!(encrypted(&tls), "the TLS server's session is encrypted");
    eprintln!("bench: tls: PostgreSQL connects, {CONNECTS} per server, interleaved");
    let [p_trust, p_scram, p_tls] = round_robin(
        [
            "plain, trust auth (the benchmark's durable server)",
            "plain, scram-sha-256 (a second private server)",
            "TLS verify-full, scram-sha-256 (a TLS-only private server)",
        ],
        |i| {
            let config = [&trust, &scram, &tls][i];
            drop(Db::connect(config).expect("connect to PostgreSQL"));
        },
    );
    t.postgres_trust = Some(p_trust);
    t.postgres_scram = Some(p_scram);
    t.postgres_tls = Some(p_tls);
    drop((tls_pg, scram_pg));

    // No password on the TLS Redis: the plain one has none, so TLS is the only difference.
    let tls_redis = RedisServer::start_tls(RedisTls::new(&pki));
    sys::started(tls_redis.pid());
    let plain = RedisConfig::url(&format!("redis://localhost:{}", redis.port()));
    let rediss = RedisConfig {
        ca_cert: Some(pki.ca.cert.clone()),
        ..RedisConfig::url(&tls_redis.url())
    };
    eprintln!("bench: tls: Redis connects, {CONNECTS} per server, interleaved");
    let [r_plain, r_tls, roots] = round_robin(
        [
            "plain",
            "rediss:// with REDIS_CA_CERT",
            "loading the system's CA store, which a rediss:// connect with REDIS_CA_CERT does \
             twice (redis_conn adds it to REDIS_CA_CERT; the redis crate loads it again)",
        ],
        |i| match i {
            0 => ping(&plain),
            1 => ping(&rediss),
            _ => drop(inventory_broadcast::tls::system_roots()),
        },
    );
    t.redis_plain = Some(r_plain);
    t.redis_tls = Some(r_tls);
    t.system_roots = Some(roots);

    // Neither side is watched by a subscriber: ours speaks plain TCP only, and one on just one
    // side would take CPU from it.
    let order = DRAIN_ORDER.map(|over_tls| if over_tls { "TLS" } else { "plain" });
    eprintln!("bench: tls: drains over Redis, {}", order.join(", "));
    for (n, &over_tls) in DRAIN_ORDER.iter().enumerate() {
        // A prefix of its own, so that a drain that left jobs cannot spoil the next one's fill.
        let prefix = format!("tls-{n}:");
        if over_tls {
            let mut env = crate::env(db_url, &tls_redis.url(), &prefix, "bench-tls");
            env.push(("REDIS_CA_CERT".into(), pki.ca.cert.display().to_string()));
            t.tls_drains.push(drain::unwatched(&env));
        } else {
            let env = crate::env(db_url, &redis.url(), &prefix, "bench-tls");
            t.plain_drains.push(drain::unwatched(&env));
        }
    }
    let plain = pooled(&t.plain_drains);
    let tls = pooled(&t.tls_drains);
    t.plain_per_s = Some(plain);
    t.tls_per_s = Some(tls);
    t.tls_to_plain = Some(tls / plain);
    t.tls_to_phase1 = phase1.map(|p| tls / p);
}

/// Jobs done per second of worker wall time over all of `drains`.
fn pooled(drains: &[UnwatchedDrain]) -> f64 {
    let done: u64 = drains.iter().map(|d| d.jobs - d.left).sum();
    let wall: f64 = drains.iter().map(|d| d.wall_s).sum();
    done as f64 / wall
}

/// Whether a session with `config` is encrypted, as the server sees it (`pg_stat_ssl`).
fn encrypted(config: &DatabaseConfig) -> bool {
    let mut db = Db::connect(config).expect("connect to PostgreSQL");
    db.client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .expect("pg_stat_ssl")
        .get(0)
}

/// One usable Redis connection: `redis_conn::connect` and a PING, because the TLS handshake
/// may wait for the first command.
fn ping(config: &RedisConfig) {
    let mut con = redis_conn::connect(config).expect("connect to Redis");
    let _: String = redis::cmd("PING").query(&mut con).expect("PING");
}

/// Times `once(i)` for each of the `N` targets, in rounds (target 0, 1, …, then again), so
/// that others' load on the machine falls on every target alike.
fn round_robin<const N: usize>(what: [&str; N], mut once: impl FnMut(usize)) -> [Connects; N] {
    let started = Instant::now();
    let mut ms: [Vec<f64>; N] = std::array::from_fn(|_| Vec::with_capacity(CONNECTS));
    for round in 0..WARM_UP + CONNECTS {
        sys::check();
        assert!(
            started.elapsed() < CONNECTS_DEADLINE,
            "{round} rounds of connects took over {CONNECTS_DEADLINE:?}"
        );
        for (i, times) in ms.iter_mut().enumerate() {
            let at = Instant::now();
            once(i);
            if round >= WARM_UP {
                times.push(at.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    std::array::from_fn(|i| {
        let mut v = std::mem::take(&mut ms[i]);
        v.sort_by(f64::total_cmp);
        Connects {
            what: what[i].to_string(),
            samples: v.len(),
            p50_ms: sys::quantile(&v, 0.5),
            p90_ms: sys::quantile(&v, 0.9),
            min_ms: v.first().copied().unwrap_or(f64::NAN),
            max_ms: v.last().copied().unwrap_or(f64::NAN),
        }
    })
}
