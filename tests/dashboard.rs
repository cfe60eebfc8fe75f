//! `queue-work dashboard`: the page in a real headless Chromium (it loads clean, shows the
//! queues, follows new jobs without a reload, shows a failed job as text, and "retry" puts
//! it back), and the security model over plain HTTP (token, cookie, CSRF, non-loopback).

use crate::support::browser::Browser;
use crate::support::private::free_port;
use crate::support::{DEADLINE, Proc, World, job};
use inventory_broadcast::db::{DatabaseConfig, Db, failed};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

const TOKEN: &str = "s3cret-dashboard-token";

/// A running dashboard of `w` at its address.
fn dashboard(w: &mut World, token: Option<&str>) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    if let Some(token) = token {
        w.set("INVENTORY_DASHBOARD_TOKEN", token);
    }
    let proc = w.spawn("queue-work", &["dashboard", "--listen", &addr]);
    proc.wait_for_log("dashboard at");
    (proc, addr)
}

/// One HTTP exchange: status, head, body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect to the dashboard");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read the answer");
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

/// Records a failed job on queue `default` whose alert message holds markup; returns its id.
fn failed_job_with_markup(w: &World) -> String {
    let mut j = job("broadcast:null", 31);
    j.payload.message = "<script>alert('xss')</script><b>bold</b>".into();
    let uuid = j.id.to_string();
    let payload = String::from_utf8(j.encode()).expect("a job is UTF-8");
    let mut db = Db::connect(&DatabaseConfig::plain(&w.db.url)).expect("connect");
    failed::record(
        &mut db,
        &uuid,
        "default",
        &payload,
        "Error: <img src=x onerror=alert(1)> refused",
    )
    .expect("record a failed job");
    uuid
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("dashboard")
}

