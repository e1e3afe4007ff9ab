//! The validated configuration: plain values the runtime modules read. The
//! files beside this one read the TOML into them; nothing here knows TOML.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::schedule::Schedule;
use crate::repo_url::redacted_url;

/// A validated configuration, ready to run. `Debug` output hides secrets.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this came from.
    pub source: PathBuf,
    pub server: ServerConfig,
    /// Where clones, checkouts, caches and the state file live.
    pub state_dir: PathBuf,
    pub defaults: Defaults,
    pub repos: Vec<RepoConfig>,
    pub probes: Vec<ProbeSpec>,
    /// `[history]`: how long runs and drift episodes are kept.
    pub history: HistoryConfig,
    /// `[cluster]`: one process, or one replica of several.
    pub cluster: ClusterConfig,
    /// `[acks]`: acknowledgements of known drift.
    pub acks: AcksConfig,
}

/// The `[history]` config section.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryConfig {
    /// How long runs (and failing/recovered events) are kept.
    pub retention: Duration,
    /// How long closed drift episodes (and their events) are kept; `None`: forever.
    pub episode_retention: Option<Duration>,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            retention: Duration::from_secs(30 * 24 * 3600),
            episode_retention: None,
        }
    }
}

/// The longest expiry of an acknowledgement unless `[acks] max_expiry` says otherwise.
pub const DEFAULT_ACK_MAX_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600);

/// `[acks]`.
#[derive(Debug, Clone, PartialEq)]
pub struct AcksConfig {
    /// The fingerprint key; `None`: `<state_dir>/fingerprint.key`, generated
    /// once. Replicas of a cluster must share one (a Secret).
    pub fingerprint_key_file: Option<PathBuf>,
    /// The furthest an acknowledgement may expire ahead (default 30 days).
    pub max_expiry: Duration,
}

impl Default for AcksConfig {
    fn default() -> Self {
        AcksConfig {
            fingerprint_key_file: None,
            max_expiry: DEFAULT_ACK_MAX_EXPIRY,
        }
    }
}

#[derive(Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub request_timeout: Duration,
    /// Bearer token for trigger endpoints; `None` turns them off.
    pub api_token: Option<String>,
    /// Shared secret for `/api/v1/hooks/{github,gitlab}`; `None` turns them off.
    pub webhook_secret: Option<String>,
    /// Bearer token for reading the status page and the API; with no
    /// token and no users, they are open.
    pub read_token: Option<String>,
    /// `(user, password)` pairs for basic auth on the page and the API,
    /// from `read_users_file` (`user:password` lines).
    pub read_users: Vec<(String, String)>,
    /// Bearer token for `/metrics`, `/healthz` and `/readyz`; `None` leaves them open.
    pub metrics_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Defaults {
    /// `None` for `schedule = "none"`: probes then run on start-up, on a new
    /// commit and when triggered, unless they set their own schedule.
    /// Read in UTC here; each probe reads it in its own `timezone`.
    pub schedule: Option<Schedule>,
    /// The zone schedules are read in unless a probe sets its own (IANA name).
    pub timezone: chrono_tz::Tz,
    /// The largest start offset per instance; `None`: a few percent of each
    /// probe's interval (see [`schedule::default_jitter`]).
    pub jitter: Option<Duration>,
    pub timeout: Duration,
    pub max_concurrent_runs: usize,
    /// Per-probe cap on `driftwatch_probe_resource_drifted` series.
    pub max_resource_series: usize,
    /// Between SIGTERM and SIGKILL, for children and for shutdown.
    pub kill_grace: Duration,
    /// Most changes one run report keeps (`max_changes_per_report`).
    pub max_changes_per_report: usize,
    /// Most bytes of text one run report keeps (`max_report_bytes`).
    pub max_report_bytes: usize,
}

/// Default of `[defaults] max_changes_per_report`.
pub const DEFAULT_MAX_CHANGES_PER_REPORT: usize = crate::model::outcome::MAX_CHANGES_PER_REPORT;
/// Default of `[defaults] max_report_bytes` (1 MiB).
pub const DEFAULT_MAX_REPORT_BYTES: usize = crate::model::outcome::MAX_REPORT_BYTES;

#[derive(Debug, Clone)]
pub struct RepoConfig {
    pub name: String,
    pub source: RepoSource,
    pub poll_interval: Duration,
    /// Longest a whole sync (connect, fetch, checkout) may take; past it the
    /// sync is abandoned and counts as failed. `sync_timeout`, default 2m.
    pub sync_timeout: Duration,
    /// Links to commits and files in the repository's web UI: `web_url`, or
    /// derived from a GitHub/GitLab/Gitea clone URL; None when unknown.
    pub web: Option<crate::weblinks::WebLinks>,
}

#[derive(Clone)]
pub enum RepoSource {
    /// A remote driftwatch clones and fetches itself.
    Remote {
        /// As configured; may hold credentials, so never log it: use `redacted_url`.
        url: String,
        /// Branch name, or a full ref such as `refs/tags/v1`.
        reference: String,
        auth: RepoAuth,
    },
    /// A directory someone else keeps in sync (a git-sync sidecar).
    Path(PathBuf),
}

