//! Spans: key paths, locating them in the document as `line:col`, reading
//! serde's error paths, and the "did you mean" hints. Knows nothing of the
//! loader; `decode.rs` uses it to put the loader's problems at the right spot.

use toml_edit::{Item, Table, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

pub(super) fn key(name: &str) -> Seg {
    Seg::Key(name.to_string())
}

pub(super) fn path_plus(path: &[Seg], more: &[Seg]) -> Vec<Seg> {
    path.iter().chain(more).cloned().collect()
}

/// Whether a problem is about a key being there at all (point at the key) or
/// about its value (point at the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Key,
    Value,
}

pub(super) struct Problem {
    /// Byte offset in the file; `None` sorts first (file-level problems).
    pub(super) offset: Option<usize>,
    pub(super) text: String,
}

// ---- locating key paths --------------------------------------------------

#[derive(Clone, Copy)]
pub(super) enum Node<'a> {
    Item(&'a Item),
    Table(&'a Table),
    Value(&'a Value),
}

/// The byte offset of `path` in the document: the key itself (`Target::Key`)
/// or its value (`Target::Value`). When the path does not resolve all the way,
/// the deepest part that does.
pub(super) fn locate(root: &Table, path: &[Seg], target: Target) -> Option<usize> {
    let mut best = root.span().map(|span| span.start);
    let mut node: Option<Node> = None;
    for (depth, seg) in path.iter().enumerate() {
        let last = depth + 1 == path.len();
        let next: Option<(Node, Option<usize>)> = match (node, seg) {
            (None, Seg::Key(k)) => table_child(root, k),
            (Some(Node::Item(Item::Table(table))) | Some(Node::Table(table)), Seg::Key(k)) => {
                table_child(table, k)
            }
            (Some(Node::Item(Item::ArrayOfTables(array))), Seg::Index(i)) => array
                .get(*i)
                .map(|table| (Node::Table(table), table.span().map(|s| s.start))),
            (Some(Node::Item(Item::Value(value))) | Some(Node::Value(value)), seg) => {
                value_child(value, seg)
            }
            _ => None,
        };
        let Some((child, key_offset)) = next else {
            break;
        };
        let value_offset = node_offset(&child);
        best = match (last, target) {
            (true, Target::Key) => key_offset.or(value_offset).or(best),
            (true, Target::Value) => value_offset.or(key_offset).or(best),
            (false, _) => key_offset.or(value_offset).or(best),
        };
        node = Some(child);
    }
    best
}

pub(super) fn table_child<'a>(table: &'a Table, k: &str) -> Option<(Node<'a>, Option<usize>)> {
    let item = table.get(k)?;
    let key_offset = table
        .key(k)
        .and_then(|key| key.span())
        .map(|span| span.start);
    Some((Node::Item(item), key_offset))
}

pub(super) fn value_child<'a>(value: &'a Value, seg: &Seg) -> Option<(Node<'a>, Option<usize>)> {
    match (value, seg) {
        (Value::InlineTable(table), Seg::Key(k)) => {
            let child = table.get(k)?;
            let key_offset = table
                .key(k)
                .and_then(|key| key.span())
                .map(|span| span.start);
            Some((Node::Value(child), key_offset))
        }
        (Value::Array(array), Seg::Index(i)) => {
            let child = array.get(*i)?;
            Some((Node::Value(child), child.span().map(|span| span.start)))
        }
        _ => None,
    }
}

pub(super) fn node_offset(node: &Node) -> Option<usize> {
    match node {
        Node::Item(item) => item.span().map(|span| span.start),
        Node::Table(table) => table.span().map(|span| span.start),
        Node::Value(value) => value.span().map(|span| span.start),
    }
}

/// Where `key` (relative to the probe table, written as [`super::FieldError`]
/// keys are: `var_files[1]`) of the probe named `probe` is in the config
/// `text`, as `line:col` of its value (of the probe's table when the key is
/// not written), for problems found after loading (`validate`).
pub fn probe_key_position(text: &str, probe: &str, key: &str) -> Option<(usize, usize)> {
    let document = toml_edit::ImDocument::parse(text).ok()?;
    let index = document
        .get("probe")?
        .as_array_of_tables()?
        .iter()
        .position(|table| table.get("name").and_then(|name| name.as_str()) == Some(probe))?;
    let path = path_plus(
        &[self::key("probe"), Seg::Index(index)],
        &parse_key_path(key),
    );
    let offset = locate(document.as_table(), &path, Target::Value)?;
    Some(line_col(text, offset))
}

