//! Rate a count, decide what it sets in motion, and dispatch the jobs that deliver it: one
//! broadcast job per driver, and the Slack and email jobs the alert policy lets through.

use crate::config::Config;
use crate::event::Alert;
use crate::notify::policy::{Decision, Policy, State};
use crate::notify::{Channel, Notice, NoticeKind};
use crate::queue::job::Kind;
use crate::queue::recent;
use crate::queue::{Guarded, Job, Queue};
use crate::redis_conn::RedisError;
use std::time::SystemTime;

/// How an alert treats the people channels (Slack, email).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum People {
    /// Ask the alert policy, and record what it decided (the listener, `notify`).
    Policy,
    /// Tell every enabled channel, whatever the policy says, and record nothing
    /// (`notify --force`).
    Force,
    /// Tell no one and record nothing: broadcast only (a count in the middle of a backlog the
    /// logical source catches up on; the policy sees the latest).
    Skip,
}

/// What one alert sets in motion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Queue a broadcast job per driver.
    pub broadcast: bool,
    /// What to do about people.
    pub people: People,
}

/// What people are told (each channel with its notice), and every job pushed.
type Decided = (Vec<(Channel, Notice)>, Vec<Job>);

/// Turns counts into alerts and alerts into queued jobs.
pub struct Dispatcher {
    config: Config,
    queue: Queue,
    host: String,
}

impl Dispatcher {
    /// A dispatcher pushing onto the configured Redis queue.
    pub fn connect(config: &Config) -> Result<Dispatcher, RedisError> {
        Ok(Dispatcher {
            config: config.clone(),
            queue: Queue::connect(&config.redis, &config.queue.prefix)?,
            host: crate::host::name(),
        })
    }

    /// Sets the "Redis still has our data" marker; true when it was missing (first start, or
    /// Redis restarted without persistence or was flushed).
    pub fn claim_marker(&mut self) -> Result<bool, RedisError> {
        self.queue.claim_marker()
    }

    /// Pushes the broadcast jobs of several alerts, in order, in one round trip: the fast
    /// path for a burst of notifications when no people channel (Slack, email) is on.
    pub fn broadcast_all(&mut self, alerts: &[Alert]) -> Result<Vec<Job>, RedisError> {
        let jobs: Vec<Job> = alerts
            .iter()
            .flat_map(|a| jobs_for(&self.config, a))
            .collect();
        let recent = recent::entries(alerts, &jobs);
        self.queue
            .push_with(&self.config.queue.names[0], &jobs, &recent)?;
        Ok(jobs)
    }

    /// Pushes the jobs `plan` asks for. The policy's state and the jobs are written in one
    /// transaction: either both happen or neither, so a failed push is simply tried again
    /// later, and two listeners never both notify. `now` is the policy's clock.
    pub fn dispatch(
        &mut self,
        alert: &Alert,
        plan: Plan,
        now: SystemTime,
    ) -> Result<Vec<Job>, RedisError> {
        let broadcast = if plan.broadcast {
            jobs_for(&self.config, alert)
        } else {
            Vec::new()
        };
        Ok(self.decide(alert, plan.people, now, broadcast, true)?.1)
    }

    /// Decides and records what people are told about `alert`, without queueing anything:
    /// for `notify --sync`, which sends the messages itself.
    pub fn decide_people(
        &mut self,
        alert: &Alert,
        people: People,
        now: SystemTime,
    ) -> Result<Vec<(Channel, Notice)>, RedisError> {
        Ok(self.decide(alert, people, now, Vec::new(), false)?.0)
    }

