//! Drift history: every run and every drift episode, kept in an embedded
//! SQLite database (`<state_dir>/history.db`) so the status page and the API
//! can answer "since when" and "how often" across restarts.
//!
//! Writes never block probe runs: [`History::record`] only pushes a small
//! record onto a bounded channel; a dedicated writer thread batches records
//! into transactions, derives drift episodes and events, and prunes old rows.
//! Reads use their own connection (WAL mode lets them run beside the writer).
//!
//! An episode opens on the first drifted run, stays open through error runs
//! (an error says nothing about drift), and closes on the first in-sync run
//! (`ended_reason: in_sync`) or when the instance itself goes away, its root
//! no longer listed (`ended_reason: removed`). Events are the transitions:
//! `drift_detected`, `drift_resolved`, `probe_failing` (into error),
//! `probe_recovered` (out of error) and `instance_removed`; and those of
//! acknowledgements: `ack_created`, `ack_changed`, `ack_expired`,
//! `ack_closed`, `ack_deleted` (kept as long as runs).
//!
//! A corrupt or unreadable database is moved aside
//! (`history.db.corrupt-<unix seconds>`), logged, and a new one started; if
//! even that fails, history is switched off and the daemon carries on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OpenFlags};
use serde::Serialize;

use crate::config::HistoryConfig;
use crate::model::outcome::{RunReport, Verdict};

mod records;
mod schema;
mod writer;

use self::records::verdict_from_code;
pub use self::records::{EpisodeResource, EventKind};
use self::schema::open_or_set_aside;
use self::writer::{AdoptionRecord, Command, RemovalRecord, RunRecord, Write, Writer};

pub const DB_FILE: &str = "history.db";

/// Records waiting for the writer; beyond this, records are dropped (and counted).
const QUEUE_CAPACITY: usize = 10_000;
pub const MAX_PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("history is switched off (the database could not be opened)")]
    Disabled,
    #[error("history database: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// One run as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRow {
    /// History's own id for the run; also the pagination cursor.
    pub id: i64,
    pub probe: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub root: String,
    pub layer: String,
    /// The scheduler's run id.
    pub run_id: u64,
    pub trigger: String,
    pub repo: String,
    pub commit: String,
    pub started_at: DateTime<Utc>,
    pub duration_seconds: f64,
    pub verdict: Verdict,
    pub changes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One drift episode: from the first drifted run to the first in-sync run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpisodeRow {
    pub id: i64,
    pub probe: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub root: String,
    pub layer: String,
    pub started_at: DateTime<Utc>,
    /// History run id of the run that found the drift.
    pub started_run: i64,
    pub started_commit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_run: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_commit: Option<String>,
    /// Why the episode ended: `in_sync`, or `removed` when the instance went
    /// away (its root no longer listed) while drifted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_reason: Option<String>,
    /// Every resource seen drifted during the episode (capped), with its last action.
    pub resources: Vec<EpisodeResource>,
    /// The most resources drifted at once during the episode.
    pub max_resources: u64,
    /// How many drifted runs the episode spans.
    pub drifted_runs: u64,
}

impl EpisodeRow {
    pub fn is_open(&self) -> bool {
        self.ended_at.is_none()
    }
}

/// One transition, for the events feed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRow {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    pub probe: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub root: String,
    pub layer: String,
    pub commit: String,
    /// History run id of the run that caused the event.
    pub run: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub episode: Option<i64>,
    pub message: String,
}

/// A page of rows, newest first; `next_before` is the cursor for the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_before: Option<i64>,
}

/// Filters for episode queries.
#[derive(Debug, Clone, Default)]
pub struct EpisodeQuery<'a> {
    pub probe: Option<&'a str>,
    pub open_only: bool,
    pub limit: usize,
    pub before: Option<i64>,
}

