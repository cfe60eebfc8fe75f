//! A real headless Chromium (Debian's `chromium`, installed by scripts/services) driven over
//! the Chrome DevTools Protocol, for the dashboard tests: a small synchronous client on one
//! page target. Every wait has a deadline; a timeout panics with the page's recent console
//! output. Dropping the [`Browser`] kills Chromium (its whole process group) and removes its
//! throwaway profile.
//!
//! Chromium is kept off the network: besides the usual switches that stop background
//! services, `--host-resolver-rules` fails every name lookup except `localhost`, so the
//! requests it still makes on its own (account and update checks) die inside it without a
//! packet leaving the machine. Pages under test are served on 127.0.0.1.

use base64::Engine as _;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

/// From spawning Chromium to a connected page (a cold first start takes the longest).
const START_DEADLINE: Duration = Duration::from_secs(30);
/// For one protocol call, and for a page to fire its load event.
const CALL_DEADLINE: Duration = super::DEADLINE;
/// How often [`Browser::wait_for`] evaluates its condition.
const POLL: Duration = Duration::from_millis(50);
/// Console lines kept for panic messages.
const RECENT_LINES: usize = 40;
/// Unclaimed protocol events kept for [`Browser::wait_event`] (the oldest go first).
const MAX_EVENTS: usize = 10_000;

/// Switches for every Chromium started here, after `--headless=new`. Headless, no sandbox
/// (tests run as root), no GPU, nothing that phones home, no crash reporter, and shared
/// memory in /tmp (a container's /dev/shm may be tiny).
const FLAGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-sync",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-features=Translate,MediaRouter,OptimizationHints,NetworkTimeServiceQuerying",
    "--no-pings",
    "--metrics-recording-only",
    "--disable-crash-reporter",
    "--disable-breakpad",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    "--password-store=basic",
    "--use-mock-keychain",
    "--mute-audio",
    "--disable-dev-shm-usage",
    "--force-color-profile=srgb",
    // A headless page counts as hidden: without these its timers may be throttled.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
];

/// The `chromium` (or `chromium-browser`) on PATH; panics when there is none.
pub fn chromium_path() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if is_executable(&candidate) {
                return candidate;
            }
        }
    }
    panic!(
        "no chromium (nor chromium-browser) on PATH: run scripts/services (installs Debian's chromium)"
    );
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The Chromium process and its temporary directory (profile, config, log): killed and
/// removed on drop, also when [`Browser::start`] fails halfway.
struct Launched {
    child: Child,
    dir: PathBuf,
}

impl Launched {
    fn log_path(&self) -> PathBuf {
        self.dir.join("chromium.log")
    }

    /// The end of Chromium's stderr, without the D-Bus complaints every start makes.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains("dbus"))
            .collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        // Chromium runs in a process group of its own (see `start`): take all of it.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Its crash handler leaves on its own and may still be writing for a moment.
        for _ in 0..40 {
            match std::fs::remove_dir_all(&self.dir) {
                Err(e) if e.kind() != ErrorKind::NotFound => {
                    std::thread::sleep(Duration::from_millis(25))
                }
                _ => break,
            }
        }
    }
}

/// Why a protocol call did not return a result.
enum CallError {
    /// The protocol's error object (e.g. no execution context during a navigation).
    Protocol(Value),
    /// No answer before the deadline.
    Timeout,
}

/// A headless Chromium with a DevTools connection to its one page.
pub struct Browser {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// Protocol events not yet claimed by [`Browser::wait_event`].
    events: VecDeque<Value>,
    /// Recent console output of any level, for panic messages.
    recent: VecDeque<String>,
    /// What [`Browser::console_errors`] returns.
    errors: Vec<String>,
    enabled: bool,
    network_enabled: bool,
    launched: Launched,
}

