//! The only writer of Prometheus metrics. The daemon owns the registry (not
//! the global one). Probe series are built at scrape time from the state by
//! a custom collector (as node_exporter builds its collectors per scrape):
//! one set of series per instance the state holds, so a series exists
//! exactly while its instance does. A root dropped from a probe's listing,
//! or a probe dropped from the config, takes its series with it.
//!
//! In a sharded cluster each replica exports only the instances it owns
//! (`Cluster::owns`, read at each scrape), so the union over the replicas
//! holds each instance's series exactly once, plus the `driftwatch_cluster_*`
//! series of its membership view.
//!
//! Labels are bounded: probe, layer, root, the configured constant labels,
//! and (behind a per-probe cap) resource and action. Counters and the
//! duration histogram accumulate between scrapes; they are exported only for
//! live instances and forgotten with them.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::cluster::Cluster;
use crate::model::instance::InstanceId;
use crate::model::outcome::ErrorReason;
use crate::model::outcome::{RunReport, Verdict};
use crate::probe::Probe;
use crate::state::State;

mod cache;
mod cluster;
mod labels;

use self::cache::CacheCollector;
use self::cluster::ClusterCollector;
use self::labels::INSTANCE;

/// Histogram buckets for run durations, from 100 ms up to 30 minutes.
const DURATION_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
];

/// How old a cached exposition may be when no probe or repo series changed
/// (only counters such as HTTP requests moved). Scrapes are seconds apart;
/// this keeps a burst of scrapes from re-encoding the whole registry each time.
const RENDER_CACHE_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// What the collector needs to know about a configured probe.
#[derive(Debug, Clone)]
struct ProbeMeta {
    layer: String,
    labels: BTreeMap<String, String>,
    schedule_interval: f64,
}

/// One metric family as registered: what `/metrics` may export under this
/// name. The metrics reference (docs/metrics-reference.md) and the contract
/// test list these, so a family shows there before it has any series.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetricInfo {
    pub name: String,
    /// `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub kind: &'static str,
    pub help: String,
    /// Label names; probe series also carry the configured constant labels.
    pub labels: Vec<String>,
}

/// The families `collector` registers, with the type its collect() reports.
fn describe(collector: &dyn Collector) -> Vec<MetricInfo> {
    use prometheus::proto::MetricType;
    let families = collector.collect();
    collector
        .desc()
        .into_iter()
        .map(|desc| {
            let kind = families
                .iter()
                .find(|family| family.name() == desc.fq_name)
                .map(|family| match family.get_field_type() {
                    MetricType::COUNTER => "counter",
                    MetricType::GAUGE => "gauge",
                    MetricType::HISTOGRAM => "histogram",
                    MetricType::SUMMARY => "summary",
                    MetricType::UNTYPED => "untyped",
                })
                .unwrap_or("untyped");
            let mut labels: Vec<String> = desc
                .const_label_pairs
                .iter()
                .map(|pair| pair.name().to_string())
                .collect();
            labels.extend(desc.variable_labels.iter().cloned());
            MetricInfo {
                name: desc.fq_name.clone(),
                kind,
                help: desc.help.clone(),
                labels,
            }
        })
        .collect()
}

/// The registry, remembering what was registered into it.
struct Described {
    registry: Registry,
    families: Mutex<Vec<MetricInfo>>,
}

impl Described {
    fn register(&self, collector: Box<dyn Collector>) -> prometheus::Result<()> {
        let families = describe(collector.as_ref());
        self.registry.register(collector)?;
        self.families.lock().unwrap().extend(families);
        Ok(())
    }
}

pub struct Metrics {
    registry: Described,
    probes: Arc<ProbeCollector>,

    repo_success: IntGaugeVec,
    repo_last_sync: GaugeVec,
    repo_commit_time: GaugeVec,
    repo_info: IntGaugeVec,
    repo_errors: IntCounterVec,
    repo_poll_interval: GaugeVec,

    /// Revision currently exported per repo.
    repo_revisions: Mutex<BTreeMap<String, (String, String)>>,
    /// Bumped by every change to probe or repo series; keys the render cache.
    generation: std::sync::atomic::AtomicU64,
    /// The last exposition rendered: (generation, when, text).
    cache: Mutex<Option<(u64, std::time::Instant, bytes::Bytes)>>,
}

