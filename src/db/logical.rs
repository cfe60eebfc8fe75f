//! The logical-decoding source's side in PostgreSQL: a publication of `items` (inserts,
//! deletes, truncates; only the `id` column on PostgreSQL 15+), a `pgoutput` replication slot,
//! and a state row (`inventory_logical`) holding the position confirmed and the count at it.
//!
//! Nothing runs in the writers' commits: the count is derived from the decoded changes. Its
//! starting point is exact: right after the slot is created, the count and the snapshot it
//! was read in are stored; a decoded transaction that snapshot already saw is skipped, every
//! other one is applied, so no change is counted twice or missed.
//!
//! Changes are streamed over a replication connection ([`super::replication`]); the slot's
//! position is confirmed only once the caller has the alerts safely queued.

use super::{Db, DbError};
use std::time::Duration;

/// Where the listener learns of changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChangeSource {
    /// The trigger's signed NOTIFY (the default).
    #[default]
    Notify,
    /// A logical replication slot: nothing in the writers' commits.
    Logical,
}

impl ChangeSource {
    /// `notify` or `logical`.
    pub fn parse(text: &str) -> Option<ChangeSource> {
        match text.to_ascii_lowercase().as_str() {
            "notify" => Some(ChangeSource::Notify),
            "logical" => Some(ChangeSource::Logical),
            _ => None,
        }
    }
}

/// A slot and publication name: what PostgreSQL accepts for a slot, so it is also a safe
/// identifier.
pub fn check_slot_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err("a slot name has 1 to 63 characters: lower-case letters, digits and _".into())
    }
}

/// One decoded transaction that touched `items`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Txn {
    /// Its transaction id (32 bits, as decoding gives it).
    pub xid: u32,
    /// Where it committed.
    pub commit_lsn: u64,
    /// True when it truncated `items` (the count restarts at 0 there).
    pub truncated: bool,
    /// Inserts minus deletes (after its last truncate, if any).
    pub delta: i64,
}

/// The confirmed state: the position the slot may move to, and the count there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The last position whose changes are counted (and their alerts queued).
    pub lsn: u64,
    /// The count at `lsn`.
    pub count: i64,
    /// The snapshot the starting count was read in, while transactions it saw may still be
    /// decoded (until `lsn` passes `snapshot_lsn`).
    pub snapshot: Option<Snapshot>,
    /// False until the starting count was rated (a slot just set up or recreated).
    pub announced: bool,
}

/// A `pg_current_snapshot()` and the WAL position when it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    xmin: u64,
    xmax: u64,
    xip: Vec<u64>,
    /// Every transaction the snapshot saw committed before this position.
    pub lsn: u64,
}

impl Snapshot {
    /// Parses `xmin:xmax:xip,xip` (64-bit transaction ids).
    pub fn parse(text: &str, lsn: u64) -> Option<Snapshot> {
        let mut parts = text.split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = parts
            .next()
            .unwrap_or("")
            .split(',')
            .filter(|x| !x.is_empty())
            .map(|x| x.parse().ok())
            .collect::<Option<Vec<u64>>>()?;
        Some(Snapshot {
            xmin,
            xmax,
            xip,
            lsn,
        })
    }

    /// True when the snapshot saw transaction `xid` (32 bits) committed: its count holds it.
    pub fn saw(&self, xid: u32) -> bool {
        // Decoded xids are 32 bits; the snapshot's carry an epoch. A transaction decoded now
        // is close to the snapshot, so it has the epoch of xmax, or the one before.
        let epoch = self.xmax >> 32;
        let mut full = (epoch << 32) | u64::from(xid);
        if full > self.xmax && full >= 1 << 32 {
            full -= 1 << 32;
        }
        full < self.xmin || (full < self.xmax && !self.xip.contains(&full))
    }

    fn text(&self) -> String {
        let xip: Vec<String> = self.xip.iter().map(u64::to_string).collect();
        format!("{}:{}:{}", self.xmin, self.xmax, xip.join(","))
    }
}

