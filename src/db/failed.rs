//! The `failed_jobs` table: where a job goes after its last try, or when it cannot be decoded.

use super::{Db, DbError};

/// One row of `failed_jobs`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailedJob {
    /// The job's id (for undecodable bytes, derived from the bytes).
    pub uuid: String,
    /// The queue it came from.
    pub queue: String,
    /// The job as it was in the queue, with the attempts it had.
    pub payload: String,
    /// Why it failed.
    pub exception: String,
    /// When it failed, RFC 3339.
    pub failed_at: String,
}

/// Records a failed job. Idempotent on `uuid`: a worker that died after recording but before
/// removing the job from Redis records it again harmlessly.
pub fn record(
    db: &mut Db,
    uuid: &str,
    queue: &str,
    payload: &str,
    exception: &str,
) -> Result<(), DbError> {
    db.client
        .execute(
            "INSERT INTO failed_jobs (uuid, queue, payload, exception) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (uuid) DO NOTHING",
            &[&uuid, &queue, &payload, &exception],
        )
        .map_err(|e| db.error(e))?;
    Ok(())
}

/// Every failed job, oldest first.
pub fn list(db: &mut Db) -> Result<Vec<FailedJob>, DbError> {
    let rows = db
        .client
        .query(
            "SELECT uuid, queue, payload, exception, \
             to_char(failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
             FROM failed_jobs ORDER BY id",
            &[],
        )
        .map_err(|e| db.error(e))?;
    Ok(rows
        .iter()
        .map(|r| FailedJob {
            uuid: r.get(0),
            queue: r.get(1),
            payload: r.get(2),
            exception: r.get(3),
            failed_at: r.get(4),
        })
        .collect())
}
