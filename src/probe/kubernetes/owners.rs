//! "Who changed it": the field manager that owns a drifted field's live
//! value, read from the live object's `metadata.managedFields` (so get and
//! list are still all the probe needs). Each entry names a manager, its
//! operation (`Update`, `Apply`) and time, and the fields it owns as a
//! FieldsV1 tree: `f:<field>`, `k:<key JSON>` for keyed list items, `v:<JSON>`
//! for set elements, `i:<index>`; a leaf `{}` owns everything below it (an
//! atomic list is owned whole). When no entry covers a field, nobody is named.

use serde_json::{Map, Value};

use super::compare::Segment;
use crate::model::outcome::FieldChange;

/// The newest managedFields entry owning `path`, as a field change for `field`.
pub fn owner(managed_fields: Option<&Value>, path: &[Segment], field: String) -> FieldChange {
    let mut change = FieldChange {
        field,
        ..FieldChange::default()
    };
    let best = managed_fields
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|entry| owns(&entry["fieldsV1"], path))
        .max_by(|a, b| {
            let time = |e: &Value| e["time"].as_str().unwrap_or("").to_string();
            time(a).cmp(&time(b))
        });
    if let Some(entry) = best {
        let text = |key: &str| entry.get(key).and_then(Value::as_str).map(String::from);
        change.manager = text("manager");
        change.operation = text("operation");
        change.time = text("time");
    }
    change
}

fn owns(fields: &Value, path: &[Segment]) -> bool {
    let mut node = fields;
    for segment in path {
        let Value::Object(children) = node else {
            return false;
        };
        if children.is_empty() {
            // A leaf above the end of the path owns the whole value.
            return !std::ptr::eq(node, fields);
        }
        let next = match segment {
            Segment::Key(key) => children.get(&format!("f:{key}")),
            Segment::Index(index) => children.get(&format!("i:{index}")),
            Segment::Keyed { keys, .. } => keyed_child(children, keys),
        };
        match next {
            Some(child) => node = child,
            None => return false,
        }
    }
    true
}

/// The `k:{…}` child whose key fields equal `keys` (compared as JSON values,
/// not text, so key order and spacing do not matter).
fn keyed_child<'a>(
    children: &'a Map<String, Value>,
    keys: &[(String, Value)],
) -> Option<&'a Value> {
    children.iter().find_map(|(name, child)| {
        let json = name.strip_prefix("k:")?;
        let Ok(Value::Object(written)) = serde_json::from_str::<Value>(json) else {
            return None;
        };
        let same = written.len() == keys.len()
            && keys.iter().all(|(k, v)| {
                written
                    .get(k)
                    .is_some_and(|w| w == v || w.as_f64().is_some_and(|n| v.as_f64() == Some(n)))
            });
        same.then_some(child)
    })
}

/// ` (manager, operation, time)` for a text line, or nothing.
pub fn suffix(change: &FieldChange) -> String {
    match &change.manager {
        Some(manager) => {
            let mut parts = vec![manager.as_str()];
            parts.extend(change.operation.as_deref());
            parts.extend(change.time.as_deref());
            format!(" ({})", parts.join(", "))
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(k: &str) -> Segment {
        Segment::Key(k.to_string())
    }

    #[test]
    fn the_newest_owner_of_a_field_is_named_and_nobody_is_guessed() {
        let managed = json!([
            {"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2026-11-29T07:00:00Z",
             "fieldsV1": {"f:spec": {"f:replicas": {}, "f:template": {"f:spec": {
                "f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}}},
                "f:tolerations": {}}}}}},
            {"manager": "kubectl-scale", "operation": "Update", "subresource": "scale", "time": "2026-11-29T08:01:12Z",
             "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "gitops", "operation": "Apply", "time": "2026-11-29T06:00:00Z",
             "fieldsV1": {"f:spec": {"f:ports": {"k:{\"protocol\":\"UDP\",\"port\":53}": {"f:name": {}}}}}}
        ]);
        let replicas = owner(
            Some(&managed),
            &[key("spec"), key("replicas")],
            "spec.replicas".into(),
        );
        assert_eq!(replicas.manager.as_deref(), Some("kubectl-scale"));
        assert_eq!(replicas.operation.as_deref(), Some("Update"));
        assert_eq!(replicas.time.as_deref(), Some("2026-11-29T08:01:12Z"));
        assert_eq!(
            suffix(&replicas),
            " (kubectl-scale, Update, 2026-11-29T08:01:12Z)"
        );

        let image = [
            key("spec"),
            key("template"),
            key("spec"),
            key("containers"),
            Segment::Keyed {
                keys: vec![("name".into(), json!("web"))],
                index: 0,
                duplicate: None,
            },
            key("image"),
        ];
        assert_eq!(
            owner(Some(&managed), &image, String::new())
                .manager
                .as_deref(),
            Some("kubectl-client-side-apply")
        );
        // An atomic list is owned whole.
        let tolerations = [
            key("spec"),
            key("template"),
            key("spec"),
            key("tolerations"),
        ];
        assert!(owner(Some(&managed), &tolerations, String::new())
            .manager
            .is_some());
        // Keys compare as values, in any order.
        let port = [
            key("spec"),
            key("ports"),
            Segment::Keyed {
                keys: vec![
                    ("port".into(), json!(53)),
                    ("protocol".into(), json!("UDP")),
                ],
                index: 1,
                duplicate: None,
            },
            key("name"),
        ];
        assert_eq!(
            owner(Some(&managed), &port, String::new())
                .manager
                .as_deref(),
            Some("gitops")
        );
        // Nobody owns it: nobody is named.
        let paused = owner(Some(&managed), &[key("spec"), key("paused")], String::new());
        assert_eq!(paused.manager, None);
        assert_eq!(suffix(&paused), "");
        assert_eq!(owner(None, &[key("spec")], String::new()).manager, None);
    }
}