/// `X/Y` (PostgreSQL's notation) as a number.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// A number as PostgreSQL's `X/Y`.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// What stops the logical source from running, in words that name the setting and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `wal_level` is not `logical`.
    #[error(
        "wal_level is {0:?} at {1}, and the logical source needs wal_level = logical: set it in \
         postgresql.conf (or ALTER SYSTEM SET wal_level = logical) and restart PostgreSQL. On \
         managed services: Amazon RDS and Aurora rds.logical_replication = 1 in the parameter \
         group; Google Cloud SQL the flag cloudsql.logical_decoding = on; Azure Database for \
         PostgreSQL wal_level = logical in the server parameters. Or use INVENTORY_SOURCE=notify"
    )]
    WalLevel(String, String),
    /// The role may not read a replication slot.
    #[error(
        "the role {role:?} at {target} lacks the REPLICATION attribute the logical source needs: \
         ALTER ROLE {role} REPLICATION (on RDS: GRANT rds_replication TO {role}), or use \
         INVENTORY_SOURCE=notify"
    )]
    NoReplication {
        /// `current_user`.
        role: String,
        /// The server.
        target: String,
    },
    /// A slot of that name reads another database (slot names are per server).
    #[error(
        "replication slot {slot:?} at {target} reads database {database:?}, not this one: set \
         INVENTORY_LOGICAL_SLOT to a name of this database's own (slot names are per server)"
    )]
    OtherDatabase {
        /// The slot.
        slot: String,
        /// The server.
        target: String,
        /// The database the slot reads.
        database: String,
    },
    /// The slot, publication or state row is missing.
    #[error(
        "the logical source is not set up at {0} (no slot {1:?}): run `items-listen migrate \
         --source logical` once"
    )]
    NotSetUp(String, String),
    /// DELETEs on `items` could not be decoded (no key, no replica identity): publishing
    /// them would make every DELETE fail.
    #[error(
        "items at {0} has no primary key and no replica identity, so a publication of its \
         DELETEs would make every DELETE fail: add a primary key, or ALTER TABLE items \
         REPLICA IDENTITY FULL, then run the migration again"
    )]
    NoIdentity(String),
    /// PostgreSQL failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// How DELETEs on `items` identify their row.
enum Identity {
    /// The primary key is exactly `id`: the publication may carry `id` alone.
    IdKey,
    /// Another key, or the whole row (`REPLICA IDENTITY FULL` or an index).
    Other,
    /// Nothing: DELETEs cannot be published.
    None,
}

/// Where a slot stands, for `status` and `items-listen slot status`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SlotStatus {
    /// The slot's name.
    pub slot: String,
    /// `reserved`, `extended`, `unreserved` or `lost` (PostgreSQL's `wal_status`).
    pub wal_status: String,
    /// WAL written since the position the listener confirmed, in bytes.
    pub lag_bytes: u64,
    /// Seconds since the listener last confirmed it had read everything (it does every
    /// 10 s while running).
    pub lag_seconds: f64,
    /// The count at the confirmed position.
    pub count: i64,
    /// WAL the slot keeps on the server, in bytes (what `max_slot_wal_keep_size` bounds).
    pub retained_bytes: u64,
}

impl Db {
    fn run(&mut self, sql: &str) -> Result<(), DbError> {
        self.client.batch_execute(sql).map_err(|e| self.error(e))
    }

    /// Fails with the setting and the fix when the server or the role cannot run the
    /// logical source.
    pub fn check_logical(&mut self) -> Result<(), SetupError> {
        let wal_level: String = self
            .client
            .query_one("SHOW wal_level", &[])
            .map_err(|e| self.error(e))?
            .get(0);
        if wal_level != "logical" {
            return Err(SetupError::WalLevel(wal_level, self.target.clone()));
        }
        let row = self
            .client
            .query_one(
                "SELECT current_user::text, rolreplication OR rolsuper FROM pg_roles \
                 WHERE rolname = current_user",
                &[],
            )
            .map_err(|e| self.error(e))?;
        if !row.get::<_, bool>(1) {
            return Err(SetupError::NoReplication {
                role: row.get(0),
                target: self.target.clone(),
            });
        }
        Ok(())
    }

