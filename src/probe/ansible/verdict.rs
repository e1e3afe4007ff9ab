//! Comparing: the callback's document (or its absence) turned into a verdict. Failures make an
//! error, unreachable hosts follow the configured policy, a run that matched no host is an error,
//! changed tasks are drift unless an ignore rule matches them; ansible's own error text, diffs and
//! paths are made stable and relative to the checkout for messages.

use std::path::{Path, PathBuf};

use crate::model::outcome::{ErrorReason, Outcome, ProbeError, ResourceChange};
use crate::probe::ProbeContext;

use super::config::UnreachablePolicy;
use super::ignore::IgnoreRule;
use super::output::{CallbackDocument, DocumentError, PlayMatch};
use super::scan;

/// How many failed tasks an error message names before summarizing the rest.
const MAX_LISTED_FAILURES: usize = 10;

/// What decides a verdict beside the callback's document: the probe's config.
pub(super) struct VerdictRules<'a> {
    pub(super) unreachable: UnreachablePolicy,
    pub(super) limit: Option<&'a str>,
    pub(super) ignore: &'a [IgnoreRule],
    /// Where the playbooks are, to name plays ansible's own errors do not.
    pub(super) workdir: &'a Path,
    pub(super) playbooks: &'a [PathBuf],
    pub(super) tags: &'a [String],
    pub(super) skip_tags: &'a [String],
}

impl VerdictRules<'_> {
    /// ` with --limit "…"`, or nothing.
    fn limit_note(&self) -> String {
        self.limit
            .map(|limit| format!(" with --limit {limit:?}"))
            .unwrap_or_default()
    }

    /// ` with --tags "…" --skip-tags "…"`, or nothing.
    fn tags_note(&self) -> String {
        let mut note = String::new();
        for (option, tags) in [("--tags", self.tags), ("--skip-tags", self.skip_tags)] {
            if !tags.is_empty() {
                let joined = tags.join(",");
                note.push_str(&format!(" {option} {joined:?}"));
            }
        }
        match note.is_empty() {
            true => note,
            false => format!(" with{note}"),
        }
    }
}

/// `play "web" (site.yml): hosts "web"` for messages.
fn describe_play(play: &PlayMatch, clean: &dyn Fn(&str) -> String) -> String {
    let place = if play.playbook.is_empty() {
        String::new()
    } else {
        format!(" ({})", clean(&play.playbook))
    };
    format!("play {:?}{place}: hosts {:?}", play.name, play.pattern)
}

