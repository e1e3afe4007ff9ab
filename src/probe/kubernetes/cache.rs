//! The live-state cache of one probe, fed by watches (`watch = true`): one
//! scope per (resource type, namespace) the probe compares, each an informer
//! (`kube::runtime::watcher` feeding a `reflector` store) that LISTs once,
//! then WATCHes with bookmarks and resumes from its last resourceVersion
//! after a cut, relisting on `410 Gone`. A scheduled check then reads the
//! stores and costs the API server nothing. Scopes that are only searched for
//! extra objects cache `PartialObjectMetadata`, not whole objects.
//!
//! A scope that cannot serve a check falls back to the LIST/GET reader for
//! that check: while its first sync is failing, after a watch error until it
//! has relisted, and while WATCH itself is forbidden (403; asked again every
//! `watch_retry`, so a role granted later takes effect without a restart). Events
//! that may change a verdict (an edit of a declared object, a deletion, a new
//! undeclared object when extras are on) wake `changed`, which the scheduler
//! turns into a `live-change` run.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::{ObjectMeta, PartialObjectMeta};
use kube::discovery::ApiResource;
use kube::runtime::reflector::{store::Writer, ObjectRef, Store};
use kube::runtime::watcher;
use kube::Client;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::live::{api_error, ResourceType};
use crate::probe::CacheStats;

/// Backoff after a watch error: doubles from 1 s up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One cached (resource type, namespace).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopeKey {
    /// `deployments.apps`
    pub resource: String,
    pub api_version: String,
    /// None: cluster-scoped types, or every namespace.
    pub namespace: Option<String>,
    /// Only candidates for extra detection: metadata is enough.
    pub metadata_only: bool,
    pub label_selector: Option<String>,
}

impl ScopeKey {
    fn describe(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} in namespace {ns:?}", self.resource),
            None => self.resource.clone(),
        }
    }
}

/// Where a scope stands.
#[derive(Debug, Clone, PartialEq)]
pub enum Phase {
    /// The first LIST has not finished.
    Syncing,
    /// The store mirrors the cluster (as of the last event).
    Synced,
    /// The account may list but not watch: LIST on every run instead.
    WatchForbidden(String),
    /// The last attempt failed (LIST refused, server unreachable, watch broken);
    /// the watcher retries with backoff and checks read with LIST meanwhile.
    Failing(String),
}

/// What a scope's informer answers to "which objects matter".
#[derive(Debug, Default)]
struct Interest {
    /// Names the manifests declare here.
    declared: HashSet<String>,
    /// New and deleted undeclared objects matter too.
    extras: bool,
}

enum Cached {
    Full(Store<LiveObject>),
    Metadata(Store<PartialObjectMeta<DynamicObject>>),
}

/// One informer and its store.
pub struct Scope {
    pub key: ScopeKey,
    resource: SharedResource,
    store: Cached,
    phase: tokio::sync::watch::Sender<Phase>,
    interest: RwLock<Interest>,
    last_event: Mutex<Option<Instant>>,
    restarts: AtomicU64,
    task: tokio::task::AbortHandle,
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every scope of one probe, and the signal that live state changed.
pub struct LiveCache {
    scopes: Mutex<HashMap<ScopeKey, Arc<Scope>>>,
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    seen: tokio::sync::Mutex<tokio::sync::watch::Receiver<u64>>,
    /// Restarts of scopes since dropped, so the counter never goes down.
    retired_restarts: AtomicU64,
    /// Set once a check has declared which scopes exist.
    configured: AtomicBool,
    page_size: u32,
    /// How long a scope whose WATCH is forbidden waits before asking again.
    watch_retry: Duration,
    /// Scopes in their initial sync (permission check and LIST) at once: the
    /// probe's `concurrency`, so 300 scopes do not LIST all at once (the API
    /// server's load, and this process's peak memory).
    syncs: Arc<tokio::sync::Semaphore>,
}

impl LiveCache {
    pub fn new(page_size: u32, watch_retry: Duration, concurrency: usize) -> LiveCache {
        let (sender, receiver) = tokio::sync::watch::channel(0);
        LiveCache {
            scopes: Mutex::new(HashMap::new()),
            changes: Arc::new(sender),
            seen: tokio::sync::Mutex::new(receiver),
            retired_restarts: AtomicU64::new(0),
            configured: AtomicBool::new(false),
            page_size,
            watch_retry,
            syncs: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
        }
    }

