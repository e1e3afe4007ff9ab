//! The probe trait and how probes are built from config. A layer is one file
//! beside this one that implements `Probe` and exposes a `build` function;
//! adding a layer means that file plus one line in `builder`.

pub mod ansible;
pub mod command;
pub mod kubernetes;
pub mod terraform;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ProbeSpec;
use crate::model::fingerprint;
use crate::model::outcome::{Outcome, ProbeError};
use crate::process::{self, Command};

/// One layer's drift check. A probe never touches metrics or state: it
/// returns an outcome and the scheduler records it.
#[async_trait::async_trait]
pub trait Probe: Send + Sync + 'static {
    /// The layer name, as written in config: `command`, `terraform`, …
    fn layer(&self) -> &'static str;

    /// The roots this probe covers in a checkout; each becomes its own probe
    /// instance with its own verdict and series. Most layers have one root, "".
    fn roots(&self, _probe_dir: &Path) -> Result<Roots, ProbeError> {
        Ok(Roots::single())
    }

    /// False for layers whose instances are only known from a checkout
    /// (their series are created when their roots are first listed).
    fn single_root(&self) -> bool {
        true
    }

    /// How many roots of this probe may run at once.
    fn parallelism(&self) -> usize {
        1
    }

    /// Problems with the environment (a missing binary, a tool too old) that
    /// `validate` reports as errors and the daemon logs as warnings.
    async fn preflight(&self) -> Vec<String> {
        Vec::new()
    }

    /// Warnings that can be found by reading the checkout without running
    /// anything (e.g. Ansible tasks that run for real in check mode); `validate` prints them.
    fn inspect(&self, _probe_dir: &Path) -> Vec<String> {
        Vec::new()
    }

    /// One run against one checked-out revision.
    async fn run(&self, cx: &ProbeContext) -> Result<Outcome, ProbeError>;

    /// Resolves when the live state this probe compares changed in a way that
    /// may change its verdict (layers that watch, e.g. Kubernetes), already
    /// debounced; the scheduler then runs the probe with trigger `live-change`.
    /// Never resolves for layers that do not watch.
    async fn live_change(&self) {
        std::future::pending().await
    }

    /// The paths this probe's config names inside the checkout (var files,
    /// inventories, playbooks, render programs, …), for `validate`. With
    /// `probe_dir` (the probe's path in a checkout at hand) each is
    /// resolved, per root where the layer reads it per root; without, each
    /// is named as written, to say what could not be checked.
    fn repo_paths(&self, _probe_dir: Option<&Path>) -> Vec<RepoPath> {
        Vec::new()
    }

    /// Warnings that need the live system (e.g. a Kubernetes account that may
    /// list but not watch), for `validate`; `probe_dir` holds the probe's
    /// files when a copy of its repo is at hand.
    async fn access_warnings(&self, _probe_dir: Option<&Path>) -> Vec<String> {
        Vec::new()
    }

    /// Health of the probe's live-state cache, for layers that keep one.
    fn cache_stats(&self) -> Option<CacheStats> {
        None
    }
}

/// What listing a probe's roots in a checkout found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Roots {
    /// The roots, each an instance.
    pub roots: Vec<String>,
    /// Root patterns that matched nothing while others matched, each at its
    /// key (`roots[1]`): `validate` reports them as errors, and every run
    /// of the probe carries them as warnings, so a renamed stack is never
    /// silently unwatched.
    pub unmatched: Vec<FieldError>,
}

impl Roots {
    /// The one root "" of a single-root layer.
    pub fn single() -> Roots {
        Roots {
            roots: vec![String::new()],
            unmatched: Vec::new(),
        }
    }

    /// The unmatched patterns as run warnings (`roots[1]: "stacks/*" …`).
    pub fn warnings(&self) -> Vec<String> {
        self.unmatched
            .iter()
            .map(|problem| format!("{}: {}", problem.key, problem.message))
            .collect()
    }
}

