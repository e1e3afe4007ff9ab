//! Finds what runs for real in check mode. A task, block, play or role
//! marked `check_mode: false` (or `no`, or a template that may turn out
//! false) executes on the hosts even under `--check`; driftwatch lists each
//! one before running, or refuses to run under `strict_check_mode`.
//!
//! The playbooks are parsed as YAML (serde_yaml) and followed through
//! `import_playbook`, `roles`, role dependencies, `include_tasks` /
//! `import_tasks` and `include_role` / `import_role`. serde_yaml keeps no
//! source positions, so line numbers come from a text scan of the same file,
//! matched to the parsed element by the `name:` written beside it.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

/// One element that runs for real in check mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `task`, `block`, `play` or `role`.
    pub kind: &'static str,
    pub name: String,
    /// Relative to the probe directory when inside it.
    pub file: PathBuf,
    /// 1-based; `None` when the text scan could not place it.
    pub line: Option<usize>,
    /// `check_mode` is a template, so it may or may not be false at run time.
    pub templated: bool,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} \"{}\" ({}",
            self.kind,
            self.name,
            self.file.display()
        )?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.templated {
            write!(
                f,
                ") has a templated check_mode and may run for real in check mode"
            )
        } else {
            write!(f, ") has check_mode: false and runs for real in check mode")
        }
    }
}

/// Scans `playbooks` (relative to `base`, the probe directory) and everything
/// they pull in. Files that cannot be read or parsed are skipped: ansible
/// itself reports those with a better message when the probe runs.
pub fn scan(base: &Path, playbooks: &[PathBuf]) -> Vec<Finding> {
    let mut scanner = Scanner {
        base: base.to_path_buf(),
        role_paths: configured_role_paths(base),
        visited: HashSet::new(),
        findings: Vec::new(),
    };
    for playbook in playbooks {
        scanner.playbook(&base.join(playbook));
    }
    scanner.findings
}

/// Plays whose `hosts` is empty (`[]`, `""` or null), which ansible refuses
/// without naming them: `play "name" (file): hosts []`, for its error.
pub fn plays_without_hosts(base: &Path, playbooks: &[PathBuf]) -> Vec<String> {
    let mut scanner = Scanner {
        base: base.to_path_buf(),
        role_paths: Vec::new(),
        visited: HashSet::new(),
        findings: Vec::new(),
    };
    let mut found = Vec::new();
    for playbook in playbooks {
        scanner.hostless_plays(&base.join(playbook), &mut found);
    }
    found
}

const TASK_LISTS: &[&str] = &["pre_tasks", "tasks", "post_tasks", "handlers"];
const BLOCK_LISTS: &[&str] = &["block", "rescue", "always"];
const IMPORT_PLAYBOOK: &[&str] = &["import_playbook", "ansible.builtin.import_playbook"];
const INCLUDE_TASKS: &[&str] = &[
    "include_tasks",
    "import_tasks",
    "include",
    "ansible.builtin.include_tasks",
    "ansible.builtin.import_tasks",
    "ansible.builtin.include",
];
const INCLUDE_ROLE: &[&str] = &[
    "include_role",
    "import_role",
    "ansible.builtin.include_role",
    "ansible.builtin.import_role",
];

/// Task keywords that are not the module name, for naming unnamed tasks.
const TASK_KEYWORDS: &[&str] = &[
    "name",
    "when",
    "register",
    "loop",
    "loop_control",
    "tags",
    "become",
    "become_user",
    "become_method",
    "vars",
    "notify",
    "check_mode",
    "changed_when",
    "failed_when",
    "ignore_errors",
    "no_log",
    "delegate_to",
    "run_once",
    "args",
    "environment",
    "diff",
    "until",
    "retries",
    "delay",
    "listen",
    "any_errors_fatal",
    "ignore_unreachable",
    "throttle",
    "timeout",
    "module_defaults",
    "collections",
    "connection",
    "debugger",
    "local_action",
    "async",
    "poll",
    "delegate_facts",
];

