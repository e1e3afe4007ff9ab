//! Every error verdict carries a reason, a message whose first line says
//! something, and a one-line next step, on `/api/v1/probes/{id}` and on the
//! probe's page: each `ErrorReason` (also with a probe that gave no message)
//! over the real routes, and the errors real command probes produce in a
//! real daemon.

use std::sync::Arc;

use driftwatch::http::{self as web, Catalog, CatalogProbe, Context, TriggerRefusal, TriggerSink};
use driftwatch::metrics::Metrics;
use driftwatch::model::outcome::RunReport;
use driftwatch::model::outcome::{ErrorReason, ProbeError};
use driftwatch::state::State;

use crate::common::daemon::Daemon;
use crate::common::{free_port, init_repo};

struct NoTriggers;

impl TriggerSink for NoTriggers {
    fn run_probe(&self, _: &str) -> Result<(), TriggerRefusal> {
        Err(TriggerRefusal::Unavailable)
    }

    fn sync(&self, _: Option<&str>) -> Result<(), TriggerRefusal> {
        Err(TriggerRefusal::Unavailable)
    }

    fn is_ready(&self) -> bool {
        true
    }
}

/// Text as the page escapes it.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The error of the instance's last report, as the API shows it, and its page.
fn error_on_api_and_page(get: impl Fn(&str) -> String, id: &str) -> (serde_json::Value, String) {
    let doc: serde_json::Value =
        serde_json::from_str(&get(&format!("/api/v1/probes/{id}"))).unwrap();
    assert_eq!(doc["status"], "error", "{id}: {doc}");
    (
        doc["last_report"]["error"].clone(),
        get(&format!("/probes/{id}")),
    )
}

/// Reason, message and next step are there and say something, on both.
fn assert_explained(id: &str, error: &serde_json::Value, page: &str) {
    let field = |key: &str| error[key].as_str().unwrap_or_default().to_string();
    let (reason, message, next) = (field("reason"), field("message"), field("next_step"));
    let first = message.lines().next().unwrap_or_default();
    assert!(!reason.is_empty(), "{id}: {error}");
    assert!(!first.trim().is_empty(), "{id}: message {message:?}");
    assert!(
        !next.trim().is_empty() && !next.contains('\n'),
        "{id}: next step {next:?}"
    );
    for shown in [format!("Error ({reason})"), escaped(first), escaped(&next)] {
        assert!(page.contains(&shown), "{id}: page lacks {shown:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_reason_is_explained_on_the_api_and_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let state = Arc::new(State::load(dir.path()));
    let metrics = Arc::new(Metrics::new(state.clone(), &Default::default(), 100));
    // Each reason, with a message and without one (blank, or blank lines first).
    let messages = ["the tool said why\nand more", "", "\n\n  \n"];
    let mut ids = Vec::new();
    let mut probes = Vec::new();
    for reason in ErrorReason::ALL {
        for (index, message) in messages.iter().enumerate() {
            let name = format!("{}-{index}", reason.as_str().replace('_', "-"));
            probes.push(CatalogProbe {
                name: name.clone(),
                layer: "command".into(),
                repo: "infra".into(),
                ..Default::default()
            });
            let mut report = RunReport {
                probe: name.clone(),
                name: name.clone(),
                layer: "command".into(),
                run_id: 1,
                trigger: "manual".into(),
                repo: "infra".into(),
                commit: "0".repeat(40),
                started_at: chrono::Utc::now(),
                ..RunReport::default()
            };
            report.apply_result(Err(ProbeError::new(reason, *message)));
            state.record(&report);
            ids.push((name, reason));
        }
    }
    let catalog = Catalog {
        probes,
        repos: Vec::new(),
    };
    let ctx = Context::new(state.clone(), metrics, catalog, Arc::new(NoTriggers)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, web::router(ctx)).await.unwrap() });

    let get = |path: &str| {
        let url = format!("{base}{path}");
        std::thread::spawn(move || {
            crate::common::daemon::reqwest::blocking_get(&url)
                .expect("the server answers")
                .1
        })
        .join()
        .unwrap()
    };
    for (id, reason) in &ids {
        let (error, page) = error_on_api_and_page(get, id);
        assert_eq!(error["reason"], reason.as_str(), "{id}");
        assert_explained(id, &error, &page);
    }
}

/// Command probes that fail each their own way: (probe, layer fields,
/// expected reason).
const FAILING: &[(&str, &str, &str)] = &[
    (
        "spawn",
        r#"command = ["/nonexistent/driftwatch-errors-test"]"#,
        "spawn",
    ),
    ("exit", r#"command = ["sh", "-c", "exit 3"]"#, "exit_code"),
    (
        "silent-exit",
        r#"command = ["sh", "-c", "exec 2>&-; exit 5"]"#,
        "exit_code",
    ),
    (
        "parse",
        "command = [\"sh\", \"-c\", \"echo not-json\"]\noutput = \"json\"",
        "parse",
    ),
    (
        "timeout",
        "command = [\"sleep\", \"61.2323\"]\ntimeout = \"1s\"",
        "timeout",
    ),
    (
        "checkout",
        "command = [\"true\"]\npath = \"gone\"",
        "checkout",
    ),
];

#[test]
fn errors_real_probes_produce_are_explained_on_the_api_and_the_page() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let work = root.join("work");
    init_repo(&work, &[("README", "infra\n")]);
    let port = free_port();
    let mut text = format!(
        "state_dir = \"{}\"\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n\n[defaults]\nkill_grace = \"1s\"\n\n[[repo]]\nname = \"infra\"\nurl = \"file://{}\"\npoll_interval = \"1s\"\n",
        root.join("state").display(),
        work.display()
    );
    for (name, fields, _) in FAILING {
        text.push_str(&format!(
            "\n[[probe]]\nname = \"{name}\"\nlayer = \"command\"\nschedule = \"\"\n{fields}\n"
        ));
    }
    let config = root.join("driftwatch.toml");
    std::fs::write(&config, text).unwrap();
    let daemon = Daemon::start(&config, &root.join("daemon.log"));
    daemon.wait_for("/api/v1/probes", "every probe failed", |_, body| {
        let doc: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        doc["counts"]["error"] == FAILING.len()
    });
    let get = |path: &str| daemon.get(path).expect("the daemon answers").1;
    for (id, _, reason) in FAILING {
        let (error, page) = error_on_api_and_page(get, id);
        assert_eq!(error["reason"], *reason, "{id}: {error}");
        assert_explained(id, &error, &page);
    }
}
