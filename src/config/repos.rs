//! `[[repo]]`: where each repository comes from and how to authenticate.

use std::collections::HashMap;

use super::loader::*;
use super::raw::{RawRepo, RawWebUrl};
use super::spans::{key, line_col, locate, path_plus, Seg, Target};
use super::{RepoAuth, RepoConfig, RepoSource};
use crate::repo_url::{redacted_url, ParseError, RepoUrl, Scheme};
use crate::weblinks::WebLinks;

impl Loader<'_> {
    pub(super) fn repos(&mut self, value: Option<toml::Value>) -> Vec<RepoConfig> {
        let mut repos = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (index, table) in self.entries(value, "repo").into_iter().enumerate() {
            let path = [key("repo"), Seg::Index(index)];
            let Some(raw) = self.decode::<RawRepo>(toml::Value::Table(table), &path) else {
                continue;
            };
            let Some(repo) = self.repo(raw, &path) else {
                continue;
            };
            if let Some(first) = seen.get(&repo.name) {
                let first_line = self.line_of(&[key("repo"), Seg::Index(*first), key("name")]);
                self.error(
                    &path_plus(&path, &[key("name")]),
                    format!("duplicate repo name {:?}{first_line}", repo.name),
                );
                continue;
            }
            seen.insert(repo.name.clone(), index);
            repos.push(repo);
        }
        repos
    }

    pub(super) fn repo(&mut self, mut raw: RawRepo, path: &[Seg]) -> Option<RepoConfig> {
        let at = |name: &str| path_plus(path, &[key(name)]);
        let errors_before = self.problems.len();
        let name = match raw.name.take() {
            None => {
                self.error(path, "missing key `name`");
                String::new()
            }
            Some(name) => {
                if !valid_name(&name) {
                    self.error(&at("name"), name_rule(&name));
                }
                name
            }
        };
        let poll_interval = self.duration(
            raw.poll_interval.as_deref(),
            DEFAULT_POLL_INTERVAL,
            &at("poll_interval"),
            false,
        );
        let sync_timeout = self.duration(
            raw.sync_timeout.as_deref(),
            super::loader::DEFAULT_SYNC_TIMEOUT,
            &at("sync_timeout"),
            false,
        );
        let web_url = raw.web_url.take();
        let source = match (raw.url.take(), raw.path.take()) {
            (Some(_), Some(_)) => {
                self.error_at_key(&at("path"), "give either url (driftwatch clones it) or path (a directory kept in sync by someone else), not both");
                None
            }
            (None, None) => {
                self.error(
                    path,
                    "needs a url to clone, or a path to a directory kept in sync by someone else",
                );
                None
            }
            (None, Some(dir)) => {
                for (given, name) in [
                    (raw.branch.is_some(), "branch"),
                    (raw.reference.is_some(), "ref"),
                    (raw.username.is_some(), "username"),
                    (raw.token.is_some(), "token"),
                    (raw.token_file.is_some(), "token_file"),
                    (raw.ssh_key_file.is_some(), "ssh_key_file"),
                    (raw.ssh_known_hosts_file.is_some(), "ssh_known_hosts_file"),
                    (raw.ssh_passphrase.is_some(), "ssh_passphrase"),
                    (raw.ssh_passphrase_file.is_some(), "ssh_passphrase_file"),
                ] {
                    if given {
                        self.error_at_key(
                            &at(name),
                            "only applies to a repo with a url, not a path",
                        );
                    }
                }
                if dir.trim().is_empty() {
                    self.error(&at("path"), "is empty");
                    None
                } else {
                    let full = self.host_path(&dir);
                    if !full.is_dir() {
                        self.error(
                            &at("path"),
                            format!("{} is not a directory", full.display()),
                        );
                    }
                    Some(RepoSource::Path(full))
                }
            }
            (Some(url), None) => self.remote(url, raw, path),
        };
        let web = match web_url {
            Some(RawWebUrl::Base(base)) => WebLinks::from_base(base.trim()).map(Some),
            Some(RawWebUrl::Templates(t)) => WebLinks::from_templates(&t.commit, &t.file).map(Some),
            None => Ok(match &source {
                Some(RepoSource::Remote { url, .. }) => WebLinks::derive(url),
                _ => None,
            }),
        };
        let web = web.unwrap_or_else(|message| {
            self.error(&at("web_url"), message);
            None
        });
        if self.problems.len() > errors_before {
            return None;
        }
        Some(RepoConfig {
            name,
            source: source?,
            poll_interval,
            sync_timeout,
            web,
        })
    }

    pub(super) fn remote(&mut self, url: String, raw: RawRepo, path: &[Seg]) -> Option<RepoSource> {
        let at = |name: &str| path_plus(path, &[key(name)]);
        let kind = match url_kind(&url) {
            Ok(kind) => Some(kind),
            Err(message) => {
                self.error(&at("url"), message);
                None
            }
        };
        let reference = match (raw.branch, raw.reference) {
            (Some(_), Some(_)) => {
                self.error_at_key(&at("ref"), "give either branch or ref, not both");
                String::new()
            }
            (Some(branch), None) => {
                if branch.starts_with("refs/") {
                    self.error(
                        &at("branch"),
                        format!("{branch:?} is a full ref; write it as ref = {branch:?}"),
                    );
                } else if !valid_ref(&branch) {
                    self.error(
                        &at("branch"),
                        format!("{branch:?} is not a valid branch name"),
                    );
                }
                branch
            }
            (None, Some(reference)) => {
                if !reference.starts_with("refs/") || !valid_ref(&reference) {
                    self.error(&at("ref"), format!("{reference:?} is not a full ref; write e.g. refs/tags/v1 (or use branch)"));
                }
                reference
            }
            (None, None) => DEFAULT_BRANCH.to_string(),
        };

        let uses_ssh_fields = raw.ssh_key_file.is_some()
            || raw.ssh_known_hosts_file.is_some()
            || raw.ssh_passphrase.is_some()
            || raw.ssh_passphrase_file.is_some();
        let uses_token = raw.token.is_some() || raw.token_file.is_some();
        let token_key = if raw.token_file.is_some() {
            "token_file"
        } else {
            "token"
        };
        let token = self.secret(path, "token", raw.token, raw.token_file);
        let passphrase = self.secret(
            path,
            "ssh_passphrase",
            raw.ssh_passphrase,
            raw.ssh_passphrase_file,
        );
        let key_file = raw
            .ssh_key_file
            .as_deref()
            .and_then(|file| self.readable_file(file, &at("ssh_key_file")));
        let known_hosts_file = raw
            .ssh_known_hosts_file
            .as_deref()
            .and_then(|file| self.readable_file(file, &at("ssh_known_hosts_file")));

        let kind = kind?;
        let auth = match kind {
            Scheme::Https | Scheme::Http => {
                if uses_ssh_fields {
                    for name in [
                        "ssh_key_file",
                        "ssh_known_hosts_file",
                        "ssh_passphrase",
                        "ssh_passphrase_file",
                    ] {
                        if self.key_given(path, name) {
                            self.error_at_key(
                                &at(name),
                                "only applies to ssh URLs (ssh:// or user@host:path)",
                            );
                        }
                    }
                }
                if uses_token && kind == Scheme::Http {
                    self.error_at_key(
                        &at(token_key),
                        "a token would be sent unencrypted over http://; use https://",
                    );
                }
                match token {
                    Some(token) => RepoAuth::Token {
                        username: raw
                            .username
                            .unwrap_or_else(|| DEFAULT_TOKEN_USERNAME.to_string()),
                        token,
                    },
                    None => RepoAuth::None,
                }
            }
            Scheme::Ssh => {
                if uses_token {
                    self.error_at_key(
                        &at(token_key),
                        "token only applies to https URLs; for ssh use ssh_key_file",
                    );
                }
                if raw.ssh_key_file.is_none() {
                    for name in [
                        "ssh_known_hosts_file",
                        "ssh_passphrase",
                        "ssh_passphrase_file",
                    ] {
                        if self.key_given(path, name) {
                            self.error_at_key(&at(name), "needs ssh_key_file");
                        }
                    }
                }
                match key_file {
                    Some(key_file) => RepoAuth::Ssh {
                        username: raw
                            .username
                            .or_else(|| url_user(&url))
                            .unwrap_or_else(|| DEFAULT_SSH_USERNAME.to_string()),
                        key_file,
                        passphrase,
                        known_hosts_file,
                    },
                    None => RepoAuth::None,
                }
            }
            Scheme::Git | Scheme::File => {
                for name in [
                    "username",
                    "token",
                    "token_file",
                    "ssh_key_file",
                    "ssh_known_hosts_file",
                    "ssh_passphrase",
                    "ssh_passphrase_file",
                ] {
                    if self.key_given(path, name) {
                        self.error_at_key(&at(name), "git:// and file:// URLs take no credentials");
                    }
                }
                RepoAuth::None
            }
        };
        Some(RepoSource::Remote {
            url,
            reference,
            auth,
        })
    }

    pub(super) fn key_given(&self, path: &[Seg], name: &str) -> bool {
        let [Seg::Key(section), Seg::Index(index)] = path else {
            return false;
        };
        self.root
            .get(section)
            .and_then(|v| v.as_array())
            .and_then(|items| items.get(*index))
            .and_then(|item| item.get(name))
            .is_some()
    }

    /// " (first at line N)" for duplicate-name messages.
    pub(super) fn line_of(&self, path: &[Seg]) -> String {
        locate(self.document.as_table(), path, Target::Value)
            .map(|offset| format!(" (first at line {})", line_col(self.text, offset).0))
            .unwrap_or_default()
    }

    /// A repo that is declared but failed validation: already reported, so
    /// don't also call it unknown.
    pub(super) fn repo_declared(&self, name: &str) -> bool {
        self.root
            .get("repo")
            .and_then(|v| v.as_array())
            .is_some_and(|items| {
                items
                    .iter()
                    .any(|item| item.get("name").and_then(|n| n.as_str()) == Some(name))
            })
    }
}

