//! Unit tests of the configuration: layers, precedence, validation, secrets. The delivery
//! settings (Pusher, Slack, email, alert policy) have theirs in `delivery.rs`.

mod bounds;
mod delivery;
mod servers;
mod topology;

use super::files::exposed_secrets;
use super::keys::KEYS;
use super::*;
use crate::secret::redact_url;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn file(text: &str) -> Option<(PathBuf, String)> {
    Some((PathBuf::from("test.toml"), text.to_string()))
}

fn err(sources: Sources) -> String {
    Config::resolve(&sources)
        .expect_err("must be rejected")
        .to_string()
}

#[test]
fn defaults_alone() {
    let c = Config::resolve(&Sources::default()).expect("defaults are valid");
    assert_eq!(c.threshold, 20);
    assert_eq!(c.min_severity, Severity::Warning);
    assert_eq!(
        c.database.url.expose(),
        "postgres://inventory:inventory@127.0.0.1:5432/inventory"
    );
    assert_eq!(c.redis.url.expose(), "redis://127.0.0.1:6379");
    assert_eq!(c.queue.tries, 3);
    assert_eq!(c.queue.backoff, vec![1, 5, 10]);
    assert_eq!(c.queue.retry_after, 90);
    assert_eq!(c.queue.timeout, 60);
    assert_eq!(c.broadcast.drivers, vec![Driver::Redis]);
    assert_eq!(c.broadcast.event, "App\\Events\\ItemCountExeed");
    assert_eq!(c.broadcast.redis.url, c.redis.url);
}

#[test]
fn each_layer_alone() {
    let from_file = Sources {
        file: file("[inventory]\nthreshold = 30\n"),
        ..Default::default()
    };
    assert_eq!(Config::resolve(&from_file).unwrap().threshold, 30);
    let from_dotenv = Sources {
        dotenv: Some((
            ".env".into(),
            vec![("INVENTORY_NOTIFICATION_THRESHOLD".into(), "31".into())],
        )),
        ..Default::default()
    };
    assert_eq!(Config::resolve(&from_dotenv).unwrap().threshold, 31);
    let from_env = Sources {
        env: env(&[("INVENTORY_NOTIFICATION_THRESHOLD", "32")]),
        ..Default::default()
    };
    assert_eq!(Config::resolve(&from_env).unwrap().threshold, 32);
    let from_flag = Sources {
        flags: vec![Flag::new("inventory.threshold", "--threshold", 33)],
        ..Default::default()
    };
    assert_eq!(Config::resolve(&from_flag).unwrap().threshold, 33);
}

#[test]
fn precedence_file_dotenv_env_flag() {
    let mut s = Sources {
        file: file("[inventory]\nthreshold = 30\n"),
        dotenv: Some((
            ".env".into(),
            vec![("INVENTORY_NOTIFICATION_THRESHOLD".into(), "31".into())],
        )),
        env: env(&[("INVENTORY_NOTIFICATION_THRESHOLD", "32")]),
        flags: vec![Flag::new("inventory.threshold", "--threshold", 33)],
    };
    assert_eq!(Config::resolve(&s).unwrap().threshold, 33, "flag wins");
    s.flags.clear();
    assert_eq!(Config::resolve(&s).unwrap().threshold, 32, "env beats .env");
    s.env.clear();
    assert_eq!(
        Config::resolve(&s).unwrap().threshold,
        31,
        ".env beats file"
    );
}

#[test]
fn bad_threshold_names_key_and_source() {
    for bad in ["0", "-5", "twenty", "1.5", ""] {
        let msg = err(Sources {
            env: env(&[("INVENTORY_NOTIFICATION_THRESHOLD", bad)]),
            ..Default::default()
        });
        assert!(msg.contains("inventory.threshold"), "{msg}");
        assert!(
            msg.contains("environment variable INVENTORY_NOTIFICATION_THRESHOLD"),
            "{msg}"
        );
    }
    let msg = err(Sources {
        file: file("[inventory]\nthreshold = 0\n"),
        ..Default::default()
    });
    assert!(
        msg.contains("inventory.threshold") && msg.contains("config file test.toml"),
        "{msg}"
    );
    let msg = err(Sources {
        flags: vec![Flag::new("inventory.threshold", "--threshold", "-1")],
        ..Default::default()
    });
    assert!(msg.contains("flag --threshold"), "{msg}");
}

#[test]
fn unknown_driver() {
    let msg = err(Sources {
        env: env(&[("BROADCAST_DRIVER", "carrier-pigeon")]),
        ..Default::default()
    });
    assert!(
        msg.contains("broadcast.drivers") && msg.contains("BROADCAST_DRIVER"),
        "{msg}"
    );
    assert!(msg.contains("carrier-pigeon"), "{msg}");
}

