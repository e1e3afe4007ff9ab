//! Writes, as a real API server accepts them from kubectl: POST (create),
//! PUT (replace, with a resourceVersion precondition), PATCH as JSON patch,
//! merge patch, strategic merge patch (with kubectl's `$setElementOrder`,
//! `$retainKeys`, `$patch` and `$deleteFromPrimitiveList` directives) and
//! server-side apply, DELETE, and the `scale` subresource (GET, PUT, PATCH).
//!
//! Every write takes the next resourceVersion from the one global counter
//! and records `metadata.managedFields` the way the API server does: one
//! entry per (manager, operation, subresource), each owning a FieldsV1 set.
//! An Update owns the fields it changed and takes them from every other
//! manager; an Apply owns exactly the fields of the configuration it sent.
//! List items are named by the API schema (`k:{"name":"web"}` for keyed
//! lists, `v:"x"` for sets; atomic lists are owned whole), from the same
//! generated table driftwatch reads.

use std::collections::BTreeMap;

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use kube_schema::TypeDef;
use serde_json::{json, Value};

use crate::defaults::{apply_defaults, side_effects};
use crate::reply::{ok, status};
use crate::resources::{find_by_plural, ResourceDef};
use crate::store::{Inner, Store};

mod managed_fields;
mod patch;

pub(crate) use managed_fields::{managed_fields, Entry};
use patch::{json_patch, merge_patch, strategic};

/// One parsed write request.
pub(crate) struct WriteRequest<'a> {
    pub method: Method,
    pub group: &'a str,
    pub version: &'a str,
    pub rest: &'a [&'a str],
    pub params: &'a BTreeMap<String, String>,
    pub content_type: String,
    pub user_agent: String,
    pub body: &'a [u8],
}

fn not_found(what: String) -> Response {
    status(404, "NotFound", what, json!({}))
}

fn bad_request(message: String) -> Response {
    status(400, "BadRequest", message, json!({}))
}

fn created(body: Value) -> Response {
    (axum::http::StatusCode::CREATED, axum::Json(body)).into_response()
}

