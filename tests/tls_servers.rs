//! Proves the TLS test harness (tests/support/tls.rs and the TLS private servers) with the
//! servers' own clients, psql and redis-cli: the product's TLS tests stand on these servers
//! behaving as a production server configured the same way would.

use crate::support::DEADLINE;
use crate::support::private::{PgServer, PgTlsAuth, RedisServer, RedisTls, output_within};
use crate::support::tls::{AWKWARD_PASSWORD, CLIENT_CN, OTHER_HOST, TestPki};
use std::path::Path;
use std::process::Output;

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ssl_params(mode: &str, root: &Path) -> String {
    format!(" sslmode={mode} sslrootcert='{}'", root.display())
}

/// What the session says about itself: role, and whether and how it is encrypted.
const WHO: &str = "SELECT current_user || '|' || ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

#[test]
fn postgres_tls_server_takes_verify_full_with_an_awkward_password_and_refuses_plain() {
    let pki = TestPki::new();
    let pg = PgServer::start_tls(&pki);
    pg.create_role("inventory", AWKWARD_PASSWORD);
    pg.create_database("inv", "inventory");
    let base = pg.conninfo("inventory", "inv");

    let full = pg.psql(
        &(base.clone() + &ssl_params("verify-full", &pki.ca.cert)),
        Some(AWKWARD_PASSWORD),
        WHO,
    );
    assert!(full.status.success(), "verify-full: {}", text(&full));
    assert_eq!(
        String::from_utf8_lossy(&full.stdout).trim(),
        "inventory|true"
    );

    // The certificate also names 127.0.0.1, so verify-full holds for the IP too.
    let by_ip = base.replace("host=localhost", "host=127.0.0.1");
    let ip = pg.psql(
        &(by_ip + &ssl_params("verify-full", &pki.ca.cert)),
        Some(AWKWARD_PASSWORD),
        WHO,
    );
    assert!(ip.status.success(), "verify-full by IP: {}", text(&ip));

    let wrong_password = pg.psql(
        &(base.clone() + &ssl_params("verify-full", &pki.ca.cert)),
        Some("not the password"),
        WHO,
    );
    assert!(!wrong_password.status.success());
    assert!(
        String::from_utf8_lossy(&wrong_password.stderr).contains("password authentication failed"),
        "{}",
        text(&wrong_password)
    );

    // pg_hba.conf has no `host` line: a client without TLS finds no entry at all.
    let plain = pg.psql(
        &(base.clone() + " sslmode=disable"),
        Some(AWKWARD_PASSWORD),
        WHO,
    );
    assert!(!plain.status.success(), "sslmode=disable got in");
    let err = String::from_utf8_lossy(&plain.stderr);
    assert!(
        err.contains("no pg_hba.conf entry") && err.contains("no encryption"),
        "{}",
        text(&plain)
    );

    let wrong_ca = pg.psql(
        &(base + &ssl_params("verify-ca", &pki.other_ca.cert)),
        Some(AWKWARD_PASSWORD),
        WHO,
    );
    assert!(!wrong_ca.status.success(), "a foreign CA was trusted");
    assert!(
        String::from_utf8_lossy(&wrong_ca.stderr).contains("certificate verify failed"),
        "{}",
        text(&wrong_ca)
    );
}

#[test]
fn postgres_tls_server_with_another_name_passes_verify_ca_but_not_verify_full() {
    let pki = TestPki::new();
    let pg = PgServer::start_tls_with(&pki.other_host, &pki.ca, PgTlsAuth::Password);
    pg.create_role("inventory", "secret");
    let base = pg.conninfo("inventory", "postgres");

    let ca = pg.psql(
        &(base.clone() + &ssl_params("verify-ca", &pki.ca.cert)),
        Some("secret"),
        WHO,
    );
    assert!(ca.status.success(), "verify-ca: {}", text(&ca));

    let full = pg.psql(
        &(base + &ssl_params("verify-full", &pki.ca.cert)),
        Some("secret"),
        WHO,
    );
    assert!(!full.status.success(), "verify-full ignored the name");
    let err = String::from_utf8_lossy(&full.stderr);
    assert!(
        err.contains(OTHER_HOST) && err.contains("does not match host name"),
        "{}",
        text(&full)
    );
}

