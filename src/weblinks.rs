//! Links into a repository's web UI: a commit, and a file at a line, as
//! GitHub's "View in GitHub" does. Built from `[[repo]] web_url` or derived
//! from the clone URL for GitHub, GitLab and Gitea, so that every commit on
//! the page, in the API and in the Slack message, and every drifted
//! resource's declaration, can be opened in one click.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::repo_url::{redacted_url, RepoUrl, Scheme};

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
        let (base, host) = web_base(clone_url)?;
        let forge = Forge::from_host(&host)?;
        Some(WebLinks::for_forge(&base, forge))
    }

    /// Links from a configured base URL (`https://git.example.com/org/repo`):
    /// the host's forge layout, GitHub's when the host names none.
    pub fn from_base(base: &str) -> Result<WebLinks, String> {
        let url = url::Url::parse(base)
            .ok()
            .filter(|url| matches!(url.scheme(), "https" | "http"))
            .ok_or_else(|| format!("{:?} is not an http(s) URL", redacted_url(base)))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not hold credentials".into());
        }
        if url.path().trim_matches('/').is_empty() {
            return Err(format!(
                "{base:?} names no repository (expected https://host/owner/repo)"
            ));
        }
        let forge = url
            .host_str()
            .and_then(Forge::from_host)
            .unwrap_or(Forge::GitHub);
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

/// The web UI's base (`https://host[:port]/owner/repo`, no `.git`, no
/// credentials) and host of an https, http, ssh or scp-like clone URL; an
/// https URL keeps its scheme and port, an ssh one becomes https on the
/// default port. None for git://, file:// and anything else.
fn web_base(url: &str) -> Option<(String, String)> {
    let url = RepoUrl::parse(url).ok()?;
    let (host, path) = (url.host()?, url.repo_path());
    if path.is_empty() {
        return None;
    }
    let base = match url.scheme() {
        Scheme::Https | Scheme::Http => {
            let scheme = if url.scheme() == Scheme::Http {
                "http"
            } else {
                "https"
            };
            let port = url
                .port()
                .map(|port| format!(":{port}"))
                .unwrap_or_default();
            format!("{scheme}://{host}{port}/{path}")
        }
        Scheme::Ssh => format!("https://{host}/{path}"),
        Scheme::Git | Scheme::File => return None,
    };
    Some((base, host))
}

/// What a path segment in a link must escape; `/` stays (paths keep their directories).
const PATH_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Percent-encodes what would break a URL path.
fn encode_path(path: &str) -> String {
    utf8_percent_encode(path.trim_start_matches("./"), PATH_ESCAPES).to_string()
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
                // An https clone URL's port is the web UI's too; an ssh port is not.
                "https://gitlab.example.com:8443/ops/infra/",
                "https://gitlab.example.com:8443/ops/infra/-/commit/abc",
                "https://gitlab.example.com:8443/ops/infra/-/blob/abc/tf/main.tf#L3",
            ),
            (
                "http://gitea.lan/ops/infra.git",
                "http://gitea.lan/ops/infra/commit/abc",
                "http://gitea.lan/ops/infra/src/commit/abc/tf/main.tf#L3",
            ),
            (
                "https://oauth2:s3cret%40x@gitlab.com/ops/infra.git",
                "https://gitlab.com/ops/infra/-/commit/abc",
                "https://gitlab.com/ops/infra/-/blob/abc/tf/main.tf#L3",
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
            "ssh://git@[2001:db8::1]:2222/ops/infra.git",
            "ftp://github.com/acme/infra",
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
            "https://tok@github.com/a/b",
            "https://git hub.com/a/b",
            "ssh://github.com/a/b",
        ] {
            let err = WebLinks::from_base(bad).unwrap_err();
            assert!(
                !err.contains(":p@") && !err.contains("tok@"),
                "{bad}: {err}"
            );
        }
        let ipv6 = WebLinks::from_base("https://[2001:db8::1]:8443/ops/infra").unwrap();
        assert_eq!(
            ipv6.commit_url("abc"),
            "https://[2001:db8::1]:8443/ops/infra/commit/abc"
        );
        assert_eq!(
            ipv6.file_url("abc", "./k8s/ü app#1.yaml", Some(2)),
            "https://[2001:db8::1]:8443/ops/infra/blob/abc/k8s/%C3%BC%20app%231.yaml#L2"
        );

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
