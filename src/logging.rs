//! Logging: today's text lines (`2026-11-30T10:00:00.123Z INFO  message`) or, with
//! `LOG_FORMAT=json`, one JSON object per line (`ts`, `level`, `target`, `msg`, and the
//! event's fields: `job_id`, `queue`, `attempt`, …), to stderr or to a file that is reopened
//! on SIGHUP, so logrotate can move it away. `RUST_LOG` and `-v`/`-q` choose the level in
//! both formats.

use serde_json::{Map, Value};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Readable lines, as a terminal shows them.
    #[default]
    Text,
    /// One JSON object per line, for Loki, Elasticsearch, CloudWatch.
    Json,
}

impl Format {
    /// Parses `text` or `json` (any case).
    pub fn parse(name: &str) -> Option<Format> {
        match name.trim().to_ascii_lowercase().as_str() {
            "text" | "" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Where and how the daemons log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogConfig {
    /// Text or JSON.
    pub format: Format,
    /// A file to append to instead of stderr.
    pub file: Option<PathBuf>,
}

/// Logging could not start.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log file cannot be opened for appending.
    #[error("cannot open the log file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A second set-up, or the signal handler, failed.
    #[error("cannot set up logging: {0}")]
    Setup(String),
}

/// Starts logging: `info` by default, `warn` with `quiet`, `debug` with `verbose`; `RUST_LOG`
/// overrides both.
pub fn init(config: &LogConfig, quiet: bool, verbose: bool) -> Result<(), LogError> {
    let level = if verbose {
        "debug"
    } else if quiet {
        "warn"
    } else {
        "info"
    };
    let mut filter = env_filter::Builder::new();
    filter.parse(&std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string()));
    let filter = filter.build();
    let reopen = Arc::new(AtomicBool::new(false));
    let out = match &config.file {
        None => Out::Stderr,
        Some(path) => {
            signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reopen))
                .map_err(|e| LogError::Setup(e.to_string()))?;
            Out::File {
                file: open(path)?,
                path: path.clone(),
            }
        }
    };
    log::set_max_level(filter.filter());
    let logger = Logger {
        filter,
        format: config.format,
        out: Mutex::new(out),
        reopen,
    };
    log::set_boxed_logger(Box::new(logger)).map_err(|e| LogError::Setup(e.to_string()))
}

fn open(path: &Path) -> Result<File, LogError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| LogError::File {
            path: path.to_path_buf(),
            source,
        })
}

enum Out {
    Stderr,
    File { path: PathBuf, file: File },
}

struct Logger {
    filter: env_filter::Filter,
    format: Format,
    out: Mutex<Out>,
    /// Set by SIGHUP: the file is reopened before the next line.
    reopen: Arc<AtomicBool>,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.filter.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.filter.matches(record) {
            return;
        }
        let line = match self.format {
            Format::Text => text_line(record),
            Format::Json => json_line(record),
        };
        // A poisoned lock only means another thread panicked while writing: go on.
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Out::File { path, file } = &mut *out {
            if self.reopen.swap(false, Ordering::SeqCst) {
                // The old file was moved away (logrotate): continue in a new one at `path`.
                if let Ok(fresh) = open(path) {
                    *file = fresh;
                }
            }
        }
        // A log line that cannot be written has nowhere else to go.
        let _ = match &mut *out {
            Out::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            Out::File { file, .. } => file.write_all(line.as_bytes()),
        };
    }

    fn flush(&self) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Out::File { file, .. } = &mut *out {
            let _ = file.flush();
        }
    }
}

/// `2026-11-30T10:00:00.123Z INFO  message`: the event's fields are in the message already.
fn text_line(record: &log::Record<'_>) -> String {
    format!(
        "{} {:<5} {}\n",
        crate::clock::now_rfc3339(),
        record.level(),
        record.args()
    )
}

/// `{"ts":…,"level":…,"target":…,"msg":…, fields…}`.
fn json_line(record: &log::Record<'_>) -> String {
    let mut object = Map::new();
    object.insert("ts".into(), crate::clock::now_rfc3339().into());
    object.insert(
        "level".into(),
        record.level().as_str().to_lowercase().into(),
    );
    object.insert("target".into(), record.target().into());
    object.insert("msg".into(), record.args().to_string().into());
    let mut fields = Fields(&mut object);
    // A visitor that never fails.
    let _ = record.key_values().visit(&mut fields);
    let mut line = Value::Object(object).to_string();
    line.push('\n');
    line
}

/// Copies an event's key-values into the JSON object: numbers as numbers, the rest as text.
struct Fields<'a>(&'a mut Map<String, Value>);

impl<'kvs> log::kv::VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(
        &mut self,
        key: log::kv::Key<'kvs>,
        value: log::kv::Value<'kvs>,
    ) -> Result<(), log::kv::Error> {
        let json = if let Some(n) = value.to_u64() {
            Value::from(n)
        } else if let Some(n) = value.to_i64() {
            Value::from(n)
        } else if let Some(x) = value.to_f64() {
            Value::from(x)
        } else {
            Value::from(value.to_string())
        };
        self.0.insert(key.as_str().to_string(), json);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_the_fields() {
        let kvs: [(&str, log::kv::Value<'_>); 3] = [
            ("job_id", log::kv::Value::from("abc")),
            ("attempt", log::kv::Value::from(2u64)),
            ("duration_ms", log::kv::Value::from(1.5f64)),
        ];
        let args = format_args!("job \"abc\"\n done");
        let record = log::Record::builder()
            .args(args)
            .level(log::Level::Info)
            .target("inventory_broadcast::worker")
            .key_values(&kvs)
            .build();
        let line = json_line(&record);
        assert!(
            line.ends_with('\n') && line.matches('\n').count() == 1,
            "{line}"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "info");
        assert_eq!(v["msg"], "job \"abc\"\n done");
        assert_eq!(v["job_id"], "abc");
        assert_eq!(v["attempt"], 2);
        assert_eq!(v["duration_ms"], 1.5);
        assert!(v["ts"].as_str().unwrap().ends_with('Z'));
        assert_eq!(Format::parse("JSON"), Some(Format::Json));
        assert_eq!(Format::parse("xml"), None);
    }
}
