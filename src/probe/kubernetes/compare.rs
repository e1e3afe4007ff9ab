//! Subset comparison of a desired object against a live one. Every field the
//! manifest writes must match; fields only the live object has are server
//! defaults or other controllers' business and are ignored. Lists of objects
//! are matched by merge key (containers by `name`, volumeMounts by
//! `mountPath`, container ports by `containerPort`, …), never by position, so
//! a difference is reported where a person looks for it:
//! `spec.template.spec.containers[name=web].image: "nginx:1.25" → "nginx:1.27"`.

use std::fmt::Write as _;

use serde_json::Value;

use super::normalize::scalars_equal;

/// One step of a path into an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    /// A list element matched by merge key; `index` is its position in the manifest.
    Keyed {
        field: String,
        value: String,
        index: usize,
    },
    /// A list element matched by position.
    Index(usize),
}

/// A field whose live value does not match the manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub path: Vec<Segment>,
    pub want: Value,
    /// `None` when the live object lacks the field.
    pub live: Option<Value>,
}

/// Compares `want` (normalized manifest) against `live` (normalized live
/// object). `apiVersion` and `kind` are identity, not content, and are skipped.
pub fn compare(want: &Value, live: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    if let (Value::Object(want_map), Value::Object(live_map)) = (want, live) {
        for (key, want_value) in want_map {
            if key == "apiVersion" || key == "kind" {
                continue;
            }
            let path = vec![Segment::Key(key.clone())];
            match live_map.get(key) {
                Some(live_value) => walk(&path, None, Some(key), want_value, live_value, &mut out),
                None => out.push(Difference {
                    path,
                    want: want_value.clone(),
                    live: None,
                }),
            }
        }
    } else {
        walk(&[], None, None, want, live, &mut out);
    }
    out
}

fn walk(
    path: &[Segment],
    parent: Option<&str>,
    key: Option<&str>,
    want: &Value,
    live: &Value,
    out: &mut Vec<Difference>,
) {
    let child = |segment: Segment| {
        let mut p = path.to_vec();
        p.push(segment);
        p
    };
    match (want, live) {
        (Value::Object(want_map), Value::Object(live_map)) => {
            for (k, want_value) in want_map {
                let path = child(Segment::Key(k.clone()));
                match live_map.get(k) {
                    Some(live_value) => walk(&path, key, Some(k), want_value, live_value, out),
                    None => out.push(Difference {
                        path,
                        want: want_value.clone(),
                        live: None,
                    }),
                }
            }
        }
        (Value::Array(want_items), Value::Array(live_items))
            if want_items.iter().all(Value::is_object) =>
        {
            match merge_key(key, want_items) {
                Some(field) => {
                    for (index, want_item) in want_items.iter().enumerate() {
                        let value = key_string(&want_item[field]);
                        let path = child(Segment::Keyed {
                            field: field.to_string(),
                            value: value.clone(),
                            index,
                        });
                        let found = live_items.iter().find(|item| {
                            item.get(field).map(key_string).as_deref() == Some(&value)
                        });
                        match found {
                            Some(live_item) => walk(&path, key, None, want_item, live_item, out),
                            None => out.push(Difference {
                                path,
                                want: want_item.clone(),
                                live: None,
                            }),
                        }
                    }
                }
                None => {
                    for (index, want_item) in want_items.iter().enumerate() {
                        let path = child(Segment::Index(index));
                        match live_items.get(index) {
                            Some(live_item) => walk(&path, key, None, want_item, live_item, out),
                            None => out.push(Difference {
                                path,
                                want: want_item.clone(),
                                live: None,
                            }),
                        }
                    }
                }
            }
        }
        (Value::Array(want_items), Value::Array(live_items)) => {
            let same = want_items.len() == live_items.len()
                && want_items
                    .iter()
                    .zip(live_items)
                    .all(|(w, l)| values_equal(key, None, w, l));
            if !same {
                out.push(Difference {
                    path: path.to_vec(),
                    want: want.clone(),
                    live: Some(live.clone()),
                });
            }
        }
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => {
            out.push(Difference {
                path: path.to_vec(),
                want: want.clone(),
                live: Some(live.clone()),
            });
        }
        _ => {
            if !scalars_equal(parent, key, want, live) {
                out.push(Difference {
                    path: path.to_vec(),
                    want: want.clone(),
                    live: Some(live.clone()),
                });
            }
        }
    }
}

