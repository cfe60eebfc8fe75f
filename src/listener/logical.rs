//! The logical source: counts from the write-ahead log through a replication slot, with
//! nothing in the writers' commits. Changes are streamed over a replication connection
//! ([`ReplicationConnection`]), so the server decodes each WAL record once. Each step takes
//! the transactions that arrived together, rates every transaction's count in commit order and
//! queues the alerts; the count is saved and the position confirmed after that, once the
//! stream is [`QUIET`] and every [`SAVE_EVERY`] while it is not, so a listener killed at any
//! point loses nothing and repeats at most the alerts sent since its last save.
//!
//! The people policy (Slack, email) sees the latest count of each step; the counts before it
//! are broadcast only. Live, a step covers what arrived at once (a few milliseconds); after
//! the listener was away it covers up to [`MAX_STEP`] transactions of what it missed, so a
//! rise and a fall meanwhile are broadcast in order but not both paged as new.

use super::alerter::Alerter;
use super::{ListenerError, become_active, count_of, metric};
use crate::backoff::Backoff;
use crate::config::Config;
use crate::db::Db;
use crate::db::logical::{SEEN_EVERY, SLOT_BUSY_WAIT, SetupError, State, Txn, format_lsn};
use crate::db::replication::{Event, ReplicationConnection};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use log::{debug, info, warn};
use std::time::{Duration, Instant};

/// How often Redis is checked for having lost its data.
const TICK: Duration = Duration::from_secs(1);

fn setup(e: SetupError) -> ListenerError {
    match e {
        SetupError::Db(e) => ListenerError::Db(e),
        other => ListenerError::Schema(other.to_string()),
    }
}

/// One connection's life with the logical source.
pub(super) fn session(
    db: &mut Db,
    alerter: &mut Alerter,
    pg: &mut Backoff,
    shutdown: &Shutdown,
) -> Result<(), ListenerError> {
    let slot = alerter.config.slot.clone();
    let Some(mut state) = prepare(db, alerter, pg, shutdown, &slot)? else {
        return Ok(());
    };
    let mut stream: Option<ReplicationConnection> = None;
    let mut saved = state.clone();
    let mut last_tick = Instant::now();
    let mut last_seen = Instant::now();
    let mut last_save = Instant::now();
    loop {
        metric(alerter, Metrics::tick);
        if shutdown.requested() {
            // What went out is saved, so a restart does not repeat it.
            if let Some(reading) = stream.as_mut().filter(|_| saved != state) {
                save(reading, db, &slot, &state, &mut saved)?;
            }
            return Ok(());
        }
        if last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            if alerter.redis_was_emptied() {
                info!("Redis came back empty; re-rating the current count");
                alerter.on_count(count_of(state.count));
            }
            alerter.flush();
        }
        // Nothing is read while Redis is away: a step is confirmed only once every alert it
        // rated is queued, so it must start with Redis at hand.
        if !alerter.redis_ready() {
            alerter.discard();
            shutdown.sleep(WAIT);
            continue;
        }
        let reading = match stream.as_mut() {
            Some(s) => s,
            None => stream.insert(open(&alerter.config, &slot, state.lsn, shutdown)?),
        };
        // With something unsaved, a short quiet is enough to save it: live, each change is
        // saved within QUIET of its alert; streaming, every SAVE_EVERY.
        let first_wait = if saved != state { QUIET } else { WAIT };
        let txns = read_step(reading, first_wait)?;
        if txns.is_empty() {
            if saved != state {
                save(reading, db, &slot, &state, &mut saved)?;
                last_save = Instant::now();
                last_seen = last_save;
            }
            caught_up(reading, db, &slot, &mut last_seen)?;
            continue;
        }
        let (next, rated) = apply(&state, &txns, alerter);
        alerter.flush();
        if !alerter.flushed() {
            // Redis went away mid-step: forget these alerts, and read the step again from
            // the confirmed position once it is back.
            alerter.discard();
            stream = None;
            continue;
        }
        debug!(
            "slot {slot}: {rated} change(s) rated up to {}",
            format_lsn(next.lsn)
        );
        state = next;
        if last_save.elapsed() >= SAVE_EVERY {
            save(reading, db, &slot, &state, &mut saved)?;
            last_save = Instant::now();
            last_seen = last_save;
        }
    }
}

/// How often the count is saved and the position confirmed while changes stream in: a
/// durable write per step would cost the server a commit per step. A listener killed in
/// between repeats at most the alerts of this long.
const SAVE_EVERY: Duration = Duration::from_millis(100);
/// How long the stream must be quiet before what went out is saved.
const QUIET: Duration = Duration::from_millis(10);

/// Saves `state` (when its count changed since `saved`) and then confirms its position to
/// the server: the slot never moves past a count that is not saved.
fn save(
    stream: &mut ReplicationConnection,
    db: &mut Db,
    slot: &str,
    state: &State,
    saved: &mut State,
) -> Result<(), ListenerError> {
    if state.count != saved.count {
        db.save_state(slot, Some(state), false)?;
    }
    stream.confirm(state.lsn)?;
    *saved = state.clone();
    Ok(())
}

