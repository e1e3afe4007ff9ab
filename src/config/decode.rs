//! Decoding with spans: the loader's methods that turn a TOML table into a
//! typed section and report each problem at its `line:col`. Apart from
//! `spans.rs` so that spans knows nothing of the loader (no circle).

use serde::de::DeserializeOwned;

use super::loader::{valid_name, Loader};
use super::spans::{
    key, line_col, locate, path_plus, remove_at, serde_path, unknown_field, unknown_key_message,
    Problem, Seg, Target,
};

impl Loader<'_> {
    // ---- reporting -------------------------------------------------------

    pub(super) fn error(&mut self, path: &[Seg], message: impl Into<String>) {
        self.report(path, Target::Value, message.into());
    }

    pub(super) fn error_at_key(&mut self, path: &[Seg], message: impl Into<String>) {
        self.report(path, Target::Key, message.into());
    }

    /// A problem with the file as a whole (nothing to point at).
    pub(super) fn error_in_file(&mut self, message: impl Into<String>) {
        let text = format!("{}: {}", self.file, message.into());
        self.problems.push(Problem { offset: None, text });
    }

    pub(super) fn report(&mut self, path: &[Seg], target: Target, message: String) {
        let offset = locate(self.document.as_table(), path, target);
        let shown = self.display(path);
        let prefix = match offset {
            Some(offset) => {
                let (line, col) = line_col(self.text, offset);
                format!("{}:{line}:{col}", self.file)
            }
            None => self.file.clone(),
        };
        let text = if shown.is_empty() {
            format!("{prefix}: {message}")
        } else {
            format!("{prefix}: {shown}: {message}")
        };
        self.problems.push(Problem {
            offset: Some(offset.unwrap_or(0)),
            text,
        });
    }

    /// `probe.corp.schedule` for a probe named "corp", `probe[2].schedule` for
    /// one without a usable name.
    pub(super) fn display(&self, path: &[Seg]) -> String {
        let mut out = String::new();
        let mut rest = path;
        if let [Seg::Key(section), Seg::Index(index), tail @ ..] = path {
            if section == "probe" || section == "repo" {
                let name = self
                    .root
                    .get(section)
                    .and_then(|v| v.as_array())
                    .and_then(|items| items.get(*index))
                    .and_then(|item| item.get("name"))
                    .and_then(|name| name.as_str())
                    .filter(|name| valid_name(name));
                match name {
                    Some(name) => out = format!("{section}.{name}"),
                    None => out = format!("{section}[{index}]"),
                }
                rest = tail;
            }
        }
        for seg in rest {
            match seg {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    if k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                        && !k.is_empty()
                    {
                        out.push_str(k);
                    } else {
                        out.push_str(&format!("{k:?}"));
                    }
                }
                Seg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        out
    }

    /// Deserializes `value` (found at `path`) into `T`. Each bad key (unknown,
    /// or of the wrong type) is reported, removed, and the decode retried, so
    /// every one of them is listed; `None` when the value as a whole is wrong.
    pub(super) fn decode<T: DeserializeOwned>(
        &mut self,
        mut value: toml::Value,
        path: &[Seg],
    ) -> Option<T> {
        loop {
            let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(decoded) => return Some(decoded),
                Err(err) => err,
            };
            let mut inner_path = serde_path(err.path());
            let message = err.inner().message().to_string();
            if let Some(field) = unknown_field(&message) {
                if inner_path.last() != Some(&Seg::Key(field.clone())) {
                    inner_path.push(Seg::Key(field.clone()));
                }
                let full = path_plus(path, &inner_path);
                self.error_at_key(&full, unknown_key_message(&message, &[]));
                if remove_at(&mut value, &inner_path) {
                    continue;
                }
                return None;
            }
            let full = path_plus(path, &inner_path);
            self.error(&full, message);
            // Drop the bad key and go on, so one wrong type does not hide
            // the problems after it; the key then takes its default.
            if !inner_path.is_empty() && remove_at(&mut value, &inner_path) {
                continue;
            }
            return None;
        }
    }

    /// A `[section]` that must be a table.
    pub(super) fn section<T: DeserializeOwned + Default>(
        &mut self,
        value: Option<toml::Value>,
        name: &str,
    ) -> T {
        let path = [key(name)];
        match value {
            None => T::default(),
            Some(value @ toml::Value::Table(_)) => self.decode(value, &path).unwrap_or_default(),
            Some(_) => {
                self.error(&path, format!("must be a table: write [{name}]"));
                T::default()
            }
        }
    }

    /// `[[name]]` entries: each an element with its own path.
    pub(super) fn entries(&mut self, value: Option<toml::Value>, name: &str) -> Vec<toml::Table> {
        let path = [key(name)];
        match value {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => {
                let mut tables = Vec::new();
                for (index, item) in items.into_iter().enumerate() {
                    match item {
                        toml::Value::Table(table) => tables.push(table),
                        _ => {
                            self.error(
                                &[key(name), Seg::Index(index)],
                                format!("must be a table: write [[{name}]]"),
                            );
                            tables.push(toml::Table::new());
                        }
                    }
                }
                tables
            }
            Some(_) => {
                self.error(
                    &path,
                    format!("must be a list of tables: write [[{name}]], not [{name}]"),
                );
                Vec::new()
            }
        }
    }
}
