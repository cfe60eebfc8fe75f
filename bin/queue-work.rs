//! `queue-work`: run queued alert jobs until stopped.

use anyhow::Context;
use clap::Parser;
use inventory_broadcast::{cli, config, shutdown::Shutdown, worker};
use std::process::ExitCode;
use std::time::Duration;

/// Run queued alert jobs: broadcast each ItemCountExeed event through its driver, retrying
/// with backoff and recording the last failure in PostgreSQL's failed_jobs.
///
/// Ctrl-C or SIGTERM finishes the job in hand, then exits 0; a second one exits at once.
#[derive(Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    common: cli::Common,
    /// Queues to work, highest priority first (comma-separated).
    #[arg(long, value_name = "A,B")]
    queue: Option<String>,
    /// Run one job, then exit.
    #[arg(long)]
    once: bool,
    /// Exit 0 as soon as the queues are empty.
    #[arg(long)]
    stop_when_empty: bool,
    /// Exit after this many jobs.
    #[arg(long, value_name = "N")]
    max_jobs: Option<u64>,
    /// Exit after this many seconds (the job in hand finishes).
    #[arg(long, value_name = "SECONDS")]
    max_time: Option<u64>,
    /// Attempts per job before it fails (0 = unlimited). Overrides the value the job was
    /// queued with.
    #[arg(long, value_name = "N")]
    tries: Option<String>,
    /// Seconds between retries, e.g. 1,5,10 (the last repeats). Overrides the job's own.
    #[arg(long, value_name = "S,S,…")]
    backoff: Option<String>,
    /// Longest blocking wait for new jobs, in seconds (jobs still wake the worker at once).
    #[arg(long, value_name = "SECONDS")]
    sleep: Option<String>,
    /// Seconds a job may run.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<String>,
    /// Seconds before a reserved job whose worker vanished runs again; must exceed --timeout.
    #[arg(long, value_name = "SECONDS")]
    retry_after: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging(args.common.quiet, args.common.verbose);
    cli::finish("queue-work", run(args))
}

fn run(args: Args) -> anyhow::Result<()> {
    let overrides = worker::Overrides {
        tries: args.tries.is_some(),
        backoff: args.backoff.is_some(),
    };
    let cfg = args.common.load(config::flags([
        ("queue.names", "--queue", args.queue),
        ("queue.tries", "--tries", args.tries),
        ("queue.backoff", "--backoff", args.backoff),
        ("queue.sleep", "--sleep", args.sleep),
        ("queue.timeout", "--timeout", args.timeout),
        ("queue.retry_after", "--retry-after", args.retry_after),
    ]))?;
    let opts = worker::Options {
        queues: cfg.queue.names.clone(),
        once: args.once,
        stop_when_empty: args.stop_when_empty,
        max_jobs: args.max_jobs,
        max_time: args.max_time.map(Duration::from_secs),
        overrides,
    };
    let shutdown = Shutdown::on_signals().context("cannot install signal handlers")?;
    let summary = worker::run(&cfg, &opts, &shutdown)?;
    log::info!(
        "stopped: {} done, {} retried, {} failed",
        summary.done,
        summary.retried,
        summary.failed
    );
    Ok(())
}