/// Checks the server, becomes the active listener, and reads the confirmed state (a slot
/// the server invalidated is recreated); announces a count never rated. `None` when a stop
/// came while on standby.
fn prepare(
    db: &mut Db,
    alerter: &mut Alerter,
    pg: &mut Backoff,
    shutdown: &Shutdown,
    slot: &str,
) -> Result<Option<State>, ListenerError> {
    db.check_logical().map_err(setup)?;
    // Active first: a standby must read the state its predecessor left, not the one from
    // before it waited.
    if !become_active(db, alerter, slot, &format!("slot {slot}"), shutdown)? {
        return Ok(None);
    }
    let not_set_up = |db: &Db| setup(SetupError::NotSetUp(db.target().to_string(), slot.into()));
    match db.slot_wal_status(slot).map_err(setup)? {
        None => return Err(not_set_up(db)),
        Some(status) if status == "lost" => {
            warn!(
                "replication slot {slot} was invalidated: the server removed WAL it still \
                 needed (max_slot_wal_keep_size). Recreating it and re-rating the current \
                 count; the changes made in between are not broadcast one by one"
            );
            db.create_slot(slot).map_err(setup)?;
        }
        Some(_) => {}
    }
    let Some(mut state) = db.logical_state(slot)? else {
        return Err(not_set_up(db));
    };
    match pg.succeeded() {
        Some(down) => info!(
            "PostgreSQL is back after {:.1} s; reading changes from slot {slot}",
            down.as_secs_f64()
        ),
        None => info!("reading changes from slot {slot} at {}", db.target()),
    }
    alerter.redis_was_emptied();
    // Nothing already confirmed is re-rated at start: the slot holds every change since the
    // last confirmed step, which the first step reads, and that step's alerts went out. Only
    // a count never announced (a slot just set up, or recreated) is rated now.
    if !state.announced {
        alerter.on_count(count_of(state.count));
        alerter.flush();
        if alerter.flushed() {
            db.announced(slot)?;
            state.announced = true;
        }
    }
    Ok(Some(state))
}

/// How long a read waits for the first change of a step (and so how soon a stop is seen).
const WAIT: Duration = Duration::from_millis(200);
/// Most transactions in one step: bounds the alerts held before they are queued.
const MAX_STEP: usize = 10_000;

/// Connects a replication session and starts streaming the slot after `lsn`. A listener
/// killed a moment ago may still hold the slot: that is waited out a few seconds.
fn open(
    config: &Config,
    slot: &str,
    lsn: u64,
    shutdown: &Shutdown,
) -> Result<ReplicationConnection, ListenerError> {
    let deadline = Instant::now() + SLOT_BUSY_WAIT;
    loop {
        let mut stream = ReplicationConnection::connect(&config.database, super::APP_NAME)?;
        match stream.start(slot, lsn, slot) {
            Ok(()) => return Ok(stream),
            Err(e) if e.to_string().contains("55006") && Instant::now() < deadline => {
                debug!("slot {slot} is still held by another session; waiting: {e}");
                if shutdown.sleep(Duration::from_millis(200)) {
                    return Err(e.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The transactions that arrived together: waits up to `first` for the first change, then
/// takes what is already there, always up to a commit, at most [`MAX_STEP`].
fn read_step(
    stream: &mut ReplicationConnection,
    first: Duration,
) -> Result<Vec<Txn>, ListenerError> {
    let mut txns = Vec::new();
    let mut open: Option<Txn> = None;
    let mut wait = first;
    loop {
        let event = match stream.next(wait)? {
            Some(event) => event,
            // A transaction arrives whole (pgoutput sends it at its commit): wait for its end.
            None if open.is_some() => continue,
            None => break,
        };
        match (event, open.as_mut()) {
            (Event::Begin { xid }, _) => {
                open = Some(Txn {
                    xid,
                    commit_lsn: 0,
                    truncated: false,
                    delta: 0,
                });
            }
            (Event::Insert, Some(t)) => t.delta += 1,
            (Event::Delete, Some(t)) => t.delta -= 1,
            (Event::Truncate, Some(t)) => {
                t.truncated = true;
                t.delta = 0;
            }
            (Event::Commit { end_lsn, .. }, Some(_)) => {
                if let Some(mut t) = open.take() {
                    t.commit_lsn = end_lsn;
                    txns.push(t);
                }
            }
            // A change outside a transaction does not happen in pgoutput; ignore it.
            (_, None) => {}
        }
        // Inside a transaction, wait for the rest of it; between them, take only what is
        // there already.
        wait = if open.is_some() { WAIT } else { Duration::ZERO };
        if open.is_none() && txns.len() >= MAX_STEP {
            break;
        }
    }
    Ok(txns)
}

/// Nothing new for `items`: confirm the server's WAL end, so the slot does not hold the WAL
/// other tables write; and tell `slot status` now and then that the listener is caught up.
fn caught_up(
    stream: &mut ReplicationConnection,
    db: &mut Db,
    slot: &str,
    last_seen: &mut Instant,
) -> Result<(), ListenerError> {
    if stream.wal_end() > stream.confirmed() {
        stream.confirm(stream.wal_end())?;
    }
    if last_seen.elapsed() >= SEEN_EVERY {
        db.save_state(slot, None, true)?;
        *last_seen = Instant::now();
    }
    Ok(())
}

/// Applies `txns` (in commit order) to `state` and rates each resulting count; the last one
/// goes through the people policy too. Returns the new state and how many were rated.
fn apply(state: &State, txns: &[Txn], alerter: &mut Alerter) -> (State, usize) {
    let mut next = state.clone();
    let mut counts = Vec::new();
    for t in txns {
        if t.commit_lsn <= next.lsn {
            continue; // confirmed already (the state row is ahead of the slot)
        }
        let saw = next
            .snapshot
            .as_ref()
            .is_some_and(|s| t.commit_lsn <= s.lsn && s.saw(t.xid));
        next.lsn = t.commit_lsn;
        if saw || (!t.truncated && t.delta == 0) {
            continue; // in the starting count already, or no change to the count
        }
        next.count = if t.truncated {
            t.delta
        } else {
            next.count + t.delta
        };
        counts.push(next.count);
    }
    let last = counts.len().saturating_sub(1);
    for (i, count) in counts.iter().enumerate() {
        alerter.on_count_for(count_of(*count), i == last);
    }
    (next, counts.len())
}
