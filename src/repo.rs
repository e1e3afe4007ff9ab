//! Repo sync: clone once into the state directory, fetch on the poll
//! interval, and check every new commit out into its own directory so a
//! running probe never sees files change under it. git2 is blocking, so all
//! of it runs under `spawn_blocking`.
//!
//! API contract used by the scheduler:
//! - `Repo::new(config, state_dir)`
//! - `Repo::sync().await -> Result<SyncOutcome, RepoError>`: fetch; when the
//!   ref moved (or on first sync), check the new commit out and return it with
//!   the paths changed since the previous commit. A failed sync keeps the
//!   previous checkout current.
//! - `Repo::current() -> Option<Arc<Checkout>>`: the checkout runs should use.
//!   Runs hold the `Arc` while they run; a checkout directory is removed when
//!   it is neither current nor held by any run.
//!
//! Layout under the state directory:
//! - `repos/<name>.git`: a bare repository that only ever receives the
//!   configured ref (as `refs/driftwatch/target`). The URL is never written to
//!   its config (an anonymous remote is used), so credentials stay off disk.
//! - `checkouts/<name>/<commit>`: one directory per checked-out commit. What is
//!   left there by an earlier process is removed on the first sync.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{redacted_url, RepoAuth, RepoConfig, RepoSource};

mod known_hosts;

/// The local ref the configured branch/ref is fetched into.
const TARGET_REF: &str = "refs/driftwatch/target";

/// libgit2's connect timeout, for every transport (git://, http(s), ssh).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// libgit2's timeout on each read or write of a connection: a remote that
/// accepts and then never answers fails here, not never.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// A fetch whose transfer has not moved for this long is given up.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Sets libgit2's connect and I/O timeouts (process-wide, once).
pub fn set_transport_timeouts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: libgit2 reads these options when a connection opens; they
        // are set once, before this process's first fetch.
        unsafe {
            if let Err(err) = git2::opts::set_server_connect_timeout_in_milliseconds(
                CONNECT_TIMEOUT.as_millis() as libc::c_int,
            ) {
                tracing::warn!(error = %err, "cannot set the git connect timeout");
            }
            if let Err(err) = git2::opts::set_server_timeout_in_milliseconds(
                IO_TIMEOUT.as_millis() as libc::c_int
            ) {
                tracing::warn!(error = %err, "cannot set the git I/O timeout");
            }
        }
    });
}

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

impl Checkout {
    /// The first 12 characters of the commit id, for logs and labels.
    pub fn short_commit(&self) -> &str {
        short(&self.commit)
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if self.owned {
            if let Err(error) = std::fs::remove_dir_all(&self.dir) {
                if error.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %self.dir.display(), %error, "could not remove old checkout");
                }
            } else {
                tracing::debug!(dir = %self.dir.display(), "removed old checkout");
            }
            let _ = std::fs::remove_file(owner_marker(&self.dir));
        }
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
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
                let prefix = normalize(prefix);
                prefix.as_os_str().is_empty() || paths.iter().any(|p| p.starts_with(&prefix))
            }
        }
    }
}

/// Drops `.` components so `./infra` matches `infra/main.tf`.
fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
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
    /// The whole sync took longer than `sync_timeout` and was abandoned.
    #[error("repo {repo}: sync of {url} did not finish within {after:?}; abandoned (will retry)")]
    Timeout {
        repo: String,
        /// Redacted.
        url: String,
        after: Duration,
    },
    /// A sync abandoned earlier is still stuck in the network; no new one starts beside it.
    #[error("repo {repo}: an earlier sync of {url} is still hanging; not starting another")]
    StillHanging { repo: String, url: String },
    /// Shutdown came first.
    #[error("repo {repo}: sync abandoned at shutdown")]
    Abandoned { repo: String },
}

impl RepoError {
    pub fn reason(&self) -> &'static str {
        match self {
            RepoError::Fetch { .. } => "fetch",
            RepoError::Checkout { .. } => "checkout",
            RepoError::Timeout { .. } | RepoError::StillHanging { .. } => "timeout",
            RepoError::Abandoned { .. } => "shutdown",
        }
    }
}