/// A flagged element before it is given a line: (kind, name, templated).
type Flag = (&'static str, String, bool);

struct Scanner {
    base: PathBuf,
    role_paths: Vec<PathBuf>,
    visited: HashSet<PathBuf>,
    findings: Vec<Finding>,
}

impl Scanner {
    /// Reads and parses a YAML file once; `None` when seen, unreadable or invalid.
    fn load(&mut self, path: &Path) -> Option<(String, Value)> {
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if !self.visited.insert(key) {
            return None;
        }
        let text = std::fs::read_to_string(path).ok()?;
        let value = serde_yaml::from_str(&text).ok()?;
        Some((text, value))
    }

    fn hostless_plays(&mut self, path: &Path, found: &mut Vec<String>) {
        let Some((_, doc)) = self.load(path) else {
            return;
        };
        let plays = doc.as_sequence().into_iter().flatten();
        for play in plays.filter_map(Value::as_mapping) {
            if let Some(target) = IMPORT_PLAYBOOK.iter().find_map(|k| get_str(play, k)) {
                if !is_templated(target) {
                    self.hostless_plays(&parent(path).join(target), found);
                }
                continue;
            }
            let hosts = match play.get("hosts") {
                Some(Value::Null) => "null",
                Some(Value::String(text)) if text.trim().is_empty() => "\"\"",
                Some(Value::Sequence(items)) if items.is_empty() => "[]",
                _ => continue,
            };
            let file = path.strip_prefix(&self.base).unwrap_or(path);
            let name = get_str(play, "name").unwrap_or("");
            found.push(format!("play {name:?} ({}): hosts {hosts}", file.display()));
        }
    }

    fn playbook(&mut self, path: &Path) {
        let Some((text, doc)) = self.load(path) else {
            return;
        };
        let dir = parent(path);
        let mut flags = Vec::new();
        for play in doc.as_sequence().into_iter().flatten() {
            let Some(play) = play.as_mapping() else {
                continue;
            };
            if let Some(target) = IMPORT_PLAYBOOK.iter().find_map(|k| get_str(play, k)) {
                if !is_templated(target) {
                    self.playbook(&dir.join(target));
                }
                continue;
            }
            let name = get_str(play, "name")
                .map(str::to_string)
                .unwrap_or_else(|| {
                    format!(
                        "hosts: {}",
                        scalar_text(play.get("hosts")).unwrap_or_default()
                    )
                });
            if let Some(templated) = runs_for_real(play.get("check_mode")) {
                flags.push(("play", name, templated));
            }
            for list in TASK_LISTS {
                if let Some(tasks) = play.get(*list) {
                    self.tasks(tasks, &dir, &mut flags);
                }
            }
            for role in play
                .get("roles")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                let (role_name, fields) = match role {
                    Value::String(name) => (Some(name.as_str()), None),
                    Value::Mapping(map) => (
                        get_str(map, "role").or_else(|| get_str(map, "name")),
                        Some(map),
                    ),
                    _ => (None, None),
                };
                let Some(role_name) = role_name else { continue };
                if let Some(templated) = fields.and_then(|m| runs_for_real(m.get("check_mode"))) {
                    flags.push(("role", role_name.to_string(), templated));
                }
                self.role(role_name, &dir);
            }
        }
        self.place(path, &text, flags);
    }

    fn tasks(&mut self, list: &Value, dir: &Path, flags: &mut Vec<Flag>) {
        for task in list.as_sequence().into_iter().flatten() {
            let Some(task) = task.as_mapping() else {
                continue;
            };
            let is_block = BLOCK_LISTS.iter().any(|k| task.contains_key(*k));
            if let Some(templated) = runs_for_real(task.get("check_mode")) {
                flags.push((
                    if is_block { "block" } else { "task" },
                    task_name(task),
                    templated,
                ));
            }
            for list in BLOCK_LISTS {
                if let Some(inner) = task.get(*list) {
                    self.tasks(inner, dir, flags);
                }
            }
            for key in INCLUDE_TASKS {
                let file = match task.get(*key) {
                    Some(Value::String(file)) => Some(file.as_str()),
                    Some(Value::Mapping(args)) => get_str(args, "file"),
                    _ => None,
                };
                if let Some(file) = file.filter(|f| !is_templated(f)) {
                    self.task_file(&dir.join(file));
                }
            }
            for key in INCLUDE_ROLE {
                if let Some(role) = task
                    .get(*key)
                    .and_then(Value::as_mapping)
                    .and_then(|m| get_str(m, "name"))
                {
                    self.role(role, dir);
                }
            }
        }
    }

    fn task_file(&mut self, path: &Path) {
        let Some((text, doc)) = self.load(path) else {
            return;
        };
        let mut flags = Vec::new();
        self.tasks(&doc, &parent(path), &mut flags);
        self.place(path, &text, flags);
    }

    fn role(&mut self, name: &str, from: &Path) {
        if is_templated(name) {
            return;
        }
        let mut candidates = vec![
            from.join("roles").join(name),
            self.base.join("roles").join(name),
        ];
        candidates.extend(self.role_paths.iter().map(|p| p.join(name)));
        candidates.push(from.join(name));
        let Some(dir) = candidates.into_iter().find(|c| {
            ["tasks", "handlers", "meta"]
                .iter()
                .any(|sub| c.join(sub).is_dir())
        }) else {
            return; // a collection role or one installed elsewhere
        };
        let key = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if !self.visited.insert(key) {
            return;
        }
        for sub in ["tasks", "handlers"] {
            for file in yaml_files(&dir.join(sub)) {
                self.task_file(&file);
            }
        }
        let meta = ["main.yml", "main.yaml", "main"]
            .iter()
            .map(|f| dir.join("meta").join(f))
            .find(|p| p.is_file());
        if let Some(meta) = meta {
            let deps: Vec<String> = std::fs::read_to_string(&meta)
                .ok()
                .and_then(|text| serde_yaml::from_str::<Value>(&text).ok())
                .and_then(|doc| doc.get("dependencies").cloned())
                .and_then(|deps| deps.as_sequence().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|dep| match dep {
                    Value::String(name) => Some(name.clone()),
                    Value::Mapping(map) => get_str(map, "role")
                        .or_else(|| get_str(map, "name"))
                        .map(str::to_string),
                    _ => None,
                })
                .collect();
            let roles_dir = parent(&dir);
            for dep in deps {
                self.role(&dep, &roles_dir);
            }
        }
    }

    /// Gives each flag of one file a line from the text scan: the candidate
    /// line whose sibling `name:` matches, else the next unused one in order.
    fn place(&mut self, path: &Path, text: &str, flags: Vec<Flag>) {
        let candidates = check_mode_lines(text);
        let mut used = vec![false; candidates.len()];
        let file = path.strip_prefix(&self.base).unwrap_or(path).to_path_buf();
        for (kind, name, templated) in flags {
            let by_name = candidates.iter().enumerate().position(|(i, (_, sibling))| {
                !used[i] && sibling.as_deref() == Some(name.as_str())
            });
            let index = by_name.or_else(|| used.iter().position(|u| !u));
            let line = index.map(|i| {
                used[i] = true;
                candidates[i].0
            });
            self.findings.push(Finding {
                kind,
                name,
                file: file.clone(),
                line,
                templated,
            });
        }
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn get_str<'a>(map: &'a Mapping, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

fn scalar_text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Sequence(items) => Some(
            items
                .iter()
                .filter_map(|v| scalar_text(Some(v)))
                .collect::<Vec<_>>()
                .join(","),
        ),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn is_templated(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// `Some(false)` when the value is a false boolean as ansible reads it,
/// `Some(true)` when it is a template, `None` when check mode is honoured.
fn runs_for_real(value: Option<&Value>) -> Option<bool> {
    match value? {
        Value::Bool(false) => Some(false),
        Value::Number(n) if n.as_f64() == Some(0.0) => Some(false),
        Value::String(s) if is_false_word(s) => Some(false),
        Value::String(s) if is_templated(s) => Some(true),
        Value::Tagged(tagged) => runs_for_real(Some(&tagged.value)),
        _ => None,
    }
}

/// Ansible's BOOLEANS_FALSE, for values YAML 1.2 reads as strings (`no`, `off`).
fn is_false_word(word: &str) -> bool {
    matches!(
        word.trim().to_ascii_lowercase().as_str(),
        "no" | "false" | "off" | "n" | "f" | "0"
    )
}

fn task_name(task: &Mapping) -> String {
    if let Some(name) = get_str(task, "name") {
        return name.to_string();
    }
    task.keys()
        .filter_map(Value::as_str)
        .find(|k| !TASK_KEYWORDS.contains(k) && !k.starts_with("with_") && !BLOCK_LISTS.contains(k))
        .map(str::to_string)
        .unwrap_or_else(|| {
            if BLOCK_LISTS.iter().any(|k| task.contains_key(*k)) {
                "block"
            } else {
                "unnamed task"
            }
            .to_string()
        })
}

/// `*.yml`/`*.yaml` files under `dir`, sorted, recursing into subdirectories
/// with the shared walker, which never leaves `dir` (a role's own tree). A
/// tree the walker refuses (a link out, a loop) gives nothing to scan.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    if !dir.is_dir() {
        return Vec::new();
    }
    crate::walk::files_with_suffix(dir, dir, &[".yml", ".yaml"])
        .map(|files| files.into_iter().map(|file| file.path).collect())
        .unwrap_or_default()
}

/// `roles_path` from an `ansible.cfg` in the probe directory, made absolute.
fn configured_role_paths(base: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string(base.join("ansible.cfg")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            (key.trim() == "roles_path").then(|| value.trim().to_string())
        })
        .flat_map(|value| value.split(':').map(str::to_string).collect::<Vec<_>>())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                base.join(p)
            }
        })
        .collect()
}

