//! Keeping an instance's acks on its status: creating, ending, expiring and
//! closing them, taking the repo's acks in, and merging another replica's
//! copy (scale-out handover). Every transition yields an [`AckEvent`] for
//! the history. The status is persisted like the rest of the state, so run-
//! time acks survive a restart, and travel with the status to a new owner.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::matching::assess;
use super::model::{Ack, AckSource, EndReason, Ended, ENDED_RETENTION};
use crate::model::instance::InstanceId;
use crate::state::ProbeStatus;

/// What happened to an ack, for the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckEventKind {
    Created,
    /// The drift it covers changed since it was made (it alerts again).
    Changed,
    Expired,
    /// The drift it covered is gone.
    Closed,
    Deleted,
}

impl AckEventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AckEventKind::Created => "ack_created",
            AckEventKind::Changed => "ack_changed",
            AckEventKind::Expired => "ack_expired",
            AckEventKind::Closed => "ack_closed",
            AckEventKind::Deleted => "ack_deleted",
        }
    }
}

/// One transition of one ack.
#[derive(Debug, Clone, PartialEq)]
pub struct AckEvent {
    pub kind: AckEventKind,
    pub at: DateTime<Utc>,
    pub instance: InstanceId,
    pub layer: String,
    pub ack: String,
    pub by: String,
    /// One line for a person: who, why, until, what.
    pub message: String,
    /// The commit and the scheduler's run id of the instance's last run
    /// (the one that caused the event, or whose drift the ack covers);
    /// `None` before any run.
    pub last_run: Option<(String, u64)>,
}

/// Names the parts (subject, field) for a person: up to three, then how
/// many more.
fn describe<'a>(parts: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> String {
    const SHOWN: usize = 3;
    let named: Vec<String> = parts
        .map(|(subject, field)| match field {
            Some(field) => format!("{subject} {field}"),
            None => subject.to_string(),
        })
        .collect();
    match named.len() {
        n if n <= SHOWN => named.join(", "),
        n => format!("{} and {} more", named[..SHOWN].join(", "), n - SHOWN),
    }
}

fn event(kind: AckEventKind, status: &ProbeStatus, ack: &Ack, at: DateTime<Utc>) -> AckEvent {
    let what = describe(
        ack.covers
            .iter()
            .map(|c| (c.subject.as_str(), c.field.as_deref())),
    );
    event_about(kind, status, ack, at, what)
}

/// As [`event`], naming `what` instead of everything the ack covers.
fn event_about(
    kind: AckEventKind,
    status: &ProbeStatus,
    ack: &Ack,
    at: DateTime<Utc>,
    what: String,
) -> AckEvent {
    let message = match kind {
        AckEventKind::Created => format!(
            "{} acknowledged {what} until {} ({}): {}",
            ack.by,
            ack.expires_at.format("%Y-%m-%d %H:%M UTC"),
            ack.source.as_str(),
            ack.reason
        ),
        AckEventKind::Changed => {
            format!(
                "the drift {} acknowledged changed since: {what} alerts again",
                ack.by
            )
        }
        AckEventKind::Expired => format!(
            "{}'s acknowledgement of {what} expired; the drift alerts again",
            ack.by
        ),
        AckEventKind::Closed => format!(
            "{what} is in sync again; {}'s acknowledgement closed",
            ack.by
        ),
        AckEventKind::Deleted => format!("{}'s acknowledgement of {what} ended early", ack.by),
    };
    AckEvent {
        kind,
        at,
        instance: status.instance(),
        layer: status.layer.clone(),
        ack: ack.id.clone(),
        by: ack.by.clone(),
        message,
        last_run: status
            .last_report
            .as_ref()
            .map(|r| (r.commit.clone(), r.run_id)),
    }
}

/// Adds a new run-time ack.
pub fn create(status: &mut ProbeStatus, ack: Ack) -> AckEvent {
    let event = event(AckEventKind::Created, status, &ack, ack.created_at);
    status.acks.push(ack);
    event
}

