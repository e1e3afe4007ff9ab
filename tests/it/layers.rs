//! The import graph of `src/` and `crates/*/src`: no circle between files,
//! and no import from a lower layer into a higher one. The layers are read
//! from the map at the top of `src/lib.rs`, so the map the next engineer
//! reads and the rule this test checks are the same text.
//!
//! Files are found as rustc finds them, by following `mod name;` from each
//! crate root, and read with `syn`; whatever sits under `#[cfg(test)]` (test
//! helpers, `mod tests;` and the files it declares) is left out. Every path
//! in the code counts: `crate::`, `self::`, `super::`, and bare paths whose
//! first segment is a name the module defines or imports (`child::f()` or
//! `use child::X` after `mod child;`, `model::Verdict` after
//! `use crate::model;`), in nested use groups, types, patterns, macro bodies
//! and attribute strings such as serde's `with = "path"`.
//!
//! A path is charged to the file that defines the item it names. When it
//! lands on a name that a module imports rather than defines — a facade's
//! `pub use child::Item`, or a private `use` that a child reaches through
//! `super::` — the import is followed, as far as it goes, to the defining
//! file. The `use` line itself is an edge from the facade to that file, so a
//! facade that only declares and re-exports sits above its children and is
//! never in a circle with them; a facade that also defines what its
//! children use is, and those items belong in a file of their own. The
//! crate root counts like any `mod.rs`. Naming a module alone
//! (`use crate::model;`) is no edge, only the items reached through it are;
//! a glob import (`use super::*`) is an edge to the module's file.
//!
//! What no path shows is not seen: methods called on a value (a type's
//! `impl` blocks split across a parent and its children, as the scheduler
//! does, depend on each other through `self.method()` calls alone).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{Spacing, TokenStream, TokenTree};
use syn::visit::Visit;

/// A module path inside one crate, e.g. `["probe", "kubernetes"]`.
type ModPath = Vec<String>;

/// One module — a file, or an inline `mod name { … }` inside one: what it
/// defines, what it imports, and every path its code names.
#[derive(Default)]
struct Scope {
    /// The file module whose text holds this scope.
    file: ModPath,
    /// Names defined here: items and child modules.
    defined: BTreeSet<String>,
    /// `use` bindings: the name brought in → the path as written.
    bindings: BTreeMap<String, Vec<String>>,
    /// `use path::*`, as written.
    globs: Vec<Vec<String>>,
    /// Every path named here, as written (first segment not yet resolved).
    paths: Vec<Vec<String>>,
}

struct Crate {
    name: String,
    /// File module → file, as shown in messages.
    files: BTreeMap<ModPath, PathBuf>,
    scopes: BTreeMap<ModPath, Scope>,
}

/// How far `use` chains are followed before giving up (a chain longer than
/// this is a loop, which rustc rejects anyway).
const MAX_HOPS: usize = 32;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Reads the crate whose root file is `root_file`; files are named relative
/// to `shown_from` in messages.
fn load_crate(name: &str, root_file: &Path, shown_from: &Path) -> Crate {
    let mut krate = Crate {
        name: name.to_string(),
        files: BTreeMap::new(),
        scopes: BTreeMap::new(),
    };
    let dir = root_file.parent().unwrap().to_path_buf();
    krate.load_file(Vec::new(), root_file, &dir, shown_from);
    krate
}