/// Lines (1-based) that set `check_mode` to something false or templated,
/// each with the `name:` of the mapping it sits in, when one is written.
fn check_mode_lines(text: &str) -> Vec<(usize, Option<String>)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let code = strip_comment(line);
        let Some(at) = find_key(code, "check_mode") else {
            continue;
        };
        let rest = code[at + "check_mode".len()..].trim_start();
        let Some(rest) = rest.strip_prefix(':') else {
            continue;
        };
        let value = rest.split([',', '}']).next().unwrap_or("").trim();
        let value = value.trim_matches(|c| c == '"' || c == '\'');
        if !(is_false_word(value) || is_templated(value)) {
            continue;
        }
        let sibling = if code[..at].contains('{') {
            flow_name(code)
        } else {
            block_sibling_name(&lines, index, at)
        };
        found.push((index + 1, sibling));
    }
    found
}

/// Position of `key` as a mapping key on this line (not part of a longer word).
fn find_key(code: &str, key: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(pos) = code[from..].find(key) {
        let at = from + pos;
        let before = code[..at].chars().next_back();
        let boundary = before.map_or(true, |c| {
            c == ' ' || c == '-' || c == '{' || c == ',' || c == '\t'
        });
        if boundary && code[at + key.len()..].trim_start().starts_with(':') {
            return Some(at);
        }
        from = at + key.len();
    }
    None
}

