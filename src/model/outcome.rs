//! What a probe run produces: a three-valued verdict plus the resources that
//! differ. Probes return `Outcome` or `ProbeError`; the scheduler wraps either
//! into a `RunReport`, the one value that metrics, state and HTTP read.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Largest diff kept per resource change; larger diffs are cut with a marker.
pub const MAX_DIFF_BYTES: usize = 8 * 1024;
/// Largest stderr tail kept in an error report.
pub const MAX_STDERR_TAIL_BYTES: usize = 4 * 1024;
/// Most resource changes one report keeps by default (`[defaults]
/// max_changes_per_report`); `total_changes` counts them all.
pub const MAX_CHANGES_PER_REPORT: usize = 1_000;
/// Most bytes of text one report keeps by default (`[defaults]
/// max_report_bytes`, 1 MiB).
pub const MAX_REPORT_BYTES: usize = 1024 * 1024;
/// Longest subject, action, origin or warning kept.
const MAX_NAME_BYTES: usize = 1024;
/// Most warnings one report keeps.
const MAX_WARNINGS: usize = 100;

/// The three verdicts, numbered like `terraform plan -detailed-exitcode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    #[default]
    InSync,
    Error,
    Drifted,
}

impl Verdict {
    /// 0 in sync, 1 error, 2 drifted.
    pub fn code(self) -> i64 {
        match self {
            Verdict::InSync => 0,
            Verdict::Error => 1,
            Verdict::Drifted => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::InSync => "in_sync",
            Verdict::Error => "error",
            Verdict::Drifted => "drifted",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Verdict::InSync => "IN SYNC",
            Verdict::Error => "ERROR",
            Verdict::Drifted => "DRIFTED",
        }
    }
}

/// One resource that differs between git and reality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceChange {
    /// Stable identifier, e.g. `aws_instance.web`, `Deployment/prod/web`, `host1: install nginx`.
    pub subject: String,
    /// Layer-specific action: create, update, delete, replace, changed, missing, extra, …
    pub action: String,
    /// Human-readable, already redacted diff; capped at `MAX_DIFF_BYTES`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub diff: String,
    /// Where the difference comes from when a layer can tell, e.g. `config`
    /// (git changed, not applied) or `outside` (reality changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// Where git declares the resource, relative to the repository root:
    /// `path` or `path:line` (`terraform/app/main.tf:3`, `k8s/shop/deploy.yaml`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_at: Option<String>,
    /// `declared_at` as a link into the repository's web UI at the run's
    /// commit; set by the scheduler when the repo has web links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The fields that differ, one per diff line, with who last wrote the
    /// live value when the layer can tell (Kubernetes: from managedFields).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    /// `fp1:<16 hex>` of this change as it is now (subject, action, fields
    /// or diff, hidden values keyed): what an acknowledgement binds to.
    /// Set by the layer when it knows better, else from the diff when the
    /// report is built ([`crate::model::fingerprint`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
    /// The acks that acknowledge this change, filled in where a report is
    /// shown (API, page) from the acks at that moment; never by a probe.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acknowledged_by: Vec<String>,
}

/// One drifted field of a resource, and who wrote its live value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field as the diff line names it, e.g. `spec.replicas` or
    /// `spec.ports[port=53,protocol=UDP]` (key names only, never values).
    pub field: String,
    /// The field manager that owns the live value (`kubectl-scale`,
    /// `kube-controller-manager`, …); absent when no managedFields entry
    /// covers the field (nobody is guessed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<String>,
    /// That manager's operation: `Update` or `Apply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// When that manager last wrote the object (RFC 3339, UTC, from the
    /// managedFields entry; the API records one time per manager, not per field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// `fp1:<16 hex>` of the field's path, wanted and live value (hidden
    /// values keyed); empty when the layer gives none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
}

