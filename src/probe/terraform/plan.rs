//! Turns the JSON of `terraform show -json <planfile>` into resource changes:
//! one per address whose actions are not `no-op`/`read`, one per changed
//! output (`output.<name>`), each with a short attribute diff. Sensitive
//! values are masked twice: by the `*_sensitive` paths Terraform gives, and by
//! value, for copies Terraform leaves unmarked (see `redact`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::redact::{Redactor, MASK};
use crate::probe::ResourceChange;

/// Diff lines kept per resource before the rest is summarised.
const MAX_DIFF_LINES: usize = 40;
/// Nested objects deeper than this are shown as compact JSON.
const MAX_DEPTH: usize = 6;

pub const ORIGIN_CONFIG: &str = "config";
pub const ORIGIN_OUTSIDE: &str = "outside";

/// What the plan says, ready for an `Outcome`.
#[derive(Debug, Default)]
pub struct PlanSummary {
    pub changes: Vec<ResourceChange>,
    /// Counts and output names for `Outcome.details` (already redacted).
    pub details: Value,
    /// One line for a person: "Plan: 1 to add, 2 to change, 0 to destroy; …".
    pub message: String,
}

/// Collects every secret the plan reveals: values at sensitive paths of
/// resources, outputs and prior state, and sensitive variables' values.
pub fn collect_secrets(plan: &Value, redactor: &mut Redactor) {
    for list in ["resource_changes", "resource_drift"] {
        for rc in array(plan, list) {
            let change = &rc["change"];
            redactor.add_masked(&change["before"], &change["before_sensitive"]);
            redactor.add_masked(&change["after"], &change["after_sensitive"]);
        }
    }
    if let Some(outputs) = plan["output_changes"].as_object() {
        for change in outputs.values() {
            redactor.add_masked(&change["before"], &change["before_sensitive"]);
            redactor.add_masked(&change["after"], &change["after_sensitive"]);
        }
    }
    if let Some(outputs) = plan["planned_values"]["outputs"].as_object() {
        for output in outputs.values() {
            if output["sensitive"] == json!(true) {
                redactor.add_value(&output["value"]);
            }
        }
    }
    collect_module_secrets(&plan["prior_state"]["values"]["root_module"], redactor);
    collect_module_secrets(&plan["planned_values"]["root_module"], redactor);
    if let Some(variables) = plan["configuration"]["root_module"]["variables"].as_object() {
        for (name, declared) in variables {
            if declared["sensitive"] == json!(true) {
                redactor.add_value(&plan["variables"][name]["value"]);
            }
        }
    }
}

fn collect_module_secrets(module: &Value, redactor: &mut Redactor) {
    for resource in array(module, "resources") {
        redactor.add_masked(&resource["values"], &resource["sensitive_values"]);
    }
    for child in array(module, "child_modules") {
        collect_module_secrets(child, redactor);
    }
}

fn array<'a>(value: &'a Value, key: &str) -> &'a [Value] {
    value[key].as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The single action name driftwatch reports for Terraform's action list.
pub fn action_name(actions: &[Value]) -> Option<&'static str> {
    let names: Vec<&str> = actions.iter().filter_map(Value::as_str).collect();
    match names.as_slice() {
        ["create"] => Some("create"),
        ["update"] => Some("update"),
        ["delete"] => Some("delete"),
        ["delete", "create"] | ["create", "delete"] => Some("replace"),
        ["forget"] => Some("forget"),
        ["create", "forget"] | ["forget", "create"] => Some("replace"),
        ["no-op"] | ["read"] | [] => None,
        _ => Some("update"),
    }
}

