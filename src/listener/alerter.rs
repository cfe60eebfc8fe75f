//! The listener's alerter: rates counts and gets their alerts onto the queue, surviving Redis
//! outages (while Redis is down only the latest alert is kept, and it is dispatched once
//! Redis is back).

use crate::backoff::Backoff;
use crate::config::Config;
use crate::event::{Alert, MAX_COUNT};
use crate::heartbeat::Heartbeat;
use crate::metrics::Metrics;
use crate::queue::registry::{ListenerInfo, ListenerState};
use crate::redis_conn::RedisError;
use crate::service::{self, Dispatcher, People, Plan};
use log::{debug, info, warn};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// Most alerts queued in one round trip. Notifications that arrive together are queued
/// together; while Redis is down only the latest one is kept (bounded memory).
pub(super) const MAX_BATCH: usize = 1000;

/// Rates counts and gets their alerts onto the queue.
pub(super) struct Alerter {
    pub(super) config: Config,
    dispatcher: Option<Dispatcher>,
    /// Alerts not yet queued, oldest first.
    pending: VecDeque<Alert>,
    /// Those of `pending` the people policy is not asked about (broadcast only).
    quiet: HashSet<uuid::Uuid>,
    /// True when a people channel (Slack, email) is on: then every count goes through the
    /// alert policy, even below the broadcast minimum, since it may resolve an alert.
    people: bool,
    redis: Backoff,
    retry_at: Instant,
    /// Recorded when `--metrics-addr` serves them.
    pub(super) metrics: Option<Arc<Metrics>>,
    /// Tells `status` and the dashboard this listener runs, and whether it is active.
    pub(super) heartbeat: Option<Heartbeat<ListenerInfo>>,
}

impl Alerter {
    pub(super) fn new(config: &Config, dispatcher: Dispatcher) -> Alerter {
        Alerter {
            config: config.clone(),
            dispatcher: Some(dispatcher),
            pending: VecDeque::new(),
            quiet: HashSet::new(),
            people: !service::enabled(config).is_empty(),
            redis: Backoff::new(),
            retry_at: Instant::now(),
            metrics: None,
            heartbeat: None,
        }
    }

    /// Records whether this listener is the active one (metrics and heartbeat).
    pub(super) fn set_active(&self, active: bool) {
        if let Some(m) = &self.metrics {
            m.set_active(active);
        }
        if let Some(h) = &self.heartbeat {
            let state = if active {
                ListenerState::Active
            } else {
                ListenerState::Standby
            };
            h.update_now(|info| info.state = state);
        }
    }

    /// True when as many alerts wait as one round trip takes.
    pub(super) fn is_full(&self) -> bool {
        self.pending.len() >= MAX_BATCH
    }

    /// Rates `count` and keeps its alert for the next [`Alerter::flush`].
    pub(super) fn on_count(&mut self, count: u64) {
        self.on_count_for(count, true);
    }

    /// True when every alert rated so far is queued.
    pub(super) fn flushed(&self) -> bool {
        self.pending.is_empty()
    }

    /// Forgets the alerts not queued yet (the logical source reads them again later).
    pub(super) fn discard(&mut self) {
        self.pending.clear();
        self.quiet.clear();
    }

    /// True when Redis is connected (connecting now if it was away and a try is due).
    pub(super) fn redis_ready(&mut self) -> bool {
        if self.dispatcher.is_some() {
            return true;
        }
        if Instant::now() < self.retry_at {
            return false;
        }
        match Dispatcher::connect(&self.config) {
            Ok(d) => {
                self.dispatcher = Some(d);
                if let Some(down) = self.redis.succeeded() {
                    info!("Redis is back after {:.1} s", down.as_secs_f64());
                    self.redis_back();
                }
                true
            }
            Err(e) => {
                self.redis_failed(&e);
                false
            }
        }
    }

