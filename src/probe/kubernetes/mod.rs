//! The Kubernetes layer, kubediff's successor: compare the objects declared
//! in git (a manifest directory, or the output of a render command such as
//! `kubectl kustomize`) with the live objects, read-only (get, list and watch only).
//! Each object is in sync, `changed` (with field-level lines), `missing`, or,
//! with extra detection on, `extra` (live but not declared).
//!
//! The parts: `manifest` loads objects, `normalize` and `compare` decide what
//! differs, `ignore` applies Argo-CD-style rules, `live` talks to the API,
//! `cache` keeps watch-fed copies of the live objects (`watch = true`, the
//! default) so checks cost no API requests and live edits wake a check.

pub mod cache;
pub mod compare;
pub mod ignore;
pub mod live;
pub mod manifest;
pub mod normalize;
pub mod owners;
pub use kube_schema as schema;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use self::cache::{LiveCache, Phase, ScopeKey};
use self::ignore::{IgnoreRule, IgnoreRuleConfig, Target};
use self::live::{DiscoveryCache, ReadPlan, Reader, Resolved, ResourceType};
use self::manifest::{Loaded, Manifest};
use super::{
    parse_fields, ErrorReason, FieldChange, FieldError, Outcome, Probe, ProbeCommon, ProbeContext,
    ProbeError, ResourceChange,
};

/// Largest render output accepted.
const RENDER_OUTPUT_LIMIT: usize = 64 * 1024 * 1024;

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

pub struct KubernetesProbe {
    config: KubernetesConfig,
    kubeconfig: Option<PathBuf>,
    include: Vec<glob::Pattern>,
    exclude: Vec<glob::Pattern>,
    ignore: Vec<IgnoreRule>,
    request_timeout: Duration,
    discovery: DiscoveryCache,
    /// The watch-fed cache (`watch = true`), its long-lived client, and the
    /// manifests of the last commit checked.
    watching: Option<Watching>,
}

struct Watching {
    cache: LiveCache,
    client: tokio::sync::OnceCell<kube::Client>,
    debounce: Duration,
    manifests: Mutex<Option<(String, PathBuf, Arc<Loaded>)>>,
    /// CRD schemas read for the manifests above (by apiVersion and kind).
    crd_schemas: Mutex<HashMap<(String, String), Option<schema::TypeDef>>>,
    /// The difference lines of each declared object against the manifests
    /// above, with the live resourceVersion they were computed for: a check
    /// compares again only objects that changed since.
    compared: Mutex<HashMap<ObjectKey, (String, Lines)>>,
}

/// A declared object's difference lines, each with who wrote the live value (empty: in sync).
type Lines = Arc<Vec<(String, FieldChange)>>;

/// Declared objects (type index, namespace, name) unchanged since they were last compared.
type Known = HashMap<(usize, String, String), Lines>;

/// The declared objects of a check by (type index, namespace, name).
type Desired<'a> = BTreeMap<(usize, String, String), &'a Manifest>;

/// Objects read from the watch-fed cache, turned into JSON only when compared.
type CachedObjects = HashMap<(usize, String, String), Arc<cache::LiveObject>>;

/// apiVersion, kind, namespace, name.
type ObjectKey = (String, String, String, String);

