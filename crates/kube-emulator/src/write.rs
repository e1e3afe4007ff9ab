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

use std::collections::{BTreeMap, BTreeSet};

use axum::http::Method;
use axum::response::{IntoResponse, Response};
use kube_schema::{ListType, Schemas, TypeDef};
use serde_json::{json, Map, Value};

use super::{apply_defaults, find_by_plural, side_effects, status, Inner, ResourceDef, Store};

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
                        Some(object) => super::ok(object),
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
                    super::ok(write.finish(
                        &mut store,
                        key(name),
                        Some(old),
                        new,
                        "Update",
                        None,
                        None,
                    ))
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
                    super::ok(result)
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
                return super::ok(scale);
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
            super::ok(scale_of(&result))
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

/// Who wrote: the identity of one managedFields entry.
pub(crate) struct Entry {
    pub manager: String,
    pub operation: String,
    pub subresource: Option<String>,
    pub api_version: String,
    pub time: String,
}

/// The managedFields of `new` after `entry`'s write over `old`.
pub(crate) fn managed_fields(
    old: Option<&Value>,
    new: &Value,
    applied: Option<&Value>,
    schema: Option<&TypeDef>,
    entry: Entry,
) -> Value {
    let schemas = kube_schema::builtin();
    let old_leaves = old.map(|o| leaves(o, schemas, schema)).unwrap_or_default();
    let new_leaves = leaves(new, schemas, schema);
    let changed: BTreeSet<Path> = new_leaves
        .iter()
        .filter(|(path, value)| old_leaves.get(*path) != Some(*value))
        .map(|(path, _)| path.clone())
        .collect();
    let present: BTreeSet<&Path> = new_leaves.keys().collect();
    let same = |e: &Value| {
        e["manager"] == json!(entry.manager)
            && e["operation"] == json!(entry.operation)
            && e.get("subresource").and_then(Value::as_str) == entry.subresource.as_deref()
    };
    let previous: Vec<Value> = old
        .and_then(|o| o.pointer("/metadata/managedFields"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mine_before: BTreeSet<Path> = previous
        .iter()
        .find(|e| same(e))
        .map(|e| paths_of(&e["fieldsV1"]))
        .unwrap_or_default();
    let mine: BTreeSet<Path> = match applied {
        Some(config) => leaves(config, schemas, schema)
            .into_keys()
            .filter(|p| present.contains(p))
            .collect(),
        None => mine_before
            .union(&changed)
            .filter(|p| present.contains(p))
            .cloned()
            .collect(),
    };
    let mut out = Vec::new();
    for e in previous.iter().filter(|e| !same(e)) {
        let kept: BTreeSet<Path> = paths_of(&e["fieldsV1"])
            .into_iter()
            .filter(|p| present.contains(p) && !(changed.contains(p) && mine.contains(p)))
            .collect();
        if !kept.is_empty() {
            let mut e = e.clone();
            e["fieldsV1"] = fields_v1(&kept);
            out.push(e);
        }
    }
    if !mine.is_empty() {
        let mut e = json!({"manager": entry.manager, "operation": entry.operation,
            "apiVersion": entry.api_version, "time": entry.time, "fieldsType": "FieldsV1",
            "fieldsV1": fields_v1(&mine)});
        if let Some(sub) = entry.subresource {
            e["subresource"] = json!(sub);
        }
        out.push(e);
    }
    Value::Array(out)
}

/// A field path in FieldsV1 spelling: `f:spec`, `k:{"name":"web"}`, `v:"x"`, `.`.
type Path = Vec<String>;

/// Every owned leaf of an object with its value (identity and server
/// fields left out, as the API server leaves them out).
fn leaves(object: &Value, schemas: &Schemas, root: Option<&TypeDef>) -> BTreeMap<Path, Value> {
    let mut out = BTreeMap::new();
    let Value::Object(map) = object else {
        return out;
    };
    for (key, value) in map {
        if matches!(key.as_str(), "apiVersion" | "kind" | "status") {
            continue;
        }
        let mut value = value.clone();
        if key == "metadata" {
            if let Value::Object(meta) = &mut value {
                for server in [
                    "name",
                    "namespace",
                    "uid",
                    "resourceVersion",
                    "generation",
                    "creationTimestamp",
                    "managedFields",
                    "selfLink",
                ] {
                    meta.remove(server);
                }
                if meta.is_empty() {
                    continue;
                }
            }
        }
        let field = root.and_then(|t| t.fields.get(key));
        walk_leaves(&[format!("f:{key}")], &value, schemas, field, &mut out);
    }
    out
}

fn walk_leaves(
    path: &[String],
    value: &Value,
    schemas: &Schemas,
    field: Option<&kube_schema::Field>,
    out: &mut BTreeMap<Path, Value>,
) {
    let ty = field
        .and_then(|f| f.ty.as_ref())
        .and_then(|t| schemas.resolve(t));
    let child = |step: String| {
        let mut p = path.to_vec();
        p.push(step);
        p
    };
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let inner = if field.is_some_and(|f| f.map_values) {
                    // Map entries share the value type: the map's own field, minus the map.
                    let as_value = field.map(|f| kube_schema::Field {
                        list: None,
                        map_values: false,
                        ty: f.ty.clone(),
                        quantity: f.quantity,
                    });
                    walk_leaves(&child(format!("f:{k}")), v, schemas, as_value.as_ref(), out);
                    continue;
                } else {
                    ty.and_then(|t| t.fields.get(k))
                };
                walk_leaves(&child(format!("f:{k}")), v, schemas, inner, out);
            }
        }
        Value::Array(items) => match field.and_then(|f| f.list.as_ref()) {
            Some(ListType::Map(keys)) if items.iter().all(Value::is_object) => {
                for item in items {
                    let id: Map<String, Value> = keys
                        .iter()
                        .filter_map(|k| {
                            item.get(k)
                                .or_else(|| schemas.key_default(k))
                                .map(|v| (k.clone(), v.clone()))
                        })
                        .collect();
                    let item_path = child(format!("k:{}", Value::Object(id)));
                    let mut dot = item_path.clone();
                    dot.push(".".into());
                    out.insert(dot, Value::Bool(true));
                    let item_field = ty.map(|_| kube_schema::Field {
                        list: None,
                        map_values: false,
                        ty: field.and_then(|f| f.ty.clone()),
                        quantity: false,
                    });
                    walk_leaves(&item_path, item, schemas, item_field.as_ref(), out);
                }
            }
            Some(ListType::Set) => {
                for item in items {
                    out.insert(child(format!("v:{item}")), Value::Bool(true));
                }
            }
            _ => {
                out.insert(path.to_vec(), value.clone());
            }
        },
        _ => {
            out.insert(path.to_vec(), value.clone());
        }
    }
}

