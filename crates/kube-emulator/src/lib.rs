//! A small Kubernetes API server emulator for the kubernetes layer's tests:
//! real HTTP on 127.0.0.1:0, reached by the kube crate through a kubeconfig
//! exactly as a cluster would be. It serves discovery (`/version`, `/api`,
//! `/apis`, group-version resource lists including one CRD group), GET and
//! LIST (namespaced and across namespaces) with resourceVersion, equality
//! label selectors and limit/continue pagination, and Status objects for 404,
//! 403 (configurable per resource type), and writes as kubectl sends them
//! (see `write`: create, replace, every patch type, delete, `scale`), each
//! recording managedFields per field manager like a real server.
//! WATCH (see `watch`) streams every change with resourceVersions, bookmarks,
//! server-side timeouts and `410 Expired` for versions older than its log.
//! Objects are seeded through a Rust API that applies the server-side
//! defaults a real API server adds, so naive diffs fail against it the same
//! way they fail against a cluster. A switch adds latency to every request,
//! and counters record how many requests arrived.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{json, Map, Value};

pub mod watch;
mod write;

pub struct ResourceDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
}

impl ResourceDef {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, `configmaps`.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

pub const RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        namespaced: false,
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        namespaced: true,
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        namespaced: true,
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        namespaced: true,
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        namespaced: true,
    },
    ResourceDef {
        group: "",
        version: "v1",
        plural: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        namespaced: true,
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        plural: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        namespaced: true,
    },
    ResourceDef {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
    },
    ResourceDef {
        group: "apiextensions.k8s.io",
        version: "v1",
        plural: "customresourcedefinitions",
        singular: "customresourcedefinition",
        kind: "CustomResourceDefinition",
        namespaced: false,
    },
    ResourceDef {
        group: "example.com",
        version: "v1",
        plural: "widgets",
        singular: "widget",
        kind: "Widget",
        namespaced: true,
    },
];

fn find_by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

fn find_by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

#[derive(Default)]
struct Store {
    objects: BTreeMap<(String, String, String), Value>,
    resource_version: u64,
    next_uid: u64,
    next_ip: u32,
    /// Every change, for WATCH.
    events: watch::EventLog,
}

impl Store {
    /// Stores an object (carrying its new resourceVersion) and records the
    /// watch event; every write goes through here or `remove`.
    fn put(&mut self, key: (String, String, String), object: Value) {
        let event = if self.objects.contains_key(&key) {
            watch::EventType::Modified
        } else {
            watch::EventType::Added
        };
        self.events.record(event, &key.0, &key.1, &object);
        self.objects.insert(key, object);
    }

    /// The objects of one type (in one namespace), in key order: a range of
    /// the map, not a scan of every object (50,000 objects, 300 LISTs).
    fn in_scope<'a>(
        &'a self,
        qualified: &'a str,
        namespace: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        let start = (
            qualified.to_string(),
            namespace.unwrap_or("").to_string(),
            String::new(),
        );
        self.objects
            .range(start..)
            .take_while(move |((q, ns, _), _)| {
                q == qualified && namespace.is_none_or(|wanted| ns == wanted)
            })
            .map(|(_, v)| v)
    }

    /// Deletes an object: a new resourceVersion, and a DELETED event carrying
    /// the object's last state at that version.
    fn remove(&mut self, key: &(String, String, String)) -> Option<Value> {
        let mut object = self.objects.remove(key)?;
        self.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.resource_version.to_string());
        self.events
            .record(watch::EventType::Deleted, &key.0, &key.1, &object);
        Some(object)
    }
}

#[derive(Default)]
struct Inner {
    store: Mutex<Store>,
    latency_ms: AtomicU64,
    requests: AtomicU64,
    writes: AtomicU64,
    forbidden: Mutex<HashSet<String>>,
    paths: Mutex<Vec<String>>,
    watch: watch::WatchControl,
}