/// Builds every probe series from the state on each scrape.
struct ProbeCollector {
    state: Arc<State>,
    /// Names of the constant labels, the union over all configured probes.
    constant_labels: Vec<String>,
    max_resource_series: usize,
    probes: RwLock<BTreeMap<String, ProbeMeta>>,
    /// One scrape at a time: the gauges below are refilled on each.
    collecting: Mutex<()>,
    /// Which instances this process exports (all of them in single mode).
    cluster: RwLock<Cluster>,

    // Gauges: reset and refilled from the state on every scrape.
    result: IntGaugeVec,
    drifted: IntGaugeVec,
    drifted_resources: IntGaugeVec,
    last_run: GaugeVec,
    last_success: GaugeVec,
    drifted_since: GaugeVec,
    warnings: IntGaugeVec,
    schedule_interval: GaugeVec,
    resource_drifted: IntGaugeVec,
    terradiff: IntGaugeVec,
    instances: IntGaugeVec,
    roots_error: IntGaugeVec,
    acknowledged_resources: IntGaugeVec,
    ack_expiry: GaugeVec,
    ack_mismatched: IntGaugeVec,
    ack_info: IntGaugeVec,

    // Accumulated between scrapes; exported for live instances only.
    resource_dropped: IntCounterVec,
    duration: HistogramVec,
    runs: IntCounterVec,
    errors: IntCounterVec,
    skipped: IntCounterVec,
}

