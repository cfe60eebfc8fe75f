//! The layering of sources: built-in defaults < config file < `.env` < environment < flags,
//! merged key by key, each value remembering where it came from; and the typed readers
//! (numbers, switches, ports, lists, durations) whose errors name the key and that source.

use super::ConfigError;
use super::files::parse_toml;
use super::keys::{self, KEYS, SECRET_LISTS, SECRET_PATH};
use crate::secret::{redact_url, redact_url_path};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Where a raw value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// A TOML config file.
    File(PathBuf),
    /// A variable in a `.env` file.
    DotEnv { path: PathBuf, var: String },
    /// An environment variable.
    Env(String),
    /// A command-line flag, e.g. `--threshold`.
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("the built-in default"),
            Source::File(p) => write!(f, "config file {}", p.display()),
            Source::DotEnv { path, var } => write!(f, "{var} in {}", path.display()),
            Source::Env(var) => write!(f, "environment variable {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

/// A value given on the command line, tied to the config key it overrides.
#[derive(Debug, Clone)]
pub struct Flag {
    /// The config key, e.g. `queue.tries`.
    pub key: &'static str,
    /// The flag as the user typed it, e.g. `--tries`.
    pub flag: &'static str,
    /// The raw value.
    pub value: String,
}

impl Flag {
    /// A flag override for `key`.
    pub fn new(key: &'static str, flag: &'static str, value: impl ToString) -> Self {
        Flag {
            key,
            flag,
            value: value.to_string(),
        }
    }
}

/// Builds the flag layer from optional values, skipping the flags that were not given.
pub fn flags<const N: usize>(
    given: [(&'static str, &'static str, Option<String>); N],
) -> Vec<Flag> {
    given
        .into_iter()
        .filter_map(|(key, flag, value)| value.map(|v| Flag::new(key, flag, v)))
        .collect()
}

/// A `.env` file's path and its variables, in file order.
pub type DotEnv = (PathBuf, Vec<(String, String)>);

/// The raw inputs, already read: everything [`super::Config::resolve`] needs, so tests need
/// no files.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// The config file's path and text.
    pub file: Option<(PathBuf, String)>,
    /// The `.env` file's path and its variables.
    pub dotenv: Option<DotEnv>,
    /// The environment variables (only the known names are read).
    pub env: HashMap<String, String>,
    /// Command-line overrides.
    pub flags: Vec<Flag>,
}

#[derive(Debug, Clone)]
struct Raw {
    value: String,
    source: Source,
}

/// The merged raw layers, highest precedence applied last.
pub(super) struct Layers {
    values: HashMap<&'static str, Raw>,
}

impl Layers {
    pub(super) fn build(sources: &Sources) -> Result<Layers, ConfigError> {
        let mut layers = Layers {
            values: KEYS
                .iter()
                .map(|k| (k.key, Raw::new(k.default, Source::Default)))
                .collect(),
        };
        if let Some((path, text)) = &sources.file {
            for (name, value) in parse_toml(path, text)? {
                let origin = Source::File(path.clone());
                let spec = keys::spec(&name).ok_or_else(|| ConfigError::UnknownKey {
                    key: name.clone(),
                    origin: origin.clone(),
                })?;
                layers.set(spec.key, &value, origin);
            }
        }
        if let Some((path, vars)) = &sources.dotenv {
            // An alias must not win over its main name just by coming later in the file.
            for pass in [true, false] {
                for (var, value) in vars {
                    let Some(spec) = keys::by_env(var) else {
                        continue;
                    };
                    if (spec.alias == var) == pass {
                        let (path, var) = (path.clone(), var.clone());
                        layers.set(spec.key, value, Source::DotEnv { path, var });
                    }
                }
            }
        }
        for spec in KEYS {
            for var in spec.vars() {
                if let Some(value) = sources.env.get(var) {
                    layers.set(spec.key, value, Source::Env(var.to_string()));
                }
            }
        }
        for flag in &sources.flags {
            let origin = Source::Flag(flag.flag.to_string());
            let spec = keys::spec(flag.key).ok_or_else(|| ConfigError::UnknownKey {
                key: flag.key.to_string(),
                origin: origin.clone(),
            })?;
            layers.set(spec.key, &flag.value, origin);
        }
        Ok(layers)
    }