/// Builds the changes. `outside_by_default` is the probe's inference that the
/// configuration is unchanged since the root was last in sync, so any change
/// Terraform cannot attribute must have come from outside.
pub fn summarize(plan: &Value, redactor: &Redactor, outside_by_default: bool) -> PlanSummary {
    let default_origin = if outside_by_default {
        ORIGIN_OUTSIDE
    } else {
        ORIGIN_CONFIG
    };
    let mut drift: BTreeMap<String, &Value> = BTreeMap::new();
    for rc in array(plan, "resource_drift") {
        if let Some(address) = rc["address"].as_str() {
            drift.insert(address.to_string(), rc);
        }
    }

    let mut changes = Vec::new();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for rc in array(plan, "resource_changes") {
        let Some(address) = rc["address"].as_str() else {
            continue;
        };
        let change = &rc["change"];
        let action = match action_name(array(change, "actions")) {
            Some(action) => action,
            None if rc["previous_address"].is_string() => "move",
            None if change["importing"].is_object() => "import",
            None => continue,
        };
        seen.insert(address.to_string());
        *counts.entry(action).or_default() += 1;
        let mut diff = String::new();
        let origin = match drift.get(address) {
            Some(drifted) => {
                diff.push_str("changed outside Terraform:\n");
                diff.push_str(&attribute_diff(&drifted["change"], redactor));
                diff.push_str("planned to restore:\n");
                ORIGIN_OUTSIDE
            }
            None => default_origin,
        };
        if action == "move" {
            diff.push_str(&format!(
                "moved from {}\n",
                rc["previous_address"].as_str().unwrap_or("?")
            ));
        }
        diff.push_str(&attribute_diff(change, redactor));
        if let Some(reason) = rc["action_reason"].as_str() {
            diff.push_str(&format!("# reason: {reason}\n"));
        }
        changes.push(
            ResourceChange::new(address, action)
                .with_diff(redactor.redact(diff.trim_end()))
                .with_origin(origin),
        );
    }
    // Drift that the configuration absorbs (ignore_changes, …) plans no
    // action, but reality still moved; report it when the root is drifted.
    for (address, rc) in &drift {
        if seen.contains(address) {
            continue;
        }
        let action = action_name(array(&rc["change"], "actions")).unwrap_or("update");
        *counts.entry("outside").or_default() += 1;
        let diff = attribute_diff(&rc["change"], redactor);
        changes.push(
            ResourceChange::new(address.as_str(), action)
                .with_diff(redactor.redact(diff.trim_end()))
                .with_origin(ORIGIN_OUTSIDE),
        );
    }

    let mut output_names = Vec::new();
    if let Some(outputs) = plan["output_changes"].as_object() {
        for (name, change) in outputs {
            let Some(action) = action_name(array(change, "actions")) else {
                continue;
            };
            output_names.push(name.clone());
            let diff = output_diff(change, redactor);
            changes.push(
                ResourceChange::new(format!("output.{name}"), action)
                    .with_diff(diff)
                    .with_origin(default_origin),
            );
        }
    }

    let terraform_version = plan["terraform_version"].as_str().unwrap_or("").to_string();
    let count = |action: &str| counts.get(action).copied().unwrap_or(0);
    let outside = changes
        .iter()
        .filter(|c| c.origin.as_deref() == Some(ORIGIN_OUTSIDE))
        .count();
    let mut message = format!(
        "Plan: {} to add, {} to change, {} to destroy",
        count("create") + count("replace"),
        count("update"),
        count("delete") + count("replace")
    );
    if !output_names.is_empty() {
        message.push_str(&format!("; {} output(s) change", output_names.len()));
    }
    if outside > 0 {
        message.push_str(&format!("; {outside} changed outside Terraform"));
    }
    let details = json!({
        "terraform_version": terraform_version,
        "resources": counts,
        "outside_terraform": changes.iter().filter(|c| c.origin.as_deref() == Some(ORIGIN_OUTSIDE)).count(),
        "output_changes": output_names,
    });
    PlanSummary {
        changes,
        details,
        message,
    }
}

fn output_diff(change: &Value, redactor: &Redactor) -> String {
    let render = |value: &Value, sensitive: &Value, unknown: &Value| -> Option<String> {
        if is_true(sensitive) {
            Some(MASK.to_string())
        } else if is_true(unknown) {
            Some("(known after apply)".to_string())
        } else if value.is_null() {
            None
        } else {
            Some(redactor.redact(&compact(value)))
        }
    };
    let before = render(&change["before"], &change["before_sensitive"], &Value::Null);
    let after = render(
        &change["after"],
        &change["after_sensitive"],
        &change["after_unknown"],
    );
    match (before, after) {
        (Some(b), Some(a)) => format!("{b} → {a}"),
        (None, Some(a)) => format!("+ {a}"),
        (Some(b), None) => format!("- {b}"),
        (None, None) => String::new(),
    }
}