pub(super) fn valid_ref(reference: &str) -> bool {
    !reference.is_empty()
        && !reference.starts_with('-')
        && !reference.ends_with('/')
        && !reference.ends_with(".lock")
        && !reference.contains("..")
        && !reference.contains("//")
        && !reference.contains("@{")
        && !reference
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
}

/// The transport of a `[[repo]] url`, or the error to show at its line
/// (quoting the URL with its credentials hidden).
pub(super) fn url_kind(url: &str) -> Result<Scheme, String> {
    let shown = redacted_url(url);
    match RepoUrl::parse(url) {
        Ok(parsed) => Ok(parsed.scheme()),
        Err(ParseError::NotAUrl) => Err(format!(
            "unsupported URL {shown:?}; use https://, http://, ssh://, git://, file:// or user@host:path (for a local directory, use path instead of url)"
        )),
        Err(ParseError::Scheme(scheme)) => Err(format!(
            "unsupported URL scheme {scheme:?} in {shown:?}; use https://, http://, ssh://, git://, file:// or user@host:path"
        )),
        Err(err) => Err(format!("invalid URL {shown:?}: {err}")),
    }
}

/// The user in `ssh://user@host/…` or `user@host:path`.
pub(super) fn url_user(url: &str) -> Option<String> {
    RepoUrl::parse(url).ok()?.user()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_auth_are_checked() {
        for (url, ok) in [
            ("https://github.com/a/b.git", true),
            ("http://127.0.0.1:8080/b.git", true),
            ("ssh://git@host/a/b.git", true),
            ("git://127.0.0.1:9418/r.git", true),
            ("file:///srv/r.git", true),
            ("git@github.com:a/b.git", true),
            ("ftp://host/r.git", false),
            ("github.com/a/b", false),
            ("/srv/r.git", false),
            ("file://relative", false),
            ("https://exa mple.com/a.git", false),
            ("https://user:pw@git hub.com/a.git", false),
            ("ssh://git@ho st/x", false),
        ] {
            assert_eq!(url_kind(url).is_ok(), ok, "{url}");
        }
        assert_eq!(url_user("git@github.com:a/b.git").as_deref(), Some("git"));
        assert_eq!(url_user("ssh://deploy@host/x").as_deref(), Some("deploy"));
        assert_eq!(url_user("https://host/x"), None);
        let errors = load_text("[[repo]]\nname = \"r\"\nurl = \"ftp://u:pw@h/x\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n").unwrap_err();
        assert!(
            errors[0].starts_with("dw.toml:3:7: repo.r.url: unsupported URL scheme"),
            "{errors:?}"
        );
        assert!(!errors[0].contains("pw"), "{errors:?}");
        let errors = load_text("[[repo]]\nname = \"r\"\nurl = \"https://u:pw@exa mple.com/x.git\"\n[[probe]]\nname = \"p\"\nlayer = \"command\"\ncommand = [\"true\"]\n").unwrap_err();
        assert_eq!(
            errors,
            ["dw.toml:3:7: repo.r.url: invalid URL \"https://***@exa mple.com/x.git\": invalid international domain name"],
            "{errors:?}"
        );
    }
}
