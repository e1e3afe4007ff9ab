//! The contract scripts and dashboards are written against, held by golden
//! files: the JSON shape of every `/api/v1` route of a real daemon (keys and
//! value types, recursively; never values), and the set of metric families
//! with their type and labels, walked from the real metrics registry.
//!
//! Cluster mode (`[cluster] mode = "kubernetes"`) adds shapes of its own,
//! held in their own golden file by [`cluster`].
//!
//! A change to either must be deliberate: the test fails with the
//! difference, and says how to regenerate the golden files (one command,
//! `scripts/bless`) and that the change needs a CHANGELOG.md entry.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common;

mod cluster;

const API_TOKEN: &str = "contract-api-token-3c1d";
const HOOK_SECRET: &str = "contract-hook-secret-77b0";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Compares `actual` with the committed file `rel`, or writes it when
/// `DRIFTWATCH_BLESS=1` (what `scripts/bless` sets).
pub fn golden(rel: &str, actual: &str, what: &str) {
    let path = repo_root().join(rel);
    if std::env::var_os("DRIFTWATCH_BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected == actual {
        return;
    }
    let old = qualified(&expected);
    let new = qualified(actual);
    let mut diff = String::new();
    for line in &old {
        if !new.contains(line) {
            diff.push_str(&format!("- {line}\n"));
        }
    }
    for line in &new {
        if !old.contains(line) {
            diff.push_str(&format!("+ {line}\n"));
        }
    }
    if diff.is_empty() {
        diff.push_str("(the same lines in another order)\n");
    }
    panic!(
        "{what} differs from {rel} (- committed, + now):\n{diff}\n\
         If the change is intended: run `scripts/bless` (DRIFTWATCH_BLESS=1 cargo test --test it \
         contract::) to regenerate {rel}, commit it, and add an entry to CHANGELOG.md under \
         \"Unreleased\" saying what changed for scripts and dashboards."
    );
}

/// The lines of a golden file, each indented one prefixed with the section
/// header above it (`GET /api/v1/probes -> 200: .probes[].id: string`), so a
/// difference says where it is.
fn qualified(text: &str) -> Vec<String> {
    let mut header = "";
    let mut lines = Vec::new();
    for line in text.lines() {
        match line.strip_prefix("  ") {
            Some(rest) => lines.push(format!("{header}: {rest}")),
            None => {
                header = line;
                lines.push(line.to_string());
            }
        }
    }
    lines
}

