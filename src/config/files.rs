//! Reading the file layers: the TOML config file (flattened to `section.key` values) and the
//! `.env` file, and a warning when either holds secrets that others may read.

use super::ConfigError;
use super::keys::{self, KeySpec};
use super::layers::{DotEnv, Sources};
use std::path::{Path, PathBuf};

/// The config file read when neither `--config` nor `INVENTORY_CONFIG` names one.
pub const DEFAULT_CONFIG_PATH: &str = "config/inventory.toml";
/// The environment variable that names a config file.
pub const CONFIG_ENV: &str = "INVENTORY_CONFIG";

/// Flattens a TOML document into `section.key = raw value` pairs; arrays become comma lists.
pub(super) fn parse_toml(path: &Path, text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let file_error = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| file_error(e.to_string()))?;
    let mut out = Vec::new();
    for (section, value) in table {
        let toml::Value::Table(inner) = value else {
            return Err(file_error(format!(
                "`{section}` must be a [section]; keys live in sections such as [inventory]"
            )));
        };
        for (name, value) in inner {
            let key = format!("{section}.{name}");
            let raw = toml_scalar(&value).ok_or_else(|| {
                file_error(format!(
                    "`{key}` must be a string, number, boolean or list of them"
                ))
            })?;
            out.push((key, raw));
        }
    }
    Ok(out)
}

fn toml_scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => {
            let parts: Option<Vec<String>> = items.iter().map(toml_scalar).collect();
            parts.map(|p| p.join(","))
        }
        _ => None,
    }
}

/// The config file's path and text: `explicit` (`--config`), else `INVENTORY_CONFIG`, else
/// [`DEFAULT_CONFIG_PATH`] if it exists. A file named explicitly must exist.
pub(super) fn read_config_file(
    explicit: Option<&Path>,
) -> Result<Option<(PathBuf, String)>, ConfigError> {
    let from_env = std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let (path, required) = match (explicit, from_env) {
        (Some(p), _) => (p.to_path_buf(), true),
        (None, Some(p)) => (p, true),
        (None, None) => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some((path, text))),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ConfigError::File {
            path,
            reason: e.to_string(),
        }),
    }
}

/// The variables of the `.env` file at `path`, if there is one.
pub(super) fn read_dotenv(path: &Path) -> Result<Option<DotEnv>, ConfigError> {
    let file_error = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let iter = match dotenvy::from_path_iter(path) {
        Ok(iter) => iter,
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(e.to_string())),
    };
    let vars = iter
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(e.to_string()))?;
    Ok(Some((path.to_path_buf(), vars)))
}

/// The secret keys `file` sets, when others than its owner may read it.
#[cfg(unix)]
pub(super) fn exposed_secrets(
    path: &Path,
    keys: &[&'static str],
) -> Option<(u32, Vec<&'static str>)> {
    use std::os::unix::fs::PermissionsExt;
    if keys.is_empty() {
        return None;
    }
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then(|| (mode, keys.to_vec()))
}

#[cfg(not(unix))]
pub(super) fn exposed_secrets(
    _path: &Path,
    _keys: &[&'static str],
) -> Option<(u32, Vec<&'static str>)> {
    None
}

/// One warning per file that holds a secret and that group or others can read. A warning,
/// not an error: the file may be shared on purpose (a container secret mount), but usually
/// it is an accident worth a `chmod 600`.
pub(super) fn readable_secrets(sources: &Sources) -> Vec<String> {
    let mut out = Vec::new();
    let is_secret = |spec: &&KeySpec| spec.secret;
    if let Some((path, text)) = &sources.file {
        let keys: Vec<&'static str> = parse_toml(path, text)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .filter_map(|(name, _)| keys::spec(&name).filter(is_secret).map(|s| s.key))
            .collect();
        out.extend(exposed_warning(path, &keys));
    }
    if let Some((path, vars)) = &sources.dotenv {
        let keys: Vec<&'static str> = vars
            .iter()
            .filter(|(_, value)| !value.trim().is_empty())
            .filter_map(|(var, _)| keys::by_env(var).filter(is_secret).map(|k| k.env))
            .collect();
        out.extend(exposed_warning(path, &keys));
    }
    out
}

fn exposed_warning(path: &Path, keys: &[&'static str]) -> Option<String> {
    let (mode, keys) = exposed_secrets(path, keys)?;
    Some(format!(
        "{} holds secrets ({}) and is readable by group or others (mode {mode:03o}); \
         run `chmod 600 {}` or move them to environment variables",
        path.display(),
        keys.join(", "),
        path.display()
    ))
}
