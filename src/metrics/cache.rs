//! The watch-fed cache series of probes that keep one (cached objects, watch restarts, the age of
//! the newest watch event, whether the first sync finished), computed from the probes on each gather.

use std::sync::Arc;

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts};

use super::labels::INSTANCE;
use crate::model::instance::InstanceId;
use crate::probe::Probe;

/// Live-state cache series, computed from the probes on each gather.
pub(super) struct CacheCollector {
    probes: Vec<(InstanceId, String, Arc<dyn Probe>)>,
    objects: IntGaugeVec,
    restarts: IntCounterVec,
    last_event_age: GaugeVec,
    synced: IntGaugeVec,
}

impl CacheCollector {
    pub(super) fn new(probes: Vec<(InstanceId, String, Arc<dyn Probe>)>) -> CacheCollector {
        CacheCollector {
            probes,
            objects: IntGaugeVec::new(Opts::new("driftwatch_probe_cached_objects", "Live objects held in the probe's watch-fed cache (whole or metadata-only)."), INSTANCE).expect("valid metric"),
            restarts: IntCounterVec::new(Opts::new("driftwatch_probe_watch_restarts_total", "Times a watch of the probe re-listed or reconnected after an error or an expired resourceVersion."), INSTANCE).expect("valid metric"),
            last_event_age: GaugeVec::new(Opts::new("driftwatch_probe_last_watch_event_age_seconds", "Seconds since the newest watch event of the probe's cache; absent before the first."), INSTANCE).expect("valid metric"),
            synced: IntGaugeVec::new(Opts::new("driftwatch_probe_cache_synced", "1 once every watch of the probe has finished its first sync attempt, 0 before."), INSTANCE).expect("valid metric"),
        }
    }
}

impl prometheus::core::Collector for CacheCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        let mut descs = self.objects.desc();
        descs.extend(self.restarts.desc());
        descs.extend(self.last_event_age.desc());
        descs.extend(self.synced.desc());
        descs
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.last_event_age.reset();
        for (id, layer, probe) in &self.probes {
            let Some(stats) = probe.cache_stats() else {
                continue;
            };
            let labels = [id.probe.as_str(), layer.as_str(), id.root.as_str()];
            self.objects
                .with_label_values(&labels)
                .set(stats.objects as i64);
            let restarts = self.restarts.with_label_values(&labels);
            restarts.inc_by(stats.restarts.saturating_sub(restarts.get()));
            if let Some(age) = stats.last_event_age {
                self.last_event_age
                    .with_label_values(&labels)
                    .set(age.as_secs_f64());
            }
            self.synced
                .with_label_values(&labels)
                .set(i64::from(stats.settled));
        }
        let mut families = self.objects.collect();
        families.extend(self.restarts.collect());
        families.extend(self.last_event_age.collect());
        families.extend(self.synced.collect());
        families
    }
}
