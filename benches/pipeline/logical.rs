//! The logical-decoding source (issue 15) in the benchmark: a bench database switched to it
//! and back with the real `items-listen migrate --source logical|notify`, where its slot
//! stands, and which PostgreSQL backends serve the listener.

use crate::support::Proc;
use crate::sys;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long `items-listen migrate` may take (it recounts a 1M-row table, creates a slot).
const MIGRATE_DEADLINE: Duration = Duration::from_secs(60);

/// A database switched to the logical source: `items-listen migrate --source logical` (a
/// publication, the slot and its state row; the counting triggers dropped). [`Switched::back`]
/// (or, on a failed run, dropping it) runs `migrate --source notify`: the triggers back, the
/// slot dropped, so the server keeps no WAL for it.
pub struct Switched {
    env: Vec<(String, String)>,
    on: bool,
}

impl Switched {
    /// `env` names the database and the slot (`INVENTORY_LOGICAL_SLOT`).
    pub fn on(env: &[(String, String)]) -> Switched {
        migrate(env, "logical");
        Switched {
            env: env.to_vec(),
            on: true,
        }
    }

    /// Back to the notify source (stop the logical listener first).
    pub fn back(mut self) {
        self.on = false;
        migrate(&self.env, "notify");
    }
}

impl Drop for Switched {
    /// After a failed phase: the same switch back, best effort and without panicking (this
    /// runs while unwinding). After an abort the server goes, and the slot with it.
    fn drop(&mut self) {
        if !self.on || sys::aborted() {
            return;
        }
        let child = crate::command(
            "items-listen",
            &self.env,
            &["migrate", "--source", "notify"],
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
        if let Ok(mut child) = child {
            let end = Instant::now() + MIGRATE_DEADLINE;
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How long a stopped listener's slot may stay in use by its backend.
const RELEASE_DEADLINE: Duration = Duration::from_secs(30);

/// Stops a logical listener as an operator would (SIGTERM, waiting for its exit), then waits
/// until no backend holds `slot`: PostgreSQL drops a slot only when it is not in use, and
/// the backend that was reading for the listener may still be in `pg_logical_slot_peek_*`
/// when the client goes (it notices only when that call returns). Returns how long the slot
/// stayed in use after the listener exited.
pub fn stop_listener(mut listener: Proc, c: &mut postgres::Client, slot: &str) -> Duration {
    listener.signal("TERM");
    let code = listener.wait_exit_within(Duration::from_secs(10));
    let exited = Instant::now();
    let released = sys::wait_for(RELEASE_DEADLINE, Duration::from_millis(2), || {
        !c.query_one(
            "SELECT coalesce(bool_or(active), false) FROM pg_replication_slots \
             WHERE slot_name = $1",
            &[&slot],
        )
        .expect("the slot's state")
        .get::<_, bool>(0)
    });
    let held = exited.elapsed();
    assert!(
        released,
        "slot {slot} still in use {RELEASE_DEADLINE:?} after items-listen exited ({code:?}): {}",
        slot_holder(c, slot)
    );
    if held > Duration::from_millis(100) {
        eprintln!(
            "bench: slot {slot} stayed in use {:.0} ms after items-listen exited",
            held.as_secs_f64() * 1000.0
        );
    }
    held
}

/// The backend holding `slot`, and what it runs.
pub fn slot_holder(c: &mut postgres::Client, slot: &str) -> String {
    c.query_opt(
        "SELECT s.active_pid, a.state, a.backend_type, a.application_name, \
                left(a.query, 80), (now() - a.query_start)::text \
         FROM pg_replication_slots s LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid \
         WHERE s.slot_name = $1",
        &[&slot],
    )
    .ok()
    .flatten()
    .map_or("no such slot".into(), |r| {
        format!(
            "active_pid {:?}, state {:?}, {:?}, application_name {:?}, running {:?} for {:?}",
            r.get::<_, Option<i32>>(0),
            r.get::<_, Option<String>>(1),
            r.get::<_, Option<String>>(2),
            r.get::<_, Option<String>>(3),
            r.get::<_, Option<String>>(4),
            r.get::<_, Option<String>>(5),
        )
    })
}

/// `items-listen migrate --source SOURCE`; panics with its output when it fails.
fn migrate(env: &[(String, String)], source: &str) {
    let out = sys::run(
        &mut crate::command("items-listen", env, &["migrate", "--source", source]),
        MIGRATE_DEADLINE,
    );
    assert!(
        out.status.success(),
        "items-listen migrate --source {source}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The pids of the backends serving `items-listen` in the client's database (the logical
/// source decodes WAL in them: their CPU is the source's cost on the server).
pub fn listener_backends(c: &mut postgres::Client) -> Vec<u32> {
    c.query(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
        &[&inventory_broadcast::listener::APP_NAME],
    )
    .expect("find the listener's backends")
    .iter()
    .map(|r| r.get::<_, i32>(0) as u32)
    .collect()
}

/// WAL written that `slot` has not confirmed, in bytes.
pub fn lag_bytes(c: &mut postgres::Client, slot: &str) -> u64 {
    let lag: f64 = c
        .query_one(
            "SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::float8 \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .expect("the slot's lag")
        .get(0);
    lag.max(0.0) as u64
}

/// Waits until `slot` has confirmed all WAL written when called (the listener has read and
/// queued everything); how long that took. Panics at `within`.
pub fn wait_caught_up(c: &mut postgres::Client, slot: &str, within: Duration) -> Duration {
    let started = Instant::now();
    let lsn: String = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .expect("the WAL position")
        .get(0);
    let done = sys::wait_for(within, Duration::from_millis(2), || {
        c.query_one(
            "SELECT coalesce(bool_or(confirmed_flush_lsn >= $2::text::pg_lsn), false) \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot, &lsn],
        )
        .expect("the slot's position")
        .get(0)
    });
    assert!(
        done,
        "slot {slot} did not confirm {lsn} within {within:?} (lag {} bytes)",
        lag_bytes(c, slot)
    );
    started.elapsed()
}

/// True when the count the listener confirmed equals the table's (no writer running, the slot
/// caught up).
pub fn count_exact(c: &mut postgres::Client, slot: &str) -> bool {
    let row = c
        .query_one(
            "SELECT (SELECT count FROM inventory_logical WHERE slot = $1), \
                    (SELECT count(*) FROM items)",
            &[&slot],
        )
        .expect("the confirmed count and the table's");
    row.get::<_, Option<i64>>(0) == Some(row.get::<_, i64>(1))
}

/// The command line the logical listener runs with.
pub const LISTEN_ARGS: [&str; 3] = ["-q", "--source", "logical"];

/// Appends the slot's name to a bench environment.
pub fn with_slot(mut env: Vec<(String, String)>, slot: &str) -> Vec<(String, String)> {
    env.push(("INVENTORY_LOGICAL_SLOT".into(), slot.into()));
    env
}
