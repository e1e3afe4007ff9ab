//! docs/configuration-reference.md, generated from the config structs: the
//! file's own tables (`config::file_tables`), then each layer's
//! (`probe::config_tables`). A key's type comes from its Rust type as
//! `schemars` sees it, its meaning and default from its doc comment, which
//! ends with a paragraph `Default: …` or `Required.`. A key without a doc
//! comment, a default the code contradicts (serde's `default` against the
//! `Default:` line) or a table nobody lists is an error, so CI fails before
//! the page can lie.

use serde_json::{Map, Value};

use crate::config::schema::TableSchema;

/// One table of the config file as the reference shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigTable {
    /// Where the table sits: `""` for the top level, `server`, `repo`,
    /// `repo.web_url`, `probe`, `probe.ignore`, ….
    pub path: String,
    /// The probe layer the table belongs to; `None` for the file's own tables
    /// (the `[[probe]]` keys every probe has included).
    pub layer: Option<String>,
    /// The heading on the page (Markdown).
    pub heading: String,
    /// The struct's doc comment.
    pub intro: String,
    pub keys: Vec<ConfigKey>,
}

/// One key of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigKey {
    pub name: String,
    /// Markdown: `duration`, `list of strings`, `` `"text"` or `"json"` ``, ….
    pub kind: String,
    /// Markdown, as the doc comment's `Default:` line says, or `required`.
    pub default: String,
    pub meaning: String,
    /// The path of the table this key holds (`repo.web_url`), if it holds one.
    pub table: Option<String>,
}

/// Every table of the config file, in the page's order; `Err` lists every
/// problem with the structs' doc comments.
pub fn config_tables() -> Result<Vec<ConfigTable>, Vec<String>> {
    let mut tables = Vec::new();
    let mut errors = Vec::new();
    let family = crate::config::file_tables();
    let top = Place {
        path: String::new(),
        list: false,
        layer: None,
    };
    walk(&family, &family[0], top, &mut tables, &mut errors);
    for layer in crate::probe::LAYERS {
        match crate::probe::config_tables(layer) {
            Some(family) => {
                let place = Place {
                    path: "probe".to_string(),
                    list: true,
                    layer: Some(layer),
                };
                walk(&family, &family[0], place, &mut tables, &mut errors)
            }
            None => errors.push(format!(
                "layer {layer:?} lists no config tables: add it to probe::config_tables"
            )),
        }
    }
    match errors.is_empty() {
        true => Ok(tables),
        false => Err(errors),
    }
}

/// docs/configuration-reference.md. Panics, listing every problem, when a
/// doc comment is missing or contradicts the code.
pub fn configuration_reference() -> String {
    match config_tables() {
        Ok(tables) => render(&tables),
        Err(errors) => panic!(
            "the configuration reference cannot be generated:\n{}",
            errors.join("\n")
        ),
    }
}

fn render(tables: &[ConfigTable]) -> String {
    let mut page = String::from(
        "# Configuration reference\n\n\
         <!-- Generated from the config structs' doc comments by \
         driftwatch::reference::configuration_reference; do not edit: run scripts/bless. -->\n\n\
         Every key of the config file, table by table, in the order the code declares them. \
         Unknown keys are errors. How the file is checked, relative paths, secrets as `x_file`, \
         schedules and jitter: [Configuration](configuration.md); each layer's page tells more \
         about its keys ([Layers](layers.md)). A *duration* reads `90s`, `10m`, `1h30m`; a \
         *schedule* is a crontab line or macro (`*/15 * * * *`, `@hourly`) or `\"none\"`; a \
         *time zone* is an IANA name (`Europe/Berlin`). Defaults in backticks are TOML values.\n\n",
    );
    let index: Vec<String> = tables
        .iter()
        .map(|table| format!("[{}](#{})", table.heading, slug(&table.heading)))
        .collect();
    page.push_str(&format!("Tables: {}.\n", index.join(" · ")));
    for table in tables {
        let level = match table.path.contains('.') {
            true => "###",
            false => "##",
        };
        page.push_str(&format!(
            "\n{level} {}\n\n{}\n\n",
            table.heading,
            one_line(&table.intro)
        ));
        page.push_str("| key | type | default | meaning |\n|---|---|---|---|\n");
        for key in &table.keys {
            page.push_str(&format!(
                "| `{}` | {} | {} | {} |\n",
                key.name,
                cell(&key.kind),
                cell(&key.default),
                cell(&key.meaning)
            ));
        }
    }
    page
}