impl ResourceChange {
    pub fn new(subject: impl Into<String>, action: impl Into<String>) -> Self {
        ResourceChange {
            subject: subject.into(),
            action: action.into(),
            diff: String::new(),
            origin: None,
            declared_at: None,
            url: None,
            fields: Vec::new(),
            fingerprint: String::new(),
            acknowledged_by: Vec::new(),
        }
    }

    /// Sets the fingerprint from the fields (when every one has its own) or
    /// else the diff, unless the layer already set it.
    pub fn fill_fingerprint(&mut self) {
        if !self.fingerprint.is_empty() {
            return;
        }
        let fields: Vec<&str> = self.fields.iter().map(|f| f.fingerprint.as_str()).collect();
        let fields = if fields.iter().all(|f| !f.is_empty()) {
            fields
        } else {
            Vec::new()
        };
        self.fingerprint =
            super::fingerprint::change(&self.subject, &self.action, &fields, &self.diff, &[]);
    }

    pub fn with_fields(mut self, fields: Vec<FieldChange>) -> Self {
        self.fields = fields;
        self
    }

    pub fn with_diff(mut self, diff: impl Into<String>) -> Self {
        self.diff = cap_text(diff.into(), MAX_DIFF_BYTES);
        self
    }

    /// Where git declares it: `path` or `path:line`, relative to the repository root.
    pub fn with_declared_at(mut self, declared_at: impl Into<String>) -> Self {
        self.declared_at = Some(declared_at.into());
        self
    }

    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }
}

/// A run that reached a verdict (in sync or drifted).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub changes: Vec<ResourceChange>,
    /// The tool's exit code, when a tool was run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Things an operator should know that are not drift (e.g. tasks that run for real in check mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Layer-specific structured detail (per-host counts, output changes, …). Must be redacted.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
    /// Set by a probe that decides drift on its own (e.g. exit code 2 with no parsed changes).
    #[serde(default)]
    pub drifted: bool,
    /// One line for a person, e.g. "The definition is 6 nodes but … is running with 5". Redacted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl Outcome {
    pub fn in_sync() -> Self {
        Outcome::default()
    }

    pub fn drifted(changes: Vec<ResourceChange>) -> Self {
        Outcome {
            changes,
            drifted: true,
            ..Outcome::default()
        }
    }

    pub fn verdict(&self) -> Verdict {
        if self.drifted || !self.changes.is_empty() {
            Verdict::Drifted
        } else {
            Verdict::InSync
        }
    }
}

/// Why a run failed; each has a fixed `as_str()` safe to use as a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ErrorReason {
    /// The run exceeded its timeout and was killed.
    Timeout,
    /// Shutdown or a newer trigger cancelled the run.
    Cancelled,
    /// The tool could not be started (missing binary, permissions).
    Spawn,
    /// The tool exited with a code that is neither in sync nor drift.
    ExitCode,
    /// The tool's output could not be understood.
    Parse,
    /// The probe's input in the repo is invalid (syntax error, malformed manifest).
    Input,
    /// The checkout is missing what the probe needs (path gone, no roots).
    Checkout,
    /// A remote API refused or failed (Kubernetes 403/5xx, …).
    Api,
    /// A target host could not be reached.
    Unreachable,
    /// Refused by policy before running (e.g. strict check mode).
    Refused,
    /// A bug or an unexpected condition inside driftwatch.
    Internal,
}

impl ErrorReason {
    pub const ALL: [ErrorReason; 11] = [
        ErrorReason::Timeout,
        ErrorReason::Cancelled,
        ErrorReason::Spawn,
        ErrorReason::ExitCode,
        ErrorReason::Parse,
        ErrorReason::Input,
        ErrorReason::Checkout,
        ErrorReason::Api,
        ErrorReason::Unreachable,
        ErrorReason::Refused,
        ErrorReason::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Timeout => "timeout",
            ErrorReason::Cancelled => "cancelled",
            ErrorReason::Spawn => "spawn",
            ErrorReason::ExitCode => "exit_code",
            ErrorReason::Parse => "parse",
            ErrorReason::Input => "input",
            ErrorReason::Checkout => "checkout",
            ErrorReason::Api => "api",
            ErrorReason::Unreachable => "unreachable",
            ErrorReason::Refused => "refused",
            ErrorReason::Internal => "internal",
        }
    }
}

