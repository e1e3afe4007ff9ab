//! The command probe with real child processes, and the plugins shipped in
//! probes/ run for real through it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use driftwatch::model::outcome::{ErrorReason, Outcome, ProbeError, Verdict};

use crate::common;

/// A checkout directory with the probe at `checkout/probe`.
struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("checkout/probe")).unwrap();
        Fixture { tmp }
    }

    fn checkout(&self) -> PathBuf {
        self.tmp.path().join("checkout")
    }

    fn probe_dir(&self) -> PathBuf {
        self.checkout().join("probe")
    }

    /// Writes a file under the probe's directory (executable when it starts with `#!`).
    fn write(&self, relative: &str, content: &str) -> PathBuf {
        let path = self.probe_dir().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        if content.starts_with("#!") {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        path
    }

    async fn run_with_timeout(
        &self,
        fields: &str,
        timeout: Duration,
    ) -> Result<Outcome, ProbeError> {
        let probe =
            common::build_probe("command", "cmd", "probe", fields).expect("valid probe config");
        let cx = common::probe_context(
            "cmd",
            &self.checkout(),
            "probe",
            &self.tmp.path().join("run"),
            timeout,
        );
        probe.run(&cx).await
    }

    async fn run(&self, fields: &str) -> Result<Outcome, ProbeError> {
        self.run_with_timeout(fields, Duration::from_secs(60)).await
    }
}

fn shell(script: &str) -> String {
    format!("shell = true\ncommand = {}\n", toml_string(script))
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

#[tokio::test]
async fn default_exit_codes_map_to_in_sync_drift_and_error() {
    let fx = Fixture::new();
    let outcome = fx.run(r#"command = ["true"]"#).await.unwrap();
    assert_eq!(outcome.verdict(), Verdict::InSync);
    assert_eq!(outcome.exit_code, Some(0));

    let outcome = fx
        .run(&shell("echo 'web: 3 replicas, want 5'; exit 2"))
        .await
        .unwrap();
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert_eq!(outcome.exit_code, Some(2));
    assert!(outcome.changes.is_empty());
    assert_eq!(outcome.details["stdout"], "web: 3 replicas, want 5");

    let err = fx
        .run(&shell(
            "echo line1 >&2; echo 'cannot reach api' >&2; exit 1",
        ))
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::ExitCode);
    assert_eq!(err.exit_code, Some(1));
    assert_eq!(err.stderr_tail, "line1\ncannot reach api");
}

#[tokio::test]
async fn custom_exit_code_lists() {
    let fx = Fixture::new();
    let fields = "in_sync_exit_codes = [0, 1]\ndrift_exit_codes = [3, 4]\n";
    for (code, expected) in [
        (0, Some(Verdict::InSync)),
        (1, Some(Verdict::InSync)),
        (3, Some(Verdict::Drifted)),
        (4, Some(Verdict::Drifted)),
        (2, None),
    ] {
        let result = fx
            .run(&format!("{fields}{}", shell(&format!("exit {code}"))))
            .await;
        match expected {
            Some(verdict) => assert_eq!(result.unwrap().verdict(), verdict, "exit {code}"),
            None => {
                let err = result.unwrap_err();
                assert_eq!(err.reason, ErrorReason::ExitCode);
                assert_eq!(err.exit_code, Some(code));
            }
        }
    }
}

#[tokio::test]
async fn killed_by_a_signal_is_an_error() {
    let fx = Fixture::new();
    let err = fx.run(&shell("kill -9 $$")).await.unwrap_err();
    assert_eq!(err.reason, ErrorReason::ExitCode);
    assert!(err.message.contains("signal 9"), "{}", err.message);
}

#[tokio::test]
async fn missing_program_is_a_spawn_error() {
    let fx = Fixture::new();
    // A bare name not on PATH is a config error (see
    // preflight_reports_missing_programs_and_secret_files); a program that
    // disappears after the config loaded fails at spawn.
    let err = fx
        .run(r#"command = ["/opt/nowhere/driftwatch-no-such-program"]"#)
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::Spawn);
    let err = fx
        .run(r#"command = ["./not-in-repo.sh"]"#)
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::Spawn);
}

#[tokio::test]
async fn json_output_becomes_resource_changes() {
    let fx = Fixture::new();
    fx.write(
        "plugin.sh",
        r#"#!/bin/sh
cat <<'EOF'
{"protocol": 1,
 "resources": [
   {"subject": "/etc/kubernetes/manifests/etcd.yaml", "action": "missing", "origin": "outside"},
   {"subject": "/etc/kubernetes/manifests/kube-apiserver.yaml", "action": "changed", "diff": "-  - --v=2\n+  - --v=4\n"}
 ],
 "warnings": ["1 file ignored"],
 "details": {"files_checked": 7}}
EOF
exit 2
"#,
    );
    let outcome = fx
        .run("command = [\"./plugin.sh\"]\noutput = \"json\"")
        .await
        .unwrap();
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert_eq!(outcome.changes.len(), 2);
    assert_eq!(
        outcome.changes[0].subject,
        "/etc/kubernetes/manifests/etcd.yaml"
    );
    assert_eq!(outcome.changes[0].action, "missing");
    assert_eq!(outcome.changes[0].origin.as_deref(), Some("outside"));
    assert_eq!(outcome.changes[1].diff, "-  - --v=2\n+  - --v=4\n");
    assert_eq!(outcome.warnings, ["1 file ignored"]);
    assert_eq!(outcome.details["files_checked"], 7);

    // In sync: an empty document or no stdout at all.
    let outcome = fx
        .run(&format!(
            "output = \"json\"\n{}",
            shell("echo '{\"resources\": []}'")
        ))
        .await
        .unwrap();
    assert_eq!(outcome.verdict(), Verdict::InSync);
    let outcome = fx
        .run("output = \"json\"\ncommand = [\"true\"]")
        .await
        .unwrap();
    assert_eq!(outcome.verdict(), Verdict::InSync);
}

#[tokio::test]
async fn invalid_plugin_json_is_a_parse_error() {
    let fx = Fixture::new();
    let err = fx
        .run(&format!(
            "output = \"json\"\n{}",
            shell("echo 'Plan: 1 to change'; echo oops >&2; exit 2")
        ))
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::Parse);
    assert_eq!(err.exit_code, Some(2));
    assert_eq!(err.stderr_tail, "oops");

    // Resources listed with an in-sync exit code contradict each other.
    let err = fx
        .run(&format!(
            "output = \"json\"\n{}",
            shell(r#"echo '{"resources": [{"subject": "a"}]}'"#)
        ))
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::Parse);
    assert_eq!(err.partial_changes.len(), 1);
}

