//! `items-listen`: LISTEN for count changes, rate each one, dispatch the alerts.
//!
//! Any login may NOTIFY, so only a notification the trigger signed, with a version above the
//! last one rated, is rated: every committed change once, in commit order, and a forged or
//! replayed one never (see [`payload`]).
//! An outer loop owns reconnection (with backoff) and an inner session does the work. Every
//! new session re-rates the current count, so a change made while we were away is not missed.
//! Only a primary will do: a standby is refused, and with a multi-host URL each reconnect
//! finds whichever host is the primary now (after a failover, the promoted one).
//! While Redis is down only the latest alert is kept, and it is dispatched once Redis is back.
//!
//! Broadcasts go out for every count at or above the minimum severity. When Slack or email is
//! on, every count also goes through the alert policy ([`crate::notify::policy`]), because a
//! count under the threshold may resolve an alert that people were told about.
//!
//! [`payload`] checks what a NOTIFY carries; `alerter` rates counts and queues their alerts.

mod alerter;
mod logical;
pub mod payload;
mod probe;

use self::alerter::Alerter;
use crate::backoff::Backoff;
use crate::config::Config;
use crate::db::count::{Schema, SigningKey};
use crate::db::logical::ChangeSource;
use crate::db::{Db, DbError};
use crate::heartbeat::Heartbeat;
use crate::metrics::{Daemon, Metrics};
use crate::queue::registry::ListenerInfo;
use crate::redis_conn::RedisError;
use crate::service::{self, Dispatcher};
use crate::shutdown::Shutdown;
use crate::text::escape;
use log::{debug, info, warn};
use postgres::fallible_iterator::FallibleIterator;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the listener could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// PostgreSQL could not be reached at start, or failed in a way reconnecting cannot mend.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Redis could not be reached at start (later outages are waited out).
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The database is not migrated, or its trigger notifies another channel.
    #[error("{0}")]
    Schema(String),
    /// The metrics address could not be served.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::server::ServeError),
}

impl ListenerError {
    /// True when the connection is gone and reconnecting may help.
    fn is_connection(&self) -> bool {
        matches!(self, ListenerError::Db(e) if e.is_connection())
    }
}

/// The listener's `application_name` in `pg_stat_activity`.
pub const APP_NAME: &str = "items-listen";
/// How long the session blocks waiting for a notification: a stop request is noticed within
/// it.
const POLL: Duration = Duration::from_millis(200);
/// How often the session proves both servers are alive (a `SELECT 1`, a Redis marker check).
const TICK: Duration = Duration::from_secs(1);
/// How often a standby listener tries to take the lock: the takeover delay after a failure.
const STANDBY_POLL: Duration = Duration::from_millis(500);
/// Longest wait between tries to reach PostgreSQL again (the shared backoff goes up to 10 s):
/// a standby promoted during an outage is found within this, plus one connect timeout for each
/// unreachable host listed before it.
const RECONNECT_CAP: Duration = Duration::from_secs(2);

/// Quotes a PostgreSQL identifier, so a channel name is never spliced into SQL.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Runs the listener until `shutdown` is triggered.
///
/// Fails at once when PostgreSQL or Redis cannot be reached at start (so a typo in a URL is
/// seen immediately); once running, it reconnects by itself.
pub fn run(config: &Config, shutdown: &Shutdown) -> Result<(), ListenerError> {
    let db = connect(config)?;
    let dispatcher = Dispatcher::connect(config)?;
    let mut alerter = Alerter::new(config, dispatcher);
    alerter.metrics = serve_metrics(config)?;
    alerter.heartbeat = Some(Heartbeat::start(
        &config.redis,
        &config.queue.prefix,
        ListenerInfo::new(),
    ));
    for (channel, policy) in service::enabled(config) {
        info!(
            "telling people via {} from severity {}; unchanged severity repeated after {} s, \
             resolved below {} items",
            channel.as_str(),
            policy.min_severity,
            policy.repeat_interval.as_secs(),
            policy.resolve_below
        );
    }
    let result = listen(config, db, &mut alerter, shutdown);
    if let Some(heartbeat) = alerter.heartbeat.take() {
        heartbeat.stop();
    }
    result
}

/// One connection's life: it returns on a stop, or with the error that ended it.
type Session = fn(&mut Db, &mut Alerter, &mut Backoff, &Shutdown) -> Result<(), ListenerError>;