/// The heading of the table at `path` (`repo.web_url`), written as the file
/// spells it; `list`: an array of tables.
fn heading(path: &str, list: bool, layer: Option<&str>) -> String {
    let written = match (path, list) {
        ("", _) => return "Top level".to_string(),
        (path, true) => format!("`[[{path}]]`"),
        (path, false) => format!("`[{path}]`"),
    };
    match layer {
        Some(layer) => format!("{written} layer `{layer}`"),
        None => written,
    }
}

/// Where a table sits: its path, whether it is an array of tables, and the
/// layer it belongs to.
struct Place<'a> {
    path: String,
    list: bool,
    layer: Option<&'a str>,
}

/// Adds the table `table` (a struct of `family`) at `place`, then the tables
/// its keys hold.
fn walk(
    family: &[TableSchema],
    table: &TableSchema,
    place: Place<'_>,
    out: &mut Vec<ConfigTable>,
    errors: &mut Vec<String>,
) {
    let mut nested = Vec::new();
    let keys = table_keys(table, &place.path, place.layer, &mut nested, errors);
    let intro = description(table.schema.as_value()).unwrap_or_else(|| {
        errors.push(format!(
            "{}: the struct has no doc comment; write what the table is for",
            table.name()
        ));
        String::new()
    });
    out.push(ConfigTable {
        heading: heading(&place.path, place.list, place.layer),
        path: place.path.clone(),
        layer: place.layer.map(str::to_string),
        intro,
        keys,
    });
    for (place, def) in nested {
        let key_path = place.path.clone();
        match family.iter().find(|candidate| candidate.name() == def) {
            Some(inner) => walk(family, inner, place, out, errors),
            None => errors.push(format!(
                "{}: `{key_path}` holds {def}, which no list of config tables has \
                 (config::file_tables or probe::config_tables)",
                table.name()
            )),
        }
    }
}

/// The rows of one table; `nested` gets the place and struct name of each
/// table a key holds.
fn table_keys<'a>(
    table: &TableSchema,
    path: &str,
    layer: Option<&'a str>,
    nested: &mut Vec<(Place<'a>, String)>,
    errors: &mut Vec<String>,
) -> Vec<ConfigKey> {
    let empty = Map::new();
    let schema = table.schema.as_object().unwrap_or(&empty);
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let defs = schema
        .get("$defs")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for name in properties.keys() {
        if !table.keys.contains(&name.as_str()) {
            errors.push(format!(
                "{}: the schema has key `{name}` that serde does not declare",
                table.name()
            ));
        }
    }
    let mut keys = Vec::new();
    for name in table.keys {
        let at = format!("{} `{name}`", table.name());
        let Some(property) = properties.get(*name) else {
            errors.push(format!("{at}: serde declares it but the schema lacks it"));
            continue;
        };
        let doc = match parse_doc(description(property).as_deref()) {
            Ok(doc) => doc,
            Err(problem) => {
                errors.push(format!("{at}: {problem}"));
                continue;
            }
        };
        if let Err(problem) = check_default(&doc, property, required.contains(name)) {
            errors.push(format!("{at}: {problem}"));
        }
        let kind = describe(property, defs);
        let key_path = match path {
            "" => name.to_string(),
            path => format!("{path}.{name}"),
        };
        let mut text = kind.text;
        let table_path = kind.nested.map(|def| {
            let anchor = slug(&heading(&key_path, kind.list, layer));
            text = text
                .replace("{tables}", &format!("[tables](#{anchor})"))
                .replace("{table}", &format!("[table](#{anchor})"));
            let place = Place {
                path: key_path.clone(),
                list: kind.list,
                layer,
            };
            nested.push((place, def));
            key_path.clone()
        });
        keys.push(ConfigKey {
            name: name.to_string(),
            kind: text,
            default: doc.default.unwrap_or_else(|| "required".to_string()),
            meaning: doc.meaning,
            table: table_path,
        });
    }
    keys
}

/// A doc comment split into its meaning and its `Default:` line (`None`:
/// `Required.`).
#[derive(Debug, PartialEq)]
struct Doc {
    meaning: String,
    default: Option<String>,
}

