//! Unit tests of the delivery settings: the pusher driver, Slack, email, the alert policy,
//! and that none of their secrets ever shows.

use super::{env, err};
use crate::config::{Config, Sources};
use crate::notify::{Encryption, ResolveBelow};
use crate::severity::Severity;
use std::collections::HashMap;

#[test]
fn pusher_driver_needs_its_credentials_and_names_the_missing_key() {
    let msg = err(Sources {
        env: env(&[("BROADCAST_DRIVER", "redis,pusher")]),
        ..Default::default()
    });
    assert!(
        msg.contains("pusher.app_id") && msg.contains("PUSHER_APP_ID"),
        "{msg}"
    );
    let msg = err(Sources {
        env: env(&[
            ("BROADCAST_DRIVER", "pusher"),
            ("PUSHER_APP_ID", "1"),
            ("PUSHER_APP_KEY", "k"),
        ]),
        ..Default::default()
    });
    assert!(
        msg.contains("pusher.secret") && msg.contains("PUSHER_APP_SECRET"),
        "{msg}"
    );
}

fn pusher_env(extra: &[(&str, &str)]) -> HashMap<String, String> {
    let mut e = env(&[
        ("BROADCAST_DRIVER", "redis,pusher"),
        ("PUSHER_APP_ID", "123"),
        ("PUSHER_APP_KEY", "key"),
        ("PUSHER_APP_SECRET", "s3cret-value"),
    ]);
    e.extend(env(extra));
    e
}

#[test]
fn pusher_host_from_cluster_or_host_port_scheme() {
    let c = |extra: &[(&str, &str)]| {
        let s = Sources {
            env: pusher_env(extra),
            ..Default::default()
        };
        Config::resolve(&s).unwrap().broadcast.pusher.unwrap()
    };
    assert_eq!(c(&[]).base_url, "https://api-mt1.pusher.com:443");
    assert_eq!(
        c(&[("PUSHER_APP_CLUSTER", "eu")]).base_url,
        "https://api-eu.pusher.com:443"
    );
    let soketi = [
        ("PUSHER_HOST", "127.0.0.1"),
        ("PUSHER_PORT", "6001"),
        ("PUSHER_SCHEME", "http"),
    ];
    assert_eq!(c(&soketi).base_url, "http://127.0.0.1:6001");
    assert_eq!(
        c(&[("PUSHER_HOST", "reverb.example.com")]).base_url,
        "https://reverb.example.com:443"
    );
    assert_eq!(
        c(&[("PUSHER_HOST", "ws.local"), ("PUSHER_SCHEME", "http")]).base_url,
        "http://ws.local:80"
    );
    assert_eq!(
        c(&[("PUSHER_HOST", "::1"), ("PUSHER_PORT", "6001")]).base_url,
        "https://[::1]:6001"
    );
    let all = c(&[]);
    assert_eq!((all.app_id.as_str(), all.key.as_str()), ("123", "key"));
    assert_eq!(all.secret.expose(), "s3cret-value");
}

#[test]
fn bad_pusher_values() {
    for (var, value, key) in [
        ("PUSHER_SCHEME", "ftp", "pusher.scheme"),
        ("PUSHER_PORT", "70000", "pusher.port"),
        ("PUSHER_HOST", "http://soketi:6001", "pusher.host"),
        ("PUSHER_HOST", "soketi:6001", "pusher.host"),
        ("PUSHER_APP_CLUSTER", "eu/1", "pusher.cluster"),
        ("PUSHER_APP_KEY", "a&b", "pusher.key"),
        (
            "INVENTORY_BROADCAST_CHANNEL",
            "stock alerts",
            "broadcast.channel",
        ),
    ] {
        let msg = err(Sources {
            env: pusher_env(&[(var, value)]),
            ..Default::default()
        });
        assert!(msg.contains(key) && msg.contains(var), "{msg}");
        assert!(!msg.contains("s3cret-value"), "{msg}");
    }
}