/// The CRD behind the `Widget` kind: its schema declares list types the way
/// custom resources do (`spec.parts` keyed by `name`, `spec.steps` atomic).
pub const WIDGET_CRD: &str = "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              size: {type: integer}
              color: {type: string}
              labels: {type: object, additionalProperties: {type: string}}
              parts:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  properties:
                    name: {type: string}
                    size: {type: integer}
              steps:
                type: array
                items: {type: string}
";

pub struct KubeEmulator {
    inner: Arc<Inner>,
    pub addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for KubeEmulator {
    fn drop(&mut self) {
        self.inner.watch.cut_all();
        self.server.abort();
    }
}

impl KubeEmulator {
    /// Starts the emulator on 127.0.0.1:0 with the `default` namespace.
    pub async fn start() -> KubeEmulator {
        let inner = Arc::new(Inner::default());
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind emulator");
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("emulator serves");
        });
        let emulator = KubeEmulator {
            inner,
            addr,
            server,
        };
        emulator.apply("apiVersion: v1\nkind: Namespace\nmetadata: {name: default}\n");
        emulator.apply(WIDGET_CRD);
        emulator
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig (context `emulator`, namespace `default`) into `dir`.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: emulator\n  cluster:\n    server: {}\n\
             users:\n- name: driftwatch\n  user: {{}}\ncontexts:\n- name: emulator\n  context:\n    cluster: emulator\n\
             \x20   user: driftwatch\n    namespace: default\n- name: elsewhere\n  context:\n    cluster: emulator\n\
             \x20   user: driftwatch\n    namespace: other\ncurrent-context: emulator\n",
            self.url()
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn set_latency(&self, latency: Duration) {
        self.inner
            .latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// Requests served so far (all methods).
    pub fn requests(&self) -> u64 {
        self.inner.requests.load(Ordering::SeqCst)
    }

    /// Requests that tried to change something (always refused).
    pub fn writes(&self) -> u64 {
        self.inner.writes.load(Ordering::SeqCst)
    }

    pub fn reset_requests(&self) {
        self.inner.requests.store(0, Ordering::SeqCst);
        self.inner.paths.lock().unwrap().clear();
    }

    /// Paths requested since the last reset (with query strings).
    pub fn paths(&self) -> Vec<String> {
        self.inner.paths.lock().unwrap().clone()
    }

    /// Makes every request for this resource type (`deployments.apps`, `secrets`) a 403.
    pub fn forbid(&self, qualified: &str) {
        self.inner
            .forbidden
            .lock()
            .unwrap()
            .insert(qualified.to_string());
    }

    /// Makes WATCH on this resource type a 403 while GET and LIST still work
    /// (an account with get/list but no watch).
    pub fn forbid_watch(&self, qualified: &str) {
        self.inner.watch.forbid(qualified);
    }

    pub fn allow_watch(&self, qualified: &str) {
        self.inner.watch.allow(qualified);
    }

    /// Ends every open watch stream, as an API server restart or a load
    /// balancer's idle cut would; clients resume from their last version.
    pub fn cut_watches(&self) {
        self.inner.watch.cut_all();
    }

    /// Keeps only the newest `events` changes for WATCH; older versions get 410.
    pub fn set_watch_history(&self, events: usize) {
        self.inner.store.lock().unwrap().events.set_limit(events);
    }

    /// How often open watches that allow bookmarks get one (60 s by default).
    pub fn set_bookmark_interval(&self, interval: Duration) {
        self.inner.watch.set_bookmark_interval(interval);
    }

    /// Watch streams open now.
    pub fn open_watches(&self) -> u64 {
        self.inner.watch.open()
    }

    /// Watch requests accepted since start (reconnects included).
    pub fn watches_started(&self) -> u64 {
        self.inner.watch.started()
    }

    /// The current (newest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.inner.store.lock().unwrap().resource_version
    }