    /// Sets the logical source up (publication, state table, slot and its exact starting
    /// count) and takes the counting triggers out of the writers' path. Idempotent: an
    /// existing, valid slot is kept. Returns the count.
    pub fn setup_logical(&mut self, slot: &str) -> Result<i64, SetupError> {
        self.check_logical()?;
        let columns = match self.replica_identity()? {
            Identity::IdKey if self.server_version()? >= 150_000 => " (id)",
            Identity::IdKey | Identity::Other => "",
            Identity::None => return Err(SetupError::NoIdentity(self.target.clone())),
        };
        self.run(&format!(
            "SET client_min_messages = warning;
             CREATE TABLE IF NOT EXISTS inventory_logical (
                 slot text PRIMARY KEY, lsn pg_lsn NOT NULL, count bigint NOT NULL,
                 snapshot text, snapshot_lsn pg_lsn,
                 updated_at timestamptz NOT NULL DEFAULT now(),
                 seen_at timestamptz NOT NULL DEFAULT now());
             ALTER TABLE inventory_logical
                 ADD COLUMN IF NOT EXISTS announced boolean NOT NULL DEFAULT false;
             REVOKE ALL ON inventory_logical FROM PUBLIC;
             DO $$ BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = '{slot}') THEN
                     CREATE PUBLICATION {slot} FOR TABLE items{columns}
                         WITH (publish = 'insert, delete, truncate');
                 END IF;
             END $$;
             DROP TRIGGER IF EXISTS inventory_items_inserted ON items;
             DROP TRIGGER IF EXISTS inventory_items_deleted ON items;
             DROP TRIGGER IF EXISTS inventory_items_truncated ON items;"
        ))?;
        match (self.slot_wal_status(slot)?, self.logical_state(slot)?) {
            (Some(status), Some(state)) if status != "lost" => Ok(state.count),
            _ => self.create_slot(slot),
        }
    }

    /// Drops the slot, its publication and state (`migrate --source notify`, `slot drop`);
    /// refuses a slot of another database.
    pub fn drop_logical(&mut self, slot: &str) -> Result<bool, SetupError> {
        let existed = self.slot_wal_status(slot)?.is_some();
        if existed {
            self.drop_slot(slot)?;
        }
        self.run(&format!(
            "SET client_min_messages = warning;
             DROP PUBLICATION IF EXISTS {slot};
             DO $$ BEGIN
                 IF to_regclass('inventory_logical') IS NOT NULL THEN
                     DELETE FROM inventory_logical WHERE slot = '{slot}';
                 END IF;
             END $$;"
        ))?;
        Ok(existed)
    }

    /// Drops the slot. A listener killed a moment ago may still hold it (its server process
    /// ends when its current call does): wait for it a few seconds rather than fail.
    fn drop_slot(&mut self, slot: &str) -> Result<(), DbError> {
        let deadline = std::time::Instant::now() + SLOT_BUSY_WAIT;
        loop {
            match self
                .client
                .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
            {
                Ok(_) => return Ok(()),
                Err(e)
                    if e.code() == Some(&postgres::error::SqlState::OBJECT_IN_USE)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(self.error(e)),
            }
        }
    }

    /// (Re)creates the slot and stores the count read right after, with its snapshot.
    pub fn create_slot(&mut self, slot: &str) -> Result<i64, SetupError> {
        if self.slot_wal_status(slot)?.is_some() {
            self.drop_slot(slot)?;
        }
        // Outside any transaction: PostgreSQL refuses to create a slot in one that wrote.
        let created: String = self
            .client
            .query_one(
                "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&slot],
            )
            .map_err(|e| self.error(e))?
            .get(0);
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .start()
            .map_err(|e| DbError::Query {
                target: self.target.clone(),
                reason: super::reason(&e),
            })?;
        let row = tx
            .query_one(
                "SELECT (SELECT count(*) FROM items), pg_current_snapshot()::text, \
                 pg_current_wal_insert_lsn()::text",
                &[],
            )
            .and_then(|row| {
                tx.execute(
                    "INSERT INTO inventory_logical (slot, lsn, count, snapshot, snapshot_lsn) \
                     VALUES ($1, $2::text::pg_lsn, $3, $4, $5::text::pg_lsn) \
                     ON CONFLICT (slot) DO UPDATE SET lsn = EXCLUDED.lsn, count = EXCLUDED.count, \
                     snapshot = EXCLUDED.snapshot, snapshot_lsn = EXCLUDED.snapshot_lsn, \
                     updated_at = now(), seen_at = now(), announced = false",
                    &[
                        &slot,
                        &created,
                        &row.get::<_, i64>(0),
                        &row.get::<_, String>(1),
                        &row.get::<_, String>(2),
                    ],
                )?;
                Ok(row)
            })
            .and_then(|row| tx.commit().map(|()| row))
            .map_err(|e| DbError::Query {
                target: self.target.clone(),
                reason: super::reason(&e),
            })?;
        Ok(row.get(0))
    }

    /// How DELETEs on `items` identify their row to decoding.
    fn replica_identity(&mut self) -> Result<Identity, DbError> {
        let row = self
            .client
            .query_one(
                "SELECT c.relreplident::text,
                        EXISTS (SELECT 1 FROM pg_index i
                                JOIN pg_attribute a ON a.attrelid = i.indrelid
                                     AND a.attnum = ANY (i.indkey)
                                WHERE i.indrelid = c.oid AND i.indisprimary
                                GROUP BY i.indexrelid
                                HAVING array_agg(a.attname::text) = ARRAY['id']),
                        EXISTS (SELECT 1 FROM pg_index i
                                WHERE i.indrelid = c.oid AND i.indisprimary)
                 FROM pg_class c WHERE c.oid = 'items'::regclass",
                &[],
            )
            .map_err(|e| self.error(e))?;
        let (ident, id_key, any_key): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
        Ok(match ident.as_str() {
            "d" if id_key => Identity::IdKey,
            "d" if any_key => Identity::Other,
            "f" | "i" => Identity::Other,
            _ => Identity::None,
        })
    }

    fn server_version(&mut self) -> Result<i32, DbError> {
        let v: String = self
            .client
            .query_one("SHOW server_version_num", &[])
            .map_err(|e| self.error(e))?
            .get(0);
        Ok(v.parse().unwrap_or(0))
    }

    /// The slot's `wal_status`, or `None` when there is no such slot; an error when the slot
    /// reads another database.
    pub fn slot_wal_status(&mut self, slot: &str) -> Result<Option<String>, SetupError> {
        let row = self
            .client
            .query_opt(
                "SELECT coalesce(wal_status, 'reserved'), coalesce(database::text, ''), \
                        database IS NOT DISTINCT FROM current_database() \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .map_err(|e| self.error(e))?;
        match row {
            Some(r) if !r.get::<_, bool>(2) => Err(SetupError::OtherDatabase {
                slot: slot.to_string(),
                target: self.target.clone(),
                database: r.get(1),
            }),
            Some(r) => Ok(Some(r.get(0))),
            None => Ok(None),
        }
    }

    /// The confirmed state of `slot`, if it was set up.
    pub fn logical_state(&mut self, slot: &str) -> Result<Option<State>, DbError> {
        let row = self
            .client
            .query_opt(
                "SELECT lsn::text, count, snapshot, snapshot_lsn::text, announced \
                 FROM inventory_logical WHERE slot = $1",
                &[&slot],
            )
            .or_else(|e| match e.code() {
                // No table: never set up.
                Some(&postgres::error::SqlState::UNDEFINED_TABLE) => Ok(None),
                _ => Err(e),
            })
            .map_err(|e| self.error(e))?;
        Ok(row.map(|r| {
            let snapshot_lsn: Option<String> = r.get(3);
            let snapshot: Option<String> = r.get(2);
            State {
                lsn: parse_lsn(&r.get::<_, String>(0)).unwrap_or(0),
                count: r.get(1),
                snapshot: snapshot
                    .zip(snapshot_lsn)
                    .and_then(|(s, l)| Snapshot::parse(&s, parse_lsn(&l).unwrap_or(0))),
                announced: r.get(4),
            }
        }))
    }

    /// Records that the starting count was rated.
    pub fn announced(&mut self, slot: &str) -> Result<(), DbError> {
        self.client
            .execute(
                "UPDATE inventory_logical SET announced = true WHERE slot = $1",
                &[&slot],
            )
            .map(drop)
            .map_err(|e| self.error(e))
    }

    /// Records `state` (the count changed) or only that the listener is caught up
    /// (`seen`). The slot itself moves with the stream's confirmations.
    pub fn save_state(
        &mut self,
        slot: &str,
        state: Option<&State>,
        seen: bool,
    ) -> Result<(), DbError> {
        if let Some(state) = state {
            let snapshot = state.snapshot.as_ref().filter(|s| state.lsn <= s.lsn);
            self.client
                .execute(
                    "UPDATE inventory_logical SET lsn = $2::text::pg_lsn, count = $3, \
                     snapshot = $4, snapshot_lsn = $5::text::pg_lsn, updated_at = now(), \
                     seen_at = now() WHERE slot = $1",
                    &[
                        &slot,
                        &format_lsn(state.lsn),
                        &state.count,
                        &snapshot.map(Snapshot::text),
                        &snapshot.map(|s| format_lsn(s.lsn)),
                    ],
                )
                .map_err(|e| self.error(e))?;
        } else if seen {
            self.client
                .execute(
                    "UPDATE inventory_logical SET seen_at = now() WHERE slot = $1",
                    &[&slot],
                )
                .map_err(|e| self.error(e))?;
        }
        Ok(())
    }

    /// The slot's lag, or `None` when it does not exist.
    pub fn slot_status(&mut self, slot: &str) -> Result<Option<SlotStatus>, DbError> {
        let row = self
            .client
            .query_opt(
                "SELECT coalesce(s.wal_status, 'reserved'),
                        coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::float8,
                        coalesce(extract(epoch FROM now() - l.seen_at), 0)::float8,
                        coalesce(l.count, 0),
                        coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn), 0)::float8
                 FROM pg_replication_slots s
                 LEFT JOIN inventory_logical l ON l.slot = s.slot_name
                 WHERE s.slot_name = $1 AND s.database = current_database()",
                &[&slot],
            )
            .or_else(|e| match e.code() {
                Some(&postgres::error::SqlState::UNDEFINED_TABLE) => Ok(None),
                _ => Err(e),
            })
            .map_err(|e| self.error(e))?;
        Ok(row.map(|r| SlotStatus {
            slot: slot.to_string(),
            wal_status: r.get(0),
            lag_bytes: r.get::<_, f64>(1).max(0.0) as u64,
            lag_seconds: r.get::<_, f64>(2).max(0.0),
            count: r.get(3),
            retained_bytes: r.get::<_, f64>(4).max(0.0) as u64,
        }))
    }
}

