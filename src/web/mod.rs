//! The status page, the history API and the triggers.
//!
//! - `GET /`, `/probes/{name}`, `/events`: server-rendered HTML ([`html`]).
//! - `GET /api/v1/probes/{name}/runs`, `/api/v1/events`, `/api/v1/episodes`:
//!   history as JSON, newest first, paged with `?limit=&before=<cursor>`.
//! - `POST /api/v1/probes/{name}/run`, `POST /api/v1/sync`: bearer token from
//!   `[server] api_token_file`; without a configured token they answer 404.
//! - `POST /api/v1/hooks/github` (`X-Hub-Signature-256`) and
//!   `/api/v1/hooks/gitlab` (`X-Gitlab-Token`): a push syncs the matching
//!   repositories at once; the sync runs the probes whose paths changed.
//!
//! Handlers read a [`WebContext`]; the daemon's own context only has to
//! hand one out (`FromRef`). Instance ids (`name` or `name:root`) are
//! percent-encoded in URLs.

// Helpers return `Err(Response)` to hand an early answer straight back to axum.
#![allow(clippy::result_large_err)]

pub mod hooks;
pub mod html;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use prometheus::{IntCounterVec, Opts, Registry};
use serde::Deserialize;
use serde_json::json;

use crate::config::{Config, RepoSource};
use crate::history::{EpisodeQuery, History};
use crate::instance::InstanceId;
use crate::probe::Verdict;
use crate::state::State as ProbeState;

/// Largest request body accepted (webhook payloads are far smaller).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub const DEFAULT_PAGE: usize = 50;
/// How often the status page reloads itself.
pub const REFRESH_SECONDS: u64 = 30;

/// Why a trigger was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerRefusal {
    #[error("no such probe or repository")]
    NotFound,
    #[error("already running or queued")]
    Busy,
    #[error("not accepting triggers (starting or shutting down)")]
    Unavailable,
}

/// What the scheduler offers the HTTP side: a manual run and a sync now.
/// Both only enqueue; they return at once.
pub trait TriggerSink: Send + Sync + 'static {
    /// Runs one probe instance (or every instance of a probe name) now.
    fn run_probe(&self, id: &str) -> Result<(), TriggerRefusal>;
    /// Fetches `repo` (or every repo) now; a new commit runs the probes
    /// whose paths it touched.
    fn sync(&self, repo: Option<&str>) -> Result<(), TriggerRefusal>;
}

impl From<crate::scheduler::TriggerError> for TriggerRefusal {
    fn from(err: crate::scheduler::TriggerError) -> TriggerRefusal {
        use crate::scheduler::TriggerError;
        match err {
            TriggerError::UnknownProbe(_) | TriggerError::UnknownRepo(_) => {
                TriggerRefusal::NotFound
            }
            TriggerError::ShuttingDown => TriggerRefusal::Unavailable,
        }
    }
}

impl TriggerSink for crate::http::Triggers {
    fn run_probe(&self, id: &str) -> Result<(), TriggerRefusal> {
        crate::http::Triggers::run_probe(self, id).map_err(TriggerRefusal::from)
    }

    fn sync(&self, repo: Option<&str>) -> Result<(), TriggerRefusal> {
        crate::http::Triggers::sync(self, repo.map(str::to_string)).map_err(TriggerRefusal::from)
    }
}

/// A configured probe, as the page shows it before (and besides) its first run.
#[derive(Debug, Clone)]
pub struct CatalogProbe {
    pub name: String,
    pub layer: String,
    pub repo: String,
    pub path: String,
    pub schedule: Option<String>,
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

/// Secrets for the trigger endpoints; `None` switches an endpoint off.
#[derive(Clone, Default)]
pub struct Secrets {
    pub api_token: Option<String>,
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("api_token", &self.api_token.as_ref().map(|_| "***"))
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// The counters this module owns, registered into the daemon's registry.
#[derive(Clone)]
pub struct WebMetrics {
    http_requests: IntCounterVec,
    triggers: IntCounterVec,
}

impl WebMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<WebMetrics> {
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
                "Manual triggers and webhook deliveries, by kind (run, sync, github, gitlab) and result (accepted, ignored, unauthorized, not_found, busy, unavailable, bad_request, disabled).",
            ),
            &["kind", "result"],
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(triggers.clone()))?;
        for kind in ["run", "sync", "github", "gitlab"] {
            for result in ["accepted", "unauthorized"] {
                triggers.with_label_values(&[kind, result]);
            }
        }
        Ok(WebMetrics {
            http_requests,
            triggers,
        })
    }

    fn trigger(&self, kind: &str, result: &str) {
        self.triggers.with_label_values(&[kind, result]).inc();
    }
}

