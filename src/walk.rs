//! The one directory walker every layer uses to read a checkout (Kubernetes
//! manifests, Terraform roots, Ansible playbooks). A repository is input we
//! do not control: a symlink may point at `/`, at a directory outside the
//! checkout, or back at its own parent. So the walk (on `walkdir`) follows a
//! link only while its target stays inside the boundary (the checkout), and
//! a link leading out, a symlink loop, too many files or too deep a tree is
//! an error that names the place, never a silent partial read. It is
//! blocking file I/O: async callers use [`entries_blocking`].

use std::path::{Path, PathBuf};

/// At most this many files under one walk.
pub const MAX_FILES: usize = 20_000;
/// At most this many directory levels below the walk's start.
pub const MAX_DEPTH: usize = 32;

/// One file or directory found by a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path as walked: the start directory joined with `relative`.
    pub path: PathBuf,
    /// Relative to the start directory.
    pub relative: PathBuf,
    pub is_dir: bool,
}

/// Why a walk stopped. Paths are relative to the start directory where
/// they are inside it, so messages do not depend on where checkouts live.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("symlink {link} leads outside the checkout (to {target})")]
    Escapes { link: PathBuf, target: PathBuf },
    #[error("symlink loop: {link} leads back to {ancestor}")]
    Loop { link: PathBuf, ancestor: PathBuf },
    #[error("more than {max} files under {dir}; narrow the probe's path", max = MAX_FILES)]
    TooManyFiles { dir: PathBuf },
    #[error("{path} is more than {max} directories deep", max = MAX_DEPTH)]
    TooDeep { path: PathBuf },
    #[error("{dir} is outside the checkout")]
    StartOutside { dir: PathBuf },
    #[error("cannot read {path}: {message}")]
    Io { path: PathBuf, message: String },
}

/// Every file and directory under `dir` (not `dir` itself), sorted by path,
/// skipping hidden entries (`.git`, `.terraform`, …). Symlinks are followed
/// while their targets stay inside `boundary` (both are canonicalized first).
pub fn entries(dir: &Path, boundary: &Path) -> Result<Vec<Entry>, WalkError> {
    let io = |path: &Path, err: std::io::Error| WalkError::Io {
        path: path.to_path_buf(),
        message: err.to_string(),
    };
    let boundary = boundary.canonicalize().map_err(|e| io(boundary, e))?;
    let start = dir.canonicalize().map_err(|e| io(dir, e))?;
    if !start.starts_with(&boundary) {
        return Err(WalkError::StartOutside {
            dir: dir.to_path_buf(),
        });
    }
    let relative = |path: &Path| path.strip_prefix(dir).unwrap_or(path).to_path_buf();
    let mut found = Vec::new();
    let mut files = 0usize;
    let mut walker = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .min_depth(1)
        .max_depth(MAX_DEPTH + 1)
        .sort_by_file_name()
        .into_iter();
    while let Some(next) = walker.next() {
        let entry = match next {
            Ok(entry) => entry,
            Err(err) => {
                let path = err.path().map(relative).unwrap_or_default();
                if let Some(ancestor) = err.loop_ancestor() {
                    // `root -> /` is a loop to walkdir (/ is an ancestor), but
                    // what matters is that it leaves the checkout.
                    let target = ancestor.canonicalize().unwrap_or(ancestor.to_path_buf());
                    if !target.starts_with(&boundary) {
                        return Err(WalkError::Escapes { link: path, target });
                    }
                    return Err(WalkError::Loop {
                        link: path,
                        ancestor: dotted(relative(ancestor)),
                    });
                }
                return Err(WalkError::Io {
                    path,
                    message: err
                        .io_error()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| err.to_string()),
                });
            }
        };
        let is_dir = entry.file_type().is_dir();
        if entry.file_name().to_string_lossy().starts_with('.') {
            if is_dir {
                walker.skip_current_dir();
            }
            continue;
        }
        // Checked before the walker descends into a linked directory.
        if entry.path_is_symlink() {
            let target = entry
                .path()
                .canonicalize()
                .map_err(|e| io(entry.path(), e))?;
            if !target.starts_with(&boundary) {
                return Err(WalkError::Escapes {
                    link: relative(entry.path()),
                    target,
                });
            }
        }
        if entry.depth() > MAX_DEPTH {
            return Err(WalkError::TooDeep {
                path: relative(entry.path()),
            });
        }
        if !is_dir {
            files += 1;
            if files > MAX_FILES {
                return Err(WalkError::TooManyFiles {
                    dir: dir.to_path_buf(),
                });
            }
        }
        found.push(Entry {
            path: entry.path().to_path_buf(),
            relative: relative(entry.path()),
            is_dir,
        });
    }
    Ok(found)
}

/// "." for the start directory itself, so a message never names nothing.
fn dotted(path: PathBuf) -> PathBuf {
    if path.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        path
    }
}

