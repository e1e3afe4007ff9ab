//! The Kubernetes probe's configuration: the `[[probe]]` fields of a `kubernetes` probe and
//! their defaults. `build.rs` validates them into a `KubernetesProbe`.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::config::schema::DurationText;

use super::ignore::IgnoreRuleConfig;

/// `layer = "kubernetes"`: the objects declared in git against the live
/// objects, read-only (get, list and watch only) ([Kubernetes](kubernetes.md)).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// An argv printing the manifests as YAML (`["kubectl", "kustomize",
    /// "overlays/prod"]`), run in the probe's `path`.
    ///
    /// Default: none: the probe's `path` is read as a manifest directory
    /// (`*.yaml`, `*.yml`, `*.json`, recursive).
    #[serde(default)]
    pub render: Option<Vec<String>>,
    /// Variables passed from driftwatch's environment to the render command.
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub render_pass_env: Vec<String>,
    /// A kubeconfig file, relative to the config file's directory.
    ///
    /// Default: none: the in-cluster service account.
    #[serde(default)]
    pub kubeconfig: Option<PathBuf>,
    /// The context in the kubeconfig.
    ///
    /// Default: the kubeconfig's current context.
    #[serde(default)]
    pub context: Option<String>,
    /// The namespace of namespaced objects that name none.
    ///
    /// Default: the context's namespace, else `default`.
    #[serde(default)]
    pub default_namespace: Option<String>,
    /// Kinds to compare: globs on `Kind` or `Kind.group` (`"*.example.com"`).
    ///
    /// Default: `[]`: every kind.
    #[serde(default)]
    pub include_kinds: Vec<String>,
    /// Kinds left out (globs as in `include_kinds`).
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub exclude_kinds: Vec<String>,
    /// Fields that are not drift, Argo CD's `ignoreDifferences` (the table below).
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub ignore: Vec<IgnoreRuleConfig>,
    /// Report live objects git does not declare (action `extra`), for the
    /// kinds and namespaces the manifests use.
    ///
    /// Default: `false`.
    #[serde(default)]
    pub detect_extra: bool,
    /// More namespaces to search for extra objects, beyond those the manifests
    /// use; needs `detect_extra`.
    ///
    /// Default: `[]`.
    #[serde(default)]
    pub extra_namespaces: Vec<String>,
    /// Only live objects matching this label selector count as extra (this
    /// also allows extra detection for cluster-scoped kinds); needs
    /// `detect_extra`.
    ///
    /// Default: none.
    #[serde(default)]
    pub extra_label_selector: Option<String>,
    /// At most this many API requests in flight (and scopes making their first
    /// watch sync at once); at least 1.
    ///
    /// Default: `8`.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// With more than this many objects of one type in one namespace, LIST
    /// them instead of a GET each.
    ///
    /// Default: `3`.
    #[serde(default = "default_list_threshold")]
    pub list_threshold: usize,
    /// Items per LIST page (limit/continue); at least 1.
    ///
    /// Default: `500`.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Timeout of each API request; more than zero.
    ///
    /// Default: `"30s"`.
    #[serde(default = "default_request_timeout")]
    #[schemars(with = "DurationText")]
    pub request_timeout: String,
    /// Keep a watch-fed cache of the compared objects: checks read it (no API
    /// requests) and a live change triggers a check. Needs `watch` permission;
    /// without it the probe LISTs on every check and warns. `false`: LIST on
    /// every check.
    ///
    /// Default: `true`.
    #[serde(default = "default_watch")]
    pub watch: bool,
    /// How long after a live change the check starts, so a burst makes one check.
    ///
    /// Default: `"2s"`.
    #[serde(default = "default_watch_debounce")]
    #[schemars(with = "DurationText")]
    pub watch_debounce: String,
    /// When WATCH is forbidden (403), how often to ask again; until then the
    /// probe LISTs on every check and warns. More than zero.
    ///
    /// Default: `"5m"`.
    #[serde(default = "default_watch_retry")]
    #[schemars(with = "DurationText")]
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
