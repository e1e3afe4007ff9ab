//! The JSON API: probe instances, and the history (runs, events, episodes),
//! newest first, paged with `?limit=&before=<cursor>`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{blocking, json_error, CatalogProbe, Context};

/// Rows in one page of history when `?limit=` is not given.
pub const DEFAULT_PAGE: usize = 50;
use crate::history::{EpisodeQuery, History};
use crate::model::instance::InstanceId;
use crate::state::ProbeStatus;

/// A probe instance in full, as `/api/v1/probes/{id}` shows it.
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
    /// The crontab expression as configured; null without a schedule.
    pub schedule: Option<String>,
    /// The IANA zone `schedule` is read in (`Europe/Berlin`, `UTC`).
    pub timezone: Option<&'static str>,
    /// When the next scheduled run starts (with this instance's jitter), in UTC.
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
    /// Drifted resources an active, matching ack covers (issue 22).
    pub acknowledged_resources: usize,
    /// Drifted resources no ack covers (what `driftwatch_probe_drifted` counts).
    pub unacknowledged_resources: usize,
    /// The instance's acks (active, stale, and recently ended).
    pub acks: Vec<crate::ack::AckView>,
    /// Each change carries `acknowledged_by` (ack ids) when acknowledged.
    pub last_report: Option<crate::model::outcome::RunReport>,
}

impl ProbeView {
    /// The view of one instance.
    pub fn new(probe: &CatalogProbe, status: ProbeStatus) -> ProbeView {
        Self::build(probe, "instance", status)
    }

    /// The view of a probe with no known instance: pending, or the failure
    /// that kept its roots from being listed.
    pub fn probe_only(
        probe: &CatalogProbe,
        failure: Option<crate::model::outcome::RunReport>,
    ) -> ProbeView {
        Self::build(probe, "probe", probe_status(probe, failure))
    }

