//! The JSON API: probe instances, and the history (runs, events, episodes),
//! newest first, paged with `?limit=&before=<cursor>`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{blocking, json_error, CatalogProbe, Context, DEFAULT_PAGE};
use crate::history::{EpisodeQuery, History};
use crate::scheduler::instance_id;
use crate::state::ProbeStatus;

/// A probe instance as the API shows it.
#[derive(Debug, Serialize)]
pub struct ProbeView {
    /// Instance id (name, or `name:root`).
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub root: String,
    pub layer: String,
    pub repo: String,
    pub path: String,
    pub schedule: Option<String>,
    /// When the next scheduled run starts (with this instance's jitter).
    pub next_run: Option<chrono::DateTime<chrono::Utc>>,
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
    pub fn new(probe: &CatalogProbe, root: &str, status: Option<ProbeStatus>) -> ProbeView {
        let status = status.unwrap_or_else(|| {
            ProbeStatus::new(
                &instance_id(&probe.name, root),
                &probe.name,
                root,
                &probe.layer,
            )
        });
        ProbeView {
            id: instance_id(&probe.name, root),
            name: probe.name.clone(),
            root: root.to_string(),
            layer: probe.layer.clone(),
            repo: probe.repo.clone(),
            path: probe.path.clone(),
            schedule: probe.schedule.clone(),
            next_run: status.next_run,
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
pub fn probe_views(cx: &Context) -> Vec<ProbeView> {
    let statuses = cx.state.snapshot();
    let mut views = Vec::new();
    for probe in &cx.catalog.probes {
        let mine: Vec<ProbeStatus> = statuses
            .iter()
            .filter(|s| s.name == probe.name)
            .cloned()
            .collect();
        if mine.is_empty() {
            views.push(ProbeView::new(probe, "", None));
        }
        for status in mine {
            let root = status.root.clone();
            views.push(ProbeView::new(probe, &root, Some(status)));
        }
    }
    views
}

pub(super) async fn list_probes(State(cx): State<Context>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "probes": probe_views(&cx) }))
}

pub(super) async fn get_probe(State(cx): State<Context>, Path(name): Path<String>) -> Response {
    match probe_views(&cx).into_iter().find(|v| v.id == name) {
        Some(view) => Json(view).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": format!("no probe named {name:?}; list them at /api/v1/probes") })),
        )
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct PageParams {
    pub limit: Option<usize>,
    pub before: Option<i64>,
    pub probe: Option<String>,
    pub open: Option<bool>,
}

fn history_or_503(ctx: &Context) -> Result<Arc<History>, Response> {
    ctx.history
        .clone()
        .filter(|h| h.is_enabled())
        .ok_or_else(|| json_error(StatusCode::SERVICE_UNAVAILABLE, "history is not available"))
}

fn known_instance(ctx: &Context, id: &str) -> bool {
    ctx.state.get(id).is_some() || ctx.catalog.probe(id).is_some()
}

pub(super) async fn api_runs(
    State(ctx): State<Context>,
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

pub(super) async fn api_events(
    State(ctx): State<Context>,
    Query(params): Query<PageParams>,
) -> Response {
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

pub(super) async fn api_episodes(
    State(ctx): State<Context>,
    Query(params): Query<PageParams>,
) -> Response {
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
