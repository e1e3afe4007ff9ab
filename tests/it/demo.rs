//! `scripts/demo --ci`, the README's first command, run as a new user would
//! see it but without a terminal: all four layers report in-sync and drifted
//! probes, every drifted probe's DriftDetected reaches the loopback Slack
//! receiver in its team's channel, the drift the demo fixes resolves, no
//! secret value shows up anywhere, and nothing it started is left running.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use crate::common;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The stand-in's binary, built next to driftwatch by `cargo build --workspace`
/// (scripts/test); None (a skip) outside CI when it was not built.
fn kube_emulator_bin() -> Option<PathBuf> {
    let bin = common::driftwatch_bin().with_file_name("kube-emulator");
    if bin.is_file() {
        // `cargo test` rebuilds only this package's binaries: a stand-in
        // older than its sources would fail the demo for the wrong reason.
        let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
        if let (Some(built), Some(newest)) = (
            built,
            newest_source(&repo_root().join("crates/kube-emulator")),
        ) {
            assert!(
                built >= newest,
                "{} is older than crates/kube-emulator's sources: run `cargo build --workspace` (scripts/test does)",
                bin.display()
            );
        }
        return Some(bin);
    }
    if std::env::var("DRIFTWATCH_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!(
            "{} is missing: build it with `cargo build --workspace`",
            bin.display()
        );
    }
    eprintln!(
        "skipping: {} not built (cargo build -p kube-emulator)",
        bin.display()
    );
    None
}

/// The newest modification time of a crate's inputs cargo rebuilds on:
/// its `Cargo.toml` and the `.rs` files under `src/`.
fn newest_source(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    walkdir::WalkDir::new(dir.join("src"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "rs"))
        .map(|entry| entry.into_path())
        .chain([dir.join("Cargo.toml")])
        .filter_map(|path| std::fs::metadata(path).ok()?.modified().ok())
        .max()
}

/// One received Slack message: (receiver path, channel, title, text).
struct Message {
    receiver: String,
    channel: String,
    title: String,
    text: String,
    color: String,
}

fn read_messages(path: &std::path::Path) -> Vec<Message> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line).unwrap();
            let attachment = &entry["message"]["attachments"][0];
            let field = |v: &serde_json::Value| v.as_str().unwrap_or("").trim().to_string();
            Message {
                receiver: field(&entry["receiver"]),
                channel: field(&entry["message"]["channel"]),
                title: field(&attachment["title"]),
                text: field(&attachment["text"]),
                color: field(&attachment["color"]),
            }
        })
        .collect()
}