/// Everything the handlers read.
#[derive(Clone)]
pub struct WebContext {
    pub state: Arc<ProbeState>,
    pub history: Option<Arc<History>>,
    pub catalog: Arc<Catalog>,
    pub triggers: Arc<dyn TriggerSink>,
    pub secrets: Arc<Secrets>,
    pub metrics: WebMetrics,
    pub refresh_seconds: u64,
}

/// The routes of this module, for any app state that can hand out a [`WebContext`].
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    WebContext: FromRef<S>,
{
    Router::new()
        .route("/", get(overview))
        .route("/events", get(events_page))
        .route("/probes/{name}", get(probe_page))
        .route("/api/v1/probes/{name}/runs", get(api_runs))
        .route("/api/v1/events", get(api_events))
        .route("/api/v1/episodes", get(api_episodes))
        .route("/api/v1/probes/{name}/run", post(trigger_run))
        .route("/api/v1/sync", post(trigger_sync))
        .route("/api/v1/hooks/github", post(hook_github))
        .route("/api/v1/hooks/gitlab", post(hook_gitlab))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Counts every request by matched route and status code. Apply it to the
/// whole app router (`Router::layer`), so that `/metrics` and the rest are counted too.
pub async fn count_requests(
    State(metrics): State<WebMetrics>,
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

/// Wraps `router` with [`count_requests`].
pub fn with_request_metrics<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    metrics: WebMetrics,
) -> Router<S> {
    router.layer(axum::middleware::from_fn_with_state(
        metrics,
        count_requests,
    ))
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn html_response(status: StatusCode, body: String) -> Response {
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
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
}

/// The rows of the overview: every known instance, plus configured probes
/// that have not run yet.
fn overview_rows(ctx: &WebContext) -> Vec<html::OverviewRow> {
    let mut rows: Vec<html::OverviewRow> = ctx
        .state
        .snapshot()
        .into_iter()
        .map(|status| html::OverviewRow {
            id: status.probe.clone(),
            layer: status.layer.clone(),
            status: Some(status),
        })
        .collect();
    for probe in &ctx.catalog.probes {
        if !rows
            .iter()
            .any(|r| r.status.as_ref().is_some_and(|s| s.name == probe.name))
        {
            // No instance known: show why (the failure to list its roots), if any.
            let status = ctx.state.probe_failure(&probe.name).map(|failure| {
                let mut status =
                    crate::state::ProbeStatus::new(&InstanceId::new(&probe.name, ""), &probe.layer);
                status.last_report = Some(failure);
                status
            });
            rows.push(html::OverviewRow {
                id: probe.name.clone(),
                layer: probe.layer.clone(),
                status,
            });
        }
    }
    // Within a layer, what needs attention comes first.
    let rank = |row: &html::OverviewRow| match row.status.as_ref().and_then(|s| s.verdict()) {
        Some(Verdict::Error) => 0,
        Some(Verdict::Drifted) => 1,
        None => 2,
        Some(Verdict::InSync) => 3,
    };
    rows.sort_by(|a, b| {
        a.layer
            .cmp(&b.layer)
            .then_with(|| rank(a).cmp(&rank(b)))
            .then_with(|| a.id.cmp(&b.id))
    });
    rows
}

async fn overview(State(ctx): State<WebContext>) -> Response {
    let result = blocking(move || {
        let rows = overview_rows(&ctx);
        let events = ctx
            .history
            .as_ref()
            .and_then(|h| h.events(None, 15, None).ok())
            .map(|page| page.items);
        html::overview(&html::Overview {
            now: Utc::now(),
            refresh_seconds: ctx.refresh_seconds,
            rows: &rows,
            events: events.as_deref(),
        })
    })
    .await;
    match result {
        Ok(body) => html_response(StatusCode::OK, body),
        Err(response) => response,
    }
}

#[derive(Debug, Deserialize)]
struct PageParams {
    limit: Option<usize>,
    before: Option<i64>,
    probe: Option<String>,
    open: Option<bool>,
}

async fn events_page(State(ctx): State<WebContext>, Query(params): Query<PageParams>) -> Response {
    let result = blocking(move || {
        let page = ctx.history.as_ref().and_then(|h| {
            h.events(
                params.probe.as_deref(),
                params.limit.unwrap_or(100),
                params.before,
            )
            .ok()
        });
        html::events_page(
            Utc::now(),
            ctx.refresh_seconds,
            page.as_ref().map(|p| p.items.as_slice()),
            page.as_ref().and_then(|p| p.next_before),
        )
    })
    .await;
    match result {
        Ok(body) => html_response(StatusCode::OK, body),
        Err(response) => response,
    }
}

async fn probe_page(State(ctx): State<WebContext>, Path(id): Path<String>) -> Response {
    let result = blocking(move || {
        let now = Utc::now();
        let status = ctx.state.get(&InstanceId::parse(&id));
        if status.is_none() {
            // A probe name with several roots: list its instances.
            let rows: Vec<_> = overview_rows(&ctx)
                .into_iter()
                .filter(|r| r.status.as_ref().is_some_and(|s| s.name == id))
                .collect();
            if !rows.is_empty() {
                return (
                    StatusCode::OK,
                    html::instances_page(now, ctx.refresh_seconds, &id, &rows),
                );
            }
        }
        let name = status
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_else(|| id.clone());
        let configured = ctx.catalog.probe(&name);
        if status.is_none() && configured.is_none() {
            return (
                StatusCode::NOT_FOUND,
                html::message_page("Not found", "No probe has this name."),
            );
        }
        let layer = status
            .as_ref()
            .map(|s| s.layer.clone())
            .or_else(|| configured.map(|c| c.layer.clone()))
            .unwrap_or_default();
        let history = ctx.history.as_ref();
        let runs = history
            .and_then(|h| h.runs(&id, 50, None).ok())
            .map(|p| p.items);
        let episodes = history
            .and_then(|h| {
                h.episodes(&EpisodeQuery {
                    probe: Some(&id),
                    open_only: false,
                    limit: 20,
                    before: None,
                })
                .ok()
            })
            .map(|p| p.items);
        let events = history
            .and_then(|h| h.events(Some(&id), 20, None).ok())
            .map(|p| p.items);
        let body = html::probe_page(&html::ProbePage {
            now,
            refresh_seconds: ctx.refresh_seconds,
            id: &id,
            layer: &layer,
            repo: configured.map(|c| c.repo.as_str()),
            path: configured.map(|c| c.path.as_str()),
            schedule: configured.and_then(|c| c.schedule.as_deref()),
            status: status.as_ref(),
            runs: runs.as_deref(),
            episodes: episodes.as_deref(),
            events: events.as_deref(),
        });
        (StatusCode::OK, body)
    })
    .await;
    match result {
        Ok((status, body)) => html_response(status, body),
        Err(response) => response,
    }
}

fn history_or_503(ctx: &WebContext) -> Result<Arc<History>, Response> {
    ctx.history
        .clone()
        .filter(|h| h.is_enabled())
        .ok_or_else(|| json_error(StatusCode::SERVICE_UNAVAILABLE, "history is not available"))
}

fn known_instance(ctx: &WebContext, id: &str) -> bool {
    ctx.state.get(&InstanceId::parse(id)).is_some() || ctx.catalog.probe(id).is_some()
}

async fn api_runs(
    State(ctx): State<WebContext>,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> Response {
    let history = match history_or_503(&ctx) {
        Ok(h) => h,
        Err(response) => return response,
    };
    let known = known_instance(&ctx, &id);
    let result = blocking(move || {
        history
            .runs(&id, params.limit.unwrap_or(DEFAULT_PAGE), params.before)
            .map(|p| (id, p))
    })
    .await;
    match result {
        Ok(Ok((id, page))) if known || !page.items.is_empty() => Json(json!({
            "probe": id,
            "runs": page.items,
            "next_before": page.next_before,
        }))
        .into_response(),
        Ok(Ok(_)) => json_error(StatusCode::NOT_FOUND, "no such probe"),
        Ok(Err(err)) => history_failed(err),
        Err(response) => response,
    }
}

fn history_failed(err: crate::history::HistoryError) -> Response {
    tracing::warn!(error = %err, "history query failed");
    json_error(StatusCode::SERVICE_UNAVAILABLE, "history query failed")
}

async fn api_events(State(ctx): State<WebContext>, Query(params): Query<PageParams>) -> Response {
    let history = match history_or_503(&ctx) {
        Ok(h) => h,
        Err(response) => return response,
    };
    let result = blocking(move || {
        history.events(
            params.probe.as_deref(),
            params.limit.unwrap_or(DEFAULT_PAGE),
            params.before,
        )
    })
    .await;
    match result {
        Ok(Ok(page)) => {
            Json(json!({ "events": page.items, "next_before": page.next_before })).into_response()
        }
        Ok(Err(err)) => history_failed(err),
        Err(response) => response,
    }
}

async fn api_episodes(State(ctx): State<WebContext>, Query(params): Query<PageParams>) -> Response {
    let history = match history_or_503(&ctx) {
        Ok(h) => h,
        Err(response) => return response,
    };
    let result = blocking(move || {
        history.episodes(&EpisodeQuery {
            probe: params.probe.as_deref(),
            open_only: params.open.unwrap_or(false),
            limit: params.limit.unwrap_or(DEFAULT_PAGE),
            before: params.before,
        })
    })
    .await;
    match result {
        Ok(Ok(page)) => {
            Json(json!({ "episodes": page.items, "next_before": page.next_before })).into_response()
        }
        Ok(Err(err)) => history_failed(err),
        Err(response) => response,
    }
}

fn unauthorized() -> Response {
    let mut response = json_error(StatusCode::UNAUTHORIZED, "unauthorized");
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not found")
}

/// Checks the bearer token; `Err` is the response to send.
fn authorize(ctx: &WebContext, headers: &HeaderMap, kind: &str) -> Result<(), Response> {
    let Some(expected) = ctx.secrets.api_token.as_deref() else {
        ctx.metrics.trigger(kind, "disabled");
        return Err(not_found());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if hooks::bearer_matches(expected, given) {
        Ok(())
    } else {
        ctx.metrics.trigger(kind, "unauthorized");
        Err(unauthorized())
    }
}

fn refusal(ctx: &WebContext, kind: &str, refusal: TriggerRefusal) -> Response {
    let (result, status) = match refusal {
        TriggerRefusal::NotFound => ("not_found", StatusCode::NOT_FOUND),
        TriggerRefusal::Busy => ("busy", StatusCode::CONFLICT),
        TriggerRefusal::Unavailable => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
    };
    ctx.metrics.trigger(kind, result);
    json_error(status, &refusal.to_string())
}

async fn trigger_run(
    State(ctx): State<WebContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&ctx, &headers, "run") {
        return response;
    }
    match ctx.triggers.run_probe(&id) {
        Ok(()) => {
            tracing::info!(probe = %id, "manual run requested over HTTP");
            ctx.metrics.trigger("run", "accepted");
            (
                StatusCode::ACCEPTED,
                Json(json!({ "accepted": true, "probe": id })),
            )
                .into_response()
        }
        Err(err) => refusal(&ctx, "run", err),
    }
}

#[derive(Debug, Deserialize)]
struct SyncParams {
    repo: Option<String>,
}

async fn trigger_sync(
    State(ctx): State<WebContext>,
    Query(params): Query<SyncParams>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&ctx, &headers, "sync") {
        return response;
    }
    match ctx.triggers.sync(params.repo.as_deref()) {
        Ok(()) => {
            tracing::info!(
                repo = params.repo.as_deref().unwrap_or("*"),
                "sync requested over HTTP"
            );
            ctx.metrics.trigger("sync", "accepted");
            (
                StatusCode::ACCEPTED,
                Json(json!({ "accepted": true, "repo": params.repo })),
            )
                .into_response()
        }
        Err(err) => refusal(&ctx, "sync", err),
    }
}

/// Syncs the configured repos a push payload names.
fn sync_pushed(ctx: &WebContext, kind: &str, body: &[u8]) -> Response {
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(body) else {
        ctx.metrics.trigger(kind, "bad_request");
        return json_error(StatusCode::BAD_REQUEST, "body is not JSON");
    };
    let urls = hooks::payload_repo_urls(&payload);
    let matching: Vec<&CatalogRepo> = ctx
        .catalog
        .repos
        .iter()
        .filter(|r| r.match_key.as_ref().is_some_and(|k| urls.contains(k)))
        .collect();
    if matching.is_empty() {
        ctx.metrics.trigger(kind, "ignored");
        return (
            StatusCode::OK,
            Json(json!({ "synced": [], "message": "no configured repository matches this push" })),
        )
            .into_response();
    }
    let mut synced = Vec::new();
    for repo in matching {
        match ctx.triggers.sync(Some(&repo.name)) {
            Ok(()) => synced.push(repo.name.clone()),
            Err(err) => tracing::warn!(repo = %repo.name, error = %err, "webhook sync refused"),
        }
    }
    if synced.is_empty() {
        return refusal(ctx, kind, TriggerRefusal::Unavailable);
    }
    tracing::info!(hook = kind, repos = ?synced, "webhook push: syncing");
    ctx.metrics.trigger(kind, "accepted");
    (StatusCode::ACCEPTED, Json(json!({ "synced": synced }))).into_response()
}

fn webhook_secret<'a>(ctx: &'a WebContext, kind: &str) -> Result<&'a str, Response> {
    ctx.secrets.webhook_secret.as_deref().ok_or_else(|| {
        ctx.metrics.trigger(kind, "disabled");
        not_found()
    })
}

