//! The worker's side of `failed_jobs`: a recorder that opens its PostgreSQL connection when
//! the first job fails (a worker whose jobs all succeed never needs one) and reopens it after
//! an error.

use super::{DatabaseConfig, Db, DbError, failed};
use log::debug;

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

    /// Records a failed job ([`failed::record`]).
    ///
    /// The connection kept from an earlier job may lead to a server that has since stopped,
    /// or been demoted to a read-only standby (SQLSTATE 25006) while another was promoted:
    /// when it fails, the write is tried once more on a fresh connection, which finds the
    /// primary of a multi-host URL. The insert is idempotent, so trying it twice is safe. After
    /// an error no connection is kept, so the next call starts from a fresh one.
    pub fn record(
        &mut self,
        uuid: &str,
        queue: &str,
        payload: &str,
        exception: &str,
    ) -> Result<(), DbError> {
        if let Some(mut db) = self.db.take() {
            match failed::record(&mut db, uuid, queue, payload, exception) {
                Ok(()) => {
                    self.db = Some(db);
                    return Ok(());
                }
                Err(e) => debug!("recording on the kept connection failed ({e}); reconnecting"),
            }
        }
        let mut db = Db::connect(&self.config)?;
        failed::record(&mut db, uuid, queue, payload, exception)?;
        self.db = Some(db);
        Ok(())
    }
}
