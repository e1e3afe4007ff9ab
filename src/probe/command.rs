//! The generic command probe, prom-run's successor: run an argv in the
//! checkout and map its exit code to a verdict. With `output = "json"` the
//! command is a plugin whose stdout lists the changed resources; that plugin
//! protocol is defined in probes/README.md and enforced here, so a plugin that
//! breaks it gets a `parse` error instead of a made-up verdict.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::fields::is_executable;
use super::{parse_fields, FieldError, Probe, ProbeCommon, ProbeContext};
use crate::model::outcome::{cap_tail, cap_text};
use crate::model::outcome::{ErrorReason, Outcome, ProbeError, ResourceChange};

/// Cap on a plugin's stdout; more than this is a `parse` error, never a memory problem.
pub const JSON_OUTPUT_LIMIT: usize = 4 * 1024 * 1024;
/// Cap on a text-mode command's captured stdout (only an excerpt is kept).
const TEXT_OUTPUT_LIMIT: usize = 64 * 1024;
/// How much of a text-mode command's stdout a drifted report shows.
const TEXT_EXCERPT_BYTES: usize = 4 * 1024;
/// Protocol limits on one resource, so subjects and actions stay usable as labels.
const MAX_SUBJECT_BYTES: usize = 1024;
const MAX_WARNINGS: usize = 100;
const MAX_WARNING_BYTES: usize = 1024;
/// The plugin protocol version this driftwatch speaks.
pub const PROTOCOL_VERSION: u64 = 1;

/// `layer = "command"`: any program; its exit code is the verdict, and with
/// `output = "json"` its stdout lists the drifted resources
/// ([Command probe and plugins](command.md)).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// The argv to run, without a shell (`["./check.sh", "--strict"]`). A
    /// program with a `/` is relative to the working directory; a bare name is
    /// looked up on `PATH`. With `shell = true`, one string for `sh -c`.
    ///
    /// Required.
    #[serde(deserialize_with = "string_or_list")]
    #[schemars(with = "OneOrMany")]
    pub command: Vec<String>,
    /// Run `command` through `sh -c` (pipes, globs, `&&`).
    ///
    /// Default: `false`.
    #[serde(default)]
    pub shell: bool,
    /// The working directory, relative to the probe's `path`; must stay inside
    /// the checkout (`..`, absolute paths and symlinks leading out are refused).
    ///
    /// Default: the probe's `path`.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// Variables passed through from driftwatch's environment. The child's
    /// environment is cleared except `PATH HOME LANG LC_ALL TZ USER LOGNAME`,
    /// these, and `env`.
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// Extra variables for the command (`{ KUBECONFIG = "/etc/driftwatch/kubeconfig" }`).
    ///
    /// Default: `{}`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables whose value is read from a file at each run (tokens,
    /// passwords: `{ API_TOKEN = "/run/secrets/token" }`), so no secret needs to
    /// sit in the config. Relative paths are relative to the config file.
    ///
    /// Default: `{}`.
    #[serde(default)]
    pub env_files: BTreeMap<String, PathBuf>,
    /// Exit codes meaning in sync; at least one. Any exit code in neither
    /// list is an error.
    ///
    /// Default: `[0]`.
    #[serde(default = "default_in_sync")]
    pub in_sync_exit_codes: Vec<i32>,
    /// Exit codes meaning drifted; none may be in `in_sync_exit_codes`.
    ///
    /// Default: `[2]`.
    #[serde(default = "default_drift")]
    pub drift_exit_codes: Vec<i32>,
    /// `"text"`: only the exit code counts (a drifted report shows the last
    /// 4 KiB of stdout, so never print secrets there). `"json"`: stdout follows
    /// the [plugin protocol](../probes/README.md).
    ///
    /// Default: `"text"`.
    #[serde(default)]
    pub output: OutputFormat,
}

// Serialize lets the reference check the documented default against this one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

/// `command = "x"` or `command = ["x", "y"]`.
#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn default_in_sync() -> Vec<i32> {
    vec![0]
}

