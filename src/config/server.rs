//! `[server]`, `[defaults]` and `[history]`.

use std::net::SocketAddr;

use super::loader::*;
use super::raw::{RawDefaults, RawHistory, RawServer};
use super::spans::key;
use super::{Defaults, Schedule, ServerConfig};

impl Loader<'_> {
    pub(super) fn history(&mut self, value: Option<toml::Value>) -> crate::history::HistoryConfig {
        let raw: RawHistory = self.section(value, "history");
        let at = |name: &str| [key("history"), key(name)];
        let defaults = crate::history::HistoryConfig::default();
        let retention = match raw.retention.as_deref() {
            None => defaults.retention,
            Some(text) => self.duration(Some(text), "30d", &at("retention"), false),
        };
        let episode_retention = raw
            .episode_retention
            .as_deref()
            .map(|text| self.duration(Some(text), "3650d", &at("episode_retention"), false));
        crate::history::HistoryConfig {
            retention,
            episode_retention,
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
        ServerConfig {
            listen,
            request_timeout,
            api_token,
            webhook_secret,
        }
    }

    pub(super) fn defaults(&mut self, value: Option<toml::Value>) -> Defaults {
        let raw: RawDefaults = self.section(value, "defaults");
        let at = |name: &str| [key("defaults"), key(name)];
        let schedule = match raw.schedule.as_deref() {
            None => Schedule::parse(DEFAULT_SCHEDULE).expect("default schedule parses"),
            Some(text) => Schedule::parse(text).unwrap_or_else(|message| {
                self.error(&at("schedule"), message);
                Schedule::parse(DEFAULT_SCHEDULE).expect("default schedule parses")
            }),
        };
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
        Defaults {
            schedule,
            timeout,
            max_concurrent_runs,
            max_resource_series,
            kill_grace,
        }
    }
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
