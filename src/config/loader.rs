//! Reads a config file and turns it into a validated `Config`. The text is
//! parsed twice: into `toml` values to deserialize, and into a `toml_edit`
//! document that keeps spans, so any key path can be traced back to its
//! line and column. Every problem is collected, sorted by position and
//! reported at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml_edit::{ImDocument, Item, Table, Value};

use super::raw::{
    RawDefaults, RawHistory, RawProbe, RawRepo, RawServer, RawTop, PROBE_COMMON_KEYS,
};
use super::{
    parse_duration, Config, ConfigErrors, Defaults, ProbeConfig, RepoAuth, RepoConfig, RepoSource,
    Schedule, ServerConfig,
};
use crate::probe::{FieldError, ProbeCommon};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/driftwatch";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9808";
pub const DEFAULT_REQUEST_TIMEOUT: &str = "30s";
pub const DEFAULT_SCHEDULE: &str = "*/15 * * * *";
pub const DEFAULT_TIMEOUT: &str = "10m";
pub const DEFAULT_MAX_CONCURRENT_RUNS: usize = 4;
pub const DEFAULT_MAX_RESOURCE_SERIES: usize = 100;
pub const DEFAULT_KILL_GRACE: &str = "10s";
pub const DEFAULT_BRANCH: &str = "main";
pub const DEFAULT_POLL_INTERVAL: &str = "1m";
pub const DEFAULT_TOKEN_USERNAME: &str = "x-access-token";
pub const DEFAULT_SSH_USERNAME: &str = "git";

/// Label names driftwatch sets itself (or Prometheus adds on scrape).
pub const RESERVED_LABELS: &[&str] = &[
    "probe", "layer", "root", "resource", "action", "result", "reason", "repo", "revision",
    "version", "instance", "job",
];

pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        let hint = if err.kind() == std::io::ErrorKind::NotFound {
            "; create it or pass --config"
        } else {
            ""
        };
        ConfigErrors {
            problems: vec![format!(
                "{}: cannot read config: {err}{hint}",
                path.display()
            )],
        }
    })?;
    load_str(path, &text)
}

/// Parses and validates `text` as if read from `path` (relative paths in it
/// resolve against `path`'s directory).
pub fn load_str(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let document = match ImDocument::parse(text) {
        Ok(document) => document,
        Err(err) => {
            let at = err.span().map(|span| span.start).unwrap_or(0);
            let (line, col) = line_col(text, at);
            let message = err.message().trim_end();
            return Err(ConfigErrors {
                problems: vec![format!("{file}:{line}:{col}: {message}")],
            });
        }
    };
    let table: toml::Table = toml::from_str(text).map_err(|err| ConfigErrors {
        problems: vec![format!("{file}: {}", err.message())],
    })?;
    let config_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let config_dir = std::path::absolute(config_dir).unwrap_or_else(|_| config_dir.to_path_buf());
    let mut loader = Loader {
        file,
        text,
        document: &document,
        root: &table,
        config_dir,
        problems: Vec::new(),
    };
    let config = loader.config(path, table.clone());
    if loader.problems.is_empty() {
        if let Some(config) = config {
            return Ok(config);
        }
    }
    let mut problems = loader.problems;
    problems.sort_by_key(|problem| problem.offset);
    Err(ConfigErrors {
        problems: problems.into_iter().map(|problem| problem.text).collect(),
    })
}

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn key(name: &str) -> Seg {
    Seg::Key(name.to_string())
}

fn path_plus(path: &[Seg], more: &[Seg]) -> Vec<Seg> {
    path.iter().chain(more).cloned().collect()
}

/// Whether a problem is about a key being there at all (point at the key) or
/// about its value (point at the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Key,
    Value,
}

struct Problem {
    /// Byte offset in the file; `None` sorts first (file-level problems).
    offset: Option<usize>,
    text: String,
}

struct Loader<'a> {
    file: String,
    text: &'a str,
    document: &'a ImDocument<&'a str>,
    root: &'a toml::Table,
    config_dir: PathBuf,
    problems: Vec<Problem>,
}

