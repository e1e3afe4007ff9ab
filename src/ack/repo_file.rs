//! `.driftwatch/acks.toml` in the watched repo: acknowledgements reviewed
//! by pull request like the rest of the desired state, read at each run
//! from the checked-out commit. `driftwatch ack --print` writes an entry:
//!
//! ```toml
//! [[ack]]
//! instance = "web"                      # `name` or `name:root`
//! by = "alice"
//! reason = "INC-1234: scaled up during the incident"
//! created = "2026-12-01T10:00:00Z"      # optional
//! expires = "2026-12-08T10:00:00Z"      # required, RFC 3339
//!
//! [[ack.cover]]
//! subject = "Deployment/prod/web"
//! field = "spec.replicas"               # optional: the whole resource without it
//! fingerprint = "fp1:3f2a9c0d1e2b4a5c"
//! ```
//!
//! A problem names `file:line:col: key: message`; an entry with a problem
//! is left out and the rest of the file (and of the repo) is still used.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::model::{check_text, repo_id, Ack, AckSource, Cover};
use crate::model::fingerprint;

/// Where the file lives, relative to the repository root.
pub const ACKS_FILE: &str = ".driftwatch/acks.toml";
/// Largest acks file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    ack: Vec<RawAck>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawAck {
    instance: Spanned<String>,
    by: Spanned<String>,
    reason: Spanned<String>,
    #[serde(default)]
    created: Option<Spanned<String>>,
    expires: Spanned<String>,
    #[serde(default)]
    cover: Vec<RawCover>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawCover {
    subject: Spanned<String>,
    #[serde(default)]
    field: Option<String>,
    fingerprint: Spanned<String>,
}

/// What the file holds: the usable acks and one line per problem.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RepoAcks {
    pub acks: Vec<Ack>,
    pub problems: Vec<String>,
    /// Where each ack's entry is, by id (for problems found later).
    pub places: Vec<Place>,
}

/// Where one ack's entry is in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    pub id: String,
    /// Which `[[ack]]` entry (0-based), as problems name it: `ack[1]`.
    pub index: usize,
    /// `file:line:col` of its `instance` value.
    pub instance_at: String,
    pub line: usize,
}

/// The instances one probe has, as far as is known, to check an ack's
/// `instance` against.
#[derive(Debug, Clone, PartialEq)]
pub enum Instances {
    /// One instance, named by the probe's name alone.
    Single,
    /// One per root: these, from the last listing.
    Roots(Vec<String>),
    /// One per root, but no listing is at hand: only the form is checked.
    Unlisted,
}

/// Why `instance` names no instance of the repo's `probes` (name and
/// instances), or `None` when it names one. The mistakes: a probe the repo
/// lacks, a root given to a single-root probe, a root missing for a
/// multi-root one, a root its listing lacks.
pub fn instance_problem(
    instance: &str,
    repo: &str,
    probes: &[(String, Instances)],
) -> Option<String> {
    let id = crate::model::instance::InstanceId::parse(instance);
    let Some((_, instances)) = probes.iter().find(|(name, _)| *name == id.probe) else {
        let names: Vec<&str> = probes.iter().map(|(name, _)| name.as_str()).collect();
        return Some(format!(
            "names {instance:?}, which no probe of repo {repo} has (its probes: {})",
            listed(&names)
        ));
    };
    let probe = &id.probe;
    match instances {
        Instances::Single if !id.root.is_empty() => Some(format!(
            "names {instance:?}, but probe {probe} has one instance and no roots: write {probe:?}"
        )),
        Instances::Single => None,
        Instances::Roots(_) | Instances::Unlisted if id.root.is_empty() => {
            let roots = match instances {
                Instances::Roots(roots) => format!(" (its roots: {})", listed(roots)),
                _ => String::new(),
            };
            Some(format!(
                "names {instance:?}, but probe {probe} has one instance per root: write \"{probe}:<root>\"{roots}"
            ))
        }
        Instances::Roots(roots) if !roots.contains(&id.root) => Some(format!(
            "names {instance:?}, but {:?} is not a root of probe {probe} (its roots: {})",
            id.root,
            listed(roots)
        )),
        Instances::Roots(_) | Instances::Unlisted => None,
    }
}

