//! The Ansible layer, ansiblediff's successor: `ansible-playbook --check
//! --diff` against the checked-out playbooks, read through driftwatch's own
//! stdout callback (embedded below, written to the run's scratch directory),
//! which prints per-host stats and per-task results as one JSON document.
//!
//! The verdict comes from those stats, never from the exit code alone: drift
//! in check mode exits 0. Tasks marked `check_mode: false` run for real even
//! in check mode, so they are found before running (see `scan`) and listed
//! as warnings, or refused under `strict_check_mode`.

pub mod ignore;
pub mod scan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use self::ignore::{IgnoreRule, IgnoreRuleConfig};
use super::{
    parse_fields, ErrorReason, FieldError, Outcome, Probe, ProbeCommon, ProbeContext, ProbeError,
    ResourceChange,
};

/// The stdout callback plugin (Python), embedded so the binary needs nothing
/// installed beside ansible-core; written as `<CALLBACK_NAME>.py` per run.
pub const CALLBACK_SOURCE: &str = include_str!("driftwatch_json.py");
/// The callback's name, for `ANSIBLE_STDOUT_CALLBACK`.
pub const CALLBACK_NAME: &str = "driftwatch_json";
/// Tags the callback's JSON line among whatever else lands on stdout.
const CALLBACK_MARKER: &str = "driftwatch-ansible/v1";
/// How many failed tasks an error message names before summarizing the rest.
const MAX_LISTED_FAILURES: usize = 10;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnsibleConfig {
    /// Playbooks to check, relative to the probe's path.
    pub playbooks: Vec<PathBuf>,
    /// Inventory: a file, directory or script relative to the probe's path
    /// (or an absolute path on the host), or a comma-separated host list; one or several.
    pub inventory: OneOrMany,
    #[serde(default)]
    pub limit: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub skip_tags: Vec<String>,
    /// Passed as one `-e @file` of JSON (kept off the command line).
    #[serde(default)]
    pub extra_vars: toml::Table,
    /// Variable files relative to the probe's path, each passed as `-e @file`.
    #[serde(default)]
    pub extra_vars_files: Vec<PathBuf>,
    /// Host paths, relative to the config file's directory.
    #[serde(default)]
    pub vault_password_file: Option<PathBuf>,
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    #[serde(default)]
    pub forks: Option<u32>,
    /// The `ansible-playbook` to run.
    #[serde(default = "default_binary")]
    pub binary: String,
    /// Variables passed through from driftwatch's environment, beyond PATH, HOME, LANG….
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// How unreachable hosts count: `error` (default) or `drift`.
    #[serde(default)]
    pub unreachable: UnreachablePolicy,
    /// Refuse to run playbooks with tasks that run for real in check mode.
    #[serde(default)]
    pub strict_check_mode: bool,
    /// `[[probe.ignore]]`: changed tasks that are not drift.
    #[serde(default)]
    pub ignore: Vec<IgnoreRuleConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(one) => vec![one.as_str()],
            OneOrMany::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnreachablePolicy {
    #[default]
    Error,
    Drift,
}

fn default_binary() -> String {
    "ansible-playbook".to_string()
}

pub struct AnsibleProbe {
    config: AnsibleConfig,
    /// Host paths made absolute against the config file's directory.
    vault_password_file: Option<PathBuf>,
    private_key_file: Option<PathBuf>,
    ignore: Vec<IgnoreRule>,
}

pub fn build(common: &ProbeCommon, fields: toml::Table) -> Result<Arc<dyn Probe>, Vec<FieldError>> {
    let config: AnsibleConfig = parse_fields(fields)?;
    let mut errors = Vec::new();
    if config.playbooks.is_empty() {
        errors.push(FieldError::new(
            "playbooks",
            "must name at least one playbook, e.g. [\"site.yml\"]",
        ));
    }
    for (i, playbook) in config.playbooks.iter().enumerate() {
        if playbook.as_os_str().is_empty() || crate::paths::escapes(playbook) {
            errors.push(FieldError::new(
                format!("playbooks[{i}]"),
                "must be a path inside the repository (no absolute path or ..)",
            ));
        }
    }
    let inventories = config.inventory.items();
    if inventories.is_empty() {
        errors.push(FieldError::new(
            "inventory",
            "must name an inventory file, directory or script",
        ));
    }
    for (i, inventory) in inventories.iter().enumerate() {
        let key = match config.inventory {
            OneOrMany::One(_) => "inventory".to_string(),
            OneOrMany::Many(_) => format!("inventory[{i}]"),
        };
        let path = Path::new(inventory);
        if inventory.trim().is_empty() {
            errors.push(FieldError::new(key, "must not be empty"));
        } else if !inventory.contains(',') && !path.is_absolute() && crate::paths::escapes(path) {
            errors.push(FieldError::new(
                key,
                "a relative inventory must stay inside the repository (no ..)",
            ));
        }
    }
    for (i, file) in config.extra_vars_files.iter().enumerate() {
        if crate::paths::escapes(file) {
            errors.push(FieldError::new(
                format!("extra_vars_files[{i}]"),
                "must be a path inside the repository (no absolute path or ..)",
            ));
        }
    }
    for (key, list) in [("tags", &config.tags), ("skip_tags", &config.skip_tags)] {
        if list.iter().any(|t| t.trim().is_empty() || t.contains(',')) {
            errors.push(FieldError::new(
                key,
                "each tag must be non-empty and contain no comma; list them separately",
            ));
        }
    }
    if config.forks == Some(0) {
        errors.push(FieldError::new("forks", "must be at least 1"));
    }
    if config.binary.trim().is_empty() {
        errors.push(FieldError::new(
            "binary",
            "must name the ansible-playbook program",
        ));
    }
    if let Some(limit) = &config.limit {
        if limit.trim().is_empty() {
            errors.push(FieldError::new(
                "limit",
                "must not be empty; leave it out to run on every host",
            ));
        }
    }
    for (i, name) in config.pass_env.iter().enumerate() {
        if name.is_empty() || name.contains('=') {
            errors.push(FieldError::new(
                format!("pass_env[{i}]"),
                "must be a variable name",
            ));
        }
    }
    let mut ignore = Vec::new();
    for (index, rule) in config.ignore.iter().enumerate() {
        match IgnoreRule::build(&format!("ignore[{index}]"), rule) {
            Ok(rule) => ignore.push(rule),
            Err(rule_errors) => errors.extend(rule_errors),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let host_path = |p: &Option<PathBuf>| p.as_ref().map(|p| common.config_dir.join(p));
    Ok(Arc::new(AnsibleProbe {
        vault_password_file: host_path(&config.vault_password_file),
        private_key_file: host_path(&config.private_key_file),
        ignore,
        config,
    }))
}

#[async_trait::async_trait]
impl Probe for AnsibleProbe {
    fn layer(&self) -> &'static str {
        "ansible"
    }

    fn repo_paths(&self, probe_dir: Option<&Path>) -> Vec<super::RepoPath> {
        use super::{PathKind, RepoPath};
        let here = Path::new("");
        let mut paths = Vec::new();
        for (index, playbook) in self.config.playbooks.iter().enumerate() {
            let key = format!("playbooks[{index}]");
            let playbook = playbook.to_string_lossy();
            paths.push(RepoPath::new(
                key,
                probe_dir,
                here,
                &playbook,
                PathKind::File,
            ));
        }
        for (index, inventory) in self.config.inventory.items().into_iter().enumerate() {
            // A host list (`a,b,`) or a host path is not in the checkout.
            if inventory.contains(',') || Path::new(inventory).is_absolute() {
                continue;
            }
            let key = match self.config.inventory {
                OneOrMany::One(_) => "inventory".to_string(),
                OneOrMany::Many(_) => format!("inventory[{index}]"),
            };
            paths.push(RepoPath::new(
                key,
                probe_dir,
                here,
                inventory,
                PathKind::Entry,
            ));
        }
        for (index, file) in self.config.extra_vars_files.iter().enumerate() {
            if file.is_absolute() {
                continue;
            }
            let key = format!("extra_vars_files[{index}]");
            let file = file.to_string_lossy();
            paths.push(RepoPath::new(key, probe_dir, here, &file, PathKind::File));
        }
        paths
    }

    async fn preflight(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if find_program(&self.config.binary).is_none() {
            problems.push(format!(
                "ansible: cannot find {:?}; install ansible-core (scripts/install-tools does) or set binary",
                self.config.binary
            ));
        }
        for (field, path) in [
            ("vault_password_file", &self.vault_password_file),
            ("private_key_file", &self.private_key_file),
        ] {
            if let Some(path) = path {
                if !path.is_file() {
                    problems.push(format!(
                        "ansible: {field} {} does not exist",
                        path.display()
                    ));
                }
            }
        }
        problems
    }

    fn inspect(&self, probe_dir: &Path) -> Vec<String> {
        scan::scan(probe_dir, &self.config.playbooks)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    async fn run(&self, cx: &ProbeContext) -> Result<Outcome, ProbeError> {
        let findings = {
            let workdir = cx.workdir.clone();
            let playbooks = self.config.playbooks.clone();
            tokio::task::spawn_blocking(move || scan::scan(&workdir, &playbooks))
                .await
                .map_err(|e| {
                    ProbeError::new(
                        ErrorReason::Internal,
                        format!("check_mode scan failed: {e}"),
                    )
                })?
        };
        let warnings: Vec<String> = findings.iter().map(ToString::to_string).collect();
        if self.config.strict_check_mode && !findings.is_empty() {
            let listed: Vec<String> = findings.iter().map(|f| format!("  - {f}")).collect();
            return Err(ProbeError::new(
                ErrorReason::Refused,
                format!(
                    "strict_check_mode: refusing to run, {} element(s) would run for real in check mode:\n{}",
                    findings.len(),
                    listed.join("\n")
                ),
            )
            .with_warnings(warnings));
        }

        let command = self
            .command(cx)
            .map_err(|e| e.with_warnings(warnings.clone()))?;
        let output = cx
            .exec(command)
            .await
            .map_err(|e| e.with_warnings(warnings.clone()));
        let output = output?;
        let stderr = output.stderr_str();
        let clean = |text: &str| relative_paths(text, cx);
        let rules = VerdictRules {
            unreachable: self.config.unreachable,
            limit: self.config.limit.as_deref(),
            ignore: &self.ignore,
            workdir: &cx.workdir,
            playbooks: &self.config.playbooks,
            tags: &self.config.tags,
            skip_tags: &self.config.skip_tags,
        };
        let result = match find_document(&output.stdout) {
            Ok(doc) => verdict(doc, output.code, &stderr, &rules, &clean),
            Err(problem) => Err(no_document_error(
                problem,
                output.code,
                output.signal,
                &stderr,
                output.stdout_truncated,
                &rules,
                &clean,
            )),
        };
        match result {
            Ok(mut outcome) => {
                outcome.exit_code = output.code;
                for change in &mut outcome.changes {
                    change.declared_at = change
                        .declared_at
                        .take()
                        .and_then(|at| repo_relative_task_path(&at, cx));
                }
                outcome.warnings.splice(0..0, warnings);
                Ok(outcome)
            }
            Err(error) => {
                let mut all = warnings;
                all.extend(error.warnings.iter().cloned());
                Err(error
                    .with_exit_code(output.code)
                    .with_stderr_tail(clean(&output.stderr_tail(20)))
                    .with_warnings(all))
            }
        }
    }
}

impl AnsibleProbe {
    /// The `ansible-playbook --check --diff` command, with the callback and
    /// every file ansible would write placed in the run's scratch directory.
    fn command(&self, cx: &ProbeContext) -> Result<crate::process::Command, ProbeError> {
        let c = &self.config;
        let scratch = &cx.scratch_dir;
        let callbacks = scratch.join("ansible-callbacks");
        let ansible_home = scratch.join("ansible-home");
        let local_tmp = scratch.join("ansible-tmp");
        let io = |e: std::io::Error| {
            ProbeError::new(
                ErrorReason::Internal,
                format!("cannot prepare scratch directory: {e}"),
            )
        };
        for dir in [&callbacks, &ansible_home, &local_tmp] {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(
            callbacks.join(format!("{CALLBACK_NAME}.py")),
            CALLBACK_SOURCE,
        )
        .map_err(io)?;

        let mut command = cx
            .command(&c.binary)
            .args(["--check", "--diff"])
            .pass_env(c.pass_env.iter().cloned())
            .env("ANSIBLE_CALLBACK_PLUGINS", &callbacks)
            .env("ANSIBLE_STDOUT_CALLBACK", CALLBACK_NAME)
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_FORCE_COLOR", "0")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
            .env("ANSIBLE_HOME", &ansible_home)
            .env("ANSIBLE_LOCAL_TEMP", &local_tmp)
            .env("ANSIBLE_SSH_CONTROL_PATH_DIR", ansible_home.join("cp"))
            .env(
                "ANSIBLE_PERSISTENT_CONTROL_PATH_DIR",
                ansible_home.join("pc"),
            )
            .env("PYTHONDONTWRITEBYTECODE", "1");
        // An ansible.cfg in the repo is found by ansible itself (cwd is the
        // probe directory). Without one, an empty config keeps the host's
        // ~/.ansible.cfg and /etc/ansible/ansible.cfg out of the verdict,
        // unless the operator passes ANSIBLE_CONFIG through on purpose.
        let operator_config = c.pass_env.iter().any(|v| v == "ANSIBLE_CONFIG")
            && std::env::var_os("ANSIBLE_CONFIG").is_some();
        if !operator_config && !cx.workdir.join("ansible.cfg").is_file() {
            let empty = scratch.join("ansible.cfg");
            std::fs::write(&empty, "").map_err(io)?;
            command = command.env("ANSIBLE_CONFIG", empty);
        }
        for inventory in c.inventory.items() {
            command = command.arg("--inventory").arg(inventory);
        }
        if let Some(limit) = &c.limit {
            command = command.arg("--limit").arg(limit);
        }
        if !c.tags.is_empty() {
            command = command.arg("--tags").arg(c.tags.join(","));
        }
        if !c.skip_tags.is_empty() {
            command = command.arg("--skip-tags").arg(c.skip_tags.join(","));
        }
        for file in &c.extra_vars_files {
            command = command
                .arg("--extra-vars")
                .arg(format!("@{}", file.display()));
        }
        if !c.extra_vars.is_empty() {
            let vars = serde_json::to_vec(&c.extra_vars).map_err(|e| {
                ProbeError::new(
                    ErrorReason::Internal,
                    format!("cannot encode extra_vars: {e}"),
                )
            })?;
            let file = scratch.join("extra-vars.json");
            std::fs::write(&file, vars).map_err(io)?;
            command = command
                .arg("--extra-vars")
                .arg(format!("@{}", file.display()));
        }
        if let Some(file) = &self.vault_password_file {
            command = command.arg("--vault-password-file").arg(file);
        }
        if let Some(file) = &self.private_key_file {
            command = command.arg("--private-key").arg(file);
        }
        if let Some(forks) = c.forks {
            command = command.arg("--forks").arg(forks.to_string());
        }
        command = command.arg("--");
        for playbook in &c.playbooks {
            command = command.arg(playbook);
        }
        Ok(command)
    }
}

/// The callback's document, as printed by `driftwatch_json.py`.
#[derive(Debug, Deserialize)]
struct CallbackDocument {
    #[serde(default)]
    ansible_version: String,
    #[serde(default)]
    hosts: BTreeMap<String, HostStats>,
    #[serde(default)]
    results: Vec<TaskResult>,
    /// Every play that started, in order.
    #[serde(default)]
    plays: Vec<PlayMatch>,
}

/// One play and the hosts its pattern matched (after `--limit`; with
/// `serial`, across all batches).
#[derive(Debug, Deserialize)]
struct PlayMatch {
    #[serde(default)]
    playbook: String,
    name: String,
    pattern: String,
    #[serde(default)]
    hosts: Vec<String>,
    /// Set when the callback could not list the play's hosts.
    #[serde(default)]
    error: Option<String>,
    /// Tasks started, after `--tags`/`--skip-tags`, not counting the
    /// implicit fact gathering; None from a document that does not count.
    #[serde(default)]
    tasks: Option<u64>,
}

/// What decides a verdict beside the callback's document: the probe's config.
struct VerdictRules<'a> {
    unreachable: UnreachablePolicy,
    limit: Option<&'a str>,
    ignore: &'a [IgnoreRule],
    /// Where the playbooks are, to name plays ansible's own errors do not.
    workdir: &'a Path,
    playbooks: &'a [PathBuf],
    tags: &'a [String],
    skip_tags: &'a [String],
}

impl VerdictRules<'_> {
    /// ` with --limit "…"`, or nothing.
    fn limit_note(&self) -> String {
        self.limit
            .map(|limit| format!(" with --limit {limit:?}"))
            .unwrap_or_default()
    }

    /// ` with --tags "…" --skip-tags "…"`, or nothing.
    fn tags_note(&self) -> String {
        let mut note = String::new();
        for (option, tags) in [("--tags", self.tags), ("--skip-tags", self.skip_tags)] {
            if !tags.is_empty() {
                let joined = tags.join(",");
                note.push_str(&format!(" {option} {joined:?}"));
            }
        }
        match note.is_empty() {
            true => note,
            false => format!(" with{note}"),
        }
    }
}

/// `play "web" (site.yml): hosts "web"` for messages.
fn describe_play(play: &PlayMatch, clean: &dyn Fn(&str) -> String) -> String {
    let place = if play.playbook.is_empty() {
        String::new()
    } else {
        format!(" ({})", clean(&play.playbook))
    };
    format!("play {:?}{place}: hosts {:?}", play.name, play.pattern)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct HostStats {
    pub ok: u64,
    pub changed: u64,
    pub failures: u64,
    pub unreachable: u64,
    pub skipped: u64,
    pub rescued: u64,
    pub ignored: u64,
}

#[derive(Debug, Deserialize)]
struct TaskResult {
    host: String,
    task: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    path: String,
    status: String,
    #[serde(default)]
    changed: bool,
    #[serde(default)]
    handler: bool,
    #[serde(default)]
    ignored: bool,
    #[serde(default)]
    censored: bool,
    #[serde(default)]
    msg: Option<String>,
    #[serde(default)]
    diff: Option<String>,
}

/// Why no result document could be read from stdout.
#[derive(Debug, PartialEq)]
enum DocumentError {
    /// No line carries the callback's marker.
    Missing,
    /// The last marked line is not a valid document; `offset` (from 0) is
    /// the byte of stdout where reading stopped.
    Invalid { offset: usize, message: String },
}

/// The last stdout line carrying the callback's marker; other callbacks a
/// repo enables may print around it. Bytes, not text, so the offset of a
/// parse error is exact.
fn find_document(stdout: &[u8]) -> Result<CallbackDocument, DocumentError> {
    let mut start = 0;
    let mut found = None;
    for line in stdout.split(|b| *b == b'\n') {
        let marked = line.first() == Some(&b'{')
            && line
                .windows(CALLBACK_MARKER.len())
                .any(|w| w == CALLBACK_MARKER.as_bytes());
        if marked {
            found = Some((start, line));
        }
        start += line.len() + 1;
    }
    let (start, line) = found.ok_or(DocumentError::Missing)?;
    serde_json::from_slice(&repair_lone_surrogates(line)).map_err(|error| {
        // serde_json counts columns in bytes from 1; the line has no newline.
        let offset = start + error.column().saturating_sub(1);
        let message = error.to_string();
        let message = match message.rfind(" at line ") {
            Some(cut) => message[..cut].to_string(),
            None => message,
        };
        DocumentError::Invalid { offset, message }
    })
}

/// Replaces JSON escapes of lone UTF-16 surrogates (`\udcf6`, Python's
/// escape for an undecodable byte) with `\ufffd`, which serde_json accepts.
/// The callback already cleans its strings; this keeps a document from any
/// other emitter readable. Same length, so error offsets stay exact.
fn repair_lone_surrogates(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    fn escape_at(line: &[u8], i: usize) -> Option<u32> {
        let hex = line.get(i..i + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    }
    let surrogate = |code: u32| (0xD800..=0xDFFF).contains(&code);
    if !line
        .windows(3)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && matches!(w[2], b'd' | b'D'))
    {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = line.to_vec();
    let mut i = 0;
    while i < line.len() {
        if line[i] != b'\\' {
            i += 1;
            continue;
        }
        match escape_at(line, i) {
            Some(0xD800..=0xDBFF)
                if escape_at(line, i + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) =>
            {
                i += 12
            }
            Some(code) if surrogate(code) => {
                out[i..i + 6].copy_from_slice(b"\\ufffd");
                i += 6;
            }
            Some(_) => i += 6,
            // `\\`, `\"`, `\n`…: skip the escaped character too.
            None => i += 2,
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Turns the callback's document into a verdict. Failures always make an
/// error; unreachable hosts do unless the policy counts them as drift. A
/// run in which no play matched a host checked nothing: an error, never in
/// sync. Changed tasks that an ignore rule matches are listed as ignored.
fn verdict(
    doc: CallbackDocument,
    code: Option<i32>,
    stderr: &str,
    rules: &VerdictRules<'_>,
    clean: &dyn Fn(&str) -> String,
) -> Result<Outcome, ProbeError> {
    let policy = rules.unreachable;
    let failures: u64 = doc.hosts.values().map(|s| s.failures).sum();
    let unreachable: u64 = doc.hosts.values().map(|s| s.unreachable).sum();
    let mut changes = Vec::new();
    let mut changed_tasks = Vec::new();
    let mut ignored = Vec::new();
    let mut drifted_hosts = std::collections::BTreeSet::new();
    let mut failed = Vec::new();
    for result in &doc.results {
        let subject = format!("{}: {}", result.host, result.task);
        let rule = rules
            .ignore
            .iter()
            .find(|rule| rule.matches(&result.host, &result.task));
        match result.status.as_str() {
            "ok" if result.changed && rule.is_some() => {
                ignored.push(serde_json::json!({
                    "subject": subject,
                    "host": result.host,
                    "task": result.task,
                    "module": result.action,
                    "path": clean(&result.path),
                    "rule": rule.map(|r| r.key.as_str()),
                }));
            }
            "ok" if result.changed => {
                drifted_hosts.insert(result.host.as_str());
                let diff = if result.censored {
                    "(no_log: the result is hidden)".to_string()
                } else {
                    clean(&normalize_diff(result.diff.as_deref().unwrap_or("")))
                };
                let action = if result.handler { "handler" } else { "changed" };
                changed_tasks.push(serde_json::json!({
                    "host": result.host,
                    "task": result.task,
                    "module": result.action,
                    "path": clean(&result.path),
                }));
                let mut change = ResourceChange::new(subject, action).with_diff(diff);
                if !result.path.is_empty() {
                    // The task's absolute `file:line`; made repo-relative by the caller.
                    change = change.with_declared_at(result.path.clone());
                }
                changes.push(change);
            }
            "unreachable" if policy == UnreachablePolicy::Drift => {
                drifted_hosts.insert(result.host.as_str());
                let msg = clean(result.msg.as_deref().unwrap_or("host unreachable"));
                changes.push(ResourceChange::new(subject, "unreachable").with_diff(msg));
            }
            "failed" | "unreachable" if !result.ignored => failed.push(result),
            _ => {}
        }
    }
    // Which plays checked something, decided from the hosts each matched.
    let limit = rules.limit_note();
    let play_errors: Vec<String> = doc
        .plays
        .iter()
        .filter_map(|play| {
            let error = play.error.as_ref()?;
            Some(format!("{}: {}", describe_play(play, clean), clean(error)))
        })
        .collect();
    let unmatched: Vec<&PlayMatch> = doc
        .plays
        .iter()
        .filter(|play| play.hosts.is_empty() && play.error.is_none())
        .collect();
    // A play whose hosts the callback could not list counts as checked
    // when ansible ran on any host.
    let checked_nothing = doc.plays.iter().all(|play| play.hosts.is_empty())
        && (doc.hosts.is_empty() || doc.plays.iter().all(|play| play.error.is_none()));
    // Plays that matched hosts but started no task: `--tags`/`--skip-tags`
    // (or an empty play) left them nothing to check.
    let idle: Vec<&PlayMatch> = doc
        .plays
        .iter()
        .filter(|play| !play.hosts.is_empty() && play.tasks == Some(0))
        .collect();
    let ran_no_task = !checked_nothing
        && doc
            .plays
            .iter()
            .filter(|play| !play.hosts.is_empty() || play.error.is_some())
            .all(|play| play.tasks == Some(0));
    let tags = rules.tags_note();
    let mut warnings = play_errors.clone();
    warnings.extend(
        unmatched
            .iter()
            .map(|play| format!("{} matched no host{limit}", describe_play(play, clean))),
    );
    if !ran_no_task {
        warnings.extend(
            idle.iter()
                .map(|play| format!("{} ran no task{tags}", describe_play(play, clean))),
        );
    }
    let counts_error = failures > 0 || (unreachable > 0 && policy == UnreachablePolicy::Error);
    if counts_error {
        let reason = if failures == 0 {
            ErrorReason::Unreachable
        } else {
            ErrorReason::ExitCode
        };
        let mut lines = vec![format!(
            "ansible-playbook: {} failed task(s), {} unreachable host(s)",
            failures, unreachable
        )];
        for result in failed.iter().take(MAX_LISTED_FAILURES) {
            let place = if result.path.is_empty() {
                String::new()
            } else {
                format!(" ({})", clean(&result.path))
            };
            let msg = if result.censored {
                "(no_log: the result is hidden)".to_string()
            } else {
                clean(result.msg.as_deref().unwrap_or("").trim())
            };
            lines.push(format!(
                "  {} {}: {}{}: {}",
                result.status,
                result.host,
                result.task,
                place,
                first_lines(&msg, 3)
            ));
        }
        if failed.len() > MAX_LISTED_FAILURES {
            lines.push(format!(
                "  … and {} more",
                failed.len() - MAX_LISTED_FAILURES
            ));
        }
        return Err(ProbeError::new(reason, lines.join("\n"))
            .with_partial_changes(changes)
            .with_warnings(warnings));
    }
    if checked_nothing && code == Some(0) {
        let message = if doc.plays.is_empty() {
            "checked nothing: the playbooks hold no play".to_string()
        } else {
            let listed: Vec<String> = doc
                .plays
                .iter()
                .map(|play| format!("  {}", describe_play(play, clean)))
                .collect();
            format!(
                "checked nothing: no play matched a host{limit}\n{}",
                listed.join("\n")
            )
        };
        return Err(ProbeError::new(ErrorReason::Input, message).with_warnings(play_errors));
    }
    if ran_no_task && code == Some(0) {
        let listed: Vec<String> = idle
            .iter()
            .map(|play| {
                format!(
                    "  {}: {} host(s), no task",
                    describe_play(play, clean),
                    play.hosts.len()
                )
            })
            .collect();
        return Err(ProbeError::new(
            ErrorReason::Input,
            format!("checked nothing: no task ran{tags}\n{}", listed.join("\n")),
        )
        .with_warnings(warnings));
    }
    if code != Some(0) && !(unreachable > 0 && code == Some(4)) {
        let message = ansible_error(stderr)
            .map(|m| clean(&m))
            .unwrap_or_else(|| match code {
                Some(code) => {
                    format!("ansible-playbook exited with code {code} although no task failed")
                }
                None => "ansible-playbook was killed by a signal".to_string(),
            });
        return Err(ProbeError::new(ErrorReason::ExitCode, message).with_warnings(warnings));
    }
    let mut message = if changes.is_empty() {
        format!("{} host(s) in sync", doc.hosts.len())
    } else {
        format!(
            "{} change(s) on {} of {} host(s)",
            changes.len(),
            drifted_hosts.len(),
            doc.hosts.len()
        )
    };
    if !ignored.is_empty() {
        message.push_str(&format!("; {} ignored change(s)", ignored.len()));
    }
    let details = serde_json::json!({
        "ansible_version": doc.ansible_version,
        "hosts": doc.hosts,
        "plays": doc.plays.iter().map(|play| serde_json::json!({
            "playbook": clean(&play.playbook),
            "name": play.name,
            "pattern": play.pattern,
            "hosts": play.hosts.len(),
            "tasks": play.tasks,
        })).collect::<Vec<_>>(),
        "changed_tasks": changed_tasks,
        "ignored": ignored.len(),
        "ignored_changes": ignored,
    });
    Ok(Outcome {
        drifted: !changes.is_empty(),
        message,
        changes,
        warnings,
        details,
        ..Outcome::default()
    })
}

/// No result document: ansible stopped before running any play (syntax
/// error, unknown module, missing playbook, bad option), which makes an error
/// carrying ansible's own message, or the document could not be read, which
/// names the byte of stdout where reading stopped.
fn no_document_error(
    problem: DocumentError,
    code: Option<i32>,
    signal: Option<i32>,
    stderr: &str,
    truncated: bool,
    rules: &VerdictRules<'_>,
    clean: &dyn Fn(&str) -> String,
) -> ProbeError {
    if truncated {
        return ProbeError::new(
            ErrorReason::Parse,
            "ansible-playbook printed more output than driftwatch keeps; result lost",
        );
    }
    if let DocumentError::Invalid { offset, message } = problem {
        let exit = match (code, signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "no exit code".to_string(),
        };
        return ProbeError::new(
            ErrorReason::Parse,
            format!(
                "cannot read ansible-playbook's result document ({exit}): {message} at byte {offset} of stdout"
            ),
        );
    }
    let (reason, fallback) = match (code, signal) {
        (Some(0), _) => (
            ErrorReason::Parse,
            "ansible-playbook exited 0 but printed no result document".to_string(),
        ),
        (Some(1 | 4 | 5), _) => (
            ErrorReason::Input,
            format!(
                "ansible-playbook exited with code {}",
                code.unwrap_or_default()
            ),
        ),
        (Some(code), _) => (
            ErrorReason::ExitCode,
            format!("ansible-playbook exited with code {code}"),
        ),
        (None, Some(signal)) => (
            ErrorReason::ExitCode,
            format!("ansible-playbook was killed by signal {signal}"),
        ),
        (None, None) => (
            ErrorReason::ExitCode,
            "ansible-playbook ended without an exit code".to_string(),
        ),
    };
    let message = ansible_error(stderr).map(|m| clean(&m)).unwrap_or(fallback);
    // ansible refuses to start when the inventory has hosts but --limit
    // leaves none: no play ran, so the run checked nothing.
    if let Some(limit) = rules.limit {
        if code == Some(1) && message.contains("leaves us with no hosts to target") {
            return ProbeError::new(
                ErrorReason::Input,
                format!(
                    "checked nothing: --limit {limit:?} leaves no host of the inventory to target\n{message}"
                ),
            );
        }
    }
    // `hosts: []` stops ansible with a message that names no play.
    if message.contains("Hosts list cannot be empty") {
        let plays = scan::plays_without_hosts(rules.workdir, rules.playbooks);
        if !plays.is_empty() {
            let listed: Vec<String> = plays.iter().map(|play| format!("  {play}")).collect();
            return ProbeError::new(
                reason,
                format!("{message}\nchecked nothing for:\n{}", listed.join("\n")),
            );
        }
    }
    ProbeError::new(reason, message)
}

/// ansible's error block from stderr: from the first `ERROR!` (≤ 2.18) or
/// `[ERROR]:` (2.19) line, up to 12 lines.
fn ansible_error(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("ERROR!") || l.starts_with("[ERROR]"))?;
    let block: Vec<&str> = lines[start..].iter().take(12).copied().collect();
    Some(block.join("\n").trim_end().to_string())
}

fn first_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut kept = lines[..lines.len().min(count)].join(" / ");
    if lines.len() > count {
        kept.push_str(" …");
    }
    kept
}

/// Makes diffs stable: drops trailing blank lines and replaces any header
/// still naming a temporary file (the callback fixes most) with a plain one.
fn normalize_diff(diff: &str) -> String {
    let lines: Vec<String> = diff
        .lines()
        .map(|line| {
            for (prefix, side) in [("--- ", "before"), ("+++ ", "after")] {
                if let Some(header) = line.strip_prefix(prefix) {
                    if header.contains("ansible-local-") || header.contains("/.ansible/tmp/") {
                        return format!("{prefix}{side}");
                    }
                }
            }
            line.to_string()
        })
        .collect();
    lines.join("\n").trim_end().to_string()
}

/// Makes paths inside the checkout relative to the probe directory, so
/// messages stay the same from one revision's checkout to the next.
fn relative_paths(text: &str, cx: &ProbeContext) -> String {
    let mut text = text.to_string();
    for base in [&cx.workdir, &cx.checkout, &cx.scratch_dir] {
        let prefix = format!("{}/", base.display());
        if prefix.len() > 1 {
            text = text.replace(&prefix, "");
        }
    }
    text
}

/// A task's `/abs/file.yml:12` as `dir/file.yml:12` relative to the
/// repository root; None for tasks outside the checkout (a role from a
/// system-wide roles_path).
fn repo_relative_task_path(at: &str, cx: &ProbeContext) -> Option<String> {
    let (file, line) = match at.rsplit_once(':') {
        Some((file, line)) if line.parse::<u32>().is_ok() => (file, Some(line)),
        _ => (at, None),
    };
    let path = cx.workdir.join(file);
    let relative = cx.repo_relative(&path)?;
    Some(match line {
        Some(line) => format!("{relative}:{line}"),
        None => relative,
    })
}

/// `program` on PATH, or as given when it is a path.
fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.is_file().then_some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::Verdict;

    fn common() -> ProbeCommon {
        ProbeCommon {
            name: "ansible".into(),
            layer: "ansible".into(),
            repo: "r".into(),
            path: PathBuf::new(),
            config_dir: PathBuf::from("/etc/driftwatch"),
            labels: Default::default(),
            ..Default::default()
        }
    }

    fn build_err(toml_text: &str) -> Vec<String> {
        match build(&common(), toml::from_str(toml_text).unwrap()) {
            Ok(_) => Vec::new(),
            Err(errors) => errors
                .into_iter()
                .map(|e| format!("{}: {}", e.key, e.message))
                .collect(),
        }
    }

    #[test]
    fn config_is_validated_field_by_field() {
        assert!(build_err("playbooks = [\"site.yml\"]\ninventory = \"hosts.ini\"").is_empty());
        assert!(build_err("playbooks = [\"site.yml\"]\ninventory = [\"a.ini\", \"/etc/ansible/hosts\", \"h1,h2,\"]").is_empty());
        let errors = build_err(
            "playbooks = [\"../x.yml\"]\ninventory = \"../inv\"\nforks = 0\ntags = [\"a,b\"]\nextra_vars_files = [\"/etc/vars.yml\"]",
        );
        let keys: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "playbooks[0]",
                "inventory",
                "extra_vars_files[0]",
                "tags",
                "forks"
            ]
        );
        assert_eq!(
            build_err("playbooks = [\"a.yml\"]\ninventory = \"i\"\nunreachable = \"ignore\"").len(),
            1
        );
        assert_eq!(
            build_err("playbooks = [\"a.yml\"]\ninventory = \"i\"\nbogus = 1").len(),
            1
        );
        assert!(build_err("inventory = \"i\"")[0].contains("missing field `playbooks`"));
    }

    /// A document whose one play matched every host in `hosts`.
    fn doc(hosts: &str, results: &str) -> CallbackDocument {
        let names: Vec<String> =
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(hosts)
                .unwrap()
                .keys()
                .cloned()
                .collect();
        let plays = serde_json::json!([{"playbook": "site.yml", "name": "site", "pattern": "all", "hosts": names}]);
        doc_with_plays(hosts, results, &plays.to_string())
    }

    fn doc_with_plays(hosts: &str, results: &str, plays: &str) -> CallbackDocument {
        let results = results.replace('\n', " ");
        let line = format!(
            "{{\"marker\": \"{CALLBACK_MARKER}\", \"ansible_version\": \"2.19.0\", \"hosts\": {hosts}, \"results\": {results}, \"plays\": {plays}}}"
        );
        find_document(format!("some other callback output\n{line}\n").as_bytes())
            .expect("document found")
    }

    /// A document line whose one result has `diff` written as `escaped`
    /// (the JSON text between the quotes).
    fn line_with_diff(escaped: &str) -> Vec<u8> {
        format!(
            "{{\"marker\": \"{CALLBACK_MARKER}\", \"hosts\": {{}}, \"results\": [{{\"host\": \"h\", \"task\": \"t\", \"status\": \"ok\", \"diff\": \"{escaped}\"}}]}}"
        )
        .into_bytes()
    }

    #[test]
    fn documents_read_every_byte_escape_ansible_can_print() {
        let mib = "x".repeat(1 << 20);
        // (the diff as escaped in the JSON line, the text read back)
        let cases: Vec<(String, String)> = vec![
            // latin-1 bytes, as Python's surrogateescape prints them
            (r"Gr\udcf6\udcdfe".into(), "Gr\u{FFFD}\u{FFFD}e".into()),
            // lone UTF-8 continuation bytes
            (r"a\udc80\udcbfb".into(), "a\u{FFFD}\u{FFFD}b".into()),
            // valid multibyte, escaped (ensure_ascii) and raw, and an astral pair
            (
                r"Gr\u00f6\u00dfe \u20ac \ud834\udd1e".into(),
                "Größe € 𝄞".into(),
            ),
            ("Größe €".into(), "Größe €".into()),
            (r"a\u0000b".into(), "a\0b".into()),
            // lone high and low surrogates, and a lone high right before a pair
            (r"\ud800x\udc00".into(), "\u{FFFD}x\u{FFFD}".into()),
            (r"\ud800\ud800\udc00".into(), "\u{FFFD}\u{10000}".into()),
            // an escaped backslash: the text `\udcf6` itself, not an escape
            (r"\\udcf6".into(), r"\udcf6".into()),
            (format!(r"{mib}\udcff"), format!("{mib}\u{FFFD}")),
        ];
        for (escaped, expected) in cases {
            let doc = find_document(&line_with_diff(&escaped))
                .unwrap_or_else(|e| panic!("{escaped:.40}: {e:?}"));
            assert_eq!(
                doc.results[0].diff.as_deref(),
                Some(expected.as_str()),
                "{escaped:.40}"
            );
        }
    }

    #[test]
    fn an_unreadable_document_names_the_byte_where_reading_stopped() {
        let noise = b"PLAY [all] \xff\xfe\n".to_vec();
        let cut = format!("{{\"marker\": \"{CALLBACK_MARKER}\", \"hosts\": {{");
        let mut stdout = noise.clone();
        stdout.extend_from_slice(cut.as_bytes());
        match find_document(&stdout) {
            Err(DocumentError::Invalid { offset, message }) => {
                // serde_json stops on the last byte it read.
                assert_eq!(offset, stdout.len() - 1, "{message}");
                assert!(message.contains("EOF"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // A raw byte that is not UTF-8 inside the document.
        let mut line = line_with_diff("Gr_e");
        let at = line.windows(4).position(|w| w == b"Gr_e").unwrap() + 2;
        line[at] = 0xf6;
        let mut stdout = noise.clone();
        stdout.extend_from_slice(&line);
        match find_document(&stdout) {
            Err(DocumentError::Invalid { offset, message }) => {
                assert!(
                    (noise.len() + at..=noise.len() + at + 1).contains(&offset),
                    "{offset} {message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            find_document(b"no document\n").unwrap_err(),
            DocumentError::Missing
        );

        let err = no_document_error(
            find_document(&stdout).unwrap_err(),
            Some(0),
            None,
            "",
            false,
            &rules(UnreachablePolicy::Error),
            &identity,
        );
        assert_eq!(err.reason, ErrorReason::Parse);
        assert!(
            err.message
                .contains(&format!("at byte {}", noise.len() + at)),
            "{}",
            err.message
        );
        assert!(err.message.contains("(exit code 0)"), "{}", err.message);
    }

    fn rules(unreachable: UnreachablePolicy) -> VerdictRules<'static> {
        VerdictRules {
            unreachable,
            limit: None,
            ignore: &[],
            workdir: Path::new("/nonexistent"),
            playbooks: &[],
            tags: &[],
            skip_tags: &[],
        }
    }

    fn identity(text: &str) -> String {
        text.to_string()
    }

    #[test]
    fn stats_decide_the_verdict_not_the_exit_code() {
        let in_sync = doc(r#"{"h1": {"ok": 3, "changed": 0}}"#, "[]");
        let outcome = verdict(
            in_sync,
            Some(0),
            "",
            &rules(UnreachablePolicy::Error),
            &identity,
        )
        .unwrap();
        assert!(!outcome.drifted);
        assert_eq!(outcome.details["hosts"]["h1"]["ok"], 3);

        let drift = doc(
            r#"{"h1": {"ok": 3, "changed": 1}}"#,
            r#"[{"host": "h1", "task": "copy motd", "status": "ok", "changed": true, "diff": "--- before\n+++ after: /root/.ansible/tmp/ansible-local-1abc/tmpx/motd.j2\n@@ -1 +1 @@\n-a\n+b\n\n"}]"#,
        );
        let outcome = verdict(
            drift,
            Some(0),
            "",
            &rules(UnreachablePolicy::Error),
            &identity,
        )
        .unwrap();
        assert!(outcome.drifted);
        assert_eq!(outcome.changes[0].subject, "h1: copy motd");
        assert_eq!(
            outcome.changes[0].diff,
            "--- before\n+++ after\n@@ -1 +1 @@\n-a\n+b"
        );
        assert_eq!(outcome.details["hosts"]["h1"]["changed"], 1);
    }

    #[test]
    fn failures_and_unreachable_hosts_are_errors_unless_policy_says_drift() {
        let failed = doc(
            r#"{"h1": {"failures": 1}}"#,
            r#"[{"host": "h1", "task": "boom", "path": "site.yml:4", "status": "failed", "msg": "it broke"}]"#,
        );
        let err = verdict(
            failed,
            Some(2),
            "",
            &rules(UnreachablePolicy::Drift),
            &identity,
        )
        .unwrap_err();
        assert_eq!(err.reason, ErrorReason::ExitCode);
        assert!(
            err.message
                .contains("failed h1: boom (site.yml:4): it broke"),
            "{}",
            err.message
        );

        let unreachable = r#"[{"host": "far", "task": "copy", "status": "unreachable", "msg": "Connection refused"}]"#;
        let err = verdict(
            doc(r#"{"far": {"unreachable": 1}}"#, unreachable),
            Some(4),
            "",
            &rules(UnreachablePolicy::Error),
            &identity,
        )
        .unwrap_err();
        assert_eq!(err.reason, ErrorReason::Unreachable);
        let outcome = verdict(
            doc(r#"{"far": {"unreachable": 1}}"#, unreachable),
            Some(4),
            "",
            &rules(UnreachablePolicy::Drift),
            &identity,
        )
        .unwrap();
        assert!(outcome.drifted);
        assert_eq!(outcome.changes[0].action, "unreachable");
    }

    #[test]
    fn censored_results_keep_no_diff_and_ignored_failures_do_not_count() {
        let d = doc(
            r#"{"h1": {"changed": 1, "ignored": 1}}"#,
            r#"[{"host": "h1", "task": "secret", "status": "ok", "changed": true, "censored": true},
                {"host": "h1", "task": "optional", "status": "failed", "ignored": true, "msg": "nope"}]"#,
        );
        let outcome = verdict(d, Some(0), "", &rules(UnreachablePolicy::Error), &identity).unwrap();
        assert_eq!(outcome.changes.len(), 1);
        assert_eq!(outcome.changes[0].diff, "(no_log: the result is hidden)");
    }

    #[test]
    fn early_failures_carry_ansibles_message() {
        let stderr = "[WARNING]: something\n[ERROR]: YAML parsing failed: did not find expected ','\nOrigin: /co/site.yml:5:15\n\n5  content: y\n";
        let err = no_document_error(
            DocumentError::Missing,
            Some(4),
            None,
            stderr,
            false,
            &rules(UnreachablePolicy::Error),
            &|t: &str| t.replace("/co/", ""),
        );
        assert_eq!(err.reason, ErrorReason::Input);
        assert!(
            err.message.starts_with("[ERROR]: YAML parsing failed"),
            "{}",
            err.message
        );
        assert!(err.message.contains("Origin: site.yml:5:15"));
        let old = "ERROR! the playbook: missing.yml could not be found\n";
        assert_eq!(
            no_document_error(
                DocumentError::Missing,
                Some(1),
                None,
                old,
                false,
                &rules(UnreachablePolicy::Error),
                &identity
            )
            .message,
            old.trim()
        );
        assert_eq!(
            no_document_error(
                DocumentError::Missing,
                None,
                Some(9),
                "",
                false,
                &rules(UnreachablePolicy::Error),
                &identity
            )
            .reason,
            ErrorReason::ExitCode
        );
    }

    #[test]
    fn a_run_that_checked_nothing_is_an_error_and_unmatched_plays_warn() {
        let web =
            r#"{"playbook": "site.yml", "name": "web servers", "pattern": "web", "hosts": []}"#;
        let db = r#"{"playbook": "site.yml", "name": "db", "pattern": "db:&prod", "hosts": []}"#;
        let all = r#"{"playbook": "site.yml", "name": "base", "pattern": "all", "hosts": ["h1"]}"#;
        let idle = r#"{"playbook": "site.yml", "name": "base", "pattern": "all", "hosts": ["h1"], "tasks": 0}"#;
        let busy = r#"{"playbook": "site.yml", "name": "web", "pattern": "all", "hosts": ["h1"], "tasks": 1}"#;
        let plain = rules(UnreachablePolicy::Error);
        let web_tag = ["web".to_string()];
        let tagged = VerdictRules {
            tags: &web_tag,
            ..rules(UnreachablePolicy::Error)
        };
        let limited = VerdictRules {
            limit: Some("nomatch"),
            ..rules(UnreachablePolicy::Error)
        };
        // (plays, host stats, rules, error message or warnings)
        type Case<'a> = (
            String,
            &'a str,
            &'a VerdictRules<'a>,
            Result<Vec<&'a str>, &'a str>,
        );
        let table: Vec<Case> = vec![
            (
                format!("[{web}]"),
                "{}",
                &plain,
                Err("checked nothing: no play matched a host\n  play \"web servers\" (site.yml): hosts \"web\""),
            ),
            (
                format!("[{web}, {db}]"),
                "{}",
                &limited,
                Err("checked nothing: no play matched a host with --limit \"nomatch\"\n  play \"web servers\" (site.yml): hosts \"web\"\n  play \"db\" (site.yml): hosts \"db:&prod\""),
            ),
            ("[]".to_string(), "{}", &plain, Err("checked nothing: the playbooks hold no play")),
            (
                format!("[{web}, {all}]"),
                r#"{"h1": {"ok": 1}}"#,
                &plain,
                Ok(vec!["play \"web servers\" (site.yml): hosts \"web\" matched no host"]),
            ),
            (format!("[{all}]"), r#"{"h1": {"ok": 1}}"#, &plain, Ok(vec![])),
            // Hosts matched, but the tags left no task (fact gathering ran: ok 1).
            (
                format!("[{idle}]"),
                r#"{"h1": {"ok": 1}}"#,
                &tagged,
                Err("checked nothing: no task ran with --tags \"web\"\n  play \"base\" (site.yml): hosts \"all\": 1 host(s), no task"),
            ),
            (
                format!("[{idle}, {busy}]"),
                r#"{"h1": {"ok": 2}}"#,
                &tagged,
                Ok(vec!["play \"base\" (site.yml): hosts \"all\" ran no task with --tags \"web\""]),
            ),
        ];
        for (plays, hosts, rules, expected) in table {
            let result = verdict(
                doc_with_plays(hosts, "[]", &plays),
                Some(0),
                "",
                rules,
                &identity,
            );
            match (result, expected) {
                (Err(err), Err(message)) => {
                    assert_eq!(err.reason, ErrorReason::Input);
                    assert_eq!(err.message, message);
                }
                (Ok(outcome), Ok(warnings)) => {
                    assert_eq!(outcome.verdict(), Verdict::InSync);
                    assert_eq!(outcome.warnings, warnings);
                }
                (got, want) => panic!("{plays}: got {got:?}, want {want:?}"),
            }
        }
        // A play whose hosts the callback could not list: checked, if ansible ran on a host.
        let unlisted = r#"[{"name": "p", "pattern": "all", "hosts": [], "error": "boom"}]"#;
        let outcome = verdict(
            doc_with_plays(r#"{"h1": {"ok": 1}}"#, "[]", unlisted),
            Some(0),
            "",
            &rules(UnreachablePolicy::Error),
            &identity,
        )
        .unwrap();
        assert_eq!(outcome.warnings, ["play \"p\": hosts \"all\": boom"]);
        assert!(verdict(
            doc_with_plays("{}", "[]", unlisted),
            Some(0),
            "",
            &rules(UnreachablePolicy::Error),
            &identity
        )
        .is_err());

        // --limit leaving no host stops ansible before any play.
        let stderr = "[WARNING]: Could not match supplied host pattern, ignoring: nomatch\n[ERROR]: Specified inventory, host pattern and/or --limit leaves us with no hosts to target.\n";
        let err = no_document_error(
            DocumentError::Missing,
            Some(1),
            None,
            stderr,
            false,
            &limited,
            &identity,
        );
        assert_eq!(err.reason, ErrorReason::Input);
        assert!(err.message.starts_with("checked nothing: --limit \"nomatch\" leaves no host of the inventory to target\n[ERROR]: Specified"), "{}", err.message);
    }

    #[test]
    fn changed_tasks_matching_an_ignore_rule_are_listed_not_drift() {
        let rule = |index: usize, host: Option<&str>, task: Option<&str>| {
            IgnoreRule::build(
                &format!("ignore[{index}]"),
                &IgnoreRuleConfig {
                    host: host.map(String::from),
                    task: task.map(String::from),
                },
            )
            .unwrap()
        };
        let results = r#"[{"host": "web1", "task": "common : restart nginx", "action": "service", "status": "ok", "changed": true, "handler": true},
            {"host": "web1", "task": "copy motd", "status": "ok", "changed": true, "diff": "-a\n+b"},
            {"host": "db1", "task": "common : restart nginx", "status": "ok", "changed": true}]"#;
        let hosts = r#"{"web1": {"changed": 2}, "db1": {"changed": 1}}"#;
        let ignore = [rule(0, Some("web*"), Some("common : restart*"))];
        let with = |ignore: &[IgnoreRule]| {
            let rules = VerdictRules {
                ignore,
                ..rules(UnreachablePolicy::Error)
            };
            verdict(doc(hosts, results), Some(0), "", &rules, &identity).unwrap()
        };
        let outcome = with(&ignore);
        assert_eq!(outcome.verdict(), Verdict::Drifted);
        let subjects: Vec<&str> = outcome.changes.iter().map(|c| c.subject.as_str()).collect();
        assert_eq!(subjects, ["web1: copy motd", "db1: common : restart nginx"]);
        assert_eq!(
            outcome.message,
            "2 change(s) on 2 of 2 host(s); 1 ignored change(s)"
        );
        assert_eq!(outcome.details["ignored"], 1);
        assert_eq!(
            outcome.details["ignored_changes"][0]["subject"],
            "web1: common : restart nginx"
        );
        assert_eq!(outcome.details["ignored_changes"][0]["rule"], "ignore[0]");

        let everything = [
            rule(0, Some("web1"), None),
            rule(1, None, Some("*restart*")),
        ];
        let outcome = with(&everything);
        assert_eq!(outcome.verdict(), Verdict::InSync);
        assert_eq!(outcome.message, "2 host(s) in sync; 3 ignored change(s)");
        let rules_used: Vec<&str> = outcome.details["ignored_changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["rule"].as_str().unwrap())
            .collect();
        assert_eq!(
            rules_used,
            ["ignore[0]", "ignore[0]", "ignore[1]"],
            "the first matching rule"
        );

        // Failures are never ignored.
        let failed = r#"[{"host": "web1", "task": "common : restart nginx", "status": "failed", "msg": "no"}]"#;
        let rules = VerdictRules {
            ignore: &everything,
            ..rules(UnreachablePolicy::Error)
        };
        let err = verdict(
            doc(r#"{"web1": {"failures": 1}}"#, failed),
            Some(2),
            "",
            &rules,
            &identity,
        )
        .unwrap_err();
        assert_eq!(err.reason, ErrorReason::ExitCode);
    }

    #[test]
    fn a_nonzero_exit_without_failures_is_an_error() {
        let d = doc(r#"{"h1": {"ok": 1}}"#, "[]");
        let err = verdict(
            d,
            Some(1),
            "ERROR! something else\n",
            &rules(UnreachablePolicy::Error),
            &identity,
        )
        .unwrap_err();
        assert_eq!(err.message, "ERROR! something else");
    }
}
