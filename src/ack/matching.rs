//! Matching one instance's drift against its acks at a given `now`: which
//! resources and fields are acknowledged, which an ack covers but whose drift
//! changed since (mismatched), and which are plain drift. A pure function of
//! the drift, the acks and `now`, so metrics (at scrape time), the API, the
//! page and `check` all agree, and an expiry shows without a run.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::model::{Ack, AckState, EndReason};
use crate::model::drifted::DriftedResource;

/// How one drifted resource (or field) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// Nothing acknowledges it: plain drift.
    Unacknowledged,
    /// An active ack covers it and its fingerprint matches.
    Acknowledged,
    /// An active ack covers it but the drift is another now (it alerts again).
    Changed,
}

/// One drifted resource after matching.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourceStanding {
    pub resource: String,
    pub action: String,
    pub standing: Standing,
    /// The acks whose covers match this resource (or its fields).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub acknowledged_by: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldStanding>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldStanding {
    pub field: String,
    pub standing: Standing,
}

/// One cover of an ack, against the drift.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoverStanding {
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub fingerprint: String,
    /// The drift is there with this fingerprint.
    pub matches: bool,
    /// The resource (or field) still drifts, with another fingerprint.
    pub changed: bool,
}

/// One ack, against the drift.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AckStanding {
    pub id: String,
    pub state: AckState,
    pub covers: Vec<CoverStanding>,
}

/// The whole instance after matching.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Assessment {
    /// One per drifted resource known (in the drift's order).
    pub resources: Vec<ResourceStanding>,
    /// Resources fully covered by matching active acks.
    pub acknowledged: usize,
    /// Drifted resources not fully acknowledged (including drift beyond the
    /// resources listed, which nothing can have acknowledged).
    pub unacknowledged: usize,
    /// Resources an active ack covers whose drift changed since.
    pub changed: usize,
    /// Active acks with at least one matching cover (id, owner, expiry).
    pub covering: Vec<(String, String, DateTime<Utc>)>,
    /// Per ack id.
    pub acks: BTreeMap<String, AckStanding>,
}

impl Assessment {
    /// The nearest expiry among the acks that currently cover drift.
    pub fn nearest_expiry(&self) -> Option<DateTime<Utc>> {
        self.covering.iter().map(|(_, _, at)| *at).min()
    }

    /// True when drift remains that no ack covers.
    pub fn has_unacknowledged(&self) -> bool {
        self.unacknowledged > 0
    }

    pub fn standing_of(&self, resource: &str) -> Option<&ResourceStanding> {
        self.resources.iter().find(|r| r.resource == resource)
    }
}