fn is_true(value: &Value) -> bool {
    value == &Value::Bool(true)
}

fn compact(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// `~ path: before → after`, `+ path: after`, `- path: before` per changed
/// leaf attribute, masked where Terraform marks the path sensitive.
pub fn attribute_diff(change: &Value, redactor: &Redactor) -> String {
    let mut before = BTreeMap::new();
    let mut after = BTreeMap::new();
    flatten(
        &change["before"],
        &change["before_sensitive"],
        &Value::Null,
        "",
        0,
        &mut before,
    );
    flatten(
        &change["after"],
        &change["after_sensitive"],
        &change["after_unknown"],
        "",
        0,
        &mut after,
    );
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let mut lines = Vec::new();
    for key in keys {
        let line = match (before.get(key), after.get(key)) {
            (Some(b), Some(a)) if b == a && b != MASK => continue,
            // Both masked: Terraform says "changed" only if the plan says so;
            // we cannot compare, so show it only when the values differ.
            (Some(b), Some(a)) if b == a => {
                if change["before"].pointer(&pointer(key)) == change["after"].pointer(&pointer(key))
                {
                    continue;
                }
                format!("~ {key}: {MASK}")
            }
            (Some(b), Some(a)) => format!("~ {key}: {b} → {a}"),
            (None, Some(a)) => format!("+ {key}: {a}"),
            (Some(b), None) => format!("- {key}: {b}"),
            (None, None) => continue,
        };
        lines.push(redactor.redact(&line));
    }
    let extra = lines.len().saturating_sub(MAX_DIFF_LINES);
    lines.truncate(MAX_DIFF_LINES);
    if extra > 0 {
        lines.push(format!("… {extra} more attribute(s)"));
    }
    let mut text = lines.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    text
}

/// JSON pointer for a flattened `a.b[0]` key.
fn pointer(key: &str) -> String {
    let mut out = String::new();
    for part in key.split('.') {
        let (name, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        out.push('/');
        out.push_str(&name.replace('~', "~0").replace('/', "~1"));
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            out.push('/');
            out.push_str(index);
        }
    }
    out
}

/// Leaf attributes of `value` as `path → rendered`, skipping nulls. A
/// sensitive subtree becomes one masked leaf; an unknown one "(known after apply)".
fn flatten(
    value: &Value,
    sensitive: &Value,
    unknown: &Value,
    path: &str,
    depth: usize,
    out: &mut BTreeMap<String, String>,
) {
    if is_true(sensitive) {
        if !path.is_empty() {
            out.insert(path.to_string(), MASK.to_string());
        }
        return;
    }
    if is_true(unknown) {
        if !path.is_empty() {
            out.insert(path.to_string(), "(known after apply)".to_string());
        }
        return;
    }
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Null => {}
        Value::Object(map) if depth < MAX_DEPTH && !map.is_empty() => {
            for (key, v) in map {
                flatten(
                    v,
                    &sensitive[key.as_str()],
                    &unknown[key.as_str()],
                    &join(key),
                    depth + 1,
                    out,
                );
            }
            // Unknown attributes missing from `after` entirely.
            if let Some(unknown) = unknown.as_object() {
                for (key, u) in unknown {
                    if !map.contains_key(key) && is_true(u) {
                        out.insert(join(key), "(known after apply)".to_string());
                    }
                }
            }
        }
        Value::Array(items) if depth < MAX_DEPTH && !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(
                    v,
                    &sensitive[i],
                    &unknown[i],
                    &format!("{path}[{i}]"),
                    depth + 1,
                    out,
                );
            }
        }
        other => {
            if path.is_empty() {
                return;
            }
            let rendered = if contains_sensitive(sensitive) {
                MASK.to_string()
            } else {
                compact(other)
            };
            out.insert(path.to_string(), rendered);
        }
    }
}