/// Ends ack `id` early; `None` when the status has no live ack by that id.
pub fn delete(status: &mut ProbeStatus, id: &str, now: DateTime<Utc>) -> Option<AckEvent> {
    let index = status
        .acks
        .iter()
        .position(|a| a.id == id && a.ended.is_none())?;
    status.acks[index].ended = Some(Ended {
        at: now,
        reason: EndReason::Deleted,
    });
    let ack = status.acks[index].clone();
    Some(event(AckEventKind::Deleted, status, &ack, now))
}

/// Makes the status's repo acks those of the acks file at the run's commit
/// (`acks`, already for this instance): new ones are created, ones gone from
/// the file end as deleted; one kept keeps what it learned (matched, ended).
pub fn set_repo_acks(
    status: &mut ProbeStatus,
    acks: Vec<Ack>,
    now: DateTime<Utc>,
) -> Vec<AckEvent> {
    let mut events = Vec::new();
    let mut kept: Vec<Ack> = Vec::new();
    for ack in std::mem::take(&mut status.acks) {
        let in_file = acks.iter().any(|a| a.id == ack.id);
        match ack.source {
            AckSource::Repo if !in_file => {
                if ack.ended.is_none() {
                    events.push(event(AckEventKind::Deleted, status, &ack, now));
                }
            }
            _ => kept.push(ack),
        }
    }
    for ack in acks {
        if !kept.iter().any(|a| a.id == ack.id) {
            events.push(event(AckEventKind::Created, status, &ack, now));
            kept.push(ack);
        }
    }
    status.acks = kept;
    events
}

