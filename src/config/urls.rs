//! The connection URLs of PostgreSQL and Redis: taken as given (`DATABASE_URL`, `REDIS_URL`)
//! or built from Laravel's parts (`DB_HOST`, `DB_PASSWORD`, …) with every part
//! percent-encoded, so a password may hold any character. Both are secrets from here on.

use super::ConfigError;
use super::layers::Layers;
use crate::secret::Secret;
use url::Url;

/// The PostgreSQL URL: `database.url`, else one built from `database.*`.
pub(super) fn database_url(l: &Layers) -> Result<Secret, ConfigError> {
    let key = "database.url";
    let url = if l.is_set(key) {
        l.str(key)
    } else {
        let port: u16 = l.parse("database.port", "must be a port number (1-65535)")?;
        let mut url = base("postgres", l, "database.host", port)?;
        set_credentials(
            &mut url,
            &l.str("database.username"),
            &l.str("database.password"),
        );
        // A path segment is percent-encoded by `push`, so a `/` or `?` in a name survives.
        if let Ok(mut path) = url.path_segments_mut() {
            path.clear().push(&l.str("database.database"));
        }
        url.to_string()
    };
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(l.invalid(key, "must be a postgres:// URL"));
    }
    url.parse::<postgres::Config>()
        .map_err(|e| l.invalid(key, format!("not a valid PostgreSQL URL ({e})")))?;
    Ok(Secret::new(url))
}

/// The queue's Redis URL: `key` (`redis.url`), else one built from `redis.*`.
pub(super) fn redis_url(l: &Layers, key: &'static str) -> Result<Secret, ConfigError> {
    if l.is_set(key) {
        return given_redis_url(l, key);
    }
    let port: u16 = l.parse("redis.port", "must be a port number (1-65535)")?;
    let mut url = base("redis", l, "redis.host", port)?;
    set_credentials(&mut url, "", &l.str("redis.password"));
    Ok(Secret::new(url.to_string()))
}

/// A Redis URL given whole, checked as the client will read it.
pub(super) fn given_redis_url(l: &Layers, key: &'static str) -> Result<Secret, ConfigError> {
    let url = l.str(key);
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://"))
    {
        return Err(l.invalid(key, "must be a redis:// URL"));
    }
    // Only the error kind is shown: the message could echo the URL and its password.
    redis::Client::open(url.as_str())
        .map_err(|e| l.invalid(key, format!("not a valid Redis URL ({:?})", e.kind())))?;
    Ok(Secret::new(url))
}

/// `scheme://host:port` with the host from `host_key` (a name, an IPv4 or IPv6 address).
fn base(scheme: &str, l: &Layers, host_key: &'static str, port: u16) -> Result<Url, ConfigError> {
    let host = l.str(host_key);
    let bracketed = if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host
    };
    let url = Url::parse(&format!("{scheme}://{bracketed}:{port}"))
        .map_err(|e| l.invalid(host_key, format!("must be a host name or IP address ({e})")))?;
    if url.host_str().is_none_or(str::is_empty) || url.port() != Some(port) {
        return Err(l.invalid(
            host_key,
            "must be a host name or IP address, without a port",
        ));
    }
    Ok(url)
}

/// Sets the user and password; the `url` crate percent-encodes what needs it, and both
/// clients decode it again, so any character survives.
fn set_credentials(url: &mut Url, user: &str, password: &str) {
    // Fails only for URLs without a host, and `base` made sure there is one.
    let _ = url.set_username(user);
    if !password.is_empty() {
        let _ = url.set_password(Some(password));
    }
}
