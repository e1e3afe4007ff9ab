//! What both the queries and the writer of the history know: the kinds of
//! event, a drift episode's resources, the caps on what is kept, and the
//! verdict as stored. A leaf, so `history.rs` and `writer.rs` import it
//! rather than each other.

use std::time::Duration;

use serde::Serialize;

use crate::model::outcome::Verdict;

/// Resources kept per episode (the union over its drifted runs).
pub(super) const MAX_EPISODE_RESOURCES: usize = 500;
/// Error messages kept per run, in bytes.
pub(super) const MAX_MESSAGE_BYTES: usize = 300;
pub(super) const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// A resource involved in a drift episode.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct EpisodeResource {
    pub subject: String,
    pub action: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    DriftDetected,
    DriftResolved,
    ProbeFailing,
    ProbeRecovered,
    InstanceRemoved,
    AckCreated,
    AckChanged,
    AckExpired,
    AckClosed,
    AckDeleted,
}

impl EventKind {
    /// Every kind, for the docs check and the filters.
    pub const ALL: [EventKind; 10] = [
        EventKind::DriftDetected,
        EventKind::DriftResolved,
        EventKind::ProbeFailing,
        EventKind::ProbeRecovered,
        EventKind::InstanceRemoved,
        EventKind::AckCreated,
        EventKind::AckChanged,
        EventKind::AckExpired,
        EventKind::AckClosed,
        EventKind::AckDeleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::DriftDetected => "drift_detected",
            EventKind::DriftResolved => "drift_resolved",
            EventKind::ProbeFailing => "probe_failing",
            EventKind::ProbeRecovered => "probe_recovered",
            EventKind::InstanceRemoved => "instance_removed",
            EventKind::AckCreated => "ack_created",
            EventKind::AckChanged => "ack_changed",
            EventKind::AckExpired => "ack_expired",
            EventKind::AckClosed => "ack_closed",
            EventKind::AckDeleted => "ack_deleted",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            EventKind::DriftDetected => "Drift detected",
            EventKind::DriftResolved => "Drift resolved",
            EventKind::ProbeFailing => "Probe failing",
            EventKind::ProbeRecovered => "Probe recovered",
            EventKind::InstanceRemoved => "Instance removed",
            EventKind::AckCreated => "Drift acknowledged",
            EventKind::AckChanged => "Acknowledged drift changed",
            EventKind::AckExpired => "Acknowledgement expired",
            EventKind::AckClosed => "Acknowledgement closed",
            EventKind::AckDeleted => "Acknowledgement ended",
        }
    }

    pub(super) fn parse(text: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

pub(super) fn verdict_from_code(code: i64) -> Verdict {
    match code {
        0 => Verdict::InSync,
        2 => Verdict::Drifted,
        _ => Verdict::Error,
    }
}

pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
