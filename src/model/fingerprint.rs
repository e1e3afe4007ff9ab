//! Fingerprints of drift: a short, stable digest of one change as it is now
//! (subject, action, field path, wanted and live value), so that an
//! acknowledgement can say "this drift, exactly" and notice when the drift
//! becomes another one. The form is `fp1:<16 hex>`, the first 64 bits of a
//! SHA-256 over length-prefixed parts (so no two part lists collide by
//! concatenation).
//!
//! Values a layer masks (Kubernetes Secret data, Terraform sensitive values)
//! enter only as HMAC-SHA256 under the daemon's [`FingerprintKey`]: a plain
//! hash of a short secret could be brute-forced from the fingerprint, which
//! is shown on the page and written into the watched repo. Replicas of one
//! cluster share the key (a Secret), or their fingerprints of secret drift differ.

use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The version prefix of every fingerprint this module makes.
pub const PREFIX: &str = "fp1:";
/// Where the generated key lives under the state directory.
pub const KEY_FILE: &str = "fingerprint.key";
/// Bytes of a generated key.
const KEY_BYTES: usize = 32;
/// The shortest key accepted (trimmed bytes of the file).
pub const MIN_KEY_BYTES: usize = 16;

/// Why the contents of a key file cannot be a key (too short), if they cannot.
pub fn key_problem(contents: &[u8]) -> Option<String> {
    let len = contents.trim_ascii().len();
    (len < MIN_KEY_BYTES).then(|| {
        format!(
            "holds {len} bytes; a fingerprint key needs at least {MIN_KEY_BYTES} (make one with `head -c 32 /dev/urandom | base64`)"
        )
    })
}

/// The key secret values are hashed under. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct FingerprintKey(Vec<u8>);

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FingerprintKey(hidden)")
    }
}

impl Default for FingerprintKey {
    /// A fixed all-zero key, for tests and tools that never see secret drift.
    fn default() -> Self {
        FingerprintKey(vec![0; KEY_BYTES])
    }
}

impl FingerprintKey {
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Self {
        FingerprintKey(bytes.into())
    }

