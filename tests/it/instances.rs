//! Instances come and go with their probe's root listing: a Terraform root
//! deleted in a new commit loses its series, state and open drift episode;
//! a manual trigger names only instances that exist, so one before the first
//! sync is refused and makes up no `root=""` instance. Real daemon, real git,
//! real Terraform.

use std::path::{Path, PathBuf};

use crate::common::daemon::Daemon;
use crate::common::{free_port, git, init_repo};

const TOKEN: &str = "instances-test-token";

/// A root that always plans a create (no state yet): drifted.
fn stack(state: &Path) -> String {
    format!(
        "terraform {{\n  backend \"local\" {{\n    path = {:?}\n  }}\n}}\nresource \"terraform_data\" \"x\" {{\n  input = \"v\"\n}}\n",
        state.to_str().unwrap()
    )
}

fn config(root: &Path, repo_url: &str, port: u16) -> PathBuf {
    let cli = root.join("empty.tfrc");
    std::fs::write(&cli, "").unwrap();
    std::fs::write(root.join("token"), TOKEN).unwrap();
    let path = root.join("driftwatch.toml");
    std::fs::write(
        &path,
        format!(
            r#"state_dir = "{state}"

[server]
listen = "127.0.0.1:{port}"
api_token_file = "{token}"

[defaults]
timeout = "120s"
kill_grace = "2s"

[[repo]]
name = "infra"
url = "{repo_url}"
branch = "main"
poll_interval = "1s"

[[probe]]
name = "tf"
layer = "terraform"
repo = "infra"
schedule = ""
roots = ["envs/*"]
cli_config_file = "{cli}"

[[probe]]
name = "one"
layer = "command"
repo = "infra"
schedule = ""
command = ["true"]
"#,
            state = root.join("state").display(),
            token = root.join("token").display(),
            cli = cli.display(),
        ),
    )
    .unwrap();
    path
}

fn lines_with(body: &str, needle: &str) -> Vec<String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_deleted_terraform_root_loses_series_state_and_episode_also_after_restart() {
    if !crate::terraform::have_terraform() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let work = root.join("work");
    let tfstate = |name: &str| root.join(format!("tfstate/{name}.tfstate"));
    init_repo(
        &work,
        &[
            ("envs/a/main.tf", &stack(&tfstate("a"))),
            ("envs/b/main.tf", &stack(&tfstate("b"))),
            ("envs/c/main.tf", &stack(&tfstate("c"))),
        ],
    );
    let config = config(root, &format!("file://{}", work.display()), free_port());
    let mut daemon = Daemon::start(&config, &root.join("daemon.log"));
    daemon.wait_for("/metrics", "three drifted roots", |_, body| {
        ["a", "b", "c"].iter().all(|r| {
            body.contains(&format!(
                "terradiff_plan_exit_code{{probe=\"tf\",root=\"envs/{r}\"}} 2"
            ))
        })
    });
    let (_, before) = daemon.get("/metrics").unwrap();
    assert!(
        lines_with(&before, "root=\"envs/c\"").len() > 20,
        "{before}"
    );
    assert!(before.contains("driftwatch_probe_instances{layer=\"terraform\",probe=\"tf\"} 3"));

    git(&work, &["rm", "-q", "-r", "envs/c"]);
    git(&work, &["commit", "-q", "-m", "retire envs/c"]);
    let after = daemon.wait_for("/metrics", "envs/c gone", |_, body| {
        lines_with(body, "envs/c").is_empty()
            && body.contains("driftwatch_probe_instances{layer=\"terraform\",probe=\"tf\"} 2")
    });
    // The other roots are untouched.
    assert!(after.contains("terradiff_plan_exit_code{probe=\"tf\",root=\"envs/a\"} 2"));
    assert!(after
        .contains("driftwatch_probe_drifted{layer=\"terraform\",probe=\"tf\",root=\"envs/b\"} 1"));
    let api = daemon.wait_for("/api/v1/probes", "API without envs/c", |_, body| {
        !body.contains("envs/c")
    });
    assert!(api.contains("envs/a") && api.contains("envs/b"), "{api}");
    let episodes = daemon.wait_for(
        "/api/v1/episodes?probe=tf:envs/c",
        "episode of envs/c ended as removed",
        |_, body| body.contains("\"ended_reason\":\"removed\""),
    );
    assert!(
        !episodes.contains("\"ended_reason\":\"in_sync\""),
        "{episodes}"
    );
    let open = daemon.get("/api/v1/episodes?open=true").unwrap().1;
    assert!(!open.contains("envs/c"), "open episodes: {open}");

    assert!(daemon.terminate().success());
    let state = std::fs::read_to_string(root.join("state/state.json")).unwrap();
    assert!(
        !state.contains("envs/c"),
        "state file keeps envs/c: {state}"
    );

    // After a restart, from its first scrape on: no envs/c anywhere.
    let daemon = Daemon::start(&config, &root.join("daemon2.log"));
    let first = daemon.wait_for("/metrics", "first scrape", |code, _| code == 200);
    assert!(lines_with(&first, "envs/c").is_empty(), "{first}");
    let again = daemon.wait_for("/metrics", "runs after restart", |_, body| {
        body.contains("driftwatch_probe_runs_total{layer=\"terraform\",probe=\"tf\",result=\"drifted\",root=\"envs/a\"} 1")
    });
    assert!(lines_with(&again, "envs/c").is_empty(), "{again}");
    let api = daemon.get("/api/v1/probes").unwrap().1;
    assert!(!api.contains("envs/c"), "{api}");
}

/// POSTs a manual run of `id` (percent-encoded) and returns code and body.
fn run(daemon: &Daemon, id: &str) -> (u16, String) {
    let id = id.replace(':', "%3A").replace('/', "%2F");
    daemon
        .post(&format!("/api/v1/probes/{id}/run"), TOKEN)
        .unwrap()
}

