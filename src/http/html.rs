//! Server-side HTML for the status page: no JavaScript, no CDN, inline CSS,
//! so it works offline and behind any proxy. Pages are [`maud`] templates:
//! every `(value)` spliced into one is HTML-escaped unless it is wrapped in
//! `PreEscaped`, which only the constant style sheet is. URLs take ids through
//! [`encode_segment`]. Nothing a probe, a repo or a remote system wrote
//! reaches the page raw, and no call site has to remember to escape.

use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::history::{EpisodeRow, EventRow, RunRow};
use crate::model::outcome::ResourceChange;
use crate::model::outcome::Verdict;
use crate::state::ProbeStatus;

use super::text::span;

/// What stays literal in a path segment: RFC 3986 unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes one URL path segment (instance ids may hold `:` and `/`).
pub fn encode_segment(text: &str) -> String {
    utf8_percent_encode(text, SEGMENT).to_string()
}

/// A probe instance row on the overview: its status, or a configured probe
/// that has not run yet.
pub struct OverviewRow {
    pub id: String,
    pub layer: String,
    pub status: Option<ProbeStatus>,
    /// The cluster member that owns the instance (`kubernetes` mode).
    pub owner: Option<String>,
}

pub struct Overview<'a> {
    pub now: DateTime<Utc>,
    pub refresh_seconds: u64,
    pub rows: &'a [OverviewRow],
    pub events: Option<&'a [EventRow]>,
    /// The members when the rows come from the whole cluster.
    pub cluster: Option<&'a super::cluster_view::ClusterInfo>,
}

pub struct ProbePage<'a> {
    pub now: DateTime<Utc>,
    pub refresh_seconds: u64,
    pub id: &'a str,
    pub layer: &'a str,
    pub repo: Option<&'a str>,
    pub path: Option<&'a str>,
    pub schedule: Option<&'a str>,
    /// The zone `schedule` is read in.
    pub timezone: Option<chrono_tz::Tz>,
    pub status: Option<&'a ProbeStatus>,
    pub runs: Option<&'a [RunRow]>,
    pub episodes: Option<&'a [EpisodeRow]>,
    pub events: Option<&'a [EventRow]>,
}