/// A path a probe's config names inside the checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPath {
    /// The key that names it, relative to the probe table, as
    /// [`FieldError`] keys are: `var_files[0]`, `inventory`, `render[2]`.
    pub key: String,
    /// As a person finds it: relative to the probe's path, with the root
    /// when the layer reads it per root (`envs/a/prod.tfvars`).
    pub shown: String,
    /// Where it is in the checkout; `None` without a checkout at hand.
    pub full: Option<PathBuf>,
    pub kind: PathKind,
}

/// What a [`RepoPath`] must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    File,
    Directory,
    /// A file or a directory (an Ansible inventory).
    Entry,
    /// An executable file (a program run from the checkout).
    Program,
}

impl RepoPath {
    /// `key` naming `written` (relative to `base`, a directory relative to
    /// the probe's path), resolved under `probe_dir` when there is one.
    pub fn new(
        key: impl Into<String>,
        probe_dir: Option<&Path>,
        base: &Path,
        written: &str,
        kind: PathKind,
    ) -> RepoPath {
        let relative: PathBuf = base
            .join(written)
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        RepoPath {
            key: key.into(),
            shown: relative.display().to_string(),
            full: probe_dir.map(|dir| dir.join(&relative)),
            kind,
        }
    }

    /// It relative to the repository root, for a probe at `probe_path`.
    pub fn in_repo(&self, probe_path: &Path) -> String {
        probe_path.join(&self.shown).display().to_string()
    }

    /// What is wrong with it in the checkout of a probe at `probe_path`, if
    /// anything (`None` when it is fine or there is no checkout to look in).
    pub fn problem(&self, probe_path: &Path) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        let full = self.full.as_ref()?;
        let shown = self.in_repo(probe_path);
        let missing = || Some(format!("{shown:?} does not exist in the checkout"));
        let Ok(meta) = std::fs::metadata(full) else {
            return missing();
        };
        match self.kind {
            PathKind::File if !meta.is_file() => {
                Some(format!("{shown:?} is not a file in the checkout"))
            }
            PathKind::Directory if !meta.is_dir() => Some(format!(
                "{:?} is not a directory in the checkout",
                self.shown
            )),
            PathKind::Program if !meta.is_file() => {
                Some(format!("{shown:?} is not a file in the checkout"))
            }
            PathKind::Program if meta.permissions().mode() & 0o111 == 0 => Some(format!(
                "{shown:?} is not executable; make it so (chmod +x) and commit that"
            )),
            _ => None,
        }
    }
}

/// The paths a render argv (run in the probe's path) names in the
/// checkout: a program run from it, and the kustomization directory of
/// `kubectl kustomize DIR` or `kustomize build DIR`.
pub fn render_paths(render: &[String], probe_dir: Option<&Path>) -> Vec<RepoPath> {
    let here = Path::new("");
    let mut paths = Vec::new();
    let Some(program) = render.first() else {
        return paths;
    };
    if program.contains('/') && Path::new(program).is_relative() {
        paths.push(RepoPath::new(
            "render[0]",
            probe_dir,
            here,
            program,
            PathKind::Program,
        ));
    }
    let name = Path::new(program).file_name().and_then(|n| n.to_str());
    let subcommand = render.get(1).map(String::as_str);
    if matches!(
        (name, subcommand),
        (Some("kubectl"), Some("kustomize")) | (Some("kustomize"), Some("build"))
    ) {
        // Only an unambiguous one: with flag values among the arguments
        // (`--load-restrictor X dir`) which word is the directory is a guess.
        let operands: Vec<(usize, &String)> = render
            .iter()
            .enumerate()
            .skip(2)
            .filter(|(_, arg)| !arg.starts_with('-'))
            .collect();
        if let [(index, dir)] = operands[..] {
            if Path::new(dir).is_relative() && !dir.contains("://") {
                let key = format!("render[{index}]");
                paths.push(RepoPath::new(
                    key,
                    probe_dir,
                    here,
                    dir,
                    PathKind::Directory,
                ));
            }
        }
    }
    paths
}

