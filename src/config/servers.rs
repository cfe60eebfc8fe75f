//! The connection settings of PostgreSQL and Redis: the URL taken as given (`DATABASE_URL`,
//! `REDIS_URL`) or built from Laravel's parts (`DB_HOST`, `DB_PASSWORD`, …) with every part
//! percent-encoded, so a password may hold any character; TLS (libpq's `sslmode` family,
//! `rediss://` with certificate files); and the session timeouts. URLs are secrets from here on.

use super::ConfigError;
use super::layers::Layers;
use crate::db::{DatabaseConfig, PgTls, SslMode};
use crate::redis_conn::RedisConfig;
use crate::secret::Secret;
use std::path::PathBuf;
use url::Url;

/// libpq's TLS parameters, which `postgres::Config` does not know: taken out of the URL.
const TLS_PARAMS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

/// The PostgreSQL settings: `database.url` (its TLS parameters win over `database.ssl*`, as
/// in libpq a connection string's win over the environment), else built from `database.*`.
pub(super) fn database(l: &Layers) -> Result<DatabaseConfig, ConfigError> {
    let key = "database.url";
    let text = if l.is_set(key) {
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
    if !(text.starts_with("postgres://") || text.starts_with("postgresql://")) {
        return Err(l.invalid(key, "must be a postgres:// URL"));
    }
    let (url, in_url) = split_tls_params(&text);
    url.parse::<postgres::Config>()
        .map_err(|e| l.invalid(key, format!("not a valid PostgreSQL URL ({e})")))?;
    Ok(DatabaseConfig {
        url: Secret::new(url),
        tls: pg_tls(l, &in_url)?,
        statement_timeout: session_timeout(l, "database.statement_timeout")?,
        lock_timeout: session_timeout(l, "database.lock_timeout")?,
    })
}

/// A session timeout: a duration up to a year (0: none).
fn session_timeout(l: &Layers, key: &'static str) -> Result<std::time::Duration, ConfigError> {
    let timeout = l.duration(key)?;
    let max = crate::bounds::MAX_INTERVAL_S;
    if timeout.as_secs() > max {
        return Err(l.invalid(key, format!("must be at most {max} s (a year)")));
    }
    Ok(timeout)
}

/// The URL without libpq's TLS parameters, and those parameters.
///
/// A URL with one host is parsed and written back, so a password's raw `@` or space is
/// percent-encoded the one way both `postgres` and our messages read it (else `postgres`
/// would cut the host at the first `@`, and a piece of the password would be shown as the
/// host). A multi-host URL (`h1:5432,h2:5432`), which the `url` crate cannot parse, keeps its
/// authority as given and only loses the parameters.
fn split_tls_params(text: &str) -> (String, Vec<(String, String)>) {
    let (base, query) = match Url::parse(text) {
        Ok(mut url) if url.host_str().is_some() || text.contains(":///") => {
            let query = url.query().map(str::to_string);
            url.set_query(None);
            (url.to_string(), query)
        }
        _ => match text.split_once('?') {
            Some((base, query)) => (base.to_string(), Some(query.to_string())),
            None => (text.to_string(), None),
        },
    };
    let pairs = url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()));
    let (ours, rest): (Vec<_>, Vec<_>) = pairs.partition(|(k, _)| TLS_PARAMS.contains(&k.as_str()));
    if rest.is_empty() {
        return (base, ours);
    }
    let rest = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(rest)
        .finish();
    (format!("{base}?{rest}"), ours)
}

/// The TLS settings: each from the URL's parameter when it has one, else from its key.
fn pg_tls(l: &Layers, in_url: &[(String, String)]) -> Result<PgTls, ConfigError> {
    let from_url = |name: &str| {
        in_url
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    // An error about a URL parameter names `database.url` (where it came from).
    let pick = |name: &str, key: &'static str| match from_url(name) {
        Some(v) => (v, "database.url"),
        None => (l.str(key), key),
    };
    let (mode, mode_key) = pick("sslmode", "database.sslmode");
    let mode = SslMode::parse(&mode).ok_or_else(|| {
        l.invalid(
            mode_key,
            format!("sslmode must be {} (not {mode:?})", SslMode::NAMES),
        )
    })?;
    let file =
        |name: &str, key: &'static str, check: fn(&std::path::Path) -> Result<(), String>| {
            let (path, key) = pick(name, key);
            if path.is_empty() {
                return Ok(None);
            }
            let path = PathBuf::from(path);
            check(&path).map_err(|e| l.invalid(key, e))?;
            Ok::<_, ConfigError>(Some(path))
        };
    let tls = PgTls {
        mode,
        root_cert: file("sslrootcert", "database.sslrootcert", check_certs)?,
        client_cert: file("sslcert", "database.sslcert", check_certs)?,
        client_key: file("sslkey", "database.sslkey", check_key)?,
    };
    if tls.client_cert.is_some() != tls.client_key.is_some() {
        let key = if tls.client_cert.is_some() {
            "database.sslkey"
        } else {
            "database.sslcert"
        };
        return Err(l.invalid(key, "sslcert and sslkey go together: set both or neither"));
    }
    Ok(tls)
}

