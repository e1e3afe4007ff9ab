//! The status page, history API and triggers over real HTTP, with pages
//! rendered by headless Chromium (Debian's `chromium`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use driftwatch::config::HistoryConfig;
use driftwatch::history::History;
use driftwatch::http::{
    self as web, Catalog, CatalogProbe, CatalogRepo, Context, Secrets, TriggerRefusal, TriggerSink,
};
use driftwatch::metrics::Metrics;
use driftwatch::model::outcome::{ErrorReason, ProbeError, ResourceChange};
use driftwatch::model::outcome::{Outcome, RunReport};
use driftwatch::state::State;

use crate::common;

const XSS: &str = "<script>document.title='pwned';alert(1)</script>";
const API_TOKEN: &str = "test-api-token-5f1c";
const HOOK_SECRET: &str = "test-hook-secret-9a2e";

/// Remembers what the HTTP side asked the scheduler for.
#[derive(Default)]
struct RecordingTriggers {
    runs: Mutex<Vec<String>>,
    syncs: Mutex<Vec<Option<String>>>,
}

impl TriggerSink for RecordingTriggers {
    fn run_probe(&self, id: &str) -> Result<(), TriggerRefusal> {
        if id == "unknown" {
            return Err(TriggerRefusal::NotFound);
        }
        self.runs.lock().unwrap().push(id.to_string());
        Ok(())
    }

    fn sync(&self, repo: Option<&str>) -> Result<(), TriggerRefusal> {
        self.syncs.lock().unwrap().push(repo.map(str::to_string));
        Ok(())
    }

    fn is_ready(&self) -> bool {
        true
    }
}

fn report(
    probe: &str,
    root: &str,
    layer: &str,
    at: DateTime<Utc>,
    result: Result<Outcome, ProbeError>,
) -> RunReport {
    let mut report = RunReport {
        probe: if root.is_empty() {
            probe.to_string()
        } else {
            format!("{probe}:{root}")
        },
        name: probe.to_string(),
        root: root.to_string(),
        layer: layer.to_string(),
        run_id: at.timestamp() as u64,
        trigger: "schedule".into(),
        repo: "infra".into(),
        commit: format!("{:040x}", at.timestamp()),
        started_at: at,
        duration: Duration::from_millis(2300),
        ..RunReport::default()
    };
    report.apply_result(result);
    report
}

struct Harness {
    base: String,
    state: Arc<State>,
    history: Arc<History>,
    triggers: Arc<RecordingTriggers>,
    registry: prometheus::Registry,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn start(secrets: Secrets) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let state = Arc::new(State::load(dir.path()));
        let history = Arc::new(History::open(dir.path(), HistoryConfig::default()));
        let triggers = Arc::new(RecordingTriggers::default());
        let metrics = Arc::new(Metrics::new(state.clone(), &Default::default(), 100));
        let registry = metrics.registry().clone();
        let catalog = Catalog {
            probes: vec![
                CatalogProbe {
                    name: "web-deploy".into(),
                    layer: "kubernetes".into(),
                    repo: "infra".into(),
                    path: "k8s/web".into(),
                    schedule: Some("*/5 * * * *".into()),
                    timezone: Some(chrono_tz::Europe::Berlin),
                    ..Default::default()
                },
                CatalogProbe {
                    name: "network".into(),
                    layer: "terraform".into(),
                    repo: "infra".into(),
                    path: "tf".into(),
                    schedule: None,
                    ..Default::default()
                },
                CatalogProbe {
                    name: "hosts".into(),
                    layer: "ansible".into(),
                    repo: "infra".into(),
                    path: "ansible".into(),
                    schedule: None,
                    ..Default::default()
                },
                CatalogProbe {
                    name: "not-yet".into(),
                    layer: "command".into(),
                    repo: "infra".into(),
                    path: "".into(),
                    schedule: None,
                    ..Default::default()
                },
            ],
            repos: vec![
                CatalogRepo {
                    name: "infra".into(),
                    match_key: web::hooks::normalize_repo_url("https://github.com/acme/infra.git"),
                },
                CatalogRepo {
                    name: "other".into(),
                    match_key: web::hooks::normalize_repo_url("https://github.com/acme/other.git"),
                },
            ],
        };
        let mut ctx = Context::new(state.clone(), metrics, catalog, triggers.clone()).unwrap();
        ctx.history = Some(history.clone());
        ctx.secrets = Arc::new(secrets);
        let app = web::router(ctx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Harness {
            base: format!("http://{addr}"),
            state,
            history,
            triggers,
            registry,
            _dir: dir,
        }
    }

    fn record(&self, report: &RunReport) {
        self.state.record(report);
        self.history.record(report);
    }

    fn flush(&self) {
        assert!(self.history.flush(Duration::from_secs(60)));
    }

