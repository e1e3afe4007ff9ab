//! The config file as written: serde structs that reject unknown keys and
//! keep every value as close to its text as possible (durations and cron
//! expressions stay strings), so the loader can validate them one by one and
//! point at the spot of each problem.
//!
//! Adding a section (say `[history]`): add a `history: Option<toml::Value>`
//! field to `RawTop` with `#[schemars(with = "Option<RawHistory>")]`, a
//! `RawHistory` struct here (listed in `file_tables`), and one `decode`
//! call plus its validation in loader.rs. Every field's doc comment is its
//! entry in docs/configuration-reference.md: its meaning, then a last
//! paragraph `Default: …` (a TOML value in backticks where there is one) or
//! `Required.`; run `scripts/bless` to regenerate the page.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;

use super::schema::{CronText, DurationText, TableSchema, TimeZoneText};

/// The top level of the file: `state_dir`, and one table per section.
// Each section stays a raw value so that a type error in one section does not
// hide the problems in the others; `schemars(with)` names the struct each one
// is decoded into, for the reference.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawTop {
    /// Where clones, checkouts, caches, the saved probe state and the run
    /// history (`history.db`) live. `--state-dir` on the command line overrides it.
    ///
    /// Default: `"/var/lib/driftwatch"`.
    #[schemars(with = "Option<String>")]
    pub state_dir: Option<toml::Value>,
    /// The HTTP server and who may use it.
    ///
    /// Default: every key at its default.
    #[schemars(with = "Option<RawServer>")]
    pub server: Option<toml::Value>,
    /// How long run history and drift episodes are kept.
    ///
    /// Default: every key at its default.
    #[schemars(with = "Option<RawHistory>")]
    pub history: Option<toml::Value>,
    /// Defaults for every probe, and the daemon's limits.
    ///
    /// Default: every key at its default.
    #[schemars(with = "Option<RawDefaults>")]
    pub defaults: Option<toml::Value>,
    /// Scale-out: one process, or one replica of several.
    ///
    /// Default: `mode = "single"`.
    #[schemars(with = "Option<RawCluster>")]
    pub cluster: Option<toml::Value>,
    /// Acknowledgements of known drift.
    ///
    /// Default: every key at its default.
    #[schemars(with = "Option<RawAcks>")]
    pub acks: Option<toml::Value>,
    /// The git repositories probes read; at least one.
    ///
    /// Required.
    #[schemars(with = "Option<Vec<RawRepo>>")]
    pub repo: Option<toml::Value>,
    /// The probes, each checking one part of a repo with one layer; at least one.
    ///
    /// Required.
    #[schemars(with = "Option<Vec<RawProbe>>")]
    pub probe: Option<toml::Value>,
}

/// Acknowledgements of known drift ([Acknowledgements](acknowledgements.md)):
/// the fingerprint key and how far ahead an acknowledgement may expire.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAcks {
    /// The key secret values enter acknowledgement fingerprints under, so a
    /// fingerprint (in the API, or in a repo's acks file) reveals nothing about
    /// the value. Replicas of a cluster must share one (a Secret).
    ///
    /// Default: `<state_dir>/fingerprint.key`, generated once.
    pub fingerprint_key_file: Option<String>,
    /// The furthest ahead an acknowledgement may expire; at most `366d`.
    ///
    /// Default: `"30d"`.
    #[schemars(with = "Option<DurationText>")]
    pub max_expiry: Option<String>,
}

