//! Authentication for triggers and webhooks, and matching a push payload to
//! the configured repositories. Secrets are compared in constant time:
//! tokens through their SHA-256 digests (so their length does not leak
//! either), GitHub signatures through HMAC verification.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::repo_url::RepoUrl;

/// True when `given` equals `expected`, in time independent of where they differ.
pub fn token_matches(expected: &str, given: &str) -> bool {
    let a = Sha256::digest(expected.as_bytes());
    let b = Sha256::digest(given.as_bytes());
    a.ct_eq(&b).into()
}

/// Checks an `Authorization: Bearer <token>` header value.
pub fn bearer_matches(expected: &str, header: Option<&str>) -> bool {
    let Some(header) = header else {
        return false;
    };
    let Some((scheme, token)) = header.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && token_matches(expected, token.trim())
}

/// Checks an `Authorization: Basic <base64 user:password>` header value
/// against `users`. Every user is compared, so the time taken does not say
/// which user exists either.
pub fn basic_matches(users: &[(String, String)], header: Option<&str>) -> bool {
    use base64::Engine;
    let Some((scheme, encoded)) = header.and_then(|h| h.trim().split_once(' ')) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some((user, password)) = std::str::from_utf8(&decoded)
        .ok()
        .and_then(|text| text.split_once(':'))
    else {
        return false;
    };
    users
        .iter()
        .fold(false, |found, (known_user, known_password)| {
            // Both compared always: no short-circuit on the user name.
            let user_ok = token_matches(known_user, user);
            let password_ok = token_matches(known_password, password);
            found | (user_ok & password_ok)
        })
}

/// Checks GitHub's `X-Hub-Signature-256: sha256=<hex HMAC of the body>`.
pub fn github_signature_matches(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_signature) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(signature) = hex::decode(hex_signature) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&signature).is_ok()
}