/// Turns the callback's document into a verdict. Failures always make an
/// error; unreachable hosts do unless the policy counts them as drift. A
/// run in which no play matched a host checked nothing: an error, never in
/// sync. Changed tasks that an ignore rule matches are listed as ignored.
pub(super) fn verdict(
    doc: CallbackDocument,
    code: Option<i32>,
    stderr: &str,
    rules: &VerdictRules<'_>,
    clean: &dyn Fn(&str) -> String,
) -> Result<Outcome, ProbeError> {
    let policy = rules.unreachable;
    let failures: u64 = doc.hosts.values().map(|s| s.failures).sum();
    let unreachable: u64 = doc.hosts.values().map(|s| s.unreachable).sum();
    let mut changes = Vec::new();
    let mut changed_tasks = Vec::new();
    let mut ignored = Vec::new();
    let mut drifted_hosts = std::collections::BTreeSet::new();
    let mut failed = Vec::new();
    for result in &doc.results {
        let subject = format!("{}: {}", result.host, result.task);
        let rule = rules
            .ignore
            .iter()
            .find(|rule| rule.matches(&result.host, &result.task));
        match result.status.as_str() {
            "ok" if result.changed && rule.is_some() => {
                ignored.push(serde_json::json!({
                    "subject": subject,
                    "host": result.host,
                    "task": result.task,
                    "module": result.action,
                    "path": clean(&result.path),
                    "rule": rule.map(|r| r.key.as_str()),
                }));
            }
            "ok" if result.changed => {
                drifted_hosts.insert(result.host.as_str());
                let diff = if result.censored {
                    "(no_log: the result is hidden)".to_string()
                } else {
                    clean(&normalize_diff(result.diff.as_deref().unwrap_or("")))
                };
                let action = if result.handler { "handler" } else { "changed" };
                changed_tasks.push(serde_json::json!({
                    "host": result.host,
                    "task": result.task,
                    "module": result.action,
                    "path": clean(&result.path),
                }));
                let mut change = ResourceChange::new(subject, action).with_diff(diff);
                if !result.path.is_empty() {
                    // The task's absolute `file:line`; made repo-relative by the caller.
                    change = change.with_declared_at(result.path.clone());
                }
                changes.push(change);
            }
            "unreachable" if policy == UnreachablePolicy::Drift => {
                drifted_hosts.insert(result.host.as_str());
                let msg = clean(result.msg.as_deref().unwrap_or("host unreachable"));
                changes.push(ResourceChange::new(subject, "unreachable").with_diff(msg));
            }
            "failed" | "unreachable" if !result.ignored => failed.push(result),
            _ => {}
        }
    }
    // Which plays checked something, decided from the hosts each matched.
    let limit = rules.limit_note();
    let play_errors: Vec<String> = doc
        .plays
        .iter()
        .filter_map(|play| {
            let error = play.error.as_ref()?;
            Some(format!("{}: {}", describe_play(play, clean), clean(error)))
        })
        .collect();
    let unmatched: Vec<&PlayMatch> = doc
        .plays
        .iter()
        .filter(|play| play.hosts.is_empty() && play.error.is_none())
        .collect();
    // A play whose hosts the callback could not list counts as checked
    // when ansible ran on any host.
    let checked_nothing = doc.plays.iter().all(|play| play.hosts.is_empty())
        && (doc.hosts.is_empty() || doc.plays.iter().all(|play| play.error.is_none()));
    // Plays that matched hosts but started no task: `--tags`/`--skip-tags`
    // (or an empty play) left them nothing to check.
    let idle: Vec<&PlayMatch> = doc
        .plays
        .iter()
        .filter(|play| !play.hosts.is_empty() && play.tasks == Some(0))
        .collect();
    let ran_no_task = !checked_nothing
        && doc
            .plays
            .iter()
            .filter(|play| !play.hosts.is_empty() || play.error.is_some())
            .all(|play| play.tasks == Some(0));
    let tags = rules.tags_note();
    let mut warnings = play_errors.clone();
    warnings.extend(
        unmatched
            .iter()
            .map(|play| format!("{} matched no host{limit}", describe_play(play, clean))),
    );
    if !ran_no_task {
        warnings.extend(
            idle.iter()
                .map(|play| format!("{} ran no task{tags}", describe_play(play, clean))),
        );
    }
    let counts_error = failures > 0 || (unreachable > 0 && policy == UnreachablePolicy::Error);
    if counts_error {
        let reason = if failures == 0 {
            ErrorReason::Unreachable
        } else {
            ErrorReason::ExitCode
        };
        let mut lines = vec![format!(
            "ansible-playbook: {} failed task(s), {} unreachable host(s)",
            failures, unreachable
        )];
        for result in failed.iter().take(MAX_LISTED_FAILURES) {
            let place = if result.path.is_empty() {
                String::new()
            } else {
                format!(" ({})", clean(&result.path))
            };
            let msg = if result.censored {
                "(no_log: the result is hidden)".to_string()
            } else {
                clean(result.msg.as_deref().unwrap_or("").trim())
            };
            lines.push(format!(
                "  {} {}: {}{}: {}",
                result.status,
                result.host,
                result.task,
                place,
                first_lines(&msg, 3)
            ));
        }
        if failed.len() > MAX_LISTED_FAILURES {
            lines.push(format!(
                "  … and {} more",
                failed.len() - MAX_LISTED_FAILURES
            ));
        }
        return Err(ProbeError::new(reason, lines.join("\n"))
            .with_partial_changes(changes)
            .with_warnings(warnings));
    }
    if checked_nothing && code == Some(0) {
        let message = if doc.plays.is_empty() {
            "checked nothing: the playbooks hold no play".to_string()
        } else {
            let listed: Vec<String> = doc
                .plays
                .iter()
                .map(|play| format!("  {}", describe_play(play, clean)))
                .collect();
            format!(
                "checked nothing: no play matched a host{limit}\n{}",
                listed.join("\n")
            )
        };
        return Err(ProbeError::new(ErrorReason::Input, message).with_warnings(play_errors));
    }
    if ran_no_task && code == Some(0) {
        let listed: Vec<String> = idle
            .iter()
            .map(|play| {
                format!(
                    "  {}: {} host(s), no task",
                    describe_play(play, clean),
                    play.hosts.len()
                )
            })
            .collect();
        return Err(ProbeError::new(
            ErrorReason::Input,
            format!("checked nothing: no task ran{tags}\n{}", listed.join("\n")),
        )
        .with_warnings(warnings));
    }
    if code != Some(0) && !(unreachable > 0 && code == Some(4)) {
        let message = ansible_error(stderr)
            .map(|m| clean(&m))
            .unwrap_or_else(|| match code {
                Some(code) => {
                    format!("ansible-playbook exited with code {code} although no task failed")
                }
                None => "ansible-playbook was killed by a signal".to_string(),
            });
        return Err(ProbeError::new(ErrorReason::ExitCode, message).with_warnings(warnings));
    }
    let mut message = if changes.is_empty() {
        format!("{} host(s) in sync", doc.hosts.len())
    } else {
        format!(
            "{} change(s) on {} of {} host(s)",
            changes.len(),
            drifted_hosts.len(),
            doc.hosts.len()
        )
    };
    if !ignored.is_empty() {
        message.push_str(&format!("; {} ignored change(s)", ignored.len()));
    }
    let details = serde_json::json!({
        "ansible_version": doc.ansible_version,
        "hosts": doc.hosts,
        "plays": doc.plays.iter().map(|play| serde_json::json!({
            "playbook": clean(&play.playbook),
            "name": play.name,
            "pattern": play.pattern,
            "hosts": play.hosts.len(),
            "tasks": play.tasks,
        })).collect::<Vec<_>>(),
        "changed_tasks": changed_tasks,
        "ignored": ignored.len(),
        "ignored_changes": ignored,
    });
    Ok(Outcome {
        drifted: !changes.is_empty(),
        message,
        changes,
        warnings,
        details,
        ..Outcome::default()
    })
}