fn parse_doc(description: Option<&str>) -> Result<Doc, String> {
    let text = description.map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Err("no doc comment: write its meaning, then a last paragraph \
                    `Default: …` or `Required.`"
            .to_string());
    }
    let (meaning, last) = match text.rsplit_once("\n\n") {
        Some((meaning, last)) => (meaning.trim(), last.trim()),
        None => ("", text),
    };
    let default = if last == "Required." {
        None
    } else if let Some(default) = last.strip_prefix("Default: ") {
        Some(one_line(default.strip_suffix('.').unwrap_or(default)))
    } else {
        return Err(
            "the doc comment does not end with a paragraph `Default: …` or `Required.`".to_string(),
        );
    };
    if meaning.is_empty() {
        return Err("the doc comment gives a default but no meaning".to_string());
    }
    Ok(Doc {
        meaning: one_line(meaning),
        default,
    })
}

/// The doc comment must agree with serde: a key serde requires says
/// `Required.`, and a default serde knows starts the `Default:` line.
fn check_default(doc: &Doc, property: &Value, required: bool) -> Result<(), String> {
    let code_default = property.get("default").filter(|value| !value.is_null());
    match (&doc.default, code_default) {
        (Some(_), _) if required => {
            Err("serde requires this key, so its doc comment should end `Required.`".to_string())
        }
        (None, Some(value)) => Err(format!(
            "the code's default is `{}`, but the doc comment says `Required.`",
            toml_literal(value)
        )),
        (Some(written), Some(value)) => {
            let expected = format!("`{}`", toml_literal(value));
            match written.starts_with(&expected) {
                true => Ok(()),
                false => Err(format!(
                    "the code's default is {expected}, but the doc comment's line reads \
                     \"Default: {written}\"; start it with {expected}"
                )),
            }
        }
        _ => Ok(()),
    }
}

/// A JSON value as TOML writes it inline.
fn toml_literal(value: &Value) -> String {
    match value {
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(toml_literal).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(entries) if entries.is_empty() => "{}".to_string(),
        Value::Object(entries) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|(key, value)| format!("{key} = {}", toml_literal(value)))
                .collect();
            format!("{{ {} }}", entries.join(", "))
        }
        other => other.to_string(),
    }
}

/// A key's type in words; `{table}`/`{tables}` stand for a link to the
/// table it holds (the struct `nested`).
#[derive(Debug, Default)]
struct Kind {
    text: String,
    nested: Option<String>,
    list: bool,
}

