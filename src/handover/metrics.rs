//! The handover's own series (adoptions, unanswered sources, instances the
//! status ConfigMap left out), shared by the handover task and the store.

/// The handover's own series, registered only in `kubernetes` mode.
#[derive(Clone)]
pub struct HandoverMetrics {
    pub(super) adopted: prometheus::IntCounter,
    pub(super) source_errors: prometheus::IntCounterVec,
    pub(super) dropped: prometheus::IntGauge,
}

impl HandoverMetrics {
    pub fn register(metrics: &crate::metrics::Metrics) -> prometheus::Result<HandoverMetrics> {
        let adopted = prometheus::IntCounter::new(
            "driftwatch_cluster_handover_adopted_total",
            "Instance statuses this replica took over from another replica (over HTTP or from a status ConfigMap) because they were newer than its own.",
        )?;
        let source_errors = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "driftwatch_cluster_handover_source_errors_total",
                "Handover asks that got no answer, by source (peer: another replica's API; configmap: the status ConfigMaps).",
            ),
            &["source"],
        )?;
        let dropped = prometheus::IntGauge::new(
            "driftwatch_cluster_status_dropped_instances",
            "Owned instances left out of this replica's status ConfigMap by its size cap at the last write (in-sync ones go first); 0 when all fit.",
        )?;
        metrics.register(Box::new(adopted.clone()))?;
        metrics.register(Box::new(source_errors.clone()))?;
        metrics.register(Box::new(dropped.clone()))?;
        for source in ["peer", "configmap"] {
            source_errors.with_label_values(&[source]);
        }
        Ok(HandoverMetrics {
            adopted,
            source_errors,
            dropped,
        })
    }

    /// Sets the dropped-instances gauge (the ConfigMap writer).
    pub fn set_dropped(&self, dropped: usize) {
        self.dropped.set(dropped as i64);
    }
}
