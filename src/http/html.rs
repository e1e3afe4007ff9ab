//! Server-side HTML for the status page: no JavaScript, no CDN, inline CSS,
//! so it works offline and behind any proxy. Every dynamic value goes
//! through [`esc`] (text and attributes alike) or [`encode_segment`] (URLs);
//! nothing a probe, a repo or a remote system wrote reaches the page raw.

use std::fmt::{self, Display, Write};

use chrono::{DateTime, Utc};

use crate::history::{EpisodeRow, EventRow, RunRow};
use crate::probe::outcome::ResourceChange;
use crate::probe::Verdict;
use crate::state::ProbeStatus;

/// HTML-escapes text for element content and quoted attribute values.
pub struct Escaped<'a>(pub &'a str);

impl Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = 0;
        for (i, byte) in self.0.bytes().enumerate() {
            let replacement = match byte {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                b'\'' => "&#39;",
                _ => continue,
            };
            f.write_str(&self.0[last..i])?;
            f.write_str(replacement)?;
            last = i + 1;
        }
        f.write_str(&self.0[last..])
    }
}

pub fn esc(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// Percent-encodes one URL path segment (instance ids may hold `:` and `/`).
pub fn encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A probe instance row on the overview: its status, or a configured probe
/// that has not run yet.
pub struct OverviewRow {
    pub id: String,
    pub layer: String,
    pub status: Option<ProbeStatus>,
}

pub struct Overview<'a> {
    pub now: DateTime<Utc>,
    pub refresh_seconds: u64,
    pub rows: &'a [OverviewRow],
    pub events: Option<&'a [EventRow]>,
}

pub struct ProbePage<'a> {
    pub now: DateTime<Utc>,
    pub refresh_seconds: u64,
    pub id: &'a str,
    pub layer: &'a str,
    pub repo: Option<&'a str>,
    pub path: Option<&'a str>,
    pub schedule: Option<&'a str>,
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
.muted{color:var(--muted)}
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

fn badge(out: &mut String, verdict: Option<Verdict>) {
    let (class, label) = verdict_class(verdict);
    let _ = write!(out, r#"<span class="badge s-{class}">{label}</span>"#);
}

/// "3m ago" style, with seconds for the first minute.
pub fn ago(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let secs = (now - then).num_seconds();
    if secs <= 0 {
        return "just now".into();
    }
    format!("{} ago", span(secs as u64))
}

/// A compact duration: `42s`, `5m 3s`, `3h 12m`, `4d 2h`.
pub fn span(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h {}m", secs / 3600, secs % 3600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3600),
    }
}

fn timestamp(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A relative time with the absolute one as tooltip.
fn when(out: &mut String, now: DateTime<Utc>, at: DateTime<Utc>) {
    let _ = write!(
        out,
        r#"<time datetime="{}" title="{}">{}</time>"#,
        esc(&at.to_rfc3339()),
        esc(&timestamp(at)),
        esc(&ago(now, at))
    );
}

fn short_commit(commit: &str) -> &str {
    let end = commit
        .char_indices()
        .nth(8)
        .map(|(i, _)| i)
        .unwrap_or(commit.len());
    &commit[..end]
}

fn page_start(out: &mut String, title: &str, refresh_seconds: u64, counts: Option<[usize; 4]>) {
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">"#
    );
    if refresh_seconds > 0 {
        let _ = write!(
            out,
            r#"<meta http-equiv="refresh" content="{refresh_seconds}">"#
        );
    }
    let _ = write!(
        out,
        r#"<title>{}</title><style>{STYLE}</style></head><body><header><a class="brand" href="/">driftwatch</a><a href="/">Overview</a><a href="/events">Events</a>"#,
        esc(title)
    );
    if let Some([in_sync, drifted, error, pending]) = counts {
        let _ = write!(
            out,
            r#"<div class="counts"><span class="pill" id="count-in-sync">{in_sync} in sync</span><span class="pill" id="count-drifted">{drifted} drifted</span><span class="pill" id="count-error">{error} error</span>"#
        );
        if pending > 0 {
            let _ = write!(
                out,
                r#"<span class="pill" id="count-pending">{pending} pending</span>"#
            );
        }
        out.push_str("</div>");
    }
    out.push_str("</header><main>");
}