/// The shape of a JSON value, one line per path: `.a.b[]: string|null`.
/// Array elements are merged into one shape (`[]`); a key only some
/// elements have is marked `?`. Free-form maps (constant `labels`, a
/// layer's `details`) are shown as such, not key by key.
fn shape(value: &serde_json::Value) -> Vec<String> {
    let mut paths: BTreeMap<String, (std::collections::BTreeSet<&'static str>, bool)> =
        BTreeMap::new();
    walk(value, "", false, &mut paths);
    paths
        .into_iter()
        .map(|(path, (types, optional))| {
            let types: Vec<&str> = types.into_iter().collect();
            let mark = if optional { "?" } else { "" };
            format!("{path}{mark}: {}", types.join("|"))
        })
        .collect()
}

fn type_name(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

type Paths = BTreeMap<String, (std::collections::BTreeSet<&'static str>, bool)>;

fn walk(value: &serde_json::Value, path: &str, optional: bool, paths: &mut Paths) {
    let at = if path.is_empty() { "." } else { path };
    let entry = paths.entry(at.to_string()).or_default();
    let free_form = ["labels", "details"]
        .iter()
        .any(|key| path.ends_with(&format!(".{key}")));
    entry.0.insert(match (value, free_form) {
        (serde_json::Value::Object(_), true) => "object (free-form)",
        _ => type_name(value),
    });
    entry.1 |= optional;
    match value {
        serde_json::Value::Object(map) if !free_form => {
            for (key, child) in map {
                walk(child, &format!("{path}.{key}"), false, paths);
            }
        }
        serde_json::Value::Array(items) => {
            // Keys every element has are required; the others optional.
            let objects: Vec<_> = items.iter().filter_map(|i| i.as_object()).collect();
            let element = format!("{path}[]");
            for item in items {
                match item.as_object() {
                    Some(map) if !free_form => {
                        let entry = paths.entry(element.clone()).or_default();
                        entry.0.insert("object");
                        for (key, child) in map {
                            let everywhere = objects.iter().all(|o| o.contains_key(key));
                            walk(child, &format!("{element}.{key}"), !everywhere, paths);
                        }
                    }
                    _ => walk(item, &element, false, paths),
                }
            }
        }
        _ => {}
    }
}

async fn call(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, String) {
    let mut request = client.request(method.parse().unwrap(), url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    let response = request.send().await.unwrap();
    let code = response.status().as_u16();
    (code, response.text().await.unwrap())
}

/// `METHOD route -> code` and the shape of its answer.
fn describe(method: &str, route: &str, code: u16, body: &str) -> String {
    let mut text = format!("{method} {route} -> {code}\n");
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(value) => {
            for line in shape(&value) {
                text.push_str(&format!("  {line}\n"));
            }
        }
        Err(_) => text.push_str("  (not JSON)\n"),
    }
    text
}

fn write_config(dir: &Path, remote_url: &str) -> PathBuf {
    std::fs::write(dir.join("api-token"), format!("{API_TOKEN}\n")).unwrap();
    std::fs::write(dir.join("hook-secret"), format!("{HOOK_SECRET}\n")).unwrap();
    let path = dir.join("driftwatch.toml");
    std::fs::write(
        &path,
        format!(
            r#"
state_dir = "state"

[server]
listen = "127.0.0.1:0"
api_token_file = "api-token"
webhook_secret_file = "hook-secret"

[[repo]]
name = "infra"
url = "{remote_url}"
poll_interval = "1h"

[[probe]]
name = "calm"
layer = "command"
path = "calm"
schedule = "none"
labels = {{ team = "corp" }}
command = ["sh", "check.sh"]

[[probe]]
name = "drifted"
layer = "command"
path = "drifted"
schedule = "none"
output = "json"
command = ["sh", "check.sh"]

[[probe]]
name = "broken"
layer = "command"
path = "broken"
schedule = "*/30 * * * *"
command = ["sh", "check.sh"]
"#
        ),
    )
    .unwrap();
    path
}

const PLUGIN: &str = r#"cat <<'EOF'
{"protocol": 1,
 "resources": [{"subject": "/etc/app.conf", "action": "changed", "diff": "-a\n+b", "origin": "outside"},
               {"subject": "/etc/other.conf", "action": "missing"}],
 "warnings": ["one warning"], "details": {"files": 2}}
EOF
exit 2
"#;

/// Every `/api/v1` route of a real daemon with an instance in sync, one
/// drifted (with changes, warnings and details), one failing, history, an
/// acknowledgement, triggers and webhooks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_v1_shapes_match_the_golden_file() {
    if !common::have_tool("git") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let remote = tmp.path().join("remote");
    common::init_repo(
        &remote,
        &[
            ("calm/check.sh", "exit 0\n"),
            ("drifted/check.sh", PLUGIN),
            (
                "broken/check.sh",
                "echo 'cannot reach the host' >&2\nexit 1\n",
            ),
        ],
    );
    let remote_url = format!("file://{}", remote.display());
    let config = driftwatch::app::load_config(&write_config(tmp.path(), &remote_url)).unwrap();
    let daemon = driftwatch::app::build(config, true).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(driftwatch::app::run_with_listener(
        daemon,
        listener,
        shutdown.clone(),
    ));
    let client = reqwest::Client::new();
    let bearer = format!("Bearer {API_TOKEN}");
    let auth = [("authorization", bearer.as_str())];

    // Start-up runs every probe once; wait for the three verdicts and their
    // history rows.
    let mut ready = false;
    for _ in 0..600 {
        if let Ok(response) = client.get(format!("{base}/api/v1/probes")).send().await {
            let list: serde_json::Value = response.json().await.unwrap_or_default();
            let counts = &list["counts"];
            let runs = call(&client, "GET", &format!("{base}/api/v1/events"), &[], None).await;
            if counts["in_sync"] == 1
                && counts["drifted"] == 1
                && counts["error"] == 1
                && runs.1.contains("probe_failing")
                && runs.1.contains("drift_detected")
            {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the three probes did not reach their verdicts");

    let mut text = String::new();
    let mut record = |method: &str, route: &str, code: u16, body: &str| {
        text.push_str(&describe(method, route, code, body));
    };
    let get = |path: String| {
        let client = client.clone();
        let base = base.clone();
        async move { call(&client, "GET", &format!("{base}{path}"), &[], None).await }
    };

    // An acknowledgement of the drifted instance, so that the routes show
    // their ack fields.
    let ack = serde_json::json!({"by": "alice", "reason": "vendor hotfix", "expires": "4h"});
    let (code, body) = call(
        &client,
        "POST",
        &format!("{base}/api/v1/probes/drifted/acks?dry_run=true"),
        &auth,
        Some(ack.to_string().into_bytes()),
    )
    .await;
    record("POST", "/api/v1/probes/{id}/acks?dry_run=true", code, &body);
    let (code, body) = call(
        &client,
        "POST",
        &format!("{base}/api/v1/probes/drifted/acks"),
        &auth,
        Some(ack.to_string().into_bytes()),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    record("POST", "/api/v1/probes/{id}/acks", code, &body);
    let ack_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
        .as_str()
        .expect("the ack has an id")
        .to_string();
    // The ack's event is written in the background: wait for it, so the
    // event list always holds the same kinds.
    for _ in 0..600 {
        let (_, events) = call(&client, "GET", &format!("{base}/api/v1/events"), &[], None).await;
        if events.contains("ack_created") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) = call(
        &client,
        "POST",
        &format!("{base}/api/v1/probes/drifted/acks"),
        &auth,
        Some(b"{\"by\": \"\"}".to_vec()),
    )
    .await;
    record("POST", "/api/v1/probes/{id}/acks (invalid)", code, &body);

    for (route, path) in [
        ("/api/v1/probes", "/api/v1/probes".to_string()),
        (
            "/api/v1/probes?scope=local",
            "/api/v1/probes?scope=local".into(),
        ),
        (
            "/api/v1/probes/{id} (in sync)",
            "/api/v1/probes/calm".into(),
        ),
        (
            "/api/v1/probes/{id} (drifted)",
            "/api/v1/probes/drifted".into(),
        ),
        (
            "/api/v1/probes/{id} (error)",
            "/api/v1/probes/broken".into(),
        ),
        (
            "/api/v1/probes/{id} (unknown)",
            "/api/v1/probes/nope".into(),
        ),
        (
            "/api/v1/probes/{id}/runs",
            "/api/v1/probes/drifted/runs".into(),
        ),
        (
            "/api/v1/probes/{id}/runs?limit=1",
            "/api/v1/probes/broken/runs?limit=1".into(),
        ),
        ("/api/v1/events", "/api/v1/events".into()),
        ("/api/v1/episodes", "/api/v1/episodes".into()),
        (
            "/api/v1/episodes?open=true",
            "/api/v1/episodes?open=true".into(),
        ),
        ("/api/v1/acks", "/api/v1/acks".into()),
        ("/api/v1/cluster/status", "/api/v1/cluster/status".into()),
    ] {
        let (code, body) = get(path).await;
        record("GET", route, code, &body);
    }

    for (route, path, headers) in [
        (
            "/api/v1/probes/{id}/run",
            "/api/v1/probes/calm/run",
            &auth[..],
        ),
        (
            "/api/v1/probes/{id}/run (unknown)",
            "/api/v1/probes/nope/run",
            &auth[..],
        ),
        (
            "/api/v1/probes/{id}/run (no token)",
            "/api/v1/probes/calm/run",
            &[][..],
        ),
        ("/api/v1/sync", "/api/v1/sync?repo=infra", &auth[..]),
    ] {
        let (code, body) = call(&client, "POST", &format!("{base}{path}"), headers, None).await;
        record("POST", route, code, &body);
    }

    let push = serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main",
        "repository": {"clone_url": remote_url},
    }))
    .unwrap();
    let signature = driftwatch::http::hooks::github_signature(HOOK_SECRET, &push);
    let (code, body) = call(
        &client,
        "POST",
        &format!("{base}/api/v1/hooks/github"),
        &[
            ("x-github-event", "push"),
            ("x-hub-signature-256", &signature),
        ],
        Some(push),
    )
    .await;
    record("POST", "/api/v1/hooks/github", code, &body);
    let push = serde_json::to_vec(&serde_json::json!({
        "object_kind": "push",
        "project": {"git_http_url": remote_url},
    }))
    .unwrap();
    let (code, body) = call(
        &client,
        "POST",
        &format!("{base}/api/v1/hooks/gitlab"),
        &[
            ("x-gitlab-event", "Push Hook"),
            ("x-gitlab-token", HOOK_SECRET),
        ],
        Some(push),
    )
    .await;
    record("POST", "/api/v1/hooks/gitlab", code, &body);

    let (code, body) = call(
        &client,
        "DELETE",
        &format!("{base}/api/v1/acks/{ack_id}"),
        &auth,
        None,
    )
    .await;
    record("DELETE", "/api/v1/acks/{ack}", code, &body);

    shutdown.cancel();
    running.await.unwrap().unwrap();
    golden(
        "tests/golden/api-v1.shapes",
        &text,
        "The shape of the /api/v1 answers",
    );
}

#[test]
fn the_shape_walk_merges_array_elements_and_marks_optional_keys() {
    let value = serde_json::json!({
        "rows": [{"id": "a", "owner": "x", "labels": {"team": "corp"}}, {"id": "b", "n": null}],
        "next": null,
    });
    assert_eq!(
        shape(&value),
        [
            ".: object",
            ".next: null",
            ".rows: array",
            ".rows[]: object",
            ".rows[].id: string",
            ".rows[].labels?: object (free-form)",
            ".rows[].n?: null",
            ".rows[].owner?: string",
        ]
    );
}

/// Every metric family the daemon may export (also those of scale-out,
/// watch caches, HTTP and handover), with its type and labels.
#[test]
fn metric_names_and_labels_match_the_golden_file() {
    let mut text = String::new();
    for family in driftwatch::reference::metric_families() {
        text.push_str(&format!(
            "{} {} {{{}}}\n",
            family.name,
            family.kind,
            family.labels.join(",")
        ));
    }
    golden(
        "tests/golden/metrics.txt",
        &text,
        "The metric families (name, type, labels)",
    );
}

/// The generated reference pages are what the code generates now.
#[test]
fn generated_reference_pages_are_up_to_date() {
    golden(
        "docs/metrics-reference.md",
        &driftwatch::reference::metrics_reference(),
        "The metrics reference generated from the registry",
    );
    golden(
        "docs/configuration-reference.md",
        &driftwatch::reference::configuration_reference(),
        "The configuration reference generated from the config structs",
    );
}