impl Loader<'_> {
    // ---- reporting -------------------------------------------------------

    fn error(&mut self, path: &[Seg], message: impl Into<String>) {
        self.report(path, Target::Value, message.into());
    }

    fn error_at_key(&mut self, path: &[Seg], message: impl Into<String>) {
        self.report(path, Target::Key, message.into());
    }

    /// A problem with the file as a whole (nothing to point at).
    fn error_in_file(&mut self, message: impl Into<String>) {
        let text = format!("{}: {}", self.file, message.into());
        self.problems.push(Problem { offset: None, text });
    }

    fn report(&mut self, path: &[Seg], target: Target, message: String) {
        let offset = locate(self.document.as_table(), path, target);
        let shown = self.display(path);
        let prefix = match offset {
            Some(offset) => {
                let (line, col) = line_col(self.text, offset);
                format!("{}:{line}:{col}", self.file)
            }
            None => self.file.clone(),
        };
        let text = if shown.is_empty() {
            format!("{prefix}: {message}")
        } else {
            format!("{prefix}: {shown}: {message}")
        };
        self.problems.push(Problem {
            offset: Some(offset.unwrap_or(0)),
            text,
        });
    }

    /// `probe.corp.schedule` for a probe named "corp", `probe[2].schedule` for
    /// one without a usable name.
    fn display(&self, path: &[Seg]) -> String {
        let mut out = String::new();
        let mut rest = path;
        if let [Seg::Key(section), Seg::Index(index), tail @ ..] = path {
            if section == "probe" || section == "repo" {
                let name = self
                    .root
                    .get(section)
                    .and_then(|v| v.as_array())
                    .and_then(|items| items.get(*index))
                    .and_then(|item| item.get("name"))
                    .and_then(|name| name.as_str())
                    .filter(|name| valid_name(name));
                match name {
                    Some(name) => out = format!("{section}.{name}"),
                    None => out = format!("{section}[{index}]"),
                }
                rest = tail;
            }
        }
        for seg in rest {
            match seg {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    if k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                        && !k.is_empty()
                    {
                        out.push_str(k);
                    } else {
                        out.push_str(&format!("{k:?}"));
                    }
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    /// Deserializes `value` (found at `path`) into `T`. Each bad key (unknown,
    /// or of the wrong type) is reported, removed, and the decode retried, so
    /// every one of them is listed; `None` when the value as a whole is wrong.
    fn decode<T: DeserializeOwned>(&mut self, mut value: toml::Value, path: &[Seg]) -> Option<T> {
        loop {
            let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(decoded) => return Some(decoded),
                Err(err) => err,
            };
            let mut inner_path = serde_path(err.path());
            let message = err.inner().message().to_string();
            if let Some(field) = unknown_field(&message) {
                if inner_path.last() != Some(&Seg::Key(field.clone())) {
                    inner_path.push(Seg::Key(field.clone()));
                }
                let full = path_plus(path, &inner_path);
                self.error_at_key(&full, unknown_key_message(&message, &[]));
                if remove_at(&mut value, &inner_path) {
                    continue;
                }
                return None;
            }
            let full = path_plus(path, &inner_path);
            self.error(&full, message);
            // Drop the bad key and go on, so one wrong type does not hide
            // the problems after it; the key then takes its default.
            if !inner_path.is_empty() && remove_at(&mut value, &inner_path) {
                continue;
            }
            return None;
        }
    }

    // ---- small validators ------------------------------------------------

    fn duration(
        &mut self,
        text: Option<&str>,
        default: &str,
        path: &[Seg],
        allow_zero: bool,
    ) -> Duration {
        let fallback = parse_duration(default).expect("defaults parse");
        let Some(text) = text else { return fallback };
        match parse_duration(text) {
            Ok(duration) if duration.is_zero() && !allow_zero => {
                self.error(path, "must be greater than zero");
                fallback
            }
            Ok(duration) => duration,
            Err(message) => {
                self.error(path, message);
                fallback
            }
        }
    }

    /// A path from the file: relative ones resolve against the config file's directory.
    fn host_path(&self, text: &str) -> PathBuf {
        let path = Path::new(text);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.config_dir.join(path)
        }
    }

    /// A file the daemon will need later: fail now rather than at first use.
    fn readable_file(&mut self, text: &str, path: &[Seg]) -> Option<PathBuf> {
        let file = self.host_path(text);
        match std::fs::File::open(&file) {
            Ok(_) if file.is_dir() => {
                self.error(
                    path,
                    format!("{} is a directory, not a file", file.display()),
                );
                None
            }
            Ok(_) => Some(file),
            Err(err) => {
                self.error(path, format!("cannot read {}: {err}", file.display()));
                None
            }
        }
    }

    /// A secret given inline or as `<name>_file`; the value never appears in messages.
    fn secret(
        &mut self,
        section: &[Seg],
        name: &str,
        inline: Option<String>,
        file: Option<String>,
    ) -> Option<String> {
        let file_key = format!("{name}_file");
        let inline_path = path_plus(section, &[key(name)]);
        let file_path = path_plus(section, &[key(&file_key)]);
        match (inline, file) {
            (Some(_), Some(_)) => {
                self.error_at_key(
                    &file_path,
                    format!("give either {name} or {file_key}, not both"),
                );
                None
            }
            (Some(value), None) => {
                if value.trim().is_empty() {
                    self.error(&inline_path, "is empty");
                    return None;
                }
                Some(value)
            }
            (None, Some(file)) => {
                let full = self.host_path(&file);
                match std::fs::read_to_string(&full) {
                    Ok(content) => {
                        let value = content.trim_end_matches(['\n', '\r']).to_string();
                        if value.trim().is_empty() {
                            self.error(&file_path, format!("{} is empty", full.display()));
                            return None;
                        }
                        Some(value)
                    }
                    Err(err) => {
                        self.error(&file_path, format!("cannot read {}: {err}", full.display()));
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }

    /// A `[section]` that must be a table.
    fn section<T: DeserializeOwned + Default>(
        &mut self,
        value: Option<toml::Value>,
        name: &str,
    ) -> T {
        let path = [key(name)];
        match value {
            None => T::default(),
            Some(value @ toml::Value::Table(_)) => self.decode(value, &path).unwrap_or_default(),
            Some(_) => {
                self.error(&path, format!("must be a table: write [{name}]"));
                T::default()
            }
        }
    }

    /// `[[name]]` entries: each an element with its own path.
    fn entries(&mut self, value: Option<toml::Value>, name: &str) -> Vec<toml::Table> {
        let path = [key(name)];
        match value {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => {
                let mut tables = Vec::new();
                for (index, item) in items.into_iter().enumerate() {
                    match item {
                        toml::Value::Table(table) => tables.push(table),
                        _ => {
                            self.error(
                                &[key(name), Seg::Index(index)],
                                format!("must be a table: write [[{name}]]"),
                            );
                            tables.push(toml::Table::new());
                        }
                    }
                }
                tables
            }
            Some(_) => {
                self.error(
                    &path,
                    format!("must be a list of tables: write [[{name}]], not [{name}]"),
                );
                Vec::new()
            }
        }
    }

    // ---- sections ----------------------------------------------------------

    fn config(&mut self, source: &Path, table: toml::Table) -> Option<Config> {
        let top: RawTop = self
            .decode(toml::Value::Table(table), &[])
            .unwrap_or_default();

        let state_dir = match top.state_dir {
            None => PathBuf::from(DEFAULT_STATE_DIR),
            Some(toml::Value::String(dir)) if !dir.trim().is_empty() => self.host_path(&dir),
            Some(toml::Value::String(_)) => {
                self.error(&[key("state_dir")], "is empty");
                PathBuf::from(DEFAULT_STATE_DIR)
            }
            Some(other) => {
                self.error(
                    &[key("state_dir")],
                    format!("invalid type: {}, expected a string", other.type_str()),
                );
                PathBuf::from(DEFAULT_STATE_DIR)
            }
        };

        let server = self.server(top.server);
        let history = self.history(top.history);
        let defaults = self.defaults(top.defaults);
        let repos = self.repos(top.repo);
        let probes = self.probes(top.probe, &repos, &defaults);

        if repos.is_empty() && self.root.get("repo").is_none() {
            self.error_in_file("no [[repo]] configured; add one with a url or a path");
        }
        if probes.is_empty() && self.root.get("probe").is_none() {
            self.error_in_file("no [[probe]] configured; add at least one");
        }
        if !self.problems.is_empty() {
            return None;
        }
        Some(Config {
            source: source.to_path_buf(),
            server,
            state_dir,
            defaults,
            repos,
            probes,
            history,
        })
    }

    fn history(&mut self, value: Option<toml::Value>) -> crate::history::HistoryConfig {
        let raw: RawHistory = self.section(value, "history");
        let at = |name: &str| [key("history"), key(name)];
        let defaults = crate::history::HistoryConfig::default();
        let retention = match raw.retention.as_deref() {
            None => defaults.retention,
            Some(text) => self.duration(Some(text), "30d", &at("retention"), false),
        };
        let episode_retention = raw
            .episode_retention
            .as_deref()
            .map(|text| self.duration(Some(text), "3650d", &at("episode_retention"), false));
        crate::history::HistoryConfig {
            retention,
            episode_retention,
        }
    }

    fn server(&mut self, value: Option<toml::Value>) -> ServerConfig {
        let raw: RawServer = self.section(value, "server");
        let at = |name: &str| [key("server"), key(name)];
        let listen = match raw.listen.as_deref() {
            None => DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses"),
            Some(text) => parse_listen(text).unwrap_or_else(|message| {
                self.error(&at("listen"), message);
                DEFAULT_LISTEN
                    .parse()
                    .expect("default listen address parses")
            }),
        };
        let request_timeout = self.duration(
            raw.request_timeout.as_deref(),
            DEFAULT_REQUEST_TIMEOUT,
            &at("request_timeout"),
            false,
        );
        let api_token = self.secret(
            &[key("server")],
            "api_token",
            raw.api_token,
            raw.api_token_file,
        );
        let webhook_secret = self.secret(
            &[key("server")],
            "webhook_secret",
            raw.webhook_secret,
            raw.webhook_secret_file,
        );
        ServerConfig {
            listen,
            request_timeout,
            api_token,
            webhook_secret,
        }
    }

    fn defaults(&mut self, value: Option<toml::Value>) -> Defaults {
        let raw: RawDefaults = self.section(value, "defaults");
        let at = |name: &str| [key("defaults"), key(name)];
        let schedule = match raw.schedule.as_deref() {
            None => Schedule::parse(DEFAULT_SCHEDULE).expect("default schedule parses"),
            Some(text) => Schedule::parse(text).unwrap_or_else(|message| {
                self.error(&at("schedule"), message);
                Schedule::parse(DEFAULT_SCHEDULE).expect("default schedule parses")
            }),
        };
        let timeout = self.duration(
            raw.timeout.as_deref(),
            DEFAULT_TIMEOUT,
            &at("timeout"),
            false,
        );
        let max_concurrent_runs = match raw.max_concurrent_runs {
            None => DEFAULT_MAX_CONCURRENT_RUNS,
            Some(0) => {
                self.error(&at("max_concurrent_runs"), "must be at least 1");
                DEFAULT_MAX_CONCURRENT_RUNS
            }
            Some(n) => n as usize,
        };
        let max_resource_series = raw
            .max_resource_series
            .map_or(DEFAULT_MAX_RESOURCE_SERIES, |n| n as usize);
        let kill_grace = self.duration(
            raw.kill_grace.as_deref(),
            DEFAULT_KILL_GRACE,
            &at("kill_grace"),
            true,
        );
        Defaults {
            schedule,
            timeout,
            max_concurrent_runs,
            max_resource_series,
            kill_grace,
        }
    }

    fn repos(&mut self, value: Option<toml::Value>) -> Vec<RepoConfig> {
        let mut repos = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, table) in self.entries(value, "repo").into_iter().enumerate() {
            let path = [key("repo"), Seg::Index(index)];
            let Some(raw) = self.decode::<RawRepo>(toml::Value::Table(table), &path) else {
                continue;
            };
            let Some(repo) = self.repo(raw, &path) else {
                continue;
            };
            if let Some(first) = seen.get(&repo.name) {
                let first_line = self.line_of(&[key("repo"), Seg::Index(*first), key("name")]);
                self.error(
                    &path_plus(&path, &[key("name")]),
                    format!("duplicate repo name {:?}{first_line}", repo.name),
                );
                continue;
            }
            seen.insert(repo.name.clone(), index);
            repos.push(repo);
        }
        repos
    }

    fn repo(&mut self, mut raw: RawRepo, path: &[Seg]) -> Option<RepoConfig> {
        let at = |name: &str| path_plus(path, &[key(name)]);
        let errors_before = self.problems.len();
        let name = match raw.name.take() {
            None => {
                self.error(path, "missing key `name`");
                String::new()
            }
            Some(name) => {
                if !valid_name(&name) {
                    self.error(&at("name"), name_rule(&name));
                }
                name
            }
        };
        let poll_interval = self.duration(
            raw.poll_interval.as_deref(),
            DEFAULT_POLL_INTERVAL,
            &at("poll_interval"),
            false,
        );
        let source = match (raw.url.take(), raw.path.take()) {
            (Some(_), Some(_)) => {
                self.error_at_key(&at("path"), "give either url (driftwatch clones it) or path (a directory kept in sync by someone else), not both");
                None
            }
            (None, None) => {
                self.error(
                    path,
                    "needs a url to clone, or a path to a directory kept in sync by someone else",
                );
                None
            }
            (None, Some(dir)) => {
                for (given, name) in [
                    (raw.branch.is_some(), "branch"),
                    (raw.reference.is_some(), "ref"),
                    (raw.username.is_some(), "username"),
                    (raw.token.is_some(), "token"),
                    (raw.token_file.is_some(), "token_file"),
                    (raw.ssh_key_file.is_some(), "ssh_key_file"),
                    (raw.ssh_known_hosts_file.is_some(), "ssh_known_hosts_file"),
                    (raw.ssh_passphrase.is_some(), "ssh_passphrase"),
                    (raw.ssh_passphrase_file.is_some(), "ssh_passphrase_file"),
                ] {
                    if given {
                        self.error_at_key(
                            &at(name),
                            "only applies to a repo with a url, not a path",
                        );
                    }
                }
                if dir.trim().is_empty() {
                    self.error(&at("path"), "is empty");
                    None
                } else {
                    let full = self.host_path(&dir);
                    if !full.is_dir() {
                        self.error(
                            &at("path"),
                            format!("{} is not a directory", full.display()),
                        );
                    }
                    Some(RepoSource::Path(full))
                }
            }
            (Some(url), None) => self.remote(url, raw, path),
        };
        if self.problems.len() > errors_before {
            return None;
        }
        Some(RepoConfig {
            name,
            source: source?,
            poll_interval,
        })
    }

    fn remote(&mut self, url: String, raw: RawRepo, path: &[Seg]) -> Option<RepoSource> {
        let at = |name: &str| path_plus(path, &[key(name)]);
        let kind = match url_kind(&url) {
            Ok(kind) => Some(kind),
            Err(message) => {
                self.error(&at("url"), message);
                None
            }
        };
        let reference = match (raw.branch, raw.reference) {
            (Some(_), Some(_)) => {
                self.error_at_key(&at("ref"), "give either branch or ref, not both");
                String::new()
            }
            (Some(branch), None) => {
                if branch.starts_with("refs/") {
                    self.error(
                        &at("branch"),
                        format!("{branch:?} is a full ref; write it as ref = {branch:?}"),
                    );
                } else if !valid_ref(&branch) {
                    self.error(
                        &at("branch"),
                        format!("{branch:?} is not a valid branch name"),
                    );
                }
                branch
            }
            (None, Some(reference)) => {
                if !reference.starts_with("refs/") || !valid_ref(&reference) {
                    self.error(&at("ref"), format!("{reference:?} is not a full ref; write e.g. refs/tags/v1 (or use branch)"));
                }
                reference
            }
            (None, None) => DEFAULT_BRANCH.to_string(),
        };

        let uses_ssh_fields = raw.ssh_key_file.is_some()
            || raw.ssh_known_hosts_file.is_some()
            || raw.ssh_passphrase.is_some()
            || raw.ssh_passphrase_file.is_some();
        let uses_token = raw.token.is_some() || raw.token_file.is_some();
        let token_key = if raw.token_file.is_some() {
            "token_file"
        } else {
            "token"
        };
        let token = self.secret(path, "token", raw.token, raw.token_file);
        let passphrase = self.secret(
            path,
            "ssh_passphrase",
            raw.ssh_passphrase,
            raw.ssh_passphrase_file,
        );
        let key_file = raw
            .ssh_key_file
            .as_deref()
            .and_then(|file| self.readable_file(file, &at("ssh_key_file")));
        let known_hosts_file = raw
            .ssh_known_hosts_file
            .as_deref()
            .and_then(|file| self.readable_file(file, &at("ssh_known_hosts_file")));

        let kind = kind?;
        let auth = match kind {
            UrlKind::Https | UrlKind::Http => {
                if uses_ssh_fields {
                    for name in [
                        "ssh_key_file",
                        "ssh_known_hosts_file",
                        "ssh_passphrase",
                        "ssh_passphrase_file",
                    ] {
                        if self.key_given(path, name) {
                            self.error_at_key(
                                &at(name),
                                "only applies to ssh URLs (ssh:// or user@host:path)",
                            );
                        }
                    }
                }
                if uses_token && kind == UrlKind::Http {
                    self.error_at_key(
                        &at(token_key),
                        "a token would be sent unencrypted over http://; use https://",
                    );
                }
                match token {
                    Some(token) => RepoAuth::Token {
                        username: raw
                            .username
                            .unwrap_or_else(|| DEFAULT_TOKEN_USERNAME.to_string()),
                        token,
                    },
                    None => RepoAuth::None,
                }
            }
            UrlKind::Ssh => {
                if uses_token {
                    self.error_at_key(
                        &at(token_key),
                        "token only applies to https URLs; for ssh use ssh_key_file",
                    );
                }
                if raw.ssh_key_file.is_none() {
                    for name in [
                        "ssh_known_hosts_file",
                        "ssh_passphrase",
                        "ssh_passphrase_file",
                    ] {
                        if self.key_given(path, name) {
                            self.error_at_key(&at(name), "needs ssh_key_file");
                        }
                    }
                }
                match key_file {
                    Some(key_file) => RepoAuth::Ssh {
                        username: raw
                            .username
                            .or_else(|| url_user(&url))
                            .unwrap_or_else(|| DEFAULT_SSH_USERNAME.to_string()),
                        key_file,
                        passphrase,
                        known_hosts_file,
                    },
                    None => RepoAuth::None,
                }
            }
            UrlKind::Git | UrlKind::File => {
                for name in [
                    "username",
                    "token",
                    "token_file",
                    "ssh_key_file",
                    "ssh_known_hosts_file",
                    "ssh_passphrase",
                    "ssh_passphrase_file",
                ] {
                    if self.key_given(path, name) {
                        self.error_at_key(&at(name), "git:// and file:// URLs take no credentials");
                    }
                }
                RepoAuth::None
            }
        };
        Some(RepoSource::Remote {
            url,
            reference,
            auth,
        })
    }

    fn key_given(&self, path: &[Seg], name: &str) -> bool {
        let [Seg::Key(section), Seg::Index(index)] = path else {
            return false;
        };
        self.root
            .get(section)
            .and_then(|v| v.as_array())
            .and_then(|items| items.get(*index))
            .and_then(|item| item.get(name))
            .is_some()
    }

    /// " (first at line N)" for duplicate-name messages.
    fn line_of(&self, path: &[Seg]) -> String {
        locate(self.document.as_table(), path, Target::Value)
            .map(|offset| format!(" (first at line {})", line_col(self.text, offset).0))
            .unwrap_or_default()
    }

    fn probes(
        &mut self,
        value: Option<toml::Value>,
        repos: &[RepoConfig],
        defaults: &Defaults,
    ) -> Vec<ProbeConfig> {
        let mut probes = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let repo_names: Vec<&str> = repos.iter().map(|repo| repo.name.as_str()).collect();
        let declared_repos = self
            .root
            .get("repo")
            .and_then(|v| v.as_array())
            .map_or(0, |items| items.len());
        // A `[repo]` written instead of `[[repo]]` is reported once, not per probe.
        let repo_section_broken = self.root.get("repo").is_some_and(|v| !v.is_array());
        for (index, mut table) in self.entries(value, "probe").into_iter().enumerate() {
            let path = vec![key("probe"), Seg::Index(index)];
            let at = |name: &str| path_plus(&path, &[key(name)]);
            let mut common = toml::Table::new();
            for name in PROBE_COMMON_KEYS {
                if let Some(value) = table.remove(*name) {
                    common.insert(name.to_string(), value);
                }
            }
            let Some(raw) = self.decode::<RawProbe>(toml::Value::Table(common), &path) else {
                continue;
            };
            let errors_before = self.problems.len();

            let name = match raw.name {
                None => {
                    self.error(&path, "missing key `name`");
                    String::new()
                }
                Some(name) => {
                    if !valid_name(&name) {
                        self.error(&at("name"), name_rule(&name));
                    } else if let Some(first) = seen.get(&name) {
                        let first_line =
                            self.line_of(&[key("probe"), Seg::Index(*first), key("name")]);
                        self.error(
                            &at("name"),
                            format!("duplicate probe name {name:?}{first_line}"),
                        );
                    } else {
                        seen.insert(name.clone(), index);
                    }
                    name
                }
            };

            let layer = match raw.layer {
                None => {
                    self.error(
                        &path,
                        format!(
                            "missing key `layer` (one of: {})",
                            crate::probe::LAYERS.join(", ")
                        ),
                    );
                    None
                }
                Some(layer) => match crate::probe::builder(&layer) {
                    Some(build) => Some((layer, build)),
                    None => {
                        self.error(
                            &at("layer"),
                            format!(
                                "unknown layer {layer:?}; known layers: {}",
                                crate::probe::LAYERS.join(", ")
                            ),
                        );
                        None
                    }
                },
            };

            let repo = match raw.repo {
                _ if repo_section_broken => raw.repo.unwrap_or_default(),
                Some(repo) => {
                    if !repo_names.contains(&repo.as_str()) && !self.repo_declared(&repo) {
                        let known = if repo_names.is_empty() {
                            "no [[repo]] is configured".to_string()
                        } else {
                            format!("known repos: {}", repo_names.join(", "))
                        };
                        self.error(&at("repo"), format!("unknown repo {repo:?}; {known}"));
                    }
                    repo
                }
                None if declared_repos == 1 => repo_names
                    .first()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                None if declared_repos == 0 => {
                    self.error(&path, "missing key `repo`, and no [[repo]] is configured");
                    String::new()
                }
                None => {
                    self.error(
                        &path,
                        format!(
                            "missing key `repo`: with several repos configured, name one of: {}",
                            repo_names.join(", ")
                        ),
                    );
                    String::new()
                }
            };

            let probe_path = match raw.path.as_deref() {
                None => PathBuf::new(),
                Some(text) => {
                    if crate::paths::escapes(Path::new(text)) {
                        self.error(
                            &at("path"),
                            format!(
                                "{text:?} leaves the repository; give a relative path inside it"
                            ),
                        );
                    }
                    normalize(Path::new(text))
                }
            };

            let schedule = match raw.schedule.as_deref() {
                None => Some(defaults.schedule.clone()),
                Some(text) if text.trim().is_empty() || text.trim() == "none" => None,
                Some(text) => match Schedule::parse(text) {
                    Ok(schedule) => Some(schedule),
                    Err(message) => {
                        self.error(&at("schedule"), message);
                        None
                    }
                },
            };

            let timeout = match raw.timeout.as_deref() {
                None => defaults.timeout,
                Some(text) => self.duration(Some(text), DEFAULT_TIMEOUT, &at("timeout"), false),
            };

            let labels = raw.labels.unwrap_or_default();
            for label in labels.keys() {
                let label_path = path_plus(&path, &[key("labels"), key(label)]);
                if let Err(message) = check_label_name(label) {
                    self.error_at_key(&label_path, message);
                }
            }

            let Some((layer, build)) = layer else {
                continue;
            };
            let probe_common = ProbeCommon {
                name: name.clone(),
                layer: layer.clone(),
                repo: repo.clone(),
                path: probe_path.clone(),
                config_dir: self.config_dir.clone(),
                labels: labels.clone(),
            };
            let built = match build(&probe_common, table) {
                Ok(probe) => Some(probe),
                Err(errors) => {
                    for FieldError {
                        key: field,
                        message,
                    } in errors
                    {
                        let mut field_path = path_plus(&path, &parse_key_path(&field));
                        // An unknown-key error names the key in its message; point at it.
                        let target = match unknown_field(&message) {
                            Some(unknown) => {
                                if field_path.last() != Some(&Seg::Key(unknown.clone())) {
                                    field_path.push(Seg::Key(unknown));
                                }
                                Target::Key
                            }
                            None => Target::Value,
                        };
                        let message = unknown_key_message(&message, PROBE_COMMON_KEYS);
                        self.report(&field_path, target, message);
                    }
                    None
                }
            };
            if self.problems.len() > errors_before {
                continue;
            }
            let Some(probe) = built else { continue };
            probes.push(ProbeConfig {
                name,
                layer,
                repo,
                path: probe_path,
                schedule,
                timeout,
                run_on_change: raw.run_on_change.unwrap_or(true),
                labels,
                probe,
            });
        }
        probes
    }

    /// A repo that is declared but failed validation: already reported, so
    /// don't also call it unknown.
    fn repo_declared(&self, name: &str) -> bool {
        self.root
            .get("repo")
            .and_then(|v| v.as_array())
            .is_some_and(|items| {
                items
                    .iter()
                    .any(|item| item.get("name").and_then(|n| n.as_str()) == Some(name))
            })
    }
}

// ---- locating key paths --------------------------------------------------

#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

/// The byte offset of `path` in the document: the key itself (`Target::Key`)
/// or its value (`Target::Value`). When the path does not resolve all the way,
/// the deepest part that does.
fn locate(root: &Table, path: &[Seg], target: Target) -> Option<usize> {
    let mut best = root.span().map(|span| span.start);
    let mut node: Option<Node> = None;
    for (depth, seg) in path.iter().enumerate() {
        let last = depth + 1 == path.len();
        let next: Option<(Node, Option<usize>)> = match (node, seg) {
            (None, Seg::Key(k)) => table_child(root, k),
            (Some(Node::Item(Item::Table(table))) | Some(Node::Table(table)), Seg::Key(k)) => {
                table_child(table, k)
            }
            (Some(Node::Item(Item::ArrayOfTables(array))), Seg::Index(i)) => array
                .get(*i)
                .map(|table| (Node::Table(table), table.span().map(|s| s.start))),
            (Some(Node::Item(Item::Value(value))) | Some(Node::Value(value)), seg) => {
                value_child(value, seg)
            }
            _ => None,
        };
        let Some((child, key_offset)) = next else {
            break;
        };
        let value_offset = node_offset(&child);
        best = match (last, target) {
            (true, Target::Key) => key_offset.or(value_offset).or(best),
            (true, Target::Value) => value_offset.or(key_offset).or(best),
            (false, _) => key_offset.or(value_offset).or(best),
        };
        node = Some(child);
    }
    best
}

fn table_child<'a>(table: &'a Table, k: &str) -> Option<(Node<'a>, Option<usize>)> {
    let item = table.get(k)?;
    let key_offset = table
        .key(k)
        .and_then(|key| key.span())
        .map(|span| span.start);
    Some((Node::Item(item), key_offset))
}

fn value_child<'a>(value: &'a Value, seg: &Seg) -> Option<(Node<'a>, Option<usize>)> {
    match (value, seg) {
        (Value::InlineTable(table), Seg::Key(k)) => {
            let child = table.get(k)?;
            let key_offset = table
                .key(k)
                .and_then(|key| key.span())
                .map(|span| span.start);
            Some((Node::Value(child), key_offset))
        }
        (Value::Array(array), Seg::Index(i)) => {
            let child = array.get(*i)?;
            Some((Node::Value(child), child.span().map(|span| span.start)))
        }
        _ => None,
    }
}

fn node_offset(node: &Node) -> Option<usize> {
    match node {
        Node::Item(item) => item.span().map(|span| span.start),
        Node::Table(table) => table.span().map(|span| span.start),
        Node::Value(value) => value.span().map(|span| span.start),
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

fn serde_path(path: &serde_path_to_error::Path) -> Vec<Seg> {
    path.iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}

/// `roots[1].name` → [Key(roots), Index(1), Key(name)], as `parse_fields` writes them.
fn parse_key_path(text: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in text.split('.').filter(|part| !part.is_empty()) {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            segs.push(Seg::Key(name.to_string()));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(index) = rest[1..end].parse() {
                segs.push(Seg::Index(index));
            }
            rest = &rest[end + 1..];
        }
    }
    segs
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" as
/// "unknown key `x`, did you mean `a`?" when one candidate is close, else as
/// "unknown key `x`, expected one of …". `more` adds candidates serde did not
/// know about (a probe's common keys, for a layer's message). Other messages
/// pass through.
fn unknown_key_message(message: &str, more: &[&str]) -> String {
    let Some(field) = unknown_field(message) else {
        return message.to_string();
    };
    let expected: Vec<&str> = message
        .split_once(", expected")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    let suggestion = expected
        .iter()
        .chain(more)
        .map(|candidate| (edit_distance(&field, candidate), *candidate))
        .filter(|(distance, candidate)| {
            *distance <= 2.max(candidate.len() / 4) && *distance < candidate.len()
        })
        .min();
    match suggestion {
        Some((_, candidate)) => format!("unknown key `{field}`, did you mean `{candidate}`?"),
        None => message.replacen("unknown field", "unknown key", 1),
    }
}

/// Levenshtein distance, for "did you mean" hints.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(row[j + 1])
            };
            previous = current;
        }
    }
    row[b.len()]
}

