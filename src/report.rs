//! Printing `check` results for people (text) and machines (JSON).

use std::fmt::Write;
use std::sync::Arc;

use crate::model::outcome::{RunReport, Verdict};

/// The overall verdict: error wins over drift, drift over in sync.
pub fn overall(reports: &[Arc<RunReport>]) -> Verdict {
    if reports.iter().any(|r| r.verdict == Verdict::Error) {
        Verdict::Error
    } else if reports.iter().any(|r| r.verdict == Verdict::Drifted) {
        Verdict::Drifted
    } else {
        Verdict::InSync
    }
}

/// True for a drifted report every change of which an ack covers (each
/// carries `acknowledged_by`, filled by `check`); drift without listed
/// changes, or with changes cut from the report, is never all acknowledged.
pub fn all_acknowledged(report: &RunReport) -> bool {
    report.verdict == Verdict::Drifted
        && !report.changes.is_empty()
        && report.changes.len() == report.change_count()
        && report.changes.iter().all(|c| !c.acknowledged_by.is_empty())
}

/// `check`'s exit code: 1 on any error, 2 while any drift is not
/// acknowledged, else 0 (in sync, or all drift acknowledged).
pub fn exit_code(reports: &[Arc<RunReport>]) -> u8 {
    match overall(reports) {
        Verdict::Error => 1,
        Verdict::Drifted
            if reports
                .iter()
                .any(|r| r.verdict == Verdict::Drifted && !all_acknowledged(r)) =>
        {
            2
        }
        _ => 0,
    }
}

pub fn text(reports: &[Arc<RunReport>]) -> String {
    let mut out = String::new();
    for report in reports {
        let commit = &report.commit[..report.commit.len().min(12)];
        let _ = writeln!(
            out,
            "{:<8} {} [{}] at {} — {}",
            report.verdict.label(),
            report.probe,
            report.layer,
            if commit.is_empty() { "-" } else { commit },
            report.summary()
        );
        for change in &report.changes {
            let origin = change
                .origin
                .as_deref()
                .map(|o| format!(" ({o})"))
                .unwrap_or_default();
            let acknowledged = if change.acknowledged_by.is_empty() {
                String::new()
            } else {
                format!(" [acknowledged: {}]", change.acknowledged_by.join(", "))
            };
            let _ = writeln!(
                out,
                "  ~ {} {}{}{acknowledged}",
                change.action, change.subject, origin
            );
            for line in change.diff.lines() {
                let _ = writeln!(out, "      {line}");
            }
        }
        for warning in &report.warnings {
            let _ = writeln!(out, "  ! warning: {warning}");
        }
        if let Some(error) = &report.error {
            for line in error.message.lines().skip(1) {
                let _ = writeln!(out, "    {line}");
            }
            for line in error.stderr_tail.lines() {
                let _ = writeln!(out, "    | {line}");
            }
        }
    }
    let verdict = overall(reports);
    let count = |v: Verdict| reports.iter().filter(|r| r.verdict == v).count();
    let acknowledged = reports.iter().filter(|r| all_acknowledged(r)).count();
    let label = match (verdict, exit_code(reports)) {
        (Verdict::Drifted, 0) => "DRIFTED (all drift acknowledged)",
        _ => verdict.label(),
    };
    let _ = write!(
        out,
        "\n{label}: {} in sync, {} drifted, {} error",
        count(Verdict::InSync),
        count(Verdict::Drifted),
        count(Verdict::Error)
    );
    if acknowledged > 0 {
        let _ = write!(out, " ({acknowledged} drifted with all drift acknowledged)");
    }
    out.push('\n');
    out
}

pub fn json(reports: &[Arc<RunReport>]) -> String {
    let verdict = overall(reports);
    let doc = serde_json::json!({
        "verdict": verdict.as_str(),
        "exit_code": exit_code(reports),
        "all_drift_acknowledged": verdict == Verdict::Drifted && exit_code(reports) == 0,
        "probes": reports,
    });
    serde_json::to_string_pretty(&doc).expect("reports serialize")
}
