//! The daemons' small blocking HTTP server (no async runtime): `GET /metrics` (OpenMetrics
//! text), `GET /healthz` (200 while the process loop goes round) and `GET /readyz` (200 when
//! the servers answer a probe made now, 503 with the reason otherwise). It is read-only and
//! shows no secret, so binding a non-loopback address is allowed.

use super::Metrics;
use log::{debug, warn};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// A request's whole exchange must fit in this: a stuck client cannot hold the server long.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest request head read.
const MAX_REQUEST: usize = 8 * 1024;

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
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let head = read_head(&mut stream)?;
        let mut words = head.split_whitespace();
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        let (status, kind, body) = match (method, path) {
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
        let reason = match status {
            200 => "OK",
            404 => "Not Found",
            405 => "Method Not Allowed",
            _ => "Service Unavailable",
        };
        let mut out = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        );
        if method != "HEAD" {
            out.push_str(&body);
        }
        stream.write_all(out.as_bytes())
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

/// The request line and headers, up to the blank line (bounded).
fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