fn object_key(resource_type: &ResourceType, namespace: &str, name: &str) -> ObjectKey {
    (
        resource_type.resource.api_version.clone(),
        resource_type.resource.kind.clone(),
        namespace.to_string(),
        name.to_string(),
    )
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

    fn kind_selected(&self, kind: &str, group: &str) -> bool {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let hit = |p: &glob::Pattern| p.matches(kind) || p.matches(&qualified);
        (self.include.is_empty() || self.include.iter().any(hit)) && !self.exclude.iter().any(hit)
    }

    async fn load(&self, cx: &ProbeContext) -> Result<Loaded, ProbeError> {
        match &self.config.render {
            Some(argv) => {
                let command = cx
                    .command(&argv[0])
                    .args(&argv[1..])
                    .pass_env(self.config.render_pass_env.iter().cloned())
                    .stdout_limit(RENDER_OUTPUT_LIMIT);
                let output = cx.exec(command).await?;
                let shown = argv.join(" ");
                if output.code != Some(0) {
                    let status = match output.code {
                        Some(code) => format!("exited with code {code}"),
                        None => {
                            format!("was killed by signal {}", output.signal.unwrap_or_default())
                        }
                    };
                    return Err(ProbeError::new(
                        ErrorReason::ExitCode,
                        format!("render command `{shown}` {status}"),
                    )
                    .with_exit_code(output.code)
                    .with_stderr_tail(output.stderr_tail(20)));
                }
                if output.stdout_truncated {
                    return Err(ProbeError::new(
                        ErrorReason::Parse,
                        format!("render command `{shown}` printed more than {RENDER_OUTPUT_LIMIT} bytes"),
                    ));
                }
                Ok(manifest::parse_source(
                    &format!("render `{shown}`"),
                    &output.stdout_str(),
                    false,
                ))
            }
            None => {
                if !cx.workdir.is_dir() {
                    return Err(ProbeError::new(
                        ErrorReason::Checkout,
                        format!(
                            "manifest directory {} does not exist in the checkout",
                            cx.workdir.display()
                        ),
                    ));
                }
                let (dir, checkout) = (cx.workdir.clone(), cx.checkout.clone());
                tokio::task::spawn_blocking(move || manifest::load_dir(&dir, &checkout))
                    .await
                    .map_err(|err| {
                        ProbeError::new(
                            ErrorReason::Internal,
                            format!("manifest reader failed: {err}"),
                        )
                    })?
                    .map_err(|err| {
                        ProbeError::new(
                            ErrorReason::Checkout,
                            format!(
                                "cannot read the manifests in {}: {err}",
                                cx.workdir.display()
                            ),
                        )
                    })
            }
        }
    }

    /// The manifests of the checkout; with watching on, reused while the
    /// commit stays the same (each commit has its own checkout, so its files
    /// never change), which keeps a live-change check off the disk.
    async fn load_cached(&self, cx: &ProbeContext) -> Result<Arc<Loaded>, ProbeError> {
        let Some(watching) = self.watching.as_ref().filter(|_| !cx.commit.is_empty()) else {
            return Ok(Arc::new(self.load(cx).await?));
        };
        if let Some((commit, workdir, loaded)) = &*watching.manifests.lock().unwrap() {
            if *commit == cx.commit && *workdir == cx.workdir {
                return Ok(loaded.clone());
            }
        }
        let loaded = Arc::new(self.load(cx).await?);
        // A new commit may come with new CRDs: read their schemas again.
        watching.crd_schemas.lock().unwrap().clear();
        watching.compared.lock().unwrap().clear();
        *watching.manifests.lock().unwrap() =
            Some((cx.commit.clone(), cx.workdir.clone(), loaded.clone()));
        Ok(loaded)
    }

    async fn run_inner(&self, cx: &ProbeContext) -> Result<Outcome, ProbeError> {
        let loaded = self.load_cached(cx).await?;
        let mut input_errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        let manifests: Vec<&Manifest> = loaded
            .objects
            .iter()
            .filter(|m| self.kind_selected(m.kind(), m.group()))
            .collect();

        let client = live::connect(
            self.kubeconfig.as_deref(),
            self.config.context.as_deref(),
            self.request_timeout,
        )
        .await?;
        let default_namespace = self
            .config
            .default_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let requests = Arc::new(AtomicUsize::new(0));

        // Discovery: which types are served, and their scope.
        let wanted: BTreeSet<(String, String)> = manifests
            .iter()
            .map(|m| (m.api_version().to_string(), m.kind().to_string()))
            .collect();
        let resolved = self.discovery.resolve(&client, &wanted, &requests).await?;
        let mut types: Vec<ResourceType> = Vec::new();
        let mut type_index: HashMap<(String, String), usize> = HashMap::new();
        let mut api_errors: Vec<String> = Vec::new();
        for (key, resolution) in &resolved {
            match resolution {
                Resolved::Served(resource_type) => {
                    type_index.insert(key.clone(), types.len());
                    types.push(resource_type.clone());
                }
                Resolved::UnknownKind => {
                    api_errors.push(format!(
                        "the cluster serves {} but not kind {}",
                        key.0, key.1
                    ));
                }
                Resolved::UnknownVersion => {
                    api_errors.push(format!(
                        "the cluster does not serve apiVersion {} (kind {})",
                        key.0, key.1
                    ));
                }
            }
        }

        // Each wanted object, keyed by (type, namespace, name); duplicates are input errors.
        let mut desired: Desired = BTreeMap::new();
        for manifest in manifests {
            let key = (
                manifest.api_version().to_string(),
                manifest.kind().to_string(),
            );
            let Some(&index) = type_index.get(&key) else {
                continue;
            };
            let namespace = if types[index].namespaced {
                manifest
                    .namespace()
                    .unwrap_or(&default_namespace)
                    .to_string()
            } else {
                String::new()
            };
            let id = (index, namespace, manifest.name().to_string());
            if let Some(first) = desired.get(&id) {
                input_errors.push(format!(
                    "{}: {} is already declared in {}",
                    manifest.origin(),
                    subject(manifest.kind(), &id.1, &id.2),
                    first.origin()
                ));
                continue;
            }
            desired.insert(id, manifest);
        }

        let plans = self.plan(&types, &desired);
        let reader = Reader {
            client,
            concurrency: self.config.concurrency,
            page_size: self.config.page_size,
            counter: requests.clone(),
        };
        // Custom resources: their list types come from their CRDs.
        let schemas = schema::builtin();
        let mut crd_roots: HashMap<usize, schema::TypeDef> = HashMap::new();
        let wanted_types: BTreeSet<usize> = desired.keys().map(|(index, _, _)| *index).collect();
        for index in wanted_types {
            let resource = &types[index].resource;
            if !schemas.knows(&resource.api_version, &resource.kind) {
                if let Some(root) = self.crd_schema(&reader, resource).await {
                    crd_roots.insert(index, root);
                }
            }
        }
        let mut warnings = Vec::new();
        // Declared objects unchanged since the last check, with their lines.
        let mut known = Known::new();
        let mut cached = CachedObjects::new();
        let mut live = match &self.watching {
            Some(watching) => {
                self.read_cached(
                    watching,
                    cx,
                    &types,
                    &desired,
                    plans,
                    &reader,
                    (&mut warnings, &mut known, &mut cached),
                )
                .await?
            }
            None => reader.read(&types, plans).await,
        };
        let failed: BTreeSet<(usize, String)> = live
            .failures
            .iter()
            .map(|f| (f.type_index, f.namespace.clone().unwrap_or_default()))
            .collect();
        let failed_type = |index: usize, namespace: &str| {
            failed.contains(&(index, namespace.to_string()))
                || failed.contains(&(index, String::new()))
        };
        let mut unreachable = false;
        for failure in &live.failures {
            unreachable |= failure.error.reason == ErrorReason::Unreachable;
            if !api_errors.contains(&failure.error.message) {
                api_errors.push(failure.error.message.clone());
            }
        }

        // Compare.
        let mut changes = Vec::new();
        let mut in_sync = 0usize;
        for ((index, namespace, name), manifest) in &desired {
            if failed_type(*index, namespace) {
                continue;
            }
            let kind = manifest.kind();
            let subject = subject(kind, namespace, name);
            // A rendered object has no file of its own to link to.
            let declared_at = match self.config.render {
                Some(_) => None,
                None => cx.repo_relative(&cx.workdir.join(&manifest.source)),
            };
            let declare = |change: ResourceChange| match &declared_at {
                Some(path) => change.with_declared_at(path.clone()),
                None => change,
            };
            let key = (*index, namespace.clone(), name.clone());
            // A cached object is parsed here, one at a time, not all up front.
            let live_object = match (live.objects.remove(&key), cached.get(&key)) {
                (Some(object), _) => Some(object),
                (None, Some(object)) if !known.contains_key(&key) => Some(object.to_json()),
                _ => None,
            };
            let lines = match (known.get(&key), live_object) {
                (Some(lines), _) => lines.clone(),
                (None, None) => {
                    changes.push(declare(ResourceChange::new(subject, "missing").with_diff(
                        format!(
                            "{kind} {name:?} is declared in {} but does not exist in the cluster",
                            manifest.origin()
                        ),
                    )));
                    continue;
                }
                (None, Some(live_object)) => {
                    let root = crd_roots
                        .get(index)
                        .or_else(|| schemas.root(manifest.api_version(), manifest.kind()));
                    let version = live_object
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .map(String::from);
                    let lines = Arc::new(self.differences(
                        manifest,
                        namespace,
                        live_object,
                        root,
                        &cx.fingerprint_key,
                    ));
                    if let (Some(watching), Some(version)) = (&self.watching, version) {
                        watching.compared.lock().unwrap().insert(
                            object_key(&types[*index], namespace, name),
                            (version, lines.clone()),
                        );
                    }
                    lines
                }
            };
            if lines.is_empty() {
                in_sync += 1;
            } else {
                let (text, fields): (Vec<&str>, Vec<FieldChange>) = lines
                    .iter()
                    .map(|(line, field)| (line.as_str(), field.clone()))
                    .unzip();
                changes.push(declare(
                    ResourceChange::new(subject, "changed")
                        .with_diff(text.join("\n"))
                        .with_fields(fields),
                ));
            }
        }
        if self.config.detect_extra {
            changes.extend(self.extras(&types, &desired, &live.objects, &live.listed));
        }
        changes.sort_by(|a, b| a.subject.cmp(&b.subject));

        let details = serde_json::json!({
            "objects": desired.len(),
            "in_sync": in_sync,
            "resource_types": types.len(),
            "api_requests": requests.load(Ordering::Relaxed),
        });
        tracing::debug!(
            objects = desired.len(),
            api_requests = requests.load(Ordering::Relaxed),
            "kubernetes probe read live state"
        );

        if !input_errors.is_empty() || !api_errors.is_empty() {
            let (reason, mut lines) = if !input_errors.is_empty() {
                (ErrorReason::Input, input_errors)
            } else if unreachable {
                (ErrorReason::Unreachable, Vec::new())
            } else {
                (ErrorReason::Api, Vec::new())
            };
            lines.extend(api_errors);
            let message = if lines.len() == 1 {
                lines.remove(0)
            } else {
                format!("{} problems:\n{}", lines.len(), lines.join("\n"))
            };
            return Err(ProbeError::new(reason, message)
                .with_partial_changes(changes)
                .with_warnings(warnings));
        }
        let message = summary(desired.len(), &changes);
        Ok(Outcome {
            changes,
            details,
            message,
            warnings,
            ..Outcome::default()
        })
    }

    /// A custom resource's schema from its CRD; with watching on, read once
    /// per commit so a check from the cache makes no request.
    async fn crd_schema(
        &self,
        reader: &Reader,
        resource: &kube::discovery::ApiResource,
    ) -> Option<schema::TypeDef> {
        let Some(watching) = &self.watching else {
            return reader.crd_schema(resource).await;
        };
        let key = (resource.api_version.clone(), resource.kind.clone());
        if let Some(cached) = watching.crd_schemas.lock().unwrap().get(&key) {
            return cached.clone();
        }
        let root = reader.crd_schema(resource).await;
        watching
            .crd_schemas
            .lock()
            .unwrap()
            .insert(key, root.clone());
        root
    }

    /// Reads live state from the watch-fed cache, starting the watches this
    /// check needs (and stopping those it no longer needs). Scopes that are
    /// not synced — first sync failing, watch broken, or WATCH forbidden
    /// (which adds a warning) — are read with the LIST/GET reader instead.
    #[allow(clippy::too_many_arguments)]
    async fn read_cached(
        &self,
        watching: &Watching,
        cx: &ProbeContext,
        types: &[ResourceType],
        desired: &Desired<'_>,
        plans: Vec<ReadPlan>,
        reader: &Reader,
        (warnings, known, cached): (&mut Vec<String>, &mut Known, &mut CachedObjects),
    ) -> Result<live::ReadResult, ProbeError> {
        let client = watching
            .client
            .get_or_try_init(|| {
                // Watches idle for minutes between events: reads may wait past the
                // request timeout (the watch itself ends server-side after 290 s).
                live::connect(
                    self.kubeconfig.as_deref(),
                    self.config.context.as_deref(),
                    self.request_timeout.max(Duration::from_secs(295)),
                )
            })
            .await?;
        let mut declared: BTreeMap<(usize, String), std::collections::HashSet<String>> =
            BTreeMap::new();
        for (index, namespace, name) in desired.keys() {
            declared
                .entry((*index, namespace.clone()))
                .or_default()
                .insert(name.clone());
        }
        let extra_pairs = self.extra_pairs(types, desired);
        let mut pairs: BTreeSet<(usize, String)> = declared.keys().cloned().collect();
        pairs.extend(extra_pairs.iter().cloned());
        let mut wanted = Vec::new();
        for (index, namespace) in &pairs {
            let resource_type = &types[*index];
            let names = declared
                .get(&(*index, namespace.clone()))
                .cloned()
                .unwrap_or_default();
            let metadata_only = names.is_empty();
            let key = ScopeKey {
                resource: resource_type.rbac_name(),
                api_version: resource_type.resource.api_version.clone(),
                namespace: resource_type.namespaced.then(|| namespace.clone()),
                metadata_only,
                label_selector: if metadata_only {
                    self.config.extra_label_selector.clone()
                } else {
                    None
                },
            };
            let extras = extra_pairs.contains(&(*index, namespace.clone()));
            wanted.push((key, resource_type.clone(), names, extras));
        }
        let scopes = watching.cache.ensure(client, wanted);

        let mut result = live::ReadResult::default();
        let mut fallback: BTreeSet<(usize, String)> = BTreeSet::new();
        for ((index, namespace), scope) in pairs.iter().zip(&scopes) {
            match scope.settle(cx.deadline).await {
                Phase::Synced => {}
                Phase::WatchForbidden(message) => {
                    if !warnings.contains(&message) {
                        warnings.push(message);
                    }
                    fallback.insert((*index, namespace.clone()));
                    continue;
                }
                Phase::Failing(_) | Phase::Syncing => {
                    fallback.insert((*index, namespace.clone()));
                    continue;
                }
            }
            let names = declared.get(&(*index, namespace.clone()));
            let compared = watching.compared.lock().unwrap();
            for name in names.into_iter().flatten() {
                let Some(object) = scope.get(namespace, name) else {
                    continue;
                };
                let key = (*index, namespace.clone(), name.clone());
                let version = object.resource_version();
                match compared.get(&object_key(&types[*index], namespace, name)) {
                    Some((seen, lines)) if seen == version && !version.is_empty() => {
                        known.insert(key, lines.clone());
                    }
                    _ => {
                        cached.insert(key, object);
                    }
                }
            }
            drop(compared);
            if extra_pairs.contains(&(*index, namespace.clone())) {
                result.listed.insert((*index, namespace.clone()));
                let skip = |ns: &str, name: &str| {
                    names.is_some_and(|n| n.contains(name)) && ns == namespace
                };
                for (ns, name, object) in scope.others(&skip) {
                    result.objects.insert((*index, ns, name), object);
                }
            }
        }
        if !fallback.is_empty() {
            let plans: Vec<ReadPlan> = plans
                .into_iter()
                .filter(|p| {
                    fallback.contains(&(p.type_index, p.namespace.clone().unwrap_or_default()))
                })
                .collect();
            let read = reader.read(types, plans).await;
            result.objects.extend(read.objects);
            result.listed.extend(read.listed);
            result.failures.extend(read.failures);
        }
        Ok(result)
    }

    /// (type, namespace) pairs searched for extra objects.
    fn extra_pairs(
        &self,
        types: &[ResourceType],
        desired: &Desired<'_>,
    ) -> BTreeSet<(usize, String)> {
        let mut list_all: BTreeSet<(usize, String)> = BTreeSet::new();
        if self.config.detect_extra {
            let mut namespaces: BTreeSet<String> = desired
                .keys()
                .filter(|(i, _, _)| types[*i].namespaced)
                .map(|(_, ns, _)| ns.clone())
                .collect();
            namespaces.extend(self.config.extra_namespaces.iter().cloned());
            for (index, resource_type) in types.iter().enumerate() {
                if resource_type.namespaced {
                    for namespace in &namespaces {
                        list_all.insert((index, namespace.clone()));
                    }
                } else if self.config.extra_label_selector.is_some() {
                    list_all.insert((index, String::new()));
                }
            }
        }
        list_all
    }

    /// LIST a (type, namespace) when many objects of it are wanted (or when
    /// looking for extras there), GET each otherwise.
    fn plan(&self, types: &[ResourceType], desired: &Desired<'_>) -> Vec<ReadPlan> {
        let mut groups: BTreeMap<(usize, String), Vec<String>> = BTreeMap::new();
        for (index, namespace, name) in desired.keys() {
            groups
                .entry((*index, namespace.clone()))
                .or_default()
                .push(name.clone());
        }
        let list_all = self.extra_pairs(types, desired);
        let mut plans = Vec::new();
        for ((index, namespace), names) in &groups {
            let list = names.len() > self.config.list_threshold
                || list_all.contains(&(*index, namespace.clone()));
            if list && list_all.contains(&(*index, namespace.clone())) {
                continue; // planned below, with the extra-detection selector
            }
            plans.push(ReadPlan {
                type_index: *index,
                namespace: types[*index].namespaced.then(|| namespace.clone()),
                names: names.clone(),
                list,
                label_selector: None,
            });
        }
        for (index, namespace) in list_all {
            // A selector narrows the list only when nothing declared needs reading here.
            let declared = groups.contains_key(&(index, namespace.clone()));
            plans.push(ReadPlan {
                type_index: index,
                namespace: types[index].namespaced.then(|| namespace.clone()),
                names: Vec::new(),
                list: true,
                label_selector: if declared {
                    None
                } else {
                    self.config.extra_label_selector.clone()
                },
            });
        }
        plans
    }

    fn differences(
        &self,
        manifest: &Manifest,
        namespace: &str,
        mut live: Value,
        root: Option<&schema::TypeDef>,
        key: &crate::probe::fingerprint::FingerprintKey,
    ) -> Vec<(String, FieldChange)> {
        // Who wrote each live value: taken before normalizing would drop it.
        let managed_fields = live
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .and_then(|meta| meta.remove("managedFields"));
        let mut want = manifest.object();
        normalize::normalize_desired(&mut want);
        normalize::normalize(&mut live);
        // The namespace is identity (and may have come from the default).
        for object in [&mut want, &mut live] {
            if let Some(Value::Object(meta)) = object.get_mut("metadata") {
                meta.remove("namespace");
            }
        }
        let target = Target {
            group: manifest.group(),
            kind: manifest.kind(),
            namespace,
            name: manifest.name(),
        };
        let rules: Vec<&IgnoreRule> = self
            .ignore
            .iter()
            .filter(|r| r.applies_to(&target))
            .collect();
        let secret = manifest.kind() == "Secret" && manifest.group().is_empty();
        let subject = subject(manifest.kind(), namespace, manifest.name());
        let differences = compare::compare(&want, &live, schema::builtin(), root);
        // The cache keeps managedFields as JSON text (`cache::LiveObject`): parsed only now.
        let managed_fields = match managed_fields {
            Some(Value::String(text)) if !differences.is_empty() => {
                serde_json::from_str(&text).ok()
            }
            Some(Value::String(_)) => None,
            other => other,
        };
        let managed_fields = managed_fields.as_ref();
        differences
            .iter()
            .filter(|d| !rules.iter().any(|r| r.ignores(&d.path)))
            .map(|d| {
                let field = compare::path_string(&d.path);
                let fingerprint = compare::fingerprint(&subject, &field, d, secret, key);
                // A field missing live has no owner to name.
                let mut change = match d.live {
                    Some(_) => owners::owner(managed_fields, &d.path, field),
                    None => FieldChange {
                        field,
                        ..FieldChange::default()
                    },
                };
                change.fingerprint = fingerprint;
                let line = compare::render_line(d, secret) + &owners::suffix(&change);
                (line, change)
            })
            .collect()
    }

    fn extras(
        &self,
        types: &[ResourceType],
        desired: &Desired<'_>,
        live: &HashMap<(usize, String, String), Value>,
        listed: &BTreeSet<(usize, String)>,
    ) -> Vec<ResourceChange> {
        let selector = self
            .config
            .extra_label_selector
            .as_deref()
            .map(parse_equality_selector);
        let mut extras: Vec<ResourceChange> = live
            .iter()
            .filter(|(key, _)| !desired.contains_key(*key))
            .filter(|((index, namespace, _), _)| listed.contains(&(*index, namespace.clone())))
            .filter(|((index, _, _), object)| !is_well_known(&types[*index], object))
            .filter(|(_, object)| selector.as_ref().map_or(true, |s| labels_match(s, object)))
            .map(|((index, namespace, name), _)| {
                ResourceChange::new(
                    subject(&types[*index].resource.kind, namespace, name),
                    "extra",
                )
                .with_diff(format!(
                    "{} {name:?} exists in the cluster but is not declared in git",
                    types[*index].resource.kind
                ))
            })
            .collect();
        extras.sort_by(|a, b| a.subject.cmp(&b.subject));
        extras
    }
}