/// The HTTP server: `/metrics`, `/healthz`, `/readyz`, the JSON API and the
/// status page. Each secret `x` may be given as `x_file` instead (one trailing
/// newline dropped), never both; secrets never appear in errors or logs.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    /// Address for `/metrics`, `/healthz`, `/readyz`, `/api/v1/…` and the page:
    /// `ip:port`, `[v6]:port`, `localhost:port`, or `:port` (every IPv4
    /// interface). `--listen` on the command line overrides it.
    ///
    /// Default: `"127.0.0.1:9808"`.
    pub listen: Option<String>,
    /// Requests taking longer are answered with 408.
    ///
    /// Default: `"30s"`.
    #[schemars(with = "Option<DurationText>")]
    pub request_timeout: Option<String>,
    /// Bearer token for the trigger endpoints (`POST /api/v1/…`); without it
    /// they are off.
    ///
    /// Default: none.
    pub api_token: Option<String>,
    /// `api_token`, read from this file.
    ///
    /// Default: none.
    pub api_token_file: Option<String>,
    /// Secret for the GitHub (`X-Hub-Signature-256`) and GitLab (`X-Gitlab-Token`)
    /// push webhooks at `/api/v1/hooks/github` and `/api/v1/hooks/gitlab`;
    /// without it they are off.
    ///
    /// Default: none.
    pub webhook_secret: Option<String>,
    /// `webhook_secret`, read from this file.
    ///
    /// Default: none.
    pub webhook_secret_file: Option<String>,
    /// Bearer token for the status page and the read API
    /// ([read protection](http-api.md#read-protection)); without it and
    /// `read_users_file` they are open.
    ///
    /// Default: none.
    pub read_token: Option<String>,
    /// `read_token`, read from this file.
    ///
    /// Default: none.
    pub read_token_file: Option<String>,
    /// `user:password` lines for basic auth (a browser login) on the page and
    /// the read API.
    ///
    /// Default: none.
    pub read_users_file: Option<String>,
    /// Bearer token for `/metrics`, `/healthz` and `/readyz`; without it they
    /// are open.
    ///
    /// Default: none.
    pub metrics_token: Option<String>,
    /// `metrics_token`, read from this file.
    ///
    /// Default: none.
    pub metrics_token_file: Option<String>,
}

/// Scale-out ([Scale-out](scale-out.md)): one process, or one replica of
/// several sharing the instances through Kubernetes Leases. Every key but
/// `mode` is an error in single mode; in `kubernetes` mode the defaults come
/// from what the downward API puts in the environment (`POD_NAME`,
/// `POD_NAMESPACE`, `POD_IP`), so a StatefulSet needs no per-replica config.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// `"single"`: this process runs every instance. `"kubernetes"`: one replica
    /// of several sharing the instances through Leases; every other key of
    /// `[cluster]` is an error in single mode.
    ///
    /// Default: `"single"`.
    pub mode: Option<String>,
    /// This replica's name; its Lease is `driftwatch-<identity>` (lower-case
    /// letters, digits, `-`, `.`).
    ///
    /// Default: `$POD_NAME`, else the host name.
    pub identity: Option<String>,
    /// Where the Leases and status ConfigMaps live.
    ///
    /// Default: `$POD_NAMESPACE`, else the service account's namespace file.
    pub namespace: Option<String>,
    /// The base URL the other replicas reach this one's API at (in its Lease).
    ///
    /// Default: `http://$POD_IP:<listen port>`.
    pub advertise_url: Option<String>,
    /// A replica whose Lease has not changed for this long, as each reader sees
    /// it on its own clock, loses its instances.
    ///
    /// Default: `"30s"`.
    #[schemars(with = "Option<DurationText>")]
    pub lease_duration: Option<String>,
    /// How often the own Lease is renewed; must be shorter than `lease_duration`
    /// (a third of it is usual).
    ///
    /// Default: `"10s"`.
    #[schemars(with = "Option<DurationText>")]
    pub renew_interval: Option<String>,
    /// A kubeconfig file instead of the pod's service account, for a replica
    /// outside a pod.
    ///
    /// Default: the pod's service account.
    pub kubeconfig: Option<String>,
    /// The kubeconfig context to use; needs `kubeconfig`.
    ///
    /// Default: the kubeconfig's current context.
    pub context: Option<String>,
}

/// Run history and drift episodes, kept in `<state_dir>/history.db` (SQLite):
/// how long they are kept.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHistory {
    /// Runs (and probe failing/recovered events) older than this are deleted;
    /// at most 100 years.
    ///
    /// Default: `"30d"`.
    #[schemars(with = "Option<DurationText>")]
    pub retention: Option<String>,
    /// Closed drift episodes (and their events) older than this are deleted; at
    /// most 100 years.
    ///
    /// Default: kept forever.
    #[schemars(with = "Option<DurationText>")]
    pub episode_retention: Option<String>,
}