/// Sessions, one after another, until a stop or an error that reconnecting cannot cure.
fn listen(
    config: &Config,
    mut db: Db,
    alerter: &mut Alerter,
    shutdown: &Shutdown,
) -> Result<(), ListenerError> {
    let session: Session = match config.source {
        ChangeSource::Notify => session,
        ChangeSource::Logical => logical::session,
    };
    let mut pg = Backoff::new();
    loop {
        let err = match session(&mut db, alerter, &mut pg, shutdown) {
            Ok(()) => return Ok(()),
            Err(e) if e.is_connection() => e,
            Err(e) => return Err(e),
        };
        warn!("lost PostgreSQL: {err}; reconnecting");
        db = match reconnect(config, &mut pg, alerter, shutdown) {
            Some(db) => db,
            None => return Ok(()),
        };
    }
}

/// How long the loop may go without a tick before `/healthz` calls it stuck: it goes round
/// every [`POLL`], and a reconnect waits at most 10 s between tries.
const STALL_AFTER: Duration = Duration::from_secs(30);

/// Starts the metrics server when an address is configured.
fn serve_metrics(config: &Config) -> Result<Option<Arc<Metrics>>, ListenerError> {
    let Some(addr) = config.metrics_addr else {
        return Ok(None);
    };
    let metrics = Arc::new(Metrics::new(Daemon::Listener));
    metrics.start_listener(config.threshold);
    let probe = Box::new(probe::ListenerProbe::new(config, Arc::clone(&metrics)));
    crate::metrics::server::serve(addr, Arc::clone(&metrics), probe, STALL_AFTER)?;
    Ok(Some(metrics))
}

/// Calls `f` with the metrics, when they are served.
fn metric(alerter: &Alerter, f: impl FnOnce(&Metrics)) {
    if let Some(m) = &alerter.metrics {
        f(m);
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
        metric(alerter, Metrics::tick);
        let (delay, _) = pg.failed();
        if shutdown.sleep(delay.min(RECONNECT_CAP)) {
            return None;
        }
        alerter.flush();
        match connect(config) {
            Ok(db) => return Some(db),
            Err(e) => debug!("still cannot reach PostgreSQL: {e}"),
        }
    }
}

/// Connects, and refuses a server in recovery (a standby): LISTEN works there, but nothing
/// is ever notified (NOTIFY is not replicated) and the advisory lock is that server's own. A
/// multi-host URL without `target_session_attrs` asks for the primary already ([`Db`]); this
/// catches a URL that names a standby, or says `target_session_attrs=any`.
fn connect(config: &Config) -> Result<Db, DbError> {
    let mut db = Db::connect_as(&config.database, APP_NAME)?;
    let standby: bool = db
        .client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .map_err(|e| db.error(e))?
        .get(0);
    if standby {
        return Err(DbError::Connect {
            target: db.target().to_string(),
            reason: "the server is a standby (in recovery), where no change is notified; name \
                     the primary, or list every host with target_session_attrs=read-write"
                .into(),
        });
    }
    Ok(db)
}

/// One connection's life: check the schema (and read the signing key), become the active
/// listener, LISTEN, rate the current count, then rate each signed change a notification
/// announces, checking both servers every [`TICK`].
fn session(
    db: &mut Db,
    alerter: &mut Alerter,
    pg: &mut Backoff,
    shutdown: &Shutdown,
) -> Result<(), ListenerError> {
    let channel = alerter.config.listen_channel.clone();
    let key = check_schema(db, &channel)?;
    let what = format!("channel {channel}");
    if !become_active(db, alerter, &channel, &what, shutdown)? {
        return Ok(());
    }
    db.client
        .batch_execute(&format!("LISTEN {}", quote_ident(&channel)))
        .map_err(|e| db.error(e))?;
    match pg.succeeded() {
        Some(down) => {
            info!(
                "PostgreSQL is back after {:.1} s; listening on channel {channel}",
                down.as_secs_f64()
            );
            metric(alerter, |m| m.reconnected("postgres"));
        }
        None => info!("listening on channel {channel} at {}", db.target()),
    }
    // Mark Redis as seen before rating, so the first tick does not mistake it for emptied.
    alerter.redis_was_emptied();
    let mut seen = rate_current(db, alerter)?;
    alerter.flush();
    let mut last_tick = Instant::now();
    loop {
        metric(alerter, Metrics::tick);
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
                seen = rate_current(db, alerter)?;
                alerter.flush();
            }
        }
        let next = db.client.notifications().timeout_iter(POLL).next();
        match next {
            Ok(Some(n)) => {
                on_payload(alerter, &key, &mut seen, n.payload());
                drain_buffered(db, alerter, &key, &mut seen)?;
            }
            Err(e) => return Err(db.error(e).into()),
            Ok(None) if db.client.is_closed() => {
                return Err(ListenerError::Db(DbError::Connect {
                    target: db.target().to_string(),
                    reason: "connection closed".into(),
                }));
            }
            Ok(None) => {}
        }
    }
}

