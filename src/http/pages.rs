//! Pages rendered on the server: the overview, a probe's page, the event log.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use chrono::Utc;

use super::api::PageParams;
use super::{blocking, html, html_response, Context};
use crate::history::EpisodeQuery;
use crate::model::instance::InstanceId;
use crate::model::outcome::Verdict;

/// The rows of the overview: every known instance, plus configured probes
/// that have not run yet.
fn overview_rows(ctx: &Context) -> Vec<html::OverviewRow> {
    overview_rows_of(
        ctx,
        super::cluster::local_statuses(ctx),
        &Default::default(),
    )
}

/// The rows for `statuses`, each with its owner if known.
/// `silent` names probes whose instances a member that did not answer
/// owns: no "not run yet" row stands in for them.
fn overview_rows_of(
    ctx: &Context,
    statuses: Vec<(Option<String>, crate::state::ProbeStatus)>,
    silent: &std::collections::BTreeSet<String>,
) -> Vec<html::OverviewRow> {
    let mut rows: Vec<html::OverviewRow> = statuses
        .into_iter()
        .map(|(owner, status)| html::OverviewRow {
            id: status.probe.clone(),
            layer: status.layer.clone(),
            status: Some(status),
            owner,
        })
        .collect();
    for probe in &ctx.catalog.probes {
        if !silent.contains(&probe.name)
            && !rows
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
                owner: None,
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

pub(super) async fn overview(
    State(ctx): State<Context>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let cluster = match super::cluster::fans_out(&ctx, query.as_deref()) {
        true => Some(super::cluster::view(&ctx).await),
        false => None,
    };
    let views = ctx.views.clone();
    let (cached, key) = match &cluster {
        Some(view) => (&views.cluster_overview, view.serial),
        None => (&views.overview, ctx.state.generation()),
    };
    let result = cached
        .get(key, move || {
            let rows = match &cluster {
                Some(view) => overview_rows_of(&ctx, view.with_owners(), &view.info.silent_probes),
                None => overview_rows(&ctx),
            };
            let events = ctx
                .history
                .as_ref()
                .and_then(|h| h.events(None, 15, None).ok())
                .map(|page| page.items);
            Bytes::from(html::overview(&html::Overview {
                now: Utc::now(),
                refresh_seconds: ctx.refresh_seconds,
                rows: &rows,
                events: events.as_deref(),
                cluster: cluster.as_ref().map(|view| &view.info),
            }))
        })
        .await;
    match result {
        Ok(body) => html_response(StatusCode::OK, body),
        Err(response) => response,
    }
}

pub(super) async fn events_page(
    State(ctx): State<Context>,
    Query(params): Query<PageParams>,
) -> Response {
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

pub(super) async fn probe_page(State(ctx): State<Context>, Path(id): Path<String>) -> Response {
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
            timezone: configured.and_then(|c| c.timezone),
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