/// One configured repository and its checkouts.
pub struct Repo {
    pub config: RepoConfig,
    state_dir: PathBuf,
    current: Mutex<Option<Arc<Checkout>>>,
    /// Serializes syncs of this repo (the scheduler's poll and a manual sync).
    sync_lock: tokio::sync::Mutex<()>,
    /// True while a blocking sync thread runs, even one whose sync was
    /// abandoned at its deadline (a thread cannot be killed).
    in_flight: Arc<std::sync::atomic::AtomicBool>,
}

impl Repo {
    pub fn new(config: RepoConfig, state_dir: &Path) -> Repo {
        Repo {
            config,
            state_dir: state_dir.to_path_buf(),
            current: Mutex::new(None),
            sync_lock: tokio::sync::Mutex::new(()),
            in_flight: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The URL or path to show in logs and the API (credentials redacted).
    pub fn display_source(&self) -> String {
        match &self.config.source {
            RepoSource::Remote { url, .. } => redacted_url(url),
            RepoSource::Path(dir) => dir.display().to_string(),
        }
    }

    pub fn current(&self) -> Option<Arc<Checkout>> {
        self.current.lock().unwrap().clone()
    }

    /// Fetches (or re-reads a path source) and, when the commit moved, checks
    /// the new commit out and makes it current. On error the previous checkout
    /// stays current.
    pub async fn sync(&self) -> Result<SyncOutcome, RepoError> {
        let _serialized = self.sync_lock.lock().await;
        let previous = self.current();
        let config = self.config.clone();
        let state_dir = self.state_dir.clone();
        let name = self.config.name.clone();
        let prev = previous.clone();
        set_transport_timeouts();
        let timeout = self.config.sync_timeout;
        let deadline = Instant::now() + timeout;
        if self
            .in_flight
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return Err(RepoError::StillHanging {
                repo: name,
                url: self.display_source(),
            });
        }
        let in_flight = InFlight(self.in_flight.clone());
        let task = tokio::task::spawn_blocking(move || {
            let _in_flight = in_flight;
            match &config.source {
                RepoSource::Remote {
                    url,
                    reference,
                    auth,
                } => sync_remote(
                    &config.name,
                    url,
                    reference,
                    auth,
                    &state_dir,
                    prev.as_deref(),
                    deadline,
                ),
                RepoSource::Path(dir) => sync_path(&config.name, dir, prev.as_deref()),
            }
        });
        // Past the deadline the thread is left to libgit2's own timeouts;
        // the sync counts as failed now.
        let result = match tokio::time::timeout(timeout, task).await {
            Ok(joined) => joined.map_err(|join| RepoError::Checkout {
                repo: name.clone(),
                message: format!("sync task failed: {join}"),
            })?,
            Err(_) => {
                return Err(RepoError::Timeout {
                    repo: name,
                    url: self.display_source(),
                    after: timeout,
                })
            }
        };
        match result? {
            Step::Unchanged => {
                let checkout = previous.expect("unchanged implies a previous checkout");
                tracing::debug!(repo = %name, commit = checkout.short_commit(), "no new commit");
                Ok(SyncOutcome {
                    checkout,
                    changed: None,
                })
            }
            Step::New { checkout, changed } => {
                let checkout = Arc::new(checkout);
                tracing::info!(
                    repo = %name,
                    commit = checkout.short_commit(),
                    previous = previous.as_ref().map(|p| p.short_commit()).unwrap_or(""),
                    "new commit checked out"
                );
                *self.current.lock().unwrap() = Some(checkout.clone());
                Ok(SyncOutcome {
                    checkout,
                    changed: Some(changed),
                })
            }
        }
    }
}

/// Clears the repo's in-flight flag when its blocking sync thread ends.
struct InFlight(Arc<std::sync::atomic::AtomicBool>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// What a blocking sync found.
enum Step {
    Unchanged,
    New {
        checkout: Checkout,
        changed: ChangedPaths,
    },
}

// ---------------------------------------------------------------------------
// Remote repositories

fn sync_remote(
    name: &str,
    url: &str,
    reference: &str,
    auth: &RepoAuth,
    state_dir: &Path,
    previous: Option<&Checkout>,
    deadline: Instant,
) -> Result<Step, RepoError> {
    let scrub = Scrubber::new(url, auth);
    let fetch_error = |message: String| RepoError::Fetch {
        repo: name.to_string(),
        message: scrub.clean(&message),
    };
    let checkout_error = |message: String| RepoError::Checkout {
        repo: name.to_string(),
        message: scrub.clean(&message),
    };

    let git_dir = state_dir.join("repos").join(format!("{name}.git"));
    let repo = open_or_init_bare(&git_dir)
        .map_err(|e| checkout_error(format!("{}: {e}", git_dir.display())))?;

    fetch(&repo, url, reference, auth, deadline)
        .map_err(|e| fetch_error(e.message().to_string()))?;

    let target = repo
        .find_reference(TARGET_REF)
        .and_then(|r| r.peel_to_commit())
        .map_err(|e| fetch_error(format!("{reference}: {}", e.message())))?;
    let commit_id = target.id().to_string();

    if let Some(previous) = previous {
        if previous.commit == commit_id && previous.owned {
            return Ok(Step::Unchanged);
        }
    }

    let checkouts = state_dir.join("checkouts").join(name);
    if previous.is_none() {
        // Whatever an earlier process left behind is no longer in use.
        remove_leftovers(&checkouts);
    }
    std::fs::create_dir_all(&checkouts)
        .map_err(|e| checkout_error(format!("{}: {e}", checkouts.display())))?;
    let dir = write_checkout(&repo, &target, &checkouts).map_err(checkout_error)?;
    let checkout = Checkout {
        commit: commit_id,
        dir,
        commit_time: target.time().seconds(),
        owned: true,
    };

    let changed = match previous {
        None => ChangedPaths::All,
        Some(previous) => match git2::Oid::from_str(&previous.commit) {
            Ok(old) => diff_commits(&repo, old, target.id()).unwrap_or(ChangedPaths::All),
            Err(_) => ChangedPaths::All,
        },
    };
    Ok(Step::New { checkout, changed })
}

fn open_or_init_bare(git_dir: &Path) -> Result<git2::Repository, git2::Error> {
    match git2::Repository::open_bare(git_dir) {
        Ok(repo) => Ok(repo),
        Err(_) => {
            if git_dir.exists() {
                tracing::warn!(dir = %git_dir.display(), "local mirror is unusable; cloning afresh");
                let _ = std::fs::remove_dir_all(git_dir);
            }
            if let Some(parent) = git_dir.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            git2::Repository::init_bare(git_dir)
        }
    }
}

/// The refspec that fetches just the configured branch or ref.
fn refspec(reference: &str) -> String {
    let source = if reference.starts_with("refs/") {
        reference.to_string()
    } else {
        format!("refs/heads/{reference}")
    };
    format!("+{source}:{TARGET_REF}")
}

fn fetch(
    repo: &git2::Repository,
    url: &str,
    reference: &str,
    auth: &RepoAuth,
    deadline: Instant,
) -> Result<(), git2::Error> {
    // Anonymous: the URL (which may hold credentials) is not saved in the mirror's config.
    let mut remote = repo.remote_anonymous(url)?;
    let mut callbacks = git2::RemoteCallbacks::new();
    let rejection = install_auth(&mut callbacks, url, auth);
    // Give up when the transfer stalls or the sync's deadline passes
    // (returning false makes libgit2 abort the fetch).
    let stopped = std::rc::Rc::new(std::cell::Cell::new(None::<&'static str>));
    let mut last = (0usize, Instant::now());
    let progress_stop = stopped.clone();
    callbacks.transfer_progress(move |progress| {
        let now = Instant::now();
        let moved =
            progress.received_bytes() + progress.indexed_objects() + progress.indexed_deltas();
        if moved != last.0 {
            last = (moved, now);
        }
        let verdict = if now >= deadline {
            Some("the sync deadline (sync_timeout) passed during the transfer")
        } else if now.duration_since(last.1) >= STALL_TIMEOUT {
            Some("the transfer stalled")
        } else {
            None
        };
        progress_stop.set(verdict);
        verdict.is_none()
    });
    let sideband_stop = stopped.clone();
    callbacks.sideband_progress(move |_| {
        let late = Instant::now() >= deadline;
        if late {
            sideband_stop.set(Some(
                "the sync deadline (sync_timeout) passed during the transfer",
            ));
        }
        !late
    });
    let mut options = git2::FetchOptions::new();
    options
        .remote_callbacks(callbacks)
        .download_tags(git2::AutotagOption::None)
        .update_fetchhead(false);
    let mut proxy = git2::ProxyOptions::new();
    proxy.auto();
    options.proxy_options(proxy);
    if let Err(error) = remote.fetch(&[refspec(reference)], Some(&mut options), None) {
        // libgit2 replaces a callback's message with a generic one; ours says what to do.
        return Err(match (rejection.take(), stopped.get()) {
            (Some(message), _) => git2::Error::from_str(&message),
            (None, Some(reason)) => git2::Error::from_str(reason),
            (None, None) => error,
        });
    }
    // The ref may have vanished upstream; fetch then leaves our old ref, so
    // check the remote advertised it.
    let advertised = remote.list()?.iter().any(|head| {
        let wanted = refspec(reference);
        let source = wanted
            .trim_start_matches('+')
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        head.name() == source
    });
    if !advertised {
        return Err(git2::Error::from_str(&format!(
            "the remote has no ref {reference:?}"
        )));
    }
    Ok(())
}

/// Sets the credentials and host key callbacks. The returned cell receives
/// the reason when a callback refuses, since libgit2 does not keep it.
fn install_auth<'a>(
    callbacks: &mut git2::RemoteCallbacks<'a>,
    url: &str,
    auth: &'a RepoAuth,
) -> std::rc::Rc<std::cell::Cell<Option<String>>> {
    let rejection = std::rc::Rc::new(std::cell::Cell::new(None));
    let mut attempts = 0;
    let auth_for_credentials = auth;
    let credentials_rejection = rejection.clone();
    callbacks.credentials(move |_url, username_from_url, allowed| {
        // libgit2 calls again after a rejected credential; stop instead of looping.
        attempts += 1;
        if attempts > 1 {
            let message = "authentication failed: the remote rejected the configured credentials";
            credentials_rejection.set(Some(message.to_string()));
            return Err(git2::Error::from_str(message));
        }
        match auth_for_credentials {
            RepoAuth::Token { username, token } if allowed.contains(git2::CredentialType::USER_PASS_PLAINTEXT) => {
                git2::Cred::userpass_plaintext(username, token)
            }
            RepoAuth::Ssh { username, key_file, passphrase, .. } => {
                if allowed.contains(git2::CredentialType::USERNAME) {
                    attempts -= 1;
                    return git2::Cred::username(username);
                }
                git2::Cred::ssh_key(username_from_url.unwrap_or(username), None, key_file, passphrase.as_deref())
            }
            _ => Err(git2::Error::from_str(
                "the remote asks for credentials but none are configured (set auth in the [[repo]] section)",
            )),
        }
    });
    if let RepoAuth::Ssh {
        known_hosts_file, ..
    } = auth
    {
        // Without a configured file, the user's own (like `ssh` itself).
        let known_hosts = known_hosts_file.clone().or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".ssh/known_hosts"))
        });
        if let Some(known_hosts) = known_hosts {
            let port = url_port(url);
            let host_key_rejection = rejection.clone();
            callbacks.certificate_check(move |cert, hostname| {
                known_hosts::check(&known_hosts, cert, hostname, port).inspect_err(|error| {
                    host_key_rejection.set(Some(error.message().to_string()));
                })
            });
        }
    }
    rejection
}