impl Browser {
    /// Starts Chromium with a fresh profile and connects to its page (about:blank), with the
    /// Page, Runtime and Log domains enabled.
    pub fn start() -> Browser {
        static STARTED: AtomicU64 = AtomicU64::new(0);
        let exe = chromium_path();
        let deadline = Instant::now() + START_DEADLINE;
        let dir = std::env::temp_dir().join(format!(
            "ib-chromium-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let profile = dir.join("profile");
        std::fs::create_dir_all(&profile).expect("create chromium's temp profile");
        let log = std::fs::File::create(dir.join("chromium.log")).expect("create chromium.log");
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(&exe)
                .args(FLAGS)
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg("--remote-debugging-port=0")
                .arg("about:blank")
                // The crash database and caches go in the temp dir too, not in $HOME.
                .env("XDG_CONFIG_HOME", dir.join("config"))
                .env("XDG_CACHE_HOME", dir.join("cache"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()))
        };
        let mut launched = Launched { child, dir };

        // --remote-debugging-port=0: Chromium picks a port and writes it to this file.
        let port_file = profile.join("DevToolsActivePort");
        let port = loop {
            if let Ok(text) = std::fs::read_to_string(&port_file) {
                // "PORT\n/devtools/browser/ID": whole once the newline is there.
                if let Some((first, _)) = text.split_once('\n') {
                    if let Ok(port) = first.trim().parse::<u16>() {
                        break port;
                    }
                }
            }
            if let Ok(Some(status)) = launched.child.try_wait() {
                panic!(
                    "chromium exited ({status}) before opening its DevTools port; its stderr:\n{}",
                    launched.log_tail()
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromium wrote no {} within {START_DEADLINE:?}; its stderr:\n{}",
                port_file.display(),
                launched.log_tail()
            );
            std::thread::sleep(Duration::from_millis(10));
        };

        // The page target (not the browser_ui ones headless Chromium also lists).
        let ws_url = loop {
            let listed = http_get(port, "/json/list", deadline).and_then(|body| {
                serde_json::from_str::<Value>(&body).map_err(|e| format!("{e}: {body}"))
            });
            let found = listed.as_ref().ok().and_then(|targets| {
                targets.as_array()?.iter().find_map(|t| {
                    (t["type"] == "page")
                        .then(|| t["webSocketDebuggerUrl"].as_str().map(str::to_string))
                        .flatten()
                })
            });
            if let Some(url) = found {
                break url;
            }
            assert!(
                Instant::now() < deadline,
                "chromium listed no page target within {START_DEADLINE:?} (last answer: {listed:?}); its stderr:\n{}",
                launched.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        };

        let stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), {
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1))
        })
        .unwrap_or_else(|e| panic!("connecting to chromium's DevTools port {port}: {e}"));
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("read timeout");
        stream
            .set_write_timeout(Some(CALL_DEADLINE))
            .expect("write timeout");
        // Screenshots arrive as one large message: no size limits on a local socket.
        let config = WebSocketConfig::default()
            .max_message_size(None)
            .max_frame_size(None);
        let (ws, _) =
            tungstenite::client::client_with_config(ws_url.as_str(), stream, Some(config))
                .unwrap_or_else(|e| panic!("websocket handshake with {ws_url}: {e}"));

