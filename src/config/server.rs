//! `[server]`, `[defaults]`, `[history]` and `[acks]`.

use std::net::SocketAddr;

use super::loader::*;
use super::raw::{RawDefaults, RawHistory, RawServer};
use super::spans::key;
use super::{parse_timezone, Defaults, Schedule, ServerConfig, MAX_RETENTION};

impl Loader<'_> {
    pub(super) fn history(&mut self, value: Option<toml::Value>) -> super::HistoryConfig {
        let raw: RawHistory = self.section(value, "history");
        let at = |name: &str| [key("history"), key(name)];
        let defaults = super::HistoryConfig::default();
        let retention = match raw.retention.as_deref() {
            None => defaults.retention,
            Some(text) => {
                self.duration_up_to(Some(text), "30d", &at("retention"), false, MAX_RETENTION)
            }
        };
        let episode_retention = raw.episode_retention.as_deref().map(|text| {
            self.duration_up_to(
                Some(text),
                "3650d",
                &at("episode_retention"),
                false,
                MAX_RETENTION,
            )
        });
        super::HistoryConfig {
            retention,
            episode_retention,
        }
    }

    pub(super) fn acks(&mut self, value: Option<toml::Value>) -> super::AcksConfig {
        let raw: super::raw::RawAcks = self.section(value, "acks");
        let at = |name: &str| [key("acks"), key(name)];
        let max_expiry = self.duration_up_to(
            raw.max_expiry.as_deref(),
            "30d",
            &at("max_expiry"),
            false,
            std::time::Duration::from_secs(366 * 24 * 3600),
        );
        let fingerprint_key_file = raw.fingerprint_key_file.as_deref().map(|text| {
            let path = self.host_path(text);
            let problem = match std::fs::read(&path) {
                Ok(_) if !path.is_file() => Some("is not a readable file".to_string()),
                Ok(contents) => crate::model::fingerprint::key_problem(&contents),
                Err(e) => Some(format!("is not a readable file ({e})")),
            };
            if let Some(problem) = problem {
                self.error(
                    &at("fingerprint_key_file"),
                    format!("{} {problem}", path.display()),
                );
            }
            path
        });
        super::AcksConfig {
            fingerprint_key_file,
            max_expiry,
        }
    }

    pub(super) fn server(&mut self, value: Option<toml::Value>) -> ServerConfig {
        let raw: RawServer = self.section(value, "server");
        let at = |name: &str| [key("server"), key(name)];
        let listen = match raw.listen.as_deref() {
            None => DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses"),
            Some(text) => parse_listen(text).unwrap_or_else(|message| {
                self.error(&at("listen"), message);
                DEFAULT_LISTEN
                    .parse()
                    .expect("default listen address parses")
            }),
        };
        let request_timeout = self.duration(
            raw.request_timeout.as_deref(),
            DEFAULT_REQUEST_TIMEOUT,
            &at("request_timeout"),
            false,
        );
        let api_token = self.secret(
            &[key("server")],
            "api_token",
            raw.api_token,
            raw.api_token_file,
        );
        let webhook_secret = self.secret(
            &[key("server")],
            "webhook_secret",
            raw.webhook_secret,
            raw.webhook_secret_file,
        );
        let read_token = self.secret(
            &[key("server")],
            "read_token",
            raw.read_token,
            raw.read_token_file,
        );
        let metrics_token = self.secret(
            &[key("server")],
            "metrics_token",
            raw.metrics_token,
            raw.metrics_token_file,
        );
        let read_users =
            match self.secret(&[key("server")], "read_users", None, raw.read_users_file) {
                None => Vec::new(),
                Some(text) => parse_users(&text).unwrap_or_else(|message| {
                    self.error(&at("read_users_file"), message);
                    Vec::new()
                }),
            };
        ServerConfig {
            listen,
            request_timeout,
            api_token,
            webhook_secret,
            read_token,
            read_users,
            metrics_token,
        }
    }

    pub(super) fn defaults(&mut self, value: Option<toml::Value>) -> Defaults {
        let raw: RawDefaults = self.section(value, "defaults");
        let at = |name: &str| [key("defaults"), key(name)];
        let schedule = match raw.schedule.as_deref() {
            None => Some(Schedule::parse(DEFAULT_SCHEDULE).expect("default schedule parses")),
            Some(text) if is_no_schedule(text) => None,
            Some(text) => Schedule::parse(text)
                .map_err(|message| self.error(&at("schedule"), message))
                .ok(),
        };
        let timezone = match raw.timezone.as_deref() {
            None => chrono_tz::Tz::UTC,
            Some(text) => parse_timezone(text).unwrap_or_else(|message| {
                self.error(&at("timezone"), message);
                chrono_tz::Tz::UTC
            }),
        };
        let jitter = raw
            .jitter
            .as_deref()
            .map(|text| self.duration(Some(text), "0s", &at("jitter"), true));
        let timeout = self.duration(
            raw.timeout.as_deref(),
            DEFAULT_TIMEOUT,
            &at("timeout"),
            false,
        );
        let max_concurrent_runs = match raw.max_concurrent_runs {
            None => DEFAULT_MAX_CONCURRENT_RUNS,
            Some(0) => {
                self.error(&at("max_concurrent_runs"), "must be at least 1");
                DEFAULT_MAX_CONCURRENT_RUNS
            }
            Some(n) if n > MAX_CONCURRENT_RUNS as u64 => {
                self.error(
                    &at("max_concurrent_runs"),
                    format!("{n} is more than the maximum of {MAX_CONCURRENT_RUNS}"),
                );
                DEFAULT_MAX_CONCURRENT_RUNS
            }
            Some(n) => n as usize,
        };
        let max_resource_series = raw
            .max_resource_series
            .map_or(DEFAULT_MAX_RESOURCE_SERIES, |n| n as usize);
        let kill_grace = self.duration(
            raw.kill_grace.as_deref(),
            DEFAULT_KILL_GRACE,
            &at("kill_grace"),
            true,
        );
        let mut bounded = |value: Option<u64>,
                           name: &str,
                           range: std::ops::RangeInclusive<u64>,
                           default: usize| {
            match value {
                None => default,
                Some(n) if range.contains(&n) => n as usize,
                Some(n) => {
                    self.error(
                        &at(name),
                        format!("{n} is outside {}..={}", range.start(), range.end()),
                    );
                    default
                }
            }
        };
        let max_changes_per_report = bounded(
            raw.max_changes_per_report,
            "max_changes_per_report",
            CHANGES_PER_REPORT_RANGE,
            super::DEFAULT_MAX_CHANGES_PER_REPORT,
        );
        let max_report_bytes = bounded(
            raw.max_report_bytes,
            "max_report_bytes",
            REPORT_BYTES_RANGE,
            super::DEFAULT_MAX_REPORT_BYTES,
        );
        Defaults {
            schedule,
            timezone,
            jitter,
            timeout,
            max_concurrent_runs,
            max_resource_series,
            kill_grace,
            max_changes_per_report,
            max_report_bytes,
        }
    }
}