/// The handle the scheduler and HTTP share.
pub struct History {
    path: PathBuf,
    sender: Mutex<Option<SyncSender<Command>>>,
    reader: Mutex<Option<(u64, Connection)>>,
    /// Bumped by the writer each time it starts a new database file.
    generation: Arc<AtomicU64>,
    enabled: Arc<std::sync::atomic::AtomicBool>,
    dropped: AtomicU64,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl History {
    /// Opens (or creates) `<state_dir>/history.db` and starts the writer
    /// thread. Never fails: a bad file is set aside; if no database can be
    /// opened at all, history is switched off with an error in the log.
    pub fn open(state_dir: &Path, config: HistoryConfig) -> History {
        let path = state_dir.join(DB_FILE);
        if let Err(err) = std::fs::create_dir_all(state_dir) {
            tracing::error!(dir = %state_dir.display(), error = %err, "cannot create the state directory; history is off");
        }
        let generation = Arc::new(AtomicU64::new(0));
        let enabled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let conn = open_or_set_aside(&path);
        enabled.store(conn.is_some(), Ordering::SeqCst);
        let (sender, receiver) = std::sync::mpsc::sync_channel(QUEUE_CAPACITY);
        let mut writer = Writer {
            path: path.clone(),
            conn,
            config,
            memo: HashMap::new(),
            generation: generation.clone(),
            enabled: enabled.clone(),
            last_prune: None,
        };
        let handle = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || writer.run(receiver))
            .expect("spawn the history writer thread");
        History {
            path,
            sender: Mutex::new(Some(sender)),
            reader: Mutex::new(None),
            generation,
            enabled,
            dropped: AtomicU64::new(0),
            writer: Mutex::new(Some(handle)),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// False when no database could be opened.
    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::SeqCst)
    }

    /// Records that were dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Queues a finished run. Never blocks: when the queue is full the
    /// record is dropped and counted.
    pub fn record(&self, report: &RunReport) {
        self.queue(Write::Run(Box::new(RunRecord::from_report(report))));
    }

    /// Queues the removal of an instance: its open drift episode ends with
    /// reason `removed`. Never blocks, like [`History::record`].
    pub fn record_removal(&self, removal: &crate::model::instance::Removal) {
        self.queue(Write::Removed(RemovalRecord {
            probe: removal.instance.to_string(),
            commit: removal.commit.clone(),
            at_ms: removal.at.timestamp_millis(),
        }));
    }

    /// Queues an acknowledgement's transition as an event of its instance
    /// (`ack_created`, `ack_changed`, `ack_expired`, `ack_closed`,
    /// `ack_deleted`), tied to the open drift episode. Never blocks.
    pub fn record_ack(&self, event: &crate::ack::AckEvent) {
        self.queue(Write::Ack(Box::new(event.clone())));
    }

    /// Queues what another replica knew about an instance this one took
    /// over (scale-out handover), so the drift episode carries on here
    /// instead of starting again: an open episode is opened (or moved back)
    /// to `status.drifted_since`; when `status` is in sync, an episode left
    /// open here is closed at its last success. Never blocks.
    pub fn record_adoption(&self, status: &crate::state::ProbeStatus) {
        let report = status.last_report.as_ref();
        self.queue(Write::Adopted(Box::new(AdoptionRecord {
            probe: status.probe.clone(),
            name: status.name.clone(),
            root: status.root.clone(),
            layer: status.layer.clone(),
            drifted_since: status
                .drifted
                .then_some(status.drifted_since)
                .flatten()
                .map(|at| {
                    (
                        at.timestamp_millis(),
                        status.drifted_since_commit.clone().unwrap_or_default(),
                    )
                }),
            last_success: status.last_success.map(|at| {
                (
                    at.timestamp_millis(),
                    report.map(|r| r.commit.clone()).unwrap_or_default(),
                )
            }),
            drifted_resources: status.drifted_resources as u64,
        })));
    }