/// What probes get unless they set their own, and the daemon's limits.
/// Timeouts, intervals, grace periods and jitter are at most 7 days.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    /// The schedule of probes that set none; `"none"`: those probes run only at
    /// start-up, on change and on demand.
    ///
    /// Default: `"*/15 * * * *"`.
    #[schemars(with = "Option<CronText>")]
    pub schedule: Option<String>,
    /// The zone schedules are read in.
    ///
    /// Default: `"UTC"`.
    #[schemars(with = "Option<TimeZoneText>")]
    pub timezone: Option<String>,
    /// The largest start offset of an instance after its cron time (fixed per
    /// instance by a hash of its id); `"0s"` turns it off. Must be shorter than
    /// the schedule's interval.
    ///
    /// Default: 5% of the schedule's shortest interval, at most 5m.
    #[schemars(with = "Option<DurationText>")]
    pub jitter: Option<String>,
    /// Longest one probe run may take (more than zero); then SIGTERM to the
    /// run's process group, SIGKILL after `kill_grace`.
    ///
    /// Default: `"10m"`.
    #[schemars(with = "Option<DurationText>")]
    pub timeout: Option<String>,
    /// Probe runs at once across all probes; 1 to 1024.
    ///
    /// Default: `4`.
    pub max_concurrent_runs: Option<u64>,
    /// Per probe, at most this many `driftwatch_probe_resource_drifted` series;
    /// the rest are counted, not listed.
    ///
    /// Default: `100`.
    pub max_resource_series: Option<u64>,
    /// Changes one run report keeps (1 to 100,000); the rest are counted in
    /// `total_changes` and the report says `truncated`.
    ///
    /// Default: `1000`.
    pub max_changes_per_report: Option<u64>,
    /// Bytes of text one run report keeps (16384 to 67108864).
    ///
    /// Default: `1048576`.
    pub max_report_bytes: Option<u64>,
    /// Between SIGTERM and SIGKILL, for probe children and for shutdown.
    ///
    /// Default: `"10s"`.
    #[schemars(with = "Option<DurationText>")]
    pub kill_grace: Option<String>,
}

/// A git repository: cloned into `state_dir` and fetched every
/// `poll_interval` (give `url`), or a directory someone else keeps in sync
/// (give `path`); and how to authenticate.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRepo {
    /// The repo's name: probes refer to it (`repo = "infra"`), and it is the
    /// `repo` label. Letters, digits, `-_.`.
    ///
    /// Required.
    pub name: Option<String>,
    /// The remote to clone: `https://`, `http://`, `ssh://` (also `git+ssh://`),
    /// `git://`, `file://` or scp-like `git@host:path` (`git@[::1]:path` for
    /// IPv6). IPv6 hosts, ports and percent-encoded credentials
    /// (`https://user:p%40ss@host/…`) work; a host with a space or another
    /// invalid character is an error at its line. Credentials are shown as `***@`
    /// everywhere (errors, logs, API, page), and a sync error never quotes the
    /// password, encoded or decoded, nor an https user that is a token. Give
    /// `url` or `path`, not both.
    ///
    /// Default: none.
    pub url: Option<String>,
    /// Instead of `url`: a directory kept in sync by someone else (a git-sync
    /// sidecar), only read; `branch`, `ref` and the credentials do not apply.
    ///
    /// Default: none.
    pub path: Option<String>,
    /// The branch to follow.
    ///
    /// Default: `"main"`.
    pub branch: Option<String>,
    /// Instead of `branch`: a full ref to follow (`refs/tags/prod`).
    ///
    /// Default: none.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// How often to fetch (a fetch that finds nothing new is cheap).
    ///
    /// Default: `"1m"`.
    #[schemars(with = "Option<DurationText>")]
    pub poll_interval: Option<String>,
    /// Longest a whole sync (connect, fetch, checkout) may take; past it the
    /// sync is abandoned and counts as failed.
    ///
    /// Default: `"2m"`.
    #[schemars(with = "Option<DurationText>")]
    pub sync_timeout: Option<String>,
    /// The user for token auth over HTTPS, or for SSH.
    ///
    /// Default: `x-access-token` with a token; over SSH the URL's user, else `git`.
    pub username: Option<String>,
    /// HTTPS token auth (a GitHub, GitLab or Gitea access token); refused over
    /// plain `http://`.
    ///
    /// Default: none.
    pub token: Option<String>,
    /// `token`, read from this file.
    ///
    /// Default: none.
    pub token_file: Option<String>,
    /// SSH auth (`ssh://` and `git@host:path` URLs): the private key.
    ///
    /// Default: none.
    pub ssh_key_file: Option<String>,
    /// The known_hosts file the server's key is checked against; needs
    /// `ssh_key_file`.
    ///
    /// Default: none.
    pub ssh_known_hosts_file: Option<String>,
    /// The passphrase of `ssh_key_file`.
    ///
    /// Default: none.
    pub ssh_passphrase: Option<String>,
    /// `ssh_passphrase`, read from this file.
    ///
    /// Default: none.
    pub ssh_passphrase_file: Option<String>,
    /// Links from the page, the API and Slack into the repo's web UI: every
    /// commit, and each drifted resource's declaration (Terraform resource
    /// `file:line`, Kubernetes manifest file, Ansible task `file:line`).
    /// `"https://host/owner/repo"` (GitLab or Gitea URL layout when the host
    /// name says so, else GitHub's), or templates for other forges (below).
    ///
    /// Default: derived from an https or ssh `url` whose host names GitHub,
    /// GitLab, Gitea, Forgejo or Codeberg (credentials never copied); none for
    /// `path` repos.
    pub web_url: Option<RawWebUrl>,
}

