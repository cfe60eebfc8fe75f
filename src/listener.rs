//! `items-listen`: LISTEN for count changes, rate each one, dispatch the alerts.
//!
//! An outer loop owns reconnection (with backoff) and an inner session does the work. Every
//! new session re-rates the current count, so a change made while we were away is not missed.
//! While Redis is down only the latest alert is kept, and it is dispatched once Redis is back.
//!
//! Broadcasts go out for every count at or above the minimum severity. When Slack or email is
//! on, every count also goes through the alert policy ([`crate::notify::policy`]), because a
//! count under the threshold may resolve an alert that people were told about.

use crate::backoff::Backoff;
use crate::config::Config;
use crate::db::{Db, DbError};
use crate::event::Alert;
use crate::service::{Dispatcher, People, Plan};
use crate::shutdown::Shutdown;
use log::{debug, info, warn};
use postgres::fallible_iterator::FallibleIterator;
use std::time::{Duration, Instant, SystemTime};

/// The listener's `application_name` in `pg_stat_activity`.
pub const APP_NAME: &str = "items-listen";
/// How often the session wakes without a notification, to notice a stop request.
const POLL: Duration = Duration::from_millis(200);
/// How often the session proves both servers are alive (a `SELECT 1`, a Redis marker check).
const TICK: Duration = Duration::from_secs(1);
/// How often a standby listener tries to take the lock: the takeover delay after a failure.
const STANDBY_POLL: Duration = Duration::from_millis(500);
/// Payloads are logged up to this many bytes, so an 8000-byte payload cannot flood the log.
const LOG_PAYLOAD_MAX: usize = 120;

/// Quotes a PostgreSQL identifier, so a channel name is never spliced into SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Parses a NOTIFY payload: `{"count": N}` or a bare integer `N`.
pub fn parse_payload(payload: &str) -> Result<u64, String> {
    let text = payload.trim();
    let number = if text.starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        value
            .get("count")
            .cloned()
            .ok_or_else(|| "JSON without a \"count\" field".to_string())?
    } else {
        serde_json::Value::String(text.to_string())
    };
    let count = match &number {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse::<u64>().ok(),
        _ => None,
    };
    count.ok_or_else(|| {
        format!(
            "count {} is not a whole number from 0 to {}",
            short(&number.to_string()),
            u64::MAX
        )
    })
}