fn contains_sensitive(mask: &Value) -> bool {
    match mask {
        Value::Bool(b) => *b,
        Value::Array(items) => items.iter().any(contains_sensitive),
        Value::Object(map) => map.values().any(contains_sensitive),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Value {
        serde_json::from_str(include_str!(
            "../../../tests/fixtures/terraform/plan-sensitive.json"
        ))
        .unwrap()
    }

    #[test]
    fn actions_map_to_one_name() {
        let a = |list: &[&str]| action_name(&list.iter().map(|s| json!(s)).collect::<Vec<_>>());
        assert_eq!(a(&["delete", "create"]), Some("replace"));
        assert_eq!(a(&["create", "delete"]), Some("replace"));
        assert_eq!(a(&["no-op"]), None);
        assert_eq!(a(&["read"]), None);
        assert_eq!(a(&["update"]), Some("update"));
    }

    #[test]
    fn sensitive_values_never_survive_in_changes() {
        let plan = plan();
        let mut redactor = Redactor::default();
        collect_secrets(&plan, &mut redactor);
        let summary = summarize(&plan, &redactor, false);
        let text = serde_json::to_string(&summary.changes).unwrap() + &summary.details.to_string();
        assert!(!text.contains("hunter22"), "{text}");
        assert!(!text.contains("hunter33"), "{text}");
        let subjects: Vec<(&str, &str)> = summary
            .changes
            .iter()
            .map(|c| (c.subject.as_str(), c.action.as_str()))
            .collect();
        assert_eq!(
            subjects,
            [
                ("terraform_data.a", "update"),
                ("terraform_data.s", "update"),
                ("output.o", "update"),
                ("output.so", "update")
            ]
        );
        let a = &summary.changes[0];
        assert!(a.diff.contains("~ input: \"one\" → \"two\""), "{}", a.diff);
        assert!(
            a.diff.contains("~ output: \"one\" → (known after apply)"),
            "{}",
            a.diff
        );
        assert_eq!(a.origin.as_deref(), Some(ORIGIN_CONFIG));
        assert!(
            summary.changes[1]
                .diff
                .contains("~ input: (sensitive value)"),
            "{}",
            summary.changes[1].diff
        );
        assert_eq!(
            summary.changes[3].diff,
            "(sensitive value) → (sensitive value)"
        );
    }

    #[test]
    fn resource_drift_is_marked_outside() {
        let plan = json!({
            "resource_drift": [{"address": "aws_instance.web", "change": {"actions": ["update"],
                "before": {"tags": {"env": "prod"}}, "after": {"tags": {"env": "hacked"}}}}],
            "resource_changes": [
                {"address": "aws_instance.web", "change": {"actions": ["update"],
                    "before": {"tags": {"env": "hacked"}}, "after": {"tags": {"env": "prod"}}}},
                {"address": "aws_s3_bucket.logs", "change": {"actions": ["no-op"], "before": {}, "after": {}}},
                {"address": "aws_s3_bucket.new", "change": {"actions": ["create"], "before": null,
                    "after": {"bucket": "n", "arn": null}, "after_unknown": {"arn": true}}}
            ]
        });
        let summary = summarize(&plan, &Redactor::default(), false);
        assert_eq!(summary.changes.len(), 2);
        let web = &summary.changes[0];
        assert_eq!(web.origin.as_deref(), Some(ORIGIN_OUTSIDE));
        assert!(
            web.diff
                .contains("changed outside Terraform:\n~ tags.env: \"prod\" → \"hacked\""),
            "{}",
            web.diff
        );
        let new = &summary.changes[1];
        assert_eq!(
            (new.action.as_str(), new.origin.as_deref()),
            ("create", Some(ORIGIN_CONFIG))
        );
        assert_eq!(new.diff, "+ arn: (known after apply)\n+ bucket: \"n\"");
        assert_eq!(summary.details["outside_terraform"], 1);
        assert_eq!(
            summary.message,
            "Plan: 1 to add, 1 to change, 0 to destroy; 1 changed outside Terraform"
        );
    }

    #[test]
    fn pointer_handles_nested_keys() {
        assert_eq!(pointer("a.b[0].c"), "/a/b/0/c");
    }
}
