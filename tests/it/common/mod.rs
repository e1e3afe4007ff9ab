//! Shared helpers for integration tests: tool discovery, temporary git repos.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// True when `tool` is on PATH. When it is missing, the test should return
/// early (skip) on a laptop, but under `DRIFTWATCH_REQUIRE_TOOLS=1` (set by
/// scripts/test, so in CI) a missing tool fails the test.
pub mod daemon;

pub fn have_tool(tool: &str) -> bool {
    let found = which(tool).is_some();
    if !found {
        if std::env::var("DRIFTWATCH_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("required tool {tool:?} is not installed; run scripts/install-tools");
        }
        eprintln!("skipping: {tool} is not installed");
    }
    found
}

pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

/// The driftwatch binary built for this test run.
pub fn driftwatch_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_driftwatch"))
}

/// Runs git in `dir`, panicking with its stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=driftwatch-test",
            "-c",
            "user.email=test@example.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A work tree at `dir` with `files` committed on `main`; returns the commit id.
pub fn init_repo(dir: &Path, files: &[(&str, &str)]) -> String {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    commit_files(dir, files, "initial")
}

/// Writes `files` (relative path, content) and commits them; returns the commit id.
pub fn commit_files(dir: &Path, files: &[(&str, &str)], message: &str) -> String {
    for (path, content) in files {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, content).unwrap();
    }
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "--allow-empty", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

/// A free TCP port on loopback (racy, but fine for tests that bind it at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Builds a probe of `layer` from the TOML text of its layer fields.
pub fn build_probe(
    layer: &str,
    name: &str,
    path: &str,
    fields: &str,
) -> Result<std::sync::Arc<dyn driftwatch::probe::Probe>, Vec<driftwatch::probe::FieldError>> {
    let common = driftwatch::probe::ProbeCommon {
        name: name.to_string(),
        layer: layer.to_string(),
        repo: "test".to_string(),
        path: PathBuf::from(path),
        config_dir: std::env::temp_dir(),
        labels: Default::default(),
        ..Default::default()
    };
    let table: toml::Table = toml::from_str(fields).expect("test fields are valid TOML");
    let build = driftwatch::probe::builder(layer).expect("layer is registered");
    build(&common, table)
}

/// A context for running a probe directly against `checkout/workdir`, with a
/// fresh cache and scratch directory under `tmp`.
pub fn probe_context(
    name: &str,
    checkout: &Path,
    workdir: &str,
    tmp: &Path,
    timeout: std::time::Duration,
) -> driftwatch::probe::ProbeContext {
    let cache_dir = tmp.join("cache");
    let scratch_dir = tmp.join("scratch");
    std::fs::create_dir_all(&cache_dir).unwrap();
    std::fs::create_dir_all(&scratch_dir).unwrap();
    driftwatch::probe::ProbeContext {
        name: name.to_string(),
        root: String::new(),
        checkout: checkout.to_path_buf(),
        workdir: checkout.join(workdir),
        commit: "0000000000000000000000000000000000000000".to_string(),
        cancel: tokio_util::sync::CancellationToken::new(),
        deadline: tokio::time::Instant::now() + timeout,
        cache_dir,
        scratch_dir,
        kill_grace: std::time::Duration::from_secs(2),
        fingerprint_key: std::sync::Arc::default(),
    }
}

/// True while any process whose command line matches `pattern` runs (pgrep -f).
/// Tests give their children a unique marker, e.g. an unusual sleep length.
pub fn process_running(pattern: &str) -> bool {
    let out = Command::new("pgrep")
        .args(["-f", pattern])
        .output()
        .expect("pgrep runs");
    !out.stdout.is_empty()
}

/// Three children that leave their parent's process group, each its own
/// way: `setsid` into a new session, a double fork whose middle process
/// exits (the grandchild is orphaned, in a new session), and a change of
/// process group only (`setpgrp`). Each writes its pid to a file in `dir`
/// and then sleeps for a length no other process uses, so pgrep finds it.
pub struct Escapees {
    dir: PathBuf,
    sleeps: [String; 3],
}