const FLOOD_BYTES: u64 = 20_000_000;

/// Runs a plugin that prints 20 MB and reports the peak RSS growth of this
/// process. Run in its own process by `plugin_flood_is_capped_with_bounded_memory`.
#[tokio::test]
#[ignore = "helper: run in a child process by plugin_flood_is_capped_with_bounded_memory"]
async fn flood_helper() {
    let fx = Fixture::new();
    let script = format!(
        "printf '{{\"resources\": ['; yes '{{\"subject\": \"x\", \"action\": \"changed\"}},' | head -c {FLOOD_BYTES}; exit 2"
    );
    // Warm up with a small run first, so the runtime's one-off costs (worker
    // and blocking threads, config and checkout set-up) are not counted as
    // the flood's.
    fx.run(&format!(
        "output = \"json\"\n{}",
        shell("printf '{\"resources\": []}'")
    ))
    .await
    .unwrap();
    let before = peak_rss_kib();
    let err = fx
        .run(&format!("output = \"json\"\n{}", shell(&script)))
        .await
        .unwrap_err();
    let after = peak_rss_kib();
    println!(
        "FLOOD reason={} growth_kib={}",
        err.reason.as_str(),
        after - before
    );
}

fn peak_rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn plugin_flood_is_capped_with_bounded_memory() {
    // A separate process, so no other test's allocations blur the peak.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "command::flood_helper",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "helper failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("FLOOD "))
        .unwrap_or_else(|| panic!("helper did not report: {stdout}"));
    let line = &line[line.find("FLOOD ").unwrap()..];
    assert!(line.contains("reason=parse"), "{line}");
    let growth_kib: u64 = line.rsplit('=').next().unwrap().parse().unwrap();
    let limit_kib = (driftwatch::probe::command::JSON_OUTPUT_LIMIT as u64 * 3) / 1024;
    assert!(
        growth_kib < limit_kib,
        "peak RSS grew {growth_kib} KiB for {FLOOD_BYTES} bytes of output"
    );
    assert!(
        limit_kib < FLOOD_BYTES / 1024,
        "the bound must be below the flood size to mean anything"
    );
}

#[tokio::test]
async fn timeout_kills_the_grandchild() {
    let fx = Fixture::new();
    // A sleep length nothing else uses, so pgrep finds only ours.
    let marker = format!("sleep 8{}.25", std::process::id());
    let err = fx
        .run_with_timeout(
            &shell(&format!("{marker} & wait")),
            Duration::from_millis(700),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::Timeout);
    assert!(
        !crate::common::process_running(&marker),
        "a process was left behind"
    );
}

#[tokio::test]
async fn shell_true_runs_through_sh() {
    let fx = Fixture::new();
    fx.write("hosts.txt", "a\nb\nc\n");
    let outcome = fx
        .run(&shell(
            "test \"$(wc -l < hosts.txt | tr -d ' ')\" = 3 && exit 2",
        ))
        .await
        .unwrap();
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    // Without shell the same text is one program name, refused at build time.
    let errors = common::build_probe("command", "x", "probe", "command = \"wc -l < hosts.txt\"")
        .err()
        .unwrap();
    assert_eq!(errors[0].key, "command");
}

