//! `items-listen`: LISTEN to PostgreSQL, rate each item count, queue the alerts.

use anyhow::Context;
use clap::{Parser, Subcommand};
use inventory_broadcast::{cli, config, db, listener, shutdown::Shutdown};
use std::process::ExitCode;

/// Listen for item-count changes in PostgreSQL and queue an alert for each count at or above
/// the threshold (severity warning, high or critical). Run `queue-work` to deliver them.
///
/// Configuration: flags > environment > .env > config file > defaults; see config/inventory.toml.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  items-listen migrate      # once: create the table, trigger and failed_jobs\n  items-listen              # then keep it running; Ctrl-C stops it"
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: cli::Common,
    /// NOTIFY channel to listen on (overrides INVENTORY_LISTEN_CHANNEL).
    #[arg(long, value_name = "NAME", global = true)]
    channel: Option<String>,
    /// Lowest severity that is dispatched: info, warning, high, critical.
    #[arg(long, value_name = "SEVERITY")]
    min_severity: Option<String>,
    /// Serve /metrics, /healthz and /readyz at this address, e.g. 127.0.0.1:9187 (overrides
    /// INVENTORY_METRICS_ADDR; off by default).
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the schema in sql/ (items table, counting trigger, failed_jobs); safe to repeat.
    Migrate,
    #[command(flatten)]
    Packaging(cli::Packaging),
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::finish("items-listen", run(args))
}

fn run(args: Args) -> anyhow::Result<()> {
    // Before the configuration: packaging output needs none, nor a server.
    if let Some(Command::Packaging(p)) = &args.command {
        return Ok(cli::print(&p.render::<Args>(env!("CARGO_BIN_NAME")))?);
    }
    let cfg = args.common.load(config::flags([
        ("listener.channel", "--channel", args.channel),
        (
            "inventory.min_severity",
            "--min-severity",
            args.min_severity,
        ),
        ("metrics.addr", "--metrics-addr", args.metrics_addr),
    ]))?;
    match args.command {
        Some(Command::Migrate) => {
            let mut db = db::Db::connect(&cfg.database)?;
            let count =
                db::migrate::migrate(&mut db, &cfg.listen_channel).context("migration failed")?;
            log::info!(
                "schema is up to date at {}; {count} items; trigger notifies channel {}",
                db.target(),
                cfg.listen_channel
            );
            Ok(())
        }
        Some(Command::Packaging(_)) => unreachable!("printed before the config was loaded"),
        None => {
            let shutdown = Shutdown::on_signals().context("cannot install signal handlers")?;
            listener::run(&cfg, &shutdown)?;
            log::info!("stopped");
            Ok(())
        }
    }
}