/// The field name in serde's "unknown field `x`, expected …".
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// Removes the key at `path` from `value`; false when it is not there.
fn remove_at(value: &mut toml::Value, path: &[Seg]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut current = value;
    for seg in parents {
        current = match (current, seg) {
            (toml::Value::Table(table), Seg::Key(k)) => match table.get_mut(k) {
                Some(next) => next,
                None => return false,
            },
            (toml::Value::Array(items), Seg::Index(i)) => match items.get_mut(*i) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    match (current, last) {
        (toml::Value::Table(table), Seg::Key(k)) => table.remove(k).is_some(),
        _ => false,
    }
}

// ---- value rules -----------------------------------------------------------

/// Probe and repo names end up in metric labels, URLs and file names.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn name_rule(name: &str) -> String {
    format!("invalid name {name:?}: use letters, digits, '-', '_' and '.', starting with a letter or digit")
}

fn check_label_name(label: &str) -> Result<(), String> {
    let mut chars = label.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "{label:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        ));
    }
    if label.starts_with("__") {
        return Err(format!(
            "label names starting with __ are reserved by Prometheus: {label:?}"
        ));
    }
    if RESERVED_LABELS.contains(&label) {
        return Err(format!(
            "label {label:?} is set by driftwatch itself; reserved: {}",
            RESERVED_LABELS.join(", ")
        ));
    }
    Ok(())
}

