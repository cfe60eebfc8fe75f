//! The count the trigger keeps (`sql/002_item_count.sql`): the current total with its
//! version, the key the trigger signs its notifications with, and the channel it notifies.

use super::{Db, DbError};

/// One committed change: the version (rising in commit order) and the count it produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Rises by one per committed change, in commit order.
    pub version: i64,
    /// The item count after it.
    pub count: i64,
}

/// The trigger's signing key, as HMAC's two padded halves (key XOR ipad, key XOR opad).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey {
    /// The key XOR 0x36 bytes, 64 bytes.
    pub inner: Vec<u8>,
    /// The key XOR 0x5c bytes, 64 bytes.
    pub outer: Vec<u8>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(***)")
    }
}

/// What `migrate` left for the listener to check and use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schema {
    /// `items-listen migrate` never ran on this database, or an older version did.
    NotMigrated,
    /// Migrated: the trigger notifies `channel`, signing with `key`.
    Ready {
        /// The channel the trigger notifies.
        channel: String,
        /// What it signs with.
        key: SigningKey,
    },
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

    /// The channel the trigger notifies and its signing key, or that the database is not
    /// migrated (or by an older version, without the key).
    pub fn schema(&mut self) -> Result<Schema, DbError> {
        let result = self.client.query_opt(
            "SELECT channel, mac_inner, mac_outer FROM inventory_item_count \
             WHERE version >= 0 AND mac_inner IS NOT NULL AND mac_outer IS NOT NULL",
            &[],
        );
        match result {
            Ok(Some(row)) => Ok(Schema::Ready {
                channel: row.get(0),
                key: SigningKey {
                    inner: row.get(1),
                    outer: row.get(2),
                },
            }),
            Ok(None) => Ok(Schema::NotMigrated),
            Err(e) if is_missing(&e) => Ok(Schema::NotMigrated),
            Err(e) => Err(self.error(e)),
        }
    }
}
