//! Reference pages generated from the code, so they cannot drift from it:
//! the configuration reference comes from the config structs' doc comments
//! (`configuration`), the metrics reference is the registry's own list of
//! families. It sits at the top of the layers (beside `app`): to list every
//! family it builds the real `Metrics` with every optional part registered
//! (scale-out, watch caches, HTTP, handover), as the daemon would in
//! `kubernetes` mode.
//!
//! `tests/it/contract.rs` compares the committed pages and golden files with
//! what this generates; `scripts/bless` rewrites them.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::metrics::{MetricInfo, Metrics};

mod configuration;

pub use configuration::{config_tables, configuration_reference, ConfigKey, ConfigTable};

/// Stands for the constant labels probes may configure (`labels = { team = … }`):
/// the families built with it carry them.
const CONSTANT_LABELS: &str = "CONSTANT_LABELS";

/// Every metric family driftwatch may export, sorted by name; the configured
/// constant labels appear as `<constant labels>`.
pub fn metric_families() -> Vec<MetricInfo> {
    let state = Arc::new(crate::state::State::ephemeral());
    let constant: BTreeSet<String> = [CONSTANT_LABELS.to_string()].into();
    let metrics = Metrics::new(state, &constant, 100);
    metrics.set_cluster(&crate::cluster::Cluster::sharded("reference"));
    metrics.register_cache_collector(Vec::new());
    crate::http::HttpMetrics::register(&metrics).expect("HTTP metrics register");
    crate::handover::HandoverMetrics::register(&metrics).expect("handover metrics register");
    let mut families = metrics.families();
    for family in &mut families {
        for label in &mut family.labels {
            if label == CONSTANT_LABELS {
                *label = "<constant labels>".to_string();
            }
        }
    }
    families
}

/// docs/metrics-reference.md.
pub fn metrics_reference() -> String {
    let mut page = String::from(
        "# Metrics reference\n\n\
         <!-- Generated from the metrics registry by driftwatch::reference::metrics_reference; \
         do not edit: run scripts/bless. -->\n\n\
         Every metric family driftwatch may export on `/metrics`, as its registry describes it \
         (name, type, labels, help text). `<constant labels>` are the labels probes set in the \
         config (`labels = { team = \"corp\" }`), the union over all probes. When each series \
         exists, which families appear only in `[cluster] mode = \"kubernetes\"` or for \
         Kubernetes probes with `watch = true`, and the values of bounded labels such as `reason`: \
         [Metrics](metrics.md). Names and labels are a contract: changes are listed in the \
         [CHANGELOG](../CHANGELOG.md).\n\n\
         | name | type | labels | help |\n|---|---|---|---|\n",
    );
    for family in metric_families() {
        let labels = match family.labels.is_empty() {
            true => "—".to_string(),
            false => family.labels.join(", "),
        };
        page.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            family.name,
            family.kind,
            labels,
            family.help.replace('|', "\\|")
        ));
    }
    page
}
