//! The only writer of Prometheus metrics. The daemon owns the registry (not
//! the global one). Probe series carry bounded labels only: probe, layer,
//! root, the configured constant labels, and (behind a per-probe cap)
//! resource and action. Series that should exist from the start are created
//! when a probe instance is first seen.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::probe::outcome::ErrorReason;
use crate::probe::{Probe, RunReport, Verdict};
use crate::state::ProbeStatus;

/// Histogram buckets for run durations, from 100 ms up to 30 minutes.
const DURATION_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
];

/// Identifies one probe instance for series bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceKey {
    pub probe: String,
    pub layer: String,
    pub root: String,
}

pub struct Metrics {
    registry: Registry,
    /// Names of the constant labels, the union over all configured probes.
    constant_labels: Vec<String>,
    max_resource_series: usize,

    result: IntGaugeVec,
    drifted: IntGaugeVec,
    drifted_resources: IntGaugeVec,
    last_run: GaugeVec,
    last_success: GaugeVec,
    drifted_since: GaugeVec,
    warnings: IntGaugeVec,
    schedule_interval: GaugeVec,
    resource_drifted: IntGaugeVec,
    resource_dropped: IntCounterVec,
    duration: HistogramVec,
    runs: IntCounterVec,
    errors: IntCounterVec,
    skipped: IntCounterVec,
    terradiff: IntGaugeVec,

    repo_success: IntGaugeVec,
    repo_last_sync: GaugeVec,
    repo_commit_time: GaugeVec,
    repo_info: IntGaugeVec,
    repo_errors: IntCounterVec,

    /// Resource series currently exported per instance, to remove stale ones.
    resource_series: Mutex<HashMap<InstanceKey, BTreeSet<(String, String)>>>,
    /// Revision currently exported per repo.
    repo_revisions: Mutex<HashMap<String, (String, String)>>,
    /// Bumped by every change to probe or repo series; keys the render cache.
    generation: std::sync::atomic::AtomicU64,
    /// The last exposition rendered: (generation, when, text).
    cache: Mutex<Option<(u64, std::time::Instant, bytes::Bytes)>>,
}

/// How old a cached exposition may be when no probe or repo series changed
/// (only counters such as HTTP requests moved). Scrapes are seconds apart;
/// this keeps a burst of scrapes from re-encoding the whole registry each time.
const RENDER_CACHE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

const INSTANCE: &[&str] = &["probe", "layer", "root"];