#[test]
fn postgres_tls_server_can_require_a_client_certificate() {
    let pki = TestPki::new();
    let pg = PgServer::start_tls_with(&pki.server, &pki.ca, PgTlsAuth::PasswordAndCert);
    pg.create_role(CLIENT_CN, "secret");
    let base = pg.conninfo(CLIENT_CN, "postgres") + &ssl_params("verify-full", &pki.ca.cert);
    let with_cert = |files: &crate::support::tls::CertFiles| {
        format!(
            "{base} sslcert='{}' sslkey='{}'",
            files.cert.display(),
            files.key.display()
        )
    };

    let ok = pg.psql(&with_cert(&pki.client), Some("secret"), WHO);
    assert!(ok.status.success(), "with the client cert: {}", text(&ok));

    let none = pg.psql(&base, Some("secret"), WHO);
    assert!(
        !none.status.success(),
        "got in without a client certificate"
    );

    let foreign = pg.psql(&with_cert(&pki.other_client), Some("secret"), WHO);
    assert!(
        !foreign.status.success(),
        "a client certificate from another CA was accepted"
    );

    // `cert` alone: the certificate is the login, no password asked.
    let pg = PgServer::start_tls_with(&pki.server, &pki.ca, PgTlsAuth::Cert);
    pg.create_role(CLIENT_CN, "unused");
    let base = pg.conninfo(CLIENT_CN, "postgres") + &ssl_params("verify-full", &pki.ca.cert);
    let ok = pg.psql(
        &format!(
            "{base} sslcert='{}' sslkey='{}'",
            pki.client.cert.display(),
            pki.client.key.display()
        ),
        None,
        WHO,
    );
    assert!(ok.status.success(), "cert auth: {}", text(&ok));
}

/// `redis-cli --tls` against `srv` with `args` then `PING`, password in `REDISCLI_AUTH`.
fn redis_ping(srv: &RedisServer, args: &[&Path], password: Option<&str>) -> Output {
    let mut cmd = srv.cli();
    cmd.args(args);
    if let Some(password) = password {
        cmd.env("REDISCLI_AUTH", password);
    }
    output_within(cmd.arg("PING"), DEADLINE)
}

fn pong(out: &Output) -> bool {
    out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "PONG"
}

#[test]
fn redis_tls_server_answers_with_the_ca_and_password_only() {
    let pki = TestPki::new();
    let srv = RedisServer::start_tls(RedisTls::new(&pki).password(AWKWARD_PASSWORD));
    assert!(srv.url().starts_with("rediss://localhost:"));
    let cacert = [Path::new("--cacert"), &pki.ca.cert];

    let ok = redis_ping(&srv, &cacert, Some(AWKWARD_PASSWORD));
    assert!(pong(&ok), "CA and password: {}", text(&ok));

    let no_password = redis_ping(&srv, &cacert, None);
    assert!(
        String::from_utf8_lossy(&no_password.stdout).contains("NOAUTH"),
        "no password: {}",
        text(&no_password)
    );

    let wrong_ca = redis_ping(
        &srv,
        &[Path::new("--cacert"), &pki.other_ca.cert],
        Some(AWKWARD_PASSWORD),
    );
    assert!(!pong(&wrong_ca), "a foreign CA was trusted");

    let expired = RedisServer::start_tls(RedisTls::new(&pki).server_cert(&pki.expired));
    let out = redis_ping(&expired, &cacert, None);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("certificate verify failed"),
        "expired server certificate: {}",
        text(&out)
    );

    // A plain client on the TLS port: the server takes its PING for a bad TLS record and
    // drops the connection (redis-cli says "I/O error", "Connection reset by peer" or "Server
    // closed the connection", depending on timing).
    let mut plain = std::process::Command::new("redis-cli");
    plain
        .args(["-h", "127.0.0.1", "-p", &srv.port().to_string()])
        .env("REDISCLI_AUTH", AWKWARD_PASSWORD)
        .arg("PING");
    let plain = output_within(&mut plain, DEADLINE);
    assert!(
        !plain.status.success() && !pong(&plain),
        "plain text got an answer from the TLS port: {}",
        text(&plain)
    );
}

#[test]
fn redis_tls_server_with_auth_clients_wants_a_certificate_from_its_ca() {
    let pki = TestPki::new();
    let srv = RedisServer::start_tls(RedisTls::new(&pki).auth_clients(true));
    let ca = [Path::new("--cacert"), &pki.ca.cert];

    let without = redis_ping(&srv, &ca, None);
    assert!(!pong(&without), "no client certificate: {}", text(&without));

    let with = |c: &crate::support::tls::CertFiles| {
        let args = [
            ca[0],
            ca[1],
            Path::new("--cert"),
            &c.cert,
            Path::new("--key"),
            &c.key,
        ];
        redis_ping(&srv, &args, None)
    };
    let ok = with(&pki.client);
    assert!(pong(&ok), "client certificate: {}", text(&ok));

    let foreign = with(&pki.other_client);
    assert!(
        !pong(&foreign),
        "client certificate from another CA: {}",
        text(&foreign)
    );
}
