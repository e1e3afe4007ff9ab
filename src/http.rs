//! The HTTP side: `/metrics`, `/healthz`, `/readyz` and the JSON API. Handlers
//! only read shared state; the one write path is a trigger into the scheduler.

use std::sync::Arc;

use axum::extract::{Path, State as AxumState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ProbeConfig};
use crate::instance::InstanceId;
use crate::metrics::Metrics;
use crate::scheduler::{Scheduler, TriggerError};
use crate::state::{ProbeStatus, State};

/// What every handler can read.
#[derive(Clone)]
pub struct AppContext {
    pub config: Arc<Config>,
    pub state: Arc<State>,
    pub metrics: Arc<Metrics>,
    pub triggers: Triggers,
    /// Run history; `None` for one-shot `check` runs.
    pub history: Option<Arc<crate::history::History>>,
    /// What the status page, history API and triggers read.
    pub web: crate::web::WebContext,
}

impl axum::extract::FromRef<AppContext> for crate::web::WebContext {
    fn from_ref(cx: &AppContext) -> crate::web::WebContext {
        cx.web.clone()
    }
}

/// The scheduler's trigger surface, as HTTP handlers see it.
#[derive(Clone)]
pub struct Triggers(pub Arc<Scheduler>);

impl Triggers {
    /// Starts a run of a probe (by name or instance id) in the background.
    pub fn run_probe(&self, id: &str) -> Result<(), TriggerError> {
        self.0.trigger(id)
    }

    /// Fetches one repo (or all) now; probes whose paths a new commit touched run.
    pub fn sync(&self, repo: Option<String>) -> Result<(), TriggerError> {
        self.0.trigger_sync(repo.as_deref())
    }

    pub fn is_ready(&self) -> bool {
        self.0.is_ready()
    }
}

pub fn router(cx: AppContext) -> Router {
    let timeout = cx.config.server.request_timeout;
    let request_metrics = cx.web.metrics.clone();
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/probes", get(list_probes))
        .route("/api/v1/probes/{name}", get(get_probe))
        .merge(crate::web::routes())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ));
    crate::web::with_request_metrics(router, request_metrics).with_state(cx)
}

/// Serves until `shutdown` fires, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    cx: AppContext,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(cx))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn metrics(AxumState(cx): AxumState<AppContext>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        cx.metrics.render_cached(),
    )
        .into_response()
}

async fn readyz(AxumState(cx): AxumState<AppContext>) -> Response {
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

/// A probe instance as the API shows it.
#[derive(Debug, Serialize)]
pub struct ProbeView {
    /// Instance id (name, or `name:root`).
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub root: String,
    pub layer: String,
    /// `instance` for a probe instance; `probe` for a probe none of whose
    /// roots is known yet (its status and last report are about listing them).
    pub scope: &'static str,
    pub repo: String,
    pub path: String,
    pub schedule: Option<String>,
    pub timeout_seconds: f64,
    pub run_on_change: bool,
    pub labels: std::collections::BTreeMap<String, String>,
    /// `in_sync`, `drifted`, `error`, or `pending` before the first run.
    pub status: &'static str,
    pub drifted: bool,
    pub drifted_resources: usize,
    pub drifted_since: Option<chrono::DateTime<chrono::Utc>>,
    pub last_run: Option<chrono::DateTime<chrono::Utc>>,
    pub last_success: Option<chrono::DateTime<chrono::Utc>>,
    pub last_report: Option<crate::probe::RunReport>,
}

impl ProbeView {
    /// The view of one instance.
    pub fn new(probe: &ProbeConfig, status: ProbeStatus) -> ProbeView {
        Self::build(probe, "instance", status)
    }

    /// The view of a probe with no known instance: pending, or the failure
    /// that kept its roots from being listed.
    pub fn probe_only(probe: &ProbeConfig, failure: Option<crate::probe::RunReport>) -> ProbeView {
        let mut status = ProbeStatus::new(&InstanceId::new(&probe.name, ""), &probe.layer);
        status.last_report = failure;
        Self::build(probe, "probe", status)
    }

    fn build(probe: &ProbeConfig, scope: &'static str, status: ProbeStatus) -> ProbeView {
        ProbeView {
            id: status.probe.clone(),
            name: probe.name.clone(),
            root: status.root.clone(),
            layer: probe.layer.clone(),
            scope,
            repo: probe.repo.clone(),
            path: probe.path.display().to_string(),
            schedule: probe.schedule.as_ref().map(|s| s.text.clone()),
            timeout_seconds: probe.timeout.as_secs_f64(),
            run_on_change: probe.run_on_change,
            labels: probe.labels.clone(),
            status: status.verdict().map(|v| v.as_str()).unwrap_or("pending"),
            drifted: status.drifted,
            drifted_resources: status.drifted_resources,
            drifted_since: status.drifted_since,
            last_run: status.last_report.as_ref().map(|r| r.started_at),
            last_success: status.last_success,
            last_report: status.last_report,
        }
    }
}

/// Every configured probe instance: those with a known status, plus
/// configured probes that have not run yet.
pub fn probe_views(cx: &AppContext) -> Vec<ProbeView> {
    let statuses = cx.state.snapshot();
    let mut views = Vec::new();
    for probe in &cx.config.probes {
        let mine: Vec<ProbeStatus> = statuses
            .iter()
            .filter(|s| s.name == probe.name)
            .cloned()
            .collect();
        if mine.is_empty() {
            views.push(ProbeView::probe_only(
                probe,
                cx.state.probe_failure(&probe.name),
            ));
        }
        for status in mine {
            views.push(ProbeView::new(probe, status));
        }
    }
    views
}

async fn list_probes(AxumState(cx): AxumState<AppContext>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "probes": probe_views(&cx) }))
}

async fn get_probe(AxumState(cx): AxumState<AppContext>, Path(name): Path<String>) -> Response {
    match probe_views(&cx).into_iter().find(|v| v.id == name) {
        Some(view) => Json(view).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("no probe named {name:?}; list them at /api/v1/probes") })),
        )
            .into_response(),
    }
}
