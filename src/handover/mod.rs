//! Scale-out handover: when this replica gains an instance (a member left or
//! joined), it takes over what the previous owner knew about it, so the last
//! verdict and drifted-since survive and the drift episode in history goes
//! on instead of starting again.
//!
//! Two sources, newest knowledge wins ([`crate::state::ProbeStatus::adopt`]):
//! the other replicas over HTTP (`GET /api/v1/cluster/status`), which during
//! a rolling update includes the previous owner while it is still up, and,
//! for an owner that is gone, the compact status every replica keeps in a
//! ConfigMap of its own ([`store`]). Every member seen recently is asked,
//! not only the rendezvous owner over the previous member set: a replica
//! that just started has no previous set, and asking three to ten peers for
//! a handful of instances is cheap.
//!
//! Statuses travel in a portable form ([`portable`]): the last report without
//! diffs, field lists, details, warnings or stderr, so a handover moves
//! kilobytes, never whole plans.

mod metrics;
pub mod peers;
pub mod store;
mod wire;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::cluster::{Cluster, Member};
use crate::history::History;
use crate::model::instance::InstanceId;
use crate::state::{ProbeStatus, State};

pub use metrics::HandoverMetrics;
pub use peers::Peers;
pub use store::StatusStore;
pub use wire::{portable, StatusSet, STATUS_PATH};

/// How often the handover looks for instances it gained.
const TICK: Duration = Duration::from_secs(1);
/// How long to keep asking when a source does not answer; after that the
/// instance keeps what this replica knows (its first run decides anyway).
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
/// How long a member that left is still asked (it may be shutting down
/// cleanly and still answer; a killed one fails fast).
const FORGET_LEFT_AFTER: Duration = Duration::from_secs(300);
/// Above this many instances, ask peers for everything instead of naming
/// each instance in the URL.
const MAX_NAMED: usize = 100;

/// Seeds the instances this replica gains from what other replicas knew.
pub struct Handover {
    pub cluster: Cluster,
    pub state: Arc<State>,
    pub history: Option<Arc<History>>,
    pub peers: Peers,
    /// The ConfigMap fallback; `None` without a Kubernetes client.
    pub store: Option<Arc<StatusStore>>,
    pub metrics: Option<HandoverMetrics>,
}

/// What one pass did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    /// Instances owned here that had not been settled yet.
    pub gained: usize,
    /// Of those, the ones whose status changed.
    pub adopted: usize,
    /// Whether every source answered (else the rest is tried again).
    pub complete: bool,
}