    fn queue(&self, write: Write) {
        let record = write;
        let sender = self.sender.lock().unwrap();
        let Some(sender) = sender.as_ref() else {
            return;
        };
        match sender.try_send(Command::Record(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    tracing::warn!(
                        dropped,
                        "history writer is behind; run records were dropped"
                    );
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Blocks until every record queued before this call is written (or
    /// `timeout` passes). For shutdown and tests; call from blocking code.
    pub fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if !self.send_blocking(Command::Flush(tx)) {
            return false;
        }
        rx.recv_timeout(timeout).is_ok()
    }

    /// Prunes as if the time were `now`, then returns. For tests and benchmarks.
    pub fn prune_at(&self, now: DateTime<Utc>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        if self.send_blocking(Command::PruneAt(now, tx)) {
            let _ = rx.recv_timeout(Duration::from_secs(600));
        }
    }

    fn send_blocking(&self, command: Command) -> bool {
        let sender = self.sender.lock().unwrap().clone();
        match sender {
            Some(sender) => sender.send(command).is_ok(),
            None => false,
        }
    }

    /// Writes what is queued and stops the writer thread.
    pub fn close(&self) {
        self.sender.lock().unwrap().take();
        if let Some(handle) = self.writer.lock().unwrap().take() {
            let _ = handle.join();
        }
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, HistoryError> {
        if !self.is_enabled() {
            return Err(HistoryError::Disabled);
        }
        let mut reader = self.reader.lock().unwrap();
        let generation = self.generation.load(Ordering::SeqCst);
        if reader.as_ref().map(|(g, _)| *g) != Some(generation) {
            let conn = Connection::open_with_flags(
                &self.path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            conn.busy_timeout(Duration::from_secs(5))?;
            *reader = Some((generation, conn));
        }
        let (_, conn) = reader.as_ref().expect("reader opened above");
        let result = f(conn);
        if result.is_err() {
            // Next query reopens: the file may have been set aside meanwhile.
            *reader = None;
        }
        Ok(result?)
    }

    /// Runs of one probe instance, newest first.
    pub fn runs(
        &self,
        probe: &str,
        limit: usize,
        before: Option<i64>,
    ) -> Result<Page<RunRow>, HistoryError> {
        let limit = limit.clamp(1, MAX_PAGE);
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT r.id, p.probe, p.name, p.root, p.layer, r.run_id, r.trigger, r.repo, r.commit_id,
                        r.started_at, r.duration_ms, r.verdict, r.changes, r.error_reason, r.message
                 FROM runs r JOIN probes p ON p.id = r.probe_id
                 WHERE p.probe = ?1 AND r.id < ?2
                 ORDER BY r.id DESC LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(
                    params![probe, before.unwrap_or(i64::MAX), (limit + 1) as i64],
                    run_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(page(rows, limit, |r| r.id))
        })
    }

    /// Events, newest first, optionally for one probe instance.
    pub fn events(
        &self,
        probe: Option<&str>,
        limit: usize,
        before: Option<i64>,
    ) -> Result<Page<EventRow>, HistoryError> {
        let limit = limit.clamp(1, MAX_PAGE);
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT e.id, e.at, e.kind, p.probe, p.name, p.root, p.layer, e.commit_id, e.run, e.episode, e.message
                 FROM events e JOIN probes p ON p.id = e.probe_id
                 WHERE (?1 IS NULL OR p.probe = ?1) AND e.id < ?2
                 ORDER BY e.id DESC LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(
                    params![probe, before.unwrap_or(i64::MAX), (limit + 1) as i64],
                    |row| {
                        let kind: String = row.get(2)?;
                        Ok(EventRow {
                            id: row.get(0)?,
                            at: from_ms(row.get(1)?),
                            kind: EventKind::parse(&kind).unwrap_or(EventKind::ProbeFailing),
                            probe: row.get(3)?,
                            name: row.get(4)?,
                            root: row.get(5)?,
                            layer: row.get(6)?,
                            commit: row.get(7)?,
                            run: row.get(8)?,
                            episode: row.get(9)?,
                            message: row.get(10)?,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(page(rows, limit, |e| e.id))
        })
    }

    /// Drift episodes, newest first.
    pub fn episodes(&self, query: &EpisodeQuery<'_>) -> Result<Page<EpisodeRow>, HistoryError> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        self.with_reader(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT e.id, p.probe, p.name, p.root, p.layer, e.started_at, e.started_run, e.started_commit,
                        e.ended_at, e.ended_run, e.ended_commit, e.resources, e.max_resources, e.drifted_runs,
                        e.ended_reason
                 FROM episodes e JOIN probes p ON p.id = e.probe_id
                 WHERE (?1 IS NULL OR p.probe = ?1) AND (?2 = 0 OR e.ended_at IS NULL) AND e.id < ?3
                 ORDER BY e.id DESC LIMIT ?4",
            )?;
            let rows = stmt
                .query_map(
                    params![
                        query.probe,
                        query.open_only as i64,
                        query.before.unwrap_or(i64::MAX),
                        (limit + 1) as i64
                    ],
                    |row| {
                        let resources: String = row.get(11)?;
                        Ok(EpisodeRow {
                            id: row.get(0)?,
                            probe: row.get(1)?,
                            name: row.get(2)?,
                            root: row.get(3)?,
                            layer: row.get(4)?,
                            started_at: from_ms(row.get(5)?),
                            started_run: row.get(6)?,
                            started_commit: row.get(7)?,
                            ended_at: row.get::<_, Option<i64>>(8)?.map(from_ms),
                            ended_run: row.get(9)?,
                            ended_commit: row.get(10)?,
                            resources: serde_json::from_str(&resources).unwrap_or_default(),
                            max_resources: row.get::<_, i64>(12)? as u64,
                            drifted_runs: row.get::<_, i64>(13)? as u64,
                            ended_reason: row.get(14)?,
                        })
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(page(rows, limit, |e| e.id))
        })
    }

    /// Number of stored runs (all probes).
    pub fn run_count(&self) -> Result<u64, HistoryError> {
        self.with_reader(|conn| {
            conn.query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
        })
    }
}

impl Drop for History {
    fn drop(&mut self) {
        self.close();
    }
}

fn page<T>(mut rows: Vec<T>, limit: usize, id: impl Fn(&T) -> i64) -> Page<T> {
    let next_before = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(id)
    } else {
        None
    };
    Page {
        items: rows,
        next_before,
    }
}

fn run_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: row.get(0)?,
        probe: row.get(1)?,
        name: row.get(2)?,
        root: row.get(3)?,
        layer: row.get(4)?,
        run_id: row.get::<_, i64>(5)? as u64,
        trigger: row.get(6)?,
        repo: row.get(7)?,
        commit: row.get(8)?,
        started_at: from_ms(row.get(9)?),
        duration_seconds: row.get::<_, i64>(10)? as f64 / 1000.0,
        verdict: verdict_from_code(row.get(11)?),
        changes: row.get::<_, i64>(12)? as u64,
        error_reason: row.get(13)?,
        message: row.get(14)?,
    })
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::outcome::Outcome;
    use crate::model::outcome::{ErrorReason, ProbeError, ResourceChange};

    /// Test times are offsets from a base a little in the past, so that the
    /// writer's prune at start-up (30 days by default) keeps them.
    fn base() -> i64 {
        static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
        *BASE.get_or_init(|| Utc::now().timestamp() - 2000)
    }

    fn t(at: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(base() + at, 0).unwrap()
    }

    fn offset(at: DateTime<Utc>) -> i64 {
        at.timestamp() - base()
    }

    fn report(probe: &str, verdict: Verdict, at: i64) -> RunReport {
        let mut report = RunReport {
            probe: probe.into(),
            name: probe.into(),
            root: String::new(),
            layer: "command".into(),
            run_id: at as u64,
            trigger: "schedule".into(),
            repo: "r".into(),
            commit: format!("c{at}"),
            started_at: t(at),
            duration: Duration::from_millis(1500),
            ..RunReport::default()
        };
        report.apply_result(match verdict {
            Verdict::InSync => Ok(Outcome::in_sync()),
            Verdict::Drifted => Ok(Outcome::drifted(vec![
                ResourceChange::new(format!("res-{at}"), "update"),
                ResourceChange::new("shared", "update"),
            ])),
            Verdict::Error => Err(ProbeError::new(ErrorReason::Timeout, "too slow\nmore")),
        });
        report
    }

    fn flush(history: &History) {
        assert!(history.flush(Duration::from_secs(30)));
    }

    #[test]
    fn episode_opens_on_drift_survives_errors_and_closes_in_sync() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path(), HistoryConfig::default());
        for (verdict, at) in [
            (Verdict::InSync, 100),
            (Verdict::Drifted, 200),
            (Verdict::Error, 300),
            (Verdict::Drifted, 400),
        ] {
            history.record(&report("p", verdict, at));
        }
        flush(&history);
        let open = history
            .episodes(&EpisodeQuery {
                probe: Some("p"),
                open_only: true,
                limit: 10,
                before: None,
            })
            .unwrap();
        assert_eq!(
            open.items.len(),
            1,
            "one episode, kept open through the error"
        );
        let episode = &open.items[0];
        assert!(episode.is_open());
        assert_eq!(offset(episode.started_at), 200);
        assert_eq!(episode.started_commit, "c200");
        assert_eq!(episode.drifted_runs, 2);
        let subjects: Vec<_> = episode
            .resources
            .iter()
            .map(|r| r.subject.as_str())
            .collect();
        assert_eq!(subjects, ["res-200", "res-400", "shared"]);

