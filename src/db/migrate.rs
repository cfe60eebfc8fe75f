//! Applies `sql/` in order. The files are idempotent, so running this twice is harmless, and
//! `psql -f sql/NNN_*.sql` runs exactly the same bytes.

use super::{Db, DbError};

/// The schema files, in the order they are applied.
pub const MIGRATIONS: &[(&str, &str)] = &[
    ("001_items.sql", include_str!("../../sql/001_items.sql")),
    (
        "002_item_count.sql",
        include_str!("../../sql/002_item_count.sql"),
    ),
    (
        "003_failed_jobs.sql",
        include_str!("../../sql/003_failed_jobs.sql"),
    ),
];

/// Serialises concurrent `migrate` runs (an arbitrary constant key: "invb" in ASCII).
const MIGRATE_LOCK: i64 = 0x696e_7662;

/// Applies every migration in one transaction, sets the NOTIFY channel the trigger uses,
/// and recounts the items once so the O(1) counter starts exact. Returns the count.
pub fn migrate(db: &mut Db, channel: &str) -> Result<i64, DbError> {
    let mut tx = db
        .client
        .transaction()
        .map_err(|e| db_error(&db.target, e))?;
    let target = db.target.clone();
    let err = |e| db_error(&target, e);
    // The files' "already exists, skipping" notices are expected on every rerun: not news.
    // The recount reads the whole table, which may take longer than the daemons' statement
    // timeout on a large one: a migration is run by hand and watched, so it may.
    tx.batch_execute("SET LOCAL client_min_messages = warning; SET LOCAL statement_timeout = 0")
        .map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK])
        .map_err(err)?;
    for (name, sql) in MIGRATIONS {
        if name.starts_with("002") {
            // Writers lock `items`, then their trigger the counter: take `items` first too,
            // or a migration under write load deadlocks with them.
            tx.batch_execute("LOCK TABLE items IN SHARE ROW EXCLUSIVE MODE")
                .map_err(err)?;
        }
        tx.batch_execute(sql).map_err(|e| DbError::Query {
            target: target.clone(),
            reason: format!("{name}: {}", super::reason(&e)),
        })?;
    }
    // SHARE mode lets readers on but holds writers for the moment of the recount.
    tx.batch_execute("LOCK TABLE items IN SHARE MODE")
        .map_err(err)?;
    let row = tx
        .query_one(
            "UPDATE inventory_item_count SET n = (SELECT count(*) FROM items), channel = $1 RETURNING n",
            &[&channel],
        )
        .map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(row.get(0))
}

fn db_error(target: &str, e: postgres::Error) -> DbError {
    DbError::Query {
        target: target.to_string(),
        reason: super::reason(&e),
    }
}
