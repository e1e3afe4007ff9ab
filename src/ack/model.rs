//! What an acknowledgement is: one drift of one instance as it was when it
//! was made (the fingerprints it covers), with an owner, a reason and an
//! expiry. Built from an API request, a CLI call or `.driftwatch/acks.toml`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::drifted::DriftedResource;
use crate::model::instance::InstanceId;

/// Longest owner and reason kept.
pub const MAX_BY_BYTES: usize = 200;
pub const MAX_REASON_BYTES: usize = 2000;
/// Most subjects or fields one request may name.
pub const MAX_NARROWING: usize = 200;
/// How long an ended (closed, deleted, expired) ack is remembered, so a
/// replica's older copy cannot bring it back and the page can say it ended.
pub const ENDED_RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// Where an ack comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckSource {
    /// `.driftwatch/acks.toml` in the watched repo, at the checked-out commit.
    Repo,
    /// `POST /api/v1/probes/{id}/acks` or `driftwatch ack`.
    Runtime,
}

impl AckSource {
    pub fn as_str(self) -> &'static str {
        match self {
            AckSource::Repo => "repo",
            AckSource::Runtime => "runtime",
        }
    }
}

/// Why an ack stopped covering anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The drift it covered is gone (in sync).
    Closed,
    /// Ended early by `DELETE` (or removed from the acks file).
    Deleted,
    /// Its expiry passed.
    Expired,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Closed => "closed",
            EndReason::Deleted => "deleted",
            EndReason::Expired => "expired",
        }
    }
}

/// One acknowledged part of the drift: a resource, or one field of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cover {
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub fingerprint: String,
}

/// An acknowledgement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// Short and stable: `a-<8 hex>` at run time, `r-<8 hex>` from the repo
    /// (from its instance and fingerprints, so it survives re-reading the file).
    pub id: String,
    /// Instance text form: `name` or `name:root`.
    pub instance: String,
    /// The resources it was narrowed to (empty: all drift of the instance).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    /// The fields it was narrowed to (empty: whole resources).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// What it covers, with the fingerprints recorded when it was made.
    pub covers: Vec<Cover>,
    pub by: String,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub source: AckSource,
    /// When it last covered drift that matched (it closes when that drift goes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_at: Option<DateTime<Utc>>,
    /// Its drift changed since it was made (said once in history).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub changed: bool,
    /// Set once it has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<Ended>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ended {
    pub at: DateTime<Utc>,
    pub reason: EndReason,
}

/// The state of an ack at one moment, as the API lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckState {
    /// Unexpired and at least one cover matches current drift.
    Active,
    /// Unexpired, but nothing it covers matches current drift.
    Stale,
    Expired,
    /// The drift is gone, or it was deleted.
    Closed,
    /// Unexpired, but its instance is not configured now (the probe left
    /// the config, or the root its listing): it applies again when the
    /// instance comes back.
    Waiting,
}

impl AckState {
    pub fn as_str(self) -> &'static str {
        match self {
            AckState::Active => "active",
            AckState::Stale => "stale",
            AckState::Expired => "expired",
            AckState::Closed => "closed",
            AckState::Waiting => "waiting",
        }
    }
}

impl Ack {
    pub fn instance_id(&self) -> InstanceId {
        InstanceId::parse(&self.instance)
    }

    /// Not ended and not past its expiry at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.ended.is_none() && self.expires_at > now
    }
}

/// What a person asks for, before it is checked and bound to the drift.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    #[serde(default)]
    pub by: String,
    #[serde(default)]
    pub reason: String,
    /// A duration (`4h`, `7d`) or an RFC 3339 time.
    #[serde(default)]
    pub expires: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

/// Why a request cannot become an ack; `key` names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct AckError {
    pub key: &'static str,
    pub message: String,
}

impl AckError {
    pub fn new(key: &'static str, message: impl Into<String>) -> Self {
        AckError {
            key,
            message: message.into(),
        }
    }
}

/// `expires` as a time: a duration from `now`, or an RFC 3339 time. It must
/// lie in the future and at most `max` ahead.
pub fn parse_expiry(
    text: &str,
    now: DateTime<Utc>,
    max: Duration,
) -> Result<DateTime<Utc>, AckError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(AckError::new(
            "expires",
            "is required: a duration such as \"4h\" or \"7d\", or an RFC 3339 time",
        ));
    }
    let at = match DateTime::parse_from_rfc3339(text) {
        Ok(at) => at.with_timezone(&Utc),
        Err(_) => {
            let duration = humantime::parse_duration(text).map_err(|e| {
                AckError::new(
                    "expires",
                    format!(
                        "{text:?} is neither a duration (\"4h\", \"7d\") nor an RFC 3339 time: {e}"
                    ),
                )
            })?;
            let delta = chrono::TimeDelta::from_std(duration)
                .map_err(|_| AckError::new("expires", format!("{text:?} is too long")))?;
            now.checked_add_signed(delta)
                .ok_or_else(|| AckError::new("expires", format!("{text:?} is too long")))?
        }
    };
    if at <= now {
        return Err(AckError::new(
            "expires",
            format!(
                "{} is in the past; an acknowledgement must expire in the future",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        ));
    }
    let limit = now + chrono::TimeDelta::from_std(max).unwrap_or(chrono::TimeDelta::MAX);
    if at > limit {
        return Err(AckError::new(
            "expires",
            format!(
                "{} is more than the maximum of {} ahead ([acks] max_expiry)",
                at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                crate::model::duration::compact(max)
            ),
        ));
    }
    Ok(at)
}