/// The port of an `ssh://host:port/` URL, when one is given.
fn url_port(url: &str) -> Option<u16> {
    crate::repo_url::RepoUrl::parse(url).ok()?.port()
}

/// Writes `commit`'s tree into a fresh directory under `checkouts`, atomically
/// (a temporary directory renamed into place), and returns its path.
fn write_checkout(
    repo: &git2::Repository,
    commit: &git2::Commit<'_>,
    checkouts: &Path,
) -> Result<PathBuf, String> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let id = commit.id().to_string();
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let temporary = checkouts.join(format!(".tmp-{pid}-{sequence}"));
    let _ = std::fs::remove_dir_all(&temporary);
    std::fs::create_dir_all(&temporary).map_err(|e| format!("{}: {e}", temporary.display()))?;

    let result = (|| {
        let mut builder = git2::build::CheckoutBuilder::new();
        builder
            .target_dir(&temporary)
            .force()
            .update_index(false)
            .recreate_missing(true);
        repo.checkout_tree(commit.as_object(), Some(&mut builder))
            .map_err(|e| format!("checking out {}: {}", short(&id), e.message()))?;
        // A commit can be checked out again while an older copy of it is still
        // held by a run (A → B → A): never reuse that directory.
        let mut dir = checkouts.join(&id);
        if dir.exists() {
            dir = checkouts.join(format!("{id}-{pid}-{sequence}"));
        }
        // Marks the directory as this process's, so another process sharing
        // the state directory (a `check` next to the daemon) leaves it alone.
        let marker = owner_marker(&dir);
        std::fs::write(&marker, pid.to_string())
            .map_err(|e| format!("{}: {e}", marker.display()))?;
        if let Err(e) = std::fs::rename(&temporary, &dir) {
            let _ = std::fs::remove_file(&marker);
            return Err(format!("{}: {e}", dir.display()));
        }
        Ok(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&temporary);
    }
    result
}

