//! The Kubernetes probe's own data: the probe value, the watch-fed state
//! it keeps between checks, and the keys its parts share. A leaf the other
//! files of the layer import (so none of them imports `mod.rs`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cache::{self, LiveCache};
use super::config::KubernetesConfig;
use super::ignore::IgnoreRule;
use super::live::{DiscoveryCache, ResourceType};
use super::manifest::{Loaded, Manifest};
use crate::model::outcome::FieldChange;

pub struct KubernetesProbe {
    pub(super) config: KubernetesConfig,
    pub(super) kubeconfig: Option<PathBuf>,
    pub(super) include: Vec<glob::Pattern>,
    pub(super) exclude: Vec<glob::Pattern>,
    pub(super) ignore: Vec<IgnoreRule>,
    pub(super) request_timeout: Duration,
    pub(super) discovery: DiscoveryCache,
    /// The watch-fed cache (`watch = true`), its long-lived client, and the
    /// manifests of the last commit checked.
    pub(super) watching: Option<Watching>,
}

pub(super) struct Watching {
    pub(super) cache: LiveCache,
    pub(super) client: tokio::sync::OnceCell<kube::Client>,
    pub(super) debounce: Duration,
    pub(super) manifests: Mutex<Option<(String, PathBuf, Arc<Loaded>)>>,
    /// CRD schemas read for the manifests above (by apiVersion and kind).
    pub(super) crd_schemas: Mutex<HashMap<(String, String), Option<kube_schema::TypeDef>>>,
    /// The difference lines of each declared object against the manifests
    /// above, with the live resourceVersion they were computed for: a check
    /// compares again only objects that changed since.
    pub(super) compared: Mutex<HashMap<ObjectKey, (String, Lines)>>,
}

/// A declared object's difference lines, each with who wrote the live value (empty: in sync).
pub(super) type Lines = Arc<Vec<(String, FieldChange)>>;

/// Declared objects (type index, namespace, name) unchanged since they were last compared.
pub(super) type Known = HashMap<(usize, String, String), Lines>;

/// The declared objects of a check by (type index, namespace, name).
pub(super) type Desired<'a> = BTreeMap<(usize, String, String), &'a Manifest>;

/// Objects read from the watch-fed cache, turned into JSON only when compared.
pub(super) type CachedObjects = HashMap<(usize, String, String), Arc<cache::LiveObject>>;

/// apiVersion, kind, namespace, name.
pub(super) type ObjectKey = (String, String, String, String);

pub(super) fn object_key(resource_type: &ResourceType, namespace: &str, name: &str) -> ObjectKey {
    (
        resource_type.resource.api_version.clone(),
        resource_type.resource.kind.clone(),
        namespace.to_string(),
        name.to_string(),
    )
}
