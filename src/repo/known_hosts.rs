//! Host key checking against a configured known_hosts file (OpenSSH
//! format: plain, `[host]:port`, wildcard and hashed `|1|salt|hash` host
//! patterns, and `@revoked` markers). Decoding and hashing come from the
//! `base64`, `hmac` and `sha1` crates; the line format and pattern rules
//! are OpenSSH's and small enough to keep here.

use std::path::Path;

use git2::CertificateCheckStatus;

/// Decides on an SSH host key; other certificates (HTTPS) are left to
/// libgit2's own verification.
pub fn check(
    file: &Path,
    cert: &git2::cert::Cert<'_>,
    hostname: &str,
    port: Option<u16>,
) -> Result<CertificateCheckStatus, git2::Error> {
    let Some(hostkey) = cert.as_hostkey() else {
        return Ok(CertificateCheckStatus::CertificatePassthrough);
    };
    let (Some(key), Some(key_type)) = (hostkey.hostkey(), hostkey.hostkey_type()) else {
        return Err(git2::Error::from_str("the SSH server sent no host key"));
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| git2::Error::from_str(&format!("known_hosts file {}: {e}", file.display())))?;
    let host = match port {
        Some(port) if port != 22 => format!("[{hostname}]:{port}"),
        _ => hostname.to_string(),
    };
    match verify(&text, &host, key_type.name(), key) {
        Verdict::Trusted => Ok(CertificateCheckStatus::CertificateOk),
        Verdict::Revoked => Err(git2::Error::from_str(&format!(
            "the host key of {host} is marked @revoked in {}",
            file.display()
        ))),
        Verdict::Mismatch => Err(git2::Error::from_str(&format!(
            "the {} host key of {host} does not match the one in {} (the key changed, or someone is intercepting the connection); \
             if the change is expected, replace the entry in that file",
            key_type.name(),
            file.display()
        ))),
        Verdict::Unknown => Err(git2::Error::from_str(&format!(
            "host {host} is not in the known_hosts file {}; add the host key to the known_hosts file \
             (for example: ssh-keyscan{} {hostname} >> {}, after checking the fingerprint)",
            file.display(),
            port.filter(|p| *p != 22).map(|p| format!(" -p {p}")).unwrap_or_default(),
            file.display()
        ))),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Trusted,
    /// The host is listed, but not with this key.
    Mismatch,
    Revoked,
    Unknown,
}

pub fn verify(known_hosts: &str, host: &str, key_type: &str, key: &[u8]) -> Verdict {
    let mut host_listed = false;
    let mut trusted = false;
    for line in known_hosts.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let marker = if first.starts_with('@') {
            let marker = first;
            first = fields.next().unwrap_or_default();
            Some(marker)
        } else {
            None
        };
        let (Some(entry_type), Some(entry_key)) = (fields.next(), fields.next()) else {
            continue;
        };
        if marker == Some("@cert-authority") || !hosts_match(first, host) {
            continue;
        }
        let same_key = entry_type == key_type && base64_decode(entry_key).as_deref() == Some(key);
        match marker {
            Some("@revoked") if same_key => return Verdict::Revoked,
            Some(_) => {}
            None => {
                host_listed = true;
                trusted |= same_key;
            }
        }
    }
    if trusted {
        Verdict::Trusted
    } else if host_listed {
        Verdict::Mismatch
    } else {
        Verdict::Unknown
    }
}

/// A comma-separated pattern list; a negated match (`!pattern`) wins.
fn hosts_match(patterns: &str, host: &str) -> bool {
    if let Some(hashed) = patterns.strip_prefix("|1|") {
        let Some((salt, hash)) = hashed.split_once('|') else {
            return false;
        };
        let (Some(salt), Some(hash)) = (base64_decode(salt), base64_decode(hash)) else {
            return false;
        };
        return hmac_sha1(&salt, host.as_bytes()).as_slice() == hash.as_slice();
    }
    let mut matched = false;
    for pattern in patterns.split(',') {
        if let Some(negated) = pattern.strip_prefix('!') {
            if glob(negated, host) {
                return false;
            }
        } else if glob(pattern, host) {
            matched = true;
        }
    }
    matched
}

/// `*` and `?` wildcards, case-insensitive like OpenSSH host names.
fn glob(pattern: &str, text: &str) -> bool {
    fn matches(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => matches(&p[1..], t) || (!t.is_empty() && matches(p, &t[1..])),
            (Some(b'?'), Some(_)) => matches(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => matches(&p[1..], &t[1..]),
            _ => false,
        }
    }
    matches(pattern.as_bytes(), text.as_bytes())
}

/// Standard base64, padded or not (the `base64` crate).
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine;
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    ENGINE.decode(text).ok()
}

/// HMAC-SHA1, as OpenSSH hashes host names (`hmac` and `sha1` crates).
pub fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn primitives() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGk").unwrap(), b"hi");
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(base64_decode("aGk*"), None);
        // RFC 2202 test case 2.
        assert_eq!(
            hex(&hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    #[test]
    fn verdicts() {
        let key = base64_decode(KEY).unwrap();
        let other =
            base64_decode("AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
                .unwrap();
        let file = format!("# comment\nexample.com,10.0.0.1 ssh-ed25519 {KEY} c\n[git.local]:2222 ssh-ed25519 {KEY}\n*.wild.org,!bad.wild.org ssh-ed25519 {KEY}\n");
        assert_eq!(
            verify(&file, "example.com", "ssh-ed25519", &key),
            Verdict::Trusted
        );
        assert_eq!(
            verify(&file, "10.0.0.1", "ssh-ed25519", &key),
            Verdict::Trusted
        );
        assert_eq!(
            verify(&file, "[git.local]:2222", "ssh-ed25519", &key),
            Verdict::Trusted
        );
        assert_eq!(
            verify(&file, "git.local", "ssh-ed25519", &key),
            Verdict::Unknown
        );
        assert_eq!(
            verify(&file, "a.wild.org", "ssh-ed25519", &key),
            Verdict::Trusted
        );
        assert_eq!(
            verify(&file, "bad.wild.org", "ssh-ed25519", &key),
            Verdict::Unknown
        );
        assert_eq!(
            verify(&file, "example.com", "ssh-ed25519", &other),
            Verdict::Mismatch
        );
        assert_eq!(
            verify(&file, "example.com", "ssh-rsa", &key),
            Verdict::Mismatch
        );
        assert_eq!(
            verify(&file, "nowhere", "ssh-ed25519", &key),
            Verdict::Unknown
        );
        let revoked = format!("{file}@revoked example.com ssh-ed25519 {KEY}\n");
        assert_eq!(
            verify(&revoked, "example.com", "ssh-ed25519", &key),
            Verdict::Revoked
        );
    }

    #[test]
    fn hashed_hosts() {
        // Produced by `ssh-keygen -H` for host "github.com".
        let key = base64_decode(KEY).unwrap();
        let file = format!(
            "|1|W6VwbjIKG2OteO+hHg7qrfosjFw=|1v0R5lrrRUvucVXSOReLmbJzE/Q= ssh-ed25519 {KEY}\n"
        );
        assert_eq!(
            verify(&file, "github.com", "ssh-ed25519", &key),
            Verdict::Trusted
        );
        assert_eq!(
            verify(&file, "gitlab.com", "ssh-ed25519", &key),
            Verdict::Unknown
        );
    }
}
