//! Links into a repository's web UI: a commit, and a file at a line, as
//! GitHub's "View in GitHub" does. Built from `[[repo]] web_url` or derived
//! from the clone URL for GitHub, GitLab and Gitea, so that every commit on
//! the page, in the API and in the Slack message, and every drifted
//! resource's declaration, can be opened in one click.

/// URL templates for one repository: `{commit}` in both, `{path}` and
/// `{line}` in `file`. Never holds credentials (derived links use only the
/// clone URL's host and path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebLinks {
    /// e.g. `https://github.com/org/infra/commit/{commit}`
    pub commit: String,
    /// e.g. `https://github.com/org/infra/blob/{commit}/{path}#L{line}`
    pub file: String,
}

/// The URL layouts of the forges we know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forge {
    GitHub,
    GitLab,
    Gitea,
}

impl Forge {
    /// Guessed from the host name; None for hosts that name no forge.
    fn from_host(host: &str) -> Option<Forge> {
        let host = host.to_ascii_lowercase();
        if host.contains("gitlab") {
            Some(Forge::GitLab)
        } else if host.contains("gitea") || host.contains("forgejo") || host == "codeberg.org" {
            Some(Forge::Gitea)
        } else if host.contains("github") {
            Some(Forge::GitHub)
        } else {
            None
        }
    }
}

impl WebLinks {
    /// The layout of a known forge under `base` (`https://host/org/repo`).
    fn for_forge(base: &str, forge: Forge) -> WebLinks {
        let base = base.trim_end_matches('/');
        let (commit, file) = match forge {
            Forge::GitHub => ("commit/{commit}", "blob/{commit}/{path}#L{line}"),
            Forge::GitLab => ("-/commit/{commit}", "-/blob/{commit}/{path}#L{line}"),
            Forge::Gitea => ("commit/{commit}", "src/commit/{commit}/{path}#L{line}"),
        };
        WebLinks {
            commit: format!("{base}/{commit}"),
            file: format!("{base}/{file}"),
        }
    }

    /// Links from a clone URL (`https://github.com/org/repo.git`,
    /// `git@gitlab.com:group/sub/repo.git`, `ssh://git@gitea.example.com:2222/org/repo`)
    /// when its host names GitHub, GitLab, Gitea, Forgejo or Codeberg; None otherwise.
    pub fn derive(clone_url: &str) -> Option<WebLinks> {
        let (host, path) = host_and_path(clone_url)?;
        let forge = Forge::from_host(&host)?;
        Some(WebLinks::for_forge(
            &format!("https://{host}/{path}"),
            forge,
        ))
    }

    /// Links from a configured base URL (`https://git.example.com/org/repo`):
    /// the host's forge layout, GitHub's when the host names none.
    pub fn from_base(base: &str) -> Result<WebLinks, String> {
        let rest = base
            .strip_prefix("https://")
            .or_else(|| base.strip_prefix("http://"))
            .ok_or_else(|| format!("{base:?} is not an http(s) URL"))?;
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if authority.contains('@') {
            return Err("must not hold credentials".into());
        }
        if path.trim_matches('/').is_empty() {
            return Err(format!(
                "{base:?} names no repository (expected https://host/owner/repo)"
            ));
        }
        let host = authority.split(':').next().unwrap_or(authority);
        let forge = Forge::from_host(host).unwrap_or(Forge::GitHub);
        Ok(WebLinks::for_forge(base, forge))
    }

    /// Links from templates; `commit` must hold `{commit}`, `file` `{path}`.
    pub fn from_templates(commit: &str, file: &str) -> Result<WebLinks, String> {
        for (name, template, needed) in [
            ("commit", commit, &["{commit}"][..]),
            ("file", file, &["{commit}", "{path}"][..]),
        ] {
            if !(template.starts_with("https://") || template.starts_with("http://")) {
                return Err(format!("{name}: {template:?} is not an http(s) URL"));
            }
            for placeholder in needed {
                if !template.contains(placeholder) {
                    return Err(format!("{name}: {template:?} lacks {placeholder}"));
                }
            }
        }
        Ok(WebLinks {
            commit: commit.to_string(),
            file: file.to_string(),
        })
    }

    /// The commit's page.
    pub fn commit_url(&self, commit: &str) -> String {
        self.commit.replace("{commit}", commit)
    }

    /// A file at a commit, at a line when known (without one the `#…`
    /// fragment holding `{line}` is dropped). `path` is relative to the
    /// repository root.
    pub fn file_url(&self, commit: &str, path: &str, line: Option<u32>) -> String {
        let template = match line {
            Some(_) => self.file.clone(),
            None => match self.file.find('#') {
                Some(hash) if self.file[hash..].contains("{line}") => self.file[..hash].to_string(),
                _ => self.file.clone(),
            },
        };
        template
            .replace("{commit}", commit)
            .replace("{path}", &encode_path(path))
            .replace("{line}", &line.map(|l| l.to_string()).unwrap_or_default())
    }

    /// A declaration written `path` or `path:line` (as probes report it).
    pub fn declaration_url(&self, commit: &str, declared_at: &str) -> String {
        match declared_at.rsplit_once(':') {
            Some((path, line)) if !path.is_empty() => match line.parse::<u32>() {
                Ok(line) => self.file_url(commit, path, Some(line)),
                Err(_) => self.file_url(commit, declared_at, None),
            },
            _ => self.file_url(commit, declared_at, None),
        }
    }
}

