//! Decides when probes run and runs them: one run of every probe after its
//! repo's first sync, cron per probe, a run when a new commit touches the
//! probe's path, and manual triggers. A global semaphore bounds concurrent
//! runs; a probe instance never runs twice at once (the second is skipped and
//! counted). Every run becomes a `RunReport` that goes to state, metrics, the
//! log and any subscriber, in that order.
//!
//! In a sharded cluster every replica syncs the repos and lists every
//! probe's roots (cheap), but runs only the instances it owns. When the
//! member set changes, instances it newly owns and has no fresh verdict for
//! run at once instead of waiting for their next schedule; instances it no
//! longer owns keep their state (a handover source) but lose their counters
//! and leave `/metrics`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{broadcast, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cluster::{Cluster, Member};
use crate::config::{Config, ProbeSpec};
use crate::metrics::Metrics;
use crate::model::instance::{InstanceId, Removal};
use crate::model::outcome::RunReport;
use crate::probe::Probe;
use crate::repo::{Repo, SyncOutcome};
use crate::state::State;

mod running;
mod timing;

/// How long runs of gained instances wait for the handover to seed them.
const TAKEOVER_DELAY: Duration = Duration::from_secs(2);

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Startup,
    Schedule,
    Change,
    Manual,
    /// A watched live object changed (Kubernetes with `watch = true`).
    LiveChange,
    /// The replica took the instance over from another cluster member.
    Ownership,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Startup => "startup",
            Trigger::Schedule => "schedule",
            Trigger::Change => "change",
            Trigger::Manual => "manual",
            Trigger::LiveChange => "live-change",
            Trigger::Ownership => "ownership",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TriggerError {
    #[error("no probe named {0:?}")]
    UnknownProbe(String),
    #[error("no repo named {0:?}")]
    UnknownRepo(String),
    #[error("driftwatch is shutting down")]
    ShuttingDown,
    /// The probe names a root none of its listings found.
    #[error("probe {probe:?} has no instance {instance:?}; list its instances at /api/v1/probes")]
    UnknownInstance { probe: String, instance: String },
    /// The probe's repository has no checkout yet, so which instances the
    /// probe has is not known (and there is nothing to run them on).
    #[error("repository {repo:?} has not synced yet, so probe {probe:?} has no instances to run; it runs by itself after the first sync. Check the repository's url and credentials (the log and driftwatch_repo_sync_errors_total say why syncs fail), or sync now with POST /api/v1/sync?repo={repo}")]
    NotSynced { probe: String, repo: String },
    /// Another cluster member owns the instance (`None`: no member is live).
    #[error("{instance} is owned by {}", owner.as_ref().map_or("no live cluster member".to_string(), |m| format!("cluster member {} ({})", m.identity, m.url)))]
    NotOwned {
        instance: String,
        owner: Option<Member>,
    },
}

struct ProbeEntry {
    config: ProbeSpec,
    /// The running probe built from `config`.
    probe: Arc<dyn Probe>,
    /// Bounds how many roots of this probe run at once.
    parallelism: Arc<Semaphore>,
}

pub struct Scheduler {
    config: Arc<Config>,
    repos: Vec<Arc<Repo>>,
    probes: Vec<ProbeEntry>,
    state: Arc<State>,
    metrics: Arc<Metrics>,
    /// Which instances this replica runs (all of them in single mode).
    cluster: Cluster,
    /// The instances owned at the last membership change, to tell which
    /// ones a change hands over.
    owned: Mutex<HashSet<InstanceId>>,
    reports: broadcast::Sender<Arc<RunReport>>,
    removals: broadcast::Sender<Arc<Removal>>,
    global: Arc<Semaphore>,
    /// Instances with a run in progress, each with the trigger of the one
    /// run queued behind it (a change, manual, live-change or ownership
    /// trigger that arrived while it ran; scheduled ones are skipped).
    busy: Mutex<HashMap<InstanceId, Option<Trigger>>>,
    /// Repos that have synced at least once.
    synced: Mutex<HashSet<String>>,
    next_run_id: AtomicU64,
    /// Cancels in-flight runs (their children get SIGTERM, then SIGKILL).
    runs_cancel: CancellationToken,
    /// Stops starting new work.
    stopping: CancellationToken,
    tracker: TaskTracker,
    /// The key hidden values enter fingerprints under (the all-zero key
    /// until [`Scheduler::set_fingerprint_key`]).
    fingerprint_key: std::sync::OnceLock<Arc<crate::model::fingerprint::FingerprintKey>>,
    /// Every ack transition a run causes (closed, changed, expired, from the repo file).
    ack_events: broadcast::Sender<Arc<crate::ack::AckEvent>>,
}

