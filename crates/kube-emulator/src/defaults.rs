//! Seeding as an API server and its controllers would leave an object: `apply_locked` stores it
//! with the server-side defaults kube-apiserver fills in (pod and container defaults, canonical
//! quantities, uid, resourceVersion, creationTimestamp) and the objects controllers create beside
//! it (a namespace's default ServiceAccount, a Deployment's ReplicaSet, a Service's Endpoints), so
//! naive diffs fail against the emulator as they fail against a cluster.

use base64::Engine;
use serde_json::{json, Map, Value};

use crate::resources::{find_by_kind, ResourceDef};
use crate::store::Store;
use crate::write;

pub(crate) fn apply_locked(store: &mut Store, mut object: Value) {
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
pub(crate) fn side_effects(store: &mut Store, def: &ResourceDef, object: &Value) {
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
pub(crate) fn apply_defaults(store: &mut Store, def: &ResourceDef, object: &mut Value) {
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