/// The signature GitHub would send for `body` (for tests and tooling).
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Reduces a repository URL to `host/path` (or an absolute path for
/// `file://` and a bare path), so that the https, ssh, git and scp-like forms
/// of one repository compare equal: see [`RepoUrl::match_key`].
pub fn normalize_repo_url(url: &str) -> Option<String> {
    let url = url.trim();
    if url.starts_with('/') {
        return RepoUrl::parse(&format!("file://{url}")).ok()?.match_key();
    }
    RepoUrl::parse(url).ok()?.match_key()
}

/// Every repository URL a GitHub or GitLab push payload names.
pub fn payload_repo_urls(payload: &serde_json::Value) -> Vec<String> {
    let mut urls = Vec::new();
    for (object, keys) in [
        (
            "repository",
            &[
                "clone_url",
                "ssh_url",
                "git_url",
                "html_url",
                "svn_url",
                "url",
                "git_http_url",
                "git_ssh_url",
                "homepage",
            ][..],
        ),
        (
            "project",
            &[
                "git_http_url",
                "git_ssh_url",
                "http_url",
                "ssh_url",
                "web_url",
                "url",
            ][..],
        ),
    ] {
        for key in keys {
            if let Some(url) = payload
                .get(object)
                .and_then(|o| o.get(key))
                .and_then(|v| v.as_str())
            {
                if let Some(normalized) = normalize_repo_url(url) {
                    if !urls.contains(&normalized) {
                        urls.push(normalized);
                    }
                }
            }
        }
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_bearer_headers() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cret", "s3cre"));
        assert!(!token_matches("s3cret", ""));
        assert!(bearer_matches("tok", Some("Bearer tok")));
        assert!(bearer_matches("tok", Some("bearer  tok ")));
        assert!(!bearer_matches("tok", Some("Basic tok")));
        assert!(!bearer_matches("tok", Some("Bearer tok2")));
        assert!(!bearer_matches("tok", Some("tok")));
        assert!(!bearer_matches("tok", None));
    }

    #[test]
    fn basic_auth_headers() {
        use base64::Engine;
        let basic = |text: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(text)
            )
        };
        let users = [
            ("alice".to_string(), "s3cret".to_string()),
            ("bob".to_string(), "pa:ss".to_string()),
        ];
        let table = [
            (Some(basic("alice:s3cret")), true),
            (Some(basic("bob:pa:ss")), true),
            (Some(basic("alice:pa:ss")), false),
            (Some(basic("alice:s3cre")), false),
            (Some(basic("carol:s3cret")), false),
            (Some(basic("alice")), false),
            (Some(basic(":")), false),
            (Some("Basic !!notbase64".to_string()), false),
            (Some("Bearer s3cret".to_string()), false),
            (Some(basic("alice:s3cret").replace("Basic", "basic")), true),
            (None, false),
        ];
        for (header, expected) in table {
            assert_eq!(
                basic_matches(&users, header.as_deref()),
                expected,
                "{header:?}"
            );
        }
        assert!(!basic_matches(&[], Some(&basic("alice:s3cret"))));
    }

    #[test]
    fn github_signatures() {
        // The example from GitHub's documentation on validating webhook deliveries.
        let signature = github_signature("It's a Secret to Everybody", b"Hello, World!");
        assert_eq!(
            signature,
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        assert!(github_signature_matches(
            "It's a Secret to Everybody",
            b"Hello, World!",
            Some(&signature)
        ));
        assert!(!github_signature_matches(
            "It's a Secret to Everybody",
            b"Hello, World?",
            Some(&signature)
        ));
        assert!(!github_signature_matches(
            "other",
            b"Hello, World!",
            Some(&signature)
        ));
        assert!(!github_signature_matches("x", b"", Some("sha256=zz")));
        assert!(!github_signature_matches("x", b"", Some("sha1=00")));
        assert!(!github_signature_matches("x", b"", None));
    }

    #[test]
    fn repo_urls_normalize_across_forms() {
        let forms = [
            "https://github.com/Acme/Infra.git",
            "https://x-access-token:abc@github.com/acme/infra",
            "git@github.com:acme/infra.git",
            "ssh://git@github.com:22/acme/infra.git",
            "git://github.com/acme/infra.git/",
            "https://github.com/acme/infra/",
            "https://x-access-token:p%40ss%3Aword@GITHUB.com:443/acme/infra.git",
            "git+ssh://git@github.com/acme/infra",
            "github.com:acme/infra.git",
        ];
        for form in forms {
            assert_eq!(
                normalize_repo_url(form).as_deref(),
                Some("github.com/acme/infra"),
                "{form}"
            );
        }
        assert_eq!(
            normalize_repo_url("file:///srv/git/infra.git").as_deref(),
            Some("/srv/git/infra")
        );
        assert_eq!(
            normalize_repo_url("/srv/git/infra").as_deref(),
            Some("/srv/git/infra")
        );
        assert_eq!(normalize_repo_url(""), None);
        // The same repository across ports and an IPv6 host (GitHub Enterprise, self-hosted).
        for (configured, sent) in [
            (
                "ssh://git@[2001:db8::7]:2222/ops/infra.git",
                "https://[2001:db8::7]/ops/infra",
            ),
            (
                "git@[2001:db8::7]:ops/infra.git",
                "http://[2001:db8::7]:8080/ops/infra.git",
            ),
            (
                "https://ghe.example.com:8443/ops/infra",
                "git@ghe.example.com:ops/infra.git",
            ),
            ("file:///srv/git/my%20infra.git", "/srv/git/my infra"),
        ] {
            assert_eq!(
                normalize_repo_url(configured),
                normalize_repo_url(sent),
                "{configured} ~ {sent}"
            );
            assert!(normalize_repo_url(configured).is_some(), "{configured}");
        }
        // Neighbours do not match.
        let key = normalize_repo_url("https://github.com/acme/infra.git");
        for other in [
            "https://github.com/acme/infra2.git",
            "https://github.com/acme/infra/wiki",
            "https://gitlab.com/acme/infra.git",
            "git@github.com:other/infra.git",
            "ftp://github.com/acme/infra",
            "github.com/acme/infra",
        ] {
            assert_ne!(normalize_repo_url(other), key, "{other}");
        }
    }

    /// A push sends the repository in every form GitHub knows; each matches
    /// a repository configured in any form.
    #[test]
    fn a_github_push_matches_the_configured_repo_in_every_form() {
        let github = serde_json::json!({"ref": "refs/heads/main", "repository": {
            "clone_url": "https://github.com/Acme/Infra.git",
            "ssh_url": "git@github.com:Acme/Infra.git",
            "git_url": "git://github.com/Acme/Infra.git",
            "html_url": "https://github.com/Acme/Infra",
            "svn_url": "https://github.com/Acme/Infra",
            "url": "https://github.com/Acme/Infra"}});
        let sent = payload_repo_urls(&github);
        for configured in [
            "https://github.com/acme/infra.git",
            "https://oauth2:ghp_x@github.com/acme/infra",
            "git@github.com:acme/infra.git",
            "ssh://git@github.com/acme/infra.git",
        ] {
            let key = normalize_repo_url(configured).unwrap();
            assert_eq!(sent, std::slice::from_ref(&key), "{configured}");
        }
    }

    #[test]
    fn payload_urls_from_github_and_gitlab() {
        let github = serde_json::json!({"ref": "refs/heads/main", "repository": {
            "clone_url": "https://github.com/acme/infra.git",
            "ssh_url": "git@github.com:acme/infra.git",
            "html_url": "https://github.com/acme/infra"}});
        assert_eq!(payload_repo_urls(&github), ["github.com/acme/infra"]);
        let gitlab = serde_json::json!({"object_kind": "push", "project": {
            "git_http_url": "https://gitlab.example.com/ops/net.git",
            "git_ssh_url": "git@gitlab.example.com:ops/net.git"}});
        assert_eq!(payload_repo_urls(&gitlab), ["gitlab.example.com/ops/net"]);
        assert!(payload_repo_urls(&serde_json::json!({})).is_empty());
    }
}