    /// Makes the set of scopes exactly `wanted` (starting informers for new
    /// ones, stopping the rest) and records what matters in each.
    pub fn ensure(
        &self,
        client: &Client,
        wanted: Vec<(ScopeKey, ResourceType, HashSet<String>, bool)>,
    ) -> Vec<Arc<Scope>> {
        let mut scopes = self.scopes.lock().unwrap();
        let keep: HashSet<&ScopeKey> = wanted.iter().map(|(k, ..)| k).collect();
        let before = scopes.len();
        scopes.retain(|key, scope| {
            let kept = keep.contains(key);
            if !kept {
                self.retired_restarts
                    .fetch_add(scope.restarts.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            kept
        });
        if scopes.len() < before {
            tracing::debug!(
                stopped = before - scopes.len(),
                "stopped watches no longer needed"
            );
        }
        let mut out = Vec::new();
        for (key, resource_type, declared, extras) in wanted {
            let scope = scopes
                .entry(key.clone())
                .or_insert_with(|| {
                    start(
                        client.clone(),
                        key,
                        &resource_type,
                        (self.page_size, self.watch_retry, self.syncs.clone()),
                        self.changes.clone(),
                    )
                })
                .clone();
            {
                let mut interest = scope.interest.write().unwrap();
                interest.declared = declared;
                interest.extras = extras;
            }
            out.push(scope);
        }
        self.configured.store(true, Ordering::Relaxed);
        out
    }

    /// Resolves once live state that may change a verdict changed since the
    /// last call returned, `debounce` after the first such event (so a burst,
    /// or a change and its revert, make one check).
    pub async fn changed(&self, debounce: Duration) {
        let mut seen = self.seen.lock().await;
        if seen.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(debounce).await;
        seen.borrow_and_update();
    }

    pub fn stats(&self) -> CacheStats {
        let scopes = self.scopes.lock().unwrap();
        let mut stats = CacheStats {
            scopes: scopes.len(),
            restarts: self.retired_restarts.load(Ordering::Relaxed),
            settled: self.configured.load(Ordering::Relaxed),
            ..CacheStats::default()
        };
        for scope in scopes.values() {
            stats.objects += scope.object_count();
            stats.restarts += scope.restarts.load(Ordering::Relaxed);
            if let Some(at) = *scope.last_event.lock().unwrap() {
                let age = at.elapsed();
                stats.last_event_age = Some(stats.last_event_age.map_or(age, |a| a.min(age)));
            }
            if *scope.phase.borrow() == Phase::Syncing {
                stats.settled = false;
            }
        }
        stats
    }
}

impl Scope {
    /// Waits (until `deadline`) for the first sync attempt to end, then says where the scope stands.
    pub async fn settle(&self, deadline: tokio::time::Instant) -> Phase {
        let mut phase = self.phase.subscribe();
        let settled = tokio::time::timeout_at(deadline, async {
            phase
                .wait_for(|p| *p != Phase::Syncing)
                .await
                .map(|p| p.clone())
        })
        .await;
        match settled {
            Ok(Ok(phase)) => phase,
            _ => Phase::Failing(format!(
                "the watch of {} did not finish its first sync in time",
                self.key.describe()
            )),
        }
    }

    pub fn object_count(&self) -> usize {
        match &self.store {
            Cached::Full(store) => store.len(),
            Cached::Metadata(store) => store.len(),
        }
    }

    /// One cached object.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<LiveObject>> {
        let Cached::Full(store) = &self.store else {
            return None;
        };
        let mut reference = ObjectRef::new_with(name, self.resource.clone());
        if !namespace.is_empty() {
            reference = reference.within(namespace);
        }
        store.get(&reference)
    }

    /// Every cached object's identity and what extra detection looks at
    /// (metadata, and a Secret's type), skipping names in `skip`.
    pub fn others(&self, skip: &dyn Fn(&str, &str) -> bool) -> Vec<(String, String, Value)> {
        let identity = |meta: &kube::core::ObjectMeta| {
            (
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            )
        };
        let mut out = Vec::new();
        match &self.store {
            Cached::Full(store) => {
                for object in store.state() {
                    let (namespace, name) = identity(&object.metadata);
                    if skip(&namespace, &name) {
                        continue;
                    }
                    let body = object.to_json();
                    let mut value = json!({"metadata": body["metadata"]});
                    if let Some(kind) = body.get("type") {
                        value["type"] = kind.clone();
                    }
                    out.push((namespace, name, value));
                }
            }
            Cached::Metadata(store) => {
                for object in store.state() {
                    let (namespace, name) = identity(&object.metadata);
                    if !skip(&namespace, &name) {
                        out.push((namespace, name, json!({"metadata": object.metadata})));
                    }
                }
            }
        }
        out
    }
}

/// A live object as the cache keeps it: its JSON text, not a tree of
/// `serde_json::Value`s (which takes several times the JSON's size), with
/// what never decides a verdict left out — `status`, `apiVersion`/`kind`
/// (list items lack them, watch events carry them), `resourceVersion` and
/// kubectl's last-applied annotation. `managedFields` is kept apart, as text
/// too, read only to name who changed a drifted field. A check parses the
/// body of an object only when its resourceVersion changed since it was last
/// compared, so most checks parse nothing.
#[derive(Clone)]
pub struct LiveObject {
    /// Identity, resourceVersion and owner references: what the store and
    /// the watch bookkeeping read.
    metadata: ObjectMeta,
    /// The object's JSON without the fields above.
    body: Arc<str>,
    /// `metadata.managedFields` as JSON, when the server sent any.
    managed_fields: Option<Arc<str>>,
}

// By hand: the body may hold a Secret's data.
impl Debug for LiveObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveObject")
            .field("namespace", &self.metadata.namespace)
            .field("name", &self.metadata.name)
            .field("resource_version", &self.metadata.resource_version)
            .finish_non_exhaustive()
    }
}