#[test]
fn demo_shows_all_layers_and_the_slack_message_firing_and_resolving() {
    for tool in [
        "python3",
        "git",
        "terraform",
        "ansible-playbook",
        "prometheus",
        "prometheus-alertmanager",
        "kubectl",
    ] {
        if !common::have_tool(tool) {
            return;
        }
    }
    let Some(emulator) = kube_emulator_bin() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = Command::new(repo_root().join("scripts/demo"))
        .arg("--ci")
        .env("DRIFTWATCH_DEMO_DIR", &dir)
        .env("DRIFTWATCH_DEMO_SKIP_INSTALL", "1")
        .env("DRIFTWATCH_BIN", common::driftwatch_bin())
        .env("KUBE_EMULATOR_BIN", &emulator)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("scripts/demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let logs = || {
        let mut text = String::new();
        for name in ["driftwatch", "prometheus", "alertmanager", "kube-emulator"] {
            let log =
                std::fs::read_to_string(dir.join(format!("logs/{name}.log"))).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            text.push_str(&format!("--- {name}.log ---\n{tail}\n"));
        }
        text
    };
    assert!(
        out.status.success(),
        "scripts/demo --ci failed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n{}",
        logs()
    );

    // The one-shot check: every layer, in sync and drifted, with the detail
    // a newcomer came for.
    for line in [
        "IN SYNC  terraform:network [terraform]",
        "DRIFTED  terraform:app [terraform]",
        "~ update terraform_data.shop (config)",
        "DRIFTED  terraform:dns [terraform]",
        "~ update terraform_data.www (outside)",
        "IN SYNC  ansible-base [ansible]",
        "DRIFTED  ansible-web [ansible]",
        "+log_level = info",
        "task \"read the deployed version\" (site.yml:",
        "has check_mode: false",
        "IN SYNC  k8s-ops [kubernetes]",
        "DRIFTED  k8s-shop [kubernetes]",
        "spec.replicas: want 3, live 2",
        "data.PAYMENT_API_KEY: value differs (hidden)",
        "missing ConfigMap/shop/shop-settings",
        "extra ConfigMap/shop/shop-debug",
        "IN SYNC  node1-static-pods [command]",
        "DRIFTED  web-config [command]",
        "The definition is 6 nodes but berlin-ai is running with 5",
        "DRIFTED: 4 in sync, 6 drifted, 0 error",
        "a LOCAL STAND-IN, not a cluster",
        "for: 1h cut to 10s",
    ] {
        assert!(
            stdout.contains(line),
            "demo output lacks {line:?}:\n{stdout}"
        );
    }
    for url_kind in [
        "status page",
        "metrics",
        "API",
        "Prometheus",
        "Alertmanager",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(url_kind) && l.contains("http://127.0.0.1:")),
            "no {url_kind} URL:\n{stdout}"
        );
    }

    // The daemon's start-up line names the status page first.
    let daemon_log = std::fs::read_to_string(dir.join("logs/driftwatch.log")).unwrap();
    let started = daemon_log
        .lines()
        .find(|l| l.contains("driftwatch started"))
        .unwrap_or_else(|| panic!("no start-up line:\n{daemon_log}"));
    assert!(
        started.contains("status page at http://127.0.0.1:") && started.contains("/metrics"),
        "{started}"
    );

    // The daemon's own verdicts (the API, after web-config was fixed).
    let api: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("api-probes.json")).unwrap())
            .unwrap();
    let verdicts: BTreeMap<String, String> = api["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeMap<String, String> = [
        ("terraform:network", "in_sync"),
        ("terraform:app", "drifted"),
        ("terraform:dns", "drifted"),
        ("ansible-base", "in_sync"),
        ("ansible-web", "drifted"),
        ("k8s-ops", "in_sync"),
        ("k8s-shop", "drifted"),
        ("node1-static-pods", "in_sync"),
        ("web-config", "in_sync"),
        ("berlin-ai-nodes", "drifted"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(verdicts, expected, "{api:#}");
    // Each drifted resource says where git declares it (links need a web_url).
    let declared = |id: &str, subject: &str| -> String {
        let probe = api["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap();
        let change = probe["last_report"]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["subject"] == subject)
            .unwrap_or_else(|| panic!("{id}: no change {subject}"));
        change["declared_at"].as_str().unwrap_or("").to_string()
    };
    assert_eq!(
        declared("terraform:app", "terraform_data.shop"),
        "terraform/app/main.tf:3"
    );
    assert_eq!(
        declared("terraform:dns", "terraform_data.www"),
        "terraform/dns/main.tf:9"
    );
    assert_eq!(
        declared("k8s-shop", "Deployment/shop/shop"),
        "kubernetes/shop/deployment.yaml"
    );
    assert_eq!(declared("k8s-shop", "ConfigMap/shop/shop-debug"), "");
    assert_eq!(
        declared("ansible-web", "localhost: application settings"),
        "ansible/site.yml:22"
    );

    let layers: std::collections::BTreeSet<&str> = api["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["layer"].as_str().unwrap())
        .collect();
    assert_eq!(
        layers.into_iter().collect::<Vec<_>>(),
        ["ansible", "command", "kubernetes", "terraform"]
    );

    // Slack: each drifted probe fired once in its team's channel; only the
    // fixed one resolved; nothing else was sent.
    let messages = read_messages(&dir.join("slack/messages.jsonl"));
    let firing = |probe: &str| -> Vec<&Message> {
        messages
            .iter()
            .filter(|m| {
                m.title.starts_with("[FIRING:1]")
                    && m.title.contains(&format!("DriftDetected {probe} ·"))
            })
            .collect()
    };
    for (probe, channel, receiver) in [
        ("terraform (app)", "#platform-drift", "slack-platform"),
        ("terraform (dns)", "#platform-drift", "slack-platform"),
        ("ansible-web", "#corp-drift", "slack-corp"),
        ("k8s-shop", "#corp-drift", "slack-corp"),
        ("web-config", "#corp-drift", "slack-corp"),
        ("berlin-ai-nodes", "#drift", "slack-drift"),
    ] {
        let found = firing(probe);
        assert_eq!(
            found.len(),
            1,
            "firing messages for {probe}: {}",
            found.len()
        );
        let message = found[0];
        assert_eq!(message.channel, channel, "{probe}");
        assert_eq!(message.receiver, receiver, "{probe}");
        assert_eq!(message.color, "danger", "{probe}");
        assert!(
            message.text.contains("has drifted from git"),
            "{}",
            message.text
        );
    }
    let k8s = firing("k8s-shop")[0];
    assert!(
        k8s.text.contains("Deployment/shop/shop (changed)")
            && k8s.text.contains("ConfigMap/shop/shop-settings (missing)")
            && k8s.text.contains("ConfigMap/shop/shop-debug (extra)")
            && k8s.text.contains("Secret/shop/shop-credentials (changed)"),
        "{}",
        k8s.text
    );
    let resolved: Vec<&Message> = messages
        .iter()
        .filter(|m| m.title.starts_with("[RESOLVED]"))
        .collect();
    assert_eq!(resolved.len(), 1, "resolved messages: {}", resolved.len());
    assert!(
        resolved[0].title.contains("DriftDetected web-config ·"),
        "{}",
        resolved[0].title
    );
    assert_eq!(resolved[0].color, "good");
    for message in &messages {
        assert!(
            message.title.contains("DriftDetected"),
            "unexpected alert: {}",
            message.title
        );
        for in_sync in ["network", "ansible-base", "k8s-ops", "node1-static-pods"] {
            assert!(!message.title.contains(in_sync), "{}", message.title);
        }
    }

    // Secret values reach neither the terminal nor Slack nor the API.
    let slack = std::fs::read_to_string(dir.join("slack/messages.jsonl")).unwrap();
    let api_text = api.to_string();
    for secret in ["demo-key-from-git", "rotated-by-hand-in-the-cluster"] {
        for (what, text) in [
            ("stdout", &stdout),
            ("stderr", &stderr),
            ("slack", &slack),
            ("api", &api_text),
        ] {
            assert!(!text.contains(secret), "{secret} leaked into {what}");
        }
    }

    // Everything the demo started was stopped, by the PIDs it printed.
    let pids: Vec<u32> = stdout
        .lines()
        .filter(|l| l.contains("(pid ") && l.trim_end().ends_with("stopped"))
        .filter_map(|l| l.split("(pid ").nth(1)?.split(')').next()?.parse().ok())
        .collect();
    assert_eq!(pids.len(), 5, "expected 5 stopped servers:\n{stdout}");
    for pid in pids {
        assert!(
            !PathBuf::from(format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true),
            "pid {pid} still runs after the demo ended"
        );
    }
    assert!(
        !common::process_running(&dir.display().to_string()),
        "a process with the demo directory in its command line is still running"
    );
}
