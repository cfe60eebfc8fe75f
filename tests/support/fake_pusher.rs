//! A Pusher-compatible HTTP API on 127.0.0.1 that checks what Pusher checks: the app id, the
//! auth key, `auth_timestamp` within 600 s, `body_md5`, the HMAC-SHA256 signature (a wrong
//! secret gets 401), and the limits (data over 10 KB gets 413, more than 100 channels 400).

use super::DEADLINE;
use super::http::{Reply, Request, Server};
use hmac::{KeyInit, Mac};
use md5::Digest;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Pusher's window for `auth_timestamp`, in seconds.
const TIMESTAMP_WINDOW: i64 = 600;

/// An event the fake accepted.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub channels: Vec<String>,
    /// The `data` string as sent.
    pub raw_data: String,
    /// `data` parsed.
    pub data: serde_json::Value,
}

#[derive(Default)]
struct State {
    /// Statuses to answer with before checking anything (an outage), one per request.
    forced: VecDeque<u16>,
    max_data: usize,
    events: Vec<Event>,
    /// Every answer given, in order.
    answers: Vec<(u16, String)>,
}

struct Shared {
    app_id: String,
    key: String,
    secret: String,
    state: Mutex<State>,
    changed: Condvar,
}

pub struct FakePusher {
    server: Server,
    shared: Arc<Shared>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_hex(secret: &str, message: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    hex(&mac.finalize().into_bytes())
}

impl FakePusher {
    pub fn start(app_id: &str, key: &str, secret: &str) -> FakePusher {
        let shared = Arc::new(Shared {
            app_id: app_id.into(),
            key: key.into(),
            secret: secret.into(),
            state: Mutex::new(State {
                max_data: 10 * 1024,
                ..Default::default()
            }),
            changed: Condvar::new(),
        });
        let handler_shared = Arc::clone(&shared);
        let server = Server::start(move |req| {
            let (status, body) = handler_shared.handle(&req);
            let mut state = handler_shared.state.lock().unwrap();
            state.answers.push((status, body.clone()));
            handler_shared.changed.notify_all();
            Reply::Status(status, body)
        });
        FakePusher { server, shared }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// The environment that points the pusher driver here (as for Soketi).
    pub fn env(&self, secret: &str) -> Vec<(&'static str, String)> {
        vec![
            ("PUSHER_APP_ID", self.shared.app_id.clone()),
            ("PUSHER_APP_KEY", self.shared.key.clone()),
            ("PUSHER_APP_SECRET", secret.to_string()),
            ("PUSHER_HOST", "127.0.0.1".into()),
            ("PUSHER_PORT", self.port().to_string()),
            ("PUSHER_SCHEME", "http".into()),
        ]
    }

    /// Answers the next requests with these statuses, whatever they hold.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.shared
            .state
            .lock()
            .unwrap()
            .forced
            .extend(statuses.iter().copied());
    }

    /// Lowers the data limit (Pusher's is 10 KB), to provoke a 413 with a normal event.
    pub fn set_max_data(&self, bytes: usize) {
        self.shared.state.lock().unwrap().max_data = bytes;
    }

    pub fn events(&self) -> Vec<Event> {
        self.shared.state.lock().unwrap().events.clone()
    }

    pub fn answers(&self) -> Vec<(u16, String)> {
        self.shared.state.lock().unwrap().answers.clone()
    }

    /// Waits until at least `n` requests were answered; panics at the deadline.
    pub fn wait_answers(&self, n: usize) -> Vec<(u16, String)> {
        let end = Instant::now() + DEADLINE;
        let mut state = self.shared.state.lock().unwrap();
        while state.answers.len() < n {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "fake Pusher: {} of {n} requests",
                state.answers.len()
            );
            state = self.shared.changed.wait_timeout(state, left).unwrap().0;
        }
        state.answers.clone()
    }
}

impl Shared {
    fn handle(&self, req: &Request) -> (u16, String) {
        if let Some(status) = self.state.lock().unwrap().forced.pop_front() {
            return (status, format!("{{\"error\":\"forced {status}\"}}"));
        }
        let path = format!("/apps/{}/events", self.app_id);
        if req.method != "POST" || req.path != path {
            return (
                404,
                format!("Unknown app or path {} {}", req.method, req.path),
            );
        }
        let pairs = req.query_pairs();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        for required in [
            "auth_key",
            "auth_timestamp",
            "auth_version",
            "auth_signature",
            "body_md5",
        ] {
            if get(required).is_none() {
                return (401, format!("Missing parameter {required}"));
            }
        }
        if get("auth_key") != Some(self.key.as_str()) {
            return (401, "Unknown auth_key".into());
        }
        if get("auth_version") != Some("1.0") {
            return (401, "Unsupported auth_version".into());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let ts: i64 = get("auth_timestamp").unwrap().parse().unwrap_or(0);
        if (now - ts).abs() > TIMESTAMP_WINDOW {
            return (
                401,
                format!(
                    "Timestamp expired: Given timestamp ({ts}) not within {TIMESTAMP_WINDOW}s of \
                     server time ({now})"
                ),
            );
        }
        if get("body_md5") != Some(hex(&md5::Md5::digest(&req.body)).as_str()) {
            return (401, "Invalid body_md5".into());
        }
        let mut signed: Vec<&(String, String)> = pairs
            .iter()
            .filter(|(k, _)| k != "auth_signature")
            .collect();
        signed.sort();
        let query: Vec<String> = signed.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let to_sign = format!("POST\n{path}\n{}", query.join("&"));
        let expected = hmac_hex(&self.secret, &to_sign);
        if get("auth_signature") != Some(expected.as_str()) {
            return (
                401,
                format!(
                    "Invalid signature: Expected HMAC SHA256 hex digest of {to_sign:?}, but got {}",
                    get("auth_signature").unwrap()
                ),
            );
        }
        let Ok(body) = serde_json::from_slice::<serde_json::Value>(&req.body) else {
            return (400, "Body is not JSON".into());
        };
        let (Some(name), Some(data), Some(channels)) = (
            body["name"].as_str(),
            body["data"].as_str(),
            body["channels"].as_array(),
        ) else {
            return (400, "Expected name, data (a string) and channels".into());
        };
        let mut state = self.state.lock().unwrap();
        if data.len() > state.max_data {
            return (413, format!("Payload too large: {} bytes", data.len()));
        }
        if channels.is_empty() || channels.len() > 100 {
            return (400, "Between 1 and 100 channels".into());
        }
        let channels: Vec<String> = channels
            .iter()
            .map(|c| c.as_str().unwrap_or_default().to_string())
            .collect();
        state.events.push(Event {
            name: name.into(),
            channels,
            raw_data: data.into(),
            data: serde_json::from_str(data).unwrap_or(serde_json::Value::Null),
        });
        (200, "{}".into())
    }
}
