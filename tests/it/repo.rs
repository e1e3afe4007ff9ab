//! Repo sync against real git repositories: file:// and git:// remotes,
//! checkouts per commit, changed paths, failure handling, path sources.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use driftwatch::config::{RepoAuth, RepoConfig, RepoSource};
use driftwatch::repo::{ChangedPaths, Repo};

use crate::common::{commit_files, free_port, git, have_tool, init_repo};

fn remote_config(name: &str, url: &str, reference: &str) -> RepoConfig {
    RepoConfig {
        name: name.to_string(),
        source: RepoSource::Remote {
            url: url.to_string(),
            reference: reference.to_string(),
            auth: RepoAuth::None,
        },
        poll_interval: Duration::from_secs(60),
        sync_timeout: Duration::from_secs(120),
        web: None,
    }
}

fn file_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o111 != 0
}

fn changed_paths(changed: &ChangedPaths) -> Vec<String> {
    match changed {
        ChangedPaths::All => panic!("expected paths, got All"),
        ChangedPaths::Paths(paths) => paths.iter().map(|p| p.display().to_string()).collect(),
    }
}

#[tokio::test]
async fn file_remote_first_sync_change_and_no_op() {
    if !have_tool("git") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let first = init_repo(
        &work,
        &[
            ("a/one.txt", "one\n"),
            ("b/two.txt", "two\n"),
            ("run.sh", "#!/bin/sh\necho hi\n"),
        ],
    );
    std::fs::set_permissions(work.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    git(&work, &["update-index", "--chmod=+x", "run.sh"]);
    git(&work, &["commit", "-q", "-m", "exec"]);
    let first = {
        let head = git(&work, &["rev-parse", "HEAD"]);
        assert_ne!(head, first);
        head
    };

    let state = tmp.path().join("state");
    let repo = Repo::new(remote_config("infra", &file_url(&work), "main"), &state);
    assert!(repo.current().is_none());

    let outcome = repo.sync().await.expect("first sync");
    assert_eq!(outcome.changed, Some(ChangedPaths::All));
    let checkout = outcome.checkout.clone();
    assert_eq!(checkout.commit, first);
    assert!(checkout.owned);
    assert!(
        checkout.commit_time > 1_000_000_000,
        "{}",
        checkout.commit_time
    );
    assert!(checkout
        .dir
        .starts_with(state.join("checkouts").join("infra")));
    assert_eq!(
        std::fs::read_to_string(checkout.dir.join("a/one.txt")).unwrap(),
        "one\n"
    );
    assert_eq!(
        std::fs::read_to_string(checkout.dir.join("b/two.txt")).unwrap(),
        "two\n"
    );
    assert!(is_executable(&checkout.dir.join("run.sh")), "exec bit kept");
    assert!(!is_executable(&checkout.dir.join("a/one.txt")));
    assert!(!checkout.dir.join(".git").exists());
    assert!(state.join("repos/infra.git").is_dir());
    assert!(
        !state.join("repos/infra.git/index").exists(),
        "checkouts leave the mirror alone"
    );
    assert_eq!(repo.current().unwrap().commit, first);

    // No new commit: nothing changes, same checkout.
    let outcome = repo.sync().await.expect("no-op sync");
    assert_eq!(outcome.changed, None);
    assert!(Arc::ptr_eq(&outcome.checkout, &checkout));

    // A commit touching a/ only.
    let second = commit_files(
        &work,
        &[("a/one.txt", "uno\n"), ("a/new.txt", "new\n")],
        "touch a",
    );
    let outcome = repo.sync().await.expect("second sync");
    let changed = outcome.changed.clone().expect("a new commit");
    let mut paths = changed_paths(&changed);
    paths.sort();
    assert_eq!(paths, vec!["a/new.txt", "a/one.txt"]);
    assert!(changed.touches(Path::new("a")));
    assert!(!changed.touches(Path::new("b")));
    assert!(changed.touches(Path::new("")));
    assert_eq!(outcome.checkout.commit, second);
    assert_ne!(outcome.checkout.dir, checkout.dir);
    assert_eq!(
        std::fs::read_to_string(outcome.checkout.dir.join("a/one.txt")).unwrap(),
        "uno\n"
    );
    assert_eq!(repo.current().unwrap().commit, second);
    // The old checkout is untouched while we still hold it.
    assert_eq!(
        std::fs::read_to_string(checkout.dir.join("a/one.txt")).unwrap(),
        "one\n"
    );

    // A rename names both the old and the new path.
    std::fs::create_dir_all(work.join("c")).unwrap();
    git(&work, &["mv", "b/two.txt", "c/two.txt"]);
    commit_files(&work, &[], "rename");
    let outcome = repo.sync().await.expect("rename sync");
    let changed = outcome.changed.expect("a new commit");
    let mut paths = changed_paths(&changed);
    paths.sort();
    assert_eq!(paths, vec!["b/two.txt", "c/two.txt"]);
    assert!(changed.touches(Path::new("b")) && changed.touches(Path::new("c")));
    assert!(!changed.touches(Path::new("a")));
}

#[tokio::test]
async fn old_checkout_is_removed_when_last_holder_drops_it() {
    if !have_tool("git") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    init_repo(&work, &[("x.txt", "1\n")]);
    let repo = Repo::new(
        remote_config("r", &file_url(&work), "main"),
        &tmp.path().join("state"),
    );

    let first = repo.sync().await.unwrap().checkout;
    let first_dir = first.dir.clone();
    commit_files(&work, &[("x.txt", "2\n")], "two");
    let second = repo.sync().await.unwrap();
    assert!(second.changed.is_some());
    // A run still holds the first checkout: it stays.
    assert!(first_dir.join("x.txt").is_file());
    drop(second);
    assert!(first_dir.join("x.txt").is_file());
    drop(first);
    assert!(
        !first_dir.exists(),
        "old checkout removed once no one holds it"
    );
    // The current one is still there.
    assert_eq!(
        std::fs::read_to_string(repo.current().unwrap().dir.join("x.txt")).unwrap(),
        "2\n"
    );

    // Going back to an older commit while the newer one is held gives a distinct directory.
    let held = repo.current().unwrap();
    git(&work, &["reset", "-q", "--hard", "HEAD~1"]);
    let back = repo.sync().await.unwrap();
    assert!(back.changed.is_some());
    assert_ne!(back.checkout.dir, held.dir);
    assert_eq!(
        std::fs::read_to_string(back.checkout.dir.join("x.txt")).unwrap(),
        "1\n"
    );
    let held_dir = held.dir.clone();
    drop(held);
    assert!(!held_dir.exists());
    assert!(back.checkout.dir.join("x.txt").is_file());
}

#[tokio::test]
async fn restart_reuses_mirror_and_cleans_leftover_checkouts() {
    if !have_tool("git") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let commit = init_repo(&work, &[("x.txt", "1\n")]);
    let state = tmp.path().join("state");
    let leftover = {
        let repo = Repo::new(remote_config("r", &file_url(&work), "main"), &state);
        let checkout = repo.sync().await.unwrap().checkout;
        // Simulate a crash: the directory is not removed.
        let dir = checkout.dir.clone();
        std::mem::forget(checkout);
        std::mem::forget(repo);
        dir
    };
    let checkouts = state.join("checkouts/r");
    let marker = |dir: &Path| PathBuf::from(format!("{}.owner", dir.display()));
    // The crashed process is gone: give its checkout a dead owner.
    let mut finished = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = finished.id();
    finished.wait().unwrap();
    assert_eq!(
        std::fs::read_to_string(marker(&leftover)).unwrap(),
        std::process::id().to_string()
    );
    std::fs::write(marker(&leftover), dead_pid.to_string()).unwrap();
    let stray = checkouts.join("deadbeef");
    std::fs::create_dir_all(&stray).unwrap();
    let half_written = checkouts.join(format!(".tmp-{dead_pid}-0"));
    std::fs::create_dir_all(&half_written).unwrap();
    // Another live process (say `driftwatch check` next to the daemon) owns this one.
    let mut other = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    let in_use = checkouts.join("0123456789012345678901234567890123456789");
    std::fs::create_dir_all(&in_use).unwrap();
    std::fs::write(marker(&in_use), other.id().to_string()).unwrap();
    assert!(leftover.is_dir());

    let repo = Repo::new(remote_config("r", &file_url(&work), "main"), &state);
    let outcome = repo.sync().await.unwrap();
    other.kill().unwrap();
    other.wait().unwrap();
    assert_eq!(
        outcome.changed,
        Some(ChangedPaths::All),
        "first sync of a process"
    );
    assert_eq!(outcome.checkout.commit, commit);
    assert!(!stray.exists());
    assert!(!half_written.exists());
    assert!(in_use.is_dir(), "a live process's checkout is kept");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&checkouts)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let mut expected = vec![
        in_use.clone(),
        marker(&in_use),
        outcome.checkout.dir.clone(),
        marker(&outcome.checkout.dir),
    ];
    expected.sort();
    assert_eq!(entries, expected);
    let dir = outcome.checkout.dir.clone();
    drop(outcome);
    drop(repo);
    assert!(
        !dir.exists() && !marker(&dir).exists(),
        "dropping the last holder removes dir and marker"
    );
}

