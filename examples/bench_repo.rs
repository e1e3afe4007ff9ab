//! Benchmark: the cost of a no-op poll (fetch finds nothing new) on a repo
//! with many files. Run by `scripts/bench-repo`; prints figures, asserts nothing.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use driftwatch::config::{RepoAuth, RepoConfig, RepoSource};
use driftwatch::repo::Repo;

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.invalid",
        ])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?} failed");
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Clones `url` and times `polls` no-op syncs; returns the repo for more.
async fn measure(label: &str, url: &str, tmp: &Path, polls: usize) -> Repo {
    let name = label.trim_end_matches("://");
    let config = RepoConfig {
        name: name.into(),
        source: RepoSource::Remote {
            url: url.into(),
            reference: "main".into(),
            auth: RepoAuth::None,
        },
        poll_interval: Duration::from_secs(60),
        sync_timeout: Duration::from_secs(120),
        web: None,
    };
    let repo = Repo::new(config, &tmp.join("state"));
    let started = Instant::now();
    repo.sync().await.expect("first sync");
    let first = started.elapsed();

    let mut times = Vec::with_capacity(polls);
    for _ in 0..polls {
        let started = Instant::now();
        let outcome = repo.sync().await.expect("no-op sync");
        times.push(started.elapsed());
        assert!(outcome.changed.is_none(), "nothing changed");
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / polls as u32;
    println!(
        "{label:7} first sync (clone + checkout): {:.1} ms",
        millis(first)
    );
    println!(
        "{label:7} no-op poll over {polls} polls: mean {:.2} ms, median {:.2} ms, max {:.2} ms (goal < 50 ms)",
        millis(mean),
        millis(times[polls / 2]),
        millis(times[polls - 1])
    );
    repo
}

#[tokio::main]
async fn main() {
    let files: usize = std::env::var("BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let polls: usize = std::env::var("BENCH_POLLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    for i in 0..files {
        let dir = work.join(format!("dir{:03}", i % 100));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(format!("file{i:05}.txt")),
            format!("content of file {i}\n"),
        )
        .unwrap();
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "many files"]);
    let bare = tmp.path().join("remote.git");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );

    println!("repo with {files} files");
    let repo = measure(
        "file://",
        &format!("file://{}", bare.display()),
        tmp.path(),
        polls,
    )
    .await;

    // The same over git:// (a real network transport), served by git daemon.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut daemon = Command::new("git")
        .arg("daemon")
        .arg(format!("--base-path={}", tmp.path().display()))
        .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
        .arg(format!("--port={port}"))
        .arg(tmp.path())
        // The readiness probe below connects and hangs up; keep its complaint quiet.
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("git daemon starts");
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    measure(
        "git://",
        &format!("git://127.0.0.1:{port}/remote.git"),
        tmp.path(),
        polls,
    )
    .await;
    let _ = daemon.kill();
    let _ = daemon.wait();

    // One new commit touching one file: fetch + fresh checkout + diff.
    git(&work, &["commit", "-q", "--allow-empty", "-m", "empty"]);
    std::fs::write(work.join("dir000/file00000.txt"), "changed\n").unwrap();
    git(&work, &["commit", "-q", "-am", "one file"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let started = Instant::now();
    let outcome = repo.sync().await.expect("sync of a new commit");
    println!(
        "new commit (fetch + checkout of {files} files + diff): {:.1} ms, changed {:?}",
        millis(started.elapsed()),
        outcome.changed.unwrap()
    );
}