impl LiveObject {
    fn from_value(value: Value) -> Result<LiveObject, String> {
        let Value::Object(mut map) = value else {
            return Err("a Kubernetes object is a JSON object".into());
        };
        for field in ["status", "apiVersion", "kind"] {
            map.remove(field);
        }
        let mut metadata = ObjectMeta::default();
        let mut managed_fields = None;
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            if let Some(Value::String(version)) = meta.remove("resourceVersion") {
                metadata.resource_version = Some(version);
            }
            if let Some(entries @ Value::Array(_)) = meta.remove("managedFields") {
                managed_fields = Some(Arc::from(entries.to_string()));
            }
            if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
                annotations.remove(super::normalize::LAST_APPLIED);
            }
            let text = |key: &str| meta.get(key).and_then(Value::as_str).map(String::from);
            metadata.name = text("name");
            metadata.namespace = text("namespace");
            metadata.owner_references = meta
                .get("ownerReferences")
                .and_then(|refs| serde_json::from_value(refs.clone()).ok());
        }
        Ok(LiveObject {
            metadata,
            body: Arc::from(Value::Object(map).to_string()),
            managed_fields,
        })
    }

    /// Its resourceVersion ("" when the server sent none).
    pub fn resource_version(&self) -> &str {
        self.metadata.resource_version.as_deref().unwrap_or("")
    }

    /// The object as JSON, as the comparison reads it: the body, its
    /// resourceVersion, and `managedFields` as a JSON *string* (see
    /// `managed_fields`), parsed only when a field differs.
    pub fn to_json(&self) -> Value {
        let mut value: Value = serde_json::from_str(&self.body).unwrap_or_else(|_| json!({}));
        if !value["metadata"].is_object() {
            value["metadata"] = json!({});
        }
        if let Some(version) = &self.metadata.resource_version {
            value["metadata"]["resourceVersion"] = json!(version);
        }
        if let Some(managed) = &self.managed_fields {
            value["metadata"]["managedFields"] = Value::String(managed.to_string());
        }
        value
    }
}