impl ErrorReason {
    /// What to do next about an error of this reason, in one line: shown
    /// with every error verdict (API, page), whatever the message says.
    pub fn next_step(self) -> &'static str {
        match self {
            ErrorReason::Timeout => "Raise the probe's `timeout`, or find what keeps the tool waiting (a lock, a hung provider, the network) in its stderr tail.",
            ErrorReason::Cancelled => "Nothing to fix: a shutdown or a newer run stopped this one; the next run gives a verdict.",
            ErrorReason::Spawn => "Install the tool or fix its path and permissions (`driftwatch validate` checks them), then run the probe again.",
            ErrorReason::ExitCode => "Read the tool's stderr tail, fix what it reports (credentials, backend, syntax), then run the probe again.",
            ErrorReason::Parse => "Check the tool's version (`driftwatch validate`), or a plugin's output against probes/README.md, then run the probe again.",
            ErrorReason::Input => "Fix the file the message names in the repository and push; the next sync runs the probe again.",
            ErrorReason::Checkout => "Make the repository hold what the probe's config names (path, roots, files) or fix the config; `driftwatch validate --checkout DIR` lists what is missing.",
            ErrorReason::Api => "Check the probe account's credentials and permissions and the API's health; the next run tries again.",
            ErrorReason::Unreachable => "Check that the hosts are up and reachable (network, SSH keys, inventory addresses), then run the probe again.",
            ErrorReason::Refused => "Change what the message names, or relax the policy in the probe's config (e.g. strict_check_mode), then run the probe again.",
            ErrorReason::Internal => "Check the daemon log and the state directory (disk full, not writable); if neither explains it, report a driftwatch bug.",
        }
    }
}

/// A run that could not reach a verdict. Never a reason for the daemon to exit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ProbeError {
    pub reason: ErrorReason,
    /// One or a few lines for a person; already redacted.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The last lines of the tool's stderr, capped and redacted.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr_tail: String,
    /// Differences found before the error, reported as detail (never as drift).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partial_changes: Vec<ResourceChange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ProbeError {
    pub fn new(reason: ErrorReason, message: impl Into<String>) -> Self {
        ProbeError {
            reason,
            message: message.into(),
            exit_code: None,
            stderr_tail: String::new(),
            partial_changes: Vec::new(),
            warnings: Vec::new(),
        }
    }

    pub fn with_exit_code(mut self, code: Option<i32>) -> Self {
        self.exit_code = code;
        self
    }

    pub fn with_stderr_tail(mut self, tail: impl Into<String>) -> Self {
        self.stderr_tail = cap_tail(tail.into(), MAX_STDERR_TAIL_BYTES);
        self
    }

    pub fn with_partial_changes(mut self, changes: Vec<ResourceChange>) -> Self {
        self.partial_changes = changes;
        self
    }

    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }
}

/// The error part of a `RunReport`. Built only by [`RunError::new`] (also
/// when read back from state or history), so every error verdict has a
/// reason, a message whose first line says something, and a next step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RunErrorRecord")]
pub struct RunError {
    pub reason: ErrorReason,
    pub message: String,
    /// What to do next, one line ([`ErrorReason::next_step`]).
    pub next_step: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stderr_tail: String,
}

impl RunError {
    /// A message that is blank (or starts with blank lines) becomes one
    /// whose first line names the reason, so no error shows empty.
    pub fn new(reason: ErrorReason, message: String, stderr_tail: String) -> RunError {
        let message = message
            .trim_start_matches(['\n', '\r'])
            .trim_end()
            .to_string();
        let message = if message.trim().is_empty() {
            format!(
                "the run failed ({}) and the probe gave no message",
                reason.as_str()
            )
        } else {
            message
        };
        RunError {
            reason,
            message,
            next_step: reason.next_step().to_string(),
            stderr_tail,
        }
    }
}

