//! `notify`: raise an item-count alert by hand.

use clap::Parser;
use inventory_broadcast::event::MAX_COUNT;
use inventory_broadcast::{cli, manual};
use std::process::ExitCode;

/// Raise an ItemCountExeed alert for a given item count, whatever its severity (info too).
/// By default the alert is queued for `queue-work`; --sync broadcasts it at once.
#[derive(Parser)]
#[command(
    version,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  notify --count 25                 # queue it; prints the job id and severity\n  notify --count 25 --sync          # broadcast now, without the queue\n  notify --count 25 --dry-run       # print the event JSON; touch nothing\n  notify --count 31 --force         # also page Slack/email, whatever the alert policy says"
)]
struct Args {
    /// The item count to rate and broadcast (at most 2^53 - 1, what a browser holds exactly).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(..=MAX_COUNT))]
    #[arg(required = true)]
    count: Option<u64>,
    /// Broadcast now through every driver, without the queue.
    #[arg(long, conflicts_with = "dry_run")]
    sync: bool,
    /// Print the event JSON that would be published; touch neither Redis nor PostgreSQL.
    #[arg(long)]
    dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Also tell Slack and email (those switched on), even when the alert policy would stay
    /// quiet; nothing is recorded in the policy's state.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    common: cli::Common,
    #[command(subcommand)]
    command: Option<cli::Packaging>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::finish("notify", run(args))
}

fn run(args: Args) -> anyhow::Result<()> {
    // Before the configuration: packaging output needs none, nor a server.
    if let Some(p) = &args.command {
        return Ok(cli::print(&p.render::<Args>(env!("CARGO_BIN_NAME")))?);
    }
    let count = args
        .count
        .expect("clap requires --count when there is no subcommand");
    let cfg = args.common.load(Vec::new())?;
    let mode = if args.dry_run {
        manual::Mode::DryRun
    } else if args.sync {
        manual::Mode::Sync
    } else {
        manual::Mode::Queue
    };
    let out = manual::notify(&cfg, count, mode, args.json, args.force)?;
    Ok(cli::print(&out)?)
}
