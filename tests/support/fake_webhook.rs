//! A Slack-like incoming webhook on 127.0.0.1: accepts `{"text": …}` POSTed to its secret
//! path with 200 `ok`, after working through a script of failures (statuses or hangs).

use super::DEADLINE;
use super::http::{Reply, Server};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

/// The secret part of the URL, as Slack's `/services/T…/B…/token`.
pub const PATH: &str = "/services/T0TEST/B0TEST/webhook-s3cret-token";

/// What the webhook does with one request.
#[derive(Debug, Clone, Copy)]
pub enum Step {
    /// Answer with this status.
    Status(u16),
    /// Never answer.
    Hang,
}

#[derive(Default)]
struct State {
    script: VecDeque<Step>,
    attempts: usize,
    delivered: Vec<serde_json::Value>,
}

pub struct FakeWebhook {
    server: Server,
    shared: Arc<(Mutex<State>, Condvar)>,
}

impl FakeWebhook {
    /// A webhook that first plays `script`, then accepts everything.
    pub fn start(script: &[Step]) -> FakeWebhook {
        let shared = Arc::new((
            Mutex::new(State {
                script: script.iter().copied().collect(),
                ..Default::default()
            }),
            Condvar::new(),
        ));
        let s = Arc::clone(&shared);
        let server = Server::start(move |req| {
            let (lock, changed) = &*s;
            let mut state = lock.lock().unwrap();
            state.attempts += 1;
            changed.notify_all();
            if req.method != "POST" || req.path != PATH {
                return Reply::Status(404, "no_service".into());
            }
            match state.script.pop_front() {
                Some(Step::Status(code)) => return Reply::Status(code, "forced".into()),
                Some(Step::Hang) => return Reply::Hang,
                None => {}
            }
            let body: Option<serde_json::Value> = serde_json::from_slice(&req.body).ok();
            match body {
                Some(v) if v["text"].is_string() => {
                    state.delivered.push(v);
                    changed.notify_all();
                    Reply::Status(200, "ok".into())
                }
                _ => Reply::Status(400, "invalid_payload".into()),
            }
        });
        FakeWebhook { server, shared }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}{PATH}", self.server.port)
    }

    pub fn attempts(&self) -> usize {
        self.shared.0.lock().unwrap().attempts
    }

    /// The `text` of every accepted message.
    pub fn delivered(&self) -> Vec<String> {
        let state = self.shared.0.lock().unwrap();
        state
            .delivered
            .iter()
            .map(|v| v["text"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Waits until at least `n` messages were accepted; panics at the deadline.
    pub fn wait_delivered(&self, n: usize) -> Vec<String> {
        let end = Instant::now() + DEADLINE;
        let (lock, changed) = &*self.shared;
        let mut state = lock.lock().unwrap();
        while state.delivered.len() < n {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "fake webhook: {} of {n} messages after {} requests",
                state.delivered.len(),
                state.attempts
            );
            state = changed.wait_timeout(state, left).unwrap().0;
        }
        drop(state);
        self.delivered()
    }
}