impl Handover {
    /// Runs until `shutdown`: on every member change, and every second for
    /// instances that appear (a root listing), seeds what was gained.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    async fn run(self, shutdown: CancellationToken) {
        let mut changes = self.cluster.subscribe();
        let mut tracker = Tracker::default();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = changes.changed() => if changed.is_err() { break },
                _ = tick.tick() => {}
            }
            self.pass(&mut tracker).await;
        }
    }

    /// One look for gained instances: asks the sources and adopts what is
    /// newer. `tracker` carries what was settled and who was seen between passes.
    pub async fn pass(&self, tracker: &mut Tracker) -> Pass {
        let now = Instant::now();
        let members = self.cluster.members();
        // Nothing to do while neither the state nor the members changed
        // and everything owned is settled.
        let version = (self.state.generation(), members.clone());
        if tracker.first_try.is_empty() && tracker.last_seen.as_ref() == Some(&version) {
            return Pass {
                complete: true,
                ..Pass::default()
            };
        }
        tracker.last_seen = Some(version);
        for member in &members {
            tracker
                .seen
                .insert(member.identity.clone(), (member.clone(), now));
        }
        tracker
            .seen
            .retain(|_, (_, at)| now.duration_since(*at) < FORGET_LEFT_AFTER);
        // Owned instances, and those of them this replica has run itself.
        let mut ran_here = HashSet::new();
        let owned: HashSet<InstanceId> = self
            .state
            .instances_run()
            .into_iter()
            .filter(|(id, _)| self.cluster.owns(id))
            .map(|(id, ran)| {
                if ran {
                    ran_here.insert(id.clone());
                }
                id
            })
            .collect();
        tracker.settled.retain(|id| owned.contains(id));
        tracker.first_try.retain(|id, _| owned.contains(id));
        let mut gained: Vec<InstanceId> = owned
            .into_iter()
            .filter(|id| !tracker.settled.contains(id))
            .collect();
        gained.sort();
        if gained.is_empty() {
            return Pass {
                complete: true,
                ..Pass::default()
            };
        }
        let peers: Vec<Member> = tracker
            .seen
            .values()
            .map(|(member, _)| member.clone())
            .filter(|member| member.identity != self.cluster.identity())
            .collect();
        let named = (gained.len() <= MAX_NAMED).then_some(gained.as_slice());
        let asks = peers.iter().map(|peer| self.peers.statuses(peer, named));
        let (answers, stored) = tokio::join!(futures::future::join_all(asks), async {
            match &self.store {
                Some(store) => Some(store.read_all().await),
                None => None,
            }
        });
        let mut newest: HashMap<InstanceId, ProbeStatus> = HashMap::new();
        let mut offer = |status: ProbeStatus| {
            let id = status.instance();
            let newer = match newest.get(&id) {
                Some(current) => current.last_run() < status.last_run(),
                None => true,
            };
            if newer {
                newest.insert(id, status);
            }
        };
        let mut peers_answered = true;
        for (peer, answer) in peers.iter().zip(answers) {
            match answer {
                Ok(set) => set.instances.into_iter().for_each(&mut offer),
                Err(err) => {
                    peers_answered = false;
                    if let Some(metrics) = &self.metrics {
                        metrics.source_errors.with_label_values(&["peer"]).inc();
                    }
                    tracing::debug!(peer = %peer.identity, error = %err, "peer did not answer the handover");
                }
            }
        }
        let store_answered = match stored {
            Some(Ok(sets)) => {
                sets.into_iter()
                    .flat_map(|set| set.instances)
                    .for_each(&mut offer);
                true
            }
            Some(Err(err)) => {
                if let Some(metrics) = &self.metrics {
                    metrics
                        .source_errors
                        .with_label_values(&["configmap"])
                        .inc();
                }
                tracing::warn!(error = %err, "cannot read the status ConfigMaps for the handover");
                false
            }
            None => false,
        };
        let complete = peers_answered || store_answered;
        let mut adopted = 0;
        for id in &gained {
            let Some(status) = newest.get(id) else {
                continue;
            };
            if let Some(merged) = self.state.adopt(status) {
                adopted += 1;
                if let Some(history) = &self.history {
                    history.record_adoption(&merged);
                }
            }
        }
        if adopted > 0 {
            if let Some(metrics) = &self.metrics {
                metrics.adopted.inc_by(adopted as u64);
            }
            self.state.persist_soon();
            tracing::info!(
                gained = gained.len(),
                adopted,
                "took over the status of instances this replica now owns"
            );
        }
        // Found nowhere and never run here: the previous owner may have had
        // its run in flight. Ask again until something is known somewhere;
        // once this replica has run it, one more answer settles it.
        for id in &gained {
            let first = *tracker.first_try.entry(id.clone()).or_insert(now);
            let known = newest.contains_key(id) || ran_here.contains(id);
            if (complete && known) || now.duration_since(first) >= GIVE_UP_AFTER {
                tracker.settled.insert(id.clone());
                tracker.first_try.remove(id);
            }
        }
        Pass {
            gained: gained.len(),
            adopted,
            complete,
        }
    }
}

/// What the handover remembers between passes.
#[derive(Debug, Default)]
pub struct Tracker {
    /// Owned instances already taken care of; forgotten when lost, so a
    /// later gain asks again.
    settled: HashSet<InstanceId>,
    /// When each unsettled instance was first asked about.
    first_try: HashMap<InstanceId, Instant>,
    /// Every member seen lately and when: a member that just left may
    /// still answer for what it owned.
    seen: BTreeMap<String, (Member, Instant)>,
    /// The state generation and members of the last pass that looked.
    last_seen: Option<(u64, Vec<Member>)>,
}
