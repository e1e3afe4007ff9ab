//! Printing `check` results for people (text) and machines (JSON).

use std::fmt::Write;
use std::sync::Arc;

use crate::probe::{RunReport, Verdict};

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
            let _ = writeln!(out, "  ~ {} {}{}", change.action, change.subject, origin);
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
    let _ = writeln!(
        out,
        "\n{}: {} in sync, {} drifted, {} error",
        verdict.label(),
        count(Verdict::InSync),
        count(Verdict::Drifted),
        count(Verdict::Error)
    );
    out
}

pub fn json(reports: &[Arc<RunReport>]) -> String {
    let verdict = overall(reports);
    let doc = serde_json::json!({
        "verdict": verdict.as_str(),
        "exit_code": verdict.code(),
        "probes": reports,
    });
    serde_json::to_string_pretty(&doc).expect("reports serialize")
}