fn short(text: &str) -> String {
    if text.len() <= LOG_PAYLOAD_MAX {
        return text.to_string();
    }
    let mut end = LOG_PAYLOAD_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// Most alerts kept while they cannot be queued. Notifications that arrive together are
/// queued in one round trip; while Redis is down only the latest one is kept (bounded memory).
const MAX_BATCH: usize = 1000;

/// Rates counts and gets their alerts onto the queue, surviving Redis outages.
struct Alerter {
    config: Config,
    dispatcher: Option<Dispatcher>,
    /// Alerts not yet queued, oldest first.
    pending: Vec<Alert>,
    /// True when a people channel (Slack, email) is on: then every count goes through the
    /// alert policy, even below the broadcast minimum, since it may resolve an alert.
    people: bool,
    redis: Backoff,
    retry_at: Instant,
}

impl Alerter {
    fn new(config: &Config, dispatcher: Dispatcher) -> Alerter {
        Alerter {
            config: config.clone(),
            dispatcher: Some(dispatcher),
            pending: Vec::new(),
            people: !crate::service::enabled(config).is_empty(),
            redis: Backoff::new(),
            retry_at: Instant::now(),
        }
    }

    /// Rates `count` and keeps its alert for the next [`Alerter::flush`].
    fn on_count(&mut self, count: u64) {
        let alert = Alert::new(
            count,
            self.config.threshold,
            &self.config.boundaries,
            "items-listen",
        );
        let redis_down = self.dispatcher.is_none();
        // Below the minimum, a count is not broadcast, but it may still resolve an alert that
        // people were told about, so the policy sees every count once Slack or email is on.
        if alert.severity < self.config.min_severity && !self.people {
            debug!(
                "count {count} is {} ({}%): below the alert minimum",
                alert.severity, alert.percentage
            );
            if redis_down {
                // Only the latest state matters after an outage, and it is below alert level.
                self.pending.clear();
            }
            return;
        }
        if redis_down {
            self.pending.clear();
        }
        self.pending.push(alert);
    }

    fn on_payload(&mut self, payload: &str) {
        match parse_payload(payload) {
            Ok(count) => self.on_count(count),
            Err(why) => warn!("skipped notification {}: {why}", short(payload)),
        }
    }

    /// Queues the pending alerts in one round trip, if Redis is (back) up.
    fn flush(&mut self) {
        if self.pending.is_empty() || Instant::now() < self.retry_at {
            return;
        }
        match self.try_dispatch() {
            Ok(()) => {
                if let Some(down) = self.redis.succeeded() {
                    info!(
                        "Redis is back after {:.1} s; latest alert dispatched",
                        down.as_secs_f64()
                    );
                }
            }
            Err(e) => {
                // Keep only the latest: it carries the state that matters.
                let keep = self.pending.len().saturating_sub(1);
                self.pending.drain(..keep);
                self.redis_failed(&e);
            }
        }
    }

    /// True when Redis lost its data since the last check (a restart without persistence):
    /// the queued alerts are gone, so the current state must be dispatched again.
    fn redis_was_emptied(&mut self) -> bool {
        if Instant::now() < self.retry_at {
            return false;
        }
        let result = match &mut self.dispatcher {
            Some(d) => d.claim_marker(),
            None => Dispatcher::connect(&self.config).and_then(|d| {
                let d = self.dispatcher.insert(d);
                d.claim_marker()
            }),
        };
        match result {
            Ok(newly_set) => {
                if let Some(down) = self.redis.succeeded() {
                    info!("Redis is back after {:.1} s", down.as_secs_f64());
                }
                newly_set
            }
            Err(e) => {
                self.redis_failed(&e);
                false
            }
        }
    }

    fn redis_failed(&mut self, e: &crate::redis_conn::RedisError) {
        self.dispatcher = None;
        let (delay, first) = self.redis.failed();
        self.retry_at = Instant::now() + delay;
        if first {
            warn!("lost Redis: {e}; keeping the latest alert until it is back");
        }
    }

    fn try_dispatch(&mut self) -> Result<(), crate::redis_conn::RedisError> {
        let dispatcher = match &mut self.dispatcher {
            Some(d) => d,
            None => self.dispatcher.insert(Dispatcher::connect(&self.config)?),
        };
        if !self.people {
            let jobs = dispatcher.broadcast_all(&self.pending)?;
            let per_alert = jobs.len() / self.pending.len().max(1);
            for alert in self.pending.drain(..) {
                info!(
                    "count {} is {} ({}% of {}): dispatched {per_alert} job(s), alert {}",
                    alert.count, alert.severity, alert.percentage, alert.threshold, alert.alert_id
                );
            }
            return Ok(());
        }
        // The people policy decides per alert, each in its own transaction.
        while let Some(alert) = self.pending.first() {
            let plan = Plan {
                broadcast: alert.severity >= self.config.min_severity,
                people: People::Policy,
            };
            let jobs = dispatcher.dispatch(alert, plan, SystemTime::now())?;
            if jobs.is_empty() {
                debug!(
                    "count {} is {} ({}%): nothing to send",
                    alert.count, alert.severity, alert.percentage
                );
            } else {
                let kinds: Vec<&str> = jobs.iter().map(|j| j.job.as_str()).collect();
                info!(
                    "count {} is {} ({}% of {}): dispatched {} job(s) ({}), alert {}",
                    alert.count,
                    alert.severity,
                    alert.percentage,
                    alert.threshold,
                    jobs.len(),
                    kinds.join(", "),
                    alert.alert_id
                );
            }
            self.pending.remove(0);
        }
        Ok(())
    }
}

/// Runs the listener until `shutdown` is triggered.
///
/// Fails at once when PostgreSQL or Redis cannot be reached at start (so a typo in a URL is
/// seen immediately); once running, it reconnects by itself.
pub fn run(config: &Config, shutdown: &Shutdown) -> anyhow::Result<()> {
    let mut db = Db::connect_as(&config.database_url, APP_NAME)?;
    let dispatcher = Dispatcher::connect(config)?;
    let mut alerter = Alerter::new(config, dispatcher);
    for (channel, policy) in crate::service::enabled(config) {
        info!(
            "telling people via {} from severity {}; unchanged severity repeated after {} s, \
             resolved below {} items",
            channel.as_str(),
            policy.min_severity,
            policy.repeat_interval.as_secs(),
            policy.resolve_below
        );
    }
    let mut pg = Backoff::new();
    loop {
        let err = match session(&mut db, &mut alerter, &mut pg, shutdown) {
            Ok(()) => return Ok(()),
            Err(e) if e.is_connection() => e,
            Err(e) => return Err(e.into()),
        };
        warn!("lost PostgreSQL: {err}; reconnecting");
        db = match reconnect(config, &mut pg, &mut alerter, shutdown) {
            Some(db) => db,
            None => return Ok(()),
        };
    }
}

/// Reconnects with backoff; `None` when asked to stop meanwhile.
fn reconnect(
    config: &Config,
    pg: &mut Backoff,
    alerter: &mut Alerter,
    shutdown: &Shutdown,
) -> Option<Db> {
    loop {
        let (delay, _) = pg.failed();
        if sleep_unless_stopped(delay, shutdown) {
            return None;
        }
        alerter.flush();
        match Db::connect_as(&config.database_url, APP_NAME) {
            Ok(db) => return Some(db),
            Err(e) => debug!("still cannot reach PostgreSQL: {e}"),
        }
    }
}

/// Sleeps in short steps; returns true when a stop was requested.
fn sleep_unless_stopped(total: Duration, shutdown: &Shutdown) -> bool {
    let end = Instant::now() + total;
    while Instant::now() < end {
        if shutdown.requested() {
            return true;
        }
        std::thread::sleep(POLL.min(end.saturating_duration_since(Instant::now())));
    }
    shutdown.requested()
}

/// One connection's life: become the active listener, LISTEN, rate the current count, then
/// handle notifications, checking both servers every [`TICK`].
fn session(
    db: &mut Db,
    alerter: &mut Alerter,
    pg: &mut Backoff,
    shutdown: &Shutdown,
) -> Result<(), DbError> {
    let channel = alerter.config.listen_channel.clone();
    if !become_active(db, &channel, shutdown)? {
        return Ok(());
    }
    db.client
        .batch_execute(&format!("LISTEN {}", quote_ident(&channel)))
        .map_err(|e| db.error(e))?;
    match pg.succeeded() {
        Some(down) => info!(
            "PostgreSQL is back after {:.1} s; listening on channel {channel}",
            down.as_secs_f64()
        ),
        None => info!("listening on channel {channel} at {}", db.target()),
    }
    // Mark Redis as seen before rating, so the first tick does not mistake it for emptied.
    alerter.redis_was_emptied();
    rate_current(db, alerter)?;
    alerter.flush();
    let mut last_tick = Instant::now();
    loop {
        if shutdown.requested() {
            return Ok(());
        }
        alerter.flush();
        if last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            // A query on a dead connection fails here (keepalives bound a half-open one).
            db.client
                .simple_query("SELECT 1")
                .map_err(|e| db.error(e))?;
            if alerter.redis_was_emptied() {
                info!("Redis came back empty; re-rating the current count");
                rate_current(db, alerter)?;
                alerter.flush();
            }
        }
        let next = db.client.notifications().timeout_iter(POLL).next();
        match next {
            Ok(Some(n)) => {
                alerter.on_payload(n.payload());
                drain_buffered(db, alerter)?;
            }
            Err(e) => return Err(db.error(e)),
            Ok(None) if db.client.is_closed() => {
                return Err(DbError::Connect {
                    target: db.target().to_string(),
                    reason: "connection closed".into(),
                });
            }
            Ok(None) => {}
        }
    }
}

