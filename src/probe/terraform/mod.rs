//! The Terraform / OpenTofu layer, terradiff's successor. Per root it runs
//! `init` (only when what init depends on changed), then
//! `plan -detailed-exitcode -input=false -lock=false -no-color -out=<scratch>`
//! and `show -json <plan>` for the plan's own actions. The verdict comes from
//! those actions, never from the exit code alone: Terraform exits 2 for plans
//! that only read data sources (a `check` block's scoped data source) or
//! defer work, which apply would not change anything for. Exit 1 is an error
//! with the diagnostics' `file:line`. Nothing here applies, refreshes state,
//! imports, takes the lock or writes state: the argument checks in `config`
//! refuse flags that would, `init` always runs with `-reconfigure` (never
//! migrates state), and plan files (which can hold secrets) are deleted right
//! after use.
mod config;
mod declared;
mod diagnostics;
pub mod ignore;
mod plan;
mod redact;
mod workdir;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{
    parse_fields, ErrorReason, FieldError, Outcome, Probe, ProbeCommon, ProbeContext, ProbeError,
};
use crate::process::Command;
pub use config::TerraformConfig;
use config::{resolve_file, Flavor};
use ignore::IgnoreRule;
use redact::Redactor;
use workdir::{Fnv, RootCache};

/// Oldest Terraform whose plan JSON has `resource_drift` and whose `plan`
/// never persists refreshed state.
const MIN_VERSION: (u64, u64, u64) = (0, 15, 4);
/// Plans of very large stacks are big; more than this is a parse error.
const SHOW_JSON_LIMIT: usize = 256 * 1024 * 1024;
/// Stderr lines kept in an error report.
const STDERR_TAIL_LINES: usize = 30;

pub struct TerraformProbe {
    config: TerraformConfig,
    program: PathBuf,
    /// The probe's path inside the repo, to find a root's directory.
    probe_path: PathBuf,
    cli_config_file: Option<PathBuf>,
    /// `env_files` resolved against the config file's directory.
    env_files: Vec<(String, PathBuf)>,
    /// Inits write into the shared plugin cache, which Terraform does not
    /// guarantee safe for concurrent use: one init per probe at a time.
    init_lock: tokio::sync::Mutex<()>,
    /// `[[probe.ignore]]` rules, validated.
    ignore: Vec<IgnoreRule>,
}