fn describe(schema: &Value, defs: &Map<String, Value>) -> Kind {
    let Some(object) = schema.as_object() else {
        return text("any value");
    };
    if let Some(name) = object.get("$ref").and_then(Value::as_str) {
        let name = name.trim_start_matches("#/$defs/");
        return match defs.get(name) {
            Some(def) if def.get("properties").is_some() => Kind {
                text: "{table}".to_string(),
                nested: Some(name.to_string()),
                list: false,
            },
            Some(def) => describe(def, defs),
            None => text("any value"),
        };
    }
    for choice in ["anyOf", "oneOf"] {
        if let Some(options) = object.get(choice).and_then(Value::as_array) {
            let kinds: Vec<Kind> = options
                .iter()
                .filter(|option| option.get("type") != Some(&Value::from("null")))
                .map(|option| describe(option, defs))
                .collect();
            let mut kind = Kind {
                text: kinds
                    .iter()
                    .map(|kind| kind.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
                ..Kind::default()
            };
            if let Some(inner) = kinds.into_iter().find(|kind| kind.nested.is_some()) {
                kind.nested = inner.nested;
                kind.list = inner.list;
            }
            return kind;
        }
    }
    if let Some(value) = object.get("const") {
        return text(&format!("`{}`", toml_literal(value)));
    }
    if let Some(values) = object.get("enum").and_then(Value::as_array) {
        let values: Vec<String> = values
            .iter()
            .map(|value| format!("`{}`", toml_literal(value)))
            .collect();
        return text(&values.join(" or "));
    }
    let types: Vec<&str> = match object.get("type") {
        Some(Value::String(one)) => vec![one.as_str()],
        Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    match types.iter().find(|kind| **kind != "null").copied() {
        Some("string") => match object.get("format").and_then(Value::as_str) {
            Some("duration") => text("duration"),
            Some("cron") => text("schedule"),
            Some("time-zone") => text("time zone"),
            _ => text("string"),
        },
        Some("array") => {
            let item = object
                .get("items")
                .map(|items| describe(items, defs))
                .unwrap_or_else(|| text("any value"));
            Kind {
                text: format!("list of {}", plural(&item.text)),
                list: item.nested.is_some(),
                nested: item.nested,
            }
        }
        Some("object") => match object.get("additionalProperties") {
            Some(Value::Object(values)) => text(&format!(
                "table of {}",
                plural(&describe(&Value::Object(values.clone()), defs).text)
            )),
            _ => text("table"),
        },
        Some(other) => text(other),
        None => text("any value"),
    }
}

fn text(text: &str) -> Kind {
    Kind {
        text: text.to_string(),
        ..Kind::default()
    }
}

fn plural(kind: &str) -> String {
    match kind {
        "{table}" => "{tables}".to_string(),
        "any value" => "any values".to_string(),
        kind if kind.starts_with('`') || kind.contains(' ') && !kind.ends_with("zone") => {
            format!("{kind} values")
        }
        kind => format!("{kind}s"),
    }
}

fn description(schema: &Value) -> Option<String> {
    schema
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// Paragraphs and lines joined with spaces, for a table cell.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as
/// hyphens (as tests/it/docs.rs checks links).
pub fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemars::JsonSchema;
    use serde::Deserialize;

    fn keys_of<T: JsonSchema + serde::de::DeserializeOwned>() -> Result<Vec<ConfigKey>, Vec<String>>
    {
        let mut errors = Vec::new();
        let keys = table_keys(
            &TableSchema::of::<T>(),
            "t",
            None,
            &mut Vec::new(),
            &mut errors,
        );
        match errors.is_empty() {
            true => Ok(keys),
            false => Err(errors),
        }
    }

    /// A table.
    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Documented {
        /// How long to wait.
        /// On two lines.
        ///
        /// Default: `"30s"`.
        wait: Option<String>,
        /// What to run.
        ///
        /// Required.
        run: Vec<String>,
        /// How many.
        ///
        /// Default: `2`: two.
        #[serde(default = "two")]
        count: u32,
        /// Renamed.
        ///
        /// Default: none.
        #[serde(rename = "ref")]
        reference: Option<String>,
    }

    fn two() -> u32 {
        2
    }

    #[test]
    fn a_documented_table_becomes_rows_in_field_order() {
        let keys = keys_of::<Documented>().unwrap();
        let rows: Vec<(&str, &str, &str, &str)> = keys
            .iter()
            .map(|k| {
                (
                    k.name.as_str(),
                    k.kind.as_str(),
                    k.default.as_str(),
                    k.meaning.as_str(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (
                    "wait",
                    "string",
                    "`\"30s\"`",
                    "How long to wait. On two lines."
                ),
                ("run", "list of strings", "required", "What to run."),
                ("count", "integer", "`2`: two", "How many."),
                ("ref", "string", "none", "Renamed."),
            ]
        );
    }

    /// A table with a key nobody documented.
    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Undocumented {
        /// Fine.
        ///
        /// Default: `1`.
        fine: Option<u32>,
        bare: Option<String>,
        /// A meaning but no default line.
        no_default: Option<String>,
    }

    #[test]
    fn an_undocumented_key_is_an_error() {
        let errors = keys_of::<Undocumented>().unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("Undocumented `bare`: no doc comment"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("Undocumented `no_default`: the doc comment does not end"),
            "{errors:?}"
        );
    }

    /// A table whose docs contradict serde.
    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Contradicted {
        /// The code says 2.
        ///
        /// Default: `3`.
        #[serde(default = "two")]
        wrong_default: u32,
        /// Serde requires it.
        ///
        /// Default: none.
        needed: String,
        /// Has a default.
        ///
        /// Required.
        #[serde(default = "two")]
        not_needed: u32,
    }

    #[test]
    fn a_default_the_code_contradicts_is_an_error() {
        let errors = keys_of::<Contradicted>().unwrap_err();
        assert_eq!(
            errors,
            [
                "Contradicted `wrong_default`: the code's default is `2`, but the doc comment's \
                 line reads \"Default: `3`\"; start it with `2`",
                "Contradicted `needed`: serde requires this key, so its doc comment should end \
                 `Required.`",
                "Contradicted `not_needed`: the code's default is `2`, but the doc comment says \
                 `Required.`",
            ]
        );
    }

    #[test]
    fn the_real_tables_generate_and_cover_every_layer() {
        let tables = config_tables().unwrap_or_else(|errors| panic!("{}", errors.join("\n")));
        for layer in crate::probe::LAYERS {
            assert!(
                tables
                    .iter()
                    .any(|t| t.path == "probe" && t.layer.as_deref() == Some(layer)),
                "no table for layer {layer}"
            );
        }
    }
}