/// `web_url = "https://host/owner/repo"`, or templates for other forges:
/// `web_url = { commit = "…{commit}…", file = "…{commit}…{path}…{line}…" }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RawWebUrl {
    Base(String),
    Templates(RawWebTemplates),
}

/// `web_url` as templates, for a forge whose URL layout driftwatch does not
/// know: `web_url = { commit = "…{commit}…", file = "…{commit}…{path}…{line}…" }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWebTemplates {
    /// A commit's page, with `{commit}` for its id:
    /// `"https://git.example.com/infra/commit/{commit}"`.
    ///
    /// Required.
    pub commit: String,
    /// A file at a commit, with `{commit}`, `{path}` and `{line}`:
    /// `"https://git.example.com/infra/src/{commit}/{path}#L{line}"`.
    ///
    /// Required.
    pub file: String,
}

/// The keys every probe has. All other keys of the table belong to the probe's
/// `layer` (the tables below) and go to its builder.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    /// Unique; the `probe` label on every series. Letters, digits, `-_.`.
    ///
    /// Required.
    pub name: Option<String>,
    /// The layer: `"command"`, `"terraform"`, `"ansible"` or `"kubernetes"`;
    /// it takes the layer's own keys (below).
    ///
    /// Required.
    pub layer: Option<String>,
    /// Which `[[repo]]`; required when several repos are configured.
    ///
    /// Default: the only repo.
    pub repo: Option<String>,
    /// The directory inside the repo the probe works in (`""` is the top); no
    /// `..` or absolute paths. A new commit that touches it triggers a run (see
    /// `run_on_change`).
    ///
    /// Default: `""`.
    pub path: Option<String>,
    /// When to run, besides at start-up, on change and on demand; `"none"` runs
    /// only then.
    ///
    /// Default: `[defaults] schedule`.
    #[schemars(with = "Option<CronText>")]
    pub schedule: Option<String>,
    /// The zone this probe's schedule is read in.
    ///
    /// Default: `[defaults] timezone`.
    #[schemars(with = "Option<TimeZoneText>")]
    pub timezone: Option<String>,
    /// The largest start offset of each of its instances, as in `[defaults]`.
    ///
    /// Default: `[defaults] jitter`.
    #[schemars(with = "Option<DurationText>")]
    pub jitter: Option<String>,
    /// Longest one run may take; more than zero.
    ///
    /// Default: `[defaults] timeout`.
    #[schemars(with = "Option<DurationText>")]
    pub timeout: Option<String>,
    /// Run when a new commit touches `path`.
    ///
    /// Default: `true`.
    pub run_on_change: Option<bool>,
    /// Constant labels on the probe's series (for Alertmanager routing), e.g.
    /// `{ team = "corp" }`: valid Prometheus names, not one of `probe layer root
    /// resource action result reason repo revision version instance job`.
    ///
    /// Default: `{}`.
    pub labels: Option<BTreeMap<String, String>>,
}

/// The tables of the config file, the top level first, for the configuration
/// reference; `[[probe]]` holds the keys every probe has (each layer's own come
/// from `probe::config_tables`).
pub fn file_tables() -> Vec<TableSchema> {
    vec![
        TableSchema::of::<RawTop>(),
        TableSchema::of::<RawServer>(),
        TableSchema::of::<RawHistory>(),
        TableSchema::of::<RawDefaults>(),
        TableSchema::of::<RawCluster>(),
        TableSchema::of::<RawAcks>(),
        TableSchema::of::<RawRepo>(),
        TableSchema::of::<RawWebTemplates>(),
        TableSchema::of::<RawProbe>(),
    ]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_common_probe_keys_are_raw_probes_fields() {
        assert_eq!(
            PROBE_COMMON_KEYS,
            serde_aux::serde_introspection::serde_introspect::<RawProbe>()
        );
    }
}
