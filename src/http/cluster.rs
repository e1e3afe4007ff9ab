//! The cluster side of the HTTP API (`[cluster] mode = "kubernetes"`).
//!
//! - `GET /api/v1/cluster/status`: this replica's statuses in portable form
//!   ([`crate::handover::portable`]); `?instance=<id>` (repeatable) picks
//!   instances, `?owned=true` gives the instances this replica owns (pending
//!   ones included). Other replicas read it for the handover and to build
//!   the page of the whole cluster; it never fans out itself, so replicas
//!   asking each other cannot loop.
//! - The page (`/`) and `/api/v1/probes` of any replica show every instance
//!   of the cluster: each live member is asked for what it owns (its
//!   advertised URL, a short timeout), the answers are merged with each
//!   instance's owner, and members that did not answer are named. The
//!   merged view is kept for [`CACHE_FOR`](super::cluster_view::CACHE_FOR), so page loads do not fan out
//!   each time. `?scope=local` on `/api/v1/probes` shows this replica's own
//!   instances only. In single mode none of this happens.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::cluster_view::{ClusterInfo, ClusterView, Unreachable};
use super::{blocking, Context};
use crate::handover::{portable, StatusSet};
use crate::model::instance::InstanceId;
use crate::state::ProbeStatus;

/// The merged view of the cluster, fetched again when the kept one is
/// older than [`CACHE_FOR`](super::cluster_view::CACHE_FOR).
pub async fn view(cx: &Context) -> Arc<ClusterView> {
    cx.fanout.view(|serial| fetch(cx, serial)).await
}

/// Asks every live member for the instances it owns (this replica answers
/// from its own state) and merges the answers.
async fn fetch(cx: &Context, serial: u64) -> ClusterView {
    let me = cx.cluster.identity().to_string();
    let members = cx.cluster.members();
    let asks = members.iter().map(|member| async {
        if member.identity == me {
            Ok(local_owned(cx))
        } else {
            cx.peers.owned(member).await
        }
    });
    let answers = futures::future::join_all(asks).await;
    let mut merged: BTreeMap<InstanceId, (String, ProbeStatus)> = BTreeMap::new();
    let mut unreachable = Vec::new();
    for (member, answer) in members.iter().zip(answers) {
        let set = match answer {
            Ok(set) => set,
            Err(err) => {
                tracing::debug!(member = %member.identity, error = %err, "member did not answer for the cluster page");
                unreachable.push(Unreachable {
                    identity: member.identity.clone(),
                    url: member.url.clone(),
                    reason: err.reason(),
                    instances: 0,
                });
                continue;
            }
        };
        for status in set.instances {
            let id = status.instance();
            // During a handover two members may report one instance: the
            // owner by the current member set wins, else the newer run.
            let replace = match merged.get(&id) {
                None => true,
                Some((_, current)) => {
                    let owner = cx.cluster.owner(&id).map(|m| m.identity);
                    owner.as_deref() == Some(member.identity.as_str())
                        || (owner.is_none() && current.last_run() < status.last_run())
                }
            };
            if replace {
                merged.insert(id, (member.identity.clone(), status));
            }
        }
    }
    // What the silent members own, as this replica lists the roots.
    let mut silent_probes = std::collections::BTreeSet::new();
    for id in cx.state.instances_run().into_iter().map(|(id, _)| id) {
        let Some(owner) = cx.cluster.owner(&id) else {
            continue;
        };
        if let Some(entry) = unreachable
            .iter_mut()
            .find(|u| u.identity == owner.identity)
        {
            entry.instances += 1;
            silent_probes.insert(id.probe);
        }
    }
    ClusterView {
        info: ClusterInfo {
            identity: me,
            members,
            unreachable,
            silent_probes,
        },
        statuses: merged.into_values().collect(),
        serial,
    }
}

/// This replica's owned instances, as `?owned=true` answers.
fn local_owned(cx: &Context) -> StatusSet {
    local_set(cx, |s| cx.cluster.owns(&s.instance()))
}