#[tokio::test]
async fn branch_and_tag_references() {
    if !have_tool("git") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let tagged = init_repo(&work, &[("x.txt", "1\n")]);
    git(&work, &["tag", "v1"]);
    git(&work, &["checkout", "-q", "-b", "other"]);
    let other = commit_files(&work, &[("x.txt", "other\n")], "other");

    let state = tmp.path().join("state");
    let by_tag = Repo::new(
        remote_config("tag", &file_url(&work), "refs/tags/v1"),
        &state,
    );
    assert_eq!(by_tag.sync().await.unwrap().checkout.commit, tagged);
    let by_branch = Repo::new(remote_config("branch", &file_url(&work), "other"), &state);
    assert_eq!(by_branch.sync().await.unwrap().checkout.commit, other);

    let missing = Repo::new(remote_config("missing", &file_url(&work), "nope"), &state);
    let error = missing.sync().await.unwrap_err();
    assert_eq!(error.reason(), "fetch");
    assert!(error.to_string().contains("nope"), "{error}");
    assert!(missing.current().is_none());
}

/// `git daemon` serving `base` on a free loopback port; killed on drop.
pub(crate) struct GitDaemon {
    child: std::process::Child,
    pub(crate) port: u16,
}

impl GitDaemon {
    pub(crate) fn start(base: &Path) -> GitDaemon {
        let port = free_port();
        let child = std::process::Command::new("git")
            .arg("daemon")
            .arg(format!("--base-path={}", base.display()))
            .args(["--export-all", "--reuseaddr", "--listen=127.0.0.1"])
            .arg(format!("--port={port}"))
            .arg(base)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("git daemon starts");
        let daemon = GitDaemon { child, port };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "git daemon did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test]
async fn git_daemon_remote_and_vanishing_remote() {
    if !have_tool("git") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let first = init_repo(&work, &[("a/x.txt", "1\n")]);
    let base = tmp.path().join("served");
    std::fs::create_dir_all(&base).unwrap();
    git(
        &base,
        &["clone", "-q", "--bare", work.to_str().unwrap(), "infra.git"],
    );
    let bare = base.join("infra.git");

    let mut daemon = GitDaemon::start(&base);
    let url = format!("git://127.0.0.1:{}/infra.git", daemon.port);
    let repo = Repo::new(
        remote_config("infra", &url, "main"),
        &tmp.path().join("state"),
    );

    let outcome = repo.sync().await.expect("sync over git://");
    assert_eq!(outcome.checkout.commit, first);
    assert_eq!(
        std::fs::read_to_string(outcome.checkout.dir.join("a/x.txt")).unwrap(),
        "1\n"
    );

    // A new commit pushed to the served repo is picked up.
    let second = commit_files(&work, &[("a/x.txt", "2\n")], "two");
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    let outcome = repo.sync().await.expect("second sync over git://");
    assert_eq!(outcome.checkout.commit, second);
    assert!(outcome.changed.unwrap().touches(Path::new("a")));
    assert_eq!(repo.sync().await.unwrap().changed, None);

    // The repository vanishes: the sync fails, the last commit stays current.
    std::fs::remove_dir_all(&bare).unwrap();
    let error = repo.sync().await.expect_err("vanished repo");
    assert_eq!(error.reason(), "fetch");
    assert_eq!(repo.current().unwrap().commit, second);

    // The daemon stops: same.
    daemon.stop();
    let error = repo.sync().await.expect_err("stopped daemon");
    assert_eq!(error.reason(), "fetch");
    let current = repo.current().unwrap();
    assert_eq!(current.commit, second);
    assert!(current.dir.join("a/x.txt").is_file());
}

#[tokio::test]
async fn credentials_never_appear_in_errors() {
    // Each URL's secret, in every spelling a message could quote it in.
    for (url, secrets) in [
        ("https://user:secret@127.0.0.1:1/x.git", &["secret"][..]),
        (
            "https://user:s%40cret%3A1@127.0.0.1:1/x.git",
            &["s%40cret", "s@cret"][..],
        ),
        (
            "https://user:s@cret@127.0.0.1:1/x.git",
            &["s@cret", "s%40cret"][..],
        ),
        (
            "https://ghp_secrettoken@127.0.0.1:1/x.git",
            &["ghp_secrettoken"][..],
        ),
        ("http://user:secret@[::1]:1/x.git", &["secret"][..]),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = remote_config("private", url, "main");
        if let RepoSource::Remote { auth, .. } = &mut config.source {
            *auth = RepoAuth::Token {
                username: "x-access-token".into(),
                token: "tokenvalue".into(),
            };
        }
        let repo = Repo::new(config, tmp.path());
        let error = repo.sync().await.expect_err("nothing listens on port 1");
        let text = format!("{error} {error:?} {}", repo.display_source());
        assert_eq!(error.reason(), "fetch", "{url}");
        for secret in secrets.iter().chain(&["tokenvalue"]) {
            assert!(!text.contains(secret), "{url}: {text}");
        }
        assert!(text.contains("***@"), "{url}: {text}");
        // The URL is not stored in the mirror's config either.
        let config = std::fs::read_to_string(tmp.path().join("repos/private.git/config"))
            .unwrap_or_default();
        for secret in secrets {
            assert!(!config.contains(secret), "{config}");
        }
    }
}

#[tokio::test]
async fn path_source_plain_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plain");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("f.txt"), "x").unwrap();
    let config = RepoConfig {
        name: "plain".into(),
        source: RepoSource::Path(dir.clone()),
        poll_interval: Duration::from_secs(60),
        sync_timeout: Duration::from_secs(120),
        web: None,
    };
    let repo = Repo::new(config, &tmp.path().join("state"));
    let outcome = repo.sync().await.unwrap();
    assert_eq!(outcome.changed, Some(ChangedPaths::All));
    assert_eq!(outcome.checkout.commit, "");
    assert_eq!(outcome.checkout.commit_time, 0);
    assert!(!outcome.checkout.owned);
    assert_eq!(outcome.checkout.dir, std::fs::canonicalize(&dir).unwrap());
    assert_eq!(repo.sync().await.unwrap().changed, None);
    drop(outcome);
    drop(repo);
    assert!(
        dir.join("f.txt").is_file(),
        "a path source is never deleted"
    );

    let missing = Repo::new(
        RepoConfig {
            name: "missing".into(),
            source: RepoSource::Path(tmp.path().join("nope")),
            poll_interval: Duration::from_secs(60),
            sync_timeout: Duration::from_secs(120),
            web: None,
        },
        &tmp.path().join("state"),
    );
    let error = missing.sync().await.unwrap_err();
    assert!(error.to_string().contains("nope"), "{error}");
}

#[tokio::test]
async fn path_source_git_work_tree_and_symlink_swap() {
    if !have_tool("git") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // Like git-sync: worktrees per commit, published through a symlink.
    let origin = tmp.path().join("origin");
    let first = init_repo(&origin, &[("a/x.txt", "1\n"), ("b/y.txt", "1\n")]);
    let link = tmp.path().join("current");
    std::os::unix::fs::symlink(&origin, &link).unwrap();
    let config = RepoConfig {
        name: "sidecar".into(),
        source: RepoSource::Path(link.clone()),
        poll_interval: Duration::from_secs(60),
        sync_timeout: Duration::from_secs(120),
        web: None,
    };
    let repo = Repo::new(config, &tmp.path().join("state"));
    let outcome = repo.sync().await.unwrap();
    assert_eq!(outcome.checkout.commit, first);
    assert!(outcome.checkout.commit_time > 0);
    assert_eq!(outcome.changed, Some(ChangedPaths::All));
    assert_eq!(repo.sync().await.unwrap().changed, None);

    // A new commit in the same work tree.
    let second = commit_files(&origin, &[("b/y.txt", "2\n")], "b");
    let outcome = repo.sync().await.unwrap();
    assert_eq!(outcome.checkout.commit, second);
    let changed = outcome.changed.unwrap();
    assert!(changed.touches(Path::new("b")));
    assert!(!changed.touches(Path::new("a")));

    // The sidecar swaps the symlink to a new worktree at a new commit.
    let worktree = tmp.path().join("wt-third");
    git(
        &origin,
        &[
            "worktree",
            "add",
            "-q",
            "--detach",
            worktree.to_str().unwrap(),
        ],
    );
    let third = commit_files(&worktree, &[("a/x.txt", "3\n")], "a");
    let swapped = tmp.path().join("current.new");
    std::os::unix::fs::symlink(&worktree, &swapped).unwrap();
    std::fs::rename(&swapped, &link).unwrap();
    let outcome = repo.sync().await.unwrap();
    assert_eq!(outcome.checkout.commit, third);
    assert_eq!(
        outcome.checkout.dir,
        std::fs::canonicalize(&worktree).unwrap()
    );
    let changed = outcome.changed.unwrap();
    assert!(changed.touches(Path::new("a")));
    assert!(!changed.touches(Path::new("b")));

    // A subdirectory of a work tree: paths are relative to it.
    let sub = Repo::new(
        RepoConfig {
            name: "sub".into(),
            source: RepoSource::Path(origin.join("b")),
            poll_interval: Duration::from_secs(60),
            sync_timeout: Duration::from_secs(120),
            web: None,
        },
        &tmp.path().join("state"),
    );
    sub.sync().await.unwrap();
    commit_files(&origin, &[("b/y.txt", "4\n")], "b again");
    let changed = sub.sync().await.unwrap().changed.unwrap();
    assert_eq!(changed, ChangedPaths::Paths(vec![PathBuf::from("y.txt")]));
}

/// An sshd on a loopback port that lets the current user in with one key and
/// runs git-upload-pack; killed on drop.
struct Sshd {
    child: std::process::Child,
    port: u16,
    host_public_key: String,
}

impl Sshd {
    fn start(dir: &Path, authorized_key: &Path) -> Sshd {
        let sshd = crate::common::which("sshd").expect("sshd is installed");
        let host_key = dir.join("host_key");
        keygen(&host_key, "");
        let authorized = dir.join("authorized_keys");
        std::fs::copy(authorized_key.with_extension("pub"), &authorized).unwrap();
        std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o600)).unwrap();
        // sshd running as root wants its privilege separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\n\
                 UsePAM no\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nLogLevel ERROR\n",
                host_key.display(),
                authorized.display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sshd starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "sshd did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let public = std::fs::read_to_string(host_key.with_extension("pub")).unwrap();
        let mut fields = public.split_whitespace();
        let host_public_key = format!("{} {}", fields.next().unwrap(), fields.next().unwrap());
        Sshd {
            child,
            port,
            host_public_key,
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path, passphrase: &str) {
    let status = std::process::Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            passphrase,
            "-C",
            "driftwatch-test",
            "-f",
        ])
        .arg(path)
        .status()
        .expect("ssh-keygen runs");
    assert!(status.success());
}

