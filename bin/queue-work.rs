//! `queue-work`: run queued alert jobs until stopped; `status` and `failed` for the operator.

use anyhow::Context;
use clap::{Parser, Subcommand};
use inventory_broadcast::admin::{Admin, RetryTarget, render};
use inventory_broadcast::bounds::MAX_RUN_TIME_S;
use inventory_broadcast::{cli, clock, config, dashboard, shutdown::Shutdown, worker};
use std::process::ExitCode;
use std::time::Duration;

/// Run queued alert jobs: broadcast each ItemCountExeed event through its driver, retrying
/// with backoff and recording the last failure in PostgreSQL's failed_jobs.
///
/// Ctrl-C or SIGTERM finishes the job in hand, then exits 0; a second one exits at once.
#[derive(Parser)]
#[command(name = "queue-work", version)]
struct Args {
    #[command(flatten)]
    common: cli::Common,
    #[command(flatten)]
    work: Work,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args)]
struct Work {
    /// Queues to work, highest priority first (comma-separated).
    #[arg(long, value_name = "A,B")]
    queue: Option<String>,
    /// Run one job, then exit (with nothing queued, wait at most --sleep for one).
    #[arg(long)]
    once: bool,
    /// Exit 0 as soon as the queues are empty (nothing pending, delayed or reserved).
    #[arg(long)]
    stop_when_empty: bool,
    /// Exit after this many jobs.
    #[arg(long, value_name = "N")]
    max_jobs: Option<u64>,
    /// Exit after this many seconds (the job in hand finishes; at most ten years).
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(..=MAX_RUN_TIME_S))]
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
    /// Seconds a job may run; a job that runs longer is abandoned and counts as a failed
    /// attempt. Caps the timeout each job was queued with.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<String>,
    /// Seconds before a reserved job whose worker vanished runs again; must exceed --timeout.
    #[arg(long, value_name = "SECONDS")]
    retry_after: Option<String>,
    /// Jobs reserved per round trip, 1-1000 (overrides INVENTORY_WORKER_BATCH).
    #[arg(long, value_name = "N")]
    batch: Option<String>,
    /// This worker's name in log lines and in `status` (overrides INVENTORY_WORKER_NAME).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Serve /metrics, /healthz and /readyz at this address, e.g. 127.0.0.1:9188 (overrides
    /// INVENTORY_METRICS_ADDR; off by default).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Per queue: pending, delayed, reserved, age of the oldest pending job, failed; and the
    /// running workers. Exit 0.
    Status {
        /// Queues to show (default: the configured ones); queues with failed jobs are added.
        #[arg(long, value_name = "A,B")]
        queue: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Jobs that used up their tries: list them (the default), show, retry, forget, flush.
    Failed(FailedArgs),
    /// Serve the live dashboard: the count and its severity, queues, throughput, workers,
    /// recent alerts and failed jobs (retry, forget). Loopback only unless
    /// INVENTORY_DASHBOARD_TOKEN is set; runs until Ctrl-C or SIGTERM.
    Dashboard {
        /// Address to serve, e.g. 127.0.0.1:8080 (overrides INVENTORY_DASHBOARD_ADDR).
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
    },
    #[command(flatten)]
    Packaging(cli::Packaging),
}

#[derive(clap::Args)]
struct FailedArgs {
    #[command(flatten)]
    list: ListArgs,
    #[command(subcommand)]
    command: Option<FailedCommand>,
}

