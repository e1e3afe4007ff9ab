//! The `layer = "terraform"` fields, the probe built from them, and the
//! checks that keep every run read-only: arguments that would take the
//! state lock, migrate state or change what the exit code means are refused
//! when the config is loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use super::ignore::IgnoreRule;
use crate::probe::{parse_fields, FieldError, Probe, ProbeCommon};

/// `layer = "terraform"`: a read-only plan of each root module, with
/// Terraform, OpenTofu or Terragrunt ([Terraform / OpenTofu](terraform.md)).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TerraformConfig {
    /// `terraform`, `tofu`, `terragrunt` (found on `PATH`) or a path to one of
    /// them (relative to the config file's directory).
    ///
    /// Default: `"terraform"`.
    #[serde(default = "default_binary")]
    pub binary: String,
    /// Root module directories, as paths or globs relative to the probe's
    /// `path`. Each matching directory that holds `*.tf`/`*.tf.json` (or
    /// `terragrunt.hcl`) becomes its own instance with its own schedule slot,
    /// verdict and series (label `root`). No match is an error with reason
    /// `checkout`.
    ///
    /// Default: `[]`: the probe's `path` is the one root.
    #[serde(default)]
    pub roots: Vec<String>,
    /// How many roots of this probe plan at once (also bounded by
    /// `max_concurrent_runs`).
    ///
    /// Default: `2`.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// The workspace to plan, passed as `TF_WORKSPACE` to `plan`/`show` only
    /// (nothing is selected on disk). It must exist (see "Missing workspace"
    /// in [Terraform / OpenTofu](terraform.md)).
    ///
    /// Default: none: Terraform's `default` workspace.
    #[serde(default)]
    pub workspace: Option<String>,
    /// Several workspaces: every root × workspace is an instance, with the
    /// `root` label `envs/prod@blue`. Not with `workspace`.
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub workspaces: Vec<String>,
    /// `-var-file`s, relative to each root (or absolute host paths).
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub var_files: Vec<String>,
    /// Variables (any TOML value), written to a 0600 tfvars JSON file in the
    /// run's scratch directory, never on a command line, and deleted after the
    /// run.
    ///
    /// Default: `{}`.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub vars: BTreeMap<String, toml::Value>,
    /// `-backend-config` for `init`: files relative to each root (or absolute
    /// host paths), or `key=value` pairs.
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub backend_config: Vec<String>,
    /// Extra flags for `init` (`-name=value`). Refused: anything that takes the
    /// lock (`-lock` other than `=false`), `-input=true`, `-migrate-state`,
    /// `-force-copy`, `-upgrade`, `-backend-config` (use `backend_config`),
    /// `-state*`, `-backup`, `-chdir`, positional arguments.
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub init_args: Vec<String>,
    /// Extra flags for `plan` (`-name=value`). Refused: anything that takes the
    /// lock, `-input=true`, `-refresh-only` (exits 2 with no changes,
    /// hashicorp/terraform#36403), `-out`, `-detailed-exitcode`, `-no-color`, `-json`,
    /// `-var` (use `vars`), `-var-file` (use `var_files`), `-state*`,
    /// `-backup`, `-generate-config-out`, `-chdir`, positional arguments.
    /// `-target`, `-replace`, `-refresh=false`, `-destroy`, `-parallelism=n`
    /// are fine.
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub plan_args: Vec<String>,
    /// Variables let through from driftwatch's environment (credentials such
    /// as `AWS_PROFILE`, `TF_VAR_*`). Their values are masked in everything
    /// driftwatch reports.
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// Extra variables set for every Terraform command. `TF_DATA_DIR`,
    /// `TF_WORKSPACE`, `TF_CLI_CONFIG_FILE`, `TF_PLUGIN_CACHE_DIR`,
    /// `TF_CLI_ARGS*`, `TF_IN_AUTOMATION` and `TF_INPUT` are driftwatch's own.
    ///
    /// Default: `{}`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables whose value is read from a file at each run
    /// (`{ TF_VAR_db_password = "/run/secrets/db" }`), relative to the config
    /// file's directory. Their values are masked in everything driftwatch
    /// reports.
    ///
    /// Default: `{}`.
    #[serde(default)]
    pub env_files: BTreeMap<String, PathBuf>,
    /// A Terraform CLI config file (provider mirrors, registry credentials),
    /// set as `TF_CLI_CONFIG_FILE`; relative to the config file's directory.
    /// Without it the variable is not passed on, even if driftwatch's own
    /// environment sets it.
    ///
    /// Default: none.
    #[serde(default)]
    pub cli_config_file: Option<PathBuf>,
    /// Share downloaded providers between roots through `TF_PLUGIN_CACHE_DIR`.
    ///
    /// Default: `true`.
    #[serde(default = "default_true")]
    pub plugin_cache: bool,
    /// Changes to leave out of the verdict (the table below).
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub ignore: Vec<super::ignore::IgnoreRuleConfig>,
}

fn default_binary() -> String {
    "terraform".to_string()
}

fn default_parallelism() -> usize {
    2
}

fn default_true() -> bool {
    true
}