/// Up to ten names, comma-separated; "none" for none.
fn listed<S: AsRef<str>>(names: &[S]) -> String {
    if names.is_empty() {
        return "none".into();
    }
    let mut out: Vec<&str> = names.iter().map(AsRef::as_ref).take(10).collect();
    if names.len() > 10 {
        out.push("…");
    }
    out.join(", ")
}

impl RepoAcks {
    /// Leaves out each ack whose `instance` names no instance of the repo's
    /// `probes`, with a problem at its `instance` key, as for any other
    /// mistake in an entry (see [`instance_problem`]).
    pub fn check_instances(&mut self, repo: &str, probes: &[(String, Instances)]) {
        let places = &self.places;
        let problems = &mut self.problems;
        self.acks.retain(|ack| {
            let Some(message) = instance_problem(&ack.instance, repo, probes) else {
                return true;
            };
            let place = places.iter().find(|p| p.id == ack.id);
            let (at, index) = place.map_or((ACKS_FILE.to_string(), 0), |p| {
                (p.instance_at.clone(), p.index)
            });
            problems.push(format!("{at}: ack[{index}].instance: {message}"));
            false
        });
    }

    /// The acks of one instance.
    pub fn of(&self, instance: &str) -> Vec<Ack> {
        self.acks
            .iter()
            .filter(|a| a.instance == instance)
            .cloned()
            .collect()
    }
}

/// Reads `checkout/.driftwatch/acks.toml`; a missing file holds nothing.
/// `max_expiry` bounds how far ahead of `now` an expiry may be.
pub fn read(checkout: &Path, now: DateTime<Utc>, max_expiry: Duration) -> RepoAcks {
    let path = checkout.join(ACKS_FILE);
    let text = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return RepoAcks::default(),
        Ok(meta) if meta.len() > MAX_FILE_BYTES => {
            return RepoAcks {
                problems: vec![format!(
                    "{ACKS_FILE}: larger than {MAX_FILE_BYTES} bytes; not read"
                )],
                ..RepoAcks::default()
            }
        }
        _ => match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                return RepoAcks {
                    problems: vec![format!("{ACKS_FILE}: cannot read: {e}")],
                    ..RepoAcks::default()
                }
            }
        },
    };
    parse(&text, ACKS_FILE, now, max_expiry)
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Parses the file's text; `name` is how problems name the file. Each
/// `[[ack]]` entry is read on its own, so one bad entry is left out and the
/// rest of the file is still used.
pub fn parse(text: &str, name: &str, now: DateTime<Utc>, max_expiry: Duration) -> RepoAcks {
    let Ok(doc) = toml_edit::ImDocument::parse(text) else {
        // A syntax error: the whole-file reader names its place.
        return parse_entries(text, name, now, max_expiry);
    };
    let mut starts = Vec::new();
    let mut ack_starts = Vec::new();
    for (key, item) in doc.as_table().iter() {
        match item {
            toml_edit::Item::ArrayOfTables(aot) => {
                for table in aot.iter() {
                    if let Some(span) = table.span() {
                        starts.push(span.start);
                        if key == "ack" {
                            ack_starts.push(span.start);
                        }
                    }
                }
            }
            toml_edit::Item::Table(table) => {
                if let Some(span) = table.span() {
                    starts.push(span.start);
                }
            }
            _ => {}
        }
    }
    starts.sort_unstable();
    ack_starts.sort_unstable();
    if ack_starts.is_empty() {
        return parse_entries(text, name, now, max_expiry);
    }
    // The table at `start` up to the next one, with what precedes it blanked
    // so that lines and columns stay those of the file.
    let chunk = |start: usize| -> String {
        let end = starts
            .iter()
            .copied()
            .find(|&s| s > start)
            .unwrap_or(text.len());
        text[..start]
            .chars()
            .map(|c| if c == '\n' { '\n' } else { ' ' })
            .chain(text[start..end].chars())
            .collect()
    };
    // What precedes the first entry (top-level keys) is checked on its own.
    let mut result = parse_entries(&text[..starts[0]], name, now, max_expiry);
    for (index, &start) in ack_starts.iter().enumerate() {
        let padded = chunk(start);
        let one = parse_entries(&padded, name, now, max_expiry);
        result.acks.extend(one.acks);
        result
            .places
            .extend(one.places.into_iter().map(|place| Place { index, ..place }));
        result.problems.extend(
            one.problems
                .into_iter()
                .map(|p| p.replacen("ack[0]", &format!("ack[{index}]"), 1)),
        );
    }
    // Other top-level tables are reported once, not with every entry.
    for &start in starts.iter().filter(|s| !ack_starts.contains(s)) {
        let padded = chunk(start);
        result
            .problems
            .extend(parse_entries(&padded, name, now, max_expiry).problems);
    }
    result
}

