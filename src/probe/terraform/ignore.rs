//! `[[probe.ignore]]` rules for Terraform: an `address` glob over resource
//! addresses (`module.*.aws_autoscaling_group.*`) and optional `attributes`
//! paths (`desired_capacity`, `tags.LastScaledAt`). Without `attributes` a
//! rule ignores every change to the matching resources; with them, only those
//! attributes (and everything below them).
//!
//! The glob is our own rather than the `glob` crate's: addresses are full of
//! `[0]` and `["key"]`, which a shell glob would read as character classes.
//! Here `*` matches any run of characters (dots included), `?` one character,
//! and everything else matches itself.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::probe::FieldError;

/// `[[probe.ignore]]` of a Terraform probe: changes left out of the verdict
/// (see "Ignore rules" in [Terraform / OpenTofu](terraform.md)).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IgnoreRuleConfig {
    /// Glob on the resource address (`module.*.aws_autoscaling_group.*`): `*`
    /// any run of characters, dots included; `?` one character; `[0]` and
    /// `["key"]` are literal.
    ///
    /// Required.
    pub address: String,
    /// Paths inside the resource (`desired_capacity`, `tags.LastScaledAt`,
    /// `ingress[*].cidr_blocks`), each covering everything below it.
    ///
    /// Default: `[]`: every change to the resource is ignored.
    #[serde(default)]
    pub attributes: Vec<String>,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct IgnoreRule {
    /// `ignore[N]` as it appears in config errors and warnings.
    pub key: String,
    pub address: String,
    pub attributes: Vec<String>,
}

impl IgnoreRule {
    /// Checks one configured rule; `key` is its config path (`ignore[2]`).
    pub fn build(key: &str, config: &IgnoreRuleConfig) -> Result<IgnoreRule, Vec<FieldError>> {
        let mut errors = Vec::new();
        if config.address.trim().is_empty() {
            errors.push(FieldError::new(
                format!("{key}.address"),
                "must not be empty; use \"*\" for every resource",
            ));
        }
        for (index, path) in config.attributes.iter().enumerate() {
            if path.trim().is_empty() || path.starts_with('.') || path.ends_with('.') {
                errors.push(FieldError::new(
                    format!("{key}.attributes[{index}]"),
                    format!("{path:?} is not an attribute path (e.g. \"tags.LastScaledAt\")"),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(IgnoreRule {
            key: key.to_string(),
            address: config.address.clone(),
            attributes: config.attributes.clone(),
        })
    }

    pub fn matches_address(&self, address: &str) -> bool {
        glob_match(&self.address, address)
    }

    /// Whether the rule ignores the flattened attribute `path` (`a.b[0].c`):
    /// an attribute path names itself and everything below it.
    pub fn ignores_attribute(&self, path: &str) -> bool {
        if self.attributes.is_empty() {
            return true;
        }
        let boundaries = path
            .char_indices()
            .filter(|(_, c)| *c == '.' || *c == '[')
            .map(|(i, _)| i)
            .chain(std::iter::once(path.len()));
        boundaries
            .filter(|&end| end > 0)
            .any(|end| self.attributes.iter().any(|a| glob_match(a, &path[..end])))
    }
}

/// `*` any run of characters, `?` one character, the rest literal.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(address: &str, attributes: &[&str]) -> IgnoreRule {
        IgnoreRule::build(
            "ignore[0]",
            &IgnoreRuleConfig {
                address: address.into(),
                attributes: attributes.iter().map(|s| s.to_string()).collect(),
            },
        )
        .unwrap()
    }

    #[test]
    fn address_globs() {
        let asg = rule("module.*.aws_autoscaling_group.*", &[]);
        for (address, expected) in [
            ("module.web.aws_autoscaling_group.this", true),
            ("module.web[\"a\"].aws_autoscaling_group.this[0]", true),
            ("module.a.module.b.aws_autoscaling_group.x", true),
            ("aws_autoscaling_group.this", false),
            ("module.web.aws_launch_template.this", false),
        ] {
            assert_eq!(asg.matches_address(address), expected, "{address}");
        }
        // Brackets are literal, not character classes.
        let indexed = rule("aws_instance.web[0]", &[]);
        assert!(indexed.matches_address("aws_instance.web[0]"));
        assert!(!indexed.matches_address("aws_instance.web0"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn attribute_paths_cover_their_subtree() {
        let r = rule(
            "*",
            &["tags.LastScaledAt", "desired_capacity", "ingress[*].cidr"],
        );
        for (path, expected) in [
            ("desired_capacity", true),
            ("tags.LastScaledAt", true),
            ("tags.Name", false),
            ("tags", false),
            ("desired_capacity_type", false),
            ("ingress[0].cidr", true),
            ("ingress[3].cidr[1]", true),
            ("ingress[0].port", false),
        ] {
            assert_eq!(r.ignores_attribute(path), expected, "{path}");
        }
        assert!(rule("*", &[]).ignores_attribute("anything.at[0].all"));
        let whole_tags = rule("*", &["tags"]);
        assert!(whole_tags.ignores_attribute("tags.Name"));
        assert!(whole_tags.ignores_attribute("tags"));
    }

    #[test]
    fn bad_rules_are_field_errors() {
        let err = IgnoreRule::build(
            "ignore[1]",
            &IgnoreRuleConfig {
                address: " ".into(),
                attributes: vec!["".into(), "tags.".into()],
            },
        )
        .unwrap_err();
        let keys: Vec<&str> = err.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "ignore[1].address",
                "ignore[1].attributes[0]",
                "ignore[1].attributes[1]"
            ]
        );
    }
}
