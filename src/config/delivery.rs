//! The delivery settings: Pusher, Slack, email and the alert policy for people, with the
//! secrets they hold.

use super::*;

/// A secret value (password, API secret, webhook URL): its `Debug` never shows it, so a
/// logged or printed config cannot leak it. Read it with [`Secret::expose`] where it is used.
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

    /// True when no secret was given.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "***" })
    }
}

/// Where the pusher driver sends events: Pusher itself (by cluster) or a compatible server
/// (Soketi, Laravel Reverb) by host, port and scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherConfig {
    /// `PUSHER_APP_ID`.
    pub app_id: String,
    /// `PUSHER_APP_KEY`, sent as `auth_key`.
    pub key: String,
    /// `PUSHER_APP_SECRET`, the HMAC key; never sent.
    pub secret: Secret,
    /// `scheme://host:port`, without a trailing slash.
    pub base_url: String,
}

/// How the SMTP connection is secured (`MAIL_ENCRYPTION`, as Laravel names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    /// `tls`: plain connection upgraded with STARTTLS, which is required (port 587).
    StartTls,
    /// `ssl`: TLS from the first byte (port 465).
    Tls,
    /// `null`: no encryption (a relay on localhost, a test server) (port 25).
    None,
}

impl Encryption {
    /// The usual port for this mode.
    pub fn default_port(self) -> u16 {
        match self {
            Encryption::StartTls => 587,
            Encryption::Tls => 465,
            Encryption::None => 25,
        }
    }
}

/// Slack: an incoming webhook.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// The webhook URL (its path is the credential).
    pub webhook_url: Secret,
    /// Lowest severity that is sent.
    pub min_severity: Severity,
}

/// Email over SMTP.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// SMTP server host name.
    pub host: String,
    /// SMTP port.
    pub port: u16,
    /// Connection security.
    pub encryption: Encryption,
    /// Login user; no login when empty.
    pub username: String,
    /// Login password.
    pub password: Secret,
    /// Sender address.
    pub from_address: String,
    /// Sender display name.
    pub from_name: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Lowest severity that is sent.
    pub min_severity: Severity,
}

/// Where a count falls back to "resolved" after an alert (hysteresis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveBelow {
    /// A percentage of the threshold, e.g. 95.
    Percent(u64),
    /// An absolute item count.
    Count(u64),
}

impl ResolveBelow {
    /// The count under which an alert is resolved: `count < limit`. A percentage rounds up, so
    /// 95 % of 20 gives 19 (and 19 itself is not below it).
    pub fn limit(self, threshold: u64) -> u64 {
        match self {
            ResolveBelow::Count(n) => n,
            ResolveBelow::Percent(p) => {
                let scaled = u128::from(threshold) * u128::from(p);
                u64::try_from(scaled.div_ceil(100)).unwrap_or(u64::MAX)
            }
        }
    }
}

/// Notifications for people (Slack, email) and the policy that keeps them quiet.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Slack, when `INVENTORY_SLACK_NOTIFICATIONS` is true.
    pub slack: Option<SlackConfig>,
    /// Email, when `INVENTORY_EMAIL_NOTIFICATIONS` is true.
    pub mail: Option<MailConfig>,
    /// An unchanged severity is sent again only after this long.
    pub repeat_interval: std::time::Duration,
    /// After an alert, "resolved" is sent once the count falls below this.
    pub resolve_below: ResolveBelow,
}