        history.record(&report("p", Verdict::InSync, 500));
        flush(&history);
        let all = history
            .episodes(&EpisodeQuery {
                probe: Some("p"),
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(all.items.len(), 1);
        let closed = &all.items[0];
        assert_eq!(offset(closed.ended_at.unwrap()), 500);
        assert_eq!(closed.ended_commit.as_deref(), Some("c500"));
        let runs = history.runs("p", 10, None).unwrap();
        assert_eq!(runs.items.len(), 5);
        assert_eq!(closed.started_run, runs.items[3].id);
        assert_eq!(closed.ended_run, Some(runs.items[0].id));

        let kinds: Vec<_> = history
            .events(Some("p"), 10, None)
            .unwrap()
            .items
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                EventKind::DriftResolved,
                EventKind::ProbeRecovered,
                EventKind::ProbeFailing,
                EventKind::DriftDetected
            ]
        );
    }

    #[test]
    fn runs_keep_their_fields_and_page_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path(), HistoryConfig::default());
        for at in 1..=7 {
            history.record(&report("p", Verdict::Error, at * 10));
        }
        history.record(&report("other", Verdict::InSync, 1));
        flush(&history);
        let first = history.runs("p", 3, None).unwrap();
        assert_eq!(first.items.len(), 3);
        let row = &first.items[0];
        assert_eq!(offset(row.started_at), 70);
        assert_eq!(row.verdict, Verdict::Error);
        assert_eq!(row.error_reason.as_deref(), Some("timeout"));
        assert_eq!(row.message.as_deref(), Some("too slow"));
        assert_eq!(row.duration_seconds, 1.5);
        assert_eq!(row.commit, "c70");
        let second = history.runs("p", 3, first.next_before).unwrap();
        let third = history.runs("p", 3, second.next_before).unwrap();
        let times: Vec<_> = [first, second, third.clone()]
            .iter()
            .flat_map(|p| p.items.iter().map(|r| offset(r.started_at)))
            .collect();
        assert_eq!(times, [70, 60, 50, 40, 30, 20, 10]);
        assert_eq!(third.next_before, None);
        // Seven errors in a row are one failing event.
        assert_eq!(history.events(Some("p"), 50, None).unwrap().items.len(), 1);
    }

    #[test]
    fn a_probe_message_reaches_runs_and_events() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path(), HistoryConfig::default());
        let mut drifted = report("p", Verdict::Drifted, 100);
        drifted.message = "The definition is 6 nodes but berlin-ai is running with 5\nmore".into();
        history.record(&drifted);
        flush(&history);
        let sentence = "The definition is 6 nodes but berlin-ai is running with 5";
        let runs = history.runs("p", 1, None).unwrap();
        assert_eq!(runs.items[0].message.as_deref(), Some(sentence));
        assert_eq!(runs.items[0].error_reason, None);
        let events = history.events(Some("p"), 1, None).unwrap();
        assert_eq!(events.items[0].kind, EventKind::DriftDetected);
        assert_eq!(events.items[0].message, sentence);
    }

    #[test]
    fn history_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let history = History::open(dir.path(), HistoryConfig::default());
            history.record(&report("p", Verdict::Drifted, 100));
            history.close();
        }
        let history = History::open(dir.path(), HistoryConfig::default());
        // The open episode is picked up again: no second episode, no second event.
        history.record(&report("p", Verdict::Drifted, 200));
        history.record(&report("p", Verdict::InSync, 300));
        flush(&history);
        assert_eq!(history.runs("p", 10, None).unwrap().items.len(), 3);
        let episodes = history
            .episodes(&EpisodeQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(episodes.items.len(), 1);
        assert_eq!(offset(episodes.items[0].started_at), 100);
        assert_eq!(offset(episodes.items[0].ended_at.unwrap()), 300);
        assert_eq!(history.events(None, 10, None).unwrap().items.len(), 2);
    }

    fn status_of(reports: &[RunReport]) -> crate::state::ProbeStatus {
        let id = reports[0].instance();
        let mut status = crate::state::ProbeStatus::new(&id, "command");
        for report in reports {
            status.apply(report);
        }
        status
    }

    fn all_episodes(history: &History) -> Vec<EpisodeRow> {
        history
            .episodes(&EpisodeQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap()
            .items
    }

    #[test]
    fn an_adopted_drift_episode_carries_on_without_a_second_start() {
        // Another replica saw drift from 100; this one takes over and runs.
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path(), HistoryConfig::default());
        let previous = status_of(&[
            report("p", Verdict::Drifted, 100),
            report("p", Verdict::Drifted, 200),
        ]);
        history.record_adoption(&previous);
        history.record(&report("p", Verdict::Drifted, 300));
        history.record(&report("p", Verdict::InSync, 400));
        flush(&history);
        let episodes = all_episodes(&history);
        assert_eq!(episodes.len(), 1, "{episodes:?}");
        assert_eq!(offset(episodes[0].started_at), 100);
        assert_eq!(episodes[0].started_commit, "c100");
        assert_eq!(offset(episodes[0].ended_at.unwrap()), 400);
        assert_eq!(episodes[0].drifted_runs, 1, "only the runs made here");
        // Detected elsewhere: no second drift_detected here, one resolved.
        let kinds: Vec<EventKind> = history
            .events(None, 10, None)
            .unwrap()
            .items
            .iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, [EventKind::DriftResolved]);
    }

    #[test]
    fn an_adoption_after_a_local_drifted_run_moves_the_episode_start_back() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path(), HistoryConfig::default());
        history.record(&report("p", Verdict::Drifted, 300));
        history.record_adoption(&status_of(&[report("p", Verdict::Drifted, 100)]));
        history.record_adoption(&status_of(&[report("p", Verdict::Drifted, 100)]));
        history.record(&report("p", Verdict::Drifted, 400));
        flush(&history);
        let episodes = all_episodes(&history);
        assert_eq!(episodes.len(), 1, "{episodes:?}");
        assert_eq!(offset(episodes[0].started_at), 100);
        assert!(episodes[0].is_open());
        assert_eq!(episodes[0].drifted_runs, 2);
    }

    #[test]
    fn an_adoption_closes_or_replaces_an_episode_left_open_here() {
        // This replica owned the instance before, saw drift from 100, lost
        // it; meanwhile it was resolved elsewhere (case p) or resolved and
        // drifted again from 500 (case q).
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path(), HistoryConfig::default());
        history.record(&report("p", Verdict::Drifted, 100));
        history.record(&report("q", Verdict::Drifted, 100));
        history.record_adoption(&status_of(&[
            report("p", Verdict::Drifted, 100),
            report("p", Verdict::InSync, 450),
        ]));
        history.record_adoption(&status_of(&[
            report("q", Verdict::InSync, 450),
            report("q", Verdict::Drifted, 500),
        ]));
        flush(&history);
        let episodes = all_episodes(&history);
        let of = |probe: &str| -> Vec<&EpisodeRow> {
            episodes.iter().filter(|e| e.probe == probe).collect()
        };
        let p = of("p");
        assert_eq!(p.len(), 1);
        assert_eq!(offset(p[0].ended_at.unwrap()), 450);
        assert_eq!(p[0].ended_reason.as_deref(), Some("in_sync"));
        let q = of("q");
        assert_eq!(q.len(), 2, "{q:?}");
        assert!(q.iter().any(|e| e.is_open() && offset(e.started_at) == 500));
        assert!(q
            .iter()
            .any(|e| !e.is_open() && offset(e.started_at) == 100));
    }

    #[test]
    fn corrupt_database_is_set_aside_and_a_new_one_starts() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(DB_FILE),
            b"this is not a database, just junk".repeat(200),
        )
        .unwrap();
        let history = History::open(dir.path(), HistoryConfig::default());
        assert!(history.is_enabled());
        history.record(&report("p", Verdict::Drifted, 100));
        flush(&history);
        assert_eq!(history.runs("p", 10, None).unwrap().items.len(), 1);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("history.db.corrupt-"))
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        let kept = std::fs::read(dir.path().join(&aside[0])).unwrap();
        assert!(kept.starts_with(b"this is not a database"));
    }

    #[test]
    fn unwritable_state_dir_switches_history_off_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the directory should be.
        let blocked = dir.path().join("state");
        std::fs::write(&blocked, b"").unwrap();
        let history = History::open(&blocked, HistoryConfig::default());
        assert!(!history.is_enabled());
        history.record(&report("p", Verdict::Drifted, 100));
        assert!(history.flush(Duration::from_secs(30)));
        assert!(matches!(
            history.runs("p", 1, None),
            Err(HistoryError::Disabled)
        ));
    }

    #[test]
    fn retention_prunes_runs_but_keeps_episodes() {
        let dir = tempfile::tempdir().unwrap();
        let config = HistoryConfig {
            retention: Duration::from_secs(1000),
            episode_retention: None,
        };
        let history = History::open(dir.path(), config);
        history.record(&report("p", Verdict::Drifted, 100));
        history.record(&report("p", Verdict::InSync, 200));
        history.record(&report("p", Verdict::InSync, 5000));
        flush(&history);
        history.prune_at(t(5500));
        let runs = history.runs("p", 10, None).unwrap();
        assert_eq!(runs.items.len(), 1);
        assert_eq!(offset(runs.items[0].started_at), 5000);
        let episodes = history
            .episodes(&EpisodeQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            episodes.items.len(),
            1,
            "episodes are kept forever by default"
        );
        assert_eq!(history.events(None, 10, None).unwrap().items.len(), 2);
    }

    #[test]
    fn episode_retention_prunes_closed_episodes_only() {
        let dir = tempfile::tempdir().unwrap();
        let config = HistoryConfig {
            retention: Duration::from_secs(1000),
            episode_retention: Some(Duration::from_secs(1000)),
        };
        let history = History::open(dir.path(), config);
        history.record(&report("old", Verdict::Drifted, 100));
        history.record(&report("old", Verdict::InSync, 200));
        history.record(&report("open", Verdict::Drifted, 100));
        flush(&history);
        history.prune_at(t(5500));
        let episodes = history
            .episodes(&EpisodeQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        let probes: Vec<_> = episodes.items.iter().map(|e| e.probe.as_str()).collect();
        assert_eq!(probes, ["open"]);
        let events: Vec<_> = history
            .events(None, 10, None)
            .unwrap()
            .items
            .into_iter()
            .map(|e| e.probe)
            .collect();
        assert_eq!(events, ["open"]);
    }

    #[test]
    fn record_never_blocks_when_the_writer_is_behind() {
        let dir = tempfile::tempdir().unwrap();
        let history = History::open(dir.path(), HistoryConfig::default());
        let sample = report("p", Verdict::InSync, 1);
        for _ in 0..(QUEUE_CAPACITY * 3) {
            history.record(&sample);
        }
        flush(&history);
        let stored = history.run_count().unwrap();
        assert_eq!(stored + history.dropped(), (QUEUE_CAPACITY * 3) as u64);
    }
}
