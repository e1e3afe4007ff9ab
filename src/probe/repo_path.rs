//! The paths a probe's config names inside the checkout, resolved and
//! checked for `validate`.

use std::path::{Path, PathBuf};

/// A path a probe's config names inside the checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPath {
    /// The key that names it, relative to the probe table, as
    /// [`FieldError`] keys are: `var_files[0]`, `inventory`, `render[2]`.
    pub key: String,
    /// As a person finds it: relative to the probe's path, with the root
    /// when the layer reads it per root (`envs/a/prod.tfvars`).
    pub shown: String,
    /// Where it is in the checkout; `None` without a checkout at hand.
    pub full: Option<PathBuf>,
    pub kind: PathKind,
}

/// What a [`RepoPath`] must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    File,
    Directory,
    /// A file or a directory (an Ansible inventory).
    Entry,
    /// An executable file (a program run from the checkout).
    Program,
    /// A Helm chart: a directory holding `Chart.yaml`, or a packaged chart file.
    Chart,
}

impl RepoPath {
    /// `key` naming `written` (relative to `base`, a directory relative to
    /// the probe's path), resolved under `probe_dir` when there is one.
    pub fn new(
        key: impl Into<String>,
        probe_dir: Option<&Path>,
        base: &Path,
        written: &str,
        kind: PathKind,
    ) -> RepoPath {
        let relative: PathBuf = base
            .join(written)
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect();
        RepoPath {
            key: key.into(),
            shown: relative.display().to_string(),
            full: probe_dir.map(|dir| dir.join(&relative)),
            kind,
        }
    }

    /// It relative to the repository root, for a probe at `probe_path`.
    pub fn in_repo(&self, probe_path: &Path) -> String {
        probe_path.join(&self.shown).display().to_string()
    }

    /// What is wrong with it in the checkout of a probe at `probe_path`, if
    /// anything (`None` when it is fine or there is no checkout to look in).
    pub fn problem(&self, probe_path: &Path) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        let full = self.full.as_ref()?;
        let shown = self.in_repo(probe_path);
        let missing = || Some(format!("{shown:?} does not exist in the checkout"));
        let Ok(meta) = std::fs::metadata(full) else {
            return missing();
        };
        match self.kind {
            PathKind::File if !meta.is_file() => {
                Some(format!("{shown:?} is not a file in the checkout"))
            }
            PathKind::Directory if !meta.is_dir() => {
                Some(format!("{shown:?} is not a directory in the checkout"))
            }
            PathKind::Chart if meta.is_dir() && !full.join("Chart.yaml").is_file() => Some(format!(
                "{shown:?} holds no Chart.yaml, so helm cannot read it as a chart; name the chart's own directory"
            )),
            PathKind::Program if !meta.is_file() => {
                Some(format!("{shown:?} is not a file in the checkout"))
            }
            PathKind::Program if meta.permissions().mode() & 0o111 == 0 => Some(format!(
                "{shown:?} is not executable; make it so (chmod +x) and commit that"
            )),
            _ => None,
        }
    }
}
