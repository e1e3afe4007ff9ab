//! Reading ansible's output: the result document driftwatch's stdout callback prints (per-host
//! stats, per-task results, the plays and the hosts they matched), found by its marker among
//! whatever else lands on stdout, with byte offsets kept exact for parse errors.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Tags the callback's JSON line among whatever else lands on stdout.
pub(super) const CALLBACK_MARKER: &str = "driftwatch-ansible/v1";

/// The callback's document, as printed by `driftwatch_json.py`.
#[derive(Debug, Deserialize)]
pub(super) struct CallbackDocument {
    #[serde(default)]
    pub(super) ansible_version: String,
    #[serde(default)]
    pub(super) hosts: BTreeMap<String, HostStats>,
    #[serde(default)]
    pub(super) results: Vec<TaskResult>,
    /// Every play that started, in order.
    #[serde(default)]
    pub(super) plays: Vec<PlayMatch>,
}

/// One play and the hosts its pattern matched (after `--limit`; with
/// `serial`, across all batches).
#[derive(Debug, Deserialize)]
pub(super) struct PlayMatch {
    #[serde(default)]
    pub(super) playbook: String,
    pub(super) name: String,
    pub(super) pattern: String,
    #[serde(default)]
    pub(super) hosts: Vec<String>,
    /// Set when the callback could not list the play's hosts.
    #[serde(default)]
    pub(super) error: Option<String>,
    /// Tasks started, after `--tags`/`--skip-tags`, not counting the
    /// implicit fact gathering; None from a document that does not count.
    #[serde(default)]
    pub(super) tasks: Option<u64>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default)]
pub struct HostStats {
    pub ok: u64,
    pub changed: u64,
    pub failures: u64,
    pub unreachable: u64,
    pub skipped: u64,
    pub rescued: u64,
    pub ignored: u64,
}

#[derive(Debug, Deserialize)]
pub(super) struct TaskResult {
    pub(super) host: String,
    pub(super) task: String,
    #[serde(default)]
    pub(super) action: String,
    #[serde(default)]
    pub(super) path: String,
    pub(super) status: String,
    #[serde(default)]
    pub(super) changed: bool,
    #[serde(default)]
    pub(super) handler: bool,
    #[serde(default)]
    pub(super) ignored: bool,
    #[serde(default)]
    pub(super) censored: bool,
    #[serde(default)]
    pub(super) msg: Option<String>,
    #[serde(default)]
    pub(super) diff: Option<String>,
}

/// Why no result document could be read from stdout.
#[derive(Debug, PartialEq)]
pub(super) enum DocumentError {
    /// No line carries the callback's marker.
    Missing,
    /// The last marked line is not a valid document; `offset` (from 0) is
    /// the byte of stdout where reading stopped.
    Invalid { offset: usize, message: String },
}

/// The last stdout line carrying the callback's marker; other callbacks a
/// repo enables may print around it. Bytes, not text, so the offset of a
/// parse error is exact.
pub(super) fn find_document(stdout: &[u8]) -> Result<CallbackDocument, DocumentError> {
    let mut start = 0;
    let mut found = None;
    for line in stdout.split(|b| *b == b'\n') {
        let marked = line.first() == Some(&b'{')
            && line
                .windows(CALLBACK_MARKER.len())
                .any(|w| w == CALLBACK_MARKER.as_bytes());
        if marked {
            found = Some((start, line));
        }
        start += line.len() + 1;
    }
    let (start, line) = found.ok_or(DocumentError::Missing)?;
    serde_json::from_slice(&repair_lone_surrogates(line)).map_err(|error| {
        // serde_json counts columns in bytes from 1; the line has no newline.
        let offset = start + error.column().saturating_sub(1);
        let message = error.to_string();
        let message = match message.rfind(" at line ") {
            Some(cut) => message[..cut].to_string(),
            None => message,
        };
        DocumentError::Invalid { offset, message }
    })
}

/// Replaces JSON escapes of lone UTF-16 surrogates (`\udcf6`, Python's
/// escape for an undecodable byte) with `\ufffd`, which serde_json accepts.
/// The callback already cleans its strings; this keeps a document from any
/// other emitter readable. Same length, so error offsets stay exact.
fn repair_lone_surrogates(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    fn escape_at(line: &[u8], i: usize) -> Option<u32> {
        let hex = line.get(i..i + 6)?;
        if hex[0] != b'\\' || hex[1] != b'u' {
            return None;
        }
        u32::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()
    }
    let surrogate = |code: u32| (0xD800..=0xDFFF).contains(&code);
    if !line
        .windows(3)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && matches!(w[2], b'd' | b'D'))
    {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = line.to_vec();
    let mut i = 0;
    while i < line.len() {
        if line[i] != b'\\' {
            i += 1;
            continue;
        }
        match escape_at(line, i) {
            Some(0xD800..=0xDBFF)
                if escape_at(line, i + 6).is_some_and(|low| (0xDC00..=0xDFFF).contains(&low)) =>
            {
                i += 12
            }
            Some(code) if surrogate(code) => {
                out[i..i + 6].copy_from_slice(b"\\ufffd");
                i += 6;
            }
            Some(_) => i += 6,
            // `\\`, `\"`, `\n`…: skip the escaped character too.
            None => i += 2,
        }
    }
    std::borrow::Cow::Owned(out)
}
