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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{broadcast, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::cluster::{Cluster, Member};
use crate::config::{Config, ProbeSpec};
use crate::metrics::Metrics;
use crate::model::instance::{InstanceId, Removal};
use crate::model::outcome::{ErrorReason, ProbeError};
use crate::model::outcome::{RunReport, Verdict};
use crate::probe::{Probe, ProbeContext};
use crate::repo::{Checkout, Repo, SyncOutcome};
use crate::state::State;

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
    /// Instances with a run in progress.
    busy: Mutex<HashSet<InstanceId>>,
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
            busy: Mutex::new(HashSet::new()),
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

    async fn poll_loop(self: Arc<Self>, repo: Arc<Repo>) {
        let mut started = false;
        let mut failures = 0u32;
        loop {
            let synced = self.sync_repo(&repo).await.is_ok();
            failures = if synced { 0 } else { failures + 1 };
            if synced && !started {
                started = true;
                for index in 0..self.probes.len() {
                    if self.probes[index].config.repo == repo.name() {
                        self.spawn_probe(index, Trigger::Startup);
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry_delay(repo.config.poll_interval, failures)) => {}
                _ = self.stopping.cancelled() => return,
            }
        }
    }

    async fn cron_loop(self: Arc<Self>, index: usize) {
        let Some(schedule) = self.probes[index].config.schedule.clone() else {
            return;
        };
        loop {
            let now = Utc::now();
            let Some(next) = schedule.next_cron_time(now) else {
                return;
            };
            self.update_next_runs(index);
            let wait = (next - now).to_std().unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.stopping.cancelled() => return,
            }
            // Before the first sync there is nothing to check; the startup run follows it.
            if self.repo_synced(index) {
                self.spawn_probe(index, Trigger::Schedule);
            }
        }
    }

    /// Whether the probe's repo has synced at least once.
    fn repo_synced(&self, index: usize) -> bool {
        self.synced
            .lock()
            .unwrap()
            .contains(&self.probes[index].config.repo)
    }

    /// Whether this replica owns at least one known instance of the probe.
    fn owns_any(&self, index: usize) -> bool {
        self.cluster.is_single()
            || self
                .state
                .instances_of(&self.probes[index].config.name)
                .iter()
                .any(|id| self.cluster.owns(id))
    }

    /// Follows the member set: runs the instances this replica newly owns
    /// that have no fresh verdict, and forgets the counters of those it
    /// lost (their series leave `/metrics` with the ownership itself).
    async fn ownership_loop(self: Arc<Self>) {
        let mut members = self.cluster.subscribe();
        loop {
            self.ownership_changed();
            tokio::select! {
                changed = members.changed() => if changed.is_err() { return },
                _ = self.stopping.cancelled() => return,
            }
        }
    }

    fn ownership_changed(self: &Arc<Self>) {
        let now_owned: HashSet<InstanceId> = self
            .state
            .instances()
            .into_iter()
            .filter(|id| self.cluster.owns(id))
            .collect();
        let (gained, lost) = {
            let mut owned = self.owned.lock().unwrap();
            let gained: Vec<InstanceId> = now_owned.difference(&owned).cloned().collect();
            let lost: Vec<InstanceId> = owned.difference(&now_owned).cloned().collect();
            *owned = now_owned;
            (gained, lost)
        };
        self.metrics.state_changed();
        if !gained.is_empty() || !lost.is_empty() {
            tracing::info!(
                members = self.cluster.members().len(),
                gained = gained.len(),
                lost = lost.len(),
                "cluster membership changed"
            );
        }
        for id in &lost {
            if let Some(entry) = self.probes.iter().find(|p| p.config.name == id.probe) {
                self.metrics.forget(id, &entry.config.layer);
            }
        }
        if gained.is_empty() || self.stopping.is_cancelled() {
            return;
        }
        // The handover (`crate::handover`) seeds gained instances with the
        // previous owner's status as soon as the members change; runs wait
        // for it a moment, so a run continues the previous owner's drift
        // episode instead of a stale one this replica kept from an earlier
        // ownership, and a verdict it brings can make the run unneeded.
        let this = self.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(TAKEOVER_DELAY) => {}
                _ = this.stopping.cancelled() => return,
            }
            let mut due: HashMap<usize, HashSet<String>> = HashMap::new();
            for id in gained {
                let Some(index) = this.probes.iter().position(|p| p.config.name == id.probe) else {
                    continue;
                };
                if !this.cluster.owns(&id) || this.is_fresh(index, &id) {
                    continue;
                }
                due.entry(index).or_default().insert(id.root);
            }
            for (index, roots) in due {
                // Before its repo's first sync the start-up run covers it.
                if !this.repo_synced(index) || this.stopping.is_cancelled() {
                    continue;
                }
                let runner = this.clone();
                this.tracker.spawn(async move {
                    runner
                        .run_probe_roots(index, Trigger::Ownership, Some(roots))
                        .await;
                });
            }
        });
    }

    /// Whether the last verdict this replica holds for `id` (its own, or
    /// one the handover took from the previous owner) makes a run on
    /// takeover unneeded: a scheduled probe's verdict at the current commit
    /// that is younger than one schedule interval. An unscheduled probe
    /// always runs: without a schedule nothing else would notice drift in
    /// reality that happened while the owner changed.
    fn is_fresh(&self, index: usize, id: &InstanceId) -> bool {
        let entry = &self.probes[index];
        let Some(schedule) = &entry.config.schedule else {
            return false;
        };
        let Some(report) = self.state.get(id).and_then(|status| status.last_report) else {
            return false;
        };
        let current = self
            .repos
            .iter()
            .find(|r| r.name() == entry.config.repo)
            .and_then(|repo| repo.current());
        match current {
            Some(checkout) if checkout.commit == report.commit => {}
            _ => return false,
        }
        let age = (Utc::now() - report.started_at).num_milliseconds() as f64 / 1000.0;
        age < schedule_interval(schedule)
    }

    /// Refreshes the next run of every known instance of one probe.
    fn update_next_runs(&self, index: usize) {
        let probe = &self.probes[index].config;
        for id in self.state.instances_of(&probe.name) {
            self.update_next_run(probe, &id.root);
        }
    }

    /// Runs a probe each time its live state changes (the probe debounces).
    /// A change seen while another run of it is going is checked after that
    /// run, which may have read the state before the change.
    async fn live_loop(self: Arc<Self>, index: usize) {
        let probe = self.probes[index].probe.clone();
        loop {
            tokio::select! {
                _ = probe.live_change() => {}
                _ = self.stopping.cancelled() => return,
            }
            loop {
                let token = self.tracker.token();
                if self.stopping.is_cancelled() {
                    return;
                }
                // Another replica runs it (an empty run here is no skip);
                // before the first sync the start-up run follows the sync.
                if !self.owns_any(index) || !self.repo_synced(index) {
                    break;
                }
                if !self.run_probe(index, Trigger::LiveChange).await.is_empty() {
                    break;
                }
                drop(token);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = self.stopping.cancelled() => return,
                }
            }
        }
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

    fn spawn_probe(self: &Arc<Self>, index: usize, trigger: Trigger) {
        if self.stopping.is_cancelled() {
            return;
        }
        let this = self.clone();
        self.tracker.spawn(async move {
            this.run_probe(index, trigger).await;
        });
    }

    /// Runs every root of one probe and waits for them; returns the reports of
    /// the runs that happened (skipped instances have none).
    pub async fn run_probe(
        self: &Arc<Self>,
        index: usize,
        trigger: Trigger,
    ) -> Vec<Arc<RunReport>> {
        self.run_probe_roots(index, trigger, None).await
    }

    /// Runs the owned roots of one probe, or only those of them in `only`.
    async fn run_probe_roots(
        self: &Arc<Self>,
        index: usize,
        trigger: Trigger,
        only: Option<HashSet<String>>,
    ) -> Vec<Arc<RunReport>> {
        let entry = &self.probes[index];
        let probe = &entry.config;
        let Some(repo) = self.repos.iter().find(|r| r.name() == probe.repo).cloned() else {
            return Vec::new();
        };
        let Some(checkout) = repo.current() else {
            let error = ProbeError::new(
                ErrorReason::Checkout,
                format!(
                    "repo {} has not synced yet; check its url and credentials",
                    probe.repo
                ),
            );
            return self.finish_without_roots(probe, None, trigger, error);
        };
        let probe_dir = checkout.dir.join(&probe.path);
        let roots = if probe_dir.is_dir() {
            // Layers walk the checkout to find their roots: blocking file I/O.
            let (runner, dir) = (entry.probe.clone(), probe_dir.clone());
            tokio::task::spawn_blocking(move || runner.roots(&dir))
                .await
                .unwrap_or_else(|err| {
                    Err(ProbeError::new(
                        ErrorReason::Internal,
                        format!("listing roots failed: {err}"),
                    ))
                })
        } else {
            Err(ProbeError::new(
                ErrorReason::Checkout,
                format!(
                    "path {:?} does not exist in repo {} at {}",
                    probe.path,
                    probe.repo,
                    short(&checkout.commit)
                ),
            ))
        };
        let roots = match roots {
            Ok(roots) => roots,
            Err(error) => {
                return self.finish_without_roots(probe, Some(&checkout), trigger, error);
            }
        };
        self.set_instances(probe, &roots, &checkout);
        self.update_next_runs(index);
        let mut handles = Vec::new();
        for root in roots {
            let id = InstanceId::new(&probe.name, root.as_str());
            if !self.cluster.owns(&id) || only.as_ref().is_some_and(|only| !only.contains(&root)) {
                continue;
            }
            // Scheduled runs start at the cron time plus the instance's own
            // offset, so many probes on one expression do not start together.
            let delay = match (&probe.schedule, trigger) {
                (Some(schedule), Trigger::Schedule) => schedule.offset(&id.to_string()),
                _ => Duration::ZERO,
            };
            let this = self.clone();
            let mut checkout = checkout.clone();
            let repo = repo.clone();
            let parallelism = entry.parallelism.clone();
            handles.push(tokio::spawn(async move {
                if !delay.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = this.stopping.cancelled() => return None,
                    }
                    // A commit may have arrived while waiting.
                    checkout = repo.current().unwrap_or(checkout);
                }
                // Frees the instance however the run ends, a panic included.
                let Some(_busy) = Busy::claim(&this, id.clone()) else {
                    tracing::info!(probe = %id, trigger = trigger.as_str(), "previous run still going; skipping this one");
                    let layer = &this.probes[index].config.layer;
                    this.metrics.skipped_run(&id, layer);
                    return None;
                };
                Some(
                    this.run_instance(index, root, checkout, trigger, parallelism)
                        .await,
                )
            }));
        }
        let mut reports = Vec::new();
        for handle in handles {
            if let Ok(Some(report)) = handle.await {
                reports.push(report);
            }
        }
        reports
    }

    async fn run_instance(
        self: &Arc<Self>,
        index: usize,
        root: String,
        checkout: Arc<Checkout>,
        trigger: Trigger,
        parallelism: Arc<Semaphore>,
    ) -> Arc<RunReport> {
        let probe = &self.probes[index].config;
        let runner = self.probes[index].probe.clone();
        let _probe_permit = parallelism.acquire_owned().await.expect("semaphore open");
        let _global_permit = self
            .global
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore open");
        let run_id = self.next_run_id.fetch_add(1, Ordering::Relaxed);
        let span = tracing::info_span!(
            "probe_run",
            probe = %InstanceId::new(&probe.name, root.as_str()),
            layer = %probe.layer,
            commit = short(&checkout.commit),
            run_id
        );
        async {
            let started_at = Utc::now();
            let clock = std::time::Instant::now();
            let result = self.execute(probe, &runner, &root, &checkout).await;
            let mut report =
                new_report(probe, &root, run_id, trigger, &checkout.commit, started_at);
            report.duration = clock.elapsed();
            report.apply_result_within(result, self.report_limits());
            // The repo's acks at this commit; a broken file is a warning
            // on the run, never a reason to skip it.
            let repo_acks =
                crate::ack::repo_file::read(&checkout.dir, Utc::now(), self.config.acks.max_expiry);
            report.warnings.extend(repo_acks.problems.iter().cloned());
            let repo_acks = repo_acks.of(&report.probe);
            self.update_next_run(probe, &root);
            self.publish_with_acks(report, Some(repo_acks))
        }
        .instrument(span)
        .await
    }

    /// What one report may hold, from `[defaults]`.
    fn report_limits(&self) -> crate::model::outcome::ReportLimits {
        crate::model::outcome::ReportLimits {
            max_changes: self.config.defaults.max_changes_per_report,
            max_bytes: self.config.defaults.max_report_bytes,
        }
    }

    async fn execute(
        &self,
        probe: &ProbeSpec,
        runner: &Arc<dyn Probe>,
        root: &str,
        checkout: &Checkout,
    ) -> Result<crate::model::outcome::Outcome, ProbeError> {
        let probe_dir = checkout.dir.join(&probe.path);
        let cache_dir = self
            .config
            .state_dir
            .join("cache")
            .join(sanitize(&probe.name));
        let tmp_root = self.config.state_dir.join("tmp");
        let io = |e: std::io::Error| {
            ProbeError::new(
                ErrorReason::Internal,
                format!(
                    "cannot prepare run directories under {}: {e}",
                    self.config.state_dir.display()
                ),
            )
        };
        std::fs::create_dir_all(&cache_dir).map_err(io)?;
        std::fs::create_dir_all(&tmp_root).map_err(io)?;
        let scratch = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&tmp_root)
            .map_err(io)?;
        let deadline = tokio::time::Instant::now() + probe.timeout;
        let cx = ProbeContext {
            name: probe.name.clone(),
            root: root.to_string(),
            checkout: checkout.dir.clone(),
            workdir: if root.is_empty() {
                probe_dir.clone()
            } else {
                probe_dir.join(root)
            },
            commit: checkout.commit.clone(),
            cancel: self.runs_cancel.child_token(),
            deadline,
            cache_dir,
            scratch_dir: scratch.path().to_path_buf(),
            kill_grace: self.config.defaults.kill_grace,
            fingerprint_key: self.fingerprint_key(),
        };
        // Past this, even a child that ignored SIGTERM has been killed and its
        // pipes drained: only a probe ignoring its own deadline is still waiting.
        let limit =
            probe.timeout + crate::process::overrun_after_deadline(self.config.defaults.kill_grace);
        // Its own task, so a panicking probe becomes an error report.
        let task = AbortOnDrop(tokio::spawn({
            let probe = runner.clone();
            async move { probe.run(&cx).await }
        }));
        match tokio::time::timeout(limit, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => {
                let message = panic_message(join);
                tracing::error!(panic = %message, "probe panicked");
                Err(ProbeError::new(
                    ErrorReason::Internal,
                    format!("the probe panicked: {message}"),
                ))
            }
            Err(_) => Err(ProbeError::new(
                ErrorReason::Timeout,
                format!(
                    "probe did not finish within its timeout of {}",
                    humantime::format_duration(probe.timeout)
                ),
            )),
        }
    }

    /// Records a failure that came before any root could be run (no sync
    /// yet, path missing, roots cannot be listed). It goes to every instance
    /// the probe is known to have; with none known, to the probe itself, so
    /// no instance is invented for it.
    fn finish_without_roots(
        &self,
        probe: &ProbeSpec,
        checkout: Option<&Checkout>,
        trigger: Trigger,
        error: ProbeError,
    ) -> Vec<Arc<RunReport>> {
        let commit = checkout.map(|c| c.commit.as_str()).unwrap_or("");
        let known = self.state.instances_of(&probe.name);
        if known.is_empty() {
            let run_id = self.next_run_id.fetch_add(1, Ordering::Relaxed);
            let mut report = new_report(probe, "", run_id, trigger, commit, Utc::now());
            report.apply_result_within(Err(error), self.report_limits());
            tracing::warn!(
                probe = %probe.name,
                reason = report.error.as_ref().map(|e| e.reason.as_str()).unwrap_or(""),
                "no instance of the probe is known yet: {}",
                report.summary()
            );
            self.state.record_probe_failure(&report);
            self.metrics.state_changed();
            return vec![Arc::new(report)];
        }
        known
            .into_iter()
            .filter(|id| self.cluster.owns(id))
            .map(|id| {
                let run_id = self.next_run_id.fetch_add(1, Ordering::Relaxed);
                let mut report = new_report(probe, &id.root, run_id, trigger, commit, Utc::now());
                report.apply_result_within(Err(error.clone()), self.report_limits());
                self.publish(report)
            })
            .collect()
    }

    /// Makes the probe's instances what its latest root listing found;
    /// dropped instances lose their state and series, and their open drift
    /// episode ends in history.
    fn set_instances(&self, probe: &ProbeSpec, roots: &[String], checkout: &Checkout) {
        let removed = self.state.set_instances(&probe.name, &probe.layer, roots);
        self.metrics.state_changed();
        for status in removed {
            let instance = status.instance();
            tracing::info!(
                probe = %instance,
                commit = short(&checkout.commit),
                "root no longer listed; instance removed"
            );
            self.metrics.forget(&instance, &status.layer);
            let _ = self.removals.send(Arc::new(Removal {
                instance,
                layer: status.layer.clone(),
                commit: checkout.commit.clone(),
                at: Utc::now(),
                was_drifted: status.drifted,
            }));
        }
    }

    /// Records a finished run everywhere: state, metrics, log, subscribers.
    fn publish(&self, report: RunReport) -> Arc<RunReport> {
        self.publish_with_acks(report, None)
    }

    /// As [`Scheduler::publish`], also taking in the acks the repo's acks
    /// file holds for the instance at the run's commit (`None`: unknown,
    /// keep the current ones), then bringing every ack up to date.
    fn publish_with_acks(
        &self,
        mut report: RunReport,
        repo_acks: Option<Vec<crate::ack::Ack>>,
    ) -> Arc<RunReport> {
        if let Some(web) = self
            .config
            .repos
            .iter()
            .find(|r| r.name == report.repo)
            .and_then(|r| r.web.as_ref())
        {
            report.link(web);
        }
        if self.state.record_if_known(&report).is_none() {
            // A newer listing dropped the instance while it ran.
            tracing::info!(probe = %report.instance(), "run of a removed instance finished; not recorded");
            return Arc::new(report);
        }
        let now = Utc::now();
        let events = self
            .state
            .update(&report.instance(), |status| {
                let mut events = match repo_acks {
                    Some(acks) => crate::ack::store::set_repo_acks(status, acks, now),
                    None => Vec::new(),
                };
                events.extend(crate::ack::store::refresh(status, now));
                events
            })
            .unwrap_or_default();
        self.publish_ack_events(events);
        self.metrics.observe(&report);
        self.state.persist_soon();
        match &report.error {
            Some(error) => tracing::info!(
                verdict = report.verdict.as_str(),
                reason = error.reason.as_str(),
                duration_ms = report.duration.as_millis() as u64,
                "probe run finished: {}",
                report.summary()
            ),
            None => tracing::info!(
                verdict = report.verdict.as_str(),
                changes = report.changes.len(),
                duration_ms = report.duration.as_millis() as u64,
                "probe run finished: {}",
                report.summary()
            ),
        }
        let report = Arc::new(report);
        let _ = self.reports.send(report.clone());
        report
    }
}

