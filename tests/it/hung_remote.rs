//! A git remote that hangs: one that accepts and never answers (git:// and
//! http://), and one that worked and then stalls mid-fetch. The sync must
//! fail at its deadline (counted, logged with the redacted URL, success 0),
//! be retried, and never keep the daemon from stopping.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use driftwatch::config::{RepoAuth, RepoConfig, RepoSource};
use driftwatch::repo::Repo;

use crate::common::daemon::Daemon;
use crate::common::{commit_files, free_port, git, have_tool, init_repo};
use crate::repo::GitDaemon;

/// Accepts connections on a loopback port (port 0) and never answers;
/// counts what it accepted. Connections are held until the test ends.
struct Blackhole {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl Blackhole {
    fn start() -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        Blackhole { port, accepted }
    }
}

/// Forwards loopback connections to `target`; once `stall` is set, new
/// connections pass only the first `after` bytes of the answer, then hang.
struct StallProxy {
    port: u16,
    stall: Arc<AtomicBool>,
}

impl StallProxy {
    fn start(target: u16, after: usize) -> StallProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let stall = Arc::new(AtomicBool::new(false));
        let stalling = stall.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let limit = if stalling.load(Ordering::SeqCst) {
                    after
                } else {
                    usize::MAX
                };
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    usize::MAX,
                );
                pipe(server, client, limit);
            }
        });
        StallProxy { port, stall }
    }
}

/// Copies `from` to `to` in a thread; after `limit` bytes it keeps both
/// open and silent.
fn pipe(mut from: TcpStream, mut to: TcpStream, limit: usize) {
    std::thread::spawn(move || {
        let mut sent = 0;
        let mut buf = [0u8; 4096];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let room = limit.saturating_sub(sent).min(n);
            if room > 0 && to.write_all(&buf[..room]).is_err() {
                break;
            }
            sent += room;
            if sent >= limit {
                // Hang: hold both ends, say nothing more.
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        let _ = to.shutdown(std::net::Shutdown::Write);
    });
}

fn remote(url: &str, sync_timeout: Duration) -> RepoConfig {
    RepoConfig {
        name: "infra".into(),
        source: RepoSource::Remote {
            url: url.into(),
            reference: "main".into(),
            auth: RepoAuth::None,
        },
        poll_interval: Duration::from_secs(60),
        sync_timeout,
        web: None,
    }
}

#[tokio::test]
async fn a_remote_that_never_answers_fails_the_sync_at_its_deadline() {
    for scheme in ["git", "http"] {
        let hole = Blackhole::start();
        let tmp = tempfile::tempdir().unwrap();
        let url = format!("{scheme}://127.0.0.1:{}/infra.git", hole.port);
        let repo = Repo::new(remote(&url, Duration::from_secs(2)), tmp.path());
        // The guard only turns a hang into a failure; the deadline is 2 s.
        let error = tokio::time::timeout(Duration::from_secs(120), repo.sync())
            .await
            .unwrap_or_else(|_| panic!("{scheme}: sync still hanging after 120 s"))
            .expect_err("a silent remote cannot sync");
        assert_eq!(error.reason(), "timeout", "{scheme}: {error}");
        assert!(error.to_string().contains("127.0.0.1"), "{error}");
        assert!(hole.accepted.load(Ordering::SeqCst) >= 1);
        assert!(repo.current().is_none());
        // The abandoned fetch is still stuck: the next sync fails at once
        // instead of piling a second fetch on the mirror.
        let again = repo.sync().await.expect_err("still hanging");
        assert_eq!(again.reason(), "timeout", "{again}");
    }
}

fn daemon_config(root: &Path, url: &str, sync_timeout: &str) -> std::path::PathBuf {
    let config = root.join("driftwatch.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "{state}"

[server]
listen = "127.0.0.1:{port}"

[defaults]
kill_grace = "2s"

[[repo]]
name = "infra"
url = "{url}"
branch = "main"
poll_interval = "1s"
sync_timeout = "{sync_timeout}"

[[probe]]
name = "app"
layer = "command"
repo = "infra"
schedule = ""
command = ["true"]
"#,
            state = root.join("state").display(),
            port = free_port(),
        ),
    )
    .unwrap();
    config
}

