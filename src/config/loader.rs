//! Reads a config file and turns it into a validated `Config`. The text is
//! parsed twice: into `toml` values to deserialize, and into a `toml_edit`
//! document that keeps spans, so any key path can be traced back to its
//! line and column. Every problem is collected, sorted by position and
//! reported at once.
//!
//! The sections live beside this file: `spans` (key paths, positions,
//! decoding), `server` (`[server]`, `[defaults]`, `[history]`), `repos` and
//! `probes`.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use toml_edit::ImDocument;

use super::raw::RawTop;
use super::spans::{key, line_col, path_plus, Problem, Seg};
use super::{parse_duration_up_to, Config, ConfigErrors, LayerCatalog};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/driftwatch";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9808";
pub const DEFAULT_REQUEST_TIMEOUT: &str = "30s";
pub const DEFAULT_SCHEDULE: &str = "*/15 * * * *";
pub const DEFAULT_TIMEOUT: &str = "10m";
pub const DEFAULT_MAX_CONCURRENT_RUNS: usize = 4;
/// The most runs `max_concurrent_runs` may allow at once.
pub const MAX_CONCURRENT_RUNS: usize = 1024;
pub const DEFAULT_MAX_RESOURCE_SERIES: usize = 100;
/// Bounds of `max_changes_per_report`.
pub const CHANGES_PER_REPORT_RANGE: std::ops::RangeInclusive<u64> = 1..=100_000;
/// Bounds of `max_report_bytes`, in bytes.
pub const REPORT_BYTES_RANGE: std::ops::RangeInclusive<u64> = 16 * 1024..=64 * 1024 * 1024;
pub const DEFAULT_KILL_GRACE: &str = "10s";
pub const DEFAULT_BRANCH: &str = "main";
pub const DEFAULT_POLL_INTERVAL: &str = "1m";
pub const DEFAULT_SYNC_TIMEOUT: &str = "2m";
pub const DEFAULT_TOKEN_USERNAME: &str = "x-access-token";
pub const DEFAULT_SSH_USERNAME: &str = "git";

/// Label names driftwatch sets itself (or Prometheus adds on scrape).
pub const RESERVED_LABELS: &[&str] = &[
    "probe", "layer", "root", "resource", "action", "result", "reason", "repo", "revision",
    "version", "instance", "job",
];

