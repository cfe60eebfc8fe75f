//! How the operator's commands print: aligned tables for a terminal, pretty JSON for scripts.

use super::failed::RetryReport;
use super::status::Status;
use crate::db::failed::FailedJob;
use crate::text::{escape, escape_lines};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Longest error text shown in the `failed` table; `failed show` has all of it.
const ERROR_WIDTH: usize = 80;

/// `status` as tables; `now_ms` is the current Unix time in ms.
pub fn status(status: &Status, now_ms: u64) -> String {
    let mut rows = vec![row(&[
        "QUEUE",
        "PENDING",
        "DELAYED",
        "RESERVED",
        "OLDEST PENDING",
        "FAILED",
    ])];
    for q in &status.queues {
        let oldest = match (q.pending, q.oldest_pending_age_s) {
            (0, _) => "-".to_string(),
            (_, Some(age)) => human_duration(age),
            (_, None) => "? (unreadable job)".to_string(),
        };
        rows.push(vec![
            escape(&q.name).into_owned(),
            q.pending.to_string(),
            q.delayed.to_string(),
            q.reserved.to_string(),
            oldest,
            q.failed.to_string(),
        ]);
    }
    let mut out = table(&rows, &[false, true, true, true, false, true]);
    out.push_str(&listeners(status, now_ms));
    if let Some(slot) = &status.slot {
        let _ = writeln!(
            out,
            "slot {}: {} bytes behind, last caught up {:.0} s ago, keeps {} bytes of WAL ({})",
            slot.slot, slot.lag_bytes, slot.lag_seconds, slot.retained_bytes, slot.wal_status
        );
    }
    if status.workers.is_empty() {
        out.push_str("\nno workers running\n");
        return out;
    }
    let _ = writeln!(out, "\nworkers ({}):", status.workers.len());
    let mut rows = vec![row(&[
        "NAME", "HOST", "PID", "QUEUES", "UP", "DONE", "FAILED", "STATE",
    ])];
    for w in &status.workers {
        let since = |ms: u64| human_duration(now_ms.saturating_sub(ms) as f64 / 1000.0);
        // Heartbeats are read from Redis: every field is shown escaped.
        let state = match &w.current {
            Some(job) => format!(
                "{} {} for {}",
                escape(&job.id),
                escape(&job.kind),
                since(job.started_ms)
            ),
            None => "idle".to_string(),
        };
        rows.push(vec![
            escape(w.name.as_deref().unwrap_or("-")).into_owned(),
            escape(&w.host).into_owned(),
            w.pid.to_string(),
            escape(&w.queues.join(",")).into_owned(),
            since(w.started_ms),
            w.done.to_string(),
            w.failed.to_string(),
            state,
        ]);
    }
    out.push_str(&table(
        &rows,
        &[false, false, true, false, false, true, true, false],
    ));
    out
}

/// One line per listener, or a line saying there is none.
fn listeners(status: &Status, now_ms: u64) -> String {
    if status.listeners.is_empty() {
        return "\nno listener running\n".into();
    }
    let mut out = format!("\nlisteners ({}):\n", status.listeners.len());
    for l in &status.listeners {
        let up = human_duration(now_ms.saturating_sub(l.started_ms) as f64 / 1000.0);
        let state = serde_json::to_value(l.state).unwrap_or_default();
        let _ = writeln!(
            out,
            "  {} on {} pid {}, up {up}",
            state.as_str().unwrap_or("?"),
            escape(&l.host),
            l.pid
        );
    }
    out
}

/// `failed list`: a table, or JSON.
pub fn failed_list(jobs: &[FailedJob], as_json: bool) -> String {
    if as_json {
        let items: Vec<_> = jobs.iter().map(job_json).collect();
        return serde_json::to_string_pretty(&items).unwrap_or_default();
    }
    if jobs.is_empty() {
        return "no failed jobs".to_string();
    }
    let mut rows = vec![row(&["ID", "QUEUE", "KIND", "FAILED AT", "ERROR"])];
    for job in jobs {
        rows.push(vec![
            escape(&job.uuid).into_owned(),
            escape(&job.queue).into_owned(),
            escape(&kind_of(&job.payload)).into_owned(),
            escape(&job.failed_at).into_owned(),
            escape(&first_line(&job.exception, ERROR_WIDTH)).into_owned(),
        ]);
    }
    table(&rows, &[false; 5]).trim_end().to_string()
}

