//! The `failed_jobs` table: where a job goes after its last try, or when it cannot be decoded.
//! Recording (the worker) and the operator's tools (list, show, retry, forget, flush).

use super::{Db, DbError};
use std::time::Duration;

/// One row of `failed_jobs`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FailedJob {
    /// The row's key, in insertion order (not shown to users; retry pages by it).
    #[serde(skip)]
    pub row: i64,
    /// The job's id (for undecodable bytes, derived from the bytes).
    pub uuid: String,
    /// The queue it came from.
    pub queue: String,
    /// The job as it was in the queue, with the attempts it had.
    pub payload: String,
    /// Why it failed.
    pub exception: String,
    /// When it failed, RFC 3339 UTC.
    pub failed_at: String,
}

/// Why a failed job could not be found by the id a user typed.
#[derive(Debug, thiserror::Error)]
pub enum FindError {
    /// No row has that id (or id prefix).
    #[error("no failed job has id {0}")]
    NotFound(String),
    /// The prefix matches several rows.
    #[error("id {0} matches {1} failed jobs; give more of it")]
    Ambiguous(String, usize),
    /// PostgreSQL failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Shortest id prefix accepted in place of a whole uuid, so a typo cannot match half the table.
pub const MIN_PREFIX: usize = 4;

const COLUMNS: &str = "id, uuid, queue, payload, exception, \
     to_char(failed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')";

fn from_row(r: &postgres::Row) -> FailedJob {
    FailedJob {
        row: r.get(0),
        uuid: r.get(1),
        queue: r.get(2),
        payload: r.get(3),
        exception: r.get(4),
        failed_at: r.get(5),
    }
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

/// Failed jobs, oldest first; only those of `queue` when given.
pub fn list(db: &mut Db, queue: Option<&str>) -> Result<Vec<FailedJob>, DbError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM failed_jobs WHERE ($1::text IS NULL OR queue = $1) ORDER BY id"
    );
    let rows = db.client.query(&sql, &[&queue]).map_err(|e| db.error(e))?;
    Ok(rows.iter().map(from_row).collect())
}

/// The failed job with id `id`, or the only one whose id starts with it (at least
/// [`MIN_PREFIX`] characters), as `git` accepts a short commit id.
pub fn find(db: &mut Db, id: &str) -> Result<FailedJob, FindError> {
    let sql = format!("SELECT {COLUMNS} FROM failed_jobs WHERE uuid = $1");
    let exact = db.client.query(&sql, &[&id]).map_err(|e| db.error(e))?;
    if let Some(row) = exact.first() {
        return Ok(from_row(row));
    }
    // Only hex digits and dashes (what uuids are made of) are matched as a prefix, so LIKE
    // wildcards in the input never reach the pattern.
    let prefix_ok = id.len() >= MIN_PREFIX && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if !prefix_ok {
        return Err(FindError::NotFound(id.to_string()));
    }
    let sql = format!("SELECT {COLUMNS} FROM failed_jobs WHERE uuid LIKE $1 ORDER BY id LIMIT 20");
    let pattern = format!("{}%", id.to_ascii_lowercase());
    let rows = db
        .client
        .query(&sql, &[&pattern])
        .map_err(|e| db.error(e))?;
    match rows.as_slice() {
        [] => Err(FindError::NotFound(id.to_string())),
        [row] => Ok(from_row(row)),
        many => Err(FindError::Ambiguous(id.to_string(), many.len())),
    }
}

/// Deletes the failed job `uuid`; false when there was none.
pub fn forget(db: &mut Db, uuid: &str) -> Result<bool, DbError> {
    let n = db
        .client
        .execute("DELETE FROM failed_jobs WHERE uuid = $1", &[&uuid])
        .map_err(|e| db.error(e))?;
    Ok(n > 0)
}

/// Deletes every failed job, or only those that failed more than `older_than` ago.
/// Returns how many rows went.
pub fn flush(db: &mut Db, older_than: Option<Duration>) -> Result<u64, DbError> {
    let seconds = older_than.map(|d| d.as_secs_f64());
    db.client
        .execute(
            "DELETE FROM failed_jobs \
             WHERE $1::float8 IS NULL OR failed_at < now() - make_interval(secs => $1)",
            &[&seconds],
        )
        .map_err(|e| db.error(e))
}

/// The number of failed jobs per queue, by queue name.
pub fn counts(db: &mut Db) -> Result<Vec<(String, u64)>, DbError> {
    let rows = db
        .client
        .query(
            "SELECT queue, count(*) FROM failed_jobs GROUP BY queue ORDER BY queue",
            &[],
        )
        .map_err(|e| db.error(e))?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), u64::try_from(r.get::<_, i64>(1)).unwrap_or(0)))
        .collect())
}

/// Which rows [`take`] works on.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these uuids (`None`: every row).
    pub uuids: Option<Vec<String>>,
    /// Only rows of this queue.
    pub queue: Option<String>,
}

/// Rows handed out by [`take`] per transaction: a page small enough to lock briefly.
pub const TAKE_PAGE: i64 = 500;

/// Moves rows out of the table once the caller has put them somewhere safe.
///
/// Pages through the selected rows in id order; each page is locked (`FOR UPDATE`) in its own
/// transaction and handed to `place`, which returns the rows it placed. Those are deleted and
/// the page commits. When `place` fails, the page rolls back and the error is returned: rows
/// are deleted only after they are safe. The lock also means a worker that fails a retried job
/// again while we still hold its old row waits for our commit, then records the new failure.
/// If `place` fails after placing part of a page, that part stays in the table as well: those
/// jobs may run twice (delivery is at least once), never zero times.
pub fn take<E: From<DbError>>(
    db: &mut Db,
    selection: &Selection,
    mut place: impl FnMut(&[FailedJob]) -> Result<Vec<i64>, E>,
) -> Result<(), E> {
    let sql = format!(
        "SELECT {COLUMNS} FROM failed_jobs \
         WHERE id > $1 AND ($2::text[] IS NULL OR uuid = ANY($2)) \
         AND ($3::text IS NULL OR queue = $3) \
         ORDER BY id LIMIT $4 FOR UPDATE"
    );
    let target = db.target().to_string();
    let err = |e: postgres::Error| DbError::Query {
        target: target.clone(),
        reason: super::reason(&e),
    };
    let mut after = 0i64;
    loop {
        let mut tx = db.client.transaction().map_err(err)?;
        let rows = tx
            .query(
                &sql,
                &[&after, &selection.uuids, &selection.queue, &TAKE_PAGE],
            )
            .map_err(err)?;
        let page: Vec<FailedJob> = rows.iter().map(from_row).collect();
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.row;
        let placed = place(&page)?;
        if !placed.is_empty() {
            tx.execute("DELETE FROM failed_jobs WHERE id = ANY($1)", &[&placed])
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        if (page.len() as i64) < TAKE_PAGE {
            return Ok(());
        }
    }
}
