//! The operator's commands of `queue-work`: `status` and `failed` (list, show, retry, forget,
//! flush). [`Admin`] holds the connections and reads or changes what a command asks for;
//! [`render`] turns the result into text, so the binary only parses flags and prints.

pub mod failed;
pub mod render;
pub mod status;

pub use failed::{RetryReport, RetryTarget};
pub use status::{QueueStatus, Status};

use crate::config::Config;
use crate::db::failed::{FailedJob, FindError};
use crate::db::{DatabaseConfig, Db, DbError};
use crate::queue::Queue;
use crate::redis_conn::{RedisConfig, RedisError};

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// PostgreSQL (`failed_jobs`) failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// Redis (the queues) failed.
    #[error(transparent)]
    Redis(#[from] RedisError),
    /// The id given matches no failed job, or several.
    #[error(transparent)]
    Find(#[from] FindError),
}

/// The operator's view of the queues and `failed_jobs`. Each server is connected to when a
/// command first needs it, so `failed list` works while Redis is down.
pub struct Admin {
    database: DatabaseConfig,
    redis: RedisConfig,
    prefix: String,
    /// The logical source's slot, whose lag `status` shows when it exists.
    slot: String,
    db: Option<Db>,
    queue: Option<Queue>,
}

impl Admin {
    /// Commands against the configured servers; nothing is opened yet.
    pub fn new(config: &Config) -> Admin {
        Admin {
            database: config.database.clone(),
            redis: config.redis.clone(),
            prefix: config.queue.prefix.clone(),
            slot: config.slot.clone(),
            db: None,
            queue: None,
        }
    }

    /// Drops both connections, so the next command opens fresh ones (after an error that
    /// may have left one unusable).
    pub fn reset(&mut self) {
        self.db = None;
        self.queue = None;
    }

    /// The queue's Redis, connected on first use.
    pub fn queue(&mut self) -> Result<&mut Queue, RedisError> {
        let queue = match self.queue.take() {
            Some(q) => q,
            None => Queue::connect(&self.redis, &self.prefix)?,
        };
        Ok(self.queue.insert(queue))
    }

    /// PostgreSQL, connected on first use.
    pub fn db(&mut self) -> Result<&mut Db, DbError> {
        let db = match self.db.take() {
            Some(db) => db,
            None => Db::connect(&self.database)?,
        };
        Ok(self.db.insert(db))
    }

    /// Both connections at once (Redis first, as `status` reads it first).
    fn both(&mut self) -> Result<(&mut Db, &mut Queue), AdminError> {
        let queue = match self.queue.take() {
            Some(q) => q,
            None => Queue::connect(&self.redis, &self.prefix)?,
        };
        let db = match self.db.take() {
            Some(db) => db,
            None => Db::connect(&self.database)?,
        };
        Ok((self.db.insert(db), self.queue.insert(queue)))
    }

    /// `status` for `queues` (and every queue that has failed jobs).
    pub fn status(&mut self, queues: &[String]) -> Result<Status, AdminError> {
        let slot = self.slot.clone();
        let (db, queue) = self.both()?;
        status::read(queue, db, queues, &slot)
    }

    /// `failed list`: the failed jobs, oldest first (only those of `queue`, when given).
    pub fn failed_list(&mut self, queue: Option<&str>) -> Result<Vec<FailedJob>, AdminError> {
        failed::list(self.db()?, queue)
    }

    /// `failed show ID`: `id` may be a unique prefix of at least
    /// [`crate::db::failed::MIN_PREFIX`] characters.
    pub fn failed_show(&mut self, id: &str) -> Result<FailedJob, AdminError> {
        failed::show(self.db()?, id)
    }

    /// `failed retry`: see [`failed::retry`].
    pub fn failed_retry(
        &mut self,
        target: &RetryTarget,
        queue_filter: Option<&str>,
    ) -> Result<RetryReport, AdminError> {
        let (db, queue) = self.both()?;
        failed::retry(db, queue, target, queue_filter)
    }

    /// `failed forget ID`: returns the uuid deleted.
    pub fn failed_forget(&mut self, id: &str) -> Result<String, AdminError> {
        failed::forget(self.db()?, id)
    }

    /// `failed flush`: returns how many rows went.
    pub fn failed_flush(&mut self, hours: Option<u64>) -> Result<u64, AdminError> {
        failed::flush(self.db()?, hours)
    }
}
