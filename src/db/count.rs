//! The count the trigger keeps (`sql/002_item_count.sql`): the current total with its
//! version, the log of committed counts the listener rates, and the channel the trigger
//! notifies. A NOTIFY only wakes the listener; what it rates is read here, from rows only the
//! trigger writes.

use super::{Db, DbError};

/// One committed change: the version (rising in commit order) and the count it produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Rises by one per committed change, in commit order.
    pub version: i64,
    /// The item count after it.
    pub count: i64,
}

/// What `migrate` left for the listener to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schema {
    /// The count table is missing: `items-listen migrate` never ran on this database.
    NotMigrated,
    /// Migrated; the trigger notifies this channel.
    Channel(String),
}

/// SQLSTATE 42P01 (undefined_table) and 42703 (undefined_column): the schema is older.
fn is_missing(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == postgres::error::SqlState::UNDEFINED_TABLE
            || *c == postgres::error::SqlState::UNDEFINED_COLUMN
    })
}

impl Db {
    /// The current count and its version.
    pub fn current(&mut self) -> Result<Change, DbError> {
        let row = self
            .client
            .query_one("SELECT version, n FROM inventory_item_count", &[])
            .map_err(|e| self.error(e))?;
        Ok(Change {
            version: row.get(0),
            count: row.get(1),
        })
    }

    /// The changes committed after version `after`, oldest first, at most `limit`. A read
    /// only: no WAL to flush, so a notification is answered in one round trip.
    pub fn changes_after(&mut self, after: i64, limit: usize) -> Result<Vec<Change>, DbError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .client
            .query(
                "SELECT version, n FROM inventory_count_log WHERE version > $1 \
                 ORDER BY version LIMIT $2",
                &[&after, &limit],
            )
            .map_err(|e| self.error(e))?;
        Ok(rows
            .iter()
            .map(|r| Change {
                version: r.get(0),
                count: r.get(1),
            })
            .collect())
    }

    /// Deletes the log rows up to version `read` (rated already). Its commit does not wait for
    /// the WAL flush: a deletion lost in a crash is simply done again by the next one.
    pub fn forget_changes(&mut self, read: i64) -> Result<(), DbError> {
        self.client
            .execute(
                "WITH gone AS (DELETE FROM inventory_count_log WHERE version <= $1) \
                 SELECT set_config('synchronous_commit', 'off', true)",
                &[&read],
            )
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// The channel the trigger notifies, or that the database is not migrated (or migrated
    /// by an older version without the count log).
    pub fn schema(&mut self) -> Result<Schema, DbError> {
        let result = self.client.query_one(
            // Names every table and column the listener uses, so an older schema is told apart.
            "SELECT channel FROM inventory_item_count \
             WHERE version >= 0 AND NOT EXISTS (SELECT FROM inventory_count_log WHERE false)",
            &[],
        );
        match result {
            Ok(row) => Ok(Schema::Channel(row.get(0))),
            Err(e) if is_missing(&e) => Ok(Schema::NotMigrated),
            Err(e) => Err(self.error(e)),
        }
    }
}