/// `<dir>.owner`: the pid of the process a checkout directory belongs to.
fn owner_marker(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".owner");
    dir.with_file_name(name)
}

/// True when `pid` is a live process other than this one.
fn alive_elsewhere(pid: u32) -> bool {
    if pid == std::process::id() {
        // Ours, from another `Repo` of the same name: still in use.
        return true;
    }
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// Removes checkouts (and half-written ones) left by processes that are gone.
fn remove_leftovers(checkouts: &Path) {
    let Ok(entries) = std::fs::read_dir(checkouts) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".owner") {
            let dir = path.with_file_name(name.trim_end_matches(".owner"));
            let owner = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse().ok());
            if !dir.exists() && !owner.is_some_and(alive_elsewhere) {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        let owner: Option<u32> = match name.strip_prefix(".tmp-") {
            Some(rest) => rest.split('-').next().and_then(|pid| pid.parse().ok()),
            None => std::fs::read_to_string(owner_marker(&path))
                .ok()
                .and_then(|text| text.trim().parse().ok()),
        };
        if owner.is_some_and(alive_elsewhere) {
            continue;
        }
        tracing::debug!(dir = %path.display(), "removing checkout left by an earlier run");
        let result = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        let _ = std::fs::remove_file(owner_marker(&path));
        if let Err(error) = result {
            tracing::warn!(dir = %path.display(), %error, "could not remove leftover checkout");
        }
    }
}