/// Takes every notification already received, so a burst is queued in one round trip
/// instead of one per notification.
fn drain_buffered(db: &mut Db, alerter: &mut Alerter) -> Result<(), DbError> {
    let result = {
        let mut notifications = db.client.notifications();
        let mut buffered = notifications.iter();
        loop {
            if alerter.pending.len() >= MAX_BATCH {
                break Ok(());
            }
            match buffered.next() {
                Ok(Some(n)) => alerter.on_payload(n.payload()),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        }
    };
    result.map_err(|e| db.error(e))
}

/// Rates the count the trigger keeps, so changes made while we were away are not missed.
fn rate_current(db: &mut Db, alerter: &mut Alerter) -> Result<(), DbError> {
    let count = u64::try_from(db.item_count()?).unwrap_or(0);
    info!(
        "current count is {count} (threshold {})",
        alerter.config.threshold
    );
    alerter.on_count(count);
    Ok(())
}

/// Waits until this process holds the channel's advisory lock; false if asked to stop first.
///
/// The lock belongs to the PostgreSQL session, so when the active listener dies or loses its
/// connection the server releases it and a standby takes over within [`STANDBY_POLL`].
fn become_active(db: &mut Db, channel: &str, shutdown: &Shutdown) -> Result<bool, DbError> {
    let key = format!("inventory-broadcast:{channel}");
    let mut waiting_since: Option<Instant> = None;
    loop {
        let row = db
            .client
            .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&key])
            .map_err(|e| db.error(e))?;
        if row.get::<_, bool>(0) {
            if let Some(since) = waiting_since {
                info!(
                    "took over as the active listener after {:.1} s on standby",
                    since.elapsed().as_secs_f64()
                );
            }
            return Ok(true);
        }
        if waiting_since.is_none() {
            info!(
                "standby: another items-listen is active on channel {channel}; waiting to take over"
            );
            waiting_since = Some(Instant::now());
        }
        if sleep_unless_stopped(STANDBY_POLL, shutdown) {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads() {
        assert_eq!(parse_payload("{\"count\": 21}"), Ok(21));
        assert_eq!(parse_payload(" 21 "), Ok(21));
        assert_eq!(parse_payload("{\"count\": \"22\"}"), Ok(22));
        assert_eq!(parse_payload("18446744073709551615"), Ok(u64::MAX));
        for bad in [
            "",
            "abc",
            "-1",
            "{\"count\": -1}",
            "{\"count\": 1.5}",
            "{\"n\": 3}",
            "{",
            "18446744073709551616",
            "{\"count\": null}",
        ] {
            assert!(parse_payload(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn huge_payload_error_is_short() {
        let big = format!("{{\"count\": \"{}\"}}", "9".repeat(8000));
        let err = parse_payload(&big).unwrap_err();
        assert!(err.len() < 300, "{}", err.len());
    }

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("item_count"), "\"item_count\"");
        assert_eq!(quote_ident("a \"b\"; DROP"), "\"a \"\"b\"\"; DROP\"");
    }
}
