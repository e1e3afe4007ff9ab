//! The generated configuration reference against what users copy and what the
//! loader does: every key the shipped configs and the docs' TOML examples
//! use is in the reference (commented-out settings too), and every default
//! the reference states as a TOML value is what the loader applies when the
//! key is left out. (`contract.rs` checks the committed page is the one the
//! code generates.)

use std::path::{Path, PathBuf};

use driftwatch::reference::{config_tables, ConfigTable};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn tables() -> Vec<ConfigTable> {
    config_tables().unwrap_or_else(|errors| panic!("{}", errors.join("\n")))
}

/// `text` with its commented-out settings (`# key = value`, `# [table]`)
/// turned back into settings, so the keys an example only mentions count too.
fn uncommented(text: &str) -> String {
    let setting = regex::Regex::new(r"^(\[\[?[a-z_.]+\]\]?\s*(#.*)?|[a-z_]+ = .*)$").unwrap();
    text.lines()
        .map(|line| match line.trim_start().strip_prefix("# ") {
            Some(rest) if setting.is_match(rest) => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The keys of `document` the reference does not list, as `path.key`.
/// `layer`: the layer of probes that name none (a page's fragment).
fn unknown_keys(
    tables: &[ConfigTable],
    document: &toml::Table,
    layer: Option<&str>,
) -> Vec<String> {
    let mut unknown = Vec::new();
    check(tables, "", None, document, layer, &mut unknown);
    unknown
}

fn check(
    tables: &[ConfigTable],
    path: &str,
    layer: Option<&str>,
    table: &toml::Table,
    page_layer: Option<&str>,
    unknown: &mut Vec<String>,
) {
    // A probe's keys are the common ones plus its layer's.
    let layer = match path {
        "probe" => table
            .get("layer")
            .and_then(toml::Value::as_str)
            .or(page_layer),
        _ => layer,
    };
    let candidates: Vec<&ConfigTable> = tables
        .iter()
        .filter(|t| {
            t.path == path && (t.layer.as_deref() == layer || path == "probe" && t.layer.is_none())
        })
        .collect();
    for (name, value) in table {
        let key = candidates
            .iter()
            .flat_map(|t| &t.keys)
            .find(|k| &k.name == name);
        let Some(key) = key else {
            let at = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            unknown.push(match layer {
                Some(layer) => format!("{at} (layer {layer})"),
                None => at,
            });
            continue;
        };
        if let Some(inner) = &key.table {
            let items: Vec<&toml::Table> = match value {
                toml::Value::Table(one) => vec![one],
                toml::Value::Array(many) => many.iter().filter_map(toml::Value::as_table).collect(),
                _ => Vec::new(),
            };
            for item in items {
                check(tables, inner, layer, item, page_layer, unknown);
            }
        }
    }
}

/// The config examples users copy: the shipped configs (the Kubernetes
/// manifests' ConfigMaps included) and the TOML blocks of the README and
/// docs/ (but the acks files' `[[ack]]` blocks, another file's format), each
/// with the layer its page is about.
fn examples() -> Vec<(String, String, Option<&'static str>)> {
    let root = root();
    let mut examples = Vec::new();
    for file in [
        "config/driftwatch.example.toml",
        "config/demo/driftwatch.toml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        examples.push((file.to_string(), text, None));
    }
    for entry in walkdir::WalkDir::new(root.join("config/kubernetes")) {
        let path = entry.unwrap().into_path();
        if path.extension().map_or(true, |ext| ext != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value = <serde_yaml::Value as serde::Deserialize>::deserialize(document).unwrap();
            if let Some(config) = value["data"]["driftwatch.toml"].as_str() {
                let name = path.strip_prefix(&root).unwrap().display().to_string();
                examples.push((name, config.to_string(), None));
            }
        }
    }
    let mut pages = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        pages.push(entry.unwrap().path());
    }
    pages.sort();
    for page in pages {
        let layer = driftwatch::probe::LAYERS
            .iter()
            .copied()
            .find(|layer| page.file_stem().is_some_and(|stem| stem == *layer));
        let text = std::fs::read_to_string(&page).unwrap();
        let name = page.strip_prefix(&root).unwrap().display().to_string();
        for (index, block) in text.split("```toml\n").skip(1).enumerate() {
            let block = block.split("\n```").next().unwrap();
            examples.push((
                format!("{name} (TOML block {})", index + 1),
                block.to_string(),
                layer,
            ));
        }
    }
    examples
}

#[test]
fn every_key_the_examples_use_is_in_the_reference() {
    let tables = tables();
    let mut problems = Vec::new();
    let mut checked = 0;
    for (name, text, layer) in examples() {
        let document: toml::Table = match toml::from_str(&uncommented(&text)) {
            Ok(document) => document,
            Err(err) => {
                problems.push(format!("{name}: not TOML once uncommented: {err}"));
                continue;
            }
        };
        if document.contains_key("ack") {
            continue;
        }
        checked += 1;
        for key in unknown_keys(&tables, &document, layer) {
            problems.push(format!(
                "{name}: {key} is not in docs/configuration-reference.md"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 10, "only {checked} examples found");
}

#[test]
fn the_key_check_finds_keys_the_reference_lacks() {
    let document: toml::Table = toml::from_str(&uncommented(
        "bogus = 1\n[server]\nlisten = \":1\"\n# colour = \"red\"\n\
         [[repo]]\nname = \"r\"\nweb_url = { commit = \"c\", file = \"f\", line = \"l\" }\n\
         [[probe]]\nlayer = \"terraform\"\nroots = []\nplaybooks = []\n\
         [[probe.ignore]]\naddress = \"*\"\ntask = \"t\"\n\
         [[probe]]\nname = \"x\"\nlimit = \"web\"\n",
    ))
    .unwrap();
    assert_eq!(
        unknown_keys(&tables(), &document, Some("ansible")),
        [
            "bogus",
            "probe.ignore.task (layer terraform)",
            "probe.playbooks (layer terraform)",
            "repo.web_url.line",
            "server.colour",
        ]
    );
}

fn load(path: &Path, table: &toml::Table) -> driftwatch::config::Config {
    std::fs::write(path, toml::to_string(table).unwrap()).unwrap();
    driftwatch::app::load_config(path).unwrap_or_else(|errors| panic!("{errors}\n{table}"))
}

/// A default written as one TOML value in backticks (`` `"30s"` ``), parsed.
fn literal(default: &str) -> Option<toml::Value> {
    let inner = default.strip_prefix('`')?.strip_suffix('`')?;
    let table: toml::Table = toml::from_str(&format!("value = {inner}")).ok()?;
    table.get("value").cloned()
}

/// What a config resolves to, secrets hidden; a probe's Debug leaves out
/// its schedule and the like, so they are added.
fn resolved(config: &driftwatch::config::Config) -> String {
    let probes: Vec<String> = config
        .probes
        .iter()
        .map(|p| {
            format!(
                "{:?} {:?} {:?} {:?}",
                p.schedule, p.timeout, p.run_on_change, p.labels
            )
        })
        .collect();
    format!("{config:?} {probes:?}")
}

#[test]
fn documented_defaults_are_what_the_loader_applies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dw.toml");
    let base: toml::Table = toml::from_str(
        "[[repo]]\nname = \"infra\"\nurl = \"https://example.com/infra.git\"\n\
         [[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n",
    )
    .unwrap();
    let sharded: toml::Table = toml::from_str(
        "mode = \"kubernetes\"\nidentity = \"a\"\nnamespace = \"b\"\nadvertise_url = \"http://127.0.0.1:1\"\n",
    )
    .unwrap();
    let mut checked = Vec::new();
    for table in tables().iter().filter(|t| t.layer.is_none()) {
        for key in &table.keys {
            let Some(value) = literal(&key.default) else {
                continue;
            };
            let mut without = base.clone();
            if table.path == "cluster" && key.name != "mode" {
                without.insert("cluster".into(), toml::Value::Table(sharded.clone()));
            }
            let mut with = without.clone();
            let target: &mut toml::Table = match table.path.as_str() {
                "" => &mut with,
                "repo" | "probe" => with[&table.path].as_array_mut().unwrap()[0]
                    .as_table_mut()
                    .unwrap(),
                section => with
                    .entry(section)
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .unwrap(),
            };
            target.insert(key.name.clone(), value);
            assert_eq!(
                resolved(&load(&path, &with)),
                resolved(&load(&path, &without)),
                "{} {}: the reference says the default is {}, but setting it changes the config",
                table.heading,
                key.name,
                key.default
            );
            checked.push(format!("{}.{}", table.path, key.name));
        }
    }
    assert!(
        checked.len() >= 20,
        "only {checked:?} have a literal default"
    );
}
