//! One line of the audit file: its JSON form, its hash, and what a checkpoint signs.
//!
//! Every line is a JSON object with `seq` (one more than the line before, across rotated files),
//! `prev` (hex SHA-256 of the line before, without its newline) and `type`: `start` (first line
//! of a file; names the file before it), `record` (one key operation) or `checkpoint` (the chain
//! head signed by the audit key in the token). serde_json escapes every control character, so
//! no text a caller sends can end a line or start a forged one.

use std::time::SystemTime;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::record::AuditRecord;

/// `prev` of the very first line of a trail.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The kinds of line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LineKind {
    /// First line of a file.
    Start,
    /// One key operation.
    Record,
    /// A signature over the chain head.
    Checkpoint,
}

/// A line as written and as read back. Fields a kind does not use are left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Position in the trail, from 1, continuing across rotated files.
    pub seq: u64,
    /// Hex SHA-256 of the line before ([`GENESIS`] for the first line of a trail).
    pub prev: String,
    /// What the line is.
    #[serde(rename = "type")]
    pub kind: Option<LineKind>,
    /// When the line was made (RFC 3339, UTC).
    pub time: String,

    // === start ===
    /// The file this one continues (its name, in the same folder), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_file: Option<String>,

    // === record ===
    /// `notary` or `admin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    /// The caller, as the identity layer named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The RPC method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The key the call named or made (for a checkpoint: the audit key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// The key's repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gun: Option<String>,
    /// The key's role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The key's algorithm or the mechanism used (for a checkpoint: the audit key's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// Hex SHA-256 of the content signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_sha256: Option<String>,
    /// `ok`, `denied`, `cancelled` or a gRPC code name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The policy rule that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Time from arrival to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// The error message of a failed call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,

    // === checkpoint ===
    /// The audit key's public key: base64 of its DER SubjectPublicKeyInfo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Base64 signature over [`checkpoint_message`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Line {
    /// A `start` line.
    pub fn start(seq: u64, prev: String, time: SystemTime, previous_file: Option<String>) -> Line {
        Line {
            seq,
            prev,
            kind: Some(LineKind::Start),
            time: rfc3339(time),
            previous_file,
            ..Line::default()
        }
    }

    /// A `record` line for `record`.
    pub fn record(seq: u64, prev: String, record: &AuditRecord) -> Line {
        Line {
            seq,
            prev,
            kind: Some(LineKind::Record),
            time: rfc3339(record.time),
            port: Some(record.port.as_str().to_owned()),
            identity: Some(record.identity.to_string()),
            method: Some(record.method.to_string()),
            key_id: record.key_id.as_ref().map(ToString::to_string),
            gun: record.gun.clone(),
            role: record.role.clone(),
            algorithm: record.algorithm.as_deref().map(str::to_owned),
            content_sha256: record.content_sha256.map(hex::encode),
            outcome: Some(record.outcome.as_str().to_owned()),
            rule: record.rule.clone(),
            duration_us: Some(record.duration_us),
            error: record.error.clone(),
            ..Line::default()
        }
    }

    /// The line's text, without the newline.
    pub fn to_text(&self) -> String {
        // A struct of strings and integers always serializes.
        serde_json::to_string(self).expect("an audit line serializes")
    }
}

/// Hex SHA-256 of a line's text (without its newline): the next line's `prev`.
pub fn line_hash(text: &[u8]) -> String {
    hex::encode(Sha256::digest(text))
}

/// The bytes a checkpoint at `seq` signs: the domain, the position and the hash of everything
/// before it (which commits to every earlier line, across files).
pub fn checkpoint_message(seq: u64, prev: &str, time: &str) -> Vec<u8> {
    format!("signerd audit checkpoint v1\nseq {seq}\nhead {prev}\ntime {time}\n").into_bytes()
}

/// Base64 as written in checkpoints.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Reads base64 written by [`b64`].
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-30T07:01:02.123456Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let t = time::OffsetDateTime::from(time);
    let t = t.replace_nanosecond(t.microsecond() * 1000).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::{Outcome, Port};
    use std::time::Duration;

    #[test]
    fn caller_text_cannot_break_a_line() {
        let record = AuditRecord {
            time: SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
            port: Port::Notary,
            identity: "CN=x\n{\"seq\":9}".into(),
            method: "CreateKey".into(),
            key_id: None,
            gun: Some("g\u{0}\u{1b}[31m\r".into()),
            role: None,
            algorithm: Some("x\"\n".into()),
            content_sha256: Some([1; 32]),
            outcome: Outcome::Failed("InvalidArgument".into()),
            rule: None,
            duration_us: 12,
            error: Some("bad\nline".into()),
        };
        let text = Line::record(3, GENESIS.into(), &record).to_text();
        assert!(!text.contains('\n') && !text.contains('\r') && !text.contains('\u{1b}'));
        let back: Line = serde_json::from_str(&text).unwrap();
        assert_eq!(back.identity.as_deref(), Some("CN=x\n{\"seq\":9}"));
        assert_eq!(back.time, "2023-11-14T22:13:20.123456Z");
        assert_eq!(back.content_sha256, Some(hex::encode([1u8; 32])));
        assert_eq!(back.outcome.as_deref(), Some("InvalidArgument"));
    }
}