fn default_drift() -> Vec<i32> {
    vec![2]
}

/// `command = "x"` or `command = ["x", "y"]`.
fn string_or_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    match OneOrMany::deserialize(deserializer) {
        Ok(OneOrMany::One(one)) => Ok(vec![one]),
        Ok(OneOrMany::Many(many)) => Ok(many),
        Err(_) => Err(serde::de::Error::custom(
            "expected a string or a list of strings",
        )),
    }
}

pub struct CommandProbe {
    config: CommandConfig,
    /// `env_files` with paths resolved against the config file's directory.
    env_files: BTreeMap<String, PathBuf>,
}

pub fn build(common: &ProbeCommon, fields: toml::Table) -> Result<Arc<dyn Probe>, Vec<FieldError>> {
    let config: CommandConfig = parse_fields(fields)?;
    let mut errors = validate(&config);
    if !errors.is_empty() {
        return Err(errors);
    }
    let env_files: BTreeMap<String, PathBuf> = config
        .env_files
        .iter()
        .map(|(key, path)| (key.clone(), common.config_dir.join(path)))
        .collect();
    for (key, path) in &env_files {
        errors.extend(super::check_host_file(format!("env_files.{key}"), path));
    }
    if !config.shell {
        let program = &config.command[0];
        if program.contains('/') && Path::new(program).is_relative() {
            let workdir = config.workdir.clone().unwrap_or_default();
            errors.extend(super::check_repo_file(
                common,
                &workdir,
                "command[0]",
                program,
            ));
        } else {
            errors.extend(super::check_on_path("command[0]", program));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Arc::new(CommandProbe { config, env_files }))
}

fn validate(config: &CommandConfig) -> Vec<FieldError> {
    let mut errors = Vec::new();
    match config.command.first() {
        None => errors.push(FieldError::new(
            "command",
            "must name a program to run, e.g. [\"./check.sh\"]",
        )),
        Some(program) if program.trim().is_empty() => {
            errors.push(FieldError::new("command[0]", "the program name is empty"))
        }
        Some(program) => {
            if config.shell && config.command.len() != 1 {
                errors.push(FieldError::new(
                    "command",
                    "with shell = true, give one string for sh -c",
                ));
            }
            if !config.shell && config.command.len() == 1 && program.contains(char::is_whitespace) {
                errors.push(FieldError::new(
                    "command",
                    format!("{program:?} contains spaces: give an argv list, e.g. [\"prog\", \"arg\"], or set shell = true"),
                ));
            }
        }
    }
    if let Some(dir) = &config.workdir {
        if crate::paths::escapes(dir) {
            errors.push(FieldError::new(
                "workdir",
                "must stay inside the repository (no absolute path or ..)",
            ));
        }
    }
    for (index, name) in config.pass_env.iter().enumerate() {
        if let Some(problem) = env_name_problem(name) {
            errors.push(FieldError::new(format!("pass_env[{index}]"), problem));
        }
    }
    for name in config.env.keys().chain(config.env_files.keys()) {
        let table = if config.env.contains_key(name) {
            "env"
        } else {
            "env_files"
        };
        if let Some(problem) = env_name_problem(name) {
            errors.push(FieldError::new(format!("{table}.{name}"), problem));
        } else if name.starts_with("DRIFTWATCH_") {
            errors.push(FieldError::new(
                format!("{table}.{name}"),
                "DRIFTWATCH_* variables are set by driftwatch",
            ));
        }
    }
    for name in config.env_files.keys() {
        if config.env.contains_key(name) {
            errors.push(FieldError::new(
                format!("env_files.{name}"),
                "is also set in env; keep one",
            ));
        }
    }
    for (field, codes) in [
        ("in_sync_exit_codes", &config.in_sync_exit_codes),
        ("drift_exit_codes", &config.drift_exit_codes),
    ] {
        for (index, code) in codes.iter().enumerate() {
            if !(0..=255).contains(code) {
                errors.push(FieldError::new(
                    format!("{field}[{index}]"),
                    format!("exit code {code} is outside 0..=255"),
                ));
            }
        }
    }
    if config.in_sync_exit_codes.is_empty() {
        errors.push(FieldError::new(
            "in_sync_exit_codes",
            "must list at least one exit code (default [0])",
        ));
    }
    for (index, code) in config.drift_exit_codes.iter().enumerate() {
        if config.in_sync_exit_codes.contains(code) {
            errors.push(FieldError::new(
                format!("drift_exit_codes[{index}]"),
                format!("exit code {code} is also in in_sync_exit_codes"),
            ));
        }
    }
    errors
}

fn env_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("variable name is empty")
    } else if name.contains('=') || name.contains('\0') {
        Some("variable name may not contain '=' or NUL")
    } else {
        None
    }
}