/// Checks owner and reason: present, not too long, no control characters
/// (the reason may break lines; the owner is one line).
pub fn check_text(by: &str, reason: &str) -> Result<(), AckError> {
    for (key, value, max) in [
        ("by", by, MAX_BY_BYTES),
        ("reason", reason, MAX_REASON_BYTES),
    ] {
        if value.trim().is_empty() {
            return Err(AckError::new(
                key,
                match key {
                    "by" => "is required: who acknowledges the drift",
                    _ => "is required: why the drift is accepted",
                },
            ));
        }
        if value.len() > max {
            return Err(AckError::new(key, format!("is longer than {max} bytes")));
        }
        // An owner is one name on one line (it labels a metric series and
        // heads every message); a reason may run over several lines.
        let allowed = |c: char| key == "reason" && c == '\n';
        if value.chars().any(|c| c.is_control() && !allowed(c)) {
            return Err(AckError::new(
                key,
                match key {
                    "by" => "must be one line without control characters (a name, e.g. \"alice\")",
                    _ => "must not contain control characters other than line breaks",
                },
            ));
        }
    }
    Ok(())
}

/// The covers an ack made now on `drift` records: for each selected
/// resource, its fields (narrowed to `fields` when given) when the layer
/// fingerprints them, so a later drift in another field stays drift; else
/// the whole resource. Errors when nothing drifts or a narrowing matches nothing.
pub fn covers_for(
    drift: &[DriftedResource],
    subjects: &[String],
    fields: &[String],
) -> Result<Vec<Cover>, AckError> {
    if drift.is_empty() {
        return Err(AckError::new(
            "instance",
            "has no drift to acknowledge in its last run that reached a verdict",
        ));
    }
    for subject in subjects {
        if !drift.iter().any(|c| &c.resource == subject) {
            let known: Vec<&str> = drift.iter().map(|c| c.resource.as_str()).take(10).collect();
            return Err(AckError::new(
                "subjects",
                format!("{subject:?} is not drifted (drifted: {})", known.join(", ")),
            ));
        }
    }
    let mut covers = Vec::new();
    let mut any_fields = false;
    let selected = drift
        .iter()
        .filter(|c| subjects.is_empty() || subjects.contains(&c.resource));
    for resource in selected {
        any_fields |= !resource.fields.is_empty();
        if !resource.fields.is_empty() {
            for field in &resource.fields {
                if fields.is_empty() || fields.contains(&field.field) {
                    covers.push(Cover {
                        subject: resource.resource.clone(),
                        field: Some(field.field.clone()),
                        fingerprint: field.fingerprint.clone(),
                    });
                }
            }
        } else if fields.is_empty() {
            covers.push(Cover {
                subject: resource.resource.clone(),
                field: None,
                fingerprint: resource.fingerprint.clone(),
            });
        }
    }
    for field in fields {
        if !any_fields {
            return Err(AckError::new(
                "fields",
                format!(
                    "cannot narrow to {field:?}: the selected resources have no per-field \
                     fingerprints (fields narrowing is available where the layer reports \
                     fields, e.g. Kubernetes); acknowledge whole resources with --subject"
                ),
            ));
        }
        if !covers.iter().any(|c| c.field.as_deref() == Some(field)) {
            return Err(AckError::new(
                "fields",
                format!("{field:?} is not a drifted field of the selected resources"),
            ));
        }
    }
    covers.sort();
    covers.dedup();
    Ok(covers)
}

/// A fresh run-time id.
pub fn new_runtime_id() -> String {
    let mut bytes = [0u8; 4];
    let filled = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !filled {
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        bytes = (nanos as u32 ^ std::process::id()).to_be_bytes();
    }
    format!("a-{}", hex::encode(bytes))
}

/// The id of an ack from the repo: stable across re-reads of the file.
pub fn repo_id(instance: &str, covers: &[Cover], expires_at: DateTime<Utc>) -> String {
    let mut parts = vec![instance.to_string(), expires_at.timestamp().to_string()];
    for cover in covers {
        parts.push(cover.subject.clone());
        parts.push(cover.field.clone().unwrap_or_default());
        parts.push(cover.fingerprint.clone());
    }
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let digest = crate::model::fingerprint::of_parts(&refs);
    format!(
        "r-{}",
        &digest[crate::model::fingerprint::PREFIX.len()..][..8]
    )
}