fn strip_comment(line: &str) -> &str {
    match line.find(" #") {
        Some(pos) => &line[..pos],
        None if line.trim_start().starts_with('#') => "",
        None => line,
    }
}

fn flow_name(code: &str) -> Option<String> {
    let at = find_key(code, "name")?;
    let rest = code[at + 4..].trim_start().strip_prefix(':')?;
    let value = rest.split([',', '}']).next()?.trim();
    Some(unquote(value))
}

/// The `name:` key of the block mapping whose key sits at column `column`
/// on line `index`, looking at sibling lines above and below.
fn block_sibling_name(lines: &[&str], index: usize, column: usize) -> Option<String> {
    let key_of = |line: &str| -> (usize, bool, String) {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("- ") {
            let extra = rest.len() - rest.trim_start().len();
            (indent + 2 + extra, true, rest.trim_start().to_string())
        } else {
            (indent, false, trimmed.to_string())
        }
    };
    let name_in = |content: &str| -> Option<String> {
        content
            .strip_prefix("name:")
            .map(|v| unquote(strip_comment(v).trim()))
    };
    // The line itself may start the mapping: `- check_mode: false`.
    let (_, starts_here, _) = key_of(lines[index]);
    if !starts_here {
        for line in lines[..index].iter().rev() {
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let (col, dash, content) = key_of(line);
            let indent = line.len() - line.trim_start().len();
            if col == column {
                if let Some(name) = name_in(&content) {
                    return Some(name);
                }
                if dash {
                    break;
                }
            } else if indent < column {
                break;
            }
        }
    }
    for line in &lines[index + 1..] {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let (col, dash, content) = key_of(line);
        let indent = line.len() - line.trim_start().len();
        if indent < column {
            break;
        }
        if col == column && !dash {
            if let Some(name) = name_in(&content) {
                return Some(name);
            }
        }
    }
    None
}

fn unquote(value: &str) -> String {
    let value = value.trim();
    for quote in ['"', '\''] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            return value[1..value.len() - 1].to_string();
        }
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, path: &str, text: &str) {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(full, text).unwrap();
    }

    fn brief(findings: &[Finding]) -> Vec<String> {
        findings
            .iter()
            .map(|f| {
                format!(
                    "{} {} {}:{}",
                    f.kind,
                    f.name,
                    f.file.display(),
                    f.line.unwrap_or(0)
                )
            })
            .collect()
    }

    #[test]
    fn finds_tasks_blocks_and_plays_with_lines() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "site.yml",
            r#"- hosts: all
  tasks:
    - name: read version
      command: cat /etc/version
      check_mode: false   # harmless read
      changed_when: false
    - check_mode: no
      name: quoted "reset"
      shell: ./reset.sh
    - name: honoured
      command: echo
      check_mode: true
    - name: outer
      block:
        - name: inner
          command: x
          check_mode: "{{ live }}"
      check_mode: off
    - { name: flow task, command: y, check_mode: false }
