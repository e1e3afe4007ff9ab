//! The `driftwatch_cluster_*` series: this replica's view of the cluster (live members, the
//! instances it owns, Lease renewal errors), computed from the membership on each gather.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::{IntCounterVec, IntGaugeVec, Opts};

use crate::cluster::Cluster;
use crate::state::State;

/// The replica's view of the cluster, computed on each gather.
pub(super) struct ClusterCollector {
    cluster: Cluster,
    state: Arc<State>,
    members: IntGaugeVec,
    owned: IntGaugeVec,
    member_info: IntGaugeVec,
    renew_errors: IntCounterVec,
}

impl ClusterCollector {
    pub(super) fn new(cluster: Cluster, state: Arc<State>) -> ClusterCollector {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        ClusterCollector {
            members: gauge("driftwatch_cluster_members", "Number of live replicas (renewed Leases) this replica sees, itself included; 0 while it holds no Lease and so owns nothing.", &[]),
            owned: gauge("driftwatch_cluster_owned_instances", "Number of probe instances this replica owns, runs and exports; summed over the replicas it is the number of instances.", &[]),
            member_info: gauge("driftwatch_cluster_member_info", "Always 1, one series per live replica this replica sees; identity is the replica's name (its Lease is driftwatch-<identity>).", &["identity"]),
            renew_errors: IntCounterVec::new(Opts::new("driftwatch_cluster_lease_renew_errors_total", "Failed or timed-out renewals of this replica's Lease; after a lease duration of failures it owns nothing."), &[]).expect("valid metric"),
            cluster,
            state,
        }
    }
}

impl Collector for ClusterCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut descs = self.members.desc();
        descs.extend(self.owned.desc());
        descs.extend(self.member_info.desc());
        descs.extend(self.renew_errors.desc());
        descs
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        const NONE: &[&str] = &[];
        let members = self.cluster.members();
        self.members
            .with_label_values(NONE)
            .set(members.len() as i64);
        let owned = self
            .state
            .instances()
            .iter()
            .filter(|id| self.cluster.owns(id))
            .count();
        self.owned.with_label_values(NONE).set(owned as i64);
        self.member_info.reset();
        for member in &members {
            self.member_info
                .with_label_values(&[member.identity.as_str()])
                .set(1);
        }
        let errors = self.renew_errors.with_label_values(NONE);
        errors.inc_by(self.cluster.renew_errors().saturating_sub(errors.get()));
        let mut families = self.members.collect();
        families.extend(self.owned.collect());
        families.extend(self.member_info.collect());
        families.extend(self.renew_errors.collect());
        families
    }
}
