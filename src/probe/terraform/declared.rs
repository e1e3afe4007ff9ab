//! Where each changed resource is declared: `file.tf:line` relative to the
//! repository root, for links from the page, the API and Slack into git.
//! Terraform's plan JSON names each module call's `source` but no source
//! positions, so the module's directory comes from the plan's
//! `configuration` and the line from the `resource "type" "name"` block
//! header in that directory's `.tf` files. Remote modules have no
//! declaration in this repository and get none.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::model::outcome::ResourceChange;
use crate::probe::ProbeContext;

/// Sets `declared_at` on every change whose subject is a resource or output
/// declared in a local module of the root at `root_dir`.
pub fn annotate(changes: &mut [ResourceChange], plan: &Value, root_dir: &Path, cx: &ProbeContext) {
    for change in changes {
        if let Some((file, line)) = declaration(&change.subject, plan, root_dir) {
            if let Some(relative) = cx.repo_relative(&file) {
                change.declared_at = Some(format!("{relative}:{line}"));
            }
        }
    }
}

/// The file and 1-based line declaring `address`.
fn declaration(address: &str, plan: &Value, root_dir: &Path) -> Option<(PathBuf, usize)> {
    let mut dir = root_dir.to_path_buf();
    let mut module = &plan["configuration"]["root_module"];
    let mut rest = address;
    while let Some(after) = rest.strip_prefix("module.") {
        let (call, remainder) = split_step(after)?;
        let call_config = &module["module_calls"][call];
        let source = call_config["source"].as_str()?;
        if !(source.starts_with("./") || source.starts_with("../")) {
            return None;
        }
        dir = dir.join(source);
        module = &call_config["module"];
        rest = remainder;
    }
    let (block, kind, name) = if let Some(output) = rest.strip_prefix("output.") {
        ("output", None, output)
    } else {
        let (block, rest) = match rest.strip_prefix("data.") {
            Some(rest) => ("data", rest),
            None => ("resource", rest),
        };
        let (kind, name) = rest.split_once('.')?;
        let name = name.split('[').next().unwrap_or(name);
        (block, Some(kind), name)
    };
    find_block(&dir, block, kind, name)
}

/// `name[key].rest` or `name.rest` → (name, rest).
fn split_step(text: &str) -> Option<(&str, &str)> {
    let end = text.find(['.', '['])?;
    let name = &text[..end];
    let mut rest = &text[end..];
    if rest.starts_with('[') {
        let close = rest.find("].")?;
        rest = &rest[close + 1..];
    }
    Some((name, rest.strip_prefix('.')?))
}

/// The first `.tf` file (by name) in `dir` with the block header, and its line.
fn find_block(dir: &Path, block: &str, kind: Option<&str>, name: &str) -> Option<(PathBuf, usize)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tf"))
        .collect();
    files.sort();
    let header = |line: &str| -> bool {
        let mut words = line.split_whitespace();
        if words.next() != Some(block) {
            return false;
        }
        let quoted = |w: Option<&str>, want: &str| w.map(|w| w.trim_matches('"')) == Some(want);
        match kind {
            Some(kind) => quoted(words.next(), kind) && quoted(words.next(), name),
            None => quoted(words.next(), name),
        }
    };
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if let Some(index) = text.lines().position(header) {
            return Some((normalize(&file), index + 1));
        }
    }
    None
}

/// Resolves `..` lexically so the path can be made repo-relative.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_resources_data_outputs_and_local_modules() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("envs/prod");
        let module = tmp.path().join("modules/net");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&module).unwrap();
        std::fs::write(
            root.join("main.tf"),
            "# app\nresource \"terraform_data\" \"web\" {\n}\n\ndata \"x\" \"y\" {}\noutput \"url\" {\n  value = 1\n}\n",
        )
        .unwrap();
        std::fs::write(root.join("a.tf"), "locals {}\n").unwrap();
        std::fs::write(
            module.join("vpc.tf"),
            "\n\nresource \"terraform_data\" \"subnet\" {\n  for_each = {}\n}\n",
        )
        .unwrap();
        let plan = json!({"configuration": {"root_module": {"module_calls": {
            "net": {"source": "../../modules/net", "module": {}},
            "remote": {"source": "terraform-aws-modules/vpc/aws", "module": {}}
        }}}});
        let cases = [
            ("terraform_data.web", Some(("envs/prod/main.tf", 2))),
            ("terraform_data.web[0]", Some(("envs/prod/main.tf", 2))),
            ("data.x.y", Some(("envs/prod/main.tf", 5))),
            ("output.url", Some(("envs/prod/main.tf", 6))),
            (
                "module.net.terraform_data.subnet[\"a\"]",
                Some(("modules/net/vpc.tf", 3)),
            ),
            (
                "module.net[\"k\"].terraform_data.subnet[\"a\"]",
                Some(("modules/net/vpc.tf", 3)),
            ),
            ("module.remote.aws_vpc.this[0]", None),
            ("terraform_data.gone", None),
        ];
        for (address, want) in cases {
            let got = declaration(address, &plan, &root).map(|(file, line)| {
                (
                    file.strip_prefix(tmp.path()).unwrap().display().to_string(),
                    line,
                )
            });
            assert_eq!(got, want.map(|(f, l)| (f.to_string(), l)), "{address}");
        }
    }
}
