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
    for dir in ["alerts", "alerts/tests", "dashboards", "config"] {
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
    let mutations = [
        ("for: 1h\n", "for: 58m\n", "fires before an hour of drift"),
        (
            "expr: driftwatch_probe_drifted == 1",
            "expr: driftwatch_probe_result == 2",
            "resolved by an error",
        ),
    ];
    for (from, to, what) in mutations {
        let tmp = tempfile::tempdir().unwrap();
        copy_monitoring_tree(tmp.path());
        assert!(rules.contains(from), "rules no longer contain {from:?}");
        std::fs::write(
            tmp.path().join("alerts/driftwatch.rules.yml"),
            rules.replacen(from, to, 1),
        )
        .unwrap();
        let out = Command::new("promtool")
            .arg("test")
            .arg("rules")
            .arg(tmp.path().join("alerts/tests/drift_detected.yml"))
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "promtool tests pass although DriftDetected {what}"
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
    let rules = read("alerts/driftwatch.rules.yml").replacen(
        "driftwatch_probe_drifted == 1",
        "driftwatch_probe_drifted == ",
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

/// Every document in every YAML file under config/kubernetes, with its file.
fn kubernetes_documents() -> Vec<(String, serde_yaml::Value)> {
    let mut files = Vec::new();
    let mut stack = vec![repo_root().join("config/kubernetes")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut documents = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let rel = path
            .strip_prefix(repo_root())
            .unwrap()
            .display()
            .to_string();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value =
                serde_yaml::Value::deserialize(document).unwrap_or_else(|e| panic!("{rel}: {e}"));
            if !value.is_null() {
                documents.push((rel.clone(), value));
            }
        }
    }
    documents
}

use serde::Deserialize;

fn kind_of(value: &serde_yaml::Value) -> &str {
    value["kind"].as_str().unwrap_or("")
}

fn strings(value: &serde_yaml::Value) -> Vec<String> {
    value
        .as_sequence()
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
        for rule in role["rules"].as_sequence().expect("rules") {
            let verbs = strings(&rule["verbs"]);
            assert!(!verbs.is_empty(), "{file}: rule without verbs");
            for verb in &verbs {
                assert!(
                    ["get", "list", "watch"].contains(&verb.as_str()),
                    "{file}: verb {verb:?} is not read-only"
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
        .as_sequence()
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

fn configmap_config(documents: &[(String, serde_yaml::Value)], file_suffix: &str) -> String {
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
        .as_sequence()
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
        for dir in ["config/kubernetes/base", "config/kubernetes/git-sync"] {
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
            assert!(
                built.contains("kind: Deployment") && built.contains("kind: ClusterRole"),
                "{dir}"
            );
            if dir.ends_with("git-sync") {
                assert!(
                    built.contains("name: git-sync") && built.contains("path = \"/git/current\""),
                    "{built}"
                );
            }
        }
    }
}
