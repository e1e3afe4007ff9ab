//! Equality label selectors (`labelSelector=`), as LIST and WATCH read them.

use serde_json::Value;

/// (key, value, equals): `a=b`, `a==b`, `a!=b`, `a`, `!a`.
pub(crate) fn parse_selector(text: &str) -> Vec<(String, Option<String>, bool)> {
    text.split(',')
        .filter(|t| !t.is_empty())
        .map(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                (k.to_string(), Some(v.to_string()), false)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k.to_string(), Some(v.to_string()), true)
            } else if let Some(k) = term.strip_prefix('!') {
                (k.to_string(), None, false)
            } else {
                (term.to_string(), None, true)
            }
        })
        .collect()
}

pub(crate) fn selector_matches(
    selector: &[(String, Option<String>, bool)],
    object: &Value,
) -> bool {
    selector.iter().all(|(key, value, positive)| {
        let actual = object["metadata"]["labels"]
            .get(key)
            .and_then(Value::as_str);
        let hit = match value {
            Some(v) => actual == Some(v.as_str()),
            None => actual.is_some(),
        };
        hit == *positive
    })
}
