//! The writer thread and what it is sent: records cheap to build on the probe's side (runs,
//! removals, acknowledgement events, adoptions) arrive on a bounded channel and are written in
//! batched transactions, deriving drift episodes and events from what it remembers per instance
//! between runs, and pruning rows past their retention.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension};

use crate::config::HistoryConfig;
use crate::model::outcome::{RunReport, Verdict};

use super::records::{
    truncate, verdict_from_code, EpisodeResource, EventKind, MAX_EPISODE_RESOURCES,
    MAX_MESSAGE_BYTES, PRUNE_EVERY,
};
use super::schema::{is_corruption, open_db, set_aside};

/// What the writer needs from a run report (cheap to build and send).
#[derive(Debug, Clone)]
pub(super) struct RunRecord {
    pub(super) probe: String,
    pub(super) name: String,
    pub(super) root: String,
    pub(super) layer: String,
    pub(super) run_id: u64,
    pub(super) trigger: String,
    pub(super) repo: String,
    pub(super) commit: String,
    pub(super) started_at_ms: i64,
    pub(super) duration_ms: i64,
    pub(super) verdict: Verdict,
    pub(super) resources: Vec<EpisodeResource>,
    pub(super) changes: u64,
    pub(super) error_reason: Option<&'static str>,
    pub(super) message: Option<String>,
}

