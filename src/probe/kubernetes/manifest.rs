//! Loading Kubernetes manifests: a directory read recursively (`*.yaml`,
//! `*.yml`, `*.json`), multi-document YAML, `*List` kinds, or the stdout of a
//! render command. A broken document never hides the good ones: loading
//! returns every object it could read plus one error per bad document, each
//! naming the file and the document's 1-based index. This is a public API so
//! other parts of driftwatch (and its own deployment tests) can validate
//! manifests the same way the probe reads them.

use std::fmt;
use std::path::Path;

use base64::Engine;
use serde_json::Value;

/// One object declared in git.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Where it came from: a path relative to the manifest directory, or `render`.
    pub source: String,
    /// 1-based index of the YAML document in its source.
    pub document: usize,
    /// The object as compact JSON text (YAML is converted), parsed by
    /// `object` when compared: a `serde_json::Value` tree (a B-tree node per
    /// mapping) takes several times the text's size, and a watching probe
    /// keeps every manifest of its commit between checks.
    text: Box<str>,
    api_version: Box<str>,
    kind: Box<str>,
    name: Box<str>,
    namespace: Option<Box<str>>,
}

impl Manifest {
    pub fn new(source: String, document: usize, object: &Value) -> Manifest {
        let text = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
        Manifest {
            source,
            document,
            api_version: text("/apiVersion").unwrap_or("").into(),
            kind: text("/kind").unwrap_or("").into(),
            name: text("/metadata/name").unwrap_or("").into(),
            namespace: text("/metadata/namespace").map(Box::from),
            text: object.to_string().into_boxed_str(),
        }
    }

