//! Running terraform (or terragrunt) for one root: the run's environment and command lines
//! (workspace selection, the plan and `show -json` invocations), `init` only when the root's
//! fingerprint changed, local-state checks, errors carrying the redacted stderr tail, and parsing
//! the tool's version and workspace list.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::model::outcome::{ErrorReason, ProbeError};
use crate::probe::ProbeContext;
use crate::process::Command;

use super::config::TerraformProbe;
use super::config::{resolve_file, Flavor};
use super::redact::Redactor;
use super::workdir::{Fnv, RootCache};
use super::{diagnostics, workdir};

/// Plans of very large stacks are big; more than this is a parse error.
pub(super) const SHOW_JSON_LIMIT: usize = 256 * 1024 * 1024;
/// Stderr lines kept in an error report.
pub(super) const STDERR_TAIL_LINES: usize = 30;

/// Everything one run needs to build its commands.
pub(super) struct RunEnv {
    pub(super) dir: PathBuf,
    pub(super) workspace: Option<String>,
    /// The workspace `init` runs in: the default one, unless the backend has none.
    pub(super) init_workspace: Option<String>,
    pub(super) cache: RootCache,
    pub(super) vars_file: Option<PathBuf>,
    /// Values of `env_files` variables, read for this run.
    pub(super) file_env: Vec<(String, String)>,
    /// Masks credentials (`pass_env`, `env_files` values) everywhere.
    pub(super) redactor: Redactor,
    /// Also masks the configured `vars` values, in error output.
    pub(super) stderr_redactor: Redactor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InitWork {
    Skipped,
    Ran,
}

impl TerraformProbe {
    /// The root's directory and workspace for this run.
    pub(super) fn run_env(&self, cx: &ProbeContext) -> Result<RunEnv, ProbeError> {
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
    pub(super) fn command(&self, cx: &ProbeContext, env: &RunEnv) -> Command {
        self.command_in(cx, env, env.workspace.as_deref())
    }

    /// The same, in `workspace` (`TF_WORKSPACE`, which selects nothing on disk).
    pub(super) fn command_in(
        &self,
        cx: &ProbeContext,
        env: &RunEnv,
        workspace: Option<&str>,
    ) -> Command {
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
    pub(super) async fn check_workspace(
        &self,
        cx: &ProbeContext,
        env: &RunEnv,
    ) -> Result<(), ProbeError> {
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
    pub(super) fn local_state_problem(&self, env: &RunEnv, checkout: &Path) -> Option<ProbeError> {
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

    pub(super) fn plan_command(
        &self,
        cx: &ProbeContext,
        env: &RunEnv,
        plan_file: &Path,
    ) -> Command {
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
    pub(super) async fn show_json(
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
    pub(super) async fn exec(
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
    pub(super) async fn ensure_init(
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

    pub(super) fn init_fingerprint(&self, env: &RunEnv, scan: &workdir::Scan) -> String {
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
    pub(super) fn config_fingerprint(&self, env: &RunEnv, scan: &workdir::Scan) -> String {
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
    pub(super) fn failure(
        &self,
        step: &str,
        output: &crate::process::Output,
        env: &RunEnv,
    ) -> ProbeError {
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
pub(super) fn parse_workspace_list(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|l| l.trim().trim_start_matches('*').trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

pub(super) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
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
pub(super) fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return Some(program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

pub(super) fn parse_version_json(stdout: &[u8]) -> Option<(u64, u64, u64)> {
    let doc: Value = serde_json::from_slice(stdout).ok()?;
    parse_version(doc["terraform_version"].as_str()?)
}

pub(super) fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
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

pub(super) fn version_string((major, minor, patch): (u64, u64, u64)) -> String {
    format!("{major}.{minor}.{patch}")
}
