//! The fallback source of the handover: every replica keeps a compact
//! status of the instances it owns in one ConfigMap of its own,
//! `driftwatch-status-<identity>` in its namespace, labelled
//! `app.kubernetes.io/component=driftwatch-status`. A replica that gains
//! instances whose owner is gone (killed, node lost) reads them all.
//!
//! A ConfigMap holds at most 1 MiB, so the document is capped at
//! [`MAX_DOCUMENT_BYTES`]: drifted instances first (their drifted-since is
//! what a handover must not lose), then failing ones, then in-sync ones;
//! each goes in without its changes (the verdict, times, commit and counts
//! stay). What does not fit is dropped and counted in the document's
//! `dropped` field and in the log; a new owner learns those with its first
//! run. Instances that never ran are not written at all.
//!
//! Writes are coalesced: at most one every [`WRITE_EVERY`], and only when
//! the document changed. Each replica writes only its own ConfigMap; a
//! conflict (someone else changed it) is answered by reading it again and
//! writing once more.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::Api;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::model::instance::InstanceId;
use crate::model::outcome::Verdict;
use crate::state::{ProbeStatus, State};

use super::{portable, StatusSet};

/// The label every status ConfigMap carries, to list them all.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
pub const COMPONENT: &str = "driftwatch-status";
/// The data key holding the JSON document.
pub const DATA_KEY: &str = "status.json";
/// Room for the document in a ConfigMap (1 MiB in all, less metadata).
pub const MAX_DOCUMENT_BYTES: usize = 900 * 1024;
/// The shortest time between two writes.
pub const WRITE_EVERY: Duration = Duration::from_secs(5);

/// The JSON document in `data["status.json"]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Document {
    /// The replica that wrote it.
    pub identity: String,
    /// Its owned instances that fit, in compact form.
    pub instances: Vec<ProbeStatus>,
    /// How many owned instances did not fit under the cap.
    #[serde(default)]
    pub dropped: usize,
}

/// A status without its changes: what survives in a ConfigMap.
pub fn compact(status: &ProbeStatus) -> ProbeStatus {
    let mut status = portable(status);
    // Kept while acks are live: without it an acknowledged drift would read
    // as unacknowledged on the new owner until its first run.
    if status.acks.iter().all(|a| a.ended.is_some()) {
        status.drifted_list.clear();
    }
    status.next_run = None;
    if let Some(report) = status.last_report.as_mut() {
        report.changes.clear();
        report.labels.clear();
    }
    status
}

/// The document for `statuses` (the owned ones), capped at `max_bytes`:
/// drifted, then error, then in sync; never-run instances are left out.
pub fn document(identity: &str, statuses: &[ProbeStatus], max_bytes: usize) -> (Document, String) {
    let rank = |status: &ProbeStatus| match (status.drifted, status.verdict()) {
        (true, _) => 0,
        (false, Some(Verdict::Error)) => 1,
        _ => 2,
    };
    let mut ranked: Vec<&ProbeStatus> = statuses
        .iter()
        .filter(|s| s.last_report.is_some())
        .collect();
    ranked.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.probe.cmp(&b.probe)));
    // The frame ({"identity":…,"instances":[],"dropped":N}) plus one comma per item.
    let mut used = serde_json::to_string(&Document {
        identity: identity.to_string(),
        instances: Vec::new(),
        dropped: usize::MAX,
    })
    .map_or(0, |frame| frame.len());
    let mut doc = Document {
        identity: identity.to_string(),
        ..Document::default()
    };
    for status in ranked {
        let status = compact(status);
        let size = serde_json::to_string(&status).map_or(usize::MAX, |text| text.len()) + 1;
        if used.saturating_add(size) > max_bytes {
            doc.dropped += 1;
            continue;
        }
        used += size;
        doc.instances.push(status);
    }
    let text = serde_json::to_string(&doc).expect("statuses serialize");
    (doc, text)
}

