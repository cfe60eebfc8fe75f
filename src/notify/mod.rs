//! Notifications for people: Slack and email, beside the live broadcast.
//!
//! A [`Notifier`] is deliberately not a [`crate::broadcast::Broadcaster`]: a broadcaster sends
//! every change of the count as a machine-readable event, while a notifier sends the few
//! messages the alert [`policy`] lets through, written for a person, and such a message
//! carries the policy's verdict (new alert, reminder, resolved) that an event does not have.
//! Both return [`DeliveryError`], because "retry later" or "give up" means the same to the
//! worker for either. Each channel owns its settings ([`SlackConfig`], [`MailConfig`]).

pub mod mail;
pub mod policy;
pub mod slack;

pub use self::mail::{Encryption, MailConfig};
pub use self::policy::ResolveBelow;
pub use self::slack::SlackConfig;

use crate::delivery::DeliveryError;
use crate::event::Alert;
use crate::severity::Severity;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Notifications for people (Slack, email) and the policy that keeps them quiet.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Slack, when `INVENTORY_SLACK_NOTIFICATIONS` is true.
    pub slack: Option<SlackConfig>,
    /// Email, when `INVENTORY_EMAIL_NOTIFICATIONS` is true.
    pub mail: Option<MailConfig>,
    /// An unchanged severity is sent again only after this long.
    pub repeat_interval: Duration,
    /// After an alert, "resolved" is sent once the count falls below this.
    pub resolve_below: ResolveBelow,
}

/// A channel that reaches people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// A Slack incoming webhook.
    Slack,
    /// Email over SMTP.
    Mail,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 2] = [Channel::Slack, Channel::Mail];

    /// The name used in job kinds and Redis keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Slack => "slack",
            Channel::Mail => "mail",
        }
    }

    /// Parses a channel name.
    pub fn parse(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The channel's minimum severity, when it is switched on.
    pub fn min_severity(self, config: &NotifyConfig) -> Option<Severity> {
        match self {
            Channel::Slack => config.slack.as_ref().map(|s| s.min_severity),
            Channel::Mail => config.mail.as_ref().map(|m| m.min_severity),
        }
    }
}

/// Why people are told about an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeKind {
    /// A new alert, or a higher severity.
    Raised,
    /// A reminder: still alerting after the repeat interval.
    Repeated,
    /// The count fell back below the resolve mark.
    Resolved,
    /// Sent by hand with `notify --force`, outside the policy.
    Manual,
}

/// What a notification job carries beside its alert: the policy's verdict and context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    /// Why this message is sent.
    pub kind: NoticeKind,
    /// For a rise, the severity announced before; for "resolved", the one the alert reached.
    pub previous: Option<Severity>,
    /// The count under which an alert is resolved.
    pub resolve_below: u64,
    /// The machine that rated the count.
    pub host: String,
}

/// A message for people: a subject (first line on a phone's lock screen) and short lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// One line that says it all, e.g. `CRITICAL: 31 items (155% of threshold 20)`.
    pub subject: String,
    /// `Label: value` lines: count, threshold and percentage, severity, time, host.
    pub lines: Vec<String>,
    /// The severity shown (`info` for "resolved").
    pub severity: Severity,
    /// The verdict, for channel-specific decoration.
    pub kind: NoticeKind,
}

impl Message {
    /// The message for `alert` under `notice`.
    pub fn new(alert: &Alert, notice: &Notice) -> Message {
        let sev = alert.severity.as_str().to_uppercase();
        let (count, threshold, pct) = (alert.count, alert.threshold, alert.percentage);
        let figures = format!("{count} items ({pct}% of threshold {threshold})");
        let subject = match notice.kind {
            NoticeKind::Raised => format!("{sev}: {figures}"),
            NoticeKind::Repeated => format!("Still {sev}: {figures}"),
            NoticeKind::Resolved => format!(
                "RESOLVED: {count} items, back below {}",
                notice.resolve_below
            ),
            NoticeKind::Manual => format!("{sev} (sent by hand): {figures}"),
        };
        let severity = match (notice.kind, notice.previous) {
            (NoticeKind::Resolved, Some(was)) => format!("{} (alert was {was})", alert.severity),
            (NoticeKind::Raised, Some(was)) => format!("{} (up from {was})", alert.severity),
            _ => alert.severity.to_string(),
        };
        let mut lines = vec![
            format!("Item count: {count}"),
            format!("Threshold: {threshold} ({pct}% reached)"),
            format!("Severity: {severity}"),
            format!("Time: {}", readable_time(&alert.timestamp)),
            format!("Host: {}", notice.host),
        ];
        if notice.kind == NoticeKind::Repeated {
            lines.push("Reminder: the count is still above the threshold.".into());
        }
        Message {
            subject,
            lines,
            severity: alert.severity,
            kind: notice.kind,
        }
    }

