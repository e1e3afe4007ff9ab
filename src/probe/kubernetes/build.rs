//! Building a Kubernetes probe: `build`, and `KubernetesProbe::new`, which validates the
//! `[[probe]]` fields (every problem at once, each naming its key: durations, kind globs,
//! ignore rules) and sets up the watch-fed cache when watching is on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::probe::{parse_fields, FieldError, Probe, ProbeCommon};

use super::cache::LiveCache;
use super::config::KubernetesConfig;
use super::ignore::IgnoreRule;
use super::live::DiscoveryCache;
use super::types::{KubernetesProbe, Watching};

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