/// Which command-line dialect the binary speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// terraform or tofu: `version -json`.
    Terraform,
    /// terragrunt wraps terraform/tofu and passes these commands through.
    Terragrunt,
}

impl TerraformConfig {
    pub fn flavor(&self) -> Flavor {
        let name = Path::new(&self.binary)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.contains("terragrunt") {
            Flavor::Terragrunt
        } else {
            Flavor::Terraform
        }
    }

    /// The program to spawn: a bare name is looked up on PATH by the OS, a
    /// relative path is taken from the config file's directory.
    pub fn program(&self, config_dir: &Path) -> PathBuf {
        let path = Path::new(&self.binary);
        if self.binary.contains('/') && path.is_relative() {
            config_dir.join(path)
        } else {
            path.to_path_buf()
        }
    }

    /// Every problem with the fields, all at once.
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        if self.binary.trim().is_empty() {
            errors.push(FieldError::new(
                "binary",
                "must name terraform, tofu, terragrunt or a path",
            ));
        }
        for (i, root) in self.roots.iter().enumerate() {
            let key = format!("roots[{i}]");
            if root.trim().is_empty() {
                errors.push(FieldError::new(
                    key,
                    "must not be empty (leave `roots` out to use the probe path)",
                ));
            } else if crate::paths::escapes(Path::new(root)) {
                errors.push(FieldError::new(
                    key,
                    "must stay inside the probe path (no absolute path or ..)",
                ));
            } else if let Err(e) = glob::Pattern::new(root) {
                errors.push(FieldError::new(key, format!("invalid glob: {e}")));
            }
        }
        if self.parallelism == 0 {
            errors.push(FieldError::new("parallelism", "must be at least 1"));
        }
        if self.workspace.is_some() && !self.workspaces.is_empty() {
            errors.push(FieldError::new(
                "workspaces",
                "give either `workspace` or `workspaces`, not both",
            ));
        }
        let names = self
            .workspace
            .iter()
            .map(|w| ("workspace".to_string(), w))
            .chain(
                self.workspaces
                    .iter()
                    .enumerate()
                    .map(|(i, w)| (format!("workspaces[{i}]"), w)),
            );
        for (key, name) in names {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            {
                errors.push(FieldError::new(
                    key,
                    format!("invalid workspace name {name:?} (letters, digits, - _ . only)"),
                ));
            }
        }
        for name in self.vars.keys() {
            if !is_identifier(name) {
                errors.push(FieldError::new(
                    format!("vars.{name}"),
                    "is not a valid Terraform variable name",
                ));
            }
        }
        for (i, file) in self.var_files.iter().enumerate() {
            if file.trim().is_empty() {
                errors.push(FieldError::new(
                    format!("var_files[{i}]"),
                    "must not be empty",
                ));
            }
        }
        for (i, entry) in self.backend_config.iter().enumerate() {
            if entry.trim().is_empty() {
                errors.push(FieldError::new(
                    format!("backend_config[{i}]"),
                    "must not be empty",
                ));
            }
        }
        for (i, arg) in self.init_args.iter().enumerate() {
            if let Err(message) = check_init_arg(arg) {
                errors.push(FieldError::new(format!("init_args[{i}]"), message));
            }
        }
        for (i, arg) in self.plan_args.iter().enumerate() {
            if let Err(message) = check_plan_arg(arg) {
                errors.push(FieldError::new(format!("plan_args[{i}]"), message));
            }
        }
        for (i, name) in self.pass_env.iter().enumerate() {
            if name.is_empty() || name.contains('=') {
                errors.push(FieldError::new(
                    format!("pass_env[{i}]"),
                    "must be a variable name",
                ));
            }
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') {
                errors.push(FieldError::new(
                    format!("env.{key}"),
                    "must be a variable name",
                ));
            } else if MANAGED_ENV.contains(&key.as_str()) {
                errors.push(FieldError::new(
                    format!("env.{key}"),
                    "is set by driftwatch itself (use `workspace`, `cli_config_file` or `plugin_cache`)",
                ));
            }
        }
        errors
    }
}

/// Variables driftwatch sets on every command; config may not override them.
const MANAGED_ENV: &[&str] = &[
    "TF_DATA_DIR",
    "TF_WORKSPACE",
    "TF_CLI_CONFIG_FILE",
    "TF_PLUGIN_CACHE_DIR",
    "TF_IN_AUTOMATION",
    "TF_INPUT",
    "TF_CLI_ARGS",
    "TF_CLI_ARGS_plan",
    "TF_CLI_ARGS_init",
    "TF_CLI_ARGS_apply",
];

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The flag name of `-name=value` / `--name`, or `None` for a positional argument.
fn flag_name(arg: &str) -> Option<&str> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    Some(body.split('=').next().unwrap_or(body))
}

fn flag_value(arg: &str) -> Option<&str> {
    arg.split_once('=').map(|(_, v)| v)
}

