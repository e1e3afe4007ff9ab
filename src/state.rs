//! The last known status of every probe instance: its last report, last
//! success, and the current drift episode. Persisted in the state directory
//! and reloaded at start-up, so drift-since, last-success and the API survive
//! a restart. A corrupt file gives a warning and a clean start, never a crash.
//!
//! The state also holds which instances exist: a single-root probe has its
//! one instance from the start, a multi-root probe has whatever its last
//! successful root listing found ([`State::set_instances`]). Metrics are built
//! from this set at scrape time, so a series exists exactly while its
//! instance does. A failure before any root of a probe is known is kept on
//! the probe ([`State::probe_failure`]), never on an invented instance.
//! An instance's acks outlive it: they wait ([`State::waiting`]) until the
//! instance comes back, or they end.
//!
//! Writes are durable (temp file, fsync, rename, fsync of the directory) and
//! run on a thread of their own; a burst of runs finishing together becomes
//! one write ([`State::persist_soon`]).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ack::model::{merge, Ack};
use crate::model::drifted::{DriftedField, DriftedResource};
use crate::model::instance::InstanceId;
use crate::model::outcome::{RunReport, Verdict};

const STATE_FILE: &str = "state.json";
const STATE_VERSION: u32 = 1;
/// Drifted resources remembered per instance for the per-resource series
/// (the metrics cap them further).
const MAX_REMEMBERED_RESOURCES: usize = 1000;

/// What driftwatch knows about one probe instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeStatus {
    /// Instance id in its text form: the probe name, or `name:root`.
    pub probe: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub root: String,
    pub layer: String,
    /// The last completed run, whatever its verdict.
    pub last_report: Option<RunReport>,
    /// When the last run that reached a verdict (in sync or drifted) started.
    pub last_success: Option<DateTime<Utc>>,
    /// The drift state of the last run that reached a verdict; errors keep it.
    pub drifted: bool,
    /// Start of the current drift episode.
    pub drifted_since: Option<DateTime<Utc>>,
    /// The commit checked out when the current drift episode started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drifted_since_commit: Option<String>,
    /// Resources of the last run that reached a verdict (kept through errors).
    #[serde(default)]
    pub drifted_resources: usize,
    /// The drifted resources of the last run that reached a verdict (capped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drifted_list: Vec<DriftedResource>,
    /// When the next scheduled run starts (cron time plus this instance's
    /// jitter offset); `None` without a schedule. Kept up to date by the scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<DateTime<Utc>>,
    /// Acknowledgements of this instance's drift: run-time ones (durable
    /// here, and carried to another replica with the status) and those read
    /// from the repo's acks file; ended ones are kept a while ([`crate::ack`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acks: Vec<Ack>,
}

impl ProbeStatus {
    /// A status with no run yet.
    pub fn new(id: &InstanceId, layer: &str) -> Self {
        ProbeStatus {
            probe: id.to_string(),
            name: id.probe.clone(),
            root: id.root.clone(),
            layer: layer.to_string(),
            last_report: None,
            last_success: None,
            drifted: false,
            drifted_since: None,
            drifted_since_commit: None,
            drifted_resources: 0,
            drifted_list: Vec::new(),
            next_run: None,
            acks: Vec::new(),
        }
    }

    pub fn instance(&self) -> InstanceId {
        InstanceId::new(&self.name, &self.root)
    }

    /// The verdict of the last completed run, if any.
    pub fn verdict(&self) -> Option<Verdict> {
        self.last_report.as_ref().map(|r| r.verdict)
    }

    /// When the last completed run started, if any.
    pub fn last_run(&self) -> Option<DateTime<Utc>> {
        self.last_report.as_ref().map(|r| r.started_at)
    }

