//! What users install next to driftwatch: the Prometheus rules (promtool),
//! the Alertmanager example (amtool), the Grafana dashboard (every expression
//! parsed by promtool and checked against the metrics driftwatch exports),
//! the systemd unit and the Kubernetes manifests. The end-to-end test runs
//! driftwatch → Prometheus → Alertmanager → a Slack webhook receiver.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn have_monitoring_tools() -> bool {
    common::have_tool("promtool") && common::have_tool("amtool") && common::have_tool("python3")
}

/// Runs scripts/check-monitoring with `args`; returns (success, stdout + stderr).
fn check_monitoring(args: &[&str]) -> (bool, String) {
    let out = Command::new(repo_root().join("scripts/check-monitoring"))
        .args(args)
        .output()
        .expect("scripts/check-monitoring runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Copies what check-monitoring looks at into a temporary tree, for tests
/// that break it.
fn copy_monitoring_tree(dest: &Path) {
    for dir in ["alerts", "alerts/tests", "dashboards", "config", "docs"] {
        std::fs::create_dir_all(dest.join(dir)).unwrap();
        for entry in std::fs::read_dir(repo_root().join(dir)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), dest.join(dir).join(entry.file_name())).unwrap();
            }
        }
    }
    std::fs::copy(repo_root().join("README.md"), dest.join("README.md")).unwrap();
}

#[test]
fn shipped_rules_alertmanager_config_and_dashboard_pass_their_checks() {
    if !have_monitoring_tools() {
        return;
    }
    let (ok, output) = check_monitoring(&[]);
    assert!(ok, "scripts/check-monitoring failed:\n{output}");
    assert!(output.contains("dashboard expressions checked"), "{output}");
}

#[test]
fn rule_unit_tests_catch_a_weakened_drift_alert() {
    if !have_monitoring_tools() {
        return;
    }
    // The promtool tests must fail when DriftDetected fires too early, or is
    // based on the last result (which errors reset) instead of `_drifted`.
    let rules = read("alerts/driftwatch.rules.yml");
    let drift_expr = "expr: |\n          max without (instance, pod) (driftwatch_probe_drifted) == 1\n          or (\n              max without (instance, pod) (last_over_time(driftwatch_probe_drifted[10m])) == 1\n            unless\n              max without (instance, pod) (\n                driftwatch_probe_drifted\n                and on (job, instance, probe, layer, root)\n                  driftwatch_probe_last_success_timestamp_seconds > 0\n              )\n          )";
    // The same rule on the last result, which an error changes.
    let result_based = drift_expr
        .replace("driftwatch_probe_drifted", "driftwatch_probe_result")
        .replace("== 1", "== 2");
    // The rule before scale-out: gap-tolerant, but per replica.
    let per_replica = "expr: |\n          driftwatch_probe_drifted == 1\n          or (\n              last_over_time(driftwatch_probe_drifted[10m]) == 1\n            unless on (job, instance, probe, layer, root)\n              driftwatch_probe_drifted\n          )";
    let failing_expr = "expr: |\n          max without (instance, pod) (driftwatch_probe_result == 1)\n          or (\n              max without (instance, pod) (last_over_time(driftwatch_probe_result[10m]) == 1)\n            unless\n              max without (instance, pod) (\n                driftwatch_probe_result\n                and on (job, instance, probe, layer, root)\n                  driftwatch_probe_last_run_timestamp_seconds > 0\n              )\n          )";
    let expiring_expr = "expr: |\n          min without (instance, pod) (driftwatch_probe_ack_expiry_timestamp_seconds) - time() < 86400\n          or (\n              min without (instance, pod) (last_over_time(driftwatch_probe_ack_expiry_timestamp_seconds[10m])) - time() < 86400 > 0\n            unless\n              max without (instance, pod) (\n                driftwatch_probe_acknowledged_resources\n                and on (job, instance, probe, layer, root)\n                  driftwatch_probe_last_success_timestamp_seconds > 0\n              )\n          )";
    let changed_expr = "expr: |\n          max without (instance, pod) (driftwatch_probe_ack_mismatched_resources) > 0\n          or (\n              max without (instance, pod) (last_over_time(driftwatch_probe_ack_mismatched_resources[10m])) > 0\n            unless\n              max without (instance, pod) (\n                driftwatch_probe_ack_mismatched_resources\n                and on (job, instance, probe, layer, root)\n                  driftwatch_probe_last_success_timestamp_seconds > 0\n              )\n          )";
    let mutations = [
        (
            "for: 1h\n",
            "for: 58m\n",
            "fires before an hour of drift",
            "drift_detected.yml",
        ),
        (
            drift_expr,
            result_based.as_str(),
            "resolved by an error",
            "drift_detected.yml",
        ),
        (
            drift_expr,
            "expr: max without (instance, pod) (driftwatch_probe_drifted) == 1",
            "resolved by a restart of driftwatch",
            "restart_and_sync_age.yml",
        ),
        (
            drift_expr,
            per_replica,
            "resolved or fired again when its instance moves to another replica",
            "scale_out.yml",
        ),
        (
            "                driftwatch_probe_drifted\n                and on (job, instance, probe, layer, root)\n                  driftwatch_probe_last_success_timestamp_seconds > 0\n",
            "                driftwatch_probe_drifted\n",
            "resolved by a new owner that has not reached a verdict yet",
            "scale_out.yml",
        ),
        (
            drift_expr,
            "expr: max without (instance, pod) (driftwatch_probe_drifted) == 1",
            "is resolved by the gap of a move to another replica",
            "scale_out.yml",
        ),
        (
            failing_expr,
            "expr: max without (instance, pod) (driftwatch_probe_result == 1)",
            "(DriftProbeFailing) is resolved by the gap of a move to another replica",
            "scale_out.yml",
        ),
        // Acknowledgements (issue 22).
        (
            drift_expr,
            result_based.as_str(),
            "fires for acknowledged drift (the verdict stays 2)",
            "acknowledgements.yml",
        ),
        (
            "            and on (job, instance, probe, root)\n              (driftwatch_probe_drifted == 1)\n",
            "",
            "(TerradiffDriftDetected) fires for acknowledged drift",
            "acknowledgements.yml",
        ),
        (
            "              terradiff_plan_exit_code\n              unless on (job, instance, probe, root)\n                driftwatch_probe_drifted\n",
            "              terradiff_plan_exit_code\n",
            "(TerradiffDriftDetected) fires for acknowledged drift through the terradiff-only branch",
            "acknowledgements.yml",
        ),
        (
            "(driftwatch_probe_ack_expiry_timestamp_seconds) - time() < 86400\n",
            "(driftwatch_probe_ack_expiry_timestamp_seconds) - time() < 172800\n",
            "(DriftAcknowledgementExpiring) fires 48 h before the expiry",
            "acknowledgements.yml",
        ),
        (
            expiring_expr,
            "expr: min without (instance, pod) (driftwatch_probe_ack_expiry_timestamp_seconds) - time() < 86400",
            "(DriftAcknowledgementExpiring) is resolved by the gap of a move to another replica",
            "acknowledgements.yml",
        ),
        (
            "                driftwatch_probe_acknowledged_resources\n                and on (job, instance, probe, layer, root)\n                  driftwatch_probe_last_success_timestamp_seconds > 0\n",
            "                driftwatch_probe_acknowledged_resources\n",
            "(DriftAcknowledgementExpiring) is resolved by a new owner that has not reached a verdict yet",
            "acknowledgements.yml",
        ),
        (
            changed_expr,
            "expr: max without (instance, pod) (driftwatch_probe_ack_mismatched_resources) > 0",
            "(DriftAcknowledgedChanged) is resolved by the gap of a move to another replica",
            "acknowledgements.yml",
        ),
        (
            "          )\n        for: 15m\n",
            "          )\n        for: 5m\n",
            "(DriftAcknowledgedChanged) fires before 15 minutes of a changed acknowledged drift",
            "acknowledgements.yml",
        ),
    ];
    for (from, to, what, test_file) in mutations {
        let tmp = tempfile::tempdir().unwrap();
        copy_monitoring_tree(tmp.path());
        assert!(rules.contains(from), "rules no longer contain {from:?}");
        // Each weakening hits the rule it names (the first match).
        if test_file == "acknowledgements.yml" && from != drift_expr {
            assert_eq!(rules.matches(from).count(), 1, "{from:?} is not unique");
        }
        std::fs::write(
            tmp.path().join("alerts/driftwatch.rules.yml"),
            rules.replacen(from, to, 1),
        )
        .unwrap();
        let out = Command::new("promtool")
            .arg("test")
            .arg("rules")
            .arg(tmp.path().join("alerts/tests").join(test_file))
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "promtool tests ({test_file}) pass although DriftDetected {what}"
        );
    }
}

