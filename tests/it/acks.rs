//! Acknowledging a known drift (issue 22) through the real daemon: the API,
//! `/metrics`, history, `driftwatch ack`, `check` and `validate`, a kill -9
//! in the middle. The layer tests (Terraform, Ansible, Kubernetes) are in
//! `acks_layers.rs` and share the [`Harness`] here.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::common::daemon::{reqwest, Daemon};
use crate::common::{commit_files, driftwatch_bin, free_port, init_repo};

pub const TOKEN: &str = "write-token-for-acks";

/// A daemon over one git repo, with a write token.
pub struct Harness {
    pub _tmp: tempfile::TempDir,
    pub root: PathBuf,
    pub work: PathBuf,
    pub config: PathBuf,
    pub daemon: Option<Daemon>,
}

impl Harness {
    /// `files` make the repo's first commit; `probes` are `[[probe]]` tables
    /// (repo `infra`); `top` goes before `[server]`.
    pub fn start(files: &[(&str, &str)], probes: &str, top: &str) -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let work = root.join("work");
        init_repo(&work, files);
        std::fs::write(root.join("token"), TOKEN).unwrap();
        let config = root.join("driftwatch.toml");
        std::fs::write(
            &config,
            format!(
                r#"state_dir = "{state}"
{top}
[server]
listen = "127.0.0.1:{port}"
api_token_file = "{token}"

[defaults]
kill_grace = "2s"
timeout = "120s"

[[repo]]
name = "infra"
url = "file://{work}"
branch = "main"
poll_interval = "1s"

{probes}
"#,
                state = root.join("state").display(),
                port = free_port(),
                token = root.join("token").display(),
                work = work.display(),
            ),
        )
        .unwrap();
        let mut harness = Harness {
            _tmp: tmp,
            root,
            work,
            config,
            daemon: None,
        };
        harness.restart();
        harness
    }

    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("daemon running")
    }

    /// Starts the daemon (again), appending to its log. A running one is
    /// killed first, so the new one never races it for the port.
    pub fn restart(&mut self) {
        drop(self.daemon.take());
        let log = self.root.join(format!(
            "daemon-{}.log",
            std::fs::read_dir(&self.root).unwrap().count()
        ));
        self.daemon = Some(Daemon::start(&self.config, &log));
        self.daemon()
            .wait_for("/readyz", "readiness", |code, _| code == 200);
    }

    /// SIGKILL: no shutdown, no final write.
    pub fn kill_9(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.child.kill().unwrap();
            daemon.child.wait().unwrap();
        }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> (u16, Value) {
        let headers = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let (code, text) =
            reqwest::request_with_body(method, &self.daemon().url(path), &headers, body)
                .unwrap_or_else(|| panic!("{method} {path}: no answer"));
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn ack(&self, instance: &str, body: Value) -> (u16, Value) {
        let path = format!("/api/v1/probes/{}/acks", encode(instance));
        self.request("POST", &path, Some(TOKEN), &body.to_string())
    }

    pub fn probe(&self, instance: &str) -> Value {
        let path = format!("/api/v1/probes/{}", encode(instance));
        let (code, body) = self.request("GET", &path, None, "");
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Runs `instance` now and waits for the run to be recorded.
    pub fn run(&self, instance: &str) -> Value {
        let before = self.probe(instance)["last_report"]["run_id"].clone();
        let path = format!("/api/v1/probes/{}/run", encode(instance));
        loop {
            let (code, body) = self.request("POST", &path, Some(TOKEN), "");
            match code {
                202 => break,
                409 => std::thread::sleep(std::time::Duration::from_millis(100)),
                _ => panic!("run {instance}: {code} {body}"),
            }
        }
        let mut waited = 0;
        loop {
            let view = self.probe(instance);
            if view["last_report"]["run_id"] != before && !view["last_report"].is_null() {
                return view;
            }
            waited += 1;
            assert!(waited < 1200, "no new run of {instance}: {view}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// The value of metric `name` for instance `probe` (and root), if exported.
    pub fn metric(&self, name: &str, probe: &str) -> Option<f64> {
        let (_, body) = self.daemon().get("/metrics").unwrap();
        metric_in(&body, name, probe)
    }

    /// Waits until the instance's first run reached a verdict.
    pub fn wait_verdict(&self, instance: &str) -> Value {
        let path = format!("/api/v1/probes/{}", encode(instance));
        let body = self.daemon().wait_for(&path, "a verdict", |code, body| {
            code == 200
                && (body.contains("\"status\":\"drifted\"")
                    || body.contains("\"status\":\"in_sync\""))
        });
        serde_json::from_str(&body).unwrap()
    }

    pub fn events(&self, instance: &str) -> Vec<(String, String)> {
        let path = format!("/api/v1/events?probe={}&limit=200", encode(instance));
        let (_, body) = self.request("GET", &path, None, "");
        body["events"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .map(|e| {
                (
                    e["kind"].as_str().unwrap_or("").to_string(),
                    e["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Waits until history holds an event of `kind` for `instance`.
    pub fn wait_event(&self, instance: &str, kind: &str) -> String {
        for _ in 0..600 {
            if let Some((_, message)) = self.events(instance).into_iter().find(|(k, _)| k == kind) {
                return message;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!(
            "no {kind} event for {instance}: {:?}",
            self.events(instance)
        );
    }

    /// `driftwatch <args>` with this harness's config; (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let output = Command::new(driftwatch_bin())
            .args(args)
            .env("DRIFTWATCH_CONFIG", &self.config)
            .env(
                "DRIFTWATCH_URL",
                self.daemon.as_ref().map(|d| d.url("")).unwrap_or_default(),
            )
            .env("DRIFTWATCH_TOKEN_FILE", self.root.join("token"))
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        commit_files(&self.work, files, message)
    }
}

pub fn encode(text: &str) -> String {
    text.replace('%', "%25")
        .replace('/', "%2F")
        .replace(':', "%3A")
}

/// The value of `name{…probe="probe"…}` in an exposition.
pub fn metric_in(exposition: &str, name: &str, probe: &str) -> Option<f64> {
    let label = format!("probe=\"{probe}\"");
    exposition
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

/// The unacknowledged, acknowledged and mismatched counts and the drifted flag.
pub fn ack_metrics(h: &Harness, probe: &str) -> (f64, f64, f64, f64) {
    let (_, body) = h.daemon().get("/metrics").unwrap();
    let get = |name: &str| metric_in(&body, name, probe).unwrap_or(-1.0);
    (
        get("driftwatch_probe_drifted"),
        get("driftwatch_probe_drifted_resources"),
        get("driftwatch_probe_acknowledged_resources"),
        get("driftwatch_probe_ack_mismatched_resources"),
    )
}

/// A command probe whose "live" side is a directory outside the repo: one
/// drifted resource per file there, its content in the diff.
fn live_script(live: &Path) -> String {
    format!(
        r#"#!/bin/sh
out=''
for f in '{live}'/*; do
  [ -e "$f" ] || continue
  out="$out{{\"subject\": \"file/$(basename "$f")\", \"action\": \"changed\", \"diff\": \"live $(cat "$f")\"}},"
done
if [ -z "$out" ]; then echo '{{"resources": []}}'; exit 0; fi
echo "{{\"resources\": [${{out%,}}]}}"
exit 2
"#,
        live = live.display()
    )
}

fn command_harness(live: &Path) -> Harness {
    std::fs::create_dir_all(live).unwrap();
    Harness::start(
        &[("app/check.sh", &live_script(live))],
        r#"[[probe]]
name = "app"
layer = "command"
repo = "infra"
path = "app"
schedule = ""
output = "json"
command = ["sh", "check.sh"]
"#,
        "[acks]\nmax_expiry = \"30d\"\n",
    )
}

#[test]
fn command_probe_ack_lifecycle_through_the_daemon() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(live.join("a"), "one").unwrap();
    let mut h = command_harness(&live);
    let view = h.wait_verdict("app");
    assert_eq!(view["status"], "drifted", "{view}");
    let since = view["drifted_since"].clone();
    assert_eq!(ack_metrics(&h, "app"), (1.0, 1.0, 0.0, 0.0));

    // Bad input, each refused with the key at fault; nothing is stored.
    let good = json!({"by": "alice", "reason": "INC-7: hotfix", "expires": "4h"});
    let bad: Vec<(&str, Value, u16, &str)> = vec![
        ("nope", good.clone(), 404, "no probe instance"),
        (
            "app",
            json!({"by": "alice", "expires": "4h"}),
            400,
            "reason",
        ),
        ("app", json!({"by": "alice", "reason": "r"}), 400, "expires"),
        ("app", json!({"reason": "r", "expires": "4h"}), 400, "by"),
        (
            "app",
            json!({"by": "a", "reason": "r", "expires": "2020-01-01T00:00:00Z"}),
            400,
            "in the past",
        ),
        (
            "app",
            json!({"by": "a", "reason": "r", "expires": "31d"}),
            400,
            "maximum",
        ),
        (
            "app",
            json!({"by": "a", "reason": "r", "expires": "4h", "subjects": ["file/zzz"]}),
            400,
            "not drifted",
        ),
        (
            "app",
            json!({"by": "a", "reason": "r", "expires": "4h", "colour": "red"}),
            400,
            "unknown field",
        ),
    ];
    for (instance, body, code, words) in bad {
        let (got, answer) = h.ack(instance, body.clone());
        assert_eq!(got, code, "{instance} {body}: {answer}");
        assert!(answer.to_string().contains(words), "{body}: {answer}");
    }
    let (code, _) = h.request("POST", "/api/v1/probes/app/acks", None, &good.to_string());
    assert_eq!(code, 401);
    let (_, list) = h.request("GET", "/api/v1/acks", None, "");
    assert_eq!(list["acks"], json!([]), "refused requests store nothing");

    // Acknowledged: quiet metrics, verdict still drifted.
    let (code, ack) = h.ack("app", good.clone());
    assert_eq!(code, 201, "{ack}");
    let id = ack["id"].as_str().unwrap().to_string();
    assert_eq!(ack["state"], "active");
    assert_eq!(ack["covers"][0]["subject"], "file/a");
    assert_eq!(ack_metrics(&h, "app"), (0.0, 0.0, 1.0, 0.0));
    assert_eq!(h.metric("driftwatch_probe_result", "app"), Some(2.0));
    let expiry = h
        .metric("driftwatch_probe_ack_expiry_timestamp_seconds", "app")
        .unwrap();
    let expires_at: chrono::DateTime<chrono::Utc> =
        ack["expires_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(expiry as i64, expires_at.timestamp());
    let (_, body) = h.daemon().get("/metrics").unwrap();
    assert!(
        body.contains(&format!("driftwatch_probe_ack_info{{ack=\"{id}\",by=\"alice\",layer=\"command\",probe=\"app\",root=\"\"}} 1")),
        "{body}"
    );
    assert!(
        !body.contains("driftwatch_probe_resource_drifted{"),
        "acknowledged resources have no series"
    );
    let view = h.probe("app");
    assert_eq!(
        view["last_report"]["changes"][0]["acknowledged_by"],
        json!([id])
    );
    assert_eq!(view["acknowledged_resources"], 1);
    assert!(h.wait_event("app", "ack_created").contains("alice"));
    // The page shows it apart: who, why, until, and the diff it covers.
    let (_, page) = h.daemon().get("/probes/app").unwrap();
    let section = &page[page.find("Acknowledged drift (1)").expect("the section")..];
    assert!(
        section.contains("alice")
            && section.contains("INC-7: hotfix")
            && section.contains("until "),
        "{section}"
    );
    assert!(
        section.contains("live one"),
        "the acknowledged diff: {section}"
    );
    let changes =
        &page[page.find("Resource changes").unwrap()..page.find("Acknowledged drift").unwrap()];
    assert!(
        !changes.contains("live one"),
        "not among the unacknowledged: {changes}"
    );
    let (_, overview) = h.daemon().get("/").unwrap();
    assert!(overview.contains("(1 acknowledged)"), "{overview}");

    // kill -9 right after the 201: the ack is on disk.
    h.kill_9();
    h.restart();
    let (_, list) = h.request("GET", "/api/v1/acks", None, "");
    assert_eq!(list["acks"][0]["id"], id.as_str(), "{list}");
    assert_eq!(ack_metrics(&h, "app"), (0.0, 0.0, 1.0, 0.0));

    // `check` against the same state directory: all drift acknowledged, exit 0.
    let state = h.root.join("state");
    let (code, out, err) = h.cli(&["check", "--state-dir", state.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("all drift acknowledged"), "{out}");
    assert!(out.contains(&format!("[acknowledged: {id}]")), "{out}");

    // A second resource drifts: it alerts, the acknowledged one stays quiet.
    std::fs::write(live.join("b"), "two").unwrap();
    h.run("app");
    assert_eq!(ack_metrics(&h, "app"), (1.0, 1.0, 1.0, 0.0));
    let (_, body) = h.daemon().get("/metrics").unwrap();
    assert!(body.contains("resource=\"file/b\""), "{body}");
    assert!(!body.contains("resource=\"file/a\""), "{body}");
    let (code, out, _) = h.cli(&["check", "--state-dir", state.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");

    // The acknowledged one changes: it alerts again, and says so.
    std::fs::remove_file(live.join("b")).unwrap();
    std::fs::write(live.join("a"), "three").unwrap();
    h.run("app");
    assert_eq!(ack_metrics(&h, "app"), (1.0, 1.0, 0.0, 1.0));
    assert!(h.wait_event("app", "ack_changed").contains("alice"));
    let (_, list) = h.request("GET", "/api/v1/acks", None, "");
    assert_eq!(list["acks"][0]["covers"][0]["matches"], false, "{list}");
    assert_eq!(
        h.probe("app")["drifted_since"],
        since,
        "one episode throughout"
    );

    // Fixed: in sync closes the ack, history says so.
    std::fs::remove_file(live.join("a")).unwrap();
    h.run("app");
    assert_eq!(ack_metrics(&h, "app"), (0.0, 0.0, 0.0, 0.0));
    assert!(h.wait_event("app", "ack_closed").contains("in sync"));
    let (_, list) = h.request("GET", "/api/v1/acks", None, "");
    assert_eq!(list["acks"][0]["state"], "closed", "{list}");
    assert!(h
        .metric("driftwatch_probe_ack_expiry_timestamp_seconds", "app")
        .is_none());
    let (code, answer) = h.request("DELETE", &format!("/api/v1/acks/{id}"), Some(TOKEN), "");
    assert_eq!(code, 404, "a closed ack cannot be ended again: {answer}");
}

#[test]
fn expiry_brings_the_drift_back_with_its_original_drifted_since() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(live.join("a"), "one").unwrap();
    let h = command_harness(&live);
    let since = h.wait_verdict("app")["drifted_since"].clone();
    let (code, ack) = h.ack(
        "app",
        json!({"by": "bob", "reason": "short one", "expires": "3s"}),
    );
    assert_eq!(code, 201, "{ack}");
    assert_eq!(h.metric("driftwatch_probe_drifted", "app"), Some(0.0));
    // No run in between: the next scrape after the expiry shows the drift.
    h.daemon()
        .wait_for("/metrics", "the drift back", |_, body| {
            metric_in(body, "driftwatch_probe_drifted", "app") == Some(1.0)
        });
    assert_eq!(
        h.metric("driftwatch_probe_acknowledged_resources", "app"),
        Some(0.0)
    );
    assert!(h
        .metric("driftwatch_probe_ack_expiry_timestamp_seconds", "app")
        .is_none());
    let view = h.probe("app");
    assert_eq!(view["drifted_since"], since, "the episode never ended");
    let since_seconds = h
        .metric("driftwatch_probe_drifted_since_timestamp_seconds", "app")
        .unwrap();
    let since_time: chrono::DateTime<chrono::Utc> = since.as_str().unwrap().parse().unwrap();
    assert_eq!(since_seconds as i64, since_time.timestamp());
    assert!(h.wait_event("app", "ack_expired").contains("bob"));
    let (_, list) = h.request("GET", "/api/v1/acks", None, "");
    assert_eq!(list["acks"][0]["state"], "expired", "{list}");
}

#[test]
fn the_cli_creates_prints_lists_and_ends_acks() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(live.join("a"), "one").unwrap();
    let h = command_harness(&live);
    h.wait_verdict("app");
    // --print: the acks file entry, nothing stored.
    let (code, snippet, err) = h.cli(&[
        "ack",
        "app",
        "--by",
        "carol",
        "--reason",
        "known",
        "--expires",
        "7d",
        "--print",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        snippet.contains("[[ack]]") && snippet.contains("fingerprint = \"fp1:"),
        "{snippet}"
    );
    let (_, list) = h.request("GET", "/api/v1/acks", None, "");
    assert_eq!(list["acks"], json!([]));
    let (code, out, err) = h.cli(&[
        "ack",
        "app",
        "--by",
        "carol",
        "--reason",
        "known",
        "--expires",
        "7d",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("acknowledged app") && out.contains("carol"),
        "{out}"
    );
    let (code, out, _) = h.cli(&["ack", "--list"]);
    assert_eq!(code, 0);
    let id = out.split_whitespace().next().unwrap().to_string();
    assert!(
        id.starts_with("a-") && out.contains("[active, runtime]"),
        "{out}"
    );
    assert_eq!(h.metric("driftwatch_probe_drifted", "app"), Some(0.0));
    let (code, out, _) = h.cli(&["ack", "--delete", &id]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(h.metric("driftwatch_probe_drifted", "app"), Some(1.0));
    assert!(h.wait_event("app", "ack_deleted").contains("carol"));
    // Refusals are exit 1 with the daemon's words.
    let (code, _, err) = h.cli(&[
        "ack",
        "app",
        "--by",
        "x",
        "--reason",
        "y",
        "--expires",
        "90d",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("maximum"), "{err}");
    let (code, _, err) = h.cli(&[
        "ack",
        "ghost",
        "--by",
        "x",
        "--reason",
        "y",
        "--expires",
        "1h",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("404"), "{err}");

    // The printed entry, committed to the repo, acknowledges the same drift.
    h.commit(&[(".driftwatch/acks.toml", &snippet)], "acknowledge app");
    h.daemon().wait_for("/metrics", "the repo ack", |_, body| {
        metric_in(body, "driftwatch_probe_drifted", "app") == Some(0.0)
    });
    let (_, list) = h.request("GET", "/api/v1/acks", None, "");
    let repo = list["acks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["source"] == "repo")
        .cloned()
        .unwrap();
    assert_eq!(repo["state"], "active", "{list}");
    let (code, answer) = h.request(
        "DELETE",
        &format!("/api/v1/acks/{}", repo["id"].as_str().unwrap()),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 409, "a repo ack ends in the repo: {answer}");
}

#[test]
fn a_malformed_or_stale_acks_file_is_named_and_the_rest_still_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(live.join("a"), "one").unwrap();
    let h = command_harness(&live);
    h.wait_verdict("app");
    // Broken TOML: the run still checks, and its warning names the spot.
    h.commit(
        &[(".driftwatch/acks.toml", "[[ack]\nby = 1\n")],
        "broken acks",
    );
    h.daemon()
        .wait_for("/api/v1/probes/app", "the warning", |_, body| {
            body.contains(".driftwatch/acks.toml:1:")
        });
    let view = h.probe("app");
    assert_eq!(view["status"], "drifted", "the probe still ran: {view}");
    assert_eq!(h.metric("driftwatch_probe_drifted", "app"), Some(1.0));

    // A well-formed entry whose fingerprint matches nothing: stale, in the
    // API, on the page and in validate; a bad entry next to it is named.
    let stale = r#"[[ack]]
instance = "app"
by = "dave"
reason = "old hotfix"
expires = "2099-01-01T00:00:00Z"
[[ack.cover]]
subject = "file/a"
fingerprint = "fp1:0000000000000000"
"#;
    h.commit(&[(".driftwatch/acks.toml", stale)], "stale ack");
    h.daemon()
        .wait_for("/api/v1/probes/app", "the stale ack", |_, body| {
            body.contains("\"state\":\"stale\"") || body.contains("more than the maximum")
        });
    let view = h.probe("app");
    // 2099 is beyond the 30-day maximum: the entry is refused, by key.
    let warnings = view["last_report"]["warnings"].to_string();
    assert!(
        warnings.contains(".driftwatch/acks.toml:5:11: ack[0].expires"),
        "{warnings}"
    );
    let soon = (chrono::Utc::now() + chrono::TimeDelta::days(10))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let stale = stale.replace("2099-01-01T00:00:00Z", &soon);
    h.commit(
        &[(".driftwatch/acks.toml", &stale)],
        "stale ack within the maximum",
    );
    h.daemon()
        .wait_for("/api/v1/probes/app", "the stale ack", |_, body| {
            body.contains("\"state\":\"stale\"")
        });
    assert_eq!(
        h.metric("driftwatch_probe_drifted", "app"),
        Some(1.0),
        "a stale ack hides nothing"
    );
    let (_, page) = h.daemon().get("/probes/app").unwrap();
    assert!(
        page.contains(">STALE<") && page.contains("Stale: its fingerprints match nothing"),
        "{page}"
    );
    let (code, out, err) = h.cli(&["validate", "--checkout", h.work.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains(".driftwatch/acks.toml:2: ack r-") && err.contains("is stale"),
        "{err}"
    );
    let broken = format!("{stale}\n[[ack]]\ninstance = \"ghost\"\nby = \"x\"\nreason = \"y\"\nexpires = \"{soon}\"\n[[ack.cover]]\nsubject = \"s\"\nfingerprint = \"fp1:0000000000000001\"\n");
    std::fs::write(h.work.join(".driftwatch/acks.toml"), broken).unwrap();
    let (code, _, err) = h.cli(&["validate", "--checkout", h.work.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(".driftwatch/acks.toml:11:12: ack[1].instance: names \"ghost\", which no probe of repo infra has"),
        "{err}"
    );
}

#[test]
fn check_keeps_a_repo_ack_the_daemon_closed_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(live.join("a"), "one").unwrap();
    let h = command_harness(&live);
    let view = h.wait_verdict("app");
    let fingerprint = view["last_report"]["changes"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let soon = (chrono::Utc::now() + chrono::TimeDelta::days(10))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let file = format!("[[ack]]\ninstance = \"app\"\nby = \"eve\"\nreason = \"r\"\nexpires = \"{soon}\"\n[[ack.cover]]\nsubject = \"file/a\"\nfingerprint = \"{fingerprint}\"\n");
    h.commit(&[(".driftwatch/acks.toml", &file)], "repo ack");
    h.daemon().wait_for("/metrics", "the ack", |_, body| {
        metric_in(body, "driftwatch_probe_drifted", "app") == Some(0.0)
    });
    let state = h.root.join("state");
    let (code, out, _) = h.cli(&["check", "--state-dir", state.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    // Fixed: the daemon closes the ack; the same drift back is drift again,
    // for the daemon and for check.
    std::fs::remove_file(live.join("a")).unwrap();
    h.run("app");
    assert!(h.wait_event("app", "ack_closed").contains("in sync"));
    // validate says closed (remove it), never stale (acknowledge again).
    let (code, out, err) = h.cli(&["validate", "--checkout", h.work.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("is closed: the drift it covered was gone") && !err.contains("stale"),
        "{err}"
    );
    std::fs::write(live.join("a"), "one").unwrap();
    h.run("app");
    assert_eq!(h.metric("driftwatch_probe_drifted", "app"), Some(1.0));
    let (code, out, _) = h.cli(&["check", "--state-dir", state.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(!out.contains("all drift acknowledged"), "{out}");
}

#[test]
fn run_time_acks_wait_while_their_probe_is_left_out_of_the_config() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(live.join("a"), "one").unwrap();
    let mut h = command_harness(&live);
    h.wait_verdict("app");
    let mut ids = Vec::new();
    for (by, expires) in [("alice", "4h"), ("bob", "4h"), ("carol", "6s")] {
        let (code, ack) = h.ack(
            "app",
            json!({"by": by, "reason": "INC-8: known", "expires": expires}),
        );
        assert_eq!(code, 201, "{ack}");
        ids.push(ack["id"].as_str().unwrap().to_string());
    }
    assert_eq!(h.metric("driftwatch_probe_drifted", "app"), Some(0.0));

    // One restart with the probe left out (another probe in its place).
    let with_app = std::fs::read_to_string(&h.config).unwrap();
    std::fs::write(
        &h.config,
        with_app.replace("name = \"app\"", "name = \"other\""),
    )
    .unwrap();
    h.restart();
    h.wait_verdict("other");
    let (_, list) = h.request("GET", "/api/v1/acks?instance=app", None, "");
    let states: Vec<&str> = list["acks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap())
        .collect();
    assert_eq!(states.len(), 3, "{list}");
    assert!(states.iter().all(|s| *s == "waiting"), "{list}");
    let (code, out, _) = h.cli(&["ack", "--list"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("[waiting, runtime]") && out.contains("not configured now"),
        "{out}"
    );
    assert!(!out.contains("(matches)"), "{out}");
    let (code, out, err) = h.cli(&["validate"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("waits for its instance"), "{err}");
    assert!(h.metric("driftwatch_probe_drifted", "app").is_none());
    // Ended while away: bob's by DELETE, carol's by its expiry.
    let (code, answer) = h.request(
        "DELETE",
        &format!("/api/v1/acks/{}", ids[1]),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 200, "{answer}");
    assert!(h.wait_event("app", "ack_deleted").contains("bob"));
    assert!(h.wait_event("app", "ack_expired").contains("carol"));

    // And a second restart still without it: nothing is lost.
    h.restart();
    h.wait_verdict("other");
    let (_, list) = h.request("GET", "/api/v1/acks?instance=app", None, "");
    assert_eq!(list["acks"].as_array().unwrap().len(), 3, "{list}");

    // Back in the config: alice's ack applies again, the ended ones stay ended.
    std::fs::write(&h.config, &with_app).unwrap();
    h.restart();
    h.wait_verdict("app");
    h.run("app");
    assert_eq!(h.metric("driftwatch_probe_drifted", "app"), Some(0.0));
    assert_eq!(
        h.metric("driftwatch_probe_acknowledged_resources", "app"),
        Some(1.0)
    );
    let (_, list) = h.request("GET", "/api/v1/acks?instance=app", None, "");
    let state_of = |id: &str| {
        list["acks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["id"] == id)
            .map(|a| a["state"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert_eq!(state_of(&ids[0]), "active", "{list}");
    assert_eq!(state_of(&ids[1]), "closed", "{list}");
    assert_eq!(state_of(&ids[2]), "expired", "{list}");
}

/// `driftwatch_triggers_total{kind="ack",result=…}`, 0 when not exported.
fn ack_triggers(h: &Harness, result: &str) -> f64 {
    let (_, body) = h.daemon().get("/metrics").unwrap();
    let prefix = format!("driftwatch_triggers_total{{kind=\"ack\",result=\"{result}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits out the exposition cache (a counter alone may show a second late)
/// until the counter moved past `before`, and returns it.
fn ack_triggers_after(h: &Harness, result: &str, before: f64) -> f64 {
    for _ in 0..30 {
        let now = ack_triggers(h, result);
        if now > before {
            return now;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    before
}

#[test]
fn every_answer_of_the_ack_routes_is_counted_with_its_result() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(live.join("a"), "one").unwrap();
    let h = Harness::start(
        &[("app/check.sh", &live_script(&live))],
        r#"[[probe]]
name = "app"
layer = "command"
repo = "infra"
path = "app"
schedule = ""
output = "json"
command = ["sh", "check.sh"]

[[probe]]
name = "plain"
layer = "command"
repo = "infra"
schedule = ""
command = ["sh", "-c", "exit 2"]

[[probe]]
name = "calm"
layer = "command"
repo = "infra"
schedule = ""
command = ["true"]
"#,
        "",
    );
    for instance in ["app", "plain", "calm"] {
        h.wait_verdict(instance);
    }
    let good = json!({"by": "alice", "reason": "INC-9", "expires": "4h"});
    let post = |instance: &str, query: &str, token: &str, body: &str| {
        let path = format!("/api/v1/probes/{}/acks{query}", encode(instance));
        h.request("POST", &path, Some(token), body).0
    };
    let (_, created) = h.ack("app", good.clone());
    let runtime_id = created["id"].as_str().unwrap().to_string();
    // (what, request, expected code, expected result)
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Box<dyn Fn() -> u16 + '_>, u16, &str)> = vec![
        (
            "no token",
            Box::new(|| post("app", "", "wrong", &good.to_string())),
            401,
            "unauthorized",
        ),
        (
            "not JSON",
            Box::new(|| post("app", "", TOKEN, "{")),
            400,
            "bad_request",
        ),
        (
            "no owner",
            Box::new(|| post("app", "", TOKEN, r#"{"reason":"r","expires":"4h"}"#)),
            400,
            "bad_request",
        ),
        (
            "past expiry",
            Box::new(|| {
                post(
                    "app",
                    "",
                    TOKEN,
                    r#"{"by":"a","reason":"r","expires":"2020-01-01T00:00:00Z"}"#,
                )
            }),
            400,
            "bad_request",
        ),
        (
            "no such subject",
            Box::new(|| {
                post(
                    "app",
                    "",
                    TOKEN,
                    r#"{"by":"a","reason":"r","expires":"4h","subjects":["zzz"]}"#,
                )
            }),
            400,
            "bad_request",
        ),
        (
            "unknown instance",
            Box::new(|| post("ghost", "", TOKEN, &good.to_string())),
            404,
            "not_found",
        ),
        (
            "in sync",
            Box::new(|| post("calm", "", TOKEN, &good.to_string())),
            409,
            "in_sync",
        ),
        (
            "drift without resources",
            Box::new(|| post("plain", "", TOKEN, &good.to_string())),
            409,
            "no_resources",
        ),
        (
            "dry run",
            Box::new(|| post("app", "?dry_run=true", TOKEN, &good.to_string())),
            200,
            "dry_run",
        ),
        (
            "created",
            Box::new(|| post("app", "", TOKEN, &good.to_string())),
            201,
            "accepted",
        ),
        (
            "deleted",
            Box::new(|| {
                h.request(
                    "DELETE",
                    &format!("/api/v1/acks/{runtime_id}"),
                    Some(TOKEN),
                    "",
                )
                .0
            }),
            200,
            "accepted",
        ),
        (
            "deleted again",
            Box::new(|| {
                h.request(
                    "DELETE",
                    &format!("/api/v1/acks/{runtime_id}"),
                    Some(TOKEN),
                    "",
                )
                .0
            }),
            404,
            "not_found",
        ),
        (
            "delete without token",
            Box::new(|| h.request("DELETE", "/api/v1/acks/a-00000000", None, "").0),
            401,
            "unauthorized",
        ),
    ];
    for (what, send, code, result) in cases {
        let before = ack_triggers(&h, result);
        assert_eq!(send(), code, "{what}");
        assert_eq!(
            ack_triggers_after(&h, result, before),
            before + 1.0,
            "{what}: {result}"
        );
    }
    // A repo ack is ended in the repo: 409, counted as repo_ack.
    let (_, preview) = h.request(
        "POST",
        "/api/v1/probes/app/acks?dry_run=true",
        Some(TOKEN),
        &good.to_string(),
    );
    h.commit(
        &[(
            ".driftwatch/acks.toml",
            preview["snippet"].as_str().unwrap(),
        )],
        "repo ack",
    );
    let list = h
        .daemon()
        .wait_for("/api/v1/acks", "the repo ack", |_, body| {
            body.contains("\"source\":\"repo\"")
        });
    let list: Value = serde_json::from_str(&list).unwrap();
    let repo_id = list["acks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["source"] == "repo")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = ack_triggers(&h, "repo_ack");
    let (code, _) = h.request(
        "DELETE",
        &format!("/api/v1/acks/{repo_id}"),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 409);
    assert_eq!(ack_triggers_after(&h, "repo_ack", before), before + 1.0);
}

#[test]
fn a_new_fingerprint_key_under_existing_acks_is_a_warning_that_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(live.join("a"), "one").unwrap();
    let mut h = command_harness(&live);
    h.wait_verdict("app");
    // The first start, with no acks: a plain INFO line.
    let first = h.daemon().log.clone();
    h.daemon()
        .wait_for_log("generated the fingerprint key; replicas of a cluster must share it");
    let log = std::fs::read_to_string(&first).unwrap();
    assert!(!log.contains("made under another key"), "{log}");
    let (code, ack) = h.ack(
        "app",
        json!({"by": "hal", "reason": "INC-12", "expires": "4h"}),
    );
    assert_eq!(code, 201, "{ack}");
    // The key file is lost; the acks are not.
    drop(h.daemon.take());
    std::fs::remove_file(h.root.join("state/fingerprint.key")).unwrap();
    h.restart();
    h.daemon().wait_for_log("made under another key");
    let log = std::fs::read_to_string(&h.daemon().log).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("made under another key"))
        .unwrap();
    assert!(
        line.contains("WARN")
            && line.contains("1 acknowledgement(s)")
            && line.contains("mismatched")
            && line.contains("fingerprint_key_file"),
        "{line}"
    );
    // A key kept is no news at all.
    h.restart();
    h.wait_verdict("app");
    let log = std::fs::read_to_string(&h.daemon().log).unwrap();
    assert!(!log.contains("fingerprint key"), "{log}");
}

#[test]
fn ack_events_name_the_commit_and_run_of_the_instances_last_run() {
    let tmp = tempfile::tempdir().unwrap();
    let live = tmp.path().join("live");
    std::fs::create_dir_all(&live).unwrap();
    std::fs::write(live.join("a"), "one").unwrap();
    let h = command_harness(&live);
    h.wait_verdict("app");
    // The history's id and commit of the instance's newest run.
    let last_run = || {
        let (_, runs) = h.request("GET", "/api/v1/probes/app/runs?limit=1", None, "");
        (
            runs["runs"][0]["id"].clone(),
            runs["runs"][0]["commit"].clone(),
        )
    };
    // The newest event of `kind`, once there: its run and commit.
    let event = |kind: &str| {
        h.wait_event("app", kind);
        let (_, body) = h.request("GET", "/api/v1/events?probe=app&limit=200", None, "");
        let found = body["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["kind"] == kind)
            .cloned()
            .unwrap();
        (found["run"].clone(), found["commit"].clone())
    };
    // Made over the API: the run whose drift it covers.
    let (code, ack) = h.ack("app", json!({"by": "ivy", "reason": "r", "expires": "4h"}));
    assert_eq!(code, 201, "{ack}");
    let covered = last_run();
    assert!(covered.0.as_i64().unwrap() > 0 && !covered.1.as_str().unwrap().is_empty());
    assert_eq!(event("ack_created"), covered);
    // Changed by a run: that run, on a new commit.
    std::fs::write(live.join("a"), "two").unwrap();
    let commit = h.commit(
        &[("app/notes", "a change under the probe's path")],
        "another commit",
    );
    h.daemon().wait_for(
        "/api/v1/probes/app/runs?limit=1",
        "a run on the new commit",
        |_, body| body.contains(&commit),
    );
    let changed = last_run();
    assert_ne!(changed, covered);
    assert_eq!(event("ack_changed"), changed);
    // Ended by DELETE, no run: the instance's last one.
    let (code, _) = h.request(
        "DELETE",
        &format!("/api/v1/acks/{}", ack["id"].as_str().unwrap()),
        Some(TOKEN),
        "",
    );
    assert_eq!(code, 200);
    assert_eq!(event("ack_deleted"), changed);
}