/// `failed show`: one failed job with its whole payload and error, or JSON.
pub fn failed_show(job: &FailedJob, as_json: bool) -> String {
    if as_json {
        return serde_json::to_string_pretty(&job_json(job)).unwrap_or_default();
    }
    // A JSON payload is re-printed (serde escapes control characters in its strings); any
    // other text is escaped line by line.
    let payload = serde_json::from_str::<serde_json::Value>(&job.payload)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| escape_lines(&job.payload).into_owned());
    format!(
        "id:        {}\nqueue:     {}\nkind:      {}\nfailed at: {}\n\nerror:\n{}\n\npayload:\n{}",
        escape(&job.uuid),
        escape(&job.queue),
        escape(&kind_of(&job.payload)),
        escape(&job.failed_at),
        escape_lines(job.exception.trim_end()),
        payload
    )
}

/// `failed retry`: what was put back (per queue when all were asked for) and what was not.
pub fn retry_report(report: &RetryReport) -> String {
    let mut out = String::new();
    if report.all {
        let mut per_queue: BTreeMap<&str, usize> = BTreeMap::new();
        for (_, q) in &report.retried {
            *per_queue.entry(q).or_default() += 1;
        }
        let parts: Vec<String> = per_queue
            .iter()
            .map(|(q, n)| format!("{} {n}", escape(q)))
            .collect();
        let _ = write!(out, "put {} failed job(s) back", report.retried.len());
        if !parts.is_empty() {
            let _ = write!(out, ": {}", parts.join(", "));
        }
        out.push('\n');
    } else {
        for (id, queue) in &report.retried {
            let _ = writeln!(out, "put {} back on {}", escape(id), escape(queue));
        }
    }
    for (id, why) in &report.skipped {
        let _ = writeln!(out, "not retried {}: {}", escape(id), escape(why));
    }
    out.trim_end().to_string()
}

/// `failed forget`.
pub fn forgot(uuid: &str) -> String {
    format!("forgot failed job {}", escape(uuid))
}

/// `failed flush`.
pub fn flushed(n: u64, hours: Option<u64>) -> String {
    match hours {
        Some(h) => format!("deleted {n} failed job(s) that failed more than {h} hour(s) ago"),
        None => format!("deleted {n} failed job(s)"),
    }
}

/// A failed job as JSON: the payload as a document when it is one, else as text.
fn job_json(job: &FailedJob) -> serde_json::Value {
    let payload = serde_json::from_str::<serde_json::Value>(&job.payload)
        .unwrap_or_else(|_| serde_json::Value::String(job.payload.clone()));
    json!({
        "id": job.uuid,
        "queue": job.queue,
        "kind": kind_of(&job.payload),
        "failed_at": job.failed_at,
        "exception": job.exception,
        "payload": payload,
    })
}

/// The job kind in a stored payload, or `(undecodable)`.
fn kind_of(payload: &str) -> String {
    serde_json::from_str::<serde_json::Value>(payload)
        .ok()
        .and_then(|v| v.get("job")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "(undecodable)".to_string())
}

/// The first line of `text`, cut to `width` characters.
fn first_line(text: &str, width: usize) -> String {
    let line = text.lines().next().unwrap_or("").trim_end();
    if line.chars().count() <= width {
        return line.to_string();
    }
    let cut: String = line.chars().take(width.saturating_sub(1)).collect();
    format!("{cut}…")
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Aligned columns, two spaces apart; `right[i]` right-aligns column i (numbers).
fn table(rows: &[Vec<String>], right: &[bool]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if right.get(i).copied().unwrap_or(false) {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `42s`, `3m05s`, `2h10m`, `4d3h`: short, for a terminal.
pub fn human_duration(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(0.4), "0s");
        assert_eq!(human_duration(42.0), "42s");
        assert_eq!(human_duration(185.0), "3m05s");
        assert_eq!(human_duration(7800.0), "2h10m");
        assert_eq!(human_duration(97200.0), "1d3h");
        assert_eq!(human_duration(-5.0), "0s");
    }

    #[test]
    fn first_line_is_cut() {
        assert_eq!(first_line("a\nb", 10), "a");
        assert_eq!(first_line("abcdefghijkl", 5), "abcd…");
        assert_eq!(first_line("", 5), "");
    }

    #[test]
    fn kind_comes_from_the_payload() {
        assert_eq!(kind_of(r#"{"job":"broadcast:redis"}"#), "broadcast:redis");
        assert_eq!(kind_of("not json"), "(undecodable)");
        assert_eq!(kind_of(r#"{"id":5}"#), "(undecodable)");
    }

    #[test]
    fn tables_align() {
        let rows = vec![row(&["A", "NUM"]), row(&["long", "7"])];
        assert_eq!(table(&rows, &[false, true]), "A     NUM\nlong    7\n");
    }
}
