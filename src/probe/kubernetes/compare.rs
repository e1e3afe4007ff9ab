//! The rule: "A field is drift exactly when `kubectl apply` of the manifest
//! would change it on the live object; fields the manifest does not mention
//! are ignored."
//!
//! So every field the manifest writes must match, and fields only the live
//! object has (server defaults, other controllers) are not looked at. Lists
//! follow the API schema ([`super::schema`]), as `kubectl apply` does:
//! - a keyed list (`x-kubernetes-list-type: map`) matches items by all their
//!   keys, never by position: `spec.ports[port=53,protocol=UDP].name`; items
//!   only the live list has are kept by apply, so they are not drift; items
//!   sharing a key (the API allows some) are matched among themselves by
//!   position, and the line says so;
//! - a set keeps live extras, so only a missing element is drift;
//! - an atomic list (the default where the schema says nothing) is replaced
//!   whole, so any added, removed or reordered item is drift, reported once
//!   for the whole list, want and live.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::normalize::{quantities_equal, scalars_equal};
use kube_schema::{ListType, Schemas, TypeDef};

/// One step of a path into an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    /// A list item matched by its keys; `index` is its position in the manifest.
    Keyed {
        /// Key fields and their values (a key the manifest omits carries the
        /// server's default, e.g. `protocol=TCP`).
        keys: Vec<(String, Value)>,
        index: usize,
        /// `(n, count)` when `count` items share this key: the n-th of them.
        duplicate: Option<(usize, usize)>,
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

/// Where in the schema a value sits.
#[derive(Clone, Copy)]
struct Place<'a> {
    schemas: &'a Schemas,
    /// The value's type, when the schema knows it.
    ty: Option<&'a TypeDef>,
    /// The value is a map whose entries have type `ty`.
    map_values: bool,
    /// The value (or each map entry) is a quantity, as a custom resource's
    /// schema declares it.
    quantity: bool,
}

impl<'a> Place<'a> {
    /// The place of `key` inside an object at this place, and the list type
    /// when that field is a list.
    fn child(&self, key: &str) -> (Place<'a>, Option<&'a ListType>) {
        if self.map_values {
            return (
                Place {
                    map_values: false,
                    ..*self
                },
                None,
            );
        }
        let field = self.ty.and_then(|t| t.fields.get(key));
        let ty = field
            .and_then(|f| f.ty.as_ref())
            .and_then(|t| self.schemas.resolve(t));
        (
            Place {
                schemas: self.schemas,
                ty,
                map_values: field.is_some_and(|f| f.map_values),
                quantity: field.is_some_and(|f| f.quantity),
            },
            field.and_then(|f| f.list.as_ref()),
        )
    }
}

