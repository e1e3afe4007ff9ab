//! Ignore rules in the style of Argo CD's `ignoreDifferences`: JSON-pointer
//! paths, scoped by group, kind, namespace and name globs. A pointer ignores
//! the field it names and everything below it. List elements matched by
//! key are addressed by their key values or their index in the manifest
//! (`/spec/template/spec/containers/web/image`,
//! `/spec/template/spec/containers/0/image`, `/spec/ports/53,UDP` or
//! `/spec/ports/port=53,protocol=UDP`); `*` matches any one step.

use schemars::JsonSchema;
use serde::Deserialize;

use super::compare::Segment;
use crate::probe::FieldError;

/// `[[probe.ignore]]` of a Kubernetes probe, as Argo CD's
/// `ignoreDifferences`: fields of the matching objects that are not drift.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IgnoreRuleConfig {
    /// Glob on the API group (`""` is the core group).
    ///
    /// Default: none: any group.
    #[serde(default)]
    pub group: Option<String>,
    /// Glob on the kind.
    ///
    /// Default: none: any kind.
    #[serde(default)]
    pub kind: Option<String>,
    /// Glob on the namespace.
    ///
    /// Default: none: any namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Glob on the object's name.
    ///
    /// Default: none: any name.
    #[serde(default)]
    pub name: Option<String>,
    /// RFC 6901 pointers to the ignored fields (`/spec/replicas`), each
    /// covering everything below it; at least one. A keyed list item is addressed by its key values
    /// (`/spec/ports/53,UDP`, `/spec/template/spec/containers/web`) or its
    /// index in the manifest; `*` matches one step.
    ///
    /// Required.
    pub json_pointers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct IgnoreRule {
    group: Option<glob::Pattern>,
    kind: Option<glob::Pattern>,
    namespace: Option<glob::Pattern>,
    name: Option<glob::Pattern>,
    pointers: Vec<Vec<String>>,
}

/// Identity of an object for rule matching.
pub struct Target<'a> {
    pub group: &'a str,
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

impl IgnoreRule {
    /// Validates one configured rule; `key` is its config path (`ignore[2]`).
    pub fn build(key: &str, config: &IgnoreRuleConfig) -> Result<IgnoreRule, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut pattern = |field: &str, value: &Option<String>| -> Option<glob::Pattern> {
            let text = value.as_ref()?;
            match glob::Pattern::new(text) {
                Ok(p) => Some(p),
                Err(err) => {
                    errors.push(FieldError::new(
                        format!("{key}.{field}"),
                        format!("invalid glob {text:?}: {err}"),
                    ));
                    None
                }
            }
        };
        let group = pattern("group", &config.group);
        let kind = pattern("kind", &config.kind);
        let namespace = pattern("namespace", &config.namespace);
        let name = pattern("name", &config.name);
        let mut pointers = Vec::new();
        if config.json_pointers.is_empty() {
            errors.push(FieldError::new(
                format!("{key}.json_pointers"),
                "give at least one pointer, e.g. \"/spec/replicas\"",
            ));
        }
        for (index, pointer) in config.json_pointers.iter().enumerate() {
            match parse_pointer(pointer) {
                Ok(steps) => pointers.push(steps),
                Err(message) => errors.push(FieldError::new(
                    format!("{key}.json_pointers[{index}]"),
                    message,
                )),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(IgnoreRule {
            group,
            kind,
            namespace,
            name,
            pointers,
        })
    }

    pub fn applies_to(&self, target: &Target<'_>) -> bool {
        let matches = |pattern: &Option<glob::Pattern>, value: &str| {
            pattern.as_ref().map_or(true, |p| p.matches(value))
        };
        matches(&self.group, target.group)
            && matches(&self.kind, target.kind)
            && matches(&self.namespace, target.namespace)
            && matches(&self.name, target.name)
    }

    /// True when a difference at `path` falls under one of the rule's pointers.
    pub fn ignores(&self, path: &[Segment]) -> bool {
        self.pointers.iter().any(|pointer| {
            pointer.len() <= path.len()
                && pointer
                    .iter()
                    .zip(path)
                    .all(|(step, segment)| step_matches(step, segment))
        })
    }
}

fn step_matches(step: &str, segment: &Segment) -> bool {
    if step == "*" {
        return true;
    }
    match segment {
        Segment::Key(key) => key == step,
        Segment::Keyed { keys, index, .. } => {
            let text = |v: &serde_json::Value| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let values: Vec<String> = keys.iter().map(|(_, v)| text(v)).collect();
            let pairs: Vec<String> = keys
                .iter()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect();
            index.to_string() == step || values.join(",") == step || pairs.join(",") == step
        }
        Segment::Index(index) => index.to_string() == step,
    }
}

fn parse_pointer(pointer: &str) -> Result<Vec<String>, String> {
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!("JSON pointer {pointer:?} must start with '/'"));
    };
    if rest.is_empty() {
        return Err(
            "the root pointer \"/\" would ignore the whole object; use exclude_kinds instead"
                .to_string(),
        );
    }
    Ok(rest
        .split('/')
        .map(|step| step.replace("~1", "/").replace("~0", "~"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: Option<&str>, name: Option<&str>, pointers: &[&str]) -> IgnoreRule {
        let config = IgnoreRuleConfig {
            group: None,
            kind: kind.map(String::from),
            namespace: None,
            name: name.map(String::from),
            json_pointers: pointers.iter().map(|s| s.to_string()).collect(),
        };
        IgnoreRule::build("ignore[0]", &config).unwrap()
    }

    fn key(k: &str) -> Segment {
        Segment::Key(k.to_string())
    }

    #[test]
    fn pointers_match_prefixes_and_merge_keys() {
        let r = rule(
            Some("Deploy*"),
            Some("web"),
            &[
                "/spec/replicas",
                "/spec/template/spec/containers/sidecar/image",
            ],
        );
        let target = Target {
            group: "apps",
            kind: "Deployment",
            namespace: "prod",
            name: "web",
        };
        assert!(r.applies_to(&target));
        assert!(!r.applies_to(&Target {
            name: "api",
            ..target
        }));
        assert!(r.ignores(&[key("spec"), key("replicas")]));
        let container = |value: &str, index| Segment::Keyed {
            keys: vec![("name".into(), serde_json::json!(value))],
            index,
            duplicate: None,
        };
        let image = [
            key("spec"),
            key("template"),
            key("spec"),
            key("containers"),
            container("sidecar", 1),
            key("image"),
        ];
        assert!(r.ignores(&image));
        let web = [
            key("spec"),
            key("template"),
            key("spec"),
            key("containers"),
            container("web", 0),
            key("image"),
        ];
        assert!(!r.ignores(&web));
        let by_index = rule(None, None, &["/spec/template/spec/containers/0"]);
        assert!(by_index.ignores(&web));
        assert!(!by_index.ignores(&[key("spec")]));
    }

    #[test]
    fn escaped_pointers_and_bad_rules() {
        let r = rule(None, None, &["/metadata/annotations/example.com~1owner"]);
        assert!(r.ignores(&[
            key("metadata"),
            key("annotations"),
            key("example.com/owner")
        ]));
        let bad = IgnoreRuleConfig {
            group: None,
            kind: Some("[".into()),
            namespace: None,
            name: None,
            json_pointers: vec!["spec".into()],
        };
        let errors = IgnoreRule::build("ignore[1]", &bad).unwrap_err();
        let keys: Vec<_> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, vec!["ignore[1].kind", "ignore[1].json_pointers[0]"]);
    }
}