/// Parses `text` as a whole (one entry, when called per entry).
fn parse_entries(text: &str, name: &str, now: DateTime<Utc>, max_expiry: Duration) -> RepoAcks {
    let at = |offset: usize| {
        let (line, col) = line_col(text, offset);
        format!("{name}:{line}:{col}")
    };
    let deserializer = toml::Deserializer::new(text);
    let raw: RawFile = match serde_path_to_error::deserialize(deserializer) {
        Ok(raw) => raw,
        Err(err) => {
            let key = err
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let inner = err.into_inner();
            let place = inner
                .span()
                .map(|s| at(s.start))
                .unwrap_or_else(|| name.to_string());
            let message = inner
                .message()
                .trim()
                .replace("$__serde_spanned_private_value", "value")
                .replace(
                    "invalid type: map, expected a string",
                    "is a TOML datetime or table, expected a quoted string (e.g. \"2026-12-08T10:00:00Z\")",
                );
            let problem = if key.is_empty() || key == "." {
                format!("{place}: {message}")
            } else {
                format!("{place}: {key}: {message}")
            };
            return RepoAcks {
                problems: vec![problem],
                ..RepoAcks::default()
            };
        }
    };
    let mut result = RepoAcks::default();
    for (index, entry) in raw.ack.into_iter().enumerate() {
        let key = |field: &str| format!("ack[{index}].{field}");
        let mut problem = |offset: usize, field: &str, message: String| {
            result
                .problems
                .push(format!("{}: {}: {message}", at(offset), key(field)));
        };
        if let Err(err) = check_text(entry.by.get_ref(), entry.reason.get_ref()) {
            let span = if err.key == "by" {
                entry.by.span()
            } else {
                entry.reason.span()
            };
            problem(span.start, err.key, err.message);
            continue;
        }
        let instance = entry.instance.get_ref().trim().to_string();
        if instance.is_empty() {
            problem(entry.instance.span().start, "instance", "is empty".into());
            continue;
        }
        let expires_at = match DateTime::parse_from_rfc3339(entry.expires.get_ref().trim()) {
            Ok(at) => at.with_timezone(&Utc),
            Err(e) => {
                problem(
                    entry.expires.span().start,
                    "expires",
                    format!(
                        "{:?} is not an RFC 3339 time (e.g. \"2026-12-08T10:00:00Z\"): {e}",
                        entry.expires.get_ref()
                    ),
                );
                continue;
            }
        };
        let limit = now + chrono::TimeDelta::from_std(max_expiry).unwrap_or(chrono::TimeDelta::MAX);
        if expires_at > limit {
            problem(
                entry.expires.span().start,
                "expires",
                format!(
                    "is more than the maximum of {} ahead ([acks] max_expiry)",
                    crate::model::duration::compact(max_expiry)
                ),
            );
            continue;
        }
        let created_at = match &entry.created {
            None => expires_at.min(now),
            Some(created) => match DateTime::parse_from_rfc3339(created.get_ref().trim()) {
                Ok(at) => at.with_timezone(&Utc),
                Err(e) => {
                    problem(
                        created.span().start,
                        "created",
                        format!("{:?} is not an RFC 3339 time: {e}", created.get_ref()),
                    );
                    continue;
                }
            },
        };
        if let Some(created) = entry.created.as_ref().filter(|_| created_at >= expires_at) {
            problem(
                created.span().start,
                "created",
                format!(
                    "{} is not before expires ({}); an acknowledgement is created before it expires",
                    created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
            );
            continue;
        }
        if entry.cover.is_empty() {
            problem(
                entry.instance.span().start,
                "cover",
                "is empty: add a [[ack.cover]] with subject and fingerprint (driftwatch ack --print writes them)".into(),
            );
            continue;
        }
        let mut covers = Vec::new();
        let mut bad = false;
        for (n, cover) in entry.cover.iter().enumerate() {
            if !fingerprint::is_valid(cover.fingerprint.get_ref()) {
                problem(
                    cover.fingerprint.span().start,
                    &format!("cover[{n}].fingerprint"),
                    format!(
                        "{:?} is not a fingerprint (fp1: and 16 hex digits)",
                        cover.fingerprint.get_ref()
                    ),
                );
                bad = true;
                continue;
            }
            if cover.subject.get_ref().is_empty() {
                problem(
                    cover.subject.span().start,
                    &format!("cover[{n}].subject"),
                    "is empty".into(),
                );
                bad = true;
                continue;
            }
            covers.push(Cover {
                subject: cover.subject.get_ref().clone(),
                field: cover.field.clone(),
                fingerprint: cover.fingerprint.get_ref().clone(),
            });
        }
        if bad {
            continue;
        }
        covers.sort();
        covers.dedup();
        let id = repo_id(&instance, &covers, expires_at);
        let (line, col) = line_col(text, entry.instance.span().start);
        result.places.push(Place {
            id: id.clone(),
            index,
            instance_at: format!("{name}:{line}:{col}"),
            line,
        });
        let mut subjects: Vec<String> = covers.iter().map(|c| c.subject.clone()).collect();
        subjects.dedup();
        let fields: Vec<String> = covers.iter().filter_map(|c| c.field.clone()).collect();
        result.acks.push(Ack {
            id,
            instance,
            subjects,
            fields,
            covers,
            by: entry.by.into_inner(),
            reason: entry.reason.into_inner(),
            created_at,
            expires_at,
            source: AckSource::Repo,
            matched_at: None,
            changed: false,
            ended: None,
        });
    }
    result
}

/// The TOML entry for `ack`, to paste into the acks file (`--print`).
pub fn snippet(ack: &Ack) -> String {
    let quote = |text: &str| toml::Value::String(text.to_string()).to_string();
    let time = |at: DateTime<Utc>| quote(&at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let mut out = format!(
        "# {ACKS_FILE}\n[[ack]]\ninstance = {}\nby = {}\nreason = {}\ncreated = {}\nexpires = {}\n",
        quote(&ack.instance),
        quote(&ack.by),
        quote(&ack.reason),
        time(ack.created_at),
        time(ack.expires_at),
    );
    for cover in &ack.covers {
        out.push_str(&format!(
            "\n[[ack.cover]]\nsubject = {}\n",
            quote(&cover.subject)
        ));
        if let Some(field) = &cover.field {
            out.push_str(&format!("field = {}\n", quote(field)));
        }
        out.push_str(&format!("fingerprint = {}\n", quote(&cover.fingerprint)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_ACK_MAX_EXPIRY as DEFAULT_MAX_EXPIRY;

    fn now() -> DateTime<Utc> {
        "2026-12-01T12:00:00Z".parse().unwrap()
    }

    const GOOD: &str = r#"
[[ack]]
instance = "web"
by = "alice"
reason = "INC-1: scaled up"
expires = "2026-12-05T00:00:00Z"

[[ack.cover]]
subject = "Deployment/prod/web"
field = "spec.replicas"
fingerprint = "fp1:0123456789abcdef"
"#;

    #[test]
    fn a_good_file_and_its_snippet_round_trip() {
        let read = parse(GOOD, ACKS_FILE, now(), DEFAULT_MAX_EXPIRY);
        assert!(read.problems.is_empty(), "{:?}", read.problems);
        assert_eq!(read.acks.len(), 1);
        let ack = &read.acks[0];
        assert!(ack.id.starts_with("r-") && ack.id.len() == 10, "{}", ack.id);
        assert_eq!(ack.covers[0].field.as_deref(), Some("spec.replicas"));
        assert_eq!(read.of("web").len(), 1);
        assert!(read.of("other").is_empty());
        let again = parse(&snippet(ack), ACKS_FILE, now(), DEFAULT_MAX_EXPIRY);
        assert!(again.problems.is_empty(), "{:?}", again.problems);
        assert_eq!(again.acks[0].id, ack.id, "the id survives a re-read");
        assert_eq!(again.acks[0].covers, ack.covers);
    }

    #[test]
    fn problems_name_file_line_col_and_key_and_spare_the_rest() {
        // (broken text, expected problem prefix)
        let cases = [
            ("[[ack]\n", ".driftwatch/acks.toml:1:"),
            (
                "[[ack]]\ninstance = \"web\"\nby = \"a\"\nreason = \"r\"\nexpires = \"soon\"\n[[ack.cover]]\nsubject = \"s\"\nfingerprint = \"fp1:0123456789abcdef\"\n",
                ".driftwatch/acks.toml:5:11: ack[0].expires:",
            ),
            (
                "[[ack]]\ninstance = \"web\"\nby = \"a\"\nreason = \"\"\nexpires = \"2026-12-02T00:00:00Z\"\n[[ack.cover]]\nsubject = \"s\"\nfingerprint = \"fp1:0123456789abcdef\"\n",
                ".driftwatch/acks.toml:4:10: ack[0].reason: is required",
            ),
            (
                "[[ack]]\ninstance = \"web\"\nby = \"a\"\nreason = \"r\"\nexpires = \"2026-12-02T00:00:00Z\"\n[[ack.cover]]\nsubject = \"s\"\nfingerprint = \"md5:x\"\n",
                ".driftwatch/acks.toml:8:15: ack[0].cover[0].fingerprint:",
            ),
            (
                "[[ack]]\ninstance = \"web\"\nby = \"a\"\nreason = \"r\"\nexpires = \"2027-12-02T00:00:00Z\"\n[[ack.cover]]\nsubject = \"s\"\nfingerprint = \"fp1:0123456789abcdef\"\n",
                ".driftwatch/acks.toml:5:11: ack[0].expires: is more than the maximum",
            ),
            (
                "[[ack]]\ninstance = \"web\"\nowner = \"a\"\n",
                ".driftwatch/acks.toml:3:1: ack[0].owner: unknown field `owner`",
            ),
            (
                "[[ack]]\ninstance = \"web\"\nby = \"a\"\nreason = \"r\"\nexpires = \"2026-12-02T00:00:00Z\"\n",
                ".driftwatch/acks.toml:2:12: ack[0].cover: is empty",
            ),
            (
                "[[ack]]\ninstance = \"web\"\nby = 42\nreason = \"r\"\nexpires = \"2026-12-02T00:00:00Z\"\n[[ack.cover]]\nsubject = \"s\"\nfingerprint = \"fp1:0123456789abcdef\"\n",
                ".driftwatch/acks.toml:3:6: ack[0].by:",
            ),
            (
                "[[ack]]\ninstance = \"web\"\nby = \"a\"\nexpires = \"2026-12-02T00:00:00Z\"\n[[ack.cover]]\nsubject = \"s\"\nfingerprint = \"fp1:0123456789abcdef\"\n",
                ".driftwatch/acks.toml:1:1: ack[0]: missing field `reason`",
            ),
            (
                "[[ack]]\ninstance = \"web\"\nby = \"a\"\nreason = \"r\"\nexpires = 2026-12-02T00:00:00Z\n[[ack.cover]]\nsubject = \"s\"\nfingerprint = \"fp1:0123456789abcdef\"\n",
                ".driftwatch/acks.toml:5:11: ack[0].expires:",
            ),
        ];
        let created_late = [
            ("2026-12-06T00:00:00Z", "2026-12-05T00:00:00Z"),
            ("2026-12-05T00:00:00Z", "2026-12-05T00:00:00Z"),
        ]
        .map(|(created, expires)| format!(
            "[[ack]]\ninstance = \"web\"\nby = \"a\"\nreason = \"r\"\ncreated = \"{created}\"\nexpires = \"{expires}\"\n[[ack.cover]]\nsubject = \"s\"\nfingerprint = \"fp1:0123456789abcdef\"\n"
        ));
        let by_on_two_lines = "[[ack]]\ninstance = \"web\"\nby = \"alice\\nmallory\"\nreason = \"r\"\nexpires = \"2026-12-02T00:00:00Z\"\n[[ack.cover]]\nsubject = \"s\"\nfingerprint = \"fp1:0123456789abcdef\"\n";
        let more = [
            (created_late[0].as_str(), ".driftwatch/acks.toml:5:11: ack[0].created: 2026-12-06T00:00:00Z is not before expires"),
            (created_late[1].as_str(), ".driftwatch/acks.toml:5:11: ack[0].created:"),
            (by_on_two_lines, ".driftwatch/acks.toml:3:6: ack[0].by: must be one line"),
        ];
        for (text, expected) in cases.into_iter().chain(more) {
            let read = parse(text, ACKS_FILE, now(), DEFAULT_MAX_EXPIRY);
            assert_eq!(read.problems.len(), 1, "{text}: {:?}", read.problems);
            assert!(
                read.problems[0].starts_with(expected),
                "{text}: {}",
                read.problems[0]
            );
            assert!(!read.problems[0].contains("serde"), "{:?}", read.problems);
            // A problem in a second entry leaves the first usable.
            if !text.starts_with("[[ack]\n") {
                let both = format!("{GOOD}\n{text}");
                let read = parse(&both, ACKS_FILE, now(), DEFAULT_MAX_EXPIRY);
                assert_eq!(read.acks.len(), 1, "{text}: {:?}", read.problems);
                assert_eq!(read.problems.len(), 1, "{text}: {:?}", read.problems);
                assert!(read.problems[0].contains("ack[1]"), "{:?}", read.problems);
                assert!(!read.problems[0].contains("serde"), "{:?}", read.problems);
            }
        }
    }

    #[test]
    fn an_instance_the_repo_lacks_is_a_problem_at_its_key() {
        let probes = vec![
            ("web".to_string(), Instances::Single),
            (
                "tf".to_string(),
                Instances::Roots(vec!["envs/a".into(), "envs/b".into()]),
            ),
            ("ans".to_string(), Instances::Unlisted),
        ];
        // (instance, expected problem part; None: it names an instance)
        let cases: [(&str, Option<&str>); 9] = [
            ("web", None),
            ("tf:envs/a", None),
            ("ans:any", None),
            (
                "ghost",
                Some("no probe of repo infra has (its probes: web, tf, ans)"),
            ),
            (
                "web:prod",
                Some("has one instance and no roots: write \"web\""),
            ),
            (
                "tf",
                Some("one instance per root: write \"tf:<root>\" (its roots: envs/a, envs/b)"),
            ),
            ("ans", Some("one instance per root: write \"ans:<root>\"")),
            (
                "tf:envs/c",
                Some("\"envs/c\" is not a root of probe tf (its roots: envs/a, envs/b)"),
            ),
            ("ghost:envs/a", Some("which no probe of repo infra has")),
        ];
        for (instance, expected) in cases {
            let problem = instance_problem(instance, "infra", &probes);
            match expected {
                None => assert_eq!(problem, None, "{instance}"),
                Some(part) => {
                    let problem = problem.unwrap_or_default();
                    assert!(problem.contains(part), "{instance}: {problem}");
                    assert!(problem.contains(&format!("{instance:?}")), "{problem}");
                }
            }
            // Through the file: the entry is left out, named at its key; the
            // good entry before it stays.
            let text = format!(
                "{GOOD}\n{}",
                GOOD.replace("\"web\"", &format!("{instance:?}"))
            );
            let mut read = parse(&text, ACKS_FILE, now(), DEFAULT_MAX_EXPIRY);
            read.check_instances("infra", &probes);
            let kept = if expected.is_none() { 2 } else { 1 };
            assert_eq!(read.acks.len(), kept, "{instance}: {:?}", read.problems);
            if expected.is_some() {
                assert_eq!(read.problems.len(), 1, "{:?}", read.problems);
                assert!(
                    read.problems[0]
                        .starts_with(".driftwatch/acks.toml:15:12: ack[1].instance: names"),
                    "{}",
                    read.problems[0]
                );
            }
        }
    }

    #[test]
    fn a_missing_file_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            read(dir.path(), now(), DEFAULT_MAX_EXPIRY),
            RepoAcks::default()
        );
        std::fs::create_dir_all(dir.path().join(".driftwatch")).unwrap();
        std::fs::write(dir.path().join(ACKS_FILE), GOOD).unwrap();
        assert_eq!(read(dir.path(), now(), DEFAULT_MAX_EXPIRY).acks.len(), 1);
    }
}