impl CommandProbe {
    /// The directory the command runs in, checked to exist inside the checkout.
    fn working_dir(&self, cx: &ProbeContext) -> Result<PathBuf, ProbeError> {
        let dir = match &self.config.workdir {
            Some(dir) => cx.workdir.join(dir),
            None => cx.workdir.clone(),
        };
        let resolved = dir.canonicalize().map_err(|e| {
            ProbeError::new(
                ErrorReason::Checkout,
                format!(
                    "working directory {} is missing in the checkout: {e}",
                    dir.display()
                ),
            )
        })?;
        let checkout = cx
            .checkout
            .canonicalize()
            .unwrap_or_else(|_| cx.checkout.clone());
        if !resolved.starts_with(&checkout) {
            return Err(ProbeError::new(
                ErrorReason::Checkout,
                format!(
                    "working directory {} leaves the checkout (through a symlink?)",
                    dir.display()
                ),
            ));
        }
        if !resolved.is_dir() {
            return Err(ProbeError::new(
                ErrorReason::Checkout,
                format!("working directory {} is not a directory", dir.display()),
            ));
        }
        Ok(resolved)
    }

    fn program(&self, cwd: &Path) -> PathBuf {
        let program = Path::new(&self.config.command[0]);
        // A relative path with a slash means a script in the repo; resolve it
        // here so it never depends on how exec treats relative names.
        if program.is_relative() && self.config.command[0].contains('/') {
            cwd.join(program)
        } else {
            program.to_path_buf()
        }
    }
}

