//! Normalization applied to both sides before comparing, so that equal
//! intent compares equal: fields the server owns are dropped, Secret
//! `stringData` is folded into base64 `data`, empty maps and lists count as
//! absent, and scalar comparison understands quantities (`500m` == `0.5`,
//! `1Gi` == `1024Mi`) and int-or-string values (`80` == `"80"`).

use base64::Engine;
use serde_json::{Map, Value};

/// Metadata fields the server writes; never part of intent.
const SERVER_METADATA: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "uid",
    "generation",
    "creationTimestamp",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

pub(crate) const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Normalizes a live object in place.
pub fn normalize(object: &mut Value) {
    strip(object);
    prune_empty(object);
}

/// Normalizes a manifest in place. Unlike [`normalize`], a `null` stays: to
/// `kubectl apply` it means "remove this field" (client-side apply since
/// kubernetes/kubernetes#40630, on create too since #125646), so the
/// comparison treats it as wanting the field gone. `metadata.annotations:
/// null` is the exception: kubectl writes its last-applied annotation there,
/// so apply never empties it.
pub fn normalize_desired(object: &mut Value) {
    strip(object);
    if let Some(Value::Object(meta)) = object.get_mut("metadata") {
        if meta.get("annotations").is_some_and(Value::is_null) {
            meta.remove("annotations");
        }
    }
    prune(object, true);
}

/// Drops what the server owns and folds Secret `stringData` into `data`.
fn strip(object: &mut Value) {
    let Value::Object(map) = object else { return };
    map.remove("status");
    if let Some(Value::Object(meta)) = map.get_mut("metadata") {
        for field in SERVER_METADATA {
            meta.remove(*field);
        }
        if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
            annotations.remove(LAST_APPLIED);
        }
    }
    if map.get("kind").and_then(Value::as_str) == Some("Secret") {
        fold_string_data(map);
    }
}

/// Moves Secret `stringData` into `data` as base64, as the API server does
/// (stringData wins over data for the same key).
pub fn fold_string_data(secret: &mut Map<String, Value>) {
    let Some(Value::Object(string_data)) = secret.remove("stringData") else {
        return;
    };
    let data = secret
        .entry("data")
        .or_insert_with(|| Value::Object(Map::new()));
    if !data.is_object() {
        *data = Value::Object(Map::new());
    }
    let data = data.as_object_mut().expect("data is an object");
    for (key, value) in string_data {
        let text = match value {
            Value::String(s) => s,
            other => other.to_string(),
        };
        data.insert(
            key,
            Value::String(base64::engine::general_purpose::STANDARD.encode(text)),
        );
    }
}

/// Removes nulls and empty maps/lists, recursively, so `{}`/`[]`/`null` equal
/// an absent field. Returns true when the value itself is now empty.
pub fn prune_empty(value: &mut Value) -> bool {
    prune(value, false)
}

/// As [`prune_empty`]; with `keep_nulls`, a `null` map entry stays (a
/// manifest's "remove this field").
fn prune(value: &mut Value, keep_nulls: bool) -> bool {
    match value {
        Value::Null => !keep_nulls,
        Value::Object(map) => {
            map.retain(|_, v| !prune(v, keep_nulls));
            map.is_empty()
        }
        Value::Array(items) => {
            for item in items.iter_mut() {
                // Keep list positions stable; an emptied element stays as {}.
                prune(item, keep_nulls);
            }
            items.is_empty()
        }
        _ => false,
    }
}

/// Whether two scalars found at `key` (whose parent key is `parent`) mean the
/// same thing to the API server.
pub fn scalars_equal(parent: Option<&str>, key: Option<&str>, want: &Value, live: &Value) -> bool {
    if want == live {
        return true;
    }
    if let (Value::Number(a), Value::Number(b)) = (want, live) {
        // Integers exactly (a float cannot tell 2^53 + 1 from 2^53); `1.0`
        // and `1` are one number to the API's decoder.
        return match (a.as_i128(), b.as_i128()) {
            (Some(a), Some(b)) => a == b,
            _ => a.as_f64() == b.as_f64(),
        };
    }
    if kube_schema::is_quantity(parent, key) && quantities_equal(want, live) {
        return true;
    }
    int_or_string_equal(want, live)
}

/// Two quantities with the same value (`12000m` and `12`); false when
/// either is not a quantity.
pub fn quantities_equal(want: &Value, live: &Value) -> bool {
    matches!((quantity(want), quantity(live)), (Some(a), Some(b)) if a == b)
}

/// `80` and `"80"`: the API accepts both where a field is int-or-string
/// (ports, maxSurge); typed fields reject the wrong type, so a mismatch in
/// type with the same digits can only be that.
fn int_or_string_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n)) => {
            n.as_i64().is_some_and(|n| s.trim() == n.to_string())
        }
        _ => false,
    }
}

