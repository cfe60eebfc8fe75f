//! Per-minute counters of each queue (jobs done, failed, retried, and their run time), kept
//! in Redis for two hours so the dashboard's chart covers every worker and survives its own
//! restart. Workers add to them in the same script call that finishes a batch, so they cost
//! no extra round trip.

use super::Queue;
use crate::redis_conn::RedisError;
use serde::Serialize;

/// How long a minute's counters are kept (the chart shows the last hour).
pub const KEEP_MINUTES: u64 = 120;

/// What a batch (or a minute) of one queue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Jobs that ran to completion.
    pub done: u64,
    /// Jobs recorded in `failed_jobs`.
    pub failed: u64,
    /// Attempts that failed and were released for a retry.
    pub retried: u64,
    /// Run time of all of them, in ms.
    pub runtime_ms: u64,
}

impl Tally {
    /// The script's first four arguments.
    pub(super) fn args(&self) -> [u64; 4] {
        [self.done, self.failed, self.retried, self.runtime_ms]
    }
}

/// The minute `now_ms` falls in, as counted since the Unix epoch.
pub fn minute_of(now_ms: u64) -> u64 {
    now_ms / 60_000
}

impl Queue {
    /// Queue `name`'s counters for the `count` minutes up to and including `last`, oldest
    /// first; a minute nothing happened in is all zeros. One round trip: the keys share the
    /// queue's hash tag.
    pub fn throughput(
        &mut self,
        name: &str,
        last: u64,
        count: u64,
    ) -> Result<Vec<Tally>, RedisError> {
        let k = self.keys(name);
        let first = last.saturating_sub(count.saturating_sub(1));
        let minutes: Vec<u64> = (first..=last).collect();
        let rows: Vec<Vec<Option<u64>>> = self.on(&k.pending, |con| {
            let mut pipe = redis::pipe();
            for m in &minutes {
                pipe.cmd("HMGET").arg(k.stats(*m)).arg(&[
                    "done",
                    "failed",
                    "retried",
                    "runtime_ms",
                ]);
            }
            pipe.query(con)
        })?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let at = |i: usize| row.get(i).copied().flatten().unwrap_or(0);
                Tally {
                    done: at(0),
                    failed: at(1),
                    retried: at(2),
                    runtime_ms: at(3),
                }
            })
            .collect())
    }
}