/// The queue's Redis: `key` (`redis.url`), else one built from `redis.*`, with the
/// certificate files.
pub(super) fn redis(l: &Layers, key: &'static str) -> Result<RedisConfig, ConfigError> {
    let url = if l.is_set(key) {
        given_redis_url(l, key)?
    } else {
        let port: u16 = l.parse("redis.port", "must be a port number (1-65535)")?;
        let scheme = match l.str("redis.scheme").to_ascii_lowercase().as_str() {
            "tcp" | "redis" | "" => "redis",
            "tls" | "rediss" => "rediss",
            _ => return Err(l.invalid("redis.scheme", "must be tcp or tls")),
        };
        let mut url = base(scheme, l, "redis.host", port)?;
        set_credentials(&mut url, "", &l.str("redis.password"));
        Secret::new(url.to_string())
    };
    redis_files(l, url)
}

/// The broadcast Redis at `key`: with the same certificate files as the queue's.
pub(super) fn redis_at(l: &Layers, key: &'static str) -> Result<RedisConfig, ConfigError> {
    let url = given_redis_url(l, key)?;
    redis_files(l, url)
}

/// A Redis URL given whole, checked as the client will read it.
fn given_redis_url(l: &Layers, key: &'static str) -> Result<Secret, ConfigError> {
    let url = l.str(key);
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://"))
    {
        return Err(l.invalid(key, "must be a redis:// or rediss:// URL"));
    }
    // Only the error kind is shown: the message could echo the URL and its password.
    redis::Client::open(url.as_str())
        .map_err(|e| l.invalid(key, format!("not a valid Redis URL ({:?})", e.kind())))?;
    Ok(Secret::new(url))
}

fn redis_files(l: &Layers, url: Secret) -> Result<RedisConfig, ConfigError> {
    let file = |key: &'static str, check: fn(&std::path::Path) -> Result<(), String>| {
        if !l.is_set(key) {
            return Ok(None);
        }
        let path = PathBuf::from(l.str(key));
        check(&path).map_err(|e| l.invalid(key, e))?;
        Ok::<_, ConfigError>(Some(path))
    };
    let config = RedisConfig {
        url,
        ca_cert: file("redis.ca_cert", check_certs)?,
        client_cert: file("redis.client_cert", check_certs)?,
        client_key: file("redis.client_key", check_key)?,
    };
    if config.client_cert.is_some() != config.client_key.is_some() {
        let key = if config.client_cert.is_some() {
            "redis.client_key"
        } else {
            "redis.client_cert"
        };
        return Err(l.invalid(
            key,
            "REDIS_CLIENT_CERT and REDIS_CLIENT_KEY go together: set both or neither",
        ));
    }
    Ok(config)
}

/// True when the certificate files are set for a Redis whose URL is not `rediss://` (where
/// they would be ignored): the caller decides whether that is an error.
pub(super) fn tls_files_unused(l: &Layers, servers: &[&RedisConfig]) -> Option<&'static str> {
    let key = ["redis.ca_cert", "redis.client_cert"]
        .into_iter()
        .find(|k| l.is_set(k))?;
    (!servers.iter().any(|r| r.is_tls())).then_some(key)
}

fn check_certs(path: &std::path::Path) -> Result<(), String> {
    crate::tls::certs(path).map(drop)
}

fn check_key(path: &std::path::Path) -> Result<(), String> {
    crate::tls::key(path).map(drop)
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

/// Sets the user and password, percent-encoded here (the `url` crate leaves a `%` as it is,
/// and both clients would decode `%41` to `A`); both clients decode them again, so any
/// character survives.
fn set_credentials(url: &mut Url, user: &str, password: &str) {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    const UNRESERVED: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let encode = |text: &str| utf8_percent_encode(text, UNRESERVED).to_string();
    // Fails only for URLs without a host, and `base` made sure there is one.
    let _ = url.set_username(&encode(user));
    if !password.is_empty() {
        let _ = url.set_password(Some(&encode(password)));
    }
}
