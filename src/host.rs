//! This machine's name, for `status` and for the messages people get ("which host saw it?").

/// The host name, or `unknown host` when the system will not say.
pub fn name() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}
