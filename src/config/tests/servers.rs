//! Unit tests of the connection settings: passwords that survive any character, libpq's TLS
//! parameters and their precedence, Redis TLS files, session timeouts, and the plain-text
//! warnings.

use super::{env, err};
use crate::config::{Config, Sources};
use crate::db::SslMode;
use std::path::PathBuf;
use std::time::Duration;

/// Every character the issue names, and a few more.
const AWKWARD: &str = "p@ss/w:rd #1%41?&x= y\"'\\";

fn resolve(pairs: &[(&str, &str)]) -> Config {
    Config::resolve(&Sources {
        env: env(pairs),
        ..Default::default()
    })
    .expect("valid")
}

/// A self-signed certificate and its key as PEM files, for settings that check them.
fn pem_files(name: &str) -> (PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("ib-cfg-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (crt, key) = (dir.join("ca.pem"), dir.join("key.pem"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.signing_key.serialize_pem()).unwrap();
    (crt, key)
}

#[test]
fn any_password_survives_the_url_from_parts() {
    let c = resolve(&[
        ("DB_USERNAME", "in ventory@x"),
        ("DB_PASSWORD", AWKWARD),
        ("REDIS_PASSWORD", AWKWARD),
    ]);
    let pg: postgres::Config = c.database.url.expose().parse().unwrap();
    assert_eq!(pg.get_password(), Some(AWKWARD.as_bytes()));
    assert_eq!(pg.get_user(), Some("in ventory@x"));
    assert_eq!(pg.get_dbname(), Some("inventory"));
    match &pg.get_hosts()[0] {
        postgres::config::Host::Tcp(h) => assert_eq!(h, "127.0.0.1"),
        other => panic!("{other:?}"),
    }
    let redis = redis::Client::open(c.redis.url.expose()).unwrap();
    let info = redis.get_connection_info();
    assert_eq!(info.redis_settings().password(), Some(AWKWARD));
    assert_eq!(info.addr().to_string(), "127.0.0.1:6379");
    let shown = format!("{c:?}");
    assert!(!shown.contains("w:rd"), "{shown}");
}

#[test]
fn a_raw_at_sign_in_a_given_url_is_read_as_part_of_the_password() {
    let c = resolve(&[(
        "DATABASE_URL",
        "postgres://u:Sup3r@Secret@127.0.0.1:5432/db",
    )]);
    let pg: postgres::Config = c.database.url.expose().parse().unwrap();
    assert_eq!(pg.get_password(), Some(&b"Sup3r@Secret"[..]));
    assert_eq!(
        crate::db::describe(c.database.url.expose()),
        "127.0.0.1:5432/db as u"
    );
}

#[test]
fn tls_parameters_leave_the_url_and_win_over_the_environment() {
    let (ca, _) = pem_files("params");
    let url = format!(
        "postgres://u:pw@db.example.com/inv?sslmode=verify-full&sslrootcert={}&application_name=x",
        ca.display()
    );
    let c = resolve(&[("DATABASE_URL", &url), ("DB_SSLMODE", "disable")]);
    assert_eq!(c.database.tls.mode, SslMode::VerifyFull);
    assert_eq!(c.database.tls.root_cert.as_deref(), Some(ca.as_path()));
    let left = c.database.url.expose();
    assert!(!left.contains("ssl"), "{left}");
    assert!(left.ends_with("?application_name=x"), "{left}");
    // Without the URL's own: DB_SSLMODE, else libpq's PGSSLMODE, else prefer.
    assert_eq!(resolve(&[]).database.tls.mode, SslMode::Prefer);
    let pg = resolve(&[("PGSSLMODE", "require")]);
    assert_eq!(pg.database.tls.mode, SslMode::Require);
    let both = resolve(&[("PGSSLMODE", "require"), ("DB_SSLMODE", "verify-ca")]);
    assert_eq!(both.database.tls.mode, SslMode::VerifyCa);
}

#[test]
fn bad_tls_settings_name_their_key() {
    let msg = err(Sources {
        env: env(&[("DB_SSLMODE", "on")]),
        ..Default::default()
    });
    assert!(
        msg.contains("database.sslmode") && msg.contains("DB_SSLMODE"),
        "{msg}"
    );
    assert!(msg.contains("verify-full"), "{msg}");
    let msg = err(Sources {
        env: env(&[("DATABASE_URL", "postgres://u@h/d?sslmode=strict")]),
        ..Default::default()
    });
    assert!(
        msg.contains("database.url") && msg.contains("sslmode"),
        "{msg}"
    );
    let msg = err(Sources {
        env: env(&[("DB_SSLROOTCERT", "/nonexistent/root.crt")]),
        ..Default::default()
    });
    assert!(
        msg.contains("database.sslrootcert") && msg.contains("/nonexistent"),
        "{msg}"
    );
    let (cert, key) = pem_files("pair");
    let msg = err(Sources {
        env: env(&[("DB_SSLCERT", cert.to_str().unwrap())]),
        ..Default::default()
    });
    assert!(msg.contains("database.sslkey"), "{msg}");
    let c = resolve(&[
        ("DB_SSLCERT", cert.to_str().unwrap()),
        ("PGSSLKEY", key.to_str().unwrap()),
    ]);
    assert_eq!(c.database.tls.client_key.as_deref(), Some(key.as_path()));
    let msg = err(Sources {
        env: env(&[
            ("DB_SSLKEY", cert.to_str().unwrap()),
            ("DB_SSLCERT", cert.to_str().unwrap()),
        ]),
        ..Default::default()
    });
    assert!(
        msg.contains("database.sslkey") && msg.contains("private key"),
        "{msg}"
    );
}

#[test]
fn redis_tls_from_the_url_or_laravels_scheme() {
    let (ca, key) = pem_files("redis");
    let ca = ca.to_str().unwrap();
    let c = resolve(&[("REDIS_SCHEME", "tls"), ("REDIS_PASSWORD", "pw")]);
    assert_eq!(c.redis.url.expose(), "rediss://:pw@127.0.0.1:6379");
    assert!(c.redis.is_tls() && c.broadcast.redis.is_tls());
    let c = resolve(&[
        ("REDIS_URL", "rediss://r.example:6380"),
        ("REDIS_CA_CERT", ca),
    ]);
    assert_eq!(c.redis.ca_cert.as_deref(), Some(std::path::Path::new(ca)));
    assert_eq!(c.broadcast.redis.ca_cert, c.redis.ca_cert);
    let msg = err(Sources {
        env: env(&[("REDIS_CA_CERT", ca)]),
        ..Default::default()
    });
    assert!(
        msg.contains("redis.ca_cert") && msg.contains("rediss://"),
        "{msg}"
    );
    let msg = err(Sources {
        env: env(&[
            ("REDIS_URL", "rediss://r.example:6380"),
            ("REDIS_CLIENT_KEY", key.to_str().unwrap()),
        ]),
        ..Default::default()
    });
    assert!(msg.contains("redis.client_cert"), "{msg}");
    let msg = err(Sources {
        env: env(&[("REDIS_SCHEME", "udp")]),
        ..Default::default()
    });
    assert!(msg.contains("redis.scheme"), "{msg}");
}

#[test]
fn session_timeouts() {
    let c = resolve(&[]);
    assert_eq!(c.database.statement_timeout, Duration::from_secs(30));
    assert_eq!(c.database.lock_timeout, Duration::from_secs(10));
    let c = resolve(&[
        ("INVENTORY_DB_STATEMENT_TIMEOUT", "2s"),
        ("INVENTORY_DB_LOCK_TIMEOUT", "500ms"),
    ]);
    assert_eq!(c.database.statement_timeout, Duration::from_secs(2));
    assert_eq!(c.database.lock_timeout, Duration::from_millis(500));
    let msg = err(Sources {
        env: env(&[("INVENTORY_DB_LOCK_TIMEOUT", "soon")]),
        ..Default::default()
    });
    assert!(msg.contains("database.lock_timeout"), "{msg}");
}

#[test]
fn plain_text_off_loopback_is_warned_about_once_each() {
    assert!(
        resolve(&[]).warnings().is_empty(),
        "{:?}",
        resolve(&[]).warnings()
    );
    let c = resolve(&[
        ("DB_HOST", "db.example.com"),
        ("DB_PASSWORD", "pg-s3cret"),
        ("DB_SSLMODE", "disable"),
        ("REDIS_URL", "redis://:redis-s3cret@cache.example.com:6379"),
        (
            "BROADCAST_REDIS_URL",
            "rediss://echo.example.com:6380/#insecure",
        ),
        ("INVENTORY_SLACK_NOTIFICATIONS", "true"),
        (
            "INVENTORY_SLACK_WEBHOOK_URL",
            "http://hooks.example.com/services/T/B/tok3n",
        ),
        ("BROADCAST_DRIVER", "pusher"),
        ("PUSHER_APP_ID", "1"),
        ("PUSHER_APP_KEY", "k"),
        ("PUSHER_APP_SECRET", "push-s3cret"),
        ("PUSHER_HOST", "soketi.example.com"),
        ("PUSHER_SCHEME", "http"),
        ("INVENTORY_EMAIL_NOTIFICATIONS", "true"),
        ("MAIL_HOST", "smtp.example.com"),
        ("MAIL_ENCRYPTION", "null"),
        ("MAIL_USERNAME", "me"),
        ("MAIL_PASSWORD", "mail-s3cret"),
        ("MAIL_FROM_ADDRESS", "a@example.com"),
        ("INVENTORY_EMAIL_TO", "b@example.com"),
    ]);
    let warnings = c.warnings();
    let all = warnings.join("\n");
    for needle in [
        "db.example.com",
        "cache.example.com",
        "#insecure",
        "Slack",
        "PUSHER_SCHEME=http",
        "MAIL_ENCRYPTION=null",
    ] {
        assert_eq!(
            warnings.iter().filter(|w| w.contains(needle)).count(),
            1,
            "{needle}: {all}"
        );
    }
    assert!(!all.contains("s3cret") && !all.contains("tok3n"), "{all}");
    let safe = resolve(&[
        ("DB_HOST", "db.example.com"),
        ("DB_SSLMODE", "verify-full"),
        ("REDIS_URL", "rediss://:pw@cache.example.com:6380"),
    ]);
    assert!(safe.warnings().is_empty(), "{:?}", safe.warnings());
}

#[test]
fn a_multi_host_url_keeps_its_hosts_and_loses_only_the_tls_parameters() {
    let url = "postgres://u:pw@h1.example:5432,h2.example:5433/inv?target_session_attrs=read-write&sslmode=require";
    let c = resolve(&[("DATABASE_URL", url)]);
    assert_eq!(c.database.tls.mode, SslMode::Require);
    let pg: postgres::Config = c.database.url.expose().parse().unwrap();
    assert_eq!(pg.get_hosts().len(), 2);
    assert_eq!(pg.get_ports(), [5432, 5433]);
    assert!(
        c.database
            .url
            .expose()
            .ends_with("?target_session_attrs=read-write")
    );
}

#[test]
fn db_host_lists_hosts_as_libpq_with_db_port_or_their_own() {
    let c = resolve(&[
        ("DB_HOST", "pg1.example, pg2.example"),
        ("DB_PORT", "6432"),
        ("DB_USERNAME", "in ventory@x"),
        ("DB_PASSWORD", AWKWARD),
        ("DB_DATABASE", "inv/1"),
        ("DB_SSLMODE", "verify-full"),
    ]);
    let url = c.database.url.expose();
    assert!(url.contains("@pg1.example:6432,pg2.example:6432/"), "{url}");
    assert_eq!(
        crate::db::describe(url),
        "pg1.example:6432,pg2.example:6432/inv/1 as in ventory@x"
    );
    let pg: postgres::Config = url.parse().unwrap();
    assert_eq!(pg.get_hosts().len(), 2);
    assert_eq!(pg.get_ports(), [6432, 6432]);
    assert_eq!(pg.get_password(), Some(AWKWARD.as_bytes()));
    assert_eq!(pg.get_user(), Some("in ventory@x"));
    assert_eq!(pg.get_dbname(), Some("inv/1"));
    // TLS settings stay out of the URL, as for one host; the session attributes are left to
    // the connection, which asks a multi-host URL for the primary.
    assert_eq!(c.database.tls.mode, SslMode::VerifyFull);
    assert!(!url.contains('?'), "{url}");

    // A port of its own per host, IPv6 bracketed or bare.
    let c = resolve(&[
        ("DB_HOST", "10.0.0.1:5433,[::1]:5434,::2,h3"),
        ("DB_PORT", "5999"),
    ]);
    let pg: postgres::Config = c.database.url.expose().parse().unwrap();
    assert_eq!(pg.get_ports(), [5433, 5434, 5999, 5999]);
    assert_eq!(
        crate::db::describe(c.database.url.expose()),
        "10.0.0.1:5433,::1:5434,::2:5999,h3:5999/inventory as inventory"
    );

    for (hosts, needle) in [
        ("h1,,h2", "host \"\" of the list"),
        ("h1,h2:0", "bad port \"0\""),
        ("h1,h2:x", "bad port \"x\""),
        ("h1,[::1", "no closing ]"),
        ("h1,h 2", "host \"h 2\" of the list"),
    ] {
        let msg = err(Sources {
            env: env(&[("DB_HOST", hosts)]),
            ..Default::default()
        });
        assert!(
            msg.contains("database.host") && msg.contains(needle),
            "{hosts}: {msg}"
        );
    }
}

#[test]
fn a_multi_host_url_keeps_target_session_attrs_beside_tls_parameters() {
    let (ca, _) = pem_files("multi");
    let url = format!(
        "postgres://u:pw@h1:5432,h2:5433/inv?sslmode=verify-full&target_session_attrs=any&sslrootcert={}",
        ca.display()
    );
    let c = resolve(&[("DATABASE_URL", &url)]);
    assert_eq!(c.database.tls.mode, SslMode::VerifyFull);
    assert_eq!(c.database.tls.root_cert.as_deref(), Some(ca.as_path()));
    assert_eq!(
        c.database.url.expose(),
        "postgres://u:pw@h1:5432,h2:5433/inv?target_session_attrs=any"
    );
    let msg = err(Sources {
        env: env(&[(
            "DATABASE_URL",
            "postgres://u@h1,h2/inv?target_session_attrs=primary",
        )]),
        ..Default::default()
    });
    assert!(msg.contains("database.url"), "{msg}");
}