/// The files under `dir` whose names end with one of `suffixes`.
pub fn files_with_suffix(
    dir: &Path,
    boundary: &Path,
    suffixes: &[&str],
) -> Result<Vec<Entry>, WalkError> {
    Ok(entries(dir, boundary)?
        .into_iter()
        .filter(|entry| {
            !entry.is_dir
                && entry
                    .path
                    .file_name()
                    .map(|name| name.to_string_lossy())
                    .is_some_and(|name| suffixes.iter().any(|s| name.ends_with(s)))
        })
        .collect())
}

/// [`entries`] on the blocking thread pool, for async callers.
pub async fn entries_blocking(dir: PathBuf, boundary: PathBuf) -> Result<Vec<Entry>, WalkError> {
    tokio::task::spawn_blocking(move || entries(&dir, &boundary))
        .await
        .unwrap_or_else(|err| {
            Err(WalkError::Io {
                path: PathBuf::new(),
                message: format!("walker task failed: {err}"),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let checkout = tmp.path().join("checkout");
        std::fs::create_dir_all(checkout.join("app/base")).unwrap();
        std::fs::write(checkout.join("app/a.yaml"), "a").unwrap();
        std::fs::write(checkout.join("app/base/b.yaml"), "b").unwrap();
        std::fs::create_dir_all(checkout.join("app/.git")).unwrap();
        std::fs::write(checkout.join("app/.git/c.yaml"), "c").unwrap();
        (tmp, checkout)
    }

    fn names(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| e.relative.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn walks_sorted_skipping_hidden() {
        let (_tmp, checkout) = tree();
        let found = entries(&checkout.join("app"), &checkout).unwrap();
        assert_eq!(names(&found), ["a.yaml", "base", "base/b.yaml"]);
        assert!(found[1].is_dir && !found[0].is_dir);
    }

    #[test]
    fn links_inside_the_checkout_are_followed() {
        let (_tmp, checkout) = tree();
        std::fs::create_dir_all(checkout.join("shared")).unwrap();
        std::fs::write(checkout.join("shared/s.yaml"), "s").unwrap();
        symlink("../shared", checkout.join("app/shared")).unwrap();
        let found = files_with_suffix(&checkout.join("app"), &checkout, &[".yaml"]).unwrap();
        assert_eq!(names(&found), ["a.yaml", "base/b.yaml", "shared/s.yaml"]);
    }

    #[test]
    fn a_loop_is_an_error_naming_the_link() {
        let (_tmp, checkout) = tree();
        symlink(".", checkout.join("app/loop")).unwrap();
        let err = entries(&checkout.join("app"), &checkout).unwrap_err();
        assert!(matches!(err, WalkError::Loop { .. }), "{err}");
        assert_eq!(err.to_string(), "symlink loop: loop leads back to .");
    }

    #[test]
    fn a_link_to_the_root_is_an_error_naming_the_link() {
        let (_tmp, checkout) = tree();
        symlink("/", checkout.join("app/root")).unwrap();
        let err = entries(&checkout.join("app"), &checkout).unwrap_err();
        assert_eq!(
            err.to_string(),
            "symlink root leads outside the checkout (to /)"
        );
    }

    #[test]
    fn a_link_to_a_directory_outside_the_checkout_is_an_error() {
        let (tmp, checkout) = tree();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.yaml"), "kind: Secret").unwrap();
        symlink(&outside, checkout.join("app/base/elsewhere")).unwrap();
        let err = entries(&checkout.join("app"), &checkout).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "symlink base/elsewhere leads outside the checkout (to {})",
                outside.canonicalize().unwrap().display()
            )
        );
        // A link to a file outside is refused the same way.
        std::fs::remove_file(checkout.join("app/base/elsewhere")).unwrap();
        symlink(outside.join("secret.yaml"), checkout.join("app/x.yaml")).unwrap();
        let err = entries(&checkout.join("app"), &checkout).unwrap_err();
        assert!(matches!(err, WalkError::Escapes { .. }), "{err}");
        // The start itself must be inside.
        let err = entries(&outside, &checkout).unwrap_err();
        assert!(matches!(err, WalkError::StartOutside { .. }), "{err}");
    }

    #[test]
    fn depth_and_file_count_are_capped() {
        let (_tmp, checkout) = tree();
        let mut deep = checkout.join("deep");
        for level in 0..=MAX_DEPTH {
            deep = deep.join(format!("d{level}"));
        }
        std::fs::create_dir_all(&deep).unwrap();
        let err = entries(&checkout.join("deep"), &checkout).unwrap_err();
        assert!(matches!(err, WalkError::TooDeep { .. }), "{err}");

        let many = checkout.join("many");
        std::fs::create_dir_all(&many).unwrap();
        for i in 0..=MAX_FILES {
            std::fs::write(many.join(format!("f{i}")), "").unwrap();
        }
        let err = entries(&many, &checkout).unwrap_err();
        assert!(matches!(err, WalkError::TooManyFiles { .. }), "{err}");
        std::fs::remove_file(many.join("f0")).unwrap();
        assert_eq!(entries(&many, &checkout).unwrap().len(), MAX_FILES);
    }
}