#[test]
fn a_manual_trigger_names_only_instances_that_exist() {
    if !crate::terraform::have_terraform() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // The remote does not exist yet: every sync fails until it does.
    let work = root.join("later");
    let config = config(root, &format!("file://{}", work.display()), free_port());
    let mut daemon = Daemon::start(&config, &root.join("daemon.log"));
    daemon.wait_for("/metrics", "a failed sync", |_, body| {
        body.contains("driftwatch_repo_sync_errors_total{repo=\"infra\"} ")
            && !body.contains("driftwatch_repo_sync_errors_total{repo=\"infra\"} 0")
    });

    // Before the first sync: (id, code). The multi-root probe by name (the
    // issue's example) and the single-root probe are refused as not synced;
    // a root nobody listed and an unknown probe are not found.
    let before = [("tf", 409), ("one", 409), ("tf:envs/a", 404), ("nope", 404)];
    for (id, code) in before {
        let (got, body) = run(&daemon, id);
        assert_eq!(got, code, "{id}: {body}");
        if code == 409 {
            let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
            let error = doc["error"].as_str().unwrap();
            for needle in [
                "repository \"infra\" has not synced yet",
                "url and credentials",
                "POST /api/v1/sync?repo=infra",
            ] {
                assert!(error.contains(needle), "{id}: {error}");
            }
        }
    }
    let metrics = daemon.wait_for("/metrics", "the refusals counted", |_, body| {
        body.contains("driftwatch_triggers_total{kind=\"run\",result=\"not_synced\"} 2")
            && body.contains("driftwatch_triggers_total{kind=\"run\",result=\"not_found\"} 2")
    });
    // Nothing was recorded: no instance, no series, no failure, no history.
    let phantom = lines_with(&metrics, "root=\"\"");
    assert!(
        phantom.iter().all(|l| !l.contains("probe=\"tf\"")),
        "phantom instance: {phantom:#?}"
    );
    assert!(!metrics.contains("driftwatch_probe_roots_error{layer=\"terraform\",probe=\"tf\"} 1"));
    let errors: Vec<String> = lines_with(&metrics, "result=\"error\"")
        .into_iter()
        .chain(lines_with(&metrics, "driftwatch_probe_errors_total"))
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let api = daemon.get("/api/v1/probes").unwrap().1;
    let doc: serde_json::Value = serde_json::from_str(&api).unwrap();
    let statuses: Vec<(String, String, String)> = doc["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let field = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (field("id"), field("scope"), field("status"))
        })
        .collect();
    let expected = [("tf", "probe", "pending"), ("one", "instance", "pending")]
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()));
    assert_eq!(statuses, expected, "{api}");
    for id in ["tf", "one"] {
        let runs = daemon.get(&format!("/api/v1/probes/{id}/runs")).unwrap().1;
        assert!(runs.contains("\"runs\":[]"), "{id}: {runs}");
    }

    // The remote appears: the probe's real roots are listed and run.
    init_repo(
        &work,
        &[
            ("envs/a/main.tf", &stack(&root.join("tfstate/a.tfstate"))),
            ("envs/b/main.tf", &stack(&root.join("tfstate/b.tfstate"))),
        ],
    );
    let metrics = daemon.wait_for("/metrics", "the real roots", |_, body| {
        ["a", "b"].iter().all(|r| {
            body.contains(&format!(
                "driftwatch_probe_runs_total{{layer=\"terraform\",probe=\"tf\",result=\"drifted\",root=\"envs/{r}\"}} 1"
            ))
        })
    });
    assert!(
        lines_with(&metrics, "root=\"\"")
            .iter()
            .all(|l| !l.contains("probe=\"tf\"")),
        "{metrics}"
    );
    // After it: a listed root runs alone; roots nobody listed stay unknown.
    let after = [
        ("tf:envs/a", 202),
        ("tf:envs/c", 404),
        ("one:x", 404),
        ("one", 202),
    ];
    for (id, code) in after {
        let (got, body) = run(&daemon, id);
        assert_eq!(got, code, "{id}: {body}");
    }
    daemon.wait_for("/metrics", "the manual run of envs/a", |_, body| {
        body.contains("driftwatch_probe_runs_total{layer=\"terraform\",probe=\"tf\",result=\"drifted\",root=\"envs/a\"} 2")
    });
    let (code, body) = run(&daemon, "tf");
    assert_eq!(code, 202, "{body}");
    let metrics = daemon.wait_for("/metrics", "the manual run of every root", |_, body| {
        body.contains("driftwatch_probe_runs_total{layer=\"terraform\",probe=\"tf\",result=\"drifted\",root=\"envs/a\"} 3")
            && body.contains("driftwatch_probe_runs_total{layer=\"terraform\",probe=\"tf\",result=\"drifted\",root=\"envs/b\"} 2")
    });
    // The run of envs/a alone did not run envs/b: it has run twice, not three times.
    assert!(!metrics.contains("root=\"envs/b\"} 3"), "{metrics}");
    assert!(daemon.terminate().success());
    let state = std::fs::read_to_string(root.join("state/state.json")).unwrap();
    assert!(!state.contains("\"probe\":\"tf\","), "{state}");

    let daemon = Daemon::start(&config, &root.join("daemon2.log"));
    let first = daemon.wait_for("/metrics", "first scrape", |code, _| code == 200);
    assert!(
        lines_with(&first, "root=\"\"")
            .iter()
            .all(|l| !l.contains("probe=\"tf\"")),
        "{first}"
    );
    let api = daemon.get("/api/v1/probes").unwrap().1;
    assert!(api.contains("\"id\":\"tf:envs/a\""), "{api}");
}
