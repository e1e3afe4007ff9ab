//! Run-time acknowledgements over HTTP: `POST /api/v1/probes/{id}/acks`
//! and `DELETE /api/v1/acks/{ack}` with the write token (`[server]
//! api_token_file`), `GET /api/v1/acks` like the rest of the read API.
//! An ack is stored durably (the state file, fsynced) before the 201; in
//! `kubernetes` mode only the instance's owner takes it (421 names the owner).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::triggers::{authorize, refusal};
use super::{blocking, json_error, Context, TriggerRefusal};
use crate::ack::model::{self, check_text, covers_for, parse_expiry, AckError, MAX_NARROWING};
use crate::ack::{store, Ack, AckRequest, AckSource, AckView};
use crate::model::instance::InstanceId;

#[derive(Debug, Deserialize)]
pub(super) struct CreateParams {
    /// Answer with the ack (and its acks-file snippet) without storing it.
    #[serde(default)]
    dry_run: bool,
}

/// 400 naming the key at fault, counted as `bad_request`.
fn bad_request(cx: &Context, err: AckError) -> Response {
    cx.http_metrics.trigger("ack", "bad_request");
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": err.to_string(), "key": err.key })),
    )
        .into_response()
}

fn not_owned(cx: &Context, instance: &InstanceId) -> Option<Response> {
    if cx.cluster.is_single() || cx.cluster.owns(instance) {
        return None;
    }
    let owner = cx.cluster.owner(instance).map(|m| (m.identity, m.url));
    Some(refusal(
        cx,
        "ack",
        TriggerRefusal::NotOwned {
            instance: instance.to_string(),
            owner,
        },
    ))
}

/// Writes the state file and waits for it (fsync included).
async fn persist(cx: &Context) -> Result<(), String> {
    let state = cx.state.clone();
    match blocking(move || state.persist()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("the write task failed".into()),
    }
}

pub(super) async fn create_ack(
    State(cx): State<Context>,
    Path(id): Path<String>,
    Query(params): Query<CreateParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(response) = authorize(&cx, &headers, "ack") {
        return response;
    }
    let request: AckRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            return bad_request(
                &cx,
                AckError::new("body", format!("not a valid acknowledgement: {err}")),
            )
        }
    };
    let instance = InstanceId::parse(&id);
    let Some(status) = cx.state.get(&instance) else {
        cx.http_metrics.trigger("ack", "not_found");
        return json_error(
            StatusCode::NOT_FOUND,
            &format!("no probe instance named {id:?}; list them at /api/v1/probes"),
        );
    };
    if let Some(response) = not_owned(&cx, &instance) {
        return response;
    }
    let now = chrono::Utc::now();
    if let Err(err) = check_text(&request.by, &request.reason) {
        return bad_request(&cx, err);
    }
    let expires_at = match parse_expiry(&request.expires, now, cx.ack_max_expiry) {
        Ok(at) => at,
        Err(err) => return bad_request(&cx, err),
    };
    if request.subjects.len() > MAX_NARROWING || request.fields.len() > MAX_NARROWING {
        return bad_request(
            &cx,
            AckError::new(
                "subjects",
                format!("name at most {MAX_NARROWING} subjects and fields"),
            ),
        );
    }
    if !status.drifted {
        cx.http_metrics.trigger("ack", "in_sync");
        return json_error(
            StatusCode::CONFLICT,
            &format!("{id} does not drift (its last run that reached a verdict was in sync); nothing to acknowledge"),
        );
    }
    if status.drifted_list.is_empty() {
        cx.http_metrics.trigger("ack", "no_resources");
        return json_error(
            StatusCode::CONFLICT,
            &format!("{id} drifts without naming resources (e.g. a command probe's exit code alone): there is nothing to fingerprint; let the probe name its resources (output = \"json\")"),
        );
    }
    let covers = match covers_for(&status.drifted_list, &request.subjects, &request.fields) {
        Ok(covers) => covers,
        Err(err) => return bad_request(&cx, err),
    };
    let mut ack = Ack {
        id: model::new_runtime_id(),
        instance: instance.to_string(),
        subjects: request.subjects,
        fields: request.fields,
        covers,
        by: request.by.trim().to_string(),
        reason: request.reason.trim().to_string(),
        created_at: now,
        expires_at,
        source: AckSource::Runtime,
        matched_at: Some(now),
        changed: false,
        ended: None,
    };
    if params.dry_run {
        ack.source = AckSource::Repo;
        let snippet = crate::ack::repo_file::snippet(&ack);
        ack.id = model::repo_id(&ack.instance, &ack.covers, ack.expires_at);
        let mut preview = status.clone();
        preview.acks.push(ack.clone());
        let view = AckView::new(&ack, &crate::ack::assess_status(&preview, now));
        cx.http_metrics.trigger("ack", "dry_run");
        return Json(json!({ "ack": view, "snippet": snippet })).into_response();
    }
    let Some(event) = cx
        .state
        .update(&instance, |status| store::create(status, ack.clone()))
    else {
        cx.http_metrics.trigger("ack", "not_found");
        return json_error(StatusCode::NOT_FOUND, &format!("{id} went away meanwhile"));
    };
    if let Err(err) = persist(&cx).await {
        // Not durable, so not made: take it back and say so.
        cx.state
            .update(&instance, |status| status.acks.retain(|a| a.id != ack.id));
        tracing::error!(probe = %instance, error = %err, "cannot store an acknowledgement");
        cx.http_metrics.trigger("ack", "failed");
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("cannot store the acknowledgement durably ({err}); nothing was acknowledged"),
        );
    }
    cx.metrics.state_changed();
    cx.http_metrics.trigger("ack", "accepted");
    tracing::info!(probe = %instance, ack = %ack.id, by = %ack.by, "{}", event.message);
    if let Some(history) = &cx.history {
        history.record_ack(&event);
    }
    let status = cx.state.get(&instance).unwrap_or(status);
    let view = AckView::new(&ack, &crate::ack::assess_status(&status, now));
    (StatusCode::CREATED, Json(view)).into_response()
}

