//! The daemons' small blocking HTTP server (no async runtime): `GET /metrics` (OpenMetrics
//! text), `GET /healthz` (200 while the process loop goes round) and `GET /readyz` (200 when
//! the servers answer a probe made now, 503 with the reason otherwise). It is read-only and
//! shows no secret, so binding a non-loopback address is allowed.

use super::Metrics;
use crate::web::{Request, Response};
use log::{debug, warn};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// What a daemon knows of its servers, asked at scrape and probe time.
pub trait Probe: Send {
    /// Brings the scrape-time figures (queue depths, failed jobs) up to date.
    fn refresh(&mut self, metrics: &Metrics);
    /// Probes the servers now: `Ok(state)` when ready, `Err(reason)` when not.
    fn ready(&mut self) -> Result<String, String>;
}

/// The address could not be served.
#[derive(Debug, thiserror::Error)]
#[error("cannot serve metrics at {addr}: {source}")]
pub struct ServeError {
    /// `--metrics-addr`.
    pub addr: SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

/// Binds `addr`, says where, and serves on a thread of its own until the process ends.
/// `stall_after` is how long the loop may go without a tick before `/healthz` says so.
pub fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    probe: Box<dyn Probe>,
    stall_after: Duration,
) -> Result<SocketAddr, ServeError> {
    let error = |source| ServeError { addr, source };
    let listener = TcpListener::bind(addr).map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    spawn(listener, metrics, probe, stall_after).map_err(error)?;
    log::info!("serving metrics at http://{bound}/metrics (and /healthz, /readyz)");
    Ok(bound)
}

fn spawn(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    mut probe: Box<dyn Probe>,
    stall_after: Duration,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => {
                        let page = Page {
                            metrics: &metrics,
                            probe: probe.as_mut(),
                            stall_after,
                        };
                        if let Err(e) = page.answer(stream) {
                            debug!("metrics: a request failed: {e}");
                        }
                    }
                    Err(e) => warn!("metrics: cannot accept a connection: {e}"),
                }
            }
        })?;
    Ok(())
}

struct Page<'a> {
    metrics: &'a Metrics,
    probe: &'a mut dyn Probe,
    stall_after: Duration,
}

impl Page<'_> {
    fn answer(self, mut stream: TcpStream) -> std::io::Result<()> {
        let request = Request::read(&mut stream, 0)?;
        let (status, kind, body) = match (request.method.as_str(), request.path.as_str()) {
            ("GET" | "HEAD", "/metrics") => {
                self.probe.refresh(self.metrics);
                let kind = "application/openmetrics-text; version=1.0.0; charset=utf-8";
                (200, kind, self.metrics.encode())
            }
            ("GET" | "HEAD", "/healthz") => self.health(),
            ("GET" | "HEAD", "/readyz") => match self.probe.ready() {
                Ok(state) => (200, "text/plain", format!("ready: {state}\n")),
                Err(reason) => (503, "text/plain", format!("not ready: {reason}\n")),
            },
            ("GET" | "HEAD", _) => (404, "text/plain", "not found\n".to_string()),
            _ => (405, "text/plain", "only GET\n".to_string()),
        };
        Response::new(status, kind, body).write(&mut stream, request.method == "HEAD")
    }

    fn health(&self) -> (u16, &'static str, String) {
        let idle = self.metrics.since_tick();
        if idle <= self.stall_after {
            (200, "text/plain", "ok\n".to_string())
        } else {
            let body = format!(
                "stalled: the loop last went round {} s ago\n",
                idle.as_secs()
            );
            (503, "text/plain", body)
        }
    }
}