impl Metrics {
    /// `constant_labels` are the label names probes may set (e.g. `team`).
    pub fn new(constant_labels: &BTreeSet<String>, max_resource_series: usize) -> Metrics {
        let registry = Registry::new();
        let constant_labels: Vec<String> = constant_labels.iter().cloned().collect();
        let mut probe_labels: Vec<&str> = INSTANCE.to_vec();
        probe_labels.extend(constant_labels.iter().map(String::as_str));

        fn gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
            let metric = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        }
        fn int_gauge(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        }
        fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        }
        let r = &registry;
        let pl = &probe_labels;
        let result_labels = ["probe", "layer", "root", "result"];
        let reason_labels = ["probe", "layer", "root", "reason"];
        let resource_labels = ["probe", "layer", "root", "resource", "action"];

        let duration = HistogramVec::new(
            HistogramOpts::new(
                "driftwatch_probe_run_duration_seconds",
                "How long probe runs took, in seconds.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            INSTANCE,
        )
        .expect("valid metric");
        registry
            .register(Box::new(duration.clone()))
            .expect("unique metric");

        let build_info = int_gauge(
            r,
            "driftwatch_build_info",
            "Always 1; the version label says which driftwatch is running.",
            &["version"],
        );
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        Metrics {
            result: int_gauge(r, "driftwatch_probe_result", "Result of the last completed run: 0 in sync, 1 error, 2 drifted (as terraform plan -detailed-exitcode).", pl),
            drifted: int_gauge(r, "driftwatch_probe_drifted", "1 if the last run that reached a verdict found drift, 0 if it found none; errors keep the previous value.", pl),
            drifted_resources: int_gauge(r, "driftwatch_probe_drifted_resources", "Number of drifted resources found by the last run that reached a verdict.", pl),
            last_run: gauge(r, "driftwatch_probe_last_run_timestamp_seconds", "Start time of the last completed run, in seconds since the epoch; 0 before the first run.", pl),
            last_success: gauge(r, "driftwatch_probe_last_success_timestamp_seconds", "Start time of the last run that reached a verdict (in sync or drifted); 0 if none yet.", pl),
            drifted_since: gauge(r, "driftwatch_probe_drifted_since_timestamp_seconds", "Start of the current drift episode in seconds since the epoch; 0 when in sync.", pl),
            warnings: int_gauge(r, "driftwatch_probe_warnings", "Number of warnings in the last run (e.g. tasks that run for real in check mode); 0 when none.", INSTANCE),
            schedule_interval: gauge(r, "driftwatch_probe_schedule_interval_seconds", "Nominal seconds between scheduled runs of the probe; 0 when it has no schedule.", INSTANCE),
            resource_drifted: int_gauge(r, "driftwatch_probe_resource_drifted", "1 for each drifted resource of the last run that reached a verdict; capped per probe.", &resource_labels),
            resource_dropped: counter(r, "driftwatch_probe_resource_series_dropped_total", "Drifted resources not exported as series because the per-probe cap was reached.", INSTANCE),
            duration,
            runs: counter(r, "driftwatch_probe_runs_total", "Completed probe runs by result (in_sync, drifted, error).", &result_labels),
            errors: counter(r, "driftwatch_probe_errors_total", "Probe runs that ended in error, by reason.", &reason_labels),
            skipped: counter(r, "driftwatch_probe_skipped_runs_total", "Runs skipped because the previous run of the same probe was still going.", INSTANCE),
            terradiff: int_gauge(r, "terradiff_plan_exit_code", "Compatibility alias for terradiff: 0 no changes, 1 error, 2 changes present.", &["probe", "root"]),
            repo_success: int_gauge(r, "driftwatch_repo_sync_success", "1 if the last sync of the repository succeeded, 0 if it failed.", &["repo"]),
            repo_last_sync: gauge(r, "driftwatch_repo_last_sync_timestamp_seconds", "Time of the last successful sync, in seconds since the epoch; 0 if none yet.", &["repo"]),
            repo_commit_time: gauge(r, "driftwatch_repo_commit_timestamp_seconds", "Commit time of the checked-out revision, in seconds since the epoch; 0 if unknown.", &["repo"]),
            repo_info: int_gauge(r, "driftwatch_repo_info", "Always 1; the revision label is the checked-out commit, commit_url its page in the repository's web UI (empty when unknown).", &["repo", "revision", "commit_url"]),
            repo_errors: counter(r, "driftwatch_repo_sync_errors_total", "Failed syncs of the repository.", &["repo"]),
            registry,
            constant_labels,
            max_resource_series,
            resource_series: Mutex::new(HashMap::new()),
            repo_revisions: Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            cache: Mutex::new(None),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn probe_values<'a>(
        &'a self,
        key: &'a InstanceKey,
        labels: &'a BTreeMap<String, String>,
    ) -> Vec<&'a str> {
        let mut values = vec![key.probe.as_str(), key.layer.as_str(), key.root.as_str()];
        for name in &self.constant_labels {
            values.push(labels.get(name).map(String::as_str).unwrap_or(""));
        }
        values
    }

    /// Creates an instance's series at zero so dashboards and absent() rules see it
    /// before its first run, then restores any persisted status.
    pub fn register_instance(
        &self,
        key: &InstanceKey,
        labels: &BTreeMap<String, String>,
        schedule_interval: f64,
        status: Option<&ProbeStatus>,
    ) {
        self.changed();
        let values = self.probe_values(key, labels);
        let instance = [key.probe.as_str(), key.layer.as_str(), key.root.as_str()];
        self.drifted.with_label_values(&values);
        self.drifted_resources.with_label_values(&values);
        self.last_run.with_label_values(&values);
        self.last_success.with_label_values(&values);
        self.drifted_since.with_label_values(&values);
        self.warnings.with_label_values(&instance);
        self.schedule_interval
            .with_label_values(&instance)
            .set(schedule_interval);
        self.resource_dropped.with_label_values(&instance);
        self.duration.with_label_values(&instance);
        self.skipped.with_label_values(&instance);
        for result in [Verdict::InSync, Verdict::Drifted, Verdict::Error] {
            self.runs
                .with_label_values(&[instance[0], instance[1], instance[2], result.as_str()]);
        }
        for reason in ErrorReason::ALL {
            self.errors.with_label_values(&[
                instance[0],
                instance[1],
                instance[2],
                reason.as_str(),
            ]);
        }
        if let Some(status) = status {
            self.set_status(key, labels, status);
        }
    }

    /// Records a finished run and the status it produced.
    pub fn observe(&self, report: &RunReport, status: &ProbeStatus) {
        self.changed();
        let key = InstanceKey {
            probe: report.name.clone(),
            layer: report.layer.clone(),
            root: report.root.clone(),
        };
        let instance = [key.probe.as_str(), key.layer.as_str(), key.root.as_str()];
        self.duration
            .with_label_values(&instance)
            .observe(report.duration.as_secs_f64());
        self.runs
            .with_label_values(&[
                instance[0],
                instance[1],
                instance[2],
                report.verdict.as_str(),
            ])
            .inc();
        if let Some(error) = &report.error {
            self.errors
                .with_label_values(&[instance[0], instance[1], instance[2], error.reason.as_str()])
                .inc();
        }
        self.set_status(&key, &report.labels, status);
    }

    fn set_status(
        &self,
        key: &InstanceKey,
        labels: &BTreeMap<String, String>,
        status: &ProbeStatus,
    ) {
        let values = self.probe_values(key, labels);
        let instance = [key.probe.as_str(), key.layer.as_str(), key.root.as_str()];
        let ts = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| t.timestamp_millis() as f64 / 1000.0)
                .unwrap_or(0.0)
        };
        let Some(report) = &status.last_report else {
            return;
        };
        self.result
            .with_label_values(&values)
            .set(report.verdict.code());
        if report.layer == "terraform" {
            self.terradiff
                .with_label_values(&[key.probe.as_str(), key.root.as_str()])
                .set(report.verdict.code());
        }
        self.drifted
            .with_label_values(&values)
            .set(status.drifted as i64);
        self.drifted_resources
            .with_label_values(&values)
            .set(status.drifted_resources as i64);
        self.last_run
            .with_label_values(&values)
            .set(ts(Some(report.started_at)));
        self.last_success
            .with_label_values(&values)
            .set(ts(status.last_success));
        self.drifted_since
            .with_label_values(&values)
            .set(ts(status.drifted_since));
        self.warnings
            .with_label_values(&instance)
            .set(report.warnings.len() as i64);
        // Errors keep the last known per-resource series, like `drifted`.
        if report.verdict != Verdict::Error {
            let changes: Vec<(String, String)> = report
                .changes
                .iter()
                .map(|c| (c.subject.clone(), c.action.clone()))
                .collect();
            self.set_resources(key, &changes);
        }
    }

    fn set_resources(&self, key: &InstanceKey, changes: &[(String, String)]) {
        let mut wanted: BTreeSet<(String, String)> = BTreeSet::new();
        let mut dropped = 0u64;
        for change in changes {
            if wanted.len() < self.max_resource_series {
                wanted.insert(change.clone());
            } else if !wanted.contains(change) {
                dropped += 1;
            }
        }
        let instance = [key.probe.as_str(), key.layer.as_str(), key.root.as_str()];
        if dropped > 0 {
            self.resource_dropped
                .with_label_values(&instance)
                .inc_by(dropped);
        }
        let mut series = self.resource_series.lock().unwrap();
        let current = series.entry(key.clone()).or_default();
        for (resource, action) in current.difference(&wanted) {
            let _ = self.resource_drifted.remove_label_values(&[
                instance[0],
                instance[1],
                instance[2],
                resource,
                action,
            ]);
        }
        for (resource, action) in &wanted {
            self.resource_drifted
                .with_label_values(&[instance[0], instance[1], instance[2], resource, action])
                .set(1);
        }
        *current = wanted;
    }

    pub fn skipped_run(&self, key: &InstanceKey) {
        self.changed();
        self.skipped
            .with_label_values(&[key.probe.as_str(), key.layer.as_str(), key.root.as_str()])
            .inc();
    }

    /// Creates a repo's series before its first sync.
    pub fn register_repo(&self, repo: &str) {
        self.changed();
        self.repo_success.with_label_values(&[repo]);
        self.repo_last_sync.with_label_values(&[repo]);
        self.repo_commit_time.with_label_values(&[repo]);
        self.repo_errors.with_label_values(&[repo]);
    }

    /// A successful sync of `repo` at `revision`; `commit_url` is the
    /// commit's web page, or "" when the repo has no web links.
    pub fn repo_synced(&self, repo: &str, revision: &str, commit_url: &str, commit_time: i64) {
        self.changed();
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        self.repo_success.with_label_values(&[repo]).set(1);
        self.repo_last_sync.with_label_values(&[repo]).set(now);
        self.repo_commit_time
            .with_label_values(&[repo])
            .set(commit_time as f64);
        let mut revisions = self.repo_revisions.lock().unwrap();
        let labels = (revision.to_string(), commit_url.to_string());
        if let Some(old) = revisions.insert(repo.to_string(), labels.clone()) {
            if old != labels {
                let _ = self.repo_info.remove_label_values(&[repo, &old.0, &old.1]);
            }
        }
        self.repo_info
            .with_label_values(&[repo, revision, commit_url])
            .set(1);
    }

    pub fn repo_sync_failed(&self, repo: &str) {
        self.changed();
        self.repo_success.with_label_values(&[repo]).set(0);
        self.repo_errors.with_label_values(&[repo]).inc();
    }

    fn changed(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// Exports the health of each probe's live-state cache (layers that keep
    /// one), read from the probes at scrape time so the ages are current.
    pub fn register_caches(&self, probes: Vec<(InstanceKey, Arc<dyn Probe>)>) {
        let probes: Vec<_> = probes
            .into_iter()
            .filter(|(_, probe)| probe.cache_stats().is_some())
            .collect();
        if probes.is_empty() {
            return;
        }
        let collector = CacheCollector::new(probes);
        self.registry
            .register(Box::new(collector))
            .expect("unique metric");
    }

    /// The exposition for `/metrics`: re-rendered when a probe or repo series
    /// changed, otherwise at most `RENDER_CACHE_MAX_AGE` old.
    pub fn render_cached(&self) -> bytes::Bytes {
        let generation = self.generation.load(std::sync::atomic::Ordering::Acquire);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached, at, text)) = cache.as_ref() {
            if *cached == generation && at.elapsed() < RENDER_CACHE_MAX_AGE {
                return text.clone();
            }
        }
        let text = bytes::Bytes::from(self.render());
        *cache = Some((generation, std::time::Instant::now(), text.clone()));
        text
    }

    /// The text exposition format, freshly encoded.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding cannot fail");
        String::from_utf8(buffer).expect("exposition is UTF-8")
    }
}

