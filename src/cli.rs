//! What the three binaries share: their common flags, loading the configuration and starting
//! logging with it, and turning an error into one line and an exit code (0 success, 1 runtime
//! failure, 2 usage or configuration error).

pub mod packaging;

pub use packaging::Packaging;

use crate::config::ConfigError;
use std::io::Write;
use std::process::ExitCode;

/// Exit code for a configuration or usage error.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for a runtime failure (a server unreachable, a job that could not be queued).
pub const EXIT_RUNTIME: u8 = 1;

/// The exit code for `err`: 2 when a configuration error is anywhere in its chain, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    if err
        .chain()
        .any(|e| e.downcast_ref::<ConfigError>().is_some())
    {
        EXIT_CONFIG
    } else {
        EXIT_RUNTIME
    }
}

/// Prints `name: error: …` on one line and returns the matching exit code. A closed output
/// pipe (`queue-work status | head -1`) ends the command quietly with 0, as ripgrep does: the
/// reader has what it wanted.
pub fn finish(name: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name}: error: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Writes `text` to standard output, ending it with a newline if it has none. Unlike
/// `println!`, a closed pipe is an error to return (see [`finish`]), not a panic.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Flags every binary takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Config file (TOML). Default: $INVENTORY_CONFIG, else config/inventory.toml if present.
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<std::path::PathBuf>,
    /// PostgreSQL URL (overrides DATABASE_URL).
    #[arg(long, value_name = "URL", global = true)]
    pub database_url: Option<String>,
    /// Redis URL of the queue (overrides REDIS_URL).
    #[arg(long, value_name = "URL", global = true)]
    pub redis_url: Option<String>,
    /// Item count at which alerts start (overrides INVENTORY_NOTIFICATION_THRESHOLD).
    #[arg(long, value_name = "N", global = true)]
    pub threshold: Option<String>,
    /// Only warnings and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Debug output.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Log format: text (default) or json, one object per line (overrides LOG_FORMAT).
    #[arg(long, value_name = "FORMAT", global = true)]
    pub log_format: Option<String>,
    /// Append the log to this file instead of stderr; reopened on SIGHUP, for logrotate
    /// (overrides LOG_FILE).
    #[arg(long, value_name = "PATH", global = true)]
    pub log_file: Option<String>,
}

impl Common {
    /// Loads the configuration with these flags and `extra` ones layered on top, starts
    /// logging as it says, and logs its warnings.
    pub fn load(&self, extra: Vec<crate::config::Flag>) -> anyhow::Result<crate::config::Config> {
        let mut flags = crate::config::flags([
            ("database.url", "--database-url", self.database_url.clone()),
            ("redis.url", "--redis-url", self.redis_url.clone()),
            ("inventory.threshold", "--threshold", self.threshold.clone()),
            ("log.format", "--log-format", self.log_format.clone()),
            ("log.file", "--log-file", self.log_file.clone()),
        ]);
        flags.extend(extra);
        let config = crate::config::Config::load(self.config.as_deref(), flags)?;
        crate::logging::init(&config.log, self.quiet, self.verbose)?;
        for warning in config.warnings() {
            log::warn!("{warning}");
        }
        Ok(config)
    }
}