#[tokio::test]
async fn environment_is_an_allowlist() {
    // Two variables of this test process that the base allowlist does not
    // pass (cargo sets plenty); no set_var, which races with concurrent spawns.
    let candidates: Vec<(String, String)> = std::env::vars()
        .filter(|(name, value)| {
            !driftwatch::process::BASE_ENV.contains(&name.as_str())
                && !name.starts_with("DRIFTWATCH_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !value.is_empty()
                && value
                    .chars()
                    .all(|c| (c.is_ascii_graphic() || c == ' ') && !"[]\\\"$`".contains(c))
        })
        .take(2)
        .collect();
    assert_eq!(
        candidates.len(),
        2,
        "the test process needs two non-allowlisted variables"
    );
    let (hidden, _) = &candidates[0];
    let (passed, passed_value) = &candidates[1];
    let fx = Fixture::new();
    let secret = fx.tmp.path().join("token");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let script = format!(
        "echo \"hidden=[${hidden}] passed=[${passed}] extra=[$EXTRA] token=[$TOKEN]\"; \
         echo \"probe=[$DRIFTWATCH_PROBE] commit=[$DRIFTWATCH_COMMIT] checkout=[$DRIFTWATCH_CHECKOUT] pwd=[$(pwd)]\"; exit 2"
    );
    let fields = format!(
        "pass_env = [{}]\nenv = {{ EXTRA = \"x y\" }}\nenv_files = {{ TOKEN = {} }}\n{}",
        toml_string(passed),
        toml_string(&secret.display().to_string()),
        shell(&script)
    );
    let outcome = fx.run(&fields).await.unwrap();
    let stdout = outcome.details["stdout"].as_str().unwrap();
    assert!(
        stdout.contains(&format!(
            "hidden=[] passed=[{passed_value}] extra=[x y] token=[s3cret]"
        )),
        "{stdout}"
    );
    let checkout = fx.checkout();
    let expected = format!(
        "probe=[cmd] commit=[0000000000000000000000000000000000000000] checkout=[{}] pwd=[{}]",
        checkout.display(),
        fx.probe_dir().canonicalize().unwrap().display()
    );
    assert!(stdout.contains(&expected), "{stdout}\nwant {expected}");
}

#[tokio::test]
async fn workdir_must_exist_inside_the_checkout() {
    let fx = Fixture::new();
    fx.write("sub/check.sh", "#!/bin/sh\npwd\nexit 2\n");
    let outcome = fx
        .run("workdir = \"sub\"\ncommand = [\"./check.sh\"]")
        .await
        .unwrap();
    let pwd = outcome.details["stdout"].as_str().unwrap();
    assert!(Path::new(pwd).ends_with("probe/sub"), "{pwd}");

    let err = fx
        .run("workdir = \"gone\"\ncommand = [\"true\"]")
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::Checkout);

    // A symlink in the repo must not lead the command out of the checkout.
    std::os::unix::fs::symlink("/tmp", fx.probe_dir().join("out")).unwrap();
    let err = fx
        .run("workdir = \"out\"\ncommand = [\"true\"]")
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::Checkout);
    assert!(
        err.message.contains("leaves the checkout"),
        "{}",
        err.message
    );
}

#[test]
fn config_errors_name_their_field() {
    let cases: &[(&str, &[&str])] = &[
        ("command = []", &["command"]),
        ("command = [\"\"]", &["command[0]"]),
        (
            "command = [\"x\"]\nin_sync_exit_codes = [0, 2]",
            &["drift_exit_codes[0]"],
        ),
        (
            "command = [\"x\"]\nworkdir = \"../elsewhere\"",
            &["workdir"],
        ),
        ("command = [\"x\"]\nworkdir = \"/etc\"", &["workdir"]),
        ("command = [\"a\", \"b\"]\nshell = true", &["command"]),
        ("command = [\"x\"]\noutput = \"yaml\"", &["output"]),
        ("command = [\"x\"]\ntimeout_codes = [1]", &["timeout_codes"]),
        (
            "command = []\nworkdir = \"..\"\ndrift_exit_codes = [0]",
            &["command", "workdir", "drift_exit_codes[0]"],
        ),
    ];
    for (fields, want) in cases {
        let errors = common::build_probe("command", "x", "probe", fields)
            .err()
            .unwrap_or_else(|| panic!("accepted: {fields}"));
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(&keys, want, "{fields}: {errors:?}");
    }
}

// ---- shipped plugins, run for real through the command probe ----

fn plugin(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("probes")
        .join(name)
        .display()
        .to_string()
}

/// Probe fields running a shipped plugin with `args`, JSON output.
fn plugin_fields(name: &str, args: &[&str]) -> String {
    let argv: Vec<String> = std::iter::once(plugin(name))
        .chain(args.iter().map(|a| a.to_string()))
        .collect();
    let argv = toml::Value::Array(argv.into_iter().map(toml::Value::String).collect());
    format!("output = \"json\"\ncommand = {argv}\n")
}

fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (relative, content) in files {
        let path = root.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

const APISERVER: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n  - command:\n    - kube-apiserver\n    - --v=2\n";
const ETCD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n";

#[tokio::test]
async fn files_drift_in_sync() {
    if !common::have_tool("python3") {
        return;
    }
    let fx = Fixture::new();
    let host = fx.tmp.path().join("host/manifests");
    let files = [
        ("kube-apiserver.yaml", APISERVER),
        ("etcd.yaml", ETCD),
        ("addons/dns.yaml", "kind: Pod\n"),
    ];
    write_tree(&fx.probe_dir().join("manifests"), &files);
    write_tree(&host, &files);
    let target = host.display().to_string();
    let fields = plugin_fields(
        "files-drift",
        &[
            "--source",
            "manifests",
            "--target",
            &target,
            "--extra",
            "--mode",
        ],
    );
    let outcome = fx.run(&fields).await.unwrap();
    assert_eq!(outcome.verdict(), Verdict::InSync, "{outcome:?}");
    assert_eq!(outcome.details["files"], 3);
    assert_eq!(outcome.exit_code, Some(0));
}

#[tokio::test]
async fn files_drift_reports_missing_changed_extra_and_masks_secrets() {
    if !common::have_tool("python3") {
        return;
    }
    let fx = Fixture::new();
    let host = fx.tmp.path().join("host/manifests");
    let git = fx.probe_dir().join("manifests");
    write_tree(
        &git,
        &[
            ("kube-apiserver.yaml", &APISERVER.replace("--v=2", "--v=4")),
            ("etcd.yaml", ETCD),
            (
                "config.yaml",
                "endpoint: https://api\npassword: git-pass-123\n",
            ),
            (
                "pki/sa.key",
                "-----BEGIN RSA PRIVATE KEY-----\ngit-key-material\n",
            ),
            ("logo.bin", "\0\x01git-binary"),
        ],
    );
    write_tree(
        &host,
        &[
            ("kube-apiserver.yaml", APISERVER),
            (
                "config.yaml",
                "endpoint: https://api\npassword: host-pass-456\n",
            ),
            (
                "pki/sa.key",
                "-----BEGIN RSA PRIVATE KEY-----\nhost-key-material\n",
            ),
            ("logo.bin", "\0\x01host-binary"),
            ("leftover.yaml", "kind: Pod\n"),
        ],
    );
    let target = host.display().to_string();
    let fields = plugin_fields(
        "files-drift",
        &["--source", "manifests", "--target", &target, "--extra"],
    );
    let outcome = fx.run(&fields).await.unwrap();
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    let by_subject = |name: &str| {
        let subject = host.join(name).display().to_string();
        outcome
            .changes
            .iter()
            .find(|c| c.subject == subject)
            .unwrap_or_else(|| panic!("no change for {name}: {outcome:?}"))
            .clone()
    };
    assert_eq!(by_subject("etcd.yaml").action, "missing");
    assert!(by_subject("etcd.yaml").diff.contains("+  name: etcd"));
    let apiserver = by_subject("kube-apiserver.yaml");
    assert_eq!(apiserver.action, "changed");
    assert!(
        apiserver.diff.contains("-    - --v=2\n+    - --v=4\n"),
        "{}",
        apiserver.diff
    );
    assert_eq!(by_subject("leftover.yaml").action, "extra");
    let config = by_subject("config.yaml");
    assert!(
        config.diff.contains("-password: <masked>") && config.diff.contains("+password: <masked>"),
        "{}",
        config.diff
    );
    assert!(by_subject("pki/sa.key").diff.contains("masked"));
    assert!(by_subject("logo.bin").diff.contains("binary files differ"));
    assert_eq!(outcome.changes.len(), 6);
    assert_eq!(outcome.details["missing"], 1);
    assert_eq!(outcome.details["extra"], 1);

    let everything = serde_json::to_string(&outcome).unwrap();
    for secret in [
        "git-pass-123",
        "host-pass-456",
        "git-key-material",
        "host-key-material",
        "git-binary",
        "host-binary",
    ] {
        assert!(
            !everything.contains(secret),
            "{secret} leaked: {everything}"
        );
    }
}

#[tokio::test]
async fn files_drift_node_that_never_got_the_config() {
    if !common::have_tool("python3") {
        return;
    }
    let fx = Fixture::new();
    write_tree(
        &fx.probe_dir(),
        &[("kube-apiserver.yaml", APISERVER), ("etcd.yaml", ETCD)],
    );
    let target = fx
        .tmp
        .path()
        .join("host/never-deployed")
        .display()
        .to_string();
    let outcome = fx
        .run(&plugin_fields("files-drift", &["--target", &target]))
        .await
        .unwrap();
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert!(
        outcome.changes.iter().all(|c| c.action == "missing"),
        "{outcome:?}"
    );
    assert_eq!(outcome.changes.len(), 2);
    assert!(
        outcome.warnings[0].contains("does not exist"),
        "{:?}",
        outcome.warnings
    );
}

#[tokio::test]
async fn files_drift_mode_and_owner() {
    if !common::have_tool("python3") {
        return;
    }
    let fx = Fixture::new();
    let host = fx.tmp.path().join("host");
    write_tree(
        &fx.probe_dir().join("units"),
        &[("backup.sh", "#!/bin/sh\n")],
    );
    write_tree(&host, &[("backup.sh", "#!/bin/sh\n")]);
    std::fs::set_permissions(
        fx.probe_dir().join("units/backup.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(
        host.join("backup.sh"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let target = host.display().to_string();
    let meta = std::fs::metadata(host.join("backup.sh")).unwrap();
    let me = format!(
        "{}:{}",
        std::os::unix::fs::MetadataExt::uid(&meta),
        std::os::unix::fs::MetadataExt::gid(&meta)
    );
    let other = format!("{}", std::os::unix::fs::MetadataExt::uid(&meta) + 1);

    let without_mode = plugin_fields(
        "files-drift",
        &["--source", "units", "--target", &target, "--owner", &me],
    );
    assert_eq!(
        fx.run(&without_mode).await.unwrap().verdict(),
        Verdict::InSync
    );

    let with_mode = plugin_fields(
        "files-drift",
        &[
            "--source", "units", "--target", &target, "--mode", "--owner", &other,
        ],
    );
    let outcome = fx.run(&with_mode).await.unwrap();
    assert_eq!(outcome.changes.len(), 1, "{outcome:?}");
    let diff = &outcome.changes[0].diff;
    assert!(diff.contains("mode: host 0644, git executable"), "{diff}");
    assert!(diff.contains("owner: host"), "{diff}");
}

#[tokio::test]
async fn files_drift_errors_are_errors_not_drift() {
    if !common::have_tool("python3") {
        return;
    }
    let fx = Fixture::new();
    let target = fx.tmp.path().display().to_string();
    let err = fx
        .run(&plugin_fields(
            "files-drift",
            &["--source", "nope", "--target", &target],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::ExitCode);
    assert_eq!(err.exit_code, Some(1));
    assert!(
        err.stderr_tail.contains("--source nope is not a directory"),
        "{}",
        err.stderr_tail
    );

    // A usage error must not exit 2 (argparse's default), which would read as drift.
    let err = fx
        .run(&plugin_fields("files-drift", &["--no-such-flag"]))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code, Some(1));
    let err = fx
        .run(&plugin_fields("files-drift", &["--target", "relative/dir"]))
        .await
        .unwrap_err();
    assert!(err.stderr_tail.contains("absolute"), "{}", err.stderr_tail);
}

/// A fake root with `proc/sys` parameters.
fn fake_proc(root: &Path, params: &[(&str, &str)]) {
    let files: Vec<(String, String)> = params
        .iter()
        .map(|(key, value)| {
            (
                format!("proc/sys/{}", key.replace('.', "/")),
                format!("{value}\n"),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    write_tree(root, &files);
}

const NODE_SYSCTL: &str = "# kubernetes node\n\
    net.ipv4.ip_forward = 1\n\
    net.ipv4.ip_local_port_range = 32768 60999\n\
    ; reverse path filtering everywhere but lo\n\
    net.ipv4.conf.*.rp_filter = 2\n\
    -net.ipv4.conf.lo.rp_filter\n\
    -net.ipv6.conf.all.forwarding = 1\n";

#[tokio::test]
async fn sysctl_drift_in_sync_and_drifted() {
    if !common::have_tool("python3") {
        return;
    }
    let fx = Fixture::new();
    write_tree(&fx.probe_dir(), &[("sysctl.d/10-node.conf", NODE_SYSCTL)]);
    let root = fx.tmp.path().join("root");
    fake_proc(
        &root,
        &[
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.ip_local_port_range", "32768\t60999"),
            ("net.ipv4.conf.all.rp_filter", "2"),
            ("net.ipv4.conf.eth0.rp_filter", "2"),
            ("net.ipv4.conf.lo.rp_filter", "0"),
        ],
    );
    let root_arg = root.display().to_string();
    let fields = plugin_fields("sysctl-drift", &["--root", &root_arg, "sysctl.d"]);
    let outcome = fx.run(&fields).await.unwrap();
    assert_eq!(outcome.verdict(), Verdict::InSync, "{outcome:?}");
    assert_eq!(outcome.details["parameters"], 4);
    assert!(
        outcome.warnings[0].contains("net.ipv6.conf.all.forwarding"),
        "{:?}",
        outcome.warnings
    );

    // Someone turned forwarding off on this node, and a later file wants br_netfilter.
    fake_proc(
        &root,
        &[
            ("net.ipv4.ip_forward", "0"),
            ("net.ipv4.conf.eth0.rp_filter", "1"),
        ],
    );
    write_tree(
        &fx.probe_dir(),
        &[(
            "sysctl.d/20-bridge.conf",
            "net.bridge.bridge-nf-call-iptables = 1\n",
        )],
    );
    let outcome = fx.run(&fields).await.unwrap();
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    let summary: Vec<(&str, &str)> = outcome
        .changes
        .iter()
        .map(|c| (c.subject.as_str(), c.action.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("net.bridge.bridge-nf-call-iptables", "missing"),
            ("net.ipv4.conf.eth0.rp_filter", "changed"),
            ("net.ipv4.ip_forward", "changed"),
        ]
    );
    let forward = &outcome.changes[2].diff;
    assert_eq!(
        forward,
        "# sysctl.d/10-node.conf:2\n-net.ipv4.ip_forward = 0\n+net.ipv4.ip_forward = 1\n"
    );
}

#[tokio::test]
async fn sysctl_drift_reads_the_real_kernel() {
    if !common::have_tool("python3") {
        return;
    }
    let fx = Fixture::new();
    write_tree(
        &fx.probe_dir(),
        &[
            ("ok.conf", "kernel.ostype = Linux\n"),
            ("bad.conf", "kernel/ostype = Plan9\n"),
        ],
    );
    let outcome = fx
        .run(&plugin_fields("sysctl-drift", &["ok.conf"]))
        .await
        .unwrap();
    assert_eq!(outcome.verdict(), Verdict::InSync, "{outcome:?}");
    let outcome = fx
        .run(&plugin_fields("sysctl-drift", &["bad.conf"]))
        .await
        .unwrap();
    assert_eq!(outcome.changes[0].subject, "kernel.ostype");
    assert!(outcome.changes[0]
        .diff
        .contains("-kernel.ostype = Linux\n+kernel.ostype = Plan9"));
}

#[tokio::test]
async fn sysctl_drift_bad_input_is_an_error() {
    if !common::have_tool("python3") {
        return;
    }
    let fx = Fixture::new();
    write_tree(
        &fx.probe_dir(),
        &[(
            "broken.conf",
            "net.ipv4.ip_forward = 1\nnet.ipv4.tcp_syncookies 1\n",
        )],
    );
    let err = fx
        .run(&plugin_fields("sysctl-drift", &["broken.conf"]))
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::ExitCode);
    assert_eq!(err.exit_code, Some(1));
    assert!(
        err.stderr_tail
            .contains("broken.conf:2: expected `key = value`"),
        "{}",
        err.stderr_tail
    );
    let err = fx
        .run(&plugin_fields("sysctl-drift", &["missing.conf"]))
        .await
        .unwrap_err();
    assert!(
        err.stderr_tail.contains("missing.conf"),
        "{}",
        err.stderr_tail
    );
}

const DPKG_STATUS: &str = "Package: nginx\nStatus: install ok installed\nMaintainer: x <x@example.invalid>\nArchitecture: amd64\nVersion: 1.22.1-9\nDescription: web server\n\n\
Package: telnet\nStatus: install ok installed\nMaintainer: x <x@example.invalid>\nArchitecture: amd64\nVersion: 0.17-44\nDescription: telnet client\n\n\
Package: containerd\nStatus: install ok half-configured\nMaintainer: x <x@example.invalid>\nArchitecture: amd64\nVersion: 1.6.20~ds1-1\nDescription: runtime\n\n\
Package: oldpkg\nStatus: deinstall ok config-files\nMaintainer: x <x@example.invalid>\nArchitecture: amd64\nVersion: 1.0\nDescription: removed\n";

#[tokio::test]
async fn debian_packages_against_a_dpkg_database() {
    if !common::have_tool("python3") || !common::have_tool("dpkg-query") {
        return;
    }
    let fx = Fixture::new();
    let admindir = fx.tmp.path().join("dpkg");
    write_tree(&admindir, &[("status", DPKG_STATUS)]);
    let admin = admindir.display().to_string();
    write_tree(
        &fx.probe_dir(),
        &[("in-sync.list", "# web nodes\nnginx=1.22.*\n!curl\n")],
    );
    let outcome = fx
        .run(&plugin_fields(
            "debian-packages",
            &["--admindir", &admin, "in-sync.list"],
        ))
        .await
        .unwrap();
    assert_eq!(outcome.verdict(), Verdict::InSync, "{outcome:?}");
    assert_eq!(outcome.details["rules"], 2);

    write_tree(
        &fx.probe_dir(),
        &[(
            "drifted.list",
            "nginx=1.24.0-1\ncontainerd\noldpkg\n!telnet\nnginx=1.22.1-10  # later rule wins\n",
        )],
    );
    let outcome = fx
        .run(&plugin_fields(
            "debian-packages",
            &["--admindir", &admin, "drifted.list"],
        ))
        .await
        .unwrap();
    let summary: Vec<(&str, &str)> = outcome
        .changes
        .iter()
        .map(|c| (c.subject.as_str(), c.action.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            ("containerd", "changed"),
            ("nginx", "changed"),
            ("oldpkg", "missing"),
            ("telnet", "extra")
        ]
    );
    assert_eq!(
        outcome.changes[1].diff,
        "# drifted.list:5\n-nginx=1.22.1-9\n+nginx=1.22.1-10\n"
    );
    assert!(outcome.changes[0]
        .diff
        .contains("dpkg state: half-configured"));
}

#[tokio::test]
async fn debian_packages_against_this_host() {
    if !common::have_tool("python3") || !common::have_tool("dpkg-query") {
        return;
    }
    let version = std::process::Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "coreutils"])
        .output()
        .unwrap();
    let version = String::from_utf8(version.stdout).unwrap();
    let fx = Fixture::new();
    write_tree(
        &fx.probe_dir(),
        &[
            (
                "host.list",
                &format!("coreutils={version}\n!driftwatch-no-such-package\n"),
            ),
            ("want.list", "driftwatch-no-such-package=1.0\n"),
            ("bad.list", "nginx\nNot A Package\n"),
        ],
    );
    let outcome = fx
        .run(&plugin_fields("debian-packages", &["host.list"]))
        .await
        .unwrap();
    assert_eq!(outcome.verdict(), Verdict::InSync, "{outcome:?}");
    let outcome = fx
        .run(&plugin_fields("debian-packages", &["want.list"]))
        .await
        .unwrap();
    assert_eq!(outcome.changes[0].action, "missing");

    let err = fx
        .run(&plugin_fields("debian-packages", &["bad.list"]))
        .await
        .unwrap_err();
    assert_eq!(err.exit_code, Some(1));
    assert!(
        err.stderr_tail.contains("bad.list:2"),
        "{}",
        err.stderr_tail
    );
    // A wrong database directory is an error, never "everything missing".
    let nowhere = fx.tmp.path().join("nowhere").display().to_string();
    let err = fx
        .run(&plugin_fields(
            "debian-packages",
            &["--admindir", &nowhere, "host.list"],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::ExitCode);
    assert!(
        err.stderr_tail.contains("does not exist"),
        "{}",
        err.stderr_tail
    );
}

#[tokio::test]
async fn files_drift_large_and_odd_files() {
    if !common::have_tool("python3") {
        return;
    }
    use std::os::unix::ffi::OsStrExt;
    let fx = Fixture::new();
    let git = fx.probe_dir().join("files");
    let host = fx.tmp.path().join("host");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut big_changed = big.clone();
    big_changed[2_999_999] ^= 1;
    let long_git: String = (0..5000).map(|i| format!("line {i}\n")).collect();
    let long_host: String = (0..5000).map(|i| format!("other {i}\n")).collect();
    for (dir, big, long) in [(&git, &big, &long_git), (&host, &big_changed, &long_host)] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("same.img"), &big[..]).unwrap();
        std::fs::write(dir.join("disk.img"), big).unwrap();
        std::fs::write(dir.join("long.conf"), long).unwrap();
    }
    std::fs::write(host.join("same.img"), &big[..]).unwrap();
    std::fs::write(
        git.join(std::ffi::OsStr::from_bytes(b"latin1-\xe9.conf")),
        "x\n",
    )
    .unwrap();

    let target = host.display().to_string();
    let outcome = fx
        .run(&plugin_fields(
            "files-drift",
            &["--source", "files", "--target", &target],
        ))
        .await
        .unwrap();
    let summary: Vec<(String, &str)> = outcome
        .changes
        .iter()
        .map(|c| {
            (
                c.subject
                    .strip_prefix(&format!("{target}/"))
                    .unwrap()
                    .to_string(),
                c.action.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("disk.img".to_string(), "changed"),
            ("latin1-\u{fffd}.conf".to_string(), "missing"),
            ("long.conf".to_string(), "changed"),
        ]
    );
    assert!(
        outcome.changes[0].diff.contains("too large to diff"),
        "{}",
        outcome.changes[0].diff
    );
    let long_diff = &outcome.changes[2].diff;
    assert!(
        long_diff.contains("diff cut at 4000 bytes") && long_diff.len() < 4200,
        "{long_diff}"
    );
}

#[tokio::test]
async fn a_plugin_ignoring_sigterm_is_killed_after_the_grace_period() {
    let fx = Fixture::new();
    let marker = format!("sleep 8{}.75", std::process::id());
    // Ignored signals stay ignored across exec, so the sleep ignores TERM too.
    let err = fx
        .run_with_timeout(
            &shell(&format!("trap '' TERM; {marker} & wait; wait")),
            Duration::from_millis(500),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::Timeout);
    assert!(
        !crate::common::process_running(&marker),
        "a process was left behind"
    );
}

#[tokio::test]
async fn shutdown_cancels_the_run() {
    let fx = Fixture::new();
    let probe = common::build_probe("command", "cmd", "probe", &shell("sleep 600")).unwrap();
    let cx = common::probe_context(
        "cmd",
        &fx.checkout(),
        "probe",
        &fx.tmp.path().join("run"),
        Duration::from_secs(600),
    );
    let cancel = cx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let err = probe.run(&cx).await.unwrap_err();
    assert_eq!(err.reason, ErrorReason::Cancelled);
}

#[tokio::test]
async fn the_last_stderr_lines_survive_a_flood() {
    let fx = Fixture::new();
    let script = "yes 'progress...' | head -c 5000000 >&2; echo 'error: cannot reach api.example:443' >&2; exit 1";
    let err = fx.run(&shell(script)).await.unwrap_err();
    assert_eq!(err.reason, ErrorReason::ExitCode);
    assert!(
        err.stderr_tail
            .ends_with("error: cannot reach api.example:443"),
        "{}",
        err.stderr_tail
    );
    assert!(err.stderr_tail.len() <= 4 * 1024 + 8);
}

#[tokio::test]
async fn preflight_reports_missing_programs_and_secret_files() {
    let ok = common::build_probe(
        "command",
        "x",
        "probe",
        &plugin_fields("files-drift", &["--target", "/etc"]),
    )
    .unwrap();
    assert!(ok.preflight().await.is_empty());
    let missing = common::build_probe(
        "command",
        "x",
        "probe",
        "command = [\"/opt/nowhere/files-drift\"]",
    )
    .unwrap();
    let problems = missing.preflight().await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("/opt/nowhere/files-drift"));
    // A missing secret file and a bare name not on PATH are config errors,
    // with the key to point at.
    let errors = common::build_probe(
        "command",
        "x",
        "probe",
        "command = [\"driftwatch-no-such-tool\"]\nenv_files = { TOKEN = \"/nonexistent/driftwatch-token\" }",
    )
    .err()
    .expect("rejected");
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["env_files.TOKEN", "command[0]"], "{errors:?}");
    assert!(errors[1].message.contains("not on PATH"), "{errors:?}");
}

/// files-drift masks a changed line by what its key means (password, secret,
/// token as a word, api/private/tls keys, credentials in URLs, private key
/// blocks), never by substring: each line below changes its value `{v}`
/// between host and git; a secret line must not show either value, a
/// harmless one must show both. (A `token:` line or a private key makes the
/// whole file secret, as in a kubeconfig.)
#[tokio::test]
async fn files_drift_masks_secret_keys_not_substrings() {
    if !common::have_tool("python3") {
        return;
    }
    let harmless = [
        "server_tokens {v};",
        "    server_tokens {v};",
        "max_tokens = {v}",
        "tokenizer: {v}",
        "passwordless_login: {v}",
        "  name: db-password-{v}",
        "PasswordAuthentication {v}",
        "token_ttl: {v}",
        "worker_processes {v};",
        "keyboard: {v}",
        "# set the password below ({v})",
        "url: https://example.com/{v}",
    ];
    let secret = [
        "password: {v}",
        "  db_password = {v}",
        "export API_TOKEN={v}",
        "auth_token: {v}",
        "clientSecret: {v}",
        "api_key: {v}",
        "apiKey: {v}",
        "tls.key: {v}",
        "Authorization: Bearer {v}",
        "\"password\": \"{v}\",",
        "AWS_SECRET_ACCESS_KEY={v}",
        "ExecStart=/usr/bin/app --db-password={v} --verbose",
        "ExecStart=/usr/bin/app --token {v}",
        "dsn = postgres://app:{v}@db/shop",
        "ssl_password_file /etc/keys/{v};",
    ];
    let value = |side: &str, i: usize| format!("{side}val{i:02}q");
    let render = |side: &str| -> String {
        harmless
            .iter()
            .chain(secret.iter())
            .enumerate()
            .map(|(i, line)| line.replace("{v}", &value(side, i)) + "\n")
            .collect()
    };
    let fx = Fixture::new();
    let host = fx.tmp.path().join("host/etc");
    write_tree(&fx.probe_dir().join("etc"), &[("app.conf", &render("git"))]);
    write_tree(&host, &[("app.conf", &render("host"))]);
    let target = host.display().to_string();
    let fields = plugin_fields("files-drift", &["--source", "etc", "--target", &target]);
    let outcome = fx.run(&fields).await.unwrap();
    assert_eq!(outcome.verdict(), Verdict::Drifted, "{outcome:?}");
    let diff = &outcome.changes[0].diff;
    let mut wrong = Vec::new();
    for (i, line) in harmless.iter().enumerate() {
        let shown = diff.contains(&format!("-{}\n", line.replace("{v}", &value("host", i))))
            && diff.contains(&format!("+{}\n", line.replace("{v}", &value("git", i))));
        if !shown {
            wrong.push(format!("harmless line masked: {line}"));
        }
    }
    for (j, line) in secret.iter().enumerate() {
        let i = harmless.len() + j;
        if diff.contains(&value("host", i)) || diff.contains(&value("git", i)) {
            wrong.push(format!("secret line shown: {line}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}\n{diff}");
    // Masked lines keep their key where there is one.
    assert!(diff.contains("-password: <masked>\n"), "{diff}");
    assert!(diff.contains("+  db_password = <masked>\n"), "{diff}");
    assert!(diff.contains("-<masked line>\n"), "{diff}");
}