/// Flags the probe sets itself or that no drift check may use, for both commands.
fn check_common_arg(arg: &str) -> Result<&str, String> {
    let Some(name) = flag_name(arg) else {
        return Err(format!(
            "{arg:?} is not a flag; give flags only, as -name=value"
        ));
    };
    match name {
        "lock" if flag_value(arg) != Some("false") => {
            Err("driftwatch never takes the state lock; only -lock=false is allowed".into())
        }
        "input" if flag_value(arg) != Some("false") => {
            Err("runs are non-interactive; only -input=false is allowed".into())
        }
        "chdir" => Err("-chdir is a global option; use `roots` instead".into()),
        "state" | "state-out" | "backup" => Err(format!(
            "-{name} would read or write a state file outside the backend"
        )),
        _ => Ok(name),
    }
}

pub fn check_init_arg(arg: &str) -> Result<(), String> {
    let name = check_common_arg(arg)?;
    match name {
        "migrate-state" | "force-copy" => Err(format!(
            "-{name} would write state; driftwatch is read-only"
        )),
        "upgrade" => {
            Err("-upgrade would change the dependency lock file from what git says".into())
        }
        "backend-config" => Err("use the `backend_config` field".into()),
        "reconfigure" | "no-color" => Ok(()),
        _ => Ok(()),
    }
}

pub fn check_plan_arg(arg: &str) -> Result<(), String> {
    let name = check_common_arg(arg)?;
    match name {
        "refresh-only" => Err(
            "-refresh-only exits 2 even when nothing changed (hashicorp/terraform#36403), so it cannot give a verdict".into(),
        ),
        "out" | "detailed-exitcode" | "no-color" => Err(format!("-{name} is set by driftwatch")),
        "json" => Err("-json changes the output driftwatch reads; the plan JSON comes from `show -json`".into()),
        "auto-approve" | "apply" => Err(format!("-{name}: driftwatch never applies")),
        "var" => Err("use the `vars` field, so values never appear on a command line".into()),
        "var-file" => Err("use the `var_files` field".into()),
        "generate-config-out" => Err("-generate-config-out writes files into the checkout".into()),
        _ => Ok(()),
    }
}

/// Where a configured file lives: absolute paths are host files, relative
/// ones are relative to the root directory inside the checkout.
pub fn resolve_file(root_dir: &Path, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root_dir.join(path)
    }
}

/// A validated Terraform probe: its fields, the program it runs, the files
/// it reads from this host.
pub struct TerraformProbe {
    pub(super) config: TerraformConfig,
    pub(super) program: PathBuf,
    /// The probe's path inside the repo, to find a root's directory.
    pub(super) probe_path: PathBuf,
    pub(super) cli_config_file: Option<PathBuf>,
    /// `env_files` resolved against the config file's directory.
    pub(super) env_files: Vec<(String, PathBuf)>,
    /// Inits write into the shared plugin cache, which Terraform does not
    /// guarantee safe for concurrent use: one init per probe at a time.
    pub(super) init_lock: tokio::sync::Mutex<()>,
    /// `[[probe.ignore]]` rules, validated.
    pub(super) ignore: Vec<IgnoreRule>,
}

/// Checks the layer's fields and builds the probe.
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> TerraformConfig {
        crate::probe::parse_fields(toml::from_str(text).unwrap()).unwrap()
    }

    #[test]
    fn defaults() {
        let c = parse("");
        assert_eq!(c.binary, "terraform");
        assert_eq!(c.parallelism, 2);
        assert!(c.plugin_cache);
        assert!(c.check().is_empty());
        assert_eq!(c.flavor(), Flavor::Terraform);
        assert_eq!(
            parse("binary = \"/opt/terragrunt\"").flavor(),
            Flavor::Terragrunt
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let table: toml::Table = toml::from_str("rootz = []").unwrap();
        let err = crate::probe::parse_fields::<TerraformConfig>(table).unwrap_err();
        assert!(err[0].message.contains("unknown field"), "{err:?}");
    }

    #[test]
    fn read_only_is_enforced_on_arguments() {
        let c = parse(
            r#"
            init_args = ["-migrate-state", "-get=true", "-lock=true", "-upgrade"]
            plan_args = ["-refresh-only", "-lock=false", "-target=a.b", "-lock", "-out=x", "-var=a=b", "somedir", "-destroy"]
            roots = ["../x", "envs/*"]
            workspaces = ["a b"]
            parallelism = 0
            env = { TF_DATA_DIR = "/tmp" }
            "#,
        );
        let keys: Vec<String> = c.check().into_iter().map(|e| e.key).collect();
        assert_eq!(
            keys,
            [
                "roots[0]",
                "parallelism",
                "workspaces[0]",
                "init_args[0]",
                "init_args[2]",
                "init_args[3]",
                "plan_args[0]",
                "plan_args[3]",
                "plan_args[4]",
                "plan_args[5]",
                "plan_args[6]",
                "env.TF_DATA_DIR",
            ]
        );
    }

    #[test]
    fn refresh_only_error_explains_why() {
        let err = check_plan_arg("-refresh-only").unwrap_err();
        assert!(err.contains("exits 2"));
        assert!(check_plan_arg("-refresh=false").is_ok());
        assert!(check_plan_arg("-parallelism=4").is_ok());
        assert!(check_init_arg("-lock=false").is_ok());
    }
}