/// Health of a probe's watch-fed live-state cache.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CacheStats {
    /// Objects held (whole or metadata-only).
    pub objects: usize,
    /// Watched (resource type, namespace) scopes.
    pub scopes: usize,
    /// Re-lists and reconnects after watch errors or expiry, over the daemon's life.
    pub restarts: u64,
    /// Since the newest watch event of any scope; None before the first.
    pub last_event_age: Option<Duration>,
    /// A check has run and every scope has finished its first sync attempt.
    pub settled: bool,
}

/// What a run may look at. Paths are absolute.
#[derive(Debug, Clone)]
pub struct ProbeContext {
    /// The probe's configured name.
    pub name: String,
    /// The root this run covers ("" for single-root layers).
    pub root: String,
    /// The checked-out revision's top directory (never changes during a run).
    pub checkout: PathBuf,
    /// `checkout/<probe path>/<root>`: where the probe's files are.
    pub workdir: PathBuf,
    /// Full commit id of the checkout ("" when the repo is a plain directory).
    pub commit: String,
    /// Fires on shutdown; probes pass it to every child process.
    pub cancel: CancellationToken,
    /// When the run's timeout expires.
    pub deadline: Instant,
    /// A directory this probe may keep caches in across runs (plugin caches, …).
    pub cache_dir: PathBuf,
    /// A fresh temporary directory for this run only, removed afterwards.
    pub scratch_dir: PathBuf,
    /// How long a killed child gets between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// The key hidden values enter fingerprints under.
    pub fingerprint_key: Arc<fingerprint::FingerprintKey>,
}

impl ProbeContext {
    /// `path` (under the checkout) relative to the repository root with `/`
    /// separators, for `ResourceChange::declared_at`; None outside the checkout.
    pub fn repo_relative(&self, path: &std::path::Path) -> Option<String> {
        let relative = path.strip_prefix(&self.checkout).ok().or_else(|| {
            let checkout = self.checkout.canonicalize().ok()?;
            path.strip_prefix(checkout).ok()
        })?;
        let mut parts: Vec<String> = Vec::new();
        for component in relative.components() {
            match component {
                std::path::Component::Normal(part) => {
                    parts.push(part.to_string_lossy().into_owned())
                }
                std::path::Component::CurDir => {}
                _ => return None,
            }
        }
        (!parts.is_empty()).then(|| parts.join("/"))
    }

    /// A command that runs in the probe's workdir with the run's kill grace.
    pub fn command(&self, program: impl Into<std::ffi::OsString>) -> Command {
        Command::new(program)
            .current_dir(&self.workdir)
            .grace(self.kill_grace)
    }

    /// Runs a command under this run's deadline and cancellation.
    pub async fn exec(&self, command: Command) -> Result<process::Output, ProbeError> {
        command
            .run(&self.cancel, self.deadline)
            .await
            .map_err(ProbeError::from)
    }
}

/// The fields every probe has, already validated, as the layers' `build`
/// functions see them (the layer's own fields come separately as a table).
pub type ProbeCommon = crate::config::ProbeSpec;

use crate::config::schema::TableSchema;
pub use crate::config::FieldError;

pub type BuildFn = fn(&ProbeCommon, toml::Table) -> Result<Arc<dyn Probe>, Vec<FieldError>>;

/// The layers driftwatch knows. One line per layer.
pub fn builder(layer: &str) -> Option<BuildFn> {
    match layer {
        "command" => Some(command::build),
        "kubernetes" => Some(kubernetes::build),
        "terraform" => Some(terraform::build),
        "ansible" => Some(ansible::build),
        _ => None,
    }
}

pub const LAYERS: &[&str] = &["command", "kubernetes", "terraform", "ansible"];