    fn decide(
        &mut self,
        alert: &Alert,
        people: People,
        now: SystemTime,
        broadcast: Vec<Job>,
        queue_notices: bool,
    ) -> Result<Decided, RedisError> {
        let name = self.config.queue.names[0].clone();
        let channels = enabled(&self.config);
        let resolve_below = self.config.notify.resolve_below.limit(alert.threshold);
        let host = &self.host;
        let queue = &self.config.queue;
        // Records one message for people: returned, and queued as a job unless --sync.
        let tell = |g: &mut Guarded<Vec<(Channel, Notice)>>, channel: Channel, kind, previous| {
            let notice = Notice {
                kind,
                previous,
                resolve_below,
                host: host.clone(),
            };
            if queue_notices {
                let job = Job::new(
                    Kind::Notify(channel),
                    alert.clone(),
                    queue.tries,
                    queue.backoff.clone(),
                    queue.timeout,
                );
                g.jobs.push(job.with_notice(notice.clone()));
            }
            g.value.push((channel, notice));
        };
        if people != People::Policy || channels.is_empty() {
            let mut g = Guarded {
                writes: Vec::new(),
                jobs: broadcast,
                recent: Vec::new(),
                value: Vec::new(),
            };
            if people == People::Force {
                for (channel, _) in &channels {
                    tell(&mut g, *channel, NoticeKind::Manual, None);
                }
            }
            let recent = recent::entries(std::slice::from_ref(alert), &g.jobs);
            self.queue.push_with(&name, &g.jobs, &recent)?;
            return Ok((g.value, g.jobs));
        }
        let keys = self.queue.keys(&name);
        let keys: Vec<String> = channels
            .iter()
            .map(|(c, _)| keys.alert_state(c.as_str()))
            .collect();
        let now_ms = crate::clock::unix_ms(now);
        // Runs again, from scratch, whenever another process changed the state meanwhile.
        let decide = |values: &[Option<String>]| {
            let mut g = Guarded {
                writes: Vec::new(),
                jobs: broadcast.clone(),
                recent: Vec::new(),
                value: Vec::new(),
            };
            for (((channel, policy), key), raw) in channels.iter().zip(&keys).zip(values) {
                let previous = raw.as_deref().and_then(parse_state);
                let unreadable = raw.is_some() && previous.is_none();
                let (decision, next) = policy.decide(previous, alert.count, alert.severity, now_ms);
                if next != previous || unreadable {
                    let value = next.map(|s| serde_json::to_string(&s).unwrap_or_default());
                    g.writes.push((key.clone(), value));
                }
                match decision {
                    Decision::Quiet => {}
                    Decision::Raise { previous } => {
                        tell(&mut g, *channel, NoticeKind::Raised, previous);
                    }
                    Decision::Repeat => tell(&mut g, *channel, NoticeKind::Repeated, None),
                    Decision::Resolve { was } => {
                        tell(&mut g, *channel, NoticeKind::Resolved, Some(was));
                    }
                }
            }
            g.recent = recent::entries(std::slice::from_ref(alert), &g.jobs);
            g
        };
        let applied = self.queue.push_guarded(&name, &keys, decide)?;
        Ok((applied.value, applied.jobs))
    }
}

/// A stored state; an unreadable one (written by hand, or by an incompatible version) counts
/// as "no alert open", which at worst sends one message too many: never one too few.
fn parse_state(raw: &str) -> Option<State> {
    let state = serde_json::from_str(raw);
    if state.is_err() {
        log::warn!("ignoring unreadable alert state {raw:?}");
    }
    state.ok()
}

/// Rates `count` against the configured threshold and boundaries. The listener and the
/// benchmark both rate through here; whether an alert is worth dispatching is the caller's
/// call (below the minimum severity it may still resolve an alert people were told about).
pub fn rate(config: &Config, count: u64, source: &str) -> Alert {
    Alert::new(count, config.threshold, &config.boundaries, source)
}

/// The people channels that are switched on, each with its policy.
pub fn enabled(config: &Config) -> Vec<(Channel, Policy)> {
    let n = &config.notify;
    Channel::ALL
        .into_iter()
        .filter_map(|channel| {
            let min_severity = channel.min_severity(n)?;
            let policy = Policy {
                min_severity,
                repeat_interval: n.repeat_interval,
                resolve_below: n.resolve_below.limit(config.threshold),
            };
            Some((channel, policy))
        })
        .collect()
}

/// The jobs that deliver `alert`: one per driver, so a slow driver never delays another.
pub fn jobs_for(config: &Config, alert: &Alert) -> Vec<Job> {
    let q = &config.queue;
    config
        .broadcast
        .drivers
        .iter()
        .map(|d| {
            let kind = Kind::Broadcast(*d);
            Job::new(kind, alert.clone(), q.tries, q.backoff.clone(), q.timeout)
        })
        .collect()
}
