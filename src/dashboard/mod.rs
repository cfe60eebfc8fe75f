//! `queue-work dashboard`: one page and a small JSON API behind it, served by the blocking
//! HTTP code the metrics endpoint uses ([`crate::web`]). Every asset is in the binary; the
//! page polls the API, so nothing is pushed and no connection stays open.
//!
//! Security ([`auth`]): loopback by default; any other address needs a token. Actions are
//! POSTs with the page's CSRF token; nothing changes on GET. Every response carries a strict
//! Content-Security-Policy, and the page writes all data as text.

mod api;
pub mod auth;

use crate::admin::{Admin, AdminError, RetryTarget};
use crate::config::{Config, ConfigError};
use crate::shutdown::Shutdown;
use crate::web::{Request, Response};
use auth::{Access, Auth};
use log::{debug, info, warn};
use serde_json::{Value, json};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

static INDEX: &str = include_str!("assets/index.html");
static LOGIN: &str = include_str!("assets/login.html");
static APP_JS: &str = include_str!("assets/app.js");
static APP_CSS: &str = include_str!("assets/app.css");
static FAVICON: &str = include_str!("assets/favicon.svg");

/// Connections answered at once; more wait in the kernel's queue or get 503.
const MAX_CONNECTIONS: usize = 16;
/// Largest request body (the login form, an empty JSON object).
const MAX_BODY: usize = 4 * 1024;
/// Pause after a wrong token at the login form: slows guessing.
const WRONG_TOKEN_PAUSE: Duration = Duration::from_millis(500);

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' \
                   data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
                   frame-ancestors 'none'";

/// Why the dashboard could not run.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A public address without a token (exit 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The address could not be bound.
    #[error("cannot serve the dashboard at {addr}: {source}")]
    Bind {
        /// `--listen`.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What every request handler shares.
struct App {
    auth: Auth,
    admin: Mutex<Admin>,
    queues: Vec<String>,
    threshold: u64,
    slot: String,
}

/// Serves the dashboard until `shutdown`. Refuses a non-loopback address without a token.
pub fn run(config: &Config, shutdown: &Shutdown) -> Result<(), DashboardError> {
    config.dashboard.check()?;
    let addr = config.dashboard.addr;
    let error = |source| DashboardError::Bind { addr, source };
    let listener = TcpListener::bind(addr).map_err(error)?;
    let bound = listener.local_addr().map_err(error)?;
    let app = Arc::new(App {
        auth: Auth::new(config.dashboard.token.clone()),
        admin: Mutex::new(Admin::new(config)),
        queues: config.queue.names.clone(),
        threshold: config.threshold,
        slot: config.slot.clone(),
    });
    let protection = if app.auth.has_token() {
        "a token is required"
    } else {
        "loopback only, no token"
    };
    info!("dashboard at http://{bound}/ ({protection})");
    std::thread::Builder::new()
        .name("dashboard".into())
        .spawn(move || accept(&listener, &app))
        .map_err(error)?;
    while !shutdown.sleep(Duration::from_secs(3600)) {}
    info!("dashboard stopped");
    Ok(())
}

/// Takes connections and answers each on a thread of its own, at most [`MAX_CONNECTIONS`]
/// at once.
fn accept(listener: &TcpListener, app: &Arc<App>) {
    let busy = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                warn!("dashboard: cannot accept a connection: {e}");
                continue;
            }
        };
        if busy.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            busy.fetch_sub(1, Ordering::SeqCst);
            let _ = Response::text(503, "busy\n").write(&mut stream, false);
            continue;
        }
        let (app, busy) = (Arc::clone(app), Arc::clone(&busy));
        let spawned = std::thread::Builder::new()
            .name("dashboard request".into())
            .spawn(move || {
                answer(&app, stream);
                busy.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            warn!("dashboard: no thread for a request: {e}");
        }
    }
}

fn answer(app: &App, mut stream: TcpStream) {
    let request = match Request::read(&mut stream, MAX_BODY) {
        Ok(r) => r,
        Err(e) => {
            debug!("dashboard: unreadable request: {e}");
            let _ = secure(Response::text(400, "bad request\n")).write(&mut stream, false);
            return;
        }
    };
    let response = secure(route(app, &request));
    if let Err(e) = response.write(&mut stream, request.method == "HEAD") {
        debug!("dashboard: cannot answer: {e}");
    }
}

/// The headers every response carries.
fn secure(response: Response) -> Response {
    response
        .with("Content-Security-Policy", CSP)
        .with("X-Content-Type-Options", "nosniff")
        .with("Referrer-Policy", "no-referrer")
        .with("X-Frame-Options", "DENY")
        .with("Cache-Control", "no-store")
}

