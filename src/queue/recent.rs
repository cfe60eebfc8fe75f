//! The last alerts dispatched, newest first, in a capped Redis list beside the first queue:
//! the dashboard's "recent alerts". Written with the jobs, in the same round trip.

use super::Queue;
use crate::event::Alert;
use crate::queue::Job;
use crate::redis_conn::RedisError;
use serde::{Deserialize, Serialize};

/// How many alerts the list keeps.
pub const KEEP: usize = 50;

/// One dispatched alert, as the dashboard lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecentAlert {
    /// When it was dispatched, Unix time in ms.
    pub time_ms: u64,
    /// The item count.
    pub count: u64,
    /// Its rating.
    pub severity: String,
    /// `count / threshold` in percent.
    pub percentage: f64,
    /// The alert's id (as in the event).
    pub alert_id: String,
    /// The kinds of the jobs it was dispatched as (`broadcast:redis`, `notify:slack`, …).
    pub jobs: Vec<String>,
}

impl RecentAlert {
    /// The entry for `alert`, dispatched now as the jobs among `jobs` that carry it.
    pub fn new(alert: &Alert, jobs: &[Job]) -> RecentAlert {
        RecentAlert {
            time_ms: crate::clock::now_ms(),
            count: alert.count,
            severity: alert.severity.to_string(),
            percentage: alert.percentage,
            alert_id: alert.alert_id.to_string(),
            jobs: jobs
                .iter()
                .filter(|j| j.payload.alert_id == alert.alert_id)
                .map(|j| j.job.to_string())
                .collect(),
        }
    }
}

/// Adds `alerts` (oldest first) to the list at `key` in `pipe`, keeping the newest [`KEEP`].
pub(super) fn add_to(pipe: &mut redis::Pipeline, key: &str, alerts: &[RecentAlert]) {
    let entries: Vec<String> = alerts
        .iter()
        .filter_map(|a| serde_json::to_string(a).ok())
        .collect();
    if entries.is_empty() {
        return;
    }
    pipe.cmd("LPUSH").arg(key).arg(&entries).ignore();
    pipe.cmd("LTRIM").arg(key).arg(0).arg(KEEP - 1).ignore();
}

/// The recent-list entries of `alerts` that went out as some of `jobs`.
pub fn entries(alerts: &[Alert], jobs: &[Job]) -> Vec<RecentAlert> {
    alerts
        .iter()
        .map(|a| RecentAlert::new(a, jobs))
        .filter(|r| !r.jobs.is_empty())
        .collect()
}

impl Queue {
    /// Queue `name`'s recent alerts, newest first; unreadable entries are skipped.
    pub fn recent(&mut self, name: &str) -> Result<Vec<RecentAlert>, RedisError> {
        let key = self.keys(name).recent();
        let raw: Vec<String> = self.on(&key, |con| {
            redis::cmd("LRANGE")
                .arg(&key)
                .arg(0)
                .arg(KEEP - 1)
                .query(con)
        })?;
        Ok(raw
            .iter()
            .filter_map(|r| serde_json::from_str(r).ok())
            .collect())
    }
}
