//! The product over TLS, against private servers that accept nothing else: PostgreSQL with
//! `hostssl` + scram-sha-256 only, Redis with `--port 0 --tls-port N`, a CA and certificates
//! the test makes. Passwords hold every awkward character, and no output ever shows a piece
//! of one.

use crate::support::private::{PgServer, PgTlsAuth, RedisServer, RedisTls};
use crate::support::tls::{AWKWARD_PASSWORD, CertFiles, TestPki, percent_encode};
use crate::support::{DEADLINE, World, eventually};
use std::path::Path;
use std::process::Output;
use std::time::Duration;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn said(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    )
}

/// Pieces of [`AWKWARD_PASSWORD`] that must never be printed.
fn assert_no_password_piece(out: &Output) {
    let all = said(out);
    for piece in ["p@ss", "w:rd", "#1%", "'q'", "\"d\"", "\\z"] {
        assert!(
            !all.contains(piece),
            "{piece:?} of the password shown: {all}"
        );
    }
}

/// A TLS-only PostgreSQL with role `inventory` (password [`AWKWARD_PASSWORD`]) owning `inv`.
fn postgres(pki: &TestPki, server: &CertFiles) -> PgServer {
    let pg = PgServer::start_tls_with(server, &pki.ca, PgTlsAuth::Password);
    pg.create_role("inventory", AWKWARD_PASSWORD);
    pg.create_database("inv", "inventory");
    pg
}

fn pg_url(pg: &PgServer, password: &str, params: &str) -> String {
    format!("{}?{params}", pg.url_as("inventory", password, "inv"))
}

fn verify_full(pki: &TestPki) -> String {
    format!("sslmode=verify-full&sslrootcert={}", pki.ca.cert.display())
}

/// A world whose database is `url` (the shared Redis stays the queue).
fn world_at(url: &str) -> World {
    let mut w = World::new();
    w.set("DATABASE_URL", url);
    w
}

#[test]
fn the_pipeline_runs_over_tls_to_postgres_and_redis() {
    let pki = TestPki::new();
    let pg = postgres(&pki, &pki.server);
    let redis = RedisServer::start_tls(RedisTls::new(&pki).password(AWKWARD_PASSWORD));
    let redis_url = format!(
        "rediss://:{}@localhost:{}",
        percent_encode(AWKWARD_PASSWORD),
        redis.port()
    );
    let mut w = world_at(&pg_url(&pg, AWKWARD_PASSWORD, &verify_full(&pki)));
    w.set("REDIS_URL", &redis_url)
        .set("REDIS_CA_CERT", pki.ca.cert.to_str().unwrap());
    let migrated = w.run("items-listen", &["migrate"]);
    assert!(migrated.status.success(), "{}", said(&migrated));

    // The subscriber checks no certificate: what it proves is what arrives.
    let mut events = w.subscribe_at(&format!("{redis_url}/#insecure"));
    let listener = w.spawn("items-listen", &[]);
    listener.wait_for_log("listening on channel");
    let worker = w.spawn("queue-work", &[]);
    worker.wait_for_log("working queue");

    let mut db = pg.admin_of("inv");
    db.batch_execute("INSERT INTO items (name) SELECT 'item ' || g FROM generate_series(1, 21) g")
        .unwrap();
    let count = events.next()["data"]["count"].as_u64();
    assert_eq!(count, Some(21), "the insert's count arrived over TLS Redis");

    let notified = w.run("notify", &["--count", "31"]);
    assert!(notified.status.success(), "{}", said(&notified));
    assert_eq!(events.next()["data"]["count"].as_u64(), Some(31));

    let encrypted: Vec<(String, bool)> = db
        .query(
            "SELECT a.application_name, s.ssl FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'inventory'",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(
        encrypted
            .iter()
            .any(|(app, ssl)| app == "items-listen" && *ssl),
        "{encrypted:?}"
    );
    assert!(encrypted.iter().all(|(_, ssl)| *ssl), "{encrypted:?}");
    drop((listener, worker));
}

#[test]
fn sslmodes_against_a_certificate_for_another_host() {
    let pki = TestPki::new();
    let pg = postgres(&pki, &pki.other_host);
    let root = pki.ca.cert.display().to_string();
    let migrate = |params: &str| {
        world_at(&pg_url(&pg, AWKWARD_PASSWORD, params)).run("items-listen", &["migrate"])
    };

    let full = migrate(&format!("sslmode=verify-full&sslrootcert={root}"));
    assert_eq!(full.status.code(), Some(1), "{}", said(&full));
    let err = stderr(&full);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("name mismatch") && err.contains("localhost"),
        "{err}"
    );
    assert_no_password_piece(&full);

    for params in [
        "sslmode=require".to_string(),
        format!("sslmode=verify-ca&sslrootcert={root}"),
    ] {
        let out = migrate(&params);
        assert!(out.status.success(), "{params}: {}", said(&out));
    }

    let wrong_ca = migrate(&format!(
        "sslmode=verify-ca&sslrootcert={}",
        pki.other_ca.cert.display()
    ));
    assert_eq!(wrong_ca.status.code(), Some(1), "{}", said(&wrong_ca));
    assert!(
        stderr(&wrong_ca).contains("unknown issuer"),
        "{}",
        said(&wrong_ca)
    );

    let plain = migrate("sslmode=disable");
    assert_eq!(plain.status.code(), Some(1), "{}", said(&plain));
    let err = stderr(&plain);
    assert!(
        err.contains("no encryption") && err.contains("only TLS"),
        "{err}"
    );
    assert_no_password_piece(&plain);
}