#[async_trait::async_trait]
impl Probe for CommandProbe {
    fn layer(&self) -> &'static str {
        "command"
    }

    fn repo_paths(&self, probe_dir: Option<&Path>) -> Vec<super::RepoPath> {
        use super::{PathKind, RepoPath};
        let workdir = self.config.workdir.clone().unwrap_or_default();
        let mut paths = Vec::new();
        if let Some(dir) = &self.config.workdir {
            let dir = dir.to_string_lossy();
            paths.push(RepoPath::new(
                "workdir",
                probe_dir,
                Path::new(""),
                &dir,
                PathKind::Directory,
            ));
        }
        let program = &self.config.command[0];
        if !self.config.shell && program.contains('/') && Path::new(program).is_relative() {
            paths.push(RepoPath::new(
                "command[0]",
                probe_dir,
                &workdir,
                program,
                PathKind::Program,
            ));
        }
        paths
    }

    async fn preflight(&self) -> Vec<String> {
        // A bare name not on PATH and a missing env file are config errors
        // (reported at their line when the config loads).
        let mut problems = Vec::new();
        let program = &self.config.command[0];
        if !self.config.shell
            && Path::new(program).is_absolute()
            && !is_executable(Path::new(program))
        {
            problems.push(format!(
                "command: {program} does not exist or is not executable"
            ));
        }
        problems
    }

    async fn run(&self, cx: &ProbeContext) -> Result<Outcome, ProbeError> {
        let c = &self.config;
        let cwd = self.working_dir(cx)?;
        let mut command = if c.shell {
            cx.command("sh").arg("-c").arg(&c.command[0])
        } else {
            cx.command(self.program(&cwd)).args(&c.command[1..])
        };
        command = command
            .current_dir(&cwd)
            .pass_env(c.pass_env.iter().cloned());
        if cx.scratch_dir.is_dir() && !c.env.contains_key("TMPDIR") {
            command = command.env("TMPDIR", &cx.scratch_dir);
        }
        for (key, value) in &c.env {
            command = command.env(key, value);
        }
        for (key, path) in &self.env_files {
            let value = std::fs::read_to_string(path).map_err(|e| {
                ProbeError::new(
                    ErrorReason::Spawn,
                    format!("cannot read env_files.{key} from {}: {e}", path.display()),
                )
            })?;
            command = command.env(key, value.trim_end_matches(['\n', '\r']));
        }
        let remaining = cx
            .deadline
            .saturating_duration_since(tokio::time::Instant::now());
        command = command
            .env("DRIFTWATCH_PROBE", &cx.name)
            .env("DRIFTWATCH_COMMIT", &cx.commit)
            .env("DRIFTWATCH_CHECKOUT", &cx.checkout)
            .env("DRIFTWATCH_CACHE_DIR", &cx.cache_dir)
            .env(
                "DRIFTWATCH_TIMEOUT_SECONDS",
                remaining.as_secs().to_string(),
            )
            .env("DRIFTWATCH_PROTOCOL", PROTOCOL_VERSION.to_string())
            .stdout_limit(match c.output {
                OutputFormat::Json => JSON_OUTPUT_LIMIT,
                OutputFormat::Text => TEXT_OUTPUT_LIMIT,
            });

        let output = cx.exec(command).await?;
        let code = output.code;
        let tail = output.stderr_tail(20);
        let drifted = match code {
            Some(code) if c.in_sync_exit_codes.contains(&code) => false,
            Some(code) if c.drift_exit_codes.contains(&code) => true,
            Some(code) => {
                return Err(ProbeError::new(
                    ErrorReason::ExitCode,
                    format!(
                        "command exited with code {code} (in sync: {:?}, drifted: {:?})",
                        c.in_sync_exit_codes, c.drift_exit_codes
                    ),
                )
                .with_exit_code(Some(code))
                .with_stderr_tail(tail))
            }
            None => {
                let signal = output.signal.unwrap_or_default();
                return Err(ProbeError::new(
                    ErrorReason::ExitCode,
                    format!("command was killed by signal {signal}"),
                )
                .with_stderr_tail(tail));
            }
        };

        let mut outcome = match c.output {
            OutputFormat::Json => {
                if output.stdout_truncated {
                    return Err(ProbeError::new(
                        ErrorReason::Parse,
                        format!("plugin printed more than {JSON_OUTPUT_LIMIT} bytes on stdout; output cut and ignored"),
                    )
                    .with_exit_code(code)
                    .with_stderr_tail(tail));
                }
                let outcome = parse_plugin_output(&output.stdout)
                    .map_err(|e| e.with_exit_code(code).with_stderr_tail(tail.clone()))?;
                if !drifted && !outcome.changes.is_empty() {
                    let count = outcome.changes.len();
                    return Err(ProbeError::new(
                        ErrorReason::Parse,
                        format!(
                            "plugin exited with in-sync code {} but listed {count} changed resource(s); a plugin that finds drift must exit 2",
                            code.unwrap_or_default()
                        ),
                    )
                    .with_exit_code(code)
                    .with_stderr_tail(tail)
                    .with_partial_changes(outcome.changes));
                }
                outcome
            }
            OutputFormat::Text => {
                let mut outcome = Outcome::default();
                let stdout = output.stdout_str();
                if drifted && !stdout.trim().is_empty() {
                    // No resource list in text mode: show the command's own words.
                    let excerpt = cap_tail(stdout.trim_end().to_string(), TEXT_EXCERPT_BYTES);
                    outcome.details = serde_json::json!({ "stdout": excerpt });
                }
                if drifted {
                    // The command's last words are the one-line message ("… is running with 5").
                    let stderr = output.stderr_str();
                    let last = |text: &str| {
                        text.lines()
                            .rev()
                            .find(|l| !l.trim().is_empty())
                            .map(|l| l.trim().to_string())
                    };
                    outcome.message = last(&stdout).or_else(|| last(&stderr)).unwrap_or_default();
                    outcome.message = cap_tail(std::mem::take(&mut outcome.message), 300);
                }
                outcome
            }
        };
        outcome.exit_code = code;
        outcome.drifted = drifted;
        Ok(outcome)
    }
}