    /// Subject, blank line, lines: the plain-text form (email body, logs).
    pub fn text(&self) -> String {
        format!("{}\n\n{}\n", self.subject, self.lines.join("\n"))
    }
}

/// `2026-11-26T23:05:54.123Z` → `2026-11-26 23:05:54 UTC` (anything else as it is).
fn readable_time(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..19)) {
        (Some(date), Some(time)) if rfc3339.ends_with('Z') => format!("{date} {time} UTC"),
        _ => rfc3339.to_string(),
    }
}

/// Sends messages to people.
pub trait Notifier: Send {
    /// Sends one message. Every network step must give up within `timeout` (the job's own
    /// deadline) with a retryable error.
    fn send(&mut self, message: &Message, timeout: Duration) -> Result<(), DeliveryError>;
}

/// A channel switched off in this process's configuration: its queued jobs fail at once
/// (retrying cannot switch it on) with a message that says which flag to set.
struct Off(Channel);

impl Notifier for Off {
    fn send(&mut self, _message: &Message, _timeout: Duration) -> Result<(), DeliveryError> {
        let flag = match self.0 {
            Channel::Slack => "INVENTORY_SLACK_NOTIFICATIONS",
            Channel::Mail => "INVENTORY_EMAIL_NOTIFICATIONS",
        };
        Err(DeliveryError::Permanent(format!(
            "{} notifications are off in this worker's configuration ({flag})",
            self.0.as_str()
        )))
    }
}

/// Builds the notifier for `channel`. Connections are opened when a message is sent.
pub fn build(channel: Channel, config: &NotifyConfig) -> Box<dyn Notifier> {
    match (channel, &config.slack, &config.mail) {
        (Channel::Slack, Some(slack), _) => Box::new(slack::SlackNotifier::new(slack)),
        (Channel::Mail, _, Some(mail)) => Box::new(mail::MailNotifier::new(mail)),
        _ => Box::new(Off(channel)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::severity::Boundaries;

    fn notice(kind: NoticeKind, previous: Option<Severity>) -> Notice {
        Notice {
            kind,
            previous,
            resolve_below: 19,
            host: "web-01".into(),
        }
    }

    #[test]
    fn a_raised_alert_reads_well_on_a_phone() {
        let mut alert = Alert::new(31, 20, &Boundaries::default(), "items-listen");
        alert.timestamp = "2026-11-26T23:05:54.123Z".into();
        let m = Message::new(&alert, &notice(NoticeKind::Raised, Some(Severity::High)));
        assert_eq!(m.subject, "CRITICAL: 31 items (155% of threshold 20)");
        assert_eq!(
            m.lines,
            [
                "Item count: 31",
                "Threshold: 20 (155% reached)",
                "Severity: critical (up from high)",
                "Time: 2026-11-26 23:05:54 UTC",
                "Host: web-01",
            ]
        );
        assert!(m.lines.iter().all(|l| l.len() <= 40), "{m:?}");
    }

    #[test]
    fn resolved_and_reminder() {
        let alert = Alert::new(18, 20, &Boundaries::default(), "items-listen");
        let m = Message::new(
            &alert,
            &notice(NoticeKind::Resolved, Some(Severity::Critical)),
        );
        assert_eq!(m.subject, "RESOLVED: 18 items, back below 19");
        assert!(m.text().contains("Severity: info (alert was critical)"));
        let alert = Alert::new(24, 20, &Boundaries::default(), "items-listen");
        let m = Message::new(&alert, &notice(NoticeKind::Repeated, None));
        assert!(
            m.subject.starts_with("Still HIGH: 24 items"),
            "{}",
            m.subject
        );
    }

    #[test]
    fn channels_and_kinds() {
        assert_eq!(Channel::parse("mail"), Some(Channel::Mail));
        assert_eq!(Channel::parse("fax"), None);
        let json = serde_json::to_string(&notice(NoticeKind::Resolved, None)).unwrap();
        assert!(json.contains("\"kind\":\"resolved\""), "{json}");
    }
}
