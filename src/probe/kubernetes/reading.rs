//! Reading live state for a check: which (type, namespace) pairs to read and whether to LIST or
//! GET them, the watch-fed cache (starting and stopping the watches a check needs, falling back to
//! the LIST/GET reader for scopes that are not synced), and custom resources' schemas from their CRDs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::model::outcome::ProbeError;
use crate::probe::ProbeContext;

use super::cache::{Phase, ScopeKey};
use super::live;
use super::live::{ReadPlan, Reader, ResourceType};
use super::types::{object_key, CachedObjects, Desired, Known, KubernetesProbe, Watching};
use kube_schema as schema;

impl KubernetesProbe {
    /// A custom resource's schema from its CRD; with watching on, read once
    /// per commit so a check from the cache makes no request.
    pub(super) async fn crd_schema(
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
    pub(super) async fn read_cached(
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
    pub(super) fn extra_pairs(
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
    pub(super) fn plan(&self, types: &[ResourceType], desired: &Desired<'_>) -> Vec<ReadPlan> {
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
}