/// The plugin protocol's stdout document; see probes/README.md.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginOutput {
    #[serde(default)]
    protocol: Option<u64>,
    #[serde(default)]
    resources: Vec<PluginResource>,
    #[serde(default)]
    warnings: Vec<String>,
    #[serde(default)]
    details: serde_json::Value,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginResource {
    subject: String,
    #[serde(default = "default_action")]
    action: String,
    #[serde(default)]
    diff: String,
    #[serde(default)]
    origin: Option<String>,
}

fn default_action() -> String {
    "changed".to_string()
}

/// Parses and checks a plugin's stdout. Empty stdout means "nothing listed".
pub fn parse_plugin_output(stdout: &[u8]) -> Result<Outcome, ProbeError> {
    if stdout.iter().all(u8::is_ascii_whitespace) {
        return Ok(Outcome::default());
    }
    let parse_error = |message: String| ProbeError::new(ErrorReason::Parse, message);
    let doc: PluginOutput = serde_json::from_slice(stdout)
        .map_err(|e| parse_error(format!("plugin output is not valid protocol JSON: {e}")))?;
    if let Some(version) = doc.protocol {
        if version != PROTOCOL_VERSION {
            return Err(parse_error(format!(
                "plugin speaks protocol {version}; this driftwatch speaks protocol {PROTOCOL_VERSION}"
            )));
        }
    }
    let mut changes = Vec::with_capacity(doc.resources.len());
    for (index, resource) in doc.resources.into_iter().enumerate() {
        let subject = resource.subject;
        if subject.trim().is_empty()
            || subject.len() > MAX_SUBJECT_BYTES
            || subject.chars().any(char::is_control)
        {
            return Err(parse_error(format!(
                "resources[{index}].subject must be 1 to {MAX_SUBJECT_BYTES} bytes on one line"
            )));
        }
        if !is_token(&resource.action) {
            return Err(parse_error(format!(
                "resources[{index}].action {:?} must be a short lowercase word such as changed, missing, extra",
                cap_text(resource.action, 64)
            )));
        }
        let mut change = ResourceChange::new(subject, resource.action).with_diff(resource.diff);
        if let Some(origin) = resource.origin {
            if !is_token(&origin) {
                return Err(parse_error(format!(
                    "resources[{index}].origin {:?} must be a short lowercase word such as config or outside",
                    cap_text(origin, 64)
                )));
            }
            change = change.with_origin(origin);
        }
        changes.push(change);
    }
    let mut warnings: Vec<String> = doc
        .warnings
        .into_iter()
        .take(MAX_WARNINGS)
        .map(|w| cap_text(w, MAX_WARNING_BYTES))
        .collect();
    if warnings.len() == MAX_WARNINGS {
        warnings.push(format!(
            "(warnings after the first {MAX_WARNINGS} were dropped)"
        ));
    }
    Ok(Outcome {
        changes,
        warnings,
        details: doc.details,
        ..Outcome::default()
    })
}