        let mut browser = Browser {
            ws,
            next_id: 1,
            events: VecDeque::new(),
            recent: VecDeque::new(),
            errors: Vec::new(),
            enabled: false,
            network_enabled: false,
            launched,
        };
        browser.ensure_enabled();
        browser
    }

    /// Sends one protocol command and returns its result; events read meanwhile are kept.
    /// Panics on a protocol error or when no answer comes within the deadline.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        match self.call_until(method, params, Instant::now() + CALL_DEADLINE) {
            Ok(result) => result,
            Err(CallError::Protocol(error)) => {
                panic!("{method} failed: {error}{}", self.context())
            }
            Err(CallError::Timeout) => panic!(
                "no answer to {method} within {CALL_DEADLINE:?}{}",
                self.context()
            ),
        }
    }

    /// Loads `url` and waits for its load event. Panics if the navigation fails (e.g.
    /// connection refused); an HTTP error status still loads (its page is shown).
    pub fn goto(&mut self, url: &str) {
        self.ensure_enabled();
        // A load event already read, or still in flight, belongs to an earlier page.
        self.drain();
        self.events.retain(|e| e["method"] != "Page.loadEventFired");
        let nav = self.call("Page.navigate", json!({ "url": url }));
        if let Some(error) = nav.get("errorText").and_then(Value::as_str) {
            panic!("navigating to {url} failed: {error}{}", self.context());
        }
        if nav.get("loaderId").is_none() {
            return; // Same document (only the #fragment changed): no load event comes.
        }
        if self
            .next_event("Page.loadEventFired", Instant::now() + CALL_DEADLINE)
            .is_none()
        {
            panic!(
                "{url} fired no load event within {CALL_DEADLINE:?}{}",
                self.context()
            );
        }
    }

    /// Evaluates `js` in the page (promises awaited) and returns its value as JSON
    /// (`undefined` and things JSON cannot hold as null; NaN, Infinity and BigInts as their
    /// text). Panics if it throws, with the exception.
    pub fn eval(&mut self, js: &str) -> Value {
        match self.try_eval(js, Instant::now() + CALL_DEADLINE) {
            Ok(value) => value,
            Err(Some(error)) => panic!("evaluating {js:?}: {error}{}", self.context()),
            Err(None) => panic!(
                "evaluating {js:?}: no answer within {CALL_DEADLINE:?}{}",
                self.context()
            ),
        }
    }

    /// Evaluates `js_condition` every 50 ms until its value is truthy (a promise is awaited)
    /// and returns that value. Throwing counts as not yet (e.g. the element is not there);
    /// the last value or error is in the panic message at the deadline.
    pub fn wait_for(&mut self, js_condition: &str, within: Duration) -> Value {
        let end = Instant::now() + within;
        loop {
            // One evaluation may run past `end` a little rather than be cut off there.
            let answer_by = end.max(Instant::now() + Duration::from_secs(2));
            let last = match self.try_eval(js_condition, answer_by) {
                Ok(value) if truthy(&value) => return value,
                Ok(value) => format!("last value: {value}"),
                Err(Some(error)) => format!("last error: {error}"),
                Err(None) => "the last evaluation never answered".into(),
            };
            if Instant::now() >= end {
                panic!(
                    "wait_for({js_condition:?}): not true within {within:?} ({last}){}",
                    self.context()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Clicks the first element matching `css_selector` (scrolled into view first); panics
    /// if none does.
    pub fn click(&mut self, css_selector: &str) {
        let selector = Value::String(css_selector.to_string());
        let js = format!(
            "(() => {{ const el = document.querySelector({selector}); if (!el) return false; \
             el.scrollIntoView({{block: 'center', inline: 'center'}}); \
             if (typeof el.click === 'function') el.click(); \
             else el.dispatchEvent(new MouseEvent('click', {{bubbles: true, cancelable: true, view: window}})); \
             return true; }})()"
        );
        if self.eval(&js) != Value::Bool(true) {
            panic!(
                "click: no element matches {css_selector:?}{}",
                self.context()
            );
        }
    }

    /// Every error the page reported so far: `console.error`/`console.assert` calls
    /// ("console.error: TEXT"), uncaught exceptions and unhandled rejections ("exception:
    /// Uncaught Error: TEXT (URL:LINE)"), and the browser's error entries
    /// ("log.SOURCE: TEXT (URL)"), among them failed resource loads (source `network`) and
    /// Content-Security-Policy violations (source `security`).
    pub fn console_errors(&mut self) -> Vec<String> {
        self.ensure_enabled();
        // A round trip through the renderer: what it reported before is read by then.
        let _ = self.call_until(
            "Runtime.evaluate",
            json!({ "expression": "0" }),
            Instant::now() + CALL_DEADLINE,
        );
        self.drain();
        self.errors.clone()
    }

    /// Emulates a screen of `width`×`height` CSS pixels at device scale factor 1; `mobile`
    /// also turns on the mobile viewport (meta viewport, overlay scrollbars).
    pub fn set_viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile }),
        );
    }

    /// Writes a PNG of the whole page (beyond the viewport too) to `path`, creating its
    /// parent directories.
    pub fn screenshot(&mut self, path: &Path) {
        let metrics = self.call("Page.getLayoutMetrics", json!({}));
        let side = |content: &str, viewport: &str| {
            let content = metrics["cssContentSize"][content].as_f64().unwrap_or(0.0);
            let viewport = metrics["cssLayoutViewport"][viewport]
                .as_f64()
                .unwrap_or(0.0);
            content.max(viewport).ceil().max(1.0)
        };
        let (width, height) = (side("width", "clientWidth"), side("height", "clientHeight"));
        let shot = self.call(
            "Page.captureScreenshot",
            json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": { "x": 0, "y": 0, "width": width, "height": height, "scale": 1 },
            }),
        );
        let data = shot["data"]
            .as_str()
            .unwrap_or_else(|| panic!("Page.captureScreenshot returned no data: {shot}"));
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("the screenshot is base64");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("creating {}: {e}", parent.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Sends `headers` (a JSON object of name → value) with every request from now on, e.g.
    /// `json!({"Authorization": "Bearer …"})`.
    pub fn set_extra_headers(&mut self, headers: Value) {
        self.ensure_network();
        self.call("Network.setExtraHTTPHeaders", json!({ "headers": headers }));
    }

    /// The cookies of the current page's URL, as the protocol lists them (objects with
    /// `name`, `value`, `domain`, `path`, `httpOnly`, `secure`, `sameSite`, …).
    pub fn cookies(&mut self) -> Value {
        self.ensure_network();
        self.call("Network.getCookies", json!({}))["cookies"].clone()
    }

    /// Waits for the next protocol event named `method` (e.g. "Network.responseReceived";
    /// enable its domain first) and returns its params. Events are kept from the start, so
    /// one that came before the call counts, once.
    pub fn wait_event(&mut self, method: &str, within: Duration) -> Value {
        match self.next_event(method, Instant::now() + within) {
            Some(event) => event["params"].clone(),
            None => panic!("no {method} event within {within:?}{}", self.context()),
        }
    }

    fn ensure_enabled(&mut self) {
        if !self.enabled {
            for domain in ["Page", "Runtime", "Log"] {
                self.call(&format!("{domain}.enable"), json!({}));
            }
            self.enabled = true;
        }
    }

    fn ensure_network(&mut self) {
        if !self.network_enabled {
            self.call("Network.enable", json!({}));
            self.network_enabled = true;
        }
    }

    /// `Ok(value)`; `Err(Some(text))` for an exception or a protocol error (no context while
    /// the page navigates); `Err(None)` for no answer by `deadline`.
    fn try_eval(&mut self, js: &str, deadline: Instant) -> Result<Value, Option<String>> {
        let params = json!({
            "expression": js,
            "returnByValue": true,
            "awaitPromise": true,
            "userGesture": true,
        });
        match self.call_until("Runtime.evaluate", params, deadline) {
            Ok(result) => match result.get("exceptionDetails") {
                Some(details) => Err(Some(exception_text(details))),
                None => Ok(remote_value(&result["result"])),
            },
            Err(CallError::Protocol(error)) => Err(Some(format!("protocol error {error}"))),
            Err(CallError::Timeout) => Err(None),
        }
    }

    fn call_until(
        &mut self,
        method: &str,
        params: Value,
        deadline: Instant,
    ) -> Result<Value, CallError> {
        let id = self.next_id;
        self.next_id += 1;
        let message = json!({ "id": id, "method": method, "params": params }).to_string();
        if let Err(e) = self.ws.send(Message::text(message)) {
            panic!("sending {method} to chromium: {e}{}", self.context());
        }
        loop {
            let Some(mut answer) = self.receive(deadline) else {
                return Err(CallError::Timeout);
            };
            // Answers to earlier calls that timed out are dropped here.
            if answer["id"].as_u64() == Some(id) {
                return match answer.get_mut("error") {
                    Some(error) => Err(CallError::Protocol(error.take())),
                    None => Ok(answer
                        .get_mut("result")
                        .map(Value::take)
                        .unwrap_or(Value::Null)),
                };
            }
        }
    }

    /// The first kept event named `method`, reading more until `deadline`.
    fn next_event(&mut self, method: &str, deadline: Instant) -> Option<Value> {
        if let Some(at) = self.events.iter().position(|e| e["method"] == method) {
            return self.events.remove(at);
        }
        loop {
            // Answers (to calls that timed out) are of no use here.
            if self.receive(deadline)?["method"] == method {
                return self.events.pop_back(); // `receive` has just kept it there.
            }
        }
    }

    /// Reads what has already arrived, without waiting.
    fn drain(&mut self) {
        while self.receive(Instant::now()).is_some() {}
    }

    /// Reads the next message: events are recorded and kept, then returned like answers.
    /// `None` when nothing came by `deadline` (with a deadline already past: nothing had
    /// arrived). Panics if the connection is gone.
    fn receive(&mut self, deadline: Instant) -> Option<Value> {
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            let stream = self.ws.get_mut();
            let set = if wait.is_zero() {
                stream.set_nonblocking(true)
            } else {
                stream
                    .set_nonblocking(false)
                    .and_then(|()| stream.set_read_timeout(Some(wait)))
            };
            set.expect("configure the DevTools socket");
            let read = self.ws.read();
            if wait.is_zero() {
                let _ = self.ws.get_mut().set_nonblocking(false);
            }
            let parsed = match read {
                Ok(Message::Text(text)) => serde_json::from_str::<Value>(text.as_str()),
                Ok(Message::Binary(bytes)) => serde_json::from_slice::<Value>(&bytes),
                Ok(Message::Close(frame)) => panic!(
                    "chromium closed the DevTools connection ({frame:?}){}{}",
                    self.context(),
                    self.stderr_context()
                ),
                Ok(_) => continue, // ping, pong (tungstenite answers pings itself)
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    if wait.is_zero() || Instant::now() >= deadline {
                        return None;
                    }
                    continue;
                }
                Err(e) => panic!(
                    "reading from chromium's DevTools connection: {e}{}{}",
                    self.context(),
                    self.stderr_context()
                ),
            };
            let message =
                parsed.unwrap_or_else(|e| panic!("chromium sent a message not JSON: {e}"));
            if message.get("method").is_some() {
                self.record(&message);
                if self.events.len() >= MAX_EVENTS {
                    self.events.pop_front();
                }
                self.events.push_back(message.clone());
            }
            return Some(message);
        }
    }

    /// Notes console output and errors from an event.
    fn record(&mut self, event: &Value) {
        let params = &event["params"];
        let (line, error) = match event["method"].as_str().unwrap_or_default() {
            "Runtime.consoleAPICalled" => {
                let kind = params["type"].as_str().unwrap_or("log");
                let text = params["args"]
                    .as_array()
                    .map(|args| args.iter().map(arg_text).collect::<Vec<_>>().join(" "))
                    .unwrap_or_default();
                (
                    format!("console.{kind}: {text}"),
                    matches!(kind, "error" | "assert"),
                )
            }
            "Runtime.exceptionThrown" => (
                format!("exception: {}", exception_text(&params["exceptionDetails"])),
                true,
            ),
            "Log.entryAdded" => {
                let entry = &params["entry"];
                let level = entry["level"].as_str().unwrap_or("info");
                if level == "verbose" {
                    return;
                }
                let mut line = format!(
                    "log.{}: {}",
                    entry["source"].as_str().unwrap_or("other"),
                    entry["text"].as_str().unwrap_or_default()
                );
                if let Some(url) = entry["url"].as_str().filter(|u| !u.is_empty()) {
                    line.push_str(&format!(" ({url})"));
                }
                if level != "error" {
                    line = format!("[{level}] {line}");
                }
                (line, level == "error")
            }
            _ => return,
        };
        if error {
            self.errors.push(line.clone());
        }
        if self.recent.len() >= RECENT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }

    /// The page's recent console output, to end a panic message with.
    fn context(&self) -> String {
        if self.recent.is_empty() {
            "\n(no console output from the page)".into()
        } else {
            let lines: Vec<&str> = self.recent.iter().map(String::as_str).collect();
            format!("\nrecent console output:\n  {}", lines.join("\n  "))
        }
    }

    fn stderr_context(&self) -> String {
        format!("\nchromium's stderr:\n{}", self.launched.log_tail())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .ws
            .get_mut()
            .set_write_timeout(Some(Duration::from_millis(200)));
        let _ = self.ws.close(None);
        let _ = self.ws.flush();
        // Then `launched` drops: Chromium's process group is killed, its directory removed.
    }
}

