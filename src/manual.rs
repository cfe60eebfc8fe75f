//! `notify`: raise an alert by hand, through the queue, at once (`--sync`), or as a dry run.
//!
//! The broadcast goes out whatever the severity. Slack and email obey the alert policy like
//! the listener's alerts do (so a test run by hand cannot page anyone twice), unless `--force`.

use crate::broadcast;
use crate::config::Config;
use crate::delivery::DeliveryError;
use crate::event::Alert;
use crate::notify::{self, Channel, Message, Notice};
use crate::redis_conn::RedisError;
use crate::service::{self, Dispatcher, People, Plan};
use serde_json::json;
use std::time::Duration;

/// Why a manual alert did not go out.
#[derive(Debug, thiserror::Error)]
pub enum ManualError {
    /// The queue (or the alert policy's state) could not be reached.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// `--sync`: a driver or channel refused or failed; `what` names it.
    #[error("{what}: {source}")]
    Delivery {
        /// `redis driver`, `slack notification`, …
        what: String,
        /// What went wrong.
        source: DeliveryError,
    },
}

/// How the alert is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Push jobs for the worker (the default).
    Queue,
    /// Broadcast through every driver now, without the queue.
    Sync,
    /// Print the event; touch neither Redis nor PostgreSQL.
    DryRun,
}

/// Raises an alert for `count` (any severity, `info` too) and returns what to print.
/// `force` sends to every enabled people channel, bypassing (and not recording in) the policy.
pub fn notify(
    config: &Config,
    count: u64,
    mode: Mode,
    as_json: bool,
    force: bool,
) -> Result<String, ManualError> {
    let alert = service::rate(config, count, "notify");
    let people = if force { People::Force } else { People::Policy };
    match mode {
        Mode::DryRun => Ok(alert.redis_message(&config.broadcast.event)),
        Mode::Sync => sync(config, &alert, people, as_json),
        Mode::Queue => queue(config, &alert, people, as_json),
    }
}

fn sync(
    config: &Config,
    alert: &Alert,
    people: People,
    as_json: bool,
) -> Result<String, ManualError> {
    let timeout = Duration::from_secs(config.queue.timeout);
    let mut sent = Vec::new();
    for driver in &config.broadcast.drivers {
        let mut b = broadcast::build(*driver, &config.broadcast);
        b.broadcast(alert, timeout)
            .map_err(|source| ManualError::Delivery {
                what: format!("{} driver", driver.as_str()),
                source,
            })?;
        sent.push(driver.as_str());
    }
    let notices = sync_notices(config, alert, people)?;
    let mut told = Vec::new();
    for (channel, notice) in &notices {
        notify::build(*channel, &config.notify)
            .send(&Message::new(alert, notice), timeout)
            .map_err(|source| ManualError::Delivery {
                what: format!("{} notification", channel.as_str()),
                source,
            })?;
        told.push(channel.as_str());
    }
    Ok(if as_json {
        json!({"alert": alert, "broadcast": sent, "notified": told}).to_string()
    } else {
        let told = if told.is_empty() {
            String::new()
        } else {
            format!("; notified {}", told.join(", "))
        };
        format!(
            "broadcast count {} ({}, {}% of {}) via {}{told}; alert {}",
            alert.count,
            alert.severity,
            alert.percentage,
            alert.threshold,
            sent.join(", "),
            alert.alert_id
        )
    })
}

/// The messages `--sync` sends itself. Forced ones need no Redis; the policy's do (its state).
fn sync_notices(
    config: &Config,
    alert: &Alert,
    people: People,
) -> Result<Vec<(Channel, Notice)>, ManualError> {
    if service::enabled(config).is_empty() {
        return Ok(Vec::new());
    }
    let mut dispatcher = Dispatcher::connect(config)?;
    Ok(dispatcher.decide_people(alert, people, crate::clock::now())?)
}

fn queue(
    config: &Config,
    alert: &Alert,
    people: People,
    as_json: bool,
) -> Result<String, ManualError> {
    let mut dispatcher = Dispatcher::connect(config)?;
    let plan = Plan {
        broadcast: true,
        people,
    };
    let jobs = dispatcher.dispatch(alert, plan, crate::clock::now())?;
    let queue = &config.queue.names[0];
    Ok(if as_json {
        let ids: Vec<_> = jobs
            .iter()
            .map(|j| json!({"id": j.id, "job": j.job}))
            .collect();
        json!({"alert": alert, "queue": queue, "jobs": ids}).to_string()
    } else {
        let lines: Vec<String> = jobs
            .iter()
            .map(|j| format!("queued job {} ({}) on {queue}", j.id, j.job))
            .collect();
        format!(
            "{}\ncount {} is {} ({}% of {}); alert {}",
            lines.join("\n"),
            alert.count,
            alert.severity,
            alert.percentage,
            alert.threshold,
            alert.alert_id
        )
    })
}
