//! Loading Kubernetes manifests: a directory read recursively (`*.yaml`,
//! `*.yml`, `*.json`), multi-document YAML, `*List` kinds, or the stdout of a
//! render command. A broken document never hides the good ones: loading
//! returns every object it could read plus one error per bad document, each
//! naming the file and the document's 1-based index. This is a public API so
//! other parts of driftwatch (and its own deployment tests) can validate
//! manifests the same way the probe reads them.

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// One object declared in git.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Where it came from: a path relative to the manifest directory, or `render`.
    pub source: String,
    /// 1-based index of the YAML document in its source.
    pub document: usize,
    /// The object as JSON (YAML is converted).
    pub object: Value,
}

impl Manifest {
    pub fn api_version(&self) -> &str {
        self.object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn kind(&self) -> &str {
        self.object
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn namespace(&self) -> Option<&str> {
        self.object
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
    }

    /// The API group, "" for the core group.
    pub fn group(&self) -> &str {
        match self.api_version().rsplit_once('/') {
            Some((group, _)) => group,
            None => "",
        }
    }

    /// `source document N`, for messages.
    pub fn origin(&self) -> String {
        format!("{} document {}", self.source, self.document)
    }
}

/// A document that could not be read as a Kubernetes object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub source: String,
    /// 1-based document index (0 when the whole source failed, e.g. unreadable file).
    pub document: usize,
    /// 1-based line in the source where the problem is, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.document, self.line) {
            (0, _) => write!(f, "{}: {}", self.source, self.message),
            (doc, Some(line)) => write!(
                f,
                "{}:{}: document {}: {}",
                self.source, line, doc, self.message
            ),
            (doc, None) => write!(f, "{}: document {}: {}", self.source, doc, self.message),
        }
    }
}

/// Everything read from one or more sources.
#[derive(Debug, Default, Clone)]
pub struct Loaded {
    pub objects: Vec<Manifest>,
    pub errors: Vec<ManifestError>,
}

impl Loaded {
    fn extend(&mut self, other: Loaded) {
        self.objects.extend(other.objects);
        self.errors.extend(other.errors);
    }
}

/// Reads every `*.yaml`, `*.yml` and `*.json` file under `dir`, recursively,
/// in path order. Hidden files and directories (`.git`, …) are skipped.
/// Sources are named relative to `dir`.
pub fn load_dir(dir: &Path) -> Result<Loaded, std::io::Error> {
    let mut files = Vec::new();
    collect_files(dir, &mut files)?;
    files.sort();
    let mut loaded = Loaded::default();
    for file in files {
        let source = file
            .strip_prefix(dir)
            .unwrap_or(&file)
            .to_string_lossy()
            .into_owned();
        match std::fs::read_to_string(&file) {
            Ok(text) => loaded.extend(parse_source(&source, &text, is_json(&file))),
            Err(err) => loaded.errors.push(ManifestError {
                source,
                document: 0,
                line: None,
                message: format!("cannot read file: {err}"),
            }),
        }
    }
    Ok(loaded)
}

fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|ext| ext == "json")
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), std::io::Error> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let kind = entry.file_type()?;
        if kind.is_dir() || (kind.is_symlink() && path.is_dir()) {
            collect_files(&path, files)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
        {
            files.push(path);
        }
    }
    Ok(())
}

/// Parses one source: a JSON document, or a stream of YAML documents
/// separated by `---`. Empty documents are skipped but still counted, so the
/// indexes match what a person counts in the file.
pub fn parse_source(source: &str, text: &str, json: bool) -> Loaded {
    let mut loaded = Loaded::default();
    if json {
        match serde_json::from_str::<Value>(text) {
            Ok(value) => add_document(&mut loaded, source, 1, 1, value),
            Err(err) => loaded.errors.push(ManifestError {
                source: source.to_string(),
                document: 1,
                line: Some(err.line()),
                message: format!("invalid JSON: {err}"),
            }),
        }
        return loaded;
    }
    for (index, (start_line, chunk)) in split_documents(text).into_iter().enumerate() {
        let document = index + 1;
        match serde_yaml::from_str::<Value>(&chunk) {
            Ok(Value::Null) => {}
            Ok(value) => add_document(&mut loaded, source, document, start_line, value),
            Err(err) => {
                let line = err.location().map(|l| start_line + l.line() - 1);
                loaded.errors.push(ManifestError {
                    source: source.to_string(),
                    document,
                    line,
                    message: format!("invalid YAML: {}", yaml_message(&err)),
                });
            }
        }
    }
    loaded
}