#[test]
fn secrets_never_show_in_errors_or_debug_output() {
    let msg = err(Sources {
        env: env(&[
            ("INVENTORY_SLACK_NOTIFICATIONS", "true"),
            (
                "INVENTORY_SLACK_WEBHOOK_URL",
                "hooks.slack.com/services/T0/B0/tok3n",
            ),
        ]),
        ..Default::default()
    });
    assert!(msg.contains("slack.webhook_url"), "{msg}");
    assert!(!msg.contains("tok3n"), "{msg}");
    let msg = err(Sources {
        env: env(&[(
            "INVENTORY_SLACK_WEBHOOK_URL",
            "ftp://hooks.slack.com/services/T0/B0/tok3n",
        )]),
        ..Default::default()
    });
    assert!(msg.contains("ftp://hooks.slack.com/***"), "{msg}");
    assert!(!msg.contains("tok3n"), "{msg}");

    let mut e = pusher_env(&[
        ("INVENTORY_SLACK_NOTIFICATIONS", "true"),
        (
            "INVENTORY_SLACK_WEBHOOK_URL",
            "https://hooks.slack.com/services/T0/B0/tok3n",
        ),
        ("MAIL_PASSWORD", "mail-pw-123"),
        ("DB_PASSWORD", "db-pw-456"),
        ("REDIS_PASSWORD", "redis-pw-789"),
        ("BROADCAST_REDIS_URL", "redis://:bc-pw-000@127.0.0.1:6380"),
    ]);
    e.insert("MAIL_USERNAME".into(), "me".into());
    let c = Config::resolve(&Sources {
        env: e,
        ..Default::default()
    })
    .unwrap();
    let shown = format!("{c:?}");
    for secret in [
        "s3cret-value",
        "tok3n",
        "mail-pw-123",
        "db-pw-456",
        "redis-pw-789",
        "bc-pw-000",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // The passwords did reach the URLs, where only the clients read them.
    assert!(c.database.url.expose().contains("db-pw-456"));
    assert!(c.redis.url.expose().contains("redis-pw-789"));

    // Errors about the connection URLs show them without their passwords.
    for (var, value, key) in [
        (
            "DATABASE_URL",
            "postgres://u:db-pw-456@h:notaport/x",
            "database.url",
        ),
        ("DATABASE_URL", "mysql://u:db-pw-456@h/x", "database.url"),
        ("REDIS_URL", "redis://:redis-pw-789@h:notaport", "redis.url"),
        (
            "BROADCAST_REDIS_URL",
            "http://:bc-pw-000@h",
            "broadcast.redis_url",
        ),
    ] {
        let msg = err(Sources {
            env: env(&[(var, value)]),
            ..Default::default()
        });
        assert!(msg.contains(key), "{msg}");
        for secret in ["db-pw-456", "redis-pw-789", "bc-pw-000"] {
            assert!(!msg.contains(secret), "{secret} in {msg}");
        }
    }
}

#[test]
fn notification_defaults_are_off_with_the_issue_s_policy() {
    let c = Config::resolve(&Sources::default()).unwrap();
    assert!(c.notify.slack.is_none() && c.notify.mail.is_none());
    assert_eq!(c.notify.repeat_interval.as_secs(), 3600);
    assert_eq!(c.notify.resolve_below, ResolveBelow::Percent(95));
    assert_eq!(c.notify.resolve_below.limit(20), 19);
    assert!(c.broadcast.pusher.is_none());
}

#[test]
fn slack_and_mail_switched_on() {
    let s = Sources {
        env: env(&[
            ("INVENTORY_SLACK_NOTIFICATIONS", "true"),
            ("INVENTORY_SLACK_WEBHOOK_URL", "https://hooks.slack.com/x"),
            ("INVENTORY_EMAIL_NOTIFICATIONS", "1"),
            ("MAIL_HOST", "smtp.example.com"),
            ("MAIL_ENCRYPTION", "ssl"),
            ("MAIL_FROM_ADDRESS", "alerts@example.com"),
            ("INVENTORY_EMAIL_TO", "a@example.com, b@example.com"),
        ]),
        ..Default::default()
    };
    let c = Config::resolve(&s).unwrap();
    let slack = c.notify.slack.unwrap();
    assert_eq!(slack.min_severity, Severity::High);
    let mail = c.notify.mail.unwrap();
    assert_eq!(mail.min_severity, Severity::Critical);
    assert_eq!((mail.encryption, mail.port), (Encryption::Tls, 465));
    assert_eq!(mail.to, ["a@example.com", "b@example.com"]);
}

#[test]
fn bad_notification_values() {
    let on = [
        ("INVENTORY_EMAIL_NOTIFICATIONS", "true"),
        ("MAIL_HOST", "smtp.example.com"),
        ("MAIL_FROM_ADDRESS", "alerts@example.com"),
        ("INVENTORY_EMAIL_TO", "a@example.com"),
    ];
    for (var, value, key) in [
        ("MAIL_ENCRYPTION", "starttls", "mail.encryption"),
        ("MAIL_PORT", "x", "mail.port"),
        ("INVENTORY_EMAIL_TO", "a@example.com,nobody", "mail.to"),
        ("MAIL_FROM_ADDRESS", "alerts", "mail.from_address"),
        ("MAIL_HOST", "", "mail.host"),
        ("INVENTORY_EMAIL_TO", "", "mail.to"),
        ("INVENTORY_EMAIL_MIN_SEVERITY", "info", "mail.min_severity"),
        ("INVENTORY_EMAIL_NOTIFICATIONS", "maybe", "mail.enabled"),
        ("INVENTORY_SLACK_NOTIFICATIONS", "true", "slack.webhook_url"),
        (
            "INVENTORY_SLACK_WEBHOOK_URL",
            "not a url",
            "slack.webhook_url",
        ),
        (
            "INVENTORY_ALERT_REPEAT_INTERVAL",
            "soon",
            "alerts.repeat_interval",
        ),
        (
            "INVENTORY_ALERT_REPEAT_INTERVAL",
            "0",
            "alerts.repeat_interval",
        ),
        (
            "INVENTORY_ALERT_RESOLVE_BELOW",
            "21",
            "alerts.resolve_below",
        ),
        (
            "INVENTORY_ALERT_RESOLVE_BELOW",
            "120%",
            "alerts.resolve_below",
        ),
    ] {
        let mut e = env(&on);
        e.insert(var.into(), value.into());
        let msg = err(Sources {
            env: e,
            ..Default::default()
        });
        assert!(
            msg.contains(key) && msg.contains(var),
            "{var}={value}: {msg}"
        );
    }
    // A bad MAIL_ENCRYPTION is an error even while email is off.
    let msg = err(Sources {
        env: env(&[("MAIL_ENCRYPTION", "starttls")]),
        ..Default::default()
    });
    assert!(msg.contains("mail.encryption"), "{msg}");
}

#[test]
fn resolve_below_as_count_or_percent() {
    let r = |v: &str| {
        let s = Sources {
            env: env(&[("INVENTORY_ALERT_RESOLVE_BELOW", v)]),
            ..Default::default()
        };
        Config::resolve(&s).unwrap().notify.resolve_below.limit(20)
    };
    assert_eq!(r("95%"), 19);
    assert_eq!(r("96%"), 20); // 19.2 rounds up: 19 is below it
    assert_eq!(r("100%"), 20);
    assert_eq!(r("15"), 15);
    assert_eq!(ResolveBelow::Percent(95).limit(1), 1);
}
