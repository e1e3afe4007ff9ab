//! The documentation as a newcomer meets it: a README short enough to read,
//! with the two commands first, and links (README.md, docs/, probes/) that
//! all lead somewhere: every relative link names a file of the repository,
//! and every `#anchor` a heading of that file, slugged as GitHub does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown files the links are checked in.
fn markdown_files() -> Vec<PathBuf> {
    let root = repo_root();
    let mut files = vec![root.join("README.md"), root.join("probes/README.md")];
    for name in ["CHANGELOG.md"] {
        if root.join(name).exists() {
            files.push(root.join(name));
        }
    }
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    files.extend(pages);
    files
}

/// Text outside fenced code blocks, line by line.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if !fenced {
            lines.push(line);
        }
    }
    lines
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces
/// as hyphens; a repeated heading gets `-1`, `-2`, ….
fn slug(heading: &str) -> String {
    let heading = heading.trim().to_lowercase();
    heading
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut anchors = BTreeSet::new();
    for line in prose_lines(text) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let base = slug(&line[hashes..]);
            let count = seen.entry(base.clone()).or_default();
            anchors.insert(match *count {
                0 => base.clone(),
                n => format!("{base}-{n}"),
            });
            *count += 1;
        }
    }
    anchors
}

/// Relative link targets (`[text](target)`) outside code, with their line.
fn links(text: &str) -> Vec<(usize, String)> {
    let link = regex::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let mut found = Vec::new();
    let mut fenced = false;
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Inline code may hold brackets that are not links.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join("");
        for capture in link.captures_iter(&prose) {
            let target = capture[1].to_string();
            if !target.contains("://") && !target.starts_with("mailto:") {
                found.push((index + 1, target));
            }
        }
    }
    found
}

/// The broken links of `file`, each as `name:line: target: why`.
fn broken_links(file: &Path, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut broken = Vec::new();
    for (line, target) in links(&text) {
        let (path, anchor) = target.split_once('#').unwrap_or((target.as_str(), ""));
        let resolved = match path {
            "" => file.to_path_buf(),
            path => file.parent().unwrap().join(path),
        };
        if !resolved.exists() {
            broken.push(format!("{name}:{line}: {target}: no such file"));
        } else if !anchor.is_empty() {
            let text = std::fs::read_to_string(&resolved).unwrap_or_default();
            if !anchors(&text).contains(anchor) {
                broken.push(format!("{name}:{line}: {target}: no heading #{anchor}"));
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_in_the_docs_names_a_file_and_a_heading() {
    let root = repo_root();
    let broken: Vec<String> = markdown_files()
        .iter()
        .flat_map(|file| {
            broken_links(
                file,
                &file.strip_prefix(&root).unwrap().display().to_string(),
            )
        })
        .collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_finds_a_missing_file_and_a_missing_heading() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("page.md");
    let other = dir.path().join("other.md");
    std::fs::write(&other, "# Other\n\n## Deploy it\n\n## Deploy it\n").unwrap();
    std::fs::write(
        &page,
        "# Page\n\n[a](other.md#deploy-it) [b](other.md#deploy-it-1) [c](#page)\n\
         [d](missing.md) [e](other.md#deploy) `[f](in-code.md)`\n\
         ```\n[g](in-a-fence.md)\n```\n",
    )
    .unwrap();
    assert_eq!(
        broken_links(&page, "page.md"),
        [
            "page.md:4: missing.md: no such file",
            "page.md:4: other.md#deploy: no heading #deploy"
        ],
    );
}

#[test]
fn the_readme_is_short_starts_with_the_two_commands_and_links_every_page() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.len() < 15 * 1024,
        "README.md is {} bytes; keep it under 15 KiB: put the topic in docs/ and link it",
        readme.len()
    );
    // The two commands come first: in the first fenced block, before
    // "Watch your own repo". scripts/test is also CI's entry point (.ci/run).
    let first_block = readme.split("```").nth(1).expect("a code block");
    for command in ["scripts/demo", "scripts/test"] {
        assert!(
            first_block.contains(command),
            "README's first code block lacks {command}"
        );
    }
    let watch = readme
        .find("## Watch your own repo")
        .expect("a 'Watch your own repo' section");
    assert!(readme.find("scripts/test").unwrap() < watch);
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(
        ci.contains("scripts/test"),
        ".ci/run no longer runs scripts/test"
    );
    // Every page of docs/ is reachable from the README.
    for page in markdown_files() {
        let rel = page.strip_prefix(&root).unwrap().display().to_string();
        if rel.starts_with("docs/") {
            assert!(
                readme.contains(&format!("]({rel}")),
                "README.md does not link {rel}"
            );
        }
    }
}

#[test]
fn the_http_api_page_names_every_event_kind_and_read_route() {
    let page = std::fs::read_to_string(repo_root().join("docs/http-api.md")).unwrap();
    for kind in driftwatch::history::EventKind::ALL {
        assert!(
            page.contains(&format!("`{}`", kind.as_str())),
            "docs/http-api.md does not name the event kind {}",
            kind.as_str()
        );
    }
    let protected = page.split("## Read protection").nth(1).unwrap_or_default();
    for route in [
        "/api/v1/probes",
        "/api/v1/acks",
        "/api/v1/events",
        "/api/v1/episodes",
    ] {
        assert!(
            protected.contains(&format!("`{route}")),
            "the read protection section does not list {route}"
        );
    }
}