impl Crate {
    fn load_file(&mut self, module: ModPath, file: &Path, children_dir: &Path, shown_from: &Path) {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|err| panic!("{}: cannot read: {err}", file.display()));
        let syntax = syn::parse_file(&text)
            .unwrap_or_else(|err| panic!("{}: cannot parse: {err}", file.display()));
        let shown = file.strip_prefix(shown_from).unwrap_or(file);
        self.files.insert(module.clone(), shown.to_path_buf());
        self.load_items(&module, &module, &syntax.items, children_dir, shown_from);
    }

    /// Fills the scope `module` (held in `file`) from its items; child
    /// modules' files are looked for in `children_dir`.
    fn load_items(
        &mut self,
        module: &ModPath,
        file: &ModPath,
        items: &[syn::Item],
        children_dir: &Path,
        shown_from: &Path,
    ) {
        let mut collect = Collect::default();
        let mut children = Vec::new();
        for item in items {
            if is_test_only(item_attrs(item)) {
                continue;
            }
            if let Some(name) = item_name(item) {
                collect.scope.defined.insert(name);
            }
            match item {
                syn::Item::Mod(declared) => {
                    for attr in &declared.attrs {
                        collect.visit_attribute(attr);
                    }
                    children.push(declared);
                }
                other => collect.visit_item(other),
            }
        }
        let mut scope = collect.scope;
        scope.file = file.clone();
        self.scopes.insert(module.clone(), scope);

        for declared in children {
            let name = declared.ident.to_string();
            let mut child = module.clone();
            child.push(name.clone());
            let dir = children_dir.join(&name);
            match &declared.content {
                Some((_, items)) => self.load_items(&child, file, items, &dir, shown_from),
                None => {
                    assert!(
                        !declared.attrs.iter().any(|a| a.path().is_ident("path")),
                        "{}: `#[path]` on `mod {name}` is not followed by the layer check; \
                         move the file where rustc looks by default",
                        self.files[file].display()
                    );
                    let flat = children_dir.join(format!("{name}.rs"));
                    let nested = dir.join("mod.rs");
                    let found = if flat.is_file() { flat } else { nested };
                    self.load_file(child, &found, &dir, shown_from);
                }
            }
        }
    }

    /// The absolute module path that `path`, written in `scope`, names; `None`
    /// when it leaves the crate (std, another crate, a generic parameter).
    fn absolute(&self, scope: &ModPath, path: &[String], hops: usize) -> Option<Vec<String>> {
        let (first, rest) = path.split_first()?;
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "self" => scope.clone(),
            "super" => {
                let mut base = scope.clone();
                base.pop()?;
                let supers = rest.iter().take_while(|s| *s == "super").count();
                for _ in 0..supers {
                    base.pop()?;
                }
                base.extend(rest[supers..].iter().cloned());
                return Some(base);
            }
            name => {
                let here = self.scopes.get(scope)?;
                if here.defined.contains(name) {
                    let mut base = scope.clone();
                    base.push(name.to_string());
                    base
                } else if let Some(bound) = here.bindings.get(name) {
                    if hops >= MAX_HOPS || bound.as_slice() == path {
                        return None;
                    }
                    self.absolute(scope, bound, hops + 1)?
                } else {
                    return None;
                }
            }
        };
        base.extend(rest.iter().cloned());
        Some(base)
    }

    /// The file that defines what the absolute `path` names: the deepest
    /// module it passes through, following `use` bindings (re-exports and
    /// private imports alike) to where the item is defined. The flag is true
    /// when the path names a module itself rather than an item in one.
    fn defining_file(&self, path: &[String], hops: usize) -> Option<(ModPath, bool)> {
        let depth = (0..=path.len())
            .rev()
            .find(|n| self.scopes.contains_key(&path[..*n]))?;
        let module = path[..depth].to_vec();
        let scope = &self.scopes[&module];
        let Some(name) = path.get(depth) else {
            return Some((scope.file.clone(), true));
        };
        if scope.defined.contains(name) || hops >= MAX_HOPS {
            return Some((scope.file.clone(), false));
        }
        if let Some(bound) = scope.bindings.get(name) {
            // An import of something outside the crate defines nothing here.
            let mut target = self.absolute(&module, bound, hops + 1)?;
            target.extend(path[depth + 1..].iter().cloned());
            return self.defining_file(&target, hops + 1);
        }
        for glob in &scope.globs {
            let Some(source) = self.absolute(&module, glob, hops + 1) else {
                continue;
            };
            let Some(from) = self.scopes.get(&source) else {
                continue;
            };
            if from.defined.contains(name) || from.bindings.contains_key(name) {
                let mut target = source;
                target.extend(path[depth..].iter().cloned());
                return self.defining_file(&target, hops + 1);
            }
        }
        Some((scope.file.clone(), false))
    }

    /// File → the files it imports from, each with the first path (as
    /// written) that names it. Naming a module (`use crate::model;`) is no
    /// edge by itself, the items reached through it are; a glob import
    /// (`use super::*`) is an edge to the module's file.
    fn edges(&self) -> BTreeMap<ModPath, BTreeMap<ModPath, String>> {
        let mut edges: BTreeMap<ModPath, BTreeMap<ModPath, String>> = BTreeMap::new();
        for (module, scope) in &self.scopes {
            let entry = edges.entry(scope.file.clone()).or_default();
            let named = scope.paths.iter().map(|path| (path, false));
            let globbed = scope.globs.iter().map(|path| (path, true));
            for (path, glob) in named.chain(globbed) {
                let Some((target, module_only)) = self
                    .absolute(module, path, 0)
                    .and_then(|absolute| self.defining_file(&absolute, 0))
                else {
                    continue;
                };
                if target != scope.file && (glob || !module_only) {
                    let shown = path.join("::");
                    entry
                        .entry(target)
                        .or_insert_with(|| if glob { shown + "::*" } else { shown });
                }
            }
        }
        edges
    }

    fn show(&self, module: &ModPath) -> String {
        self.files[module].display().to_string()
    }
}