    /// A drifted Kubernetes probe whose annotation holds a script, a
    /// Terraform root with a script in a value, an erroring Ansible probe.
    fn populate(&self) {
        let now = Utc::now();
        let at = |minutes_ago: i64| now - chrono::Duration::minutes(minutes_ago);
        let annotation_diff = format!(
            "  metadata.annotations.note:\n-   \"release 41\"\n+   \"{XSS}\"\n~ spec.replicas: 6 -> 5"
        );
        self.record(&report(
            "web-deploy",
            "",
            "kubernetes",
            at(50),
            Ok(Outcome::in_sync()),
        ));
        self.record(&report(
            "web-deploy",
            "",
            "kubernetes",
            at(40),
            Ok(Outcome::drifted(vec![
                ResourceChange::new("Deployment/prod/web", "configured")
                    .with_diff(annotation_diff.clone()),
                ResourceChange::new(format!("ConfigMap/prod/{XSS}"), "configured"),
            ])),
        ));
        self.record(&report(
            "web-deploy",
            "",
            "kubernetes",
            at(20),
            Err(ProbeError::new(
                ErrorReason::Api,
                format!("apiserver said {XSS}"),
            )),
        ));
        self.record(&report(
            "web-deploy",
            "",
            "kubernetes",
            at(5),
            Ok(Outcome::drifted(vec![
                ResourceChange::new("Deployment/prod/web", "configured").with_diff(annotation_diff),
                ResourceChange::new(format!("ConfigMap/prod/{XSS}"), "configured"),
            ])),
        ));
        self.record(&report(
            "network",
            "envs/prod",
            "terraform",
            at(3),
            Ok(Outcome::drifted(vec![ResourceChange::new(
                "terraform_data.dns",
                "update",
            )
            .with_diff(format!("~ input = \"berlin\" -> \"{XSS}\""))
            .with_origin("outside")])),
        ));
        self.record(&report(
            "network",
            "envs/dev",
            "terraform",
            at(3),
            Ok(Outcome::in_sync()),
        ));
        self.record(&report(
            "hosts",
            "",
            "ansible",
            at(2),
            Err(ProbeError::new(
                ErrorReason::Unreachable,
                "host db1 unreachable",
            )),
        ));
        self.flush();
    }
}