impl ProbeCollector {
    fn new(state: Arc<State>, constant_labels: Vec<String>, max_resource_series: usize) -> Self {
        let mut probe_labels: Vec<&str> = INSTANCE.to_vec();
        probe_labels.extend(constant_labels.iter().map(String::as_str));
        let pl = &probe_labels;
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            GaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let int_gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        let result_labels = ["probe", "layer", "root", "result"];
        let reason_labels = ["probe", "layer", "root", "reason"];
        let resource_labels = ["probe", "layer", "root", "resource", "action"];
        ProbeCollector {
            result: int_gauge("driftwatch_probe_result", "Result of the last completed run: 0 in sync, 1 error, 2 drifted (as terraform plan -detailed-exitcode).", pl),
            drifted: int_gauge("driftwatch_probe_drifted", "1 if the last run that reached a verdict found drift that no active acknowledgement covers, 0 if it found none or all of it is acknowledged; errors keep the previous value.", pl),
            drifted_resources: int_gauge("driftwatch_probe_drifted_resources", "Number of drifted resources found by the last run that reached a verdict that no active acknowledgement covers.", pl),
            acknowledged_resources: int_gauge("driftwatch_probe_acknowledged_resources", "Number of drifted resources an active acknowledgement covers whose drift still matches it; 0 when none.", pl),
            ack_expiry: gauge("driftwatch_probe_ack_expiry_timestamp_seconds", "The nearest expiry, in seconds since the epoch, among the active acknowledgements that cover drift of the instance; absent when none does.", pl),
            ack_mismatched: int_gauge("driftwatch_probe_ack_mismatched_resources", "Number of drifted resources an active acknowledgement covers whose drift changed since (another wanted or live value); 0 when none.", pl),
            ack_info: int_gauge("driftwatch_probe_ack_info", "1 for each active acknowledgement covering drift of the instance, with its id and owner.", &["probe", "layer", "root", "ack", "by"]),
            last_run: gauge("driftwatch_probe_last_run_timestamp_seconds", "Start time of the last completed run, in seconds since the epoch; 0 before the first run.", pl),
            last_success: gauge("driftwatch_probe_last_success_timestamp_seconds", "Start time of the last run that reached a verdict (in sync or drifted); 0 if none yet.", pl),
            drifted_since: gauge("driftwatch_probe_drifted_since_timestamp_seconds", "Start of the current drift episode in seconds since the epoch; 0 when in sync.", pl),
            warnings: int_gauge("driftwatch_probe_warnings", "Number of warnings in the last run (e.g. tasks that run for real in check mode); 0 when none.", INSTANCE),
            schedule_interval: gauge("driftwatch_probe_schedule_interval_seconds", "Nominal seconds between scheduled runs of the probe; 0 when it has no schedule.", INSTANCE),
            resource_drifted: int_gauge("driftwatch_probe_resource_drifted", "1 for each drifted resource of the last run that reached a verdict that no active acknowledgement covers; capped per probe.", &resource_labels),
            terradiff: int_gauge("terradiff_plan_exit_code", "Compatibility alias for terradiff: 0 no changes, 1 error, 2 changes present.", &["probe", "root"]),
            instances: int_gauge("driftwatch_probe_instances", "Number of instances (roots) of the probe, as its last successful root listing found them; 0 before the first listing.", &["probe", "layer"]),
            roots_error: int_gauge("driftwatch_probe_roots_error", "1 if the probe has no known instance and its last attempt to list roots failed (repo not synced, path missing, no root matches); 0 otherwise.", &["probe", "layer"]),
            resource_dropped: counter("driftwatch_probe_resource_series_dropped_total", "Drifted resources not exported as series because the per-probe cap was reached.", INSTANCE),
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "driftwatch_probe_run_duration_seconds",
                    "How long probe runs took, in seconds.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
                INSTANCE,
            )
            .expect("valid metric"),
            runs: counter("driftwatch_probe_runs_total", "Completed probe runs by result (in_sync, drifted, error).", &result_labels),
            errors: counter("driftwatch_probe_errors_total", "Probe runs that ended in error, by reason.", &reason_labels),
            skipped: counter("driftwatch_probe_skipped_runs_total", "Scheduled runs skipped because the instance's previous run was still going (other triggers wait for it and run after it).", INSTANCE),
            state,
            constant_labels,
            max_resource_series,
            probes: RwLock::new(BTreeMap::new()),
            collecting: Mutex::new(()),
            cluster: RwLock::new(Cluster::single()),
        }
    }

    fn gauges(&self) -> [&dyn Collector; 16] {
        [
            &self.acknowledged_resources,
            &self.ack_expiry,
            &self.ack_mismatched,
            &self.ack_info,
            &self.result,
            &self.drifted,
            &self.drifted_resources,
            &self.last_run,
            &self.last_success,
            &self.drifted_since,
            &self.warnings,
            &self.schedule_interval,
            &self.resource_drifted,
            &self.terradiff,
            &self.instances,
            &self.roots_error,
        ]
    }

    fn counters(&self) -> [&dyn Collector; 5] {
        [
            &self.resource_dropped,
            &self.duration,
            &self.runs,
            &self.errors,
            &self.skipped,
        ]
    }

    /// Drops the accumulated counters of an instance that no longer exists.
    fn forget(&self, id: &InstanceId, layer: &str) {
        let instance = [id.probe.as_str(), layer, id.root.as_str()];
        let _ = self.resource_dropped.remove_label_values(&instance);
        let _ = self.duration.remove_label_values(&instance);
        let _ = self.skipped.remove_label_values(&instance);
        for result in [Verdict::InSync, Verdict::Drifted, Verdict::Error] {
            let _ = self.runs.remove_label_values(&[
                instance[0],
                instance[1],
                instance[2],
                result.as_str(),
            ]);
        }
        for reason in ErrorReason::ALL {
            let _ = self.errors.remove_label_values(&[
                instance[0],
                instance[1],
                instance[2],
                reason.as_str(),
            ]);
        }
    }

    /// Refills the gauges from the state; returns the live instances.
    fn fill(&self) -> HashSet<(String, String)> {
        for gauge in [&self.result, &self.drifted, &self.drifted_resources] {
            gauge.reset();
        }
        let now = chrono::Utc::now();
        for gauge in [
            &self.last_run,
            &self.last_success,
            &self.drifted_since,
            &self.schedule_interval,
            &self.ack_expiry,
        ] {
            gauge.reset();
        }
        for gauge in [
            &self.acknowledged_resources,
            &self.ack_mismatched,
            &self.ack_info,
            &self.warnings,
            &self.resource_drifted,
            &self.terradiff,
            &self.instances,
            &self.roots_error,
        ] {
            gauge.reset();
        }
        let probes = self.probes.read().unwrap();
        let mut live = HashSet::new();
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        let ts = |t: Option<chrono::DateTime<chrono::Utc>>| {
            t.map(|t| t.timestamp_millis() as f64 / 1000.0)
                .unwrap_or(0.0)
        };
        let cluster = self.cluster.read().unwrap().clone();
        for status in self.state.snapshot() {
            let Some(meta) = probes.get(&status.name) else {
                continue;
            };
            // The probe's instance count is its whole listing, the same on
            // every replica; the instance's own series only on its owner.
            *counts.entry(status.name.clone()).or_default() += 1;
            if !cluster.owns(&status.instance()) {
                continue;
            }
            let instance = [
                status.name.as_str(),
                meta.layer.as_str(),
                status.root.as_str(),
            ];
            let mut values = instance.to_vec();
            for name in &self.constant_labels {
                values.push(meta.labels.get(name).map(String::as_str).unwrap_or(""));
            }
            // Acknowledged drift is matched at scrape time, so an expiry
            // shows on the next scrape without a run.
            let assessment = crate::ack::assess_status(&status, now);
            self.drifted
                .with_label_values(&values)
                .set(crate::ack::view::has_unacknowledged_drift(&status, &assessment) as i64);
            self.drifted_resources
                .with_label_values(&values)
                .set(crate::ack::view::unacknowledged_resources(&status, &assessment) as i64);
            self.acknowledged_resources
                .with_label_values(&values)
                .set(assessment.acknowledged as i64);
            self.ack_mismatched
                .with_label_values(&values)
                .set(assessment.changed as i64);
            if let Some(expiry) = assessment.nearest_expiry() {
                self.ack_expiry
                    .with_label_values(&values)
                    .set(ts(Some(expiry)));
            }
            for (ack, by, _) in &assessment.covering {
                self.ack_info
                    .with_label_values(&[instance[0], instance[1], instance[2], ack, by])
                    .set(1);
            }
            self.last_run
                .with_label_values(&values)
                .set(ts(status.last_report.as_ref().map(|r| r.started_at)));
            self.last_success
                .with_label_values(&values)
                .set(ts(status.last_success));
            self.drifted_since
                .with_label_values(&values)
                .set(ts(status.drifted_since));
            self.schedule_interval
                .with_label_values(&instance)
                .set(meta.schedule_interval);
            self.warnings.with_label_values(&instance).set(
                status
                    .last_report
                    .as_ref()
                    .map(|r| r.warnings.len() as i64)
                    .unwrap_or(0),
            );
            if let Some(report) = &status.last_report {
                self.result
                    .with_label_values(&values)
                    .set(report.verdict.code());
                if meta.layer == "terraform" {
                    self.terradiff
                        .with_label_values(&[instance[0], instance[2]])
                        .set(report.verdict.code());
                }
            }
            let unacknowledged_list = status.drifted_list.iter().filter(|drifted| {
                assessment
                    .standing_of(&drifted.resource)
                    .map_or(true, |s| s.standing != crate::ack::Standing::Acknowledged)
            });
            for drifted in unacknowledged_list.take(self.max_resource_series) {
                self.resource_drifted
                    .with_label_values(&[
                        instance[0],
                        instance[1],
                        instance[2],
                        &drifted.resource,
                        &drifted.action,
                    ])
                    .set(1);
            }
            // Counters exist at zero from the instance's first scrape.
            self.resource_dropped.with_label_values(&instance);
            self.duration.with_label_values(&instance);
            self.skipped.with_label_values(&instance);
            for result in [Verdict::InSync, Verdict::Drifted, Verdict::Error] {
                self.runs.with_label_values(&[
                    instance[0],
                    instance[1],
                    instance[2],
                    result.as_str(),
                ]);
            }
            for reason in ErrorReason::ALL {
                self.errors.with_label_values(&[
                    instance[0],
                    instance[1],
                    instance[2],
                    reason.as_str(),
                ]);
            }
            live.insert((status.name.clone(), status.root.clone()));
        }
        for (name, meta) in probes.iter() {
            let count = counts.get(name).copied().unwrap_or(0);
            let labels = [name.as_str(), meta.layer.as_str()];
            self.instances.with_label_values(&labels).set(count);
            let failing = count == 0 && self.state.probe_failure(name).is_some();
            self.roots_error
                .with_label_values(&labels)
                .set(failing as i64);
        }
        live
    }
}

