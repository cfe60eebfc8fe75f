//! What `status` and the metrics read about a queue: its sizes, the job at its head, and how
//! long that job has waited.

use super::{Job, Queue};
use crate::redis_conn::RedisError;

/// Counts of one queue, for `status` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Sizes {
    /// Ready to run.
    pub pending: u64,
    /// Waiting for a retry.
    pub delayed: u64,
    /// Being run (or their worker died and `retry_after` has not passed).
    pub reserved: u64,
}

impl Queue {
    /// Pending, delayed and reserved counts of queue `name`.
    pub fn sizes(&mut self, name: &str) -> Result<Sizes, RedisError> {
        let k = self.keys(name);
        let (pending, delayed, reserved): (u64, u64, u64) = self.on(&k.pending, |con| {
            redis::pipe()
                .llen(&k.pending)
                .zcard(&k.delayed)
                .zcard(&k.reserved)
                .query(con)
        })?;
        Ok(Sizes {
            pending,
            delayed,
            reserved,
        })
    }

    /// The job at the head of queue `name`'s pending list (the next to run), if any.
    pub fn head(&mut self, name: &str) -> Result<Option<Vec<u8>>, RedisError> {
        let k = self.keys(name);
        self.on(&k.pending, |con| {
            redis::cmd("LINDEX").arg(&k.pending).arg(0).query(con)
        })
    }

    /// Seconds since the job at the head of queue `name`'s pending list was created; `None`
    /// when nothing is pending or the head is not a readable job.
    pub fn oldest_pending_age(
        &mut self,
        name: &str,
        now: time::OffsetDateTime,
    ) -> Result<Option<f64>, RedisError> {
        Ok(self.head(name)?.and_then(|raw| age_of(&raw, now)))
    }
}

/// Seconds since the job in `raw` was created; `None` when it is not a readable job.
fn age_of(raw: &[u8], now: time::OffsetDateTime) -> Option<f64> {
    let job = Job::decode(raw).ok()?;
    let created = time::OffsetDateTime::parse(
        &job.created_at,
        &time::format_description::well_known::Rfc3339,
    )
    .ok()?;
    // A producer whose clock runs ahead would give a negative age: show 0.
    Some((now - created).as_seconds_f64().max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broadcast::Driver;
    use crate::queue::job::Kind;

    #[test]
    fn age_of_a_malformed_head_is_unknown() {
        let now = time::OffsetDateTime::now_utc();
        assert_eq!(age_of(b"garbage", now), None);
        let alert =
            crate::event::Alert::new(21, 20, &crate::severity::Boundaries::default(), "test");
        let mut job = Job::new(Kind::Broadcast(Driver::Null), alert, 3, vec![1], 60);
        job.created_at = "2000-01-01T00:00:00.000Z".into();
        assert!(age_of(&job.encode(), now).is_some_and(|a| a > 1e8));
        job.created_at = "yesterday".into();
        assert_eq!(age_of(&job.encode(), now), None);
    }
}