/// `user:password` lines (blank lines and `#` comments skipped); the
/// password may hold colons, the user may not.
pub(super) fn parse_users(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut users: Vec<(String, String)> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                if users.iter().any(|(known, _)| known == user) {
                    return Err(format!("line {}: user {user:?} is listed twice", index + 1));
                }
                users.push((user.to_string(), password.to_string()));
            }
            // Never echo the line: it may hold a password.
            _ => return Err(format!("line {}: expected user:password", index + 1)),
        }
    }
    if users.is_empty() {
        return Err("lists no user:password line".into());
    }
    Ok(users)
}

/// `host:port`, `[v6]:port`, or `:port` for all interfaces.
pub(super) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_string()
    };
    if let Ok(addr) = full.parse() {
        return Ok(addr);
    }
    if let Some(port) = full.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
    Err(format!(
        "invalid listen address {text:?}: write ip:port, e.g. 127.0.0.1:9808, [::1]:9808 or :9808"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RepoAuth, RepoSource};

    #[test]
    fn user_lists_parse_and_never_echo_passwords() {
        assert_eq!(
            parse_users("# readers\nalice:s3cret\n\nbob:a:b\n").unwrap(),
            [
                ("alice".into(), "s3cret".into()),
                ("bob".into(), "a:b".into())
            ]
        );
        for (text, error) in [
            ("alice", "line 1: expected user:password"),
            ("ok:1\n:hunter2", "line 2: expected user:password"),
            ("alice:\n", "line 1: expected user:password"),
            ("a:1\na:2", "line 2: user \"a\" is listed twice"),
            ("# none\n", "lists no user:password line"),
        ] {
            let got = parse_users(text).unwrap_err();
            assert_eq!(got, error, "{text:?}");
            assert!(!got.contains("hunter2"));
        }
    }

    #[test]
    fn read_and_metrics_protection_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("read"), "r34d\n").unwrap();
        std::fs::write(dir.path().join("users"), "alice:pw1\nbob:pw:2\n").unwrap();
        std::fs::write(dir.path().join("bad-users"), "alice:pw1\nhunter2\n").unwrap();
        let path = dir.path().join("dw.toml");
        let probe = "[[repo]]\nname = \"r\"\npath = \".\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n";
        let text = format!("[server]\nread_token_file = \"read\"\nread_users_file = \"users\"\nmetrics_token = \"m3tr1cs\"\n{probe}");
        let config = load_str(&path, &text, &crate::probe::Layers).unwrap();
        assert_eq!(config.server.read_token.as_deref(), Some("r34d"));
        assert_eq!(
            config.server.read_users,
            [
                ("alice".into(), "pw1".into()),
                ("bob".into(), "pw:2".into())
            ]
        );
        assert_eq!(config.server.metrics_token.as_deref(), Some("m3tr1cs"));
        let shown = format!("{:?}", config.server);
        assert!(!shown.contains("r34d") && !shown.contains("pw1") && !shown.contains("m3tr1cs"));
        let open = load_str(&path, probe, &crate::probe::Layers).unwrap();
        assert!(open.server.read_token.is_none() && open.server.read_users.is_empty());
        assert!(open.server.metrics_token.is_none());
        let bad = format!("[server]\nread_users_file = \"bad-users\"\n{probe}");
        let errors = load_str(&path, &bad, &crate::probe::Layers)
            .unwrap_err()
            .problems;
        assert!(
            errors[0].contains(":2:19: server.read_users_file: line 2: expected user:password"),
            "{errors:?}"
        );
        assert!(!errors[0].contains("hunter2"));
    }

    #[test]
    fn a_fingerprint_key_file_too_short_or_missing_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dw.toml");
        let text = "[acks]\nfingerprint_key_file = \"key\"\n[[repo]]\nname = \"r\"\nurl = \"https://h/x.git\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n";
        // (contents, expected problem; None: accepted)
        let cases: [(Option<&str>, Option<&str>); 5] = [
            (
                Some("s3crt"),
                Some("holds 5 bytes; a fingerprint key needs at least 16"),
            ),
            (Some("  \n"), Some("holds 0 bytes")),
            (Some("fifteen-bytes!!\n"), Some("holds 15 bytes")),
            (None, Some("is not a readable file")),
            (Some("sixteen-bytes!!!\n"), None),
        ];
        for (contents, expected) in cases {
            let _ = std::fs::remove_file(dir.path().join("key"));
            if let Some(contents) = contents {
                std::fs::write(dir.path().join("key"), contents).unwrap();
            }
            let result = load_str(&path, text, &crate::probe::Layers);
            match expected {
                None => assert!(result.is_ok(), "{contents:?}: {result:?}"),
                Some(part) => {
                    let problems = result.unwrap_err().problems;
                    assert_eq!(problems.len(), 1, "{problems:?}");
                    assert!(
                        problems[0].contains(":2:24: acks.fingerprint_key_file:")
                            && problems[0].contains(part)
                            && problems[0].contains("key"),
                        "{contents:?}: {problems:?}"
                    );
                    assert!(!problems[0].contains("s3crt"), "{problems:?}");
                }
            }
        }
    }

    #[test]
    fn listen_addresses_parse() {
        assert_eq!(parse_listen(":9000").unwrap().to_string(), "0.0.0.0:9000");
        assert!(parse_listen("nowhere").is_err());
    }

    #[test]
    fn secrets_come_from_files_and_never_show_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        let path = dir.path().join("dw.toml");
        let text = "[server]\napi_token_file = \"token\"\n[[repo]]\nname = \"r\"\nurl = \"https://h/x.git\"\ntoken_file = \"token\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n";
        let config = load_str(&path, text, &crate::probe::Layers).unwrap();
        assert_eq!(config.server.api_token.as_deref(), Some("s3cret"));
        match &config.repos[0].source {
            RepoSource::Remote {
                auth: RepoAuth::Token { username, token },
                ..
            } => {
                assert_eq!(username, DEFAULT_TOKEN_USERNAME);
                assert_eq!(token, "s3cret");
            }
            other => panic!("{other:?}"),
        }
        let both = text.replace(
            "api_token_file",
            "api_token = \"inline-secret\"\napi_token_file",
        );
        let errors = load_str(&path, &both, &crate::probe::Layers)
            .unwrap_err()
            .problems;
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("server.api_token_file: give either api_token or api_token_file"),
            "{errors:?}"
        );
        assert!(!errors[0].contains("inline-secret") && !errors[0].contains("s3cret"));
        let missing = text.replace(
            "token_file = \"token\"\n[[probe]]",
            "token_file = \"nope\"\n[[probe]]",
        );
        let errors = load_str(&path, &missing, &crate::probe::Layers)
            .unwrap_err()
            .problems;
        assert!(
            errors[0].contains(":6:14: repo.r.token_file: cannot read"),
            "{errors:?}"
        );
    }
}