impl<'de> serde::Deserialize<'de> for LiveObject {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        LiveObject::from_value(Value::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// A scope's `ApiResource`, shared: the reflector copies the dynamic type
/// into the key of every object it stores, which with a bare `ApiResource`
/// is five more strings per cached object.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SharedResource(Arc<ApiResource>);

impl kube::Resource for LiveObject {
    type DynamicType = SharedResource;
    type Scope = kube::core::DynamicResourceScope;

    fn kind(dt: &SharedResource) -> Cow<'_, str> {
        dt.0.kind.as_str().into()
    }

    fn group(dt: &SharedResource) -> Cow<'_, str> {
        dt.0.group.as_str().into()
    }

    fn version(dt: &SharedResource) -> Cow<'_, str> {
        dt.0.version.as_str().into()
    }

    fn api_version(dt: &SharedResource) -> Cow<'_, str> {
        dt.0.api_version.as_str().into()
    }

    fn plural(dt: &SharedResource) -> Cow<'_, str> {
        dt.0.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// What a scope can cache: whole objects or their metadata.
trait CachedObject:
    kube::Resource<
        DynamicType: Clone + Eq + std::hash::Hash + Send + Sync + 'static,
        Scope = kube::core::DynamicResourceScope,
    > + Content
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> CachedObject for K where
    K: kube::Resource<
            DynamicType: Clone + Eq + std::hash::Hash + Send + Sync + 'static,
            Scope = kube::core::DynamicResourceScope,
        > + Content
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}

/// What in an object can change a verdict: not status, not bookkeeping.
trait Content {
    fn same_content(&self, other: &Self) -> bool;

    /// Drops, before caching, what extra detection does not read.
    fn trim(&mut self);
}

impl Content for LiveObject {
    /// Already compact (see `LiveObject::from_value`).
    fn trim(&mut self) {}

    fn same_content(&self, other: &Self) -> bool {
        self.body == other.body
    }
}

impl Content for PartialObjectMeta<DynamicObject> {
    /// Extra detection reads names, labels, annotations and owners only.
    fn trim(&mut self) {
        let meta = &mut self.metadata;
        meta.managed_fields = None;
        if let Some(annotations) = &mut meta.annotations {
            annotations.remove(super::normalize::LAST_APPLIED);
        }
    }

    fn same_content(&self, other: &Self) -> bool {
        self.metadata.labels == other.metadata.labels
            && self.metadata.annotations == other.metadata.annotations
    }
}

fn start(
    client: Client,
    key: ScopeKey,
    resource_type: &ResourceType,
    (page_size, watch_retry, syncs): (u32, Duration, Arc<tokio::sync::Semaphore>),
    changes: Arc<tokio::sync::watch::Sender<u64>>,
) -> Arc<Scope> {
    let resource = resource_type.resource.clone();
    let shared = SharedResource(Arc::new(resource.clone()));
    let namespace = key.namespace.as_deref();
    let permission_api: Api<DynamicObject> = scoped_api(&client, namespace, &resource);
    let mut config = watcher::Config::default().page_size(page_size);
    if let Some(selector) = &key.label_selector {
        config = config.labels(selector);
    }
    let (phase, _) = tokio::sync::watch::channel(Phase::Syncing);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Arc<Scope>>();
    let informer = Informer {
        permission_api,
        config,
        ready: ready_rx,
        changes,
        watch_retry,
        syncs,
    };
    let (store, task) = if key.metadata_only {
        // `Api<PartialObjectMeta<_>>` asks for metadata-only objects.
        let api = scoped_api(&client, namespace, &resource);
        let (store, task) = informer.spawn(api, resource);
        (Cached::Metadata(store), task)
    } else {
        let api = match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &shared),
            None => Api::all_with(client.clone(), &shared),
        };
        let (store, task) = informer.spawn(api, shared.clone());
        (Cached::Full(store), task)
    };
    let scope = Arc::new(Scope {
        key,
        resource: shared,
        store,
        phase,
        interest: RwLock::new(Interest::default()),
        last_event: Mutex::new(None),
        restarts: AtomicU64::new(0),
        task,
    });
    let _ = ready_tx.send(scope.clone());
    scope
}