    /// Creates or replaces each object of a YAML stream, as `kubectl apply`
    /// would, with server-side defaults and controller side effects.
    pub fn apply(&self, yaml: &str) {
        for document in kube_yaml::documents(yaml) {
            let value = document
                .value
                .unwrap_or_else(|e| panic!("seed YAML document {}: {e}", document.index));
            if value.is_null() {
                continue;
            }
            self.apply_object(value);
        }
    }

    pub fn apply_object(&self, object: Value) {
        let mut store = self.inner.store.lock().unwrap();
        apply_locked(&mut store, object);
    }

    /// Changes a live object in place, as another client would (bumps resourceVersion).
    pub fn patch(&self, kind: &str, namespace: &str, name: &str, change: impl FnOnce(&mut Value)) {
        let mut store = self.inner.store.lock().unwrap();
        let key = key_for_kind(kind, namespace, name);
        store.resource_version += 1;
        let rv = store.resource_version.to_string();
        let mut object = store
            .objects
            .get(&key)
            .cloned()
            .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} to patch"));
        change(&mut object);
        object["metadata"]["resourceVersion"] = json!(rv);
        store.put(key, object);
    }

    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let mut store = self.inner.store.lock().unwrap();
        let key = key_for_kind(kind, namespace, name);
        store
            .remove(&key)
            .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} to delete"));
    }

    pub fn get(&self, kind: &str, namespace: &str, name: &str) -> Option<Value> {
        let store = self.inner.store.lock().unwrap();
        store
            .objects
            .get(&key_for_kind(kind, namespace, name))
            .cloned()
    }

    pub fn object_count(&self) -> usize {
        self.inner.store.lock().unwrap().objects.len()
    }
}

fn key_for_kind(kind: &str, namespace: &str, name: &str) -> (String, String, String) {
    let def = RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .unwrap_or_else(|| panic!("emulator has no kind {kind}"));
    let namespace = if def.namespaced {
        namespace.to_string()
    } else {
        String::new()
    };
    (def.qualified(), namespace, name.to_string())
}

fn apply_locked(store: &mut Store, mut object: Value) {
    let api_version = object["apiVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    if kind.ends_with("List") {
        for item in object["items"].as_array().cloned().unwrap_or_default() {
            apply_locked(store, item);
        }
        return;
    }
    let def = find_by_kind(&api_version, &kind)
        .unwrap_or_else(|| panic!("emulator does not serve {api_version} {kind}"));
    let original = object.clone();
    let name = object["metadata"]["name"]
        .as_str()
        .expect("seed objects have a name")
        .to_string();
    let namespace = if def.namespaced {
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        object["metadata"]["namespace"] = json!(ns);
        if !store
            .objects
            .contains_key(&("namespaces".to_string(), String::new(), ns.clone()))
        {
            apply_locked(
                store,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            );
        }
        ns
    } else {
        String::new()
    };
    apply_defaults(store, def, &mut object);
    let key = (def.qualified(), namespace.clone(), name.clone());
    store.resource_version += 1;
    let rv = store.resource_version;
    let previous = store.objects.get(&key).cloned();
    let meta = object["metadata"].as_object_mut().unwrap();
    match &previous {
        Some(old) => {
            meta.insert("uid".into(), old["metadata"]["uid"].clone());
            meta.insert(
                "creationTimestamp".into(),
                old["metadata"]["creationTimestamp"].clone(),
            );
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            let bumped = if old.get("spec") != object.get("spec") {
                generation + 1
            } else {
                generation
            };
            object["metadata"]["generation"] = json!(bumped);
        }
        None => {
            store.next_uid += 1;
            meta.insert(
                "uid".into(),
                json!(format!("00000000-0000-4000-8000-{:012}", store.next_uid)),
            );
            meta.insert("creationTimestamp".into(), json!("2026-01-01T00:00:00Z"));
            meta.insert("generation".into(), json!(1));
        }
    }
    let meta = object["metadata"].as_object_mut().unwrap();
    meta.insert("resourceVersion".into(), json!(rv.to_string()));
    // kubectl apply keeps the whole applied object in an annotation, Secrets included.
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    annotations["kubectl.kubernetes.io/last-applied-configuration"] = json!(original.to_string());
    // Seeding is `kubectl apply` (client-side): recorded as that manager's Update.
    let managed = write::managed_fields(
        previous.as_ref(),
        &object,
        None,
        kube_schema::builtin().root(&api_version, &kind),
        write::Entry {
            manager: "kubectl-client-side-apply".into(),
            operation: "Update".into(),
            subresource: None,
            api_version: api_version.clone(),
            time: "2026-01-01T00:00:00Z".into(),
        },
    );
    object["metadata"]["managedFields"] = managed;
    store.put(key, object.clone());
    side_effects(store, def, &object);
}

