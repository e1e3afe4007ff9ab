//! The [`Probe`] trait and the [`ProbeContext`] a run gets: what every layer
//! implements and reads, in a file of its own so the layers import it
//! without importing the table that builds them.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::repo_path::RepoPath;
use crate::config::FieldError;
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
    fn roots(&self, _probe_dir: &Path) -> Result<Vec<String>, ProbeError> {
        Ok(vec![String::new()])
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

/// A layer's `build`: the common fields and the layer's own table to a
/// running probe, or every field problem found.
pub type BuildFn = fn(&ProbeCommon, toml::Table) -> Result<Arc<dyn Probe>, Vec<FieldError>>;
