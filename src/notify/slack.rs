//! Slack: one POST of `{"text": …}` to an incoming webhook.

use super::{Message, NoticeKind, Notifier};
use crate::delivery::DeliveryError;
use crate::http::Client;
use crate::secret::{Secret, redact_url_path};
use crate::severity::Severity;
use std::time::Duration;

/// Slack: an incoming webhook.
#[derive(Debug, Clone)]
pub struct SlackConfig {
    /// The webhook URL (its path is the credential).
    pub webhook_url: Secret,
    /// Lowest severity that is sent.
    pub min_severity: Severity,
}

/// Checks a webhook URL: an absolute http(s) URL with a host.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
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

/// Posts messages to a Slack incoming webhook.
pub struct SlackNotifier {
    url: Secret,
    /// How errors name the webhook: scheme and host only, the path is its credential.
    target: String,
    client: Client,
}

impl SlackNotifier {
    /// A notifier for the configured webhook.
    pub fn new(config: &SlackConfig) -> SlackNotifier {
        SlackNotifier {
            target: format!(
                "Slack webhook at {}",
                redact_url_path(config.webhook_url.expose())
            ),
            url: config.webhook_url.clone(),
            client: Client::new(),
        }
    }

    /// The webhook payload: an emoji and the subject in bold, then the lines (Slack mrkdwn).
    pub fn payload(message: &Message) -> String {
        let icon = match (message.kind, message.severity) {
            (NoticeKind::Resolved, _) => ":white_check_mark:",
            (_, Severity::Critical) => ":rotating_light:",
            _ => ":warning:",
        };
        let text = format!(
            "{icon} *{}*\n{}",
            escape(&message.subject),
            escape(&message.lines.join("\n"))
        );
        serde_json::json!({ "text": text }).to_string()
    }
}

/// Slack's mrkdwn gives `&`, `<` and `>` meaning; these three must be escaped in text.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Notifier for SlackNotifier {
    fn send(&mut self, message: &Message, timeout: Duration) -> Result<(), DeliveryError> {
        let body = Self::payload(message);
        self.client.post(
            self.url.expose(),
            &self.target,
            "application/json",
            body.as_bytes(),
            timeout,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_mrkdwn_with_escaping() {
        let m = Message {
            subject: "CRITICAL: 31 items".into(),
            lines: vec!["Host: <web&1>".into()],
            severity: Severity::Critical,
            kind: NoticeKind::Raised,
        };
        let v: serde_json::Value = serde_json::from_str(&SlackNotifier::payload(&m)).unwrap();
        assert_eq!(
            v["text"],
            ":rotating_light: *CRITICAL: 31 items*\nHost: &lt;web&amp;1&gt;"
        );
    }
}
