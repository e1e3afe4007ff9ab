//! `[[probe]]`: the keys every probe has; the rest of the table goes to the
//! probe's layer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::loader::*;
use super::raw::{RawProbe, PROBE_COMMON_KEYS};
use super::schedule::default_jitter;
use super::spans::{
    key, parse_key_path, path_plus, unknown_field, unknown_key_message, Seg, Target,
};
use super::{parse_timezone, Defaults, FieldError, ProbeSpec, RepoConfig, RepoSource, Schedule};

impl Loader<'_> {
    pub(super) fn probes(
        &mut self,
        value: Option<toml::Value>,
        repos: &[RepoConfig],
        defaults: &Defaults,
    ) -> Vec<ProbeSpec> {
        let mut probes = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let repo_names: Vec<&str> = repos.iter().map(|repo| repo.name.as_str()).collect();
        let declared_repos = self
            .root
            .get("repo")
            .and_then(|v| v.as_array())
            .map_or(0, |items| items.len());
        // A `[repo]` written instead of `[[repo]]` is reported once, not per probe.
        let repo_section_broken = self.root.get("repo").is_some_and(|v| !v.is_array());
        for (index, mut table) in self.entries(value, "probe").into_iter().enumerate() {
            let path = vec![key("probe"), Seg::Index(index)];
            let at = |name: &str| path_plus(&path, &[key(name)]);
            let mut common = toml::Table::new();
            for name in PROBE_COMMON_KEYS {
                if let Some(value) = table.remove(*name) {
                    common.insert(name.to_string(), value);
                }
            }
            let Some(raw) = self.decode::<RawProbe>(toml::Value::Table(common), &path) else {
                continue;
            };
            let errors_before = self.problems.len();

            let name = match raw.name {
                None => {
                    self.error(&path, "missing key `name`");
                    String::new()
                }
                Some(name) => {
                    if !valid_name(&name) {
                        self.error(&at("name"), name_rule(&name));
                    } else if let Some(first) = seen.get(&name) {
                        let first_line =
                            self.line_of(&[key("probe"), Seg::Index(*first), key("name")]);
                        self.error(
                            &at("name"),
                            format!("duplicate probe name {name:?}{first_line}"),
                        );
                    } else {
                        seen.insert(name.clone(), index);
                    }
                    name
                }
            };

            let layer = match raw.layer {
                None => {
                    self.error(
                        &path,
                        format!(
                            "missing key `layer` (one of: {})",
                            self.layers.names().join(", ")
                        ),
                    );
                    None
                }
                Some(layer) => match self.layers.names().contains(&layer.as_str()) {
                    true => Some(layer),
                    false => {
                        self.error(
                            &at("layer"),
                            format!(
                                "unknown layer {layer:?}; known layers: {}",
                                self.layers.names().join(", ")
                            ),
                        );
                        None
                    }
                },
            };

            let repo = match raw.repo {
                _ if repo_section_broken => raw.repo.unwrap_or_default(),
                Some(repo) => {
                    if !repo_names.contains(&repo.as_str()) && !self.repo_declared(&repo) {
                        let known = if repo_names.is_empty() {
                            "no [[repo]] is configured".to_string()
                        } else {
                            format!("known repos: {}", repo_names.join(", "))
                        };
                        self.error(&at("repo"), format!("unknown repo {repo:?}; {known}"));
                    }
                    repo
                }
                None if declared_repos == 1 => repo_names
                    .first()
                    .map(|s| s.to_string())
                    .unwrap_or_default(),
                None if declared_repos == 0 => {
                    self.error(&path, "missing key `repo`, and no [[repo]] is configured");
                    String::new()
                }
                None => {
                    self.error(
                        &path,
                        format!(
                            "missing key `repo`: with several repos configured, name one of: {}",
                            repo_names.join(", ")
                        ),
                    );
                    String::new()
                }
            };

            let probe_path = match raw.path.as_deref() {
                None => PathBuf::new(),
                Some(text) => {
                    if crate::paths::escapes(Path::new(text)) {
                        self.error(
                            &at("path"),
                            format!(
                                "{text:?} leaves the repository; give a relative path inside it"
                            ),
                        );
                    }
                    normalize(Path::new(text))
                }
            };

            let schedule = self.probe_schedule(
                [
                    raw.schedule.as_deref(),
                    raw.timezone.as_deref(),
                    raw.jitter.as_deref(),
                ],
                &path,
                defaults,
            );

            let timeout = match raw.timeout.as_deref() {
                None => defaults.timeout,
                Some(text) => self.duration(Some(text), DEFAULT_TIMEOUT, &at("timeout"), false),
            };

            let labels = raw.labels.unwrap_or_default();
            for label in labels.keys() {
                let label_path = path_plus(&path, &[key("labels"), key(label)]);
                if let Err(message) = check_label_name(label) {
                    self.error_at_key(&label_path, message);
                }
            }

            let Some(layer) = layer else {
                continue;
            };
            let repo_dir = repos
                .iter()
                .find(|candidate| candidate.name == repo)
                .and_then(|candidate| match &candidate.source {
                    RepoSource::Path(dir) => Some(dir.clone()),
                    RepoSource::Remote { .. } => None,
                });
            let spec = ProbeSpec {
                name,
                layer,
                repo,
                path: probe_path,
                schedule,
                timeout,
                run_on_change: raw.run_on_change.unwrap_or(true),
                labels,
                config_dir: self.config_dir.clone(),
                repo_dir,
                fields: table,
                one_shot: false,
            };
            match self.layers.check(&spec) {
                Ok(()) => {}
                Err(errors) => {
                    for FieldError {
                        key: field,
                        message,
                    } in errors
                    {
                        let mut field_path = path_plus(&path, &parse_key_path(&field));
                        // An unknown-key error names the key in its message; point at it.
                        let target = match unknown_field(&message) {
                            Some(unknown) => {
                                if field_path.last() != Some(&Seg::Key(unknown.clone())) {
                                    field_path.push(Seg::Key(unknown));
                                }
                                Target::Key
                            }
                            None => Target::Value,
                        };
                        let message = unknown_key_message(&message, PROBE_COMMON_KEYS);
                        self.report(&field_path, target, message);
                    }
                }
            }
            if self.problems.len() > errors_before {
                continue;
            }
            probes.push(spec);
        }
        probes
    }
}

