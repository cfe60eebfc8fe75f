//! The logical source: counts from the write-ahead log through a replication slot, with
//! nothing in the writers' commits. Each step reads what committed since the confirmed
//! position ([`Db::peek_changes`], one row per transaction), rates every transaction's count
//! in commit order, queues the alerts, and only then confirms the position, so a listener
//! killed at any point loses nothing and repeats at most the alerts of its last step.
//!
//! The people policy (Slack, email) sees the latest count of each step; the counts before it
//! are broadcast only. Live, a step covers a few milliseconds; after the listener was away it
//! covers everything it missed, so a rise and a fall meanwhile are broadcast in order but not
//! both paged as new.

use super::alerter::Alerter;
use super::{ListenerError, become_active, count_of, metric};
use crate::backoff::Backoff;
use crate::db::Db;
use crate::db::logical::{SEEN_EVERY, STEP_CHANGES, SetupError, State, Statements, Txn};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use log::{debug, info, warn};
use std::time::{Duration, Instant};

/// The first pause after a step found nothing new; it doubles up to [`MAX_POLL`]. A change
/// waits on average half the pause before it is read: this bounds the latency an idle
/// listener adds, at the price of one cheap query (`pg_current_wal_flush_lsn()`) per pause.
const MIN_POLL: Duration = Duration::from_millis(1);
const MAX_POLL: Duration = Duration::from_millis(4);
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
    db.check_logical().map_err(setup)?;
    // Active first: a standby must read the state its predecessor left, not the one from
    // before it waited.
    if !become_active(db, alerter, &slot, &format!("slot {slot}"), shutdown)? {
        return Ok(());
    }
    let target = db.target().to_string();
    let not_set_up = || setup(SetupError::NotSetUp(target.clone(), slot.clone()));
    match db.slot_wal_status(&slot).map_err(setup)? {
        None => return Err(not_set_up()),
        Some(status) if status == "lost" => {
            warn!(
                "replication slot {slot} was invalidated: the server removed WAL it still \
                 needed (max_slot_wal_keep_size). Recreating it and re-rating the current \
                 count; the changes made in between are not broadcast one by one"
            );
            db.create_slot(&slot).map_err(setup)?;
        }
        Some(_) => {}
    }
    let Some(mut state) = db.logical_state(&slot)? else {
        return Err(not_set_up());
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
            db.announced(&slot)?;
            state.announced = true;
        }
    }
    let mut reader = Reader {
        statements: db.logical_statements()?,
        slot,
        last_flushed: 0,
        pause: MIN_POLL,
        last_tick: Instant::now(),
        last_seen: Instant::now(),
    };
    loop {
        metric(alerter, Metrics::tick);
        if shutdown.requested() {
            return Ok(());
        }
        if reader.last_tick.elapsed() >= TICK {
            reader.last_tick = Instant::now();
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
            shutdown.sleep(MAX_POLL);
            continue;
        }
        if !reader.step(db, alerter, &mut state)? {
            shutdown.sleep(reader.pause);
            reader.pause = (reader.pause * 2).min(MAX_POLL);
        } else {
            reader.pause = MIN_POLL;
        }
    }
}

/// Where the reading stands.
struct Reader {
    statements: Statements,
    slot: String,
    /// The WAL position the last step read up to.
    last_flushed: u64,
    /// The pause before the next look.
    pause: Duration,
    last_tick: Instant,
    /// When the state row was last told the listener is caught up.
    last_seen: Instant,
}

impl Reader {
    /// Reads, rates, queues and confirms one step; false when there was nothing new.
    fn step(
        &mut self,
        db: &mut Db,
        alerter: &mut Alerter,
        state: &mut State,
    ) -> Result<bool, ListenerError> {
        let flushed = db.flushed_lsn(&self.statements)?;
        if flushed == self.last_flushed {
            return Ok(false);
        }
        let txns = db.peek_changes(&self.statements, &self.slot)?;
        let (next, rated) = apply(state, &txns, alerter);
        alerter.flush();
        if !alerter.flushed() {
            // Redis is down: forget them; they are read again from the confirmed position.
            alerter.discard();
            return Ok(true);
        }
        let changes: i64 = txns.iter().map(|t| t.changes).sum();
        // A step that read everything (not cut at STEP_CHANGES) covers all WAL up to
        // `flushed`: the slot may move there even when no transaction touched `items`.
        let upto = if changes < i64::from(STEP_CHANGES) {
            flushed.max(next.lsn)
        } else {
            next.lsn
        };
        // The state row changes with the count only: a position alone is the slot's to keep
        // (and writing it would be WAL to decode, forever).
        let changed = next.count != state.count;
        let seen = self.last_seen.elapsed() >= SEEN_EVERY;
        db.confirm(&self.slot, upto, changed.then_some(&next), seen)?;
        if changed || seen {
            self.last_seen = Instant::now();
        }
        if rated > 0 {
            debug!("slot {}: {rated} change(s) rated", self.slot);
        }
        *state = next;
        self.last_flushed = if changes < i64::from(STEP_CHANGES) {
            flushed
        } else {
            0
        };
        Ok(true)
    }
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
