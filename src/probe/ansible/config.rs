//! The Ansible probe's configuration: the `[[probe]]` fields of an `ansible` probe, and `build`,
//! which validates them (every problem at once, each naming its key) and turns them into an
//! `AnsibleProbe` with host paths made absolute against the config file's directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::probe::{parse_fields, FieldError, Probe, ProbeCommon};

use super::ignore::{IgnoreRule, IgnoreRuleConfig};

/// A validated Ansible probe: its fields, with host paths made absolute
/// against the config file's directory.
pub struct AnsibleProbe {
    pub(super) config: AnsibleConfig,
    pub(super) vault_password_file: Option<PathBuf>,
    pub(super) private_key_file: Option<PathBuf>,
    pub(super) ignore: Vec<IgnoreRule>,
}

/// `layer = "ansible"`: `ansible-playbook --check --diff` of the playbooks,
/// never a real run ([Ansible](ansible.md)).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AnsibleConfig {
    /// Playbooks to check, relative to the probe's `path`.
    ///
    /// Required.
    pub playbooks: Vec<PathBuf>,
    /// A file, directory or script relative to the probe's `path`, an absolute
    /// host path, or a host list (`"h1,h2,"`); a list gives several `-i`.
    ///
    /// Required.
    pub inventory: OneOrMany,
    /// `--limit`: the hosts to check.
    ///
    /// Default: none: every host.
    #[serde(default)]
    pub limit: Option<String>,
    /// `--tags`, one tag per item.
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub tags: Vec<String>,
    /// `--skip-tags`, one tag per item.
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub skip_tags: Vec<String>,
    /// A table passed as one `-e @file` of JSON (never on the command line).
    ///
    /// Default: `{}`.
    #[serde(default)]
    #[schemars(with = "std::collections::BTreeMap<String, serde_json::Value>")]
    pub extra_vars: toml::Table,
    /// Variable files in the repo, relative to the probe's `path`, each passed
    /// as `-e @file`.
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub extra_vars_files: Vec<PathBuf>,
    /// `--vault-password-file`: a host path, relative to the config file's
    /// directory.
    ///
    /// Default: none.
    #[serde(default)]
    pub vault_password_file: Option<PathBuf>,
    /// `--private-key`: a host path, relative to the config file's directory.
    ///
    /// Default: none.
    #[serde(default)]
    pub private_key_file: Option<PathBuf>,
    /// `--forks`; at least 1.
    ///
    /// Default: ansible's own.
    #[serde(default)]
    pub forks: Option<u32>,
    /// The `ansible-playbook` to run.
    ///
    /// Default: `"ansible-playbook"`.
    #[serde(default = "default_binary")]
    pub binary: String,
    /// Variables passed through from driftwatch's environment (`SSH_AUTH_SOCK`,
    /// `ANSIBLE_CONFIG`); the environment is otherwise cleared but for `PATH`,
    /// `HOME`, `LANG`….
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// How unreachable hosts count: `"error"`, or `"drift"` (a change with
    /// action `unreachable`).
    ///
    /// Default: `"error"`.
    #[serde(default)]
    pub unreachable: UnreachablePolicy,
    /// Refuse to run playbooks with tasks that run for real in check mode
    /// (`check_mode: false`).
    ///
    /// Default: `false`.
    #[serde(default)]
    pub strict_check_mode: bool,
    /// Changed tasks that are not drift (the table below).
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub ignore: Vec<IgnoreRuleConfig>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(one) => vec![one.as_str()],
            OneOrMany::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}

// Serialize lets the reference check the documented default against this one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnreachablePolicy {
    #[default]
    Error,
    Drift,
}

fn default_binary() -> String {
    "ansible-playbook".to_string()
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