impl Loader<'_> {
    /// The probe's schedule in its zone with its jitter: each from the probe,
    /// else from `[defaults]`.
    fn probe_schedule(
        &mut self,
        [schedule, timezone, jitter]: [Option<&str>; 3],
        path: &[Seg],
        defaults: &Defaults,
    ) -> Option<Schedule> {
        let at = |name: &str| path_plus(path, &[key(name)]);
        let timezone = match timezone {
            None => Some(defaults.timezone),
            Some(text) => parse_timezone(text)
                .map_err(|message| self.error(&at("timezone"), message))
                .ok(),
        };
        let jitter = match jitter {
            None => defaults
                .jitter
                .map(|jitter| (jitter, vec![key("defaults"), key("jitter")])),
            Some(text) => Some((
                self.duration(Some(text), "0s", &at("jitter"), true),
                at("jitter"),
            )),
        };
        let schedule = match schedule {
            None => defaults.schedule.clone(),
            Some(text) if is_no_schedule(text) => None,
            Some(text) => Schedule::parse(text)
                .map_err(|message| self.error(&at("schedule"), message))
                .ok(),
        }?
        .in_zone(timezone?);
        let interval = schedule.shortest_interval(chrono::Utc::now());
        let jitter = match jitter {
            None => default_jitter(interval),
            Some((jitter, jitter_path)) => {
                if let Some(interval) = interval.filter(|interval| jitter >= *interval) {
                    self.error(
                        &jitter_path,
                        format!(
                            "jitter {} is not shorter than the interval of {:?} ({}); runs would overlap",
                            crate::model::duration::compact(jitter),
                            schedule.text,
                            crate::model::duration::compact(interval)
                        ),
                    );
                }
                jitter
            }
        };
        Some(schedule.with_jitter(jitter))
    }
}

pub(super) fn check_label_name(label: &str) -> Result<(), String> {
    let mut chars = label.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "{label:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        ));
    }
    if label.starts_with("__") {
        return Err(format!(
            "label names starting with __ are reserved by Prometheus: {label:?}"
        ));
    }
    if RESERVED_LABELS.contains(&label) {
        return Err(format!(
            "label {label:?} is set by driftwatch itself; reserved: {}",
            RESERVED_LABELS.join(", ")
        ));
    }
    Ok(())
}