/// Paths touched between two commits, both sides of renames included (a
/// rename shows up as a delete plus an add, which names both paths).
fn diff_commits(
    repo: &git2::Repository,
    old: git2::Oid,
    new: git2::Oid,
) -> Result<ChangedPaths, git2::Error> {
    let old_tree = repo.find_commit(old)?.tree()?;
    let new_tree = repo.find_commit(new)?.tree()?;
    let mut options = git2::DiffOptions::new();
    options.include_typechange(true).ignore_submodules(false);
    let diff = repo.diff_tree_to_tree(Some(&old_tree), Some(&new_tree), Some(&mut options))?;
    let mut paths: Vec<PathBuf> = Vec::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(path) = file.path() {
                paths.push(path.to_path_buf());
            }
        }
    }
    paths.sort();
    paths.dedup();
    Ok(ChangedPaths::Paths(paths))
}

/// Removes credentials from git2's error messages, which may quote the URL.
struct Scrubber {
    url: String,
    redacted: String,
    secrets: Vec<String>,
}

impl Scrubber {
    fn new(url: &str, auth: &RepoAuth) -> Scrubber {
        let mut secrets = Vec::new();
        if let Ok(parsed) = crate::repo_url::RepoUrl::parse(url) {
            secrets.extend(parsed.secret_spellings());
        }
        match auth {
            RepoAuth::Token { token, .. } => secrets.push(token.clone()),
            RepoAuth::Ssh {
                passphrase: Some(passphrase),
                ..
            } => secrets.push(passphrase.clone()),
            _ => {}
        }
        secrets.retain(|s| !s.is_empty());
        // Longest first, so a password inside a userinfo is not half-replaced.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Scrubber {
            url: url.to_string(),
            redacted: redacted_url(url),
            secrets,
        }
    }

    fn clean(&self, message: &str) -> String {
        let mut message = message.replace(&self.url, &self.redacted);
        for secret in &self.secrets {
            message = message.replace(secret.as_str(), "***");
        }
        message
    }
}

// ---------------------------------------------------------------------------
// Directories kept in sync by someone else