/// Whole-value equality with the same scalar rules (for lists of scalars).
fn values_equal(parent: Option<&str>, key: Option<&str>, a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(_) | Value::Array(_), _) => a == b,
        _ => scalars_equal(parent, key, a, b),
    }
}

/// The merge key of a list field, as the API's strategic-merge metadata
/// declares it, falling back to `name` when every element has one.
fn merge_key(field: Option<&str>, items: &[Value]) -> Option<&'static str> {
    let all_have = |k: &str| {
        items
            .iter()
            .all(|item| item.get(k).is_some_and(|v| v.is_string() || v.is_number()))
    };
    let known: &[&'static str] = match field.unwrap_or("") {
        "volumeMounts" => &["mountPath"],
        "volumeDevices" => &["devicePath"],
        "hostAliases" => &["ip"],
        "conditions" => &["type"],
        "ports" => &["containerPort", "port"],
        "topologySpreadConstraints" => &["topologyKey"],
        _ => &[],
    };
    known.iter().copied().chain(["name"]).find(|k| all_have(k))
}

fn key_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The path as a person reads it: `spec.template.spec.containers[name=web].image`,
/// with keys that contain dots or slashes quoted: `metadata.labels["app.kubernetes.io/name"]`.
pub fn path_string(path: &[Segment]) -> String {
    let mut text = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if key
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    if !text.is_empty() {
                        text.push('.');
                    }
                    text.push_str(key);
                } else {
                    let _ = write!(text, "[{}]", serde_json::to_string(key).unwrap_or_default());
                }
            }
            Segment::Keyed { field, value, .. } => {
                let _ = write!(text, "[{field}={value}]");
            }
            Segment::Index(index) => {
                let _ = write!(text, "[{index}]");
            }
        }
    }
    text
}

/// One readable line for a difference. For Secrets, anything under `data`
/// or `stringData` names only the key, never a value.
pub fn render_line(difference: &Difference, secret: bool) -> String {
    let path = path_string(&difference.path);
    let under_secret_data = secret
        && matches!(difference.path.first(), Some(Segment::Key(k)) if k == "data" || k == "stringData");
    if under_secret_data {
        return match (&difference.path.len(), &difference.want, &difference.live) {
            (1, Value::Object(keys), _) => {
                let names: Vec<&str> = keys.keys().map(String::as_str).collect();
                format!(
                    "{path}: keys {} missing in live object (values hidden)",
                    names.join(", ")
                )
            }
            (_, _, None) => format!("{path}: missing in live object (value hidden)"),
            _ => format!("{path}: value differs (hidden)"),
        };
    }
    match (&difference.want, &difference.live) {
        (want, None) => format!("{path}: want {}, live absent", show(want)),
        (Value::String(want), Some(Value::String(live))) => {
            format!("{path}: {} → {}", show_str(want), show_str(live))
        }
        (want, Some(live)) => format!("{path}: want {}, live {}", show(want), show(live)),
    }
}

const MAX_VALUE_CHARS: usize = 200;

fn show(value: &Value) -> String {
    let text = value.to_string();
    shorten(text)
}

fn show_str(text: &str) -> String {
    shorten(serde_json::to_string(text).unwrap_or_default())
}