/// The pusher driver's settings; `None` when it is not selected and not configured.
pub(super) fn pusher_config(
    l: &Layers,
    selected: bool,
) -> Result<Option<PusherConfig>, ConfigError> {
    let by = "the pusher driver is selected (BROADCAST_DRIVER)";
    let scheme = l.str("pusher.scheme").to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err(l.invalid("pusher.scheme", "must be https or http"));
    }
    let port = l.port("pusher.port")?;
    let cluster = l.str("pusher.cluster");
    if !cluster
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(l.invalid("pusher.cluster", "must be a cluster name such as mt1 or eu"));
    }
    let host = if l.is_set("pusher.host") {
        let host = l.str("pusher.host");
        if host.contains("://") || host.contains('/') || host.contains('@') {
            return Err(l.invalid(
                "pusher.host",
                "must be a bare host name such as soketi or 127.0.0.1; set the scheme with \
                 PUSHER_SCHEME and the port with PUSHER_PORT",
            ));
        }
        host
    } else if cluster.is_empty() {
        return Err(l.invalid(
            "pusher.cluster",
            "must be set unless PUSHER_HOST is (the host is api-{cluster}.pusher.com)",
        ));
    } else {
        format!("api-{cluster}.pusher.com")
    };
    for key in ["pusher.app_id", "pusher.key"] {
        // Both travel in the URL and in the signed string, so they must need no escaping.
        let value = l.str(key);
        if !value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c))
        {
            return Err(l.invalid(key, "may hold only letters, digits and - _ . ~"));
        }
    }
    let (app_id, key, secret) = (
        l.str("pusher.app_id"),
        l.str("pusher.key"),
        l.str("pusher.secret"),
    );
    if !selected && (app_id.is_empty() || key.is_empty() || secret.is_empty()) {
        return Ok(None);
    }
    for (name, value) in [
        ("pusher.app_id", &app_id),
        ("pusher.key", &key),
        ("pusher.secret", &secret),
    ] {
        if value.is_empty() {
            return Err(l.required(name, by));
        }
    }
    if selected {
        let channel = l.str("broadcast.channel");
        crate::broadcast::pusher::check_channel(&channel)
            .map_err(|e| l.invalid("broadcast.channel", format!("{e} (pusher driver)")))?;
        crate::broadcast::pusher::check_event_name(&l.str("broadcast.event"))
            .map_err(|e| l.invalid("broadcast.event", format!("{e} (pusher driver)")))?;
    }
    let default_port = if scheme == "https" { 443 } else { 80 };
    let host = if host.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{host}]")
    } else if host.contains(':') {
        return Err(l.invalid(
            "pusher.host",
            "must be a host name without a port; set the port with PUSHER_PORT",
        ));
    } else {
        host
    };
    Ok(Some(PusherConfig {
        app_id,
        key,
        secret: Secret::new(secret),
        base_url: format!("{scheme}://{host}:{}", port.unwrap_or(default_port)),
    }))
}

/// Parses a duration: whole seconds, or a number with `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| "must be a duration such as 3600, 90s, 30m or 1h".to_string())?;
    let scale = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err("must be a duration such as 3600, 90s, 30m or 1h".into()),
    };
    n.checked_mul(scale)
        .map(std::time::Duration::from_secs)
        .ok_or_else(|| "is too long".to_string())
}

/// A people channel's minimum severity: `info` would page someone for a count under the
/// threshold, and "resolved" would follow at once, so it starts at `warning`.
fn people_severity(l: &Layers, key: &'static str) -> Result<Severity, ConfigError> {
    let severity: Severity = l.str(key).parse().map_err(|e: String| l.invalid(key, e))?;
    if severity == Severity::Info {
        return Err(l.invalid(key, "must be warning, high or critical"));
    }
    Ok(severity)
}

fn email_address(l: &Layers, key: &'static str, value: &str) -> Result<String, ConfigError> {
    value
        .parse::<lettre::Address>()
        .map(|a| a.to_string())
        .map_err(|e| l.invalid(key, format!("`{value}` is not an email address ({e})")))
}

pub(super) fn notify_config(l: &Layers, threshold: u64) -> Result<NotifyConfig, ConfigError> {
    let repeat_interval = parse_duration(&l.str("alerts.repeat_interval"))
        .map_err(|e| l.invalid("alerts.repeat_interval", e))?;
    if repeat_interval.is_zero() {
        return Err(l.invalid("alerts.repeat_interval", "must be longer than 0"));
    }
    let resolve_below = resolve_below(l, threshold)?;
    Ok(NotifyConfig {
        slack: slack_config(l)?,
        mail: mail_config(l)?,
        repeat_interval,
        resolve_below,
    })
}

fn resolve_below(l: &Layers, threshold: u64) -> Result<ResolveBelow, ConfigError> {
    let key = "alerts.resolve_below";
    let text = l.str(key);
    let value = match text.strip_suffix('%') {
        Some(p) => {
            let p: u64 = p
                .trim()
                .parse()
                .map_err(|_| l.invalid(key, "must be a count or a percentage such as 95%"))?;
            if !(1..=100).contains(&p) {
                return Err(l.invalid(key, "must be a percentage from 1% to 100% of the threshold"));
            }
            ResolveBelow::Percent(p)
        }
        None => {
            let n: u64 = l.parse(key, "must be a count or a percentage such as 95%")?;
            if n == 0 || n > threshold {
                return Err(l.invalid(
                    key,
                    format!("must be a count from 1 to the threshold ({threshold})"),
                ));
            }
            ResolveBelow::Count(n)
        }
    };
    Ok(value)
}