- name: live play
  hosts: db
  check_mode: false
  tasks: []
"#,
        );
        let found = scan(dir.path(), &[PathBuf::from("site.yml")]);
        assert_eq!(
            brief(&found),
            [
                "task read version site.yml:5",
                "task quoted \"reset\" site.yml:7",
                "block outer site.yml:18",
                "task inner site.yml:17",
                "task flow task site.yml:19",
                "play live play site.yml:22",
            ]
        );
        assert!(found[3].templated);
        assert_eq!(
            found[0].to_string(),
            "task \"read version\" (site.yml:5) has check_mode: false and runs for real in check mode"
        );
    }

    #[test]
    fn follows_roles_includes_and_imported_playbooks() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "site.yml", "- import_playbook: plays/web.yml\n");
        write(
            dir.path(),
            "plays/web.yml",
            "- hosts: web\n  roles:\n    - nginx\n    - role: db\n      check_mode: false\n  tasks:\n    - include_tasks: extra.yml\n    - import_role:\n        name: common\n",
        );
        write(
            dir.path(),
            "plays/extra.yml",
            "- name: extra live\n  command: x\n  check_mode: false\n",
        );
        write(
            dir.path(),
            "roles/nginx/tasks/main.yml",
            "- name: ok\n  copy: {dest: /x, content: y}\n- import_tasks: sub.yml\n",
        );
        write(
            dir.path(),
            "roles/nginx/tasks/sub.yml",
            "- name: nginx live\n  command: x\n  check_mode: false\n",
        );
        write(
            dir.path(),
            "roles/nginx/meta/main.yml",
            "dependencies:\n  - role: base\n",
        );
        write(
            dir.path(),
            "roles/base/handlers/main.yml",
            "- name: base handler\n  command: x\n  check_mode: no\n",
        );
        write(
            dir.path(),
            "roles/db/tasks/main.yml",
            "- name: db\n  command: x\n",
        );
        write(
            dir.path(),
            "roles/common/tasks/main.yml",
            "- name: common live\n  command: x\n  check_mode: false\n",
        );
        let found = scan(dir.path(), &[PathBuf::from("site.yml")]);
        let mut got = brief(&found);
        got.sort();
        assert_eq!(
            got,
            [
                "role db plays/web.yml:5",
                "task base handler roles/base/handlers/main.yml:3",
                "task common live roles/common/tasks/main.yml:3",
                "task extra live plays/extra.yml:3",
                "task nginx live roles/nginx/tasks/sub.yml:3",
            ]
        );
    }

    #[test]
    fn unparseable_or_missing_files_are_skipped_and_cycles_end() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.yml", "- import_playbook: b.yml\n");
        write(
            dir.path(),
            "b.yml",
            "- import_playbook: a.yml\n- hosts: x\n  tasks: [{command: z, check_mode: false}]\n",
        );
        write(dir.path(), "broken.yml", "- hosts: [\n");
        let found = scan(
            dir.path(),
            &[
                PathBuf::from("a.yml"),
                PathBuf::from("broken.yml"),
                PathBuf::from("nope.yml"),
            ],
        );
        assert_eq!(brief(&found), ["task command b.yml:3"]);
    }

    #[test]
    fn plays_with_empty_hosts_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "site.yml",
            "- name: web\n  hosts: web\n- name: nobody\n  hosts: []\n- import_playbook: plays/more.yml\n- import_playbook: site.yml\n",
        );
        write(
            dir.path(),
            "plays/more.yml",
            "- hosts: \"\"\n- name: null hosts\n  hosts:\n- name: all\n  hosts: [all]\n",
        );
        assert_eq!(
            plays_without_hosts(dir.path(), &[PathBuf::from("site.yml")]),
            [
                "play \"nobody\" (site.yml): hosts []",
                "play \"\" (plays/more.yml): hosts \"\"",
                "play \"null hosts\" (plays/more.yml): hosts null",
            ]
        );
    }

    #[test]
    fn false_words_follow_ansible() {
        for word in ["no", "No", "false", "off", "0", "n"] {
            assert!(is_false_word(word), "{word}");
        }
        for word in ["yes", "true", "1", ""] {
            assert!(!is_false_word(word), "{word}");
        }
        assert_eq!(runs_for_real(Some(&Value::Bool(true))), None);
        assert_eq!(runs_for_real(Some(&Value::Bool(false))), Some(false));
    }
}
