//! What every handler reads: the [`Context`] (state, history, catalog,
//! secrets, counters, caches) and the [`TriggerSink`] it knows the
//! scheduler by. A file of its own so each route's file imports it without
//! importing the router that mounts the routes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, Opts};

use super::cluster_view::Fanout;
use super::hooks::normalize_repo_url;
use super::views::Views;
use crate::cluster::Cluster;
use crate::config::{Config, RepoSource};
use crate::handover::Peers;
use crate::history::History;
use crate::metrics::Metrics;
use crate::scheduler::Scheduler;
use crate::state::State as ProbeState;

/// How often the status page reloads itself.
pub const REFRESH_SECONDS: u64 = 30;
/// Default for `[server] request_timeout`.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a trigger was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerRefusal {
    #[error("no such probe or repository")]
    NotFound,
    #[error("already running or queued")]
    Busy,
    #[error("not accepting triggers (starting or shutting down)")]
    Unavailable,
    /// The probe's repository has not synced yet: it has no instances to
    /// run. The text says what to do.
    #[error("{0}")]
    NotSynced(String),
    /// Another cluster member owns the instance: send the trigger to it.
    #[error("{instance} is run by {}; send the trigger there", match owner { Some((identity, url)) => format!("cluster member {identity} ({url})"), None => "no live cluster member right now".to_string() })]
    NotOwned {
        instance: String,
        /// The owner's identity and advertised URL, when a member is live.
        owner: Option<(String, String)>,
    },
}

/// What the scheduler offers the HTTP side: a manual run and a sync now.
/// Both only enqueue; they return at once.
pub trait TriggerSink: Send + Sync + 'static {
    /// Runs one probe instance (or every instance of a probe name) now.
    fn run_probe(&self, id: &str) -> Result<(), TriggerRefusal>;
    /// Fetches `repo` (or every repo) now; a new commit runs the probes
    /// whose paths it touched.
    fn sync(&self, repo: Option<&str>) -> Result<(), TriggerRefusal>;
    /// True once every repo has synced once (`/readyz`).
    fn is_ready(&self) -> bool;
}

impl From<crate::scheduler::TriggerError> for TriggerRefusal {
    fn from(err: crate::scheduler::TriggerError) -> TriggerRefusal {
        use crate::scheduler::TriggerError;
        match err {
            TriggerError::UnknownProbe(_)
            | TriggerError::UnknownRepo(_)
            | TriggerError::UnknownInstance { .. } => TriggerRefusal::NotFound,
            TriggerError::NotSynced { .. } => TriggerRefusal::NotSynced(err.to_string()),
            TriggerError::ShuttingDown => TriggerRefusal::Unavailable,
            TriggerError::NotOwned { instance, owner } => TriggerRefusal::NotOwned {
                instance,
                owner: owner.map(|m| (m.identity, m.url)),
            },
        }
    }
}

/// The daemon's scheduler as a [`TriggerSink`].
pub struct SchedulerTriggers(pub Arc<Scheduler>);

impl TriggerSink for SchedulerTriggers {
    fn run_probe(&self, id: &str) -> Result<(), TriggerRefusal> {
        self.0.trigger(id).map_err(TriggerRefusal::from)
    }

    fn sync(&self, repo: Option<&str>) -> Result<(), TriggerRefusal> {
        self.0.trigger_sync(repo).map_err(TriggerRefusal::from)
    }

    fn is_ready(&self) -> bool {
        self.0.is_ready()
    }
}

/// A configured probe, as the page and the API show it before (and besides)
/// its first run.
#[derive(Debug, Clone, Default)]
pub struct CatalogProbe {
    pub name: String,
    pub layer: String,
    pub repo: String,
    pub path: String,
    pub schedule: Option<String>,
    /// The IANA zone the schedule is read in; None without a schedule.
    pub timezone: Option<chrono_tz::Tz>,
    pub timeout: Duration,
    pub run_on_change: bool,
    pub labels: BTreeMap<String, String>,
}

/// A configured repository with the keys a push payload is matched by.
#[derive(Debug, Clone)]
pub struct CatalogRepo {
    pub name: String,
    /// Normalized remote URL (see [`normalize_repo_url`]); none for path repos.
    pub match_key: Option<String>,
}

/// The configured probes and repos.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub probes: Vec<CatalogProbe>,
    pub repos: Vec<CatalogRepo>,
}

impl Catalog {
    pub fn from_config(config: &Config) -> Catalog {
        Catalog {
            probes: config
                .probes
                .iter()
                .map(|p| CatalogProbe {
                    name: p.name.clone(),
                    layer: p.layer.clone(),
                    repo: p.repo.clone(),
                    path: p.path.to_string_lossy().into_owned(),
                    schedule: p.schedule.as_ref().map(|s| s.text.clone()),
                    timezone: p.schedule.as_ref().map(|s| s.timezone),
                    timeout: p.timeout,
                    run_on_change: p.run_on_change,
                    labels: p.labels.clone(),
                })
                .collect(),
            repos: config
                .repos
                .iter()
                .map(|r| CatalogRepo {
                    name: r.name.clone(),
                    match_key: match &r.source {
                        RepoSource::Remote { url, .. } => normalize_repo_url(url),
                        RepoSource::Path(_) => None,
                    },
                })
                .collect(),
        }
    }