fn slack_config(l: &Layers) -> Result<Option<SlackConfig>, ConfigError> {
    let key = "slack.webhook_url";
    let enabled = l.bool("slack.enabled")?;
    let min_severity = people_severity(l, "slack.min_severity")?;
    let url = l.str(key);
    if !url.is_empty() {
        check_http_url(&url).map_err(|e| l.invalid(key, e))?;
    }
    if !enabled {
        return Ok(None);
    }
    if url.is_empty() {
        return Err(l.required(
            key,
            "Slack notifications are on (INVENTORY_SLACK_NOTIFICATIONS)",
        ));
    }
    Ok(Some(SlackConfig {
        webhook_url: Secret::new(url),
        min_severity,
    }))
}

/// An absolute http(s) URL with a host.
fn check_http_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|_| "must be an https:// URL".to_string())?;
    if !matches!(uri.scheme_str(), Some("https" | "http")) {
        return Err("must be an https:// URL".into());
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("must be an https:// URL with a host".into());
    }
    Ok(())
}

fn mail_config(l: &Layers) -> Result<Option<MailConfig>, ConfigError> {
    let by = "email notifications are on (INVENTORY_EMAIL_NOTIFICATIONS)";
    let enabled = l.bool("mail.enabled")?;
    let min_severity = people_severity(l, "mail.min_severity")?;
    let encryption = match l.str("mail.encryption").to_ascii_lowercase().as_str() {
        "tls" => Encryption::StartTls,
        "ssl" => Encryption::Tls,
        "null" => Encryption::None,
        _ => {
            return Err(l.invalid(
                "mail.encryption",
                "must be tls (STARTTLS), ssl (TLS from the start) or null (none)",
            ));
        }
    };
    let port = l.port("mail.port")?;
    let from_address = l.str("mail.from_address");
    let from_address = if from_address.is_empty() {
        from_address
    } else {
        email_address(l, "mail.from_address", &from_address)?
    };
    let to = l
        .list("mail.to")
        .iter()
        .map(|a| email_address(l, "mail.to", a))
        .collect::<Result<Vec<_>, _>>()?;
    let host = l.str("mail.host");
    if !enabled {
        return Ok(None);
    }
    if host.is_empty() {
        return Err(l.required("mail.host", by));
    }
    if from_address.is_empty() {
        return Err(l.required("mail.from_address", by));
    }
    if to.is_empty() {
        return Err(l.required("mail.to", by));
    }
    Ok(Some(MailConfig {
        host,
        port: port.unwrap_or(encryption.default_port()),
        encryption,
        username: l.str("mail.username"),
        password: Secret::new(l.str("mail.password")),
        from_address,
        from_name: l.str("mail.from_name"),
        to,
        min_severity,
    }))
}

/// The secret keys `file` sets, when others than its owner may read it.
#[cfg(unix)]
pub(super) fn exposed_secrets(
    path: &Path,
    keys: &[&'static str],
) -> Option<(u32, Vec<&'static str>)> {
    use std::os::unix::fs::PermissionsExt;
    if keys.is_empty() {
        return None;
    }
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then(|| (mode, keys.to_vec()))
}

#[cfg(not(unix))]
pub(super) fn exposed_secrets(
    _path: &Path,
    _keys: &[&'static str],
) -> Option<(u32, Vec<&'static str>)> {
    None
}

/// Warns once per file that holds a secret and that group or others can read. A warning, not
/// an error: the file may be shared on purpose (a container secret mount), but usually it is
/// an accident worth a `chmod 600`.
pub(super) fn warn_about_readable_secrets(sources: &Sources) {
    let is_secret = |spec: &&KeySpec| spec.secret;
    if let Some((path, text)) = &sources.file {
        let keys: Vec<&'static str> = parse_toml(path, text)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .filter_map(|(name, _)| spec(&name).filter(is_secret).map(|s| s.key))
            .collect();
        warn_exposed(path, &keys);
    }
    if let Some((path, vars)) = &sources.dotenv {
        let keys: Vec<&'static str> = vars
            .iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .filter_map(|(var, _)| {
                KEYS.iter()
                    .find(|k| k.secret && !k.env.is_empty() && k.env == var)
                    .map(|k| k.env)
            })
            .collect();
        warn_exposed(path, &keys);
    }
}

fn warn_exposed(path: &Path, keys: &[&'static str]) {
    if let Some((mode, keys)) = exposed_secrets(path, keys) {
        log::warn!(
            "{} holds secrets ({}) and is readable by group or others (mode {mode:03o}); \
             run `chmod 600 {}` or move them to environment variables",
            path.display(),
            keys.join(", "),
            path.display()
        );
    }
}
