//! Turns the JSON of `terraform show -json <planfile>` into resource changes:
//! one per address whose actions are not `no-op`/`read`, one per changed
//! output (`output.<name>`), each with a short attribute diff. Sensitive
//! values are masked twice: by the `*_sensitive` paths Terraform gives, and by
//! value, for copies Terraform leaves unmarked (see `redact`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::ignore::IgnoreRule;
use super::redact::{Redactor, MASK};
use crate::model::outcome::ResourceChange;

/// Diff lines kept per resource before the rest is summarised.
const MAX_DIFF_LINES: usize = 40;
/// Nested objects deeper than this are shown as compact JSON.
const MAX_DEPTH: usize = 6;

pub const ORIGIN_CONFIG: &str = "config";
pub const ORIGIN_OUTSIDE: &str = "outside";

/// What the plan says, ready for an `Outcome`.
#[derive(Debug, Default)]
pub struct PlanSummary {
    /// What an apply would do: resources whose actions are not `no-op`/`read`
    /// (plus moves and imports), and changed outputs, minus ignored ones.
    pub changes: Vec<ResourceChange>,
    /// Counts and output names for `Outcome.details` (already redacted).
    pub details: Value,
    /// One line for a person: "Plan: 1 to add, 2 to change, 0 to destroy; …".
    pub message: String,
    /// Failed `check` blocks: not drift, not an error (Terraform treats them so).
    pub warnings: Vec<String>,
    /// Per ignore rule, whether its address matched any resource in the plan.
    pub rules_matched: Vec<bool>,
}

/// Sensitivity masks of every resource the plan knows, by address: the union
/// of what the plan's change says (before and after), the resource drift, and
/// the prior state. A path sensitive anywhere is sensitive everywhere, so a
/// value that was applied in clear and is now sensitive (or the reverse) is
/// masked on both sides of its diff.
#[derive(Debug, Default)]
pub struct Sensitivity {
    resources: BTreeMap<String, Value>,
    outputs: BTreeSet<String>,
}

impl Sensitivity {
    pub fn of(plan: &Value) -> Sensitivity {
        let mut masks: BTreeMap<String, Value> = BTreeMap::new();
        let mut add = |address: &str, mask: &Value| {
            let entry = masks.entry(address.to_string()).or_insert(Value::Null);
            *entry = union(entry, mask);
        };
        for list in ["resource_changes", "resource_drift"] {
            for rc in array(plan, list) {
                if let Some(address) = rc["address"].as_str() {
                    add(address, &rc["change"]["before_sensitive"]);
                    add(address, &rc["change"]["after_sensitive"]);
                }
            }
        }
        for module in [
            &plan["prior_state"]["values"]["root_module"],
            &plan["planned_values"]["root_module"],
        ] {
            visit_modules(module, &mut |resource| {
                if let Some(address) = resource["address"].as_str() {
                    add(address, &resource["sensitive_values"]);
                }
            });
        }
        let mut outputs = BTreeSet::new();
        if let Some(changes) = plan["output_changes"].as_object() {
            for (name, change) in changes {
                if contains_sensitive(&change["before_sensitive"])
                    || contains_sensitive(&change["after_sensitive"])
                {
                    outputs.insert(name.clone());
                }
            }
        }
        for outputs_of in [
            &plan["prior_state"]["values"]["outputs"],
            &plan["planned_values"]["outputs"],
            &plan["configuration"]["root_module"]["outputs"],
        ] {
            if let Some(map) = outputs_of.as_object() {
                for (name, output) in map {
                    if is_true(&output["sensitive"]) {
                        outputs.insert(name.clone());
                    }
                }
            }
        }
        Sensitivity {
            resources: masks,
            outputs,
        }
    }

    fn resource(&self, address: &str) -> &Value {
        self.resources.get(address).unwrap_or(&Value::Null)
    }
}

fn visit_modules(module: &Value, f: &mut impl FnMut(&Value)) {
    for resource in array(module, "resources") {
        f(resource);
    }
    for child in array(module, "child_modules") {
        visit_modules(child, f);
    }
}