    /// The configured key file (its trimmed contents are the key), else
    /// `state_dir/fingerprint.key`, generated once (mode 0600) when missing.
    /// The flag says it was generated just now: acks made before were made
    /// under another key.
    pub fn load(configured: Option<&Path>, state_dir: &Path) -> Result<(Self, bool), String> {
        let path = configured.map_or_else(|| state_dir.join(KEY_FILE), Path::to_path_buf);
        match std::fs::read(&path) {
            Ok(bytes) => match key_problem(&bytes) {
                None => Ok((FingerprintKey(bytes.trim_ascii().to_vec()), false)),
                Some(problem) if configured.is_some() => Err(format!(
                    "the fingerprint key file {} ([acks] fingerprint_key_file) {problem}",
                    path.display()
                )),
                Some(problem) => Err(format!(
                    "the fingerprint key {} {problem}; remove it to generate a new one",
                    path.display()
                )),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && configured.is_none() => {
                generate(&path).map(|key| (key, true))
            }
            Err(e) if configured.is_some() => Err(format!(
                "cannot read the fingerprint key file {}: {e}",
                path.display()
            )),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// `hmac:<hex>` of `value` under this key: how a hidden value enters a fingerprint.
    pub fn secret(&self, value: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(value);
        format!("hmac:{}", hex::encode(mac.finalize().into_bytes()))
    }
}

/// Writes a fresh random key to `path` (0600, fsync, no overwrite: a
/// concurrent `check` on the same state directory keeps the first one).
fn generate(path: &Path) -> Result<FingerprintKey, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = vec![0u8; KEY_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(|e| format!("cannot read /dev/urandom for a fingerprint key: {e}"))?;
    let text = hex::encode(&bytes);
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| {
            file.write_all(text.as_bytes())?;
            file.sync_all()
        });
    match created {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(FingerprintKey(text.into_bytes()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            FingerprintKey::load(Some(path), Path::new("")).map(|(key, _)| key)
        }
        Err(e) => Err(format!("cannot write {}: {e}", path.display())),
    }
}

/// `fp1:<16 hex>` over `parts`, each length-prefixed.
pub fn of_parts(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part.as_bytes());
    }
    format!("{PREFIX}{}", &hex::encode(hash.finalize())[..16])
}

/// One field's fingerprint: its resource, path and both values (already
/// HMACed where hidden). `live` is `None` when the live side lacks the field.
pub fn field(subject: &str, field: &str, want: &str, live: Option<&str>) -> String {
    match live {
        Some(live) => of_parts(&["field", subject, field, want, "live", live]),
        None => of_parts(&["field", subject, field, want, "absent"]),
    }
}

/// A change's fingerprint: from its fields' fingerprints when the layer gave
/// them, else from its (redacted) diff text, plus any hidden values (`secrets`,
/// already HMACed) the text masks.
pub fn change(
    subject: &str,
    action: &str,
    field_fingerprints: &[&str],
    diff: &str,
    secrets: &[String],
) -> String {
    let mut parts: Vec<&str> = vec!["change", subject, action];
    if field_fingerprints.is_empty() {
        parts.push("diff");
        parts.push(diff);
    } else {
        let mut sorted = field_fingerprints.to_vec();
        sorted.sort_unstable();
        parts.push("fields");
        parts.extend(sorted);
    }
    parts.extend(secrets.iter().map(String::as_str));
    of_parts(&parts)
}

/// True for the text form this module makes.
pub fn is_valid(text: &str) -> bool {
    text.strip_prefix(PREFIX)
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Where the generated key would be, for messages.
pub fn default_key_path(state_dir: &Path) -> PathBuf {
    state_dir.join(KEY_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_change_with_every_part_and_only_then() {
        let base = field("Deployment/prod/web", "spec.replicas", "3", Some("5"));
        assert!(is_valid(&base), "{base}");
        assert_eq!(
            base,
            field("Deployment/prod/web", "spec.replicas", "3", Some("5"))
        );
        let siblings = [
            field("Deployment/prod/api", "spec.replicas", "3", Some("5")),
            field("Deployment/prod/web", "spec.paused", "3", Some("5")),
            field("Deployment/prod/web", "spec.replicas", "4", Some("5")),
            field("Deployment/prod/web", "spec.replicas", "3", Some("6")),
            field("Deployment/prod/web", "spec.replicas", "3", None),
            // Concatenation cannot collide: the parts are length-prefixed.
            field("Deployment/prod/we", "bspec.replicas", "3", Some("5")),
        ];
        for other in &siblings {
            assert_ne!(&base, other);
        }
        let change_base = change("a", "update", &[], "x → y", &[]);
        for other in [
            change("b", "update", &[], "x → y", &[]),
            change("a", "delete", &[], "x → y", &[]),
            change("a", "update", &[], "x → z", &[]),
            change("a", "update", &[], "x → y", &["hmac:00".into()]),
        ] {
            assert_ne!(change_base, other);
        }
        // Field order does not matter, the set does.
        assert_eq!(
            change("a", "changed", &["fp1:1", "fp1:2"], "", &[]),
            change("a", "changed", &["fp1:2", "fp1:1"], "other text", &[])
        );
    }

    #[test]
    fn secrets_enter_only_keyed() {
        let key = FingerprintKey::from_bytes(b"0123456789abcdef".to_vec());
        let other = FingerprintKey::from_bytes(b"fedcba9876543210".to_vec());
        let hidden = key.secret(b"hunter2");
        assert!(!hidden.contains("hunter2"));
        assert_ne!(hidden, key.secret(b"hunter3"));
        assert_ne!(hidden, other.secret(b"hunter2"));
        assert_ne!(
            hidden,
            format!("hmac:{}", hex::encode(Sha256::digest(b"hunter2"))),
            "never a plain hash"
        );
        assert_eq!(format!("{key:?}"), "FingerprintKey(hidden)");
    }

    #[test]
    fn the_key_is_generated_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (first, generated) = FingerprintKey::load(None, dir.path()).unwrap();
        assert!(generated);
        let (second, generated) = FingerprintKey::load(None, dir.path()).unwrap();
        assert!(!generated, "loaded, not generated again");
        assert_eq!(first, second);
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let file = dir.path().join("shared.key");
        // Too short, configured or stored: refused, naming the file and the minimum.
        for short in ["short\n", "", "  \n", "fifteen-bytes!!"] {
            std::fs::write(&file, short).unwrap();
            let err = FingerprintKey::load(Some(&file), dir.path()).unwrap_err();
            assert!(
                err.contains("at least 16") && err.contains("shared.key"),
                "{err}"
            );
            std::fs::write(dir.path().join(KEY_FILE), short).unwrap();
            let err = FingerprintKey::load(None, dir.path()).unwrap_err();
            assert!(
                err.contains("at least 16") && err.contains(KEY_FILE),
                "{err}"
            );
        }
        std::fs::write(&file, "sixteen-bytes!!!").unwrap();
        assert!(FingerprintKey::load(Some(&file), dir.path()).is_ok());
        std::fs::write(&file, "a-key-shared-by-all-replicas\n").unwrap();
        let (shared, generated) = FingerprintKey::load(Some(&file), dir.path()).unwrap();
        assert!(!generated);
        assert_eq!(shared.0, b"a-key-shared-by-all-replicas");
        let err = FingerprintKey::load(Some(&dir.path().join("nope")), dir.path()).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }
}
