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
pub(super) mod config;
mod declared;
mod diagnostics;
pub mod ignore;
mod plan;
mod redact;
mod tool;
mod workdir;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{Probe, ProbeContext};
use crate::model::outcome::{ErrorReason, Outcome, ProbeError};
use crate::process::Command;
use config::Flavor;
pub use config::{build, TerraformConfig, TerraformProbe};
use tool::{parse_version_json, version_string, InitWork};

/// Oldest Terraform whose plan JSON has `resource_drift` and whose `plan`
/// never persists refreshed state.
const MIN_VERSION: (u64, u64, u64) = (0, 15, 4);

/// Removes a file when dropped: plan and tfvars files can hold secrets and
/// must not outlive the run, whatever way it ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
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
    use super::tool::{parse_version, parse_workspace_list};
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