/// What controllers would create: namespace defaults, a Deployment's
/// ReplicaSet, a Service's Endpoints.
fn side_effects(store: &mut Store, def: &ResourceDef, object: &Value) {
    let name = object["metadata"]["name"].as_str().unwrap().to_string();
    let namespace = object["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let owner = |kind: &str| {
        json!([{"apiVersion": def.api_version(), "kind": kind, "name": name, "uid": object["metadata"]["uid"],
                "controller": true, "blockOwnerDeletion": true}])
    };
    let insert = |store: &mut Store, qualified: &str, ns: &str, value: Value| {
        let child_name = value["metadata"]["name"].as_str().unwrap().to_string();
        let key = (qualified.to_string(), ns.to_string(), child_name);
        if !store.objects.contains_key(&key) {
            store.resource_version += 1;
            store.next_uid += 1;
            let mut value = value;
            value["metadata"]["resourceVersion"] = json!(store.resource_version.to_string());
            value["metadata"]["uid"] =
                json!(format!("00000000-0000-4000-8000-{:012}", store.next_uid));
            value["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
            store.put(key, value);
        }
    };
    match def.kind {
        "Namespace" => {
            insert(
                store,
                "serviceaccounts",
                &name,
                json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": name}}),
            );
            insert(
                store,
                "configmaps",
                &name,
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "kube-root-ca.crt", "namespace": name},
                "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}}),
            );
        }
        "Deployment" => {
            let mut template = object["spec"]["template"].clone();
            template["metadata"]["labels"]["pod-template-hash"] = json!("5d4f8c7b9");
            insert(
                store,
                "replicasets.apps",
                &namespace,
                json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": format!("{name}-5d4f8c7b9"), "namespace": namespace,
                             "labels": template["metadata"]["labels"], "ownerReferences": owner("Deployment")},
                "spec": {"replicas": object["spec"]["replicas"], "selector": object["spec"]["selector"], "template": template}}),
            );
        }
        "Service" => {
            insert(
                store,
                "endpoints",
                &namespace,
                json!({"apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": name, "namespace": namespace}, "subsets": []}),
            );
        }
        _ => {}
    }
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if !map.contains_key(key) || map[key].is_null() {
        map.insert(key.to_string(), value);
    }
}