/// GET `path` from Chromium's DevTools HTTP endpoint; the body.
fn http_get(port: u16, path: &str, deadline: Instant) -> Result<String, String> {
    let timeout = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(500));
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout)
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        // Read until the body is complete (by Content-Length) or the server closes.
        if let Some(end) = find(&raw, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_string();
            let length = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())
                    .flatten()
            });
            if length.is_some_and(|n| raw.len() >= end + 4 + n) {
                break;
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    let end = find(&raw, b"\r\n\r\n").ok_or("no complete HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!(
            "HTTP answer: {}",
            head.lines().next().unwrap_or("")
        ));
    }
    Ok(String::from_utf8_lossy(&raw[end + 4..]).into_owned())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// JavaScript truthiness of a value returned by [`Browser::eval`].
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        // eval returns NaN as the text "NaN" (and -0 as "-0").
        Value::String(s) => !s.is_empty() && s != "NaN" && s != "-0",
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A `Runtime.RemoteObject` returned by value, as JSON.
fn remote_value(object: &Value) -> Value {
    if let Some(value) = object.get("value") {
        value.clone()
    } else if let Some(text) = object.get("unserializableValue") {
        text.clone()
    } else {
        Value::Null
    }
}

/// One console argument as the DevTools console would print it, roughly.
fn arg_text(arg: &Value) -> String {
    match arg.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(value) => value.to_string(),
        None => arg
            .get("unserializableValue")
            .or_else(|| arg.get("description"))
            .and_then(Value::as_str)
            .unwrap_or_else(|| arg["type"].as_str().unwrap_or("?"))
            .to_string(),
    }
}

/// "Uncaught Error: boom (http://…/app.js:12)" from `Runtime.ExceptionDetails`.
fn exception_text(details: &Value) -> String {
    let text = details["text"].as_str().unwrap_or("exception");
    let thrown = details["exception"]["description"]
        .as_str()
        .or_else(|| details["exception"]["value"].as_str())
        .and_then(|d| d.lines().next())
        .unwrap_or("");
    let mut out = if thrown.is_empty() || text.contains(thrown) {
        text.to_string()
    } else {
        format!("{text} {thrown}")
    };
    if let Some(url) = details["url"].as_str().filter(|u| !u.is_empty()) {
        let line = details["lineNumber"].as_u64().unwrap_or(0) + 1;
        out.push_str(&format!(" ({url}:{line})"));
    }
    out
}
