//! The form statuses travel in between replicas, and the endpoint that
//! serves them: what the peers client, the ConfigMap store and the HTTP
//! route share without importing the handover task.

use serde::{Deserialize, Serialize};

use crate::state::ProbeStatus;

/// The path of the local status endpoint every replica serves.
pub const STATUS_PATH: &str = "/api/v1/cluster/status";
/// Changes kept in a portable report (the page shows three).
const PORTABLE_CHANGES: usize = 10;

/// What one replica knows about instances, as `GET /api/v1/cluster/status`
/// serves it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StatusSet {
    /// The answering replica's identity.
    pub identity: String,
    /// Its statuses, in portable form ([`portable`]).
    pub instances: Vec<ProbeStatus>,
}

/// A status as it travels between replicas: the last report keeps its
/// verdict, times, commit, counts, message and error reason, but only the
/// first few changes, each without diff and field list; no details,
/// warnings or stderr tail.
pub fn portable(status: &ProbeStatus) -> ProbeStatus {
    let mut status = status.clone();
    if let Some(report) = status.last_report.as_mut() {
        report.total_changes = report.change_count();
        report.changes.truncate(PORTABLE_CHANGES);
        for change in &mut report.changes {
            change.diff.clear();
            change.fields.clear();
        }
        report.details = serde_json::Value::Null;
        report.warnings.clear();
        if let Some(error) = report.error.as_mut() {
            error.stderr_tail.clear();
        }
    }
    status
}
