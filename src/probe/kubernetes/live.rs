//! Reading live state, read-only: discovery (cached across runs, refreshed
//! when a kind is not found), then GET or paginated LIST per resource type
//! and namespace with bounded concurrency. The number of API calls grows
//! with types × namespaces, not with objects: a (type, namespace) pair with
//! more than `list_threshold` wanted objects is read with one LIST (pages of
//! `page_size`), fewer with one GET each.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{DynamicObject, GetParams, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersion;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::Client;
use serde_json::Value;
use tokio::sync::Semaphore;

use crate::model::outcome::{ErrorReason, ProbeError};
use kube_schema::{from_crd_schema, TypeDef};

/// Builds a client from a kubeconfig file (and optional context) exactly as
/// kubectl would, or from the pod's service account when no file is given.
pub async fn connect(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
    timeout: Duration,
) -> Result<Client, ProbeError> {
    let mut config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|err| {
                ProbeError::new(
                    ErrorReason::Input,
                    format!("cannot read kubeconfig {}: {err}", path.display()),
                )
            })?;
            let options = KubeConfigOptions {
                context: context.map(String::from),
                ..Default::default()
            };
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|err| {
                    ProbeError::new(
                        ErrorReason::Input,
                        format!("kubeconfig {}: {err}", path.display()),
                    )
                })?
        }
        None => kube::Config::incluster().map_err(|err| {
            ProbeError::new(
                ErrorReason::Input,
                format!("no kubeconfig configured and in-cluster config unavailable: {err}"),
            )
        })?,
    };
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    Client::try_from(config).map_err(|err| {
        ProbeError::new(ErrorReason::Internal, format!("cannot build client: {err}"))
    })
}

/// A served resource type.
#[derive(Debug, Clone)]
pub struct ResourceType {
    pub resource: ApiResource,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl ResourceType {
    /// `deployments.apps`, `configmaps`: how RBAC names it.
    pub fn rbac_name(&self) -> String {
        if self.resource.group.is_empty() {
            self.resource.plural.clone()
        } else {
            format!("{}.{}", self.resource.plural, self.resource.group)
        }
    }
}

/// The resource types one group version serves.
type GroupVersionResources = Arc<Vec<(ApiResource, ApiCapabilities)>>;

/// Discovery results per group version, kept across runs.
#[derive(Default)]
pub struct DiscoveryCache {
    group_versions: Mutex<HashMap<String, GroupVersionResources>>,
}

/// What resolving one apiVersion/kind found.
pub enum Resolved {
    Served(ResourceType),
    /// The group version is served but has no such kind.
    UnknownKind,
    /// The cluster does not serve the group version at all.
    UnknownVersion,
}

impl DiscoveryCache {
    /// Resolves each (apiVersion, kind). A group version is fetched when it is
    /// not cached, or when a kind is missing from the cached copy (a CRD may
    /// have been installed since); each group version at most once per call.
    pub async fn resolve(
        &self,
        client: &Client,
        wanted: &BTreeSet<(String, String)>,
        counter: &AtomicUsize,
    ) -> Result<BTreeMap<(String, String), Resolved>, ProbeError> {
        let mut by_version: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (api_version, kind) in wanted {
            by_version.entry(api_version).or_default().push(kind);
        }
        let mut out = BTreeMap::new();
        for (api_version, kinds) in by_version {
            let cached = self
                .group_versions
                .lock()
                .unwrap()
                .get(api_version)
                .cloned();
            let complete = cached.as_ref().is_some_and(|list| {
                kinds
                    .iter()
                    .all(|k| list.iter().any(|(ar, _)| ar.kind == *k))
            });
            let list = if complete {
                cached
            } else {
                let gv: GroupVersion = api_version.parse().map_err(|err| {
                    ProbeError::new(
                        ErrorReason::Input,
                        format!("invalid apiVersion {api_version:?}: {err}"),
                    )
                })?;
                counter.fetch_add(1, Ordering::Relaxed);
                match kube::discovery::pinned_group(client, &gv).await {
                    Ok(group) => {
                        let list = Arc::new(group.versioned_resources(&gv.version));
                        self.group_versions
                            .lock()
                            .unwrap()
                            .insert(api_version.to_string(), list.clone());
                        Some(list)
                    }
                    Err(kube::Error::Api(status)) if status.code == 404 => {
                        self.group_versions.lock().unwrap().remove(api_version);
                        None
                    }
                    Err(err) => {
                        return Err(api_error(
                            &err,
                            "discover",
                            &format!("API group version {api_version}"),
                        ))
                    }
                }
            };
            for kind in kinds {
                let resolved = match &list {
                    None => Resolved::UnknownVersion,
                    Some(list) => match list.iter().find(|(ar, _)| ar.kind == kind) {
                        Some((resource, caps)) => Resolved::Served(ResourceType {
                            resource: resource.clone(),
                            namespaced: caps.scope == Scope::Namespaced,
                            verbs: caps.operations.clone(),
                        }),
                        None => Resolved::UnknownKind,
                    },
                };
                out.insert((api_version.to_string(), kind.to_string()), resolved);
            }
        }
        Ok(out)
    }
}

/// One unit of reading: objects of one type in one namespace (None for
/// cluster-scoped types or a cluster-wide list).
#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub type_index: usize,
    pub namespace: Option<String>,
    /// Names to GET; ignored when `list` is set.
    pub names: Vec<String>,
    /// LIST the whole (type, namespace) instead.
    pub list: bool,
    pub label_selector: Option<String>,
}