/// A bounded label-safe word: `[a-z][a-z0-9_-]{0,31}`.
fn is_token(text: &str) -> bool {
    let mut chars = text.chars();
    matches!(chars.next(), Some('a'..='z'))
        && text.len() <= 32
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> CommandConfig {
        parse_fields(toml::from_str(text).unwrap()).unwrap()
    }

    fn keys(text: &str) -> Vec<String> {
        validate(&config(text)).into_iter().map(|e| e.key).collect()
    }

    #[test]
    fn defaults_map_zero_and_two() {
        let c = config(r#"command = ["true"]"#);
        assert_eq!(c.in_sync_exit_codes, vec![0]);
        assert_eq!(c.drift_exit_codes, vec![2]);
        assert_eq!(c.output, OutputFormat::Text);
        assert!(validate(&c).is_empty());
    }

    #[test]
    fn command_may_be_a_string() {
        assert_eq!(
            config(r#"command = "./check.sh""#).command,
            vec!["./check.sh"]
        );
        assert!(keys(r#"command = "echo hi""#) == ["command"]);
        assert!(keys("command = \"echo hi | wc\"\nshell = true").is_empty());
        assert_eq!(keys("command = [\"a\", \"b\"]\nshell = true"), ["command"]);
    }

    #[test]
    fn bad_fields_name_their_key() {
        assert_eq!(keys("command = []"), ["command"]);
        assert_eq!(keys("command = [\"\"]"), ["command[0]"]);
        assert_eq!(keys("command = [\"x\"]\nworkdir = \"../up\""), ["workdir"]);
        assert_eq!(
            keys("command = [\"x\"]\ndrift_exit_codes = [3, 0]"),
            ["drift_exit_codes[1]"]
        );
        assert_eq!(
            keys("command = [\"x\"]\nin_sync_exit_codes = []"),
            ["in_sync_exit_codes"]
        );
        assert_eq!(
            keys("command = [\"x\"]\nin_sync_exit_codes = [0, 300]"),
            ["in_sync_exit_codes[1]"]
        );
        assert_eq!(
            keys("command = [\"x\"]\nenv = { DRIFTWATCH_PROBE = \"x\" }"),
            ["env.DRIFTWATCH_PROBE"]
        );
        assert_eq!(
            keys("command = [\"x\"]\npass_env = [\"A=B\"]"),
            ["pass_env[0]"]
        );
        assert_eq!(
            keys("command = [\"x\"]\nenv = { T = \"1\" }\nenv_files = { T = \"/f\" }"),
            ["env_files.T"]
        );
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_name() {
        let table: toml::Table = toml::from_str("command = [\"x\"]\ncomand = 1").unwrap();
        let errors = parse_fields::<CommandConfig>(table).unwrap_err();
        assert!(errors[0].message.contains("comand"), "{errors:?}");
    }

    #[test]
    fn protocol_document_becomes_changes() {
        let doc = br#"{"protocol": 1, "resources": [
            {"subject": "/etc/a", "action": "missing"},
            {"subject": "/etc/b", "diff": "-x\n+y", "origin": "outside"}],
            "warnings": ["w"], "details": {"checked": 2}}"#;
        let outcome = parse_plugin_output(doc).unwrap();
        assert_eq!(outcome.changes.len(), 2);
        assert_eq!(outcome.changes[1].action, "changed");
        assert_eq!(outcome.changes[1].origin.as_deref(), Some("outside"));
        assert_eq!(outcome.warnings, vec!["w"]);
        assert_eq!(outcome.details["checked"], 2);
        assert_eq!(parse_plugin_output(b"  \n").unwrap(), Outcome::default());
    }

    #[test]
    fn protocol_violations_are_parse_errors() {
        for doc in [
            &b"not json"[..],
            br#"{"resources": [{"subject": ""}]}"#,
            br#"{"resources": [{"subject": "a", "action": "Has Spaces"}]}"#,
            br#"{"resources": [{"subject": "a\nb"}]}"#,
            br#"{"resource": []}"#,
            br#"{"protocol": 2}"#,
            br#"[1, 2]"#,
        ] {
            let err = parse_plugin_output(doc).unwrap_err();
            assert_eq!(
                err.reason,
                ErrorReason::Parse,
                "{}",
                String::from_utf8_lossy(doc)
            );
        }
    }
}