pub fn load(path: &Path, layers: &dyn LayerCatalog) -> Result<Config, ConfigErrors> {
    let bytes = std::fs::read(path).map_err(|err| {
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
    let text = decode_utf8(path, &bytes)?;
    load_str(path, text, layers)
}

/// The file as UTF-8, or an error at the line and column of the first bad byte.
fn decode_utf8<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, ConfigErrors> {
    std::str::from_utf8(bytes).map_err(|err| {
        let good = std::str::from_utf8(&bytes[..err.valid_up_to()]).expect("valid prefix");
        let (line, col) = line_col(good, good.len());
        ConfigErrors {
            problems: vec![format!(
                "{}:{line}:{col}: not valid UTF-8 (byte 0x{:02x}); save the file as UTF-8",
                path.display(),
                bytes[err.valid_up_to()]
            )],
        }
    })
}

/// Parses and validates `text` as if read from `path` (relative paths in it
/// resolve against `path`'s directory).
pub fn load_str(
    path: &Path,
    text: &str,
    layers: &dyn LayerCatalog,
) -> Result<Config, ConfigErrors> {
    load_str_with_env(path, text, layers, &|name| std::env::var(name).ok())
}

/// [`load_str`] reading environment variables (the `[cluster]` defaults)
/// through `env`.
pub fn load_str_with_env(
    path: &Path,
    text: &str,
    layers: &dyn LayerCatalog,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    if text.trim().is_empty() {
        return Err(ConfigErrors {
            problems: vec![format!(
                "{file}:1:1: the config is empty; it needs at least one [[repo]] and one [[probe]] (see config/driftwatch.example.toml)"
            )],
        });
    }
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
        layers,
        problems: Vec::new(),
    };
    let config = loader.config(path, table.clone(), env);
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

pub(super) struct Loader<'a> {
    pub(super) file: String,
    pub(super) text: &'a str,
    pub(super) document: &'a ImDocument<&'a str>,
    pub(super) root: &'a toml::Table,
    pub(super) config_dir: PathBuf,
    pub(super) layers: &'a dyn LayerCatalog,
    pub(super) problems: Vec<Problem>,
}

impl Loader<'_> {
    // ---- small validators ------------------------------------------------

    /// A duration of at most [`MAX_DURATION`](super::MAX_DURATION).
    pub(super) fn duration(
        &mut self,
        text: Option<&str>,
        default: &str,
        path: &[Seg],
        allow_zero: bool,
    ) -> Duration {
        self.duration_up_to(text, default, path, allow_zero, super::MAX_DURATION)
    }

    pub(super) fn duration_up_to(
        &mut self,
        text: Option<&str>,
        default: &str,
        path: &[Seg],
        allow_zero: bool,
        max: Duration,
    ) -> Duration {
        let fallback = parse_duration_up_to(default, max).expect("defaults parse");
        let Some(text) = text else { return fallback };
        match parse_duration_up_to(text, max) {
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
    pub(super) fn host_path(&self, text: &str) -> PathBuf {
        let path = Path::new(text);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.config_dir.join(path)
        }
    }

    /// A file the daemon will need later: fail now rather than at first use.
    pub(super) fn readable_file(&mut self, text: &str, path: &[Seg]) -> Option<PathBuf> {
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
    pub(super) fn secret(
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

    // ---- sections ----------------------------------------------------------

    pub(super) fn config(
        &mut self,
        source: &Path,
        table: toml::Table,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Config> {
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
        let acks = self.acks(top.acks);
        let defaults = self.defaults(top.defaults);
        let repos = self.repos(top.repo);
        let probes = self.probes(top.probe, &repos, &defaults);
        let cluster = self.cluster(top.cluster, server.listen.port(), env);

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
            cluster,
            acks,
        })
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

pub(super) fn name_rule(name: &str) -> String {
    format!("invalid name {name:?}: use letters, digits, '-', '_' and '.', starting with a letter or digit")
}

/// `schedule = "none"` (or empty): no cron runs.
pub(super) fn is_no_schedule(text: &str) -> bool {
    text.trim().is_empty() || text.trim().eq_ignore_ascii_case("none")
}

/// Lexically cleans a relative path: drops `.` and resolves `a/..`.
pub(super) fn normalize(path: &Path) -> PathBuf {
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

/// Loads `text` as `dw.toml` in a temporary directory; errors with the
/// directory stripped, so tests can compare whole lines.
#[cfg(test)]
pub(super) fn load_text(text: &str) -> Result<Config, Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dw.toml");
    load_str(&path, text, &crate::probe::Layers).map_err(|errors| {
        let prefix = format!("{}:", path.display());
        errors
            .problems
            .iter()
            .map(|p| p.replacen(&prefix, "dw.toml:", 1))
            .collect()
    })
}

#[cfg(test)]
pub(super) const TEST_REPO: &str =
    "[[repo]]\nname = \"infra\"\nurl = \"https://example.com/infra.git\"\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RepoAuth, RepoSource};

    #[test]
    fn empty_and_non_utf8_files_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dw.toml");
        for empty in ["", "\n  \n"] {
            std::fs::write(&path, empty).unwrap();
            let errors = load(&path, &crate::probe::Layers).unwrap_err().problems;
            assert_eq!(errors.len(), 1);
            assert!(
                errors[0].starts_with(&format!("{}:1:1: the config is empty", path.display())),
                "{errors:?}"
            );
        }
        std::fs::write(&path, b"[server]\nlisten = \"caf\xe9\"\n").unwrap();
        let errors = load(&path, &crate::probe::Layers).unwrap_err().problems;
        assert_eq!(
            errors,
            [format!(
                "{}:2:14: not valid UTF-8 (byte 0xe9); save the file as UTF-8",
                path.display()
            )]
        );
        // Columns count characters, not bytes.
        std::fs::write(
            &path,
            "# é\n# ü \u{fffe}x"
                .as_bytes()
                .iter()
                .copied()
                .chain([0xff])
                .collect::<Vec<u8>>(),
        )
        .unwrap();
        let errors = load(&path, &crate::probe::Layers).unwrap_err().problems;
        assert!(
            errors[0].contains("dw.toml:2:7: not valid UTF-8 (byte 0xff)"),
            "{errors:?}"
        );
    }

    #[test]
    fn files_a_probe_names_are_checked_at_their_spot() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("stack")).unwrap();
        std::fs::write(repo.join("stack/present.tfvars"), "").unwrap();
        std::fs::write(dir.path().join("token"), "t").unwrap();
        let path = dir.path().join("dw.toml");
        let text = "[[repo]]\nname = \"r\"\npath = \"repo\"\n\
            [[probe]]\nname = \"script\"\nlayer = \"command\"\ncommand = [\"./does-not-exist.sh\"]\n\
            env_files = { TOKEN = \"token\", OTHER = \"missing-token\" }\n\
            [[probe]]\nname = \"bare\"\nlayer = \"command\"\ncommand = [\"no-such-program-here\", \"x\"]\n\
            [[probe]]\nname = \"tf\"\nlayer = \"terraform\"\npath = \"stack\"\n\
            var_files = [\"present.tfvars\", \"missing.tfvars\"]\ncli_config_file = \"missing.tfrc\"\n";
        std::fs::write(&path, text).unwrap();
        let errors: Vec<String> = load(&path, &crate::probe::Layers)
            .unwrap_err()
            .problems
            .iter()
            .map(|p| p.replace(&format!("{}/", dir.path().display()), "DIR/"))
            .collect();
        let expected = [
            "DIR/dw.toml:7:12: probe.script.command[0]: DIR/repo/does-not-exist.sh does not exist in repo \"r\"",
            "DIR/dw.toml:8:40: probe.script.env_files.OTHER: cannot read DIR/missing-token: No such file or directory (os error 2)",
            "DIR/dw.toml:12:12: probe.bare.command[0]: program \"no-such-program-here\" is not on PATH; give its full path, or ./name for a script in the repo",
            "DIR/dw.toml:17:32: probe.tf.var_files[1]: DIR/repo/stack/missing.tfvars does not exist in repo \"r\"",
            "DIR/dw.toml:18:19: probe.tf.cli_config_file: cannot read DIR/missing.tfrc: No such file or directory (os error 2)",
        ];
        assert_eq!(errors, expected, "{errors:#?}");
    }

    #[test]
    fn paths_are_normalized() {
        assert_eq!(normalize(Path::new("./a/b/../c/")), PathBuf::from("a/c"));
    }

    const REPO: &str = TEST_REPO;

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
        assert_eq!(
            errors,
            ["dw.toml:8:9: probe.p.shell: invalid type: string \"yes\", expected a boolean"]
        );
        let errors = load_text(&format!(
            "{REPO}[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\nenv_files = [\"a.env\"]\n"
        ))
        .unwrap_err();
        assert_eq!(
            errors,
            ["dw.toml:8:13: probe.p.env_files: invalid type: sequence, expected a map"]
        );
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
}