/// The status ConfigMaps in one namespace: this replica's to write, all to read.
pub struct StatusStore {
    api: Api<ConfigMap>,
    identity: String,
    max_bytes: usize,
    /// The text last written, to write only on change.
    last: tokio::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for StatusStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusStore")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl StatusStore {
    /// The store of replica `identity` in `namespace`.
    pub fn new(client: kube::Client, namespace: &str, identity: &str) -> StatusStore {
        StatusStore {
            api: Api::namespaced(client, namespace),
            identity: identity.to_string(),
            max_bytes: MAX_DOCUMENT_BYTES,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// The same with another cap (tests).
    pub fn with_max_bytes(mut self, max_bytes: usize) -> StatusStore {
        self.max_bytes = max_bytes;
        self
    }

    /// `driftwatch-status-<identity>`.
    pub fn name_of(identity: &str) -> String {
        format!("driftwatch-status-{identity}")
    }

    /// Writes the document for `statuses` unless it is what was written
    /// last. Returns the document when it was written.
    pub async fn write(&self, statuses: &[ProbeStatus]) -> Result<Option<Document>, kube::Error> {
        let (doc, text) = document(&self.identity, statuses, self.max_bytes);
        let mut last = self.last.lock().await;
        if last.as_deref() == Some(text.as_str()) {
            return Ok(None);
        }
        if doc.dropped > 0 {
            tracing::warn!(
                kept = doc.instances.len(),
                dropped = doc.dropped,
                max_bytes = self.max_bytes,
                "the status ConfigMap is full; in-sync instances were left out first (a new owner learns them with its first run)"
            );
        }
        let name = Self::name_of(&self.identity);
        let data = BTreeMap::from([(DATA_KEY.to_string(), text.clone())]);
        // Read, then replace with that resourceVersion: a conflict means
        // someone else wrote in between; read and write once more.
        for attempt in 0..2 {
            let current = self.api.get_opt(&name).await?;
            let result = match current {
                None => {
                    let object = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            labels: Some(BTreeMap::from([
                                (COMPONENT_LABEL.to_string(), COMPONENT.to_string()),
                                (
                                    "app.kubernetes.io/name".to_string(),
                                    "driftwatch".to_string(),
                                ),
                            ])),
                            ..ObjectMeta::default()
                        },
                        data: Some(data.clone()),
                        ..ConfigMap::default()
                    };
                    self.api.create(&PostParams::default(), &object).await
                }
                Some(mut object) => {
                    object.data = Some(data.clone());
                    object.binary_data = None;
                    self.api
                        .replace(&name, &PostParams::default(), &object)
                        .await
                }
            };
            match result {
                Ok(_) => {
                    *last = Some(text);
                    return Ok(Some(doc));
                }
                Err(kube::Error::Api(status)) if (status.code == 409) && attempt == 0 => continue,
                Err(err) => return Err(err),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    /// Every replica's document (its own included), by label.
    pub async fn read_all(&self) -> Result<Vec<StatusSet>, kube::Error> {
        let list = self
            .api
            .list(&ListParams::default().labels(&format!("{COMPONENT_LABEL}={COMPONENT}")))
            .await?;
        let mut sets = Vec::new();
        for object in list.items {
            let name = object.metadata.name.clone().unwrap_or_default();
            let Some(text) = object.data.as_ref().and_then(|d| d.get(DATA_KEY)) else {
                continue;
            };
            match serde_json::from_str::<Document>(text) {
                Ok(doc) => sets.push(StatusSet {
                    identity: doc.identity,
                    instances: doc.instances,
                }),
                Err(err) => {
                    tracing::warn!(configmap = %name, error = %err, "a status ConfigMap is unreadable; skipped")
                }
            }
        }
        Ok(sets)
    }

    /// Keeps this replica's ConfigMap up to date: every `every`, when the
    /// state or the owned set changed, writes the owned instances. When
    /// `shutdown` fires it writes once more at once, with what it owned
    /// just before (its Lease is about to go, and with it the ownership),
    /// so a successor that finds it gone reads its latest statuses.
    pub fn spawn_writer(
        self: Arc<Self>,
        state: Arc<State>,
        cluster: Cluster,
        every: Duration,
        metrics: Option<super::HandoverMetrics>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut written = None;
            let mut owned_ids: HashSet<InstanceId> = HashSet::new();
            loop {
                let stopping = tokio::select! {
                    _ = shutdown.cancelled() => true,
                    _ = tick.tick() => false,
                };
                let statuses = state.snapshot();
                let now: HashSet<InstanceId> = statuses
                    .iter()
                    .map(ProbeStatus::instance)
                    .filter(|id| cluster.owns(id))
                    .collect();
                if stopping {
                    owned_ids.extend(now);
                } else {
                    owned_ids = now;
                }
                let key = (state.generation(), owned_ids.len());
                if written != Some(key) || stopping {
                    let owned: Vec<ProbeStatus> = statuses
                        .into_iter()
                        .filter(|s| owned_ids.contains(&s.instance()))
                        .collect();
                    match self.write(&owned).await {
                        Ok(doc) => {
                            written = Some(key);
                            if let (Some(doc), Some(metrics)) = (doc, &metrics) {
                                metrics.set_dropped(doc.dropped);
                            }
                        }
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot write the status ConfigMap; a new owner may lose drifted-since if this replica dies")
                        }
                    }
                }
                if stopping {
                    break;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::instance::InstanceId;
    use crate::model::outcome::ResourceChange;
    use crate::model::outcome::{Outcome, RunReport};

    fn status(name: &str, verdict: Verdict) -> ProbeStatus {
        let id = InstanceId::new(name, "");
        let mut report = RunReport {
            probe: name.into(),
            name: name.into(),
            layer: "command".into(),
            commit: "abc".into(),
            started_at: chrono::DateTime::from_timestamp(1000, 0).unwrap(),
            ..RunReport::default()
        };
        report.apply_result(match verdict {
            Verdict::Drifted => Ok(Outcome::drifted(vec![ResourceChange::new("a", "update")])),
            Verdict::InSync => Ok(Outcome::in_sync()),
            Verdict::Error => Err(crate::model::outcome::ProbeError::new(
                crate::model::outcome::ErrorReason::Timeout,
                "slow",
            )),
        });
        let mut status = ProbeStatus::new(&id, "command");
        status.apply(&report);
        status
    }

    #[test]
    fn the_cap_drops_in_sync_instances_first_and_counts_them() {
        let mut statuses = Vec::new();
        for n in 0..50 {
            statuses.push(status(&format!("sync{n:02}"), Verdict::InSync));
        }
        statuses.push(status("zz-drifted", Verdict::Drifted));
        statuses.push(status("zz-error", Verdict::Error));
        statuses.push(ProbeStatus::new(&InstanceId::new("never", ""), "command"));
        let (all, text) = document("a", &statuses, usize::MAX);
        assert_eq!(all.instances.len(), 52, "never-run instances are left out");
        assert_eq!(all.dropped, 0);
        let cap = text.len() / 3;
        let (capped, text) = document("a", &statuses, cap);
        assert!(text.len() <= cap, "{} > {cap}", text.len());
        assert_eq!(capped.instances[0].probe, "zz-drifted");
        assert_eq!(capped.instances[1].probe, "zz-error");
        assert_eq!(capped.instances.len() + capped.dropped, 52);
        assert!(capped.dropped > 30);
        assert_eq!(serde_json::from_str::<Document>(&text).unwrap(), capped);
        // Drift survives compaction; the changes do not travel.
        let drifted = &capped.instances[0];
        assert!(drifted.drifted && drifted.drifted_since.is_some());
        assert_eq!(drifted.drifted_resources, 1);
        assert!(drifted.last_report.as_ref().unwrap().changes.is_empty());
    }
}
