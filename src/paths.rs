//! Path rules shared by config validation and probes.

use std::path::{Component, Path};

/// True when a configured relative path would leave the directory it is
/// relative to (absolute, or climbing with `..`).
pub fn escapes(path: &Path) -> bool {
    let mut depth: i64 = 0;
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return true,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_escaping_paths() {
        assert!(escapes(Path::new("../x")));
        assert!(escapes(Path::new("a/../../x")));
        assert!(escapes(Path::new("/etc")));
        assert!(!escapes(Path::new("a/../b")));
        assert!(!escapes(Path::new("")));
        assert!(!escapes(Path::new("./infra")));
    }
}
