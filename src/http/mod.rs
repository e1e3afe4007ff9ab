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
pub mod cluster_view;
mod context;
pub mod hooks;
pub mod html;
pub mod pages;
mod respond;
pub mod text;
pub mod triggers;
pub mod views;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use tokio_util::sync::CancellationToken;

pub use context::{
    Catalog, CatalogProbe, CatalogRepo, Context, HttpMetrics, SchedulerTriggers, Secrets,
    TriggerRefusal, TriggerSink, REFRESH_SECONDS,
};
pub(crate) use respond::{blocking, html_response, json_error, unauthorized};

/// Largest request body accepted (webhook payloads are far smaller).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

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