/// Each layer's config tables, for the configuration reference: its own
/// `[[probe]]` keys first, then the tables they hold (ignore rules). One line
/// per layer, as in [`builder`].
pub fn config_tables(layer: &str) -> Option<Vec<TableSchema>> {
    match layer {
        "command" => Some(vec![TableSchema::of::<command::CommandConfig>()]),
        "kubernetes" => Some(vec![
            TableSchema::of::<kubernetes::config::KubernetesConfig>(),
            TableSchema::of::<kubernetes::ignore::IgnoreRuleConfig>(),
        ]),
        "terraform" => Some(vec![
            TableSchema::of::<terraform::config::TerraformConfig>(),
            TableSchema::of::<terraform::ignore::IgnoreRuleConfig>(),
        ]),
        "ansible" => Some(vec![
            TableSchema::of::<ansible::config::AnsibleConfig>(),
            TableSchema::of::<ansible::ignore::IgnoreRuleConfig>(),
        ]),
        _ => None,
    }
}

/// Builds the running probe for a validated spec.
pub fn build(spec: &ProbeSpec) -> Result<Arc<dyn Probe>, Vec<FieldError>> {
    let Some(build) = builder(&spec.layer) else {
        return Err(vec![FieldError::new(
            "layer",
            format!(
                "unknown layer {:?}; known layers: {}",
                spec.layer,
                LAYERS.join(", ")
            ),
        )]);
    };
    build(spec, spec.fields.clone())
}

/// The real layers, for the config loader.
pub struct Layers;

impl crate::config::LayerCatalog for Layers {
    fn names(&self) -> &[&'static str] {
        LAYERS
    }

    fn check(&self, spec: &ProbeSpec) -> Result<(), Vec<FieldError>> {
        build(spec).map(drop)
    }
}

/// A file on this host that a probe names (`env_files`, `cli_config_file`),
/// checked when the config loads so a missing one is reported at its line.
pub fn check_host_file(key: impl Into<String>, path: &Path) -> Option<FieldError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Some(FieldError::new(
            key,
            format!("{} is a directory, not a file", path.display()),
        )),
        Ok(_) => None,
        Err(err) => Some(FieldError::new(
            key,
            format!("cannot read {}: {err}", path.display()),
        )),
    }
}

/// A file a probe names inside its repo, relative to `dir` (a directory
/// relative to the probe's path). Only a `path` repo can be checked at load
/// time; a remote repo's files are checked when they are checked out.
pub fn check_repo_file(
    spec: &ProbeSpec,
    dir: &Path,
    key: impl Into<String>,
    file: &str,
) -> Option<FieldError> {
    let repo_dir = spec.repo_dir.as_ref()?;
    let path = Path::new(file);
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        let relative: PathBuf = dir
            .join(path)
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        repo_dir.join(&spec.path).join(relative)
    };
    if full.is_file() {
        return None;
    }
    Some(FieldError::new(
        key,
        format!("{} does not exist in repo {:?}", full.display(), spec.repo),
    ))
}

/// A bare program name (no `/`) must be found on PATH.
pub fn check_on_path(key: impl Into<String>, program: &str) -> Option<FieldError> {
    if program.contains('/') || command::find_on_path(program).is_some() {
        return None;
    }
    Some(FieldError::new(
        key,
        format!("program {program:?} is not on PATH; give its full path, or ./name for a script in the repo"),
    ))
}

/// Deserializes a layer's own fields into its config struct (which should use
/// `deny_unknown_fields`), reporting the failing key path.
pub fn parse_fields<T: DeserializeOwned>(fields: toml::Table) -> Result<T, Vec<FieldError>> {
    let value = toml::Value::Table(fields);
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let key = if path == "." { String::new() } else { path };
        // The message alone: toml's Display adds "in `key`" on lines of its
        // own, and the key is already part of the location.
        vec![FieldError::new(
            key,
            err.into_inner().message().trim().to_string(),
        )]
    })
}