/// Gathers one scope's bindings and paths; nested items (a `use` inside a
/// function) count toward the module that holds them.
#[derive(Default)]
struct Collect {
    scope: Scope,
}

impl Collect {
    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(step) => {
                prefix.push(step.ident.to_string());
                self.use_tree(prefix, &step.tree);
                prefix.pop();
            }
            syn::UseTree::Name(leaf) => self.use_leaf(prefix, &leaf.ident, Some(&leaf.ident)),
            syn::UseTree::Rename(leaf) => self.use_leaf(prefix, &leaf.ident, Some(&leaf.rename)),
            syn::UseTree::Glob(_) => {
                self.scope.globs.push(prefix.clone());
            }
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }

    fn use_leaf(&mut self, prefix: &[String], ident: &syn::Ident, bound_as: Option<&syn::Ident>) {
        let mut path = prefix.to_vec();
        // `a::{self}` names `a` itself.
        if ident != "self" {
            path.push(ident.to_string());
        }
        if path.is_empty() {
            return;
        }
        let name = match bound_as {
            Some(alias) if alias != "self" => alias.to_string(),
            _ => path.last().unwrap().clone(),
        };
        if name != "_" {
            self.scope.bindings.insert(name, path.clone());
        }
        self.scope.paths.push(path);
    }

    /// Paths in token streams the parser leaves alone: macro bodies and
    /// attribute arguments (string literals that spell a path included).
    fn scan_tokens(&mut self, tokens: TokenStream, literals: bool) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let is_colon_pair = |at: usize| {
            matches!(tokens.get(at), Some(TokenTree::Punct(p)) if p.as_char() == ':' && p.spacing() == Spacing::Joint)
                && matches!(tokens.get(at + 1), Some(TokenTree::Punct(p)) if p.as_char() == ':')
        };
        let mut at = 0;
        while at < tokens.len() {
            match &tokens[at] {
                TokenTree::Group(group) => {
                    self.scan_tokens(group.stream(), literals);
                    at += 1;
                }
                TokenTree::Ident(first) => {
                    let continues_a_path = at >= 2 && is_colon_pair(at - 2);
                    let mut path = vec![first.to_string()];
                    let mut next = at + 1;
                    while is_colon_pair(next) {
                        let Some(TokenTree::Ident(segment)) = tokens.get(next + 2) else {
                            break;
                        };
                        path.push(segment.to_string());
                        next += 3;
                    }
                    if !continues_a_path && path.len() > 1 {
                        self.scope.paths.push(path);
                    }
                    at = next;
                }
                TokenTree::Literal(literal) if literals => {
                    if let Ok(text) = syn::parse_str::<syn::LitStr>(&literal.to_string()) {
                        if let Ok(path) = syn::parse_str::<syn::Path>(&text.value()) {
                            if path.leading_colon.is_none() {
                                // serde's `with = "m"` names a module whose
                                // functions it calls (`m::serialize`); other
                                // strings name a function. Both are items
                                // of the file the path lands in.
                                let mut path = segments(&path);
                                path.push("serialize".to_string());
                                self.scope.paths.push(path);
                            }
                        }
                    }
                    at += 1;
                }
                _ => at += 1,
            }
        }
    }
}

