//! Upper bounds of the durations and counts an operator can set (and that queued jobs carry):
//! far above any real use, and low enough that no arithmetic on them can overflow: deadlines
//! in ms for Lua, whose numbers are doubles exact to 2^53; `Instant` additions; `u32`
//! attempt counters.

/// `queue.tries`.
pub const MAX_TRIES: u32 = 10_000;
/// Each `queue.backoff` step, and what a queued job's own backoff is cut to: a day.
pub const MAX_BACKOFF_S: u64 = 86_400;
/// Steps in `queue.backoff`.
pub const MAX_BACKOFF_STEPS: usize = 100;
/// `queue.timeout`: a day.
pub const MAX_TIMEOUT_S: u64 = 86_400;
/// `queue.retry_after`: a week.
pub const MAX_RETRY_AFTER_S: u64 = 7 * 86_400;
/// `alerts.repeat_interval`, `database.*_timeout`: a year.
pub const MAX_INTERVAL_S: u64 = 366 * 86_400;
/// Severity boundaries, in percent of the threshold.
pub const MAX_PERCENT: u32 = 1_000_000;
/// `--max-time`: ten years.
pub const MAX_RUN_TIME_S: u64 = 3_660 * 86_400;