#[cfg(test)]
mod schedule_tests {
    use super::super::loader::{load_text, TEST_REPO};
    use std::time::Duration;

    const PROBE: &str = "[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n";

    #[test]
    fn schedules_take_zone_and_jitter_from_probe_or_defaults() {
        let config = load_text(&format!(
            "[defaults]\ntimezone = \"Europe/Berlin\"\njitter = \"10s\"\n{TEST_REPO}{PROBE}\
             [[probe]]\nname = \"q\"\nlayer = \"command\"\ncommand = [\"true\"]\n\
             schedule = \"0 9 * * 1-5\"\ntimezone = \"America/New_York\"\njitter = \"0s\"\n"
        ))
        .unwrap();
        let p = config.probes[0].schedule.as_ref().unwrap();
        assert_eq!(p.timezone.name(), "Europe/Berlin");
        assert_eq!(p.jitter, Duration::from_secs(10));
        let q = config.probes[1].schedule.as_ref().unwrap();
        assert_eq!(q.timezone.name(), "America/New_York");
        assert_eq!(q.jitter, Duration::ZERO);
        // Unset: UTC, and 5% of the interval (15 minutes → 45s).
        let config = load_text(&format!("{TEST_REPO}{PROBE}")).unwrap();
        let p = config.probes[0].schedule.as_ref().unwrap();
        assert_eq!(p.timezone.name(), "UTC");
        assert_eq!(p.jitter, Duration::from_secs(45));
    }

