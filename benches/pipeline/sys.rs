//! What the benchmark reads from the machine (`/proc`, `INFO cpu`), and waiting with deadlines:
//! every wait here gives up at its deadline and stops at once when the run is aborted.

use inventory_broadcast::shutdown::Shutdown;
use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Set by SIGINT/SIGTERM or by the watchdog: every wait then panics, so the phase in hand
/// unwinds and drops (kills) what it started.
static ABORT: OnceLock<Shutdown> = OnceLock::new();
/// What the run started, by pid and start time (so a reused pid is never taken for ours), for
/// the watchdog's last resort.
static STARTED: Mutex<Vec<(u32, u64)>> = Mutex::new(Vec::new());
/// After an abort, how long the run may take to unwind before the watchdog ends it.
const GRACE: Duration = Duration::from_secs(30);

/// Wires SIGINT/SIGTERM to the abort flag (a second signal exits at once).
pub fn install_abort() {
    let token = Shutdown::on_signals().unwrap_or_else(|_| Shutdown::new());
    let _ = ABORT.set(token);
}

/// Remembers a process the run started (a server, a daemon).
pub fn started(pid: Option<u32>) {
    if let Some(pid) = pid {
        if let Some(since) = start_time(pid) {
            STARTED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((pid, since));
        }
    }
}

/// When a process started (clock ticks after boot): with the pid, it names one process.
fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// The fields of `/proc/<pid>/stat` after the command name (the state letter is the first).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces or ')': the fields start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Aborts the run after `budget`, so the benchmark ends by itself whatever hangs. Should the
/// unwinding itself hang (a call stuck in a server), it SIGKILLs what the run started and exits.
pub fn watchdog(budget: Duration) {
    std::thread::spawn(move || {
        std::thread::sleep(budget);
        eprintln!("bench: the run exceeded its {budget:?} budget; aborting");
        abort();
        std::thread::sleep(GRACE);
        eprintln!("bench: still running {GRACE:?} after the abort; killing what it started");
        for (pid, since) in STARTED.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if start_time(*pid) != Some(*since) {
                continue; // gone (its pid may belong to someone else by now)
            }
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        std::process::exit(1);
    });
}

pub fn abort() {
    if let Some(token) = ABORT.get() {
        token.trigger();
    }
}

pub fn aborted() -> bool {
    ABORT.get().is_some_and(Shutdown::requested)
}

/// Panics when the run was aborted.
pub fn check() {
    assert!(!aborted(), "aborted");
}

/// Sleeps until `until`, in steps short enough to notice an abort.
pub fn sleep_until(until: Instant) {
    loop {
        check();
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

pub fn sleep(d: Duration) {
    sleep_until(Instant::now() + d);
}

/// Polls `done` every `every` until it is true (returns true) or `within` passes (false).
pub fn wait_for(within: Duration, every: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        check();
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Runs `cmd` to completion with a deadline; its output is collected meanwhile (a full pipe
/// cannot stall it). Panics at the deadline, after killing it.
pub fn run(cmd: &mut Command, within: Duration) -> Output {
    let what = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let out = drain_pipe(child.stdout.take());
    let err = drain_pipe(child.stderr.take());
    let end = Instant::now() + within;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if aborted() || Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            check();
            panic!("{what} did not finish within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn drain_pipe(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        buf
    })
}

/// Clock ticks per second of `/proc/<pid>/stat` times.
pub fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The CPU time (user + system) of a set of processes over a stretch of wall time.
pub struct CpuWatch {
    pids: Vec<u32>,
    ticks: u64,
    since: Instant,
}

impl CpuWatch {
    /// Starts counting for `pids` (one that is gone counts nothing).
    pub fn start(pids: Vec<u32>) -> CpuWatch {
        CpuWatch {
            ticks: Self::total(&pids),
            pids,
            since: Instant::now(),
        }
    }

    fn total(pids: &[u32]) -> u64 {
        pids.iter()
            .filter_map(|p| cpu_ticks(*p))
            .map(|(_, t)| t)
            .sum()
    }

    /// Their CPU time since the start, in % of one core, and the seconds of wall time.
    pub fn percent(&self) -> (f64, f64) {
        let wall = self.since.elapsed().as_secs_f64();
        let cpu = Self::total(&self.pids).saturating_sub(self.ticks) as f64 / clock_ticks();
        (100.0 * cpu / wall, wall)
    }
}

/// A process's state letter and its CPU time so far (utime + stime, in clock ticks).
/// A zombie (exited, not yet reaped) still shows its final times.
pub fn cpu_ticks(pid: u32) -> Option<(char, u64)> {
    let fields = stat_fields(pid)?;
    let state = fields.first()?.chars().next()?;
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((state, utime + stime))
}

/// Waits (without reaping) until `child` has exited; returns its final CPU time in seconds and
/// when it exited. Panics at the deadline.
pub fn wait_exit_with_cpu(child: &mut Child, within: Duration) -> (f64, Instant) {
    let pid = child.id();
    let ticks = clock_ticks();
    let end = Instant::now() + within;
    loop {
        match cpu_ticks(pid) {
            Some(('Z', t)) => {
                let at = Instant::now();
                let _ = child.wait();
                return (t as f64 / ticks, at);
            }
            Some(_) => {}
            None => panic!("process {pid} vanished before its CPU time was read"),
        }
        check();
        assert!(
            Instant::now() < end,
            "process {pid} did not exit within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `VmRSS` and `VmHWM` (peak RSS) of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Redis's own CPU time so far (`INFO cpu`: user + system), in seconds.
pub fn redis_cpu(con: &mut redis::Connection) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query(con).expect("INFO cpu");
    let field = |name: &str| -> f64 {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("INFO cpu has no {name}"))
    };
    field("used_cpu_user") + field("used_cpu_sys")
}

/// The first line of `path` that starts with `key`, after the key and a separator.
pub fn proc_field(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    Some(
        line[key.len()..]
            .trim_start_matches([' ', '\t', ':'])
            .trim()
            .to_string(),
    )
}

/// The 1, 5 and 15 minute load averages: how busy the machine was around a run.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The value at quantile `q` (0..=1) of sorted `v`, by nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