/// `host` and `owner/repo` (no `.git`, no credentials, no port) of an https,
/// ssh or scp-like clone URL.
fn host_and_path(url: &str) -> Option<(String, String)> {
    let url = url.trim();
    let (authority, path) = if let Some((scheme, rest)) = url.split_once("://") {
        if !matches!(scheme, "https" | "http" | "ssh" | "git+ssh" | "ssh+git") {
            return None;
        }
        rest.split_once('/')?
    } else {
        // scp-like: git@github.com:org/repo.git
        let (authority, path) = url.split_once(':')?;
        if authority.contains('/') {
            return None;
        }
        (authority, path)
    };
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
    let path = path.trim_matches('/');
    let path = path.strip_suffix(".git").unwrap_or(path).trim_matches('/');
    if host.is_empty() || path.is_empty() {
        return None;
    }
    Some((host, path.to_string()))
}

/// Percent-encodes what would break a URL path; `/` stays.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.trim_start_matches("./").bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_from_https_and_ssh_clone_urls() {
        let cases = [
            (
                "https://github.com/acme/infra.git",
                "https://github.com/acme/infra/commit/abc",
                "https://github.com/acme/infra/blob/abc/tf/main.tf#L3",
            ),
            (
                "git@github.com:acme/infra.git",
                "https://github.com/acme/infra/commit/abc",
                "https://github.com/acme/infra/blob/abc/tf/main.tf#L3",
            ),
            (
                "ssh://git@github.com/acme/infra",
                "https://github.com/acme/infra/commit/abc",
                "https://github.com/acme/infra/blob/abc/tf/main.tf#L3",
            ),
            (
                "https://x-access-token:s3cret@github.com/acme/infra.git",
                "https://github.com/acme/infra/commit/abc",
                "https://github.com/acme/infra/blob/abc/tf/main.tf#L3",
            ),
            (
                "https://gitlab.com/group/sub/infra.git",
                "https://gitlab.com/group/sub/infra/-/commit/abc",
                "https://gitlab.com/group/sub/infra/-/blob/abc/tf/main.tf#L3",
            ),
            (
                "git@gitlab.example.com:ops/infra.git",
                "https://gitlab.example.com/ops/infra/-/commit/abc",
                "https://gitlab.example.com/ops/infra/-/blob/abc/tf/main.tf#L3",
            ),
            (
                "ssh://git@gitea.example.com:2222/ops/infra.git",
                "https://gitea.example.com/ops/infra/commit/abc",
                "https://gitea.example.com/ops/infra/src/commit/abc/tf/main.tf#L3",
            ),
            (
                "https://codeberg.org/ops/infra",
                "https://codeberg.org/ops/infra/commit/abc",
                "https://codeberg.org/ops/infra/src/commit/abc/tf/main.tf#L3",
            ),
        ];
        for (url, commit, file) in cases {
            let links = WebLinks::derive(url).unwrap_or_else(|| panic!("{url}: no links"));
            assert_eq!(links.commit_url("abc"), commit, "{url}");
            assert_eq!(links.file_url("abc", "tf/main.tf", Some(3)), file, "{url}");
            assert!(!links.commit.contains("s3cret") && !links.file.contains("s3cret"));
        }
    }

    #[test]
    fn no_links_for_unknown_hosts_and_local_urls() {
        for url in [
            "https://git.example.com/acme/infra.git",
            "file:///srv/git/infra",
            "/srv/git/infra",
            "git://github.com/acme/infra.git",
            "https://github.com/",
            "",
        ] {
            assert_eq!(WebLinks::derive(url), None, "{url}");
        }
    }

    #[test]
    fn base_urls_and_templates() {
        let base = WebLinks::from_base("https://git.example.com/ops/infra/").unwrap();
        assert_eq!(
            base.commit_url("abc"),
            "https://git.example.com/ops/infra/commit/abc"
        );
        let gitlab = WebLinks::from_base("https://gitlab.internal/ops/infra").unwrap();
        assert_eq!(
            gitlab.file_url("abc", "k8s/app.yaml", None),
            "https://gitlab.internal/ops/infra/-/blob/abc/k8s/app.yaml"
        );
        for bad in [
            "git@github.com:a/b",
            "https://github.com",
            "https://u:p@github.com/a/b",
        ] {
            assert!(WebLinks::from_base(bad).is_err(), "{bad}");
        }

        let custom = WebLinks::from_templates(
            "https://cgit.example.com/infra/commit/?id={commit}",
            "https://cgit.example.com/infra/tree/{path}?id={commit}#n{line}",
        )
        .unwrap();
        assert_eq!(
            custom.declaration_url("abc", "ansible/site.yml:12"),
            "https://cgit.example.com/infra/tree/ansible/site.yml?id=abc#n12"
        );
        assert_eq!(
            custom.declaration_url("abc", "k8s/my app.yaml"),
            "https://cgit.example.com/infra/tree/k8s/my%20app.yaml?id=abc"
        );
        assert!(WebLinks::from_templates("https://x/{sha}", "https://x/{commit}/{path}").is_err());
        assert!(WebLinks::from_templates("https://x/{commit}", "https://x/{commit}").is_err());
    }
}