fn new_report(
    probe: &ProbeSpec,
    root: &str,
    run_id: u64,
    trigger: Trigger,
    commit: &str,
    started_at: chrono::DateTime<Utc>,
) -> RunReport {
    RunReport {
        probe: InstanceId::new(&probe.name, root).to_string(),
        name: probe.name.clone(),
        root: root.to_string(),
        layer: probe.layer.clone(),
        run_id,
        trigger: trigger.as_str().to_string(),
        repo: probe.repo.clone(),
        commit: commit.to_string(),
        started_at,
        duration: Duration::ZERO,
        verdict: Verdict::Error,
        labels: probe.labels.clone(),
        ..RunReport::default()
    }
}

/// How long to wait before the next sync after `failures` failed ones in a
/// row: the poll interval, doubling per failure up to 8 times it, and never
/// more than 5 minutes beyond the poll interval, so the sync-age alert
/// (a multiple of the poll interval) still sees retries.
pub fn retry_delay(poll_interval: Duration, failures: u32) -> Duration {
    if failures <= 1 {
        return poll_interval;
    }
    let backoff = poll_interval.saturating_mul(1 << (failures - 1).min(3));
    backoff.min(poll_interval.max(Duration::from_secs(300)))
}

/// Holds an instance in the busy set; dropping it frees the instance,
/// however the run ended (a panic or a dropped future included).
struct Busy {
    scheduler: Arc<Scheduler>,
    id: InstanceId,
}

impl Busy {
    fn claim(scheduler: &Arc<Scheduler>, id: InstanceId) -> Option<Busy> {
        scheduler
            .busy
            .lock()
            .unwrap()
            .insert(id.clone())
            .then(|| Busy {
                scheduler: scheduler.clone(),
                id,
            })
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.scheduler
            .busy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

/// Aborts the task when dropped (a timed-out or cancelled run).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The text a panic carried, or what ended the task.
fn panic_message(join: tokio::task::JoinError) -> String {
    if !join.is_panic() {
        return join.to_string();
    }
    let payload = join.into_panic();
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_syncs_back_off_within_bounds() {
        let minute = Duration::from_secs(60);
        let delays: Vec<u64> = (0..7).map(|n| retry_delay(minute, n).as_secs()).collect();
        assert_eq!(delays, [60, 60, 120, 240, 300, 300, 300]);
        let second = Duration::from_secs(1);
        let delays: Vec<u64> = (0..6).map(|n| retry_delay(second, n).as_secs()).collect();
        assert_eq!(delays, [1, 1, 2, 4, 8, 8]);
        let hour = Duration::from_secs(3600);
        assert_eq!(retry_delay(hour, 5), hour);
    }
}