#[test]
fn broken_dashboard_or_rule_fails_naming_file_and_expression() {
    if !have_monitoring_tools() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    copy_monitoring_tree(tmp.path());

    // A dashboard with one expression that does not parse and one that uses a
    // metric driftwatch does not export.
    let path = tmp.path().join("dashboards/driftwatch.json");
    let mut dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array_mut().unwrap();
    let stat = panels
        .iter_mut()
        .find(|p| p["title"] == "In sync")
        .expect("In sync panel");
    stat["targets"][0]["expr"] = "count(driftwatch_probe_result{layer=~\"$layer\"} == 0".into();
    let drifted = panels
        .iter_mut()
        .find(|p| p["title"] == "Drifted")
        .expect("Drifted panel");
    drifted["targets"][0]["expr"] = "sum(driftwatch_probe_drift_total{probe=~\"$probe\"})".into();
    std::fs::write(&path, serde_json::to_string_pretty(&dashboard).unwrap()).unwrap();

    // A scrape that has every metric the shipped files use.
    let scrape = tmp.path().join("scrape.txt");
    std::fs::write(&scrape, scrape_fixture()).unwrap();

    let root = tmp.path().to_str().unwrap();
    let (ok, output) = check_monitoring(&["--root", root, "--metrics", scrape.to_str().unwrap()]);
    assert!(!ok, "broken dashboard passed:\n{output}");
    assert!(
        output
            .contains("dashboards/driftwatch.json: panel 'In sync' query A: PromQL does not parse")
            && output.contains("count(driftwatch_probe_result{layer=~\"$layer\"} == 0"),
        "parse error does not name file and expression:\n{output}"
    );
    assert!(
        output.contains("dashboards/driftwatch.json: panel 'Drifted' query A: expression uses driftwatch_probe_drift_total, which driftwatch does not export"),
        "unknown metric not reported:\n{output}"
    );
    // Only the two broken expressions are reported.
    assert_eq!(output.matches("FAIL: dashboards/").count(), 2, "{output}");

    // A rules file that breaks promtool, or names a metric that does not exist.
    copy_monitoring_tree(tmp.path());
    let rules = read("alerts/driftwatch.rules.yml").replacen(
        "expr: driftwatch_repo_sync_success == 0",
        "expr: driftwatch_repo_sync_ok == 0",
        1,
    );
    std::fs::write(tmp.path().join("alerts/driftwatch.rules.yml"), rules).unwrap();
    let (ok, output) = check_monitoring(&["--root", root, "--metrics", scrape.to_str().unwrap()]);
    assert!(!ok, "rule on a missing metric passed:\n{output}");
    assert!(
        output.contains("alerts/driftwatch.rules.yml:")
            && output.contains("uses driftwatch_repo_sync_ok"),
        "{output}"
    );

    copy_monitoring_tree(tmp.path());
    let rules = read("alerts/driftwatch.rules.yml");
    assert!(rules.contains("(driftwatch_probe_drifted) == 1"));
    let rules = rules.replacen(
        "(driftwatch_probe_drifted) == 1",
        "(driftwatch_probe_drifted) == ",
        1,
    );
    std::fs::write(tmp.path().join("alerts/driftwatch.rules.yml"), rules).unwrap();
    let (ok, output) = check_monitoring(&["--root", root, "--metrics", scrape.to_str().unwrap()]);
    assert!(!ok, "unparsable rule passed:\n{output}");
    assert!(
        output.contains("alerts/driftwatch.rules.yml: promtool check rules failed")
            && output.contains("could not parse expression"),
        "{output}"
    );

    // Runbook links: an anchor that is no heading of the runbook, and a link
    // into a file the repository does not have (the runbook used to be in
    // README.md).
    let base = "blob/main/docs/troubleshooting.md#";
    for (to, expected) in [
        (
            format!("{base}driftisdetected"),
            "runbook_url anchor #driftisdetected is not a heading in docs/troubleshooting.md",
        ),
        (
            "blob/main/RUNBOOK.md#driftdetected".to_string(),
            "runbook_url names RUNBOOK.md, which is not a file of the repository",
        ),
    ] {
        copy_monitoring_tree(tmp.path());
        let rules = read("alerts/driftwatch.rules.yml");
        let from = format!("{base}driftdetected");
        assert!(rules.contains(&from), "rules no longer link {from}");
        std::fs::write(
            tmp.path().join("alerts/driftwatch.rules.yml"),
            rules.replacen(&from, &to, 1),
        )
        .unwrap();
        let (ok, output) =
            check_monitoring(&["--root", root, "--metrics", scrape.to_str().unwrap()]);
        assert!(!ok, "a broken runbook link passed:\n{output}");
        assert!(
            output.contains("alerts/driftwatch.rules.yml:") && output.contains(expected),
            "{output}"
        );
    }
}

