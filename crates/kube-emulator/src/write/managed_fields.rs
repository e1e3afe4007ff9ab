//! `metadata.managedFields` as the API server records it: one entry per (manager, operation,
//! subresource), each owning a FieldsV1 set of leaf paths. An Update owns the fields it changed and
//! takes them from every other manager; an Apply owns exactly the fields of the configuration it
//! sent. List items are named by the API schema (`k:{"name":"web"}` for keyed lists, `v:"x"` for
//! sets; atomic lists are owned whole).

use std::collections::{BTreeMap, BTreeSet};

use kube_schema::{ListType, Schemas, TypeDef};
use serde_json::{json, Map, Value};

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
}