impl Scheduler {
    /// `probes` are built from `config.probes`, in the same order. The
    /// scheduler runs every instance (single mode).
    pub fn new(
        config: Arc<Config>,
        probes: Vec<Arc<dyn Probe>>,
        state: Arc<State>,
        metrics: Arc<Metrics>,
    ) -> Arc<Scheduler> {
        Scheduler::with_cluster(config, probes, state, metrics, Cluster::single())
    }

    /// As [`Scheduler::new`], running only the instances `cluster` says this
    /// replica owns.
    pub fn with_cluster(
        config: Arc<Config>,
        probes: Vec<Arc<dyn Probe>>,
        state: Arc<State>,
        metrics: Arc<Metrics>,
        cluster: Cluster,
    ) -> Arc<Scheduler> {
        assert_eq!(probes.len(), config.probes.len(), "one probe per spec");
        let repos = config
            .repos
            .iter()
            .map(|repo| Arc::new(Repo::new(repo.clone(), &config.state_dir)))
            .collect::<Vec<_>>();
        for repo in &repos {
            metrics.register_repo(repo.name(), repo.config.poll_interval);
        }
        let probes = config
            .probes
            .iter()
            .zip(probes)
            .map(|(spec, probe)| ProbeEntry {
                parallelism: Arc::new(Semaphore::new(probe.parallelism().max(1))),
                config: spec.clone(),
                probe,
            })
            .collect();
        let (reports, _) = broadcast::channel(256);
        let (removals, _) = broadcast::channel(256);
        let scheduler = Arc::new(Scheduler {
            global: Arc::new(Semaphore::new(config.defaults.max_concurrent_runs.max(1))),
            config,
            repos,
            probes,
            state,
            metrics,
            cluster,
            owned: Mutex::new(HashSet::new()),
            reports,
            removals,
            busy: Mutex::new(HashMap::new()),
            synced: Mutex::new(HashSet::new()),
            next_run_id: AtomicU64::new(initial_run_id()),
            runs_cancel: CancellationToken::new(),
            stopping: CancellationToken::new(),
            tracker: TaskTracker::new(),
            fingerprint_key: std::sync::OnceLock::new(),
            ack_events: broadcast::channel(1024).0,
        });
        scheduler.metrics.register_caches(
            scheduler
                .probes
                .iter()
                .map(|entry| {
                    (
                        InstanceId::new(&entry.config.name, ""),
                        entry.config.layer.clone(),
                        entry.probe.clone(),
                    )
                })
                .collect(),
        );
        // Single-root probes have their one instance from the start;
        // multi-root probes keep the instances persisted from their last
        // listing until the next listing says otherwise.
        for entry in &scheduler.probes {
            let probe = &entry.config;
            let interval = probe
                .schedule
                .as_ref()
                .map(schedule_interval)
                .unwrap_or(0.0);
            scheduler
                .metrics
                .register_probe(&probe.name, &probe.layer, &probe.labels, interval);
            if entry.probe.single_root() {
                scheduler
                    .state
                    .ensure_instance(&InstanceId::new(&probe.name, ""), &probe.layer);
            }
        }
        scheduler
    }

    /// Sets the key hidden values enter fingerprints under; once, before the first run.
    pub fn set_fingerprint_key(&self, key: crate::model::fingerprint::FingerprintKey) {
        let _ = self.fingerprint_key.set(Arc::new(key));
    }

    fn fingerprint_key(&self) -> Arc<crate::model::fingerprint::FingerprintKey> {
        self.fingerprint_key.get_or_init(Arc::default).clone()
    }

    /// Receives every ack transition a run causes.
    pub fn subscribe_ack_events(&self) -> broadcast::Receiver<Arc<crate::ack::AckEvent>> {
        self.ack_events.subscribe()
    }

    /// Sends ack transitions to the history (and whoever else listens).
    pub fn publish_ack_events(&self, events: Vec<crate::ack::AckEvent>) {
        for event in events {
            tracing::info!(probe = %event.instance, ack = %event.ack, kind = event.kind.as_str(), "{}", event.message);
            let _ = self.ack_events.send(Arc::new(event));
        }
    }

    /// Receives every instance dropped from its probe's root listing.
    pub fn subscribe_removals(&self) -> broadcast::Receiver<Arc<Removal>> {
        self.removals.subscribe()
    }

