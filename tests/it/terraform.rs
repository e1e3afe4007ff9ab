//! The Terraform layer against real Terraform, offline: the image's
//! Terraform with the built-in `terraform_data` resource, and Terraform 1.0.3
//! with the null provider from scripts/install.d/20-terraform.sh.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use driftwatch::model::outcome::{ErrorReason, Outcome, ProbeError, RunReport, Verdict};
use driftwatch::probe::{Probe, ProbeContext};

use crate::common;

/// A test's directories: a git work tree, checkouts cloned from it, state
/// outside the repo, and the probe's cache.
struct Fixture {
    tmp: tempfile::TempDir,
    binary: String,
    cli_config: PathBuf,
}

impl Fixture {
    fn new(binary: &str) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        // The environment may point TF_CLI_CONFIG_FILE at a missing file: set one explicitly.
        let cli_config = tmp.path().join("empty.tfrc");
        std::fs::write(&cli_config, "").unwrap();
        Fixture {
            tmp,
            binary: binary.to_string(),
            cli_config,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn repo(&self) -> PathBuf {
        self.path("repo")
    }

    /// A fresh checkout of the repo's current commit, as repo sync makes one per commit.
    fn checkout(&self, name: &str) -> PathBuf {
        let dest = self.path(name);
        common::git(
            self.tmp.path(),
            &[
                "clone",
                "-q",
                self.repo().to_str().unwrap(),
                dest.to_str().unwrap(),
            ],
        );
        dest
    }

    /// Runs the test's own (bare) Terraform, e.g. to apply the starting state.
    fn terraform(&self, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        let out = std::process::Command::new(&self.binary)
            .args(args)
            .current_dir(dir)
            .env("TF_CLI_CONFIG_FILE", &self.cli_config)
            .env(
                "TF_DATA_DIR",
                self.path("setup-data").join(dir.file_name().unwrap()),
            )
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .envs(env.iter().copied())
            .output()
            .expect("terraform runs");
        assert!(
            out.status.success(),
            "terraform {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn apply(&self, dir: &Path, env: &[(&str, &str)]) {
        self.terraform(dir, &["init", "-input=false", "-no-color"], env);
        self.terraform(
            dir,
            &["apply", "-auto-approve", "-input=false", "-no-color"],
            env,
        );
    }

    fn probe(&self, extra: &str) -> Arc<dyn Probe> {
        let fields = format!(
            "binary = {:?}\ncli_config_file = {:?}\n{extra}",
            self.binary,
            self.cli_config.to_str().unwrap()
        );
        match common::build_probe("terraform", "tf", "", &fields) {
            Ok(probe) => probe,
            Err(errors) => panic!("probe config rejected: {errors:?}"),
        }
    }

    /// A context for `root` (relative to the checkout) sharing one cache dir across runs.
    fn context(&self, checkout: &Path, root: &str, timeout: Duration) -> ProbeContext {
        let mut cx = common::probe_context("tf", checkout, root, &self.path("probe"), timeout);
        cx.root = root.to_string();
        let scratch = self.path(&format!("scratch-{}", root.replace('/', "_")));
        std::fs::create_dir_all(&scratch).unwrap();
        cx.scratch_dir = scratch;
        cx
    }

    /// Runs the probe and asserts that the run left every backend and state
    /// file exactly as it found them.
    async fn run(
        &self,
        probe: &Arc<dyn Probe>,
        checkout: &Path,
        root: &str,
    ) -> Result<Outcome, ProbeError> {
        let watch = self.watch(checkout);
        let result = probe
            .run(&self.context(checkout, root, Duration::from_secs(120)))
            .await;
        watch.assert_untouched();
        result
    }

    /// Starts watching the test's backend directory (`state/`, where every
    /// test keeps its backends) and the state files in `checkout`.
    fn watch(&self, checkout: &Path) -> BackendWatch {
        BackendWatch::new(vec![self.path("state")], vec![checkout.to_path_buf()])
    }
}

/// The read-only promise as a test: a snapshot of every backend directory
/// and state file (list, sizes, content hashes, mtimes, directories too, so an
/// empty new workspace directory counts) before a run, compared after it.
struct BackendWatch {
    backends: Vec<PathBuf>,
    checkouts: Vec<PathBuf>,
    before: std::collections::BTreeMap<PathBuf, String>,
}

impl BackendWatch {
    fn new(backends: Vec<PathBuf>, checkouts: Vec<PathBuf>) -> BackendWatch {
        let before = snapshot(&backends, &checkouts);
        BackendWatch {
            backends,
            checkouts,
            before,
        }
    }

    #[track_caller]
    fn assert_untouched(&self) {
        let after = snapshot(&self.backends, &self.checkouts);
        assert!(
            self.before == after,
            "the run touched a backend or state file:\nbefore: {:#?}\nafter: {:#?}",
            self.before,
            after
        );
    }
}

/// `path → "dir mtime" | "file size hash mtime"`: everything under each
/// backend directory, and in checkouts only state (`*.tfstate*`,
/// `terraform.tfstate.d`): the probe may add a lock file there.
fn snapshot(
    backends: &[PathBuf],
    checkouts: &[PathBuf],
) -> std::collections::BTreeMap<PathBuf, String> {
    use std::hash::{Hash, Hasher};
    fn walk(dir: &Path, only_state: bool, out: &mut std::collections::BTreeMap<PathBuf, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == ".git" {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let mtime = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .unwrap_or_default()
                .as_nanos();
            let is_state = name.contains("tfstate");
            if meta.is_dir() {
                if !only_state || is_state {
                    out.insert(path.clone(), format!("dir {mtime}"));
                }
                walk(&path, only_state && !is_state, out);
            } else if !only_state || is_state {
                let mut hash = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&path).unwrap_or_default().hash(&mut hash);
                out.insert(
                    path,
                    format!("file {} {:016x} {mtime}", meta.len(), hash.finish()),
                );
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    for dir in backends {
        if dir.exists() {
            out.insert(dir.clone(), "backend dir".into());
        }
        walk(dir, false, &mut out);
    }
    for dir in checkouts {
        walk(dir, true, &mut out);
    }
    out
}

/// A backend block keeping state outside the repo, where the test applies it.
fn backend(state: &Path) -> String {
    format!(
        "terraform {{\n  backend \"local\" {{\n    path = {:?}\n  }}\n}}\n",
        state.to_str().unwrap()
    )
}

fn data_resource(name: &str, input: &str) -> String {
    format!("resource \"terraform_data\" \"{name}\" {{\n  input = {input}\n}}\n")
}

/// `terraform` on PATH, new enough for the built-in `terraform_data` (>= 1.4).
/// The installer's fallback on a machine without Terraform is 1.0.3, which
/// lacks it: those tests then skip (even under DRIFTWATCH_REQUIRE_TOOLS) and
/// the 1.0.3 + null provider test covers the layer.
pub(crate) fn have_terraform() -> bool {
    if !common::have_tool("terraform") {
        return false;
    }
    static VERSION: std::sync::OnceLock<Option<(u64, u64)>> = std::sync::OnceLock::new();
    let version = VERSION.get_or_init(|| {
        let out = std::process::Command::new("terraform")
            .args(["version", "-json"])
            .env("TF_CLI_CONFIG_FILE", "/dev/null")
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .ok()?;
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let mut parts = doc["terraform_version"]
            .as_str()?
            .split('.')
            .map(|p| p.parse::<u64>().ok());
        Some((parts.next()??, parts.next()??))
    });
    match version {
        Some(v) if *v >= (1, 4) => true,
        _ => {
            eprintln!("skipping: terraform_data needs Terraform >= 1.4 (found {version:?})");
            false
        }
    }
}

fn ok(result: Result<Outcome, ProbeError>) -> Outcome {
    match result {
        Ok(outcome) => outcome,
        Err(e) => panic!(
            "probe error ({:?}): {}\n{}",
            e.reason, e.message, e.stderr_tail
        ),
    }
}

#[tokio::test]
async fn in_sync_then_an_unapplied_commit_drifts_and_init_is_reused() {
    if !have_terraform() {
        return;
    }
    let f = Fixture::new("terraform");
    let state = f.path("state/terraform.tfstate");
    let main =
        backend(&state) + &data_resource("web", "\"one\"") + &data_resource("db", "\"stable\"");
    common::init_repo(&f.repo(), &[("main.tf", &main)]);
    f.apply(&f.repo(), &[]);
    let probe = f.probe("");

    let first = f.checkout("c1");
    let outcome = ok(f.run(&probe, &first, "").await);
    assert_eq!(outcome.verdict(), Verdict::InSync);
    assert_eq!(outcome.exit_code, Some(0));
    assert!(outcome.changes.is_empty());
    assert_eq!(outcome.details["init"], "ran");

    // The same commit again: no init work at all.
    let again = ok(f.run(&probe, &first, "").await);
    assert_eq!(again.verdict(), Verdict::InSync);
    assert_eq!(again.details["init"], "skipped");

    // A new commit edits an attribute and is never applied.
    let edited =
        backend(&state) + &data_resource("web", "\"two\"") + &data_resource("db", "\"stable\"");
    common::commit_files(&f.repo(), &[("main.tf", &edited)], "web: two");
    let second = f.checkout("c2");
    let outcome = ok(f.run(&probe, &second, "").await);
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert_eq!(outcome.exit_code, Some(2));
    let subjects: Vec<(&str, &str)> = outcome
        .changes
        .iter()
        .map(|c| (c.subject.as_str(), c.action.as_str()))
        .collect();
    assert_eq!(subjects, [("terraform_data.web", "update")]);
    let web = &outcome.changes[0];
    assert_eq!(web.origin.as_deref(), Some("config"));
    assert!(
        web.diff.contains("~ input: \"one\" → \"two\""),
        "{}",
        web.diff
    );
    // A new checkout that only edits a resource reuses the initialized cache.
    assert_eq!(outcome.details["init"], "skipped");
    assert_eq!(outcome.details["resources"]["update"], 1);
    assert_eq!(outcome.message, "Plan: 0 to add, 1 to change, 0 to destroy");
    // The plan file is gone.
    assert!(!f.path("scratch-").join("driftwatch.tfplan").exists());
}

#[tokio::test]
async fn reality_changing_outside_the_repo_is_drift_from_outside() {
    if !have_terraform() {
        return;
    }
    let f = Fixture::new("terraform");
    let state = f.path("state/terraform.tfstate");
    let external = f.path("external/size.txt");
    std::fs::create_dir_all(external.parent().unwrap()).unwrap();
    std::fs::write(&external, "small").unwrap();
    let input = format!(
        "fileexists({0:?}) ? file({0:?}) : \"absent\"",
        external.to_str().unwrap()
    );
    let main = backend(&state) + &data_resource("size", &input);
    common::init_repo(&f.repo(), &[("main.tf", &main)]);
    f.apply(&f.repo(), &[]);
    let probe = f.probe("");
    let checkout = f.checkout("c1");
    assert_eq!(
        ok(f.run(&probe, &checkout, "").await).verdict(),
        Verdict::InSync
    );

    // Reality moves; git does not.
    std::fs::write(&external, "large").unwrap();
    let outcome = ok(f.run(&probe, &checkout, "").await);
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert_eq!(outcome.changes.len(), 1, "{:?}", outcome.changes);
    let change = &outcome.changes[0];
    assert_eq!(
        (change.subject.as_str(), change.action.as_str()),
        ("terraform_data.size", "update")
    );
    assert_eq!(change.origin.as_deref(), Some("outside"), "{change:?}");
    assert!(
        change.diff.contains("\"small\" → \"large\""),
        "{}",
        change.diff
    );
    assert_eq!(outcome.details["origin_inferred"], true);
}

#[tokio::test]
async fn a_syntax_error_is_an_error_naming_file_and_line_never_drift() {
    if !have_terraform() {
        return;
    }
    let f = Fixture::new("terraform");
    let state = f.path("state/terraform.tfstate");
    let main = backend(&state) + &data_resource("a", "\"x\"");
    common::init_repo(&f.repo(), &[("main.tf", &main)]);
    f.apply(&f.repo(), &[]);
    let probe = f.probe("");
    assert_eq!(
        ok(f.run(&probe, &f.checkout("c1"), "").await).verdict(),
        Verdict::InSync
    );

    // Line 8 of network.tf is the bad block (the cache is initialized, so plan reports it).
    let broken = "# comment\n\n\n\n\n\n\nfoo {\n}\n";
    common::commit_files(&f.repo(), &[("network.tf", broken)], "broken");
    let err = f.run(&probe, &f.checkout("c2"), "").await.unwrap_err();
    assert_eq!(err.reason, ErrorReason::Input, "{err:?}");
    assert_eq!(err.exit_code, Some(1));
    assert!(
        err.message.contains("network.tf:8: Unsupported block type"),
        "{}",
        err.message
    );
    assert!(
        err.stderr_tail.contains("Unsupported block type"),
        "{}",
        err.stderr_tail
    );

    // A cold cache fails in init instead: still an error naming the spot.
    let cold = Fixture::new("terraform");
    common::init_repo(&cold.repo(), &[("main.tf", &main), ("network.tf", broken)]);
    let err = cold
        .run(&cold.probe(""), &cold.checkout("c1"), "")
        .await
        .unwrap_err();
    assert_eq!(err.reason, ErrorReason::Input, "{err:?}");
    assert!(err.message.contains("init failed"), "{}", err.message);
    assert!(
        err.message.contains("network.tf:8: Unsupported block type"),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn a_failing_init_is_an_error() {
    if !have_terraform() {
        return;
    }
    let f = Fixture::new("terraform");
    let main = "module \"net\" {\n  source = \"./modules/missing\"\n}\n";
    common::init_repo(&f.repo(), &[("main.tf", main)]);
    let err = f
        .run(&f.probe(""), &f.checkout("c1"), "")
        .await
        .unwrap_err();
    assert!(err.message.contains("init failed"), "{}", err.message);
    assert!(
        err.message
            .contains("main.tf:1: Unreadable module directory"),
        "{}",
        err.message
    );
    assert!(err.partial_changes.is_empty());
}

fn report(result: Result<Outcome, ProbeError>) -> RunReport {
    crate::common::report("tf", "terraform", result)
}

#[tokio::test]
async fn sensitive_values_never_reach_the_report_or_logs() {
    if !have_terraform() {
        return;
    }
    let (captured, _guard) = common::Captured::start();

    let f = Fixture::new("terraform");
    let state = f.path("state/terraform.tfstate");
    let old_secret = "old-s3cret-Value-4711";
    let new_secret = "new-s3cret-Value-0815";
    let main = backend(&state)
        + "variable \"db_password\" {\n  type      = string\n  sensitive = true\n}\n"
        + &data_resource("db", "var.db_password")
        + &data_resource("name", "\"app\"")
        + "output \"password\" {\n  value     = var.db_password\n  sensitive = true\n}\n";
    common::init_repo(&f.repo(), &[("main.tf", &main)]);
    f.apply(&f.repo(), &[("TF_VAR_db_password", old_secret)]);

    // The new value comes through the probe's `vars` (written to a scratch tfvars file).
    let probe = f.probe(&format!("vars = {{ db_password = {new_secret:?} }}"));
    let checkout = f.checkout("c1");
    let outcome = ok(f.run(&probe, &checkout, "").await);
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    let subjects: Vec<&str> = outcome.changes.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(subjects, ["terraform_data.db", "output.password"]);
    assert!(
        outcome.changes[0].diff.contains("(sensitive value)"),
        "{}",
        outcome.changes[0].diff
    );

    // A secret read from a file each run (`env_files`) is masked the same way.
    let file_secret = "file-s3cret-Value-9999";
    let secret_file = f.path("db_password");
    std::fs::write(&secret_file, format!("{file_secret}\n")).unwrap();
    let from_file = f.probe(&format!(
        "env_files = {{ TF_VAR_db_password = {:?} }}",
        secret_file.to_str().unwrap()
    ));
    let file_outcome = ok(f.run(&from_file, &checkout, "").await);
    assert_eq!(file_outcome.changes[0].subject, "terraform_data.db");

    // A credential passed through the environment is masked on error paths
    // too, even where Terraform echoes it (here in an invalid -target).
    std::env::set_var("DRIFTWATCH_TEST_TF_SECRET", new_secret);
    let failing = f.probe(&format!(
        "pass_env = [\"DRIFTWATCH_TEST_TF_SECRET\"]\nplan_args = [\"-target={new_secret}\"]"
    ));
    let failed = f.run(&failing, &checkout, "").await;
    let error = failed.clone().unwrap_err();
    assert!(error.message.contains("(sensitive value)"), "{error:?}");

    let json = serde_json::to_string(&report(Ok(outcome))).unwrap()
        + &serde_json::to_string(&report(Ok(file_outcome))).unwrap()
        + &serde_json::to_string(&report(failed)).unwrap();
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    for secret in [old_secret, new_secret, file_secret] {
        assert!(!json.contains(secret), "secret in report: {json}");
        assert!(!logs.contains(secret), "secret in logs: {logs}");
    }
    // Nothing secret is left on disk in the scratch dir either.
    let leftovers: Vec<_> = std::fs::read_dir(f.path("scratch-"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[tokio::test]
async fn two_roots_from_one_glob_run_in_parallel_with_separate_results() {
    if !have_terraform() {
        return;
    }
    let f = Fixture::new("terraform");
    let stack = |name: &str, value: &str| {
        backend(&f.path(&format!("state/{name}.tfstate")))
            + &data_resource("x", &format!("{value:?}"))
    };
    common::init_repo(
        &f.repo(),
        &[
            ("stacks/a/main.tf", &stack("a", "1")),
            ("stacks/b/main.tf", &stack("b", "1")),
            ("stacks/docs/README.md", "not a root"),
        ],
    );
    f.apply(&f.repo().join("stacks/a"), &[]);
    f.apply(&f.repo().join("stacks/b"), &[]);
    common::commit_files(
        &f.repo(),
        &[("stacks/b/main.tf", &stack("b", "2"))],
        "b changes",
    );

    let probe = f.probe("roots = [\"stacks/*\"]\nparallelism = 3");
    let checkout = f.checkout("c1");
    assert_eq!(
        probe.roots(&checkout).unwrap().roots,
        ["stacks/a", "stacks/b"]
    );
    assert_eq!(probe.parallelism(), 3);

    let timeout = Duration::from_secs(120);
    let (cx_a, cx_b) = (
        f.context(&checkout, "stacks/a", timeout),
        f.context(&checkout, "stacks/b", timeout),
    );
    let watch = f.watch(&checkout);
    let (a, b) = tokio::join!(probe.run(&cx_a), probe.run(&cx_b));
    watch.assert_untouched();
    let (a, b) = (ok(a), ok(b));
    assert_eq!(a.verdict(), Verdict::InSync);
    assert_eq!(a.details["root"], "stacks/a");
    assert_eq!(b.verdict(), Verdict::Drifted);
    assert_eq!(b.details["root"], "stacks/b");
    assert_eq!(b.changes[0].subject, "terraform_data.x");
    // Each root keeps its own initialized data directory.
    let roots: Vec<_> = std::fs::read_dir(f.path("probe/cache/roots"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(roots.len(), 2);
}

/// Processes whose working directory is `dir` (Terraform and its plugins).
fn processes_in(dir: &Path) -> Vec<String> {
    let dir = dir.canonicalize().unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) {
            if cwd == dir {
                let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
                found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
            }
        }
    }
    found
}

#[tokio::test]
async fn a_timeout_kills_terraform_and_leaves_nothing_behind() {
    if !have_terraform() {
        return;
    }
    // An HTTP "state server" that accepts connections and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    let f = Fixture::new("terraform");
    let main = backend(&f.path("state/terraform.tfstate"))
        + &format!(
        "data \"terraform_remote_state\" \"net\" {{\n  backend = \"http\"\n  config = {{ address = \"http://127.0.0.1:{port}/state\" }}\n}}\n{}",
        data_resource("x", "data.terraform_remote_state.net.outputs")
    );
    common::init_repo(&f.repo(), &[("main.tf", &main)]);
    let checkout = f.checkout("c1");
    let probe = f.probe("");
    let watch = f.watch(&checkout);
    let err = probe
        .run(&f.context(&checkout, "", Duration::from_secs(10)))
        .await
        .unwrap_err();
    watch.assert_untouched();
    assert_eq!(err.reason, ErrorReason::Timeout, "{err:?}");
    let left = processes_in(&checkout);
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let scratch: Vec<_> = std::fs::read_dir(f.path("scratch-"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(scratch.is_empty(), "plan file left behind: {scratch:?}");
}

/// Every Terraform process gets its run's marker, and whatever it starts
/// that leaves its process group (a plugin that daemonizes; here a wrapper
/// that starts setsid, double-fork and setpgrp children first) is gone when
/// the run ends.
#[tokio::test]
async fn whatever_terraform_starts_is_gone_when_the_run_ends() {
    if !have_terraform() {
        return;
    }
    let mut f = Fixture::new("terraform");
    let state = f.path("state/terraform.tfstate");
    common::init_repo(
        &f.repo(),
        &[(
            "main.tf",
            &(backend(&state) + &data_resource("web", "\"one\"")),
        )],
    );
    f.apply(&f.repo(), &[]);
    let escapees = common::Escapees::new(&f.path("pids"));
    let script = f.path("escape.sh");
    std::fs::write(&script, escapees.script("exit 0")).unwrap();
    let markers = f.path("markers.log");
    let wrapper = f.path("terraform-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"run=$DRIFTWATCH_RUN\" >> {markers}\n[ -e {once} ] || {{ : > {once}; sh {script}; }}\nexec {real} \"$@\"\n",
            markers = markers.display(),
            once = f.path("escaped-once").display(),
            script = script.display(),
            real = common::which("terraform").unwrap().display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    f.binary = wrapper.display().to_string();
    let probe = f.probe("");
    let checkout = f.checkout("c1");
    let result = f.run(&probe, &checkout, "").await;
    let started = escapees.started();
    let survivors = escapees.survivors();
    escapees.cleanup();
    assert_eq!(ok(result).verdict(), Verdict::InSync);
    assert!(started, "the wrapper never started its children");
    assert!(survivors.is_empty(), "outlived the run: {survivors:?}");
    // Each Terraform command (init, plan, show, …) ran with a marker of its own.
    let lines: Vec<String> = std::fs::read_to_string(&markers)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(lines.len() >= 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.len() > "run=".len()), "{lines:?}");
    let distinct: std::collections::BTreeSet<&String> = lines.iter().collect();
    assert_eq!(distinct.len(), lines.len(), "{lines:?}");
}

#[tokio::test]
async fn a_missing_binary_fails_preflight_clearly() {
    let f = Fixture::new("/nonexistent/bin/terraform");
    let probe = f.probe("");
    let problems = probe.preflight().await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("\"/nonexistent/bin/terraform\" cannot be run"),
        "{}",
        problems[0]
    );
    assert!(
        problems[0].contains("install Terraform >= 0.15.4"),
        "{}",
        problems[0]
    );

    common::init_repo(&f.repo(), &[("main.tf", "")]);
    let err = f.run(&probe, &f.checkout("c1"), "").await.unwrap_err();
    assert_eq!(err.reason, ErrorReason::Spawn);

    if have_terraform() {
        let fixture = Fixture::new("terraform");
        let good = fixture.probe("");
        assert_eq!(good.preflight().await, Vec::<String>::new());
    }
}

#[test]
fn read_only_violations_are_config_errors() {
    let errors = match common::build_probe(
        "terraform",
        "tf",
        "",
        "plan_args = [\"-refresh-only\"]\ninit_args = [\"-migrate-state\"]",
    ) {
        Ok(_) => panic!("accepted"),
        Err(errors) => errors,
    };
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["init_args[0]", "plan_args[0]"]);
}

#[test]
fn bad_ignore_rules_are_config_errors_naming_the_rule() {
    let build = |fields: &str| match common::build_probe("terraform", "tf", "", fields) {
        Ok(_) => panic!("accepted: {fields}"),
        Err(errors) => errors,
    };
    let errors = build(
        "[[ignore]]\naddress = \"aws_instance.*\"\n\n[[ignore]]\naddress = \"\"\nattributes = [\"tags.\"]\n",
    );
    let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["ignore[1].address", "ignore[1].attributes[0]"]);
    let errors = build("[[ignore]]\naddres = \"x\"\n");
    assert!(errors[0].key.starts_with("ignore[0]"), "{errors:?}");
    assert!(errors[0].message.contains("unknown field"), "{errors:?}");
}

/// Applies another stack, outside the repo, whose `cidr` output the tests'
/// roots read through `terraform_remote_state`. Returns its state file.
fn apply_network(f: &Fixture, cidr: &str) -> PathBuf {
    let state = f.path("state/network.tfstate");
    let dir = f.path("network");
    std::fs::create_dir_all(&dir).unwrap();
    let main = backend(&state) + &format!("output \"cidr\" {{\n  value = {cidr:?}\n}}\n");
    std::fs::write(dir.join("main.tf"), main).unwrap();
    f.apply(&dir, &[]);
    state
}

/// Terraform 1.0.3 and hashicorp/null 2.1.2 from the installer's offline mirror.
fn terraform_1_0_3() -> Option<(String, PathBuf)> {
    if !common::have_tool("terraform-1.0.3") {
        return None;
    }
    let bin = common::which("terraform-1.0.3").unwrap();
    let rc = bin.parent()?.parent()?.join("terraform-offline.tfrc");
    assert!(rc.is_file(), "the installer writes {}", rc.display());
    Some((bin.to_string_lossy().into_owned(), rc))
}

#[tokio::test]
async fn terraform_1_0_3_with_the_null_provider_and_remote_state() {
    let Some((bin, rc)) = terraform_1_0_3() else {
        return;
    };
    let mut f = Fixture::new(&bin);
    f.cli_config = rc;

    // Another stack whose output this one reads through terraform_remote_state.
    let network_state = apply_network(&f, "10.0.0.0/16");

    let state = f.path("state/app.tfstate");
    let app = |tag: &str| {
        backend(&state)
            + &format!(
                "data \"terraform_remote_state\" \"net\" {{\n  backend = \"local\"\n  config = {{ path = {:?} }}\n}}\n",
                network_state.to_str().unwrap()
            )
            + &format!(
                "resource \"null_resource\" \"app\" {{\n  triggers = {{\n    cidr = data.terraform_remote_state.net.outputs.cidr\n    tag  = {tag:?}\n  }}\n}}\n"
            )
    };
    // No lock file in git: the probe's own init generates one and reuses it.
    common::init_repo(
        &f.repo(),
        &[
            ("main.tf", &app("v1")),
            (".gitignore", ".terraform.lock.hcl\n"),
        ],
    );
    f.apply(&f.repo(), &[]);
    let probe = f.probe("");
    let first = f.checkout("c1");
    let outcome = ok(f.run(&probe, &first, "").await);
    assert_eq!(outcome.verdict(), Verdict::InSync);
    assert_eq!(outcome.details["init"], "ran");

    // The other stack changes: reality moved, no commit here.
    apply_network(&f, "10.1.0.0/16");
    let outcome = ok(f.run(&probe, &first, "").await);
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    let change = &outcome.changes[0];
    assert_eq!(
        (change.subject.as_str(), change.action.as_str()),
        ("null_resource.app", "replace")
    );
    assert_eq!(change.origin.as_deref(), Some("outside"));
    assert!(
        change
            .diff
            .contains("~ triggers.cidr: \"10.0.0.0/16\" → \"10.1.0.0/16\""),
        "{}",
        change.diff
    );
    assert_eq!(outcome.details["terraform_version"], "1.0.3");
    assert_eq!(outcome.details["init"], "skipped");

    // A commit changes the config: drift from config, and the new checkout
    // (without a lock file in git) still needs no init.
    common::commit_files(&f.repo(), &[("main.tf", &app("v2"))], "tag v2");
    let outcome = ok(f.run(&probe, &f.checkout("c2"), "").await);
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert_eq!(outcome.changes[0].origin.as_deref(), Some("config"));
    assert_eq!(outcome.details["init"], "skipped");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk_files(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Stops the daemon when the test ends, however it ends.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn http_get(url: &str) -> Option<String> {
    let response = reqwest::get(url).await.ok()?;
    response.text().await.ok()
}

#[tokio::test]
async fn the_daemon_and_check_report_roots_separately_and_never_leak_secrets() {
    if !have_terraform() {
        return;
    }
    let f = Fixture::new("terraform");
    let old_secret = "old-Daemon-s3cret-1234";
    let new_secret = "new-Daemon-s3cret-5678";
    let stack = |name: &str, uses_secret: bool, sensitive: bool| {
        let mut text = backend(&f.path(&format!("state/{name}.tfstate")))
            + &format!("variable \"db_password\" {{\n  type      = string\n  sensitive = {sensitive}\n}}\n");
        if uses_secret {
            text += &data_resource("db", "var.db_password");
        }
        text + &data_resource("web", "\"static\"")
    };
    // Stack b's password was applied in clear; the repo now marks it sensitive.
    common::init_repo(
        &f.repo(),
        &[
            ("stacks/a/main.tf", &stack("a", false, true)),
            ("stacks/b/main.tf", &stack("b", true, false)),
        ],
    );
    f.apply(
        &f.repo().join("stacks/a"),
        &[("TF_VAR_db_password", old_secret)],
    );
    f.apply(
        &f.repo().join("stacks/b"),
        &[("TF_VAR_db_password", old_secret)],
    );
    common::commit_files(
        &f.repo(),
        &[("stacks/b/main.tf", &stack("b", true, true))],
        "db_password is sensitive",
    );

    let port = common::free_port();
    let config = f.path("driftwatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "{state}"

[server]
listen = "127.0.0.1:{port}"

[defaults]
timeout = "120s"
kill_grace = "2s"

[[repo]]
name = "infra"
url = "file://{repo}"
branch = "main"
poll_interval = "1s"

[[probe]]
name = "tf"
layer = "terraform"
repo = "infra"
schedule = ""
roots = ["stacks/*"]
cli_config_file = "{cli}"
vars = {{ db_password = "{new_secret}" }}
"#,
            state = f.path("state-dir").display(),
            repo = f.repo().display(),
            cli = f.cli_config.display(),
        ),
    )
    .unwrap();

    // The daemon's checkouts live in its state dir; none holds state.
    let watch = BackendWatch::new(vec![f.path("state")], vec![f.path("state-dir/checkouts")]);
    let log = f.path("daemon.log");
    let daemon = Daemon(
        std::process::Command::new(common::driftwatch_bin())
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "debug")
            .stdout(std::fs::File::create(f.path("daemon.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let mut last: Option<String>;
    let metrics = loop {
        last = http_get(&format!("{base}/metrics")).await;
        if let Some(body) = last.clone() {
            // One series per root; the probe label is the probe's name.
            let series = |root: &str, value: &str| {
                body.lines().any(|l| {
                    l == format!("terradiff_plan_exit_code{{probe=\"tf\",root=\"{root}\"}} {value}")
                })
            };
            let a = series("stacks/a", "0");
            let b = series("stacks/b", "2");
            if a && b {
                assert!(
                    !body.contains("probe=\"tf:") && !body.contains("probe=\"tf\",root=\"\""),
                    "series keyed by instance id, or a root-less series for a multi-root probe:\n{body}"
                );
                break body;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "no terraform verdicts on /metrics ({last:?}); log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // The list, then every instance in full (changes are per instance).
    let mut api = http_get(&format!("{base}/api/v1/probes")).await.unwrap();
    let list: serde_json::Value = serde_json::from_str(&api).unwrap();
    for probe in list["probes"].as_array().unwrap() {
        let id = driftwatch::http::html::encode_segment(probe["id"].as_str().unwrap());
        api += &http_get(&format!("{base}/api/v1/probes/{id}"))
            .await
            .unwrap();
    }
    assert!(api.contains("terraform_data.db"), "{api}");
    assert!(api.contains("stacks/b"), "{api}");
    assert!(
        api.contains("~ input: (sensitive value)"),
        "masked on both sides: {api}"
    );
    for path in [
        "/api/v1/probes/tf/runs",
        "/probes/tf",
        "/api/v1/events",
        "/",
    ] {
        api += &http_get(&format!("{base}{path}")).await.unwrap_or_default();
    }
    drop(daemon);
    let logs = std::fs::read_to_string(&log).unwrap();

    // `check` gives the same per-root verdicts, as JSON, and exits 2.
    let check = std::process::Command::new(common::driftwatch_bin())
        .args(["check", "--format", "json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&check.stderr).into_owned();
    assert_eq!(check.status.code(), Some(2), "{stdout}\n{stderr}");
    watch.assert_untouched();
    assert!(
        stdout.contains("terraform_data.db") && stdout.contains("stacks/a"),
        "{stdout}"
    );

    for (what, text) in [
        ("/metrics", &metrics),
        ("/api/v1/probes", &api),
        ("daemon log", &logs),
        ("check", &(stdout + &stderr)),
    ] {
        for secret in [old_secret, new_secret] {
            assert!(!text.contains(secret), "secret in {what}: {text}");
        }
    }
    // Nothing driftwatch keeps on disk (state, history, caches, checkouts) holds them.
    for file in walk_files(&f.path("state-dir")) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for secret in [old_secret, new_secret] {
            assert!(!text.contains(secret), "secret in {}", file.display());
        }
    }
}

#[tokio::test]
async fn each_workspace_is_its_own_instance() {
    if !have_terraform() {
        return;
    }
    let f = Fixture::new("terraform");
    let states = f.path("state");
    let main = |blue: &str| {
        format!(
            "terraform {{\n  backend \"local\" {{\n    path          = {:?}\n    workspace_dir = {:?}\n  }}\n}}\n{}",
            states.join("default.tfstate").to_str().unwrap(),
            states.join("workspaces").to_str().unwrap(),
            data_resource("x", &format!("terraform.workspace == \"blue\" ? {blue:?} : \"default\""))
        )
    };
    common::init_repo(&f.repo(), &[("main.tf", &main("b1"))]);
    f.apply(&f.repo(), &[]);
    f.terraform(&f.repo(), &["workspace", "new", "-no-color", "blue"], &[]);
    f.apply(&f.repo(), &[("TF_WORKSPACE", "blue")]);
    common::commit_files(&f.repo(), &[("main.tf", &main("b2"))], "blue changes");

    let probe = f.probe("workspaces = [\"default\", \"blue\"]");
    let checkout = f.checkout("c1");
    assert_eq!(probe.roots(&checkout).unwrap().roots, ["@default", "@blue"]);
    let default = ok(f.run(&probe, &checkout, "@default").await);
    assert_eq!(default.verdict(), Verdict::InSync);
    assert_eq!(default.details["workspace"], "default");
    let blue = ok(f.run(&probe, &checkout, "@blue").await);
    assert_eq!(blue.verdict(), Verdict::Drifted);
    assert_eq!(blue.details["workspace"], "blue");
    assert!(
        blue.changes[0].diff.contains("\"b1\" → \"b2\""),
        "{}",
        blue.changes[0].diff
    );
    // Nothing was selected on disk: the checkout has no workspace state.
    assert!(!checkout.join(".terraform").exists());
}

/// A `check` block with a scoped `terraform_remote_state` makes Terraform
/// plan a read on every plan and exit 2 with nothing to apply: in sync, with
/// a note. A failing assertion is a warning, still not drift nor an error.
#[tokio::test]
async fn a_check_block_read_is_in_sync_and_a_failed_assertion_is_a_warning() {
    if !have_terraform() {
        return;
    }
    let f = Fixture::new("terraform");
    let network_state = apply_network(&f, "10.0.0.0/16");

    let main = backend(&f.path("state/app.tfstate"))
        + &data_resource("app", "\"v1\"")
        + "output \"name\" {\n  value = \"app\"\n}\n"
        + &format!(
            "check \"network\" {{\n  data \"terraform_remote_state\" \"net\" {{\n    backend = \"local\"\n    config  = {{ path = {:?} }}\n  }}\n  assert {{\n    condition     = data.terraform_remote_state.net.outputs.cidr == \"10.0.0.0/16\"\n    error_message = \"the network moved\"\n  }}\n}}\n",
            network_state.to_str().unwrap()
        );
    common::init_repo(&f.repo(), &[("main.tf", &main)]);
    f.apply(&f.repo(), &[]);
    let probe = f.probe("");
    let checkout = f.checkout("c1");

    let outcome = ok(f.run(&probe, &checkout, "").await);
    assert_eq!(outcome.exit_code, Some(2), "Terraform itself exits 2 here");
    assert_eq!(outcome.verdict(), Verdict::InSync, "{outcome:?}");
    assert!(outcome.changes.is_empty());
    assert!(outcome.warnings.is_empty(), "{:?}", outcome.warnings);
    assert_eq!(
        outcome.details["planned_instead"],
        serde_json::json!(["data.terraform_remote_state.net: read (read_because_check_nested)"])
    );
    assert_eq!(outcome.details["checks"]["check.network"], "pass");
    assert!(
        outcome.details["note"]
            .as_str()
            .unwrap()
            .contains("exited 2, but no resource or output would change"),
        "{}",
        outcome.details
    );

    // The other stack moves: the assertion fails. A warning, not drift.
    apply_network(&f, "10.9.0.0/16");
    let outcome = ok(f.run(&probe, &checkout, "").await);
    assert_eq!(outcome.verdict(), Verdict::InSync, "{outcome:?}");
    assert_eq!(
        outcome.warnings,
        ["check.network: assertion failed: the network moved"]
    );
    let report = report(Ok(outcome));
    assert_eq!(report.verdict, Verdict::InSync);
    let state = Arc::new(driftwatch::state::State::ephemeral());
    state.record(&report);
    let metrics = driftwatch::metrics::Metrics::new(state, &Default::default(), 100);
    metrics.register_probe("tf", "terraform", &Default::default(), 0.0);
    metrics.observe(&report);
    let exposition = metrics.render();
    let series = |name: &str| {
        exposition
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .unwrap_or_else(|| panic!("no {name} in {exposition}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_string()
    };
    assert_eq!(series("driftwatch_probe_warnings"), "1");
    assert_eq!(series("driftwatch_probe_result"), "0");

    // A real change next to the read is still drift, and only it is listed.
    common::commit_files(
        &f.repo(),
        &[("main.tf", &main.replace("\"v1\"", "\"v2\""))],
        "v2",
    );
    let outcome = ok(f.run(&probe, &f.checkout("c2"), "").await);
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    let subjects: Vec<&str> = outcome.changes.iter().map(|c| c.subject.as_str()).collect();
    assert_eq!(subjects, ["terraform_data.app"]);

    // A check without a data source that fails: Terraform exits 0 and only
    // prints a warning; the probe still reports it.
    let plain_check = backend(&f.path("state/app.tfstate"))
        + &data_resource("app", "\"v1\"")
        + "output \"name\" {\n  value = \"app\"\n}\n"
        + "check \"version\" {\n  assert {\n    condition     = terraform_data.app.output == \"v9\"\n    error_message = \"app is not at v9\"\n  }\n}\n";
    common::commit_files(&f.repo(), &[("main.tf", &plain_check)], "plain check");
    let outcome = ok(f.run(&probe, &f.checkout("c3"), "").await);
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(outcome.verdict(), Verdict::InSync, "{outcome:?}");
    assert_eq!(
        outcome.warnings,
        ["check.version: assertion failed: app is not at v9"]
    );
}

/// A workspace typo (`prodd` for `prod`) is an error naming the ones that
/// exist, cold or with the cache already initialized, and the backend gains
/// no `prodd/` directory (the watch in `Fixture::run` checks that).
#[tokio::test]
async fn a_missing_workspace_is_an_error_and_nothing_is_created() {
    if !have_terraform() {
        return;
    }
    let f = Fixture::new("terraform");
    let states = f.path("state");
    let main = format!(
        "terraform {{\n  backend \"local\" {{\n    path          = {:?}\n    workspace_dir = {:?}\n  }}\n}}\n{}",
        states.join("default.tfstate").to_str().unwrap(),
        states.join("workspaces").to_str().unwrap(),
        data_resource("x", "terraform.workspace")
    );
    common::init_repo(&f.repo(), &[("main.tf", &main)]);
    f.apply(&f.repo(), &[]);
    f.terraform(&f.repo(), &["workspace", "new", "-no-color", "prod"], &[]);
    f.apply(&f.repo(), &[("TF_WORKSPACE", "prod")]);
    let checkout = f.checkout("c1");
    let typo = f.probe("workspace = \"prodd\"");
    let expected = "workspace \"prodd\" does not exist; existing: default, prod";

    // Cold.
    let err = f.run(&typo, &checkout, "").await.unwrap_err();
    assert_eq!(err.reason, ErrorReason::Input, "{err:?}");
    assert_eq!(err.message, expected);

    // Warm: the cache was initialized for `prod` (same root, same init inputs).
    let prod = ok(f.run(&f.probe("workspace = \"prod\""), &checkout, "").await);
    assert_eq!(prod.verdict(), Verdict::InSync);
    assert_eq!(prod.details["workspace"], "prod");
    let err = f.run(&typo, &checkout, "").await.unwrap_err();
    assert_eq!(err.message, expected);

    // The same with `workspaces`: each missing one is its own error.
    let both = f.probe("workspaces = [\"prod\", \"prodd\"]");
    assert_eq!(
        ok(f.run(&both, &checkout, "@prod").await).verdict(),
        Verdict::InSync
    );
    let err = f.run(&both, &checkout, "@prodd").await.unwrap_err();
    assert_eq!(err.message, expected);
    assert!(!states.join("workspaces/prodd").exists());
}

/// State in a local file that is not in driftwatch's clone is an error that
/// says how to fix it, never a false "Plan: N to add". A `path` repo (the
/// working tree itself, where the state file is) works.
#[tokio::test]
async fn local_state_missing_from_the_clone_is_an_error() {
    if !have_terraform() {
        return;
    }
    // (case, backend block, workspace, where the state lands in the work tree)
    let cases = [
        ("no backend block", "", None, "terraform.tfstate"),
        (
            "local backend without a path",
            "terraform {\n  backend \"local\" {}\n}\n",
            None,
            "terraform.tfstate",
        ),
        (
            "a relative path",
            "terraform {\n  backend \"local\" {\n    path = \"state/app.tfstate\"\n  }\n}\n",
            None,
            "state/app.tfstate",
        ),
        (
            "a workspace in the default workspace_dir",
            "",
            Some("blue"),
            "terraform.tfstate.d/blue/terraform.tfstate",
        ),
    ];
    for (case, backend_block, workspace, state_file) in cases {
        let f = Fixture::new("terraform");
        let main = backend_block.to_string() + &data_resource("x", "\"v1\"");
        common::init_repo(&f.repo(), &[("main.tf", &main)]);
        let mut env = Vec::new();
        if let Some(workspace) = workspace {
            f.terraform(&f.repo(), &["init", "-input=false", "-no-color"], &[]);
            f.terraform(
                &f.repo(),
                &["workspace", "new", "-no-color", workspace],
                &[],
            );
            env.push(("TF_WORKSPACE", workspace));
        }
        f.apply(&f.repo(), &env);
        assert!(f.repo().join(state_file).is_file(), "{case}");
        let probe = match workspace {
            Some(w) => f.probe(&format!("workspace = {w:?}")),
            None => f.probe(""),
        };

        let err = f.run(&probe, &f.checkout("c1"), "").await.unwrap_err();
        assert_eq!(err.reason, ErrorReason::Checkout, "{case}: {err:?}");
        assert!(
            err.message.starts_with(&format!(
                "the state is not where Terraform looks: {state_file} is not in driftwatch's clone"
            )),
            "{case}: {}",
            err.message
        );
        assert!(
            err.message.contains("configure a backend")
                && err.message.contains("absolute `path`")
                && err.message.contains("`path` repo"),
            "{case}: {}",
            err.message
        );

        // The work tree itself (a `path` repo) has the state: in sync.
        let outcome = ok(f.run(&probe, &f.repo(), "").await);
        assert_eq!(outcome.verdict(), Verdict::InSync, "{case}: {outcome:?}");
    }
}

/// A variable applied in clear and later marked sensitive, with a new value:
/// Terraform's own plan shows "(sensitive value)" on both sides, and so must
/// every report (the old value is in state unmarked).
#[tokio::test]
async fn a_value_applied_in_clear_then_marked_sensitive_is_masked_on_both_sides() {
    if !have_terraform() {
        return;
    }
    let (captured, _guard) = common::Captured::start();

    let f = Fixture::new("terraform");
    let old = "OLDPASS-applied-in-clear-42";
    let new = "NEWPASS-now-sensitive-43";
    let main = |sensitive: bool| {
        backend(&f.path("state/terraform.tfstate"))
            + &format!("variable \"password\" {{\n  type      = string\n  sensitive = {sensitive}\n}}\n")
            + &data_resource("input", "var.password")
            + &format!("output \"password\" {{\n  value     = var.password\n  sensitive = {sensitive}\n}}\n")
    };
    common::init_repo(&f.repo(), &[("main.tf", &main(false))]);
    f.apply(&f.repo(), &[("TF_VAR_password", old)]);
    common::commit_files(
        &f.repo(),
        &[("main.tf", &main(true))],
        "password is sensitive",
    );

    let probe = f.probe(&format!("vars = {{ password = {new:?} }}"));
    let outcome = ok(f.run(&probe, &f.checkout("c1"), "").await);
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    let diffs: Vec<(&str, &str)> = outcome
        .changes
        .iter()
        .map(|c| (c.subject.as_str(), c.diff.as_str()))
        .collect();
    assert_eq!(
        diffs,
        [
            (
                "terraform_data.input",
                "~ input: (sensitive value)\n~ output: (sensitive value) → (known after apply)"
            ),
            ("output.password", "(sensitive value) → (sensitive value)"),
        ]
    );
    let report = serde_json::to_string(&report(Ok(outcome))).unwrap();
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    for secret in [old, new] {
        assert!(!report.contains(secret), "{report}");
        assert!(!logs.contains(secret), "{logs}");
    }
}

/// `[[probe.ignore]]`: a change whose every differing attribute is ignored
/// is not drift, a partly ignored one shows only the rest, both are counted
/// in `details.ignored`, and a rule that matched nothing is a warning on the
/// run (the probe page) and in `validate`.
#[tokio::test]
async fn ignore_rules_leave_out_changes_and_report_what_they_matched() {
    if !have_terraform() {
        return;
    }
    let f = Fixture::new("terraform");
    // Reality: the capacity an autoscaler sets, read from outside the repo.
    let capacity = f.path("external/capacity");
    std::fs::create_dir_all(capacity.parent().unwrap()).unwrap();
    std::fs::write(&capacity, "2").unwrap();
    let module = |name: &str| {
        format!(
            "resource \"terraform_data\" \"asg\" {{\n  input = {{\n    desired_capacity = tonumber(file({:?}))\n    name             = {name:?}\n  }}\n}}\n",
            capacity.to_str().unwrap()
        )
    };
    let main = backend(&f.path("state/terraform.tfstate"))
        + "module \"web\" {\n  source = \"./modules/asg\"\n}\n"
        + &data_resource("static", "\"x\"");
    common::init_repo(
        &f.repo(),
        &[("main.tf", &main), ("modules/asg/main.tf", &module("web"))],
    );
    f.apply(&f.repo(), &[]);
    let rules = "[[ignore]]\naddress = \"module.*.terraform_data.asg\"\nattributes = [\"input.desired_capacity\"]\n\n[[ignore]]\naddress = \"terraform_data.gone*\"\n";
    let probe = f.probe(rules);
    let checkout = f.checkout("c1");
    let unmatched =
        "ignore rule ignore[1] (address \"terraform_data.gone*\") matched no resource in this plan";

    let outcome = ok(f.run(&probe, &checkout, "").await);
    assert_eq!(outcome.verdict(), Verdict::InSync);
    assert_eq!(outcome.details["ignored"], 0);
    assert_eq!(outcome.warnings, [unmatched]);

    // The autoscaler scales out: the only difference is ignored.
    std::fs::write(&capacity, "5").unwrap();
    let outcome = ok(f.run(&probe, &checkout, "").await);
    assert_eq!(outcome.exit_code, Some(2));
    assert_eq!(outcome.verdict(), Verdict::InSync, "{outcome:?}");
    assert_eq!(outcome.details["ignored"], 1);
    assert_eq!(
        outcome.details["ignored_changes"][0]["address"],
        "module.web.terraform_data.asg"
    );
    assert_eq!(outcome.details["ignored_changes"][0]["attributes"], "all");
    // Without the rule it is drift: the rule is what made the difference.
    let plain = ok(f.run(&f.probe(""), &checkout, "").await);
    assert_eq!(plain.verdict(), Verdict::Drifted);

    // A commit renames it too: drift, showing only the name.
    common::commit_files(
        &f.repo(),
        &[("modules/asg/main.tf", &module("web-2"))],
        "rename",
    );
    let outcome = ok(f.run(&probe, &f.checkout("c2"), "").await);
    assert_eq!(outcome.verdict(), Verdict::Drifted);
    assert_eq!(outcome.changes.len(), 1);
    let change = &outcome.changes[0];
    assert_eq!(change.subject, "module.web.terraform_data.asg");
    assert_eq!(
        change.diff,
        "~ input.name: \"web\" → \"web-2\"\n~ output: {…} → (known after apply)"
    );
    assert!(!change.diff.contains("desired_capacity"), "{}", change.diff);
    assert_eq!(outcome.details["ignored"], 1);
    assert_eq!(
        outcome.details["ignored_changes"][0]["attributes"],
        serde_json::json!(["input.desired_capacity"])
    );
    assert_eq!(outcome.warnings, [unmatched]);

    // `validate` lists the rule that matched nothing in the last run.
    let state_dir = f.path("state-dir");
    std::fs::create_dir_all(&state_dir).unwrap();
    let state = driftwatch::state::State::load(&state_dir);
    state.record(&report(Ok(outcome)));
    state.persist().unwrap();
    let config = f.path("driftwatch.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n\n[[repo]]\nname = \"infra\"\nurl = \"file://{}\"\n\n[[probe]]\nname = \"tf\"\nlayer = \"terraform\"\nrepo = \"infra\"\ncli_config_file = {:?}\n\n{}",
            state_dir.to_str().unwrap(),
            f.repo().display(),
            f.cli_config.to_str().unwrap(),
            rules.replace("[[ignore]]", "[[probe.ignore]]")
        ),
    )
    .unwrap();
    let validate = std::process::Command::new(common::driftwatch_bin())
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&validate.stderr);
    assert_eq!(validate.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: probe.tf: ignore rule ignore[1] (address \"terraform_data.gone*\") matched nothing in the last run"),
        "{stderr}"
    );
    assert!(!stderr.contains("ignore[0]"), "{stderr}");
}

/// Plan shapes from the peers' reports, each checked against real Terraform:
/// the verdict is what an apply would do, so a move, a forget, an import or
/// an output change is drift (Terraform's own -detailed-exitcode agrees),
/// and a moved block whose move is already applied is in sync.
#[tokio::test]
async fn plan_shapes_from_peer_reports_decide_like_terraform_apply() {
    if !have_terraform() {
        return;
    }
    let f = Fixture::new("terraform");
    let state = f.path("state/terraform.tfstate");
    let dep = "resource \"terraform_data\" \"dep\" {\n  input = \"x\"\n  lifecycle {\n    replace_triggered_by = [terraform_data.site]\n  }\n}\n";
    let moved = "moved {\n  from = terraform_data.web\n  to   = terraform_data.site\n}\n";
    let start = backend(&state)
        + &data_resource("web", "\"one\"")
        + &data_resource("db", "\"stable\"")
        + &dep.replace("terraform_data.site", "terraform_data.web");
    common::init_repo(&f.repo(), &[("main.tf", &start)]);
    f.apply(&f.repo(), &[]);
    let probe = f.probe("");

    let site = data_resource("site", "\"one\"");
    let removed =
        "removed {\n  from = terraform_data.db\n  lifecycle {\n    destroy = false\n  }\n}\n";
    let output = "output \"x\" {\n  value = \"1\"\n}\n";
    let after_move = backend(&state) + &site + &data_resource("db", "\"stable\"") + dep + moved;
    let after_forget = backend(&state) + &site + dep + moved + removed;
    let with_output = after_forget.clone() + output;
    let triggered = with_output.replace("\"one\"", "\"two\"");
    let import = triggered.clone()
        + "import {\n  to = terraform_data.imp\n  id = \"abc\"\n}\nresource \"terraform_data\" \"imp\" {}\n";
    // (source, configuration, (subject, action) pairs; empty = in sync)
    type Step<'a> = (&'a str, String, Vec<(&'a str, &'a str)>);
    let steps: Vec<Step> = vec![
        (
            "https://github.com/suzuki-shunsuke/tfcmt/issues/358 (a move-only plan: 0 to add, 0 to change, 0 to destroy, exit 2)",
            after_move.clone(),
            vec![("terraform_data.site", "move")],
        ),
        (
            "the same moved block once the move is applied: nothing to do",
            after_move,
            vec![],
        ),
        (
            "https://github.com/hashicorp/terraform-json/issues/125 (removed { destroy = false } plans forget)",
            after_forget,
            vec![("terraform_data.db", "forget")],
        ),
        (
            "https://github.com/minamijoyo/tfmigrate/issues/221, hashicorp/terraform#37406 (an output-only change is a change to apply)",
            with_output,
            vec![("output.x", "create")],
        ),
        (
            "replace_triggered_by: the trigger's update replaces its dependant",
            triggered,
            vec![("terraform_data.dep", "replace"), ("terraform_data.site", "update")],
        ),
        (
            "an import block alone: apply would write the object into state",
            import,
            vec![("terraform_data.imp", "import")],
        ),
    ];
    for (index, (source, config, expected)) in steps.into_iter().enumerate() {
        common::commit_files(&f.repo(), &[("main.tf", &config)], source);
        let checkout = f.checkout(&format!("step{index}"));
        let outcome = ok(f.run(&probe, &checkout, "").await);
        let mut got: Vec<(&str, &str)> = outcome
            .changes
            .iter()
            .map(|c| (c.subject.as_str(), c.action.as_str()))
            .collect();
        got.sort();
        assert_eq!(got, expected, "{source}");
        let (verdict, exit) = if expected.is_empty() {
            (Verdict::InSync, 0)
        } else {
            (Verdict::Drifted, 2)
        };
        assert_eq!(outcome.verdict(), verdict, "{source}");
        assert_eq!(
            outcome.exit_code,
            Some(exit),
            "{source}: terraform's own exit code"
        );
        // Move on: what git says is now applied.
        f.apply(&f.repo(), &[]);
    }
}

/// One root pattern of several matching nothing (the stack was renamed):
/// the roots that are there still run, each of their reports carries a
/// warning naming the pattern (API, page, `driftwatch_probe_warnings`),
/// the log has a WARN line; once the pattern matches again all is quiet.
#[tokio::test]
async fn a_root_pattern_that_matches_nothing_warns_on_every_instance() {
    if !have_terraform() {
        return;
    }
    let f = Fixture::new("terraform");
    let stack = |name: &str| backend(&f.path(&format!("state/{name}.tfstate")));
    common::init_repo(
        &f.repo(),
        &[
            ("envs/a/main.tf", &stack("a")),
            ("envs/b/main.tf", &stack("b")),
            ("stacks/net/production/main.tf", &stack("net")),
        ],
    );
    let port = common::free_port();
    let config = f.path("driftwatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "{state}"

[server]
listen = "127.0.0.1:{port}"

[[repo]]
name = "infra"
url = "file://{repo}"
branch = "main"
poll_interval = "1s"

[[probe]]
name = "tf"
layer = "terraform"
repo = "infra"
schedule = ""
roots = ["envs/*", "stacks/*/prod"]
cli_config_file = "{cli}"
"#,
            state = f.path("state-dir").display(),
            repo = f.repo().display(),
            cli = f.cli_config.display(),
        ),
    )
    .unwrap();

    // validate names the pattern at its key.
    let out = std::process::Command::new(common::driftwatch_bin())
        .args(["validate", "--config"])
        .arg(&config)
        .arg("--checkout")
        .arg(f.repo())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let text = std::fs::read_to_string(&config).unwrap();
    let (line, written) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.starts_with("roots = "))
        .unwrap();
    let col = written.find("\"stacks").unwrap() + 1;
    let at = format!(
        "{}:{}:{col}: probe.tf.roots[1]: root pattern \"stacks/*/prod\" matches no directory",
        config.display(),
        line + 1
    );
    assert!(stderr.contains(&at), "{at}\n{stderr}");

    let log = f.path("daemon.log");
    let _daemon = Daemon(
        std::process::Command::new(common::driftwatch_bin())
            .args(["run", "--config"])
            .arg(&config)
            .stdout(std::fs::File::create(f.path("daemon.out")).unwrap())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let warnings = |body: &str, root: &str| -> Option<String> {
        body.lines()
            .find(|l| {
                l.starts_with("driftwatch_probe_warnings{")
                    && l.contains("probe=\"tf\"")
                    && l.contains(&format!("root=\"{root}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_string)
    };
    let wait_for = |want: &'static [(&'static str, &'static str)]| {
        let base = base.clone();
        let log = log.clone();
        async move {
            let started = std::time::Instant::now();
            loop {
                let body = http_get(&format!("{base}/metrics"))
                    .await
                    .unwrap_or_default();
                if want
                    .iter()
                    .all(|(root, value)| warnings(&body, root).as_deref() == Some(*value))
                {
                    return body;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "warnings never became {want:?}:\n{body}\nlog:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let body = wait_for(&[("envs/a", "1"), ("envs/b", "1")]).await;
    assert!(
        body.lines()
            .any(|l| l.starts_with("driftwatch_probe_roots_error{") && l.ends_with(" 0")),
        "the roots that are there are listed, no probe-level error:\n{body}"
    );
    let warning =
        r#"roots[1]: root pattern \"stacks/*/prod\" matches no directory in this checkout"#;
    for id in ["tf:envs/a", "tf:envs/b"] {
        let segment = driftwatch::http::html::encode_segment(id);
        let api = http_get(&format!("{base}/api/v1/probes/{segment}"))
            .await
            .unwrap();
        assert!(api.contains(warning), "{id}: {api}");
        assert!(api.contains(r#""status":"in_sync""#), "{id}: {api}");
        let page = http_get(&format!("{base}/probes/{segment}")).await.unwrap();
        let shown = "root pattern &quot;stacks/*/prod&quot; matches no directory";
        assert!(page.contains(shown), "{page}");
    }
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(
        logs.lines()
            .any(|l| l.contains("WARN") && l.contains("stacks/*/prod") && l.contains("roots[1]")),
        "{logs}"
    );

    // The pattern follows the rename: its stack is an instance, no warning.
    common::commit_files(
        &f.repo(),
        &[("stacks/net/prod/main.tf", &stack("net-prod"))],
        "a prod stack again",
    );
    wait_for(&[("envs/a", "0"), ("envs/b", "0"), ("stacks/net/prod", "0")]).await;
}