/// One line for a person: counts, and the first difference when there is one
/// (lines are already redacted).
fn summary(objects: usize, changes: &[ResourceChange]) -> String {
    if changes.is_empty() {
        return format!("{objects} objects in sync");
    }
    let count = |action: &str| changes.iter().filter(|c| c.action == action).count();
    let mut text = format!(
        "{} of {objects} objects differ ({} changed, {} missing, {} extra)",
        changes.iter().filter(|c| c.action != "extra").count(),
        count("changed"),
        count("missing"),
        count("extra"),
    );
    let first = &changes[0];
    if let Some(line) = first.diff.lines().next() {
        text += &format!("; {}: {line}", first.subject);
    }
    text
}

/// `kind/namespace/name`, or `kind/name` for cluster-scoped objects.
pub fn subject(kind: &str, namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{namespace}/{name}")
    }
}

/// Objects that exist in every namespace or belong to a controller; never extra.
fn is_well_known(resource_type: &ResourceType, object: &Value) -> bool {
    if object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| !refs.is_empty())
    {
        return true;
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let group = resource_type.resource.group.as_str();
    match (group, resource_type.resource.kind.as_str()) {
        ("", "ServiceAccount") => name == "default",
        ("", "ConfigMap") => name == "kube-root-ca.crt",
        // A metadata-only copy has no `type`; the token controller's annotation tells too.
        ("", "Secret") => {
            object.get("type").and_then(Value::as_str)
                == Some("kubernetes.io/service-account-token")
                || object
                    .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                    .is_some()
        }
        ("", "Endpoints") | ("discovery.k8s.io", "EndpointSlice") => true,
        _ => false,
    }
}

