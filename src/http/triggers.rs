//! The write side: manual runs, syncs and push webhooks. Each only enqueues
//! work in the scheduler and answers at once.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{hooks, json_error, CatalogRepo, Context, TriggerRefusal};

fn not_found() -> Response {
    json_error(StatusCode::NOT_FOUND, "not found")
}

/// Checks the bearer token; `Err` is the response to send.
pub(super) fn authorize(ctx: &Context, headers: &HeaderMap, kind: &str) -> Result<(), Response> {
    let Some(expected) = ctx.secrets.api_token.as_deref() else {
        ctx.http_metrics.trigger(kind, "disabled");
        return Err(not_found());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if hooks::bearer_matches(expected, given) {
        Ok(())
    } else {
        ctx.http_metrics.trigger(kind, "unauthorized");
        Err(super::unauthorized(
            &["Bearer"],
            "send the write token ([server] api_token_file) as \"Authorization: Bearer <token>\" \
             (driftwatch ack: --token-file or DRIFTWATCH_TOKEN_FILE)",
        ))
    }
}

pub(super) fn refusal(ctx: &Context, kind: &str, refusal: TriggerRefusal) -> Response {
    if let TriggerRefusal::NotOwned { owner, .. } = &refusal {
        // 421 Misdirected Request: this replica is the wrong one to ask;
        // the body names the one that runs the instance.
        ctx.http_metrics.trigger(kind, "not_owned");
        let (identity, url) = owner.clone().unzip();
        return (
            StatusCode::MISDIRECTED_REQUEST,
            Json(json!({ "error": refusal.to_string(), "owner": identity, "owner_url": url })),
        )
            .into_response();
    }
    let (result, status) = match refusal {
        TriggerRefusal::NotFound => ("not_found", StatusCode::NOT_FOUND),
        TriggerRefusal::Busy => ("busy", StatusCode::CONFLICT),
        TriggerRefusal::NotSynced(_) => ("not_synced", StatusCode::CONFLICT),
        TriggerRefusal::Unavailable => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
        TriggerRefusal::NotOwned { .. } => unreachable!("answered above"),
    };
    ctx.http_metrics.trigger(kind, result);
    json_error(status, &refusal.to_string())
}

pub(super) async fn trigger_run(
    State(ctx): State<Context>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(response) = authorize(&ctx, &headers, "run") {
        return response;
    }
    match ctx.triggers.run_probe(&id) {
        Ok(()) => {
            tracing::info!(probe = %id, "manual run requested over HTTP");
            ctx.http_metrics.trigger("run", "accepted");
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
pub(super) struct SyncParams {
    repo: Option<String>,
}

pub(super) async fn trigger_sync(
    State(ctx): State<Context>,
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
            ctx.http_metrics.trigger("sync", "accepted");
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
fn sync_pushed(ctx: &Context, kind: &str, body: &[u8]) -> Response {
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(body) else {
        ctx.http_metrics.trigger(kind, "bad_request");
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
        ctx.http_metrics.trigger(kind, "ignored");
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
    ctx.http_metrics.trigger(kind, "accepted");
    (StatusCode::ACCEPTED, Json(json!({ "synced": synced }))).into_response()
}

fn webhook_secret<'a>(ctx: &'a Context, kind: &str) -> Result<&'a str, Response> {
    ctx.secrets.webhook_secret.as_deref().ok_or_else(|| {
        ctx.http_metrics.trigger(kind, "disabled");
        not_found()
    })
}

pub(super) async fn hook_github(
    State(ctx): State<Context>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let secret = match webhook_secret(&ctx, "github") {
        Ok(secret) => secret,
        Err(response) => return response,
    };
    let signature = headers
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok());
    if !hooks::github_signature_matches(secret, &body, signature) {
        ctx.http_metrics.trigger("github", "unauthorized");
        return json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized: X-Hub-Signature-256 does not match; set the webhook's secret to the one in [server] webhook_secret_file",
        );
    }
    match headers.get("x-github-event").and_then(|v| v.to_str().ok()) {
        Some("ping") => {
            ctx.http_metrics.trigger("github", "ignored");
            Json(json!({ "pong": true })).into_response()
        }
        Some("push") | None => sync_pushed(&ctx, "github", &body),
        Some(_) => {
            ctx.http_metrics.trigger("github", "ignored");
            (
                StatusCode::OK,
                Json(json!({ "synced": [], "message": "event ignored" })),
            )
                .into_response()
        }
    }
}

pub(super) async fn hook_gitlab(
    State(ctx): State<Context>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let secret = match webhook_secret(&ctx, "gitlab") {
        Ok(secret) => secret,
        Err(response) => return response,
    };
    let given = headers.get("x-gitlab-token").and_then(|v| v.to_str().ok());
    if !given.is_some_and(|token| hooks::token_matches(secret, token)) {
        ctx.http_metrics.trigger("gitlab", "unauthorized");
        return json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized: X-Gitlab-Token does not match; set the webhook's secret token to the one in [server] webhook_secret_file",
        );
    }
    match headers.get("x-gitlab-event").and_then(|v| v.to_str().ok()) {
        Some("Push Hook") | Some("Tag Push Hook") | None => sync_pushed(&ctx, "gitlab", &body),
        Some(_) => {
            ctx.http_metrics.trigger("gitlab", "ignored");
            (
                StatusCode::OK,
                Json(json!({ "synced": [], "message": "event ignored" })),
            )
                .into_response()
        }
    }
}