/// Compares `want` (normalized manifest) against `live` (normalized live
/// object). `root` is the object's type in `schemas` (`None` for a kind the
/// schema does not know: its lists are atomic). `apiVersion` and `kind` are
/// identity, not content, and are skipped.
pub fn compare(
    want: &Value,
    live: &Value,
    schemas: &Schemas,
    root: Option<&TypeDef>,
) -> Vec<Difference> {
    let mut out = Vec::new();
    let place = Place {
        schemas,
        ty: root,
        map_values: false,
        quantity: false,
    };
    match (want, live) {
        (Value::Object(want_map), Value::Object(_)) => {
            let mut trimmed = want_map.clone();
            trimmed.remove("apiVersion");
            trimmed.remove("kind");
            walk(
                &[],
                None,
                None,
                place,
                None,
                &Value::Object(trimmed),
                live,
                &mut out,
            );
        }
        _ => walk(&[], None, None, place, None, want, live, &mut out),
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn walk(
    path: &[Segment],
    parent: Option<&str>,
    key: Option<&str>,
    place: Place<'_>,
    list: Option<&ListType>,
    want: &Value,
    live: &Value,
    out: &mut Vec<Difference>,
) {
    let child = |segment: Segment| {
        let mut p = path.to_vec();
        p.push(segment);
        p
    };
    let differ = |out: &mut Vec<Difference>| {
        out.push(Difference {
            path: path.to_vec(),
            want: want.clone(),
            live: Some(live.clone()),
        })
    };
    match (want, live) {
        (Value::Object(want_map), Value::Object(live_map)) => {
            for (k, want_value) in want_map {
                let (field_place, field_list) = place.child(k);
                let path = child(Segment::Key(k.clone()));
                match live_map.get(k) {
                    // `null` in git: apply removes the field.
                    None if want_value.is_null() => {}
                    Some(live_value) if want_value.is_null() => out.push(Difference {
                        path,
                        want: Value::Null,
                        live: Some(live_value.clone()),
                    }),
                    Some(live_value) => walk(
                        &path,
                        key,
                        Some(k),
                        field_place,
                        field_list,
                        want_value,
                        live_value,
                        out,
                    ),
                    None => out.push(Difference {
                        path,
                        want: want_value.clone(),
                        live: None,
                    }),
                }
            }
        }
        (Value::Array(want_items), Value::Array(live_items)) => {
            match list.unwrap_or(&ListType::Atomic) {
                ListType::Map(keys) if want_items.iter().all(Value::is_object) => {
                    keyed(path, key, place, keys, want_items, live_items, out)
                }
                ListType::Set => {
                    let missing = want_items
                        .iter()
                        .any(|w| !live_items.iter().any(|l| values_equal(parent, key, w, l)));
                    if missing {
                        differ(out);
                    }
                }
                _ => {
                    // Atomic: apply replaces the list, so it must be the same
                    // list, item by item in order (fields an item leaves out
                    // are still the server's to default).
                    let same = want_items.len() == live_items.len()
                        && want_items.iter().zip(live_items).all(|(w, l)| {
                            let mut inner = Vec::new();
                            walk(&[], parent, key, place, None, w, l, &mut inner);
                            inner.is_empty()
                        });
                    if !same {
                        differ(out);
                    }
                }
            }
        }
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => {
            differ(out)
        }
        _ => {
            let same_quantity = place.quantity && quantities_equal(want, live);
            if !same_quantity && !scalars_equal(parent, key, want, live) {
                differ(out);
            }
        }
    }
}

/// A list keyed by `keys`: want items are found in the live list by key;
/// items sharing a key pair up in order.
fn keyed(
    path: &[Segment],
    key: Option<&str>,
    place: Place<'_>,
    keys: &[String],
    want_items: &[Value],
    live_items: &[Value],
    out: &mut Vec<Difference>,
) {
    let identity = |item: &Value| -> Vec<(String, Value)> {
        keys.iter()
            .map(|k| {
                let value = item
                    .get(k)
                    .cloned()
                    .or_else(|| place.schemas.key_default(k).cloned())
                    .unwrap_or(Value::Null);
                (k.clone(), value)
            })
            .collect()
    };
    let text = |id: &[(String, Value)]| -> String {
        id.iter()
            .map(|(_, v)| key_string(v))
            .collect::<Vec<_>>()
            .join("\u{0}")
    };
    let mut live_by_key: HashMap<String, Vec<&Value>> = HashMap::new();
    for item in live_items {
        live_by_key
            .entry(text(&identity(item)))
            .or_default()
            .push(item);
    }
    let mut want_count: HashMap<String, usize> = HashMap::new();
    for item in want_items {
        *want_count.entry(text(&identity(item))).or_default() += 1;
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, want_item) in want_items.iter().enumerate() {
        let id = identity(want_item);
        let id_text = text(&id);
        let nth = seen.entry(id_text.clone()).or_default();
        let live_group = live_by_key.get(&id_text);
        let count = want_count[&id_text].max(live_group.map_or(0, Vec::len));
        let duplicate = (count > 1).then_some((*nth + 1, count));
        let found = live_group.and_then(|group| group.get(*nth)).copied();
        *nth += 1;
        let mut item_path = path.to_vec();
        item_path.push(Segment::Keyed {
            keys: id,
            index,
            duplicate,
        });
        match found {
            Some(live_item) => walk(
                &item_path, key, None, place, None, want_item, live_item, out,
            ),
            None => out.push(Difference {
                path: item_path,
                want: want_item.clone(),
                live: None,
            }),
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
            Segment::Keyed { keys, .. } => {
                let shown: Vec<String> = keys
                    .iter()
                    .map(|(k, v)| format!("{k}={}", key_string(v)))
                    .collect();
                let _ = write!(text, "[{}]", shown.join(","));
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
    let line = render_value_line(difference, secret);
    // Items sharing a key were paired by position: say so, or the line misleads.
    let duplicate = difference
        .path
        .iter()
        .rev()
        .find_map(|segment| match segment {
            Segment::Keyed {
                duplicate: Some((n, count)),
                ..
            } => Some((n, count)),
            _ => None,
        });
    match duplicate {
        Some((n, count)) => format!(
            "{line} (item {n} of {count} sharing this key; such items are matched by position)"
        ),
        None => line,
    }
}

fn render_value_line(difference: &Difference, secret: bool) -> String {
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
        (Value::Null, Some(live)) => {
            format!("{path}: want removed (null in git), live {}", show(live))
        }
        (Value::String(want), Some(Value::String(live))) => {
            format!("{path}: {} → {}", show_str(want), show_str(live))
        }
        (want, Some(live)) => format!("{path}: want {}, live {}", show(want), show(live)),
    }
}

/// The fingerprint of one difference: its resource, path, wanted and live
/// value. Under a Secret's `data`/`stringData` (hidden on every line, as in
/// [`render_line`]) the values enter only as HMACs under `key`.
pub fn fingerprint(
    subject: &str,
    field: &str,
    difference: &Difference,
    secret: bool,
    key: &crate::model::fingerprint::FingerprintKey,
) -> String {
    let hidden = secret
        && matches!(difference.path.first(), Some(Segment::Key(k)) if k == "data" || k == "stringData");
    let part = |value: &Value| {
        let text = value.to_string();
        if hidden {
            key.secret(text.as_bytes())
        } else {
            text
        }
    };
    let want = part(&difference.want);
    let live = difference.live.as_ref().map(part);
    crate::model::fingerprint::field(subject, field, &want, live.as_deref())
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
    use crate::probe::kubernetes::schema::builtin;
    use serde_json::json;

    /// Lines for a `kind` object (`apiVersion/kind`, e.g. `v1/Pod`).
    fn lines_for(kind: &str, want: Value, live: Value) -> Vec<String> {
        let (api_version, kind) = kind.rsplit_once('/').unwrap();
        let root = builtin().root(api_version, kind);
        compare(&want, &live, builtin(), root)
            .iter()
            .map(|d| render_line(d, false))
            .collect()
    }

    fn pod(spec: Value) -> Value {
        json!({"spec": spec})
    }

    fn container(fields: Value) -> Value {
        let mut c = json!({"name": "web", "image": "nginx:1.25"});
        c.as_object_mut()
            .unwrap()
            .extend(fields.as_object().unwrap().clone());
        pod(json!({"containers": [c]}))
    }

    #[test]
    fn subset_rule_ignores_live_only_fields() {
        let want = json!({"spec": {"replicas": 2}});
        let live =
            json!({"spec": {"replicas": 2, "strategy": {"type": "RollingUpdate"}}, "status": {}});
        assert!(lines_for("apps/v1/Deployment", want, live).is_empty());
    }

    #[test]
    fn readable_scalar_lines() {
        assert_eq!(
            lines_for(
                "apps/v1/Deployment",
                json!({"spec": {"replicas": 6}}),
                json!({"spec": {"replicas": 5}})
            ),
            vec!["spec.replicas: want 6, live 5"]
        );
        assert_eq!(
            lines_for(
                "apps/v1/Deployment",
                json!({"spec": {"paused": true}}),
                json!({"spec": {}})
            ),
            vec!["spec.paused: want true, live absent"]
        );
    }

    #[test]
    fn containers_match_by_name_not_position() {
        let want = pod(json!({"containers": [
            {"name": "web", "image": "nginx:1.25"}, {"name": "sidecar", "image": "envoy:1"}]}));
        let live = pod(json!({"containers": [
            {"name": "sidecar", "image": "envoy:1", "imagePullPolicy": "IfNotPresent"},
            {"name": "web", "image": "nginx:1.27"}]}));
        assert_eq!(
            lines_for("v1/Pod", want, live),
            vec![r#"spec.containers[name=web].image: "nginx:1.25" → "nginx:1.27""#]
        );
    }

    #[test]
    fn env_added_live_is_not_drift_but_changed_or_removed_is() {
        let want = container(json!({"env": [{"name": "A", "value": "1"}]}));
        let added =
            container(json!({"env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]}));
        assert!(lines_for("v1/Pod", want.clone(), added).is_empty());
        let changed = container(json!({"env": [{"name": "A", "value": "9"}]}));
        assert_eq!(
            lines_for("v1/Pod", want.clone(), changed),
            vec![r#"spec.containers[name=web].env[name=A].value: "1" → "9""#]
        );
        let removed = container(json!({"env": [{"name": "B", "value": "2"}]}));
        assert_eq!(
            lines_for("v1/Pod", want, removed),
            vec![
                r#"spec.containers[name=web].env[name=A]: want {"name":"A","value":"1"}, live absent"#
            ]
        );
    }

    /// Issue example: TCP and UDP on one port are two items, keyed by port
    /// and protocol; deleting the UDP one live is named.
    #[test]
    fn service_ports_are_keyed_by_port_and_protocol() {
        let want = json!({"spec": {"ports": [
            {"port": 53, "protocol": "TCP", "name": "dns-tcp"},
            {"port": 53, "protocol": "UDP", "name": "dns-udp"}]}});
        let live = json!({"spec": {"ports": [
            {"port": 53, "protocol": "UDP", "name": "dns-udp", "targetPort": 53},
            {"port": 53, "protocol": "TCP", "name": "dns-tcp", "targetPort": 53}]}});
        assert!(lines_for("v1/Service", want.clone(), live).is_empty());
        let udp_deleted = json!({"spec": {"ports": [
            {"port": 53, "protocol": "TCP", "name": "dns-tcp", "targetPort": 53}]}});
        assert_eq!(
            lines_for("v1/Service", want, udp_deleted),
            vec![
                r#"spec.ports[port=53,protocol=UDP]: want {"name":"dns-udp","port":53,"protocol":"UDP"}, live absent"#
            ]
        );
        // A port without a protocol is the server's TCP one.
        let plain = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}});
        let live =
            json!({"spec": {"ports": [{"port": 80, "targetPort": "8080", "protocol": "TCP"}]}});
        assert!(lines_for("v1/Service", plain.clone(), live).is_empty());
        let udp_live = json!({"spec": {"ports": [{"port": 80, "protocol": "UDP"}]}});
        assert_eq!(
            lines_for("v1/Service", plain, udp_live),
            vec![
                r#"spec.ports[port=80,protocol=TCP]: want {"port":80,"targetPort":8080}, live absent"#
            ]
        );
    }

    #[test]
    fn container_ports_are_keyed_by_port_and_protocol() {
        let want = container(json!({"ports": [
            {"containerPort": 5353, "protocol": "TCP", "name": "dns-tcp"},
            {"containerPort": 5353, "protocol": "UDP", "name": "dns-udp"}]}));
        let live = container(json!({"ports": [
            {"containerPort": 5353, "protocol": "UDP", "name": "dns-udp"},
            {"containerPort": 5353, "protocol": "TCP", "name": "dns-tcp"}]}));
        assert!(lines_for(
            "apps/v1/Deployment",
            json!({"spec": {"template": want.clone()}}),
            json!({"spec": {"template": live}})
        )
        .is_empty());
        let renamed = container(json!({"ports": [
            {"containerPort": 5353, "protocol": "UDP", "name": "dns-udp"},
            {"containerPort": 5353, "protocol": "TCP", "name": "dns"}]}));
        assert_eq!(
            lines_for("v1/Pod", want, renamed),
            vec![
                r#"spec.containers[name=web].ports[containerPort=5353,protocol=TCP].name: "dns-tcp" → "dns""#
            ]
        );
    }

    #[test]
    fn duplicate_keys_pair_up_by_position_and_say_so() {
        let want =
            container(json!({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}));
        let live =
            container(json!({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "3"}]}));
        assert_eq!(
            lines_for("v1/Pod", want.clone(), live),
            vec![
                r#"spec.containers[name=web].env[name=A].value: "2" → "3" (item 2 of 2 sharing this key; such items are matched by position)"#
            ]
        );
        let same =
            container(json!({"env": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}));
        assert!(lines_for("v1/Pod", want, same).is_empty());
    }

    /// Issue example: a toleration appended (or prepended) live changes an
    /// atomic list; apply would put the git list back, so it is drift, shown whole.
    #[test]
    fn atomic_lists_compare_whole() {
        let want = pod(
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "web"}]}),
        );
        let appended = pod(json!({"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "web"}, {"operator": "Exists"}]}));
        assert_eq!(
            lines_for("v1/Pod", want.clone(), appended),
            vec![
                r#"spec.tolerations: want [{"key":"dedicated","operator":"Equal","value":"web"}], live [{"key":"dedicated","operator":"Equal","value":"web"},{"operator":"Exists"}]"#
            ]
        );
        let prepended = pod(json!({"tolerations": [
            {"operator": "Exists"}, {"key": "dedicated", "operator": "Equal", "value": "web"}]}));
        assert_eq!(lines_for("v1/Pod", want.clone(), prepended).len(), 1);
        let removed = pod(json!({"tolerations": []}));
        assert_eq!(lines_for("v1/Pod", want.clone(), removed).len(), 1);
        // Fields an item leaves out are the server's to default.
        let defaulted = pod(json!({"tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "web", "effect": ""}]}));
        assert!(lines_for("v1/Pod", want, defaulted).is_empty());
        // Scalar lists: order counts.
        assert_eq!(
            lines_for(
                "v1/Pod",
                container(json!({"args": ["a", "b"]})),
                container(json!({"args": ["b", "a"]}))
            ),
            vec![r#"spec.containers[name=web].args: want ["a","b"], live ["b","a"]"#]
        );
        // A kind the schema does not know: its lists are atomic too.
        assert_eq!(
            lines_for(
                "example.com/v1/Widget",
                json!({"spec": {"items": [{"name": "a"}]}}),
                json!({"spec": {"items": [{"name": "a"}, {"name": "b"}]}})
            )
            .len(),
            1
        );
    }

    #[test]
    fn sets_keep_live_extras_and_ignore_order() {
        let want = json!({"metadata": {"finalizers": ["a/x", "b/y"]}});
        let live = json!({"metadata": {"finalizers": ["c/z", "b/y", "a/x"]}});
        assert!(lines_for("v1/ConfigMap", want.clone(), live).is_empty());
        let missing = json!({"metadata": {"finalizers": ["a/x"]}});
        assert_eq!(
            lines_for("v1/ConfigMap", want, missing),
            vec![r#"metadata.finalizers: want ["a/x","b/y"], live ["a/x"]"#]
        );
    }

    #[test]
    fn merge_keys_for_mounts() {
        let want = container(
            json!({"volumeMounts": [{"mountPath": "/data", "name": "d", "readOnly": true}]}),
        );
        let live = container(
            json!({"volumeMounts": [{"mountPath": "/other", "name": "o"},
            {"mountPath": "/data", "name": "d", "readOnly": false}]}),
        );
        assert_eq!(
            lines_for("v1/Pod", want, live),
            vec!["spec.containers[name=web].volumeMounts[mountPath=/data].readOnly: want true, live false"]
        );
    }

    #[test]
    fn odd_keys_are_quoted() {
        let want = json!({"metadata": {"labels": {"app.kubernetes.io/name": "web"}}});
        let live = json!({"metadata": {"labels": {"app.kubernetes.io/name": "api"}}});
        assert_eq!(
            lines_for("v1/ConfigMap", want, live),
            vec![r#"metadata.labels["app.kubernetes.io/name"]: "web" → "api""#]
        );
    }

    #[test]
    fn secret_lines_never_show_values() {
        let want = json!({"data": {"password": "c2VjcmV0MQ==", "user": "YQ=="}});
        let live = json!({"data": {"password": "c2VjcmV0Mg=="}});
        let s = builtin();
        let root = s.root("v1", "Secret");
        let rendered: Vec<String> = compare(&want, &live, s, root)
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
        let whole: Vec<String> = compare(&want, &json!({}), s, root)
            .iter()
            .map(|d| render_line(d, true))
            .collect();
        assert_eq!(
            whole,
            vec!["data: keys password, user missing in live object (values hidden)".to_string()]
        );
    }

    #[test]
    fn secret_fingerprints_follow_the_value_but_only_keyed() {
        use crate::model::fingerprint::FingerprintKey;
        let s = builtin();
        let root = s.root("v1", "Secret");
        let key = FingerprintKey::from_bytes(b"0123456789abcdef".to_vec());
        let other_key = FingerprintKey::from_bytes(b"fedcba9876543210".to_vec());
        let fingerprints = |live: &str, secret: bool, key: &FingerprintKey| -> Vec<String> {
            let want = json!({"data": {"password": "c2VjcmV0MQ=="}});
            let live = json!({"data": {"password": live}});
            compare(&want, &live, s, root)
                .iter()
                .map(|d| fingerprint("Secret/prod/db", &path_string(&d.path), d, secret, key))
                .collect()
        };
        let base = fingerprints("c2VjcmV0Mg==", true, &key);
        assert_eq!(base.len(), 1);
        // Another hidden live value is another drift, though the line reads the same.
        assert_ne!(base, fingerprints("c2VjcmV0Mw==", true, &key));
        assert_eq!(base, fingerprints("c2VjcmV0Mg==", true, &key));
        // Keyed: without the key nobody recomputes it from a guessed value.
        assert_ne!(base, fingerprints("c2VjcmV0Mg==", true, &other_key));
        assert_ne!(base, fingerprints("c2VjcmV0Mg==", false, &key));
        // Outside Secret data values enter as they are (the key plays no part).
        assert_eq!(
            fingerprints("c2VjcmV0Mg==", false, &key),
            fingerprints("c2VjcmV0Mg==", false, &other_key)
        );
    }
}