#[test]
fn any_password_works_as_a_url_or_as_parts_and_a_wrong_one_shows_none_of_itself() {
    let pki = TestPki::new();
    let pg = postgres(&pki, &pki.server);
    let by_url = world_at(&pg_url(&pg, AWKWARD_PASSWORD, &verify_full(&pki)))
        .run("items-listen", &["migrate"]);
    assert!(by_url.status.success(), "{}", said(&by_url));

    let mut parts = World::new();
    parts.env.remove("DATABASE_URL");
    parts
        .set("DB_HOST", "localhost")
        .set("DB_PORT", &pg.port.to_string())
        .set("DB_DATABASE", "inv")
        .set("DB_USERNAME", "inventory")
        .set("DB_PASSWORD", AWKWARD_PASSWORD)
        .set("DB_SSLMODE", "verify-full")
        .set("DB_SSLROOTCERT", pki.ca.cert.to_str().unwrap());
    let by_parts = parts.run("items-listen", &["migrate"]);
    assert!(by_parts.status.success(), "{}", said(&by_parts));

    let wrong = format!("{AWKWARD_PASSWORD}x");
    parts.set("DB_PASSWORD", &wrong);
    let refused = parts.run("items-listen", &["migrate"]);
    assert_eq!(refused.status.code(), Some(1), "{}", said(&refused));
    assert!(
        stderr(&refused).contains("password authentication failed"),
        "{}",
        said(&refused)
    );
    assert_no_password_piece(&refused);

    let redis = RedisServer::start_tls(RedisTls::new(&pki).password(AWKWARD_PASSWORD));
    let ca = pki.ca.cert.to_str().unwrap();
    let mut w = World::new();
    w.set(
        "REDIS_URL",
        &format!(
            "rediss://:{}@localhost:{}",
            percent_encode(AWKWARD_PASSWORD),
            redis.port()
        ),
    )
    .set("REDIS_CA_CERT", ca);
    let queued = w.run("notify", &["--count", "25"]);
    assert!(queued.status.success(), "{}", said(&queued));

    let mut w = World::new();
    w.env.remove("REDIS_URL");
    w.set("REDIS_HOST", "localhost")
        .set("REDIS_PORT", &redis.port().to_string())
        .set("REDIS_SCHEME", "tls")
        .set("REDIS_PASSWORD", AWKWARD_PASSWORD)
        .set("REDIS_CA_CERT", ca);
    let queued = w.run("notify", &["--count", "25"]);
    assert!(queued.status.success(), "{}", said(&queued));
    w.set("REDIS_PASSWORD", &wrong);
    let refused = w.run("notify", &["--count", "25"]);
    assert_eq!(refused.status.code(), Some(1), "{}", said(&refused));
    assert_no_password_piece(&refused);
}

