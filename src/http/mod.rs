//! The HTTP side: operations endpoints, the JSON API, the status page and
//! the triggers. Handlers only read shared state; the one write path is a
//! trigger into the scheduler.
//!
//! - `GET /metrics`, `/healthz`, `/readyz`: for Prometheus and orchestrators.
//! - `GET /api/v1/probes`, `/api/v1/probes/{id}`: probe instances ([`api`]).
//! - `GET /api/v1/probes/{id}/runs`, `/api/v1/events`, `/api/v1/episodes`:
//!   history as JSON, newest first, paged with `?limit=&before=<cursor>`.
//! - `GET /`, `/probes/{id}`, `/events`: server-rendered HTML ([`pages`], [`html`]).
//! - `GET /api/v1/cluster/status`: this replica's statuses for the others
//!   (scale-out handover and the page of the whole cluster, [`cluster`]).
//!   In `kubernetes` mode `/` and `/api/v1/probes` show every instance of
//!   the cluster, merged from the members.
//! - `POST /api/v1/probes/{id}/acks`, `DELETE /api/v1/acks/{ack}`, `GET
//!   /api/v1/acks`: acknowledgements of known drift ([`acks`]).
//! - `POST /api/v1/probes/{id}/run`, `POST /api/v1/sync`: bearer token from
//!   `[server] api_token_file`; without a configured token they answer 404.
//! - `POST /api/v1/hooks/github` (`X-Hub-Signature-256`) and
//!   `/api/v1/hooks/gitlab` (`X-Gitlab-Token`): a push syncs the matching
//!   repositories at once; the sync runs the probes whose paths changed
//!   ([`triggers`], [`hooks`]).
//!
//! Every handler reads one [`Context`]. It knows the scheduler only as a
//! [`TriggerSink`], so tests can serve the real routes without one. Instance
//! ids (`name` or `name:root`) are percent-encoded in URLs.

// Helpers return `Err(Response)` to hand an early answer straight back to axum.
#![allow(clippy::result_large_err)]

pub mod ack_html;
pub mod acks;
pub mod api;
pub mod cluster;
pub mod hooks;
pub mod html;
pub mod pages;
pub mod text;
pub mod triggers;
pub mod views;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use prometheus::{IntCounterVec, Opts};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::config::{Config, RepoSource};
use crate::handover::Peers;
use crate::history::History;
use crate::metrics::Metrics;
use crate::scheduler::Scheduler;
use crate::state::State as ProbeState;

/// Largest request body accepted (webhook payloads are far smaller).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_PAGE: usize = 50;
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
    /// Normalized remote URL (see [`hooks::normalize_repo_url`]); none for path repos.
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
                        RepoSource::Remote { url, .. } => hooks::normalize_repo_url(url),
                        RepoSource::Path(_) => None,
                    },
                })
                .collect(),
        }
    }

    fn probe(&self, name: &str) -> Option<&CatalogProbe> {
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
    http_requests: IntCounterVec,
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

    fn trigger(&self, kind: &str, result: &str) {
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
    pub views: Arc<views::Views>,
    /// Which replica this is and who owns what ([`Cluster::single`] unless
    /// `[cluster] mode = "kubernetes"`).
    pub cluster: Cluster,
    /// The client for the other replicas' APIs.
    pub peers: Peers,
    /// The merged view of the whole cluster, shared by every clone.
    pub fanout: Arc<cluster::Fanout>,
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

/// Every route, counted by [`count_requests`] and cut off after the request
/// timeout. Three access classes: operations endpoints (open unless
/// `metrics_token`), reading (open unless `read_token` or `read_users`),
/// and triggers with their own token or signature.
pub fn router(cx: Context) -> Router {
    let timeout = cx.request_timeout;
    let request_metrics = cx.http_metrics.clone();
    let operations = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route_layer(axum::middleware::from_fn_with_state(
            cx.clone(),
            require_metrics_token,
        ));
    // An instance's own routes answer from its owner in kubernetes mode.
    let instance = Router::new()
        .route("/api/v1/probes/{name}", get(api::get_probe))
        .route("/api/v1/probes/{name}/runs", get(api::api_runs))
        .route("/probes/{name}", get(pages::probe_page))
        .route_layer(axum::middleware::from_fn_with_state(
            cx.clone(),
            cluster::relay_to_owner,
        ));
    let reading = Router::new()
        .route("/api/v1/probes", get(api::list_probes))
        .merge(instance)
        .route("/api/v1/acks", get(acks::list_acks))
        .route("/api/v1/events", get(api::api_events))
        .route("/api/v1/episodes", get(api::api_episodes))
        .route(crate::handover::STATUS_PATH, get(cluster::status))
        .route("/", get(pages::overview))
        .route("/events", get(pages::events_page))
        .route_layer(axum::middleware::from_fn_with_state(
            cx.clone(),
            require_reader,
        ));
    let writing = Router::new()
        .route("/api/v1/probes/{name}/run", post(triggers::trigger_run))
        .route("/api/v1/sync", post(triggers::trigger_sync))
        .route("/api/v1/probes/{name}/acks", post(acks::create_ack))
        .route("/api/v1/acks/{ack}", delete(acks::delete_ack))
        .route("/api/v1/hooks/github", post(triggers::hook_github))
        .route("/api/v1/hooks/gitlab", post(triggers::hook_gitlab));
    operations
        .merge(reading)
        .merge(writing)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            request_metrics,
            count_requests,
        ))
        .with_state(cx)
}

