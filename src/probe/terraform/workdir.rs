//! What a root needs on disk between runs, and when `init` can be skipped.
//!
//! Each root (× workspace) gets a data directory under the probe's cache dir,
//! used as `TF_DATA_DIR`, so `.terraform` survives from one checkout to the
//! next. `init` is skipped while the *init fingerprint* is unchanged: the
//! dependency lock file, every `terraform {}` block (providers, backend), the
//! `source`/`version` of every module call (following local modules), the
//! backend config, init arguments and the binary. A commit that only edits
//! resources therefore runs no init at all; one that bumps a module re-runs
//! init in the same directory, which fetches only what changed.
//!
//! A second hash, the *config fingerprint*, covers the whole configuration
//! (all `.tf`/`.tfvars` content). When a root was in sync under the same
//! configuration and now plans changes, reality must have moved.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// 64-bit FNV-1a: stable across builds and Rust versions (unlike `DefaultHasher`).
#[derive(Debug, Clone)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // Separator, so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
    }

    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// The two fingerprints of a root directory.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Everything `init` depends on in the configuration (not the lock file).
    pub init: Fnv,
    /// The whole configuration.
    pub config: Fnv,
}

/// Scans `root` and the local modules it calls; never leaves `checkout`.
pub fn scan(root: &Path, checkout: &Path) -> Scan {
    let mut scan = Scan::default();
    let mut seen = BTreeSet::new();
    visit(root, checkout, &mut seen, &mut scan);
    scan
}

fn visit(dir: &Path, checkout: &Path, seen: &mut BTreeSet<PathBuf>, scan: &mut Scan) {
    let Ok(canonical) = dir.canonicalize() else {
        return;
    };
    if !canonical.starts_with(checkout) || !seen.insert(canonical.clone()) {
        return;
    }
    let Ok(entries) = fs::read_dir(&canonical) else {
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let relative = canonical
        .strip_prefix(checkout)
        .unwrap_or(&canonical)
        .to_string_lossy()
        .into_owned();
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let is_tf = name.ends_with(".tf") || name.ends_with(".tofu");
        let is_json = name.ends_with(".tf.json") || name.ends_with(".tofu.json");
        let is_vars = name.ends_with(".tfvars") || name.ends_with(".tfvars.json");
        if !(is_tf || is_json || is_vars) {
            continue;
        }
        let Ok(text) = fs::read_to_string(&file) else {
            continue;
        };
        let label = format!("{relative}/{name}");
        scan.config.update(label.as_bytes());
        scan.config.update(text.as_bytes());
        if is_json {
            // Rare enough not to parse: any edit re-runs init.
            scan.init.update(label.as_bytes());
            scan.init.update(text.as_bytes());
        } else if is_tf {
            let relevant = init_relevant(&text);
            scan.init.update(label.as_bytes());
            scan.init.update(relevant.text.as_bytes());
            for source in relevant.local_modules {
                visit(&canonical.join(source), checkout, seen, scan);
            }
        }
    }
}

#[derive(Debug, Default, PartialEq)]
struct Relevant {
    text: String,
    local_modules: Vec<String>,
}

/// The lines of a `.tf` file that `init` acts on: every `terraform {}`
/// block, and each module call's header, `source` and `version`. A simple
/// brace counter, not an HCL parser: when it misses something, the plan
/// fails with "run terraform init" and the probe re-runs init then.
fn init_relevant(text: &str) -> Relevant {
    let mut out = Relevant::default();
    let mut depth: i64 = 0;
    let mut block = String::new();
    for line in text.lines() {
        let code = strip_comment(line);
        let trimmed = code.trim();
        if depth == 0 && trimmed.contains('{') {
            block = trimmed
                .split(|c: char| c.is_whitespace() || c == '{')
                .next()
                .unwrap_or("")
                .to_string();
            if block == "module" {
                out.text.push_str(trimmed);
                out.text.push('\n');
            }
        }
        if block == "terraform" && !trimmed.is_empty() {
            out.text.push_str(trimmed);
            out.text.push('\n');
        }
        if block == "module" && depth == 1 {
            if let Some((key, value)) = trimmed.split_once('=') {
                let key = key.trim();
                if key == "source" || key == "version" {
                    out.text.push_str(trimmed);
                    out.text.push('\n');
                    let value = value.trim().trim_matches('"');
                    if key == "source" && (value.starts_with("./") || value.starts_with("../")) {
                        out.local_modules.push(value.to_string());
                    }
                }
            }
        }
        depth += count_outside_strings(code, '{') - count_outside_strings(code, '}');
        if depth <= 0 {
            depth = 0;
            block.clear();
        }
    }
    out
}

/// The line without a trailing `#` or `//` comment (outside strings).
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    let mut escaped = false;
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            b'#' if !in_string => return &line[..i],
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
    }
    line
}

