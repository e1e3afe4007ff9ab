//! The patch formats kubectl sends: JSON merge patch (RFC 7386), strategic merge patch with its
//! directives (`$setElementOrder`, `$retainKeys`, `$patch`, `$deleteFromPrimitiveList`; server-side
//! apply merges the same way without deletions), and JSON patch (RFC 6902) over JSON pointers.

use std::collections::BTreeSet;

use kube_schema::{ListType, Schemas, TypeDef};
use serde_json::{json, Map, Value};

/// RFC 7386.
pub(crate) fn merge_patch(target: &Value, patch: &Value) -> Value {
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
pub(crate) fn strategic(
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
pub(crate) fn json_patch(base: &Value, patch: &Value) -> Result<Value, String> {
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
