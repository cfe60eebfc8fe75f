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
    } else if l.str("database.host").contains(',') {
        let port: u16 = l.parse("database.port", "must be a port number (1-65535)")?;
        multi_host_url(l, port)?
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
/// certificate files, the deployment (one server, a cluster, Sentinel) and what a write
/// must reach.
pub(super) fn redis(l: &Layers, key: &'static str) -> Result<RedisConfig, ConfigError> {
    let laravel_seeds = super::topology::laravel_cluster_hosts(l)?;
    let url = if l.is_set(key) {
        given_redis_url(l, key)?
    } else if let Some(first) = laravel_seeds.as_ref().and_then(|h| h.first()) {
        // REDIS_HOST is a seed list; the first lends the template its host.
        let port: u16 = l.parse("redis.port", "must be a port number (1-65535)")?;
        let scheme = redis_scheme(l)?;
        let host = first.rsplit_once(':').map_or(first.as_str(), |(h, _)| h);
        let mut url = Url::parse(&format!("{scheme}://{host}:{port}"))
            .map_err(|e| l.invalid("redis.host", format!("not a host list ({e})")))?;
        set_credentials(&mut url, "", &l.str("redis.password"));
        Secret::new(url.to_string())
    } else {
        let port: u16 = l.parse("redis.port", "must be a port number (1-65535)")?;
        let mut url = base(redis_scheme(l)?, l, "redis.host", port)?;
        set_credentials(&mut url, "", &l.str("redis.password"));
        Secret::new(url.to_string())
    };
    let mut config = redis_files(l, url)?;
    config.topology = super::topology::topology(l, &config.url, laravel_seeds)?;
    config.durability = super::topology::durability(l)?;
    Ok(config)
}

/// `redis` or `rediss`, from Laravel's `REDIS_SCHEME` (`tcp` or `tls`).
fn redis_scheme(l: &Layers) -> Result<&'static str, ConfigError> {
    match l.str("redis.scheme").to_ascii_lowercase().as_str() {
        "tcp" | "redis" | "" => Ok("redis"),
        "tls" | "rediss" => Ok("rediss"),
        _ => Err(l.invalid("redis.scheme", "must be tcp or tls")),
    }
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
        ca_cert: file("redis.ca_cert", check_certs)?,
        client_cert: file("redis.client_cert", check_certs)?,
        client_key: file("redis.client_key", check_key)?,
        ..RedisConfig::url(url.expose())
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
    host_url(scheme, &l.str(host_key), port).map_err(|e| l.invalid(host_key, e))
}

/// `scheme://host:port` for one host (a name, an IPv4 or IPv6 address, without a port).
fn host_url(scheme: &str, host: &str, port: u16) -> Result<Url, String> {
    let bracketed = if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let url = Url::parse(&format!("{scheme}://{bracketed}:{port}"))
        .map_err(|e| format!("must be a host name or IP address ({e})"))?;
    if url.host_str().is_none_or(str::is_empty) || url.port() != Some(port) {
        return Err("must be a host name or IP address, without a port".into());
    }
    Ok(url)
}

/// The URL for a list of hosts, as libpq takes it (`DB_HOST=h1,h2`):
/// `postgres://user:password@h1:port,h2:port/database`. Each host may carry its own port
/// (`h1:5432,h2:5433`, `[::1]:5433`; a bare IPv6 address has none), else `DB_PORT`. The `url`
/// crate cannot hold several hosts, so each is checked alone and the URL is written here,
/// every part percent-encoded as [`set_credentials`] does. No `target_session_attrs` is
/// added: the connection asks for the primary of any multi-host URL that does not say.
fn multi_host_url(l: &Layers, default_port: u16) -> Result<String, ConfigError> {
    let key = "database.host";
    let mut hosts = Vec::new();
    for entry in l.str(key).split(',').map(str::trim) {
        let bad = |why: String| l.invalid(key, format!("host {entry:?} of the list {why}"));
        let (host, port) = split_host_port(entry).map_err(&bad)?;
        let url = host_url("postgres", host, port.unwrap_or(default_port)).map_err(&bad)?;
        let host = url.host_str().unwrap_or_default();
        hosts.push(format!("{host}:{}", port.unwrap_or(default_port)));
    }
    let user = encode(&l.str("database.username"));
    let password = encode(&l.str("database.password"));
    let login = match (user.is_empty(), password.is_empty()) {
        (true, true) => String::new(),
        (_, true) => format!("{user}@"),
        _ => format!("{user}:{password}@"),
    };
    let database = encode(&l.str("database.database"));
    Ok(format!("postgres://{login}{}/{database}", hosts.join(",")))
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` or a bare IPv6 address: the host and its port.
fn split_host_port(entry: &str) -> Result<(&str, Option<u16>), String> {
    let port = |text: &str| {
        text.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("has a bad port {text:?} (1-65535)"))
    };
    if entry.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((entry, None));
    }
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "has no closing ]".to_string())?;
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(port(p)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err("must be [address] or [address]:port".into()),
        };
    }
    match entry.rsplit_once(':') {
        Some((host, p)) => Ok((host, Some(port(p)?))),
        None => Ok((entry, None)),
    }
}

/// Sets the user and password, percent-encoded here (the `url` crate leaves a `%` as it is,
/// and both clients would decode `%41` to `A`); both clients decode them again, so any
/// character survives.
pub(super) fn set_credentials(url: &mut Url, user: &str, password: &str) {
    // Fails only for URLs without a host, and `base` made sure there is one.
    let _ = url.set_username(&encode(user));
    if !password.is_empty() {
        let _ = url.set_password(Some(&encode(password)));
    }
}

/// `text` with everything but letters, digits and `-._~` percent-encoded: what both clients
/// decode back to the same characters in a URL's user, password or path.
fn encode(text: &str) -> String {
    use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
    const UNRESERVED: &percent_encoding::AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    utf8_percent_encode(text, UNRESERVED).to_string()
}
