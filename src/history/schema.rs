//! The history database's schema and opening it: the tables and indexes (created if missing, with
//! the schema version recorded), WAL mode, and the recovery path, where a corrupt or unreadable
//! database is moved aside (`history.db.corrupt-<unix seconds>`) and a new one started.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use rusqlite::{Connection, ErrorCode, OpenFlags};

/// The schema version recorded in `PRAGMA user_version`.
pub(super) const SCHEMA_VERSION: i64 = 2;

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS probes (
    id INTEGER PRIMARY KEY,
    probe TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    root TEXT NOT NULL,
    layer TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    probe_id INTEGER NOT NULL,
    run_id INTEGER NOT NULL,
    trigger TEXT NOT NULL,
    repo TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    verdict INTEGER NOT NULL,
    changes INTEGER NOT NULL,
    error_reason TEXT,
    message TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_probe ON runs(probe_id, id);
CREATE TABLE IF NOT EXISTS episodes (
    id INTEGER PRIMARY KEY,
    probe_id INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    started_run INTEGER NOT NULL,
    started_commit TEXT NOT NULL,
    ended_at INTEGER,
    ended_run INTEGER,
    ended_commit TEXT,
    ended_reason TEXT,
    resources TEXT NOT NULL,
    max_resources INTEGER NOT NULL,
    drifted_runs INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS episodes_by_probe ON episodes(probe_id, id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    probe_id INTEGER NOT NULL,
    commit_id TEXT NOT NULL,
    run INTEGER NOT NULL,
    episode INTEGER,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_probe ON events(probe_id, id);
";

/// Opens and checks the database; on failure sets the file aside and starts
/// a new one. `None` when not even a new file can be opened.
pub(super) fn open_or_set_aside(path: &Path) -> Option<Connection> {
    match open_db(path) {
        Ok(conn) => Some(conn),
        Err(err) => {
            tracing::error!(path = %path.display(), error = %err, "history database is unusable; setting it aside and starting a new one");
            set_aside(path);
            match open_db(path) {
                Ok(conn) => Some(conn),
                Err(err) => {
                    tracing::error!(path = %path.display(), error = %err, "cannot create a new history database; history is off");
                    None
                }
            }
        }
    }
}

pub(super) fn open_db(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    match version {
        0 => {
            conn.execute_batch(SCHEMA)?;
            conn.execute_batch(&format!("PRAGMA user_version={SCHEMA_VERSION};"))?;
        }
        1 => {
            conn.execute_batch(&format!(
                "ALTER TABLE episodes ADD COLUMN ended_reason TEXT;
                 UPDATE episodes SET ended_reason = 'in_sync' WHERE ended_at IS NOT NULL;
                 PRAGMA user_version={SCHEMA_VERSION};"
            ))?;
        }
        SCHEMA_VERSION => {}
        other => {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
                Some(format!("unknown history schema version {other}")),
            ))
        }
    }
    // Touch every table so a damaged file fails here, not on the first write.
    for table in ["probes", "runs", "episodes", "events"] {
        conn.query_row(
            &format!("SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT 1)"),
            [],
            |r| r.get::<_, i64>(0),
        )?;
    }
    Ok(conn)
}

/// Renames the database (and its WAL files) to `history.db.corrupt-<ts>`.
pub(super) fn set_aside(path: &Path) {
    let stamp = Utc::now().timestamp();
    let aside = PathBuf::from(format!("{}.corrupt-{stamp}", path.display()));
    match std::fs::rename(path, &aside) {
        Ok(()) => {
            tracing::warn!(from = %path.display(), to = %aside.display(), "history database set aside")
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => {
            tracing::error!(path = %path.display(), error = %err, "cannot move the history database aside");
            let _ = std::fs::remove_file(path);
        }
    }
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        if side.exists() {
            let _ = std::fs::rename(&side, format!("{}{suffix}", aside.display()));
        }
    }
}

pub(super) fn is_corruption(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}