/// A [`RunError`] as stored (older records have no `next_step`).
#[derive(Deserialize)]
struct RunErrorRecord {
    reason: ErrorReason,
    #[serde(default)]
    message: String,
    #[serde(default)]
    stderr_tail: String,
}

impl From<RunErrorRecord> for RunError {
    fn from(record: RunErrorRecord) -> RunError {
        RunError::new(record.reason, record.message, record.stderr_tail)
    }
}

/// Everything known about one finished run of one probe instance.
/// (`Default` exists for tests: build with `..RunReport::default()`.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Instance id: the probe name, or `name:root` for layers with several roots.
    pub probe: String,
    /// The configured probe name (shared by all roots of one probe).
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub root: String,
    pub layer: String,
    pub run_id: u64,
    /// Why the run happened: startup, schedule, change, manual.
    pub trigger: String,
    pub repo: String,
    pub commit: String,
    pub started_at: DateTime<Utc>,
    #[serde(with = "duration_seconds")]
    pub duration: Duration,
    pub verdict: Verdict,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The changes kept, at most [`ReportLimits`] worth of them.
    pub changes: Vec<ResourceChange>,
    /// How many changes the probe reported, kept or not.
    #[serde(default)]
    pub total_changes: usize,
    /// True when changes or warnings were cut at [`ReportLimits`].
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RunError>,
    /// The probe's one-line message, if it gave one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The commit in the repository's web UI, when the repo has web links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_url: Option<String>,
}

/// What one report may hold, so that a huge plan or cluster cannot blow up
/// memory, `state.json`, the history or a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportLimits {
    /// Changes kept (subjects, actions, diffs).
    pub max_changes: usize,
    /// Bytes of text kept over changes, warnings, message and error.
    pub max_bytes: usize,
}

impl Default for ReportLimits {
    fn default() -> Self {
        ReportLimits {
            max_changes: MAX_CHANGES_PER_REPORT,
            max_bytes: MAX_REPORT_BYTES,
        }
    }
}

impl RunReport {
    /// The instance this run covered.
    pub fn instance(&self) -> crate::model::instance::InstanceId {
        crate::model::instance::InstanceId::new(&self.name, &self.root)
    }

    /// Cuts the report down to `limits`: long texts get a marker, changes
    /// beyond the count or byte budget are dropped (in the order the probe
    /// gave them), and `truncated` says so. `total_changes` keeps the full
    /// count, and the verdict is never changed.
    pub fn cap(&mut self, limits: ReportLimits) {
        self.total_changes = self.total_changes.max(self.changes.len());
        let mut budget = limits.max_bytes;
        let mut take = |bytes: usize| -> bool {
            let fits = bytes <= budget;
            if fits {
                budget -= bytes;
            }
            fits
        };
        // What went wrong comes first: it is small and says the most.
        self.message = cap_text(std::mem::take(&mut self.message), MAX_DIFF_BYTES);
        if let Some(error) = &mut self.error {
            error.message = cap_text(std::mem::take(&mut error.message), MAX_DIFF_BYTES);
            error.stderr_tail = cap_tail(
                std::mem::take(&mut error.stderr_tail),
                MAX_STDERR_TAIL_BYTES,
            );
            take(error.message.len() + error.stderr_tail.len());
        }
        take(self.message.len());
        let warnings = self.warnings.len();
        let mut kept = 0;
        for warning in &mut self.warnings {
            *warning = cap_text(std::mem::take(warning), MAX_NAME_BYTES);
            if kept == MAX_WARNINGS || !take(warning.len()) {
                break;
            }
            kept += 1;
        }
        self.warnings.truncate(kept);
        let mut kept = 0;
        for change in &mut self.changes {
            change.subject = cap_text(std::mem::take(&mut change.subject), MAX_NAME_BYTES);
            change.action = cap_text(std::mem::take(&mut change.action), MAX_NAME_BYTES);
            change.diff = cap_text(std::mem::take(&mut change.diff), MAX_DIFF_BYTES);
            if let Some(origin) = change.origin.take() {
                change.origin = Some(cap_text(origin, MAX_NAME_BYTES));
            }
            let bytes = change.subject.len()
                + change.action.len()
                + change.diff.len()
                + change.origin.as_ref().map_or(0, String::len);
            if kept == limits.max_changes || !take(bytes) {
                break;
            }
            kept += 1;
        }
        self.changes.truncate(kept);
        if self.changes.len() < self.total_changes || self.warnings.len() < warnings {
            self.truncated = true;
        }
        if self.warnings.len() < warnings {
            self.warnings.push(format!(
                "{} more warning(s) cut",
                warnings - self.warnings.len()
            ));
        }
    }