/// A /metrics exposition with every series name the shipped files use, for
/// the bad-input test (the real scrape is checked in the end-to-end test).
fn scrape_fixture() -> String {
    let labels = r#"probe="p",layer="command""#;
    let mut text = String::new();
    for (name, kind) in [
        ("driftwatch_probe_result", "gauge"),
        ("driftwatch_probe_drifted", "gauge"),
        ("driftwatch_probe_drifted_resources", "gauge"),
        ("driftwatch_probe_resource_drifted", "gauge"),
        ("driftwatch_probe_resource_series_dropped_total", "counter"),
        ("driftwatch_probe_last_run_timestamp_seconds", "gauge"),
        ("driftwatch_probe_last_success_timestamp_seconds", "gauge"),
        ("driftwatch_probe_drifted_since_timestamp_seconds", "gauge"),
        ("driftwatch_probe_acknowledged_resources", "gauge"),
        ("driftwatch_probe_ack_mismatched_resources", "gauge"),
        ("driftwatch_probe_ack_expiry_timestamp_seconds", "gauge"),
        ("driftwatch_probe_ack_info", "gauge"),
        ("driftwatch_probe_runs_total", "counter"),
        ("driftwatch_probe_errors_total", "counter"),
        ("driftwatch_probe_skipped_runs_total", "counter"),
        ("driftwatch_probe_warnings", "gauge"),
        ("driftwatch_probe_schedule_interval_seconds", "gauge"),
        ("driftwatch_repo_sync_success", "gauge"),
        ("driftwatch_repo_last_sync_timestamp_seconds", "gauge"),
        ("driftwatch_repo_commit_timestamp_seconds", "gauge"),
        ("driftwatch_repo_info", "gauge"),
        ("driftwatch_repo_sync_errors_total", "counter"),
        ("driftwatch_build_info", "gauge"),
    ] {
        text.push_str(&format!(
            "# HELP {name} x\n# TYPE {name} {kind}\n{name}{{{labels}}} 1\n"
        ));
    }
    text.push_str("# HELP driftwatch_probe_run_duration_seconds x\n# TYPE driftwatch_probe_run_duration_seconds histogram\n");
    text.push_str(&format!(
        "driftwatch_probe_run_duration_seconds_bucket{{{labels},le=\"+Inf\"}} 1\n"
    ));
    text.push_str(&format!(
        "driftwatch_probe_run_duration_seconds_sum{{{labels}}} 1\n"
    ));
    text.push_str(&format!(
        "driftwatch_probe_run_duration_seconds_count{{{labels}}} 1\n"
    ));
    text
}

// ---------------------------------------------------------------- systemd

/// `[Section]` → directive → values (a directive may repeat).
fn parse_unit(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut current = String::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("line {}: not key=value: {line}", number + 1));
        assert!(
            !current.is_empty(),
            "line {}: directive outside a section",
            number + 1
        );
        sections
            .entry(current.clone())
            .or_default()
            .entry(key.trim().to_string())
            .or_default()
            .push(value.trim().to_string());
    }
    sections
}

#[test]
fn systemd_unit_is_hardened() {
    let text = read("config/systemd/driftwatch.service");
    let unit = parse_unit(&text);
    let service = &unit["Service"];
    let one = |key: &str| -> &str {
        let values = service
            .get(key)
            .unwrap_or_else(|| panic!("[Service] has no {key}="));
        assert_eq!(values.len(), 1, "{key}= given more than once");
        &values[0]
    };
    assert_eq!(one("User"), "driftwatch", "a dedicated user");
    assert_eq!(one("StateDirectory"), "driftwatch");
    assert_eq!(one("ProtectSystem"), "strict");
    assert!(["yes", "read-only", "tmpfs"].contains(&one("ProtectHome")));
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("PrivateTmp"), "yes");
    assert_eq!(one("CapabilityBoundingSet"), "", "no capabilities at all");
    let families: Vec<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    assert!(
        !families.is_empty()
            && families
                .iter()
                .all(|f| ["AF_UNIX", "AF_INET", "AF_INET6"].contains(f)),
        "{families:?}"
    );
    assert_eq!(one("Restart"), "on-failure");
    assert!(
        one("ExecStart").contains("driftwatch run --config "),
        "runs the daemon"
    );
    // Secrets come in as credentials, not in the config or the environment.
    let credentials = service.get("LoadCredential").expect("LoadCredential=");
    assert!(
        credentials.iter().all(|c| c.contains(':')),
        "{credentials:?}"
    );
    assert!(
        !service
            .get("Environment")
            .into_iter()
            .flatten()
            .any(|e| e.to_lowercase().contains("token")),
        "no secret in Environment="
    );
    assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"]);

    // systemd's own parser, where it exists (not in every container). It
    // resolves ExecStart, so point it at the binary under test.
    if common::which("systemd-analyze").is_none() {
        eprintln!("systemd-analyze not installed: parsed the unit only");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let bin = common::driftwatch_bin();
    let local = text.replace("/usr/local/bin/driftwatch", bin.to_str().unwrap());
    let path = tmp.path().join("driftwatch.service");
    std::fs::write(&path, local).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    // Unknown or misspelt directives are only warnings: accept none.
    let unit_warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("driftwatch.service"))
        .collect();
    assert!(
        unit_warnings.is_empty(),
        "systemd-analyze verify warns: {unit_warnings:#?}"
    );
}

// ------------------------------------------------------------- Kubernetes

/// Every object under config/kubernetes, with its file (relative to that
/// directory), read by the Kubernetes layer's own manifest loader.
fn kubernetes_documents() -> Vec<(String, serde_json::Value)> {
    use driftwatch::probe::kubernetes::manifest;
    let loaded = manifest::load_dir(&repo_root().join("config/kubernetes"), &repo_root()).unwrap();
    // kustomization.yaml files are kustomize's input, not objects for a cluster.
    let errors: Vec<String> = loaded
        .errors
        .iter()
        .filter(|e| !e.source.ends_with("kustomization.yaml"))
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "manifests that do not load: {errors:#?}");
    loaded
        .objects
        .into_iter()
        .filter(|m| m.kind() != "Kustomization")
        .map(|m| {
            let object = m.object();
            (m.source, object)
        })
        .collect()
}