#[test]
fn several_drivers_as_list_or_comma_string() {
    let s = Sources {
        file: file("[broadcast]\ndrivers = [\"redis\", \"log\"]\n"),
        ..Default::default()
    };
    assert_eq!(
        Config::resolve(&s).unwrap().broadcast.drivers,
        vec![Driver::Redis, Driver::Log]
    );
    let s = Sources {
        env: env(&[("BROADCAST_DRIVER", "log, null")]),
        ..Default::default()
    };
    assert_eq!(
        Config::resolve(&s).unwrap().broadcast.drivers,
        vec![Driver::Log, Driver::Null]
    );
}

#[test]
fn bad_urls_never_show_the_password() {
    let msg = err(Sources {
        env: env(&[("DATABASE_URL", "mysql://root:hunter2@db/x")]),
        ..Default::default()
    });
    assert!(
        msg.contains("database.url") && msg.contains("DATABASE_URL"),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "{msg}");
    let msg = err(Sources {
        env: env(&[("REDIS_URL", "http://:hunter2@localhost")]),
        ..Default::default()
    });
    assert!(
        msg.contains("redis.url") && !msg.contains("hunter2"),
        "{msg}"
    );
    let msg = err(Sources {
        env: env(&[("DB_PORT", "99999")]),
        ..Default::default()
    });
    assert!(
        msg.contains("database.port") && msg.contains("DB_PORT"),
        "{msg}"
    );
}

#[test]
fn db_parts_build_the_url() {
    let s = Sources {
        env: env(&[
            ("DB_HOST", "db.local"),
            ("DB_PORT", "6543"),
            ("DB_DATABASE", "shop"),
        ]),
        ..Default::default()
    };
    assert_eq!(
        Config::resolve(&s).unwrap().database.url.expose(),
        "postgres://inventory:inventory@db.local:6543/shop"
    );
}

#[test]
fn boundaries_out_of_order() {
    let msg = err(Sources {
        env: env(&[("INVENTORY_SEVERITY_HIGH", "160")]),
        ..Default::default()
    });
    assert!(
        msg.contains("severity.high") && msg.contains("INVENTORY_SEVERITY_HIGH"),
        "{msg}"
    );
    assert!(msg.contains("must rise"), "{msg}");
}

#[test]
fn unknown_file_key_is_an_error() {
    let msg = err(Sources {
        file: file("[queue]\ntrys = 3\n"),
        ..Default::default()
    });
    assert!(
        msg.contains("queue.trys") && msg.contains("test.toml"),
        "{msg}"
    );
}

#[test]
fn timeout_must_be_below_retry_after() {
    let msg = err(Sources {
        flags: vec![Flag::new("queue.timeout", "--timeout", 90)],
        ..Default::default()
    });
    assert!(
        msg.contains("queue.timeout") && msg.contains("--timeout"),
        "{msg}"
    );
}

#[test]
fn bad_backoff_and_tries() {
    let msg = err(Sources {
        env: env(&[("INVENTORY_QUEUE_BACKOFF", "1,x")]),
        ..Default::default()
    });
    assert!(msg.contains("queue.backoff"), "{msg}");
    let msg = err(Sources {
        flags: vec![Flag::new("queue.tries", "--tries", "-1")],
        ..Default::default()
    });
    assert!(
        msg.contains("queue.tries") && msg.contains("--tries"),
        "{msg}"
    );
}

#[test]
fn redacts_passwords() {
    assert_eq!(
        redact_url("postgres://u:secret@h:5432/db"),
        "postgres://u:***@h:5432/db"
    );
    assert_eq!(redact_url("redis://:secret@h:6379"), "redis://:***@h:6379");
    assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
    assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
}

#[test]
fn durations() {
    assert_eq!(parse_duration("3600").unwrap().as_secs(), 3600);
    assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
    assert_eq!(parse_duration("30m").unwrap().as_secs(), 1800);
    assert_eq!(parse_duration("1h").unwrap().as_secs(), 3600);
    assert_eq!(parse_duration("2d").unwrap().as_secs(), 172_800);
    for bad in ["", "h", "1w", "-1", "1.5h"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[cfg(unix)]
#[test]
fn a_readable_file_with_secrets_is_reported_by_key() {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::temp_dir().join(format!("ib-perm-{}.toml", std::process::id()));
    std::fs::write(&path, "").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        exposed_secrets(&path, &["pusher.secret"]),
        Some((0o644, vec!["pusher.secret"]))
    );
    assert_eq!(exposed_secrets(&path, &[]), None);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(exposed_secrets(&path, &["pusher.secret"]), None);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn the_shipped_config_file_is_valid_and_matches_the_defaults() {
    let text = include_str!("../../../config/inventory.toml");
    let s = Sources {
        file: file(text),
        ..Default::default()
    };
    let c = Config::resolve(&s).expect("config/inventory.toml is valid");
    assert_eq!(c.threshold, 20);
    for spec in KEYS {
        let (section, name) = spec.key.split_once('.').unwrap();
        assert!(
            text.contains(&format!("[{section}]")),
            "config/inventory.toml has no [{section}] section"
        );
        assert!(
            text.contains(&format!("{name} =")),
            "config/inventory.toml does not document {}",
            spec.key
        );
        assert!(
            spec.env.is_empty() || text.contains(spec.env),
            "{} is not named",
            spec.env
        );
    }
}