impl Collector for ProbeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.gauges()
            .into_iter()
            .chain(self.counters())
            .flat_map(|c| c.desc())
            .collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let _one = self.collecting.lock().unwrap_or_else(|e| e.into_inner());
        let live = self.fill();
        let mut families: Vec<_> = self.gauges().iter().flat_map(|c| c.collect()).collect();
        for mut family in self.counters().iter().flat_map(|c| c.collect()) {
            family.mut_metric().retain(|metric| {
                let label = |name: &str| {
                    metric
                        .get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map(|l| l.value().to_string())
                        .unwrap_or_default()
                };
                live.contains(&(label("probe"), label("root")))
            });
            families.push(family);
        }
        families
    }
}

/// Lets the registry own a collector the metrics keep a handle on.
struct Shared(Arc<ProbeCollector>);

impl Collector for Shared {
    fn desc(&self) -> Vec<&Desc> {
        self.0.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.0.collect()
    }
}

impl Metrics {
    /// `constant_labels` are the label names probes may set (e.g. `team`);
    /// probe series come from `state` at each scrape.
    pub fn new(
        state: Arc<State>,
        constant_labels: &BTreeSet<String>,
        max_resource_series: usize,
    ) -> Metrics {
        let registry = Described {
            registry: Registry::new(),
            families: Mutex::default(),
        };
        let probes = Arc::new(ProbeCollector::new(
            state,
            constant_labels.iter().cloned().collect(),
            max_resource_series,
        ));
        registry
            .register(Box::new(Shared(probes.clone())))
            .expect("unique metrics");

        fn gauge(registry: &Described, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
            let metric = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        }
        fn int_gauge(registry: &Described, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
            let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        }
        fn counter(registry: &Described, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
            let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(metric.clone()))
                .expect("unique metric");
            metric
        }
        let r = &registry;
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
            repo_success: int_gauge(r, "driftwatch_repo_sync_success", "1 if the last sync of the repository succeeded, 0 if it failed (or timed out).", &["repo"]),
            repo_last_sync: gauge(r, "driftwatch_repo_last_sync_timestamp_seconds", "Time of the last successful sync, in seconds since the epoch; 0 if none yet.", &["repo"]),
            repo_commit_time: gauge(r, "driftwatch_repo_commit_timestamp_seconds", "Commit time of the checked-out revision, in seconds since the epoch; 0 if unknown.", &["repo"]),
            repo_info: int_gauge(r, "driftwatch_repo_info", "Always 1; the revision label is the checked-out commit, commit_url its page in the repository's web UI (empty when unknown).", &["repo", "revision", "commit_url"]),
            repo_errors: counter(r, "driftwatch_repo_sync_errors_total", "Failed syncs of the repository, timeouts included.", &["repo"]),
            repo_poll_interval: gauge(r, "driftwatch_repo_poll_interval_seconds", "Configured seconds between syncs of the repository (poll_interval); the sync-age alert is a multiple of it.", &["repo"]),
            registry,
            probes,
            repo_revisions: Mutex::new(BTreeMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            cache: Mutex::new(None),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry.registry
    }

