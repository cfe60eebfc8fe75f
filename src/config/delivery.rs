//! Loading the delivery settings: the pusher driver, Slack, email and the alert policy for
//! people. The checks of what a value may be belong to each driver and channel; this only
//! reads the layers and names the key when a check fails.

use super::ConfigError;
use super::layers::Layers;
use crate::broadcast::pusher::{self, Endpoint, Field, PusherConfig};
use crate::notify::{Encryption, MailConfig, NotifyConfig, ResolveBelow, SlackConfig, mail, slack};
use crate::secret::Secret;
use crate::severity::Severity;

/// The pusher driver's settings; `None` when it is not selected and not configured.
pub(super) fn pusher_config(
    l: &Layers,
    selected: bool,
) -> Result<Option<PusherConfig>, ConfigError> {
    let port = l.port("pusher.port")?;
    let (scheme, host, cluster) = (
        l.str("pusher.scheme"),
        l.str("pusher.host"),
        l.str("pusher.cluster"),
    );
    let endpoint = Endpoint {
        scheme: &scheme,
        host: &host,
        port,
        cluster: &cluster,
    };
    let base_url = endpoint.base_url().map_err(|(field, reason)| {
        let key = match field {
            Field::Scheme => "pusher.scheme",
            Field::Host => "pusher.host",
            Field::Cluster => "pusher.cluster",
        };
        l.invalid(key, reason)
    })?;
    for key in ["pusher.app_id", "pusher.key"] {
        pusher::check_credential(&l.str(key)).map_err(|e| l.invalid(key, e))?;
    }
    let (app_id, key, secret) = (
        l.str("pusher.app_id"),
        l.str("pusher.key"),
        l.str("pusher.secret"),
    );
    if !selected && (app_id.is_empty() || key.is_empty() || secret.is_empty()) {
        return Ok(None);
    }
    let by = "the pusher driver is selected (BROADCAST_DRIVER)";
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
        pusher::check_channel(&l.str("broadcast.channel"))
            .map_err(|e| l.invalid("broadcast.channel", format!("{e} (pusher driver)")))?;
        pusher::check_event_name(&l.str("broadcast.event"))
            .map_err(|e| l.invalid("broadcast.event", format!("{e} (pusher driver)")))?;
    }
    Ok(Some(PusherConfig {
        app_id,
        key,
        secret: Secret::new(secret),
        base_url,
    }))
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
    mail::parse_address(value).map_err(|e| l.invalid(key, e))
}

pub(super) fn notify_config(l: &Layers, threshold: u64) -> Result<NotifyConfig, ConfigError> {
    let repeat_interval = l.duration("alerts.repeat_interval")?;
    if repeat_interval.is_zero() {
        return Err(l.invalid("alerts.repeat_interval", "must be longer than 0"));
    }
    let max = crate::bounds::MAX_INTERVAL_S;
    if repeat_interval.as_secs() > max {
        return Err(l.invalid(
            "alerts.repeat_interval",
            format!("must be at most {max} s (a year)"),
        ));
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
        slack::check_webhook_url(&url).map_err(|e| l.invalid(key, e))?;
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

fn mail_config(l: &Layers) -> Result<Option<MailConfig>, ConfigError> {
    let by = "email notifications are on (INVENTORY_EMAIL_NOTIFICATIONS)";
    let enabled = l.bool("mail.enabled")?;
    let min_severity = people_severity(l, "mail.min_severity")?;
    let encryption = Encryption::parse(&l.str("mail.encryption")).ok_or_else(|| {
        l.invalid(
            "mail.encryption",
            "must be tls (STARTTLS), ssl (TLS from the start) or null (none)",
        )
    })?;
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
    for (key, value) in [
        ("mail.host", host.is_empty()),
        ("mail.from_address", from_address.is_empty()),
        ("mail.to", to.is_empty()),
    ] {
        if value {
            return Err(l.required(key, by));
        }
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