/// serde_yaml's message without its own "at line X column Y" suffix (we
/// print the line relative to the whole file instead).
fn yaml_message(err: &serde_yaml::Error) -> String {
    let text = err.to_string();
    match text.find(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// Splits a YAML stream on document markers, returning each document with
/// the 1-based line it starts on.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    let mut seen_content = false;
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_marker {
            if seen_content || !current.trim().is_empty() {
                documents.push((start, std::mem::take(&mut current)));
            }
            current.clear();
            // Keep anything after the marker (`--- # comment` or `--- {a: 1}`).
            current.push_str(&line[3..]);
            current.push('\n');
            start = number;
            seen_content = true;
            continue;
        }
        if line == "..." {
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        documents.push((start, current));
    }
    documents
}

fn add_document(loaded: &mut Loaded, source: &str, document: usize, line: usize, value: Value) {
    let error = |message: String| ManifestError {
        source: source.to_string(),
        document,
        line: Some(line),
        message,
    };
    let Value::Object(map) = &value else {
        loaded.errors.push(error(
            "expected a Kubernetes object (a mapping with apiVersion and kind)".to_string(),
        ));
        return;
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.ends_with("List") && map.get("items").is_some_and(Value::is_array) {
        for (index, item) in map["items"].as_array().into_iter().flatten().enumerate() {
            match check_object(item) {
                Ok(()) => loaded.objects.push(Manifest {
                    source: source.to_string(),
                    document,
                    object: item.clone(),
                }),
                Err(message) => loaded
                    .errors
                    .push(error(format!("items[{index}]: {message}"))),
            }
        }
        return;
    }
    match check_object(&value) {
        Ok(()) => loaded.objects.push(Manifest {
            source: source.to_string(),
            document,
            object: value,
        }),
        Err(message) => loaded.errors.push(error(message)),
    }
}

/// The fields every object needs before it can be looked up in a cluster.
fn check_object(value: &Value) -> Result<(), String> {
    let Value::Object(map) = value else {
        return Err("expected a mapping".to_string());
    };
    for field in ["apiVersion", "kind"] {
        match map.get(field) {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(_) => return Err(format!("{field} must be a non-empty string")),
            None => return Err(format!("missing {field}")),
        }
    }
    match map.get("metadata") {
        Some(Value::Object(meta)) => {
            match meta.get("name") {
                Some(Value::String(s)) if !s.is_empty() => {}
                Some(_) => return Err("metadata.name must be a non-empty string".to_string()),
                None if meta.contains_key("generateName") => {
                    return Err(
                        "metadata.generateName objects cannot be compared; give metadata.name"
                            .to_string(),
                    )
                }
                None => return Err("missing metadata.name".to_string()),
            }
            if let Some(ns) = meta.get("namespace") {
                if !ns.is_string() {
                    return Err("metadata.namespace must be a string".to_string());
                }
            }
            Ok(())
        }
        Some(_) => Err("metadata must be a mapping".to_string()),
        None => Err("missing metadata".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml_with_comments_and_lists() {
        let text = "# leading comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n\
                    apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n\
                    - {apiVersion: v1, kind: Secret, metadata: {name: c}}\n";
        let loaded = parse_source("x.yaml", text, false);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let names: Vec<_> = loaded
            .objects
            .iter()
            .map(|m| (m.name().to_string(), m.document))
            .collect();
        assert_eq!(
            names,
            vec![("a".into(), 2), ("b".into(), 4), ("c".into(), 4)]
        );
    }

    #[test]
    fn a_broken_document_is_named_and_others_survive() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: [oops\n---\n\
                    apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
        let loaded = parse_source("dir/x.yaml", text, false);
        assert_eq!(loaded.objects.len(), 2);
        assert_eq!(loaded.errors.len(), 1);
        let error = &loaded.errors[0];
        assert_eq!(error.document, 2);
        let shown = error.to_string();
        assert!(shown.starts_with("dir/x.yaml:"), "{shown}");
        assert!(shown.contains("document 2"), "{shown}");
        let line = error.line.unwrap();
        assert!((5..=7).contains(&line), "line {line}");
    }

    #[test]
    fn objects_without_identity_are_errors() {
        let text = "kind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {}\n---\n- 1\n";
        let loaded = parse_source("x.yaml", text, false);
        assert!(loaded.objects.is_empty());
        let messages: Vec<_> = loaded.errors.iter().map(|e| e.message.clone()).collect();
        assert_eq!(messages[0], "missing apiVersion");
        assert_eq!(messages[1], "missing metadata.name");
        assert!(messages[2].contains("expected a Kubernetes object"));
    }

    #[test]
    fn json_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub/.hidden")).unwrap();
        std::fs::write(
            dir.path().join("sub/a.json"),
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"j"}}"#,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.yml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: y}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("sub/.hidden/c.yaml"), "nope: [").unwrap();
        std::fs::write(dir.path().join("README.md"), "# not a manifest").unwrap();
        let loaded = load_dir(dir.path()).unwrap();
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let sources: Vec<_> = loaded.objects.iter().map(|m| m.source.clone()).collect();
        assert_eq!(sources, vec!["b.yml".to_string(), "sub/a.json".to_string()]);
    }
}
