//! The daemon end to end: the real binary, real git repos, real HTTP.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::daemon::Daemon;
use crate::common::{commit_files, driftwatch_bin, free_port, have_tool, init_repo};

/// A drift check script: drifted while `marker` exists, in sync otherwise.
fn marker_script(marker: &Path) -> String {
    format!(
        "#!/bin/sh\nif [ -e '{}' ]; then echo drift >&2; exit 2; fi\nexit 0\n",
        marker.display()
    )
}

struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    work: PathBuf,
    config: PathBuf,
    marker: PathBuf,
}

/// A repo with two probe dirs (`app/`, `other/`) served over file://, and a
/// config whose `app` probe drifts while the marker file exists.
fn setup(extra: &str) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let marker = root.join("drift-marker");
    let work = root.join("work");
    init_repo(
        &work,
        &[
            ("app/check.sh", &marker_script(&marker)),
            ("other/check.sh", "#!/bin/sh\nexit 0\n"),
        ],
    );
    let port = free_port();
    let config = root.join("driftwatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "{state}"

[server]
listen = "127.0.0.1:{port}"

[defaults]
kill_grace = "2s"
timeout = "60s"

[[repo]]
name = "infra"
url = "file://{work}"
branch = "main"
poll_interval = "1s"

[[probe]]
name = "app"
layer = "command"
repo = "infra"
path = "app"
schedule = ""
command = ["sh", "check.sh"]
labels = {{ team = "corp" }}

[[probe]]
name = "other"
layer = "command"
repo = "infra"
path = "other"
schedule = ""
command = ["sh", "check.sh"]
{extra}
"#,
            state = root.join("state").display(),
            work = work.display(),
        ),
    )
    .unwrap();
    Setup {
        _tmp: tmp,
        root,
        work,
        config,
        marker,
    }
}