fn shorten(text: String) -> String {
    if text.chars().count() <= MAX_VALUE_CHARS {
        return text;
    }
    let cut: String = text.chars().take(MAX_VALUE_CHARS).collect();
    format!("{cut}…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(want: Value, live: Value) -> Vec<String> {
        compare(&want, &live)
            .iter()
            .map(|d| render_line(d, false))
            .collect()
    }

    #[test]
    fn subset_rule_ignores_live_only_fields() {
        let want = json!({"spec": {"replicas": 2}});
        let live =
            json!({"spec": {"replicas": 2, "strategy": {"type": "RollingUpdate"}}, "status": {}});
        assert!(compare(&want, &live).is_empty());
    }

    #[test]
    fn readable_scalar_lines() {
        assert_eq!(
            lines(
                json!({"spec": {"replicas": 6}}),
                json!({"spec": {"replicas": 5}})
            ),
            vec!["spec.replicas: want 6, live 5"]
        );
        assert_eq!(
            lines(json!({"spec": {"paused": true}}), json!({"spec": {}})),
            vec!["spec.paused: want true, live absent"]
        );
    }

    #[test]
    fn containers_match_by_name_not_position() {
        let want = json!({"spec": {"containers": [
            {"name": "web", "image": "nginx:1.25"}, {"name": "sidecar", "image": "envoy:1"}]}});
        let live = json!({"spec": {"containers": [
            {"name": "sidecar", "image": "envoy:1", "imagePullPolicy": "IfNotPresent"},
            {"name": "web", "image": "nginx:1.27"}]}});
        assert_eq!(
            lines(want, live),
            vec![r#"spec.containers[name=web].image: "nginx:1.25" → "nginx:1.27""#]
        );
    }

    #[test]
    fn env_added_live_is_not_drift_but_changed_is() {
        let want = json!({"env": [{"name": "A", "value": "1"}]});
        let added = json!({"env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]});
        assert!(compare(&want, &added).is_empty());
        let changed = json!({"env": [{"name": "A", "value": "9"}]});
        assert_eq!(
            lines(want.clone(), changed),
            vec![r#"env[name=A].value: "1" → "9""#]
        );
        let removed = json!({"env": []});
        assert_eq!(
            lines(want, removed),
            vec![r#"env[name=A]: want {"name":"A","value":"1"}, live absent"#]
        );
    }

    #[test]
    fn merge_keys_for_ports_and_mounts() {
        let want = json!({"ports": [{"containerPort": 80, "protocol": "TCP"}],
                          "volumeMounts": [{"mountPath": "/data", "name": "d", "readOnly": true}]});
        let live = json!({"ports": [{"containerPort": 443}, {"containerPort": 80, "protocol": "UDP"}],
                          "volumeMounts": [{"mountPath": "/data", "name": "d", "readOnly": false}]});
        assert_eq!(
            lines(want, live),
            vec![
                r#"ports[containerPort=80].protocol: "TCP" → "UDP""#,
                "volumeMounts[mountPath=/data].readOnly: want true, live false",
            ]
        );
        let service = json!({"ports": [{"port": 80, "targetPort": 8080}]});
        let live = json!({"ports": [{"port": 80, "targetPort": "8080", "protocol": "TCP"}]});
        assert!(compare(&service, &live).is_empty());
    }

    #[test]
    fn scalar_lists_compare_whole() {
        assert_eq!(
            lines(json!({"args": ["a", "b"]}), json!({"args": ["a"]})),
            vec![r#"args: want ["a","b"], live ["a"]"#]
        );
    }

    #[test]
    fn odd_keys_are_quoted() {
        let want = json!({"metadata": {"labels": {"app.kubernetes.io/name": "web"}}});
        let live = json!({"metadata": {"labels": {"app.kubernetes.io/name": "api"}}});
        assert_eq!(
            lines(want, live),
            vec![r#"metadata.labels["app.kubernetes.io/name"]: "web" → "api""#]
        );
    }

    #[test]
    fn secret_lines_never_show_values() {
        let want = json!({"data": {"password": "c2VjcmV0MQ==", "user": "YQ=="}});
        let live = json!({"data": {"password": "c2VjcmV0Mg=="}});
        let rendered: Vec<String> = compare(&want, &live)
            .iter()
            .map(|d| render_line(d, true))
            .collect();
        assert_eq!(
            rendered,
            vec![
                "data.password: value differs (hidden)".to_string(),
                "data.user: missing in live object (value hidden)".to_string(),
            ]
        );
        let whole: Vec<String> = compare(&want, &json!({}))
            .iter()
            .map(|d| render_line(d, true))
            .collect();
        assert_eq!(
            whole,
            vec!["data: keys password, user missing in live object (values hidden)".to_string()]
        );
    }
}