/// Live-state cache series, computed from the probes on each gather.
struct CacheCollector {
    probes: Vec<(InstanceKey, Arc<dyn Probe>)>,
    objects: IntGaugeVec,
    restarts: IntCounterVec,
    last_event_age: GaugeVec,
    synced: IntGaugeVec,
}

impl CacheCollector {
    fn new(probes: Vec<(InstanceKey, Arc<dyn Probe>)>) -> CacheCollector {
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
        for (key, probe) in &self.probes {
            let Some(stats) = probe.cache_stats() else {
                continue;
            };
            let labels = [key.probe.as_str(), key.layer.as_str(), key.root.as_str()];
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::outcome::ResourceChange;
    use crate::probe::{Outcome, RunReport};
    use std::time::Duration;

    fn report(changes: usize) -> RunReport {
        let mut report = RunReport {
            probe: "web".into(),
            name: "web".into(),
            root: String::new(),
            layer: "command".into(),
            run_id: 1,
            trigger: "manual".into(),
            repo: "infra".into(),
            commit: "abc".into(),
            started_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            duration: Duration::from_millis(1500),
            exit_code: Some(2),
            labels: [("team".to_string(), "corp".to_string())].into(),
            ..RunReport::default()
        };
        let list = (0..changes)
            .map(|i| ResourceChange::new(format!("r{i}"), "update"))
            .collect();
        report.apply_result(Ok(Outcome::drifted(list)));
        report
    }

    #[test]
    fn resource_series_are_capped_and_replaced() {
        let metrics = Metrics::new(&["team".to_string()].into(), 3);
        let mut status = ProbeStatus::new("web", "web", "", "command");
        let first = report(5);
        status.apply(&first);
        metrics.observe(&first, &status);
        let text = metrics.render();
        assert_eq!(
            text.matches("driftwatch_probe_resource_drifted{").count(),
            3
        );
        assert!(text.contains("driftwatch_probe_resource_series_dropped_total{layer=\"command\",probe=\"web\",root=\"\"} 2"));
        assert!(text.contains(
            "driftwatch_probe_result{layer=\"command\",probe=\"web\",root=\"\",team=\"corp\"} 2"
        ));

        let second = report(1);
        status.apply(&second);
        metrics.observe(&second, &status);
        let text = metrics.render();
        assert_eq!(
            text.matches("driftwatch_probe_resource_drifted{").count(),
            1
        );
    }

    #[test]
    fn cached_render_follows_every_change() {
        let metrics = Metrics::new(&BTreeSet::new(), 10);
        let before = metrics.render_cached();
        assert_eq!(before, metrics.render_cached());
        metrics.repo_synced("infra", "aaa", "", 1);
        let after = metrics.render_cached();
        assert!(String::from_utf8_lossy(&after).contains("revision=\"aaa\""));
    }

    #[test]
    fn repo_info_keeps_one_series_per_repo() {
        let metrics = Metrics::new(&BTreeSet::new(), 10);
        metrics.repo_synced("infra", "aaa", "", 1);
        metrics.repo_synced("infra", "bbb", "https://github.com/a/infra/commit/bbb", 2);
        let text = metrics.render();
        assert_eq!(text.matches("driftwatch_repo_info{").count(), 1);
        assert!(text.contains("revision=\"bbb\""));
        assert!(text.contains("commit_url=\"https://github.com/a/infra/commit/bbb\""));
    }
}