    /// Takes over what another replica knew about this instance (scale-out
    /// handover). Newest knowledge wins: when `other` ran later, it replaces
    /// this status (the schedule's `next_run` stays ours). When this status
    /// ran later, its drift episode is the continuation of `other`'s if both
    /// saw drift and ours only began after `other`'s last run: the episode
    /// then keeps `other`'s start, so a handover never splits it. Returns
    /// whether anything changed.
    pub fn adopt(&mut self, other: &ProbeStatus) -> bool {
        let Some(theirs) = other.last_run() else {
            return false;
        };
        match self.last_run() {
            Some(mine) if mine >= theirs => {
                let continues = self.drifted
                    && other.drifted
                    && match (self.drifted_since, other.drifted_since) {
                        (Some(mine), Some(since)) => since < mine && mine >= theirs,
                        _ => false,
                    };
                if continues {
                    self.drifted_since = other.drifted_since;
                    self.drifted_since_commit = other.drifted_since_commit.clone();
                }
                let merged = merge(&mut self.acks, &other.acks);
                continues || merged
            }
            _ => {
                let next_run = self.next_run;
                let mine = std::mem::take(&mut self.acks);
                *self = other.clone();
                self.next_run = next_run;
                merge(&mut self.acks, &mine);
                true
            }
        }
    }

