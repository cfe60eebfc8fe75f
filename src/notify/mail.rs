//! Email: one plain-text message over SMTP (lettre, TLS by rustls) to every recipient.

use super::{Message, Notifier};
use crate::delivery::DeliveryError;
use crate::secret::Secret;
use crate::severity::Severity;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{SmtpTransport, Transport};
use std::time::Duration;

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
    /// Parses Laravel's names: `tls`, `ssl`, `null` (any case).
    pub fn parse(name: &str) -> Option<Encryption> {
        match name.to_ascii_lowercase().as_str() {
            "tls" => Some(Encryption::StartTls),
            "ssl" => Some(Encryption::Tls),
            "null" => Some(Encryption::None),
            _ => None,
        }
    }

    /// The usual port for this mode.
    pub fn default_port(self) -> u16 {
        match self {
            Encryption::StartTls => 587,
            Encryption::Tls => 465,
            Encryption::None => 25,
        }
    }
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

/// An email address in its normal form, or why it is not one.
pub fn parse_address(text: &str) -> Result<String, String> {
    text.parse::<lettre::Address>()
        .map(|a| a.to_string())
        .map_err(|e| format!("`{text}` is not an email address ({e})"))
}

/// Sends messages by SMTP. Each message opens its own connection: alerts are rare, and a
/// fresh connection cannot have been dropped by the server while idle.
pub struct MailNotifier {
    config: MailConfig,
}

impl MailNotifier {
    /// A notifier for the configured server, sender and recipients.
    pub fn new(config: &MailConfig) -> MailNotifier {
        MailNotifier {
            config: config.clone(),
        }
    }

    fn target(&self) -> String {
        format!("SMTP server {}:{}", self.config.host, self.config.port)
    }

    /// The email: `From` with its display name, every recipient in `To`, plain UTF-8 text.
    pub fn email(&self, message: &Message) -> Result<lettre::Message, DeliveryError> {
        let c = &self.config;
        let bad_address = |e: lettre::address::AddressError| {
            DeliveryError::Permanent(format!("invalid email address: {e}"))
        };
        let from_name = (!c.from_name.is_empty()).then(|| c.from_name.clone());
        let mut builder = lettre::Message::builder()
            .from(Mailbox::new(
                from_name,
                c.from_address.parse().map_err(bad_address)?,
            ))
            .subject(format!("[inventory] {}", message.subject))
            .header(ContentType::TEXT_PLAIN);
        for to in &c.to {
            builder = builder.to(Mailbox::new(None, to.parse().map_err(bad_address)?));
        }
        builder
            .body(message.text())
            .map_err(|e| DeliveryError::Permanent(format!("cannot build the email: {e}")))
    }

    /// The transport for one message; `timeout` bounds each SMTP step (connect, each reply).
    fn transport(&self, timeout: Duration) -> Result<SmtpTransport, DeliveryError> {
        let c = &self.config;
        let tls_error = |e: lettre::transport::smtp::Error| {
            DeliveryError::Permanent(format!("{}: cannot set up TLS: {e}", self.target()))
        };
        let builder = match c.encryption {
            Encryption::StartTls => SmtpTransport::starttls_relay(&c.host).map_err(tls_error)?,
            Encryption::Tls => SmtpTransport::relay(&c.host).map_err(tls_error)?,
            Encryption::None => SmtpTransport::builder_dangerous(&c.host),
        };
        let mut builder = builder.port(c.port).timeout(Some(timeout));
        if !c.username.is_empty() {
            builder = builder.credentials(Credentials::new(
                c.username.clone(),
                c.password.expose().to_string(),
            ));
        }
        Ok(builder.build())
    }
}

impl Notifier for MailNotifier {
    fn send(&mut self, message: &Message, timeout: Duration) -> Result<(), DeliveryError> {
        let email = self.email(message)?;
        let transport = self.transport(timeout.max(Duration::from_millis(1)))?;
        transport.send(&email).map(drop).map_err(|e| {
            // A 5xx reply (bad login, refused recipient) will be the same next time; 4xx
            // replies, network trouble and timeouts may not. lettre's messages hold the
            // server's reply, never the password.
            let text = format!("{}: {e}", self.target());
            if e.is_permanent() {
                DeliveryError::Permanent(text)
            } else {
                DeliveryError::Retryable(text)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::NoticeKind;

    #[test]
    fn the_email_has_every_recipient_and_a_subject() {
        let n = MailNotifier::new(&MailConfig {
            host: "smtp.example.com".into(),
            port: 587,
            encryption: Encryption::StartTls,
            username: String::new(),
            password: Secret::default(),
            from_address: "alerts@example.com".into(),
            from_name: "Inventory".into(),
            to: vec!["a@example.com".into(), "b@example.com".into()],
            min_severity: Severity::Critical,
        });
        let m = Message {
            subject: "CRITICAL: 31 items".into(),
            lines: vec!["Item count: 31".into()],
            severity: Severity::Critical,
            kind: NoticeKind::Raised,
        };
        let raw = String::from_utf8(n.email(&m).unwrap().formatted()).unwrap();
        assert!(
            raw.contains("From: Inventory <alerts@example.com>"),
            "{raw}"
        );
        assert!(raw.contains("To: a@example.com, b@example.com"), "{raw}");
        assert!(
            raw.contains("Subject: [inventory] CRITICAL: 31 items"),
            "{raw}"
        );
        assert!(raw.contains("Item count: 31"), "{raw}");
    }
}