fn valid_ref(reference: &str) -> bool {
    !reference.is_empty()
        && !reference.starts_with('-')
        && !reference.ends_with('/')
        && !reference.ends_with(".lock")
        && !reference.contains("..")
        && !reference.contains("//")
        && !reference.contains("@{")
        && !reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlKind {
    Https,
    Http,
    Ssh,
    Git,
    File,
}

fn url_kind(url: &str) -> Result<UrlKind, String> {
    let shown = super::redacted_url(url);
    if let Some((scheme, rest)) = url.split_once("://") {
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "https" => UrlKind::Https,
            "http" => UrlKind::Http,
            "ssh" => UrlKind::Ssh,
            "git" => UrlKind::Git,
            "file" => UrlKind::File,
            _ => {
                return Err(format!(
                    "unsupported URL scheme {scheme:?} in {shown:?}; use https://, http://, ssh://, git://, file:// or user@host:path"
                ))
            }
        };
        let host = rest.split('/').next().unwrap_or("");
        if kind != UrlKind::File && host.rsplit('@').next().unwrap_or("").is_empty() {
            return Err(format!("URL {shown:?} has no host"));
        }
        if kind == UrlKind::File && !rest.starts_with('/') {
            return Err(format!(
                "file URL {shown:?} needs an absolute path: file:///path/to/repo"
            ));
        }
        return Ok(kind);
    }
    // scp-like: [user@]host:path, where host has no '/' before the ':'.
    if let Some((host, path)) = url.split_once(':') {
        let host = host.rsplit('@').next().unwrap_or("");
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if host_ok && !path.is_empty() && !url[..url.find(':').unwrap_or(0)].contains('/') {
            return Ok(UrlKind::Ssh);
        }
    }
    Err(format!(
        "unsupported URL {shown:?}; use https://, http://, ssh://, git://, file:// or user@host:path (for a local directory, use path instead of url)"
    ))
}