/// Takes in another replica's copy of the same instance's acks: unknown ones
/// are added, and an ack ended on either side stays ended (so a deleted ack
/// never comes back from an older copy). Returns whether anything changed.
pub fn merge(mine: &mut Vec<Ack>, theirs: &[Ack]) -> bool {
    let mut changed = false;
    for other in theirs {
        match mine.iter_mut().find(|a| a.id == other.id) {
            None => {
                mine.push(other.clone());
                changed = true;
            }
            Some(ack) => {
                if ack.ended.is_none() && other.ended.is_some() {
                    ack.ended = other.ended;
                    changed = true;
                }
                if other.matched_at > ack.matched_at {
                    ack.matched_at = other.matched_at;
                    changed = true;
                }
            }
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::drifted::DriftedField;

    fn now() -> DateTime<Utc> {
        "2026-12-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn expiry_is_required_future_and_bounded() {
        let max = crate::config::DEFAULT_ACK_MAX_EXPIRY;
        assert_eq!(
            parse_expiry("4h", now(), max).unwrap(),
            "2026-12-01T16:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            parse_expiry("2026-12-03T00:00:00+01:00", now(), max).unwrap(),
            "2026-12-02T23:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(parse_expiry("30d", now(), max).is_ok());
        // (input, words the error must contain)
        let bad = [
            ("", "required"),
            ("  ", "required"),
            ("soon", "neither a duration"),
            ("2026-11-30T00:00:00Z", "in the past"),
            ("2026-12-01T12:00:00Z", "in the past"),
            ("31d", "maximum of 30d ahead"),
            ("2027-06-01T00:00:00Z", "maximum"),
            ("100000000000y", "long"),
        ];
        for (text, words) in bad {
            let err = parse_expiry(text, now(), max).unwrap_err();
            assert_eq!(err.key, "expires", "{text}");
            assert!(err.message.contains(words), "{text}: {err}");
        }
        assert!(parse_expiry("2h", now(), Duration::from_secs(3600)).is_err());
    }

    #[test]
    fn owner_and_reason_are_required() {
        assert!(check_text("alice", "hotfix INC-1").is_ok());
        assert!(check_text("alice", "INC-1\nscaled up by hand").is_ok());
        for (by, reason, key) in [
            ("", "r", "by"),
            ("  ", "r", "by"),
            ("a", "", "reason"),
            ("a\u{7}", "r", "by"),
            ("alice\nmallory", "r", "by"),
            ("alice\r", "r", "by"),
            ("al\tice", "r", "by"),
            ("a", "r\u{1b}[31m", "reason"),
            ("a", "r\u{0}", "reason"),
            ("a", &"x".repeat(MAX_REASON_BYTES + 1), "reason"),
        ] {
            assert_eq!(
                check_text(by, reason).unwrap_err().key,
                key,
                "{by:?} {reason:?}"
            );
        }
    }

    fn field(name: &str, fingerprint: &str) -> DriftedField {
        DriftedField {
            field: name.into(),
            fingerprint: fingerprint.into(),
        }
    }

    #[test]
    fn covers_record_fields_when_fingerprinted_else_the_change() {
        let plain = DriftedResource {
            resource: "aws_s3_bucket.logs".into(),
            action: "update".into(),
            fingerprint: "fp1:aaaaaaaaaaaaaaaa".into(),
            fields: vec![],
        };
        let deploy = DriftedResource {
            resource: "Deployment/prod/web".into(),
            action: "changed".into(),
            fingerprint: "fp1:bbbbbbbbbbbbbbbb".into(),
            fields: vec![
                field("spec.replicas", "fp1:1111111111111111"),
                field("spec.paused", "fp1:2222222222222222"),
            ],
        };
        let changes = vec![plain, deploy];
        let all = covers_for(&changes, &[], &[]).unwrap();
        assert_eq!(all.len(), 3);
        assert!(all
            .iter()
            .any(|c| c.field.is_none() && c.subject == "aws_s3_bucket.logs"));
        let narrowed = covers_for(
            &changes,
            &["Deployment/prod/web".into()],
            &["spec.replicas".into()],
        )
        .unwrap();
        assert_eq!(
            narrowed,
            vec![Cover {
                subject: "Deployment/prod/web".into(),
                field: Some("spec.replicas".into()),
                fingerprint: "fp1:1111111111111111".into()
            }]
        );
        for (subjects, fields, key) in [
            (vec!["nope".to_string()], vec![], "subjects"),
            (vec![], vec!["spec.nope".to_string()], "fields"),
        ] {
            assert_eq!(
                covers_for(&changes, &subjects, &fields).unwrap_err().key,
                key
            );
        }
        // A layer without per-field fingerprints: say so and point at --subject.
        for subjects in [vec![], vec!["aws_s3_bucket.logs".to_string()]] {
            let err = covers_for(&changes[..1], &subjects, &["input.replicas".into()]).unwrap_err();
            assert_eq!(err.key, "fields");
            assert!(
                err.message.contains("no per-field fingerprints")
                    && err.message.contains("--subject"),
                "{}",
                err.message
            );
        }
        assert_eq!(covers_for(&[], &[], &[]).unwrap_err().key, "instance");
    }
}
