//! What a configuration allows but should not: a password or token sent in plain text to
//! another machine, or certificate checks switched off. Each is one warning at start, not an
//! error: a private network may make it safe, and only the operator knows.

use super::Config;
use crate::db::SslMode;
use crate::notify::Encryption;
use crate::redis_conn::RedisConfig;

/// The warnings for `config`, one line each.
pub(super) fn find(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    database(config, &mut out);
    let mut redis = vec![("the queue's Redis", &config.redis)];
    if config.broadcast.redis.url != config.redis.url {
        redis.push(("the broadcast Redis", &config.broadcast.redis));
    }
    for (what, server) in redis {
        redis_server(what, server, &mut out);
    }
    delivery(config, &mut out);
    out
}

fn database(config: &Config, out: &mut Vec<String>) {
    let Ok(pg) = config.database.url.expose().parse::<postgres::Config>() else {
        return;
    };
    let remote = pg.get_hosts().iter().find_map(|h| match h {
        postgres::config::Host::Tcp(host) if !is_loopback(host) => Some(host.clone()),
        _ => None,
    });
    let (Some(host), true) = (remote, pg.get_password().is_some()) else {
        return;
    };
    match config.database.tls.mode {
        SslMode::Disable => out.push(format!(
            "the PostgreSQL password goes to {host} in plain text (sslmode=disable); \
             set sslmode=verify-full"
        )),
        SslMode::Prefer => out.push(format!(
            "PostgreSQL at {host}: sslmode=prefer sends the password in plain text to a server \
             that offers no TLS, and checks no certificate; set sslmode=verify-full"
        )),
        _ => {}
    }
}

fn redis_server(what: &str, server: &RedisConfig, out: &mut Vec<String>) {
    if server.is_insecure() {
        out.push(format!(
            "{what} is reached with #insecure: its TLS certificate is not checked (for a \
             self-signed test server only)"
        ));
    }
    let mut warned: Vec<String> = Vec::new();
    for url in server.urls() {
        let Some(host) = plain_password_host(url.expose()) else {
            continue;
        };
        if !warned.contains(&host) {
            out.push(format!(
                "the password of {what} goes to {host} in plain text (redis://); use \
                 rediss:// or REDIS_SCHEME=tls"
            ));
            warned.push(host);
        }
    }
}

/// The host a `redis://` URL sends its password to in plain text, when that is not this
/// machine.
fn plain_password_host(url: &str) -> Option<String> {
    let client = redis::Client::open(url).ok()?;
    let info = client.get_connection_info();
    let redis::ConnectionAddr::Tcp(host, _) = info.addr() else {
        return None;
    };
    (info.redis_settings().password().is_some() && !is_loopback(host)).then(|| host.clone())
}

fn delivery(config: &Config, out: &mut Vec<String>) {
    if let Some(slack) = &config.notify.slack {
        if let Some(host) = plain_remote_host(slack.webhook_url.expose()) {
            out.push(format!(
                "the Slack webhook (whose path is its credential) goes to {host} over http://; \
                 use https://"
            ));
        }
    }
    let pusher = config.broadcast.pusher.as_ref();
    if let Some(host) = pusher.and_then(|p| plain_remote_host(&p.base_url)) {
        out.push(format!(
            "Pusher requests (signed with the app key) go to {host} over http \
             (PUSHER_SCHEME=http); use https"
        ));
    }
    if let Some(mail) = &config.notify.mail {
        let unencrypted = mail.encryption == Encryption::None;
        if unencrypted && !mail.password.expose().is_empty() && !is_loopback(&mail.host) {
            out.push(format!(
                "the SMTP password goes to {} in plain text (MAIL_ENCRYPTION=null); use tls",
                mail.host
            ));
        }
    }
}

/// The host of an `http://` URL that is not on this machine.
fn plain_remote_host(url: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    let host = url.host_str()?.trim_matches(['[', ']']).to_string();
    (url.scheme() == "http" && !is_loopback(&host)).then_some(host)
}

/// `localhost`, 127.0.0.0/8 or ::1: traffic that never leaves the machine.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_matches(['[', ']']);
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in ["localhost", "127.0.0.1", "127.8.9.1", "::1", "[::1]"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["db.example.com", "10.0.0.5", "::2", ""] {
            assert!(!is_loopback(host), "{host}");
        }
        assert_eq!(
            plain_remote_host("http://hooks.example.com/x"),
            Some("hooks.example.com".into())
        );
        assert_eq!(plain_remote_host("http://127.0.0.1:9/x"), None);
        assert_eq!(plain_remote_host("https://hooks.example.com/x"), None);
    }
}