fn page_end(out: &mut String, now: DateTime<Utc>, refresh_seconds: u64) {
    let _ = write!(
        out,
        r#"<footer>Rendered {} · {} · <a href="/metrics">/metrics</a> · <a href="/api/v1/probes">/api/v1/probes</a> · <a href="/api/v1/events">/api/v1/events</a> · <a href="/api/v1/episodes">/api/v1/episodes</a> · driftwatch {}</footer></main></body></html>"#,
        esc(&timestamp(now)),
        if refresh_seconds > 0 {
            format!("refreshes every {refresh_seconds}s")
        } else {
            "auto-refresh off".to_string()
        },
        esc(env!("CARGO_PKG_VERSION"))
    );
}

fn probe_link(out: &mut String, id: &str) {
    let _ = write!(
        out,
        r#"<a href="/probes/{}">{}</a>"#,
        encode_segment(id),
        esc(id)
    );
}

/// The overview: one table per layer, then the latest events.
pub fn overview(page: &Overview<'_>) -> String {
    let mut out = String::with_capacity(64 * 1024 + page.rows.len() * 700);
    let mut counts = [0usize; 4];
    for row in page.rows {
        let index = match row.status.as_ref().and_then(|s| s.verdict()) {
            Some(Verdict::InSync) => 0,
            Some(Verdict::Drifted) => 1,
            Some(Verdict::Error) => 2,
            None => 3,
        };
        counts[index] += 1;
    }
    page_start(
        &mut out,
        "driftwatch: status",
        page.refresh_seconds,
        Some(counts),
    );
    if page.rows.is_empty() {
        out.push_str(r#"<p class="muted">No probes are configured.</p>"#);
    }
    let mut layers: Vec<&str> = page.rows.iter().map(|r| r.layer.as_str()).collect();
    layers.sort_unstable();
    layers.dedup();
    for layer in layers {
        let _ = write!(
            out,
            r#"<h2 id="layer-{}">{}</h2><table class="probes"><thead><tr><th>Probe</th><th>Status</th><th>Drifted resources</th><th>Drift since</th><th>Last check</th><th>Commit</th><th>Message</th></tr></thead><tbody>"#,
            esc(layer),
            esc(layer)
        );
        for row in page.rows.iter().filter(|r| r.layer == layer) {
            overview_row(&mut out, page.now, row);
        }
        out.push_str("</tbody></table>");
    }
    if let Some(events) = page.events {
        out.push_str("<h2>Recent events</h2>");
        events_table(&mut out, page.now, events, true);
        out.push_str(r#"<p><a href="/events">All events</a></p>"#);
    }
    page_end(&mut out, page.now, page.refresh_seconds);
    out
}

fn overview_row(out: &mut String, now: DateTime<Utc>, row: &OverviewRow) {
    let status = row.status.as_ref();
    let report = status.and_then(|s| s.last_report.as_ref());
    let verdict = report.map(|r| r.verdict);
    let _ = write!(
        out,
        r#"<tr data-probe="{}" data-status="{}"><td>"#,
        esc(&row.id),
        verdict_class(verdict).0
    );
    probe_link(out, &row.id);
    out.push_str("</td><td>");
    badge(out, verdict);
    out.push_str("</td><td class=\"res\">");
    match (status, report) {
        (Some(s), Some(r)) if s.drifted => {
            // After an error the report has no changes; the count is kept.
            let subjects: Vec<&str> = if r.verdict == Verdict::Drifted {
                r.changes
                    .iter()
                    .take(3)
                    .map(|c| c.subject.as_str())
                    .collect()
            } else {
                Vec::new()
            };
            let _ = write!(out, "<b>{}</b>", s.drifted_resources);
            if !subjects.is_empty() {
                let more = s.drifted_resources.saturating_sub(subjects.len());
                let list = subjects.join(", ");
                let _ = write!(
                    out,
                    r#" <span class="mono" title="{}">{}{}</span>"#,
                    esc(&list),
                    esc(&list),
                    if more > 0 {
                        format!(", +{more}")
                    } else {
                        String::new()
                    }
                );
            }
        }
        (Some(_), Some(_)) => out.push_str(r#"<span class="muted">0</span>"#),
        _ => out.push_str(r#"<span class="muted">–</span>"#),
    }
    out.push_str("</td><td>");
    match status.and_then(|s| s.drifted_since) {
        Some(since) => when(out, now, since),
        None => out.push_str(r#"<span class="muted">–</span>"#),
    }
    out.push_str("</td><td>");
    match report {
        Some(r) => when(out, now, r.started_at),
        None => out.push_str(r#"<span class="muted">not yet</span>"#),
    }
    out.push_str("</td><td class=\"mono\">");
    if let Some(r) = report {
        let _ = write!(
            out,
            r#"<span title="{}">{}</span>"#,
            esc(&r.commit),
            esc(short_commit(&r.commit))
        );
    }
    out.push_str("</td><td class=\"msg\">");
    if let Some(r) = report {
        let summary = r.summary();
        let _ = write!(
            out,
            r#"<span title="{}">{}</span>"#,
            esc(&summary),
            esc(&summary)
        );
    }
    out.push_str("</td></tr>");
}

fn events_table(out: &mut String, now: DateTime<Utc>, events: &[EventRow], with_probe: bool) {
    if events.is_empty() {
        out.push_str(r#"<p class="muted">No events yet.</p>"#);
        return;
    }
    out.push_str(r#"<table class="events"><thead><tr><th>When</th><th>Event</th>"#);
    if with_probe {
        out.push_str("<th>Probe</th>");
    }
    out.push_str("<th>Commit</th><th>Detail</th></tr></thead><tbody>");
    for event in events {
        let _ = write!(out, r#"<tr data-event="{}"><td>"#, event.kind.as_str());
        when(out, now, event.at);
        let _ = write!(
            out,
            r#"</td><td class="ev-{}">{}</td>"#,
            event.kind.as_str(),
            esc(event.kind.title())
        );
        if with_probe {
            out.push_str("<td>");
            probe_link(out, &event.probe);
            out.push_str("</td>");
        }
        let _ = write!(
            out,
            r#"<td class="mono" title="{}">{}</td><td class="msg" title="{}">{}</td></tr>"#,
            esc(&event.commit),
            esc(short_commit(&event.commit)),
            esc(&event.message),
            esc(&event.message)
        );
    }
    out.push_str("</tbody></table>");
}

/// The events feed page.
pub fn events_page(
    now: DateTime<Utc>,
    refresh_seconds: u64,
    events: Option<&[EventRow]>,
    next_before: Option<i64>,
) -> String {
    let mut out = String::with_capacity(32 * 1024);
    page_start(&mut out, "driftwatch: events", refresh_seconds, None);
    out.push_str("<h1>Events</h1>");
    match events {
        Some(events) => events_table(&mut out, now, events, true),
        None => out.push_str(r#"<p class="muted">History is not available.</p>"#),
    }
    if let Some(before) = next_before {
        let _ = write!(
            out,
            r#"<p><a href="/events?before={before}">Older events</a></p>"#
        );
    }
    page_end(&mut out, now, refresh_seconds);
    out
}

fn field(out: &mut String, label: &str, value: impl FnOnce(&mut String)) {
    let _ = write!(out, "<div><span>{}</span>", esc(label));
    value(out);
    out.push_str("</div>");
}

fn text(value: &str) -> impl FnOnce(&mut String) + '_ {
    move |out: &mut String| {
        let _ = write!(out, "{}", esc(value));
    }
}

fn diff_block(out: &mut String, diff: &str) {
    out.push_str("<pre>");
    for line in diff.lines() {
        let class = match line.trim_start().chars().next() {
            Some('+') => Some("add"),
            Some('-') => Some("del"),
            Some('~') => Some("chg"),
            _ => None,
        };
        match class {
            Some(class) => {
                let _ = writeln!(out, r#"<span class="{class}">{}</span>"#, esc(line));
            }
            None => {
                let _ = writeln!(out, "{}", esc(line));
            }
        }
    }
    out.push_str("</pre>");
}

fn change_block(out: &mut String, change: &ResourceChange) {
    let _ = write!(
        out,
        r#"<div class="change"><div class="head"><b class="mono subject">{}</b> · <span class="action">{}</span>"#,
        esc(&change.subject),
        esc(&change.action)
    );
    if let Some(origin) = &change.origin {
        let _ = write!(
            out,
            r#" <span class="muted">(origin: {})</span>"#,
            esc(origin)
        );
    }
    out.push_str("</div>");
    if !change.diff.is_empty() {
        diff_block(out, &change.diff);
    }
    out.push_str("</div>");
}

/// One probe instance: its last report with changes and diffs, drift
/// episodes, recent runs and events.
pub fn probe_page(page: &ProbePage<'_>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let report = page.status.and_then(|s| s.last_report.as_ref());
    page_start(
        &mut out,
        &format!("driftwatch: {}", page.id),
        page.refresh_seconds,
        None,
    );
    let _ = write!(out, r#"<h1><span id="probe-id">{}</span> "#, esc(page.id));
    badge(&mut out, report.map(|r| r.verdict));
    out.push_str("</h1>");
    if let Some(r) = report {
        let _ = write!(out, r#"<p id="summary">{}</p>"#, esc(&r.summary()));
    }

    out.push_str(r#"<div class="grid">"#);
    field(&mut out, "Layer", text(page.layer));
    if let Some(repo) = page.repo {
        field(&mut out, "Repository", text(repo));
    }
    if let Some(path) = page.path {
        field(&mut out, "Path", |out| {
            let _ = write!(
                out,
                r#"<span class="mono">{}</span>"#,
                esc(if path.is_empty() { "." } else { path })
            );
        });
    }
    if let Some(schedule) = page.schedule {
        field(&mut out, "Schedule", text(schedule));
    }
    if let Some(next) = page.status.and_then(|s| s.next_run) {
        field(&mut out, "Next run", |out| {
            let secs = (next - page.now).num_seconds().max(0) as u64;
            let _ = write!(
                out,
                r#"<time datetime="{}">{}</time> (in {})"#,
                esc(&next.to_rfc3339()),
                esc(&timestamp(next)),
                esc(&span(secs))
            );
        });
    }
    if let Some(r) = report {
        field(&mut out, "Last check", |out| {
            when(out, page.now, r.started_at)
        });
        field(
            &mut out,
            "Duration",
            text(&format!("{:.1}s", r.duration.as_secs_f64())),
        );
        field(&mut out, "Trigger", text(&r.trigger));
        field(&mut out, "Commit", |out| {
            let _ = write!(
                out,
                r#"<span class="mono" title="{}">{}</span>"#,
                esc(&r.commit),
                esc(short_commit(&r.commit))
            );
        });
    }
    if let Some(status) = page.status {
        if let Some(since) = status.drifted_since {
            field(&mut out, "Drifted since", |out| {
                when(out, page.now, since);
                if let Some(commit) = &status.drifted_since_commit {
                    let _ = write!(
                        out,
                        r#" <span class="mono muted">at {}</span>"#,
                        esc(short_commit(commit))
                    );
                }
            });
        }
        if let Some(success) = status.last_success {
            field(&mut out, "Last verdict reached", |out| {
                when(out, page.now, success)
            });
        }
    }
    out.push_str("</div>");

    match report {
        None => out.push_str(r#"<p class="muted">This probe has not run yet.</p>"#),
        Some(r) => {
            if let Some(error) = &r.error {
                let _ = write!(
                    out,
                    r#"<div class="error-box"><b>Error ({})</b>: <span class="error-message">{}</span>"#,
                    esc(error.reason.as_str()),
                    esc(&error.message)
                );
                if !error.stderr_tail.is_empty() {
                    let _ = write!(out, "<pre>{}</pre>", esc(&error.stderr_tail));
                }
                out.push_str("</div>");
            }
            if !r.warnings.is_empty() {
                out.push_str("<h2>Warnings</h2><ul>");
                for warning in &r.warnings {
                    let _ = write!(out, "<li>{}</li>", esc(warning));
                }
                out.push_str("</ul>");
            }
            let title = if r.verdict == Verdict::Error {
                "Differences found before the error"
            } else {
                "Resource changes"
            };
            if !r.changes.is_empty() || r.verdict != Verdict::Error {
                let _ = write!(
                    out,
                    r#"<h2>{} ({})</h2><div id="changes">"#,
                    title,
                    r.changes.len()
                );
                if r.changes.is_empty() {
                    out.push_str(r#"<p class="muted">None: git and reality agree.</p>"#);
                }
                for change in &r.changes {
                    change_block(&mut out, change);
                }
                out.push_str("</div>");
            }
        }
    }

    out.push_str("<h2>Drift episodes</h2>");
    match page.episodes {
        None => out.push_str(r#"<p class="muted">History is not available.</p>"#),
        Some([]) => out.push_str(r#"<p class="muted">No drift recorded.</p>"#),
        Some(episodes) => {
            out.push_str(r#"<table class="episodes"><thead><tr><th>Started</th><th>Ended</th><th>Lasted</th><th>From commit</th><th>To commit</th><th class="num">Runs</th><th>Resources</th></tr></thead><tbody>"#);
            for episode in episodes {
                out.push_str("<tr><td>");
                when(&mut out, page.now, episode.started_at);
                out.push_str("</td><td>");
                match episode.ended_at {
                    Some(ended) => when(&mut out, page.now, ended),
                    None => out.push_str(r#"<span class="badge s-drifted">OPEN</span>"#),
                }
                let lasted = (episode.ended_at.unwrap_or(page.now) - episode.started_at)
                    .num_seconds()
                    .max(0) as u64;
                let subjects: Vec<&str> = episode
                    .resources
                    .iter()
                    .map(|r| r.subject.as_str())
                    .collect();
                let list = subjects.join(", ");
                let _ = write!(
                    out,
                    r#"</td><td>{}</td><td class="mono">{}</td><td class="mono">{}</td><td class="num">{}</td><td class="res mono" title="{}">{}</td></tr>"#,
                    span(lasted),
                    esc(short_commit(&episode.started_commit)),
                    esc(episode
                        .ended_commit
                        .as_deref()
                        .map(short_commit)
                        .unwrap_or("")),
                    episode.drifted_runs,
                    esc(&list),
                    esc(&list)
                );
            }
            out.push_str("</tbody></table>");
        }
    }

    out.push_str("<h2>Recent runs</h2>");
    match page.runs {
        None => out.push_str(r#"<p class="muted">History is not available.</p>"#),
        Some([]) => out.push_str(r#"<p class="muted">No runs recorded.</p>"#),
        Some(runs) => {
            out.push_str(r#"<table class="runs"><thead><tr><th>Started</th><th>Verdict</th><th class="num">Changes</th><th class="num">Duration</th><th>Trigger</th><th>Commit</th><th>Message</th></tr></thead><tbody>"#);
            for run in runs {
                out.push_str("<tr><td>");
                when(&mut out, page.now, run.started_at);
                out.push_str("</td><td>");
                badge(&mut out, Some(run.verdict));
                let message = match (&run.error_reason, &run.message) {
                    (Some(reason), Some(message)) => format!("{reason}: {message}"),
                    (Some(reason), None) => reason.clone(),
                    (None, Some(message)) => message.clone(),
                    (None, None) => String::new(),
                };
                let _ = write!(
                    out,
                    r#"</td><td class="num">{}</td><td class="num">{:.1}s</td><td>{}</td><td class="mono" title="{}">{}</td><td class="msg" title="{}">{}</td></tr>"#,
                    run.changes,
                    run.duration_seconds,
                    esc(&run.trigger),
                    esc(&run.commit),
                    esc(short_commit(&run.commit)),
                    esc(&message),
                    esc(&message)
                );
            }
            out.push_str("</tbody></table>");
            let _ = write!(
                out,
                r#"<p><a href="/api/v1/probes/{}/runs">All runs (JSON)</a></p>"#,
                encode_segment(page.id)
            );
        }
    }

    out.push_str("<h2>Events</h2>");
    match page.events {
        None => out.push_str(r#"<p class="muted">History is not available.</p>"#),
        Some(events) => events_table(&mut out, page.now, events, false),
    }
    page_end(&mut out, page.now, page.refresh_seconds);
    out
}

/// A page listing the instances of a probe with several roots.
pub fn instances_page(
    now: DateTime<Utc>,
    refresh_seconds: u64,
    name: &str,
    rows: &[OverviewRow],
) -> String {
    let mut out = String::new();
    page_start(
        &mut out,
        &format!("driftwatch: {name}"),
        refresh_seconds,
        None,
    );
    let _ = write!(out, "<h1>{}</h1>", esc(name));
    out.push_str(r#"<table class="probes"><thead><tr><th>Probe</th><th>Status</th><th>Drifted resources</th><th>Drift since</th><th>Last check</th><th>Commit</th><th>Message</th></tr></thead><tbody>"#);
    for row in rows {
        overview_row(&mut out, now, row);
    }
    out.push_str("</tbody></table>");
    page_end(&mut out, now, refresh_seconds);
    out
}

/// A plain error page (404 and friends).
pub fn message_page(title: &str, message: &str) -> String {
    let mut out = String::new();
    page_start(&mut out, title, 0, None);
    let _ = write!(out, "<h1>{}</h1><p>{}</p>", esc(title), esc(message));
    out.push_str(r#"<p><a href="/">Back to the overview</a></p></main></body></html>"#);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::EventKind;
    use crate::probe::outcome::{ErrorReason, ProbeError};
    use crate::probe::{Outcome, RunReport};
    use std::collections::BTreeMap;
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
            exit_code: None,
            changes: vec![],
            warnings: vec![XSS.into()],
            details: serde_json::Value::Null,
            error: None,
            message: String::new(),
            labels: BTreeMap::new(),
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
        let mut status = ProbeStatus::new(&report.probe, &report.name, &report.root, "terraform");
        status.apply(&report);
        status
    }

    fn assert_no_raw_markup(html: &str) {
        assert!(!html.contains("<script"), "raw script tag in:\n{html}");
        assert!(!html.contains("\"prod\""), "raw quote in attribute");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href='x'>"&"</a>"#).to_string(),
            "&lt;a href=&#39;x&#39;&gt;&quot;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(esc("plain é").to_string(), "plain é");
        assert_eq!(encode_segment("net:envs/prod"), "net%3Aenvs%2Fprod");
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
            let html = overview(&Overview {
                now,
                refresh_seconds: 30,
                rows: &rows,
                events: Some(&events),
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
    fn relative_times_read_well() {
        assert_eq!(span(42), "42s");
        assert_eq!(span(303), "5m 3s");
        assert_eq!(span(3 * 3600 + 12 * 60), "3h 12m");
        assert_eq!(span(4 * 86_400 + 2 * 3600), "4d 2h");
    }
}