    /// The object as JSON, parsed anew on each call.
    pub fn object(&self) -> Value {
        serde_json::from_str(&self.text).expect("the text was written from a JSON value")
    }

    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
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
/// in path order, with the shared walker: hidden files and directories
/// (`.git`, …) are skipped, and a symlink leading outside `boundary` (the
/// checkout), a symlink loop or an oversized tree is an error. Sources are
/// named relative to `dir`. Blocking: call it on a blocking thread.
pub fn load_dir(dir: &Path, boundary: &Path) -> Result<Loaded, crate::walk::WalkError> {
    let files = crate::walk::files_with_suffix(dir, boundary, &[".yaml", ".yml", ".json"])?;
    let mut loaded = Loaded::default();
    for file in files {
        let source = file.relative.to_string_lossy().into_owned();
        match std::fs::read_to_string(&file.path) {
            Ok(text) => loaded.extend(parse_source(&source, &text, is_json(&file.path))),
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

/// Parses one source: a JSON document, or a stream of YAML documents
/// separated by `---`. Empty documents are skipped but still counted, so the
/// indexes match what a person counts in the file.
pub fn parse_source(source: &str, text: &str, json: bool) -> Loaded {
    let mut loaded = Loaded::default();
    if json {
        match serde_json::from_str::<Value>(text) {
            Ok(value) => add_document(&mut loaded, source, 1, 1, text, value),
            Err(err) => loaded.errors.push(ManifestError {
                source: source.to_string(),
                document: 1,
                line: Some(err.line()),
                message: format!("invalid JSON: {err}"),
            }),
        }
        return loaded;
    }
    for document in kube_yaml::documents(text) {
        match document.value {
            Ok(Value::Null) => {}
            Ok(value) => add_document(
                &mut loaded,
                source,
                document.index,
                document.line,
                &document.text,
                value,
            ),
            Err(err) => loaded.errors.push(ManifestError {
                source: source.to_string(),
                document: document.index,
                line: err.line,
                message: if err.message.starts_with("invalid YAML") {
                    err.message
                } else {
                    format!("invalid YAML: {}", err.message)
                },
            }),
        }
    }
    loaded
}

fn add_document(
    loaded: &mut Loaded,
    source: &str,
    document: usize,
    line: usize,
    text: &str,
    value: Value,
) {
    let error = |line: usize, message: String| ManifestError {
        source: source.to_string(),
        document,
        line: Some(line),
        message,
    };
    let Value::Object(map) = &value else {
        loaded.errors.push(error(
            line,
            "expected a Kubernetes object (a mapping with apiVersion and kind)".to_string(),
        ));
        return;
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.ends_with("List") && map.get("items").is_some_and(Value::is_array) {
        for (index, item) in map["items"].as_array().into_iter().flatten().enumerate() {
            match check_object(item)
                .map_err(Rejected::from)
                .and_then(|()| check_accepted(item))
            {
                Ok(()) => loaded
                    .objects
                    .push(Manifest::new(source.to_string(), document, item)),
                Err(problem) => loaded
                    .errors
                    .push(error(line, format!("items[{index}].{problem}"))),
            }
        }
        return;
    }
    if let Err(problem) = check_object(&value) {
        loaded.errors.push(error(line, problem.to_string()));
        return;
    }
    if let Err(problem) = check_accepted(&value) {
        // Point at the offending key when the text shows where it is.
        let path: Vec<&str> = problem
            .path
            .iter()
            .map(|step| step.split('[').next().unwrap_or(step))
            .collect();
        let at = kube_yaml::key_line(text, &path).map_or(line, |l| line + l - 1);
        loaded.errors.push(error(at, problem.to_string()));
        return;
    }
    loaded
        .objects
        .push(Manifest::new(source.to_string(), document, &value));
}

/// A field the API server would refuse, and why. The message never holds
/// the field's value (it may be a Secret's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Keys from the object's root, e.g. `["stringData", "password"]`.
    pub path: Vec<String>,
    pub message: String,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            return f.write_str(&self.message);
        }
        write!(f, "{}: {}", self.path.join("."), self.message)
    }
}

impl From<String> for Rejected {
    fn from(message: String) -> Rejected {
        Rejected {
            path: Vec::new(),
            message,
        }
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Fields of type map-of-strings that the API server refuses to decode when
/// a value is not a string (`version: 1.10` unquoted is the number 1.1),
/// and `[]byte` fields (Secret `data`, ConfigMap `binaryData`) that must be
/// base64. kubectl apply fails on these, so they are input errors, never drift.
pub fn check_accepted(object: &Value) -> Result<(), Rejected> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    let mut string_maps: Vec<Vec<&str>> = vec![
        vec!["metadata", "labels"],
        vec!["metadata", "annotations"],
        vec!["spec", "template", "metadata", "labels"],
        vec!["spec", "template", "metadata", "annotations"],
        vec!["spec", "selector", "matchLabels"],
    ];
    let mut byte_maps: Vec<Vec<&str>> = Vec::new();
    match (api_version, kind) {
        ("v1", "Secret") => {
            string_maps.push(vec!["stringData"]);
            byte_maps.push(vec!["data"]);
        }
        ("v1", "ConfigMap") => {
            string_maps.push(vec!["data"]);
            byte_maps.push(vec!["binaryData"]);
        }
        ("v1", "Service") => string_maps.push(vec!["spec", "selector"]),
        _ => {}
    }
    let owned = |path: &[&str], key: &str| -> Vec<String> {
        path.iter()
            .map(|s| s.to_string())
            .chain([key.to_string()])
            .collect()
    };
    for path in &string_maps {
        let Some(Value::Object(map)) = lookup(object, path) else {
            continue;
        };
        for (key, value) in map {
            if !matches!(value, Value::String(_) | Value::Null) {
                return Err(Rejected {
                    path: owned(path, key),
                    message: format!(
                        "must be a string, not {} (the API server rejects it; quote the value)",
                        json_type(value)
                    ),
                });
            }
        }
    }
    for path in &byte_maps {
        let Some(Value::Object(map)) = lookup(object, path) else {
            continue;
        };
        for (key, value) in map {
            let valid = match value {
                Value::Null => true,
                // Go's base64 decoder skips line breaks.
                Value::String(text) => base64::engine::general_purpose::STANDARD
                    .decode(text.replace(['\n', '\r'], ""))
                    .is_ok(),
                _ => false,
            };
            if !valid {
                let what = match value {
                    Value::String(_) => "is not valid base64".to_string(),
                    other => format!("must be base64 text, not {}", json_type(other)),
                };
                let hint = if kind == "Secret" {
                    "; plain text belongs under stringData"
                } else {
                    ""
                };
                return Err(Rejected {
                    path: owned(path, key),
                    message: format!("{what} (the API server rejects it{hint})"),
                });
            }
        }
    }
    type_check(api_version, kind, object)
}

/// Every field of a built-in kind must have its API type: kubectl's decoder
/// refuses `value: 80` where a string belongs, or `replicas: "3"`.
fn type_check(api_version: &str, kind: &str, object: &Value) -> Result<(), Rejected> {
    let Err(mismatch) = kube_schema::check_field_types(api_version, kind, object) else {
        return Ok(());
    };
    let mut found = object;
    for step in &mismatch.path {
        let (key, index) = match step.strip_suffix(']').and_then(|s| s.rsplit_once('[')) {
            Some((key, index)) => (key, index.parse::<usize>().ok()),
            None => (step.as_str(), None),
        };
        found = &found[key];
        if let Some(index) = index {
            found = &found[index];
        }
    }
    let hint = if mismatch.expected == "a string" {
        "; quote the value"
    } else {
        ""
    };
    Err(Rejected {
        path: mismatch.path,
        message: format!(
            "must be {}, not {} (the API server rejects it{hint})",
            mismatch.expected,
            json_type(found)
        ),
    })
}

fn lookup<'a>(object: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(object, |value, key| value.get(*key))
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
                Some(other) => {
                    return Err(format!(
                        "metadata.name must be a non-empty string, not {}{}",
                        json_type(other),
                        if other.is_boolean() {
                            " (YAML reads unquoted y/n/yes/no/on/off as booleans: quote it)"
                        } else {
                            ""
                        }
                    ))
                }
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
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: yml}\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("sub/.hidden/c.yaml"), "nope: [").unwrap();
        std::fs::write(dir.path().join("README.md"), "# not a manifest").unwrap();
        let loaded = load_dir(dir.path(), dir.path()).unwrap();
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let sources: Vec<_> = loaded.objects.iter().map(|m| m.source.clone()).collect();
        assert_eq!(sources, vec!["b.yml".to_string(), "sub/a.json".to_string()]);
    }

    /// Issue example: `defaultMode: 0755` unquoted is what kubectl sends: 493.
    #[test]
    fn yaml_is_read_as_kubectl_reads_it() {
        // (A quoted "0644" stays a string: where an integer belongs that is
        // an error, see peer_cases; in an annotation it is the text.)
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, annotations: {mode: \"0644\"}}\n\
                    spec:\n  template:\n    spec:\n\
                    \x20     volumes:\n      - name: conf\n        configMap: {name: conf, defaultMode: 0755}\n\
                    \x20     hostNetwork: yes\n      enableServiceLinks: off\n";
        let loaded = parse_source("deploy.yaml", text, false);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let object = loaded.objects[0].object();
        let spec = &object["spec"]["template"]["spec"];
        assert_eq!(spec["volumes"][0]["configMap"]["defaultMode"], 493);
        assert_eq!(object["metadata"]["annotations"]["mode"], "0644");
        assert_eq!(spec["hostNetwork"], true);
        assert_eq!(spec["enableServiceLinks"], false);
    }

    #[test]
    fn duplicate_keys_are_errors_naming_file_line_and_document() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\n\
                    metadata:\n  name: b\ndata:\n  mode: fast\n  mode: slow\n";
        let loaded = parse_source("dir/x.yaml", text, false);
        assert_eq!(loaded.objects.len(), 1);
        assert_eq!(
            loaded.errors[0].to_string(),
            "dir/x.yaml:11: document 2: invalid YAML: mapping key \"mode\" already defined at line 10"
        );
    }

    /// Issue example and siblings: values the API server refuses to decode
    /// are input errors naming file, document and field, never the value.
    #[test]
    fn values_the_api_server_rejects_are_errors() {
        let cases: &[(&str, &str)] = &[
            (
                "kind: Secret\nmetadata: {name: s}\nstringData:\n  user: admin\n  port: 5432\n",
                "x.yaml:7: document 1: stringData.port: must be a string, not a number (the API server rejects it; quote the value)",
            ),
            (
                "kind: Secret\nmetadata: {name: s}\ndata:\n  password: not base64!\n",
                "x.yaml:6: document 1: data.password: is not valid base64 (the API server rejects it; plain text belongs under stringData)",
            ),
            (
                "kind: Secret\nmetadata: {name: s}\ndata:\n  token: 12345\n",
                "x.yaml:6: document 1: data.token: must be base64 text, not a number (the API server rejects it; plain text belongs under stringData)",
            ),
            (
                "kind: ConfigMap\nmetadata: {name: c}\ndata:\n  enabled: true\n",
                "x.yaml:6: document 1: data.enabled: must be a string, not a boolean (the API server rejects it; quote the value)",
            ),
            (
                "kind: ConfigMap\nmetadata: {name: c}\nbinaryData:\n  blob: \"%%%\"\n",
                "x.yaml:6: document 1: binaryData.blob: is not valid base64 (the API server rejects it)",
            ),
            (
                "kind: ConfigMap\nmetadata:\n  name: c\n  labels:\n    version: 1.10\n",
                "x.yaml:7: document 1: metadata.labels.version: must be a string, not a number (the API server rejects it; quote the value)",
            ),
        ];
        for (body, want) in cases {
            let text = format!("apiVersion: v1\n{body}");
            let loaded = parse_source("x.yaml", &format!("# header\n{text}"), false);
            assert!(loaded.objects.is_empty(), "{body}");
            assert_eq!(loaded.errors.len(), 1, "{body}");
            let shown = loaded.errors[0].to_string();
            assert_eq!(shown, *want);
            for secret in ["5432", "admin", "not base64", "12345"] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
        // Valid forms pass: base64 with a line break, stringData strings, quoted labels.
        let ok = "apiVersion: v1\nkind: Secret\nmetadata: {name: s, labels: {v: \"1.10\"}}\n\
                  data: {a: \"aGVs\\nbG8=\"}\nstringData: {p: \"5432\"}\n";
        let loaded = parse_source("x.yaml", ok, false);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    }

    /// The manifest walk used to follow `loop -> .` ~40 levels deep, walk
    /// into the host through `root -> /`, and compare manifests read through
    /// a link to a directory outside the checkout.
    #[test]
    fn symlinks_out_of_the_checkout_or_in_a_loop_are_errors() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let checkout = tmp.path().join("checkout");
        let manifests = checkout.join("deploy");
        std::fs::create_dir_all(&manifests).unwrap();
        std::fs::write(
            manifests.join("cm.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n",
        )
        .unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(
            outside.join("secret.yaml"),
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n",
        )
        .unwrap();
        let cases: [(&str, &Path, &str); 3] = [
            ("loop", Path::new("."), "symlink loop: loop leads back to ."),
            (
                "root",
                Path::new("/"),
                "symlink root leads outside the checkout (to /)",
            ),
            (
                "elsewhere",
                &outside,
                "symlink elsewhere leads outside the checkout",
            ),
        ];
        for (name, target, message) in cases {
            let link = manifests.join(name);
            symlink(target, &link).unwrap();
            let err = load_dir(&manifests, &checkout).unwrap_err();
            assert!(err.to_string().starts_with(message), "{name}: {err}");
            std::fs::remove_file(&link).unwrap();
        }
        // A link to a directory inside the checkout is read.
        std::fs::create_dir_all(checkout.join("shared")).unwrap();
        std::fs::write(
            checkout.join("shared/b.yaml"),
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n",
        )
        .unwrap();
        symlink("../shared", manifests.join("shared")).unwrap();
        let loaded = load_dir(&manifests, &checkout).unwrap();
        assert_eq!(loaded.objects.len(), 2);
        assert!(loaded.errors.is_empty());
    }
}