    /// Receives every finished run.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RunReport>> {
        self.reports.subscribe()
    }

    pub fn repos(&self) -> &[Arc<Repo>] {
        &self.repos
    }

    pub fn probe_configs(&self) -> impl Iterator<Item = &ProbeSpec> {
        self.probes.iter().map(|p| &p.config)
    }

    /// Each configured probe with the running probe built from it.
    pub fn probes(&self) -> impl Iterator<Item = (&ProbeSpec, &Arc<dyn Probe>)> {
        self.probes.iter().map(|p| (&p.config, &p.probe))
    }

    /// True once every repo has synced at least once and every probe's
    /// live-state cache has finished its first sync.
    pub fn is_ready(&self) -> bool {
        let synced = self.synced.lock().unwrap();
        self.repos.iter().all(|r| synced.contains(r.name()))
            && self
                .probes
                .iter()
                .all(|p| p.probe.cache_stats().map_or(true, |stats| stats.settled))
    }

    /// Records when this instance next runs on its schedule, for the API and page.
    fn update_next_run(&self, probe: &ProbeSpec, root: &str) {
        let Some(schedule) = &probe.schedule else {
            return;
        };
        let id = InstanceId::new(&probe.name, root);
        let next = schedule.next_run(&id.to_string(), Utc::now());
        self.state.set_next_run(&id, next);
    }

    /// Syncs one repo and, when it moved, starts the probes whose paths changed.
    pub async fn sync_repo(
        self: &Arc<Self>,
        repo: &Arc<Repo>,
    ) -> Result<SyncOutcome, crate::repo::RepoError> {
        let first = !self.synced.lock().unwrap().contains(repo.name());
        // Shutdown does not wait for a fetch hung in the network.
        let synced = tokio::select! {
            result = repo.sync() => result,
            _ = self.stopping.cancelled() => {
                return Err(crate::repo::RepoError::Abandoned {
                    repo: repo.name().to_string(),
                })
            }
        };
        match synced {
            Ok(outcome) => {
                let checkout = &outcome.checkout;
                let commit_url = self
                    .config
                    .repos
                    .iter()
                    .find(|r| r.name == repo.name())
                    .and_then(|r| r.web.as_ref())
                    .map(|web| web.commit_url(&checkout.commit))
                    .unwrap_or_default();
                self.metrics.repo_synced(
                    repo.name(),
                    &checkout.commit,
                    &commit_url,
                    checkout.commit_time,
                );
                self.synced.lock().unwrap().insert(repo.name().to_string());
                if let Some(changed) = &outcome.changed {
                    if !first {
                        for index in 0..self.probes.len() {
                            let probe = &self.probes[index].config;
                            if probe.repo == repo.name()
                                && probe.run_on_change
                                && (changed.touches(&probe.path)
                                    || changed.touches(std::path::Path::new(
                                        crate::ack::repo_file::ACKS_FILE,
                                    )))
                            {
                                self.spawn_probe(index, Trigger::Change);
                            }
                        }
                    }
                }
                Ok(outcome)
            }
            Err(err) => {
                self.metrics.repo_sync_failed(repo.name());
                tracing::warn!(repo = repo.name(), reason = err.reason(), error = %err, "repo sync failed; keeping the previous commit");
                Err(err)
            }
        }
    }

    /// The daemon loop: poll repos, fire schedules, until `shutdown` fires.
    /// Then stops scheduling, lets running probes finish within the kill grace,
    /// cancels the rest and waits for them.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        for repo in self.repos.clone() {
            let this = self.clone();
            tokio::spawn(async move { this.poll_loop(repo).await });
        }
        for index in 0..self.probes.len() {
            if self.probes[index].config.schedule.is_some() {
                let this = self.clone();
                tokio::spawn(async move { this.cron_loop(index).await });
            }
            let this = self.clone();
            tokio::spawn(async move { this.live_loop(index).await });
        }
        if !self.cluster.is_single() {
            let this = self.clone();
            tokio::spawn(async move { this.ownership_loop().await });
        }
        shutdown.cancelled().await;
        self.shutdown().await;
    }

    /// Stops scheduling, waits up to the kill grace for runs, then cancels them.
    pub async fn shutdown(&self) {
        self.stopping.cancel();
        self.tracker.close();
        let grace = self.config.defaults.kill_grace;
        if tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("runs still going after the grace period; cancelling them");
            self.runs_cancel.cancel();
            self.tracker.wait().await;
        }
        if let Err(err) = self.state.persist() {
            tracing::warn!(error = %err, "cannot write state file");
        }
        self.state.flush();
    }

    /// Cancels every in-flight run at once (second signal).
    pub fn abort_runs(&self) {
        self.stopping.cancel();
        self.runs_cancel.cancel();
    }

    /// Starts a probe by name or instance id in the background. Only
    /// instances that exist can be named: a root the probe's listing has
    /// not found is unknown, and before the probe's repository has synced
    /// nothing runs (no instance, series or history row is made up for it).
    pub fn trigger(self: &Arc<Self>, id: &str) -> Result<(), TriggerError> {
        if self.stopping.is_cancelled() {
            return Err(TriggerError::ShuttingDown);
        }
        let instance = InstanceId::parse(id);
        let index = self
            .probes
            .iter()
            .position(|p| p.config.name == instance.probe)
            .ok_or_else(|| TriggerError::UnknownProbe(id.to_string()))?;
        let entry = &self.probes[index];
        // A named instance (or a single-root probe's only one) must exist,
        // and runs on its owner; the caller is told which member that is. A
        // multi-root probe by name runs the roots this replica owns.
        let named = entry.probe.single_root() || !instance.root.is_empty();
        if named && self.state.get(&instance).is_none() {
            return Err(TriggerError::UnknownInstance {
                probe: entry.config.name.clone(),
                instance: instance.to_string(),
            });
        }
        if named && !self.cluster.owns(&instance) {
            return Err(TriggerError::NotOwned {
                instance: instance.to_string(),
                owner: self.cluster.owner(&instance),
            });
        }
        if !self.repo_synced(index) {
            return Err(TriggerError::NotSynced {
                probe: entry.config.name.clone(),
                repo: entry.config.repo.clone(),
            });
        }
        let only = (!instance.root.is_empty()).then(|| HashSet::from([instance.root]));
        let this = self.clone();
        self.tracker.spawn(async move {
            this.run_probe_roots(index, Trigger::Manual, only).await;
        });
        Ok(())
    }

    /// Syncs one repo (or all) in the background; new commits start their probes.
    pub fn trigger_sync(self: &Arc<Self>, repo: Option<&str>) -> Result<(), TriggerError> {
        if self.stopping.is_cancelled() {
            return Err(TriggerError::ShuttingDown);
        }
        let repos: Vec<Arc<Repo>> = match repo {
            Some(name) => vec![self
                .repos
                .iter()
                .find(|r| r.name() == name)
                .cloned()
                .ok_or_else(|| TriggerError::UnknownRepo(name.to_string()))?],
            None => self.repos.clone(),
        };
        for repo in repos {
            let this = self.clone();
            self.tracker.spawn(async move {
                let _ = this.sync_repo(&repo).await;
            });
        }
        Ok(())
    }
}