/// `a=b,c!=d,e` (equality-based selectors; set-based ones are passed to the
/// server for listing but only equality terms are re-checked here).
fn parse_equality_selector(text: &str) -> Vec<(String, Option<String>, bool)> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.contains(" in ") && !t.contains(" notin "))
        .map(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                (k.trim().to_string(), Some(v.trim().to_string()), false)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k.trim().to_string(), Some(v.trim().to_string()), true)
            } else if let Some(k) = term.strip_prefix('!') {
                (k.trim().to_string(), None, false)
            } else {
                (term.to_string(), None, true)
            }
        })
        .collect()
}

fn labels_match(selector: &[(String, Option<String>, bool)], object: &Value) -> bool {
    let labels = object.pointer("/metadata/labels");
    selector.iter().all(|(key, value, positive)| {
        let actual = labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        let hit = match value {
            Some(v) => actual == Some(v.as_str()),
            None => actual.is_some(),
        };
        hit == *positive
    })
}

#[async_trait::async_trait]
impl Probe for KubernetesProbe {
    fn layer(&self) -> &'static str {
        "kubernetes"
    }

    fn repo_paths(&self, probe_dir: Option<&std::path::Path>) -> Vec<super::RepoPath> {
        self.config
            .render
            .as_deref()
            .map(|render| super::render_paths(render, probe_dir))
            .unwrap_or_default()
    }

    async fn preflight(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(path) = &self.kubeconfig {
            if !path.is_file() {
                problems.push(format!("kubeconfig {} does not exist", path.display()));
            }
        }
        problems
    }

    async fn live_change(&self) {
        match &self.watching {
            Some(watching) => watching.cache.changed(watching.debounce).await,
            None => std::future::pending().await,
        }
    }

    /// With watching on: each (type, namespace) of the manifests in
    /// `probe_dir` (a manifest directory; render commands are not run here)
    /// where the account may not WATCH.
    async fn access_warnings(&self, probe_dir: Option<&std::path::Path>) -> Vec<String> {
        let (Some(_), Some(dir), None) = (&self.watching, probe_dir, &self.config.render) else {
            return Vec::new();
        };
        let Ok(loaded) = manifest::load_dir(dir, dir) else {
            return Vec::new();
        };
        let Ok(client) = live::connect(
            self.kubeconfig.as_deref(),
            self.config.context.as_deref(),
            self.request_timeout,
        )
        .await
        else {
            return Vec::new();
        };
        let default_namespace = self
            .config
            .default_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let wanted: BTreeSet<(String, String)> = loaded
            .objects
            .iter()
            .filter(|m| self.kind_selected(m.kind(), m.group()))
            .map(|m| (m.api_version().to_string(), m.kind().to_string()))
            .collect();
        let counter = AtomicUsize::new(0);
        let Ok(resolved) = self.discovery.resolve(&client, &wanted, &counter).await else {
            return Vec::new();
        };
        let mut scopes: BTreeSet<(String, String, Option<String>)> = BTreeSet::new();
        for m in loaded
            .objects
            .iter()
            .filter(|m| self.kind_selected(m.kind(), m.group()))
        {
            let key = (m.api_version().to_string(), m.kind().to_string());
            if let Some(Resolved::Served(resource_type)) = resolved.get(&key) {
                let namespace = resource_type
                    .namespaced
                    .then(|| m.namespace().unwrap_or(&default_namespace).to_string());
                scopes.insert((key.0, key.1, namespace));
            }
        }
        let mut warnings = Vec::new();
        for (api_version, kind, namespace) in scopes {
            let Some(Resolved::Served(resource_type)) = resolved.get(&(api_version, kind)) else {
                continue;
            };
            let key = ScopeKey {
                resource: resource_type.rbac_name(),
                api_version: resource_type.resource.api_version.clone(),
                namespace: namespace.clone(),
                metadata_only: false,
                label_selector: None,
            };
            let api = cache::scoped_api(&client, namespace.as_deref(), &resource_type.resource);
            if let Some(message) = cache::watch_forbidden(&api, &key).await {
                warnings.push(message);
            }
        }
        warnings
    }

    fn cache_stats(&self) -> Option<super::CacheStats> {
        self.watching.as_ref().map(|w| w.cache.stats())
    }

    async fn run(&self, cx: &ProbeContext) -> Result<Outcome, ProbeError> {
        tokio::select! {
            result = tokio::time::timeout_at(cx.deadline, self.run_inner(cx)) => match result {
                Ok(result) => result,
                Err(_) => Err(ProbeError::new(ErrorReason::Timeout, "timed out reading the cluster")),
            },
            _ = cx.cancel.cancelled() => Err(ProbeError::new(ErrorReason::Cancelled, "cancelled")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn probe(fields: &str) -> Result<KubernetesProbe, Vec<FieldError>> {
        let common = ProbeCommon {
            name: "k".into(),
            layer: "kubernetes".into(),
            repo: "r".into(),
            path: PathBuf::from("deploy"),
            config_dir: PathBuf::from("/etc/driftwatch"),
            labels: Default::default(),
            ..Default::default()
        };
        let config: KubernetesConfig = parse_fields(toml::from_str(fields).unwrap())?;
        KubernetesProbe::new(&common, config)
    }

    #[test]
    fn config_errors_name_their_fields() {
        let errors = probe(
            "render = []\nconcurrency = 0\ninclude_kinds = [\"[\"]\nextra_namespaces = [\"a\"]",
        )
        .err()
        .unwrap();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["render", "concurrency", "detect_extra", "include_kinds[0]"]
        );
        let unknown = probe("kube_config = \"x\"").err().unwrap();
        assert_eq!(unknown[0].key, "kube_config");
        assert!(
            unknown[0].message.contains("unknown field"),
            "{}",
            unknown[0].message
        );
    }

    #[test]
    fn kubeconfig_is_relative_to_the_config_file() {
        let p = probe("kubeconfig = \"kube/config\"").unwrap();
        assert_eq!(
            p.kubeconfig,
            Some(PathBuf::from("/etc/driftwatch/kube/config"))
        );
    }

    #[test]
    fn kind_selection() {
        let p = probe(
            "include_kinds = [\"Deployment\", \"*.example.com\"]\nexclude_kinds = [\"Secret\"]",
        )
        .unwrap();
        assert!(p.kind_selected("Deployment", "apps"));
        assert!(p.kind_selected("Widget", "example.com"));
        assert!(!p.kind_selected("ConfigMap", ""));
        let q = probe("exclude_kinds = [\"Secret\"]").unwrap();
        assert!(!q.kind_selected("Secret", ""));
        assert!(q.kind_selected("ConfigMap", ""));
    }

    #[test]
    fn well_known_objects_are_never_extra() {
        let rt = |group: &str, kind: &str| ResourceType {
            resource: kube::discovery::ApiResource {
                group: group.into(),
                version: "v1".into(),
                api_version: "v1".into(),
                kind: kind.into(),
                plural: "x".into(),
            },
            namespaced: true,
            verbs: vec![],
        };
        let named = |name: &str| json!({"metadata": {"name": name}});
        assert!(is_well_known(&rt("", "ServiceAccount"), &named("default")));
        assert!(!is_well_known(&rt("", "ServiceAccount"), &named("web")));
        assert!(is_well_known(
            &rt("", "ConfigMap"),
            &named("kube-root-ca.crt")
        ));
        assert!(is_well_known(&rt("", "Endpoints"), &named("web")));
        let owned =
            json!({"metadata": {"name": "web-123", "ownerReferences": [{"kind": "Deployment"}]}});
        assert!(is_well_known(&rt("apps", "ReplicaSet"), &owned));
        let token =
            json!({"metadata": {"name": "t"}, "type": "kubernetes.io/service-account-token"});
        assert!(is_well_known(&rt("", "Secret"), &token));
    }

    #[test]
    fn equality_selectors() {
        let selector = parse_equality_selector("app=web, tier!=db,managed");
        let object = json!({"metadata": {"labels": {"app": "web", "managed": "yes"}}});
        assert!(labels_match(&selector, &object));
        let other = json!({"metadata": {"labels": {"app": "web", "tier": "db", "managed": "1"}}});
        assert!(!labels_match(&selector, &other));
    }
}

#[cfg(test)]
mod peer_cases;
