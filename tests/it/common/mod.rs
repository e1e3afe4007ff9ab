//! Shared helpers for integration tests: tool discovery, temporary git repos.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// True when `tool` is on PATH. When it is missing, the test should return
/// early (skip) on a laptop, but under `DRIFTWATCH_REQUIRE_TOOLS=1` (set by
/// scripts/test, so in CI) a missing tool fails the test.
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
        .args(["-c", "user.name=driftwatch-test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main"])
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
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