fn kind_of(value: &serde_json::Value) -> &str {
    value["kind"].as_str().unwrap_or("")
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

#[test]
fn kubernetes_rbac_is_read_only() {
    let documents = kubernetes_documents();
    let roles: Vec<_> = documents
        .iter()
        .filter(|(_, d)| ["ClusterRole", "Role"].contains(&kind_of(d)))
        .collect();
    assert!(!roles.is_empty(), "no ClusterRole shipped");
    for (file, role) in roles {
        for rule in role["rules"].as_array().expect("rules") {
            let verbs = strings(&rule["verbs"]);
            assert!(!verbs.is_empty(), "{file}: rule without verbs");
            // The one exception (scale-out): a namespaced Role in driftwatch's
            // own namespace may write its membership Leases and status
            // ConfigMaps, nothing else.
            let own_writes = kind_of(role) == "Role"
                && role["metadata"]["namespace"] == "driftwatch"
                && matches!(
                    (strings(&rule["apiGroups"]).as_slice(), strings(&rule["resources"]).as_slice()),
                    ([group], [resource]) if (group == "coordination.k8s.io" && resource == "leases")
                        || (group.is_empty() && resource == "configmaps")
                );
            // Writes to existing objects name them: the replicas' own Leases
            // (driftwatch-<pod>) and status ConfigMaps (driftwatch-status-<pod>),
            // never the config ConfigMap or other objects of the namespace.
            let names = strings(&rule["resourceNames"]);
            let own_names = !names.is_empty()
                && names.iter().all(|name| {
                    name.strip_prefix("driftwatch-status-")
                        .or_else(|| name.strip_prefix("driftwatch-"))
                        .and_then(|pod| pod.strip_prefix("driftwatch-"))
                        .is_some_and(|ordinal| ordinal.parse::<u32>().is_ok())
                });
            for verb in &verbs {
                assert!(
                    ["get", "list", "watch"].contains(&verb.as_str())
                        || (own_writes && verb == "create")
                        || (own_writes && own_names && ["update", "delete"].contains(&verb.as_str())),
                    "{file}: verb {verb:?} is not read-only (writes to existing objects must name driftwatch's own Leases/ConfigMaps)"
                );
            }
        }
    }
    // The binding gives that role to driftwatch's ServiceAccount, and the
    // Deployment runs as it.
    let binding = documents
        .iter()
        .find(|(_, d)| kind_of(d) == "ClusterRoleBinding")
        .expect("ClusterRoleBinding")
        .1
        .clone();
    assert_eq!(binding["roleRef"]["name"], "driftwatch-read-only");
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["name"], "driftwatch");
    assert!(documents
        .iter()
        .any(|(_, d)| kind_of(d) == "ServiceAccount" && d["metadata"]["name"] == "driftwatch"));
}

#[test]
fn kubernetes_deployment_is_hardened_and_probed() {
    let documents = kubernetes_documents();
    let (file, deployment) = documents
        .iter()
        .find(|(f, d)| kind_of(d) == "Deployment" && f.ends_with("base/deployment.yaml"))
        .expect("base Deployment");
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "driftwatch", "{file}");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{file}");
    assert!(
        pod["securityContext"]["runAsUser"].as_u64().unwrap_or(0) > 0,
        "{file}: non-root uid"
    );
    let container = &pod["containers"][0];
    assert_eq!(container["name"], "driftwatch");
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true, "{file}");
    assert_eq!(security["allowPrivilegeEscalation"], false, "{file}");
    assert_eq!(
        strings(&security["capabilities"]["drop"]),
        ["ALL"],
        "{file}"
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"], "/healthz",
        "{file}"
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"], "/readyz",
        "{file}"
    );
    assert!(
        container["resources"]["requests"]["cpu"].is_string(),
        "{file}: cpu request"
    );
    assert!(
        container["resources"]["requests"]["memory"].is_string(),
        "{file}: memory request"
    );
    let args = strings(&container["args"]);
    assert_eq!(
        args[..3],
        ["run", "--config", "/etc/driftwatch/driftwatch.toml"],
        "{file}"
    );
    // The port the probes, the Service and the monitors use is the one driftwatch listens on.
    assert_eq!(container["ports"][0]["name"], "http");
    let port = container["ports"][0]["containerPort"].as_u64().unwrap();
    let config = configmap_config(&documents, "base/configmap.yaml");
    assert!(
        config.contains(&format!("listen = \"0.0.0.0:{port}\"")),
        "config must listen on the pod IP:\n{config}"
    );
    // A read-only root filesystem needs writable state and tmp volumes.
    let mounts: Vec<String> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap().to_string())
        .collect();
    assert!(
        mounts.contains(&"/var/lib/driftwatch".to_string()) && mounts.contains(&"/tmp".to_string()),
        "{mounts:?}"
    );

    // Service and the operator's monitors point at that port by name.
    let service = documents
        .iter()
        .find(|(_, d)| kind_of(d) == "Service")
        .expect("Service")
        .1
        .clone();
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    let monitor = documents
        .iter()
        .find(|(_, d)| kind_of(d) == "ServiceMonitor")
        .expect("ServiceMonitor")
        .1
        .clone();
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert!(documents.iter().any(|(_, d)| kind_of(d) == "PodMonitor"));
}

fn configmap_config(documents: &[(String, serde_json::Value)], file_suffix: &str) -> String {
    let (_, configmap) = documents
        .iter()
        .find(|(f, d)| kind_of(d) == "ConfigMap" && f.ends_with(file_suffix))
        .unwrap_or_else(|| panic!("no ConfigMap in {file_suffix}"));
    configmap["data"]["driftwatch.toml"]
        .as_str()
        .expect("driftwatch.toml key")
        .to_string()
}