pub(super) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}

pub(super) fn serde_path(path: &serde_path_to_error::Path) -> Vec<Seg> {
    path.iter()
        .filter_map(|segment| match segment {
            serde_path_to_error::Segment::Seq { index } => Some(Seg::Index(*index)),
            serde_path_to_error::Segment::Map { key } => Some(Seg::Key(key.clone())),
            serde_path_to_error::Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            serde_path_to_error::Segment::Unknown => None,
        })
        .collect()
}

/// `roots[1].name` → [Key(roots), Index(1), Key(name)], as `parse_fields` writes them.
pub(super) fn parse_key_path(text: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in text.split('.').filter(|part| !part.is_empty()) {
        let (name, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            segs.push(Seg::Key(name.to_string()));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(index) = rest[1..end].parse() {
                segs.push(Seg::Index(index));
            }
            rest = &rest[end + 1..];
        }
    }
    segs
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" as
/// "unknown key `x`, did you mean `a`?" when one candidate is close, else as
/// "unknown key `x`, expected one of …". `more` adds candidates serde did not
/// know about (a probe's common keys, for a layer's message). Other messages
/// pass through.
pub(super) fn unknown_key_message(message: &str, more: &[&str]) -> String {
    let Some(field) = unknown_field(message) else {
        return message.to_string();
    };
    let expected: Vec<&str> = message
        .split_once(", expected")
        .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
        .unwrap_or_default();
    let suggestion = expected
        .iter()
        .chain(more)
        .map(|candidate| (strsim::levenshtein(&field, candidate), *candidate))
        .filter(|(distance, candidate)| {
            *distance <= 2.max(candidate.len() / 4) && *distance < candidate.len()
        })
        .min();
    match suggestion {
        Some((_, candidate)) => format!("unknown key `{field}`, did you mean `{candidate}`?"),
        None => message.replacen("unknown field", "unknown key", 1),
    }
}

/// The field name in serde's "unknown field `x`, expected …".
pub(super) fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_string())
}

/// Removes the key at `path` from `value`; false when it is not there.
pub(super) fn remove_at(value: &mut toml::Value, path: &[Seg]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut current = value;
    for seg in parents {
        current = match (current, seg) {
            (toml::Value::Table(table), Seg::Key(k)) => match table.get_mut(k) {
                Some(next) => next,
                None => return false,
            },
            (toml::Value::Array(items), Seg::Index(i)) => match items.get_mut(*i) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    match (current, last) {
        (toml::Value::Table(table), Seg::Key(k)) => table.remove(k).is_some(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::raw::PROBE_COMMON_KEYS;

    #[test]
    fn unknown_keys_get_a_suggestion_when_one_is_close() {
        let serde = "unknown field `comand`, expected one of `command`, `shell`, `workdir`";
        assert_eq!(
            unknown_key_message(serde, &[]),
            "unknown key `comand`, did you mean `command`?"
        );
        let serde = "unknown field `schedul`, expected one of `command`, `shell`";
        assert_eq!(
            unknown_key_message(serde, PROBE_COMMON_KEYS),
            "unknown key `schedul`, did you mean `schedule`?"
        );
        let serde = "unknown field `zzz`, expected `command` or `shell`";
        assert_eq!(
            unknown_key_message(serde, &[]),
            "unknown key `zzz`, expected `command` or `shell`"
        );
        assert_eq!(unknown_key_message("invalid type", &[]), "invalid type");
    }

    #[test]
    fn key_paths_parse() {
        assert_eq!(
            parse_key_path("roots[1].name"),
            vec![key("roots"), Seg::Index(1), key("name")]
        );
        assert_eq!(parse_key_path(""), vec![]);
        assert_eq!(line_col("ab\ncdé\nx", 8), (3, 1));
    }
}