fn authorization(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

/// 401 with a challenge per scheme; `hint` says which credential to send
/// and where it is configured (never the credential itself).
fn unauthorized(challenges: &[&'static str], hint: &str) -> Response {
    let mut response = json_error(StatusCode::UNAUTHORIZED, &format!("unauthorized: {hint}"));
    for challenge in challenges {
        response.headers_mut().append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(challenge),
        );
    }
    response
}

/// Lets a request through to the page or the read API when reading is open,
/// or it carries the read token or a listed user's password.
async fn require_reader(State(cx): State<Context>, request: Request, next: Next) -> Response {
    let secrets = &cx.secrets;
    if !secrets.read_protected() {
        return next.run(request).await;
    }
    let given = authorization(&request);
    let token_ok = secrets
        .read_token
        .as_deref()
        .is_some_and(|token| hooks::bearer_matches(token, given));
    if token_ok || hooks::basic_matches(&secrets.read_users, given) {
        return next.run(request).await;
    }
    let mut challenges = Vec::new();
    let mut ways = Vec::new();
    if secrets.read_token.is_some() {
        challenges.push("Bearer");
        ways.push("the read token ([server] read_token_file) as \"Authorization: Bearer <token>\"");
    }
    if !secrets.read_users.is_empty() {
        challenges.push(r#"Basic realm="driftwatch", charset="UTF-8""#);
        ways.push("a user and password from [server] read_users_file");
    }
    unauthorized(&challenges, &format!("send {}", ways.join(", or ")))
}

/// Lets a request through to `/metrics` and the health checks unless
/// `metrics_token` is set and the request lacks it.
async fn require_metrics_token(
    State(cx): State<Context>,
    request: Request,
    next: Next,
) -> Response {
    match cx.secrets.metrics_token.as_deref() {
        Some(token) if !hooks::bearer_matches(token, authorization(&request)) => {
            unauthorized(
                &["Bearer"],
                "send the metrics token ([server] metrics_token_file) as \"Authorization: Bearer <token>\"",
            )
        }
        _ => next.run(request).await,
    }
}

/// Serves until `shutdown` fires, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cx: Context,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(cx))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn metrics(State(cx): State<Context>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        cx.metrics.render_cached(),
    )
        .into_response()
}

async fn readyz(State(cx): State<Context>) -> Response {
    if cx.triggers.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first sync of every repo\n",
        )
            .into_response()
    }
}

/// Counts every request by matched route and status code. Applied to the
/// whole router, so that `/metrics` and the rest are counted too.
pub async fn count_requests(
    State(metrics): State<HttpMetrics>,
    request: Request,
    next: Next,
) -> Response {
    let handler = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let response = next.run(request).await;
    metrics
        .http_requests
        .with_label_values(&[&handler, response.status().as_str()])
        .inc();
    response
}

pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

pub(crate) fn html_response<B: IntoResponse>(status: StatusCode, body: B) -> Response {
    let mut response = (status, Html(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Nothing on these pages needs scripts; forbid them outright.
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; script-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    );
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Runs blocking history reads and rendering off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}
