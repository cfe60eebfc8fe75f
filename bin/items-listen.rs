//! `items-listen`: LISTEN to PostgreSQL, rate each item count, queue the alerts.

use anyhow::Context;
use clap::{Parser, Subcommand};
use inventory_broadcast::db::logical::ChangeSource;
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
    /// Where changes come from: notify (the trigger's NOTIFY) or logical (a logical
    /// replication slot; nothing extra in the writers' commits). Overrides INVENTORY_SOURCE.
    #[arg(long, value_name = "SOURCE", global = true)]
    source: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Apply the schema in sql/ (items table, failed_jobs) and set up the change source:
    /// `--source notify` the counting trigger (and no slot), `--source logical` the
    /// replication slot and publication (and no trigger). Safe to repeat.
    Migrate,
    /// The logical source's replication slot: its lag, or drop it.
    Slot {
        #[command(subcommand)]
        command: SlotCommand,
    },
    #[command(flatten)]
    Packaging(cli::Packaging),
}

#[derive(Subcommand)]
enum SlotCommand {
    /// How far the slot is behind (bytes and seconds) and how much WAL it keeps. Exit 1 when
    /// there is no slot.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Drop the slot and its publication, so the server keeps no WAL for it (the logical
    /// source then needs `migrate --source logical` again).
    Drop,
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
        ("listener.source", "--source", args.source),
    ]))?;
    match args.command {
        Some(Command::Migrate) => migrate(&cfg),
        Some(Command::Slot { command }) => slot(&cfg, command),
        Some(Command::Packaging(_)) => unreachable!("printed before the config was loaded"),
        None => {
            let shutdown = Shutdown::on_signals().context("cannot install signal handlers")?;
            listener::run(&cfg, &shutdown)?;
            log::info!("stopped");
            Ok(())
        }
    }
}

fn migrate(cfg: &config::Config) -> anyhow::Result<()> {
    let mut db = db::Db::connect(&cfg.database)?;
    let count = db::migrate::migrate(&mut db, &cfg.listen_channel).context("migration failed")?;
    match cfg.source {
        ChangeSource::Notify => {
            if db.drop_logical(&cfg.slot)? {
                log::info!("dropped replication slot {}", cfg.slot);
            }
            log::info!(
                "schema is up to date at {}; {count} items; trigger notifies channel {}",
                db.target(),
                cfg.listen_channel
            );
        }
        ChangeSource::Logical => {
            let count = db
                .setup_logical(&cfg.slot)
                .context("cannot set up the logical source")?;
            log::info!(
                "schema is up to date at {}; {count} items; changes are read from replication \
                 slot {} (no trigger in the write path)",
                db.target(),
                cfg.slot
            );
        }
    }
    Ok(())
}

fn slot(cfg: &config::Config, command: SlotCommand) -> anyhow::Result<()> {
    let mut db = db::Db::connect(&cfg.database)?;
    match command {
        SlotCommand::Status { json } => {
            let status = db
                .slot_status(&cfg.slot)?
                .with_context(|| format!("there is no replication slot {}", cfg.slot))?;
            let out = if json {
                serde_json::to_string_pretty(&status)?
            } else {
                format!(
                    "slot {}: {} behind ({:.0} s since the listener was last caught up), \
                     keeps {} of WAL, status {}, count {}",
                    status.slot,
                    bytes(status.lag_bytes),
                    status.lag_seconds,
                    bytes(status.retained_bytes),
                    status.wal_status,
                    status.count
                )
            };
            Ok(cli::print(&out)?)
        }
        SlotCommand::Drop => {
            let dropped = db.drop_logical(&cfg.slot)?;
            let out = if dropped {
                format!("dropped replication slot {} and its publication", cfg.slot)
            } else {
                format!("there was no replication slot {}", cfg.slot)
            };
            Ok(cli::print(&out)?)
        }
    }
}

/// `1.5 MB`-style sizes.
fn bytes(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.1} GB", n as f64 / 1e9),
    }
}
