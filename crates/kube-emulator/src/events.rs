//! The record WATCH streams from: the bounded log of every change in
//! resourceVersion order, and the watch settings and test hooks every
//! stream reads. Plain data, written by the store and read by `watch`.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// How many events the log keeps unless a test changes it.
pub const DEFAULT_HISTORY: usize = 10_000;
/// Real servers send a bookmark about once a minute.
pub(crate) const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// `ADDED`, `MODIFIED`, `DELETED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

pub(crate) struct Recorded {
    pub(crate) resource_version: u64,
    pub(crate) event: EventType,
    /// `deployments.apps`
    pub(crate) qualified: String,
    pub(crate) namespace: String,
    pub(crate) object: Arc<Value>,
}

/// The bounded log of every change, in resourceVersion order.
pub struct EventLog {
    pub(crate) events: VecDeque<Recorded>,
    pub(crate) limit: usize,
    /// The resourceVersion of the newest event dropped from the log: a watch
    /// may resume from any version at or after it.
    pub(crate) floor: u64,
    pub(crate) notify: tokio::sync::watch::Sender<u64>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            events: VecDeque::new(),
            limit: DEFAULT_HISTORY,
            floor: 0,
            notify: tokio::sync::watch::channel(0).0,
        }
    }
}

impl EventLog {
    /// Records one change; `object` carries its new resourceVersion (for a
    /// deletion, the version of the deletion).
    pub fn record(&mut self, event: EventType, qualified: &str, namespace: &str, object: &Value) {
        let resource_version = object["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|rv| rv.parse().ok())
            .unwrap_or(0);
        self.events.push_back(Recorded {
            resource_version,
            event,
            qualified: qualified.to_string(),
            namespace: namespace.to_string(),
            object: Arc::new(object.clone()),
        });
        self.trim();
        self.notify.send_replace(resource_version);
    }

    pub(crate) fn trim(&mut self) {
        while self.events.len() > self.limit {
            if let Some(dropped) = self.events.pop_front() {
                self.floor = dropped.resource_version;
            }
        }
    }

    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
        self.trim();
    }
}

/// Watch settings and hooks, shared by every stream.
pub struct WatchControl {
    pub(crate) forbidden: std::sync::Mutex<HashSet<String>>,
    /// Bumped to end every open watch.
    pub(crate) cuts: tokio::sync::watch::Sender<u64>,
    pub(crate) bookmark_interval_ms: std::sync::atomic::AtomicU64,
    pub(crate) open: std::sync::atomic::AtomicU64,
    pub(crate) started: std::sync::atomic::AtomicU64,
}

impl Default for WatchControl {
    fn default() -> Self {
        WatchControl {
            forbidden: Default::default(),
            cuts: tokio::sync::watch::channel(0).0,
            bookmark_interval_ms: (DEFAULT_BOOKMARK_INTERVAL.as_millis() as u64).into(),
            open: 0.into(),
            started: 0.into(),
        }
    }
}

impl WatchControl {
    pub fn forbid(&self, qualified: &str) {
        self.forbidden.lock().unwrap().insert(qualified.to_string());
    }

    pub fn allow(&self, qualified: &str) {
        self.forbidden.lock().unwrap().remove(qualified);
    }

    pub fn cut_all(&self) {
        self.cuts.send_modify(|n| *n += 1);
    }

    pub fn set_bookmark_interval(&self, interval: Duration) {
        self.bookmark_interval_ms
            .store(interval.as_millis().max(1) as u64, Ordering::SeqCst);
    }

    /// Watch streams open right now.
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::SeqCst)
    }

    /// Watch requests accepted so far (each reconnect counts).
    pub fn started(&self) -> u64 {
        self.started.load(Ordering::SeqCst)
    }
}