fn segments(path: &syn::Path) -> Vec<String> {
    path.segments.iter().map(|s| s.ident.to_string()).collect()
}

impl<'ast> Visit<'ast> for Collect {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        if is_test_only(item_attrs(item)) {
            return;
        }
        if let syn::Item::Use(declared) = item {
            // `use ::name` always leaves the crate.
            if declared.leading_colon.is_none() {
                self.use_tree(&mut Vec::new(), &declared.tree);
            }
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_impl_item(&mut self, item: &'ast syn::ImplItem) {
        let attrs = match item {
            syn::ImplItem::Const(i) => &i.attrs,
            syn::ImplItem::Fn(i) => &i.attrs,
            syn::ImplItem::Type(i) => &i.attrs,
            syn::ImplItem::Macro(i) => &i.attrs,
            _ => return syn::visit::visit_impl_item(self, item),
        };
        if !is_test_only(attrs) {
            syn::visit::visit_impl_item(self, item);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        if path.leading_colon.is_none() && path.segments.len() > 1 {
            self.scope.paths.push(segments(path));
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        syn::visit::visit_macro(self, mac);
        self.scan_tokens(mac.tokens.clone(), false);
    }

    fn visit_attribute(&mut self, attr: &'ast syn::Attribute) {
        if attr.path().is_ident("doc") {
            return;
        }
        if let syn::Meta::List(list) = &attr.meta {
            self.scan_tokens(list.tokens.clone(), true);
        }
    }
}

fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && matches!(&attr.meta, syn::Meta::List(list) if list.tokens.to_string() == "test")
    })
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::ExternCrate(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::ForeignMod(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::TraitAlias(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Union(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

/// The name an item defines in its module's namespace.
fn item_name(item: &syn::Item) -> Option<String> {
    let ident = match item {
        syn::Item::Const(i) => &i.ident,
        syn::Item::Enum(i) => &i.ident,
        syn::Item::Fn(i) => &i.sig.ident,
        syn::Item::Macro(i) => i.ident.as_ref()?,
        syn::Item::Mod(i) => &i.ident,
        syn::Item::Static(i) => &i.ident,
        syn::Item::Struct(i) => &i.ident,
        syn::Item::Trait(i) => &i.ident,
        syn::Item::TraitAlias(i) => &i.ident,
        syn::Item::Type(i) => &i.ident,
        syn::Item::Union(i) => &i.ident,
        _ => return None,
    };
    Some(ident.to_string())
}

/// Strongly connected components with more than one file (Tarjan).
fn circles(edges: &BTreeMap<ModPath, BTreeMap<ModPath, String>>) -> Vec<Vec<ModPath>> {
    struct Walk<'a> {
        edges: &'a BTreeMap<ModPath, BTreeMap<ModPath, String>>,
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
            for w in edges.get(v).into_iter().flat_map(BTreeMap::keys) {
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

/// Each circle in the crate, as a line naming its files and the imports
/// that close it.
fn circle_problems(krate: &Crate) -> Vec<String> {
    let edges = krate.edges();
    circles(&edges)
        .into_iter()
        .map(|circle| {
            let members: BTreeSet<&ModPath> = circle.iter().collect();
            let imports: Vec<String> = circle
                .iter()
                .flat_map(|from| {
                    edges[from]
                        .iter()
                        .filter(|(to, _)| members.contains(to))
                        .map(move |(to, why)| {
                            format!("{} → {} (`{why}`)", krate.show(from), krate.show(to))
                        })
                })
                .collect();
            format!(
                "{}: a circle of {} files: {}",
                krate.name,
                circle.len(),
                imports.join(", ")
            )
        })
        .collect()
}

/// The layer map of a crate root: lines `//! N. title: [`a`], [`b`] …`,
/// lowest first. Returns top-level module → layer number.
fn layer_map(lib: &str) -> BTreeMap<String, usize> {
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

/// Imports that run up the layer map, and the top-level modules the map
/// leaves out.
fn upward_imports(
    krate: &Crate,
    layers: &BTreeMap<String, usize>,
) -> (Vec<String>, BTreeSet<String>) {
    let mut unmapped = BTreeSet::new();
    let mut layer_of = |module: &ModPath| -> Option<usize> {
        let top = module.first()?;
        let layer = layers.get(top).copied();
        if layer.is_none() {
            unmapped.insert(top.clone());
        }
        layer
    };
    let mut upward = Vec::new();
    for (from, targets) in krate.edges() {
        let Some(from_layer) = layer_of(&from) else {
            continue;
        };
        for (to, why) in targets {
            let Some(to_layer) = layer_of(&to) else {
                continue;
            };
            if to_layer > from_layer {
                upward.push(format!(
                    "{} (layer {from_layer}) imports {} (layer {to_layer}): `{why}`",
                    krate.show(&from),
                    krate.show(&to)
                ));
            }
        }
    }
    (upward, unmapped)
}

fn driftwatch() -> Crate {
    load_crate("driftwatch", &root().join("src/lib.rs"), &root())
}

#[test]
fn import_graph_has_no_circle() {
    let mut crates = vec![driftwatch()];
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    dirs.sort();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        // A package's library and binary are crates of their own.
        for root_file in ["src/lib.rs", "src/main.rs"] {
            if dir.join(root_file).is_file() {
                crates.push(load_crate(&name, &dir.join(root_file), &root()));
            }
        }
    }
    let problems: Vec<String> = crates.iter().flat_map(circle_problems).collect();
    assert!(
        problems.is_empty(),
        "import circles (break each by moving the shared items into a module both import):\n{}",
        problems.join("\n")
    );
}

#[test]
fn imports_only_point_down_the_layer_map() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let (upward, unmapped) = upward_imports(&driftwatch(), &layer_map(&lib));
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

/// The checker itself, on small crates written for each path form.
mod checker {
    use super::*;

    /// A crate made of `files` (path under `src/` → text).
    fn plant(files: &[(&str, &str)]) -> (tempfile::TempDir, Crate) {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let path = dir.path().join("src").join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let krate = load_crate("planted", &dir.path().join("src/lib.rs"), dir.path());
        (dir, krate)
    }

    /// The edges as `from -> to` lines of `::`-joined module paths.
    fn edges(krate: &Crate) -> BTreeSet<String> {
        krate
            .edges()
            .into_iter()
            .flat_map(|(from, to)| {
                to.into_keys()
                    .map(move |to| format!("{} -> {}", from.join("::"), to.join("::")))
            })
            .collect()
    }

    fn set(lines: &[&str]) -> BTreeSet<String> {
        lines.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn crate_self_and_super_paths_are_edges() {
        let (_dir, krate) = plant(&[
            ("lib.rs", "mod a; mod b;"),
            ("a/mod.rs", "mod inner; pub fn f() { crate::b::g(); }"),
            (
                "a/inner.rs",
                "use super::super::b::G; fn h() -> super::F { self::local() } fn local() {}",
            ),
            ("b.rs", "pub fn g() {} pub struct G;"),
        ]);
        assert_eq!(
            edges(&krate),
            set(&["a -> b", "a::inner -> a", "a::inner -> b"])
        );
    }

    #[test]
    fn bare_paths_through_a_child_module_or_an_import_are_edges() {
        let (_dir, krate) = plant(&[
            ("lib.rs", "mod p; mod model;"),
            (
                "p.rs",
                "mod child; mod other;\n\
                 use child::X;\n\
                 use crate::model;\n\
                 fn f() { other::g(); let _ = model::outcome::Verdict::Drifted; \
                 std::fmt::format(format_args!(\"\")); }",
            ),
            ("p/child.rs", "pub struct X;"),
            ("p/other.rs", "pub fn g() {}"),
            ("model/mod.rs", "pub mod outcome;"),
            ("model/outcome.rs", "pub enum Verdict { Drifted }"),
        ]);
        assert_eq!(
            edges(&krate),
            set(&["p -> model::outcome", "p -> p::child", "p -> p::other"])
        );
    }

    #[test]
    fn nested_use_groups_name_every_leaf() {
        let (_dir, krate) = plant(&[
            ("lib.rs", "mod a; mod b; mod c;"),
            ("a/mod.rs", "pub mod x;"),
            ("a/x.rs", "pub struct Y;"),
            ("b.rs", "pub fn f() {}"),
            ("c.rs", "use crate::{a::{self, x::{Y as Z}}, b::f as _};"),
        ]);
        // `a::{self}` names the module `a`: no edge until an item of it is used.
        assert_eq!(edges(&krate), set(&["c -> a::x", "c -> b"]));
    }

    #[test]
    fn naming_a_module_is_no_edge_but_a_glob_import_is() {
        let (_dir, krate) = plant(&[
            ("lib.rs", "mod a; mod b; mod c;"),
            ("a.rs", "pub fn f() {}"),
            ("b.rs", "use crate::a; pub fn g() {}"),
            ("c.rs", "use crate::b::*;"),
        ]);
        assert_eq!(edges(&krate), set(&["c -> b"]));
    }

    #[test]
    fn the_crate_root_is_a_module_like_any_other() {
        // lib.rs defines what its children use and calls into one of them.
        let (_dir, krate) = plant(&[
            (
                "lib.rs",
                "mod serve; struct Inner; fn start() { serve::handle(); }",
            ),
            (
                "serve.rs",
                "pub fn handle() { let _: Option<crate::Inner> = None; }",
            ),
        ]);
        assert_eq!(
            circle_problems(&krate),
            vec![
                "planted: a circle of 2 files: \
                 src/lib.rs → src/serve.rs (`serve::handle`), \
                 src/serve.rs → src/lib.rs (`crate::Inner`)"
            ]
        );
    }

    #[test]
    fn an_import_of_a_re_export_is_charged_to_the_defining_file() {
        // `p/mod.rs` only declares and re-exports: its children and its
        // users are charged to the files that define the items, through a
        // chain (`q` re-exports from `p`, which re-exports from `p::ctx`).
        let (_dir, krate) = plant(&[
            ("lib.rs", "mod p; mod q; mod user;"),
            (
                "p/mod.rs",
                "mod inner; mod ctx; pub use inner::Item; pub use self::ctx::Ctx;",
            ),
            ("p/ctx.rs", "pub struct Ctx;"),
            ("p/inner.rs", "use super::Ctx; pub struct Item(Ctx);"),
            ("q.rs", "pub use crate::p::Ctx as Context;"),
            (
                "user.rs",
                "use crate::p::Item; fn f(_: crate::q::Context, _: Item) {}",
            ),
        ]);
        assert_eq!(
            edges(&krate),
            set(&[
                "p -> p::ctx",
                "p -> p::inner",
                "p::inner -> p::ctx",
                "q -> p::ctx",
                "user -> p::ctx",
                "user -> p::inner",
            ])
        );
        assert_eq!(circle_problems(&krate), Vec::<String>::new());
    }

    #[test]
    fn a_facade_that_defines_what_its_child_uses_is_a_circle() {
        let (_dir, krate) = plant(&[
            ("lib.rs", "mod p;"),
            (
                "p/mod.rs",
                "mod inner; pub use inner::Item; pub struct Ctx;",
            ),
            ("p/inner.rs", "pub struct Item(super::Ctx);"),
        ]);
        assert_eq!(
            circle_problems(&krate),
            vec![
                "planted: a circle of 2 files: \
                 src/p/mod.rs → src/p/inner.rs (`inner::Item`), \
                 src/p/inner.rs → src/p/mod.rs (`super::Ctx`)"
            ]
        );
    }

    #[test]
    fn a_private_import_reached_through_super_is_followed() {
        let (_dir, krate) = plant(&[
            ("lib.rs", "mod model; mod p;"),
            ("model.rs", "pub struct Verdict;"),
            ("p/mod.rs", "mod inner; use crate::model::Verdict;"),
            ("p/inner.rs", "fn f(_: super::Verdict) {}"),
        ]);
        assert_eq!(edges(&krate), set(&["p -> model", "p::inner -> model"]));
    }

    #[test]
    fn test_only_code_is_left_out_and_the_code_after_it_still_counts() {
        let (_dir, krate) = plant(&[
            ("lib.rs", "mod a; mod b; mod c;"),
            (
                "a.rs",
                "#[cfg(test)] fn helper() { crate::b::f(); }\n\
                 #[cfg(test)] mod tests;\n\
                 #[cfg(test)] use crate::b::f;\n\
                 pub fn real() { crate::c::g(); }",
            ),
            ("a/tests.rs", "use crate::b::f;"),
            ("b.rs", "pub fn f() {}"),
            ("c.rs", "pub fn g() {}"),
        ]);
        assert_eq!(edges(&krate), set(&["a -> c"]));
        assert!(!krate
            .files
            .contains_key(&vec!["a".to_string(), "tests".to_string()]));
    }

    #[test]
    fn macro_bodies_attribute_strings_and_inline_modules_count() {
        let (_dir, krate) = plant(&[
            ("lib.rs", "mod a; mod b; mod c; mod d;"),
            (
                "a.rs",
                "fn f() { println!(\"{}\", crate::b::NAME); }\n\
                 #[derive(serde::Serialize)]\n\
                 struct S { #[serde(with = \"crate::c::secs\")] d: u8 }\n\
                 mod inline { use super::super::d::X; }",
            ),
            ("b.rs", "pub const NAME: &str = \"b\";"),
            ("c.rs", "pub mod secs {}"),
            ("d.rs", "pub struct X;"),
        ]);
        assert_eq!(edges(&krate), set(&["a -> b", "a -> c", "a -> d"]));
    }

    #[test]
    fn a_planted_upward_import_is_reported_and_a_downward_one_is_not() {
        let lib = "//! 0. low: [`low`]\n//! 1. high: [`high`]\nmod low; mod high; mod stray;";
        let (_dir, krate) = plant(&[
            ("lib.rs", lib),
            (
                "low.rs",
                "pub struct L; pub fn f() { child_of_nothing(); crate::high::h(); }",
            ),
            (
                "high.rs",
                "pub fn h() {} fn g(_: crate::low::L) { crate::stray::s(); }",
            ),
            ("stray.rs", "pub fn s() {}"),
        ]);
        let (upward, unmapped) = upward_imports(&krate, &layer_map(lib));
        assert_eq!(
            upward,
            vec!["src/low.rs (layer 0) imports src/high.rs (layer 1): `crate::high::h`"]
        );
        assert_eq!(unmapped, set(&["stray"]));
    }
}
