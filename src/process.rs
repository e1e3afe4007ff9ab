//! Child processes, contained. Every tool a probe runs goes through here:
//! explicit argv, stdin closed, a cleared environment plus an allowlist, its
//! own process group, capped output, and on timeout or cancel SIGTERM to the
//! whole group, a grace period, then SIGKILL. A drop guard kills the group if
//! the future is dropped, so no tool outlives its run.
//!
//! A process group is not enough: a child may call `setsid` (ansible's
//! workers do, and so do daemonizing tools and SSH masters) or move to a
//! group of its own, and then a group kill misses it. So every child also
//! gets a marker variable unique to its run ([`RUN_MARKER_VAR`]), inherited by
//! everything it starts, and when the run ends (or its future is dropped)
//! every process of our uid whose environment carries that marker is killed.
//! Only a process that clears its own environment escapes the marker.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::model::outcome::{cap_tail, ErrorReason, ProbeError, MAX_STDERR_TAIL_BYTES};

/// Variables passed to every child unless the probe says otherwise.
pub const BASE_ENV: &[&str] = &[
    "PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER", "LOGNAME",
];

/// Default cap on captured stdout (plugins that print megabytes are cut here).
pub const DEFAULT_STDOUT_LIMIT: usize = 16 * 1024 * 1024;
/// Default cap on captured stderr.
pub const DEFAULT_STDERR_LIMIT: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("cannot start {program}: {source}; check that it is installed and on PATH")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{program} timed out after {after:?} and was killed")]
    Timeout {
        program: String,
        after: Duration,
        output: Box<Output>,
    },
    #[error("{program} was cancelled")]
    Cancelled {
        program: String,
        output: Box<Output>,
    },
}

impl ProcessError {
    pub fn reason(&self) -> ErrorReason {
        match self {
            ProcessError::Spawn { .. } => ErrorReason::Spawn,
            ProcessError::Timeout { .. } => ErrorReason::Timeout,
            ProcessError::Cancelled { .. } => ErrorReason::Cancelled,
        }
    }
}

impl From<ProcessError> for ProbeError {
    fn from(err: ProcessError) -> Self {
        let tail = match &err {
            ProcessError::Timeout { output, .. } | ProcessError::Cancelled { output, .. } => {
                output.stderr_tail(20)
            }
            ProcessError::Spawn { .. } => String::new(),
        };
        ProbeError::new(err.reason(), err.to_string()).with_stderr_tail(tail)
    }
}

/// What a finished child left behind.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The first `stdout_limit` bytes of stdout.
    pub stdout: Vec<u8>,
    /// The last `stderr_limit` bytes of stderr: errors come at the end.
    pub stderr: Vec<u8>,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub elapsed: Duration,
}

impl Output {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The last `lines` non-empty lines of stderr, capped.
    pub fn stderr_tail(&self, lines: usize) -> String {
        let text = self.stderr_str();
        let kept: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let start = kept.len().saturating_sub(lines);
        cap_tail(kept[start..].join("\n"), MAX_STDERR_TAIL_BYTES)
    }
}

/// A command to run. Build it, then `run` it with a cancel token and deadline.
#[derive(Debug, Clone)]
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    cwd: Option<PathBuf>,
    pass_env: Vec<String>,
    env: Vec<(OsString, OsString)>,
    stdout_limit: usize,
    stderr_limit: usize,
    grace: Duration,
}

impl Command {
    pub fn new(program: impl Into<OsString>) -> Self {
        Command {
            program: program.into(),
            args: Vec::new(),
            cwd: None,
            pass_env: BASE_ENV.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
            stdout_limit: DEFAULT_STDOUT_LIMIT,
            stderr_limit: DEFAULT_STDERR_LIMIT,
            grace: Duration::from_secs(10),
        }
    }

