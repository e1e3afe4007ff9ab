//! Reads YAML manifests into JSON values exactly as kubectl does.
//!
//! kubectl converts YAML to JSON with sigs.k8s.io/yaml, which decodes with
//! go-yaml v2 into `interface{}` and then makes the result JSON-able. That
//! means YAML 1.1 resolution of *plain* (unquoted) scalars — `0755` is the
//! octal integer 493, `yes`/`no`/`on`/`off`/`y`/`n` are booleans, `~` is
//! null, `1_000` is 1000, `1e3` is a number — while quoted scalars stay
//! strings; `<<` merge keys; and non-string mapping keys turned into strings
//! (`on:` becomes the key `"true"`). The rules below follow go-yaml v2's
//! `resolve.go` (the fork vendored by sigs.k8s.io/yaml) and sigs.k8s.io/yaml's
//! `convertToJSONableObject`, not YAML 1.2.
//!
//! Where kubectl's reader is lenient but the result is surely a mistake, this
//! one refuses: a mapping key written twice is an error naming both lines
//! (go-yaml's strict mode and the API server's strict field validation
//! refuse it too), never "last one wins".
//!
//! The syntax is parsed by `saphyr-parser`, whose events carry each scalar's
//! style and position.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use saphyr_parser::{Event, Parser, ScalarStyle, Tag};
use serde_json::{Map, Number, Value};

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// 1-based line in the whole source, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for Error {}

/// One document of a YAML stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// 1-based index in the stream, counting empty documents too, so the
    /// index is what a person counts in the file.
    pub index: usize,
    /// 1-based line the document starts on.
    pub line: usize,
    /// The document as JSON; `Value::Null` for an empty document.
    pub value: Result<Value, Error>,
    /// The document's own text (for [`key_line`]).
    pub text: String,
}

/// Splits a YAML stream on `---` lines and reads each document on its own,
/// so one broken document never hides the others.
pub fn documents(text: &str) -> Vec<Document> {
    split(text)
        .into_iter()
        .enumerate()
        .map(|(index, (line, chunk))| Document {
            index: index + 1,
            line,
            value: parse_at(&chunk, line - 1),
            text: chunk,
        })
        .collect()
}

/// Reads the first document of `text` (lines are relative to `text`).
/// An empty document is `Value::Null`.
pub fn parse_document(text: &str) -> Result<Value, Error> {
    parse_at(text, 0)
}

/// Like [`parse_document`], with every line number moved down by `offset`.
fn parse_at(text: &str, offset: usize) -> Result<Value, Error> {
    let root = compose(text, offset)?;
    match root {
        None => Ok(Value::Null),
        Some(node) => {
            let mut budget = EXPANSION_LIMIT;
            to_json(&node, &mut budget)
        }
    }
}

/// The 1-based line (relative to `text`) where the key at `path` is written,
/// e.g. `["stringData", "password"]`; for error messages only (it parses again).
pub fn key_line(text: &str, path: &[&str]) -> Option<usize> {
    let mut node = compose(text, 0).ok()??;
    let mut line = None;
    for step in path {
        let Node::Map(entries, _) = &*node else {
            return line;
        };
        let (key, value) = entries.iter().rev().find(|(k, _)| match &**k {
            Node::Scalar(s) => s.value == *step,
            _ => false,
        })?;
        line = Some(key.line());
        node = value.clone();
    }
    line
}

/// Nodes produced by expanding aliases, at most (a "billion laughs" guard).
const EXPANSION_LIMIT: usize = 1_000_000;

#[derive(Debug)]
struct Scalar {
    value: String,
    plain: bool,
    tag: Option<Tag>,
    line: usize,
}

#[derive(Debug)]
enum Node {
    Scalar(Scalar),
    Sequence(Vec<Rc<Node>>, usize),
    Map(Vec<(Rc<Node>, Rc<Node>)>, usize),
}

impl Node {
    fn line(&self) -> usize {
        match self {
            Node::Scalar(s) => s.line,
            Node::Sequence(_, line) | Node::Map(_, line) => *line,
        }
    }
}

enum Open {
    Sequence(Vec<Rc<Node>>, usize, usize),
    Map(Vec<Rc<Node>>, usize, usize),
}

fn scan_error(err: saphyr_parser::ScanError, offset: usize) -> Error {
    Error {
        line: Some(err.marker().line() + offset),
        message: format!("invalid YAML: {}", err.info()),
    }
}