impl RunRecord {
    pub(super) fn from_report(report: &RunReport) -> RunRecord {
        let resources = if report.verdict == Verdict::Drifted {
            report
                .changes
                .iter()
                .take(MAX_EPISODE_RESOURCES)
                .map(|c| EpisodeResource {
                    subject: c.subject.clone(),
                    action: c.action.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        // The error's first line, else the probe's own one-line message.
        let message = match &report.error {
            Some(error) => Some(error.message.as_str()),
            None if !report.message.is_empty() => Some(report.message.as_str()),
            None => None,
        }
        .map(|text| truncate(text.lines().next().unwrap_or(""), MAX_MESSAGE_BYTES));
        RunRecord {
            probe: report.probe.clone(),
            name: report.name.clone(),
            root: report.root.clone(),
            layer: report.layer.clone(),
            run_id: report.run_id,
            trigger: report.trigger.clone(),
            repo: report.repo.clone(),
            commit: report.commit.clone(),
            started_at_ms: report.started_at.timestamp_millis(),
            duration_ms: report.duration.as_millis().min(i64::MAX as u128) as i64,
            verdict: report.verdict,
            resources,
            changes: report.change_count() as u64,
            error_reason: report.error.as_ref().map(|e| e.reason.as_str()),
            message,
        }
    }
}

/// An instance that went away (its root no longer listed).
#[derive(Debug, Clone)]
pub(super) struct RemovalRecord {
    pub(super) probe: String,
    pub(super) commit: String,
    pub(super) at_ms: i64,
}

/// What another replica knew about an instance this one took over.
#[derive(Debug, Clone)]
pub(super) struct AdoptionRecord {
    pub(super) probe: String,
    pub(super) name: String,
    pub(super) root: String,
    pub(super) layer: String,
    /// Start of the drift episode in progress, with its commit; `None` when in sync.
    pub(super) drifted_since: Option<(i64, String)>,
    /// When the instance was last seen in sync or drifted, with that run's commit.
    pub(super) last_success: Option<(i64, String)>,
    pub(super) drifted_resources: u64,
}

/// One write for the writer's batch, in arrival order.
#[derive(Debug, Clone)]
pub(super) enum Write {
    Run(Box<RunRecord>),
    Removed(RemovalRecord),
    Adopted(Box<AdoptionRecord>),
    Ack(Box<crate::ack::AckEvent>),
}

pub(super) enum Command {
    Record(Write),
    /// Answer once everything sent before has been written.
    Flush(SyncSender<()>),
    /// Prune now with this "now" (tests and benchmarks).
    PruneAt(DateTime<Utc>, SyncSender<()>),
}

/// What the writer remembers per probe instance between runs.
#[derive(Debug, Clone)]
pub(super) struct Memo {
    probe_id: i64,
    last_verdict: Option<Verdict>,
    open_episode: Option<OpenEpisode>,
}

#[derive(Debug, Clone)]
pub(super) struct OpenEpisode {
    id: i64,
    resources: BTreeMap<String, String>,
    max_resources: u64,
    drifted_runs: u64,
}

pub(super) struct Writer {
    pub(super) path: PathBuf,
    pub(super) conn: Option<Connection>,
    pub(super) config: HistoryConfig,
    pub(super) memo: HashMap<String, Memo>,
    pub(super) generation: Arc<AtomicU64>,
    pub(super) enabled: Arc<std::sync::atomic::AtomicBool>,
    pub(super) last_prune: Option<Instant>,
}

impl Writer {
    pub(super) fn run(&mut self, receiver: Receiver<Command>) {
        loop {
            let first = match receiver.recv_timeout(PRUNE_EVERY) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut batch = Vec::new();
            let mut replies = Vec::new();
            let mut push = |command: Command, batch: &mut Vec<Write>| match command {
                Command::Record(record) => batch.push(record),
                other => replies.push(other),
            };
            if let Some(command) = first {
                push(command, &mut batch);
            }
            while batch.len() < 1000 {
                match receiver.try_recv() {
                    Ok(command) => push(command, &mut batch),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.write_batch(&batch);
            }
            if self.last_prune.map_or(true, |t| t.elapsed() >= PRUNE_EVERY) {
                self.prune(Utc::now());
                self.last_prune = Some(Instant::now());
            }
            for reply in replies {
                match reply {
                    Command::Flush(tx) => {
                        let _ = tx.send(());
                    }
                    Command::PruneAt(now, tx) => {
                        self.prune(now);
                        let _ = tx.send(());
                    }
                    Command::Record(_) => unreachable!("records go to the batch"),
                }
            }
        }
    }

    fn write_batch(&mut self, batch: &[Write]) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let memo_before = self.memo.clone();
        let result = (|| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            for write in batch {
                match write {
                    Write::Run(record) => write_one(&tx, &mut self.memo, record)?,
                    Write::Removed(removal) => write_removal(&tx, &mut self.memo, removal)?,
                    Write::Adopted(adoption) => write_adoption(&tx, &mut self.memo, adoption)?,
                    Write::Ack(event) => write_ack(&tx, event)?,
                }
            }
            tx.commit()
        })();
        if let Err(err) = result {
            self.memo = memo_before;
            if is_corruption(&err) {
                tracing::error!(path = %self.path.display(), error = %err, "history database is corrupt; setting it aside and starting a new one");
                self.restart();
            } else {
                tracing::warn!(error = %err, runs = batch.len(), "cannot write run history; these runs are not recorded");
            }
        }
    }

    /// Sets the current file aside and starts a new one.
    fn restart(&mut self) {
        self.conn = None;
        self.memo.clear();
        set_aside(&self.path);
        self.conn = open_db(&self.path)
            .map_err(|err| {
                tracing::error!(path = %self.path.display(), error = %err, "cannot create a new history database; history is off");
            })
            .ok();
        self.enabled.store(self.conn.is_some(), Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn prune(&mut self, now: DateTime<Utc>) {
        let Some(conn) = self.conn.as_ref() else {
            return;
        };
        let run_cutoff = (now
            - chrono::Duration::from_std(self.config.retention).unwrap_or_default())
        .timestamp_millis();
        let episode_cutoff = self.config.episode_retention.map(|keep| {
            (now - chrono::Duration::from_std(keep).unwrap_or_default()).timestamp_millis()
        });
        let result = (|| -> rusqlite::Result<(usize, usize)> {
            // In chunks, so readers never wait long behind one huge delete.
            let mut runs = 0;
            loop {
                let n = conn.execute(
                    "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE started_at < ?1 ORDER BY id LIMIT 5000)",
                    [run_cutoff],
                )?;
                runs += n;
                if n < 5000 {
                    break;
                }
            }
            conn.execute(
                "DELETE FROM events WHERE at < ?1 AND kind IN ('probe_failing', 'probe_recovered', 'ack_created', 'ack_changed', 'ack_expired', 'ack_closed', 'ack_deleted')",
                [run_cutoff],
            )?;
            let mut episodes = 0;
            if let Some(cutoff) = episode_cutoff {
                episodes = conn.execute(
                    "DELETE FROM episodes WHERE ended_at IS NOT NULL AND ended_at < ?1",
                    [cutoff],
                )?;
                conn.execute(
                    "DELETE FROM events WHERE at < ?1 AND kind IN ('drift_detected', 'drift_resolved', 'instance_removed')
                     AND (episode IS NULL OR episode NOT IN (SELECT id FROM episodes))",
                    [cutoff],
                )?;
            }
            Ok((runs, episodes))
        })();
        match result {
            Ok((runs, episodes)) if runs + episodes > 0 => {
                tracing::info!(runs, episodes, "pruned old history")
            }
            Ok(_) => {}
            Err(err) if is_corruption(&err) => {
                tracing::error!(error = %err, "history database is corrupt; setting it aside and starting a new one");
                self.restart();
            }
            Err(err) => tracing::warn!(error = %err, "cannot prune history"),
        }
    }
}

/// The instance an episode belongs to: id text, probe name, root, layer.
struct Instance<'a> {
    probe: &'a str,
    name: &'a str,
    root: &'a str,
    layer: &'a str,
}

fn load_memo(tx: &rusqlite::Transaction<'_>, record: &Instance<'_>) -> rusqlite::Result<Memo> {
    let existing: Option<i64> = tx
        .query_row(
            "SELECT id FROM probes WHERE probe = ?1",
            [record.probe],
            |r| r.get(0),
        )
        .optional()?;
    let probe_id = match existing {
        Some(id) => {
            tx.execute(
                "UPDATE probes SET name = ?2, root = ?3, layer = ?4 WHERE id = ?1",
                params![id, record.name, record.root, record.layer],
            )?;
            id
        }
        None => {
            tx.execute(
                "INSERT INTO probes (probe, name, root, layer) VALUES (?1, ?2, ?3, ?4)",
                params![record.probe, record.name, record.root, record.layer],
            )?;
            tx.last_insert_rowid()
        }
    };
    let last_verdict = tx
        .query_row(
            "SELECT verdict FROM runs WHERE probe_id = ?1 ORDER BY id DESC LIMIT 1",
            [probe_id],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
        .map(verdict_from_code);
    let open_episode = tx
        .query_row(
            "SELECT id, resources, max_resources, drifted_runs FROM episodes
             WHERE probe_id = ?1 AND ended_at IS NULL ORDER BY id DESC LIMIT 1",
            [probe_id],
            |r| {
                let resources: String = r.get(1)?;
                let list: Vec<EpisodeResource> =
                    serde_json::from_str(&resources).unwrap_or_default();
                Ok(OpenEpisode {
                    id: r.get(0)?,
                    resources: list.into_iter().map(|e| (e.subject, e.action)).collect(),
                    max_resources: r.get::<_, i64>(2)? as u64,
                    drifted_runs: r.get::<_, i64>(3)? as u64,
                })
            },
        )
        .optional()?;
    Ok(Memo {
        probe_id,
        last_verdict,
        open_episode,
    })
}

fn resources_json(resources: &BTreeMap<String, String>) -> String {
    let list: Vec<EpisodeResource> = resources
        .iter()
        .map(|(subject, action)| EpisodeResource {
            subject: subject.clone(),
            action: action.clone(),
        })
        .collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
}

/// Ends the instance's open drift episode (reason `removed`) and notes the
/// removal; the instance's memo is forgotten, so a root that comes back
/// starts afresh.
fn write_ack(tx: &rusqlite::Transaction<'_>, event: &crate::ack::AckEvent) -> rusqlite::Result<()> {
    use crate::ack::AckEventKind as Kind;
    let probe = event.instance.to_string();
    tx.execute(
        "INSERT OR IGNORE INTO probes (probe, name, root, layer) VALUES (?1, ?2, ?3, ?4)",
        params![
            probe,
            event.instance.probe,
            event.instance.root,
            event.layer
        ],
    )?;
    let probe_id: i64 = tx.query_row("SELECT id FROM probes WHERE probe = ?1", [&probe], |r| {
        r.get(0)
    })?;
    let episode: Option<i64> = tx
        .query_row(
            "SELECT id FROM episodes WHERE probe_id = ?1 AND ended_at IS NULL ORDER BY id DESC LIMIT 1",
            [probe_id],
            |r| r.get(0),
        )
        .optional()?;
    let kind = match event.kind {
        Kind::Created => EventKind::AckCreated,
        Kind::Changed => EventKind::AckChanged,
        Kind::Expired => EventKind::AckExpired,
        Kind::Closed => EventKind::AckClosed,
        Kind::Deleted => EventKind::AckDeleted,
    };
    // The history's id of that run (scheduler run ids grow across
    // restarts); 0 when it is not recorded (dropped, or history is newer).
    let (commit, run) = match &event.last_run {
        None => (String::new(), 0),
        Some((commit, run_id)) => {
            let run: Option<i64> = tx
                .query_row(
                    "SELECT id FROM runs WHERE probe_id = ?1 AND run_id = ?2 ORDER BY id DESC LIMIT 1",
                    params![probe_id, *run_id as i64],
                    |r| r.get(0),
                )
                .optional()?;
            (commit.clone(), run.unwrap_or(0))
        }
    };
    tx.execute(
        "INSERT INTO events (at, kind, probe_id, commit_id, run, episode, message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            event.at.timestamp_millis(),
            kind.as_str(),
            probe_id,
            commit,
            run,
            episode,
            format!(
                "{}: {}",
                event.ack,
                truncate(&event.message, MAX_MESSAGE_BYTES)
            )
        ],
    )?;
    Ok(())
}

fn write_removal(
    tx: &rusqlite::Transaction<'_>,
    memos: &mut HashMap<String, Memo>,
    removal: &RemovalRecord,
) -> rusqlite::Result<()> {
    memos.remove(&removal.probe);
    let Some(probe_id) = tx
        .query_row(
            "SELECT id FROM probes WHERE probe = ?1",
            [&removal.probe],
            |r| r.get::<_, i64>(0),
        )
        .optional()?
    else {
        return Ok(());
    };
    let open: Option<(i64, i64)> = tx
        .query_row(
            "SELECT id, drifted_runs FROM episodes WHERE probe_id = ?1 AND ended_at IS NULL ORDER BY id DESC LIMIT 1",
            [probe_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    if let Some((episode, _)) = open {
        tx.execute(
            "UPDATE episodes SET ended_at = ?2, ended_commit = ?3, ended_reason = 'removed' WHERE id = ?1",
            params![episode, removal.at_ms, removal.commit],
        )?;
    }
    let message = match open {
        Some((_, runs)) => {
            format!("root no longer listed; drift episode of {runs} drifted run(s) ended")
        }
        None => "root no longer listed".to_string(),
    };
    tx.execute(
        "INSERT INTO events (at, kind, probe_id, commit_id, run, episode, message)
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)",
        params![
            removal.at_ms,
            EventKind::InstanceRemoved.as_str(),
            probe_id,
            removal.commit,
            open.map(|(id, _)| id),
            message
        ],
    )?;
    Ok(())
}

/// Makes the instance's open episode agree with what the previous owner
/// knew: drifted since S means one open episode starting at S (an episode
/// opened here later is moved back to S: it is the same drift; one opened
/// earlier ended before S); in sync means no open episode left from before.
fn write_adoption(
    tx: &rusqlite::Transaction<'_>,
    memos: &mut HashMap<String, Memo>,
    adoption: &AdoptionRecord,
) -> rusqlite::Result<()> {
    let mut memo = match memos.get(&adoption.probe) {
        Some(memo) => memo.clone(),
        None => load_memo(
            tx,
            &Instance {
                probe: &adoption.probe,
                name: &adoption.name,
                root: &adoption.root,
                layer: &adoption.layer,
            },
        )?,
    };
    let open_start = match &memo.open_episode {
        Some(open) => tx
            .query_row(
                "SELECT started_at FROM episodes WHERE id = ?1",
                [open.id],
                |r| r.get::<_, i64>(0),
            )
            .optional()?,
        None => None,
    };
    let close = |id: i64, at: i64, commit: &str| {
        tx.execute(
            "UPDATE episodes SET ended_at = ?2, ended_commit = ?3, ended_reason = 'in_sync' WHERE id = ?1",
            params![id, at, commit],
        )
    };
    match (
        &adoption.drifted_since,
        memo.open_episode.as_ref(),
        open_start,
    ) {
        (Some((since, commit)), Some(open), Some(start)) if start > *since => {
            tx.execute(
                "UPDATE episodes SET started_at = ?2, started_commit = ?3 WHERE id = ?1",
                params![open.id, since, commit],
            )?;
        }
        (Some((since, _)), Some(_), Some(start)) if start == *since => {}
        (Some((since, commit)), open, _) => {
            if let Some(open) = open {
                close(open.id, *since, commit)?;
            }
            tx.execute(
                "INSERT INTO episodes (probe_id, started_at, started_run, started_commit, resources, max_resources, drifted_runs)
                 VALUES (?1, ?2, 0, ?3, '[]', ?4, 0)",
                params![memo.probe_id, since, commit, adoption.drifted_resources as i64],
            )?;
            memo.open_episode = Some(OpenEpisode {
                id: tx.last_insert_rowid(),
                resources: BTreeMap::new(),
                max_resources: adoption.drifted_resources,
                drifted_runs: 0,
            });
        }
        (None, Some(open), start) => match &adoption.last_success {
            Some((at, commit)) if start.map_or(true, |start| start <= *at) => {
                close(open.id, *at, commit)?;
                memo.open_episode = None;
            }
            _ => {}
        },
        (None, None, _) => {}
    }
    memos.insert(adoption.probe.clone(), memo);
    Ok(())
}

fn write_one(
    tx: &rusqlite::Transaction<'_>,
    memos: &mut HashMap<String, Memo>,
    record: &RunRecord,
) -> rusqlite::Result<()> {
    let memo = match memos.get(&record.probe) {
        Some(memo) => memo.clone(),
        None => load_memo(
            tx,
            &Instance {
                probe: &record.probe,
                name: &record.name,
                root: &record.root,
                layer: &record.layer,
            },
        )?,
    };
    let mut memo = memo;
    tx.prepare_cached(
        "INSERT INTO runs (probe_id, run_id, trigger, repo, commit_id, started_at, duration_ms, verdict, changes, error_reason, message)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        memo.probe_id,
        record.run_id as i64,
        record.trigger,
        record.repo,
        record.commit,
        record.started_at_ms,
        record.duration_ms,
        record.verdict.code(),
        record.changes as i64,
        record.error_reason,
        record.message,
    ])?;
    let run = tx.last_insert_rowid();
    let probe_id = memo.probe_id;
    let event = |kind: EventKind, episode: Option<i64>, message: &str| {
        tx.prepare_cached(
            "INSERT INTO events (at, kind, probe_id, commit_id, run, episode, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            record.started_at_ms,
            kind.as_str(),
            probe_id,
            record.commit,
            run,
            episode,
            message
        ])
    };

    match record.verdict {
        Verdict::Drifted => {
            let episode = match memo.open_episode.take() {
                Some(open) => open,
                None => {
                    tx.execute(
                        "INSERT INTO episodes (probe_id, started_at, started_run, started_commit, resources, max_resources, drifted_runs)
                         VALUES (?1, ?2, ?3, ?4, '[]', 0, 0)",
                        params![memo.probe_id, record.started_at_ms, run, record.commit],
                    )?;
                    let id = tx.last_insert_rowid();
                    let message = match &record.message {
                        Some(message) => message.clone(),
                        None => format!("{} resource(s) differ", record.changes),
                    };
                    event(EventKind::DriftDetected, Some(id), &message)?;
                    OpenEpisode {
                        id,
                        resources: BTreeMap::new(),
                        max_resources: 0,
                        drifted_runs: 0,
                    }
                }
            };
            let mut episode = episode;
            for resource in &record.resources {
                if episode.resources.len() >= MAX_EPISODE_RESOURCES
                    && !episode.resources.contains_key(&resource.subject)
                {
                    continue;
                }
                episode
                    .resources
                    .insert(resource.subject.clone(), resource.action.clone());
            }
            episode.max_resources = episode.max_resources.max(record.changes);
            episode.drifted_runs += 1;
            tx.prepare_cached(
                "UPDATE episodes SET resources = ?2, max_resources = ?3, drifted_runs = ?4 WHERE id = ?1",
            )?
            .execute(params![
                episode.id,
                resources_json(&episode.resources),
                episode.max_resources as i64,
                episode.drifted_runs as i64
            ])?;
            memo.open_episode = Some(episode);
        }
        Verdict::InSync => {
            if let Some(open) = memo.open_episode.take() {
                tx.execute(
                    "UPDATE episodes SET ended_at = ?2, ended_run = ?3, ended_commit = ?4, ended_reason = 'in_sync' WHERE id = ?1",
                    params![open.id, record.started_at_ms, run, record.commit],
                )?;
                event(
                    EventKind::DriftResolved,
                    Some(open.id),
                    &format!("in sync again after {} drifted run(s)", open.drifted_runs),
                )?;
            }
        }
        // An error says nothing about drift: the open episode stays open.
        Verdict::Error => {}
    }
    let was_error = memo.last_verdict == Some(Verdict::Error);
    if record.verdict == Verdict::Error && !was_error {
        let message = match (&record.error_reason, &record.message) {
            (Some(reason), Some(message)) => format!("{reason}: {message}"),
            (Some(reason), None) => reason.to_string(),
            _ => "error".to_string(),
        };
        event(
            EventKind::ProbeFailing,
            memo.open_episode.as_ref().map(|e| e.id),
            &message,
        )?;
    } else if record.verdict != Verdict::Error && was_error {
        event(
            EventKind::ProbeRecovered,
            None,
            if record.verdict == Verdict::Drifted {
                "runs again (drifted)"
            } else {
                "runs again (in sync)"
            },
        )?;
    }
    memo.last_verdict = Some(record.verdict);
    memos.insert(record.probe.clone(), memo);
    Ok(())
}