fn paths_of(fields: &Value) -> BTreeSet<Path> {
    fn walk(prefix: &mut Path, node: &Value, out: &mut BTreeSet<Path>) {
        let Value::Object(map) = node else { return };
        for (k, child) in map {
            prefix.push(k.clone());
            if child.as_object().is_some_and(Map::is_empty) {
                out.insert(prefix.clone());
            } else {
                walk(prefix, child, out);
            }
            prefix.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(&mut Vec::new(), fields, &mut out);
    out
}

fn fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut node = &mut root;
        for step in path {
            node = node
                .entry(step.clone())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("fieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

/// RFC 7386.
fn merge_patch(target: &Value, patch: &Value) -> Value {
    match patch {
        Value::Object(patch_map) => {
            let mut out = match target {
                Value::Object(m) => m.clone(),
                _ => Map::new(),
            };
            for (k, v) in patch_map {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// A strategic merge patch (or, with `apply`, a server-side apply
/// configuration, which merges the same way without deletion directives).
fn strategic(
    target: &mut Value,
    patch: &Value,
    schemas: &Schemas,
    ty: Option<&TypeDef>,
    apply: bool,
) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if patch_map.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut replaced = patch_map.clone();
        replaced.remove("$patch");
        *target = Value::Object(replaced);
        return;
    }
    if !target.is_object() {
        *target = json!({});
    }
    let out = target.as_object_mut().unwrap();
    if let Some(Value::Array(retain)) = patch_map.get("$retainKeys") {
        let keep: BTreeSet<&str> = retain.iter().filter_map(Value::as_str).collect();
        out.retain(|k, _| keep.contains(k.as_str()));
    }
    for (k, v) in patch_map {
        if k.starts_with('$') {
            if let Some(list_field) = k.strip_prefix("$deleteFromPrimitiveList/") {
                if let (Some(Value::Array(items)), Value::Array(remove)) =
                    (out.get_mut(list_field), v)
                {
                    items.retain(|item| !remove.contains(item));
                }
            }
            continue;
        }
        let field = ty.and_then(|t| t.fields.get(k));
        if v.is_null() && !apply {
            out.remove(k);
            continue;
        }
        let child_ty = field
            .and_then(|f| f.ty.as_ref())
            .and_then(|t| schemas.resolve(t));
        match (field.and_then(|f| f.list.as_ref()), v) {
            (Some(ListType::Map(keys)), Value::Array(patch_items)) => {
                let existing = out.entry(k.clone()).or_insert_with(|| json!([]));
                if !existing.is_array() {
                    *existing = json!([]);
                }
                let items = existing.as_array_mut().unwrap();
                let id = |item: &Value| -> Vec<Value> {
                    keys.iter()
                        .map(|key| {
                            item.get(key)
                                .or_else(|| schemas.key_default(key))
                                .cloned()
                                .unwrap_or(Value::Null)
                        })
                        .collect()
                };
                for patch_item in patch_items {
                    let wanted = id(patch_item);
                    let position = items.iter().position(|i| id(i) == wanted);
                    let delete = patch_item.get("$patch").and_then(Value::as_str) == Some("delete");
                    match (position, delete) {
                        (Some(p), true) => {
                            items.remove(p);
                        }
                        (None, true) => {}
                        (Some(p), false) => {
                            strategic(&mut items[p], patch_item, schemas, child_ty, apply)
                        }
                        (None, false) => {
                            let mut fresh = json!({});
                            strategic(&mut fresh, patch_item, schemas, child_ty, apply);
                            items.push(fresh);
                        }
                    }
                }
                if let Some(Value::Array(order)) = patch_map.get(&format!("$setElementOrder/{k}")) {
                    let rank = |item: &Value| {
                        order
                            .iter()
                            .position(|o| id(o) == id(item))
                            .unwrap_or(usize::MAX)
                    };
                    items.sort_by_key(rank);
                }
            }
            (Some(ListType::Set), Value::Array(patch_items)) => {
                let existing = out.entry(k.clone()).or_insert_with(|| json!([]));
                if let Value::Array(items) = existing {
                    for item in patch_items {
                        if !items.contains(item) {
                            items.push(item.clone());
                        }
                    }
                } else {
                    *existing = v.clone();
                }
            }
            (_, Value::Object(_)) => {
                let existing = out.entry(k.clone()).or_insert_with(|| json!({}));
                let inner_ty = if field.is_some_and(|f| f.map_values) {
                    None
                } else {
                    child_ty
                };
                if field.is_some_and(|f| f.map_values) {
                    // Map values: merge each entry with the value type.
                    if !existing.is_object() {
                        *existing = json!({});
                    }
                    for (mk, mv) in v.as_object().unwrap() {
                        let slot = existing.as_object_mut().unwrap();
                        if mv.is_null() && !apply {
                            slot.remove(mk);
                            continue;
                        }
                        let entry = slot.entry(mk.clone()).or_insert(Value::Null);
                        if mv.is_object() {
                            strategic(entry, mv, schemas, child_ty, apply);
                        } else {
                            *entry = mv.clone();
                        }
                    }
                } else {
                    strategic(existing, v, schemas, inner_ty, apply);
                }
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
}

/// RFC 6902 (add, remove, replace, test; move and copy).
fn json_patch(base: &Value, patch: &Value) -> Result<Value, String> {
    let mut doc = base.clone();
    let ops = patch
        .as_array()
        .ok_or("a JSON patch is a list of operations")?;
    for op in ops {
        let kind = op["op"].as_str().ok_or("operation without op")?;
        let path = op["path"].as_str().ok_or("operation without path")?;
        match kind {
            "add" | "replace" => pointer_set(&mut doc, path, op["value"].clone(), kind == "add")?,
            "remove" => {
                pointer_remove(&mut doc, path)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&op["value"]) {
                    return Err(format!("test failed at {path}"));
                }
            }
            "move" | "copy" => {
                let from = op["from"].as_str().ok_or("move/copy without from")?;
                let value = if kind == "move" {
                    pointer_remove(&mut doc, from)?
                } else {
                    doc.pointer(from)
                        .cloned()
                        .ok_or(format!("no value at {from}"))?
                };
                pointer_set(&mut doc, path, value, true)?;
            }
            other => return Err(format!("unknown JSON patch op {other:?}")),
        }
    }
    Ok(doc)
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or(format!("bad pointer {path:?}"))?;
    Ok((
        parent.to_string(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn pointer_set(doc: &mut Value, path: &str, value: Value, insert: bool) -> Result<(), String> {
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            if last == "-" {
                items.push(value);
                return Ok(());
            }
            let index: usize = last.parse().map_err(|_| format!("bad index in {path}"))?;
            if insert && index <= items.len() {
                items.insert(index, value);
            } else if index < items.len() {
                items[index] = value;
            } else {
                return Err(format!("index out of range in {path}"));
            }
            Ok(())
        }
        _ => Err(format!("no parent for {path}")),
    }
}

fn pointer_remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(map)) => map.remove(&last).ok_or(format!("nothing at {path}")),
        Some(Value::Array(items)) => {
            let index: usize = last.parse().map_err(|_| format!("bad index in {path}"))?;
            (index < items.len())
                .then(|| items.remove(index))
                .ok_or(format!("index out of range in {path}"))
        }
        _ => Err(format!("nothing at {path}")),
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
    fn fields_v1_round_trips_and_names_keyed_items() {
        let schemas = kube_schema::builtin();
        let root = schemas.root("apps/v1", "Deployment");
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 2, "template": {"spec": {
                "containers": [{"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]}],
                "tolerations": [{"operator": "Exists"}]}}}});
        let paths: BTreeSet<Path> = leaves(&object, schemas, root).into_keys().collect();
        let fields = fields_v1(&paths);
        let containers = &fields["f:spec"]["f:template"]["f:spec"]["f:containers"];
        let web = &containers["k:{\"name\":\"web\"}"];
        assert_eq!(web["."], json!({}));
        assert_eq!(web["f:image"], json!({}));
        assert_eq!(
            web["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"]["."],
            json!({})
        );
        assert_eq!(
            fields["f:spec"]["f:template"]["f:spec"]["f:tolerations"],
            json!({})
        );
        assert_eq!(fields["f:metadata"]["f:labels"]["f:app"], json!({}));
        assert!(fields["f:metadata"].get("f:name").is_none());
        assert_eq!(paths_of(&fields), paths);
    }

    #[test]
    fn an_update_takes_the_fields_it_changed() {
        let schemas = kube_schema::builtin();
        let root = schemas.root("apps/v1", "Deployment");
        let entry = |manager: &str| Entry {
            manager: manager.into(),
            operation: "Update".into(),
            subresource: None,
            api_version: "apps/v1".into(),
            time: "2026-11-29T08:00:00Z".into(),
        };
        let v1 = json!({"metadata": {"name": "web"}, "spec": {"replicas": 2, "paused": false}});
        let mut first = v1.clone();
        first["metadata"]["managedFields"] =
            managed_fields(None, &v1, None, root, entry("kubectl-client-side-apply"));
        let mut v2 = first.clone();
        v2["spec"]["replicas"] = json!(5);
        let managed = managed_fields(Some(&first), &v2, None, root, entry("kubectl-scale"));
        let entries = managed.as_array().unwrap();
        assert_eq!(entries.len(), 2, "{managed:#}");
        assert_eq!(entries[0]["manager"], "kubectl-client-side-apply");
        assert_eq!(entries[0]["fieldsV1"], json!({"f:spec": {"f:paused": {}}}));
        assert_eq!(entries[1]["manager"], "kubectl-scale");
        assert_eq!(
            entries[1]["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}}})
        );
    }

    #[test]
    fn patches() {
        let base = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}],
            "tolerations": [{"key": "k"}]}});
        let ty = kube_schema::builtin().root("v1", "Pod");
        let write = |content_type: &str, patch: Value| {
            let w = Write {
                def: &super::super::RESOURCES[0],
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
