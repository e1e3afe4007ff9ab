//! Scale-out: which replica owns which probe instance.
//!
//! In `[cluster] mode = "single"` (the default) this process owns every
//! instance. In `mode = "kubernetes"` each replica holds its own
//! `coordination.k8s.io/v1` Lease; the membership task turns the Leases it
//! observes into the list of live [`Member`]s and hands it to
//! [`Cluster::set_members`]. Ownership is rendezvous (highest-random-weight)
//! hashing of the [`InstanceId`] over the live members ([`rendezvous`]), so a
//! join or a leave moves about 1/N of the instances and nothing else.
//!
//! Runs are read-only by construction (`-lock=false`, `--check`, get/list),
//! so two replicas briefly running one instance during a handover is
//! harmless: no fencing is needed.

mod member;
pub mod membership;
pub mod rendezvous;

pub use member::Member;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::model::instance::InstanceId;

/// What the rest of the daemon knows about the cluster; clones share it.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    identity: String,
    single: bool,
    /// Live members, sorted by identity. Always includes this replica once
    /// its own Lease is held; empty before that in `kubernetes` mode.
    members: watch::Sender<Vec<Member>>,
    /// Failed or timed-out renewals of this replica's Lease.
    renew_errors: AtomicU64,
}

impl Cluster {
    /// One process owning every instance (`[cluster] mode = "single"`).
    pub fn single() -> Cluster {
        Cluster::new("local", true)
    }

    /// A sharded replica named `identity`; it owns nothing until the
    /// membership task calls [`Cluster::set_members`].
    pub fn sharded(identity: impl Into<String>) -> Cluster {
        Cluster::new(identity, false)
    }

    fn new(identity: impl Into<String>, single: bool) -> Cluster {
        let (members, _) = watch::channel(Vec::new());
        Cluster {
            inner: Arc::new(Inner {
                identity: identity.into(),
                single,
                members,
                renew_errors: AtomicU64::new(0),
            }),
        }
    }

    /// This replica's identity ("local" in single mode).
    pub fn identity(&self) -> &str {
        &self.inner.identity
    }

    /// Whether this is the single-process mode (owns everything).
    pub fn is_single(&self) -> bool {
        self.inner.single
    }

    /// The live members now, sorted by identity.
    pub fn members(&self) -> Vec<Member> {
        self.inner.members.borrow().clone()
    }

    /// Notified whenever the live member set changes.
    pub fn subscribe(&self) -> watch::Receiver<Vec<Member>> {
        self.inner.members.subscribe()
    }

    /// Replaces the live member set (sorted and deduplicated here); only
    /// the membership task calls this. Returns whether it changed.
    pub fn set_members(&self, mut members: Vec<Member>) -> bool {
        members.sort();
        members.dedup_by(|a, b| a.identity == b.identity);
        self.inner.members.send_if_modified(|current| {
            if *current == members {
                false
            } else {
                *current = members;
                true
            }
        })
    }

    /// The member that owns `id`, or `None` while no member is live.
    pub fn owner(&self, id: &InstanceId) -> Option<Member> {
        rendezvous::owner(&self.inner.members.borrow(), id).cloned()
    }

    /// Counts a failed renewal of this replica's Lease (membership task).
    pub fn count_renew_error(&self) {
        self.inner.renew_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Failed renewals of this replica's Lease since start.
    pub fn renew_errors(&self) -> u64 {
        self.inner.renew_errors.load(Ordering::Relaxed)
    }

    /// Whether this replica should run and export `id`.
    pub fn owns(&self, id: &InstanceId) -> bool {
        if self.inner.single {
            return true;
        }
        self.owner(id)
            .is_some_and(|member| member.identity == self.inner.identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(identity: &str) -> Member {
        Member {
            identity: identity.into(),
            url: format!("http://{identity}:8080"),
        }
    }

    #[test]
    fn single_mode_owns_everything_without_members() {
        let cluster = Cluster::single();
        assert!(cluster.owns(&InstanceId::new("tf", "envs/a")));
        assert!(cluster.members().is_empty());
    }

    #[test]
    fn a_sharded_replica_owns_nothing_until_it_is_a_member() {
        let cluster = Cluster::sharded("a");
        let id = InstanceId::new("tf", "envs/a");
        assert!(!cluster.owns(&id));
        assert!(cluster.set_members(vec![member("a")]));
        assert!(cluster.owns(&id));
        assert!(!cluster.set_members(vec![member("a")]), "unchanged set");
        cluster.set_members(vec![member("b")]);
        assert!(!cluster.owns(&id));
    }
}