/// The user in `ssh://user@host/…` or `user@host:path`.
fn url_user(url: &str) -> Option<String> {
    let authority = match url.split_once("://") {
        Some((_, rest)) => rest.split('/').next().unwrap_or(""),
        None => url.split(':').next().unwrap_or(""),
    };
    let (user, _) = authority.rsplit_once('@')?;
    let user = user.split(':').next().unwrap_or("");
    (!user.is_empty()).then(|| user.to_string())
}

/// `host:port`, `[v6]:port`, or `:port` for all interfaces.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_string()
    };
    if let Ok(addr) = full.parse() {
        return Ok(addr);
    }
    if let Some(port) = full.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
    Err(format!(
        "invalid listen address {text:?}: write ip:port, e.g. 127.0.0.1:9808, [::1]:9808 or :9808"
    ))
}

/// Lexically cleans a relative path: drops `.` and resolves `a/..`.
fn normalize(path: &Path) -> PathBuf {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<Config, Vec<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dw.toml");
        load_str(&path, text).map_err(|errors| {
            let prefix = format!("{}:", path.display());
            errors
                .problems
                .iter()
                .map(|p| p.replacen(&prefix, "dw.toml:", 1))
                .collect()
        })
    }

    const REPO: &str = "[[repo]]\nname = \"infra\"\nurl = \"https://example.com/infra.git\"\n";

    #[test]
    fn minimal_config_gets_defaults() {
        let config = load_text(&format!(
            "{REPO}\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n"
        ))
        .unwrap();
        assert_eq!(config.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(config.server.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.defaults.max_concurrent_runs, 4);
        let probe = &config.probes[0];
        assert_eq!(probe.repo, "infra");
        assert_eq!(probe.timeout, Duration::from_secs(600));
        assert_eq!(probe.schedule.as_ref().unwrap().text, DEFAULT_SCHEDULE);
        assert!(probe.run_on_change);
        match &config.repos[0].source {
            RepoSource::Remote {
                reference,
                auth: RepoAuth::None,
                ..
            } => assert_eq!(reference, "main"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_keys_are_all_reported_at_their_line() {
        let errors = load_text(&format!("bogus = 1\n{REPO}colour = \"red\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncomand = [\"true\"]\n")).unwrap_err();
        assert!(
            errors[0].starts_with("dw.toml:1:1: bogus: unknown key `bogus`"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("dw.toml:5:1: repo.infra.colour: unknown key `colour`"),
            "{errors:?}"
        );
        assert!(
            errors[2].starts_with("dw.toml:9:1: probe.p.comand: unknown key `comand`"),
            "{errors:?}"
        );
        assert_eq!(errors.len(), 3, "{errors:?}");
    }

    #[test]
    fn values_are_located_inside_inline_tables_and_arrays() {
        let errors = load_text(&format!(
            "{REPO}[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\nlabels = {{ team = \"a\", job = \"x\" }}\nschedule = \"* *\"\n"
        ))
        .unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "dw.toml:8:24: probe.p.labels.job: label \"job\" is set by driftwatch"
            ),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("dw.toml:9:12: probe.p.schedule: invalid cron expression"),
            "{errors:?}"
        );
    }

    #[test]
    fn secrets_come_from_files_and_never_show_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        let path = dir.path().join("dw.toml");
        let text = "[server]\napi_token_file = \"token\"\n[[repo]]\nname = \"r\"\nurl = \"https://h/x.git\"\ntoken_file = \"token\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n";
        let config = load_str(&path, text).unwrap();
        assert_eq!(config.server.api_token.as_deref(), Some("s3cret"));
        match &config.repos[0].source {
            RepoSource::Remote {
                auth: RepoAuth::Token { username, token },
                ..
            } => {
                assert_eq!(username, DEFAULT_TOKEN_USERNAME);
                assert_eq!(token, "s3cret");
            }
            other => panic!("{other:?}"),
        }
        let both = text.replace(
            "api_token_file",
            "api_token = \"inline-secret\"\napi_token_file",
        );
        let errors = load_str(&path, &both).unwrap_err().problems;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("server.api_token_file: give either api_token or api_token_file"),
            "{errors:?}"
        );
        assert!(!errors[0].contains("inline-secret") && !errors[0].contains("s3cret"));
        let missing = text.replace(
            "token_file = \"token\"\n[[probe]]",
            "token_file = \"nope\"\n[[probe]]",
        );
        let errors = load_str(&path, &missing).unwrap_err().problems;
        assert!(
            errors[0].contains(":6:14: repo.r.token_file: cannot read"),
            "{errors:?}"
        );
    }

    #[test]
    fn urls_and_auth_are_checked() {
        for (url, ok) in [
            ("https://github.com/a/b.git", true),
            ("http://127.0.0.1:8080/b.git", true),
            ("ssh://git@host/a/b.git", true),
            ("git://127.0.0.1:9418/r.git", true),
            ("file:///srv/r.git", true),
            ("git@github.com:a/b.git", true),
            ("ftp://host/r.git", false),
            ("github.com/a/b", false),
            ("/srv/r.git", false),
            ("file://relative", false),
        ] {
            assert_eq!(url_kind(url).is_ok(), ok, "{url}");
        }
        assert_eq!(url_user("git@github.com:a/b.git").as_deref(), Some("git"));
        assert_eq!(url_user("ssh://deploy@host/x").as_deref(), Some("deploy"));
        assert_eq!(url_user("https://host/x"), None);
        let errors = load_text("[[repo]]\nname = \"r\"\nurl = \"ftp://u:pw@h/x\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n").unwrap_err();
        assert!(
            errors[0].starts_with("dw.toml:3:7: repo.r.url: unsupported URL scheme"),
            "{errors:?}"
        );
        assert!(!errors[0].contains("pw"), "{errors:?}");
    }

    #[test]
    fn layer_errors_point_inside_the_probe() {
        let errors = load_text(&format!(
            "{REPO}[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\nworkdir = \"../up\"\n"
        ))
        .unwrap_err();
        assert_eq!(errors, vec!["dw.toml:8:11: probe.p.workdir: must stay inside the repository (no absolute path or ..)"]);
        let errors = load_text(&format!(
            "{REPO}[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\nshell = \"yes\"\n"
        ))
        .unwrap_err();
        assert!(
            errors[0].starts_with("dw.toml:8:9: probe.p.shell: invalid type"),
            "{errors:?}"
        );
    }

    #[test]
    fn unknown_keys_get_a_suggestion_when_one_is_close() {
        let serde = "unknown field `comand`, expected one of `command`, `shell`, `workdir`";
        assert_eq!(
            unknown_key_message(serde, &[]),
            "unknown key `comand`, did you mean `command`?"
        );
        let serde = "unknown field `schedul`, expected one of `command`, `shell`";
        assert_eq!(
            unknown_key_message(serde, PROBE_COMMON_KEYS),
            "unknown key `schedul`, did you mean `schedule`?"
        );
        let serde = "unknown field `zzz`, expected `command` or `shell`";
        assert_eq!(
            unknown_key_message(serde, &[]),
            "unknown key `zzz`, expected `command` or `shell`"
        );
        assert_eq!(unknown_key_message("invalid type", &[]), "invalid type");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
    }

    #[test]
    fn every_bad_key_in_one_table_is_reported() {
        let errors = load_text(&format!(
            "[defaults]\nschedule = \"*/0 * * * *\"\nmax_concurrent_runs = -1\nkill_grace = 5\n{REPO}[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = []\nlabels = {{ team = 1 }}\n"
        ))
        .unwrap_err();
        let keys: Vec<&str> = errors
            .iter()
            .map(|e| e.split(": ").nth(1).unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "defaults.schedule",
                "defaults.max_concurrent_runs",
                "defaults.kill_grace",
                "probe.p.command",
                "probe.p.labels.team",
            ],
            "{errors:#?}"
        );
    }

    #[test]
    fn key_paths_parse() {
        assert_eq!(
            parse_key_path("roots[1].name"),
            vec![key("roots"), Seg::Index(1), key("name")]
        );
        assert_eq!(parse_key_path(""), vec![]);
        assert_eq!(normalize(Path::new("./a/b/../c/")), PathBuf::from("a/c"));
        assert_eq!(line_col("ab\ncdé\nx", 8), (3, 1));
        assert_eq!(parse_listen(":9000").unwrap().to_string(), "0.0.0.0:9000");
        assert!(parse_listen("nowhere").is_err());
    }
}