    fn set(&mut self, key: &'static str, value: &str, source: Source) {
        self.values.insert(key, Raw::new(value, source));
    }

    fn raw(&self, key: &'static str) -> &Raw {
        // Every key in KEYS has a default, and callers only ask for keys in KEYS.
        &self.values[key]
    }

    /// The value, trimmed.
    pub(super) fn str(&self, key: &'static str) -> String {
        self.raw(key).value.trim().to_string()
    }

    /// True when the value is not empty.
    pub(super) fn is_set(&self, key: &'static str) -> bool {
        !self.raw(key).value.trim().is_empty()
    }

    /// Where the value came from.
    pub(super) fn source(&self, key: &'static str) -> &Source {
        &self.raw(key).source
    }

    /// An error for `key` naming its value (hidden when secret) and its source.
    pub(super) fn invalid(&self, key: &'static str, reason: impl Into<String>) -> ConfigError {
        let raw = self.raw(key);
        let secret = keys::spec(key).is_some_and(|s| s.secret);
        let shown = if secret {
            shown_secret(key, &raw.value)
        } else {
            raw.value.clone()
        };
        ConfigError::Invalid {
            key,
            shown: format!("\"{shown}\""),
            origin: raw.source.clone(),
            reason: reason.into(),
        }
    }

    /// An error for a key that must be set because a feature that needs it is on.
    pub(super) fn required(&self, key: &'static str, by: &str) -> ConfigError {
        let env = keys::spec(key).map_or("", |s| s.env);
        self.invalid(
            key,
            format!("must be set when {by}: set {env} or `{key}` in the config file"),
        )
    }

    pub(super) fn parse<T: std::str::FromStr>(
        &self,
        key: &'static str,
        what: &str,
    ) -> Result<T, ConfigError> {
        self.str(key).parse().map_err(|_| self.invalid(key, what))
    }

    pub(super) fn positive(&self, key: &'static str) -> Result<u64, ConfigError> {
        match self.parse::<u64>(key, "must be a positive whole number")? {
            0 => Err(self.invalid(key, "must be a positive whole number")),
            n => Ok(n),
        }
    }

    /// A switch: true/false, 1/0, yes/no, on/off (any case), as `.env` files write them.
    pub(super) fn bool(&self, key: &'static str) -> Result<bool, ConfigError> {
        match self.str(key).to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "(true)" => Ok(true),
            "false" | "0" | "no" | "off" | "(false)" | "" => Ok(false),
            _ => Err(self.invalid(key, "must be true or false")),
        }
    }

    /// An optional port: empty means "the default for the protocol".
    pub(super) fn port(&self, key: &'static str) -> Result<Option<u16>, ConfigError> {
        if !self.is_set(key) {
            return Ok(None);
        }
        match self.parse::<u16>(key, "must be a port number (1-65535)")? {
            0 => Err(self.invalid(key, "must be a port number (1-65535)")),
            p => Ok(Some(p)),
        }
    }

    /// A comma-separated list, without empty items.
    pub(super) fn list(&self, key: &'static str) -> Vec<String> {
        self.str(key)
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// A duration ([`parse_duration`]).
    pub(super) fn duration(&self, key: &'static str) -> Result<Duration, ConfigError> {
        parse_duration(&self.str(key)).map_err(|e| self.invalid(key, e))
    }
}

impl Raw {
    fn new(value: &str, source: Source) -> Raw {
        Raw {
            value: value.to_string(),
            source,
        }
    }
}

/// How a secret value appears in an error: URLs keep scheme and host, anything else is `***`.
fn shown_secret(key: &str, value: &str) -> String {
    if value.trim().is_empty() {
        String::new()
    } else if SECRET_LISTS.contains(&key) {
        value
            .split(',')
            .map(|item| shown_secret("", item))
            .collect::<Vec<_>>()
            .join(",")
    } else if !value.contains("://") {
        "***".into()
    } else if SECRET_PATH.contains(&key) {
        redact_url_path(value)
    } else {
        redact_url(value)
    }
}

/// Parses a duration: whole seconds, or a number with `ms`, `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| "must be a duration such as 3600, 90s, 30m or 1h".to_string())?;
    let scale = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err("must be a duration such as 3600, 90s, 30m or 1h".into()),
    };
    n.checked_mul(scale)
        .map(Duration::from_secs)
        .ok_or_else(|| "is too long".to_string())
}