    pub fn program(&self) -> String {
        self.program.to_string_lossy().into_owned()
    }

    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn current_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Lets these variables through from driftwatch's own environment.
    pub fn pass_env<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.pass_env.extend(names.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn stdout_limit(mut self, bytes: usize) -> Self {
        self.stdout_limit = bytes;
        self
    }

    pub fn stderr_limit(mut self, bytes: usize) -> Self {
        self.stderr_limit = bytes;
        self
    }

    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Runs the child to completion, or kills its process group when the
    /// deadline passes or `cancel` fires.
    pub async fn run(
        self,
        cancel: &CancellationToken,
        deadline: Instant,
    ) -> Result<Output, ProcessError> {
        let program = self.program();
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_clear()
            .process_group(0)
            .kill_on_drop(true);
        for name in &self.pass_env {
            if let Some(value) = std::env::var_os(name) {
                cmd.env(name, value);
            }
        }
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        // Last, so neither an allowlist nor a probe can override it.
        let marker = RunMarker::next();
        cmd.env(RUN_MARKER_VAR, &marker.0);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }

        let started = Instant::now();
        let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
            program: program.clone(),
            source,
        })?;
        let mut guard = RunGuard::new(child.id().map(|id| id as i32), marker);
        let stdout = tokio::spawn(read_capped(child.stdout.take(), self.stdout_limit));
        let stderr = tokio::spawn(read_capped_tail(child.stderr.take(), self.stderr_limit));

        enum End {
            Exited(std::io::Result<std::process::ExitStatus>),
            Timeout,
            Cancelled,
        }
        let end = tokio::select! {
            status = child.wait() => End::Exited(status),
            _ = tokio::time::sleep_until(deadline) => End::Timeout,
            _ = cancel.cancelled() => End::Cancelled,
        };

        let status = match end {
            End::Exited(status) => {
                // The leader exited; stragglers, in its group or escaped
                // from it, must not outlive the run (nor hold its pipes).
                guard.signal(Signal::SIGKILL);
                guard.sweep().await;
                Some(status)
            }
            End::Timeout | End::Cancelled => {
                guard.signal(Signal::SIGTERM);
                guard.marker.signal_all(Signal::SIGTERM).await;
                let waited = tokio::time::timeout(self.grace, child.wait()).await;
                guard.signal(Signal::SIGKILL);
                if waited.is_err() {
                    let _ = child.wait().await;
                }
                guard.sweep().await;
                let output = Box::new(collect(None, stdout, stderr, started).await);
                return Err(match end {
                    End::Timeout => ProcessError::Timeout {
                        program,
                        after: deadline.saturating_duration_since(started),
                        output,
                    },
                    _ => ProcessError::Cancelled { program, output },
                });
            }
        };
        let status =
            status
                .expect("exit status present")
                .map_err(|source| ProcessError::Spawn {
                    program: program.clone(),
                    source,
                })?;
        Ok(collect(Some(status), stdout, stderr, started).await)
    }
}

/// How long [`collect`] waits for each pipe once the child is gone.
pub const PIPE_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Reaping a SIGKILLed child: the kernel's part, with room for a busy machine.
const REAP_ALLOWANCE: Duration = Duration::from_secs(1);

/// The longest a contained child can outlive its deadline: SIGTERM, `grace`,
/// SIGKILL and reaping, then draining stdout and stderr one after the other.
/// The scheduler derives its outer deadline from this, so it never gives up
/// on a run that this module is still bound to finish.
pub fn overrun_after_deadline(grace: Duration) -> Duration {
    grace + REAP_ALLOWANCE + SWEEP_PATIENCE + 2 * PIPE_DRAIN_TIMEOUT
}

async fn collect(
    status: Option<std::process::ExitStatus>,
    stdout: tokio::task::JoinHandle<(Vec<u8>, bool)>,
    stderr: tokio::task::JoinHandle<(Vec<u8>, bool)>,
    started: Instant,
) -> Output {
    use std::os::unix::process::ExitStatusExt;
    // Pipes close once every process in the group is gone; bound the wait in
    // case a process escaped the group and still holds them open.
    let (stdout, stdout_truncated) = tokio::time::timeout(PIPE_DRAIN_TIMEOUT, stdout)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let (stderr, stderr_truncated) = tokio::time::timeout(PIPE_DRAIN_TIMEOUT, stderr)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Output {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        stdout,
        stderr,
        stdout_truncated,
        stderr_truncated,
        elapsed: started.elapsed(),
    }
}

/// Reads a pipe to its end, keeping at most `limit` bytes and draining the
/// rest so the child never blocks on a full pipe.
async fn read_capped<R: AsyncRead + Unpin>(reader: Option<R>, limit: usize) -> (Vec<u8>, bool) {
    let Some(mut reader) = reader else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                if n > room {
                    truncated = true;
                }
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    (kept, truncated)
}

