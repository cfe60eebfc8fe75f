//! What the three binaries share: logging set-up and turning an error into one line and an
//! exit code (0 success, 1 runtime failure, 2 usage or configuration error).

pub mod packaging;

pub use packaging::Packaging;

use crate::config::ConfigError;
use std::io::Write;
use std::process::ExitCode;

/// Exit code for a configuration or usage error.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for a runtime failure (a server unreachable, a job that could not be queued).
pub const EXIT_RUNTIME: u8 = 1;

/// Logs to stderr: `info` by default, `warn` with `quiet`, `debug` with `verbose`;
/// `RUST_LOG` overrides both.
pub fn init_logging(quiet: bool, verbose: bool) {
    let level = if verbose {
        "debug"
    } else if quiet {
        "warn"
    } else {
        "info"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format(|buf, record| {
            let ts = buf.timestamp_millis();
            writeln!(buf, "{ts} {:<5} {}", record.level(), record.args())
        })
        .init();
}

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
}

impl Common {
    /// Loads the configuration with these flags and `extra` ones layered on top.
    pub fn load(
        &self,
        extra: Vec<crate::config::Flag>,
    ) -> Result<crate::config::Config, ConfigError> {
        let mut flags = crate::config::flags([
            ("database.url", "--database-url", self.database_url.clone()),
            ("redis.url", "--redis-url", self.redis_url.clone()),
            ("inventory.threshold", "--threshold", self.threshold.clone()),
        ]);
        flags.extend(extra);
        crate::config::Config::load(self.config.as_deref(), flags)
    }
}
