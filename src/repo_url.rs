//! Git remote URLs, parsed once: every place that needs a URL's scheme,
//! user, host, port or path (config checks, redaction for logs and pages,
//! push-hook matching, web links, SSH host-key checks) asks [`RepoUrl`].
//!
//! URLs proper are parsed by the `url` crate (WHATWG rules: IPv6 hosts,
//! ports, percent-encoded credentials, the last `@` ends the userinfo).
//! Git also accepts the scp-like form `[user@]host:path`, which is not a URL;
//! following git's own rule (a `:` before any `/`, and no `://`), it is read
//! here and stored as the `ssh://` URL it stands for. `gix-url` handles both
//! forms too, but brings gix-path, bstr and byte-string paths for the one
//! case we need; the `url` crate was already a dependency.

use percent_encoding::percent_decode_str;

/// The transports git speaks that a `[[repo]] url` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Https,
    Http,
    /// `ssh://`, `git+ssh://`, `ssh+git://` or the scp-like form.
    Ssh,
    Git,
    File,
}

/// Why text is not a repository URL; never quotes the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Neither `scheme://…` nor `[user@]host:path`.
    #[error("not a URL: use scheme://host/path or user@host:path")]
    NotAUrl,
    /// A scheme git does not fetch over here (`ftp`).
    #[error("unsupported URL scheme {0:?}")]
    Scheme(String),
    /// The url crate's reason, or a missing host or path.
    #[error("{0}")]
    Invalid(String),
}

/// A parsed git remote URL. Never prints its credentials: `Display` and
/// `Debug` show [`RepoUrl::redacted`].
#[derive(Clone, PartialEq, Eq)]
pub struct RepoUrl {
    url: url::Url,
    scheme: Scheme,
    /// The path as written in `[user@]host:path` (relative to the login
    /// directory unless it starts with `/`); None for a URL proper.
    scp_path: Option<String>,
}