/// Nominal seconds between two firings of a schedule.
fn schedule_interval(schedule: &crate::config::Schedule) -> f64 {
    match schedule.upcoming(Utc::now(), 2).as_slice() {
        [a, b] => (*b - *a).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    }
}

/// Run ids keep increasing across restarts: they start at the current time in
/// microseconds, far above any count one process could reach.
fn initial_run_id() -> u64 {
    Utc::now().timestamp_micros().max(1) as u64
}

pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// A file-name-safe form of a probe name.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Runs the given probes once against freshly synced repos, for `check`.
pub async fn run_once(
    scheduler: &Arc<Scheduler>,
    names: &[String],
) -> Result<Vec<Arc<RunReport>>, String> {
    let selected: Vec<usize> = if names.is_empty() {
        (0..scheduler.probes.len()).collect()
    } else {
        let mut indexes = Vec::new();
        for name in names {
            match scheduler.probes.iter().position(|p| &p.config.name == name) {
                Some(index) => indexes.push(index),
                None => return Err(format!("no probe named {name:?} in the config")),
            }
        }
        indexes
    };
    let repos: HashSet<&str> = selected
        .iter()
        .map(|&i| scheduler.probes[i].config.repo.as_str())
        .collect();
    let mut sync_errors: HashMap<String, String> = HashMap::new();
    for repo in scheduler.repos.clone() {
        if repos.contains(repo.name()) {
            if let Err(err) = scheduler.sync_repo(&repo).await {
                sync_errors.insert(repo.name().to_string(), err.to_string());
            }
        }
    }
    let mut handles = Vec::new();
    for index in selected {
        let scheduler = scheduler.clone();
        handles.push(tokio::spawn(async move {
            scheduler.run_probe(index, Trigger::Manual).await
        }));
    }
    let mut reports = Vec::new();
    for handle in handles {
        reports.extend(handle.await.map_err(|e| e.to_string())?);
    }
    for report in &mut reports {
        if let Some(message) = sync_errors.get(&report.repo) {
            if report.error.is_none() {
                let mut changed = (**report).clone();
                changed.warnings.push(format!(
                    "repo sync failed, checked an older commit: {message}"
                ));
                *report = Arc::new(changed);
            }
        }
    }
    Ok(reports)
}