#[test]
fn redis_tls_checks_the_ca_and_presents_a_client_certificate_when_asked() {
    let pki = TestPki::new();
    let redis = RedisServer::start_tls(RedisTls::new(&pki).auth_clients(true));
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let notify = |ca: &Path, client: Option<&CertFiles>| {
        let mut w = World::new();
        w.set("REDIS_URL", &redis.url())
            .set("REDIS_CA_CERT", &path(ca));
        if let Some(client) = client {
            w.set("REDIS_CLIENT_CERT", &path(&client.cert))
                .set("REDIS_CLIENT_KEY", &path(&client.key));
        }
        w.run("notify", &["--count", "25"])
    };

    let mutual = notify(&pki.ca.cert, Some(&pki.client));
    assert!(mutual.status.success(), "{}", said(&mutual));

    let without = notify(&pki.ca.cert, None);
    assert_eq!(without.status.code(), Some(1), "{}", said(&without));
    assert!(
        stderr(&without).contains("client certificate"),
        "{}",
        said(&without)
    );

    let foreign = notify(&pki.ca.cert, Some(&pki.other_client));
    assert_eq!(foreign.status.code(), Some(1), "{}", said(&foreign));

    let wrong_ca = notify(&pki.other_ca.cert, Some(&pki.client));
    assert_eq!(wrong_ca.status.code(), Some(1), "{}", said(&wrong_ca));
    assert!(
        stderr(&wrong_ca).contains("unknown issuer"),
        "{}",
        said(&wrong_ca)
    );

    let expired = RedisServer::start_tls(RedisTls::new(&pki).server_cert(&pki.expired));
    let mut w = World::new();
    w.set("REDIS_URL", &expired.url())
        .set("REDIS_CA_CERT", &path(&pki.ca.cert));
    let out = w.run("notify", &["--count", "25"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(stderr(&out).contains("expired"), "{}", said(&out));
}

#[test]
fn a_stalled_failed_jobs_write_times_out_and_the_job_comes_back() {
    let mut w = World::new();
    w.set("BROADCAST_DRIVER", "pusher")
        .set("PUSHER_APP_ID", "1")
        .set("PUSHER_APP_KEY", "key")
        .set("PUSHER_APP_SECRET", "secret")
        .set("PUSHER_HOST", "127.0.0.1")
        .set("PUSHER_PORT", "1")
        .set("PUSHER_SCHEME", "http")
        .set("INVENTORY_DB_LOCK_TIMEOUT", "500ms")
        .set("INVENTORY_DB_STATEMENT_TIMEOUT", "2s");
    let job = w.push_jobs("default", "broadcast:pusher", 1).remove(0);

    // Another session holds the table: every write to it waits.
    let mut holder = w.db.client();
    let mut tx = holder.transaction().unwrap();
    tx.batch_execute("LOCK TABLE failed_jobs IN ACCESS EXCLUSIVE MODE")
        .unwrap();

    let worker = w.spawn(
        "queue-work",
        &["--tries", "1", "--timeout", "1", "--retry-after", "3"],
    );
    let line = worker.wait_for_log("cannot record failed job");
    assert!(line.contains("lock timeout"), "{line}");
    assert!(line.contains("returns after retry_after"), "{line}");

    tx.rollback().unwrap();
    let failed = eventually("the job recorded once the lock is gone", DEADLINE, || {
        let rows = w.db.failed_jobs();
        (!rows.is_empty()).then_some(rows)
    });
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, job.id.to_string());
    let sizes = eventually("nothing left reserved", Duration::from_secs(10), || {
        let s = w.queue().sizes("default").ok()?;
        (s.reserved == 0 && s.pending == 0).then_some(s)
    });
    assert_eq!(sizes.delayed, 0);
    drop(worker);
}

#[test]
fn sessions_ask_the_server_for_keepalives_and_timeouts() {
    let w = World::new();
    let mut config = inventory_broadcast::db::DatabaseConfig::plain(&w.db.url);
    config.statement_timeout = Duration::from_millis(2500);
    config.lock_timeout = Duration::from_millis(700);
    let mut db = inventory_broadcast::db::Db::connect(&config).unwrap();
    let show = |db: &mut inventory_broadcast::db::Db, name: &str| -> String {
        db.client
            .query_one(&format!("SHOW {name}"), &[])
            .unwrap()
            .get(0)
    };
    assert_eq!(show(&mut db, "statement_timeout"), "2500ms");
    assert_eq!(show(&mut db, "lock_timeout"), "700ms");
    // The server's own probes of our side: a half-open session ends in about 25 s.
    assert_eq!(show(&mut db, "tcp_keepalives_idle"), "10");
    assert_eq!(show(&mut db, "tcp_keepalives_interval"), "5");
    assert_eq!(show(&mut db, "tcp_keepalives_count"), "3");
    assert_eq!(show(&mut db, "tcp_user_timeout"), "25000");
}