impl RepoUrl {
    /// Parses a URL or the scp-like form. The error never repeats the input
    /// (it may hold credentials); callers quote [`redacted_url`] beside it.
    pub fn parse(text: &str) -> Result<RepoUrl, ParseError> {
        let text = text.trim();
        if let Some((host, path)) = scp_like_parts(text) {
            let url = url::Url::parse(&format!("ssh://{host}/{path}"))
                .map_err(|err| ParseError::Invalid(err.to_string()))?;
            if !url.host_str().is_some_and(|host| !host.is_empty()) {
                return Err(ParseError::Invalid("the address has no host".into()));
            }
            return Ok(RepoUrl {
                url,
                scheme: Scheme::Ssh,
                scp_path: Some(path.to_string()),
            });
        }
        let Some((scheme, _)) = text.split_once("://") else {
            return Err(ParseError::NotAUrl);
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" => Scheme::Https,
            "http" => Scheme::Http,
            "ssh" | "git+ssh" | "ssh+git" => Scheme::Ssh,
            "git" => Scheme::Git,
            "file" => Scheme::File,
            other => return Err(ParseError::Scheme(other.to_string())),
        };
        let url = url::Url::parse(text).map_err(|err| ParseError::Invalid(err.to_string()))?;
        let has_host = url.host_str().is_some_and(|host| !host.is_empty());
        if scheme == Scheme::File {
            if has_host || url.path().len() <= 1 {
                return Err(ParseError::Invalid(
                    "a file URL needs an absolute path: file:///path/to/repo".into(),
                ));
            }
        } else if !has_host {
            return Err(ParseError::Invalid("the URL has no host".into()));
        }
        Ok(RepoUrl {
            url,
            scheme,
            scp_path: None,
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The user name (percent-decoded), when one is given.
    pub fn user(&self) -> Option<String> {
        let user = percent_decode_str(self.url.username()).decode_utf8_lossy();
        (!user.is_empty()).then(|| user.into_owned())
    }

    /// The password (percent-decoded), when one is given.
    pub fn password(&self) -> Option<String> {
        self.url.password().map(|password| {
            percent_decode_str(password)
                .decode_utf8_lossy()
                .into_owned()
        })
    }

    /// Every spelling of this URL's secrets a message could quote: the
    /// password percent-encoded and decoded, and over http(s) the user too,
    /// which alone may be a token (`https://TOKEN@host`); an ssh login name
    /// (`git`) is not a secret.
    pub fn secret_spellings(&self) -> Vec<String> {
        let mut spellings = Vec::new();
        let mut add = |encoded: &str| {
            let decoded = percent_decode_str(encoded).decode_utf8_lossy().into_owned();
            spellings.push(encoded.to_string());
            spellings.push(decoded);
        };
        if let Some(password) = self.url.password() {
            add(password);
        }
        if matches!(self.scheme, Scheme::Https | Scheme::Http) && !self.url.username().is_empty() {
            add(self.url.username());
        }
        spellings.retain(|spelling| !spelling.is_empty());
        spellings.dedup();
        spellings
    }

    /// The host as written in a URL (lower case for DNS names, IPv6 in
    /// brackets); None for `file://`.
    pub fn host(&self) -> Option<String> {
        let host = self.url.host_str().filter(|host| !host.is_empty())?;
        Some(host.to_ascii_lowercase())
    }

    /// The port, when one is written (the scheme's default is never shown).
    pub fn port(&self) -> Option<u16> {
        self.url.port()
    }

    /// The path, percent-decoded: `/org/repo.git`; an scp-like path as
    /// written (`org/repo.git`, relative to the login directory).
    pub fn path(&self) -> String {
        match &self.scp_path {
            Some(path) => path.clone(),
            None => percent_decode_str(self.url.path())
                .decode_utf8_lossy()
                .into_owned(),
        }
    }

    /// The repository part of the path: no leading or trailing `/`, no `.git`.
    pub fn repo_path(&self) -> String {
        let path = self.path();
        let path = path.trim_matches('/');
        path.strip_suffix(".git")
            .unwrap_or(path)
            .trim_matches('/')
            .to_string()
    }

    /// For logs, errors, the API and pages: the userinfo becomes `***` and a
    /// query (which could carry a token) `?***`; the scp-like form keeps its
    /// user, which names an SSH login and cannot carry a password.
    pub fn redacted(&self) -> String {
        if self.scp_path.is_some() {
            let user = self
                .user()
                .map(|user| format!("{user}@"))
                .unwrap_or_default();
            let host = self.host().unwrap_or_default();
            return format!("{user}{host}:{}", self.path());
        }
        let mut url = self.url.clone();
        let had_credentials = !url.username().is_empty() || url.password().is_some();
        let _ = url.set_password(None);
        let _ = url.set_username("");
        if url.query().is_some() {
            url.set_query(Some("***"));
        }
        let text = url.to_string();
        match (had_credentials, text.split_once("://")) {
            (true, Some((scheme, rest))) => format!("{scheme}://***@{rest}"),
            _ => text,
        }
    }

    /// What identifies the repository whatever the transport: `host/path` in
    /// lower case (or the absolute path for `file://`), without credentials,
    /// port, `.git` or trailing `/`. GitHub's `clone_url`, `ssh_url`,
    /// `git_url` and `html_url` of one repository all give the same key.
    pub fn match_key(&self) -> Option<String> {
        let path = self.repo_path();
        if path.is_empty() {
            return None;
        }
        Some(match self.host() {
            None => format!("/{path}"),
            Some(host) => format!("{host}/{path}").to_lowercase(),
        })
    }
}

impl std::fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Debug for RepoUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RepoUrl({})", self.redacted())
    }
}

/// `(authority, path)` of git's scp-like syntax: `[user@]host:path`, or
/// `[user@][v6:addr]:path`. Git's rule: no `://`, and the first `:` comes
/// before any `/` (so `./a:b` and `/srv/a:b` are local paths).
fn scp_like_parts(text: &str) -> Option<(&str, &str)> {
    if text.contains("://") {
        return None;
    }
    let colon = if let Some(open) = text.find('[') {
        // A bracketed IPv6 host: its own colons do not count.
        let close = open + text[open..].find(']')?;
        close + 1 + text[close + 1..].find(':').filter(|at| *at == 0)?
    } else {
        text.find(':')?
    };
    let (authority, path) = (&text[..colon], &text[colon + 1..]);
    if authority.is_empty() || authority.contains('/') || path.is_empty() {
        return None;
    }
    // `user:password@host:path` has no password syntax in git; refuse it
    // rather than read `user` as the host and show the password as a path.
    if path
        .split('/')
        .next()
        .is_some_and(|head| head.contains('@'))
    {
        return None;
    }
    Some((authority, path))
}

/// `url` with its credentials hidden, for any text meant to be a repository
/// URL. Text that does not parse still has everything before the last `@`
/// of its authority hidden, so an error about a malformed URL cannot leak
/// the password it holds.
pub fn redacted_url(text: &str) -> String {
    if let Ok(url) = RepoUrl::parse(text) {
        return url.redacted();
    }
    let Some((scheme, rest)) = text.split_once("://") else {
        // Not a URL: hide a userinfo-like head (`user:pw@host:path`).
        let head = text.split('/').next().unwrap_or(text);
        return match head.rfind('@') {
            Some(at) => format!("***@{}", &text[at + 1..]),
            None => text.to_string(),
        };
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// input, scheme, user, host, port, repo path, redacted form, match key
    type Case<'a> = (
        &'a str,
        Scheme,
        Option<&'a str>,
        Option<&'a str>,
        Option<u16>,
        &'a str,
        &'a str,
        Option<&'a str>,
    );

    #[test]
    fn the_forms_git_accepts() {
        #[rustfmt::skip]
        let table: &[Case] = &[
            ("https://github.com/acme/infra.git", Scheme::Https, None, Some("github.com"), None, "acme/infra",
             "https://github.com/acme/infra.git", Some("github.com/acme/infra")),
            ("https://x-access-token:s3cr%40t@GitHub.com/Acme/Infra.git/", Scheme::Https, Some("x-access-token"), Some("github.com"), None, "Acme/Infra",
             "https://***@github.com/Acme/Infra.git/", Some("github.com/acme/infra")),
            // A raw `@` in the password: the last `@` ends the userinfo.
            ("https://deploy:p@ss@git.example.com:8443/ops/infra", Scheme::Https, Some("deploy"), Some("git.example.com"), Some(8443), "ops/infra",
             "https://***@git.example.com:8443/ops/infra", Some("git.example.com/ops/infra")),
            ("https://ghp_token@github.com/acme/infra", Scheme::Https, Some("ghp_token"), Some("github.com"), None, "acme/infra",
             "https://***@github.com/acme/infra", Some("github.com/acme/infra")),
            ("https://git.example.com/infra.git?private_token=abc", Scheme::Https, None, Some("git.example.com"), None, "infra",
             "https://git.example.com/infra.git?***", Some("git.example.com/infra")),
            ("http://127.0.0.1:8080/b.git", Scheme::Http, None, Some("127.0.0.1"), Some(8080), "b",
             "http://127.0.0.1:8080/b.git", Some("127.0.0.1/b")),
            ("ssh://git@github.com/acme/infra.git", Scheme::Ssh, Some("git"), Some("github.com"), None, "acme/infra",
             "ssh://***@github.com/acme/infra.git", Some("github.com/acme/infra")),
            ("ssh://git@gitea.example.com:2222/ops/infra", Scheme::Ssh, Some("git"), Some("gitea.example.com"), Some(2222), "ops/infra",
             "ssh://***@gitea.example.com:2222/ops/infra", Some("gitea.example.com/ops/infra")),
            ("git+ssh://git@host/x.git", Scheme::Ssh, Some("git"), Some("host"), None, "x",
             "git+ssh://***@host/x.git", Some("host/x")),
            ("ssh://git@[2001:db8::1]:2222/ops/infra.git", Scheme::Ssh, Some("git"), Some("[2001:db8::1]"), Some(2222), "ops/infra",
             "ssh://***@[2001:db8::1]:2222/ops/infra.git", Some("[2001:db8::1]/ops/infra")),
            ("https://[::1]:8443/infra.git", Scheme::Https, None, Some("[::1]"), Some(8443), "infra",
             "https://[::1]:8443/infra.git", Some("[::1]/infra")),
            ("git@host:/srv/git/infra.git", Scheme::Ssh, Some("git"), Some("host"), None, "srv/git/infra",
             "git@host:/srv/git/infra.git", Some("host/srv/git/infra")),
            ("git@github.com:acme/infra.git", Scheme::Ssh, Some("git"), Some("github.com"), None, "acme/infra",
             "git@github.com:acme/infra.git", Some("github.com/acme/infra")),
            ("github.com:acme/infra", Scheme::Ssh, None, Some("github.com"), None, "acme/infra",
             "github.com:acme/infra", Some("github.com/acme/infra")),
            ("git@[2001:db8::1]:ops/infra.git", Scheme::Ssh, Some("git"), Some("[2001:db8::1]"), None, "ops/infra",
             "git@[2001:db8::1]:ops/infra.git", Some("[2001:db8::1]/ops/infra")),
            ("git://127.0.0.1:9418/r.git", Scheme::Git, None, Some("127.0.0.1"), Some(9418), "r",
             "git://127.0.0.1:9418/r.git", Some("127.0.0.1/r")),
            ("file:///srv/git/infra.git", Scheme::File, None, None, None, "srv/git/infra",
             "file:///srv/git/infra.git", Some("/srv/git/infra")),
            ("file:///srv/git/my%20infra/", Scheme::File, None, None, None, "srv/git/my infra",
             "file:///srv/git/my%20infra/", Some("/srv/git/my infra")),
        ];
        for (text, scheme, user, host, port, repo_path, redacted, key) in table {
            let url = RepoUrl::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(url.scheme(), *scheme, "{text}");
            assert_eq!(url.user().as_deref(), *user, "{text}");
            assert_eq!(url.host().as_deref(), *host, "{text}");
            assert_eq!(url.port(), *port, "{text}");
            assert_eq!(url.repo_path(), *repo_path, "{text}");
            assert_eq!(url.redacted(), *redacted, "{text}");
            assert_eq!(redacted_url(text), *redacted, "{text}");
            assert!(!format!("{url} {url:?}").contains("s3cr"), "{text}");
            assert_eq!(url.match_key().as_deref(), *key, "{text}");
        }
        let url = RepoUrl::parse("https://u:s3cr%40t@h/x").unwrap();
        assert_eq!(url.password().as_deref(), Some("s3cr@t"));
        assert_eq!(url.secret_spellings(), ["s3cr%40t", "s3cr@t", "u"]);
        let url = RepoUrl::parse("https://deploy:p@ss@h/x").unwrap();
        assert_eq!(url.secret_spellings(), ["p%40ss", "p@ss", "deploy"]);
        let url = RepoUrl::parse("ssh://git:pw@h/x").unwrap();
        assert_eq!(url.secret_spellings(), ["pw"]);
        assert!(RepoUrl::parse("git@h:x")
            .unwrap()
            .secret_spellings()
            .is_empty());
    }

    #[test]
    fn what_is_not_a_repository_url() {
        for text in [
            "ftp://host/r.git",
            "github.com/a/b",
            "/srv/r.git",
            "./a:b",
            "file://relative",
            "file://host/srv/r.git",
            "https://exa mple.com/a.git",
            "https://user:pw@git hub.com/a.git",
            "ssh://git@ho st/x",
            "git@:path",
            "user:pw@host:org/x.git",
            "host:",
            "",
        ] {
            let err = RepoUrl::parse(text).unwrap_err().to_string();
            assert!(!err.contains("pw"), "{text}: {err}");
        }
    }

    #[test]
    fn unparsable_text_still_hides_credentials() {
        for (text, shown) in [
            (
                "https://u:pw@exa mple.com/x.git",
                "https://***@exa mple.com/x.git",
            ),
            ("ftp://u:pw@h/x", "ftp://***@h/x"),
            ("https://u:p@w@bad host/x", "https://***@bad host/x"),
            ("not a url", "not a url"),
            ("user:pw@host:org/x.git", "***@host:org/x.git"),
            ("/srv/git/x.git", "/srv/git/x.git"),
        ] {
            assert_eq!(redacted_url(text), shown, "{text}");
        }
    }
}