async fn hook_github(State(ctx): State<WebContext>, headers: HeaderMap, body: Bytes) -> Response {
    let secret = match webhook_secret(&ctx, "github") {
        Ok(secret) => secret,
        Err(response) => return response,
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if !hooks::github_signature_matches(secret, &body, signature) {
        ctx.metrics.trigger("github", "unauthorized");
        return json_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    match headers.get("x-github-event").and_then(|v| v.to_str().ok()) {
        Some("ping") => {
            ctx.metrics.trigger("github", "ignored");
            Json(json!({ "pong": true })).into_response()
        }
        Some("push") | None => sync_pushed(&ctx, "github", &body),
        Some(_) => {
            ctx.metrics.trigger("github", "ignored");
            (
                StatusCode::OK,
                Json(json!({ "synced": [], "message": "event ignored" })),
            )
                .into_response()
        }
    }
}

async fn hook_gitlab(State(ctx): State<WebContext>, headers: HeaderMap, body: Bytes) -> Response {
    let secret = match webhook_secret(&ctx, "gitlab") {
        Ok(secret) => secret,
        Err(response) => return response,
    };
    let given = headers.get("x-gitlab-token").and_then(|v| v.to_str().ok());
    if !given.is_some_and(|token| hooks::token_matches(secret, token)) {
        ctx.metrics.trigger("gitlab", "unauthorized");
        return json_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
    match headers.get("x-gitlab-event").and_then(|v| v.to_str().ok()) {
        Some("Push Hook") | Some("Tag Push Hook") | None => sync_pushed(&ctx, "gitlab", &body),
        Some(_) => {
            ctx.metrics.trigger("gitlab", "ignored");
            (
                StatusCode::OK,
                Json(json!({ "synced": [], "message": "event ignored" })),
            )
                .into_response()
        }
    }
}