    /// [`Alerter::on_count`]; with `people` false the alert is broadcast only, and the people
    /// policy is not asked about it.
    pub(super) fn on_count_for(&mut self, count: u64, people: bool) {
        if count > MAX_COUNT {
            warn!(
                "count {count} is above {MAX_COUNT} (2^53 - 1), the largest a browser's JSON \
                 number holds exactly: not rated"
            );
            return;
        }
        let alert = service::rate(&self.config, count, "items-listen");
        if let Some(m) = &self.metrics {
            m.rated(&alert);
        }
        let redis_down = self.dispatcher.is_none();
        if redis_down {
            // Only the latest state matters after an outage.
            self.pending.clear();
            self.quiet.clear();
        }
        // Below the minimum, a count is not broadcast, but it may still resolve an alert that
        // people were told about, so the policy sees every count once Slack or email is on.
        if alert.severity < self.config.min_severity && !(self.people && people) {
            debug!(
                "count {count} is {} ({}%): below the alert minimum",
                alert.severity, alert.percentage
            );
            return;
        }
        if !people {
            self.quiet.insert(alert.alert_id);
        }
        self.pending.push_back(alert);
    }

    /// Queues the pending alerts in one round trip, if Redis is (back) up.
    pub(super) fn flush(&mut self) {
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
                    self.redis_back();
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
    pub(super) fn redis_was_emptied(&mut self) -> bool {
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
                    self.redis_back();
                }
                newly_set
            }
            Err(e) => {
                self.redis_failed(&e);
                false
            }
        }
    }

    fn redis_back(&self) {
        if let Some(m) = &self.metrics {
            m.reconnected("redis");
        }
    }

    fn redis_failed(&mut self, e: &RedisError) {
        self.dispatcher = None;
        let (delay, first) = self.redis.failed();
        self.retry_at = Instant::now() + delay;
        if first {
            warn!("lost Redis: {e}; keeping the latest alert until it is back");
        }
    }

    fn try_dispatch(&mut self) -> Result<(), RedisError> {
        let dispatcher = match &mut self.dispatcher {
            Some(d) => d,
            None => self.dispatcher.insert(Dispatcher::connect(&self.config)?),
        };
        if !self.people {
            let alerts = self.pending.make_contiguous();
            let jobs = dispatcher.broadcast_all(alerts)?;
            let per_alert = jobs.len() / alerts.len().max(1);
            self.quiet.clear();
            for alert in self.pending.drain(..) {
                let (alert_id, severity) = (alert.alert_id.to_string(), alert.severity.as_str());
                info!(
                    count = alert.count, severity = severity, alert_id = alert_id.as_str();
                    "count {} is {} ({}% of {}): dispatched {per_alert} job(s), alert {}",
                    alert.count, alert.severity, alert.percentage, alert.threshold, alert.alert_id
                );
            }
            return Ok(());
        }
        // The people policy decides per alert, each in its own transaction; an alert leaves
        // `pending` only once its transaction went through.
        while let Some(alert) = self.pending.front() {
            let quiet = self.quiet.contains(&alert.alert_id);
            let plan = Plan {
                broadcast: alert.severity >= self.config.min_severity,
                people: if quiet { People::Skip } else { People::Policy },
            };
            let jobs = dispatcher.dispatch(alert, plan, crate::clock::now())?;
            if jobs.is_empty() {
                debug!(
                    "count {} is {} ({}%): nothing to send",
                    alert.count, alert.severity, alert.percentage
                );
            } else {
                let kinds: Vec<String> = jobs.iter().map(|j| j.job.to_string()).collect();
                let (alert_id, severity) = (alert.alert_id.to_string(), alert.severity.as_str());
                info!(
                    count = alert.count, severity = severity, alert_id = alert_id.as_str();
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
            if let Some(done) = self.pending.pop_front() {
                self.quiet.remove(&done.alert_id);
            }
        }
        Ok(())
    }
}