    /// Registers a collector of another module (HTTP, handover) in the
    /// daemon's registry, so that it is listed by [`Metrics::families`] too.
    pub fn register(&self, collector: Box<dyn Collector>) -> prometheus::Result<()> {
        self.registry.register(collector)
    }

    /// Every family registered so far, sorted by name.
    pub fn families(&self) -> Vec<MetricInfo> {
        let mut families = self.registry.families.lock().unwrap().clone();
        families.sort();
        families
    }

    /// Tells the collector about a configured probe: its layer, constant
    /// labels and nominal schedule interval. Instances of probes it does not
    /// know get no series.
    pub fn register_probe(
        &self,
        name: &str,
        layer: &str,
        labels: &BTreeMap<String, String>,
        schedule_interval: f64,
    ) {
        self.changed();
        self.probes.probes.write().unwrap().insert(
            name.to_string(),
            ProbeMeta {
                layer: layer.to_string(),
                labels: labels.clone(),
                schedule_interval,
            },
        );
    }

    /// Exports only the instances `cluster` says this replica owns, and the
    /// cluster's own series (`driftwatch_cluster_*`) when it is sharded.
    /// Single mode (the default) exports every instance and no cluster series.
    pub fn set_cluster(&self, cluster: &Cluster) {
        self.changed();
        *self.probes.cluster.write().unwrap() = cluster.clone();
        if cluster.is_single() {
            return;
        }
        self.registry
            .register(Box::new(ClusterCollector::new(
                cluster.clone(),
                self.probes.state.clone(),
            )))
            .expect("unique cluster metrics");
    }

