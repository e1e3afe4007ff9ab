//! The Kubernetes probe's configuration: the `[[probe]]` fields of a `kubernetes` probe and
//! their defaults. `build.rs` validates them into a `KubernetesProbe`.

use std::path::PathBuf;

use serde::Deserialize;

use super::ignore::IgnoreRuleConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// An argv printing the manifests as YAML (`["kubectl", "kustomize", "overlays/prod"]`),
    /// run in the probe's path. When unset, the probe's path is read as a manifest directory.
    #[serde(default)]
    pub render: Option<Vec<String>>,
    /// Variables passed from driftwatch's environment to the render command.
    #[serde(default)]
    pub render_pass_env: Vec<String>,
    /// Kubeconfig file (relative to the config file); unset means in-cluster service-account config.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// Context in the kubeconfig; its current context when unset.
    #[serde(default)]
    pub context: Option<String>,
    /// Namespace for namespaced objects that name none; the context's namespace, else `default`.
    #[serde(default)]
    pub default_namespace: Option<String>,
    /// Kinds to compare (globs on `Kind` or `Kind.group`); all when empty.
    #[serde(default)]
    pub include_kinds: Vec<String>,
    #[serde(default)]
    pub exclude_kinds: Vec<String>,
    #[serde(default)]
    pub ignore: Vec<IgnoreRuleConfig>,
    /// Report live objects git does not declare, for the kinds and namespaces the probe manages.
    #[serde(default)]
    pub detect_extra: bool,
    /// More namespaces to search for extra objects, beyond those the manifests use.
    #[serde(default)]
    pub extra_namespaces: Vec<String>,
    /// Only live objects matching this label selector count as extra (also allows
    /// extra detection for cluster-scoped kinds).
    #[serde(default)]
    pub extra_label_selector: Option<String>,
    /// At most this many API requests in flight.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// With more than this many objects of one type in one namespace, LIST instead of GET each.
    #[serde(default = "default_list_threshold")]
    pub list_threshold: usize,
    /// Items per LIST page.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Timeout of each API request.
    #[serde(default = "default_request_timeout")]
    pub request_timeout: String,
    /// Keep a watch-fed cache of the compared objects: checks read it (no API
    /// requests) and a live change triggers a check. Needs `watch` permission;
    /// without it the probe LISTs on every check and warns.
    #[serde(default = "default_watch")]
    pub watch: bool,
    /// How long after a live change the check starts, so a burst makes one check.
    #[serde(default = "default_watch_debounce")]
    pub watch_debounce: String,
    /// When WATCH is forbidden (403), how often to ask again; until then
    /// the probe LISTs on every check and warns.
    #[serde(default = "default_watch_retry")]
    pub watch_retry: String,
}

fn default_watch_retry() -> String {
    "5m".to_string()
}

fn default_watch() -> bool {
    true
}

fn default_watch_debounce() -> String {
    "2s".to_string()
}

fn default_concurrency() -> usize {
    8
}

fn default_list_threshold() -> usize {
    3
}

fn default_page_size() -> u32 {
    500
}

fn default_request_timeout() -> String {
    "30s".to_string()
}