/// A Kubernetes quantity as an exact rational number (numerator over a power
/// of ten is enough for the suffixes the API accepts), returned as a
/// canonical (mantissa, exponent) pair so `0.5` and `500m` compare equal.
pub fn quantity(value: &Value) -> Option<(i128, i32)> {
    let text = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    parse_quantity(&text)
}

fn parse_quantity(text: &str) -> Option<(i128, i32)> {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    // Decimal exponent form: 1e3, 1E3.
    let (number, suffix, exponent_from_e) = if let Some(rest) = suffix.strip_prefix(['e', 'E']) {
        match rest.parse::<i32>() {
            Ok(e) if !rest.is_empty() => (number, "", e),
            _ => (number, suffix, 0),
        }
    } else {
        (number, suffix, 0)
    };
    let negative = number.starts_with('-');
    let digits = number.trim_start_matches(['+', '-']);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if !whole
        .chars()
        .chain(fraction.chars())
        .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let mut mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
    let mut exponent: i32 = exponent_from_e - fraction.len() as i32;
    let (binary, decimal): (u32, i32) = match suffix {
        "" => (0, 0),
        "Ki" => (10, 0),
        "Mi" => (20, 0),
        "Gi" => (30, 0),
        "Ti" => (40, 0),
        "Pi" => (50, 0),
        "Ei" => (60, 0),
        "n" => (0, -9),
        "u" => (0, -6),
        "m" => (0, -3),
        "k" => (0, 3),
        "M" => (0, 6),
        "G" => (0, 9),
        "T" => (0, 12),
        "P" => (0, 15),
        "E" => (0, 18),
        _ => return None,
    };
    mantissa = mantissa.checked_mul(1i128.checked_shl(binary)?)?;
    exponent += decimal;
    if negative {
        mantissa = -mantissa;
    }
    // Canonical form: strip trailing zeros into the exponent.
    if mantissa == 0 {
        return Some((0, 0));
    }
    while mantissa % 10 == 0 {
        mantissa /= 10;
        exponent += 1;
    }
    Some((mantissa, exponent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(text: &str) -> (i128, i32) {
        parse_quantity(text).unwrap_or_else(|| panic!("{text} parses"))
    }

    #[test]
    fn quantities_compare_by_value() {
        assert_eq!(q("500m"), q("0.5"));
        assert_eq!(q("1Gi"), q("1024Mi"));
        assert_eq!(q("1k"), q("1000"));
        assert_eq!(q("1e3"), q("1k"));
        assert_eq!(q("2"), q("2000m"));
        assert_ne!(q("1G"), q("1Gi"));
        assert_ne!(q("100m"), q("1"));
        assert!(parse_quantity("nginx").is_none());
        assert!(parse_quantity("1Xi").is_none());
    }

    #[test]
    fn scalar_equality_uses_quantities_only_where_the_api_does() {
        assert!(scalars_equal(
            Some("limits"),
            Some("cpu"),
            &json!("500m"),
            &json!("0.5")
        ));
        assert!(scalars_equal(
            Some("requests"),
            Some("memory"),
            &json!("1Gi"),
            &json!("1024Mi")
        ));
        assert!(scalars_equal(
            Some("limits"),
            Some("cpu"),
            &json!(1),
            &json!("1")
        ));
        // A label "1.10" is not the number 1.1.
        assert!(!scalars_equal(
            Some("labels"),
            Some("version"),
            &json!("1.10"),
            &json!("1.1")
        ));
        assert!(scalars_equal(
            Some("emptyDir"),
            Some("sizeLimit"),
            &json!("1Gi"),
            &json!("1073741824")
        ));
    }

    #[test]
    fn int_or_string() {
        assert!(scalars_equal(
            Some("ports"),
            Some("targetPort"),
            &json!(8080),
            &json!("8080")
        ));
        assert!(scalars_equal(None, Some("port"), &json!("80"), &json!(80)));
        assert!(!scalars_equal(
            None,
            Some("targetPort"),
            &json!("http"),
            &json!(80)
        ));
        assert!(scalars_equal(
            None,
            Some("replicas"),
            &json!(1.0),
            &json!(1)
        ));
    }

    #[test]
    fn empty_equals_absent_and_server_fields_drop() {
        let mut object = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "uid": "u", "resourceVersion": "7", "generation": 2,
                         "creationTimestamp": "t", "managedFields": [{}], "labels": {},
                         "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
            "data": {"k": "v", "empty": null}, "binaryData": {}, "status": {"x": 1},
            "list": [], "nested": {"inner": {"deeper": []}}
        });
        normalize(&mut object);
        assert_eq!(
            object,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}})
        );
    }

    #[test]
    fn secret_string_data_is_folded() {
        let mut secret = json!({"kind": "Secret", "metadata": {"name": "s"},
            "data": {"a": "eA=="}, "stringData": {"b": "hello", "a": "y"}});
        normalize(&mut secret);
        assert_eq!(secret["data"], json!({"a": "eQ==", "b": "aGVsbG8="}));
        assert!(secret.get("stringData").is_none());
    }
}