    #[test]
    fn defaults_schedule_none_leaves_probes_unscheduled() {
        let config = load_text(&format!(
            "[defaults]\nschedule = \"none\"\n{TEST_REPO}{PROBE}\
             [[probe]]\nname = \"q\"\nlayer = \"command\"\ncommand = [\"true\"]\nschedule = \"@hourly\"\n"
        ))
        .unwrap();
        assert!(config.probes[0].schedule.is_none());
        assert_eq!(config.probes[1].schedule.as_ref().unwrap().text, "@hourly");
    }

    #[test]
    fn zones_jitter_durations_and_concurrency_are_checked_at_their_spot() {
        let errors = load_text(&format!(
            "[defaults]\ntimezone = \"Europe/Berln\"\ntimeout = \"100000000d\"\nmax_concurrent_runs = 1000000000\n\
             {TEST_REPO}{PROBE}jitter = \"20m\"\ntimeout = \"8d\"\n"
        ))
        .unwrap_err();
        assert_eq!(
            errors,
            [
                "dw.toml:2:12: defaults.timezone: unknown time zone \"Europe/Berln\"; did you mean \"Europe/Berlin\"?",
                "dw.toml:3:11: defaults.timeout: duration \"100000000d\" is longer than the maximum of 7d",
                "dw.toml:4:23: defaults.max_concurrent_runs: 1000000000 is more than the maximum of 1024",
                "dw.toml:12:10: probe.p.jitter: jitter 20m is not shorter than the interval of \"*/15 * * * *\" (15m); runs would overlap",
                "dw.toml:13:11: probe.p.timeout: duration \"8d\" is longer than the maximum of 7d",
            ],
            "{errors:#?}"
        );
        assert!(load_text(&format!(
            "[defaults]\nmax_concurrent_runs = 1024\ntimeout = \"7d\"\n{TEST_REPO}{PROBE}"
        ))
        .is_ok());
    }

    #[test]
    fn report_caps_are_configurable_within_bounds() {
        let config = load_text(&format!("{TEST_REPO}{PROBE}")).unwrap();
        assert_eq!(config.defaults.max_changes_per_report, 1_000);
        assert_eq!(config.defaults.max_report_bytes, 1024 * 1024);
        let config = load_text(&format!(
            "[defaults]\nmax_changes_per_report = 50\nmax_report_bytes = 65536\n{TEST_REPO}{PROBE}"
        ))
        .unwrap();
        assert_eq!(config.defaults.max_changes_per_report, 50);
        assert_eq!(config.defaults.max_report_bytes, 65536);
        for (text, wanted) in [
            (
                "max_changes_per_report = 0",
                "dw.toml:2:26: defaults.max_changes_per_report: 0 is outside 1..=100000",
            ),
            (
                "max_changes_per_report = 100001",
                "dw.toml:2:26: defaults.max_changes_per_report: 100001 is outside 1..=100000",
            ),
            (
                "max_report_bytes = 100",
                "dw.toml:2:20: defaults.max_report_bytes: 100 is outside 16384..=67108864",
            ),
            (
                "max_report_bytes = 68719476736",
                "dw.toml:2:20: defaults.max_report_bytes: 68719476736 is outside 16384..=67108864",
            ),
        ] {
            let errors = load_text(&format!("[defaults]\n{text}\n{TEST_REPO}{PROBE}")).unwrap_err();
            assert_eq!(errors, [wanted], "{text}");
        }
    }
}