    /// Counts a finished run (the gauges follow the state by themselves).
    pub fn observe(&self, report: &RunReport) {
        self.changed();
        let p = &self.probes;
        let instance = [
            report.name.as_str(),
            report.layer.as_str(),
            report.root.as_str(),
        ];
        p.duration
            .with_label_values(&instance)
            .observe(report.duration.as_secs_f64());
        p.runs
            .with_label_values(&[
                instance[0],
                instance[1],
                instance[2],
                report.verdict.as_str(),
            ])
            .inc();
        if let Some(error) = &report.error {
            p.errors
                .with_label_values(&[instance[0], instance[1], instance[2], error.reason.as_str()])
                .inc();
        }
        if report.verdict != Verdict::Error {
            let distinct: BTreeSet<(&str, &str)> = report
                .changes
                .iter()
                .map(|c| (c.subject.as_str(), c.action.as_str()))
                .collect();
            let dropped = distinct.len().saturating_sub(p.max_resource_series) as u64;
            if dropped > 0 {
                p.resource_dropped
                    .with_label_values(&instance)
                    .inc_by(dropped);
            }
        }
    }

    /// Drops what is kept for an instance that no longer exists.
    pub fn forget(&self, id: &InstanceId, layer: &str) {
        self.changed();
        self.probes.forget(id, layer);
    }

    /// Marks the probe series as changed (instances added or a failure recorded).
    pub fn state_changed(&self) {
        self.changed();
    }

    pub fn skipped_run(&self, id: &InstanceId, layer: &str) {
        self.changed();
        self.probes
            .skipped
            .with_label_values(&[id.probe.as_str(), layer, id.root.as_str()])
            .inc();
    }