/// Renders `url` in headless Chromium and returns the serialized DOM.
async fn chromium(args: &[&str], url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new("chromium");
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .expect("chromium finishes within two minutes")
        .expect("chromium starts");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn dump_dom(url: &str) -> String {
    chromium(&["--dump-dom"], url).await
}

fn assert_script_escaped_and_inert(dom: &str) {
    assert!(
        dom.contains("&lt;script&gt;document.title='pwned';alert(1)&lt;/script&gt;"),
        "the injected markup shows up as text"
    );
    assert!(
        !dom.to_lowercase().contains("<script"),
        "no script element in the rendered DOM"
    );
    assert!(
        !dom.contains("<title>pwned</title>"),
        "the injected script did not run"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_renders_in_chromium_with_everything_escaped() {
    if !common::have_tool("chromium") {
        return;
    }
    let harness = Harness::start(Secrets::default()).await;
    harness.populate();

    let dom = dump_dom(&format!("{}/", harness.base)).await;
    assert!(dom.contains("<title>driftwatch: status</title>"), "{dom}");
    assert!(dom.contains(r#"http-equiv="refresh""#));
    for layer in ["ansible", "command", "kubernetes", "terraform"] {
        assert!(
            dom.contains(&format!(r#"<h2 id="layer-{layer}">{layer}</h2>"#)),
            "layer {layer}"
        );
    }
    let row = |id: &str, status: &str| format!(r#"data-probe="{id}" data-status="{status}""#);
    assert!(dom.contains(&row("web-deploy", "drifted")));
    assert!(dom.contains(&row("network:envs/prod", "drifted")));
    assert!(dom.contains(&row("network:envs/dev", "in_sync")));
    assert!(dom.contains(&row("hosts", "error")));
    assert!(dom.contains(&row("not-yet", "pending")));
    assert!(dom.contains(r#"<span class="badge s-drifted">DRIFTED</span>"#));
    assert!(dom.contains(r#"<span class="badge s-error">ERROR</span>"#));
    // The message column does not repeat the badge.
    assert!(
        dom.contains(
            r#"<td class="msg"><span title="2 resource(s) differ">2 resource(s) differ</span></td>"#
        ),
        "{dom}"
    );
    assert!(dom.contains(r#"<td class="msg"><span title="unreachable: host db1 unreachable">unreachable: host db1 unreachable</span></td>"#), "{dom}");
    assert!(dom.contains(r#"id="count-drifted">2 drifted"#));
    assert!(dom.contains(r#"href="/probes/network%3Aenvs%2Fprod""#));
    // Events feed, newest first.
    let failing = dom
        .find(r#"data-event="probe_failing""#)
        .expect("failing event");
    let detected = dom
        .find(r#"data-event="drift_detected""#)
        .expect("drift event");
    assert!(failing < detected, "newest first");
    assert_script_escaped_and_inert(&dom);

    let dom = dump_dom(&format!("{}/probes/web-deploy", harness.base)).await;
    assert!(dom.contains(r#"<span id="probe-id">web-deploy</span>"#));
    assert!(dom.contains("Deployment/prod/web"));
    assert!(
        dom.contains(r#"<span class="add">+   "&lt;script&gt;"#),
        "diff lines are classed and escaped"
    );
    assert!(dom.contains("spec.replicas: 6 -&gt; 5"));
    assert!(dom.contains("k8s/web"), "configured path");
    assert!(
        dom.contains(
            r#"<span class="mono">*/5 * * * *</span> <span class="muted">(Europe/Berlin)</span>"#
        ),
        "the schedule with its zone"
    );
    // One episode, open through the error run.
    assert_eq!(
        dom.matches(r#"<span class="badge s-drifted">OPEN</span>"#)
            .count(),
        1
    );
    assert!(
        dom.matches("<tr><td><time").count() >= 4,
        "recent runs listed"
    );
    assert_script_escaped_and_inert(&dom);

    let dom = dump_dom(&format!("{}/probes/network%3Aenvs%2Fprod", harness.base)).await;
    assert!(dom.contains(r#"<span id="probe-id">network:envs/prod</span>"#));
    assert!(dom.contains("terraform_data.dns"));
    assert!(dom.contains("(origin: outside)"));
    assert_script_escaped_and_inert(&dom);

    // A probe name with several roots lists its instances.
    let dom = dump_dom(&format!("{}/probes/network", harness.base)).await;
    assert!(dom.contains(&row("network:envs/prod", "drifted")));
    assert!(dom.contains(&row("network:envs/dev", "in_sync")));

    let dom = dump_dom(&format!("{}/events", harness.base)).await;
    assert!(dom.contains("Drift detected"));
    assert!(dom.contains("Probe failing"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_api_pages_runs_events_and_episodes() {
    let harness = Harness::start(Secrets::default()).await;
    harness.populate();
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        let base = harness.base.clone();
        async move {
            let response = client.get(format!("{base}{path}")).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };

    let (status, page) = get("/api/v1/probes/web-deploy/runs?limit=3".into()).await;
    assert_eq!(status, 200);
    let runs = page["runs"].as_array().unwrap();
    let verdicts: Vec<_> = runs
        .iter()
        .map(|r| r["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["drifted", "error", "drifted"]);
    assert_eq!(runs[1]["error_reason"], "api");
    assert_eq!(runs[0]["changes"], 2);
    let cursor = page["next_before"].as_i64().expect("a next page");
    let (_, page) = get(format!(
        "/api/v1/probes/web-deploy/runs?limit=3&before={cursor}"
    ))
    .await;
    let verdicts: Vec<_> = page["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["in_sync"]);
    assert!(page["next_before"].is_null());

    let (status, page) = get("/api/v1/probes/network%3Aenvs%2Fprod/runs".into()).await;
    assert_eq!(status, 200);
    assert_eq!(page["probe"], "network:envs/prod");
    assert_eq!(page["runs"].as_array().unwrap().len(), 1);
    let (status, _) = get("/api/v1/probes/nope/runs".into()).await;
    assert_eq!(status, 404);

    let (_, page) = get("/api/v1/episodes?open=true".into()).await;
    let episodes = page["episodes"].as_array().unwrap();
    assert_eq!(episodes.len(), 2);
    let web = episodes
        .iter()
        .find(|e| e["probe"] == "web-deploy")
        .unwrap();
    assert_eq!(web["drifted_runs"], 2);
    assert!(web.get("ended_at").is_none());
    assert_eq!(web["resources"].as_array().unwrap().len(), 2);

    let (_, page) = get("/api/v1/events?limit=2".into()).await;
    let kinds: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["probe_failing", "drift_detected"]);
    assert!(page["next_before"].is_i64());
    let (_, page) = get("/api/v1/events?probe=web-deploy".into()).await;
    let kinds: Vec<_> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["probe_recovered", "probe_failing", "drift_detected"]
    );
}

async fn post(url: String, headers: &[(&str, &str)], body: Vec<u8>) -> u16 {
    let mut request = reqwest::Client::new().post(url).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status().as_u16()
}

fn metric(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().iter())
        .find(|m| {
            labels.iter().all(|(k, v)| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == *k && l.value() == *v)
            })
        })
        .map(|m| m.get_counter().get_value())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_endpoints_are_off_without_a_token() {
    let harness = Harness::start(Secrets::default()).await;
    let base = &harness.base;
    assert_eq!(
        post(
            format!("{base}/api/v1/probes/hosts/run"),
            &[("authorization", "Bearer x")],
            vec![]
        )
        .await,
        404
    );
    assert_eq!(post(format!("{base}/api/v1/sync"), &[], vec![]).await, 404);
    assert_eq!(
        post(format!("{base}/api/v1/hooks/github"), &[], b"{}".to_vec()).await,
        404
    );
    assert_eq!(
        post(format!("{base}/api/v1/hooks/gitlab"), &[], b"{}".to_vec()).await,
        404
    );
    assert!(harness.triggers.runs.lock().unwrap().is_empty());
    assert!(harness.triggers.syncs.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_need_the_bearer_token() {
    let harness = Harness::start(Secrets {
        api_token: Some(API_TOKEN.into()),
        webhook_secret: None,
        ..Secrets::default()
    })
    .await;
    let base = &harness.base;
    let run = format!("{base}/api/v1/probes/network%3Aenvs%2Fprod/run");
    assert_eq!(post(run.clone(), &[], vec![]).await, 401, "missing token");
    assert_eq!(
        post(run.clone(), &[("authorization", "Bearer wrong")], vec![]).await,
        401
    );
    assert_eq!(
        post(run.clone(), &[("authorization", API_TOKEN)], vec![]).await,
        401,
        "no scheme"
    );
    assert!(harness.triggers.runs.lock().unwrap().is_empty());
    let bearer = format!("Bearer {API_TOKEN}");
    assert_eq!(post(run, &[("authorization", &bearer)], vec![]).await, 202);
    assert_eq!(
        *harness.triggers.runs.lock().unwrap(),
        ["network:envs/prod"]
    );
    assert_eq!(
        post(
            format!("{base}/api/v1/probes/unknown/run"),
            &[("authorization", &bearer)],
            vec![]
        )
        .await,
        404
    );

    assert_eq!(
        post(
            format!("{base}/api/v1/sync"),
            &[("authorization", "Bearer nope")],
            vec![]
        )
        .await,
        401
    );
    assert_eq!(
        post(
            format!("{base}/api/v1/sync?repo=infra"),
            &[("authorization", &bearer)],
            vec![]
        )
        .await,
        202
    );
    assert_eq!(
        *harness.triggers.syncs.lock().unwrap(),
        [Some("infra".to_string())]
    );

    assert_eq!(
        metric(
            &harness.registry,
            "driftwatch_triggers_total",
            &[("kind", "run"), ("result", "unauthorized")]
        ),
        3.0
    );
    assert_eq!(
        metric(
            &harness.registry,
            "driftwatch_triggers_total",
            &[("kind", "run"), ("result", "accepted")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &harness.registry,
            "driftwatch_http_requests_total",
            &[("handler", "/api/v1/probes/{name}/run"), ("code", "401")]
        ),
        3.0
    );
    assert_eq!(
        metric(
            &harness.registry,
            "driftwatch_http_requests_total",
            &[("handler", "/api/v1/sync"), ("code", "202")]
        ),
        1.0
    );
}

fn github_push(clone_url: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main",
        "after": "0123456789abcdef0123456789abcdef01234567",
        "repository": {
            "full_name": "acme/infra",
            "clone_url": clone_url,
        },
        "commits": [{"modified": ["tf/main.tf"]}],
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_webhook_needs_a_valid_signature() {
    let harness = Harness::start(Secrets {
        api_token: None,
        webhook_secret: Some(HOOK_SECRET.into()),
        ..Secrets::default()
    })
    .await;
    let url = format!("{}/api/v1/hooks/github", harness.base);
    let body = github_push("https://github.com/acme/infra.git");
    let good = web::hooks::github_signature(HOOK_SECRET, &body);
    let forged = web::hooks::github_signature("guessed", &body);

    assert_eq!(
        post(url.clone(), &[("x-github-event", "push")], body.clone()).await,
        401,
        "unsigned"
    );
    assert_eq!(
        post(
            url.clone(),
            &[("x-github-event", "push"), ("x-hub-signature-256", &forged)],
            body.clone()
        )
        .await,
        401
    );
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    assert_eq!(
        post(
            url.clone(),
            &[("x-github-event", "push"), ("x-hub-signature-256", &good)],
            tampered
        )
        .await,
        401
    );
    assert!(harness.triggers.syncs.lock().unwrap().is_empty());

    assert_eq!(
        post(
            url.clone(),
            &[("x-github-event", "push"), ("x-hub-signature-256", &good)],
            body
        )
        .await,
        202
    );
    assert_eq!(
        *harness.triggers.syncs.lock().unwrap(),
        [Some("infra".to_string())]
    );

    // A push to a repository driftwatch does not watch syncs nothing.
    let elsewhere = github_push("https://github.com/someone/else.git");
    let signature = web::hooks::github_signature(HOOK_SECRET, &elsewhere);
    assert_eq!(
        post(
            url.clone(),
            &[
                ("x-github-event", "push"),
                ("x-hub-signature-256", &signature)
            ],
            elsewhere
        )
        .await,
        200
    );
    assert_eq!(harness.triggers.syncs.lock().unwrap().len(), 1);

    // Bodies over the cap are refused before anything else.
    let huge = vec![b' '; web::MAX_BODY_BYTES + 1];
    let signature = web::hooks::github_signature(HOOK_SECRET, &huge);
    assert_eq!(
        post(
            url,
            &[
                ("x-github-event", "push"),
                ("x-hub-signature-256", &signature)
            ],
            huge
        )
        .await,
        413
    );
    assert_eq!(
        metric(
            &harness.registry,
            "driftwatch_triggers_total",
            &[("kind", "github"), ("result", "unauthorized")]
        ),
        3.0
    );
    assert_eq!(
        metric(
            &harness.registry,
            "driftwatch_triggers_total",
            &[("kind", "github"), ("result", "accepted")]
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitlab_webhook_needs_the_token() {
    let harness = Harness::start(Secrets {
        api_token: None,
        webhook_secret: Some(HOOK_SECRET.into()),
        ..Secrets::default()
    })
    .await;
    let url = format!("{}/api/v1/hooks/gitlab", harness.base);
    let body = serde_json::to_vec(&serde_json::json!({
        "object_kind": "push",
        "project": {"git_http_url": "https://github.com/acme/other.git", "git_ssh_url": "git@github.com:acme/other.git"},
    }))
    .unwrap();
    assert_eq!(
        post(
            url.clone(),
            &[("x-gitlab-event", "Push Hook")],
            body.clone()
        )
        .await,
        401
    );
    assert_eq!(
        post(
            url.clone(),
            &[("x-gitlab-event", "Push Hook"), ("x-gitlab-token", "wrong")],
            body.clone()
        )
        .await,
        401
    );
    assert!(harness.triggers.syncs.lock().unwrap().is_empty());
    assert_eq!(
        post(
            url,
            &[
                ("x-gitlab-event", "Push Hook"),
                ("x-gitlab-token", HOOK_SECRET)
            ],
            body
        )
        .await,
        202
    );
    assert_eq!(
        *harness.triggers.syncs.lock().unwrap(),
        [Some("other".to_string())]
    );
}

/// The real daemon: a GitHub push fetches at once and runs the probe whose
/// path the commit touched; a manual trigger runs a probe; history, status
/// page and metrics show it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_webhook_fetches_and_runs_the_touched_probe() {
    if !common::have_tool("git") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let remote = tmp.path().join("remote");
    common::init_repo(
        &remote,
        &[
            ("alpha/check.sh", "exit 0\n"),
            ("beta/check.sh", "exit 0\n"),
        ],
    );
    std::fs::write(tmp.path().join("api-token"), format!("{API_TOKEN}\n")).unwrap();
    std::fs::write(tmp.path().join("hook-secret"), format!("{HOOK_SECRET}\n")).unwrap();
    let remote_url = format!("file://{}", remote.display());
    let config_path = tmp.path().join("driftwatch.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
state_dir = "state"

[server]
listen = "127.0.0.1:0"
api_token_file = "api-token"
webhook_secret_file = "hook-secret"

[history]
retention = "30d"

[[repo]]
name = "infra"
url = "{remote_url}"
poll_interval = "1h"

[[probe]]
name = "alpha"
layer = "command"
path = "alpha"
schedule = "none"
command = ["sh", "check.sh"]

[[probe]]
name = "beta"
layer = "command"
path = "beta"
schedule = "none"
command = ["sh", "check.sh"]
"#
        ),
    )
    .unwrap();
    let config = driftwatch::app::load_config(&config_path).expect("config loads");
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

    let runs = |probe: &'static str| {
        let client = client.clone();
        let base = base.clone();
        async move {
            let response = client
                .get(format!("{base}/api/v1/probes/{probe}/runs"))
                .send()
                .await
                .unwrap();
            if response.status() != 200 {
                return Vec::new();
            }
            let page: serde_json::Value = response.json().await.unwrap();
            page["runs"].as_array().cloned().unwrap_or_default()
        }
    };
    let wait_for_runs = |probe: &'static str, count: usize| async move {
        for _ in 0..600 {
            let found = runs(probe).await;
            if found.len() >= count {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{probe} did not reach {count} runs");
    };

    // Start-up runs both probes once.
    let alpha = wait_for_runs("alpha", 1).await;
    assert_eq!(alpha[0]["trigger"], "startup");
    assert_eq!(alpha[0]["verdict"], "in_sync");
    wait_for_runs("beta", 1).await;

    // A push touching alpha/ makes alpha drift. The remote is only polled
    // hourly, so only the webhook can bring the commit in.
    let commit = common::commit_files(&remote, &[("alpha/check.sh", "exit 2\n")], "drift alpha");
    let body = github_push(&remote_url);
    let forged = web::hooks::github_signature("not-the-secret", &body);
    let hook = format!("{base}/api/v1/hooks/github");
    assert_eq!(
        post(
            hook.clone(),
            &[("x-github-event", "push"), ("x-hub-signature-256", &forged)],
            body.clone()
        )
        .await,
        401
    );
    let signature = web::hooks::github_signature(HOOK_SECRET, &body);
    assert_eq!(
        post(
            hook,
            &[
                ("x-github-event", "push"),
                ("x-hub-signature-256", &signature)
            ],
            body
        )
        .await,
        202
    );
    let alpha = wait_for_runs("alpha", 2).await;
    assert_eq!(alpha[0]["trigger"], "change");
    assert_eq!(alpha[0]["verdict"], "drifted");
    assert_eq!(alpha[0]["commit"], commit.as_str());
    // beta's path did not change: the sync did not run it.
    assert_eq!(runs("beta").await.len(), 1);

    // Manual run: needs the token.
    let run_beta = format!("{base}/api/v1/probes/beta/run");
    assert_eq!(post(run_beta.clone(), &[], vec![]).await, 401);
    assert_eq!(
        post(
            run_beta.clone(),
            &[("authorization", "Bearer wrong")],
            vec![]
        )
        .await,
        401
    );
    assert_eq!(runs("beta").await.len(), 1);
    let bearer = format!("Bearer {API_TOKEN}");
    assert_eq!(
        post(run_beta, &[("authorization", &bearer)], vec![]).await,
        202
    );
    let beta = wait_for_runs("beta", 2).await;
    let triggers: Vec<_> = beta
        .iter()
        .map(|r| r["trigger"].as_str().unwrap())
        .collect();
    assert_eq!(triggers, ["manual", "startup"], "the push did not run beta");

    // The drift is an open episode and an event; the page shows it.
    let episodes: serde_json::Value = client
        .get(format!("{base}/api/v1/episodes?open=true"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(episodes["episodes"][0]["probe"], "alpha");
    assert_eq!(episodes["episodes"][0]["started_commit"], commit.as_str());
    let page = client
        .get(format!("{base}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"data-probe="alpha" data-status="drifted""#));
    assert!(page.contains(r#"data-probe="beta" data-status="in_sync""#));
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"driftwatch_triggers_total{kind="github",result="accepted"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"driftwatch_triggers_total{kind="github",result="unauthorized"} 1"#));
    assert!(metrics.contains(r#"driftwatch_triggers_total{kind="run",result="unauthorized"} 2"#));
    assert!(metrics.contains(
        r#"driftwatch_http_requests_total{code="202",handler="/api/v1/hooks/github"} 1"#
    ));

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(60), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The history survives the restart.
    let history = History::open(&tmp.path().join("state"), HistoryConfig::default());
    assert_eq!(history.runs("alpha", 10, None).unwrap().items.len(), 2);
}

#[test]
fn history_and_webhook_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "hook\n").unwrap();
    let base = "[[repo]]\nname = \"r\"\nurl = \"https://h/x.git\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n";
    let path = dir.path().join("dw.toml");
    std::fs::write(&path, base).unwrap();
    let config = driftwatch::app::load_config(&path).unwrap();
    assert_eq!(config.history, HistoryConfig::default());
    assert_eq!(config.server.webhook_secret, None);

    let text = format!("[server]\nwebhook_secret_file = \"secret\"\n[history]\nretention = \"7d\"\nepisode_retention = \"365d\"\n{base}");
    std::fs::write(&path, text).unwrap();
    let config = driftwatch::app::load_config(&path).unwrap();
    assert_eq!(config.history.retention, Duration::from_secs(7 * 86_400));
    assert_eq!(
        config.history.episode_retention,
        Some(Duration::from_secs(365 * 86_400))
    );
    assert_eq!(config.server.webhook_secret.as_deref(), Some("hook"));
    assert!(
        !format!("{config:?}").contains("hook\""),
        "the secret stays out of Debug"
    );

    let text =
        format!("[history]\nretention = \"0s\"\nepisode_retention = \"soon\"\nkeep = 1\n{base}");
    std::fs::write(&path, text).unwrap();
    let errors = driftwatch::app::load_config(&path).unwrap_err().problems;
    let joined = errors.join("\n");
    assert!(joined.contains("dw.toml:2:"), "{joined}");
    assert!(
        joined.contains("history.retention: must be greater than zero"),
        "{joined}"
    );
    assert!(joined.contains("history.episode_retention"), "{joined}");
    assert!(joined.contains("keep"), "{joined}");
}

async fn get_text(url: String) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

async fn get_json(url: String) -> (u16, serde_json::Value) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_list_is_a_summary_that_follows_every_change() {
    let harness = Harness::start(Secrets::default()).await;
    harness.populate();
    let base = &harness.base;

    let (code, list) = get_json(format!("{base}/api/v1/probes")).await;
    assert_eq!(code, 200);
    assert_eq!(
        list["counts"],
        serde_json::json!({"in_sync": 1, "drifted": 2, "error": 1, "pending": 1})
    );
    let probes = list["probes"].as_array().unwrap();
    let ids: Vec<&str> = probes.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "web-deploy",
            "network:envs/dev",
            "network:envs/prod",
            "hosts",
            "not-yet"
        ]
    );
    let web = &probes[0];
    assert_eq!(web["status"], "drifted");
    assert_eq!(web["changes"], 2);
    assert_eq!(web["drifted_resources"], 2);
    assert!(web["drifted_since"].is_string() && web["last_run"].is_string());
    assert_eq!(web["schedule"], "*/5 * * * *");
    assert_eq!(web["timezone"], "Europe/Berlin");
    assert!(probes[1]["timezone"].is_null(), "no schedule, no zone");
    assert!(web.get("next_run").is_some(), "{web}");
    assert_eq!(probes[3]["error_reason"], "unreachable");
    assert_eq!(probes[4]["status"], "pending");
    // No diffs, subjects or error texts in the list: those are per instance.
    let text = list.to_string();
    assert!(
        !text.contains("last_report") && !text.contains("Deployment/prod/web"),
        "{text}"
    );
    assert!(!text.contains("host db1"), "{text}");

    let (code, detail) = get_json(format!("{base}/api/v1/probes/network%3Aenvs%2Fprod")).await;
    assert_eq!(code, 200);
    assert_eq!(detail["status"], "drifted");
    assert_eq!(
        detail["last_report"]["changes"][0]["subject"],
        "terraform_data.dns"
    );
    assert_eq!(detail["last_report"]["total_changes"], 1);
    assert_eq!(get_json(format!("{base}/api/v1/probes/nope")).await.0, 404);
    assert_eq!(
        get_json(format!("{base}/api/v1/probes/network%3Anope"))
            .await
            .0,
        404
    );

    // The cached list changes with the state at once, not a second later.
    for (result, status) in [
        (Ok(Outcome::in_sync()), "in_sync"),
        (Err(ProbeError::new(ErrorReason::Timeout, "slow")), "error"),
    ] {
        harness
            .state
            .record(&report("web-deploy", "", "kubernetes", Utc::now(), result));
        let (_, list) = get_json(format!("{base}/api/v1/probes")).await;
        assert_eq!(list["probes"][0]["status"], status);
        let page = get_text(format!("{base}/")).await;
        assert!(
            page.contains(&format!(
                r#"data-probe="web-deploy" data-status="{status}""#
            )),
            "{page}"
        );
    }

    // A report cut at the caps says so in the list and in full.
    let many: Vec<ResourceChange> = (0..5000)
        .map(|i| ResourceChange::new(format!("ConfigMap/prod/cm-{i}"), "configured"))
        .collect();
    harness.state.record(&report(
        "hosts",
        "",
        "ansible",
        Utc::now(),
        Ok(Outcome::drifted(many)),
    ));
    let (_, list) = get_json(format!("{base}/api/v1/probes")).await;
    let hosts = &list["probes"][3];
    assert_eq!(hosts["id"], "hosts");
    assert_eq!(hosts["truncated"], true);
    assert_eq!(hosts["changes"], 5000);
    assert_eq!(hosts["drifted_resources"], 5000);
    let (_, detail) = get_json(format!("{base}/api/v1/probes/hosts")).await;
    let report = &detail["last_report"];
    assert_eq!(report["truncated"], true);
    assert_eq!(report["total_changes"], 5000);
    assert_eq!(
        report["changes"].as_array().unwrap().len(),
        driftwatch::model::outcome::MAX_CHANGES_PER_REPORT
    );
}

async fn status_with(url: String, authorization: Option<&str>) -> (u16, Vec<String>) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await.unwrap();
    let challenges = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    (response.status().as_u16(), challenges)
}

const READ_TOKEN: &str = "test-read-token-77d0";
const METRICS_TOKEN: &str = "test-metrics-token-1b3c";

fn basic(user_password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

const READ_PATHS: [&str; 9] = [
    "/",
    "/api/v1/acks",
    "/events",
    "/probes/web-deploy",
    "/api/v1/probes",
    "/api/v1/probes/web-deploy",
    "/api/v1/probes/web-deploy/runs",
    "/api/v1/events",
    "/api/v1/episodes",
];
const OPERATIONS_PATHS: [&str; 3] = ["/metrics", "/healthz", "/readyz"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_token_and_users_protect_the_page_and_api_only() {
    let harness = Harness::start(Secrets {
        read_token: Some(READ_TOKEN.into()),
        read_users: vec![("alice".into(), "wonder:land".into())],
        api_token: Some(API_TOKEN.into()),
        ..Secrets::default()
    })
    .await;
    harness.populate();
    let base = &harness.base;
    let bearer = format!("Bearer {READ_TOKEN}");
    let alice = basic("alice:wonder:land");
    for path in READ_PATHS {
        let url = || format!("{base}{path}");
        let (code, challenges) = status_with(url(), None).await;
        assert_eq!(code, 401, "{path} without credentials");
        assert!(
            challenges.iter().any(|c| c.starts_with("Basic realm=")),
            "{path}: {challenges:?}"
        );
        assert!(
            challenges.iter().any(|c| c == "Bearer"),
            "{path}: {challenges:?}"
        );
        for wrong in [
            "Bearer wrong".to_string(),
            format!("Bearer {API_TOKEN}"),
            basic("alice:wonder"),
            basic("bob:wonder:land"),
            format!("Basic {READ_TOKEN}"),
        ] {
            assert_eq!(
                status_with(url(), Some(&wrong)).await.0,
                401,
                "{path} with {wrong}"
            );
        }
        assert_eq!(
            status_with(url(), Some(&bearer)).await.0,
            200,
            "{path} with the token"
        );
        assert_eq!(
            status_with(url(), Some(&alice)).await.0,
            200,
            "{path} as alice"
        );
    }
    // Without metrics_token the operations endpoints stay open.
    for path in OPERATIONS_PATHS {
        assert_eq!(
            status_with(format!("{base}{path}"), None).await.0,
            200,
            "{path}"
        );
    }
    // Triggers keep their own token; the read token does not run probes.
    let run = format!("{base}/api/v1/probes/hosts/run");
    assert_eq!(
        post(run.clone(), &[("authorization", &bearer)], vec![]).await,
        401
    );
    let trigger = format!("Bearer {API_TOKEN}");
    assert_eq!(post(run, &[("authorization", &trigger)], vec![]).await, 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_token_protects_metrics_and_health_only() {
    let harness = Harness::start(Secrets {
        metrics_token: Some(METRICS_TOKEN.into()),
        ..Secrets::default()
    })
    .await;
    let base = &harness.base;
    let bearer = format!("Bearer {METRICS_TOKEN}");
    for path in OPERATIONS_PATHS {
        let url = || format!("{base}{path}");
        let (code, challenges) = status_with(url(), None).await;
        assert_eq!(
            (code, challenges),
            (401, vec!["Bearer".to_string()]),
            "{path}"
        );
        assert_eq!(
            status_with(url(), Some("Bearer nope")).await.0,
            401,
            "{path}"
        );
        assert_eq!(status_with(url(), Some(&bearer)).await.0, 200, "{path}");
    }
    // Without read_token or read_users the page and API stay open.
    for path in READ_PATHS {
        assert_eq!(
            status_with(format!("{base}{path}"), None).await.0,
            200,
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_401_names_the_credential_and_where_it_is_configured() {
    let harness = Harness::start(Secrets {
        api_token: Some(API_TOKEN.into()),
        webhook_secret: Some(HOOK_SECRET.into()),
        read_token: Some(READ_TOKEN.into()),
        read_users: vec![("alice".into(), "wonder:land".into())],
        metrics_token: Some(METRICS_TOKEN.into()),
    })
    .await;
    let base = &harness.base;
    let read = format!("Bearer {READ_TOKEN}");
    // (method, path, headers, what the message must name)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a [&'a str]);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/v1/probes/hosts/run",
            vec![],
            &["api_token_file", "Bearer"],
        ),
        (
            "POST",
            "/api/v1/probes/hosts/acks",
            vec![],
            &["api_token_file", "--token-file", "DRIFTWATCH_TOKEN_FILE"],
        ),
        (
            "DELETE",
            "/api/v1/acks/a-00000000",
            vec![],
            &["api_token_file"],
        ),
        ("POST", "/api/v1/sync", vec![], &["api_token_file"]),
        (
            "GET",
            "/api/v1/acks",
            vec![],
            &["read_token_file", "read_users_file"],
        ),
        (
            "GET",
            "/api/v1/probes",
            vec![],
            &["read_token_file", "read_users_file"],
        ),
        ("GET", "/metrics", vec![], &["metrics_token_file"]),
        (
            "POST",
            "/api/v1/hooks/github",
            vec![("x-github-event", "push")],
            &["X-Hub-Signature-256", "webhook_secret_file"],
        ),
        (
            "POST",
            "/api/v1/hooks/gitlab",
            vec![("x-gitlab-event", "Push Hook")],
            &["X-Gitlab-Token", "webhook_secret_file"],
        ),
    ];
    for (method, path, headers, named) in cases {
        let mut request = reqwest::Client::new()
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .body("{}");
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        // The read token does not run anything: a write route still says which token.
        if method != "GET" && !path.starts_with("/api/v1/hooks") {
            request = request.header("authorization", &read);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{method} {path}");
        let body: serde_json::Value = response.json().await.unwrap();
        let message = body["error"].as_str().unwrap_or_default();
        assert!(message.starts_with("unauthorized: "), "{path}: {message}");
        for part in named {
            assert!(message.contains(part), "{method} {path}: {part}: {message}");
        }
        for secret in [API_TOKEN, HOOK_SECRET, READ_TOKEN, METRICS_TOKEN] {
            assert!(!message.contains(secret), "{path}: {message}");
        }
    }
}