    pub(super) fn probe(&self, name: &str) -> Option<&CatalogProbe> {
        self.probes.iter().find(|p| p.name == name)
    }
}

/// Secrets for the endpoints; `None` switches a trigger endpoint off, and
/// leaves a read endpoint open.
#[derive(Clone, Default)]
pub struct Secrets {
    pub api_token: Option<String>,
    pub webhook_secret: Option<String>,
    /// Bearer token for the page and the read API.
    pub read_token: Option<String>,
    /// Basic-auth `(user, password)` pairs for the page and the read API.
    pub read_users: Vec<(String, String)>,
    /// Bearer token for `/metrics`, `/healthz` and `/readyz`.
    pub metrics_token: Option<String>,
}

impl Secrets {
    /// True when reading the page and the API needs credentials.
    pub fn read_protected(&self) -> bool {
        self.read_token.is_some() || !self.read_users.is_empty()
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |secret: &Option<String>| secret.as_ref().map(|_| "***");
        f.debug_struct("Secrets")
            .field("api_token", &hidden(&self.api_token))
            .field("webhook_secret", &hidden(&self.webhook_secret))
            .field("read_token", &hidden(&self.read_token))
            .field(
                "read_users",
                &self
                    .read_users
                    .iter()
                    .map(|(user, _)| user)
                    .collect::<Vec<_>>(),
            )
            .field("metrics_token", &hidden(&self.metrics_token))
            .finish()
    }
}

/// The counters this module owns, registered into the daemon's registry.
#[derive(Clone)]
pub struct HttpMetrics {
    pub(super) http_requests: IntCounterVec,
    triggers: IntCounterVec,
}

impl HttpMetrics {
    pub fn register(metrics: &Metrics) -> prometheus::Result<HttpMetrics> {
        let http_requests = IntCounterVec::new(
            Opts::new(
                "driftwatch_http_requests_total",
                "HTTP requests served, by route (handler) and status code.",
            ),
            &["handler", "code"],
        )?;
        let triggers = IntCounterVec::new(
            Opts::new(
                "driftwatch_triggers_total",
                "Manual triggers and webhook deliveries, by kind (run, sync, github, gitlab, ack) and result (accepted, ignored, unauthorized, not_found, busy, not_synced, unavailable, not_owned, bad_request, disabled; for ack also in_sync, no_resources, repo_ack, dry_run, failed).",
            ),
            &["kind", "result"],
        )?;
        metrics.register(Box::new(http_requests.clone()))?;
        metrics.register(Box::new(triggers.clone()))?;
        for kind in ["run", "sync", "github", "gitlab", "ack"] {
            for result in ["accepted", "unauthorized"] {
                triggers.with_label_values(&[kind, result]);
            }
        }
        Ok(HttpMetrics {
            http_requests,
            triggers,
        })
    }

    pub(super) fn trigger(&self, kind: &str, result: &str) {
        self.triggers.with_label_values(&[kind, result]).inc();
    }
}

/// Everything the handlers read: one value, cloned into each request.
#[derive(Clone)]
pub struct Context {
    pub state: Arc<ProbeState>,
    /// Run history; `None` for one-shot `check` runs.
    pub history: Option<Arc<History>>,
    pub catalog: Arc<Catalog>,
    pub triggers: Arc<dyn TriggerSink>,
    pub secrets: Arc<Secrets>,
    /// The daemon's metrics, served at `/metrics`.
    pub metrics: Arc<Metrics>,
    /// The counters of this module (in `metrics`' registry).
    pub http_metrics: HttpMetrics,
    pub refresh_seconds: u64,
    pub request_timeout: Duration,
    /// Rendered views, shared by every clone of the context.
    pub views: Arc<Views>,
    /// Which replica this is and who owns what ([`Cluster::single`] unless
    /// `[cluster] mode = "kubernetes"`).
    pub cluster: Cluster,
    /// The client for the other replicas' APIs.
    pub peers: Peers,
    /// The merged view of the whole cluster, shared by every clone.
    pub fanout: Arc<Fanout>,
    /// `[acks] max_expiry`: the furthest a run-time ack may expire ahead.
    pub ack_max_expiry: Duration,
}

impl Context {
    /// A context with no history, no secrets (triggers and hooks off) and
    /// default page settings; registers this module's counters in `metrics`.
    pub fn new(
        state: Arc<ProbeState>,
        metrics: Arc<Metrics>,
        catalog: Catalog,
        triggers: Arc<dyn TriggerSink>,
    ) -> prometheus::Result<Context> {
        let http_metrics = HttpMetrics::register(&metrics)?;
        Ok(Context {
            state,
            history: None,
            catalog: Arc::new(catalog),
            triggers,
            secrets: Arc::new(Secrets::default()),
            metrics,
            http_metrics,
            refresh_seconds: REFRESH_SECONDS,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            views: Arc::default(),
            cluster: Cluster::single(),
            peers: Peers::new(crate::handover::peers::DEFAULT_TIMEOUT, None),
            fanout: Arc::default(),
            ack_max_expiry: crate::config::DEFAULT_ACK_MAX_EXPIRY,
        })
    }
}