    /// Folds a finished run into the status.
    pub fn apply(&mut self, report: &RunReport) {
        match report.verdict {
            Verdict::Drifted => {
                if !self.drifted || self.drifted_since.is_none() {
                    self.drifted_since = Some(report.started_at);
                    self.drifted_since_commit = Some(report.commit.clone());
                }
                self.drifted = true;
                self.drifted_resources = report.change_count();
                self.last_success = Some(report.started_at);
            }
            Verdict::InSync => {
                self.drifted = false;
                self.drifted_since = None;
                self.drifted_since_commit = None;
                self.drifted_resources = 0;
                self.last_success = Some(report.started_at);
            }
            // An error says nothing about drift: keep the last known state so
            // a flaky tool never resolves a drift alert.
            Verdict::Error => {}
        }
        if report.verdict != Verdict::Error {
            let mut list: Vec<DriftedResource> = report
                .changes
                .iter()
                .map(|c| DriftedResource {
                    resource: c.subject.clone(),
                    action: c.action.clone(),
                    fingerprint: c.fingerprint.clone(),
                    fields: c
                        .fields
                        .iter()
                        .filter(|f| !f.fingerprint.is_empty())
                        .map(|f| DriftedField {
                            field: f.field.clone(),
                            fingerprint: f.fingerprint.clone(),
                        })
                        .collect(),
                })
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            list.truncate(MAX_REMEMBERED_RESOURCES);
            self.drifted_list = list;
        }
        self.last_report = Some(report.clone());
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    probes: Vec<ProbeStatus>,
    /// Acks waiting for their instance to come back ([`State::waiting`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    waiting: Vec<ProbeStatus>,
}

/// All probe statuses, shared between the scheduler (writer) and HTTP (readers).
#[derive(Debug)]
pub struct State {
    /// `None` for a state that is never written (one-shot `check`).
    path: Option<PathBuf>,
    probes: RwLock<BTreeMap<InstanceId, ProbeStatus>>,
    /// Per probe name: the last failure that happened before any root of the
    /// probe was known. Not persisted: it says why there is nothing to show.
    probe_failures: RwLock<BTreeMap<String, RunReport>>,
    /// Acks of instances that are not configured now (the probe left the
    /// config, or the root the listing), each on a bare status of its
    /// instance. An ack is never dropped with its instance's state: it waits
    /// here (persisted) until it ends and is forgotten, or the instance
    /// comes back and takes it again. Lock order: `probes`, then this.
    waiting: RwLock<BTreeMap<InstanceId, ProbeStatus>>,
    /// Serializes writers: runs finishing together must not share the temp file.
    write_lock: Mutex<()>,
    /// The background writer that coalesces bursts, started on first use.
    writer: Mutex<Option<Arc<Writer>>>,
    /// Bumped by every change; keys the HTTP side's rendered views.
    generation: AtomicU64,
}

/// Pending-write flag shared with the writer thread.
#[derive(Debug, Default)]
struct Writer {
    pending: Mutex<WriterState>,
    wake: Condvar,
}

#[derive(Debug, Default)]
struct WriterState {
    /// A write was asked for and has not started yet.
    dirty: bool,
    /// Writes completed so far (tests and `flush` wait on it).
    completed: u64,
    /// Writes asked for so far.
    requested: u64,
}

impl State {
    /// Loads the state file from `state_dir`, or starts clean (with a warning
    /// when the file exists but cannot be used).
    pub fn load(state_dir: &Path) -> State {
        let path = state_dir.join(STATE_FILE);
        let file = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
                Ok(file) if file.version == STATE_VERSION => Some(file),
                Ok(file) => {
                    tracing::warn!(path = %path.display(), version = file.version, "state file has an unknown version; starting clean");
                    None
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "state file is corrupt; starting clean");
                    let _ = std::fs::rename(&path, path.with_extension("json.corrupt"));
                    None
                }
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot read state file; starting clean");
                None
            }
        };
        let (mut probes, mut waiting) = (BTreeMap::new(), BTreeMap::new());
        if let Some(file) = file {
            waiting = file
                .waiting
                .into_iter()
                .map(|s| (s.instance(), s))
                .collect();
            for mut status in file.probes {
                unpark(&mut waiting, &mut status);
                probes.insert(status.instance(), status);
            }
        }
        State {
            path: Some(path),
            probes: RwLock::new(probes),
            probe_failures: RwLock::new(BTreeMap::new()),
            waiting: RwLock::new(waiting),
            write_lock: Mutex::new(()),
            writer: Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    /// The statuses in `state_dir`'s state file, read without touching it
    /// (for `validate`); empty when it is missing or unusable.
    pub fn peek(state_dir: &Path) -> Vec<ProbeStatus> {
        Self::peek_file(state_dir).map_or_else(Vec::new, |file| file.probes)
    }

    /// The acks in `state_dir`'s state file that wait for their instance
    /// ([`State::waiting`]), read without touching it.
    pub fn peek_waiting(state_dir: &Path) -> Vec<ProbeStatus> {
        Self::peek_file(state_dir).map_or_else(Vec::new, |file| file.waiting)
    }

    fn peek_file(state_dir: &Path) -> Option<StateFile> {
        std::fs::read(state_dir.join(STATE_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<StateFile>(&bytes).ok())
            .filter(|file| file.version == STATE_VERSION)
    }

    /// A state that lives in memory only.
    pub fn ephemeral() -> State {
        State {
            path: None,
            probes: RwLock::new(BTreeMap::new()),
            probe_failures: RwLock::new(BTreeMap::new()),
            waiting: RwLock::new(BTreeMap::new()),
            write_lock: Mutex::new(()),
            writer: Mutex::new(None),
            generation: AtomicU64::new(0),
        }
    }

    /// Drops statuses of probes that are no longer configured; their acks
    /// wait for them ([`State::waiting`]). Returns whether any acks moved.
    pub fn retain_names(&self, names: &BTreeSet<String>) -> bool {
        let mut probes = self.probes.write().unwrap();
        let mut waiting = self.waiting.write().unwrap();
        let mut parked = false;
        probes.retain(|id, status| {
            let keep = names.contains(&id.probe);
            if !keep {
                parked |= !status.acks.is_empty();
                park(&mut waiting, status);
            }
            keep
        });
        drop((probes, waiting));
        self.probe_failures
            .write()
            .unwrap()
            .retain(|name, _| names.contains(name));
        self.changed();
        parked
    }

    /// A number that changes whenever any status does (never for reads), so
    /// readers can cache what they derive from the statuses.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Makes sure an instance exists (a single-root probe's only instance).
    pub fn ensure_instance(&self, id: &InstanceId, layer: &str) {
        let mut probes = self.probes.write().unwrap();
        let mut waiting = self.waiting.write().unwrap();
        probes
            .entry(id.clone())
            .or_insert_with(|| returning(&mut waiting, id, layer));
        drop((probes, waiting));
        self.changed();
    }

    /// Sets the instances of probe `name` to `roots` (its latest successful
    /// root listing): new roots get a pending status (and the acks waiting
    /// for them), roots no longer listed are dropped and returned (their
    /// acks wait). Clears the probe's listing failure.
    pub fn set_instances(&self, name: &str, layer: &str, roots: &[String]) -> Vec<ProbeStatus> {
        self.probe_failures.write().unwrap().remove(name);
        let wanted: BTreeSet<&str> = roots.iter().map(String::as_str).collect();
        let mut probes = self.probes.write().unwrap();
        let mut waiting = self.waiting.write().unwrap();
        let gone: Vec<InstanceId> = probes
            .keys()
            .filter(|id| id.probe == name && !wanted.contains(id.root.as_str()))
            .cloned()
            .collect();
        let removed: Vec<ProbeStatus> = gone.iter().filter_map(|id| probes.remove(id)).collect();
        for status in &removed {
            park(&mut waiting, status);
        }
        for root in roots {
            let id = InstanceId::new(name, root.as_str());
            probes
                .entry(id.clone())
                .or_insert_with(|| returning(&mut waiting, &id, layer));
        }
        drop((probes, waiting));
        self.changed();
        removed
    }

    /// Every instance currently known.
    pub fn instances(&self) -> Vec<InstanceId> {
        self.probes.read().unwrap().keys().cloned().collect()
    }

    /// The instances of probe `name` currently known.
    pub fn instances_of(&self, name: &str) -> Vec<InstanceId> {
        self.probes
            .read()
            .unwrap()
            .keys()
            .filter(|id| id.probe == name)
            .cloned()
            .collect()
    }

    /// Records a finished run and returns the updated status, creating the
    /// instance when it is new.
    pub fn record(&self, report: &RunReport) -> ProbeStatus {
        let id = report.instance();
        let mut probes = self.probes.write().unwrap();
        let mut waiting = self.waiting.write().unwrap();
        let status = probes
            .entry(id.clone())
            .or_insert_with(|| returning(&mut waiting, &id, &report.layer));
        status.apply(report);
        let status = status.clone();
        drop((probes, waiting));
        self.changed();
        status
    }

    /// Records a finished run of an instance that still exists; `None` when
    /// a newer root listing dropped the instance while it ran.
    pub fn record_if_known(&self, report: &RunReport) -> Option<ProbeStatus> {
        let mut probes = self.probes.write().unwrap();
        let status = probes.get_mut(&report.instance())?;
        status.apply(report);
        let status = status.clone();
        drop(probes);
        self.changed();
        Some(status)
    }

    /// Changes one instance's status in place (its acks, mostly) and returns
    /// what `change` returns; `None` when the instance is unknown.
    pub fn update<R>(
        &self,
        id: &InstanceId,
        change: impl FnOnce(&mut ProbeStatus) -> R,
    ) -> Option<R> {
        let mut probes = self.probes.write().unwrap();
        let result = change(probes.get_mut(id)?);
        drop(probes);
        self.changed();
        Some(result)
    }

    /// The acks whose instance is not configured now, each on a bare status
    /// of its instance (no run, no drift): they match nothing until the
    /// instance comes back and takes them again.
    pub fn waiting(&self) -> Vec<ProbeStatus> {
        self.waiting.read().unwrap().values().cloned().collect()
    }

    /// As [`State::update`], for the acks waiting for `id`; the entry goes
    /// once it holds no ack (all ended and forgotten).
    pub fn update_waiting<R>(
        &self,
        id: &InstanceId,
        change: impl FnOnce(&mut ProbeStatus) -> R,
    ) -> Option<R> {
        let mut waiting = self.waiting.write().unwrap();
        let status = waiting.get_mut(id)?;
        let result = change(status);
        if status.acks.is_empty() {
            waiting.remove(id);
        }
        drop(waiting);
        self.changed();
        Some(result)
    }

    /// Sets when an instance next runs on its schedule. Only instances that
    /// exist: a multi-root probe's roots come from its listing, never from here.
    pub fn set_next_run(&self, id: &InstanceId, next_run: Option<DateTime<Utc>>) {
        let changed = match self.probes.write().unwrap().get_mut(id) {
            Some(status) if status.next_run != next_run => {
                status.next_run = next_run;
                true
            }
            _ => false,
        };
        if changed {
            self.changed();
        }
    }

    /// Records a failure that happened before any root of the probe was
    /// known (no sync yet, the roots cannot be listed).
    pub fn record_probe_failure(&self, report: &RunReport) {
        self.probe_failures
            .write()
            .unwrap()
            .insert(report.name.clone(), report.clone());
        self.changed();
    }

    /// The probe's last listing failure, while none of its roots is known.
    pub fn probe_failure(&self, name: &str) -> Option<RunReport> {
        self.probe_failures.read().unwrap().get(name).cloned()
    }

    /// Seeds a known instance with another replica's status (see
    /// [`ProbeStatus::adopt`]); returns the merged status when it changed.
    /// Unknown instances are left alone: which instances exist comes from
    /// the root listing, never from a peer.
    pub fn adopt(&self, other: &ProbeStatus) -> Option<ProbeStatus> {
        let mut probes = self.probes.write().unwrap();
        let status = probes.get_mut(&other.instance())?;
        if !status.adopt(other) {
            return None;
        }
        let status = status.clone();
        drop(probes);
        self.changed();
        Some(status)
    }

    /// Every known instance and whether it has completed a run, without
    /// cloning the statuses (the handover looks at this every second).
    pub fn instances_run(&self) -> Vec<(InstanceId, bool)> {
        self.probes
            .read()
            .unwrap()
            .iter()
            .map(|(id, status)| (id.clone(), status.last_report.is_some()))
            .collect()
    }

    pub fn get(&self, id: &InstanceId) -> Option<ProbeStatus> {
        self.probes.read().unwrap().get(id).cloned()
    }

    pub fn snapshot(&self) -> Vec<ProbeStatus> {
        self.probes.read().unwrap().values().cloned().collect()
    }

    /// Writes the state file durably now: a temp file in the same directory,
    /// fsync, rename over the old file, fsync of the directory (without the
    /// last step a crash can bring back the old file).
    pub fn persist(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let _writer = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        // Both under one read, so an ack moving between them is in one place.
        let file = {
            let probes = self.probes.read().unwrap();
            let waiting = self.waiting.read().unwrap();
            StateFile {
                version: STATE_VERSION,
                probes: probes.values().cloned().collect(),
                waiting: waiting.values().cloned().collect(),
            }
        };
        let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = path.with_extension("json.tmp");
        let mut out = std::fs::File::create(&tmp)?;
        out.write_all(&bytes)?;
        out.sync_all()?;
        drop(out);
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    }

    /// Asks for a write without waiting for it. A thread of its own writes;
    /// requests that arrive while it writes become one more write, so a burst
    /// of finished runs costs two writes at most and no async worker blocks.
    pub fn persist_soon(self: &Arc<Self>) {
        if self.path.is_none() {
            return;
        }
        let writer = self.writer();
        let mut pending = writer.pending.lock().unwrap();
        pending.dirty = true;
        pending.requested += 1;
        writer.wake.notify_all();
    }

    /// Waits until every write asked for so far is done (shutdown, tests).
    pub fn flush(self: &Arc<Self>) {
        let Some(writer) = self.writer.lock().unwrap().clone() else {
            return;
        };
        let mut pending = writer.pending.lock().unwrap();
        let target = pending.requested;
        while pending.completed < target {
            pending = writer.wake.wait(pending).unwrap();
        }
    }

    fn writer(self: &Arc<Self>) -> Arc<Writer> {
        let mut slot = self.writer.lock().unwrap();
        if let Some(writer) = slot.as_ref() {
            return writer.clone();
        }
        let writer = Arc::new(Writer::default());
        *slot = Some(writer.clone());
        // The thread holds the state weakly and ends with it.
        let state = Arc::downgrade(self);
        let shared = writer.clone();
        std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || loop {
                let requested = {
                    let mut pending = shared.pending.lock().unwrap();
                    while !pending.dirty {
                        let (guard, timeout) = shared
                            .wake
                            .wait_timeout(pending, std::time::Duration::from_secs(1))
                            .unwrap();
                        pending = guard;
                        if timeout.timed_out() && state.strong_count() == 0 {
                            return;
                        }
                    }
                    pending.dirty = false;
                    pending.requested
                };
                let Some(state) = state.upgrade() else {
                    return;
                };
                if let Err(err) = state.persist() {
                    tracing::warn!(error = %err, "cannot write state file; drift-since will not survive a restart");
                }
                drop(state);
                let mut pending = shared.pending.lock().unwrap();
                pending.completed = pending.completed.max(requested);
                shared.wake.notify_all();
            })
            .expect("can start the state writer thread");
        writer
    }
}