/// Handles a request that changes something (or reads `…/scale`).
pub(crate) fn handle(inner: &Inner, request: WriteRequest<'_>) -> Response {
    let (plural, namespace, name, subresource) = match request.rest {
        ["namespaces", ns, plural] => (*plural, Some(*ns), None, None),
        ["namespaces", ns, plural, name] => (*plural, Some(*ns), Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (*plural, Some(*ns), Some(*name), Some(*sub)),
        [plural] => (*plural, None, None, None),
        [plural, name] => (*plural, None, Some(*name), None),
        [plural, name, sub] => (*plural, None, Some(*name), Some(*sub)),
        _ => return not_found("the server could not find the requested resource".into()),
    };
    let Some(def) = find_by_plural(request.group, request.version, plural) else {
        return not_found("the server could not find the requested resource".into());
    };
    if inner.forbidden.lock().unwrap().contains(&def.qualified()) {
        return status(
            403,
            "Forbidden",
            format!("{} is forbidden", def.qualified()),
            json!({"group": def.group, "kind": def.plural}),
        );
    }
    let namespace = if def.namespaced {
        namespace.unwrap_or("default").to_string()
    } else {
        String::new()
    };
    // kubectl names itself in fieldManager; a client that does not gets its
    // user agent's program name, as the API server does.
    let manager = request
        .params
        .get("fieldManager")
        .cloned()
        .unwrap_or_else(|| {
            request
                .user_agent
                .split('/')
                .next()
                .unwrap_or("unknown")
                .to_string()
        });
    let body: Option<Value> = if request.body.is_empty() {
        None
    } else if request
        .content_type
        .starts_with("application/apply-patch+yaml")
    {
        match std::str::from_utf8(request.body)
            .ok()
            .map(kube_yaml::parse_document)
        {
            Some(Ok(value)) => Some(value),
            _ => return bad_request("the apply configuration is not valid YAML".into()),
        }
    } else {
        match serde_json::from_slice(request.body) {
            Ok(value) => Some(value),
            Err(err) => return bad_request(format!("the body is not valid JSON: {err}")),
        }
    };
    let mut store = inner.store.lock().unwrap();
    let key = |name: &str| (def.qualified(), namespace.clone(), name.to_string());
    let write = Write {
        def,
        manager: &manager,
        content_type: &request.content_type,
    };
    match (&request.method, name, subresource) {
        (&Method::POST, None, None) => {
            let Some(mut object) = body else {
                return bad_request("create needs an object".into());
            };
            let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str) else {
                return bad_request("metadata.name is required".into());
            };
            let name = name.to_string();
            if store.objects.contains_key(&key(&name)) {
                return status(
                    409,
                    "AlreadyExists",
                    format!("{} \"{name}\" already exists", def.qualified()),
                    json!({"name": name, "group": def.group, "kind": def.plural}),
                );
            }
            if def.namespaced {
                object["metadata"]["namespace"] = json!(namespace);
            }
            created(write.finish(&mut store, key(&name), None, object, "Update", None, None))
        }
        (method, Some(name), None) => {
            let old = store.objects.get(&key(name)).cloned();
            match *method {
                Method::DELETE => match old {
                    // DeleteOptions.preconditions, as a careful client sends
                    // them (delete only the version it read).
                    Some(old)
                        if body
                            .as_ref()
                            .and_then(|b| b.pointer("/preconditions/resourceVersion"))
                            .is_some_and(|wanted| {
                                Some(wanted) != old.pointer("/metadata/resourceVersion")
                            }) =>
                    {
                        conflict(def, name)
                    }
                    Some(_) => match store.remove(&key(name)) {
                        Some(object) => ok(object),
                        None => not_found(format!("{} \"{name}\" not found", def.qualified())),
                    },
                    None => not_found(format!("{} \"{name}\" not found", def.qualified())),
                },
                Method::PUT => {
                    let (Some(old), Some(new)) = (old, body) else {
                        return not_found(format!("{} \"{name}\" not found", def.qualified()));
                    };
                    if let Some(wanted) = new.pointer("/metadata/resourceVersion") {
                        if Some(wanted) != old.pointer("/metadata/resourceVersion") {
                            return conflict(def, name);
                        }
                    }
                    ok(write.finish(&mut store, key(name), Some(old), new, "Update", None, None))
                }
                Method::PATCH => {
                    let Some(patch) = body else {
                        return bad_request("a patch needs a body".into());
                    };
                    let apply = request.content_type.starts_with("application/apply-patch");
                    // A resourceVersion in a merge or strategic patch is a
                    // precondition, as on a real server.
                    if let (Some(old), Some(wanted)) =
                        (&old, patch.pointer("/metadata/resourceVersion"))
                    {
                        if !apply && Some(wanted) != old.pointer("/metadata/resourceVersion") {
                            return conflict(def, name);
                        }
                    }
                    let schema = schema_for(&store, def);
                    let base = match (&old, apply) {
                        (Some(old), _) => old.clone(),
                        (None, true) => {
                            let mut fresh = json!({"apiVersion": def.api_version(), "kind": def.kind,
                                "metadata": {"name": name}});
                            if def.namespaced {
                                fresh["metadata"]["namespace"] = json!(namespace);
                            }
                            fresh
                        }
                        (None, false) => {
                            return not_found(format!("{} \"{name}\" not found", def.qualified()))
                        }
                    };
                    let new = match write.patch(&base, &patch, schema.as_ref()) {
                        Ok(new) => new,
                        Err(message) => return bad_request(message),
                    };
                    let operation = if apply { "Apply" } else { "Update" };
                    let applied = apply.then_some(&patch);
                    let result =
                        write.finish(&mut store, key(name), old, new, operation, None, applied);
                    ok(result)
                }
                _ => status(
                    405,
                    "MethodNotAllowed",
                    "method not allowed".into(),
                    json!({}),
                ),
            }
        }
        (method, Some(name), Some("scale"))
            if def.kind == "Deployment" || def.kind == "ReplicaSet" =>
        {
            let Some(old) = store.objects.get(&key(name)).cloned() else {
                return not_found(format!("{} \"{name}\" not found", def.qualified()));
            };
            let scale = scale_of(&old);
            if *method == Method::GET {
                return ok(scale);
            }
            let new_scale = match (method, body) {
                (&Method::PUT, Some(body)) => body,
                (&Method::PATCH, Some(patch)) => match write.patch(&scale, &patch, None) {
                    Ok(new) => new,
                    Err(message) => return bad_request(message),
                },
                _ => return bad_request("scale needs a body".into()),
            };
            let Some(replicas) = new_scale.pointer("/spec/replicas").cloned() else {
                return bad_request("spec.replicas is required".into());
            };
            let mut new = old.clone();
            new["spec"]["replicas"] = replicas;
            let result = write.finish(
                &mut store,
                key(name),
                Some(old),
                new,
                "Update",
                Some("scale"),
                None,
            );
            ok(scale_of(&result))
        }
        _ => not_found("the server could not find the requested resource".into()),
    }
}

fn conflict(def: &ResourceDef, name: &str) -> Response {
    status(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            def.qualified()
        ),
        json!({"name": name, "group": def.group, "kind": def.plural}),
    )
}

/// The `autoscaling/v1` Scale of a Deployment or ReplicaSet.
fn scale_of(object: &Value) -> Value {
    let meta = &object["metadata"];
    let selector = object
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                     "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
        "spec": {"replicas": object.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": object.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector}})
}

/// The list types of `def`: the generated table for built-in kinds, the
/// stored CRD's schema for custom resources.
fn schema_for(store: &Store, def: &ResourceDef) -> Option<TypeDef> {
    let schemas = kube_schema::builtin();
    if let Some(root) = schemas.root(&def.api_version(), def.kind) {
        return Some(root.clone());
    }
    let crd = store.objects.get(&(
        "customresourcedefinitions.apiextensions.k8s.io".to_string(),
        String::new(),
        format!("{}.{}", def.plural, def.group),
    ))?;
    let version = crd
        .pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v["name"] == def.version)?;
    Some(kube_schema::from_crd_schema(
        version.pointer("/schema/openAPIV3Schema")?,
    ))
}

