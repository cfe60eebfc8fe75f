//! What both daemons' `/readyz` and scrape-time figures need: their own connections to Redis
//! and PostgreSQL (never the working loop's), opened when first asked, with short timeouts,
//! and dropped after an error so the next probe starts afresh.

use crate::db::{DatabaseConfig, Db};
use crate::queue::Queue;
use crate::redis_conn::RedisConfig;
use std::time::Duration;

/// How long one probe may wait for a server: `/readyz` answers within about twice this.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The probe's connections.
pub struct Servers {
    redis: RedisConfig,
    prefix: String,
    database: DatabaseConfig,
    queue: Option<Queue>,
    db: Option<Db>,
}

impl Servers {
    /// Probes for the configured servers; nothing is opened yet.
    pub fn new(redis: &RedisConfig, prefix: &str, database: &DatabaseConfig) -> Servers {
        let mut database = database.clone();
        database.statement_timeout = PROBE_TIMEOUT;
        Servers {
            redis: redis.clone(),
            prefix: prefix.to_string(),
            database,
            queue: None,
            db: None,
        }
    }

    /// The queue connection, opened if needed.
    pub fn queue(&mut self) -> Result<&mut Queue, String> {
        let queue = match self.queue.take() {
            Some(q) => q,
            None => Queue::connect_within(&self.redis, &self.prefix, PROBE_TIMEOUT)
                .map_err(|e| e.to_string())?,
        };
        Ok(self.queue.insert(queue))
    }

    /// The PostgreSQL connection, opened if needed.
    pub fn db(&mut self) -> Result<&mut Db, String> {
        let db = match self.db.take() {
            Some(db) => db,
            None => Db::connect_as(&self.database, "inventory-probe").map_err(|e| e.to_string())?,
        };
        Ok(self.db.insert(db))
    }

    /// Forgets the connections after an error: the next probe reconnects.
    pub fn reset(&mut self) {
        self.queue = None;
        self.db = None;
    }

    /// Both servers answer now; else why not.
    pub fn check(&mut self) -> Result<(), String> {
        let redis = self
            .queue()
            .and_then(|q| q.ping().map_err(|e| e.to_string()));
        let postgres = redis.and_then(|()| {
            let db = self.db()?;
            db.client
                .simple_query("SELECT 1")
                .map(drop)
                .map_err(|e| db.error(e).to_string())
        });
        if postgres.is_err() {
            self.reset();
        }
        postgres
    }
}
