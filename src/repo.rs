//! Repo sync: clone once into the state directory, fetch on the poll
//! interval, and check every new commit out into its own directory so a
//! running probe never sees files change under it. git2 is blocking, so all
//! of it runs under `spawn_blocking`.
//!
//! API contract used by the scheduler (implementation in progress):
//! - `Repo::new(config, state_dir)`
//! - `Repo::sync().await -> Result<SyncOutcome, RepoError>`: fetch; when the
//!   ref moved (or on first sync), check the new commit out and return it with
//!   the paths changed since the previous commit. A failed sync keeps the
//!   previous checkout current.
//! - `Repo::current() -> Option<Arc<Checkout>>`: the checkout runs should use.
//!   Runs hold the `Arc` while they run; a checkout directory is removed when
//!   it is neither current nor held by any run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::RepoConfig;

/// One checked-out commit.
#[derive(Debug)]
pub struct Checkout {
    /// Full commit id ("" when the repo is a plain directory that is not a git work tree).
    pub commit: String,
    /// Top directory of the checked-out tree.
    pub dir: PathBuf,
    /// Commit time, seconds since the epoch (0 when unknown).
    pub commit_time: i64,
    /// Whether `dir` is ours to delete when the checkout is dropped.
    pub owned: bool,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// What changed between the previous checkout and the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangedPaths {
    /// First sync, or the diff could not be computed: treat everything as changed.
    All,
    /// Paths (relative to the repo top) added, modified, deleted or renamed.
    Paths(Vec<PathBuf>),
}

impl ChangedPaths {
    /// True when a change touches `prefix` (a probe's path; "" is the whole repo).
    pub fn touches(&self, prefix: &Path) -> bool {
        match self {
            ChangedPaths::All => true,
            ChangedPaths::Paths(paths) => {
                prefix.as_os_str().is_empty() || paths.iter().any(|p| p.starts_with(prefix))
            }
        }
    }
}

/// The result of a successful sync.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    pub checkout: Arc<Checkout>,
    /// `None` when the commit did not change since the previous sync.
    pub changed: Option<ChangedPaths>,
}

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// Message is already redacted (no credentials).
    #[error("repo {repo}: fetch failed: {message}")]
    Fetch { repo: String, message: String },
    #[error("repo {repo}: {message}")]
    Checkout { repo: String, message: String },
}

impl RepoError {
    pub fn reason(&self) -> &'static str {
        match self {
            RepoError::Fetch { .. } => "fetch",
            RepoError::Checkout { .. } => "checkout",
        }
    }
}

/// One configured repository and its checkouts.
pub struct Repo {
    pub config: RepoConfig,
    state_dir: PathBuf,
    current: std::sync::Mutex<Option<Arc<Checkout>>>,
}

impl Repo {
    pub fn new(config: RepoConfig, state_dir: &Path) -> Repo {
        Repo {
            config,
            state_dir: state_dir.to_path_buf(),
            current: std::sync::Mutex::new(None),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn current(&self) -> Option<Arc<Checkout>> {
        self.current.lock().unwrap().clone()
    }

    pub async fn sync(&self) -> Result<SyncOutcome, RepoError> {
        let _ = &self.state_dir;
        Err(RepoError::Fetch {
            repo: self.config.name.clone(),
            message: "not implemented yet".to_string(),
        })
    }
}