/// The defaults kube-apiserver fills in, for the kinds the tests use.
fn apply_defaults(store: &mut Store, def: &ResourceDef, object: &mut Value) {
    match def.kind {
        "Deployment" => {
            let spec = object["spec"]
                .as_object_mut()
                .expect("Deployment has a spec");
            set_default(spec, "replicas", json!(1));
            set_default(spec, "revisionHistoryLimit", json!(10));
            set_default(spec, "progressDeadlineSeconds", json!(600));
            set_default(
                spec,
                "strategy",
                json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
            );
            if let Some(pod) = spec
                .get_mut("template")
                .and_then(|t| t.get_mut("spec"))
                .and_then(Value::as_object_mut)
            {
                pod_defaults(pod);
            }
            let replicas = spec["replicas"].clone();
            object["status"] = json!({"observedGeneration": 1, "replicas": replicas, "readyReplicas": replicas,
                "updatedReplicas": replicas, "availableReplicas": replicas,
                "conditions": [{"type": "Available", "status": "True"}]});
            object["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("1");
        }
        "Service" => {
            let spec = object["spec"].as_object_mut().expect("Service has a spec");
            store.next_ip += 1;
            let ip = format!("10.96.{}.{}", store.next_ip / 250, store.next_ip % 250 + 1);
            set_default(spec, "type", json!("ClusterIP"));
            set_default(spec, "sessionAffinity", json!("None"));
            set_default(spec, "clusterIP", json!(ip));
            set_default(spec, "clusterIPs", json!([ip]));
            set_default(spec, "ipFamilies", json!(["IPv4"]));
            set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
            set_default(spec, "internalTrafficPolicy", json!("Cluster"));
            for port in spec
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                let port = port.as_object_mut().unwrap();
                set_default(port, "protocol", json!("TCP"));
                let number = port["port"].clone();
                set_default(port, "targetPort", number);
            }
            object["status"] = json!({"loadBalancer": {}});
        }
        "Secret" => {
            let map = object.as_object_mut().unwrap();
            set_default(map, "type", json!("Opaque"));
            if let Some(Value::Object(string_data)) = map.remove("stringData") {
                let data = map.entry("data").or_insert_with(|| json!({}));
                for (key, value) in string_data {
                    let text = value.as_str().unwrap_or_default().to_string();
                    data[key] = json!(base64::engine::general_purpose::STANDARD.encode(text));
                }
            }
        }
        "Namespace" => {
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Active"});
            let name = object["metadata"]["name"].clone();
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
        }
        _ => {}
    }
}

fn pod_defaults(pod: &mut Map<String, Value>) {
    set_default(pod, "restartPolicy", json!("Always"));
    set_default(pod, "dnsPolicy", json!("ClusterFirst"));
    set_default(pod, "schedulerName", json!("default-scheduler"));
    set_default(pod, "securityContext", json!({}));
    set_default(pod, "terminationGracePeriodSeconds", json!(30));
    for list in ["containers", "initContainers"] {
        for container in pod
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let container = container.as_object_mut().unwrap();
            set_default(
                container,
                "terminationMessagePath",
                json!("/dev/termination-log"),
            );
            set_default(container, "terminationMessagePolicy", json!("File"));
            let image = container.get("image").and_then(Value::as_str).unwrap_or("");
            let tag = image
                .rsplit('/')
                .next()
                .unwrap_or("")
                .split_once(':')
                .map(|(_, t)| t);
            let policy = if matches!(tag, None | Some("latest")) {
                "Always"
            } else {
                "IfNotPresent"
            };
            set_default(container, "imagePullPolicy", json!(policy));
            set_default(container, "resources", json!({}));
            for port in container
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                set_default(port.as_object_mut().unwrap(), "protocol", json!("TCP"));
            }
            // The server stores quantities in canonical form.
            if let Some(resources) = container
                .get_mut("resources")
                .and_then(Value::as_object_mut)
            {
                for section in resources.values_mut() {
                    for quantity in section
                        .as_object_mut()
                        .into_iter()
                        .flat_map(|m| m.values_mut())
                    {
                        *quantity = json!(canonical_quantity(quantity));
                    }
                }
            }
        }
    }
}

/// `0.5` → `500m`, `1024Mi` → `1Gi`, `1` → `1`: what the API server echoes back.
fn canonical_quantity(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if let Some(number) = text.strip_suffix("Mi").and_then(|n| n.parse::<u64>().ok()) {
        if number % 1024 == 0 {
            return format!("{}Gi", number / 1024);
        }
    }
    if let Ok(number) = text.parse::<f64>() {
        if number.fract() != 0.0 {
            return format!("{}m", (number * 1000.0).round() as i64);
        }
    }
    text
}

pub(crate) fn status(code: u16, reason: &str, message: String, details: Value) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "details": details, "code": code});
    (StatusCode::from_u16(code).unwrap(), axum::Json(body)).into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