    /// Changes the probe reported, including those cut from the report.
    pub fn change_count(&self) -> usize {
        self.total_changes.max(self.changes.len())
    }

    /// Turns the commit and every declaration into links (`[[repo]] web_url`).
    pub fn link(&mut self, web: &crate::weblinks::WebLinks) {
        if self.commit.is_empty() {
            return;
        }
        self.commit_url = Some(web.commit_url(&self.commit));
        for change in &mut self.changes {
            if let Some(declared_at) = &change.declared_at {
                change.url = Some(web.declaration_url(&self.commit, declared_at));
            }
        }
    }

    /// Fills verdict, changes and error from a probe's result, cut to the
    /// default [`ReportLimits`].
    pub fn apply_result(&mut self, result: Result<Outcome, ProbeError>) {
        self.apply_result_within(result, ReportLimits::default());
    }

    /// Fills verdict, changes and error from a probe's result, cut to `limits`.
    pub fn apply_result_within(
        &mut self,
        result: Result<Outcome, ProbeError>,
        limits: ReportLimits,
    ) {
        match result {
            Ok(mut outcome) => {
                self.verdict = outcome.verdict();
                self.exit_code = outcome.exit_code;
                outcome
                    .changes
                    .iter_mut()
                    .for_each(ResourceChange::fill_fingerprint);
                self.changes = outcome.changes;
                self.warnings = outcome.warnings;
                self.details = outcome.details;
                self.message = outcome.message;
                self.error = None;
                self.total_changes = self.changes.len();
            }
            Err(error) => {
                self.verdict = Verdict::Error;
                self.exit_code = error.exit_code;
                self.changes = error.partial_changes;
                self.warnings = error.warnings;
                self.error = Some(RunError::new(
                    error.reason,
                    error.message,
                    error.stderr_tail,
                ));
                self.total_changes = self.changes.len();
            }
        }
        self.truncated = false;
        self.cap(limits);
    }

    /// A one-line summary for logs and the status page.
    pub fn summary(&self) -> String {
        match (&self.verdict, &self.error) {
            (Verdict::Error, Some(e)) => {
                format!("error ({}): {}", e.reason.as_str(), first_line(&e.message))
            }
            (Verdict::Drifted, _) if !self.message.is_empty() => {
                format!("drifted: {}", first_line(&self.message))
            }
            (Verdict::Drifted, _) if self.changes.is_empty() => "drifted".to_string(),
            (Verdict::Drifted, _) => {
                format!("drifted: {} resource(s) differ", self.change_count())
            }
            _ => "in sync".to_string(),
        }
    }
}

impl RunReport {
    /// The summary without its verdict word, for a column beside the
    /// verdict badge: `exit_code: …`, the probe's message, `3 resource(s)
    /// differ`, or "" when there is nothing to add.
    pub fn detail(&self) -> String {
        match (&self.verdict, &self.error) {
            (Verdict::Error, Some(e)) => {
                format!("{}: {}", e.reason.as_str(), first_line(&e.message))
            }
            _ if !self.message.is_empty() => first_line(&self.message).to_string(),
            (Verdict::Drifted, _) if !self.changes.is_empty() => {
                format!("{} resource(s) differ", self.changes.len())
            }
            _ => String::new(),
        }
    }
}