fn count_outside_strings(code: &str, wanted: char) -> i64 {
    let mut in_string = false;
    let mut escaped = false;
    let mut count = 0;
    for c in code.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_string => escaped = true,
            '"' => in_string = !in_string,
            c if c == wanted && !in_string => count += 1,
            _ => {}
        }
    }
    count
}

/// A directory name for a root: readable, and unique through a hash.
pub fn data_key(root: &str) -> String {
    let readable: String = root
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let mut hash = Fnv::default();
    hash.update(root.as_bytes());
    format!("{}-{}", readable.trim_matches('.'), &hash.hex()[..8])
}

/// Files kept beside `TF_DATA_DIR` in a root's cache directory.
#[derive(Debug, Clone)]
pub struct RootCache {
    pub dir: PathBuf,
}

impl RootCache {
    pub fn new(cache_dir: &Path, root: &str) -> RootCache {
        RootCache {
            dir: cache_dir.join("roots").join(data_key(root)),
        }
    }

    /// `TF_DATA_DIR` for this root.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("terraform")
    }

    fn read(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.dir.join(name))
            .ok()
            .map(|s| s.trim().to_string())
    }

    fn write(&self, name: &str, value: &str) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let tmp = self.dir.join(format!(".{name}.tmp"));
        fs::write(&tmp, value)?;
        fs::rename(tmp, self.dir.join(name))
    }

    /// The init fingerprint of the last successful init.
    pub fn initialized(&self) -> Option<String> {
        self.read("init-fingerprint")
    }

    pub fn set_initialized(&self, fingerprint: Option<&str>) -> std::io::Result<()> {
        match fingerprint {
            Some(f) => self.write("init-fingerprint", f),
            None => match fs::remove_file(self.dir.join("init-fingerprint")) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            },
        }
    }

    /// The config fingerprint of the last run that was in sync.
    pub fn in_sync_config(&self) -> Option<String> {
        self.read("in-sync-config")
    }

    pub fn set_in_sync_config(&self, fingerprint: &str) -> std::io::Result<()> {
        self.write("in-sync-config", fingerprint)
    }

    /// The lock file `init` generated for a root whose repo has none; copied
    /// into later checkouts so they match the providers already installed.
    pub fn generated_lock(&self) -> PathBuf {
        self.dir.join("generated.terraform.lock.hcl")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_relevant_keeps_terraform_blocks_and_module_sources() {
        let text = r#"
terraform {
  required_providers {
    null = { source = "hashicorp/null", version = "2.1.2" } # pinned
  }
  backend "local" {}
}
resource "terraform_data" "a" {
  input = "{ not a brace }"
}
module "net" {
  source  = "./modules/net" // local
  version = "1.0"
  cidr    = "10.0.0.0/16"
}
"#;
        let relevant = init_relevant(text);
        assert_eq!(
            relevant.text,
            "terraform {\nrequired_providers {\nnull = { source = \"hashicorp/null\", version = \"2.1.2\" }\n}\nbackend \"local\" {}\n}\nmodule \"net\" {\nsource  = \"./modules/net\"\nversion = \"1.0\"\n"
        );
        assert_eq!(relevant.local_modules, ["./modules/net"]);
    }

    #[test]
    fn resource_edits_change_config_but_not_init_fingerprint() {
        let checkout = tempfile::tempdir().unwrap();
        let root = checkout.path().canonicalize().unwrap();
        fs::create_dir_all(root.join("modules/m")).unwrap();
        fs::write(root.join("main.tf"), "module \"m\" {\n  source = \"./modules/m\"\n}\nresource \"terraform_data\" \"a\" {\n  input = 1\n}\n").unwrap();
        fs::write(root.join("modules/m/main.tf"), "terraform {\n}\n").unwrap();
        let first = scan(&root, &root);
        fs::write(root.join("main.tf"), "module \"m\" {\n  source = \"./modules/m\"\n}\nresource \"terraform_data\" \"a\" {\n  input = 2\n}\n").unwrap();
        let second = scan(&root, &root);
        assert_eq!(first.init.hex(), second.init.hex());
        assert_ne!(first.config.hex(), second.config.hex());
        // A provider requirement inside a local module re-runs init.
        fs::write(
            root.join("modules/m/main.tf"),
            "terraform {\n  required_providers {\n    null = {}\n  }\n}\n",
        )
        .unwrap();
        assert_ne!(scan(&root, &root).init.hex(), second.init.hex());
    }

    #[test]
    fn data_keys_are_distinct_and_safe() {
        assert_ne!(data_key("a/b"), data_key("a_b"));
        assert!(data_key("envs/prod@blue").starts_with("envs_prod_blue-"));
        assert!(!data_key("../..").contains('/'));
    }
}
