//! The config file as written: serde structs that reject unknown keys and
//! keep every value as close to its text as possible (durations and cron
//! expressions stay strings), so the loader can validate them one by one and
//! point at the spot of each problem.
//!
//! Adding a section (say `[history]`): add a `history: Option<toml::Value>`
//! field to `RawTop`, a `RawHistory` struct here, and one `decode` call plus
//! its validation in loader.rs.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The top level. Each section stays a raw value so that a type error in one
/// section does not hide the problems in the others.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTop {
    pub state_dir: Option<toml::Value>,
    pub server: Option<toml::Value>,
    pub history: Option<toml::Value>,
    pub defaults: Option<toml::Value>,
    pub repo: Option<toml::Value>,
    pub probe: Option<toml::Value>,
    pub cluster: Option<toml::Value>,
    pub acks: Option<toml::Value>,
}

/// `[acks]`: acknowledgements of known drift.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcks {
    pub fingerprint_key_file: Option<String>,
    pub max_expiry: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub request_timeout: Option<String>,
    pub api_token: Option<String>,
    pub api_token_file: Option<String>,
    pub webhook_secret: Option<String>,
    pub webhook_secret_file: Option<String>,
    pub read_token: Option<String>,
    pub read_token_file: Option<String>,
    pub read_users_file: Option<String>,
    pub metrics_token: Option<String>,
    pub metrics_token_file: Option<String>,
}

/// `[cluster]`; see `cluster.rs` for the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub mode: Option<String>,
    pub identity: Option<String>,
    pub namespace: Option<String>,
    pub advertise_url: Option<String>,
    pub lease_duration: Option<String>,
    pub renew_interval: Option<String>,
    pub kubeconfig: Option<String>,
    pub context: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHistory {
    pub retention: Option<String>,
    pub episode_retention: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub jitter: Option<String>,
    pub timeout: Option<String>,
    pub max_concurrent_runs: Option<u64>,
    pub max_resource_series: Option<u64>,
    pub max_changes_per_report: Option<u64>,
    pub max_report_bytes: Option<u64>,
    pub kill_grace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRepo {
    pub name: Option<String>,
    pub url: Option<String>,
    pub path: Option<String>,
    pub branch: Option<String>,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub poll_interval: Option<String>,
    pub sync_timeout: Option<String>,
    pub username: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<String>,
    pub ssh_key_file: Option<String>,
    pub ssh_known_hosts_file: Option<String>,
    pub ssh_passphrase: Option<String>,
    pub ssh_passphrase_file: Option<String>,
    pub web_url: Option<RawWebUrl>,
}

/// `web_url = "https://host/owner/repo"`, or templates for other forges:
/// `web_url = { commit = "…{commit}…", file = "…{commit}…{path}…{line}…" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawWebUrl {
    Base(String),
    Templates(RawWebTemplates),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebTemplates {
    pub commit: String,
    pub file: String,
}

/// The keys every `[[probe]]` has; all other keys in the table belong to the
/// probe's layer and go to its builder.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub name: Option<String>,
    pub layer: Option<String>,
    pub repo: Option<String>,
    pub path: Option<String>,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub jitter: Option<String>,
    pub timeout: Option<String>,
    pub run_on_change: Option<bool>,
    pub labels: Option<BTreeMap<String, String>>,
}

/// Keys of `RawProbe`, split off before the rest goes to the layer.
pub const PROBE_COMMON_KEYS: &[&str] = &[
    "name",
    "layer",
    "repo",
    "path",
    "schedule",
    "timezone",
    "jitter",
    "timeout",
    "run_on_change",
    "labels",
];
