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

mod build;
pub mod cache;
pub mod compare;
pub(super) mod config;
mod differences;
pub mod ignore;
pub mod live;
pub mod manifest;
pub mod normalize;
pub mod owners;
mod reading;
mod types;
pub use kube_schema as schema;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::Value;

use self::cache::ScopeKey;
use self::live::{Reader, Resolved, ResourceType};
use self::manifest::{Loaded, Manifest};
use super::{Probe, ProbeContext};
use crate::model::outcome::{ErrorReason, FieldChange, Outcome, ProbeError, ResourceChange};

pub use self::build::build;
pub use self::config::KubernetesConfig;
pub use self::differences::subject;
use self::differences::summary;
pub use self::types::KubernetesProbe;
use self::types::{object_key, CachedObjects, Desired, Known};

/// Largest render output accepted.
const RENDER_OUTPUT_LIMIT: usize = 64 * 1024 * 1024;

impl KubernetesProbe {
    fn kind_selected(&self, kind: &str, group: &str) -> bool {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let hit = |p: &glob::Pattern| p.matches(kind) || p.matches(&qualified);
        (self.include.is_empty() || self.include.iter().any(hit)) && !self.exclude.iter().any(hit)
    }

    /// `include_kinds` patterns that select no kind the manifests declare:
    /// a typo (`Ingres`) or a kind moved out would otherwise leave it
    /// uncompared without a word. Warnings, not errors: a filter shared by
    /// several probes may name kinds only some of them have.
    fn unselected_kinds(&self, objects: &[Manifest]) -> Vec<String> {
        let declared: BTreeSet<(&str, &str)> =
            objects.iter().map(|m| (m.kind(), m.group())).collect();
        let hit = |pattern: &glob::Pattern, (kind, group): (&str, &str)| {
            pattern.matches(kind)
                || (!group.is_empty() && pattern.matches(&format!("{kind}.{group}")))
        };
        // `include` holds one pattern per `include_kinds` entry (a bad one fails the build).
        self.config
            .include_kinds
            .iter()
            .zip(&self.include)
            .enumerate()
            .filter(|(_, (_, pattern))| !declared.iter().any(|&k| hit(pattern, k)))
            .map(|(index, (text, _))| {
                format!(
                    "include_kinds[{index}]: {text:?} matches no kind the manifests declare, so it selects nothing; fix the pattern (Kind or Kind.group) or remove it"
                )
            })
            .collect()
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
        let unselected = self.unselected_kinds(&loaded.objects);
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
        let mut warnings = unselected;
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

    /// A manifest directory's `include_kinds` patterns that select nothing
    /// (a render command is not run here).
    fn inspect(&self, probe_dir: &std::path::Path) -> Vec<String> {
        if self.config.render.is_some() || self.include.is_empty() {
            return Vec::new();
        }
        match manifest::load_dir(probe_dir, probe_dir) {
            Ok(loaded) => self.unselected_kinds(&loaded.objects),
            Err(_) => Vec::new(),
        }
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
    use super::differences::{is_well_known, labels_match, parse_equality_selector};
    use super::*;
    use crate::probe::{parse_fields, FieldError, ProbeCommon};
    use serde_json::json;
    use std::path::PathBuf;

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
    fn each_include_kinds_pattern_that_selects_no_declared_kind_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let manifests = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\n\
            apiVersion: v1\nkind: Service\nmetadata: {name: web}\n---\n\
            apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n";
        std::fs::write(dir.path().join("all.yaml"), manifests).unwrap();
        // (include_kinds, the keys of the warnings)
        let cases: &[(&str, &[&str])] = &[
            // The example: a typo leaves Ingress uncompared.
            (r#"["Deployment", "Ingres"]"#, &["include_kinds[1]"]),
            (r#"["Deployment", "Service", "*.example.com"]"#, &[]),
            (
                r#"["Deployment.apps", "Widget.example.com", "*.apps"]"#,
                &[],
            ),
            (
                r#"["Service.apps", "*.example.org", "Deploy*"]"#,
                &["include_kinds[0]", "include_kinds[1]"],
            ),
            (
                r#"["Job", "CronJob"]"#,
                &["include_kinds[0]", "include_kinds[1]"],
            ),
            ("[]", &[]),
        ];
        for (include, keys) in cases {
            let p = probe(&format!(
                "include_kinds = {include}\nexclude_kinds = [\"Service\"]"
            ))
            .unwrap();
            let warnings = p.inspect(dir.path());
            let found: Vec<&str> = warnings
                .iter()
                .map(|w| w.split(':').next().unwrap())
                .collect();
            assert_eq!(&found, keys, "{include}: {warnings:?}");
            for warning in &warnings {
                assert!(
                    warning.contains("matches no kind the manifests declare"),
                    "{warning}"
                );
            }
        }
        // A render command is not run to find out.
        let rendered = probe("include_kinds = [\"Job\"]\nrender = [\"./render.sh\"]").unwrap();
        assert_eq!(rendered.inspect(dir.path()), Vec::<String>::new());
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