pub(super) async fn delete_ack(
    State(cx): State<Context>,
    Path(ack_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&cx, &headers, "ack") {
        return response;
    }
    let held = |status: &crate::state::ProbeStatus| {
        status
            .acks
            .iter()
            .find(|a| a.id == ack_id && a.ended.is_none())
            .map(|a| (status.instance(), a.source))
    };
    let found = cx.state.snapshot().iter().find_map(held);
    // An ack whose instance is not configured now waits for it; it can
    // still be ended (nothing runs it, so no replica owns it).
    let waiting = match found {
        Some(_) => None,
        None => cx.state.waiting().iter().find_map(held),
    };
    let Some((instance, source)) = found.or(waiting.clone()) else {
        cx.http_metrics.trigger("ack", "not_found");
        return json_error(
            StatusCode::NOT_FOUND,
            &format!("no active acknowledgement {ack_id:?}; list them at /api/v1/acks"),
        );
    };
    if source == AckSource::Repo {
        cx.http_metrics.trigger("ack", "repo_ack");
        return json_error(
            StatusCode::CONFLICT,
            &format!(
                "{ack_id} comes from {} in the watched repo; remove it there",
                crate::ack::repo_file::ACKS_FILE
            ),
        );
    }
    if waiting.is_none() {
        if let Some(response) = not_owned(&cx, &instance) {
            return response;
        }
    }
    let now = chrono::Utc::now();
    let end = |status: &mut crate::state::ProbeStatus| store::delete(status, &ack_id, now);
    let ended = match waiting {
        None => cx.state.update(&instance, end),
        Some(_) => cx.state.update_waiting(&instance, end),
    };
    let Some(Some(event)) = ended else {
        cx.http_metrics.trigger("ack", "not_found");
        return json_error(StatusCode::NOT_FOUND, &format!("{ack_id} ended meanwhile"));
    };
    if let Err(err) = persist(&cx).await {
        tracing::error!(probe = %instance, error = %err, "cannot store the end of an acknowledgement");
        cx.http_metrics.trigger("ack", "failed");
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("ended in memory but cannot store it durably ({err}); retry"),
        );
    }
    cx.metrics.state_changed();
    cx.http_metrics.trigger("ack", "accepted");
    tracing::info!(probe = %instance, ack = %ack_id, "{}", event.message);
    if let Some(history) = &cx.history {
        history.record_ack(&event);
    }
    let views = list(&cx, Some(&instance.to_string()));
    match views.into_iter().find(|v| v.id == ack_id) {
        Some(view) => Json(view).into_response(),
        None => Json(json!({ "id": ack_id, "state": "closed" })).into_response(),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct ListParams {
    /// Only this instance's acks.
    instance: Option<String>,
}

/// Every ack this replica holds for the instances it runs, and those
/// waiting for an instance not configured now, newest first.
pub fn list(cx: &Context, instance: Option<&str>) -> Vec<AckView> {
    let now = chrono::Utc::now();
    let wanted = |s: &&crate::state::ProbeStatus| instance.map_or(true, |i| s.probe == i);
    let mut views: Vec<AckView> = cx
        .state
        .snapshot()
        .iter()
        .filter(wanted)
        .filter(|s| cx.cluster.owns(&s.instance()))
        .flat_map(|s| crate::ack::view::views(s, now))
        .collect();
    views.extend(
        cx.state
            .waiting()
            .iter()
            .filter(wanted)
            .flat_map(|s| crate::ack::view::waiting_views(s, now)),
    );
    views.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    views
}

pub(super) async fn list_acks(
    State(cx): State<Context>,
    Query(params): Query<ListParams>,
) -> Response {
    Json(json!({ "acks": list(&cx, params.instance.as_deref()) })).into_response()
}
