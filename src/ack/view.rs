//! An ack as the API, the page and the CLI show it: who, why, until, what it
//! covers and whether that still matches the drift, at one moment.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::matching::Assessment;
use super::model::{Ack, AckSource, AckState};
use crate::state::ProbeStatus;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckView {
    pub id: String,
    pub instance: String,
    pub source: AckSource,
    pub by: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub state: AckState,
    pub covers: Vec<CoverView>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// When and why it ended (closed, deleted, expired), once it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoverView {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub fingerprint: String,
    /// The current drift is there with this fingerprint.
    pub matches: bool,
}

impl AckView {
    /// `ack` as matched in `assessment` (of the same instance, at one `now`).
    pub fn new(ack: &Ack, assessment: &Assessment) -> AckView {
        let standing = assessment.acks.get(&ack.id);
        AckView {
            id: ack.id.clone(),
            instance: ack.instance.clone(),
            source: ack.source,
            by: ack.by.clone(),
            reason: ack.reason.clone(),
            created_at: ack.created_at,
            expires_at: ack.expires_at,
            state: standing.map_or(AckState::Stale, |s| s.state),
            covers: ack
                .covers
                .iter()
                .enumerate()
                .map(|(i, cover)| CoverView {
                    subject: cover.subject.clone(),
                    field: cover.field.clone(),
                    fingerprint: cover.fingerprint.clone(),
                    matches: standing
                        .and_then(|s| s.covers.get(i))
                        .is_some_and(|c| c.matches),
                })
                .collect(),
            subjects: ack.subjects.clone(),
            fields: ack.fields.clone(),
            ended_at: ack.ended.map(|e| e.at),
            ended_reason: ack.ended.map(|e| e.reason.as_str().to_string()),
        }
    }
}

/// The instance's drift matched against its acks at `now`: nothing drifts
/// unless the last run that reached a verdict drifted.
pub fn assess_status(status: &ProbeStatus, now: DateTime<Utc>) -> Assessment {
    if status.drifted {
        super::assess(
            &status.drifted_list,
            status.drifted_resources,
            &status.acks,
            now,
        )
    } else {
        super::assess(&[], 0, &status.acks, now)
    }
}

/// Every ack of `status`, as shown at `now`.
pub fn views(status: &ProbeStatus, now: DateTime<Utc>) -> Vec<AckView> {
    let assessment = assess_status(status, now);
    status
        .acks
        .iter()
        .map(|ack| AckView::new(ack, &assessment))
        .collect()
}

/// The acks of an instance that is not configured now ([`crate::state::State::waiting`]),
/// as shown at `now`: those not ended or expired are `waiting`.
pub fn waiting_views(status: &ProbeStatus, now: DateTime<Utc>) -> Vec<AckView> {
    let mut views = views(status, now);
    for view in &mut views {
        if view.state == AckState::Stale {
            view.state = AckState::Waiting;
        }
    }
    views
}

/// How many drifted resources of `status` no ack covers (0 when in sync).
pub fn unacknowledged_resources(status: &ProbeStatus, assessment: &Assessment) -> usize {
    if status.drifted {
        assessment.unacknowledged
    } else {
        0
    }
}

/// True while drift remains that no ack covers: an unacknowledged resource,
/// or drift the layer reported without naming resources (nothing can
/// acknowledge what is not named).
pub fn has_unacknowledged_drift(status: &ProbeStatus, assessment: &Assessment) -> bool {
    status.drifted
        && (assessment.unacknowledged > 0
            || (status.drifted_list.is_empty() && status.drifted_resources == 0))
}