fn runs(daemon: &Daemon, probe: &str, result: &str) -> u64 {
    daemon
        .metric(&format!(
            "driftwatch_probe_runs_total{{layer=\"command\",probe=\"{probe}\",result=\"{result}\",root=\"\"}}"
        ))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn daemon_serves_metrics_api_and_follows_commits() {
    let s = setup("");
    std::fs::write(&s.marker, "").unwrap();
    let mut daemon = Daemon::start(&s.config, &s.root.join("daemon.log"));

    daemon.wait_for("/readyz", "readiness", |code, _| code == 200);
    daemon.wait_for("/metrics", "first runs", |_, body| {
        body.contains("driftwatch_probe_runs_total{layer=\"command\",probe=\"app\",result=\"drifted\",root=\"\"} 1")
            && body.contains("driftwatch_probe_runs_total{layer=\"command\",probe=\"other\",result=\"in_sync\",root=\"\"} 1")
    });

    let (_, metrics) = daemon.get("/metrics").unwrap();
    for expected in [
        "driftwatch_probe_result{layer=\"command\",probe=\"app\",root=\"\",team=\"corp\"} 2",
        "driftwatch_probe_drifted{layer=\"command\",probe=\"app\",root=\"\",team=\"corp\"} 1",
        "driftwatch_probe_result{layer=\"command\",probe=\"other\",root=\"\",team=\"\"} 0",
        "driftwatch_probe_drifted{layer=\"command\",probe=\"other\",root=\"\",team=\"\"} 0",
        "driftwatch_probe_drifted_since_timestamp_seconds{layer=\"command\",probe=\"other\",root=\"\",team=\"\"} 0",
        "driftwatch_probe_errors_total{layer=\"command\",probe=\"app\",reason=\"exit_code\",root=\"\"} 0",
        "driftwatch_repo_sync_success{repo=\"infra\"} 1",
        "driftwatch_repo_sync_errors_total{repo=\"infra\"} 0",
        "driftwatch_build_info{version=\"",
    ] {
        assert!(metrics.contains(expected), "missing {expected:?} in\n{metrics}");
    }
    let head = crate::common::git(&s.work, &["rev-parse", "HEAD"]);
    assert!(metrics.contains(&format!(
        "driftwatch_repo_info{{commit_url=\"\",repo=\"infra\",revision=\"{head}\"}} 1"
    )));
    let since: f64 = daemon
        .metric("driftwatch_probe_drifted_since_timestamp_seconds{layer=\"command\",probe=\"app\",root=\"\",team=\"corp\"}")
        .unwrap()
        .parse()
        .unwrap();
    assert!(since > 1.7e9, "drift-since is a real timestamp: {since}");

    if have_tool("promtool") {
        let mut lint = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        lint.stdin
            .take()
            .unwrap()
            .write_all(metrics.as_bytes())
            .unwrap();
        let out = lint.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The API shows the probe with its last report.
    let (code, body) = daemon.get("/api/v1/probes/app").unwrap();
    assert_eq!(code, 200);
    let view: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(view["status"], "drifted");
    assert_eq!(view["labels"]["team"], "corp");
    assert_eq!(view["last_report"]["exit_code"], 2);
    assert_eq!(daemon.get("/api/v1/probes/nope").unwrap().0, 404);

    // A commit touching only other/ runs `other` again, and not `app`.
    commit_files(&s.work, &[("other/README", "docs\n")], "touch other");
    daemon.wait_for("/metrics", "run on change", |_, body| {
        body.contains("driftwatch_probe_runs_total{layer=\"command\",probe=\"other\",result=\"in_sync\",root=\"\"} 2")
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        runs(&daemon, "app", "drifted"),
        1,
        "app's path was not touched"
    );

    // Fix the drift and commit to app/: app runs again and is in sync.
    std::fs::remove_file(&s.marker).unwrap();
    commit_files(&s.work, &[("app/README", "docs\n")], "touch app");
    daemon.wait_for("/metrics", "in sync after fix", |_, body| {
        body.contains(
            "driftwatch_probe_result{layer=\"command\",probe=\"app\",root=\"\",team=\"corp\"} 0",
        )
    });
    assert_eq!(
        daemon.metric("driftwatch_probe_drifted_since_timestamp_seconds{layer=\"command\",probe=\"app\",root=\"\",team=\"corp\"}"),
        Some("0".to_string())
    );

    let status = daemon.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}

#[test]
fn vanished_remote_keeps_last_commit_and_reports_sync_failure() {
    let s = setup("");
    let mut daemon = Daemon::start(&s.config, &s.root.join("daemon.log"));
    daemon.wait_for("/readyz", "readiness", |code, _| code == 200);
    let head = crate::common::git(&s.work, &["rev-parse", "HEAD"]);
    std::fs::rename(&s.work, s.root.join("gone")).unwrap();
    daemon.wait_for("/metrics", "sync failure", |_, body| {
        body.contains("driftwatch_repo_sync_success{repo=\"infra\"} 0")
    });
    let (_, metrics) = daemon.get("/metrics").unwrap();
    assert!(metrics.contains(&format!(
        "driftwatch_repo_info{{commit_url=\"\",repo=\"infra\",revision=\"{head}\"}} 1"
    )));
    assert_eq!(
        daemon.get("/readyz").unwrap().0,
        200,
        "ready stays true once synced"
    );
    daemon.terminate();
}

#[test]
fn readiness_waits_for_first_sync() {
    let s = setup("");
    // Point the repo at a remote that does not exist yet.
    let missing = s.root.join("later");
    let text = std::fs::read_to_string(&s.config).unwrap().replace(
        &format!("file://{}", s.work.display()),
        &format!("file://{}", missing.display()),
    );
    std::fs::write(&s.config, text).unwrap();
    let mut daemon = Daemon::start(&s.config, &s.root.join("daemon.log"));
    daemon.wait_for("/healthz", "liveness", |code, _| code == 200);
    daemon.wait_for("/metrics", "a failed sync", |_, body| {
        body.contains("driftwatch_repo_sync_errors_total{repo=\"infra\"} 1")
    });
    assert_eq!(daemon.get("/readyz").unwrap().0, 503);
    std::fs::rename(&s.work, &missing).unwrap();
    daemon.wait_for(
        "/readyz",
        "readiness after the remote appears",
        |code, _| code == 200,
    );
    daemon.terminate();
}

#[test]
fn restart_keeps_drift_since() {
    let s = setup("");
    std::fs::write(&s.marker, "").unwrap();
    let key = "driftwatch_probe_drifted_since_timestamp_seconds{layer=\"command\",probe=\"app\",root=\"\",team=\"corp\"}";
    let first = {
        let mut daemon = Daemon::start(&s.config, &s.root.join("daemon1.log"));
        daemon.wait_for("/metrics", "drift", |_, body| {
            body.contains("probe=\"app\",root=\"\",team=\"corp\"} 2")
        });
        let since = daemon.metric(key).unwrap();
        daemon.terminate();
        since
    };
    let mut daemon = Daemon::start(&s.config, &s.root.join("daemon2.log"));
    // Before the new run completes the restored state is already exported…
    daemon.wait_for("/healthz", "liveness", |code, _| code == 200);
    assert_eq!(daemon.metric(key), Some(first.clone()));
    // …and after it, drift-since still names the start of the episode.
    daemon.wait_for("/metrics", "second run", |_, body| {
        body.contains("driftwatch_probe_runs_total{layer=\"command\",probe=\"app\",result=\"drifted\",root=\"\"} 1")
    });
    assert_eq!(daemon.metric(key), Some(first));
    daemon.terminate();
}

#[test]
fn sigterm_during_a_run_exits_within_grace_and_leaves_no_orphans() {
    // A unique sleep length lets pgrep find exactly our grandchildren.
    let marker = format!("sleep 8{}.25", std::process::id());
    let s = setup(&format!(
        r#"
[[probe]]
name = "slow"
layer = "command"
repo = "infra"
schedule = ""
command = ["sh", "-c", "{marker} & {marker} & wait"]
"#
    ));
    let mut daemon = Daemon::start(&s.config, &s.root.join("daemon.log"));
    let start = Instant::now();
    while !crate::common::process_running(&marker) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "slow probe never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopped = Instant::now();
    let status = daemon.terminate();
    let took = stopped.elapsed();
    assert!(status.success(), "{status:?}");
    // kill_grace is 2s for the drain plus 2s for SIGTERM→SIGKILL; allow slack for a loaded machine.
    assert!(took < Duration::from_secs(20), "shutdown took {took:?}");
    assert!(
        !crate::common::process_running(&marker),
        "a probe process outlived the daemon"
    );
}

/// The daemon with a probe whose children leave its process group (setsid,
/// a double fork, setpgrp), once they all run; `kill_grace` as given.
fn start_with_escapees(kill_grace: &str) -> (Setup, crate::common::Escapees, Daemon) {
    let s = setup("");
    let escapees = crate::common::Escapees::new(&s.root.join("pids"));
    let text = std::fs::read_to_string(&s.config).unwrap().replace(
        "kill_grace = \"2s\"",
        &format!("kill_grace = \"{kill_grace}\""),
    ) + &format!(
        r#"
[[probe]]
name = "escaping"
layer = "command"
repo = "infra"
schedule = ""
command = ["sh", "-c", {}]
"#,
        toml::Value::String(escapees.script("wait"))
    );
    std::fs::write(&s.config, text).unwrap();
    let daemon = Daemon::start(&s.config, &s.root.join("daemon.log"));
    let start = Instant::now();
    while !escapees.started() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the escaping probe never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (s, escapees, daemon)
}

/// A probe whose children left its process group (setsid, a double fork,
/// setpgrp): SIGTERM to the daemon still kills them all before it exits.
#[test]
fn sigterm_kills_children_that_left_the_process_group() {
    let (_s, escapees, mut daemon) = start_with_escapees("2s");
    let stopped = Instant::now();
    let status = daemon.terminate();
    let took = stopped.elapsed();
    let survivors = escapees.survivors();
    escapees.cleanup();
    assert!(status.success(), "{status:?}");
    assert!(survivors.is_empty(), "outlived the daemon: {survivors:?}");
    eprintln!(
        "FIGURE SIGTERM to exit with setsid/double-fork/setpgrp children: {:.2} s (kill_grace 2s)",
        took.as_secs_f64()
    );
}

/// A second SIGTERM while the first one drains kills at once, escaped
/// children included: the exit sweeps every marker of the daemon.
#[test]
fn a_second_sigterm_kills_children_that_left_the_process_group() {
    // A drain long enough that only the second signal can end it.
    let (_s, escapees, mut daemon) = start_with_escapees("5m");
    let pid = daemon.child.id() as i32;
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    daemon.wait_for_log("shutting down");
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "exited before the second signal"
    );
    let status = daemon.terminate();
    let survivors = escapees.survivors();
    escapees.cleanup();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(survivors.is_empty(), "outlived the daemon: {survivors:?}");
}

/// A Terraform whose `version` takes minutes: the daemon serves health
/// checks meanwhile, exits at once on SIGTERM, kills the check, and its
/// log file (not a terminal) holds no colour codes.
#[test]
fn a_slow_preflight_delays_neither_health_nor_shutdown() {
    let marker = format!("sleep 7{}.75", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("preflight-started");
    let script = dir.path().join("slow-terraform");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = version ]; then\n  : > {started}\n  exec {marker}\nfi\necho 'not a real terraform' >&2\nexit 1\n",
            started = started.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let s = setup(&format!(
        r#"
[[probe]]
name = "slow-tf"
layer = "terraform"
repo = "infra"
path = "app"
schedule = ""
binary = "{}"
"#,
        script.display()
    ));
    let log = s.root.join("daemon.log");
    let mut daemon = Daemon::start(&s.config, &log);
    let start = Instant::now();
    while !started.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "preflight never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The preflight is still running, and the daemon answers anyway.
    daemon.wait_for("/healthz", "health while the preflight runs", |code, _| {
        code == 200
    });
    assert!(
        crate::common::process_running(&marker),
        "the preflight ended early"
    );
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        !crate::common::process_running(&marker),
        "the preflight's terraform outlived the daemon"
    );
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("driftwatch started"), "{logs}");
    assert!(
        !logs.contains('\u{1b}'),
        "colour codes in a log file:\n{logs}"
    );
}