pub fn scoped_api<K>(client: &Client, namespace: Option<&str>, resource: &ApiResource) -> Api<K>
where
    K: kube::Resource<DynamicType = ApiResource, Scope = kube::core::DynamicResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, resource),
        None => Api::all_with(client.clone(), resource),
    }
}

/// What an informer task needs besides its typed `Api`.
struct Informer {
    permission_api: Api<DynamicObject>,
    config: watcher::Config,
    /// The scope, once built (the task holds it weakly after the permission check).
    ready: tokio::sync::oneshot::Receiver<Arc<Scope>>,
    changes: Arc<tokio::sync::watch::Sender<u64>>,
    watch_retry: Duration,
    syncs: Arc<tokio::sync::Semaphore>,
}

impl Informer {
    fn spawn<K: CachedObject>(
        self,
        api: Api<K>,
        dyntype: K::DynamicType,
    ) -> (Store<K>, tokio::task::AbortHandle) {
        let mut writer: Writer<K> = Writer::new(dyntype.clone());
        let store = writer.as_reader();
        let task = tokio::spawn(async move {
            let Ok(scope) = self.ready.await else { return };
            let weak = Arc::downgrade(&scope);
            drop(scope);
            let config = self.config;
            let new_stream = move || watcher::watcher(api.clone(), config.clone()).boxed();
            // A forbidden WATCH (at the start or later) is asked again every
            // `watch_retry`: a role granted since takes effect without a restart.
            loop {
                let Ok(permit) = self.syncs.clone().acquire_owned().await else {
                    return;
                };
                let Some(scope) = weak.upgrade() else { return };
                let allowed = may_watch(&scope, &self.permission_api).await;
                drop(scope);
                if allowed {
                    let sync = (&*self.changes, permit);
                    inform(weak.clone(), (&mut writer, &dyntype), &new_stream, sync).await;
                } else {
                    drop(permit);
                }
                tokio::time::sleep(self.watch_retry).await;
            }
        });
        (store, task.abort_handle())
    }
}

/// Asks the server whether this account may WATCH here, before any LIST:
/// a watch of a name no object has, which a real server answers at once
/// (200 or 403) and which returns nothing. A 403 settles the scope as
/// `WatchForbidden` so the first check already falls back and warns.
async fn may_watch(scope: &Scope, api: &Api<DynamicObject>) -> bool {
    match watch_forbidden(api, &scope.key).await {
        Some(message) => {
            forbidden(scope, message);
            false
        }
        // Anything else is the informer's to meet and report.
        None => true,
    }
}

/// The warning when this account may not WATCH `api` (HTTP 403), None when
/// it may (or when the server did not answer: that is for the informer).
pub async fn watch_forbidden(api: &Api<DynamicObject>, key: &ScopeKey) -> Option<String> {
    let params = kube::api::WatchParams::default()
        .fields("metadata.name=driftwatch.watch-permission-check")
        .timeout(1)
        .disable_bookmarks();
    match api.watch(&params, "0").await {
        Err(kube::Error::Api(status)) if status.code == 403 => {
            let err = watcher::Error::WatchStartFailed(kube::Error::Api(status));
            Some(describe(&err, key))
        }
        _ => None,
    }
}

/// Settles a scope as `WatchForbidden`, warning once (not on every retry).
fn forbidden(scope: &Scope, message: String) {
    let before = scope
        .phase
        .send_replace(Phase::WatchForbidden(message.clone()));
    if matches!(before, Phase::WatchForbidden(_)) {
        tracing::debug!(scope = %scope.key.describe(), "{message}");
    } else {
        tracing::warn!(scope = %scope.key.describe(), "{message}");
    }
}

type EventStream<K> = futures::stream::BoxStream<'static, watcher::Result<watcher::Event<K>>>;