/// Reads a pipe to its end, keeping only its last `limit` bytes (memory
/// stays under twice that), so a tool's final error line survives a flood.
async fn read_capped_tail<R: AsyncRead + Unpin>(
    reader: Option<R>,
    limit: usize,
) -> (Vec<u8>, bool) {
    let Some(mut reader) = reader else {
        return (Vec::new(), false);
    };
    let mut kept = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > limit.saturating_mul(2).max(buf.len()) {
                    let excess = kept.len() - limit;
                    kept.drain(..excess);
                    truncated = true;
                }
            }
        }
    }
    if kept.len() > limit {
        let excess = kept.len() - limit;
        kept.drain(..excess);
        truncated = true;
    }
    (kept, truncated)
}

/// The environment variable every child gets, holding its run's marker:
/// this daemon's pid and start time plus a counter, so no two runs (of this
/// or another driftwatch) share one. Exported for tests and for people
/// looking at `ps e`.
pub const RUN_MARKER_VAR: &str = "DRIFTWATCH_RUN";

/// How long a sweep keeps killing marked processes (some may still be
/// forking when the first SIGKILL lands) before giving up on stragglers
/// stuck in the kernel.
pub const SWEEP_PATIENCE: Duration = Duration::from_secs(2);

/// One run's marker value.
#[derive(Debug, Clone)]
struct RunMarker(String);

impl RunMarker {
    fn next() -> RunMarker {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        RunMarker(format!(
            "{}{}",
            daemon_marker_prefix(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ))
    }

    /// `DRIFTWATCH_RUN=<marker>` exactly, as it appears in `/proc/<pid>/environ`.
    fn matches(&self, variable: &[u8]) -> bool {
        variable
            .strip_prefix(RUN_MARKER_VAR.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
            .is_some_and(|value| value == self.0.as_bytes())
    }

    /// Sends `signal` once to every live process carrying the marker.
    async fn signal_all(&self, signal: Signal) {
        let marker = self.clone();
        let _ =
            tokio::task::spawn_blocking(move || signal_marked(&|var| marker.matches(var), signal))
                .await;
    }
}

/// What every marker of this daemon starts with (ends in a dot, so one
/// daemon's prefix is never a prefix of another's).
fn daemon_marker_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!("{}.{started}.", std::process::id())
    })
}

/// Sends `signal` to every process of our own uid (other than us) whose
/// environment carries a variable `wanted` accepts; returns how many.
/// Exited processes (zombies included) have an empty environment and are
/// never counted, so a SIGKILL sweep repeats this until it returns 0.
fn signal_marked(wanted: &dyn Fn(&[u8]) -> bool, signal: Signal) -> usize {
    use std::os::unix::fs::MetadataExt;
    let me = std::process::id();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut signalled = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // As root, /proc shows every user's environment: look at our own only.
        if pid == me || !entry.metadata().is_ok_and(|m| m.uid() == uid) {
            continue;
        }
        let environ = format!("/proc/{pid}/environ");
        let marked = || std::fs::read(&environ).is_ok_and(|env| env.split(|b| *b == 0).any(wanted));
        if !marked() {
            continue;
        }
        // Held while the environment is read again, so the signal reaches
        // the process we looked at even if its pid was reused in between.
        let Some(process) = ProcessHandle::open(pid as i32) else {
            continue;
        };
        if marked() && process.signal(signal) {
            signalled += 1;
        }
    }
    signalled
}

/// SIGKILLs every marked process until none is left, or `patience` runs out.
fn kill_marked(wanted: &dyn Fn(&[u8]) -> bool, patience: Duration) {
    let until = std::time::Instant::now() + patience;
    while signal_marked(wanted, Signal::SIGKILL) > 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A process to signal: a pidfd where the kernel has them (immune to pid
/// reuse), else the pid.
enum ProcessHandle {
    #[cfg(target_os = "linux")]
    Fd(std::os::fd::OwnedFd),
    Pid(i32),
}

impl ProcessHandle {
    /// None when the process is already gone.
    fn open(pid: i32) -> Option<ProcessHandle> {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::FromRawFd;
            // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
            if fd >= 0 {
                // SAFETY: the fd was just returned to us and is owned by nobody else.
                return Some(ProcessHandle::Fd(unsafe {
                    std::os::fd::OwnedFd::from_raw_fd(fd as i32)
                }));
            }
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
                return None;
            }
        }
        Some(ProcessHandle::Pid(pid))
    }

    /// True when the signal was delivered.
    fn signal(&self, signal: Signal) -> bool {
        match self {
            #[cfg(target_os = "linux")]
            ProcessHandle::Fd(fd) => {
                use std::os::fd::AsRawFd;
                // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
                let sent = unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        signal as libc::c_int,
                        std::ptr::null::<libc::siginfo_t>(),
                        0,
                    )
                };
                sent == 0
            }
            ProcessHandle::Pid(pid) => nix::sys::signal::kill(Pid::from_raw(*pid), signal).is_ok(),
        }
    }
}