/// Keeps the acks of `status` (an instance going away) waiting for it.
fn park(waiting: &mut BTreeMap<InstanceId, ProbeStatus>, status: &ProbeStatus) {
    if status.acks.is_empty() {
        return;
    }
    let id = status.instance();
    let kept = waiting
        .entry(id.clone())
        .or_insert_with(|| ProbeStatus::new(&id, &status.layer));
    merge(&mut kept.acks, &status.acks);
}

/// Gives `status` the acks waiting for its instance.
fn unpark(waiting: &mut BTreeMap<InstanceId, ProbeStatus>, status: &mut ProbeStatus) {
    if let Some(kept) = waiting.remove(&status.instance()) {
        merge(&mut status.acks, &kept.acks);
    }
}

/// A new status of an instance that (re)appears, with its waiting acks.
fn returning(
    waiting: &mut BTreeMap<InstanceId, ProbeStatus>,
    id: &InstanceId,
    layer: &str,
) -> ProbeStatus {
    let mut status = ProbeStatus::new(id, layer);
    unpark(waiting, &mut status);
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::outcome::Outcome;
    use crate::model::outcome::{ErrorReason, ProbeError, ResourceChange};
    use std::time::Duration;

    pub(crate) fn report(verdict: Verdict, at: i64) -> RunReport {
        let mut report = RunReport {
            probe: "p".into(),
            name: "p".into(),
            root: String::new(),
            layer: "command".into(),
            run_id: at as u64,
            trigger: "schedule".into(),
            repo: "r".into(),
            commit: format!("c{at}"),
            started_at: DateTime::from_timestamp(at, 0).unwrap(),
            duration: Duration::from_secs(1),
            ..RunReport::default()
        };
        report.apply_result(match verdict {
            Verdict::InSync => Ok(Outcome::in_sync()),
            Verdict::Drifted => Ok(Outcome::drifted(vec![ResourceChange::new("a", "update")])),
            Verdict::Error => Err(ProbeError::new(ErrorReason::Timeout, "slow")),
        });
        report
    }

    #[test]
    fn drift_episode_survives_errors_and_ends_in_sync() {
        let mut status = ProbeStatus::new(&InstanceId::new("p", ""), "command");
        status.apply(&report(Verdict::Drifted, 100));
        status.apply(&report(Verdict::Drifted, 200));
        status.apply(&report(Verdict::Error, 300));
        assert!(status.drifted);
        assert_eq!(status.drifted_since.unwrap().timestamp(), 100);
        assert_eq!(status.drifted_since_commit.as_deref(), Some("c100"));
        assert_eq!(status.last_success.unwrap().timestamp(), 200);
        assert_eq!(status.verdict(), Some(Verdict::Error));
        status.apply(&report(Verdict::InSync, 400));
        assert!(!status.drifted);
        assert!(status.drifted_since.is_none());
    }

    #[test]
    fn persists_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let state = State::load(dir.path());
        state.record(&report(Verdict::Drifted, 100));
        state.persist().unwrap();
        let again = State::load(dir.path());
        assert_eq!(
            again
                .get(&InstanceId::new("p", ""))
                .unwrap()
                .drifted_since
                .unwrap()
                .timestamp(),
            100
        );
    }

    #[test]
    fn concurrent_writers_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let state = std::sync::Arc::new(State::load(dir.path()));
        state.record(&report(Verdict::Drifted, 100));
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let state = state.clone();
                std::thread::spawn(move || (0..50).try_for_each(|_| state.persist()))
            })
            .collect();
        for writer in writers {
            writer.join().unwrap().unwrap();
        }
    }

    #[test]
    fn bursts_of_writes_coalesce_and_land_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(State::load(dir.path()));
        for at in 0..200 {
            state.record(&report(Verdict::Drifted, 100 + at));
            state.persist_soon();
        }
        state.flush();
        let again = State::load(dir.path());
        let status = again.get(&InstanceId::new("p", "")).unwrap();
        assert_eq!(status.last_report.unwrap().started_at.timestamp(), 299);
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn a_new_listing_drops_roots_it_no_longer_has() {
        let state = State::ephemeral();
        state.set_instances("tf", "terraform", &["a".into(), "b".into()]);
        let removed = state.set_instances("tf", "terraform", &["a".into()]);
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].root, "b");
        assert_eq!(state.instances_of("tf"), [InstanceId::new("tf", "a")]);
        let mut late = report(Verdict::Drifted, 100);
        late.name = "tf".into();
        late.root = "b".into();
        assert!(state.record_if_known(&late).is_none());
        assert_eq!(state.instances_of("tf").len(), 1);
    }

    #[test]
    fn adopting_takes_the_newer_status_and_keeps_the_episode_whole() {
        let id = InstanceId::new("p", "");
        // The previous owner saw drift from 100 to 200.
        let mut previous = ProbeStatus::new(&id, "command");
        previous.apply(&report(Verdict::Drifted, 100));
        previous.apply(&report(Verdict::Drifted, 200));

        // Nothing known here: take it all, keep our schedule.
        let mut fresh = ProbeStatus::new(&id, "command");
        fresh.next_run = DateTime::from_timestamp(900, 0);
        assert!(fresh.adopt(&previous));
        assert_eq!(fresh.drifted_since.unwrap().timestamp(), 100);
        assert_eq!(fresh.verdict(), Some(Verdict::Drifted));
        assert_eq!(fresh.next_run.unwrap().timestamp(), 900);

        // A stale status of our own (an old ownership) loses to newer news.
        let mut stale = ProbeStatus::new(&id, "command");
        stale.apply(&report(Verdict::InSync, 50));
        assert!(stale.adopt(&previous));
        assert!(stale.drifted);

        // We ran first after the handover and saw drift: same episode.
        let mut raced = ProbeStatus::new(&id, "command");
        raced.apply(&report(Verdict::Drifted, 300));
        assert!(raced.adopt(&previous));
        assert_eq!(raced.drifted_since.unwrap().timestamp(), 100);
        assert_eq!(raced.drifted_since_commit.as_deref(), Some("c100"));
        assert_eq!(raced.last_run().unwrap().timestamp(), 300);

        // We saw it in sync after their last run: their episode is over.
        let mut resolved = ProbeStatus::new(&id, "command");
        resolved.apply(&report(Verdict::InSync, 300));
        assert!(!resolved.adopt(&previous));
        assert!(!resolved.drifted);

        // Nothing to learn from a status without a run, or an older one.
        let mut newer = previous.clone();
        newer.apply(&report(Verdict::Drifted, 400));
        assert!(!newer.adopt(&ProbeStatus::new(&id, "command")));
        assert!(!newer.adopt(&previous), "same episode start: no change");
    }

    #[test]
    fn adopting_carries_acks_both_ways_and_never_revives_an_ended_one() {
        let id = InstanceId::new("p", "");
        let ack = |name: &str| runtime_ack(name, "p");
        // The previous owner ran last and holds a-1 and a-2 (a-2 ended).
        let mut previous = ProbeStatus::new(&id, "command");
        previous.apply(&report(Verdict::Drifted, 200));
        previous.acks = vec![ack("a-1"), ack("a-2")];
        previous.acks[1].ended = Some(crate::ack::model::Ended {
            at: DateTime::from_timestamp(150, 0).unwrap(),
            reason: crate::ack::EndReason::Deleted,
        });
        // Here: an older status with its own a-3 and an older copy of a-2.
        let mut mine = ProbeStatus::new(&id, "command");
        mine.apply(&report(Verdict::Drifted, 100));
        mine.acks = vec![ack("a-2"), ack("a-3")];
        assert!(mine.adopt(&previous));
        let ids: Vec<(&str, bool)> = mine
            .acks
            .iter()
            .map(|a| (a.id.as_str(), a.ended.is_some()))
            .collect();
        assert_eq!(ids, [("a-1", false), ("a-2", true), ("a-3", false)]);
        // The other way round (ours ran later): theirs still join ours.
        let mut later = ProbeStatus::new(&id, "command");
        later.apply(&report(Verdict::Drifted, 300));
        assert!(later.adopt(&previous));
        assert_eq!(later.acks.len(), 2);
        // Persisted and reloaded with the state.
        let dir = tempfile::tempdir().unwrap();
        let state = State::load(dir.path());
        state.ensure_instance(&id, "command");
        state.adopt(&mine);
        state.persist().unwrap();
        let reloaded = State::load(dir.path());
        assert_eq!(reloaded.get(&id).unwrap().acks, mine.acks);
    }

    fn runtime_ack(id: &str, instance: &str) -> crate::ack::Ack {
        crate::ack::Ack {
            id: id.into(),
            instance: instance.into(),
            subjects: vec![],
            fields: vec![],
            covers: vec![],
            by: "alice".into(),
            reason: "r".into(),
            created_at: DateTime::from_timestamp(100, 0).unwrap(),
            expires_at: DateTime::from_timestamp(10_000, 0).unwrap(),
            source: crate::ack::AckSource::Runtime,
            matched_at: None,
            changed: false,
            ended: None,
        }
    }

    #[test]
    fn acks_wait_for_an_instance_that_goes_and_come_back_with_it() {
        // Each way an instance goes, and each way it comes back.
        let single = InstanceId::new("web", "");
        let root = InstanceId::new("tf", "b");
        let dir = tempfile::tempdir().unwrap();
        let state = State::load(dir.path());
        state.ensure_instance(&single, "command");
        state.set_instances("tf", "terraform", &["a".into(), "b".into()]);
        for id in [&single, &root] {
            state.update(id, |s| {
                s.acks
                    .push(runtime_ack(&format!("a-{}", id), &id.to_string()))
            });
        }
        // The probe leaves the config; the root leaves the listing.
        state.retain_names(&["tf".to_string()].into());
        state.set_instances("tf", "terraform", &["a".into()]);
        assert!(state.get(&single).is_none() && state.get(&root).is_none());
        let waiting: Vec<InstanceId> = state.waiting().iter().map(|s| s.instance()).collect();
        assert_eq!(waiting, [root.clone(), single.clone()]);
        // They survive a restart while away (the file keeps them).
        state.persist().unwrap();
        let state = State::load(dir.path());
        assert_eq!(State::peek_waiting(dir.path()).len(), 2);
        assert_eq!(state.waiting().len(), 2);
        state.retain_names(&["tf".to_string()].into());
        assert_eq!(
            state.waiting().len(),
            2,
            "a second restart without it keeps them"
        );
        // Back: the single-root probe at start-up, the root in a listing,
        // and an instance first seen by a run.
        state.ensure_instance(&single, "command");
        state.set_instances("tf", "terraform", &["a".into(), "b".into()]);
        for id in [&single, &root] {
            let acks = state.get(id).unwrap().acks;
            assert_eq!(acks.len(), 1, "{id}");
            assert_eq!(acks[0].id, format!("a-{id}"));
        }
        assert!(state.waiting().is_empty());
        let other = InstanceId::new("p", "");
        state.ensure_instance(&other, "command");
        state.update(&other, |s| s.acks.push(runtime_ack("a-p", "p")));
        state.retain_names(&BTreeSet::new());
        assert_eq!(state.waiting().len(), 3);
        state.record(&report(Verdict::Drifted, 100));
        assert_eq!(state.get(&other).unwrap().acks[0].id, "a-p");
        // An instance without acks leaves nothing behind.
        state.ensure_instance(&InstanceId::new("bare", ""), "command");
        state.retain_names(&BTreeSet::new());
        assert!(!state.waiting().iter().any(|s| s.name == "bare"));
    }

    #[test]
    fn a_waiting_entry_goes_once_it_holds_no_ack() {
        let state = State::ephemeral();
        let id = InstanceId::new("web", "");
        state.ensure_instance(&id, "command");
        state.update(&id, |s| s.acks.push(runtime_ack("a-1", "web")));
        state.retain_names(&BTreeSet::new());
        assert_eq!(state.update_waiting(&id, |s| s.acks.len()), Some(1));
        state.update_waiting(&id, |s| s.acks.clear());
        assert!(state.waiting().is_empty());
        assert!(state.update_waiting(&id, |_| ()).is_none());
    }

    #[test]
    fn adopting_leaves_unknown_instances_alone() {
        let state = State::ephemeral();
        let mut other = ProbeStatus::new(&InstanceId::new("p", ""), "command");
        other.apply(&report(Verdict::Drifted, 100));
        assert!(state.adopt(&other).is_none());
        assert!(state.get(&other.instance()).is_none());
        state.ensure_instance(&other.instance(), "command");
        let generation = state.generation();
        assert!(state.adopt(&other).unwrap().drifted);
        assert!(state.generation() > generation);
        assert!(state.adopt(&other).is_none(), "already known");
    }

    #[test]
    fn corrupt_file_starts_clean() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let state = State::load(dir.path());
        assert!(state.snapshot().is_empty());
        assert!(dir.path().join("state.json.corrupt").exists());
    }
}