/// Feeds one store from its watcher until the scope is dropped or WATCH
/// is forbidden. Other errors restart the watcher from a fresh LIST after a
/// backoff.
async fn inform<K>(
    scope: std::sync::Weak<Scope>,
    (writer, dyntype): (&mut Writer<K>, &K::DynamicType),
    new_stream: &impl Fn() -> EventStream<K>,
    (changes, permit): (
        &tokio::sync::watch::Sender<u64>,
        tokio::sync::OwnedSemaphorePermit,
    ),
) where
    K: CachedObject,
{
    let mut backoff = Duration::from_secs(1);
    let mut synced_once = false;
    // Held until the first sync ends (or fails).
    let mut permit = Some(permit);
    loop {
        let mut stream = new_stream();
        let mut failed = false;
        while let Some(item) = stream.next().await {
            let Some(scope) = scope.upgrade() else { return };
            match item {
                Ok(event) => {
                    let event = event.modify(K::trim);
                    *scope.last_event.lock().unwrap() = Some(Instant::now());
                    let relevant = relevant(&scope, (writer, dyntype), &event);
                    writer.apply_watcher_event(&event);
                    if let watcher::Event::InitDone = event {
                        permit.take();
                        backoff = Duration::from_secs(1);
                        let before = scope.phase.send_replace(Phase::Synced);
                        // A relist may hide any change made while the watch was
                        // down; after a forbidden watch, a check clears the warning.
                        if synced_once || matches!(before, Phase::WatchForbidden(_)) {
                            changes.send_modify(|n| *n += 1);
                        }
                        synced_once = true;
                    } else if relevant {
                        changes.send_modify(|n| *n += 1);
                    }
                }
                Err(err) => {
                    permit.take();
                    let message = describe(&err, &scope.key);
                    scope.restarts.fetch_add(1, Ordering::Relaxed);
                    if let watcher::Error::WatchStartFailed(kube::Error::Api(status)) = &err {
                        if status.code == 403 {
                            forbidden(&scope, message);
                            return;
                        }
                    }
                    if let watcher::Error::WatchError(status) = &err {
                        if status.code == 410 {
                            // The watcher relists by itself.
                            tracing::debug!(scope = %scope.key.describe(), "watch expired; relisting");
                            continue;
                        }
                    }
                    tracing::warn!(scope = %scope.key.describe(), retry_in = ?backoff, "{message}");
                    scope.phase.send_replace(Phase::Failing(message));
                    failed = true;
                    break;
                }
            }
        }
        if !failed {
            // The watcher's stream never ends on its own; start over if it did.
            tracing::debug!("watch stream ended; restarting");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Whether an event may change the probe's verdict (checked before the store applies it).
fn relevant<K>(
    scope: &Scope,
    (writer, dyntype): (&Writer<K>, &K::DynamicType),
    event: &watcher::Event<K>,
) -> bool
where
    K: CachedObject,
{
    let (object, deleted) = match event {
        watcher::Event::Apply(object) => (object, false),
        watcher::Event::Delete(object) => (object, true),
        _ => return false,
    };
    let interest = scope.interest.read().unwrap();
    let name = object.meta().name.as_deref().unwrap_or_default();
    let reference = ObjectRef::from_obj_with(object, dyntype.clone());
    let before = writer.as_reader().get(&reference);
    if interest.declared.contains(name) {
        return deleted || !before.is_some_and(|b| b.same_content(object));
    }
    let owned = object
        .meta()
        .owner_references
        .as_ref()
        .is_some_and(|refs| !refs.is_empty());
    interest.extras && !owned && (deleted || before.is_none())
}

fn describe(err: &watcher::Error, key: &ScopeKey) -> String {
    let what = key.describe();
    match err {
        watcher::Error::InitialListFailed(err) => api_error(err, "list", &what).message,
        watcher::Error::WatchStartFailed(kube::Error::Api(status)) if status.code == 403 => {
            format!(
                "forbidden: cannot watch {what} (HTTP 403): reading it with LIST on every check instead; \
                 grant get, list and watch to see live changes within seconds"
            )
        }
        watcher::Error::WatchStartFailed(err) | watcher::Error::WatchFailed(err) => {
            api_error(err, "watch", &what).message
        }
        watcher::Error::WatchError(status) => format!(
            "cannot watch {what}: HTTP {} {}: {}",
            status.code, status.reason, status.message
        ),
        watcher::Error::NoResourceVersion => {
            format!("cannot watch {what}: the server sent no resourceVersion")
        }
    }
}