impl Escapees {
    pub fn new(dir: &Path) -> Escapees {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}{n}", std::process::id());
        std::fs::create_dir_all(dir).unwrap();
        Escapees {
            dir: dir.to_path_buf(),
            sleeps: [1, 2, 3].map(|k| format!("sleep 61{id}.{k}")),
        }
    }

    fn pid_file(&self, k: usize) -> PathBuf {
        self.dir.join(format!("escapee-{k}.pid"))
    }

    /// A shell script that starts the three, waits until each has written
    /// its pid, then runs `then` (e.g. `wait`, or `exit 0`).
    pub fn script(&self, then: &str) -> String {
        let [a, b, c] = &self.sleeps;
        let [pa, pb, pc] = [0, 1, 2].map(|k| self.pid_file(k).display().to_string());
        format!(
            "setsid sh -c 'echo $$ > {pa}; exec {a}' &
             (setsid sh -c '{b} & echo $! > {pb}; exit 0' &)
             perl -e 'setpgrp(0, 0); open(my $f, \">\", $ARGV[0]) or die; print $f $$; close $f; exec @ARGV[1..$#ARGV]' {pc} {c} &
             while [ ! -s {pa} ] || [ ! -s {pb} ] || [ ! -s {pc} ]; do sleep 0.05; done
             {then}
"
        )
    }

    /// True once all three have written their pid.
    pub fn started(&self) -> bool {
        (0..3).all(|k| {
            std::fs::read_to_string(self.pid_file(k)).is_ok_and(|pid| !pid.trim().is_empty())
        })
    }

    /// The escapees still running (by their unique sleep command line).
    pub fn survivors(&self) -> Vec<String> {
        self.sleeps
            .iter()
            .filter(|sleep| process_running(sleep))
            .cloned()
            .collect()
    }

    /// Kills survivors, so a failing test leaves nothing running.
    pub fn cleanup(&self) {
        for sleep in &self.sleeps {
            let _ = Command::new("pkill").args(["-KILL", "-f", sleep]).status();
        }
    }
}

/// A report of probe `name` in `layer` carrying `result`, as the scheduler
/// would build it: for checking what the API and state file would hold.
pub fn report(
    name: &str,
    layer: &str,
    result: Result<driftwatch::model::outcome::Outcome, driftwatch::model::outcome::ProbeError>,
) -> driftwatch::model::outcome::RunReport {
    let mut report = driftwatch::model::outcome::RunReport {
        probe: name.to_string(),
        name: name.to_string(),
        layer: layer.to_string(),
        run_id: 1,
        trigger: "manual".into(),
        repo: "test".into(),
        started_at: chrono::Utc::now(),
        duration: std::time::Duration::from_secs(1),
        ..Default::default()
    };
    report.apply_result(result);
    report
}

/// Captures everything `tracing` emits on this thread.
#[derive(Clone, Default)]
pub struct Captured(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Captures this thread's logs until the guard drops.
    pub fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        (captured, tracing::subscriber::set_default(subscriber))
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads `read` until two reads `quiet` apart agree, and returns that value;
/// panics naming `what` after `deadline`. For values that converge (the
/// handover moves drifted-since back to the earliest observation a few
/// seconds after replicas that started together settle their membership):
/// a test compares against the settled value, not the first one it sees.
pub fn settled<T: PartialEq + std::fmt::Debug>(
    what: &str,
    quiet: std::time::Duration,
    deadline: std::time::Duration,
    read: impl Fn() -> T,
) -> T {
    let start = std::time::Instant::now();
    let mut last = read();
    loop {
        std::thread::sleep(quiet);
        let now = read();
        if now == last {
            return now;
        }
        assert!(
            start.elapsed() < deadline,
            "{what} did not settle within {deadline:?}: last {now:?}"
        );
        last = now;
    }
}
