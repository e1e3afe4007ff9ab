//! What a layer's `build` uses to read and check its own fields: typed
//! decoding with the failing key, and files and programs checked when the
//! config loads so a missing one is reported at its line.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::config::{FieldError, ProbeSpec};

/// A file on this host that a probe names (`env_files`, `cli_config_file`),
/// checked when the config loads so a missing one is reported at its line.
pub fn check_host_file(key: impl Into<String>, path: &Path) -> Option<FieldError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Some(FieldError::new(
            key,
            format!("{} is a directory, not a file", path.display()),
        )),
        Ok(_) => None,
        Err(err) => Some(FieldError::new(
            key,
            format!("cannot read {}: {err}", path.display()),
        )),
    }
}

/// A file a probe names inside its repo, relative to `dir` (a directory
/// relative to the probe's path). Only a `path` repo can be checked at load
/// time; a remote repo's files are checked when they are checked out.
pub fn check_repo_file(
    spec: &ProbeSpec,
    dir: &Path,
    key: impl Into<String>,
    file: &str,
) -> Option<FieldError> {
    let repo_dir = spec.repo_dir.as_ref()?;
    let path = Path::new(file);
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        let relative: PathBuf = dir
            .join(path)
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        repo_dir.join(&spec.path).join(relative)
    };
    if full.is_file() {
        return None;
    }
    Some(FieldError::new(
        key,
        format!("{} does not exist in repo {:?}", full.display(), spec.repo),
    ))
}

/// A bare program name (no `/`) must be found on PATH.
pub fn check_on_path(key: impl Into<String>, program: &str) -> Option<FieldError> {
    if program.contains('/') || find_on_path(program).is_some() {
        return None;
    }
    Some(FieldError::new(
        key,
        format!("program {program:?} is not on PATH; give its full path, or ./name for a script in the repo"),
    ))
}

/// Deserializes a layer's own fields into its config struct (which should use
/// `deny_unknown_fields`), reporting the failing key path.
pub fn parse_fields<T: DeserializeOwned>(fields: toml::Table) -> Result<T, Vec<FieldError>> {
    let value = toml::Value::Table(fields);
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let key = if path == "." { String::new() } else { path };
        // The message alone: toml's Display adds "in `key`" on lines of its
        // own, and the key is already part of the location.
        vec![FieldError::new(
            key,
            err.into_inner().message().trim().to_string(),
        )]
    })
}

/// The first executable file named `program` in `PATH`'s directories.
pub(super) fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

/// A file anyone may execute.
pub(super) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