/// Builds the node tree of the first document, aliases resolved to shared nodes.
fn compose(text: &str, offset: usize) -> Result<Option<Rc<Node>>, Error> {
    let mut anchors: HashMap<usize, Rc<Node>> = HashMap::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<Rc<Node>> = None;
    let mut documents = 0;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| scan_error(e, offset))?;
        let line = span.start.line() + offset;
        let finished: Option<(Rc<Node>, usize)> = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(Error {
                        line: Some(line),
                        message: "invalid YAML: a second document without a `---` line before it"
                            .to_string(),
                    });
                }
                None
            }
            Event::Scalar(value, style, anchor, tag) => Some((
                Rc::new(Node::Scalar(Scalar {
                    value: value.into_owned(),
                    plain: style == ScalarStyle::Plain,
                    tag: tag.map(Cow::into_owned),
                    line,
                })),
                anchor,
            )),
            Event::Alias(id) => match anchors.get(&id) {
                Some(node) => Some((node.clone(), 0)),
                None => {
                    return Err(Error {
                        line: Some(line),
                        message: "invalid YAML: alias to an unknown anchor".to_string(),
                    })
                }
            },
            Event::SequenceStart(anchor, _) => {
                stack.push(Open::Sequence(Vec::new(), anchor, line));
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Open::Map(Vec::new(), anchor, line));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Open::Sequence(items, anchor, line)) => {
                    Some((Rc::new(Node::Sequence(items, line)), anchor))
                }
                Some(Open::Map(items, anchor, line)) => {
                    let pairs = items
                        .chunks(2)
                        .map(|pair| (pair[0].clone(), pair[1].clone()))
                        .collect();
                    Some((Rc::new(Node::Map(pairs, line)), anchor))
                }
                None => None,
            },
            _ => None,
        };
        if let Some((node, anchor)) = finished {
            if anchor != 0 {
                anchors.insert(anchor, node.clone());
            }
            match stack.last_mut() {
                Some(Open::Sequence(items, _, _)) | Some(Open::Map(items, _, _)) => {
                    items.push(node)
                }
                None => root = Some(node),
            }
        }
    }
    Ok(root)
}

fn core_tag(tag: &Option<Tag>) -> Option<String> {
    let tag = tag.as_ref()?;
    if tag.handle == "tag:yaml.org,2002:" || tag.handle == "!!" {
        Some(format!("!!{}", tag.suffix))
    } else if tag.handle == "!" && tag.suffix.is_empty() {
        None
    } else {
        Some(format!("{}{}", tag.handle, tag.suffix))
    }
}

fn to_json(node: &Node, budget: &mut usize) -> Result<Value, Error> {
    if *budget == 0 {
        return Err(Error {
            line: Some(node.line()),
            message: "document contains excessive aliasing".to_string(),
        });
    }
    *budget -= 1;
    match node {
        Node::Scalar(scalar) => scalar_value(scalar),
        Node::Sequence(items, _) => items
            .iter()
            .map(|item| to_json(item, budget))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Node::Map(entries, _) => {
            let mut map = Map::new();
            // Keys written in this mapping, with their lines (merged keys may be overridden).
            let mut written: HashMap<String, usize> = HashMap::new();
            for (key, value) in entries {
                if is_merge(key) {
                    merge_into(&mut map, value, budget)?;
                    continue;
                }
                let name = key_string(key)?;
                if let Some(first) = written.get(&name) {
                    return Err(Error {
                        line: Some(key.line()),
                        message: format!("mapping key {name:?} already defined at line {first}"),
                    });
                }
                written.insert(name.clone(), key.line());
                map.insert(name, to_json(value, budget)?);
            }
            Ok(Value::Object(map))
        }
    }
}

fn is_merge(key: &Node) -> bool {
    match key {
        Node::Scalar(s) => {
            s.value == "<<" && (s.plain || core_tag(&s.tag).as_deref() == Some("!!merge"))
        }
        _ => false,
    }
}