/// No result document: ansible stopped before running any play (syntax
/// error, unknown module, missing playbook, bad option), which makes an error
/// carrying ansible's own message, or the document could not be read, which
/// names the byte of stdout where reading stopped.
pub(super) fn no_document_error(
    problem: DocumentError,
    code: Option<i32>,
    signal: Option<i32>,
    stderr: &str,
    truncated: bool,
    rules: &VerdictRules<'_>,
    clean: &dyn Fn(&str) -> String,
) -> ProbeError {
    if truncated {
        return ProbeError::new(
            ErrorReason::Parse,
            "ansible-playbook printed more output than driftwatch keeps; result lost",
        );
    }
    if let DocumentError::Invalid { offset, message } = problem {
        let exit = match (code, signal) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "no exit code".to_string(),
        };
        return ProbeError::new(
            ErrorReason::Parse,
            format!(
                "cannot read ansible-playbook's result document ({exit}): {message} at byte {offset} of stdout"
            ),
        );
    }
    let (reason, fallback) = match (code, signal) {
        (Some(0), _) => (
            ErrorReason::Parse,
            "ansible-playbook exited 0 but printed no result document".to_string(),
        ),
        (Some(1 | 4 | 5), _) => (
            ErrorReason::Input,
            format!(
                "ansible-playbook exited with code {}",
                code.unwrap_or_default()
            ),
        ),
        (Some(code), _) => (
            ErrorReason::ExitCode,
            format!("ansible-playbook exited with code {code}"),
        ),
        (None, Some(signal)) => (
            ErrorReason::ExitCode,
            format!("ansible-playbook was killed by signal {signal}"),
        ),
        (None, None) => (
            ErrorReason::ExitCode,
            "ansible-playbook ended without an exit code".to_string(),
        ),
    };
    let message = ansible_error(stderr).map(|m| clean(&m)).unwrap_or(fallback);
    // ansible refuses to start when the inventory has hosts but --limit
    // leaves none: no play ran, so the run checked nothing.
    if let Some(limit) = rules.limit {
        if code == Some(1) && message.contains("leaves us with no hosts to target") {
            return ProbeError::new(
                ErrorReason::Input,
                format!(
                    "checked nothing: --limit {limit:?} leaves no host of the inventory to target\n{message}"
                ),
            );
        }
    }
    // `hosts: []` stops ansible with a message that names no play.
    if message.contains("Hosts list cannot be empty") {
        let plays = scan::plays_without_hosts(rules.workdir, rules.playbooks);
        if !plays.is_empty() {
            let listed: Vec<String> = plays.iter().map(|play| format!("  {play}")).collect();
            return ProbeError::new(
                reason,
                format!("{message}\nchecked nothing for:\n{}", listed.join("\n")),
            );
        }
    }
    ProbeError::new(reason, message)
}

