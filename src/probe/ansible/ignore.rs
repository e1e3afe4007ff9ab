//! `[[probe.ignore]]` for Ansible: a changed task on a host that a rule
//! matches is expected churn (a handler that always restarts, a timestamp
//! file), not drift. Rules match by host and task-name globs; a matched
//! change is still reported, as ignored, so nothing is silently lost.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::probe::FieldError;

/// `[[probe.ignore]]` of an Ansible probe: changed tasks that are not drift
/// (see "Ignore rules" in [Ansible](ansible.md)). A rule gives `host`, `task`
/// or both, and matches a changed task when every glob it gives matches.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IgnoreRuleConfig {
    /// Glob on the inventory host name (`web-*`).
    ///
    /// Default: none: any host.
    #[serde(default)]
    pub host: Option<String>,
    /// Glob on the task name as ansible prints it, role prefix included
    /// (`common : restart*`).
    ///
    /// Default: none: any task.
    #[serde(default)]
    pub task: Option<String>,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct IgnoreRule {
    /// The rule's config path, `ignore[N]`, shown beside what it ignored.
    pub key: String,
    host: Option<glob::Pattern>,
    task: Option<glob::Pattern>,
}

impl IgnoreRule {
    /// Validates one configured rule; `key` is its config path (`ignore[2]`).
    pub fn build(key: &str, config: &IgnoreRuleConfig) -> Result<IgnoreRule, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut pattern = |field: &str, value: &Option<String>| -> Option<glob::Pattern> {
            let text = value.as_ref()?;
            if text.trim().is_empty() {
                errors.push(FieldError::new(
                    format!("{key}.{field}"),
                    "must not be empty; leave it out to match any",
                ));
                return None;
            }
            glob::Pattern::new(text)
                .map_err(|err| {
                    errors.push(FieldError::new(
                        format!("{key}.{field}"),
                        format!("invalid glob {text:?}: {err}"),
                    ))
                })
                .ok()
        };
        let host = pattern("host", &config.host);
        let task = pattern("task", &config.task);
        if config.host.is_none() && config.task.is_none() {
            errors.push(FieldError::new(
                key,
                "give `host`, `task` or both (a rule matching everything would hide all drift)",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(IgnoreRule {
            key: key.to_string(),
            host,
            task,
        })
    }

    /// True when the rule covers `task` (with its role prefix) on `host`.
    pub fn matches(&self, host: &str, task: &str) -> bool {
        let hit = |pattern: &Option<glob::Pattern>, value: &str| {
            pattern.as_ref().map_or(true, |p| p.matches(value))
        };
        hit(&self.host, host) && hit(&self.task, task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(host: Option<&str>, task: Option<&str>) -> Result<IgnoreRule, Vec<String>> {
        let config = IgnoreRuleConfig {
            host: host.map(String::from),
            task: task.map(String::from),
        };
        IgnoreRule::build("ignore[0]", &config).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| format!("{}: {}", e.key, e.message))
                .collect()
        })
    }

    #[test]
    fn host_and_task_globs_both_have_to_match() {
        let restart = rule(None, Some("common : restart*")).unwrap();
        let web_only = rule(Some("web-*"), Some("common : restart*")).unwrap();
        let db_hosts = rule(Some("db[0-9]"), None).unwrap();
        // (host, task, restart, web_only, db_hosts)
        let table = [
            ("web-1", "common : restart nginx", true, true, false),
            ("db1", "common : restart nginx", true, false, true),
            ("db1", "copy motd", false, false, true),
            ("db10", "copy motd", false, false, false),
            ("web-1", "restart nginx", false, false, false),
            ("web-1", "common : Restart nginx", false, false, false),
            ("web-1", "app : common : restart", false, false, false),
        ];
        for (host, task, a, b, c) in table {
            assert_eq!(restart.matches(host, task), a, "{host} {task}");
            assert_eq!(web_only.matches(host, task), b, "{host} {task}");
            assert_eq!(db_hosts.matches(host, task), c, "{host} {task}");
        }
    }

    #[test]
    fn rules_are_validated() {
        assert_eq!(
            rule(None, None).unwrap_err(),
            ["ignore[0]: give `host`, `task` or both (a rule matching everything would hide all drift)"]
        );
        let errors = rule(Some("web-[1"), Some(" ")).unwrap_err();
        assert!(
            errors[0].starts_with("ignore[0].host: invalid glob \"web-[1\""),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("ignore[0].task: must not be empty"),
            "{errors:?}"
        );
    }
}
