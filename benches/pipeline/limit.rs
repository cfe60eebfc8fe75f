//! Measure 7, the limit: what one Redis client can do on this machine, measured by
//! `redis-benchmark` against the same private Redis in the same run, so the drain figure reads
//! as a ratio.

use crate::report::RedisBench;
use crate::sys;
use std::process::Command;
use std::time::Duration;

/// Requests per run: about 2–3 s each at the rates this kind of machine reaches.
const REQUESTS_ONE_BY_ONE: u64 = 50_000;
const REQUESTS_PIPELINED: u64 = 500_000;
/// Depth of the pipelined runs.
pub const PIPELINE: u32 = 16;
/// The tiny script whose EVALSHA stands for "one script call per round trip".
const TINY_SCRIPT: &str = "return 1";

/// PUBLISH of `message` (a real event, to a channel nobody listens on) and EVALSHA of a tiny
/// script, one client, without and with pipelining.
pub fn measure(port: u16, con: &mut redis::Connection, message: &str) -> Vec<RedisBench> {
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(TINY_SCRIPT)
        .query(con)
        .expect("SCRIPT LOAD");
    let commands: [(&str, Vec<&str>); 2] = [
        ("PUBLISH", vec!["PUBLISH", "bench-limit", message]),
        ("EVALSHA", vec!["EVALSHA", &sha, "0"]),
    ];
    let mut out = Vec::new();
    for (name, args) in &commands {
        for (pipeline, requests) in [(1, REQUESTS_ONE_BY_ONE), (PIPELINE, REQUESTS_PIPELINED)] {
            eprintln!("bench: redis-benchmark {name} -c 1 -P {pipeline} -n {requests}");
            out.push(run(port, name, args, pipeline, requests));
        }
    }
    out
}

fn run(port: u16, name: &str, args: &[&str], pipeline: u32, requests: u64) -> RedisBench {
    let o = sys::run(
        Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-c", "1"])
            .args(["-n", &requests.to_string(), "-P", &pipeline.to_string()])
            .arg("--csv")
            .args(args),
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "redis-benchmark failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (per_s, p50_ms) =
        parse_csv(&text).unwrap_or_else(|| panic!("cannot read redis-benchmark output: {text}"));
    RedisBench {
        command: name.to_string(),
        clients: 1,
        pipeline,
        requests,
        per_s,
        p50_ms,
    }
}

/// Requests/s and p50 latency from `--csv` output: the last line's fields, counted from the
/// right, since the test name (the command and its arguments) may hold commas and quotes.
fn parse_csv(text: &str) -> Option<(f64, f64)> {
    let line = text.lines().rfind(|l| !l.trim().is_empty())?;
    // "name","rps","avg","min","p50","p95","p99","max"
    let fields: Vec<&str> = line.rsplitn(8, ',').collect();
    let num = |i: usize| -> Option<f64> { fields.get(i)?.trim().trim_matches('"').parse().ok() };
    Some((num(6)?, num(3)?))
}
