//! The worker's side of `failed_jobs`: a recorder that opens its PostgreSQL connection when
//! the first job fails (a worker whose jobs all succeed never needs one) and reopens it after
//! an error.

use super::{DatabaseConfig, Db, DbError, failed};

/// Writes failed jobs, connecting on first use.
pub struct Recorder {
    config: DatabaseConfig,
    db: Option<Db>,
}

impl Recorder {
    /// A recorder for the configured database; nothing is opened yet.
    pub fn new(config: &DatabaseConfig) -> Recorder {
        Recorder {
            config: config.clone(),
            db: None,
        }
    }

    /// Records a failed job ([`failed::record`]). After an error the connection is dropped,
    /// so the next call starts from a fresh one.
    pub fn record(
        &mut self,
        uuid: &str,
        queue: &str,
        payload: &str,
        exception: &str,
    ) -> Result<(), DbError> {
        let db = match self.db.take() {
            Some(db) => db,
            None => Db::connect(&self.config)?,
        };
        let db = self.db.insert(db);
        let result = failed::record(db, uuid, queue, payload, exception);
        if result.is_err() {
            self.db = None;
        }
        result
    }
}