fn sync_path(name: &str, dir: &Path, previous: Option<&Checkout>) -> Result<Step, RepoError> {
    let error = |message: String| RepoError::Checkout {
        repo: name.to_string(),
        message,
    };
    // Resolved every time: a git-sync sidecar swaps a symlink to publish a commit.
    let resolved =
        std::fs::canonicalize(dir).map_err(|e| error(format!("path {}: {e}", dir.display())))?;
    if !resolved.is_dir() {
        return Err(error(format!("path {} is not a directory", dir.display())));
    }
    let repo = git2::Repository::discover(&resolved).ok();
    let head = repo
        .as_ref()
        .and_then(|r| r.head().ok())
        .and_then(|h| h.peel_to_commit().ok())
        .map(|c| (c.id(), c.time().seconds()));
    let commit = head.map(|(id, _)| id.to_string()).unwrap_or_default();

    let changed = match previous {
        None => ChangedPaths::All,
        Some(previous) if previous.dir == resolved && previous.commit == commit => {
            return Ok(Step::Unchanged)
        }
        Some(previous) => match (&repo, head, git2::Oid::from_str(&previous.commit)) {
            (Some(repo), Some((new, _)), Ok(old)) => diff_commits(repo, old, new)
                .map(|changed| relative_to(changed, repo, &resolved))
                .unwrap_or(ChangedPaths::All),
            _ => ChangedPaths::All,
        },
    };
    Ok(Step::New {
        checkout: Checkout {
            commit,
            dir: resolved,
            commit_time: head.map(|(_, time)| time).unwrap_or(0),
            owned: false,
        },
        changed,
    })
}

/// Diff paths are relative to the work tree's top; the configured path may be
/// a directory inside it, and probe paths are relative to that directory.
fn relative_to(changed: ChangedPaths, repo: &git2::Repository, dir: &Path) -> ChangedPaths {
    let ChangedPaths::Paths(paths) = changed else {
        return changed;
    };
    let Some(top) = repo.workdir().and_then(|w| std::fs::canonicalize(w).ok()) else {
        return ChangedPaths::All;
    };
    let Ok(inside) = dir.strip_prefix(&top) else {
        return ChangedPaths::All;
    };
    ChangedPaths::Paths(
        paths
            .into_iter()
            .filter_map(|p| p.strip_prefix(inside).ok().map(Path::to_path_buf))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touches_matches_whole_components() {
        let changed = ChangedPaths::Paths(vec![PathBuf::from("a/x.tf"), PathBuf::from("bc/y")]);
        assert!(changed.touches(Path::new("a")));
        assert!(changed.touches(Path::new("./a")));
        assert!(changed.touches(Path::new("")));
        assert!(!changed.touches(Path::new("b")));
        assert!(changed.touches(Path::new("bc")));
        assert!(ChangedPaths::All.touches(Path::new("anything")));
        assert!(!ChangedPaths::Paths(vec![]).touches(Path::new("a")));
    }

    #[test]
    fn scrubber_removes_userinfo_and_tokens() {
        let auth = RepoAuth::Token {
            username: "x-access-token".into(),
            token: "tok123".into(),
        };
        let scrub = Scrubber::new("https://user:secret@example.com/r.git", &auth);
        let cleaned = scrub
            .clean("failed https://user:secret@example.com/r.git; secret; tok123; user:secret");
        assert!(!cleaned.contains("secret"), "{cleaned}");
        assert!(!cleaned.contains("tok123"), "{cleaned}");
        assert!(
            cleaned.contains("https://***@example.com/r.git"),
            "{cleaned}"
        );
    }

    #[test]
    fn refspecs_and_ports() {
        assert_eq!(refspec("main"), "+refs/heads/main:refs/driftwatch/target");
        assert_eq!(
            refspec("refs/tags/v1"),
            "+refs/tags/v1:refs/driftwatch/target"
        );
        assert_eq!(url_port("ssh://git@host:2222/x.git"), Some(2222));
        assert_eq!(url_port("ssh://git@host/x.git"), None);
        assert_eq!(url_port("ssh://[::1]:22/x"), Some(22));
        assert_eq!(url_port("ssh://git@[2001:db8::1]:2222/x"), Some(2222));
        assert_eq!(url_port("git@host:x.git"), None);
        assert_eq!(url_port("git@[2001:db8::1]:x.git"), None);
        assert_eq!(url_port("ssh://u:p%3A1@host:2200/x"), Some(2200));
    }
}