#[derive(clap::Args)]
struct ListArgs {
    /// Only the failed jobs of this queue.
    #[arg(long, value_name = "Q")]
    queue: Option<String>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum FailedCommand {
    /// Table of failed jobs: id, queue, kind, failed at, first line of the error.
    List(ListArgs),
    /// One failed job: its whole payload and error. ID may be a unique prefix (4+ chars).
    Show {
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put failed jobs back on their queue with attempts reset: IDs, or `all`.
    Retry {
        #[arg(required = true, value_name = "ID|all")]
        ids: Vec<String>,
        /// Only the failed jobs of this queue.
        #[arg(long, value_name = "Q")]
        queue: Option<String>,
    },
    /// Delete one failed job.
    Forget { id: String },
    /// Delete every failed job, or only those older than --hours.
    Flush {
        /// Only jobs that failed more than this many hours ago.
        #[arg(long, value_name = "H")]
        hours: Option<u64>,
    },
}

impl Work {
    /// The first worker flag given, if any (they mean nothing to a subcommand).
    fn first_given(&self) -> Option<&'static str> {
        let flags = [
            ("--queue", self.queue.is_some()),
            ("--once", self.once),
            ("--stop-when-empty", self.stop_when_empty),
            ("--max-jobs", self.max_jobs.is_some()),
            ("--max-time", self.max_time.is_some()),
            ("--tries", self.tries.is_some()),
            ("--backoff", self.backoff.is_some()),
            ("--sleep", self.sleep.is_some()),
            ("--timeout", self.timeout.is_some()),
            ("--retry-after", self.retry_after.is_some()),
            ("--name", self.name.is_some()),
            ("--batch", self.batch.is_some()),
            ("--metrics-addr", self.metrics_addr.is_some()),
        ];
        flags.into_iter().find(|(_, given)| *given).map(|(f, _)| f)
    }
}

/// Rejects flags that belong to another mode (clap's own check would also reject the global
/// -q/-v/--config flags that every mode takes).
fn check_usage(args: &Args) {
    use clap::CommandFactory;
    let misplaced = match &args.command {
        None => None,
        Some(_) if args.work.first_given().is_some() => args.work.first_given().map(|f| {
            format!("{f} is an option of the worker; it cannot be used with a subcommand")
        }),
        Some(Command::Failed(f))
            if f.command.is_some() && (f.list.queue.is_some() || f.list.json) =>
        {
            Some("give --queue and --json after the failed subcommand (failed list --json)".into())
        }
        Some(_) => None,
    };
    if let Some(message) = misplaced {
        Args::command()
            .error(clap::error::ErrorKind::ArgumentConflict, message)
            .exit();
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    check_usage(&args);
    cli::finish("queue-work", run(args))
}

fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        None => work(&args.common, args.work),
        Some(Command::Status { queue, json }) => {
            let cfg = args
                .common
                .load(config::flags([("queue.names", "--queue", queue)]))?;
            let status = Admin::new(&cfg).status(&cfg.queue.names)?;
            let out = if json {
                status.to_json()
            } else {
                render::status(&status, clock::now_ms())
            };
            Ok(cli::print(&out)?)
        }
        Some(Command::Failed(failed)) => {
            let cfg = args.common.load(Vec::new())?;
            failed_command(&cfg, failed)
        }
        Some(Command::Dashboard { listen }) => {
            let cfg = args
                .common
                .load(config::flags([("dashboard.addr", "--listen", listen)]))?;
            // Before anything starts, and as a config error: exit 2.
            cfg.dashboard.check()?;
            let shutdown = Shutdown::on_signals().context("cannot install signal handlers")?;
            Ok(dashboard::run(&cfg, &shutdown)?)
        }
        Some(Command::Packaging(p)) => Ok(cli::print(&p.render::<Args>(env!("CARGO_BIN_NAME")))?),
    }
}

fn failed_command(cfg: &config::Config, args: FailedArgs) -> anyhow::Result<()> {
    let mut admin = Admin::new(cfg);
    let out = match args.command.unwrap_or(FailedCommand::List(args.list)) {
        FailedCommand::List(l) => {
            render::failed_list(&admin.failed_list(l.queue.as_deref())?, l.json)
        }
        FailedCommand::Show { id, json } => render::failed_show(&admin.failed_show(&id)?, json),
        FailedCommand::Retry { ids, queue } => {
            let target = if ids.iter().any(|i| i == "all") {
                RetryTarget::All
            } else {
                RetryTarget::Ids(ids)
            };
            let report = admin.failed_retry(&target, queue.as_deref())?;
            cli::print(&render::retry_report(&report))?;
            anyhow::ensure!(
                report.complete(),
                "{} failed job(s) not retried",
                report.skipped.len()
            );
            return Ok(());
        }
        FailedCommand::Forget { id } => render::forgot(&admin.failed_forget(&id)?),
        FailedCommand::Flush { hours } => render::flushed(admin.failed_flush(hours)?, hours),
    };
    Ok(cli::print(&out)?)
}

fn work(common: &cli::Common, args: Work) -> anyhow::Result<()> {
    let overrides = worker::Overrides {
        tries: args.tries.is_some(),
        backoff: args.backoff.is_some(),
    };
    let cfg = common.load(config::flags([
        ("queue.names", "--queue", args.queue),
        ("queue.tries", "--tries", args.tries),
        ("queue.backoff", "--backoff", args.backoff),
        ("queue.sleep", "--sleep", args.sleep),
        ("queue.timeout", "--timeout", args.timeout),
        ("queue.retry_after", "--retry-after", args.retry_after),
        ("worker.name", "--name", args.name),
        ("worker.batch", "--batch", args.batch),
        ("metrics.addr", "--metrics-addr", args.metrics_addr),
    ]))?;
    let opts = worker::Options {
        queues: cfg.queue.names.clone(),
        limits: worker::Limits {
            once: args.once,
            stop_when_empty: args.stop_when_empty,
            max_jobs: args.max_jobs,
            max_time: args.max_time.map(Duration::from_secs),
        },
        name: cfg.queue.worker_name.clone(),
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
