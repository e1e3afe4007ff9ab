//! What `driftwatch validate` says about acknowledgements: problems in each
//! readable repo's acks file (`file:line:col: key: message`), acks for
//! instances no probe has, and acks that match nothing in the last run the
//! state directory knows of (stale: the drift changed or is gone; remove
//! them or acknowledge again) or have expired.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::model::AckState;
use super::repo_file::{self, Instances, ACKS_FILE};
use crate::config::{Config, RepoSource};
use crate::state::{ProbeStatus, State};

/// Errors and warnings, each one line.
#[derive(Debug, Default)]
pub struct Findings {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// `checkout` is a work tree of the remote repos, as `validate --checkout`;
/// `instances` are each probe's (by name), as far as they are known.
pub fn check(
    config: &Config,
    checkout: Option<&Path>,
    instances: &[(String, Instances)],
    now: DateTime<Utc>,
) -> Findings {
    let mut findings = Findings::default();
    let statuses = State::peek(&config.state_dir);
    for repo in &config.repos {
        let dir: PathBuf = match &repo.source {
            RepoSource::Path(dir) => dir.clone(),
            RepoSource::Remote { .. } => match checkout {
                Some(dir) => dir.to_path_buf(),
                None => continue,
            },
        };
        let mut read = repo_file::read(&dir, now, config.acks.max_expiry);
        let probes: Vec<(String, Instances)> = instances
            .iter()
            .filter(|(name, _)| {
                config
                    .probes
                    .iter()
                    .any(|p| p.repo == repo.name && &p.name == name)
            })
            .cloned()
            .collect();
        read.check_instances(&repo.name, &probes);
        let file = dir.join(ACKS_FILE);
        for problem in &read.problems {
            let rest = problem.strip_prefix(ACKS_FILE).unwrap_or(problem);
            findings.errors.push(format!("{}{rest}", file.display()));
        }
        for ack in &read.acks {
            let line = read
                .places
                .iter()
                .find(|place| place.id == ack.id)
                .map_or(0, |place| place.line);
            let at = format!("{}:{line}", file.display());
            let Some(status) = statuses.iter().find(|s| s.probe == ack.instance) else {
                continue;
            };
            // What the daemon learned of it (closed, matched) stands: the
            // file cannot say that an ack's drift was fixed.
            let mut ack = ack.clone();
            if let Some(known) = status.acks.iter().find(|a| a.id == ack.id) {
                ack.ended = known.ended;
                ack.matched_at = ack.matched_at.or(known.matched_at);
            }
            if let Some(warning) = stale(status, &ack, now) {
                findings.warnings.push(format!("{at}: {warning}"));
            }
        }
    }
    let configured = |status: &ProbeStatus| config.probes.iter().any(|p| p.name == status.name);
    for status in statuses.iter().filter(|s| configured(s)) {
        for ack in status
            .acks
            .iter()
            .filter(|a| a.source == super::AckSource::Runtime)
        {
            if let Some(warning) = stale(status, ack, now) {
                findings.warnings.push(format!("run-time {warning}"));
            }
        }
    }
    // Acks of instances the config (or the last root listing) lacks wait
    // for them; say so, so that a removed probe's acks are not a surprise.
    let waiting = State::peek_waiting(&config.state_dir);
    for status in statuses.iter().filter(|s| !configured(s)).chain(&waiting) {
        for ack in status
            .acks
            .iter()
            .filter(|a| a.source == super::AckSource::Runtime && a.is_live(now))
        {
            findings.warnings.push(format!(
                "run-time ack {} of {} (by {}) waits for its instance, which is not configured now: it applies again when the instance comes back, until it expires at {}; end it early with driftwatch ack --delete {}",
                ack.id,
                ack.instance,
                ack.by,
                ack.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                ack.id
            ));
        }
    }
    findings
}

/// A warning when `ack` matches nothing in `status`'s last run or has expired.
fn stale(status: &ProbeStatus, ack: &super::Ack, now: DateTime<Utc>) -> Option<String> {
    status.last_success?;
    let mut status = status.clone();
    status.acks = vec![ack.clone()];
    let assessment = super::assess_status(&status, now);
    let when = status
        .last_success
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default();
    match assessment.acks.get(&ack.id).map(|s| s.state) {
        Some(AckState::Stale) => Some(format!(
            "ack {} of {} (by {}) is stale: its fingerprints match nothing in the last run ({when}); remove it, or acknowledge the current drift again (driftwatch ack --print)",
            ack.id, ack.instance, ack.by
        )),
        Some(AckState::Closed) if ack.source == super::AckSource::Repo => Some(format!(
            "ack {} of {} (by {}) is closed: the drift it covered was gone at {}; remove it",
            ack.id,
            ack.instance,
            ack.by,
            ack.ended
                .map(|e| e.at.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_default()
        )),
        Some(AckState::Expired) if ack.source == super::AckSource::Repo => Some(format!(
            "ack {} of {} (by {}) expired at {}; remove it",
            ack.id,
            ack.instance,
            ack.by,
            ack.expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )),
        _ => None,
    }
}
