//! The Kubernetes probe's configuration: the `[[probe]]` fields of a `kubernetes` probe, `build`,
//! and `KubernetesProbe::new`, which validates them (every problem at once, each naming its key:
//! durations, kind globs, ignore rules) and sets up the watch-fed cache when watching is on.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use crate::probe::{parse_fields, FieldError, Probe, ProbeCommon};

use super::cache::LiveCache;
use super::ignore::{IgnoreRule, IgnoreRuleConfig};
use super::live::DiscoveryCache;
use super::{KubernetesProbe, Watching};

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

pub fn build(common: &ProbeCommon, fields: toml::Table) -> Result<Arc<dyn Probe>, Vec<FieldError>> {
    let config: KubernetesConfig = parse_fields(fields)?;
    Ok(Arc::new(KubernetesProbe::new(common, config)?))
}

/// A duration field (`"30s"`), recording an error under `key` when it does
/// not parse, or is zero and `zero_ok` is not set.
fn duration(key: &str, text: &str, zero_ok: bool, errors: &mut Vec<FieldError>) -> Duration {
    match crate::config::parse_duration(text) {
        Ok(d) if zero_ok || !d.is_zero() => d,
        Ok(_) => {
            errors.push(FieldError::new(key, "must be more than zero"));
            Duration::ZERO
        }
        Err(message) => {
            errors.push(FieldError::new(key, message));
            Duration::ZERO
        }
    }
}

fn patterns(key: &str, values: &[String], errors: &mut Vec<FieldError>) -> Vec<glob::Pattern> {
    values
        .iter()
        .enumerate()
        .filter_map(|(index, text)| match glob::Pattern::new(text) {
            Ok(p) => Some(p),
            Err(err) => {
                errors.push(FieldError::new(
                    format!("{key}[{index}]"),
                    format!("invalid glob {text:?}: {err}"),
                ));
                None
            }
        })
        .collect()
}

impl KubernetesProbe {
    pub fn new(
        common: &ProbeCommon,
        config: KubernetesConfig,
    ) -> Result<KubernetesProbe, Vec<FieldError>> {
        let mut errors = Vec::new();
        if let Some(render) = &config.render {
            if render.is_empty() || render[0].is_empty() {
                errors.push(FieldError::new(
                    "render",
                    "must name a program, e.g. [\"kubectl\", \"kustomize\", \".\"]",
                ));
            }
        }
        if config.concurrency == 0 {
            errors.push(FieldError::new("concurrency", "must be at least 1"));
        }
        if config.page_size == 0 {
            errors.push(FieldError::new("page_size", "must be at least 1"));
        }
        let request_timeout = duration(
            "request_timeout",
            &config.request_timeout,
            false,
            &mut errors,
        );
        let debounce = duration("watch_debounce", &config.watch_debounce, true, &mut errors);
        let watch_retry = duration("watch_retry", &config.watch_retry, false, &mut errors);
        if !config.detect_extra
            && (!config.extra_namespaces.is_empty() || config.extra_label_selector.is_some())
        {
            errors.push(FieldError::new(
                "detect_extra",
                "extra_namespaces/extra_label_selector need detect_extra = true",
            ));
        }
        let include = patterns("include_kinds", &config.include_kinds, &mut errors);
        let exclude = patterns("exclude_kinds", &config.exclude_kinds, &mut errors);
        let mut ignore = Vec::new();
        for (index, rule) in config.ignore.iter().enumerate() {
            match IgnoreRule::build(&format!("ignore[{index}]"), rule) {
                Ok(rule) => ignore.push(rule),
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let kubeconfig = config
            .kubeconfig
            .as_ref()
            .map(|p| common.config_dir.join(p));
        let watching = (config.watch && !common.one_shot).then(|| Watching {
            cache: LiveCache::new(config.page_size, watch_retry, config.concurrency),
            client: tokio::sync::OnceCell::new(),
            debounce,
            manifests: Mutex::new(None),
            crd_schemas: Mutex::new(HashMap::new()),
            compared: Mutex::new(HashMap::new()),
        });
        Ok(KubernetesProbe {
            watching,
            config,
            kubeconfig,
            include,
            exclude,
            ignore,
            request_timeout,
            discovery: DiscoveryCache::default(),
        })
    }
}
