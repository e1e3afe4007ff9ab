//! The Ansible layer, ansiblediff's successor: `ansible-playbook --check
//! --diff` against the checked-out playbooks, read through driftwatch's own
//! stdout callback (embedded below, written to the run's scratch directory),
//! which prints per-host stats and per-task results as one JSON document.
//!
//! The verdict comes from those stats, never from the exit code alone: drift
//! in check mode exits 0. Tasks marked `check_mode: false` run for real even
//! in check mode, so they are found before running (see `scan`) and listed
//! as warnings, or refused under `strict_check_mode`.

pub(super) mod config;
pub mod ignore;
mod output;
pub mod scan;
mod verdict;

use std::path::{Path, PathBuf};

use self::output::find_document;
use self::verdict::{
    no_document_error, relative_paths, repo_relative_task_path, verdict, VerdictRules,
};
use super::{Probe, ProbeContext};
use crate::model::outcome::{ErrorReason, Outcome, ProbeError};

pub use self::config::{build, AnsibleConfig, AnsibleProbe, OneOrMany, UnreachablePolicy};

/// The stdout callback plugin (Python), embedded so the binary needs nothing
/// installed beside ansible-core; written as `<CALLBACK_NAME>.py` per run.
pub const CALLBACK_SOURCE: &str = include_str!("driftwatch_json.py");
/// The callback's name, for `ANSIBLE_STDOUT_CALLBACK`.
pub const CALLBACK_NAME: &str = "driftwatch_json";

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
mod tests;