    fn build(probe: &CatalogProbe, scope: &'static str, mut status: ProbeStatus) -> ProbeView {
        let now = chrono::Utc::now();
        let assessment = crate::ack::assess_status(&status, now);
        let acks = status
            .acks
            .iter()
            .map(|ack| crate::ack::AckView::new(ack, &assessment))
            .collect();
        if let Some(report) = status.last_report.as_mut() {
            for change in &mut report.changes {
                change.acknowledged_by = assessment
                    .standing_of(&change.subject)
                    .filter(|s| s.standing == crate::ack::Standing::Acknowledged)
                    .map(|s| s.acknowledged_by.clone())
                    .unwrap_or_default();
            }
        }
        ProbeView {
            acknowledged_resources: assessment.acknowledged,
            unacknowledged_resources: crate::ack::view::unacknowledged_resources(
                &status,
                &assessment,
            ),
            acks,
            id: status.probe.clone(),
            name: probe.name.clone(),
            root: status.root.clone(),
            layer: probe.layer.clone(),
            scope,
            repo: probe.repo.clone(),
            path: probe.path.clone(),
            schedule: probe.schedule.clone(),
            timezone: probe.timezone.map(|zone| zone.name()),
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

/// A probe instance in the list: enough to see what needs attention and
/// to follow `/api/v1/probes/{id}` for the changes and errors.
#[derive(Debug, Serialize)]
pub struct ProbeSummary {
    /// Instance id (name, or `name:root`).
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub root: String,
    pub layer: String,
    /// `instance`, or `probe` for a probe none of whose roots is known yet.
    pub scope: &'static str,
    // The probe's configuration, as the rows had it before they became a
    // summary (cheap, unlike `last_report`; kept for the scripts using it).
    pub repo: String,
    pub path: String,
    pub timeout_seconds: f64,
    pub run_on_change: bool,
    pub labels: std::collections::BTreeMap<String, String>,
    /// `in_sync`, `drifted`, `error`, or `pending` before the first run.
    pub status: &'static str,
    pub drifted: bool,
    /// Resources drifted at the last run that reached a verdict.
    pub drifted_resources: usize,
    /// Of those, the ones an active, matching ack covers.
    pub acknowledged_resources: usize,
    /// Changes the last report holds (after the report caps).
    pub changes: usize,
    /// True when the last report was cut at the report caps.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    pub drifted_since: Option<chrono::DateTime<chrono::Utc>>,
    pub last_run: Option<chrono::DateTime<chrono::Utc>>,
    pub last_success: Option<chrono::DateTime<chrono::Utc>>,
    /// Commit checked by the last run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// That commit in the repository's web UI (`[[repo]] web_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_url: Option<String>,
    /// Error reason of the last run, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_reason: Option<&'static str>,
    /// The crontab expression as configured; null without a schedule.
    pub schedule: Option<String>,
    /// The IANA zone `schedule` is read in (`Europe/Berlin`, `UTC`).
    pub timezone: Option<&'static str>,
    /// When the next scheduled run starts (with this instance's jitter), in UTC.
    pub next_run: Option<chrono::DateTime<chrono::Utc>>,
    /// The cluster member that owns and runs the instance (`kubernetes`
    /// mode only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl ProbeSummary {
    fn new(
        probe: &CatalogProbe,
        id: String,
        scope: &'static str,
        status: Option<&ProbeStatus>,
    ) -> ProbeSummary {
        let report = status.and_then(|s| s.last_report.as_ref());
        ProbeSummary {
            repo: probe.repo.clone(),
            path: probe.path.clone(),
            timeout_seconds: probe.timeout.as_secs_f64(),
            run_on_change: probe.run_on_change,
            labels: probe.labels.clone(),
            scope,
            name: probe.name.clone(),
            root: status.map(|s| s.root.clone()).unwrap_or_default(),
            layer: probe.layer.clone(),
            status: report.map(|r| r.verdict.as_str()).unwrap_or("pending"),
            drifted: status.is_some_and(|s| s.drifted),
            drifted_resources: status.map_or(0, |s| s.drifted_resources),
            acknowledged_resources: status.map_or(0, |s| {
                crate::ack::assess_status(s, chrono::Utc::now()).acknowledged
            }),
            changes: report.map_or(0, |r| r.change_count()),
            truncated: report.is_some_and(|r| r.truncated),
            drifted_since: status.and_then(|s| s.drifted_since),
            last_run: report.map(|r| r.started_at),
            last_success: status.and_then(|s| s.last_success),
            commit: report.map(|r| r.commit.clone()).filter(|c| !c.is_empty()),
            commit_url: report.and_then(|r| r.commit_url.clone()),
            error_reason: report
                .and_then(|r| r.error.as_ref())
                .map(|e| e.reason.as_str()),
            schedule: probe.schedule.clone(),
            timezone: probe.timezone.map(|zone| zone.name()),
            next_run: status.and_then(|s| s.next_run),
            owner: None,
            id,
        }
    }
}

/// `{"counts": {"in_sync", "drifted", "error", "pending"}, "probes": [summary…]}`
/// for every configured probe instance: those with a known status, plus
/// configured probes that have not run yet. In `kubernetes` mode this
/// replica's own instances, each with its `owner`.
pub fn probe_list(cx: &Context) -> serde_json::Value {
    probe_list_of(cx, &super::cluster::local_statuses(cx), None)
}

/// The list for `statuses` (each with its owner, if known); with `cluster`,
/// a `"cluster"` object names the members and those that did not answer.
pub fn probe_list_of(
    cx: &Context,
    statuses: &[(Option<String>, ProbeStatus)],
    cluster: Option<&super::cluster_view::ClusterInfo>,
) -> serde_json::Value {
    let mut probes = Vec::new();
    for probe in &cx.catalog.probes {
        let mut mine = statuses
            .iter()
            .filter(|(_, s)| s.name == probe.name)
            .peekable();
        let silent = cluster.is_some_and(|c| c.silent_probes.contains(&probe.name));
        if mine.peek().is_none() && !silent {
            let status = probe_status(probe, cx.state.probe_failure(&probe.name));
            probes.push(ProbeSummary::new(
                probe,
                probe.name.clone(),
                "probe",
                Some(&status),
            ));
        }
        for (owner, status) in mine {
            let mut summary =
                ProbeSummary::new(probe, status.probe.clone(), "instance", Some(status));
            summary.owner = owner.clone();
            probes.push(summary);
        }
    }
    let mut counts = serde_json::Map::new();
    for status in ["in_sync", "drifted", "error", "pending"] {
        let count = probes.iter().filter(|p| p.status == status).count();
        counts.insert(status.to_string(), count.into());
    }
    match cluster {
        Some(cluster) => json!({ "counts": counts, "probes": probes, "cluster": cluster }),
        None => json!({ "counts": counts, "probes": probes }),
    }
}

/// One probe instance in full, or `None` when no configured probe has this id.
pub fn probe_detail(cx: &Context, id: &str) -> Option<ProbeView> {
    let instance = InstanceId::parse(id);
    let probe = cx
        .catalog
        .probes
        .iter()
        .find(|p| p.name == instance.probe)?;
    match cx.state.get(&instance) {
        Some(status) => Some(ProbeView::new(probe, status)),
        None if id == probe.name && cx.state.instances_of(&probe.name).is_empty() => Some(
            ProbeView::probe_only(probe, cx.state.probe_failure(&probe.name)),
        ),
        None => None,
    }
}

/// The status shown for a probe with no known instance: its listing failure, if any.
fn probe_status(
    probe: &CatalogProbe,
    failure: Option<crate::model::outcome::RunReport>,
) -> ProbeStatus {
    let mut status = ProbeStatus::new(&InstanceId::new(&probe.name, ""), &probe.layer);
    status.last_report = failure;
    status
}

pub(super) async fn list_probes(
    State(cx): State<Context>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let cluster = match super::cluster::fans_out(&cx, query.as_deref()) {
        true => Some(super::cluster::view(&cx).await),
        false => None,
    };
    let views = cx.views.clone();
    let (cached, key) = match &cluster {
        Some(view) => (&views.cluster_probes, view.serial),
        None => (&views.probes, cx.state.generation()),
    };
    let result = cached
        .get(key, move || {
            let list = match &cluster {
                Some(view) => probe_list_of(&cx, &view.with_owners(), Some(&view.info)),
                None => probe_list(&cx),
            };
            Bytes::from(serde_json::to_vec(&list).expect("summaries serialize"))
        })
        .await;
    match result {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(response) => response,
    }
}

pub(super) async fn get_probe(State(cx): State<Context>, Path(id): Path<String>) -> Response {
    match probe_detail(&cx, &id) {
        Some(view) => Json(view).into_response(),
        None => json_error(
            StatusCode::NOT_FOUND,
            &format!("no probe named {id:?}; list them at /api/v1/probes"),
        ),
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
    ctx.state.get(&InstanceId::parse(id)).is_some() || ctx.catalog.probe(id).is_some()
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