/// `<<: *base` or `<<: [*a, *b]`: go-yaml v2 writes the merged keys into the
/// mapping at the point the merge key appears (keys written after it win),
/// and in a list the earlier mappings win.
fn merge_into(map: &mut Map<String, Value>, value: &Node, budget: &mut usize) -> Result<(), Error> {
    let want_map = || Error {
        line: Some(value.line()),
        message: "map merge requires map or sequence of maps as the value".to_string(),
    };
    let sources: Vec<&Node> = match value {
        Node::Map(..) => vec![value],
        Node::Sequence(items, _) => items.iter().rev().map(|i| &**i).collect(),
        Node::Scalar(_) => return Err(want_map()),
    };
    for source in sources {
        if !matches!(source, Node::Map(..)) {
            return Err(want_map());
        }
        if let Value::Object(merged) = to_json(source, budget)? {
            for (k, v) in merged {
                map.insert(k, v);
            }
        }
    }
    Ok(())
}

/// A mapping key as sigs.k8s.io/yaml turns it into a JSON object key.
fn key_string(key: &Node) -> Result<String, Error> {
    let unsupported = |what: &str| Error {
        line: Some(key.line()),
        message: format!("unsupported map key: {what}"),
    };
    let Node::Scalar(scalar) = key else {
        return Err(unsupported("a sequence or mapping cannot be a key"));
    };
    match scalar_value(scalar)? {
        Value::String(s) => Ok(s),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Ok(i.to_string()),
            (_, Some(u), _) => Ok(u.to_string()),
            (_, _, Some(f)) => Ok(format_float32(f)),
            _ => Err(unsupported("number")),
        },
        Value::Null => Err(unsupported("null")),
        _ => Err(unsupported("value")),
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)`, enough for keys.
fn format_float32(f: f64) -> String {
    let short = f as f32;
    let text = format!("{short}");
    if text.contains('e') || text.len() <= 21 {
        text
    } else {
        format!("{short:e}")
    }
}

/// What go-yaml v2 resolves a scalar to, made JSON-able.
fn scalar_value(scalar: &Scalar) -> Result<Value, Error> {
    let tag = core_tag(&scalar.tag);
    let resolved = match tag.as_deref() {
        // Quoted and block scalars without a tag are strings.
        None if !scalar.plain => Resolved::Str,
        None => resolve(&scalar.value),
        Some("!!str") => Resolved::Str,
        Some(wanted @ ("!!int" | "!!float" | "!!bool" | "!!null")) => {
            let got = resolve(&scalar.value);
            match (wanted, &got) {
                ("!!int", Resolved::Int(_) | Resolved::Uint(_))
                | ("!!float", Resolved::Float(_))
                | ("!!bool", Resolved::Bool(_))
                | ("!!null", Resolved::Null) => got,
                ("!!float", Resolved::Int(i)) => Resolved::Float(*i as f64),
                _ => {
                    return Err(Error {
                        line: Some(scalar.line),
                        message: format!(
                            "cannot decode {} `{}` as a {wanted}",
                            got.tag(),
                            scalar.value
                        ),
                    })
                }
            }
        }
        Some("!!binary") => {
            return Err(Error {
                line: Some(scalar.line),
                message: "the !!binary tag is not supported: write the base64 text without it"
                    .to_string(),
            })
        }
        // Other tags are not resolvable: the text is kept.
        Some(_) => Resolved::Str,
    };
    Ok(match resolved {
        Resolved::Str => Value::String(scalar.value.clone()),
        Resolved::Null => Value::Null,
        Resolved::Bool(b) => Value::Bool(b),
        Resolved::Int(i) => Value::Number(i.into()),
        Resolved::Uint(u) => Value::Number(u.into()),
        Resolved::Float(f) => {
            if !f.is_finite() {
                return Err(Error {
                    line: Some(scalar.line),
                    message: format!(
                        "{} cannot be represented in JSON (Kubernetes objects are JSON)",
                        scalar.value
                    ),
                });
            }
            float_json(f)
        }
    })
}

/// Go's encoding/json writes an integral float64 below 1e21 without a
/// fraction, so `1e3` reaches the API server as `1000`.
fn float_json(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 1e18 {
        Value::Number((f as i64).into())
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Resolved {
    Str,
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
}

impl Resolved {
    fn tag(&self) -> &'static str {
        match self {
            Resolved::Str => "!!str",
            Resolved::Null => "!!null",
            Resolved::Bool(_) => "!!bool",
            Resolved::Int(_) | Resolved::Uint(_) => "!!int",
            Resolved::Float(_) => "!!float",
        }
    }
}

/// go-yaml v2's `resolve("", in)` for a plain scalar.
fn resolve(text: &str) -> Resolved {
    // The first character decides which rules can apply at all.
    let hint = match text.bytes().next() {
        None => 'N',
        Some(b'+' | b'-') => 'S',
        Some(b'0'..=b'9') => 'D',
        Some(b'y' | b'Y' | b'n' | b'N' | b't' | b'T' | b'f' | b'F' | b'o' | b'O' | b'~') => 'M',
        Some(b'.') => '.',
        Some(_) => return Resolved::Str,
    };
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Resolved::Bool(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Resolved::Bool(false)
        }
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        _ => {}
    }
    match hint {
        '.' => match go_parse_float(text) {
            Some(f) => Resolved::Float(f),
            None => Resolved::Str,
        },
        'D' | 'S' => {
            // (go-yaml also tries timestamps here, but decoding into
            // interface{} keeps a timestamp as its string, and no timestamp
            // is also a number, so the outcome is the same.)
            let plain: String = text.chars().filter(|c| *c != '_').collect();
            let int_error = match go_parse_int(&plain) {
                Ok(i) => return Resolved::Int(i),
                Err(e) => e,
            };
            if let Ok(u) = go_parse_uint(&plain) {
                return Resolved::Uint(u);
            }
            if yaml_style_float(&plain) {
                if let Some(f) = go_parse_float(&plain) {
                    return Resolved::Float(f);
                }
            }
            if let Some(rest) = plain.strip_prefix("0b") {
                if let Ok(u) = u64::from_str_radix(rest, 2) {
                    return i64::try_from(u).map_or(Resolved::Uint(u), Resolved::Int);
                }
            } else if let Some(rest) = plain.strip_prefix("-0b") {
                if let Ok(i) = i64::from_str_radix(&format!("-{rest}"), 2) {
                    return Resolved::Int(i);
                }
            }
            // Out of range for 64 bits: go-yaml makes a big.Int; JSON then
            // carries the digits, which we can only keep as a float.
            if int_error == IntError::Range {
                if let Some(f) = go_parse_float(&plain) {
                    return Resolved::Float(f);
                }
            }
            Resolved::Str
        }
        _ => Resolved::Str,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum IntError {
    Syntax,
    Range,
}

/// Go's `strconv.ParseUint(s, 0, 64)`: `0x`/`0o`/`0b` prefixes, a leading
/// `0` for octal, no sign.
fn go_parse_uint(s: &str) -> Result<u64, IntError> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(IntError::Syntax);
    }
    let (radix, digits) = if bytes[0] == b'0' && bytes.len() > 1 {
        match bytes[1] {
            b'x' | b'X' => (16, &s[2..]),
            b'o' | b'O' => (8, &s[2..]),
            b'b' | b'B' => (2, &s[2..]),
            _ => (8, &s[1..]),
        }
    } else {
        (10, s)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(IntError::Syntax);
    }
    u64::from_str_radix(digits, radix).map_err(|_| IntError::Range)
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
fn go_parse_int(s: &str) -> Result<i64, IntError> {
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let magnitude = go_parse_uint(rest)?;
    if negative {
        if magnitude <= i64::MAX as u64 + 1 {
            Ok((magnitude as i128).wrapping_neg() as i64)
        } else {
            Err(IntError::Range)
        }
    } else {
        i64::try_from(magnitude).map_err(|_| IntError::Range)
    }
}

/// go-yaml's `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if i < b.len() && b[i] == b'.' {
            i += 1;
            digits(&mut i);
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseFloat(s, 64)` for the decimal forms reaching it here
/// (Rust's parser also takes `inf`/`nan` words, which never start with `.`
/// or pass the pattern above).
fn go_parse_float(s: &str) -> Option<f64> {
    if s.chars()
        .any(|c| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
    {
        return None;
    }
    s.parse::<f64>().ok()
}

/// Splits a stream on document markers (`---` at the start of a line),
/// returning each document with the 1-based line it starts on.
fn split(text: &str) -> Vec<(usize, String)> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    let mut seen_marker = false;
    for (number, line) in text.lines().enumerate() {
        let number = number + 1;
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_marker {
            if seen_marker || !current.trim().is_empty() {
                documents.push((start, std::mem::take(&mut current)));
            }
            current.clear();
            // Keep anything after the marker (`--- # comment`, `--- {a: 1}`).
            current.push_str(&line[3..]);
            current.push('\n');
            start = number;
            seen_marker = true;
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(text: &str) -> Value {
        parse_document(&format!("v: {text}\n")).unwrap_or_else(|e| panic!("{text}: {e}"))["v"]
            .clone()
    }

    /// Every plain scalar form whose meaning differs between YAML 1.1 (what
    /// kubectl reads) and YAML 1.2, with the JSON kubectl sends.
    #[test]
    fn plain_scalars_resolve_as_go_yaml_v2_does() {
        let table: &[(&str, Value)] = &[
            // Octal, hex, binary, underscores.
            ("0755", json!(493)),
            ("0644", json!(420)),
            ("0o755", json!(493)),
            ("-0755", json!(-493)),
            ("0x1F", json!(31)),
            ("0X1f", json!(31)),
            ("0b101", json!(5)),
            ("-0b101", json!(-5)),
            ("1_000", json!(1000)),
            ("+12", json!(12)),
            // Not valid octal: go-yaml falls through to a float.
            ("08", json!(8)),
            ("0999", json!(999)),
            ("0", json!(0)),
            // Floats; integral ones reach the API as integers.
            ("1e3", json!(1000)),
            ("1.5", json!(1.5)),
            (".5", json!(0.5)),
            ("-.5", json!(-0.5)),
            ("5.", json!(5)),
            ("1.0", json!(1)),
            // YAML 1.1 booleans.
            ("yes", json!(true)),
            ("Yes", json!(true)),
            ("YES", json!(true)),
            ("y", json!(true)),
            ("Y", json!(true)),
            ("on", json!(true)),
            ("On", json!(true)),
            ("ON", json!(true)),
            ("true", json!(true)),
            ("True", json!(true)),
            ("no", json!(false)),
            ("n", json!(false)),
            ("N", json!(false)),
            ("off", json!(false)),
            ("OFF", json!(false)),
            ("False", json!(false)),
            // Nulls.
            ("~", json!(null)),
            ("null", json!(null)),
            ("Null", json!(null)),
            ("NULL", json!(null)),
            ("", json!(null)),
            // Strings that only look like something else.
            ("yEs", json!("yEs")),
            ("nope", json!("nope")),
            ("tRUE", json!("tRUE")),
            ("0x", json!("0x")),
            ("0b2", json!("0b2")),
            ("1.2.3", json!("1.2.3")),
            ("2001-12-14", json!("2001-12-14")),
            ("2001-12-14T21:59:43.10Z", json!("2001-12-14T21:59:43.10Z")),
            ("12:30", json!("12:30")),
            ("1e", json!("1e")),
            ("inf", json!("inf")),
            ("nan", json!("nan")),
            ("0.5Gi", json!("0.5Gi")),
            ("500m", json!("500m")),
            ("v1.2", json!("v1.2")),
            ("_1", json!("_1")),
            // Beyond 64 bits: an unsigned integer, then a float.
            ("9223372036854775808", json!(9223372036854775808u64)),
            ("-9223372036854775808", json!(i64::MIN)),
            ("18446744073709551616", json!(18446744073709551616.0)),
        ];
        for (text, want) in table {
            assert_eq!(&value(text), want, "plain {text:?}");
        }
    }

    #[test]
    fn quoted_and_block_scalars_stay_strings() {
        for text in [
            "\"0755\"", "'0755'", "\"yes\"", "'on'", "\"~\"", "\"1e3\"", "''",
        ] {
            let inner = &text[1..text.len() - 1];
            assert_eq!(value(text), json!(inner), "{text}");
        }
        let block = parse_document("v: |\n  0755\nw: >\n  yes\n").unwrap();
        assert_eq!(block, json!({"v": "0755\n", "w": "yes\n"}));
    }

    #[test]
    fn explicit_tags() {
        assert_eq!(value("!!str 0755"), json!("0755"));
        assert_eq!(value("!!str yes"), json!("yes"));
        assert_eq!(value("!!int \"10\""), json!(10));
        assert_eq!(value("!!float 1"), json!(1));
        assert_eq!(value("!custom 0755"), json!("0755"));
        let err = parse_document("v: !!int abc\n").unwrap_err();
        assert_eq!(err.message, "cannot decode !!str `abc` as a !!int");
        assert!(parse_document("v: !!binary aGk=\n").is_err());
    }

    #[test]
    fn special_floats_are_errors_as_json_cannot_hold_them() {
        for text in [".inf", "-.Inf", ".nan", "+.INF"] {
            let err = parse_document(&format!("v: {text}\n")).unwrap_err();
            assert!(
                err.message.contains("cannot be represented in JSON"),
                "{text}"
            );
        }
    }

    #[test]
    fn keys_become_strings_as_sigs_yaml_makes_them() {
        let doc = parse_document("on: 1\nno: 2\n0755: 3\n1.5: 4\n\"yes\": 5\n").unwrap();
        assert_eq!(
            doc,
            json!({"true": 1, "false": 2, "493": 3, "1.5": 4, "yes": 5})
        );
        assert!(parse_document("~: 1\n").is_err());
        assert!(parse_document("? [a]\n: 1\n").is_err());
    }

    #[test]
    fn merge_keys() {
        let text = "base: &base {a: 1, b: 2}\nother: &other {b: 20, c: 30}\n\
                    one: {<<: *base, b: 3}\n\
                    list: {<<: [*base, *other]}\n\
                    before: {b: 9, <<: *base}\n\
                    quoted: {\"<<\": 1}\n";
        let doc = parse_document(text).unwrap();
        assert_eq!(doc["one"], json!({"a": 1, "b": 3}));
        // In a list, earlier mappings win.
        assert_eq!(doc["list"], json!({"a": 1, "b": 2, "c": 30}));
        // go-yaml v2 writes merged keys where `<<` appears: they overwrite earlier keys.
        assert_eq!(doc["before"], json!({"a": 1, "b": 2}));
        assert_eq!(doc["quoted"], json!({"<<": 1}));
        let err = parse_document("a: 1\nb: {<<: *x}\n").unwrap_err();
        assert!(err.message.contains("invalid YAML"), "{err}");
        let err = parse_document("a: &a [1]\nb: {<<: *a}\n").unwrap_err();
        assert_eq!(
            err.message,
            "map merge requires map or sequence of maps as the value"
        );
    }

    #[test]
    fn anchors_and_aliases() {
        let doc = parse_document("a: &x [1, yes]\nb: *x\n").unwrap();
        assert_eq!(doc, json!({"a": [1, true], "b": [1, true]}));
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = format!("*a{}", i - 1);
            text += &format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", "));
        }
        let err = parse_document(&text).unwrap_err();
        assert!(err.message.contains("excessive aliasing"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_errors_with_both_lines() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  name: b\n";
        let err = parse_document(text).unwrap_err();
        assert_eq!(err.line, Some(5));
        assert_eq!(
            err.message,
            "mapping key \"name\" already defined at line 4"
        );
        // Keys that only become equal as JSON keys count too: `on` is "true".
        let err = parse_document("x:\n  \"true\": 1\n  on: 2\n").unwrap_err();
        assert_eq!(err.line, Some(3));
        // A key overriding a merged one is not a duplicate.
        assert!(parse_document("b: &b {x: 1}\nc: {<<: *b, x: 2}\n").is_ok());
    }

    #[test]
    fn documents_are_split_and_numbered() {
        let text = "# leading\n---\na: 1\n---\n---\nb: [\n---\nc: 0755\n";
        let docs = documents(text);
        let summary: Vec<(usize, usize, bool)> = docs
            .iter()
            .map(|d| (d.index, d.line, d.value.is_ok()))
            .collect();
        assert_eq!(
            summary,
            // The comment before the first marker counts, as people count it.
            vec![
                (1, 1, true),
                (2, 2, true),
                (3, 4, true),
                (4, 5, false),
                (5, 7, true)
            ]
        );
        assert_eq!(docs[0].value, Ok(Value::Null));
        assert_eq!(docs[2].value, Ok(Value::Null));
        assert_eq!(docs[4].value, Ok(json!({"c": 493})));
        let broken = docs[3].value.as_ref().unwrap_err();
        assert!((5..=7).contains(&broken.line.unwrap()), "{broken:?}");
    }

    #[test]
    fn key_lines_for_messages() {
        let text = "kind: Secret\nstringData:\n  user: a\n  port: 5432\n";
        assert_eq!(key_line(text, &["stringData", "port"]), Some(4));
        assert_eq!(key_line(text, &["stringData"]), Some(2));
        assert_eq!(key_line(text, &["nope"]), None);
    }
}