/// What a read found.
#[derive(Default)]
pub struct ReadResult {
    /// Live objects by (type index, namespace, name).
    pub objects: HashMap<(usize, String, String), Value>,
    /// (type index, namespace) pairs that were listed completely.
    pub listed: BTreeSet<(usize, String)>,
    /// One message per failed request group.
    pub failures: Vec<ReadFailure>,
}

pub struct ReadFailure {
    pub type_index: usize,
    pub namespace: Option<String>,
    pub error: ProbeError,
}

pub struct Reader {
    pub client: Client,
    pub concurrency: usize,
    pub page_size: u32,
    pub counter: Arc<AtomicUsize>,
}

impl Reader {
    /// The list types a custom resource's CRD declares for `resource`'s
    /// version (`x-kubernetes-list-type` in its `openAPIV3Schema`): one GET of
    /// the CRD per type and run. `None` when the CRD cannot be read (no
    /// permission, not a CRD): its lists are then atomic, the API's default.
    pub async fn crd_schema(&self, resource: &ApiResource) -> Option<TypeDef> {
        let name = format!("{}.{}", resource.plural, resource.group);
        let request =
            kube::core::Request::new("/apis/apiextensions.k8s.io/v1/customresourcedefinitions");
        let http_request = request.get(&name, &GetParams::default()).ok()?;
        self.counter.fetch_add(1, Ordering::Relaxed);
        let crd: Value = match self.client.request::<Value>(http_request).await {
            Ok(crd) => crd,
            Err(err) => {
                tracing::debug!(crd = %name, error = %err, "cannot read CRD; its lists count as atomic");
                return None;
            }
        };
        let version = crd
            .pointer("/spec/versions")?
            .as_array()?
            .iter()
            .find(|v| v.get("name").and_then(Value::as_str) == Some(resource.version.as_str()))?;
        Some(from_crd_schema(version.pointer("/schema/openAPIV3Schema")?))
    }

    /// Runs every plan with at most `concurrency` requests in flight.
    pub async fn read(&self, types: &[ResourceType], plans: Vec<ReadPlan>) -> ReadResult {
        let semaphore = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for plan in plans {
            let resource_type = types[plan.type_index].clone();
            let namespace = if resource_type.namespaced {
                plan.namespace.as_deref()
            } else {
                None
            };
            // Objects are read as plain JSON: no typed round trip, nothing dropped.
            let request = Arc::new(kube::core::Request::new(
                <DynamicObject as kube::Resource>::url_path(&resource_type.resource, namespace),
            ));
            let names = if plan.list {
                vec![None]
            } else {
                plan.names.iter().cloned().map(Some).collect()
            };
            for name in names {
                let semaphore = semaphore.clone();
                let counter = self.counter.clone();
                let client = self.client.clone();
                let request = request.clone();
                let page_size = self.page_size;
                let plan = match &name {
                    Some(name) => ReadPlan {
                        names: vec![name.clone()],
                        ..plan.clone()
                    },
                    None => plan.clone(),
                };
                let resource_type = resource_type.clone();
                tasks.spawn(async move {
                    let result = match &name {
                        None => {
                            let selector = plan.label_selector.as_deref();
                            list_all(&client, &request, &semaphore, &counter, page_size, selector)
                                .await
                        }
                        Some(name) => get(&client, &request, &semaphore, &counter, name).await,
                    };
                    (plan, resource_type, result)
                });
            }
        }
        let mut result = ReadResult::default();
        while let Some(joined) = tasks.join_next().await {
            let Ok((plan, resource_type, outcome)) = joined else {
                result.failures.push(ReadFailure {
                    type_index: usize::MAX,
                    namespace: None,
                    error: ProbeError::new(ErrorReason::Internal, "a read task panicked"),
                });
                continue;
            };
            match outcome {
                Ok(items) => {
                    if plan.list {
                        result
                            .listed
                            .insert((plan.type_index, plan.namespace.clone().unwrap_or_default()));
                    }
                    for object in items {
                        let namespace = object
                            .pointer("/metadata/namespace")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        let name = object
                            .pointer("/metadata/name")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        result.objects.insert(
                            (plan.type_index, namespace.to_string(), name.to_string()),
                            object,
                        );
                    }
                }
                Err(err) => {
                    let verb = if plan.list { "list" } else { "get" };
                    let mut what = resource_type.rbac_name();
                    if !plan.list {
                        what = format!("{what} {:?}", plan.names[0]);
                    }
                    if let Some(ns) = &plan.namespace {
                        what = format!("{what} in namespace {ns:?}");
                    }
                    result.failures.push(ReadFailure {
                        type_index: plan.type_index,
                        namespace: plan.namespace.clone(),
                        error: api_error(&err, verb, &what),
                    });
                }
            }
        }
        result
    }
}