/// ansible's error block from stderr: from the first `ERROR!` (≤ 2.18) or
/// `[ERROR]:` (2.19) line, up to 12 lines.
fn ansible_error(stderr: &str) -> Option<String> {
    let lines: Vec<&str> = stderr.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("ERROR!") || l.starts_with("[ERROR]"))?;
    let block: Vec<&str> = lines[start..].iter().take(12).copied().collect();
    Some(block.join("\n").trim_end().to_string())
}

fn first_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut kept = lines[..lines.len().min(count)].join(" / ");
    if lines.len() > count {
        kept.push_str(" …");
    }
    kept
}

/// Makes diffs stable: drops trailing blank lines and replaces any header
/// still naming a temporary file (the callback fixes most) with a plain one.
fn normalize_diff(diff: &str) -> String {
    let lines: Vec<String> = diff
        .lines()
        .map(|line| {
            for (prefix, side) in [("--- ", "before"), ("+++ ", "after")] {
                if let Some(header) = line.strip_prefix(prefix) {
                    if header.contains("ansible-local-") || header.contains("/.ansible/tmp/") {
                        return format!("{prefix}{side}");
                    }
                }
            }
            line.to_string()
        })
        .collect();
    lines.join("\n").trim_end().to_string()
}

/// Makes paths inside the checkout relative to the probe directory, so
/// messages stay the same from one revision's checkout to the next.
pub(super) fn relative_paths(text: &str, cx: &ProbeContext) -> String {
    let mut text = text.to_string();
    for base in [&cx.workdir, &cx.checkout, &cx.scratch_dir] {
        let prefix = format!("{}/", base.display());
        if prefix.len() > 1 {
            text = text.replace(&prefix, "");
        }
    }
    text
}

/// A task's `/abs/file.yml:12` as `dir/file.yml:12` relative to the
/// repository root; None for tasks outside the checkout (a role from a
/// system-wide roles_path).
pub(super) fn repo_relative_task_path(at: &str, cx: &ProbeContext) -> Option<String> {
    let (file, line) = match at.rsplit_once(':') {
        Some((file, line)) if line.parse::<u32>().is_ok() => (file, Some(line)),
        _ => (at, None),
    };
    let path = cx.workdir.join(file);
    let relative = cx.repo_relative(&path)?;
    Some(match line {
        Some(line) => format!("{relative}:{line}"),
        None => relative,
    })
}