#[test]
fn kubernetes_git_sync_variant_reads_a_path() {
    let documents = kubernetes_documents();
    let config = configmap_config(&documents, "git-sync/configmap-patch.yaml");
    let table: toml::Table = toml::from_str(&config).expect("git-sync config is TOML");
    let repo = &table["repo"].as_array().unwrap()[0];
    assert_eq!(repo["path"].as_str(), Some("/git/current"));
    assert!(repo.get("url").is_none(), "git-sync variant must not clone");

    let (_, patch) = documents
        .iter()
        .find(|(f, d)| kind_of(d) == "Deployment" && f.ends_with("git-sync/deployment-patch.yaml"))
        .unwrap();
    let containers = patch["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    let sidecar = containers
        .iter()
        .find(|c| c["name"] == "git-sync")
        .expect("git-sync container");
    let args = strings(&sidecar["args"]);
    assert!(
        args.contains(&"--root=/git".to_string()) && args.contains(&"--link=current".to_string()),
        "{args:?}"
    );
    assert_eq!(sidecar["securityContext"]["readOnlyRootFilesystem"], true);
    let driftwatch = containers
        .iter()
        .find(|c| c["name"] == "driftwatch")
        .expect("driftwatch mounts the checkout");
    assert_eq!(driftwatch["volumeMounts"][0]["mountPath"], "/git");
    assert_eq!(driftwatch["volumeMounts"][0]["readOnly"], true);

    // kustomize builds both variants (kubectl is on the image, not on every laptop).
    if common::which("kubectl").is_some() {
        for dir in [
            "config/kubernetes/base",
            "config/kubernetes/git-sync",
            "config/kubernetes/sharded",
        ] {
            let out = Command::new("kubectl")
                .args(["kustomize"])
                .arg(repo_root().join(dir))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "kubectl kustomize {dir}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let built = String::from_utf8_lossy(&out.stdout);
            let workload = if dir.ends_with("sharded") {
                "kind: StatefulSet"
            } else {
                "kind: Deployment"
            };
            assert!(
                built.contains(workload) && built.contains("kind: ClusterRole"),
                "{dir}"
            );
            if dir.ends_with("sharded") {
                assert!(!built.contains("kind: Deployment"), "{built}");
                assert!(built.contains("kind: PodDisruptionBudget"), "{built}");
                assert!(built.contains("mode = \"kubernetes\""), "{built}");
            }
            if dir.ends_with("git-sync") {
                assert!(
                    built.contains("name: git-sync") && built.contains("path = \"/git/current\""),
                    "{built}"
                );
            }
        }
    }
}

// ------------------------------------------------------------ end to end

/// A child process killed when the test ends, its output in `log`.
struct Server {
    name: &'static str,
    child: std::process::Child,
    log: PathBuf,
}

impl Server {
    fn start(name: &'static str, command: &mut Command, dir: &Path) -> Server {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Server { name, child, log }
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let start = lines.len().saturating_sub(30);
        format!(
            "--- {} (last lines) ---\n{}",
            self.name,
            lines[start..].join("\n")
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Messages received by the fake Slack webhook: (receiver path, JSON body).
type Inbox = std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>;

/// A loopback HTTP server that accepts Slack's incoming-webhook JSON at
/// `/{receiver}` and records it.
async fn slack_receiver() -> (std::net::SocketAddr, Inbox) {
    use axum::extract::{Path as UrlPath, State};
    let inbox: Inbox = Default::default();
    async fn receive(
        State(inbox): State<Inbox>,
        UrlPath(receiver): UrlPath<String>,
        body: String,
    ) -> &'static str {
        let json: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("Alertmanager sent invalid JSON ({e}): {body}"));
        inbox.lock().unwrap().push((receiver, json));
        "ok"
    }
    let app = axum::Router::new()
        .route("/{receiver}", axum::routing::post(receive))
        .with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (address, inbox)
}

/// Polls `check` every 250 ms until it returns Some, or panics after
/// `timeout` with `what` and the servers' logs.
async fn wait_for<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    timeout: std::time::Duration,
    servers: &[&Server],
    mut check: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() > deadline {
            let logs: Vec<String> = servers.iter().map(|s| s.tail()).collect();
            panic!("timed out waiting for {what}\n{}", logs.join("\n"));
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// The shipped rules with every `for` cut to 2 s (DriftwatchDown's to 1 m)
/// and groups evaluated every second.
fn fast_rules() -> String {
    let mut rules: serde_yaml::Value =
        serde_yaml::from_str(&read("alerts/driftwatch.rules.yml")).unwrap();
    for group in rules["groups"].as_sequence_mut().unwrap() {
        group["interval"] = "1s".into();
        for rule in group["rules"].as_sequence_mut().unwrap() {
            if rule.get("for").is_some() {
                rule["for"] = "2s".into();
            }
            // A restart of a second or two is no outage (5m in the shipped rules).
            if rule["alert"] == "DriftwatchDown" {
                rule["for"] = "1m".into();
            }
        }
    }
    serde_yaml::to_string(&rules).unwrap()
}

/// The shipped Alertmanager example with each receiver's webhook pointing at
/// the fake Slack, and short grouping delays.
fn fast_alertmanager_config(slack: std::net::SocketAddr) -> String {
    let mut config: serde_yaml::Value =
        serde_yaml::from_str(&read("config/alertmanager.example.yml")).unwrap();
    config.apply_merge().unwrap();
    config["route"]["group_wait"] = "1s".into();
    config["route"]["group_interval"] = "2s".into();
    config["route"]["repeat_interval"] = "1h".into();
    for receiver in config["receivers"].as_sequence_mut().unwrap() {
        let name = receiver["name"].as_str().unwrap().to_string();
        for slack_config in receiver["slack_configs"].as_sequence_mut().unwrap() {
            let slack_config = slack_config.as_mapping_mut().unwrap();
            assert!(
                slack_config.remove("api_url_file").is_some(),
                "{name}: webhook URL not read from a file"
            );
            slack_config.insert("api_url".into(), format!("http://{slack}/{name}").into());
        }
    }
    serde_yaml::to_string(&config).unwrap()
}

fn messages_to(inbox: &Inbox, receiver: &str) -> Vec<serde_json::Value> {
    inbox
        .lock()
        .unwrap()
        .iter()
        .filter(|(r, _)| r == receiver)
        .map(|(_, m)| m.clone())
        .collect()
}

fn attachment_text(message: &serde_json::Value) -> String {
    let attachment = &message["attachments"][0];
    format!(
        "title: {}\ntitle_link: {}\nfallback: {}\ntext: {}",
        attachment["title"].as_str().unwrap_or(""),
        attachment["title_link"].as_str().unwrap_or(""),
        attachment["fallback"].as_str().unwrap_or(""),
        attachment["text"].as_str().unwrap_or("")
    )
}

/// Alertmanager (the shipped example, short delays, webhooks to `slack`) and
/// Prometheus (the shipped rules with short `for`s, scraping driftwatch every
/// second); returns them and Prometheus's port.
fn start_alerting(
    dir: &Path,
    driftwatch_port: u16,
    slack: std::net::SocketAddr,
) -> (Server, Server, u16) {
    let am_port = common::free_port();
    std::fs::write(
        dir.join("alertmanager.yml"),
        fast_alertmanager_config(slack),
    )
    .unwrap();
    let alertmanager = Server::start(
        "alertmanager",
        Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address="),
        dir,
    );

    // Prometheus scraping driftwatch every second with the shipped rules.
    let prom_port = common::free_port();
    std::fs::write(dir.join("driftwatch.rules.yml"), fast_rules()).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: ["{rules}"]
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:{am_port}"]
scrape_configs:
  - job_name: driftwatch
    static_configs:
      - targets: ["127.0.0.1:{driftwatch_port}"]
"#,
            rules = dir.join("driftwatch.rules.yml").display()
        ),
    )
    .unwrap();
    let prometheus = Server::start(
        "prometheus",
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prom-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}")),
        dir,
    );
    (alertmanager, prometheus, prom_port)
}

/// driftwatch with a drifting command probe → Prometheus (shipped rules, short
/// `for`) → Alertmanager (shipped routing) → a fake Slack. The drift reaches
/// team corp's channel naming the probe; fixing it sends the resolved message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_reaches_slack_and_resolves() {
    if !(common::have_tool("prometheus")
        && common::have_tool("prometheus-alertmanager")
        && have_monitoring_tools())
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let long = std::time::Duration::from_secs(60);

    // A repository whose check drifts while a marker file outside it exists.
    let marker = dir.join("drift-marker");
    std::fs::write(&marker, "manual change").unwrap();
    let check = r#"#!/bin/sh