    /// Creates a repo's series before its first sync.
    pub fn register_repo(&self, repo: &str, poll_interval: std::time::Duration) {
        self.changed();
        self.repo_poll_interval
            .with_label_values(&[repo])
            .set(poll_interval.as_secs_f64());
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
    pub fn register_caches(&self, probes: Vec<(InstanceId, String, Arc<dyn Probe>)>) {
        let probes: Vec<_> = probes
            .into_iter()
            .filter(|(_, _, probe)| probe.cache_stats().is_some())
            .collect();
        if !probes.is_empty() {
            self.register_cache_collector(probes);
        }
    }

    /// The watch-cache series for `probes` (the reference lists them with none).
    pub(crate) fn register_cache_collector(
        &self,
        probes: Vec<(InstanceId, String, Arc<dyn Probe>)>,
    ) {
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
            .encode(&self.registry.registry.gather(), &mut buffer)
            .expect("text encoding cannot fail");
        String::from_utf8(buffer).expect("exposition is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::outcome::ResourceChange;
    use crate::model::outcome::{Outcome, RunReport};
    use std::time::Duration;

    fn report(root: &str, changes: usize) -> RunReport {
        let mut report = RunReport {
            probe: InstanceId::new("web", root).to_string(),
            name: "web".into(),
            root: root.into(),
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

    fn setup(cap: usize) -> (Arc<State>, Metrics) {
        let state = Arc::new(State::ephemeral());
        let metrics = Metrics::new(state.clone(), &["team".to_string()].into(), cap);
        metrics.register_probe(
            "web",
            "command",
            &[("team".to_string(), "corp".to_string())].into(),
            0.0,
        );
        (state, metrics)
    }

    fn record(state: &State, metrics: &Metrics, report: &RunReport) {
        state.record(report);
        metrics.observe(report);
    }

    #[test]
    fn resource_series_are_capped_and_replaced() {
        let (state, metrics) = setup(3);
        record(&state, &metrics, &report("", 5));
        let text = metrics.render();
        assert_eq!(
            text.matches("driftwatch_probe_resource_drifted{").count(),
            3
        );
        assert!(text.contains("driftwatch_probe_resource_series_dropped_total{layer=\"command\",probe=\"web\",root=\"\"} 2"));
        assert!(text.contains(
            "driftwatch_probe_result{layer=\"command\",probe=\"web\",root=\"\",team=\"corp\"} 2"
        ));

        record(&state, &metrics, &report("", 1));
        let text = metrics.render();
        assert_eq!(
            text.matches("driftwatch_probe_resource_drifted{").count(),
            1
        );
    }

    #[test]
    fn series_exist_exactly_while_the_instance_does() {
        let (state, metrics) = setup(10);
        state.set_instances("web", "command", &["a".into(), "b".into()]);
        let text = metrics.render();
        // Pending instances: their series at zero, no result yet.
        assert!(text.contains(
            "driftwatch_probe_drifted{layer=\"command\",probe=\"web\",root=\"b\",team=\"corp\"} 0"
        ));
        assert!(!text.contains("driftwatch_probe_result{"));
        assert!(text.contains("driftwatch_probe_instances{layer=\"command\",probe=\"web\"} 2"));
        record(&state, &metrics, &report("b", 2));
        assert!(metrics.render().contains(
            "driftwatch_probe_result{layer=\"command\",probe=\"web\",root=\"b\",team=\"corp\"} 2"
        ));

        let removed = state.set_instances("web", "command", &["a".into()]);
        assert_eq!(removed.len(), 1);
        for status in &removed {
            metrics.forget(&status.instance(), &status.layer);
        }
        let text = metrics.render();
        let left: Vec<&str> = text.lines().filter(|l| l.contains("root=\"b\"")).collect();
        assert!(left.is_empty(), "series of a removed root: {left:#?}");
        assert!(text.contains("driftwatch_probe_instances{layer=\"command\",probe=\"web\"} 1"));
        assert!(text.contains("driftwatch_probe_runs_total{layer=\"command\",probe=\"web\",result=\"in_sync\",root=\"a\"} 0"));
    }

    #[test]
    fn a_failure_before_any_root_is_known_stays_on_the_probe() {
        let (state, metrics) = setup(10);
        let mut failure = report("", 0);
        failure.apply_result(Err(crate::model::outcome::ProbeError::new(
            ErrorReason::Checkout,
            "repo infra has not synced yet",
        )));
        state.record_probe_failure(&failure);
        let text = metrics.render();
        assert!(text.contains("driftwatch_probe_roots_error{layer=\"command\",probe=\"web\"} 1"));
        assert!(!text.contains("root=\"\""), "phantom instance:\n{text}");
        state.set_instances("web", "command", &["a".into()]);
        let text = metrics.render();
        assert!(text.contains("driftwatch_probe_roots_error{layer=\"command\",probe=\"web\"} 0"));
        assert!(state.probe_failure("web").is_none());
    }

    #[test]
    fn cached_render_follows_every_change() {
        let (_, metrics) = setup(10);
        let before = metrics.render_cached();
        assert_eq!(before, metrics.render_cached());
        metrics.repo_synced("infra", "aaa", "", 1);
        let after = metrics.render_cached();
        assert!(String::from_utf8_lossy(&after).contains("revision=\"aaa\""));
    }

    #[test]
    fn repo_info_keeps_one_series_per_repo() {
        let (_, metrics) = setup(10);
        metrics.repo_synced("infra", "aaa", "", 1);
        metrics.repo_synced("infra", "bbb", "https://github.com/a/infra/commit/bbb", 2);
        let text = metrics.render();
        assert_eq!(text.matches("driftwatch_repo_info{").count(), 1);
        assert!(text.contains("revision=\"bbb\""));
        assert!(text.contains("commit_url=\"https://github.com/a/infra/commit/bbb\""));
    }
}