/// The union of two Terraform sensitivity masks (`true`, or an object/array
/// mirroring the value).
pub fn union(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Bool(true), _) | (_, Value::Bool(true)) => Value::Bool(true),
        (Value::Object(x), Value::Object(y)) => {
            let mut out = x.clone();
            for (key, value) in y {
                let merged = union(x.get(key).unwrap_or(&Value::Null), value);
                out.insert(key.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(x), Value::Array(y)) => {
            let len = x.len().max(y.len());
            Value::Array(
                (0..len)
                    .map(|i| {
                        union(
                            x.get(i).unwrap_or(&Value::Null),
                            y.get(i).unwrap_or(&Value::Null),
                        )
                    })
                    .collect(),
            )
        }
        (Value::Object(_) | Value::Array(_), _) => a.clone(),
        _ => b.clone(),
    }
}

/// Collects every secret the plan reveals: values at paths sensitive on
/// either side (or in prior state) of every resource, both sides of every
/// output that is or was sensitive, and sensitive variables' values.
pub fn collect_secrets(plan: &Value, sensitivity: &Sensitivity, redactor: &mut Redactor) {
    for list in ["resource_changes", "resource_drift"] {
        for rc in array(plan, list) {
            let mask = sensitivity.resource(rc["address"].as_str().unwrap_or(""));
            redactor.add_masked(&rc["change"]["before"], mask);
            redactor.add_masked(&rc["change"]["after"], mask);
        }
    }
    for module in [
        &plan["prior_state"]["values"]["root_module"],
        &plan["planned_values"]["root_module"],
    ] {
        visit_modules(module, &mut |resource| {
            let mask = sensitivity.resource(resource["address"].as_str().unwrap_or(""));
            redactor.add_masked(&resource["values"], mask);
        });
    }
    for name in &sensitivity.outputs {
        redactor.add_value(&plan["output_changes"][name]["before"]);
        redactor.add_value(&plan["output_changes"][name]["after"]);
        redactor.add_value(&plan["prior_state"]["values"]["outputs"][name]["value"]);
        redactor.add_value(&plan["planned_values"]["outputs"][name]["value"]);
    }
    if let Some(variables) = plan["configuration"]["root_module"]["variables"].as_object() {
        for (name, declared) in variables {
            if is_true(&declared["sensitive"]) {
                redactor.add_value(&plan["variables"][name]["value"]);
            }
        }
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

/// How `summarize` reads a plan.
pub struct Options<'a> {
    pub redactor: &'a Redactor,
    pub sensitivity: &'a Sensitivity,
    /// The probe's inference that the configuration is unchanged since the
    /// root was last in sync, so any change Terraform cannot attribute must
    /// have come from outside.
    pub outside_by_default: bool,
    pub ignore: &'a [IgnoreRule],
    /// The key sensitive values enter change fingerprints under.
    pub fingerprint_key: &'a crate::model::fingerprint::FingerprintKey,
}

/// Builds the changes from the plan's own actions (never from the exit code).
pub fn summarize(plan: &Value, options: &Options) -> PlanSummary {
    let redactor = options.redactor;
    let default_origin = if options.outside_by_default {
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
    let mut rules_matched = vec![false; options.ignore.len()];
    let mut mark_rules = |address: &str| {
        for (i, rule) in options.ignore.iter().enumerate() {
            if rule.matches_address(address) {
                rules_matched[i] = true;
            }
        }
    };
    visit_modules(&plan["prior_state"]["values"]["root_module"], &mut |r| {
        mark_rules(r["address"].as_str().unwrap_or(""))
    });

    let mut changes = Vec::new();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut planned_instead = Vec::new();
    let mut ignored = Vec::new();
    for rc in array(plan, "resource_changes") {
        let Some(address) = rc["address"].as_str() else {
            continue;
        };
        mark_rules(address);
        let change = &rc["change"];
        let action = match action_name(array(change, "actions")) {
            Some(action) => action,
            None if rc["previous_address"].is_string() => "move",
            None if change["importing"].is_object() => "import",
            None => {
                if array(change, "actions").iter().any(|a| a == "read") {
                    let reason = rc["action_reason"].as_str().unwrap_or("read during apply");
                    planned_instead.push(format!("{address}: read ({reason})"));
                }
                continue;
            }
        };
        seen.insert(address.to_string());
        let mask = options.sensitivity.resource(address);
        let rules: Vec<&IgnoreRule> = options
            .ignore
            .iter()
            .filter(|r| r.matches_address(address))
            .collect();
        let mut lines = attribute_lines(change, mask, redactor);
        if !rules.is_empty() {
            let (dropped, kept): (Vec<AttributeLine>, Vec<AttributeLine>) = lines
                .into_iter()
                .partition(|l| rules.iter().any(|r| r.ignores_attribute(&l.path)));
            let whole = rules.iter().any(|r| r.attributes.is_empty());
            let known_left = kept.iter().any(|l| !l.unknown_after);
            if whole || (!dropped.is_empty() && !known_left) {
                ignored.push(json!({"address": address, "action": action, "attributes": "all"}));
                continue;
            }
            if !dropped.is_empty() {
                ignored.push(json!({
                    "address": address,
                    "action": action,
                    "attributes": dropped.iter().map(|l| l.path.as_str()).collect::<Vec<_>>(),
                }));
            }
            lines = kept;
        }
        *counts.entry(action).or_default() += 1;
        let mut diff = String::new();
        let origin = match drift.get(address) {
            Some(drifted) => {
                diff.push_str("changed outside Terraform:\n");
                diff.push_str(&render(attribute_lines(&drifted["change"], mask, redactor)));
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
        diff.push_str(&render(lines));
        if let Some(reason) = rc["action_reason"].as_str() {
            diff.push_str(&format!("# reason: {reason}\n"));
        }
        let mut hidden = Vec::new();
        for part in [
            change,
            drift.get(address).map_or(&Value::Null, |d| &d["change"]),
        ] {
            super::redact::masked_values(&part["before"], mask, &mut hidden);
            super::redact::masked_values(&part["after"], mask, &mut hidden);
        }
        let hidden: Vec<String> = hidden
            .iter()
            .map(|value| options.fingerprint_key.secret(value.as_bytes()))
            .collect();
        let mut resource = ResourceChange::new(address, action)
            .with_diff(redactor.redact(diff.trim_end()))
            .with_origin(origin);
        resource.fingerprint = crate::model::fingerprint::change(
            &resource.subject,
            &resource.action,
            &[],
            &resource.diff,
            &hidden,
        );
        changes.push(resource);
    }
    // Drift that the configuration absorbs (ignore_changes, …) plans no
    // action: apply would do nothing, so it is a note, never drift.
    let absorbed: Vec<&String> = drift.keys().filter(|a| !seen.contains(*a)).collect();
    for address in &absorbed {
        planned_instead.push(format!(
            "{address}: changed outside Terraform; the configuration plans no action"
        ));
    }
    for deferred in array(plan, "deferred_changes") {
        let address = deferred["resource_change"]["address"]
            .as_str()
            .unwrap_or("?");
        let reason = deferred["reason"].as_str().unwrap_or("unknown");
        planned_instead.push(format!("{address}: deferred ({reason})"));
    }

    let mut output_names = Vec::new();
    let mut outputs_outside = 0;
    if let Some(outputs) = plan["output_changes"].as_object() {
        for (name, change) in outputs {
            let Some(action) = action_name(array(change, "actions")) else {
                continue;
            };
            output_names.push(name.clone());
            if default_origin == ORIGIN_OUTSIDE {
                outputs_outside += 1;
            }
            let sensitive = options.sensitivity.outputs.contains(name);
            let diff = output_diff(change, sensitive, redactor);
            let mut output = ResourceChange::new(format!("output.{name}"), action)
                .with_diff(diff)
                .with_origin(default_origin);
            if sensitive {
                let hidden: Vec<String> = [&change["before"], &change["after"]]
                    .iter()
                    .map(|v| options.fingerprint_key.secret(v.to_string().as_bytes()))
                    .collect();
                output.fingerprint = crate::model::fingerprint::change(
                    &output.subject,
                    &output.action,
                    &[],
                    &output.diff,
                    &hidden,
                );
            }
            changes.push(output);
        }
    }

    let mut warnings = Vec::new();
    let mut checks = BTreeMap::new();
    for check in array(plan, "checks") {
        if check["address"]["kind"] != "check" {
            continue;
        }
        let name = check["address"]["to_display"].as_str().unwrap_or("check");
        let status = check["status"].as_str().unwrap_or("unknown");
        checks.insert(name.to_string(), status.to_string());
        if status == "fail" || status == "error" {
            let problems: Vec<&str> = array(check, "instances")
                .iter()
                .flat_map(|i| array(i, "problems"))
                .filter_map(|p| p["message"].as_str())
                .collect();
            let mut warning = format!("{name}: assertion {status}ed");
            if status == "error" {
                warning = format!("{name}: could not be evaluated");
            }
            if !problems.is_empty() {
                warning.push_str(": ");
                warning.push_str(&problems.join("; "));
            }
            warnings.push(redactor.redact(&warning));
        }
    }

    let terraform_version = plan["terraform_version"].as_str().unwrap_or("").to_string();
    let count = |action: &str| counts.get(action).copied().unwrap_or(0);
    let outside = changes
        .iter()
        .filter(|c| {
            c.origin.as_deref() == Some(ORIGIN_OUTSIDE) && !c.subject.starts_with("output.")
        })
        .count();
    let message = if changes.is_empty() {
        let mut message = "No changes to apply".to_string();
        if !planned_instead.is_empty() {
            message.push_str(&format!(
                "; Terraform planned only: {}",
                planned_instead.join("; ")
            ));
        }
        if !ignored.is_empty() {
            message.push_str(&format!("; {} ignored change(s)", ignored.len()));
        }
        message
    } else {
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
        if !ignored.is_empty() {
            message.push_str(&format!("; {} ignored", ignored.len()));
        }
        message
    };
    let mut details = json!({
        "terraform_version": terraform_version,
        "resources": counts,
        "outside_terraform": outside,
        "outputs_outside_terraform": outputs_outside,
        "output_changes": output_names,
    });
    if !planned_instead.is_empty() {
        details["planned_instead"] = json!(planned_instead);
    }
    if !checks.is_empty() {
        details["checks"] = json!(checks);
    }
    if !options.ignore.is_empty() {
        details["ignored"] = json!(ignored.len());
        details["ignored_changes"] = json!(ignored);
        let unmatched: Vec<String> = options
            .ignore
            .iter()
            .zip(&rules_matched)
            .filter(|(_, matched)| !**matched)
            .map(|(rule, _)| format!("{} (address {:?})", rule.key, rule.address))
            .collect();
        if !unmatched.is_empty() {
            details["ignore_rules_unmatched"] = json!(unmatched);
        }
    }
    let details = redact_json(details, redactor);
    let message = redactor.redact(&message);
    PlanSummary {
        changes,
        details,
        message,
        warnings,
        rules_matched,
    }
}

/// Redacts every string inside a JSON value.
fn redact_json(value: Value, redactor: &Redactor) -> Value {
    match value {
        Value::String(s) => Value::String(redactor.redact(&s)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| redact_json(v, redactor))
                .collect(),
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (redactor.redact(&k), redact_json(v, redactor)))
                .collect(),
        ),
        other => other,
    }
}

/// An output's diff; an output sensitive on either side (now or in prior
/// state) is masked whole on both sides.
fn output_diff(change: &Value, sensitive: bool, redactor: &Redactor) -> String {
    let render = |value: &Value, unknown: &Value| -> Option<String> {
        if value.is_null() && !is_true(unknown) {
            None
        } else if sensitive {
            Some(MASK.to_string())
        } else if is_true(unknown) {
            Some("(known after apply)".to_string())
        } else {
            Some(redactor.redact(&compact(value)))
        }
    };
    let before = render(&change["before"], &Value::Null);
    let after = render(&change["after"], &change["after_unknown"]);
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

/// One changed leaf attribute of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeLine {
    /// Flattened path, `tags.Name`, `ingress[0].cidr`.
    pub path: String,
    /// `~ path: before → after`, `+ path: after` or `- path: before`; redacted.
    pub line: String,
    /// The new value is only known after apply (a consequence, not a cause).
    pub unknown_after: bool,
}

/// The changed leaf attributes of `change`, masked wherever `mask` (the
/// union of every sensitivity Terraform reports for the resource) marks a
/// path sensitive: on both sides alike.
pub fn attribute_lines(change: &Value, mask: &Value, redactor: &Redactor) -> Vec<AttributeLine> {
    let mut before = BTreeMap::new();
    let mut after = BTreeMap::new();
    flatten(&change["before"], mask, &Value::Null, "", 0, &mut before);
    flatten(
        &change["after"],
        mask,
        &change["after_unknown"],
        "",
        0,
        &mut after,
    );
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    // An object that becomes unknown is one line, not one removal per leaf.
    let unknown: Vec<&String> = after
        .iter()
        .filter(|(_, v)| v.as_str() == UNKNOWN)
        .map(|(k, _)| k)
        .collect();
    let below = |key: &str, ancestor: &str| {
        key.len() > ancestor.len()
            && key.starts_with(ancestor)
            && matches!(key.as_bytes()[ancestor.len()], b'.' | b'[')
    };
    let mut lines = Vec::new();
    for key in keys {
        let (b, a) = (before.get(key), after.get(key));
        if a.is_none() && unknown.iter().any(|u| below(key, u)) {
            continue;
        }
        let had_children = || before.keys().any(|k| below(k, key));
        let line = match (b, a) {
            (None, Some(a)) if a == UNKNOWN && had_children() => format!("~ {key}: {{…}} → {a}"),
            (Some(b), Some(a)) if b == a && b != MASK => continue,
            // Both masked: show it only when the values differ.
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
        // A whole value masked by text search reads as Terraform prints it.
        let line = redactor.redact(&line).replace(&format!("\"{MASK}\""), MASK);
        lines.push(AttributeLine {
            path: key.clone(),
            line,
            unknown_after: a.map(String::as_str) == Some(UNKNOWN),
        });
    }
    lines
}

/// The lines as text, capped at `MAX_DIFF_LINES`.
pub fn render(lines: Vec<AttributeLine>) -> String {
    let extra = lines.len().saturating_sub(MAX_DIFF_LINES);
    let mut text: Vec<String> = lines
        .into_iter()
        .take(MAX_DIFF_LINES)
        .map(|l| l.line)
        .collect();
    if extra > 0 {
        text.push(format!("… {extra} more attribute(s)"));
    }
    let mut text = text.join("\n");
    if !text.is_empty() {
        text.push('\n');
    }
    text
}

const UNKNOWN: &str = "(known after apply)";

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
            out.insert(path.to_string(), UNKNOWN.to_string());
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
                        out.insert(join(key), UNKNOWN.to_string());
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

    /// Summarizes as the probe does: secrets collected first.
    fn read(plan: &Value, outside: bool, ignore: &[IgnoreRule]) -> PlanSummary {
        let sensitivity = Sensitivity::of(plan);
        let mut redactor = Redactor::default();
        collect_secrets(plan, &sensitivity, &mut redactor);
        summarize(
            plan,
            &Options {
                redactor: &redactor,
                sensitivity: &sensitivity,
                outside_by_default: outside,
                ignore,
                fingerprint_key: &Default::default(),
            },
        )
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
    fn a_changed_sensitive_value_changes_the_fingerprint_never_the_text() {
        let plan = plan();
        let before = read(&plan, false, &[]);
        let secret = &before.changes[1];
        assert_eq!(secret.subject, "terraform_data.s");
        assert!(crate::model::fingerprint::is_valid(&secret.fingerprint));
        let text = serde_json::to_string(&plan)
            .unwrap()
            .replace("hunter33", "hunter44");
        let after = read(&serde_json::from_str(&text).unwrap(), false, &[]);
        assert_eq!(after.changes[1].diff, secret.diff, "the diff masks both");
        assert_ne!(after.changes[1].fingerprint, secret.fingerprint);
        // The other resources' fingerprints stay as they were.
        assert_eq!(after.changes[0].fingerprint, before.changes[0].fingerprint);
        // Keyed: another key, another fingerprint of the same hidden value.
        let sensitivity = Sensitivity::of(&plan);
        let mut redactor = Redactor::default();
        collect_secrets(&plan, &sensitivity, &mut redactor);
        let other = summarize(
            &plan,
            &Options {
                redactor: &redactor,
                sensitivity: &sensitivity,
                outside_by_default: false,
                ignore: &[],
                fingerprint_key: &crate::model::fingerprint::FingerprintKey::from_bytes(
                    b"another key, 16+".to_vec(),
                ),
            },
        );
        assert_ne!(other.changes[1].fingerprint, secret.fingerprint);
        assert_eq!(other.changes[0].fingerprint, before.changes[0].fingerprint);
    }

    #[test]
    fn sensitive_values_never_survive_in_changes() {
        let plan = plan();
        let summary = read(&plan, false, &[]);
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
        let summary = read(&plan, false, &[]);
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

    fn data(address: &str, actions: &[&str], before: Value, after: Value) -> Value {
        json!({"address": address, "change": {"actions": actions, "before": before, "after": after,
            "before_sensitive": {}, "after_sensitive": {}, "after_unknown": {}}})
    }

    #[test]
    fn verdict_comes_from_actions_not_the_exit_code() {
        // Modelled on a `check` block with a scoped `terraform_remote_state`:
        // Terraform plans a read on every plan and exits 2.
        let reads_only = json!({
            "resource_changes": [
                {"address": "data.terraform_remote_state.net", "action_reason": "read_because_check_nested",
                 "change": {"actions": ["read"], "before": null, "after": {"outputs": {"cidr": "10.0.0.0/16"}}}},
                data("terraform_data.a", &["no-op"], json!({"input": "x"}), json!({"input": "x"})),
            ],
            "output_changes": {"o": {"actions": ["no-op"], "before": "y", "after": "y"}},
            "checks": [{"address": {"kind": "check", "to_display": "check.net"}, "status": "pass",
                        "instances": [{"status": "pass"}]}]
        });
        let summary = read(&reads_only, false, &[]);
        assert!(summary.changes.is_empty(), "{:?}", summary.changes);
        assert!(summary.warnings.is_empty());
        assert_eq!(
            summary.details["planned_instead"],
            json!(["data.terraform_remote_state.net: read (read_because_check_nested)"])
        );
        assert_eq!(summary.details["checks"]["check.net"], "pass");

        // Siblings of the same kind: every action list and what it means.
        for (actions, drift) in [
            (vec!["no-op"], false),
            (vec!["read"], false),
            (vec![], false),
            (vec!["create"], true),
            (vec!["update"], true),
            (vec!["delete"], true),
            (vec!["delete", "create"], true),
            (vec!["create", "delete"], true),
            (vec!["forget"], true),
        ] {
            let plan = json!({"resource_changes": [data("terraform_data.a", &actions, json!({"input": "1"}), json!({"input": "2"}))]});
            assert_eq!(
                !read(&plan, false, &[]).changes.is_empty(),
                drift,
                "{actions:?}"
            );
        }
        // A move or an import plans no action on the object but changes state.
        let moved = json!({"resource_changes": [{"address": "terraform_data.b", "previous_address": "terraform_data.a",
            "change": {"actions": ["no-op"], "before": {}, "after": {}}}]});
        assert_eq!(read(&moved, false, &[]).changes[0].action, "move");
        // Deferred work and drift the configuration absorbs are notes, not drift.
        let absorbed = json!({
            "resource_drift": [data("aws_autoscaling_group.web", &["update"], json!({"desired_capacity": 2}), json!({"desired_capacity": 5}))],
            "resource_changes": [data("aws_autoscaling_group.web", &["no-op"], json!({"desired_capacity": 5}), json!({"desired_capacity": 5}))],
            "deferred_changes": [{"reason": "provider_config_unknown", "resource_change": {"address": "k8s_manifest.x"}}],
        });
        let summary = read(&absorbed, false, &[]);
        assert!(summary.changes.is_empty(), "{:?}", summary.changes);
        assert_eq!(
            summary.details["planned_instead"],
            json!([
                "aws_autoscaling_group.web: changed outside Terraform; the configuration plans no action",
                "k8s_manifest.x: deferred (provider_config_unknown)"
            ])
        );
        // An output change alone is drift.
        let output =
            json!({"output_changes": {"o": {"actions": ["update"], "before": "a", "after": "b"}}});
        let summary = read(&output, false, &[]);
        assert_eq!(summary.changes[0].subject, "output.o");
        assert_eq!(summary.changes[0].diff, "\"a\" → \"b\"");
    }

    #[test]
    fn failed_checks_are_warnings_not_drift() {
        let plan = json!({
            "resource_changes": [{"address": "data.http.health", "change": {"actions": ["read"], "before": null, "after": {}}}],
            "checks": [
                {"address": {"kind": "check", "to_display": "check.health"}, "status": "fail",
                 "instances": [{"status": "fail", "problems": [{"message": "the site is down"}]}]},
                {"address": {"kind": "check", "to_display": "check.cert"}, "status": "error", "instances": []},
                {"address": {"kind": "resource", "to_display": "aws_instance.web"}, "status": "fail", "instances": []},
                {"address": {"kind": "check", "to_display": "check.ok"}, "status": "pass", "instances": []},
            ]
        });
        let summary = read(&plan, false, &[]);
        assert!(summary.changes.is_empty());
        assert_eq!(
            summary.warnings,
            [
                "check.health: assertion failed: the site is down",
                "check.cert: could not be evaluated"
            ]
        );
    }

    #[test]
    fn outside_terraform_counts_resources_only() {
        let plan = json!({
            "resource_drift": [data("terraform_data.a", &["update"], json!({"input": "1"}), json!({"input": "9"}))],
            "resource_changes": [data("terraform_data.a", &["update"], json!({"input": "9"}), json!({"input": "1"}))],
            "output_changes": {"o": {"actions": ["update"], "before": "9", "after": "1"}}
        });
        let summary = read(&plan, true, &[]);
        assert_eq!(summary.changes.len(), 2);
        assert_eq!(summary.details["outside_terraform"], 1);
        assert_eq!(summary.details["outputs_outside_terraform"], 1);
        assert_eq!(
            summary.message,
            "Plan: 0 to add, 1 to change, 0 to destroy; 1 output(s) change; 1 changed outside Terraform"
        );
    }

    /// A path sensitive on either side (or in prior state) is masked on both.
    #[test]
    fn sensitivity_from_either_side_masks_both() {
        let old = "OLDPASS-4711-clear";
        let new = "NEWPASS-0815-secret";
        // (case, before_sensitive, after_sensitive, prior state's sensitive_values)
        let cases = [
            (
                "after only (marked sensitive later)",
                json!({}),
                json!({"input": true}),
                json!({}),
            ),
            (
                "before only (sensitivity removed)",
                json!({"input": true}),
                json!({}),
                json!({}),
            ),
            (
                "both",
                json!({"input": true}),
                json!({"input": true}),
                json!({}),
            ),
            (
                "prior state only",
                json!({}),
                json!({}),
                json!({"input": true}),
            ),
            (
                "nested, after only",
                json!({}),
                json!({"input": {"db": {"password": true}}}),
                json!({}),
            ),
            (
                "nested, before only",
                json!({"input": {"db": {"password": true}}}),
                json!({}),
                json!({}),
            ),
            (
                "list element, after only",
                json!({}),
                json!({"input": {"list": [false, true]}}),
                json!({}),
            ),
        ];
        for (case, before_sensitive, after_sensitive, prior) in cases {
            let nested = case.starts_with("nested");
            let listed = case.starts_with("list");
            let value = |secret: &str| {
                if nested {
                    json!({"db": {"password": secret, "user": "app"}})
                } else if listed {
                    json!({"list": ["public", secret]})
                } else {
                    json!(secret)
                }
            };
            let plan = json!({
                "resource_changes": [{"address": "terraform_data.db", "change": {
                    "actions": ["update"],
                    "before": {"input": value(old), "output": value(old)},
                    "after": {"input": value(new)},
                    "after_unknown": {"output": true},
                    "before_sensitive": before_sensitive,
                    "after_sensitive": after_sensitive}}],
                "prior_state": {"values": {"root_module": {"resources": [
                    {"address": "terraform_data.db", "values": {"input": value(old)}, "sensitive_values": prior}]}}}
            });
            let summary = read(&plan, false, &[]);
            let text = serde_json::to_string(&summary.changes).unwrap()
                + &summary.details.to_string()
                + &summary.message;
            assert!(!text.contains(old) && !text.contains(new), "{case}: {text}");
            let diff = &summary.changes[0].diff;
            assert!(diff.contains(MASK), "{case}: {diff}");
            if nested {
                assert!(
                    diff.contains("~ input.db.password: (sensitive value)"),
                    "{case}: {diff}"
                );
            } else if listed {
                assert!(
                    diff.contains("~ input.list[1]: (sensitive value)"),
                    "{case}: {diff}"
                );
            } else {
                assert!(
                    diff.contains("~ input: (sensitive value)"),
                    "{case}: {diff}"
                );
            }
            // The copy Terraform leaves unmarked (`output`) is masked by value.
            assert!(!diff.contains("OLDPASS"), "{case}: {diff}");
        }
    }

    #[test]
    fn outputs_sensitive_now_or_before_are_masked_on_both_sides() {
        for (case, plan) in [
            (
                "sensitive now",
                json!({"output_changes": {"p": {"actions": ["update"], "before": "OLD-clear-1", "after": "NEW-secret-2",
                "before_sensitive": false, "after_sensitive": true}}}),
            ),
            (
                "sensitive before",
                json!({"output_changes": {"p": {"actions": ["update"], "before": "OLD-clear-1", "after": "NEW-secret-2",
                "before_sensitive": true, "after_sensitive": false}}}),
            ),
            (
                "sensitive in prior state",
                json!({"output_changes": {"p": {"actions": ["update"], "before": "OLD-clear-1", "after": "NEW-secret-2"}},
                "prior_state": {"values": {"outputs": {"p": {"sensitive": true, "value": "OLD-clear-1"}}}}}),
            ),
            (
                "declared sensitive",
                json!({"output_changes": {"p": {"actions": ["update"], "before": "OLD-clear-1", "after": "NEW-secret-2"}},
                "configuration": {"root_module": {"outputs": {"p": {"sensitive": true}}}}}),
            ),
        ] {
            let summary = read(&plan, false, &[]);
            assert_eq!(
                summary.changes[0].diff, "(sensitive value) → (sensitive value)",
                "{case}"
            );
        }
    }

    fn rule(address: &str, attributes: &[&str]) -> IgnoreRule {
        IgnoreRule::build(
            "ignore[0]",
            &super::super::ignore::IgnoreRuleConfig {
                address: address.into(),
                attributes: attributes.iter().map(|s| s.to_string()).collect(),
            },
        )
        .unwrap()
    }

    #[test]
    fn ignore_rules_drop_whole_or_part_of_a_change() {
        let asg = |address: &str| {
            data(
                address,
                &["update"],
                json!({"desired_capacity": 2, "tags": {"LastScaledAt": "mon", "Name": "web"}}),
                json!({"desired_capacity": 5, "tags": {"LastScaledAt": "tue", "Name": "web"}}),
            )
        };
        let plan = json!({"resource_changes": [
            asg("module.web.aws_autoscaling_group.this"),
            data("aws_instance.web", &["update"], json!({"ami": "a", "tags": {"LastScaledAt": "x"}}), json!({"ami": "b", "tags": {"LastScaledAt": "y"}})),
        ]});
        // Every differing attribute ignored: not drift; partly: only the rest.
        let rules = [
            rule(
                "module.*.aws_autoscaling_group.*",
                &["desired_capacity", "tags.LastScaledAt"],
            ),
            rule("*", &["tags.LastScaledAt"]),
            rule("aws_db_instance.*", &[]),
        ];
        let summary = read(&plan, false, &rules);
        let subjects: Vec<&str> = summary.changes.iter().map(|c| c.subject.as_str()).collect();
        assert_eq!(subjects, ["aws_instance.web"]);
        assert_eq!(summary.changes[0].diff, "~ ami: \"a\" → \"b\"");
        assert_eq!(summary.details["ignored"], 2);
        assert_eq!(summary.details["ignored_changes"][0]["attributes"], "all");
        assert_eq!(
            summary.details["ignored_changes"][1]["attributes"],
            json!(["tags.LastScaledAt"])
        );
        assert_eq!(summary.rules_matched, [true, true, false]);
        assert_eq!(
            summary.details["ignore_rules_unmatched"],
            json!(["ignore[0] (address \"aws_db_instance.*\")"])
        );
        // A rule without attributes ignores the resource's every change.
        let summary = read(&plan, false, &[rule("aws_instance.web", &[])]);
        assert_eq!(summary.changes.len(), 1);
        assert_eq!(
            summary.changes[0].subject,
            "module.web.aws_autoscaling_group.this"
        );
        // Only ignored changes left: no drift, and the message says why.
        let summary = read(&plan, false, &[rule("*", &[])]);
        assert!(summary.changes.is_empty());
        assert_eq!(summary.message, "No changes to apply; 2 ignored change(s)");
        // A consequence known only after apply does not keep an ignored change alive.
        let data_plan = json!({"resource_changes": [{"address": "terraform_data.t", "change": {
            "actions": ["update"], "before": {"input": "1", "output": "1"}, "after": {"input": "2"},
            "after_unknown": {"output": true}}}]});
        assert!(
            read(&data_plan, false, &[rule("terraform_data.t", &["input"])])
                .changes
                .is_empty()
        );
    }
}
