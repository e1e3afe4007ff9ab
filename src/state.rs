//! The last known status of every probe instance: its last report, last
//! success, and the current drift episode. Persisted in the state directory
//! (write, then rename) and reloaded at start-up, so drift-since, last-success
//! and the API survive a restart. A corrupt file gives a warning and a clean
//! start, never a crash.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::probe::{RunReport, Verdict};

const STATE_FILE: &str = "state.json";
const STATE_VERSION: u32 = 1;

/// What driftwatch knows about one probe instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeStatus {
    /// Instance id: the probe name, or `name:root`.
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
    /// When the next scheduled run starts (cron time plus this instance's
    /// jitter offset); `None` without a schedule. Kept up to date by the scheduler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<DateTime<Utc>>,
}

impl ProbeStatus {
    pub fn new(probe: &str, name: &str, root: &str, layer: &str) -> Self {
        ProbeStatus {
            probe: probe.to_string(),
            name: name.to_string(),
            root: root.to_string(),
            layer: layer.to_string(),
            last_report: None,
            last_success: None,
            drifted: false,
            drifted_since: None,
            drifted_since_commit: None,
            drifted_resources: 0,
            next_run: None,
        }
    }

    /// The verdict of the last completed run, if any.
    pub fn verdict(&self) -> Option<Verdict> {
        self.last_report.as_ref().map(|r| r.verdict)
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
        self.last_report = Some(report.clone());
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    probes: Vec<ProbeStatus>,
}

/// All probe statuses, shared between the scheduler (writer) and HTTP (readers).
#[derive(Debug)]
pub struct State {
    /// `None` for a state that is never written (one-shot `check`).
    path: Option<PathBuf>,
    probes: RwLock<BTreeMap<String, ProbeStatus>>,
    /// Serializes writers: runs finishing together must not share the temp file.
    write_lock: std::sync::Mutex<()>,
    /// Bumped by every change; keys the HTTP side's rendered views.
    generation: AtomicU64,
}

impl State {
    /// Loads the state file from `state_dir`, or starts clean (with a warning
    /// when the file exists but cannot be used).
    pub fn load(state_dir: &Path) -> State {
        let path = state_dir.join(STATE_FILE);
        let probes = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
                Ok(file) if file.version == STATE_VERSION => file
                    .probes
                    .into_iter()
                    .map(|p| (p.probe.clone(), p))
                    .collect(),
                Ok(file) => {
                    tracing::warn!(path = %path.display(), version = file.version, "state file has an unknown version; starting clean");
                    BTreeMap::new()
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "state file is corrupt; starting clean");
                    let _ = std::fs::rename(&path, path.with_extension("json.corrupt"));
                    BTreeMap::new()
                }
            },
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(err) => {
                tracing::warn!(path = %path.display(), error = %err, "cannot read state file; starting clean");
                BTreeMap::new()
            }
        };
        State {
            path: Some(path),
            probes: RwLock::new(probes),
            write_lock: std::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    /// The statuses in `state_dir`'s state file, read without touching it
    /// (for `validate`); empty when it is missing or unusable.
    pub fn peek(state_dir: &Path) -> Vec<ProbeStatus> {
        std::fs::read(state_dir.join(STATE_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<StateFile>(&bytes).ok())
            .filter(|file| file.version == STATE_VERSION)
            .map(|file| file.probes)
            .unwrap_or_default()
    }

    /// A state that lives in memory only.
    pub fn ephemeral() -> State {
        State {
            path: None,
            probes: RwLock::new(BTreeMap::new()),
            write_lock: std::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    /// Drops statuses of probes that are no longer configured.
    pub fn retain_names(&self, names: &BTreeSet<String>) {
        self.probes
            .write()
            .unwrap()
            .retain(|_, status| names.contains(&status.name));
        self.changed();
    }

    /// A number that changes whenever any status does (never for reads), so
    /// readers can cache what they derive from the statuses.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Records a finished run and returns the updated status.
    pub fn record(&self, report: &RunReport) -> ProbeStatus {
        let mut probes = self.probes.write().unwrap();
        let status = probes.entry(report.probe.clone()).or_insert_with(|| {
            ProbeStatus::new(&report.probe, &report.name, &report.root, &report.layer)
        });
        status.apply(report);
        let status = status.clone();
        drop(probes);
        self.changed();
        status
    }

    /// Sets when an instance next runs on its schedule (creating its status
    /// if it has none yet, as a first run would).
    pub fn set_next_run(
        &self,
        probe: &str,
        name: &str,
        root: &str,
        layer: &str,
        next_run: Option<DateTime<Utc>>,
    ) {
        let mut probes = self.probes.write().unwrap();
        probes
            .entry(probe.to_string())
            .or_insert_with(|| ProbeStatus::new(probe, name, root, layer))
            .next_run = next_run;
    }

    pub fn get(&self, probe: &str) -> Option<ProbeStatus> {
        self.probes.read().unwrap().get(probe).cloned()
    }

    pub fn snapshot(&self) -> Vec<ProbeStatus> {
        self.probes.read().unwrap().values().cloned().collect()
    }

    /// Writes the state file atomically: a temp file in the same directory, then rename.
    pub fn persist(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let _writer = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let file = StateFile {
            version: STATE_VERSION,
            probes: self.snapshot(),
        };
        let bytes = serde_json::to_vec(&file).map_err(std::io::Error::other)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::outcome::{ErrorReason, ProbeError, ResourceChange};
    use crate::probe::Outcome;
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
        let mut status = ProbeStatus::new("p", "p", "", "command");
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
            again.get("p").unwrap().drifted_since.unwrap().timestamp(),
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
    fn corrupt_file_starts_clean() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let state = State::load(dir.path());
        assert!(state.snapshot().is_empty());
        assert!(dir.path().join("state.json.corrupt").exists());
    }
}
