//! The identity of a probe instance. A configured probe (`probe`, its name)
//! covers one or more roots: a Terraform probe with `roots = ["envs/*"]` has
//! one instance per matching directory, most layers have one instance whose
//! root is "". State, metrics, history, the scheduler's busy set and the API
//! all key instances by this one type; its text form (`name` or `name:root`)
//! is what the API, logs and history show.

use std::fmt;

/// One probe instance: the configured probe name and one of its roots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId {
    /// The configured probe name.
    pub probe: String,
    /// The root inside the probe's path ("" for single-root layers).
    pub root: String,
}

impl InstanceId {
    pub fn new(probe: impl Into<String>, root: impl Into<String>) -> InstanceId {
        InstanceId {
            probe: probe.into(),
            root: root.into(),
        }
    }

    /// Parses the text form: everything before the first `:` is the probe
    /// name (names cannot contain `:`), the rest the root.
    pub fn parse(text: &str) -> InstanceId {
        match text.split_once(':') {
            Some((probe, root)) => InstanceId::new(probe, root),
            None => InstanceId::new(text, ""),
        }
    }
}

impl fmt::Display for InstanceId {
    /// `name` for a root-less instance, else `name:root`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.root.is_empty() {
            f.write_str(&self.probe)
        } else {
            write!(f, "{}:{}", self.probe, self.root)
        }
    }
}

/// An instance dropped because its probe's latest root listing no longer
/// has its root (e.g. a Terraform root deleted in a new commit).
#[derive(Debug, Clone)]
pub struct Removal {
    pub instance: InstanceId,
    pub layer: String,
    /// The commit whose listing no longer has the root.
    pub commit: String,
    pub at: chrono::DateTime<chrono::Utc>,
    /// Whether a drift episode was open when the instance went away.
    pub was_drifted: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        for (probe, root, text) in [
            ("web", "", "web"),
            ("tf", "envs/a", "tf:envs/a"),
            ("tf", "envs/a@blue", "tf:envs/a@blue"),
            ("tf", "odd:root", "tf:odd:root"),
        ] {
            let id = InstanceId::new(probe, root);
            assert_eq!(id.to_string(), text);
            assert_eq!(InstanceId::parse(text), id);
        }
    }
}