#[derive(Clone, Default)]
pub enum RepoAuth {
    #[default]
    None,
    /// HTTPS token read from a file; username defaults to `x-access-token`.
    Token { username: String, token: String },
    /// SSH private key, checked against a known_hosts file.
    Ssh {
        username: String,
        key_file: PathBuf,
        passphrase: Option<String>,
        known_hosts_file: Option<PathBuf>,
    },
}

// Hand-written so that `{:?}` of a config never prints a secret.
impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("request_timeout", &self.request_timeout)
            .field("api_token", &self.api_token.as_ref().map(|_| "***"))
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "***"),
            )
            .field("read_token", &self.read_token.as_ref().map(|_| "***"))
            .field(
                "read_users",
                &self
                    .read_users
                    .iter()
                    .map(|(user, _)| user)
                    .collect::<Vec<_>>(),
            )
            .field("metrics_token", &self.metrics_token.as_ref().map(|_| "***"))
            .finish()
    }
}

impl std::fmt::Debug for RepoSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepoSource::Remote {
                url,
                reference,
                auth,
            } => f
                .debug_struct("Remote")
                .field("url", &redacted_url(url))
                .field("reference", reference)
                .field("auth", auth)
                .finish(),
            RepoSource::Path(path) => f.debug_tuple("Path").field(path).finish(),
        }
    }
}

impl std::fmt::Debug for RepoAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RepoAuth::None => f.write_str("None"),
            RepoAuth::Token { username, .. } => f
                .debug_struct("Token")
                .field("username", username)
                .field("token", &"***")
                .finish(),
            RepoAuth::Ssh {
                username,
                key_file,
                passphrase,
                known_hosts_file,
            } => f
                .debug_struct("Ssh")
                .field("username", username)
                .field("key_file", key_file)
                .field("passphrase", &passphrase.as_ref().map(|_| "***"))
                .field("known_hosts_file", known_hosts_file)
                .finish(),
        }
    }
}

/// A probe as configured: plain data. The keys every probe has are checked
/// here; the layer's own keys stay a table (`fields`) that the layer checks
/// (through [`LayerCatalog`] at load time) and `app` turns into a running probe.
#[derive(Clone, Default)]
pub struct ProbeSpec {
    pub name: String,
    pub layer: String,
    pub repo: String,
    /// Relative path inside the repo ("" for the top).
    pub path: PathBuf,
    /// `None`: only on startup, change and manual triggers.
    pub schedule: Option<Schedule>,
    pub timeout: Duration,
    pub run_on_change: bool,
    pub labels: BTreeMap<String, String>,
    /// Directory the config file lives in, for resolving relative host paths.
    pub config_dir: PathBuf,
    /// For a `path` repo, its directory: files the probe names in the repo
    /// can be checked at load time. `None` for a remote repo.
    pub repo_dir: Option<PathBuf>,
    /// The layer's own keys, as written.
    pub fields: toml::Table,
    /// Built for one run and exit (`driftwatch check`): nothing long-lived,
    /// such as the Kubernetes layer's watches, is started. Not a config key.
    pub one_shot: bool,
}

/// The old name of [`ProbeSpec`], kept while callers move over.
pub type ProbeConfig = ProbeSpec;

impl std::fmt::Debug for ProbeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `fields` may hold secrets (tokens in a layer's table): not shown.
        f.debug_struct("ProbeSpec")
            .field("name", &self.name)
            .field("layer", &self.layer)
            .field("repo", &self.repo)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// A problem with one of a layer's fields. `key` is relative to the probe
/// table (e.g. `roots[1]`), so the loader can point at `file:line:col`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub key: String,
    pub message: String,
}

impl FieldError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The layers the loader accepts, supplied by the caller so that `config`
/// does not depend on the probes (`crate::probe::Layers` is the real one).
pub trait LayerCatalog {
    /// Every layer name, for "unknown layer" messages.
    fn names(&self) -> &[&'static str];
    /// Checks one probe's layer fields; `Err` when the layer is unknown is
    /// not needed: the loader only asks about names from `names()`.
    fn check(&self, spec: &ProbeSpec) -> Result<(), Vec<FieldError>>;
}

/// How the daemon shares work with other replicas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClusterConfig {
    /// This process owns every instance (today's behaviour).
    #[default]
    Single,
    /// One replica of several; ownership by rendezvous hashing over the
    /// replicas whose Leases are being renewed.
    Kubernetes(KubernetesCluster),
}

/// `[cluster] mode = "kubernetes"`, with every default resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesCluster {
    /// This replica's name (`identity`, else `POD_NAME`, else the host
    /// name); its Lease is `driftwatch-<identity>`.
    pub identity: String,
    /// Where the Leases live (`namespace`, else `POD_NAMESPACE`, else the
    /// service account's namespace file).
    pub namespace: String,
    /// The base URL other replicas reach this one's API at (`advertise_url`,
    /// else `http://$POD_IP:<listen port>`).
    pub advertise_url: String,
    /// How long a Lease stays valid without a renewal (default 30s).
    pub lease_duration: Duration,
    /// How often this replica renews its Lease (default 10s); less than
    /// `lease_duration`.
    pub renew_interval: Duration,
    /// A kubeconfig file instead of the pod's service account (tests, or a
    /// replica outside the cluster); `context` picks one of its contexts.
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

/// Every config problem found, each already formatted as `file:line:col: key: message`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigErrors {
    pub problems: Vec<String>,
}