fn sync_errors(daemon: &Daemon) -> u64 {
    daemon
        .metric("driftwatch_repo_sync_errors_total{repo=\"infra\"}")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_daemon_counts_logs_and_retries_a_silent_remote_without_leaking_the_url() {
    let hole = Blackhole::start();
    let tmp = tempfile::tempdir().unwrap();
    let secret = "hunter2-sync-secret";
    let url = format!("http://deploy:{secret}@127.0.0.1:{}/infra.git", hole.port);
    let config = daemon_config(tmp.path(), &url, "2s");
    let log = tmp.path().join("daemon.log");
    let daemon = Daemon::start(&config, &log);
    let started = Instant::now();
    daemon.wait_for("/metrics", "two timed-out syncs", |_, body| {
        body.contains("driftwatch_repo_sync_success{repo=\"infra\"} 0")
            && body
                .lines()
                .find_map(|l| l.strip_prefix("driftwatch_repo_sync_errors_total{repo=\"infra\"} "))
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|n| n >= 2)
    });
    println!(
        "FIGURE hung remote to sync_success 0 and 2 failed syncs: {:.1} s (sync_timeout 2s)",
        started.elapsed().as_secs_f64()
    );
    assert!(sync_errors(&daemon) >= 2);
    assert_eq!(
        daemon.metric("driftwatch_repo_last_sync_timestamp_seconds{repo=\"infra\"}"),
        Some("0".into())
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("repo sync failed"), "{text}");
    assert!(text.contains("did not finish within"), "{text}");
    assert!(text.contains(&format!("127.0.0.1:{}", hole.port)), "{text}");
    let (_, metrics) = daemon.get("/metrics").unwrap();
    let (_, api) = daemon.get("/api/v1/probes").unwrap();
    for (what, body) in [("log", &text), ("metrics", &metrics), ("api", &api)] {
        assert!(!body.contains(secret), "{what} leaks the URL's password");
    }
}

#[test]
fn a_remote_that_stalls_mid_fetch_turns_sync_success_to_zero() {
    if !have_tool("git") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    init_repo(&work, &[("app/check.sh", "exit 0\n")]);
    let base = tmp.path().join("served");
    std::fs::create_dir_all(&base).unwrap();
    git(
        &base,
        &["clone", "-q", "--bare", work.to_str().unwrap(), "infra.git"],
    );
    let served = GitDaemon::start(&base);
    // Past the first packet line of the ref advertisement, then silence.
    let proxy = StallProxy::start(served.port, 16);
    let url = format!("git://127.0.0.1:{}/infra.git", proxy.port);
    let config = daemon_config(tmp.path(), &url, "3s");
    let log = tmp.path().join("daemon.log");
    let daemon = Daemon::start(&config, &log);
    daemon.wait_for("/metrics", "a good first sync", |_, body| {
        body.contains("driftwatch_repo_sync_success{repo=\"infra\"} 1")
    });
    let errors_before = sync_errors(&daemon);

    proxy.stall.store(true, Ordering::SeqCst);
    commit_files(&work, &[("app/check.sh", "exit 2\n")], "drift");
    git(
        &work,
        &[
            "push",
            "-q",
            base.join("infra.git").to_str().unwrap(),
            "main",
        ],
    );
    daemon.wait_for("/metrics", "the stalled fetch failing", |_, body| {
        body.contains("driftwatch_repo_sync_success{repo=\"infra\"} 0")
    });
    assert!(sync_errors(&daemon) > errors_before);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("did not finish within"), "{text}");
}

#[test]
fn sigterm_with_a_hung_fetch_exits_within_the_kill_grace() {
    let hole = Blackhole::start();
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("git://127.0.0.1:{}/infra.git", hole.port);
    // A deadline far away: the fetch is truly in flight at SIGTERM.
    let config = daemon_config(tmp.path(), &url, "10m");
    let log = tmp.path().join("daemon.log");
    let mut daemon = Daemon::start(&config, &log);
    daemon.wait_for("/healthz", "the daemon", |code, _| code == 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    while hole.accepted.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the daemon never connected");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let signalled = Instant::now();
    let status = daemon.terminate();
    let took = signalled.elapsed();
    println!(
        "FIGURE SIGTERM to exit with a hung fetch: {:.2} s (kill_grace 2s)",
        took.as_secs_f64()
    );
    assert!(status.success(), "exit status {status:?}");
    // kill_grace (2 s) + 5 s, as docs/troubleshooting.md promises.
    assert!(
        took < Duration::from_secs(7),
        "took {took:?}; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("driftwatch stopped"), "{text}");
}
