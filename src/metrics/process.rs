//! The process's CPU time and resident memory, read from `/proc/self` at scrape time
//! (`inventory_process_cpu_seconds_total`, `inventory_process_resident_memory_bytes`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

/// The process figures.
#[derive(Default)]
pub(super) struct Process {
    /// A counter (CPU time only grows), moved on by what was used since the last scrape.
    cpu_seconds: Counter<f64, AtomicU64>,
    cpu_ticks_seen: Mutex<u64>,
    resident_bytes: Gauge,
}

/// Clock ticks per second of `/proc/self/stat` (USER_HZ): 100 on every Linux in use.
const TICKS_PER_SECOND: f64 = 100.0;

impl Process {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register_with_unit(
            "process_cpu",
            "CPU time of this process (user and system)",
            prometheus_client::registry::Unit::Seconds,
            self.cpu_seconds.clone(),
        );
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory of this process",
            prometheus_client::registry::Unit::Bytes,
            self.resident_bytes.clone(),
        );
    }

    /// Reads `/proc/self`; figures that cannot be read keep their last value.
    pub(super) fn refresh(&self) {
        if let Some(ticks) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| cpu_ticks(&stat))
        {
            let mut seen = self
                .cpu_ticks_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let new = ticks.saturating_sub(*seen);
            *seen = ticks.max(*seen);
            self.cpu_seconds.inc_by(new as f64 / TICKS_PER_SECOND);
        }
        if let Some(kb) = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| resident_kb(&status))
        {
            self.resident_bytes
                .set(i64::try_from(kb.saturating_mul(1024)).unwrap_or(i64::MAX));
        }
    }
}

/// utime + stime of `/proc/self/stat` (fields 14 and 15; the command name, field 2, may hold
/// spaces, so fields are counted after its closing parenthesis).
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` of `/proc/self/status`, in kB.
fn resident_kb(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_fields() {
        let stat = "42 (queue work) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1";
        assert_eq!(cpu_ticks(stat), Some(300));
        assert_eq!(resident_kb("Name:\tx\nVmRSS:\t  5120 kB\n"), Some(5120));
        assert_eq!(resident_kb("Name:\tx\n"), None);
    }
}