/// Brings the acks up to date with the status's drift at `now`: an expired
/// one ends (its drift alerts again, drifted-since unchanged), one whose
/// drift is gone closes, one whose drift changed says so once; ended ones
/// past [`ENDED_RETENTION`] are forgotten.
pub fn refresh(status: &mut ProbeStatus, now: DateTime<Utc>) -> Vec<AckEvent> {
    let mut events = Vec::new();
    let drift = if status.drifted {
        status.drifted_list.clone()
    } else {
        Vec::new()
    };
    let assessment = assess(&drift, drift.len(), &status.acks, now);
    let mut acks = std::mem::take(&mut status.acks);
    for ack in &mut acks {
        if ack.ended.is_some() {
            continue;
        }
        if ack.expires_at <= now {
            ack.ended = Some(Ended {
                at: ack.expires_at,
                reason: EndReason::Expired,
            });
            events.push(event(AckEventKind::Expired, status, ack, now));
            continue;
        }
        let Some(standing) = assessment.acks.get(&ack.id) else {
            continue;
        };
        if standing.covers.iter().any(|c| c.matches) {
            ack.matched_at = Some(now);
        }
        let still_drifting = standing.covers.iter().any(|c| c.matches || c.changed);
        // Only an ack that once matched closes: one from the repo with a
        // mistyped fingerprint stays, listed as stale. A drift list cut at
        // the report caps may lack what the ack covers: that is no fix.
        let complete = !status.drifted || status.drifted_list.len() >= status.drifted_resources;
        if ack.matched_at.is_some() && !still_drifting && complete && status.last_success.is_some()
        {
            ack.ended = Some(Ended {
                at: now,
                reason: EndReason::Closed,
            });
            events.push(event(AckEventKind::Closed, status, ack, now));
            continue;
        }
        let changed = standing.covers.iter().any(|c| c.changed);
        if changed && !ack.changed {
            // Name what changed, not all the ack covers: the rest still matches.
            let what = describe(
                standing
                    .covers
                    .iter()
                    .filter(|c| c.changed)
                    .map(|c| (c.subject.as_str(), c.field.as_deref())),
            );
            events.push(event_about(AckEventKind::Changed, status, ack, now, what));
        }
        ack.changed = changed;
    }
    acks.retain(|a| a.ended.map_or(true, |e| now - e.at < ENDED_RETENTION));
    status.acks = acks;
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::model::merge;
    use crate::ack::model::Cover;
    use crate::model::drifted::DriftedResource;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn ack(id: &str, fingerprint: &str, source: AckSource) -> Ack {
        Ack {
            id: id.into(),
            instance: "web".into(),
            subjects: vec![],
            fields: vec![],
            covers: vec![Cover {
                subject: "a".into(),
                field: None,
                fingerprint: fingerprint.into(),
            }],
            by: "alice".into(),
            reason: "INC-1".into(),
            created_at: at("2026-12-01T00:00:00Z"),
            expires_at: at("2026-12-02T00:00:00Z"),
            source,
            matched_at: None,
            changed: false,
            ended: None,
        }
    }

    fn drifted(fingerprint: &str) -> ProbeStatus {
        let mut status = ProbeStatus::new(&InstanceId::new("web", ""), "command");
        status.drifted = true;
        status.last_success = Some(at("2026-12-01T00:00:00Z"));
        status.drifted_list = vec![DriftedResource {
            resource: "a".into(),
            action: "changed".into(),
            fingerprint: fingerprint.into(),
            fields: vec![],
        }];
        status
    }

    fn kinds(events: &[AckEvent]) -> Vec<AckEventKind> {
        events.iter().map(|e| e.kind).collect()
    }

    #[test]
    fn an_ack_lives_changes_and_closes_with_its_drift() {
        let mut status = drifted("fp1:a");
        create(&mut status, ack("a-1", "fp1:a", AckSource::Runtime));
        assert!(refresh(&mut status, at("2026-12-01T01:00:00Z")).is_empty());
        assert!(status.acks[0].matched_at.is_some());
        // The live value moves on: one changed event, not one per refresh.
        status.drifted_list[0].fingerprint = "fp1:b".into();
        let events = refresh(&mut status, at("2026-12-01T02:00:00Z"));
        assert_eq!(kinds(&events), [AckEventKind::Changed]);
        assert!(refresh(&mut status, at("2026-12-01T03:00:00Z")).is_empty());
        // Fixed: in sync closes it.
        status.drifted = false;
        status.drifted_list.clear();
        let events = refresh(&mut status, at("2026-12-01T04:00:00Z"));
        assert_eq!(kinds(&events), [AckEventKind::Closed]);
        assert!(refresh(&mut status, at("2026-12-01T05:00:00Z")).is_empty());
        // Forgotten a week after it ended.
        refresh(&mut status, at("2026-12-09T00:00:00Z"));
        assert!(status.acks.is_empty());
    }

    #[test]
    fn a_changed_event_names_only_what_changed() {
        use crate::model::drifted::DriftedField;
        let mut status = drifted("fp1:a");
        let field = |name: &str, fingerprint: &str| DriftedField {
            field: name.into(),
            fingerprint: fingerprint.into(),
        };
        status.drifted_list = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|name| DriftedResource {
                resource: format!("Deployment/prod/{name}"),
                action: "changed".into(),
                fingerprint: format!("fp1:{name}"),
                fields: vec![field("spec.replicas", "fp1:r"), field("image", "fp1:i")],
            })
            .collect();
        let mut all = ack("a-1", "fp1:x", AckSource::Runtime);
        all.covers = status
            .drifted_list
            .iter()
            .flat_map(|r| {
                r.fields.iter().map(|f| Cover {
                    subject: r.resource.clone(),
                    field: Some(f.field.clone()),
                    fingerprint: f.fingerprint.clone(),
                })
            })
            .collect();
        // (what changes as (resource, field), the parts the message names,
        // parts it must not name)
        type Case<'a> = (&'a [(usize, usize)], &'a str, &'a [&'a str]);
        let cases: [Case; 3] = [
            (&[(1, 0)], "Deployment/prod/b spec.replicas alerts", &["image", "prod/a"]),
            (
                &[(0, 1), (3, 0)],
                "Deployment/prod/a image, Deployment/prod/d spec.replicas alerts",
                &["prod/b", "prod/e"],
            ),
            (
                &[(0, 0), (1, 0), (2, 0), (3, 0), (4, 0)],
                "Deployment/prod/a spec.replicas, Deployment/prod/b spec.replicas, Deployment/prod/c spec.replicas and 2 more alerts",
                &["image"],
            ),
        ];
        for (changes, named, unnamed) in cases {
            let mut status = status.clone();
            create(&mut status, all.clone());
            refresh(&mut status, at("2026-12-01T01:00:00Z"));
            for &(resource, field) in changes {
                status.drifted_list[resource].fields[field].fingerprint = "fp1:new".into();
            }
            let events = refresh(&mut status, at("2026-12-01T02:00:00Z"));
            assert_eq!(kinds(&events), [AckEventKind::Changed]);
            let message = &events[0].message;
            assert!(message.contains(named), "{message}");
            for part in unnamed {
                assert!(!message.contains(part), "{part}: {message}");
            }
        }
        // Created names what it covers, up to three.
        let mut fresh = status.clone();
        let event = create(&mut fresh, all);
        assert!(event.message.contains("and 7 more"), "{}", event.message);
    }

    #[test]
    fn a_drift_list_cut_at_the_caps_closes_nothing() {
        let mut status = drifted("fp1:a");
        create(&mut status, ack("a-1", "fp1:a", AckSource::Runtime));
        refresh(&mut status, at("2026-12-01T01:00:00Z"));
        // 1,001 resources drift; the acknowledged one is past the list's cap.
        status.drifted_resources = 1001;
        status.drifted_list[0].resource = "other".into();
        assert!(refresh(&mut status, at("2026-12-01T02:00:00Z")).is_empty());
        assert!(status.acks[0].ended.is_none());
    }

    #[test]
    fn expiry_ends_it_and_keeps_the_episode() {
        let mut status = drifted("fp1:a");
        status.drifted_since = Some(at("2026-11-30T00:00:00Z"));
        create(&mut status, ack("a-1", "fp1:a", AckSource::Runtime));
        let events = refresh(&mut status, at("2026-12-02T00:00:00Z"));
        assert_eq!(kinds(&events), [AckEventKind::Expired]);
        assert_eq!(status.drifted_since, Some(at("2026-11-30T00:00:00Z")));
        assert_eq!(status.acks[0].ended.unwrap().reason, EndReason::Expired);
    }

    #[test]
    fn a_repo_ack_that_never_matched_stays_stale_and_leaves_with_the_file() {
        let mut status = drifted("fp1:a");
        let typo = ack("r-1", "fp1:typo", AckSource::Repo);
        let events = set_repo_acks(&mut status, vec![typo.clone()], at("2026-12-01T01:00:00Z"));
        assert_eq!(kinds(&events), [AckEventKind::Created]);
        assert!(set_repo_acks(&mut status, vec![typo], at("2026-12-01T01:00:00Z")).is_empty());
        status.drifted = false;
        status.drifted_list.clear();
        assert!(refresh(&mut status, at("2026-12-01T02:00:00Z")).is_empty());
        assert!(status.acks[0].ended.is_none());
        let events = set_repo_acks(&mut status, vec![], at("2026-12-01T03:00:00Z"));
        assert_eq!(kinds(&events), [AckEventKind::Deleted]);
        assert!(status.acks.is_empty());
    }

    #[test]
    fn merging_never_revives_an_ended_ack() {
        let mut mine = vec![ack("a-1", "fp1:a", AckSource::Runtime)];
        let mut deleted = mine[0].clone();
        deleted.ended = Some(Ended {
            at: at("2026-12-01T01:00:00Z"),
            reason: EndReason::Deleted,
        });
        let theirs = vec![deleted.clone(), ack("a-2", "fp1:a", AckSource::Runtime)];
        assert!(merge(&mut mine, &theirs));
        assert_eq!(mine.len(), 2);
        assert!(mine[0].ended.is_some());
        let mut older = vec![ack("a-1", "fp1:a", AckSource::Runtime)];
        let mut with_deleted = vec![deleted];
        assert!(!merge(&mut with_deleted, &older));
        assert!(with_deleted[0].ended.is_some());
        assert!(merge(&mut older, &with_deleted));
        assert!(older[0].ended.is_some());
    }

    #[test]
    fn delete_ends_only_live_acks() {
        let mut status = drifted("fp1:a");
        create(&mut status, ack("a-1", "fp1:a", AckSource::Runtime));
        let now = at("2026-12-01T01:00:00Z");
        assert_eq!(
            delete(&mut status, "a-1", now).unwrap().kind,
            AckEventKind::Deleted
        );
        assert!(delete(&mut status, "a-1", now).is_none());
        assert!(delete(&mut status, "a-9", now).is_none());
    }
}