/// The first line that says something (a message may start with blank lines).
fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("")
}

/// Keeps the first `max` bytes of `text`, cut on a char boundary, with a marker.
pub fn cap_text(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}\n… ({} more bytes cut)", &text[..end], text.len() - end)
}

/// Keeps the last `max` bytes of `text`, cut on a char boundary.
pub fn cap_tail(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

mod duration_seconds {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Ok(Duration::from_secs_f64(secs.max(0.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_codes_match_terraform_detailed_exitcode() {
        assert_eq!(Verdict::InSync.code(), 0);
        assert_eq!(Verdict::Error.code(), 1);
        assert_eq!(Verdict::Drifted.code(), 2);
    }

    #[test]
    fn outcome_with_changes_is_drift() {
        assert_eq!(Outcome::in_sync().verdict(), Verdict::InSync);
        let o = Outcome::drifted(vec![ResourceChange::new("a", "update")]);
        assert_eq!(o.verdict(), Verdict::Drifted);
        let flagged = Outcome {
            drifted: true,
            ..Outcome::default()
        };
        assert_eq!(flagged.verdict(), Verdict::Drifted);
    }

    fn drifted_report(changes: usize, diff_bytes: usize) -> RunReport {
        let mut report = RunReport::default();
        report.apply_result(Ok(Outcome::drifted(
            (0..changes)
                .map(|i| {
                    ResourceChange::new(format!("r/{i}"), "update")
                        .with_diff("x".repeat(diff_bytes))
                })
                .collect(),
        )));
        report
    }

    #[test]
    fn reports_are_capped_by_count_and_bytes() {
        // (changes, diff bytes each, limits) -> (kept, truncated)
        let limits = |max_changes, max_bytes| ReportLimits {
            max_changes,
            max_bytes,
        };
        let table = [
            (3, 10, limits(5, 1000), 3, false),
            (5, 10, limits(5, 1000), 5, false),
            (6, 10, limits(5, 1000), 5, true),
            // Each change holds "r/i" + "update" + 10 bytes of diff = 19 bytes.
            (10, 10, limits(100, 19 * 4), 4, true),
            (10, 10, limits(100, 19 * 4 - 1), 3, true),
            (1, 10, limits(100, 5), 0, true),
            (0, 0, limits(0, 0), 0, false),
        ];
        for (changes, diff, limits, kept, truncated) in table {
            let mut report = drifted_report(changes, diff);
            report.cap(limits);
            assert_eq!(report.changes.len(), kept, "{changes} changes, {limits:?}");
            assert_eq!(report.truncated, truncated, "{changes} changes, {limits:?}");
            assert_eq!(report.total_changes, changes);
            assert_eq!(report.change_count(), changes);
            assert_eq!(
                report.verdict,
                Verdict::Drifted,
                "caps never change the verdict"
            );
        }
    }

    #[test]
    fn default_caps_bound_a_huge_plan() {
        let report = drifted_report(50_000, 100);
        assert_eq!(report.changes.len(), MAX_CHANGES_PER_REPORT);
        assert!(report.truncated);
        assert_eq!(report.total_changes, 50_000);
        assert_eq!(report.summary(), "drifted: 50000 resource(s) differ");
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains(r#""total_changes":50000"#) && json.contains(r#""truncated":true"#));
        // Diffs at their own cap: the byte budget stops the list first.
        let report = drifted_report(5_000, MAX_DIFF_BYTES);
        let bytes: usize = report.changes.iter().map(|c| c.diff.len()).sum();
        assert!(bytes <= MAX_REPORT_BYTES, "{bytes}");
        assert!(report.truncated && report.changes.len() < 200);
        let size = serde_json::to_vec(&report).unwrap().len();
        assert!(
            size < MAX_REPORT_BYTES + 64 * 1024,
            "{size} bytes serialized"
        );
    }

    #[test]
    fn long_texts_and_many_warnings_are_cut() {
        let mut report = RunReport::default();
        let mut change = ResourceChange::new("s".repeat(5000), "a".repeat(5000));
        change.diff = "d".repeat(MAX_DIFF_BYTES * 4); // set without with_diff
        report.apply_result(Err(ProbeError::new(
            ErrorReason::Parse,
            "m".repeat(100_000),
        )
        .with_warnings((0..500).map(|i| format!("w{i}")).collect())
        .with_partial_changes(vec![change])));
        assert_eq!(report.verdict, Verdict::Error);
        let change = &report.changes[0];
        assert!(change.subject.len() < MAX_NAME_BYTES + 64);
        assert!(change.action.len() < MAX_NAME_BYTES + 64);
        assert!(change.diff.len() < MAX_DIFF_BYTES + 64);
        assert!(report.error.as_ref().unwrap().message.len() < MAX_DIFF_BYTES + 64);
        assert_eq!(report.warnings.len(), MAX_WARNINGS + 1);
        assert_eq!(report.warnings.last().unwrap(), "400 more warning(s) cut");
        assert!(report.truncated);
        assert_eq!(report.total_changes, 1);
    }

    #[test]
    fn every_error_has_a_reason_a_message_and_a_next_step() {
        // (message as the probe gave it, the first line shown)
        let messages = [
            ("terraform init failed", Some("terraform init failed")),
            ("", None),
            ("  \n\t\n", None),
            (
                "\n\nError: backend locked\nmore",
                Some("Error: backend locked"),
            ),
        ];
        let mut steps = std::collections::HashSet::new();
        for reason in ErrorReason::ALL {
            assert!(
                steps.insert(reason.next_step()),
                "{reason:?} shares a next step"
            );
            assert!(!reason.next_step().contains('\n'), "{reason:?}: one line");
            for (message, first) in messages {
                let mut report = RunReport::default();
                report.apply_result(Err(ProbeError::new(reason, message)));
                let error = report.error.as_ref().unwrap();
                assert_eq!(error.reason, reason);
                assert_eq!(error.next_step, reason.next_step());
                let shown = first_line(&error.message);
                match first {
                    Some(first) => assert_eq!(shown, first, "{reason:?}"),
                    None => assert!(
                        shown.contains(reason.as_str()) && shown.contains("no message"),
                        "{reason:?}: {shown:?}"
                    ),
                }
                assert!(report.summary().ends_with(shown), "{}", report.summary());
                assert!(report.detail().ends_with(shown), "{}", report.detail());
                // Records written before `next_step` existed read back with one.
                let mut stored = serde_json::to_value(&report).unwrap();
                stored["error"].as_object_mut().unwrap().remove("next_step");
                stored["error"]["message"] = serde_json::json!(message);
                let read: RunReport = serde_json::from_value(stored).unwrap();
                assert_eq!(read.error.as_ref(), Some(error), "{reason:?}");
            }
        }
    }

    #[test]
    fn a_small_report_is_left_alone() {
        let mut report = drifted_report(2, 10);
        let before = report.clone();
        report.cap(ReportLimits::default());
        assert_eq!(report, before);
        assert!(!report.truncated);
    }

    #[test]
    fn diffs_are_capped_on_char_boundaries() {
        let long = "é".repeat(MAX_DIFF_BYTES);
        let change = ResourceChange::new("x", "update").with_diff(long);
        assert!(change.diff.len() < MAX_DIFF_BYTES + 64);
        assert!(change.diff.contains("more bytes cut"));
        let tail = cap_tail("ab".repeat(10), 5);
        assert_eq!(tail, "…babab");
    }
}
