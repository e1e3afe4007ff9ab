//! Instances come and go with their probe's root listing: a Terraform root
//! deleted in a new commit loses its series, state and open drift episode;
//! a multi-root probe that fails before any root is known gets no phantom
//! `root=""` instance. Real daemon, real git, real Terraform.

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

#[test]
fn a_manual_trigger_before_the_first_sync_creates_no_phantom_instance() {
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
    let (code, body) = daemon.post("/api/v1/probes/tf/run", TOKEN).unwrap();
    assert_eq!(code, 202, "{body}");
    let metrics = daemon.wait_for("/metrics", "the failure on the probe", |_, body| {
        body.contains("driftwatch_probe_roots_error{layer=\"terraform\",probe=\"tf\"} 1")
    });
    let phantom = lines_with(&metrics, "root=\"\"");
    assert!(phantom.is_empty(), "phantom instance: {phantom:#?}");
    assert!(!metrics.contains("driftwatch_probe_result{"), "{metrics}");
    let api = daemon.get("/api/v1/probes").unwrap().1;
    let doc: serde_json::Value = serde_json::from_str(&api).unwrap();
    let probes = doc["probes"].as_array().unwrap();
    assert_eq!(probes.len(), 1, "{api}");
    assert_eq!(probes[0]["scope"], "probe", "{api}");
    assert_eq!(probes[0]["status"], "error", "{api}");
    assert_eq!(probes[0]["error_reason"], "checkout", "{api}");
    let detail = daemon.get("/api/v1/probes/tf").unwrap().1;
    assert!(detail.contains("has not synced yet"), "{detail}");
    let (_, page) = daemon.get("/").unwrap();
    assert!(page.contains("has not synced yet"), "{page}");

    // The remote appears: the probe's real roots replace the failure.
    init_repo(
        &work,
        &[("envs/a/main.tf", &stack(&root.join("tfstate/a.tfstate")))],
    );
    let metrics = daemon.wait_for("/metrics", "the real root", |_, body| {
        body.contains("terradiff_plan_exit_code{probe=\"tf\",root=\"envs/a\"} 2")
    });
    assert!(lines_with(&metrics, "root=\"\"").is_empty(), "{metrics}");
    assert!(metrics.contains("driftwatch_probe_roots_error{layer=\"terraform\",probe=\"tf\"} 0"));
    assert!(daemon.terminate().success());
    let state = std::fs::read_to_string(root.join("state/state.json")).unwrap();
    assert!(!state.contains("\"probe\":\"tf\","), "{state}");

    let daemon = Daemon::start(&config, &root.join("daemon2.log"));
    let first = daemon.wait_for("/metrics", "first scrape", |code, _| code == 200);
    assert!(lines_with(&first, "root=\"\"").is_empty(), "{first}");
    let api = daemon.get("/api/v1/probes").unwrap().1;
    assert!(api.contains("\"id\":\"tf:envs/a\""), "{api}");
}
