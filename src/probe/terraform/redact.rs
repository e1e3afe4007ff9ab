//! Masking of secret values. Terraform marks sensitive paths in its plan JSON
//! but still prints values derived from them unmarked (a `terraform_data`'s
//! `output` copied from a sensitive `input`, an old value in `before`), so the
//! values found at sensitive paths are also collected here and masked wherever
//! else they turn up: diffs, error messages, stderr tails.

use serde_json::Value;

/// What a masked value is replaced with, as Terraform itself prints it.
pub const MASK: &str = "(sensitive value)";

/// Values shorter than this are not masked by text search (masking every `1`
/// would garble everything); they are still masked by sensitive path.
const MIN_SECRET_LEN: usize = 4;

/// The values at the paths `mask` marks sensitive in `value` (Terraform's
/// mask shape, as [`Redactor::add_masked`] reads it), each as compact JSON,
/// however short: what a change's fingerprint keys so that a changed hidden
/// value is a changed drift, while the diff shows only the mask.
pub fn masked_values(value: &Value, mask: &Value, out: &mut Vec<String>) {
    match (mask, value) {
        (Value::Bool(true), v) if !v.is_null() => out.push(v.to_string()),
        (Value::Object(mask), Value::Object(map)) => {
            for (key, m) in mask {
                if let Some(v) = map.get(key) {
                    masked_values(v, m, out);
                }
            }
        }
        (Value::Array(mask), Value::Array(items)) => {
            for (m, v) in mask.iter().zip(items) {
                masked_values(v, m, out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Default, Clone)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn add(&mut self, value: &str) {
        if value.chars().count() < MIN_SECRET_LEN {
            return;
        }
        self.push(value.to_string());
        // Also the form it takes inside a JSON string, as diffs print it.
        let escaped = serde_json::to_string(value).unwrap_or_default();
        let inner = &escaped[1..escaped.len().saturating_sub(1)];
        if inner != value {
            self.push(inner.to_string());
        }
    }

    fn push(&mut self, secret: String) {
        if !self.secrets.contains(&secret) {
            self.secrets.push(secret);
            // Longest first, so a secret containing another is masked whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Adds every scalar inside `value` (a sensitive value, whole).
    pub fn add_value(&mut self, value: &Value) {
        match value {
            Value::String(s) => self.add(s),
            Value::Number(n) => self.add(&n.to_string()),
            Value::Array(items) => items.iter().for_each(|v| self.add_value(v)),
            Value::Object(map) => map.values().for_each(|v| self.add_value(v)),
            Value::Bool(_) | Value::Null => {}
        }
    }

    /// Adds the parts of `value` that `mask` marks sensitive. `mask` has
    /// Terraform's shape: `true` for a sensitive subtree, else an object or
    /// array mirroring the value.
    pub fn add_masked(&mut self, value: &Value, mask: &Value) {
        match (mask, value) {
            (Value::Bool(true), v) => self.add_value(v),
            (Value::Object(mask), Value::Object(map)) => {
                for (key, m) in mask {
                    if let Some(v) = map.get(key) {
                        self.add_masked(v, m);
                    }
                }
            }
            (Value::Array(mask), Value::Array(items)) => {
                for (m, v) in mask.iter().zip(items) {
                    self.add_masked(v, m);
                }
            }
            _ => {}
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_values_found_at_sensitive_paths() {
        let mut r = Redactor::default();
        r.add_masked(
            &json!({"input": "hunter22", "output": "hunter22", "list": ["a-public", "s3cret!!"]}),
            &json!({"input": true, "list": [false, true]}),
        );
        assert_eq!(
            r.redact("output = \"hunter22\" s3cret!! a-public"),
            "output = \"(sensitive value)\" (sensitive value) a-public"
        );
    }

    #[test]
    fn masks_json_escaped_forms_and_skips_tiny_values() {
        let mut r = Redactor::default();
        r.add("pa\"ss\nword");
        r.add("ab");
        let rendered = serde_json::to_string("pa\"ss\nword").unwrap();
        assert_eq!(r.redact(&rendered), "\"(sensitive value)\"");
        assert_eq!(r.redact("ab"), "ab");
    }
}
