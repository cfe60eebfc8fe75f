//! Secrets (passwords, API secrets, webhook URLs, connection URLs that hold a password) and
//! how they may be shown: never, or as a URL with the secret part replaced by `***`.

use std::fmt;
use url::Url;

/// A secret value: its `Debug` never shows it, so a logged or printed config cannot leak it.
/// Read it with [`Secret::expose`] where it is used.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

/// What stands in for a hidden part.
const HIDDEN: &str = "***";

/// `scheme://user:password@host/...` with the password replaced by `***`. A Redis URL's lone
/// user part (`redis://secret@host`) is its password, so it is hidden too. Text that is not a
/// URL is hidden whole: it cannot be told which part of it is secret.
pub fn redact_url(text: &str) -> String {
    let Ok(mut url) = Url::parse(text.trim()) else {
        return HIDDEN.into();
    };
    let redis = url.scheme().starts_with("redis");
    // Setting credentials fails only for URLs that cannot have them (no host), which then
    // hold none to hide.
    if url.password().is_some() {
        let _ = url.set_password(Some(HIDDEN));
    } else if redis && !url.username().is_empty() {
        let _ = url.set_username(HIDDEN);
    }
    // libpq's URLs may carry the password as a parameter too, `?password=…` (found by
    // fuzzing).
    if url.query_pairs().any(|(key, _)| key == "password") {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(key, value)| {
                let value = if key == "password" {
                    HIDDEN.to_string()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// `https://hooks.slack.com/services/T/B/token` → `https://hooks.slack.com/***`: for URLs
/// whose path is the credential, only scheme, host and port are shown.
pub fn redact_url_path(text: &str) -> String {
    let Ok(url) = Url::parse(text.trim()) else {
        return HIDDEN.into();
    };
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}/{HIDDEN}", url.scheme()),
        None => format!("{}://{host}/{HIDDEN}", url.scheme()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_everything_but_the_secret() {
        assert_eq!(
            redact_url("postgres://me:p%40ss@db:5432/inv"),
            "postgres://me:***@db:5432/inv"
        );
        assert_eq!(redact_url("redis://:pw@r:6379/0"), "redis://:***@r:6379/0");
        assert_eq!(redact_url("redis://pw@r:6379"), "redis://***@r:6379");
        assert_eq!(redact_url("redis://r:6379"), "redis://r:6379");
        assert_eq!(redact_url("not a url with s3cret"), "***");
        assert_eq!(
            redact_url_path("https://hooks.slack.com/services/T/B/tok"),
            "https://hooks.slack.com/***"
        );
        assert_eq!(
            redact_url_path("http://u:pw@127.0.0.1:9/hook"),
            "http://127.0.0.1:9/***"
        );
        assert_eq!(redact_url_path("hooks.slack.com/services/x"), "***");
    }

    #[test]
    fn debug_never_shows_the_value() {
        assert_eq!(format!("{:?}", Secret::new("s3cret")), "***");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
    }
}