/// How long a slot still held by a listener that just died is waited for.
pub const SLOT_BUSY_WAIT: Duration = Duration::from_secs(5);

/// How often a running listener tells `slot status` it is caught up.
pub const SEEN_EVERY: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_round_trip() {
        assert_eq!(parse_lsn("0/15474E8"), Some(0x15474E8));
        assert_eq!(parse_lsn("1A/0"), Some(0x1A << 32));
        assert_eq!(format_lsn(0x1A_0000_00FF), "1A/FF");
        assert_eq!(parse_lsn("x"), None);
    }

    #[test]
    fn a_snapshot_sees_what_committed_before_it() {
        let s = Snapshot::parse("100:105:101,103", 0).expect("parses");
        assert!(s.saw(99) && s.saw(102) && s.saw(104));
        assert!(!s.saw(101) && !s.saw(103) && !s.saw(105) && !s.saw(200));
        // Across an epoch: the snapshot's xids carry it, the decoded ones do not.
        let e = (3u64 << 32) + 10;
        let s = Snapshot::parse(&format!("{e}:{}:{e}", e + 2), 0).expect("parses");
        assert!(s.saw(9) && !s.saw(10) && s.saw(11) && !s.saw(12));
        assert!(s.saw(u32::MAX), "the epoch before");
        assert!(Snapshot::parse("garbage", 0).is_none());
    }

    #[test]
    fn slot_names() {
        assert!(check_slot_name("inventory_items").is_ok());
        for bad in ["", "Items", "a-b", "a;drop", &"a".repeat(64)] {
            assert!(check_slot_name(bad).is_err(), "{bad}");
        }
    }
}
