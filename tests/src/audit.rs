//! The audit trail as an attacker and an auditor see it: its lines, edits to them, and a whole
//! file rewritten with a fresh chain whose checkpoints are signed by a key of the attacker's.
//!
//! The format (docs/audit.md): one JSON object per line with `seq`, `prev` (hex SHA-256 of the
//! line before; 64 zeros first), `type` (`start`, `record`, `checkpoint`); a checkpoint signs
//! `signerd audit checkpoint v1\nseq S\nhead PREV\ntime T\n` with ECDSA P-256.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey as _;
use sha2::{Digest, Sha256};

use crate::process::output_with_timeout;
use crate::signerd::signerd_bin;

/// The lines of an audit file (without newlines).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Each line parsed.
pub fn records(path: &Path) -> Vec<serde_json::Value> {
    lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).expect("every audit line is JSON"))
        .collect()
}

/// Writes `lines` as a file (each with its newline).
pub fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// `lines` renumbered and re-chained from the start, as a fresh file; every checkpoint
/// re-signed by `key` (a key of the attacker's), or dropped when `key` is `None`.
pub fn fresh_chain(lines: &[String], key: Option<&p256::ecdsa::SigningKey>) -> Vec<String> {
    let mut prev = "0".repeat(64);
    let mut out = Vec::new();
    for raw in lines {
        let mut line: serde_json::Value = serde_json::from_str(raw).expect("JSON line");
        let checkpoint = line["type"] == "checkpoint";
        if checkpoint && key.is_none() {
            continue;
        }
        let seq = out.len() as u64 + 1;
        line["seq"] = seq.into();
        line["prev"] = prev.clone().into();
        if let (true, Some(key)) = (checkpoint, key) {
            let message = format!(
                "signerd audit checkpoint v1\nseq {seq}\nhead {prev}\ntime {}\n",
                line["time"].as_str().unwrap_or_default()
            );
            let sig: p256::ecdsa::Signature = key.sign(message.as_bytes());
            let spki = key
                .verifying_key()
                .to_public_key_der()
                .expect("P-256 SPKI")
                .into_vec();
            let b64 = base64::engine::general_purpose::STANDARD;
            let canonical = serde_json::json!({
                "keytype": "ecdsa",
                "keyval": {"private": null, "public": b64.encode(&spki)},
            });
            line["key_id"] = hash(&canonical.to_string()).into();
            line["public_key"] = b64.encode(&spki).into();
            line["signature"] = b64.encode(sig.to_bytes()).into();
        }
        let text = line.to_string();
        prev = hash(&text);
        out.push(text);
    }
    out
}

/// Runs `signerd audit <args>` and returns its output (run logs under `log_dir`).
pub fn audit_cli(args: &[&str], log_dir: &Path) -> Output {
    let mut command = std::process::Command::new(signerd_bin());
    command.arg("audit").args(args);
    let name = format!(
        "audit-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    output_with_timeout(
        command,
        None,
        &log_dir.join(PathBuf::from(name)),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("signerd audit {args:?}: {e}"))
}