fn route(app: &App, request: &Request) -> Response {
    if !app.auth.has_token() && !auth::local_host(request) {
        return Response::text(
            403,
            "this dashboard answers only to localhost (set INVENTORY_DASHBOARD_TOKEN to serve \
             other names)\n",
        );
    }
    let method = request.method.as_str();
    let path = request.path.as_str();
    // The login page and the static assets are served to anyone: they hold no data.
    match (method, path) {
        ("GET" | "HEAD", "/assets/app.js") => {
            return Response::new(200, "text/javascript; charset=utf-8", APP_JS);
        }
        ("GET" | "HEAD", "/assets/app.css") => {
            return Response::new(200, "text/css; charset=utf-8", APP_CSS);
        }
        ("GET" | "HEAD", "/assets/favicon.svg" | "/favicon.ico") => {
            return Response::new(200, "image/svg+xml", FAVICON);
        }
        ("GET" | "HEAD", "/login") => return login_page(app, ""),
        ("POST", "/login") => return login(app, request),
        _ => {}
    }
    let access = app.auth.access(request);
    if access == Access::Denied {
        if path.starts_with("/api/") {
            return error_json(401, "a token is needed: Authorization: Bearer TOKEN");
        }
        return Response::text(303, "").with("Location", "/login");
    }
    match (method, path) {
        ("GET" | "HEAD", "/") => index(app),
        ("GET" | "HEAD", p) if p.starts_with("/api/") => api_get(app, request),
        ("POST", p) if p.starts_with("/api/") => {
            if !app.auth.csrf_ok(request, access) {
                return error_json(403, "missing or wrong X-CSRF-Token: reload the page");
            }
            api_post(app, request)
        }
        ("GET" | "HEAD", _) => Response::text(404, "not found\n"),
        _ => Response::text(405, "method not allowed\n"),
    }
}

fn index(app: &App) -> Response {
    let note = if app.auth.has_token() {
        "signed in with the dashboard token"
    } else {
        "loopback only, no token; actions are protected by the page's CSRF token"
    };
    let page = INDEX
        .replace("{{CSRF_TOKEN}}", &html_escape(&app.auth.csrf))
        .replace("{{AUTH_NOTE}}", &html_escape(note));
    Response::new(200, "text/html; charset=utf-8", page)
}

fn login_page(app: &App, error: &str) -> Response {
    if !app.auth.has_token() {
        return Response::text(303, "").with("Location", "/");
    }
    let status = if error.is_empty() { 200 } else { 401 };
    let page = LOGIN.replace("{{ERROR}}", &html_escape(error));
    Response::new(status, "text/html; charset=utf-8", page)
}

fn login(app: &App, request: &Request) -> Response {
    if !app.auth.has_token() {
        return Response::text(303, "").with("Location", "/");
    }
    let given = url::form_urlencoded::parse(&request.body)
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if !app.auth.is_token(&given) {
        std::thread::sleep(WRONG_TOKEN_PAUSE);
        return login_page(app, "That is not the dashboard token.");
    }
    Response::text(303, "")
        .with("Location", "/")
        .with("Set-Cookie", app.auth.session_cookie())
}

/// Runs `f` with the admin connections; after an error they are dropped, so the next
/// request opens fresh ones.
fn with_admin(app: &App, f: impl FnOnce(&mut Admin) -> Result<Value, AdminError>) -> Response {
    // A poisoned lock only means another request panicked: the connections are reopened.
    let mut admin = app.admin.lock().unwrap_or_else(|p| p.into_inner());
    match f(&mut admin) {
        Ok(value) => json_response(200, &value),
        Err(e) => {
            let status = match &e {
                AdminError::Find(crate::db::failed::FindError::NotFound(_)) => 404,
                AdminError::Find(_) => 400,
                _ => {
                    admin.reset();
                    502
                }
            };
            error_json(status, &e.to_string())
        }
    }
}

fn api_get(app: &App, request: &Request) -> Response {
    let path = request.path.as_str();
    match path {
        "/api/status" => {
            let mut admin = app.admin.lock().unwrap_or_else(|p| p.into_inner());
            let status = api::status(&mut admin, &app.queues, app.threshold, &app.slot);
            json_response(200, &json!(status))
        }
        "/api/throughput" => with_admin(app, |a| api::throughput(a, &app.queues)),
        "/api/alerts" => with_admin(app, |a| api::alerts(a, &app.queues)),
        "/api/failed" => with_admin(app, |a| api::failed_list(a, queue_param(request))),
        _ => match path.strip_prefix("/api/failed/") {
            Some(id) if !id.contains('/') => with_admin(app, |a| api::failed_show(a, id)),
            _ => error_json(404, "no such endpoint"),
        },
    }
}

fn api_post(app: &App, request: &Request) -> Response {
    let path = request.path.as_str();
    if path == "/api/failed/retry-all" {
        let queue = queue_param(request);
        return with_admin(app, |a| api::retry(a, RetryTarget::All, queue));
    }
    let Some(rest) = path.strip_prefix("/api/failed/") else {
        return error_json(404, "no such endpoint");
    };
    match rest.rsplit_once('/') {
        Some((id, "retry")) if !id.is_empty() => with_admin(app, |a| {
            api::retry(a, RetryTarget::Ids(vec![id.to_string()]), None)
        }),
        Some((id, "forget")) if !id.is_empty() => with_admin(app, |a| api::forget(a, id)),
        _ => error_json(404, "no such endpoint"),
    }
}

fn queue_param(request: &Request) -> Option<&str> {
    request.param("queue").filter(|q| !q.is_empty())
}

fn json_response(status: u16, value: &Value) -> Response {
    Response::new(
        status,
        "application/json",
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

fn error_json(status: u16, message: &str) -> Response {
    json_response(status, &json!({ "error": message }))
}

/// Escapes text for HTML (element content and quoted attributes).
fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            html_escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn the_assets_have_their_placeholders_and_no_inline_script() {
        assert!(INDEX.contains("{{CSRF_TOKEN}}") && INDEX.contains("{{AUTH_NOTE}}"));
        assert!(LOGIN.contains("{{ERROR}}"));
        for page in [INDEX, LOGIN] {
            assert!(!page.contains("<script>"), "inline scripts break the CSP");
            assert!(!page.contains("style=\""), "inline styles break the CSP");
            assert!(!page.contains("http://") && !page.contains("https://"));
        }
        assert!(!APP_JS.contains("innerHTML"), "data is written as text");
    }
}