fn request_error(err: kube::core::request::Error) -> kube::Error {
    kube::Error::BuildRequest(err)
}

/// One GET; a 404 is an empty result (the object is missing), not an error.
async fn get(
    client: &Client,
    request: &kube::core::Request,
    semaphore: &Semaphore,
    counter: &AtomicUsize,
    name: &str,
) -> Result<Vec<Value>, kube::Error> {
    let http_request = request
        .get(name, &GetParams::default())
        .map_err(request_error)?;
    let _permit = semaphore
        .acquire()
        .await
        .expect("semaphore is never closed");
    counter.fetch_add(1, Ordering::Relaxed);
    match client.request::<Value>(http_request).await {
        Ok(object) => Ok(vec![object]),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(Vec::new()),
        Err(err) => Err(err),
    }
}

/// A LIST followed through every page (`limit`/`continue`).
async fn list_all(
    client: &Client,
    request: &kube::core::Request,
    semaphore: &Semaphore,
    counter: &AtomicUsize,
    page_size: u32,
    label_selector: Option<&str>,
) -> Result<Vec<Value>, kube::Error> {
    let mut items = Vec::new();
    let mut continue_token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(page_size);
        if let Some(selector) = label_selector {
            params = params.labels(selector);
        }
        if let Some(token) = &continue_token {
            params = params.continue_token(token);
        }
        let http_request = request.list(&params).map_err(request_error)?;
        let mut page = {
            let _permit = semaphore
                .acquire()
                .await
                .expect("semaphore is never closed");
            counter.fetch_add(1, Ordering::Relaxed);
            client.request::<Value>(http_request).await?
        };
        if let Some(Value::Array(page_items)) = page.get_mut("items").map(Value::take) {
            items.extend(page_items);
        }
        match page.pointer("/metadata/continue").and_then(Value::as_str) {
            Some(token) if !token.is_empty() => continue_token = Some(token.to_string()),
            _ => return Ok(items),
        }
    }
}

/// Turns a client error into a probe error naming what was attempted. A 403
/// says which verb on which resource the account lacks.
pub fn api_error(err: &kube::Error, verb: &str, what: &str) -> ProbeError {
    match err {
        kube::Error::Api(status) if status.code == 403 => ProbeError::new(
            ErrorReason::Api,
            format!(
                "forbidden: cannot {verb} {what} (HTTP 403; the account needs get, list and watch on it)"
            ),
        ),
        kube::Error::Api(status) if status.code == 401 => ProbeError::new(
            ErrorReason::Api,
            format!("unauthorized: cannot {verb} {what} (HTTP 401: check the credentials)"),
        ),
        kube::Error::Api(status) => ProbeError::new(
            ErrorReason::Api,
            format!(
                "cannot {verb} {what}: HTTP {} {}: {}",
                status.code, status.reason, status.message
            ),
        ),
        kube::Error::HyperError(_) | kube::Error::Service(_) => ProbeError::new(
            ErrorReason::Unreachable,
            format!("cannot {verb} {what}: API server unreachable: {err}"),
        ),
        other => ProbeError::new(ErrorReason::Api, format!("cannot {verb} {what}: {other}")),
    }
}
