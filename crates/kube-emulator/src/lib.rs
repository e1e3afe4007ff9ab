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

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

mod defaults;
mod events;
mod reply;
mod resources;
mod selector;
mod serve;
mod store;
pub mod watch;
mod write;

pub use resources::{ResourceDef, RESOURCES, WIDGET_CRD};

use defaults::apply_locked;
use serve::handle;
use store::Inner;

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