/// Fails unless the database is migrated and its trigger notifies `channel` (a listener on
/// another channel would hear nothing, silently); returns the trigger's signing key.
fn check_schema(db: &mut Db, channel: &str) -> Result<SigningKey, ListenerError> {
    match db.schema()? {
        Schema::Ready { channel: ours, key } if ours == channel => Ok(key),
        Schema::Ready {
            channel: theirs, ..
        } => Err(ListenerError::Schema(format!(
            "the trigger at {} notifies channel {} but this listener listens on {}: run \
             `items-listen migrate --channel {}` to move the trigger, or set \
             INVENTORY_LISTEN_CHANNEL={}",
            db.target(),
            escape(&theirs),
            escape(channel),
            escape(channel),
            escape(&theirs)
        ))),
        Schema::NotMigrated => Err(ListenerError::Schema(format!(
            "the database at {} is not migrated (or by an older version): run \
             `items-listen migrate` once",
            db.target()
        ))),
    }
}

/// Rates the change a notification announces, if the trigger signed it and it is newer than
/// the last one rated; anything else (forged, replayed, malformed) is shown at debug only.
fn on_payload(alerter: &mut Alerter, key: &SigningKey, seen: &mut i64, text: &str) {
    match payload::verify(text, key) {
        Ok(change) if change.version > *seen => {
            *seen = change.version;
            alerter.on_count(count_of(change.count));
        }
        Ok(change) => {
            debug!(
                "notification of version {} ignored: rated already",
                change.version
            );
            metric(alerter, Metrics::skipped);
        }
        Err(why) => {
            debug!(
                "notification {} ignored: {}",
                escape(&payload::short(text)),
                escape(&why)
            );
            metric(alerter, Metrics::skipped);
        }
    }
}

/// Takes every notification already received, so a burst is queued in one round trip
/// instead of one per notification.
fn drain_buffered(
    db: &mut Db,
    alerter: &mut Alerter,
    key: &SigningKey,
    seen: &mut i64,
) -> Result<(), DbError> {
    let result = {
        let mut notifications = db.client.notifications();
        let mut buffered = notifications.iter();
        loop {
            if alerter.is_full() {
                break Ok(());
            }
            match buffered.next() {
                Ok(Some(n)) => on_payload(alerter, key, seen, n.payload()),
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        }
    };
    result.map_err(|e| db.error(e))
}

/// A stored count as an unsigned number (a negative one would be a corrupted row: 0).
fn count_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Rates the count the trigger keeps, so changes made while we were away are not missed;
/// returns its version, from which the log is read on.
fn rate_current(db: &mut Db, alerter: &mut Alerter) -> Result<i64, DbError> {
    let current = db.current()?;
    let count = count_of(current.count);
    info!(
        "current count is {count} (threshold {})",
        alerter.config.threshold
    );
    alerter.on_count(count);
    Ok(current.version)
}

/// Waits until this process holds the channel's advisory lock; false if asked to stop first.
///
/// The lock belongs to the PostgreSQL session, so when the active listener dies or loses its
/// connection the server releases it and a standby takes over within [`STANDBY_POLL`].
fn become_active(
    db: &mut Db,
    alerter: &Alerter,
    lock: &str,
    what: &str,
    shutdown: &Shutdown,
) -> Result<bool, ListenerError> {
    let key = format!("inventory-broadcast:{lock}");
    let mut waiting_since: Option<Instant> = None;
    loop {
        let row = db
            .client
            .query_one("SELECT pg_try_advisory_lock(hashtext($1))", &[&key])
            .map_err(|e| db.error(e))?;
        if row.get::<_, bool>(0) {
            alerter.set_active(true);
            if let Some(since) = waiting_since {
                info!(
                    "took over as the active listener after {:.1} s on standby",
                    since.elapsed().as_secs_f64()
                );
            }
            return Ok(true);
        }
        if waiting_since.is_none() {
            info!("standby: another items-listen is active on {what}; waiting to take over");
            waiting_since = Some(Instant::now());
            alerter.set_active(false);
        }
        metric(alerter, Metrics::tick);
        if shutdown.sleep(STANDBY_POLL) {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_identifiers() {
        assert_eq!(quote_ident("item_count"), "\"item_count\"");
        assert_eq!(quote_ident("a \"b\"; DROP"), "\"a \"\"b\"\"; DROP\"");
    }
}
