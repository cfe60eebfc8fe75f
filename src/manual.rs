//! `notify`: raise an alert by hand, through the queue, at once (`--sync`), or as a dry run.

use crate::broadcast;
use crate::config::Config;
use crate::event::Alert;
use crate::service::Dispatcher;
use serde_json::json;
use std::time::Duration;

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
pub fn notify(config: &Config, count: u64, mode: Mode, as_json: bool) -> anyhow::Result<String> {
    let alert = Alert::new(count, config.threshold, &config.boundaries, "notify");
    match mode {
        Mode::DryRun => Ok(alert.redis_message(&config.broadcast.event)),
        Mode::Sync => sync(config, &alert, as_json),
        Mode::Queue => queue(config, &alert, as_json),
    }
}

fn sync(config: &Config, alert: &Alert, as_json: bool) -> anyhow::Result<String> {
    let mut sent = Vec::new();
    for driver in &config.broadcast.drivers {
        let mut b = broadcast::build(*driver, &config.broadcast);
        b.broadcast(alert, Duration::from_secs(config.queue.timeout))
            .map_err(|e| anyhow::anyhow!("{} driver: {e}", driver.as_str()))?;
        sent.push(driver.as_str());
    }
    Ok(if as_json {
        json!({"alert": alert, "broadcast": sent}).to_string()
    } else {
        format!(
            "broadcast count {} ({}, {}% of {}) via {}; alert {}",
            alert.count,
            alert.severity,
            alert.percentage,
            alert.threshold,
            sent.join(", "),
            alert.alert_id
        )
    })
}

fn queue(config: &Config, alert: &Alert, as_json: bool) -> anyhow::Result<String> {
    let mut dispatcher = Dispatcher::connect(config)?;
    let jobs = dispatcher.dispatch(alert)?;
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