pub fn build(common: &ProbeCommon, fields: toml::Table) -> Result<Arc<dyn Probe>, Vec<FieldError>> {
    let config: TerraformConfig = parse_fields(fields)?;
    let mut errors = config.check();
    let mut ignore = Vec::new();
    for (index, rule) in config.ignore.iter().enumerate() {
        match IgnoreRule::build(&format!("ignore[{index}]"), rule) {
            Ok(rule) => ignore.push(rule),
            Err(mut rule_errors) => errors.append(&mut rule_errors),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let program = config.program(&common.config_dir);
    let cli_config_file = config
        .cli_config_file
        .as_ref()
        .map(|p| common.config_dir.join(p));
    let env_files: Vec<(String, PathBuf)> = config
        .env_files
        .iter()
        .map(|(k, p)| (k.clone(), common.config_dir.join(p)))
        .collect();
    // Files named in the config are checked now, so a missing one is
    // reported at its line rather than at the first run.
    if let Some(file) = &cli_config_file {
        errors.extend(crate::probe::check_host_file("cli_config_file", file));
    }
    for (key, path) in &env_files {
        errors.extend(crate::probe::check_host_file(
            format!("env_files.{key}"),
            path,
        ));
    }
    if config.roots.is_empty() {
        for (index, file) in config.var_files.iter().enumerate() {
            errors.extend(crate::probe::check_repo_file(
                common,
                Path::new(""),
                format!("var_files[{index}]"),
                file,
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Arc::new(TerraformProbe {
        config,
        env_files,
        program,
        probe_path: common.path.clone(),
        cli_config_file,
        init_lock: tokio::sync::Mutex::new(()),
        ignore,
    }))
}

/// Everything one run needs to build its commands.
struct RunEnv {
    dir: PathBuf,
    workspace: Option<String>,
    /// The workspace `init` runs in: the default one, unless the backend has none.
    init_workspace: Option<String>,
    cache: RootCache,
    vars_file: Option<PathBuf>,
    /// Values of `env_files` variables, read for this run.
    file_env: Vec<(String, String)>,
    /// Masks credentials (`pass_env`, `env_files` values) everywhere.
    redactor: Redactor,
    /// Also masks the configured `vars` values, in error output.
    stderr_redactor: Redactor,
}

/// Removes a file when dropped: plan and tfvars files can hold secrets and
/// must not outlive the run, whatever way it ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InitWork {
    Skipped,
    Ran,
}

#[async_trait::async_trait]
impl Probe for TerraformProbe {
    fn layer(&self) -> &'static str {
        "terraform"
    }

    fn repo_paths(&self, probe_dir: Option<&Path>) -> Vec<super::RepoPath> {
        use super::{PathKind, RepoPath};
        let mut paths = Vec::new();
        for (index, root) in self.config.roots.iter().enumerate() {
            let literal = root.trim_end_matches('/').trim_start_matches("./");
            if !literal.is_empty() && literal != "." && !literal.contains(['*', '?', '[']) {
                let key = format!("roots[{index}]");
                paths.push(RepoPath::new(
                    key,
                    probe_dir,
                    Path::new(""),
                    literal,
                    PathKind::Directory,
                ));
            }
        }
        // Files each root reads, relative to the root (absolute ones are host paths).
        let mut files = Vec::new();
        for (name, entries) in [
            ("var_files", &self.config.var_files),
            ("backend_config", &self.config.backend_config),
        ] {
            for (index, file) in entries.iter().enumerate() {
                let pair = name == "backend_config" && file.contains('=');
                if !pair && !Path::new(file).is_absolute() {
                    files.push((format!("{name}[{index}]"), file));
                }
            }
        }
        // Without a checkout the roots are not known: the files are named once.
        let roots = match probe_dir {
            Some(dir) => self.root_dirs(dir).unwrap_or_default(),
            None if self.config.roots.is_empty() => vec![String::new()],
            None => vec!["<each root>".to_string()],
        };
        for root in &roots {
            for (key, file) in &files {
                paths.push(RepoPath::new(
                    key.clone(),
                    probe_dir,
                    Path::new(root),
                    file,
                    PathKind::File,
                ));
            }
        }
        paths
    }

    fn roots(&self, probe_dir: &Path) -> Result<Vec<String>, ProbeError> {
        let dirs = self.root_dirs(probe_dir)?;
        if self.config.workspaces.is_empty() {
            return Ok(dirs);
        }
        Ok(dirs
            .iter()
            .flat_map(|dir| {
                self.config
                    .workspaces
                    .iter()
                    .map(move |ws| format!("{dir}@{ws}"))
            })
            .collect())
    }

    fn single_root(&self) -> bool {
        false
    }

    fn parallelism(&self) -> usize {
        self.config.parallelism
    }

    async fn preflight(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (key, path) in &self.env_files {
            if let Err(e) = std::fs::metadata(path) {
                problems.push(format!(
                    "env_files.{key}: cannot read {}: {e}",
                    path.display()
                ));
            }
        }
        if let Some(file) = &self.cli_config_file {
            if !file.is_file() {
                problems.push(format!("cli_config_file {} does not exist", file.display()));
            }
        }
        let binary = &self.config.binary;
        let args: &[&str] = match self.config.flavor() {
            Flavor::Terraform => &["version", "-json"],
            Flavor::Terragrunt => &["--version"],
        };
        let mut command = Command::new(&self.program)
            .args(args)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1");
        if let Some(file) = &self.cli_config_file {
            command = command.env("TF_CLI_CONFIG_FILE", file);
        }
        let cancel = tokio_util::sync::CancellationToken::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        match command.run(&cancel, deadline).await {
            Err(crate::process::ProcessError::Spawn { source, .. }) => problems.push(format!(
                "binary {binary:?} cannot be run ({source}): install Terraform >= {} or OpenTofu, or set `binary` to its path",
                version_string(MIN_VERSION)
            )),
            Err(e) => problems.push(format!("binary {binary:?}: `{}` failed: {e}", args.join(" "))),
            Ok(out) if out.code != Some(0) => problems.push(format!(
                "binary {binary:?}: `{}` exited with {:?}: {}",
                args.join(" "),
                out.code,
                out.stderr_tail(3)
            )),
            Ok(out) => {
                if self.config.flavor() == Flavor::Terraform {
                    match parse_version_json(&out.stdout) {
                        Some(found) if found < MIN_VERSION => problems.push(format!(
                            "binary {binary:?} is Terraform {}, too old: driftwatch needs >= {} (plan JSON with resource_drift, plans that never persist refreshed state)",
                            version_string(found),
                            version_string(MIN_VERSION)
                        )),
                        Some(_) => {}
                        None => problems.push(format!(
                            "binary {binary:?}: cannot read its version from `version -json`; is it Terraform or OpenTofu?"
                        )),
                    }
                }
            }
        }
        problems
    }

    async fn run(&self, cx: &ProbeContext) -> Result<Outcome, ProbeError> {
        let mut env = self.run_env(cx)?;
        let _vars_guard = env.vars_file.clone().map(RemoveOnDrop);
        let started = Instant::now();
        let checkout = cx
            .checkout
            .canonicalize()
            .unwrap_or_else(|_| cx.checkout.clone());
        let scan = workdir::scan(&env.dir, &checkout);

        // Init runs in the default workspace: with `TF_WORKSPACE` naming a
        // missing workspace, init can create it (a local backend makes its
        // directory). Only a backend without a default workspace gets it.
        let mut init = match self.ensure_init(cx, &env, &scan, false).await {
            Err(e)
                if env.workspace.is_some()
                    && e.message
                        .contains("Currently selected workspace \"default\"") =>
            {
                env.init_workspace = env.workspace.clone();
                self.ensure_init(cx, &env, &scan, true).await?
            }
            other => other?,
        };
        // Read-only promise: never let Terraform create or select a workspace,
        // nor plan against state it cannot see, before planning.
        if let Some(problem) = self.local_state_problem(&env, &checkout) {
            return Err(problem);
        }
        if let Err(e) = self.check_workspace(cx, &env).await {
            if init == InitWork::Skipped && diagnostics::needs_init(&e.stderr_tail) {
                init = self.ensure_init(cx, &env, &scan, true).await?;
                self.check_workspace(cx, &env).await?;
            } else {
                return Err(e);
            }
        }
        let init_seconds = started.elapsed().as_secs_f64();

        let plan_file = cx.scratch_dir.join("driftwatch.tfplan");
        let _plan_guard = RemoveOnDrop(plan_file.clone());
        let plan_started = Instant::now();
        let mut output = self
            .exec(cx, self.plan_command(cx, &env, &plan_file), &env)
            .await?;
        if output.code == Some(1)
            && init == InitWork::Skipped
            && diagnostics::needs_init(&output.stderr_str())
        {
            tracing::info!(root = %cx.root, "terraform asks for init; re-running init once");
            init = self.ensure_init(cx, &env, &scan, true).await?;
            output = self
                .exec(cx, self.plan_command(cx, &env, &plan_file), &env)
                .await?;
        }
        let plan_seconds = plan_started.elapsed().as_secs_f64();

        let config_fingerprint = self.config_fingerprint(&env, &scan);
        let mut details = json!({
            "root": env.dir.strip_prefix(&checkout).unwrap_or(&env.dir).to_string_lossy(),
            "workspace": env.workspace.as_deref().unwrap_or("default"),
            "init": match init { InitWork::Skipped => "skipped", InitWork::Ran => "ran" },
            "init_seconds": round(init_seconds),
            "plan_seconds": round(plan_seconds),
        });
        if !matches!(output.code, Some(0) | Some(2)) {
            return Err(self.failure("plan", &output, &env));
        }
        // Exit 0 needs no plan JSON unless a check failed (a warning to
        // report) or ignore rules want to know what they matched.
        let needs_json = output.code == Some(2)
            || !self.ignore.is_empty()
            || output.stdout_truncated
            || mentions_failed_check(&output.stdout_str())
            || mentions_failed_check(&output.stderr_str());
        if !needs_json {
            let _ = std::fs::remove_file(&plan_file);
            if let Err(e) = env.cache.set_in_sync_config(&config_fingerprint) {
                tracing::warn!(root = %cx.root, error = %e, "cannot record in-sync fingerprint");
            }
            return Ok(Outcome {
                exit_code: Some(0),
                details,
                ..Outcome::default()
            });
        }
        let show_started = Instant::now();
        let plan_json = self.show_json(cx, &env, &plan_file, output.code).await?;
        let sensitivity = plan::Sensitivity::of(&plan_json);
        let mut redactor = env.redactor.clone();
        plan::collect_secrets(&plan_json, &sensitivity, &mut redactor);
        let outside = env.cache.in_sync_config().as_deref() == Some(config_fingerprint.as_str());
        let mut summary = plan::summarize(
            &plan_json,
            &plan::Options {
                redactor: &redactor,
                sensitivity: &sensitivity,
                outside_by_default: outside,
                ignore: &self.ignore,
                fingerprint_key: &cx.fingerprint_key,
            },
        );
        declared::annotate(&mut summary.changes, &plan_json, &env.dir, cx);
        drop(plan_json);
        merge(&mut details, summary.details);
        details["show_seconds"] = json!(round(show_started.elapsed().as_secs_f64()));
        let mut warnings = summary.warnings;
        for (rule, matched) in self.ignore.iter().zip(&summary.rules_matched) {
            if !matched {
                warnings.push(format!(
                    "ignore rule {} (address {:?}) matched no resource in this plan",
                    rule.key, rule.address
                ));
            }
        }
        if summary.changes.is_empty() {
            // What Terraform would do changes nothing (reads, deferred work,
            // ignored changes): in sync, whatever the exit code said.
            if let Err(e) = env.cache.set_in_sync_config(&config_fingerprint) {
                tracing::warn!(root = %cx.root, error = %e, "cannot record in-sync fingerprint");
            }
            if output.code == Some(2) {
                details["note"] = json!(format!(
                    "terraform plan exited 2, but no resource or output would change: {}",
                    summary.message
                ));
            }
            return Ok(Outcome {
                exit_code: output.code,
                warnings,
                details,
                message: summary.message,
                ..Outcome::default()
            });
        }
        details["origin_inferred"] = json!(outside);
        Ok(Outcome {
            changes: summary.changes,
            exit_code: output.code,
            warnings,
            details,
            drifted: true,
            message: summary.message,
        })
    }
}

/// Terraform's warning for a failed `check` block, in `-no-color` output.
fn mentions_failed_check(text: &str) -> bool {
    text.contains("Check block assertion failed")
}

impl TerraformProbe {
    /// Root directories (relative to the probe dir) holding Terraform files.
    fn root_dirs(&self, probe_dir: &Path) -> Result<Vec<String>, ProbeError> {
        if self.config.roots.is_empty() {
            return Ok(vec![String::new()]);
        }
        let base = probe_dir.canonicalize().map_err(|e| {
            ProbeError::new(
                ErrorReason::Checkout,
                format!("probe path {} is missing: {e}", probe_dir.display()),
            )
        })?;
        // The shared walker lists the directories (never leaving the
        // checkout's probe dir, failing on a link out or a loop); the root
        // patterns are matched against their relative paths.
        let directories = crate::walk::entries(&base, &base).map_err(|err| {
            ProbeError::new(
                ErrorReason::Checkout,
                format!("cannot list roots under {}: {err}", probe_dir.display()),
            )
        })?;
        let options = glob::MatchOptions {
            require_literal_separator: true,
            ..glob::MatchOptions::new()
        };
        let mut found = Vec::new();
        for pattern in &self.config.roots {
            let pattern = pattern.trim_end_matches('/').trim_start_matches("./");
            let Ok(matcher) = glob::Pattern::new(pattern) else {
                continue;
            };
            for entry in directories.iter().filter(|e| e.is_dir) {
                if !matcher.matches_path_with(&entry.relative, options)
                    || !self.has_config(&entry.path)
                {
                    continue;
                }
                let relative = entry.relative.to_string_lossy().into_owned();
                if !found.contains(&relative) {
                    found.push(relative);
                }
            }
            // `.` (or an empty pattern) is the probe dir itself.
            if (pattern.is_empty() || pattern == ".")
                && self.has_config(&base)
                && !found.contains(&String::new())
            {
                found.push(String::new());
            }
        }
        if found.is_empty() {
            return Err(ProbeError::new(
                ErrorReason::Checkout,
                format!(
                    "roots {:?} match no directory with Terraform files under {}",
                    self.config.roots,
                    probe_dir.display()
                ),
            ));
        }
        found.sort();
        Ok(found)
    }

    fn has_config(&self, dir: &Path) -> bool {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return false;
        };
        entries.flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".tf")
                || name.ends_with(".tf.json")
                || name.ends_with(".tofu")
                || (self.config.flavor() == Flavor::Terragrunt && name == "terragrunt.hcl")
        })
    }

    /// The root's directory and workspace for this run.
    fn run_env(&self, cx: &ProbeContext) -> Result<RunEnv, ProbeError> {
        let (dir, workspace) = if self.config.workspaces.is_empty() {
            (cx.workdir.clone(), self.config.workspace.clone())
        } else {
            let (dir, ws) = cx
                .root
                .rsplit_once('@')
                .unwrap_or((cx.root.as_str(), "default"));
            (
                cx.checkout.join(&self.probe_path).join(dir),
                Some(ws.to_string()),
            )
        };
        if !dir.is_dir() {
            return Err(ProbeError::new(
                ErrorReason::Checkout,
                format!(
                    "root directory {} is missing from the checkout",
                    dir.display()
                ),
            ));
        }
        let mut redactor = Redactor::default();
        for name in &self.config.pass_env {
            if let Ok(value) = std::env::var(name) {
                redactor.add(&value);
            }
        }
        let mut file_env = Vec::new();
        for (key, path) in &self.env_files {
            let value = std::fs::read_to_string(path).map_err(|e| {
                ProbeError::new(
                    ErrorReason::Spawn,
                    format!("cannot read env_files.{key} from {}: {e}", path.display()),
                )
            })?;
            let value = value.trim_end_matches(['\n', '\r']).to_string();
            redactor.add(&value);
            file_env.push((key.clone(), value));
        }
        let mut stderr_redactor = redactor.clone();
        let vars_file = if self.config.vars.is_empty() {
            None
        } else {
            let vars: serde_json::Map<String, Value> = self
                .config
                .vars
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(Value::Null)))
                .collect();
            for value in vars.values() {
                stderr_redactor.add_value(value);
            }
            let path = cx.scratch_dir.join("driftwatch.tfvars.json");
            write_private(&path, &serde_json::to_vec(&vars).unwrap_or_default()).map_err(|e| {
                ProbeError::new(
                    ErrorReason::Internal,
                    format!("cannot write the variables file in the scratch dir: {e}"),
                )
            })?;
            Some(path)
        };
        Ok(RunEnv {
            dir,
            init_workspace: None,
            workspace,
            cache: RootCache::new(&cx.cache_dir, &cx.root),
            vars_file,
            file_env,
            redactor,
            stderr_redactor,
        })
    }

    /// A Terraform command with the contained environment every run uses.
    fn command(&self, cx: &ProbeContext, env: &RunEnv) -> Command {
        self.command_in(cx, env, env.workspace.as_deref())
    }

    /// The same, in `workspace` (`TF_WORKSPACE`, which selects nothing on disk).
    fn command_in(&self, cx: &ProbeContext, env: &RunEnv, workspace: Option<&str>) -> Command {
        let mut command = cx
            .command(&self.program)
            .current_dir(&env.dir)
            .pass_env(self.config.pass_env.iter().cloned());
        for (key, value) in self
            .config
            .env
            .iter()
            .chain(env.file_env.iter().map(|(k, v)| (k, v)))
        {
            command = command.env(key, value);
        }
        command = command
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_DATA_DIR", env.cache.data_dir());
        if self.config.plugin_cache {
            command = command.env("TF_PLUGIN_CACHE_DIR", cx.cache_dir.join("plugin-cache"));
        }
        if let Some(file) = &self.cli_config_file {
            command = command.env("TF_CLI_CONFIG_FILE", file);
        }
        if let Some(workspace) = workspace {
            command = command.env("TF_WORKSPACE", workspace);
        }
        command
    }

    /// An error when the configured workspace does not exist in the backend.
    /// `workspace list` reads the backend without a lock and writes nothing;
    /// planning with a missing `TF_WORKSPACE` would create it (a new
    /// directory in a local backend) and report everything as "create".
    async fn check_workspace(&self, cx: &ProbeContext, env: &RunEnv) -> Result<(), ProbeError> {
        // `default` always exists where workspaces do; skip the extra command.
        let Some(wanted) = env.workspace.as_deref().filter(|w| *w != "default") else {
            return Ok(());
        };
        let list = self.command_in(cx, env, None).args(["workspace", "list"]);
        let output = self.exec(cx, list, env).await?;
        if output.code != Some(0) {
            return Err(self.failure("workspace list", &output, env));
        }
        let existing = parse_workspace_list(&output.stdout_str());
        if existing.iter().any(|w| w == wanted) {
            return Ok(());
        }
        Err(ProbeError::new(
            ErrorReason::Input,
            format!(
                "workspace {wanted:?} does not exist; existing: {}",
                existing.join(", ")
            ),
        ))
    }

    /// An error when the root keeps its state in a local file that is not in
    /// driftwatch's clone: Terraform would plan against empty state and report
    /// every resource as "create". A state file in the working tree is never
    /// in a clone of the remote (it is not committed, or should not be).
    fn local_state_problem(&self, env: &RunEnv, checkout: &Path) -> Option<ProbeError> {
        if self.config.flavor() == Flavor::Terragrunt {
            return None;
        }
        // `init` records the backend (with -backend-config merged in) in the
        // data dir; no record means no backend block: the implicit local one.
        let recorded: Value = match std::fs::read(env.cache.data_dir().join("terraform.tfstate")) {
            Ok(bytes) => serde_json::from_slice(&bytes).ok()?,
            Err(_) => Value::Null,
        };
        let backend = &recorded["backend"];
        if backend["type"].as_str().unwrap_or("local") != "local" {
            return None;
        }
        let setting = |key: &str, default: &str| {
            backend["config"][key]
                .as_str()
                .filter(|s| !s.is_empty())
                .unwrap_or(default)
                .to_string()
        };
        let state = match env.workspace.as_deref() {
            None | Some("default") => PathBuf::from(setting("path", "terraform.tfstate")),
            Some(workspace) => PathBuf::from(setting("workspace_dir", "terraform.tfstate.d"))
                .join(workspace)
                .join("terraform.tfstate"),
        };
        let inside = env.dir.strip_prefix(checkout).ok()?.join(&state);
        if state.is_absolute() || crate::paths::escapes(&inside) || env.dir.join(&state).exists() {
            return None;
        }
        Some(ProbeError::new(
            ErrorReason::Checkout,
            format!(
                "the state is not where Terraform looks: {} is not in driftwatch's clone (a state file in a working tree is never in a clone of the remote), so every resource would plan as \"create\". Keep the state where every clone finds it: configure a backend (s3, gcs, azurerm, http, …), give the local backend an absolute `path` outside the repo, or point the probe at a `path` repo (a directory kept in sync in place)",
                inside.display()
            ),
        ))
    }

    fn plan_command(&self, cx: &ProbeContext, env: &RunEnv, plan_file: &Path) -> Command {
        let mut out = std::ffi::OsString::from("-out=");
        out.push(plan_file);
        let mut command = self
            .command(cx, env)
            .args([
                "plan",
                "-detailed-exitcode",
                "-input=false",
                "-lock=false",
                "-no-color",
            ])
            .arg(out);
        for file in &self.config.var_files {
            command = command.arg(format!(
                "-var-file={}",
                resolve_file(&env.dir, file).display()
            ));
        }
        if let Some(file) = &env.vars_file {
            command = command.arg(format!("-var-file={}", file.display()));
        }
        command.args(self.config.plan_args.iter())
    }

    /// `show -json` of the saved plan, parsed; the plan file is deleted either way.
    async fn show_json(
        &self,
        cx: &ProbeContext,
        env: &RunEnv,
        plan_file: &Path,
        plan_code: Option<i32>,
    ) -> Result<Value, ProbeError> {
        let show = self
            .command(cx, env)
            .args(["show", "-json", "-no-color"])
            .arg(plan_file)
            .stdout_limit(SHOW_JSON_LIMIT);
        let shown = self.exec(cx, show, env).await;
        let _ = std::fs::remove_file(plan_file);
        let shown = shown?;
        if shown.code != Some(0) {
            return Err(self
                .failure("show -json", &shown, env)
                .with_exit_code(plan_code));
        }
        if shown.stdout_truncated {
            return Err(ProbeError::new(
                ErrorReason::Parse,
                format!("the plan JSON is larger than {SHOW_JSON_LIMIT} bytes; not read"),
            )
            .with_exit_code(plan_code));
        }
        serde_json::from_slice(&shown.stdout).map_err(|e| {
            ProbeError::new(
                ErrorReason::Parse,
                format!("cannot read `show -json` output: {e}"),
            )
            .with_exit_code(plan_code)
        })
    }

    /// Runs a command; a timeout or cancel error gets its output redacted.
    async fn exec(
        &self,
        cx: &ProbeContext,
        command: Command,
        env: &RunEnv,
    ) -> Result<crate::process::Output, ProbeError> {
        cx.exec(command).await.map_err(|mut e| {
            e.message = env.stderr_redactor.redact(&e.message);
            e.stderr_tail = env.stderr_redactor.redact(&e.stderr_tail);
            e
        })
    }

    /// Runs `init` unless the root's cache is already initialized for exactly
    /// this configuration (or `force`).
    async fn ensure_init(
        &self,
        cx: &ProbeContext,
        env: &RunEnv,
        scan: &workdir::Scan,
        force: bool,
    ) -> Result<InitWork, ProbeError> {
        let lock_file = env.dir.join(".terraform.lock.hcl");
        let generated = env.cache.generated_lock();
        if !lock_file.exists() && generated.exists() {
            // The repo has no lock file: reuse the one our earlier init made,
            // so the providers already in the cache still match.
            let _ = std::fs::copy(&generated, &lock_file);
        }
        let before = self.init_fingerprint(env, scan);
        let known = env.cache.initialized().unwrap_or_default();
        if !force && env.cache.data_dir().is_dir() && known.lines().any(|f| f == before) {
            return Ok(InitWork::Skipped);
        }

        let _serialized = if self.config.plugin_cache {
            Some(self.init_lock.lock().await)
        } else {
            None
        };
        let cache_error = |e: std::io::Error| {
            ProbeError::new(
                ErrorReason::Internal,
                format!("cannot prepare the root's cache directory: {e}"),
            )
        };
        env.cache.set_initialized(None).map_err(cache_error)?;
        std::fs::create_dir_all(env.cache.data_dir()).map_err(cache_error)?;
        if self.config.plugin_cache {
            std::fs::create_dir_all(cx.cache_dir.join("plugin-cache")).map_err(cache_error)?;
        }
        let had_lock = lock_file.exists();
        let mut command = self
            .command_in(cx, env, env.init_workspace.as_deref())
            .args(["init", "-input=false", "-no-color", "-reconfigure"]);
        for entry in &self.config.backend_config {
            let value = if entry.contains('=') {
                entry.clone()
            } else {
                resolve_file(&env.dir, entry).to_string_lossy().into_owned()
            };
            command = command.arg(format!("-backend-config={value}"));
        }
        command = command.args(self.config.init_args.iter());
        let output = self.exec(cx, command, env).await?;
        if output.code != Some(0) {
            return Err(self.failure("init", &output, env));
        }
        if !had_lock && lock_file.exists() {
            let _ = std::fs::copy(&lock_file, &generated);
        }
        // Accept both the fingerprint as the checkout came and as init left
        // it (init may add hashes to the lock file), so neither the next run
        // on this checkout nor the first on a new one inits again.
        let after = self.init_fingerprint(env, scan);
        env.cache
            .set_initialized(Some(&format!("{before}\n{after}\n")))
            .map_err(cache_error)?;
        Ok(InitWork::Ran)
    }

    fn init_fingerprint(&self, env: &RunEnv, scan: &workdir::Scan) -> String {
        let mut hash = scan.init.clone();
        hash.update(b"driftwatch-init-v1");
        hash.update(
            &std::fs::read(env.dir.join(".terraform.lock.hcl"))
                .unwrap_or_else(|_| b"<no lock file>".to_vec()),
        );
        for entry in &self.config.backend_config {
            hash.update(entry.as_bytes());
            if !entry.contains('=') {
                hash.update(&std::fs::read(resolve_file(&env.dir, entry)).unwrap_or_default());
            }
        }
        for arg in &self.config.init_args {
            hash.update(arg.as_bytes());
        }
        hash.update(&[u8::from(self.config.plugin_cache)]);
        if let Some(file) = &self.cli_config_file {
            hash.update(&std::fs::read(file).unwrap_or_default());
        }
        // A new binary (an upgrade) re-inits.
        if let Some(path) = which(&self.program) {
            hash.update(path.to_string_lossy().as_bytes());
            if let Ok(meta) = std::fs::metadata(&path) {
                hash.update(&meta.len().to_le_bytes());
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok());
                hash.update(&modified.unwrap_or_default().as_nanos().to_le_bytes());
            }
        }
        hash.hex()
    }

    /// Everything that decides what the plan compares against reality.
    fn config_fingerprint(&self, env: &RunEnv, scan: &workdir::Scan) -> String {
        let mut hash: Fnv = scan.config.clone();
        hash.update(env.workspace.as_deref().unwrap_or("default").as_bytes());
        for file in &self.config.var_files {
            hash.update(&std::fs::read(resolve_file(&env.dir, file)).unwrap_or_default());
        }
        hash.update(
            serde_json::to_string(&self.config.vars)
                .unwrap_or_default()
                .as_bytes(),
        );
        for arg in &self.config.plan_args {
            hash.update(arg.as_bytes());
        }
        hash.hex()
    }

    /// An error for a failed command, with its diagnostics as `file:line: summary`.
    fn failure(&self, step: &str, output: &crate::process::Output, env: &RunEnv) -> ProbeError {
        let stderr = output.stderr_str();
        let found = diagnostics::errors(&stderr);
        let status = match (output.code, output.signal) {
            (Some(code), _) => format!("exit {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "no exit status".to_string(),
        };
        let mut message = format!("{} {step} failed ({status})", self.config.binary);
        if !found.is_empty() {
            let rendered: Vec<String> = found
                .iter()
                .take(5)
                .map(diagnostics::Diagnostic::render)
                .collect();
            message.push_str(": ");
            message.push_str(&rendered.join("; "));
            if found.len() > 5 {
                message.push_str(&format!("; and {} more", found.len() - 5));
            }
        } else if let Some(last) = stderr.lines().rev().find(|l| !l.trim().is_empty()) {
            message.push_str(": ");
            message.push_str(last.trim());
        }
        let reason = if found.iter().any(|d| d.location.is_some()) {
            ErrorReason::Input
        } else {
            ErrorReason::ExitCode
        };
        ProbeError::new(reason, env.stderr_redactor.redact(&message))
            .with_exit_code(output.code)
            .with_stderr_tail(
                env.stderr_redactor
                    .redact(&output.stderr_tail(STDERR_TAIL_LINES)),
            )
    }
}