/// Matches `drift` (the drifted resources of the last run that reached a
/// verdict; `total` counts them all, listed or not) against `acks` at `now`.
pub fn assess(
    drift: &[DriftedResource],
    total: usize,
    acks: &[Ack],
    now: DateTime<Utc>,
) -> Assessment {
    let live: Vec<&Ack> = acks.iter().filter(|a| a.is_live(now)).collect();
    let mut assessment = Assessment::default();
    for resource in drift {
        let mut by: Vec<String> = Vec::new();
        let mut changed = false;
        let whole = live.iter().find(|ack| {
            ack.covers.iter().any(|c| {
                c.subject == resource.resource
                    && c.field.is_none()
                    && c.fingerprint == resource.fingerprint
            })
        });
        for ack in &live {
            for cover in ack.covers.iter().filter(|c| c.subject == resource.resource) {
                match &cover.field {
                    None if cover.fingerprint != resource.fingerprint => changed = true,
                    Some(name) => {
                        if let Some(field) = resource.fields.iter().find(|f| &f.field == name) {
                            if field.fingerprint != cover.fingerprint {
                                changed = true;
                            }
                        }
                    }
                    None => {}
                }
            }
        }
        let mut fields = Vec::new();
        for field in &resource.fields {
            let matching: Vec<&&Ack> = live
                .iter()
                .filter(|ack| {
                    ack.covers.iter().any(|c| {
                        c.subject == resource.resource
                            && c.field.as_deref() == Some(field.field.as_str())
                            && c.fingerprint == field.fingerprint
                    })
                })
                .collect();
            let field_changed = live.iter().any(|ack| {
                ack.covers.iter().any(|c| {
                    c.subject == resource.resource
                        && c.field.as_deref() == Some(field.field.as_str())
                        && c.fingerprint != field.fingerprint
                })
            });
            let standing = if whole.is_some() || !matching.is_empty() {
                Standing::Acknowledged
            } else if field_changed {
                Standing::Changed
            } else {
                Standing::Unacknowledged
            };
            for ack in matching {
                if !by.contains(&ack.id) {
                    by.push(ack.id.clone());
                }
            }
            fields.push(FieldStanding {
                field: field.field.clone(),
                standing,
            });
        }
        if let Some(ack) = whole {
            if !by.contains(&ack.id) {
                by.insert(0, ack.id.clone());
            }
        }
        let fully = whole.is_some()
            || (!fields.is_empty() && fields.iter().all(|f| f.standing == Standing::Acknowledged));
        let standing = if fully {
            Standing::Acknowledged
        } else if changed {
            Standing::Changed
        } else {
            Standing::Unacknowledged
        };
        match standing {
            Standing::Acknowledged => assessment.acknowledged += 1,
            Standing::Changed => assessment.changed += 1,
            Standing::Unacknowledged => {}
        }
        assessment.resources.push(ResourceStanding {
            resource: resource.resource.clone(),
            action: resource.action.clone(),
            standing,
            acknowledged_by: by,
            fields,
        });
    }
    assessment.unacknowledged = total.max(drift.len()) - assessment.acknowledged;
    for ack in acks {
        let covers: Vec<CoverStanding> = ack
            .covers
            .iter()
            .map(|cover| {
                let resource = drift.iter().find(|r| r.resource == cover.subject);
                let current = resource.and_then(|r| match &cover.field {
                    None => Some(r.fingerprint.as_str()),
                    Some(name) => r
                        .fields
                        .iter()
                        .find(|f| &f.field == name)
                        .map(|f| f.fingerprint.as_str()),
                });
                CoverStanding {
                    subject: cover.subject.clone(),
                    field: cover.field.clone(),
                    fingerprint: cover.fingerprint.clone(),
                    matches: current == Some(cover.fingerprint.as_str()),
                    changed: current.is_some_and(|c| c != cover.fingerprint),
                }
            })
            .collect();
        let matching = covers.iter().any(|c| c.matches);
        let state = match ack.ended {
            Some(ended) if ended.reason == EndReason::Expired => AckState::Expired,
            Some(_) => AckState::Closed,
            None if ack.expires_at <= now => AckState::Expired,
            None if matching => AckState::Active,
            None => AckState::Stale,
        };
        if state == AckState::Active {
            assessment
                .covering
                .push((ack.id.clone(), ack.by.clone(), ack.expires_at));
        }
        assessment.acks.insert(
            ack.id.clone(),
            AckStanding {
                id: ack.id.clone(),
                state,
                covers,
            },
        );
    }
    assessment
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ack::model::{AckSource, Cover, Ended};
    use crate::model::drifted::DriftedField;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn resource(name: &str, fingerprint: &str, fields: &[(&str, &str)]) -> DriftedResource {
        DriftedResource {
            resource: name.into(),
            action: "changed".into(),
            fingerprint: fingerprint.into(),
            fields: fields
                .iter()
                .map(|(f, fp)| DriftedField {
                    field: f.to_string(),
                    fingerprint: fp.to_string(),
                })
                .collect(),
        }
    }

    fn ack(id: &str, covers: &[(&str, Option<&str>, &str)], expires: &str) -> Ack {
        Ack {
            id: id.into(),
            instance: "web".into(),
            subjects: vec![],
            fields: vec![],
            covers: covers
                .iter()
                .map(|(s, f, fp)| Cover {
                    subject: s.to_string(),
                    field: f.map(String::from),
                    fingerprint: fp.to_string(),
                })
                .collect(),
            by: "alice".into(),
            reason: "incident".into(),
            created_at: at("2026-12-01T00:00:00Z"),
            expires_at: at(expires),
            source: AckSource::Runtime,
            matched_at: None,
            changed: false,
            ended: None,
        }
    }

    const NOW: &str = "2026-12-01T12:00:00Z";

    #[test]
    fn a_matching_ack_acknowledges_and_a_new_resource_stays_drift() {
        let drift = [resource("a", "fp1:a", &[]), resource("b", "fp1:b", &[])];
        let acks = [ack("a-1", &[("a", None, "fp1:a")], "2026-12-02T00:00:00Z")];
        let result = assess(&drift, 2, &acks, at(NOW));
        assert_eq!(
            (result.acknowledged, result.unacknowledged, result.changed),
            (1, 1, 0)
        );
        assert_eq!(result.resources[0].standing, Standing::Acknowledged);
        assert_eq!(result.resources[0].acknowledged_by, vec!["a-1"]);
        assert_eq!(result.resources[1].standing, Standing::Unacknowledged);
        assert_eq!(result.acks["a-1"].state, AckState::Active);
        assert_eq!(result.nearest_expiry(), Some(at("2026-12-02T00:00:00Z")));
        // Resources cut from the report count as unacknowledged.
        let result = assess(&drift, 5, &acks, at(NOW));
        assert_eq!(result.unacknowledged, 4);
    }

    #[test]
    #[allow(clippy::type_complexity)]
    fn table_of_standings() {
        // (drift, acks, now) -> (acknowledged, unacknowledged, changed, ack state)
        let fields = resource(
            "d",
            "fp1:whole",
            &[("spec.replicas", "fp1:r5"), ("image", "fp1:i1")],
        );
        let expires = "2026-12-02T00:00:00Z";
        let cases: Vec<(
            &str,
            Vec<DriftedResource>,
            Ack,
            &str,
            (usize, usize, usize, AckState),
        )> = vec![
            (
                "live value changed",
                vec![resource("a", "fp1:a2", &[])],
                ack("x", &[("a", None, "fp1:a")], expires),
                NOW,
                (0, 1, 1, AckState::Stale),
            ),
            (
                "expired",
                vec![resource("a", "fp1:a", &[])],
                ack("x", &[("a", None, "fp1:a")], expires),
                "2026-12-02T00:00:00Z",
                (0, 1, 0, AckState::Expired),
            ),
            (
                "fixed",
                vec![],
                ack("x", &[("a", None, "fp1:a")], expires),
                NOW,
                (0, 0, 0, AckState::Stale),
            ),
            (
                "all fields acked",
                vec![fields.clone()],
                ack(
                    "x",
                    &[
                        ("d", Some("spec.replicas"), "fp1:r5"),
                        ("d", Some("image"), "fp1:i1"),
                    ],
                    expires,
                ),
                NOW,
                (1, 0, 0, AckState::Active),
            ),
            (
                "one field acked, another drifts",
                vec![fields.clone()],
                ack("x", &[("d", Some("spec.replicas"), "fp1:r5")], expires),
                NOW,
                (0, 1, 0, AckState::Active),
            ),
            (
                "acked field changed",
                vec![resource("d", "fp1:w2", &[("spec.replicas", "fp1:r6")])],
                ack("x", &[("d", Some("spec.replicas"), "fp1:r5")], expires),
                NOW,
                (0, 1, 1, AckState::Stale),
            ),
            (
                "whole-resource cover",
                vec![fields.clone()],
                ack("x", &[("d", None, "fp1:whole")], expires),
                NOW,
                (1, 0, 0, AckState::Active),
            ),
            (
                "other instance's subject",
                vec![resource("b", "fp1:b", &[])],
                ack("x", &[("a", None, "fp1:b")], expires),
                NOW,
                (0, 1, 0, AckState::Stale),
            ),
        ];
        for (name, drift, ack, now, (acknowledged, unacknowledged, changed, state)) in cases {
            let result = assess(&drift, drift.len(), &[ack], at(now));
            assert_eq!(
                (
                    result.acknowledged,
                    result.unacknowledged,
                    result.changed,
                    result.acks["x"].state
                ),
                (acknowledged, unacknowledged, changed, state),
                "{name}"
            );
            assert_eq!(
                result.covering.is_empty(),
                state != AckState::Active,
                "{name}"
            );
        }
    }

    #[test]
    fn ended_acks_cover_nothing() {
        let drift = [resource("a", "fp1:a", &[])];
        for reason in [EndReason::Closed, EndReason::Deleted, EndReason::Expired] {
            let mut ended = ack("x", &[("a", None, "fp1:a")], "2026-12-02T00:00:00Z");
            ended.ended = Some(Ended {
                at: at(NOW),
                reason,
            });
            let result = assess(&drift, 1, &[ended], at(NOW));
            assert_eq!(result.acknowledged, 0, "{reason:?}");
            assert_ne!(result.acks["x"].state, AckState::Active);
        }
    }
}
