//! HTTP POST for the deliveries that speak HTTP (Pusher, Slack): one deadline for the whole
//! request, and every answer sorted into "done", "retry later" or "give up".

use crate::delivery::DeliveryError;
use std::io::Read;
use std::time::Duration;

/// At most this much of a response body is kept for an error (and so for `failed_jobs`):
/// enough for any API's error message, not enough to flood a log with an HTML error page.
pub const BODY_SHOWN: usize = 500;

/// Sent as `User-Agent`, so a server's logs show who called.
const USER_AGENT: &str = concat!("inventory-broadcast/", env!("CARGO_PKG_VERSION"));

/// A connection-pooling HTTP client whose requests each get their own deadline.
pub struct Client {
    agent: ureq::Agent,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    /// A client that returns 4xx and 5xx answers instead of failing on them (the caller decides
    /// what a status means) and follows no redirects (a POST must not turn into a GET).
    pub fn new() -> Client {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .user_agent(USER_AGENT)
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// POSTs `body` to `url`; all of it (resolve, connect, send, read) must end within
    /// `timeout`. `target` names the server in errors: it must hold no secret, since `url`
    /// may (a webhook's path is its credential), and `url` is never shown.
    pub fn post(
        &self,
        url: &str,
        target: &str,
        content_type: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        let timeout = timeout.max(Duration::from_millis(1));
        let response = self
            .agent
            .post(url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .content_type(content_type)
            .send(body);
        let mut response = response.map_err(|e| transport_error(target, &e, timeout))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(());
        }
        let mut text = Vec::new();
        // The body only explains the status: a failure to read it changes nothing.
        let _ = response
            .body_mut()
            .as_reader()
            .take(BODY_SHOWN as u64 + 1)
            .read_to_end(&mut text);
        Err(classify(target, status, &String::from_utf8_lossy(&text)))
    }
}

/// What an HTTP status means for a delivery that was not accepted.
///
/// 5xx: the server is in trouble, try again. 408 (request timeout) and 429 (rate limited) are
/// the two 4xx that say "later" by definition. Every other status, above all 401/403 (bad
/// credentials), 404 (no such app or hook) and 413 (too large), will be the same next time.
pub fn classify(target: &str, status: u16, body: &str) -> DeliveryError {
    let reason = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let body = shorten(body.trim());
    let message = if body.is_empty() {
        format!("{target} answered {status} {reason}")
    } else {
        format!("{target} answered {status} {reason}: {body}")
    };
    if status >= 500 || status == 408 || status == 429 {
        DeliveryError::Retryable(message)
    } else {
        DeliveryError::Permanent(message)
    }
}

/// The first [`BODY_SHOWN`] bytes (on a character boundary), on one line.
fn shorten(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if one_line.len() <= BODY_SHOWN {
        return one_line;
    }
    let mut end = BODY_SHOWN;
    while !one_line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (truncated)", &one_line[..end])
}

/// A request that got no HTTP answer. Everything network-shaped is worth a retry; only a URL
/// that cannot be built is not. The messages are written here, never taken from the client,
/// so no URL (and so no webhook token) can slip into them.
fn transport_error(target: &str, e: &ureq::Error, timeout: Duration) -> DeliveryError {
    use ureq::Error as E;
    match e {
        E::Timeout(_) => DeliveryError::Retryable(format!(
            "{target}: no answer within {:.1} s (the job timeout)",
            timeout.as_secs_f64()
        )),
        E::HostNotFound => DeliveryError::Retryable(format!("{target}: host not found (DNS)")),
        E::Io(io) => {
            let hint = if io.kind() == std::io::ErrorKind::ConnectionRefused {
                "; is the server running?"
            } else {
                ""
            };
            DeliveryError::Retryable(format!("{target}: {}{hint}", io_text(io)))
        }
        E::BadUri(_) | E::Http(_) | E::InvalidProxyUrl | E::RequireHttpsOnly(_) => {
            DeliveryError::Permanent(format!("{target}: the URL is not valid"))
        }
        E::Tls(_) | E::Rustls(_) | E::Pem(_) | E::TlsRequired => {
            DeliveryError::Retryable(format!("{target}: TLS failed ({})", tls_text(e)))
        }
        _ => DeliveryError::Retryable(format!("{target}: {}", other_text(e))),
    }
}

fn io_text(io: &std::io::Error) -> String {
    match io.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        std::io::ErrorKind::UnexpectedEof => "the server closed the connection".into(),
        std::io::ErrorKind::TimedOut => "timed out".into(),
        kind => format!("network error ({kind})"),
    }
}

fn tls_text(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Rustls(r) => r.to_string(),
        ureq::Error::Tls(t) => (*t).to_string(),
        _ => "handshake".into(),
    }
}

fn other_text(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Protocol(p) => format!("bad HTTP answer ({p})"),
        ureq::Error::TooManyRedirects | ureq::Error::RedirectFailed => "redirected".into(),
        ureq::Error::ConnectProxyFailed(_) => "cannot connect through the proxy".into(),
        _ => "connection failed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        for s in [500, 502, 503, 504, 408, 429] {
            assert!(classify("x", s, "").is_retryable(), "{s}");
        }
        for s in [400, 401, 403, 404, 410, 413, 422, 301, 302] {
            assert!(!classify("x", s, "").is_retryable(), "{s}");
        }
        let e = classify("Pusher at https://h:443", 401, "Invalid signature\n");
        assert_eq!(
            e.to_string(),
            "Pusher at https://h:443 answered 401 Unauthorized: Invalid signature"
        );
    }

    #[test]
    fn long_bodies_are_truncated() {
        let body = "é".repeat(2000);
        let msg = classify("x", 400, &body).to_string();
        assert!(msg.len() < BODY_SHOWN + 100, "{}", msg.len());
        assert!(msg.ends_with("(truncated)"));
    }

    #[test]
    fn refused_and_timeout_are_retryable_and_never_show_the_url() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let client = Client::new();
        let err = client
            .post(
                "http://127.0.0.1:1/services/T000/B000/s3cret-token",
                "Slack webhook at http://127.0.0.1:1",
                "application/json",
                b"{}",
                Duration::from_secs(5),
            )
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");

        // A server that takes the connection and never answers: the deadline ends the call.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let started = std::time::Instant::now();
        let err = client
            .post(
                &format!("http://127.0.0.1:{port}/services/T000/B000/s3cret-token"),
                &format!("Slack webhook at http://127.0.0.1:{port}"),
                "application/json",
                b"{}",
                Duration::from_millis(300),
            )
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("no answer within 0.3 s"), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        drop(silent);
    }
}