/// Names from `workspace list` output (`* default`, `  prod`).
fn parse_workspace_list(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| l.trim().trim_start_matches('*').trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// The program's file: itself when it is a path, else the first match on PATH.
fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn parse_version_json(stdout: &[u8]) -> Option<(u64, u64, u64)> {
    let doc: Value = serde_json::from_slice(stdout).ok()?;
    parse_version(doc["terraform_version"].as_str()?)
}

fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let core = text
        .trim()
        .trim_start_matches('v')
        .split(['-', '+'])
        .next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((
        parts.next()??,
        parts.next().flatten().unwrap_or(0),
        parts.next().flatten().unwrap_or(0),
    ))
}

fn version_string((major, minor, patch): (u64, u64, u64)) -> String {
    format!("{major}.{minor}.{patch}")
}

fn round(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

fn merge(into: &mut Value, from: Value) {
    if let (Some(into), Value::Object(from)) = (into.as_object_mut(), from) {
        into.extend(from);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_compare() {
        assert_eq!(
            parse_version_json(br#"{"terraform_version":"1.11.4","platform":"linux_amd64"}"#),
            Some((1, 11, 4))
        );
        assert_eq!(parse_version("1.6.0-beta1"), Some((1, 6, 0)));
        assert!(parse_version("0.15.3").unwrap() < MIN_VERSION);
        assert!(parse_version("1.0.3").unwrap() >= MIN_VERSION);
    }

    #[test]
    fn workspace_list_output_parses() {
        assert_eq!(
            parse_workspace_list("* default\n  prod\n  blue-2\n\n"),
            ["default", "prod", "blue-2"]
        );
        assert_eq!(
            parse_workspace_list("  default\n* prod\n"),
            ["default", "prod"]
        );
    }
}