async fn handle(State(inner): State<Arc<Inner>>, request: Request<Body>) -> Response {
    inner.requests.fetch_add(1, Ordering::SeqCst);
    let latency = inner.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let as_metadata = request
        .headers()
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=PartialObjectMetadata"));
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    inner.paths.lock().unwrap().push(if query.is_empty() {
        path.clone()
    } else {
        format!("{path}?{query}")
    });
    let params: BTreeMap<String, String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect();
    if request.method() != Method::GET || path.ends_with("/scale") {
        if request.method() != Method::GET {
            inner.writes.fetch_add(1, Ordering::SeqCst);
        }
        let method = request.method().clone();
        let (content_type, user_agent) = {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            (header("content-type"), header("user-agent"))
        };
        let body = axum::body::to_bytes(request.into_body(), 64 << 20)
            .await
            .unwrap_or_default();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return status(404, "NotFound", format!("no such path {path}"), json!({})),
        };
        return write::handle(
            &inner,
            write::WriteRequest {
                method,
                group,
                version,
                rest,
                params: &params,
                content_type,
                user_agent,
                body: &body,
            },
        );
    }
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segments.as_slice() {
        ["version"] => ok(
            json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-emulator", "gitCommit": "0",
            "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23", "compiler": "gc",
            "platform": "linux/amd64"}),
        ),
        ["api"] => ok(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]})),
        ["apis"] => {
            let mut groups: Vec<&str> = RESOURCES
                .iter()
                .map(|r| r.group)
                .filter(|g| !g.is_empty())
                .collect();
            groups.dedup();
            let groups: Vec<Value> = groups
                .iter()
                .map(|g| {
                    let gv = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
                    json!({"name": g, "versions": [gv], "preferredVersion": gv})
                })
                .collect();
            ok(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["api", version, rest @ ..] => serve_group(&inner, "", version, rest, &params, as_metadata),
        ["apis", group, version, rest @ ..] => {
            serve_group(&inner, group, version, rest, &params, as_metadata)
        }
        _ => status(
            404,
            "NotFound",
            format!("the server could not find the requested resource {path}"),
            json!({}),
        ),
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn serve_group(
    inner: &Arc<Inner>,
    group: &str,
    version: &str,
    rest: &[&str],
    params: &BTreeMap<String, String>,
    as_metadata: bool,
) -> Response {
    let served: Vec<&ResourceDef> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if served.is_empty() {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            json!({}),
        );
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let (plural, namespace, name) = match rest {
        [] => {
            let mut resources = Vec::new();
            for r in &served {
                resources.push(json!({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                    "kind": r.kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}));
                if matches!(r.kind, "Deployment" | "ReplicaSet") {
                    resources.push(
                        json!({"name": format!("{}/status", r.plural), "singularName": "",
                        "namespaced": true, "kind": r.kind, "verbs": ["get", "patch", "update"]}),
                    );
                }
            }
            return ok(
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
                             "resources": resources}),
            );
        }
        ["namespaces", namespace, plural] => (*plural, Some(*namespace), None),
        ["namespaces", namespace, plural, name] => (*plural, Some(*namespace), Some(*name)),
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, None, Some(*name)),
        _ => {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource".into(),
                json!({}),
            )
        }
    };
    let Some(def) = find_by_plural(group, version, plural) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource".into(),
            json!({}),
        );
    };
    let verb = match name {
        Some(_) => "get",
        None if watch::requested(params) => "watch",
        None => "list",
    };
    if inner.forbidden.lock().unwrap().contains(&def.qualified()) {
        let scope = match namespace {
            Some(ns) => format!(" in the namespace \"{ns}\""),
            None => " at the cluster scope".to_string(),
        };
        return status(403, "Forbidden",
            format!("{} is forbidden: User \"system:serviceaccount:driftwatch:driftwatch\" cannot {verb} resource \"{}\" in API group \"{}\"{scope}",
                def.qualified(), def.plural, def.group),
            json!({"group": def.group, "kind": def.plural}));
    }
    if verb == "watch" {
        return watch::serve(inner, def, namespace, params, as_metadata);
    }
    let store = inner.store.lock().unwrap();
    let qualified = def.qualified();
    if let Some(name) = name {
        let key = (
            qualified.clone(),
            if def.namespaced {
                namespace.unwrap_or("").to_string()
            } else {
                String::new()
            },
            name.to_string(),
        );
        return match store.objects.get(&key) {
            Some(object) if as_metadata => ok(watch::metadata_only(object)),
            Some(object) => ok(object.clone()),
            None => status(
                404,
                "NotFound",
                format!("{qualified} \"{name}\" not found"),
                json!({"name": name, "group": def.group, "kind": def.plural}),
            ),
        };
    }
    let selector = params
        .get("labelSelector")
        .map(|s| parse_selector(s))
        .unwrap_or_default();
    let mut items: Vec<&Value> = store
        .in_scope(&qualified, namespace)
        .filter(|v| selector_matches(&selector, v))
        .collect();
    let offset: usize = match params.get("continue") {
        Some(token) => match token.split_once('-').and_then(|(_, o)| o.parse().ok()) {
            Some(offset) => offset,
            None => {
                return status(
                    400,
                    "BadRequest",
                    "invalid continue token".into(),
                    json!({}),
                )
            }
        },
        None => 0,
    };
    let limit: usize = params
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let total = items.len();
    items = items.into_iter().skip(offset).take(limit).collect();
    let next = offset + items.len();
    let mut metadata = json!({"resourceVersion": store.resource_version.to_string()});
    if next < total {
        metadata["continue"] = json!(format!("{}-{next}", store.resource_version));
        metadata["remainingItemCount"] = json!(total - next);
    }
    if as_metadata {
        let items: Vec<Value> = items.into_iter().map(watch::metadata_only).collect();
        return ok(
            json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": metadata, "items": items}),
        );
    }
    // Like the real server, list items carry no apiVersion/kind. Written
    // straight from the store: no copy of the page's objects.
    let head = json!({"kind": format!("{}List", def.kind), "apiVersion": group_version, "metadata": metadata});
    let mut body = serde_json::to_vec(&head).expect("lists serialize");
    body.pop(); // the closing brace: the items follow
    body.extend_from_slice(b",\"items\":");
    let items: Vec<ListItem> = items.into_iter().map(ListItem).collect();
    serde_json::to_writer(&mut body, &items).expect("lists serialize");
    body.push(b'}');
    (
        StatusCode::OK,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// A stored object as a list item: without apiVersion and kind.
struct ListItem<'a>(&'a Value);

impl serde::Serialize for ListItem<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(fields) = self.0 else {
            return self.0.serialize(serializer);
        };
        let kept = fields
            .iter()
            .filter(|(key, _)| !matches!(key.as_str(), "apiVersion" | "kind"));
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in kept {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// (key, value, equals): `a=b`, `a==b`, `a!=b`, `a`, `!a`.
pub(crate) fn parse_selector(text: &str) -> Vec<(String, Option<String>, bool)> {
    text.split(',')
        .filter(|t| !t.is_empty())
        .map(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                (k.to_string(), Some(v.to_string()), false)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k.to_string(), Some(v.to_string()), true)
            } else if let Some(k) = term.strip_prefix('!') {
                (k.to_string(), None, false)
            } else {
                (term.to_string(), None, true)
            }
        })
        .collect()
}

pub(crate) fn selector_matches(
    selector: &[(String, Option<String>, bool)],
    object: &Value,
) -> bool {
    selector.iter().all(|(key, value, positive)| {
        let actual = object["metadata"]["labels"]
            .get(key)
            .and_then(Value::as_str);
        let hit = match value {
            Some(v) => actual == Some(v.as_str()),
            None => actual.is_some(),
        };
        hit == *positive
    })
}