const STYLE: &str = r#"
:root{--ok:#1a7f37;--drift:#b35900;--err:#cf222e;--muted:#57606a;--line:#d0d7de;--bg:#f6f8fa}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1f2328;background:#fff}
header{display:flex;align-items:center;gap:18px;padding:10px 24px;background:#24292f;color:#fff}
header a{color:#fff;text-decoration:none}
header .brand{font-weight:700;font-size:17px}
header .counts{display:flex;gap:10px;margin-left:auto;font-size:13px}
main{max-width:1400px;margin:0 auto;padding:8px 24px 40px}
h1{font-size:20px;margin:18px 0 8px}
h2{font-size:15px;margin:22px 0 6px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted)}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid var(--line);vertical-align:top}
th{background:var(--bg);font-weight:600;font-size:12px;color:var(--muted);white-space:nowrap}
tr:hover td{background:#fafbfc}
td.num{text-align:right;font-variant-numeric:tabular-nums}
a{color:#0969da}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace;font-size:12.5px}
.badge{display:inline-block;min-width:72px;text-align:center;padding:2px 8px;border-radius:12px;font-size:11.5px;font-weight:700;color:#fff;white-space:nowrap}
.s-in_sync{background:var(--ok)}.s-drifted{background:var(--drift)}.s-error{background:var(--err)}.s-pending{background:#8c959f}
.pill{padding:2px 9px;border-radius:10px;background:#ffffff22}
.muted{color:var(--muted)}.warn{color:var(--err)}
.msg{max-width:520px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.res{max-width:340px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:6px 24px;margin:6px 0 10px}
.grid div span{display:block;font-size:11.5px;color:var(--muted)}
.change{border:1px solid var(--line);border-radius:6px;margin:8px 0;overflow:hidden}
.change .head{padding:6px 10px;background:var(--bg);border-bottom:1px solid var(--line)}
.change pre{margin:0;padding:8px 10px;overflow:auto;max-height:420px;white-space:pre-wrap;word-break:break-word}
.add{color:#116329;background:#dafbe1}.del{color:#82071e;background:#ffebe9}.chg{color:#953800}
.error-box{border:1px solid #ff818266;background:#fff5f5;border-radius:6px;padding:8px 12px;margin:8px 0}
.error-box pre{white-space:pre-wrap;margin:6px 0 0}
.ev-drift_detected{color:var(--drift);font-weight:600}.ev-drift_resolved{color:var(--ok);font-weight:600}
.ev-probe_failing{color:var(--err);font-weight:600}.ev-probe_recovered{color:var(--ok)}
footer{margin-top:28px;color:var(--muted);font-size:12px}
"#;

fn verdict_class(verdict: Option<Verdict>) -> (&'static str, &'static str) {
    match verdict {
        Some(v) => (v.as_str(), v.label()),
        None => ("pending", "PENDING"),
    }
}

fn badge(verdict: Option<Verdict>) -> Markup {
    let (class, label) = verdict_class(verdict);
    html! { span class={ "badge s-" (class) } { (label) } }
}

/// "3m ago" style, with seconds for the first minute.
pub fn ago(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds();
    if secs <= 0 {
        return "just now".into();
    }
    format!("{} ago", span(secs as u64))
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A relative time with the absolute one as tooltip.
fn when(now: DateTime<Utc>, at: DateTime<Utc>) -> Markup {
    html! { time datetime=(at.to_rfc3339()) title=(timestamp(at)) { (ago(now, at)) } }
}

fn short_commit(commit: &str) -> &str {
    let end = commit
        .char_indices()
        .nth(8)
        .map(|(i, _)| i)
        .unwrap_or(commit.len());
    &commit[..end]
}

/// A short commit id, linked to its page in the repository's web UI when known.
fn commit_link(commit: &str, url: Option<&str>) -> Markup {
    html! {
        @match url {
            Some(url) => { a href=(url) title=(commit) { (short_commit(commit)) } }
            None => { span title=(commit) { (short_commit(commit)) } }
        }
    }
}

fn muted(text: &str) -> Markup {
    html! { span class="muted" { (text) } }
}

/// The frame around every page: head, navigation with the verdict counts
/// (`[in sync, drifted, error, pending]`), and the footer.
fn page(
    title: &str,
    refresh_seconds: u64,
    counts: Option<[usize; 4]>,
    footer_at: Option<DateTime<Utc>>,
    content: Markup,
) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                @if refresh_seconds > 0 {
                    meta http-equiv="refresh" content=(refresh_seconds);
                }
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a class="brand" href="/" { "driftwatch" }
                    a href="/" { "Overview" }
                    a href="/events" { "Events" }
                    @if let Some([in_sync, drifted, error, pending]) = counts {
                        div class="counts" {
                            span class="pill" id="count-in-sync" { (in_sync) " in sync" }
                            span class="pill" id="count-drifted" { (drifted) " drifted" }
                            span class="pill" id="count-error" { (error) " error" }
                            @if pending > 0 {
                                span class="pill" id="count-pending" { (pending) " pending" }
                            }
                        }
                    }
                }
                main {
                    (content)
                    @if let Some(now) = footer_at {
                        footer {
                            "Rendered " (timestamp(now)) " · "
                            @if refresh_seconds > 0 {
                                "refreshes every " (refresh_seconds) "s"
                            } @else {
                                "auto-refresh off"
                            }
                            " · " a href="/metrics" { "/metrics" }
                            " · " a href="/api/v1/probes" { "/api/v1/probes" }
                            " · " a href="/api/v1/events" { "/api/v1/events" }
                            " · " a href="/api/v1/episodes" { "/api/v1/episodes" }
                            " · driftwatch " (env!("CARGO_PKG_VERSION"))
                        }
                    }
                }
            }
        }
    }
    .into_string()
}

fn probe_link(id: &str) -> Markup {
    html! { a href={ "/probes/" (encode_segment(id)) } { (id) } }
}

fn probes_table(now: DateTime<Utc>, rows: &[&OverviewRow]) -> Markup {
    html! {
        table class="probes" {
            thead { tr {
                th { "Probe" } th { "Status" } th { "Drifted resources" } th { "Drift since" }
                th { "Last check" } th { "Commit" } th { "Message" }
            } }
            tbody { @for row in rows { (overview_row(now, row)) } }
        }
    }
}

/// The overview: one table per layer, then the latest events.
pub fn overview(page_data: &Overview<'_>) -> String {
    let mut counts = [0usize; 4];
    for row in page_data.rows {
        let index = match row.status.as_ref().and_then(|s| s.verdict()) {
            Some(Verdict::InSync) => 0,
            Some(Verdict::Drifted) => 1,
            Some(Verdict::Error) => 2,
            None => 3,
        };
        counts[index] += 1;
    }
    let mut layers: Vec<&str> = page_data.rows.iter().map(|r| r.layer.as_str()).collect();
    layers.sort_unstable();
    layers.dedup();
    let now = page_data.now;
    let content = html! {
        @if let Some(cluster) = page_data.cluster {
            p class="muted" id="cluster" {
                "Cluster of " (cluster.members.len()) " members, seen from " (cluster.identity) ": "
                @for (n, member) in cluster.members.iter().enumerate() {
                    @if n > 0 { ", " }
                    (member.identity)
                }
            }
            @if !cluster.unreachable.is_empty() {
                p class="warn" id="unreachable" {
                    "Not answering, their instances are missing below: "
                    @for (n, member) in cluster.unreachable.iter().enumerate() {
                        @if n > 0 { ", " }
                        b { (member.identity) } " (" (member.reason) ", " (member.instances) " instances)"
                    }
                }
            }
        }
        @if page_data.rows.is_empty() {
            p class="muted" { "No probes are configured." }
        }
        @for layer in layers {
            h2 id={ "layer-" (layer) } { (layer) }
            (probes_table(now, &page_data.rows.iter().filter(|r| r.layer == layer).collect::<Vec<_>>()))
        }
        @if let Some(events) = page_data.events {
            h2 { "Recent events" }
            @if let Some(cluster) = page_data.cluster {
                // History stays with the replica that made the runs.
                p class="muted" { "Of the runs " (cluster.identity) " made; each instance's page shows its owner's." }
            }
            (events_table(now, events, true))
            p { a href="/events" { "All events" } }
        }
    };
    page(
        "driftwatch: status",
        page_data.refresh_seconds,
        Some(counts),
        Some(now),
        content,
    )
}

fn overview_row(now: DateTime<Utc>, row: &OverviewRow) -> Markup {
    let status = row.status.as_ref();
    let report = status.and_then(|s| s.last_report.as_ref());
    let verdict = report.map(|r| r.verdict);
    html! {
        tr data-probe=(row.id) data-status=(verdict_class(verdict).0) data-owner=[row.owner.as_deref()] {
            td {
                (probe_link(&row.id))
                @if let Some(owner) = &row.owner {
                    " " span class="muted" title="owned by this cluster member" { "on " (owner) }
                }
            }
            td { (badge(verdict)) }
            td class="res" {
                @match (status, report) {
                    // A probe that lists no resources (a plain exit-code command) has no count.
                    (Some(s), Some(_)) if s.drifted && s.drifted_resources == 0 => { (muted("–")) }
                    (Some(s), Some(r)) if s.drifted => {
                        b { (s.drifted_resources) }
                        // After an error the report has no changes; the count is kept.
                        @if r.verdict == Verdict::Drifted && !r.changes.is_empty() {
                            @let subjects: Vec<&str> = r.changes.iter().take(3).map(|c| c.subject.as_str()).collect();
                            @let list = subjects.join(", ");
                            @let more = s.drifted_resources.saturating_sub(subjects.len());
                            " "
                            span class="mono" title=(list) {
                                (list)
                                @if more > 0 { ", +" (more) }
                            }
                        }
                        @let acknowledged = crate::ack::assess_status(s, now).acknowledged;
                        @if acknowledged > 0 {
                            " " span class="muted acknowledged" title="covered by an acknowledgement" { "(" (acknowledged) " acknowledged)" }
                        }
                    }
                    (Some(_), Some(_)) => { (muted("0")) }
                    _ => { (muted("–")) }
                }
            }
            td {
                @match status.and_then(|s| s.drifted_since) {
                    Some(since) => { (when(now, since)) }
                    None => { (muted("–")) }
                }
            }
            td {
                @match report {
                    Some(r) => { (when(now, r.started_at)) }
                    None => { (muted("not yet")) }
                }
            }
            td class="mono" {
                @if let Some(r) = report { (commit_link(&r.commit, r.commit_url.as_deref())) }
            }
            td class="msg" {
                @if let Some(r) = report {
                    @let detail = r.detail();
                    span title=(detail) { (detail) }
                }
            }
        }
    }
}

fn events_table(now: DateTime<Utc>, events: &[EventRow], with_probe: bool) -> Markup {
    html! {
        @if events.is_empty() {
            p class="muted" { "No events yet." }
        } @else {
            table class="events" {
                thead { tr {
                    th { "When" } th { "Event" }
                    @if with_probe { th { "Probe" } }
                    th { "Commit" } th { "Detail" }
                } }
                tbody {
                    @for event in events {
                        tr data-event=(event.kind.as_str()) {
                            td { (when(now, event.at)) }
                            td class={ "ev-" (event.kind.as_str()) } { (event.kind.title()) }
                            @if with_probe { td { (probe_link(&event.probe)) } }
                            td class="mono" title=(event.commit) { (short_commit(&event.commit)) }
                            td class="msg" title=(event.message) { (event.message) }
                        }
                    }
                }
            }
        }
    }
}

/// The events feed page.
pub fn events_page(
    now: DateTime<Utc>,
    refresh_seconds: u64,
    events: Option<&[EventRow]>,
    next_before: Option<i64>,
) -> String {
    let content = html! {
        h1 { "Events" }
        @match events {
            Some(events) => { (events_table(now, events, true)) }
            None => { p class="muted" { "History is not available." } }
        }
        @if let Some(before) = next_before {
            p { a href={ "/events?before=" (before) } { "Older events" } }
        }
    };
    page(
        "driftwatch: events",
        refresh_seconds,
        None,
        Some(now),
        content,
    )
}

fn field(label: &str, value: Markup) -> Markup {
    html! { div { span { (label) } (value) } }
}

fn diff_block(diff: &str) -> Markup {
    html! {
        pre {
            @for line in diff.lines() {
                @match line.trim_start().chars().next() {
                    Some('+') => { span class="add" { (line) } "\n" }
                    Some('-') => { span class="del" { (line) } "\n" }
                    Some('~') => { span class="chg" { (line) } "\n" }
                    _ => { (line) "\n" }
                }
            }
        }
    }
}

fn change_block(change: &ResourceChange) -> Markup {
    html! {
        div class="change" {
            div class="head" {
                b class="mono subject" { (change.subject) }
                " · "
                span class="action" { (change.action) }
                @if let Some(origin) = &change.origin {
                    " " span class="muted" { "(origin: " (origin) ")" }
                }
                @if let Some(declared_at) = &change.declared_at {
                    " · "
                    @match &change.url {
                        Some(url) => { a class="mono declared" href=(url) title="where git declares it" { (declared_at) } }
                        None => { span class="mono muted declared" title="where git declares it" { (declared_at) } }
                    }
                }
            }
            @if !change.diff.is_empty() { (diff_block(&change.diff)) }
        }
    }
}

/// Changes an ignore rule matched, from `details.ignored_changes` (a layer's
/// list of objects naming a `subject` or `address`, and the `rule`): shown
/// so that ignoring never hides a change silently.
fn ignored_block(details: &serde_json::Value) -> Markup {
    let ignored = details["ignored_changes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    html! {
        @if !ignored.is_empty() {
            h2 { "Ignored changes (" (ignored.len()) ")" }
            ul id="ignored" {
                @for entry in ignored {
                    li {
                        span class="mono subject" {
                            (entry["subject"].as_str().or_else(|| entry["address"].as_str()).unwrap_or("?"))
                        }
                        @if let Some(rule) = entry["rule"].as_str() {
                            " " span class="muted" { "(by " (rule) ")" }
                        }
                    }
                }
            }
        }
    }
}

fn history_missing() -> Markup {
    html! { p class="muted" { "History is not available." } }
}

/// One probe instance: its last report with changes and diffs, drift
/// episodes, recent runs and events.
pub fn probe_page(page_data: &ProbePage<'_>) -> String {
    let now = page_data.now;
    let status = page_data.status;
    let report = status.and_then(|s| s.last_report.as_ref());
    let changes = status
        .map(|s| super::ack_html::annotate(s, now))
        .unwrap_or_default();
    let content = html! {
        h1 { span id="probe-id" { (page_data.id) } " " (badge(report.map(|r| r.verdict))) }
        @if let Some(r) = report {
            @let detail = r.detail();
            @if !detail.is_empty() { p id="summary" { (detail) } }
        }
        div class="grid" {
            (field("Layer", html! { (page_data.layer) }))
            @if let Some(repo) = page_data.repo {
                (field("Repository", html! { (repo) }))
            }
            @if let Some(path) = page_data.path {
                (field("Path", html! { span class="mono" { (if path.is_empty() { "." } else { path }) } }))
            }
            @if let Some(schedule) = page_data.schedule {
                (field("Schedule", html! {
                    span class="mono" { (schedule) }
                    @if let Some(zone) = page_data.timezone { " " span class="muted" { "(" (zone.name()) ")" } }
                }))
            }
            @if let Some(next) = status.and_then(|s| s.next_run) {
                (field("Next run", html! {
                    time datetime=(next.to_rfc3339()) { (timestamp(next)) }
                    @if let Some(zone) = page_data.timezone.filter(|zone| *zone != chrono_tz::UTC) {
                        " = " (next.with_timezone(&zone).format("%Y-%m-%d %H:%M:%S %Z")) " " (zone.name())
                    }
                    " (in " (span((next - now).num_seconds().max(0) as u64)) ")"
                }))
            }
            @if let Some(r) = report {
                (field("Last check", when(now, r.started_at)))
                (field("Duration", html! { (format!("{:.1}s", r.duration.as_secs_f64())) }))
                (field("Trigger", html! { (r.trigger) }))
                (field("Commit", html! { span class="mono" { (commit_link(&r.commit, r.commit_url.as_deref())) } }))
            }
            @if let Some(status) = status {
                @if let Some(since) = status.drifted_since {
                    (field("Drifted since", html! {
                        (when(now, since))
                        @if let Some(commit) = &status.drifted_since_commit {
                            " " span class="mono muted" { "at " (short_commit(commit)) }
                        }
                    }))
                }
                @if let Some(success) = status.last_success {
                    (field("Last verdict reached", when(now, success)))
                }
            }
        }
        @match report {
            None => { p class="muted" { "This probe has not run yet." } }
            Some(r) => {
                @if let Some(error) = &r.error {
                    div class="error-box" {
                        b { "Error (" (error.reason.as_str()) ")" }
                        ": "
                        span class="error-message" { (error.message) }
                        p class="next-step" { b { "Next: " } (error.next_step) }
                        @if !error.stderr_tail.is_empty() {
                            pre { (error.stderr_tail) }
                        }
                    }
                }
                @if !r.warnings.is_empty() {
                    h2 { "Warnings" }
                    ul { @for warning in &r.warnings { li { (warning) } } }
                }
                @if !r.changes.is_empty() || r.verdict != Verdict::Error {
                    h2 {
                        @if r.verdict == Verdict::Error { "Differences found before the error" } @else { "Resource changes" }
                        " (" (r.change_count()) ")"
                    }
                    div id="changes" {
                        @if r.changes.is_empty() && r.change_count() == 0 {
                            p class="muted" { "None: git and reality agree." }
                        }
                        @if r.truncated {
                            p class="muted" id="truncated" {
                                "Truncated at the report caps: showing " (r.changes.len()) " of "
                                (r.change_count()) " changes (the verdict and the count are complete)."
                            }
                        }
                        @for change in changes.iter().filter(|c| c.acknowledged_by.is_empty()) { (change_block(change)) }
                    }
                }
                @if let Some(status) = status {
                    (super::ack_html::section(status, &changes, now, change_block))
                }
                (ignored_block(&r.details))
            }
        }
        h2 { "Drift episodes" }
        @match page_data.episodes {
            None => { (history_missing()) }
            Some([]) => { p class="muted" { "No drift recorded." } }
            Some(episodes) => {
                table class="episodes" {
                    thead { tr {
                        th { "Started" } th { "Ended" } th { "Lasted" } th { "From commit" }
                        th { "To commit" } th class="num" { "Runs" } th { "Resources" }
                    } }
                    tbody {
                        @for episode in episodes {
                            @let lasted = (episode.ended_at.unwrap_or(now) - episode.started_at).num_seconds().max(0) as u64;
                            @let list = episode.resources.iter().map(|r| r.subject.as_str()).collect::<Vec<_>>().join(", ");
                            tr {
                                td { (when(now, episode.started_at)) }
                                td {
                                    @match episode.ended_at {
                                        Some(ended) => { (when(now, ended)) }
                                        None => { span class="badge s-drifted" { "OPEN" } }
                                    }
                                    @if episode.ended_reason.as_deref() == Some("removed") {
                                        " (root removed)"
                                    }
                                }
                                td { (span(lasted)) }
                                td class="mono" { (short_commit(&episode.started_commit)) }
                                td class="mono" { (episode.ended_commit.as_deref().map(short_commit).unwrap_or("")) }
                                td class="num" { (episode.drifted_runs) }
                                td class="res mono" title=(list) { (list) }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Recent runs" }
        @match page_data.runs {
            None => { (history_missing()) }
            Some([]) => { p class="muted" { "No runs recorded." } }
            Some(runs) => {
                table class="runs" {
                    thead { tr {
                        th { "Started" } th { "Verdict" } th class="num" { "Changes" } th class="num" { "Duration" }
                        th { "Trigger" } th { "Commit" } th { "Message" }
                    } }
                    tbody {
                        @for run in runs {
                            @let message = match (&run.error_reason, &run.message) {
                                (Some(reason), Some(message)) => format!("{reason}: {message}"),
                                (Some(reason), None) => reason.clone(),
                                (None, Some(message)) => message.clone(),
                                (None, None) => String::new(),
                            };
                            tr {
                                td { (when(now, run.started_at)) }
                                td { (badge(Some(run.verdict))) }
                                td class="num" { (run.changes) }
                                td class="num" { (format!("{:.1}s", run.duration_seconds)) }
                                td { (run.trigger) }
                                td class="mono" title=(run.commit) { (short_commit(&run.commit)) }
                                td class="msg" title=(message) { (message) }
                            }
                        }
                    }
                }
                p { a href={ "/api/v1/probes/" (encode_segment(page_data.id)) "/runs" } { "All runs (JSON)" } }
            }
        }
        h2 { "Events" }
        @match page_data.events {
            None => { (history_missing()) }
            Some(events) => { (events_table(now, events, false)) }
        }
    };
    page(
        &format!("driftwatch: {}", page_data.id),
        page_data.refresh_seconds,
        None,
        Some(now),
        content,
    )
}

/// A page listing the instances of a probe with several roots.
pub fn instances_page(
    now: DateTime<Utc>,
    refresh_seconds: u64,
    name: &str,
    rows: &[OverviewRow],
) -> String {
    let content = html! {
        h1 { (name) }
        (probes_table(now, &rows.iter().collect::<Vec<_>>()))
    };
    page(
        &format!("driftwatch: {name}"),
        refresh_seconds,
        None,
        Some(now),
        content,
    )
}

/// A plain error page (404 and friends).
pub fn message_page(title: &str, message: &str) -> String {
    let content = html! {
        h1 { (title) }
        p { (message) }
        p { a href="/" { "Back to the overview" } }
    };
    page(title, 0, None, None, content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::EventKind;
    use crate::model::outcome::{ErrorReason, ProbeError};
    use crate::model::outcome::{Outcome, RunReport};
    use std::time::Duration;

    const XSS: &str = "<script>alert(1)</script>";

    fn status(verdict: Verdict) -> ProbeStatus {
        let mut report = RunReport {
            probe: format!("web{XSS}:envs/\"prod\""),
            name: format!("web{XSS}"),
            root: "envs/\"prod\"".into(),
            layer: "terraform".into(),
            run_id: 1,
            trigger: "schedule".into(),
            repo: "infra".into(),
            commit: format!("abc{XSS}"),
            started_at: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            duration: Duration::from_secs(2),
            verdict: Verdict::InSync,
            warnings: vec![XSS.into()],
            ..RunReport::default()
        };
        report.apply_result(match verdict {
            Verdict::Drifted => Ok(Outcome::drifted(vec![ResourceChange::new(
                format!("aws_instance.{XSS}"),
                format!("update{XSS}"),
            )
            .with_diff(format!("~ tags.note = \"x\" -> \"{XSS}\"\n+ a\n- b"))
            .with_origin(XSS)])),
            Verdict::Error => {
                Err(ProbeError::new(ErrorReason::Parse, format!("bad {XSS}")).with_stderr_tail(XSS))
            }
            Verdict::InSync => Ok(Outcome::in_sync()),
        });
        let mut status = ProbeStatus::new(&report.instance(), "terraform");
        status.apply(&report);
        status
    }

    fn assert_no_raw_markup(html: &str) {
        assert!(!html.contains("<script"), "raw script tag in:\n{html}");
        assert!(!html.contains("\"prod\""), "raw quote in attribute");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    /// A drifted command probe without resources shows "–", not a bold 0;
    /// the message column never repeats the badge; commits and declarations
    /// link into the repository's web UI when the report carries links.
    #[test]
    fn overview_counts_messages_and_links() {
        let now = DateTime::from_timestamp(1_700_000_600, 0).unwrap();
        let row = |report: &mut RunReport| {
            let mut status = ProbeStatus::new(&report.instance(), "command");
            status.apply(report);
            let rows = [OverviewRow {
                id: report.probe.clone(),
                layer: "command".into(),
                status: Some(status),
                owner: None,
            }];
            let html = overview(&Overview {
                now,
                refresh_seconds: 30,
                rows: &rows,
                events: None,
                cluster: None,
            });
            let start = html.find("<td class=\"res\">").unwrap();
            html[start..].to_string()
        };
        let mut plain = RunReport {
            probe: "berlin-ai-nodes".into(),
            name: "berlin-ai-nodes".into(),
            layer: "command".into(),
            commit: "0123456789abcdef".into(),
            started_at: now,
            ..RunReport::default()
        };
        plain.apply_result(Ok(Outcome {
            exit_code: Some(2),
            drifted: true,
            message: "The definition is 6 nodes but berlin-ai is running with 5".into(),
            ..Outcome::default()
        }));
        let html = row(&mut plain);
        assert!(
            html.starts_with("<td class=\"res\"><span class=\"muted\">–</span></td>"),
            "{html}"
        );
        assert!(
            html.contains(">The definition is 6 nodes but berlin-ai is running with 5<"),
            "{html}"
        );
        assert!(!html.contains("drifted:"), "{html}");
        assert!(
            html.contains("<span title=\"0123456789abcdef\">01234567</span>"),
            "{html}"
        );

        let web = crate::weblinks::WebLinks::derive("https://github.com/acme/infra.git").unwrap();
        let mut listed = plain.clone();
        listed.message.clear();
        listed.apply_result(Ok(Outcome::drifted(vec![
            ResourceChange::new("terraform_data.shop", "update")
                .with_declared_at("terraform/app/main.tf:3"),
            ResourceChange::new("terraform_data.queue", "update"),
        ])));
        listed.link(&web);
        let html = row(&mut listed);
        assert!(html.starts_with("<td class=\"res\"><b>2</b>"), "{html}");
        assert!(
            html.contains(">2 resource(s) differ<") && !html.contains("drifted:"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"https://github.com/acme/infra/commit/0123456789abcdef\" title=\"0123456789abcdef\">01234567</a>"),
            "{html}"
        );
        let block = change_block(&listed.changes[0]).into_string();
        assert!(
            block.contains("<a class=\"mono declared\" href=\"https://github.com/acme/infra/blob/0123456789abcdef/terraform/app/main.tf#L3\""),
            "{block}"
        );
        assert!(!change_block(&listed.changes[1])
            .into_string()
            .contains("declared"));
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        let page = message_page(r#"<a href='x'>"&"</a>"#, "plain é");
        assert!(page.contains("<h1>&lt;a href='x'&gt;&quot;&amp;&quot;&lt;/a&gt;</h1>"));
        assert!(page.contains("<p>plain é</p>"));
        assert_eq!(encode_segment("net:envs/prod"), "net%3Aenvs%2Fprod");
        assert_eq!(encode_segment("a-b_c.d~é"), "a-b_c.d~%C3%A9");
    }

    #[test]
    fn pages_escape_every_dynamic_value() {
        let now = DateTime::from_timestamp(1_700_000_600, 0).unwrap();
        for verdict in [Verdict::Drifted, Verdict::Error] {
            let status = status(verdict);
            let rows = [OverviewRow {
                id: status.probe.clone(),
                layer: format!("terraform{XSS}"),
                status: Some(status.clone()),
                owner: Some(format!("pod{XSS}")),
            }];
            let events = [EventRow {
                id: 1,
                at: now,
                kind: EventKind::DriftDetected,
                probe: status.probe.clone(),
                name: status.name.clone(),
                root: status.root.clone(),
                layer: "terraform".into(),
                commit: XSS.into(),
                run: 1,
                episode: Some(1),
                message: XSS.into(),
            }];
            let cluster = super::super::cluster_view::ClusterInfo {
                identity: format!("me{XSS}"),
                members: vec![crate::cluster::Member {
                    identity: format!("pod{XSS}"),
                    url: format!("http://x/{XSS}"),
                }],
                unreachable: vec![super::super::cluster_view::Unreachable {
                    identity: format!("gone{XSS}"),
                    url: format!("http://y/{XSS}"),
                    reason: "timeout",
                    instances: 2,
                }],
                silent_probes: Default::default(),
            };
            let html = overview(&Overview {
                now,
                refresh_seconds: 30,
                rows: &rows,
                events: Some(&events),
                cluster: Some(&cluster),
            });
            assert_no_raw_markup(&html);
            assert!(html.contains(r#"<meta http-equiv="refresh" content="30">"#));
            let runs = [RunRow {
                id: 1,
                probe: status.probe.clone(),
                name: status.name.clone(),
                root: status.root.clone(),
                layer: "terraform".into(),
                run_id: 1,
                trigger: XSS.into(),
                repo: XSS.into(),
                commit: XSS.into(),
                started_at: now,
                duration_seconds: 1.0,
                verdict,
                changes: 1,
                error_reason: Some(XSS.into()),
                message: Some(XSS.into()),
            }];
            let episodes = [EpisodeRow {
                id: 1,
                probe: status.probe.clone(),
                name: status.name.clone(),
                root: status.root.clone(),
                layer: "terraform".into(),
                started_at: now,
                started_run: 1,
                started_commit: XSS.into(),
                ended_at: None,
                ended_run: None,
                ended_commit: Some(XSS.into()),
                ended_reason: None,
                resources: vec![crate::history::EpisodeResource {
                    subject: XSS.into(),
                    action: XSS.into(),
                }],
                max_resources: 1,
                drifted_runs: 1,
            }];
            let html = probe_page(&ProbePage {
                now,
                refresh_seconds: 30,
                id: &status.probe,
                layer: XSS,
                repo: Some(XSS),
                path: Some(XSS),
                schedule: Some(XSS),
                timezone: Some(chrono_tz::UTC),
                status: Some(&status),
                runs: Some(&runs),
                episodes: Some(&episodes),
                events: Some(&events),
            });
            assert_no_raw_markup(&html);
            assert!(html.contains("/api/v1/probes/web%3Cscript%3Ealert%281%29%3C%2Fscript%3E%3Aenvs%2F%22prod%22/runs"));
        }
    }

    #[test]
    fn the_probe_page_lists_ignored_changes() {
        let page = |status: &ProbeStatus| {
            probe_page(&ProbePage {
                now: DateTime::from_timestamp(1_700_000_600, 0).unwrap(),
                refresh_seconds: 30,
                id: &status.probe,
                layer: "ansible",
                repo: None,
                path: None,
                schedule: None,
                timezone: None,
                status: Some(status),
                runs: None,
                episodes: None,
                events: None,
            })
        };
        let mut status = status(Verdict::InSync);
        status.last_report.as_mut().unwrap().details = serde_json::json!({
            "ignored": 2,
            "ignored_changes": [
                {"subject": format!("web1: {XSS}"), "rule": "ignore[0]"},
                {"address": "aws_autoscaling_group.web", "attributes": "all"},
            ],
        });
        let html = page(&status);
        assert_no_raw_markup(&html);
        assert!(html.contains("<h2>Ignored changes (2)</h2>"), "{html}");
        assert!(html.contains(
            r#"web1: &lt;script&gt;alert(1)&lt;/script&gt;</span> <span class="muted">(by ignore[0])</span>"#
        ), "{html}");
        assert!(
            html.contains(r#"<span class="mono subject">aws_autoscaling_group.web</span></li>"#),
            "{html}"
        );
        status.last_report.as_mut().unwrap().details = serde_json::Value::Null;
        assert!(!page(&status).contains("Ignored changes"));
    }

    #[test]
    fn a_truncated_report_says_so_with_the_full_count() {
        let mut status = status(Verdict::Drifted);
        let changes = (0..1500)
            .map(|i| ResourceChange::new(format!("null_resource.r{i}"), "update"))
            .collect();
        let report = status.last_report.as_mut().unwrap();
        report.apply_result(Ok(Outcome::drifted(changes)));
        assert!(report.truncated && report.changes.len() == 1000);
        let html = probe_page(&ProbePage {
            now: DateTime::from_timestamp(1_700_000_600, 0).unwrap(),
            refresh_seconds: 30,
            id: &status.probe,
            layer: "terraform",
            repo: None,
            path: None,
            schedule: None,
            timezone: None,
            status: Some(&status),
            runs: None,
            episodes: None,
            events: None,
        });
        assert!(html.contains("<h2>Resource changes (1500)</h2>"), "{html}");
        assert!(html.contains("showing 1000 of 1500 changes"), "{html}");
        assert_eq!(html.matches("null_resource.r").count(), 1000);
    }

    #[test]
    fn the_schedule_shows_its_zone_and_the_next_run_in_it() {
        let mut status = status(Verdict::InSync);
        // 2023-11-14 22:15 UTC is 23:15 in Berlin (CET, UTC+1).
        status.next_run = DateTime::from_timestamp(1_700_000_100, 0);
        let page = |timezone| {
            probe_page(&ProbePage {
                now: DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
                refresh_seconds: 30,
                id: &status.probe,
                layer: "command",
                repo: None,
                path: None,
                schedule: Some("15 23 * * *"),
                timezone,
                status: Some(&status),
                runs: None,
                episodes: None,
                events: None,
            })
        };
        let berlin = page(Some(chrono_tz::Europe::Berlin));
        assert!(
            berlin.contains(r#"<span class="muted">(Europe/Berlin)</span>"#),
            "{berlin}"
        );
        assert!(
            berlin
                .contains("2023-11-14 22:15:00 UTC</time> = 2023-11-14 23:15:00 CET Europe/Berlin"),
            "{berlin}"
        );
        let utc = page(Some(chrono_tz::UTC));
        assert!(utc.contains("(UTC)") && !utc.contains(" = "), "{utc}");
    }

    #[test]
    fn relative_times_read_well() {
        assert_eq!(span(42), "42s");
        assert_eq!(span(303), "5m 3s");
        assert_eq!(span(3 * 3600 + 12 * 60), "3h 12m");
        assert_eq!(span(4 * 86_400 + 2 * 3600), "4d 2h");
    }
}
