//! From compared objects to the check's resource changes: each declared object's difference lines
//! (normalized, ignore rules applied, redacted), the live objects nobody declared (`extra`, minus
//! well-known ones and those outside the extra label selector), and the one-line summary.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use crate::model::outcome::{FieldChange, ResourceChange};

use super::ignore::{IgnoreRule, Target};
use super::live::ResourceType;
use super::manifest::Manifest;
use super::types::{Desired, KubernetesProbe};
use super::{compare, normalize, owners};
use kube_schema as schema;

impl KubernetesProbe {
    pub(super) fn differences(
        &self,
        manifest: &Manifest,
        namespace: &str,
        mut live: Value,
        root: Option<&schema::TypeDef>,
        key: &crate::model::fingerprint::FingerprintKey,
    ) -> Vec<(String, FieldChange)> {
        // Who wrote each live value: taken before normalizing would drop it.
        let managed_fields = live
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .and_then(|meta| meta.remove("managedFields"));
        let mut want = manifest.object();
        normalize::normalize_desired(&mut want);
        normalize::normalize(&mut live);
        // The namespace is identity (and may have come from the default).
        for object in [&mut want, &mut live] {
            if let Some(Value::Object(meta)) = object.get_mut("metadata") {
                meta.remove("namespace");
            }
        }
        let target = Target {
            group: manifest.group(),
            kind: manifest.kind(),
            namespace,
            name: manifest.name(),
        };
        let rules: Vec<&IgnoreRule> = self
            .ignore
            .iter()
            .filter(|r| r.applies_to(&target))
            .collect();
        let secret = manifest.kind() == "Secret" && manifest.group().is_empty();
        let subject = subject(manifest.kind(), namespace, manifest.name());
        let differences = compare::compare(&want, &live, schema::builtin(), root);
        // The cache keeps managedFields as JSON text (`cache::LiveObject`): parsed only now.
        let managed_fields = match managed_fields {
            Some(Value::String(text)) if !differences.is_empty() => {
                serde_json::from_str(&text).ok()
            }
            Some(Value::String(_)) => None,
            other => other,
        };
        let managed_fields = managed_fields.as_ref();
        differences
            .iter()
            .filter(|d| !rules.iter().any(|r| r.ignores(&d.path)))
            .map(|d| {
                let field = compare::path_string(&d.path);
                let fingerprint = compare::fingerprint(&subject, &field, d, secret, key);
                // A field missing live has no owner to name.
                let mut change = match d.live {
                    Some(_) => owners::owner(managed_fields, &d.path, field),
                    None => FieldChange {
                        field,
                        ..FieldChange::default()
                    },
                };
                change.fingerprint = fingerprint;
                let line = compare::render_line(d, secret) + &owners::suffix(&change);
                (line, change)
            })
            .collect()
    }

    pub(super) fn extras(
        &self,
        types: &[ResourceType],
        desired: &Desired<'_>,
        live: &HashMap<(usize, String, String), Value>,
        listed: &BTreeSet<(usize, String)>,
    ) -> Vec<ResourceChange> {
        let selector = self
            .config
            .extra_label_selector
            .as_deref()
            .map(parse_equality_selector);
        let mut extras: Vec<ResourceChange> = live
            .iter()
            .filter(|(key, _)| !desired.contains_key(*key))
            .filter(|((index, namespace, _), _)| listed.contains(&(*index, namespace.clone())))
            .filter(|((index, _, _), object)| !is_well_known(&types[*index], object))
            .filter(|(_, object)| selector.as_ref().map_or(true, |s| labels_match(s, object)))
            .map(|((index, namespace, name), _)| {
                ResourceChange::new(
                    subject(&types[*index].resource.kind, namespace, name),
                    "extra",
                )
                .with_diff(format!(
                    "{} {name:?} exists in the cluster but is not declared in git",
                    types[*index].resource.kind
                ))
            })
            .collect();
        extras.sort_by(|a, b| a.subject.cmp(&b.subject));
        extras
    }
}

/// One line for a person: counts, and the first difference when there is one
/// (lines are already redacted).
pub(super) fn summary(objects: usize, changes: &[ResourceChange]) -> String {
    if changes.is_empty() {
        return format!("{objects} objects in sync");
    }
    let count = |action: &str| changes.iter().filter(|c| c.action == action).count();
    let mut text = format!(
        "{} of {objects} objects differ ({} changed, {} missing, {} extra)",
        changes.iter().filter(|c| c.action != "extra").count(),
        count("changed"),
        count("missing"),
        count("extra"),
    );
    let first = &changes[0];
    if let Some(line) = first.diff.lines().next() {
        text += &format!("; {}: {line}", first.subject);
    }
    text
}

/// `kind/namespace/name`, or `kind/name` for cluster-scoped objects.
pub fn subject(kind: &str, namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{namespace}/{name}")
    }
}

/// Objects that exist in every namespace or belong to a controller; never extra.
pub(super) fn is_well_known(resource_type: &ResourceType, object: &Value) -> bool {
    if object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|refs| !refs.is_empty())
    {
        return true;
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let group = resource_type.resource.group.as_str();
    match (group, resource_type.resource.kind.as_str()) {
        ("", "ServiceAccount") => name == "default",
        ("", "ConfigMap") => name == "kube-root-ca.crt",
        // A metadata-only copy has no `type`; the token controller's annotation tells too.
        ("", "Secret") => {
            object.get("type").and_then(Value::as_str)
                == Some("kubernetes.io/service-account-token")
                || object
                    .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                    .is_some()
        }
        ("", "Endpoints") | ("discovery.k8s.io", "EndpointSlice") => true,
        _ => false,
    }
}

/// `a=b,c!=d,e` (equality-based selectors; set-based ones are passed to the
/// server for listing but only equality terms are re-checked here).
pub(super) fn parse_equality_selector(text: &str) -> Vec<(String, Option<String>, bool)> {
    text.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty() && !t.contains(" in ") && !t.contains(" notin "))
        .map(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                (k.trim().to_string(), Some(v.trim().to_string()), false)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k.trim().to_string(), Some(v.trim().to_string()), true)
            } else if let Some(k) = term.strip_prefix('!') {
                (k.trim().to_string(), None, false)
            } else {
                (term.to_string(), None, true)
            }
        })
        .collect()
}

pub(super) fn labels_match(selector: &[(String, Option<String>, bool)], object: &Value) -> bool {
    let labels = object.pointer("/metadata/labels");
    selector.iter().all(|(key, value, positive)| {
        let actual = labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        let hit = match value {
            Some(v) => actual == Some(v.as_str()),
            None => actual.is_some(),
        };
        hit == *positive
    })
}