/// This replica's statuses that `keep` selects.
fn local_set(cx: &Context, keep: impl Fn(&ProbeStatus) -> bool) -> StatusSet {
    StatusSet {
        identity: cx.cluster.identity().to_string(),
        instances: cx.state.snapshot().into_iter().filter(keep).collect(),
    }
}

/// Whether the page and the list should show the merged cluster view: in
/// `kubernetes` mode once members are known, unless the request asks for
/// this replica's own view.
pub fn fans_out(cx: &Context, query: Option<&str>) -> bool {
    !cx.cluster.is_single()
        && !cx.cluster.members().is_empty()
        && !query_pairs(query).any(|(key, value)| key == "scope" && value == "local")
}

fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (String, String)> + '_ {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned()
}

/// `GET /api/v1/cluster/status`.
pub(super) async fn status(State(cx): State<Context>, RawQuery(query): RawQuery) -> Response {
    let mut owned = false;
    let mut wanted = Vec::new();
    for (key, value) in query_pairs(query.as_deref()) {
        match key.as_str() {
            "owned" => owned = value == "true",
            "instance" => wanted.push(InstanceId::parse(&value)),
            _ => {}
        }
    }
    let result = blocking(move || {
        let set = if owned {
            local_owned(&cx)
        } else {
            local_set(&cx, |s| {
                s.last_report.is_some() && (wanted.is_empty() || wanted.contains(&s.instance()))
            })
        };
        let set = StatusSet {
            identity: set.identity,
            instances: set.instances.iter().map(portable).collect(),
        };
        Bytes::from(serde_json::to_vec(&set).expect("statuses serialize"))
    })
    .await;
    match result {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(response) => response,
    }
}

/// This replica's statuses for its own page and list: all of them in single
/// mode (and before any member is known), else the owned ones, each with
/// this replica as owner.
pub fn local_statuses(cx: &Context) -> Vec<(Option<String>, ProbeStatus)> {
    let statuses = cx.state.snapshot();
    if cx.cluster.is_single() || cx.cluster.members().is_empty() {
        return statuses.into_iter().map(|s| (None, s)).collect();
    }
    let me = cx.cluster.identity().to_string();
    statuses
        .into_iter()
        .filter(|s| cx.cluster.owns(&s.instance()))
        .map(|s| (Some(me.clone()), s))
        .collect()
}

/// In front of an instance's own routes (`/probes/{id}`,
/// `/api/v1/probes/{id}`, `…/runs`): when another live member owns the
/// instance, its answer is relayed, since the owner has the fresh status
/// and the history of the runs it made. Answers locally in single mode, for
/// a relayed request, for an instance this replica owns or does not know,
/// and when the owner does not answer.
pub(super) async fn relay_to_owner(
    State(cx): State<Context>,
    axum::extract::Path(id): axum::extract::Path<String>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use crate::handover::peers::RELAYED_HEADER;
    if cx.cluster.is_single() || request.headers().contains_key(RELAYED_HEADER) {
        return next.run(request).await;
    }
    let instance = InstanceId::parse(&id);
    if cx.state.get(&instance).is_none() || cx.cluster.owns(&instance) {
        return next.run(request).await;
    }
    let Some(owner) = cx.cluster.owner(&instance) else {
        return next.run(request).await;
    };
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    match cx.peers.relay(&owner, &path).await {
        Ok((status, headers, body)) => {
            let mut response = (
                axum::http::StatusCode::from_u16(status)
                    .unwrap_or(axum::http::StatusCode::BAD_GATEWAY),
                body,
            )
                .into_response();
            for (name, value) in headers {
                if let (Ok(name), Ok(value)) = (
                    axum::http::HeaderName::try_from(name),
                    axum::http::HeaderValue::try_from(value),
                ) {
                    response.headers_mut().insert(name, value);
                }
            }
            if let Ok(value) = axum::http::HeaderValue::try_from(owner.identity.as_str()) {
                response.headers_mut().insert("x-driftwatch-owner", value);
            }
            response
        }
        Err(err) => {
            tracing::debug!(owner = %owner.identity, error = %err, "owner did not answer; serving this replica's view");
            next.run(request).await
        }
    }
}
