//! The import graph of `src/` and `crates/*/src`, drawn from the code's own
//! `crate::`/`super::`/`self::` paths (test modules excluded): no circle
//! between files, and no import from a lower layer into a higher one. The
//! layers are read from the map at the top of `src/lib.rs`, so the map the
//! next engineer reads and the rule this test checks are the same text.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path inside one crate, e.g. `["probe", "kubernetes"]`.
type ModPath = Vec<String>;

struct Crate {
    name: String,
    /// Module path → file (relative to the repository root).
    files: BTreeMap<ModPath, PathBuf>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load_crate(name: &str, src: &Path) -> Crate {
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(src) {
        let entry = entry.expect("readable source tree");
        let path = entry.path();
        if path.extension().map_or(true, |e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(src).unwrap();
        // `main.rs` and `bin/` are crates of their own (they reach the library
        // through its name, not `crate::`); counted here, `main.rs` would take
        // `lib.rs`'s place as the crate root.
        if relative == Path::new("main.rs") || relative.starts_with("bin") {
            continue;
        }
        let mut parts: Vec<String> = relative
            .with_extension("")
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if matches!(
            parts.last().map(String::as_str),
            Some("mod" | "lib" | "main")
        ) {
            parts.pop();
        }
        // Test-only files (`foo_tests.rs`, `tests.rs`) are not part of the graph.
        if parts
            .last()
            .is_some_and(|p| p == "tests" || p.ends_with("_tests"))
        {
            continue;
        }
        files.insert(parts, path.strip_prefix(root()).unwrap().to_path_buf());
    }
    Crate {
        name: name.to_string(),
        files,
    }
}

/// The code before the first `#[cfg(test)]`, without comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the file names through `crate::`, `super::` or `self::`,
/// with `use a::{b, c::d}` groups expanded.
fn named_paths(module: &ModPath, is_dir_module: bool, text: &str) -> Vec<ModPath> {
    let pattern =
        regex::Regex::new(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)(::\{([^;]*?)\})?")
            .unwrap();
    let mut out = Vec::new();
    for capture in pattern.captures_iter(text) {
        let mut segments: Vec<String> = capture[2]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let mut start: ModPath = match &capture[1] {
            "crate" => Vec::new(),
            "self" => module.clone(),
            _ => {
                // `super` of a file module `a/b.rs` is `a`; the same for `a/b/mod.rs`.
                let mut base = module.clone();
                base.pop();
                while segments.first().is_some_and(|s| s == "super") {
                    segments.remove(0);
                    base.pop();
                }
                base
            }
        };
        let _ = is_dir_module;
        start.extend(segments);
        if let Some(group) = capture.get(4) {
            for item in group.as_str().split(',') {
                let item = item.split(" as ").next().unwrap_or("");
                let item: String = item.chars().filter(|c| !"{}".contains(*c)).collect();
                let mut path = start.clone();
                path.extend(
                    item.trim()
                        .split("::")
                        .filter(|s| !s.is_empty() && *s != "self")
                        .map(str::to_string),
                );
                out.push(path);
            }
        }
        out.push(start);
    }
    out
}

/// The module a path lands in: its longest prefix that is a file.
fn resolve<'a>(krate: &'a Crate, path: &ModPath) -> Option<&'a ModPath> {
    (0..=path.len())
        .rev()
        .find_map(|n| krate.files.get_key_value(&path[..n]).map(|(k, _)| k))
}

fn edges(krate: &Crate) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    let mut edges: BTreeMap<ModPath, BTreeSet<ModPath>> = BTreeMap::new();
    for (module, file) in &krate.files {
        let text = std::fs::read_to_string(root().join(file)).expect("readable source");
        let is_dir = file.ends_with("mod.rs") || file.ends_with("lib.rs");
        let entry = edges.entry(module.clone()).or_default();
        for path in named_paths(module, is_dir, &code(&text)) {
            if let Some(target) = resolve(krate, &path) {
                if target != module && !target.is_empty() {
                    entry.insert(target.clone());
                }
            }
        }
    }
    edges
}

/// Strongly connected components with more than one file (Tarjan).
fn circles(edges: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<ModPath, BTreeSet<ModPath>>,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on_stack: BTreeSet<&'a ModPath>,
        found: Vec<Vec<ModPath>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a ModPath) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            let edges = self.edges;
            for w in edges.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    self.on_stack.remove(w);
                    component.push(w.clone());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.found
}

/// The layer map of `src/lib.rs`: lines `//! N. title: [`a`], [`b`] …`,
/// lowest first. Returns top-level module → layer number.
fn layer_map() -> BTreeMap<String, usize> {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let item = regex::Regex::new(r"\[`([a-z_]+)`\]").unwrap();
    let line = regex::Regex::new(r"^//! (\d+)\. ").unwrap();
    let mut map = BTreeMap::new();
    for text in lib.lines() {
        if let Some(number) = line.captures(text) {
            let layer: usize = number[1].parse().unwrap();
            for module in item.captures_iter(text) {
                map.insert(module[1].to_string(), layer);
            }
        }
    }
    map
}

fn show(krate: &Crate, module: &ModPath) -> String {
    krate.files[module].display().to_string()
}

#[test]
fn import_graph_has_no_circle() {
    let mut crates = vec![load_crate("driftwatch", &root().join("src"))];
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("src").is_dir() {
            let name = dir.file_name().unwrap().to_string_lossy().into_owned();
            crates.push(load_crate(&name, &dir.join("src")));
        }
    }
    let mut problems = Vec::new();
    for krate in &crates {
        for circle in circles(&edges(krate)) {
            let files: Vec<String> = circle.iter().map(|m| show(krate, m)).collect();
            problems.push(format!(
                "{}: a circle of {} files: {}",
                krate.name,
                files.len(),
                files.join(", ")
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "import circles (break each by moving the shared items into a module both import):\n{}",
        problems.join("\n")
    );
}

#[test]
fn imports_only_point_down_the_layer_map() {
    let krate = load_crate("driftwatch", &root().join("src"));
    let layers = layer_map();
    let mut unmapped = BTreeSet::new();
    let layer_of = |module: &ModPath, unmapped: &mut BTreeSet<String>| -> Option<usize> {
        let top = module.first()?;
        match layers.get(top) {
            Some(layer) => Some(*layer),
            None => {
                unmapped.insert(top.clone());
                None
            }
        }
    };
    let mut upward = Vec::new();
    for (from, targets) in edges(&krate) {
        let Some(from_layer) = layer_of(&from, &mut unmapped) else {
            continue;
        };
        for to in targets {
            let Some(to_layer) = layer_of(&to, &mut unmapped) else {
                continue;
            };
            if to_layer > from_layer {
                upward.push(format!(
                    "{} (layer {from_layer}) imports {} (layer {to_layer})",
                    show(&krate, &from),
                    show(&krate, &to)
                ));
            }
        }
    }
    assert!(
        unmapped.is_empty(),
        "modules missing from the layer map at the top of src/lib.rs: {unmapped:?}"
    );
    assert!(
        upward.is_empty(),
        "imports running up the layer map of src/lib.rs:\n{}",
        upward.join("\n")
    );
}