/// Process groups of children still running, so a second shutdown signal
/// can kill them all before exiting at once.
static LIVE_GROUPS: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

/// Sends SIGKILL to every child process group still running, and to every
/// process any of this daemon's runs started, wherever it moved.
pub fn kill_all() {
    for pgid in LIVE_GROUPS.lock().unwrap().iter() {
        let _ = killpg(Pid::from_raw(*pgid), Signal::SIGKILL);
    }
    sweep_all();
}

/// SIGKILLs every process carrying any marker of this daemon: the last
/// thing the daemon does before it exits, for anything a run's own sweep
/// could not reach (a run still being torn down when the runtime stopped).
pub fn sweep_all() {
    let mut prefix = format!("{RUN_MARKER_VAR}=").into_bytes();
    prefix.extend_from_slice(daemon_marker_prefix().as_bytes());
    kill_marked(&|var| var.starts_with(&prefix), SWEEP_PATIENCE);
}

/// Kills the child's whole process group, and every process carrying the
/// run's marker, when dropped: a dropped future still cleans up.
struct RunGuard {
    pgid: Option<i32>,
    marker: RunMarker,
    swept: bool,
}

impl RunGuard {
    fn new(pgid: Option<i32>, marker: RunMarker) -> RunGuard {
        if let Some(pgid) = pgid {
            LIVE_GROUPS.lock().unwrap().push(pgid);
        }
        RunGuard {
            pgid,
            marker,
            swept: false,
        }
    }

