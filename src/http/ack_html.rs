//! The status page's view of acknowledgements: acknowledged drift shown
//! apart from the rest (who, why, until, and the diff it covers), stale acks
//! (matching nothing) and recently ended ones.

use chrono::{DateTime, Utc};
use maud::{html, Markup};

use crate::ack::{AckState, AckView};
use crate::model::outcome::ResourceChange;
use crate::state::ProbeStatus;

/// The report's changes with `acknowledged_by` filled in from the acks at `now`.
pub fn annotate(status: &ProbeStatus, now: DateTime<Utc>) -> Vec<ResourceChange> {
    let assessment = crate::ack::assess_status(status, now);
    let mut changes = status
        .last_report
        .as_ref()
        .map(|r| r.changes.clone())
        .unwrap_or_default();
    for change in &mut changes {
        change.acknowledged_by = assessment
            .standing_of(&change.subject)
            .filter(|s| s.standing == crate::ack::Standing::Acknowledged)
            .map(|s| s.acknowledged_by.clone())
            .unwrap_or_default();
    }
    changes
}

/// The "Acknowledged drift" section; empty when the instance has no acks.
pub fn section(
    status: &ProbeStatus,
    changes: &[ResourceChange],
    now: DateTime<Utc>,
    change_block: impl Fn(&ResourceChange) -> Markup,
) -> Markup {
    let views = crate::ack::view::views(status, now);
    if views.is_empty() {
        return html! {};
    }
    let acknowledged: Vec<&ResourceChange> = changes
        .iter()
        .filter(|c| !c.acknowledged_by.is_empty())
        .collect();
    html! {
        h2 { "Acknowledged drift (" (acknowledged.len()) ")" }
        div id="acks" {
            @for view in &views {
                (ack_block(view, now))
                @if view.state == AckState::Active {
                    @for change in acknowledged.iter().filter(|c| c.acknowledged_by.contains(&view.id)) {
                        (change_block(change))
                    }
                }
            }
        }
    }
}

fn ack_block(view: &AckView, now: DateTime<Utc>) -> Markup {
    let state = view.state.as_str();
    let class = match view.state {
        AckState::Active => "badge s-in_sync",
        AckState::Stale => "badge s-drifted",
        AckState::Expired | AckState::Closed | AckState::Waiting => "badge s-pending",
    };
    let left = (view.expires_at - now).num_seconds();
    html! {
        div class="ack" id={ "ack-" (view.id) } {
            div class="head" {
                span class=(class) { (state.to_uppercase()) }
                " " b class="mono" { (view.id) }
                " by " b { (view.by) }
                " · " (view.reason)
                " · until " (view.expires_at.format("%Y-%m-%d %H:%M UTC"))
                @if left > 0 && view.ended_at.is_none() {
                    " (" (super::text::span(left as u64)) " left)"
                }
                " · " span class="muted" { (view.source.as_str()) }
                @if let Some(reason) = &view.ended_reason {
                    " · " span class="muted" { (reason) }
                }
            }
            @if view.state == AckState::Stale {
                p class="muted" {
                    "Stale: its fingerprints match nothing in the last run (the drift changed or is gone). "
                    "Remove it, or acknowledge the current drift again."
                }
            }
            ul class="covers mono" {
                @for cover in &view.covers {
                    li {
                        (cover.subject)
                        @if let Some(field) = &cover.field { " " (field) }
                        " " span class="muted" { (cover.fingerprint) }
                        @if !cover.matches { " " b { "(no longer matches)" } }
                    }
                }
            }
        }
    }
}