fn check(config: &Path, probes: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(driftwatch_bin());
    cmd.args(["check", "--config"]).arg(config);
    for probe in probes {
        cmd.args(["--probe", probe]);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_exit_codes_follow_the_verdicts() {
    let s = setup(
        r#"
[[probe]]
name = "broken"
layer = "command"
repo = "infra"
schedule = ""
command = ["sh", "-c", "echo 'Error: something broke' >&2; exit 7"]
"#,
    );
    let (code, out) = check(&s.config, &["other"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("IN SYNC"), "{out}");

    std::fs::write(&s.marker, "").unwrap();
    let (code, out) = check(&s.config, &["other", "app"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("DRIFTED"), "{out}");

    // Error wins over drift.
    let (code, out) = check(&s.config, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("something broke"), "stderr tail shown: {out}");

    let out = Command::new(driftwatch_bin())
        .args(["check", "--format", "json", "--probe", "app", "--config"])
        .arg(&s.config)
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["verdict"], "drifted");
    assert_eq!(doc["probes"][0]["probe"], "app");

    let (code, out) = check(&s.config, &["nope"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no probe named"), "{out}");
}

#[test]
fn repo_credentials_never_reach_logs_metrics_or_api() {
    let s = setup("");
    let secret = "s3cr3t-t0ken-value";
    let port = free_port();
    let text = std::fs::read_to_string(&s.config).unwrap().replace(
        &format!("file://{}", s.work.display()),
        &format!("https://deploy:{secret}@127.0.0.1:{port}/infra.git"),
    );
    std::fs::write(&s.config, text).unwrap();
    let log = s.root.join("daemon.log");
    let mut daemon = Daemon::start(&s.config, &log);
    daemon.wait_for("/metrics", "a failed sync", |_, body| {
        body.contains("driftwatch_repo_sync_errors_total{repo=\"infra\"} 1")
    });
    let (_, metrics) = daemon.get("/metrics").unwrap();
    let (_, api) = daemon.get("/api/v1/probes").unwrap();
    daemon.terminate();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("infra"), "the failure is logged:\n{logs}");
    for (what, text) in [("logs", &logs), ("metrics", &metrics), ("api", &api)] {
        assert!(
            !text.contains(secret),
            "credential leaked into {what}:\n{text}"
        );
    }
}

#[test]
fn validate_lists_tasks_that_run_for_real_in_check_mode() {
    if !have_tool("ansible-playbook") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    std::fs::create_dir_all(repo.join("ansible")).unwrap();
    std::fs::write(
        repo.join("ansible/site.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: read the version\n      command: uname -r\n      check_mode: false\n      changed_when: false\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("ansible/hosts"),
        "localhost ansible_connection=local\n",
    )
    .unwrap();
    let config = tmp.path().join("driftwatch.toml");
    let body = format!(
        "state_dir = \"{}\"\n[[repo]]\nname = \"local\"\npath = \"{}\"\n[[probe]]\nname = \"site\"\nlayer = \"ansible\"\npath = \"ansible\"\nplaybooks = [\"site.yml\"]\ninventory = \"hosts\"\n",
        tmp.path().join("state").display(),
        repo.display()
    );
    std::fs::write(&config, body).unwrap();
    let out = Command::new(driftwatch_bin())
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: probe.site:") && stderr.contains("read the version"),
        "{stderr}"
    );
    // The line of the `check_mode: false` setting itself.
    assert!(
        stderr.contains("site.yml:6"),
        "the warning names file and line: {stderr}"
    );
}

#[test]
fn stale_empty_run_directories_are_removed_at_start_up() {
    let s = setup("");
    let tmp = s.root.join("state/tmp");
    std::fs::create_dir_all(tmp.join("run-left-by-a-kill")).unwrap();
    std::fs::create_dir_all(tmp.join("run-in-use-by-check")).unwrap();
    std::fs::write(tmp.join("run-in-use-by-check/file"), "x").unwrap();
    let daemon = Daemon::start(&s.config, &s.root.join("daemon.log"));
    daemon.wait_for("/readyz", "readiness", |code, _| code == 200);
    assert!(!tmp.join("run-left-by-a-kill").exists());
    assert!(tmp.join("run-in-use-by-check/file").exists());
}