if [ -e "$MARKER" ]; then
  echo '{"protocol": 1, "resources": [{"subject": "/etc/web/site.conf", "action": "changed"}]}'
  exit 2
fi
echo '{"protocol": 1, "resources": []}'
exit 0
"#;
    let repo = dir.join("infra");
    let commit = common::init_repo(
        &repo,
        &[
            ("web/check.sh", check),
            ("db/check.sh", "#!/bin/sh\nexit 0\n"),
        ],
    );

    // driftwatch: the drifting probe belongs to team corp, an in-sync one to team platform.
    let driftwatch_port = common::free_port();
    let config = dir.join("driftwatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "{state}"

[server]
listen = "127.0.0.1:{driftwatch_port}"

[defaults]
schedule = "*/1 * * * * *"
timeout = "30s"

[[repo]]
name = "infra"
url = "file://{repo}"
poll_interval = "1s"
web_url = "https://github.com/acme/infra"

[[probe]]
name = "corp-web"
layer = "command"
path = "web"
command = ["sh", "check.sh"]
output = "json"
env = {{ MARKER = "{marker}" }}
labels = {{ team = "corp" }}

[[probe]]
name = "platform-db"
layer = "command"
path = "db"
command = ["sh", "check.sh"]
labels = {{ team = "platform" }}
"#,
            state = dir.join("state").display(),
            repo = repo.display(),
            marker = marker.display(),
        ),
    )
    .unwrap();
    let start_driftwatch = || {
        Server::start(
            "driftwatch",
            Command::new(common::driftwatch_bin())
                .arg("run")
                .arg("--config")
                .arg(&config),
            dir,
        )
    };
    let mut driftwatch = start_driftwatch();
    let driftwatch_url = format!("http://127.0.0.1:{driftwatch_port}");
    let http = &http;
    wait_for("driftwatch /readyz", long, &[&driftwatch], || async {
        let response = http
            .get(format!("{driftwatch_url}/readyz"))
            .send()
            .await
            .ok()?;
        response.status().is_success().then_some(())
    })
    .await;

    // The fake Slack and Alertmanager with the shipped routing; Prometheus
    // scraping driftwatch every second with the shipped rules.
    let (slack, inbox) = slack_receiver().await;
    let (alertmanager, prometheus, prom_port) = start_alerting(dir, driftwatch_port, slack);
    let servers = [&driftwatch, &prometheus, &alertmanager];
    let inbox = &inbox;

    // Firing: one message in team corp's channel, naming probe, team, count and commit.
    let firing = wait_for(
        "the DriftDetected message in #corp-drift",
        std::time::Duration::from_secs(90),
        &servers,
        || async move {
            messages_to(inbox, "slack-corp").into_iter().find(|m| {
                let text = attachment_text(m);
                text.contains("DriftDetected") && text.contains("[FIRING")
            })
        },
    )
    .await;
    let text = attachment_text(&firing);
    eprintln!("firing message:\n{text}");
    assert_eq!(firing["channel"], "#corp-drift", "{text}");
    assert!(
        text.contains("corp-web") && text.contains("team corp"),
        "probe and team not named:\n{text}"
    );
    assert!(text.contains("command layer"), "layer not named:\n{text}");
    assert!(
        text.contains("*Drifted resources:* 1: /etc/web/site.conf (changed)"),
        "resources not listed:\n{text}"
    );
    assert!(
        text.contains("*Drifted since:* 20"),
        "drift start not shown:\n{text}"
    );
    assert!(
        text.contains(&format!(
            "*Commit:* <https://github.com/acme/infra/commit/{commit}|infra@{commit}>"
        )),
        "commit not shown as a link (web_url):\n{text}"
    );
    assert!(
        text.contains(&format!("{driftwatch_url}/probes/corp-web")),
        "no link to the probe:\n{text}"
    );
    assert_eq!(firing["attachments"][0]["color"], "danger");
    // The links in the message lead to the probe's status page and JSON.
    let status_url = firing["attachments"][0]["title_link"]
        .as_str()
        .unwrap()
        .to_string();
    let page = http.get(&status_url).send().await.unwrap();
    assert!(
        page.status().is_success(),
        "{status_url}: {}",
        page.status()
    );
    assert!(
        page.text().await.unwrap().contains("corp-web"),
        "{status_url}"
    );
    let api = get_json(http, &format!("{driftwatch_url}/api/v1/probes/corp-web")).await;
    assert!(api.to_string().contains("/etc/web/site.conf"), "{api}");
    assert_eq!(
        api["last_report"]["commit_url"],
        format!("https://github.com/acme/infra/commit/{commit}"),
        "{api}"
    );
    let list = get_json(http, &format!("{driftwatch_url}/api/v1/probes")).await;
    assert!(
        list["probes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["commit_url"]
                == format!("https://github.com/acme/infra/commit/{commit}").as_str()),
        "{list}"
    );

    // Every dashboard and rule metric exists in this real scrape, and every
    // dashboard expression evaluates in this Prometheus.
    let (ok, output) = check_monitoring(&["--metrics", &format!("{driftwatch_url}/metrics")]);
    assert!(
        ok,
        "check-monitoring against a real scrape failed:\n{output}"
    );
    check_dashboard_queries(http, prom_port).await;

    // driftwatch restarts in the middle of the drift (a rolling update, a
    // crash): Prometheus sees it down and its series go stale, then they come
    // back. Slack gets no *resolved* message, and no second firing one.
    unsafe {
        libc::kill(driftwatch.child.id() as i32, libc::SIGTERM);
    }
    assert!(driftwatch.child.wait().unwrap().success());
    let prom_query = |query: &'static str| async move {
        let response: serde_json::Value = http
            .get(format!("http://127.0.0.1:{prom_port}/api/v1/query"))
            .query(&[("query", query)])
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let results = response["data"]["result"].as_array()?.clone();
        (!results.is_empty()).then_some(results)
    };
    wait_for(
        "Prometheus to see driftwatch down",
        long,
        &[&prometheus],
        || prom_query(r#"up{job="driftwatch"} == 0"#),
    )
    .await;
    let driftwatch = start_driftwatch();
    let servers = [&driftwatch, &prometheus, &alertmanager];
    wait_for(
        "the drifted series back after the restart",
        long,
        &servers,
        || {
            prom_query(
                r#"driftwatch_probe_drifted{probe="corp-web"} == 1 and on (instance) up == 1"#,
            )
        },
    )
    .await;
    // Prometheus recorded the gap, and the alert stayed firing through it.
    assert!(
        prom_query(r#"min_over_time(up{job="driftwatch"}[2m]) == 0"#)
            .await
            .is_some(),
        "Prometheus never saw driftwatch down"
    );
    assert!(
        prom_query(r#"ALERTS{alertname="DriftDetected",alertstate="firing"}"#)
            .await
            .is_some(),
        "DriftDetected is not firing after the restart"
    );
    // Several evaluation and group intervals (1 s, 2 s) for a resolve or a
    // second firing message to reach Slack, were one on its way.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let corp = messages_to(inbox, "slack-corp");
    let texts: Vec<String> = corp.iter().map(attachment_text).collect();
    assert!(
        texts.iter().all(|t| !t.contains("[RESOLVED]")),
        "a restart resolved the drift alert:\n{texts:#?}"
    );
    assert_eq!(
        texts.iter().filter(|t| t.contains("[FIRING")).count(),
        1,
        "the drift alert fired again after a restart:\n{texts:#?}"
    );

    // Fixing the drift resolves the alert in the same channel.
    std::fs::remove_file(&marker).unwrap();
    let resolved = wait_for(
        "the resolved message in #corp-drift",
        std::time::Duration::from_secs(90),
        &servers,
        || async move {
            messages_to(inbox, "slack-corp")
                .into_iter()
                .find(|m| attachment_text(m).contains("[RESOLVED]"))
        },
    )
    .await;
    let text = attachment_text(&resolved);
    eprintln!("resolved message:\n{text}");
    assert!(
        text.contains("DriftDetected") && text.contains("corp-web") && text.contains("team corp"),
        "{text}"
    );
    assert_eq!(resolved["attachments"][0]["color"], "good");

    // Team platform's probe is in sync: its channel stayed quiet, and nothing
    // else fired (the target is up, the repo syncs, the probes succeed).
    assert!(
        messages_to(inbox, "slack-platform").is_empty(),
        "{:?}",
        messages_to(inbox, "slack-platform")
    );
    let all = inbox.lock().unwrap().clone();
    for (receiver, message) in &all {
        let text = attachment_text(message);
        assert!(
            text.contains("DriftDetected"),
            "unexpected alert to {receiver}:\n{text}"
        );
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> serde_json::Value {
    let response = http.get(url).send().await.unwrap();
    response.json().await.unwrap()
}

/// Runs every dashboard expression (Grafana variables set to "all") against
/// a Prometheus that scrapes driftwatch: none may fail, and the status table's
/// queries must return the probes.
async fn check_dashboard_queries(http: &reqwest::Client, prom_port: u16) {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("dashboards/driftwatch.json")).unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let Some(expr) = target["expr"].as_str() else {
                continue;
            };
            let query = expr
                .replace("$__rate_interval", "5s")
                .replace("$__range", "1m")
                .replace("$layer", ".*")
                .replace("$probe", ".*");
            let response: serde_json::Value = http
                .get(format!("http://127.0.0.1:{prom_port}/api/v1/query"))
                .query(&[("query", query.as_str())])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let title = panel["title"].as_str().unwrap_or("?");
            assert_eq!(
                response["status"], "success",
                "panel {title:?}: {expr}: {response}"
            );
            if title == "Drift status" || title == "Drifted resources" {
                let results = response["data"]["result"].as_array().unwrap();
                assert!(!results.is_empty(), "panel {title:?} shows nothing: {expr}");
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} dashboard queries found");
}

/// The ConfigMaps' configs pass `driftwatch validate` once the paths that
/// only exist in the pod (the token Secret, the git-sync checkout, the state
/// volume) point at local stand-ins.
#[test]
fn kubernetes_configmaps_pass_validate() {
    let documents = kubernetes_documents();
    for file in [
        "base/configmap.yaml",
        "git-sync/configmap-patch.yaml",
        "sharded/configmap-patch.yaml",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut config: toml::Table = toml::from_str(&configmap_config(&documents, file)).unwrap();
        assert_eq!(
            config["state_dir"].as_str(),
            Some("/var/lib/driftwatch"),
            "{file}: state on the mounted volume"
        );
        config.insert(
            "state_dir".into(),
            tmp.path().join("state").display().to_string().into(),
        );
        for repo in config["repo"].as_array_mut().unwrap() {
            let repo = repo.as_table_mut().unwrap();
            if let Some(token_file) = repo.get("token_file") {
                assert!(
                    token_file
                        .as_str()
                        .unwrap()
                        .starts_with("/etc/driftwatch-secrets/"),
                    "{file}: token from the Secret mount"
                );
                let token = tmp.path().join("git-token");
                std::fs::write(&token, "not-a-real-token\n").unwrap();
                repo.insert("token_file".into(), token.display().to_string().into());
            }
            if repo.contains_key("path") {
                let checkout = tmp.path().join("git-current");
                common::init_repo(
                    &checkout,
                    &[(
                        "clusters/prod/namespace.yaml",
                        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: web\n",
                    )],
                );
                repo.insert("path".into(), checkout.display().to_string().into());
            }
        }
        if let Some(acks) = config.get_mut("acks").and_then(|a| a.as_table_mut()) {
            if let Some(key_file) = acks.get("fingerprint_key_file") {
                assert!(
                    key_file
                        .as_str()
                        .unwrap()
                        .starts_with("/etc/driftwatch-fingerprint/"),
                    "{file}: fingerprint key from its Secret mount"
                );
                let key = tmp.path().join("fingerprint-key");
                std::fs::write(&key, "a-shared-fingerprint-key-for-tests\n").unwrap();
                acks.insert(
                    "fingerprint_key_file".into(),
                    key.display().to_string().into(),
                );
            }
        }
        let path = tmp.path().join("driftwatch.toml");
        std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
        // What the sharded StatefulSet's downward API provides.
        let out = Command::new(common::driftwatch_bin())
            .arg("validate")
            .arg("--config")
            .arg(&path)
            .env("POD_NAME", "driftwatch-0")
            .env("POD_NAMESPACE", "driftwatch")
            .env("POD_IP", "10.0.0.7")
            .output()
            .unwrap();
        let problems = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if driftwatch::probe::builder("kubernetes").is_none() {
            // Until the kubernetes layer is registered, that is the only problem allowed.
            let other: Vec<&str> = problems
                .lines()
                .filter(|l| {
                    l.contains(": ")
                        && !l.contains("unknown layer \"kubernetes\"")
                        && !l.contains("problem(s) in")
                })
                .collect();
            assert!(other.is_empty(), "{file}: driftwatch validate:\n{problems}");
        } else {
            assert!(
                out.status.success(),
                "{file}: driftwatch validate:\n{problems}"
            );
        }
    }
}

/// An instant query against Prometheus; None when it fails or is empty.
async fn prom_results(
    http: &reqwest::Client,
    prom_port: u16,
    query: &str,
) -> Option<Vec<serde_json::Value>> {
    let response: serde_json::Value = http
        .get(format!("http://127.0.0.1:{prom_port}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let results = response["data"]["result"].as_array()?.clone();
    (!results.is_empty()).then_some(results)
}

/// Acknowledged drift through driftwatch → Prometheus → Alertmanager → Slack
/// (issue 22): a drift acknowledged before Prometheus ever sees it sends no
/// drift message (the channel only hears that the acknowledgement expires
/// within 24 h, which proves the pipeline delivers); a second resource that
/// drifts afterwards sends exactly one DriftDetected message, which says
/// what is acknowledged and by whom.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_drift_sends_nothing_and_a_change_sends_one_message() {
    if !(common::have_tool("prometheus")
        && common::have_tool("prometheus-alertmanager")
        && have_monitoring_tools())
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let http = &reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let long = std::time::Duration::from_secs(90);

    // One resource drifts per marker file that exists.
    let first = dir.join("site-marker");
    let second = dir.join("tls-marker");
    std::fs::write(&first, "manual change").unwrap();
    let check = r#"#!/bin/sh
resources=""
if [ -e "$FIRST" ]; then resources='{"subject": "/etc/web/site.conf", "action": "changed"}'; fi
if [ -e "$SECOND" ]; then resources="${resources:+$resources, }"'{"subject": "/etc/web/tls.conf", "action": "changed"}'; fi
echo "{\"protocol\": 1, \"resources\": [$resources]}"
[ -z "$resources" ] || exit 2
exit 0
"#;
    let repo = dir.join("infra");
    common::init_repo(&repo, &[("web/check.sh", check)]);
    let token = dir.join("api-token");
    std::fs::write(&token, "write-token-for-alerts\n").unwrap();
    let driftwatch_port = common::free_port();
    let config = dir.join("driftwatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "{state}"

[server]
listen = "127.0.0.1:{driftwatch_port}"
api_token_file = "{token}"

[defaults]
schedule = "*/1 * * * * *"
timeout = "30s"

[[repo]]
name = "infra"
url = "file://{repo}"
poll_interval = "1s"

[[probe]]
name = "corp-web"
layer = "command"
path = "web"
command = ["sh", "check.sh"]
output = "json"
env = {{ FIRST = "{first}", SECOND = "{second}" }}
labels = {{ team = "corp" }}
"#,
            state = dir.join("state").display(),
            repo = repo.display(),
            token = token.display(),
            first = first.display(),
            second = second.display(),
        ),
    )
    .unwrap();
    let driftwatch = Server::start(
        "driftwatch",
        Command::new(common::driftwatch_bin())
            .arg("run")
            .arg("--config")
            .arg(&config),
        dir,
    );
    let url = format!("http://127.0.0.1:{driftwatch_port}");
    let url = &url;
    wait_for("corp-web drifted", long, &[&driftwatch], || async move {
        let probe: serde_json::Value = http
            .get(format!("{url}/api/v1/probes/corp-web"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        probe
            .to_string()
            .contains("/etc/web/site.conf")
            .then_some(())
    })
    .await;

    // Acknowledged for 2 hours, before Prometheus runs.
    let response = http
        .post(format!("{url}/api/v1/probes/corp-web/acks"))
        .bearer_auth("write-token-for-alerts")
        .json(&serde_json::json!({
            "by": "alice",
            "reason": "hotfix during the incident",
            "expires": "2h",
        }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let ack = response.text().await.unwrap();
    assert_eq!(status, 201, "{ack}");
    let metric_line = |name: &'static str| async move {
        let text = http
            .get(format!("{url}/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find(|l| l.starts_with(name) && l.contains("probe=\"corp-web\""))
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
    };
    wait_for(
        "the drift acknowledged in /metrics",
        long,
        &[&driftwatch],
        || async move {
            let drifted = metric_line("driftwatch_probe_drifted{").await?;
            let acknowledged = metric_line("driftwatch_probe_acknowledged_resources{").await?;
            (drifted == "0" && acknowledged == "1").then_some(())
        },
    )
    .await;

    let (slack, inbox) = slack_receiver().await;
    let (alertmanager, prometheus, prom_port) = start_alerting(dir, driftwatch_port, slack);
    let servers = [&driftwatch, &prometheus, &alertmanager];
    let inbox = &inbox;

    // The expiry warning reaches the team's channel, naming alice.
    let text = corp_firing(inbox, &servers, "DriftAcknowledgementExpiring").await;
    assert!(
        text.contains("*Acknowledged:* 1 resource(s) by alice, until 20"),
        "{text}"
    );
    // Prometheus never saw unacknowledged drift, and nothing else fired.
    assert!(
        prom_results(
            http,
            prom_port,
            r#"max_over_time(driftwatch_probe_drifted{probe="corp-web"}[1h]) == 0"#
        )
        .await
        .is_some(),
        "Prometheus saw unacknowledged drift"
    );
    // Group intervals (2 s) for a drift message to arrive, were one on its way.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let texts: Vec<String> = inbox
        .lock()
        .unwrap()
        .iter()
        .map(|(_, m)| attachment_text(m))
        .collect();
    assert!(
        texts
            .iter()
            .all(|t| t.contains("DriftAcknowledgementExpiring")),
        "an acknowledged drift sent a message:\n{texts:#?}"
    );

    // A second resource drifts: one DriftDetected message, naming it and the
    // acknowledged part.
    std::fs::write(&second, "another manual change").unwrap();
    let text = corp_firing(inbox, &servers, "DriftDetected").await;
    assert!(
        text.contains("*Drifted resources:* 1: /etc/web/tls.conf (changed)"),
        "{text}"
    );
    assert!(
        text.contains("*Acknowledged:* 1 resource(s) by alice, until 20")
            && text.contains("1 more drifted resource(s) are acknowledged by alice until 20"),
        "{text}"
    );
    // Every rule and dashboard metric is in this scrape, the ack series included
    // (with both an acknowledged and an unacknowledged resource).
    let (ok, output) = check_monitoring(&["--metrics", &format!("{url}/metrics")]);
    assert!(
        ok,
        "check-monitoring against a real scrape failed:\n{output}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let texts: Vec<String> = inbox
        .lock()
        .unwrap()
        .iter()
        .map(|(_, m)| attachment_text(m))
        .filter(|t| !t.contains("DriftAcknowledgementExpiring"))
        .collect();
    assert_eq!(
        texts.len(),
        1,
        "a change sent more than one message:\n{texts:#?}"
    );
}

/// Waits for the first firing `alert` message in #corp-drift (the
/// end-to-end tests' team) and returns its attachment's text.
async fn corp_firing(inbox: &Inbox, servers: &[&Server], alert: &str) -> String {
    let title = format!("] {alert} corp-web");
    let title = &title;
    let message = wait_for(
        &format!("the {alert} message in #corp-drift"),
        std::time::Duration::from_secs(90),
        servers,
        || async move {
            messages_to(inbox, "slack-corp").into_iter().find(|m| {
                let text = attachment_text(m);
                text.contains(title.as_str()) && text.contains("[FIRING")
            })
        },
    )
    .await;
    let text = attachment_text(&message);
    eprintln!("{alert} message:\n{text}");
    text
}