struct Write<'a> {
    def: &'static ResourceDef,
    manager: &'a str,
    content_type: &'a str,
}

impl Write<'_> {
    fn patch(
        &self,
        base: &Value,
        patch: &Value,
        schema: Option<&TypeDef>,
    ) -> Result<Value, String> {
        let schemas = kube_schema::builtin();
        let kind = self.content_type.split(';').next().unwrap_or("").trim();
        match kind {
            "application/json-patch+json" => json_patch(base, patch),
            "application/merge-patch+json" => Ok(merge_patch(base, patch)),
            "application/strategic-merge-patch+json" => {
                let mut out = base.clone();
                strategic(&mut out, patch, schemas, schema, false);
                Ok(out)
            }
            "application/apply-patch+yaml" => {
                let mut out = base.clone();
                strategic(&mut out, patch, schemas, schema, true);
                Ok(out)
            }
            other => Err(format!("unsupported patch type {other:?}")),
        }
    }

    /// Stores `new` (defaults, identity, resourceVersion, managedFields) and
    /// runs the controllers' side effects; returns the stored object.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        store: &mut Store,
        key: (String, String, String),
        old: Option<Value>,
        mut new: Value,
        operation: &str,
        subresource: Option<&str>,
        applied: Option<&Value>,
    ) -> Value {
        new["apiVersion"] = json!(self.def.api_version());
        new["kind"] = json!(self.def.kind);
        if self.def.namespaced {
            new["metadata"]["namespace"] = json!(key.1);
        }
        apply_defaults(store, self.def, &mut new);
        let schema = schema_for(store, self.def);
        let now = now_rfc3339();
        let meta = new["metadata"]
            .as_object_mut()
            .expect("objects have metadata");
        meta.remove("resourceVersion");
        match &old {
            Some(old) => {
                for field in ["uid", "creationTimestamp"] {
                    meta.insert(field.into(), old["metadata"][field].clone());
                }
                let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
                let changed_spec = old.get("spec") != new.get("spec");
                new["metadata"]["generation"] = json!(generation + i64::from(changed_spec));
            }
            None => {
                store.next_uid += 1;
                meta.insert(
                    "uid".into(),
                    json!(format!("00000000-0000-4000-8000-{:012}", store.next_uid)),
                );
                meta.insert("creationTimestamp".into(), json!(now));
                meta.insert("generation".into(), json!(1));
            }
        }
        let managed = managed_fields(
            old.as_ref(),
            &new,
            applied,
            schema.as_ref(),
            Entry {
                manager: self.manager.to_string(),
                operation: operation.to_string(),
                subresource: subresource.map(String::from),
                api_version: self.def.api_version(),
                time: now,
            },
        );
        store.resource_version += 1;
        let meta = new["metadata"].as_object_mut().unwrap();
        meta.insert("managedFields".into(), managed);
        meta.insert(
            "resourceVersion".into(),
            json!(store.resource_version.to_string()),
        );
        store.put(key, new.clone());
        side_effects(store, self.def, &new);
        new
    }
}

/// Now, as the API server writes times: RFC 3339 in UTC, whole seconds.
pub(crate) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches() {
        let base = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}],
            "tolerations": [{"key": "k"}]}});
        let ty = kube_schema::builtin().root("v1", "Pod");
        let write = |content_type: &str, patch: Value| {
            let w = Write {
                def: &crate::RESOURCES[0],
                manager: "m",
                content_type,
            };
            w.patch(&base, &patch, ty).unwrap()
        };
        let smp = write(
            "application/strategic-merge-patch+json",
            json!({"spec": {"$setElementOrder/containers": [{"name": "b"}, {"name": "a"}],
                "containers": [{"name": "a", "image": "z"}], "tolerations": [{"key": "new"}]}}),
        );
        assert_eq!(
            smp["spec"]["containers"],
            json!([{"name": "b", "image": "y"}, {"name": "a", "image": "z"}])
        );
        assert_eq!(smp["spec"]["tolerations"], json!([{"key": "new"}]));
        let merge = write(
            "application/merge-patch+json",
            json!({"spec": {"containers": null}}),
        );
        assert!(merge["spec"].get("containers").is_none());
        let jp = write(
            "application/json-patch+json",
            json!([{"op": "replace", "path": "/spec/containers/0/image", "value": "q"}]),
        );
        assert_eq!(jp["spec"]["containers"][0]["image"], "q");
    }

    #[test]
    fn times_are_rfc3339() {
        let now = now_rfc3339();
        assert_eq!(now.len(), 20, "{now}");
        assert!(now.starts_with("20") && now.ends_with('Z'));
    }
}
