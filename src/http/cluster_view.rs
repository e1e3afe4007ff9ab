//! The merged view of the whole cluster that the page and `/api/v1/probes`
//! show in `kubernetes` mode, and the cache that keeps it for [`CACHE_FOR`].
//! Plain values: asking the members is [`super::cluster`]'s job.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::Member;
use crate::state::ProbeStatus;

/// How long a merged view of the cluster is reused.
pub const CACHE_FOR: Duration = Duration::from_secs(3);

/// A member that did not answer, and why (a fixed reason string).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreachable {
    pub identity: String,
    pub url: String,
    pub reason: &'static str,
    /// How many instances (as this replica lists the roots) it owns, now
    /// missing from the view.
    pub instances: usize,
}

/// Who is in the cluster, as the page and the API show it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterInfo {
    /// The replica that answered.
    pub identity: String,
    /// Live members (from their Leases).
    pub members: Vec<Member>,
    /// Members whose instances are missing from this view.
    pub unreachable: Vec<Unreachable>,
    /// Probes with an instance an unreachable member owns: no "not run
    /// yet" row stands in for them.
    #[serde(skip)]
    pub silent_probes: std::collections::BTreeSet<String>,
}

/// Every instance of the cluster with its owner, merged from the members.
#[derive(Debug, Default)]
pub struct ClusterView {
    pub info: ClusterInfo,
    /// Statuses with the identity of the member that reported them.
    pub statuses: Vec<(String, ProbeStatus)>,
    /// Bumped with each refresh; keys the rendered views.
    pub serial: u64,
}

impl ClusterView {
    /// The statuses, each with its owner, as the list and the page take them.
    pub fn with_owners(&self) -> Vec<(Option<String>, ProbeStatus)> {
        self.statuses
            .iter()
            .map(|(owner, status)| (Some(owner.clone()), status.clone()))
            .collect()
    }
}

/// The merged view, refreshed by one request at a time.
#[derive(Default)]
pub struct Fanout {
    current: Mutex<Option<(Instant, Arc<ClusterView>)>>,
    refreshing: tokio::sync::Mutex<()>,
    serial: std::sync::atomic::AtomicU64,
}

impl Fanout {
    fn fresh(&self) -> Option<Arc<ClusterView>> {
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        current
            .as_ref()
            .filter(|(at, _)| at.elapsed() < CACHE_FOR)
            .map(|(_, view)| view.clone())
    }

    /// The merged view; `fetch(serial)` builds a new one when the kept one
    /// is older than [`CACHE_FOR`].
    pub async fn view<F>(&self, fetch: impl FnOnce(u64) -> F) -> Arc<ClusterView>
    where
        F: std::future::Future<Output = ClusterView>,
    {
        if let Some(view) = self.fresh() {
            return view;
        }
        let _refreshing = self.refreshing.lock().await;
        if let Some(view) = self.fresh() {
            return view;
        }
        let serial = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let view = Arc::new(fetch(serial).await);
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), view.clone()));
        view
    }
}