fn ssh_config(
    name: &str,
    url: &str,
    key: &Path,
    passphrase: Option<&str>,
    known_hosts: &Path,
) -> RepoConfig {
    let mut config = remote_config(name, url, "main");
    if let RepoSource::Remote { auth, .. } = &mut config.source {
        *auth = RepoAuth::Ssh {
            username: whoami(),
            key_file: key.to_path_buf(),
            passphrase: passphrase.map(str::to_string),
            known_hosts_file: Some(known_hosts.to_path_buf()),
        };
    }
    config
}

fn whoami() -> String {
    let out = std::process::Command::new("id")
        .arg("-un")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn ssh_remote_with_key_and_known_hosts() {
    if !have_tool("git") || !have_tool("sshd") || !have_tool("ssh-keygen") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let commit = init_repo(&work, &[("a/x.txt", "1\n")]);
    let bare = tmp.path().join("served.git");
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

    let client_key = tmp.path().join("client_key");
    keygen(&client_key, "");
    let sshd_dir = tmp.path().join("sshd");
    std::fs::create_dir_all(&sshd_dir).unwrap();
    let sshd = Sshd::start(&sshd_dir, &client_key);
    let url = format!(
        "ssh://{}@127.0.0.1:{}{}",
        whoami(),
        sshd.port,
        bare.display()
    );
    let state = tmp.path().join("state");

    // The host is listed with its key: the sync works.
    let known_hosts = tmp.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "other.example ssh-rsa AAAA\n[127.0.0.1]:{} {}\n",
            sshd.port, sshd.host_public_key
        ),
    )
    .unwrap();
    let repo = Repo::new(
        ssh_config("ssh", &url, &client_key, None, &known_hosts),
        &state,
    );
    let outcome = repo.sync().await.expect("sync over ssh");
    assert_eq!(outcome.checkout.commit, commit);
    assert_eq!(
        std::fs::read_to_string(outcome.checkout.dir.join("a/x.txt")).unwrap(),
        "1\n"
    );
    assert_eq!(repo.sync().await.unwrap().changed, None);

    // An unknown host is refused with advice.
    let empty = tmp.path().join("known_hosts.empty");
    std::fs::write(&empty, "").unwrap();
    let repo = Repo::new(
        ssh_config("unknown", &url, &client_key, None, &empty),
        &state,
    );
    let error = repo.sync().await.expect_err("unknown host");
    let text = error.to_string();
    eprintln!("unknown host: {text}");
    assert!(
        text.contains("add the host key to the known_hosts file"),
        "{text}"
    );
    assert!(
        text.contains(&format!("[127.0.0.1]:{}", sshd.port)),
        "{text}"
    );
    assert!(repo.current().is_none());

    // A listed host with another key is refused.
    let impostor_key = tmp.path().join("impostor");
    keygen(&impostor_key, "");
    let impostor = std::fs::read_to_string(impostor_key.with_extension("pub")).unwrap();
    let wrong = tmp.path().join("known_hosts.wrong");
    let impostor_fields: Vec<&str> = impostor.split_whitespace().collect();
    std::fs::write(
        &wrong,
        format!(
            "[127.0.0.1]:{} {} {}\n",
            sshd.port, impostor_fields[0], impostor_fields[1]
        ),
    )
    .unwrap();
    let repo = Repo::new(ssh_config("wrong", &url, &client_key, None, &wrong), &state);
    let error = repo.sync().await.expect_err("host key mismatch");
    eprintln!("mismatch: {error}");
    assert!(error.to_string().contains("does not match"), "{error}");

    // A key the server does not accept fails cleanly (no endless retries).
    let repo = Repo::new(
        ssh_config("badkey", &url, &impostor_key, None, &known_hosts),
        &state,
    );
    let error = repo.sync().await.expect_err("unauthorized key");
    eprintln!("unauthorized key: {error}");
    assert_eq!(error.reason(), "fetch");

    // A passphrase-protected key; the passphrase never shows in errors.
    let locked_key = tmp.path().join("locked_key");
    keygen(&locked_key, "hunter2-passphrase");
    std::fs::write(
        sshd_dir.join("authorized_keys"),
        std::fs::read_to_string(locked_key.with_extension("pub")).unwrap(),
    )
    .unwrap();
    let repo = Repo::new(
        ssh_config(
            "locked",
            &url,
            &locked_key,
            Some("hunter2-passphrase"),
            &known_hosts,
        ),
        &state,
    );
    let outcome = repo
        .sync()
        .await
        .expect("sync with a passphrase-protected key");
    assert_eq!(outcome.checkout.commit, commit);
    let repo = Repo::new(
        ssh_config(
            "locked-wrong",
            &url,
            &locked_key,
            Some("wrong-pass"),
            &known_hosts,
        ),
        &state,
    );
    let error = repo.sync().await.expect_err("wrong passphrase");
    eprintln!("wrong passphrase: {error}");
    assert!(!error.to_string().contains("wrong-pass"), "{error}");
}
