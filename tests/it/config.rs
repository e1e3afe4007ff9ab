//! Config loading end to end: each bad file gives `file:line:col: key: message`.

use std::path::Path;

use driftwatch::config;

const REPO: &str = r#"[[repo]]
name = "infra"
url = "https://example.com/infra.git"
"#;

/// Writes `text` to a temp file and returns its problems with the file's own
/// path replaced by `dw.toml`.
pub fn problems(text: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dw.toml");
    std::fs::write(&path, text).unwrap();
    let errors = driftwatch::app::load_config(&path).expect_err("config should be rejected");
    let prefix = path.display().to_string();
    errors
        .problems
        .iter()
        .map(|p| p.replacen(&prefix, "dw.toml", 1))
        .collect()
}

#[test]
fn bad_configs_name_file_line_and_key() {
    // (case, config text, expected start of the single problem)
    let cases: &[(&str, String, &str)] = &[
        (
            "TOML syntax error",
            format!("{REPO}[[probe]]\nname = \"p\nlayer = \"command\"\n"),
            "dw.toml:5:10: invalid basic string",
        ),
        (
            "unknown top-level key",
            format!("{REPO}stat_dir = \"/tmp\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n"),
            "dw.toml:4:1: repo.infra.stat_dir: unknown key `stat_dir`",
        ),
        (
            "unknown key in a section",
            format!("[server]\nlisten = \"127.0.0.1:1\"\nlisten_addr = \"x\"\n{REPO}[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n"),
            "dw.toml:3:1: server.listen_addr: unknown key `listen_addr`",
        ),
        (
            "unknown key among a layer's fields",
            format!("{REPO}[[probe]]\nname = \"corp\"\nlayer = \"command\"\ncomand = [\"true\"]\n"),
            "dw.toml:7:1: probe.corp.comand: unknown key `comand`",
        ),
        (
            "wrong type",
            format!("{REPO}[[probe]]\nname = \"corp\"\nlayer = \"command\"\ncommand = [\"true\"]\nrun_on_change = \"yes\"\n"),
            "dw.toml:8:17: probe.corp.run_on_change: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "wrong type in defaults",
            format!("[defaults]\nmax_concurrent_runs = \"4\"\n{REPO}[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n"),
            "dw.toml:2:23: defaults.max_concurrent_runs: invalid type: string \"4\"",
        ),
        (
            "invalid cron expression",
            format!("{REPO}[[probe]]\nname = \"corp\"\nlayer = \"command\"\ncommand = [\"true\"]\nschedule = \"*/5 * *\"\n"),
            "dw.toml:8:12: probe.corp.schedule: invalid cron expression \"*/5 * *\": expected 5 or 6 fields",
        ),
        (
            "duplicate probe names",
            format!("{REPO}[[probe]]\nname = \"corp\"\nlayer = \"command\"\ncommand = [\"true\"]\n\n[[probe]]\nname = \"corp\"\nlayer = \"command\"\ncommand = [\"true\"]\n"),
            "dw.toml:10:8: probe.corp.name: duplicate probe name \"corp\" (first at line 5)",
        ),
        (
            "probe naming an unknown repo",
            format!("{REPO}[[probe]]\nname = \"corp\"\nlayer = \"command\"\nrepo = \"infa\"\ncommand = [\"true\"]\n"),
            "dw.toml:7:8: probe.corp.repo: unknown repo \"infa\"; known repos: infra",
        ),
        (
            "path escaping the repo",
            format!("{REPO}[[probe]]\nname = \"corp\"\nlayer = \"command\"\npath = \"../secrets\"\ncommand = [\"true\"]\n"),
            "dw.toml:7:8: probe.corp.path: \"../secrets\" leaves the repository",
        ),
        (
            "zero timeout",
            format!("{REPO}[[probe]]\nname = \"corp\"\nlayer = \"command\"\ntimeout = \"0s\"\ncommand = [\"true\"]\n"),
            "dw.toml:7:11: probe.corp.timeout: must be greater than zero",
        ),
        (
            "invalid duration",
            format!("{REPO}poll_interval = \"5 minutes please\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n"),
            "dw.toml:4:17: repo.infra.poll_interval: invalid duration",
        ),
        (
            "unknown layer",
            format!("{REPO}[[probe]]\nname = \"corp\"\nlayer = \"puppet\"\n"),
            "dw.toml:6:9: probe.corp.layer: unknown layer \"puppet\"; known layers: command",
        ),
        (
            "probe without a name is shown by index",
            format!("{REPO}[[probe]]\nlayer = \"command\"\ncommand = [\"true\"]\n"),
            "dw.toml:4:1: probe[0]: missing key `name`",
        ),
        (
            "reserved label",
            format!("{REPO}[[probe]]\nname = \"corp\"\nlayer = \"command\"\ncommand = [\"true\"]\n[probe.labels]\nteam = \"a\"\ninstance = \"b\"\n"),
            "dw.toml:10:1: probe.corp.labels.instance: label \"instance\" is set by driftwatch itself",
        ),
        (
            "repo with both url and path",
            "[[repo]]\nname = \"infra\"\nurl = \"https://h/x.git\"\npath = \"/srv\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n".to_string(),
            "dw.toml:4:1: repo.infra.path: give either url",
        ),
        (
            "[repo] instead of [[repo]]",
            "[repo]\nname = \"infra\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n".to_string(),
            "dw.toml:1:1: repo: must be a list of tables: write [[repo]], not [repo]",
        ),
        (
            "token over plain http",
            "[[repo]]\nname = \"infra\"\nurl = \"http://h/x.git\"\ntoken = \"t0ken\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n".to_string(),
            "dw.toml:4:1: repo.infra.token: a token would be sent unencrypted over http://",
        ),
        (
            "token with an ssh url",
            "[[repo]]\nname = \"infra\"\nurl = \"git@h:x.git\"\ntoken = \"t0ken\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n".to_string(),
            "dw.toml:4:1: repo.infra.token: token only applies to https URLs",
        ),
        (
            "unsupported url scheme",
            "[[repo]]\nname = \"infra\"\nurl = \"svn://h/x\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n".to_string(),
            "dw.toml:3:7: repo.infra.url: unsupported URL scheme \"svn\"",
        ),
        (
            "branch and ref",
            "[[repo]]\nname = \"infra\"\nurl = \"https://h/x.git\"\nbranch = \"main\"\nref = \"refs/tags/v1\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n".to_string(),
            "dw.toml:5:1: repo.infra.ref: give either branch or ref, not both",
        ),
        (
            "secret inline and from a file",
            format!("[server]\napi_token = \"t0ken\"\napi_token_file = \"/etc/token\"\n{REPO}[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n"),
            "dw.toml:3:1: server.api_token_file: give either api_token or api_token_file, not both",
        ),
        (
            "unreadable secret file",
            format!("{REPO}token_file = \"/nonexistent/driftwatch-token\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n"),
            "dw.toml:4:14: repo.infra.token_file: cannot read /nonexistent/driftwatch-token: No such file",
        ),
        (
            "invalid label name",
            format!("{REPO}[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\nlabels = {{ \"team-name\" = \"a\" }}\n"),
            "dw.toml:8:12: probe.p.labels.team-name: \"team-name\" is not a valid Prometheus label name",
        ),
        (
            "probe without repo among several",
            format!("{REPO}[[repo]]\nname = \"apps\"\nurl = \"https://h/apps.git\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n"),
            "dw.toml:7:1: probe.p: missing key `repo`: with several repos configured, name one of: infra, apps",
        ),
        (
            "web_url that is not an http(s) URL",
            format!("{REPO}web_url = \"git@github.com:acme/infra\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n"),
            "dw.toml:4:11: repo.infra.web_url: \"git@github.com:acme/infra\" is not an http(s) URL",
        ),
        (
            "web_url template without {commit}",
            format!("{REPO}web_url = {{ commit = \"https://git.example.com/c/{{sha}}\", file = \"https://git.example.com/f/{{commit}}/{{path}}\" }}\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n"),
            "dw.toml:4:11: repo.infra.web_url: commit: \"https://git.example.com/c/{sha}\" lacks {commit}",
        ),
        (
            "misspelled common key gets a suggestion",
            format!("{REPO}[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\nschedul = \"@daily\"\n"),
            "dw.toml:8:1: probe.p.schedul: unknown key `schedul`, did you mean `schedule`?",
        ),
    ];
    let mut failures = Vec::new();
    for (case, text, expected) in cases {
        let got = problems(text);
        if got.len() != 1 || !got[0].starts_with(expected) {
            failures.push(format!(
                "{case}:\n  expected one problem starting with {expected:?}\n  got {got:#?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn missing_file_says_how_to_fix_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.toml");
    let errors = driftwatch::app::load_config(&path).unwrap_err();
    assert_eq!(errors.problems.len(), 1);
    let message = &errors.problems[0];
    assert!(
        message.starts_with(&format!(
            "{}: cannot read config: No such file",
            path.display()
        )),
        "{message}"
    );
    assert!(message.ends_with("create it or pass --config"), "{message}");
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = format!(
        r#"bogus = true

[defaults]
timeout = "0s"

{REPO}
[[probe]]
name = "a"
layer = "command"
command = ["true"]
schedule = "never ever"

[[probe]]
name = "a"
layer = "command"
repo = "elsewhere"
path = "../../etc"
comand = ["true"]
"#
    );
    let got = problems(&text);
    let expected = [
        "dw.toml:1:1: bogus: unknown key",
        "dw.toml:4:11: defaults.timeout: must be greater than zero",
        "dw.toml:14:12: probe.a.schedule: invalid cron expression",
        "dw.toml:17:8: probe.a.name: duplicate probe name \"a\" (first at line 11)",
        "dw.toml:19:8: probe.a.repo: unknown repo \"elsewhere\"",
        "dw.toml:20:8: probe.a.path: \"../../etc\" leaves the repository",
        "dw.toml:21:1: probe.a.comand: unknown key `comand`",
    ];
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for (got, expected) in got.iter().zip(expected) {
        assert!(
            got.starts_with(expected),
            "expected {expected:?}, got {got:?}"
        );
    }
}

#[test]
fn example_config_loads_cleanly() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/driftwatch.example.toml");
    let config = driftwatch::app::load_config(&path)
        .unwrap_or_else(|errors| panic!("example config is invalid:\n{errors}"));
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:9808");
    assert_eq!(config.repos.len(), 1);
    let names: Vec<&str> = config.probes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["static-pods", "etc-snippets"]);
    let pods = &config.probes[0];
    assert_eq!(pods.path, Path::new("nodes/static-pods"));
    assert_eq!(
        pods.labels.get("team").map(String::as_str),
        Some("platform")
    );
    assert_eq!(pods.timeout, std::time::Duration::from_secs(120));
    // The second probe takes its repo implicitly and the defaults' timeout.
    assert_eq!(config.probes[1].repo, "infra");
    assert_eq!(config.probes[1].timeout, config.defaults.timeout);
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("checkout")).unwrap();
    std::fs::write(dir.path().join("key"), "not really a key\n").unwrap();
    std::fs::write(dir.path().join("known_hosts"), "").unwrap();
    let text = r#"state_dir = "state"
[[repo]]
name = "synced"
path = "checkout"
[[repo]]
name = "remote"
url = "deploy@git.example.com:infra.git"
ssh_key_file = "key"
ssh_known_hosts_file = "known_hosts"
[[probe]]
name = "p"
layer = "command"
repo = "synced"
schedule = "none"
command = ["true"]
"#;
    let path = dir.path().join("dw.toml");
    std::fs::write(&path, text).unwrap();
    let config = driftwatch::app::load_config(&path).unwrap_or_else(|errors| panic!("{errors}"));
    let base = std::path::absolute(dir.path()).unwrap();
    assert_eq!(config.state_dir, base.join("state"));
    match &config.repos[0].source {
        config::RepoSource::Path(p) => assert_eq!(p, &base.join("checkout")),
        other => panic!("{other:?}"),
    }
    match &config.repos[1].source {
        config::RepoSource::Remote {
            auth:
                config::RepoAuth::Ssh {
                    username,
                    key_file,
                    known_hosts_file,
                    ..
                },
            ..
        } => {
            assert_eq!(username, "deploy");
            assert_eq!(key_file, &base.join("key"));
            assert_eq!(
                known_hosts_file.as_deref(),
                Some(base.join("known_hosts").as_path())
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(config.probes[0].schedule.is_none());
}

/// The example's commented `[cluster]` block, uncommented, is a valid
/// sharded config (its kubeconfig lines aside: that file exists only in a pod).
#[test]
fn example_cluster_block_loads_when_uncommented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/driftwatch.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("# [cluster]").expect("a [cluster] block");
    let end = start + text[start..].find("\n\n").unwrap();
    let block: String = text[start..end]
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            // Settings (`key = value`, `[cluster]`), not the prose around them.
            Some(rest)
                if (rest == "[cluster]"
                    || rest.split_once(" = ").is_some_and(|(key, _)| {
                        key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }))
                    && !rest.starts_with("kubeconfig")
                    && !rest.starts_with("context") =>
            {
                rest.to_string()
            }
            _ => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("driftwatch.toml");
    std::fs::write(&copy, text.replace(&text[start..end], &block)).unwrap();
    let config = driftwatch::app::load_config(&copy)
        .unwrap_or_else(|errors| panic!("uncommented [cluster] block:\n{block}\n{errors}"));
    match config.cluster {
        config::ClusterConfig::Kubernetes(k) => {
            assert_eq!(k.identity, "driftwatch-0");
            assert_eq!(k.namespace, "driftwatch");
            assert_eq!(k.advertise_url, "http://10.0.0.7:9808");
            assert_eq!(k.lease_duration, std::time::Duration::from_secs(30));
        }
        other => panic!("{other:?}"),
    }
}