#[test]
fn the_page_shows_the_queues_live_and_retries_a_failed_job_in_chromium() {
    let mut w = World::new();
    let uuid = failed_job_with_markup(&w);
    w.push_jobs("default", "broadcast:null", 3);
    let (_dash, addr) = dashboard(&mut w, None);
    let mut b = Browser::start();
    b.goto(&format!("http://{addr}/"));
    b.wait_for("document.body.dataset.ready === '1'", DEADLINE);
    let pending =
        "document.querySelector('#queues tr[data-queue=\"default\"] td.pending')?.textContent";
    b.wait_for(&format!("{pending} === '3'"), DEADLINE);

    // A new job shows up without a reload.
    let marker = b.eval("window.__sameDocument = 42");
    assert_eq!(marker, 42);
    w.push_jobs("default", "broadcast:null", 1);
    b.wait_for(&format!("{pending} === '4'"), DEADLINE);
    assert_eq!(b.eval("window.__sameDocument"), 42, "the page was reloaded");

    // The failed job: listed, and its markup shown as text.
    let row = format!("#failed tr[data-uuid=\"{uuid}\"]");
    b.wait_for(&format!("!!document.querySelector('{row}')"), DEADLINE);
    b.click(&format!("{row} button.show"));
    b.wait_for(
        "document.querySelector('#failed-detail pre.payload')?.textContent.includes('<script>alert')",
        DEADLINE,
    );
    let injected = b.eval(
        "document.querySelectorAll('script').length + document.querySelectorAll('#failed-detail b, #failed-detail img, #failed img').length",
    );
    assert_eq!(
        injected, 1,
        "only the page's own script; no element from the data"
    );
    let exception = b.eval("document.querySelector('#failed-detail pre.exception').textContent");
    assert!(
        exception.as_str().is_some_and(|e| e.contains("<img src=x")),
        "{exception}"
    );
    let _ = b.eval("document.querySelector('#failed-detail button.close')?.click()");

    // "retry": the job is back on its queue, and its row is gone.
    b.click(&format!("{row} button.retry"));
    b.wait_for(&format!("{pending} === '5'"), DEADLINE);
    b.wait_for(&format!("!document.querySelector('{row}')"), DEADLINE);
    assert!(
        w.db.failed_jobs().is_empty(),
        "the failed_jobs row is deleted"
    );
    let sizes = w.queue().sizes("default").expect("sizes");
    assert_eq!(sizes.pending, 5, "the retried job is queued again");
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

#[test]
fn a_running_pipeline_fills_every_card_at_desktop_and_phone_width() {
    let mut w = World::new();
    failed_job_with_markup(&w);
    let listener = w.spawn("items-listen", &[]);
    let worker = w.spawn("queue-work", &["--name", "worker-1"]);
    listener.wait_for_log("listening on channel");
    worker.wait_for_log("working queue(s)");
    w.db.insert(32);
    let (_dash, addr) = dashboard(&mut w, None);
    let mut b = Browser::start();
    b.set_viewport(1280, 900, false);
    b.goto(&format!("http://{addr}/"));
    b.wait_for("document.body.dataset.ready === '1'", DEADLINE);
    // Page weight: the page, its assets and the first answer of each endpoint.
    let weight = b.eval(
        "['navigation', 'resource'].flatMap((t) => performance.getEntriesByType(t)) \
         .reduce((sum, e) => sum + e.transferSize, 0)",
    );
    println!("first load: {weight} bytes transferred");
    assert!(
        weight.as_u64().is_some_and(|w| w > 0 && w < 100_000),
        "first load {weight} bytes"
    );
    b.wait_for(
        "document.querySelectorAll('#alerts tbody tr[data-alert]').length >= 13 \
         && document.querySelector('#now-count')?.textContent === '32' \
         && document.querySelectorAll('#workers tbody tr[data-worker]').length === 1 \
         && document.querySelector('#listeners')?.textContent.includes('active')",
        DEADLINE,
    );
    // The chart has this minute's broadcasts.
    b.eval("document.querySelector('#tp-jobs')?.click()");
    b.wait_for(
        "document.querySelector('#legend')?.textContent.match(/\\d+ jobs/) \
         && !document.querySelector('#legend').textContent.includes(' 0 jobs')",
        Duration::from_secs(40),
    );
    std::fs::create_dir_all(screenshots()).expect("screenshot dir");
    b.screenshot(&screenshots().join("desktop.png"));
    b.set_viewport(390, 844, true);
    let overflow = b.eval("document.documentElement.scrollWidth - window.innerWidth");
    assert!(
        overflow.as_i64().is_some_and(|o| o <= 1),
        "the page is wider than a phone: {overflow}"
    );
    b.screenshot(&screenshots().join("phone.png"));
    let errors = b.console_errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

#[test]
fn a_non_loopback_address_needs_a_token_and_exits_2_without_one() {
    let w = World::new();
    let addr = format!("0.0.0.0:{}", free_port());
    let out = w.run("queue-work", &["dashboard", "--listen", &addr]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("INVENTORY_DASHBOARD_TOKEN"), "{stderr}");
}

#[test]
fn with_a_token_every_request_needs_it_and_a_post_needs_the_csrf_token() {
    let mut w = World::new();
    let uuid = failed_job_with_markup(&w);
    let (_dash, addr) = dashboard(&mut w, Some(TOKEN));
    let (status, _, _) = http(&addr, "GET", "/api/status", &[], "");
    assert_eq!(status, 401);
    let (status, head, _) = http(&addr, "GET", "/", &[], "");
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("Location: /login"), "{head}");
    let bearer = format!("Bearer {TOKEN}");
    let (status, _, body) = http(
        &addr,
        "GET",
        "/api/status",
        &[("Authorization", &bearer)],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let (status, _, _) = http(
        &addr,
        "GET",
        "/api/status",
        &[("Authorization", "Bearer nope")],
        "",
    );
    assert_eq!(status, 401);

    // The login form: a wrong token is refused, the right one sets the session cookie.
    let (status, head, _) = http(&addr, "POST", "/login", &[], "token=wrong");
    assert_eq!(status, 401);
    assert!(!head.contains("Set-Cookie"), "{head}");
    let form = format!("token={TOKEN}");
    let (status, head, _) = http(&addr, "POST", "/login", &[], &form);
    assert_eq!(status, 303);
    let cookie_line = head
        .lines()
        .find(|l| l.starts_with("Set-Cookie:"))
        .unwrap_or_else(|| panic!("no cookie: {head}"));
    assert!(cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"));
    assert!(!cookie_line.contains(TOKEN), "the cookie is not the token");
    let cookie = cookie_line
        .trim_start_matches("Set-Cookie:")
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    let (status, _, page) = http(&addr, "GET", "/", &[("Cookie", &cookie)], "");
    assert_eq!(status, 200);
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page carries its CSRF token")
        .to_string();

    // A POST with the cookie but without the CSRF token changes nothing.
    let retry = format!("/api/failed/{uuid}/retry");
    let (status, _, _) = http(&addr, "POST", &retry, &[("Cookie", &cookie)], "{}");
    assert_eq!(status, 403);
    let (status, _, _) = http(
        &addr,
        "POST",
        &retry,
        &[("Cookie", &cookie), ("X-CSRF-Token", "forged")],
        "{}",
    );
    assert_eq!(status, 403);
    assert_eq!(w.db.failed_jobs().len(), 1, "nothing changed");
    assert_eq!(w.queue().sizes("default").expect("sizes").pending, 0);
    // Nothing changes on GET either.
    let (status, _, _) = http(&addr, "GET", &retry, &[("Cookie", &cookie)], "");
    assert_eq!(status, 404);
    assert_eq!(w.db.failed_jobs().len(), 1, "nothing changed");

    // With it, the job goes back.
    let headers = [("Cookie", cookie.as_str()), ("X-CSRF-Token", csrf.as_str())];
    let (status, _, body) = http(&addr, "POST", &retry, &headers, "{}");
    assert_eq!(status, 200, "{body}");
    assert!(w.db.failed_jobs().is_empty());
    assert_eq!(w.queue().sizes("default").expect("sizes").pending, 1);
}

#[test]
fn without_a_token_only_local_host_names_are_served_and_responses_carry_a_strict_csp() {
    let mut w = World::new();
    let (_dash, addr) = dashboard(&mut w, None);
    let (status, head, _) = http(&addr, "GET", "/", &[], "");
    assert_eq!(status, 200);
    assert!(
        head.contains("Content-Security-Policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(head.contains("X-Content-Type-Options: nosniff"), "{head}");
    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream
        .write_all(b"GET /api/status HTTP/1.1\r\nHost: attacker.example\r\n\r\n")
        .expect("send");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    assert!(raw.starts_with("HTTP/1.1 403"), "{raw}");
}