    fn signal(&self, signal: Signal) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(Pid::from_raw(pgid), signal);
        }
    }

    /// Kills every marked process, off the async threads.
    async fn sweep(&mut self) {
        let marker = self.marker.clone();
        let swept = tokio::task::spawn_blocking(move || {
            kill_marked(&|var| marker.matches(var), SWEEP_PATIENCE)
        })
        .await;
        self.swept = swept.is_ok();
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        self.signal(Signal::SIGKILL);
        if !self.swept {
            // A dropped future has no await left: sweep right here (a scan of
            // /proc, milliseconds).
            kill_marked(&|var| self.marker.matches(var), SWEEP_PATIENCE);
        }
        if let Some(pgid) = self.pgid {
            LIVE_GROUPS.lock().unwrap().retain(|g| *g != pgid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[tokio::test]
    async fn captures_exit_code_and_output() {
        let out = Command::new("sh")
            .args(["-c", "echo out; echo err >&2; exit 3"])
            .run(&CancellationToken::new(), far())
            .await
            .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout_str(), "out\n");
        assert_eq!(out.stderr_tail(5), "err");
    }

    #[tokio::test]
    async fn environment_is_cleared_except_allowlist() {
        std::env::set_var("DRIFTWATCH_TEST_SECRET", "hunter2");
        let out = Command::new("sh")
            .args(["-c", "echo \"[$DRIFTWATCH_TEST_SECRET][$EXTRA]\""])
            .env("EXTRA", "x")
            .run(&CancellationToken::new(), far())
            .await
            .unwrap();
        assert_eq!(out.stdout_str(), "[][x]\n");
    }

    #[tokio::test]
    async fn output_is_capped() {
        let out = Command::new("sh")
            .args(["-c", "head -c 1000000 /dev/zero"])
            .stdout_limit(1000)
            .run(&CancellationToken::new(), far())
            .await
            .unwrap();
        assert_eq!(out.stdout.len(), 1000);
        assert!(out.stdout_truncated);
    }

    #[tokio::test]
    async fn stderr_keeps_its_tail() {
        let out = Command::new("sh")
            .args([
                "-c",
                "head -c 500000 /dev/zero | tr '\\0' x >&2; echo >&2; echo 'the real error' >&2",
            ])
            .stderr_limit(1000)
            .run(&CancellationToken::new(), far())
            .await
            .unwrap();
        assert_eq!(out.stderr.len(), 1000);
        assert!(out.stderr_truncated);
        assert_eq!(out.stderr_tail(1), "the real error");
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let err = Command::new("/nonexistent/tool")
            .run(&CancellationToken::new(), far())
            .await
            .unwrap_err();
        assert_eq!(err.reason(), ErrorReason::Spawn);
    }

    #[tokio::test]
    async fn timeout_kills_grandchildren() {
        // A sleep length no other process uses, so pgrep finds only ours.
        let marker = format!("sleep 9{}.5", std::process::id());
        let script = format!("{marker} & {marker} & wait");
        let err = Command::new("sh")
            .args(["-c", &script])
            .grace(Duration::from_millis(200))
            .run(
                &CancellationToken::new(),
                Instant::now() + Duration::from_millis(300),
            )
            .await
            .unwrap_err();
        assert_eq!(err.reason(), ErrorReason::Timeout);
        let ps = std::process::Command::new("pgrep")
            .args(["-f", &marker])
            .output()
            .unwrap();
        assert!(
            ps.stdout.is_empty(),
            "left behind: {}",
            String::from_utf8_lossy(&ps.stdout)
        );
    }

    #[tokio::test]
    async fn cancel_stops_the_child() {
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            trigger.cancel();
        });
        let err = Command::new("sleep")
            .arg("1000")
            .run(&cancel, far())
            .await
            .unwrap_err();
        assert_eq!(err.reason(), ErrorReason::Cancelled);
    }

    #[tokio::test]
    async fn every_child_gets_a_marker_of_its_own_that_nothing_overrides() {
        std::env::set_var(RUN_MARKER_VAR, "from-the-daemon");
        let mut seen = Vec::new();
        for _ in 0..2 {
            let out = Command::new("sh")
                .args(["-c", "echo \"$DRIFTWATCH_RUN\""])
                .pass_env([RUN_MARKER_VAR])
                .env(RUN_MARKER_VAR, "from-a-probe")
                .run(&CancellationToken::new(), far())
                .await
                .unwrap();
            let value = out.stdout_str().trim().to_string();
            assert!(value.starts_with(daemon_marker_prefix()), "{value}");
            seen.push(value);
        }
        assert_ne!(seen[0], seen[1]);
    }

    #[test]
    fn a_marker_matches_exactly_its_own_variable() {
        let marker = RunMarker("12.34.5".to_string());
        for (variable, expected) in [
            ("DRIFTWATCH_RUN=12.34.5", true),
            ("DRIFTWATCH_RUN=12.34.50", false),
            ("DRIFTWATCH_RUN=12.34.", false),
            ("DRIFTWATCH_RUN=112.34.5", false),
            ("XDRIFTWATCH_RUN=12.34.5", false),
            ("DRIFTWATCH_RUNX=12.34.5", false),
            ("OTHER=DRIFTWATCH_RUN=12.34.5", false),
        ] {
            assert_eq!(marker.matches(variable.as_bytes()), expected, "{variable}");
        }
    }

    #[tokio::test]
    async fn a_sweep_spares_processes_of_other_runs() {
        // Markers of runs of this daemon that no test reaches, and of
        // another daemon, on processes started outside this run (tests in
        // parallel own the low counter values).
        let others: Vec<String> = ["999999", "9999990"]
            .iter()
            .map(|n| format!("{}{n}", daemon_marker_prefix()))
            .chain(["1.2.0".to_string(), "1.2.3".to_string()])
            .collect();
        let mut bystanders: Vec<std::process::Child> = others
            .iter()
            .map(|marker| {
                std::process::Command::new("sleep")
                    .arg("30")
                    .env(RUN_MARKER_VAR, marker)
                    .spawn()
                    .unwrap()
            })
            .collect();
        let out = Command::new("sh")
            .args(["-c", "setsid sleep 30 & exit 0"])
            .run(&CancellationToken::new(), far())
            .await
            .unwrap();
        assert_eq!(out.code, Some(0));
        for bystander in &mut bystanders {
            assert!(
                bystander.try_wait().unwrap().is_none(),
                "a sweep killed a process of another run"
            );
            bystander.kill().unwrap();
            bystander.wait().unwrap();
        }
    }
}
