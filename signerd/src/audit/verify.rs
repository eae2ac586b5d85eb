//! Checks audit files: the hash chain line by line (across rotated files) and every checkpoint's
//! signature, and names the first line that is not what signerd wrote.

use std::path::{Path, PathBuf};

use p256::pkcs8::DecodePublicKey as _;
use signature::Verifier as _;
use signerd_token::{KeyAlgorithm, KeyId};

use super::line::{checkpoint_message, line_hash, unb64, Line, LineKind, GENESIS};

/// The audit key checkpoints must be signed by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustedKey {
    /// Whatever key the first checkpoint names (not independently trusted).
    FromFile,
    /// The key with this TUF key ID (its public key hashes to it, so the ID pins the key).
    KeyId(KeyId),
}

/// One audit file, read.
#[derive(Clone, Debug)]
pub struct AuditFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

impl AuditFile {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<AuditFile, String> {
        std::fs::read(path)
            .map(|bytes| AuditFile {
                path: path.to_owned(),
                bytes,
            })
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    }

    fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The lines (without newlines), and whether the last one was cut short.
    fn lines(&self) -> (Vec<&[u8]>, bool) {
        if self.bytes.is_empty() {
            return (Vec::new(), false);
        }
        let torn = self.bytes.last() != Some(&b'\n');
        let body = if torn {
            &self.bytes[..]
        } else {
            &self.bytes[..self.bytes.len() - 1]
        };
        (body.split(|b| *b == b'\n').collect(), torn)
    }

    fn first_seq(&self) -> Option<u64> {
        let (lines, _) = self.lines();
        lines
            .first()
            .and_then(|l| serde_json::from_slice::<Line>(l).ok())
            .map(|l| l.seq)
    }
}

/// The first line that is not as signerd wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    /// The file.
    pub file: PathBuf,
    /// The line number in it, from 1.
    pub line: usize,
    /// What is wrong and what it means.
    pub why: String,
}

impl std::fmt::Display for BadLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.why)
    }
}

/// What a good chain showed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Lines checked.
    pub lines: u64,
    /// Checkpoints whose signature verified.
    pub checkpoints: u64,
    /// The audit key that signed them.
    pub key_id: Option<String>,
    /// Whether that key was given by the user rather than read from the file.
    pub key_trusted: bool,
    /// Lines after the last checkpoint (chained, but not yet signed).
    pub unsigned_tail: u64,
    /// Things worth knowing that do not make the chain bad.
    pub notes: Vec<String>,
}

/// Checks `files` (in any order: they are put in chain order by their first `seq`).
pub fn verify(files: &[AuditFile], trusted: &TrustedKey) -> Result<Summary, BadLine> {
    let mut order: Vec<&AuditFile> = files.iter().collect();
    order.sort_by_key(|f| f.first_seq().unwrap_or(u64::MAX));
    let mut summary = Summary {
        key_trusted: matches!(trusted, TrustedKey::KeyId(_)),
        ..Summary::default()
    };
    if let TrustedKey::KeyId(id) = trusted {
        summary.key_id = Some(id.to_string());
    }
    let mut key: Option<(String, Vec<u8>, usize, PathBuf)> = None;
    // The previous line: its hash, seq, and where it is.
    let mut previous: Option<(String, u64, PathBuf, usize)> = None;
    let mut previous_file: Option<&AuditFile> = None;

    for file in order {
        let bad = |line: usize, why: String| BadLine {
            file: file.path.clone(),
            line,
            why,
        };
        let (lines, torn) = file.lines();
        if lines.is_empty() {
            return Err(bad(1, "the file is empty: its lines were removed".into()));
        }
        for (index, text) in lines.iter().enumerate() {
            let n = index + 1;
            if torn && n == lines.len() {
                return Err(bad(
                    n,
                    "the last line is incomplete: the file was truncated (or signerd crashed while writing it)".into(),
                ));
            }
            let line: Line = serde_json::from_slice(text)
                .map_err(|e| bad(n, format!("not an audit line ({e}): edited or damaged")))?;
            let Some(kind) = line.kind else {
                return Err(bad(n, "the line has no type: edited".into()));
            };
            if n == 1 {
                if kind != LineKind::Start {
                    return Err(bad(
                        1,
                        format!("a file starts with a start line, this one with a {kind:?} line (seq {}): the lines before it were deleted", line.seq),
                    ));
                }
                match (previous_file, &line.previous_file) {
                    (None, None) => {
                        if line.seq != 1 || line.prev != GENESIS {
                            return Err(bad(1, "a first file's start line has seq 1 and the zero hash: edited".into()));
                        }
                    }
                    (None, Some(name)) => summary.notes.push(format!(
                        "{} continues {name}, which was not given: the chain before it is not checked",
                        file.path.display()
                    )),
                    (Some(before), Some(name)) if *name == before.name() => {}
                    (Some(before), named) => {
                        return Err(bad(
                            1,
                            format!(
                                "this file continues {}, but the file before it in the chain is {}: a rotated file is missing or was renamed",
                                named.as_deref().unwrap_or("nothing"),
                                before.name()
                            ),
                        ))
                    }
                }
            } else if kind == LineKind::Start {
                return Err(bad(
                    n,
                    "a start line inside a file: lines were inserted or files spliced".into(),
                ));
            }
            if let Some((hash, seq, ref prev_path, prev_line)) = previous {
                // No line follows the last seq there is: a seq that high was written by hand
                // (found by fuzz/audit_verify's reading: `seq + 1` overflowed).
                let Some(next) = seq.checked_add(1) else {
                    return Err(BadLine {
                        file: prev_path.clone(),
                        line: prev_line,
                        why: format!(
                            "edited: seq {seq} is the last there can be, and lines follow it"
                        ),
                    });
                };
                if n == 1 && (line.seq != next || line.prev != hash) {
                    return Err(BadLine {
                        file: prev_path.clone(),
                        line: prev_line,
                        why: format!(
                            "the next file ({}) continues from another line (seq {}): this file's last lines were removed or edited",
                            file.path.display(),
                            line.seq.saturating_sub(1)
                        ),
                    });
                }
                if line.seq != next {
                    let moved = lines[index + 1..]
                        .iter()
                        .position(|l| {
                            serde_json::from_slice::<Line>(l).is_ok_and(|l| l.seq == next)
                        })
                        .map(|at| n + 1 + at);
                    let why = if let Some(at) = moved {
                        format!(
                            "seq {} follows seq {seq}, and seq {} is at line {at}: lines were reordered",
                            line.seq,
                            next
                        )
                    } else if line.seq > next {
                        format!(
                            "seq {} follows seq {seq}: {} line(s) before this one were deleted (or moved)",
                            line.seq,
                            line.seq - next
                        )
                    } else {
                        format!(
                            "seq {} follows seq {seq}: lines were reordered or repeated",
                            line.seq
                        )
                    };
                    return Err(bad(n, why));
                }
                if line.prev != hash {
                    return Err(BadLine {
                        file: prev_path.clone(),
                        line: prev_line,
                        why: format!(
                            "edited: the line does not hash to the `prev` that line {n} carries"
                        ),
                    });
                }
            }
            if kind == LineKind::Checkpoint {
                let signed = check_checkpoint(&line)
                    .map_err(|why| bad(n, format!("bad checkpoint: {why}")))?;
                match (&key, trusted) {
                    (_, TrustedKey::KeyId(id)) if signed.0 != id.to_string() => {
                        return Err(bad(
                            n,
                            format!(
                                "checkpoint signed by key {}, not the trusted audit key {id}: the file was rewritten (or the audit key replaced)",
                                signed.0
                            ),
                        ))
                    }
                    (Some((id, _, line_no, path)), _) if *id != signed.0 => {
                        return Err(bad(
                            n,
                            format!(
                                "checkpoint signed by key {}, but {}:{line_no} by {id}: a forged checkpoint (or the audit key replaced)",
                                signed.0,
                                path.display()
                            ),
                        ))
                    }
                    (Some(_), _) => {}
                    (None, _) => {
                        summary.key_id = Some(signed.0.clone());
                        key = Some((signed.0, signed.1, n, file.path.clone()));
                    }
                }
                summary.checkpoints += 1;
                summary.unsigned_tail = 0;
            } else {
                summary.unsigned_tail += 1;
            }
            summary.lines += 1;
            previous = Some((line_hash(text), line.seq, file.path.clone(), n));
        }
        previous_file = Some(file);
    }
    if summary.checkpoints == 0 {
        let file = files.first().map(|f| f.path.clone()).unwrap_or_default();
        return Err(BadLine {
            file,
            line: 1,
            why: "no checkpoint: nothing here is signed by the audit key, so a rewrite of the whole file cannot be ruled out".into(),
        });
    }
    if summary.unsigned_tail > 0 {
        summary.notes.push(format!(
            "the last {} line(s) come after the last checkpoint: chained but not yet signed (the next checkpoint covers them)",
            summary.unsigned_tail
        ));
    }
    Ok(summary)
}

/// Verifies a checkpoint's signature; the key ID and the public key on success.
fn check_checkpoint(line: &Line) -> Result<(String, Vec<u8>), String> {
    let (Some(key_id), Some(algorithm), Some(public_key), Some(signature)) = (
        &line.key_id,
        &line.algorithm,
        &line.public_key,
        &line.signature,
    ) else {
        return Err("key_id, algorithm, public_key or signature missing".into());
    };
    if algorithm != KeyAlgorithm::Ecdsa.as_str() {
        return Err(format!(
            "algorithm {algorithm:?}: audit keys are ecdsa (P-256)"
        ));
    }
    let spki = unb64(public_key).ok_or("public_key is not base64")?;
    let expected_id = KeyId::of_public_key(KeyAlgorithm::Ecdsa, &spki);
    if expected_id.to_string() != *key_id {
        return Err(format!(
            "key_id {key_id} is not the ID of the public key given ({expected_id})"
        ));
    }
    let verifying = p256::ecdsa::VerifyingKey::from_public_key_der(&spki)
        .map_err(|e| format!("public_key is not a P-256 key: {e}"))?;
    let raw = unb64(signature).ok_or("signature is not base64")?;
    let sig = p256::ecdsa::Signature::from_slice(&raw)
        .map_err(|e| format!("signature is not a P-256 signature: {e}"))?;
    verifying
        .verify(&checkpoint_message(line.seq, &line.prev, &line.time), &sig)
        .map_err(|_| {
            "the signature does not verify: the lines before it or the checkpoint were changed"
                .to_string()
        })?;
    Ok((key_id.clone(), spki))
}

/// The key ID of a public key file (PEM `PUBLIC KEY` or DER SubjectPublicKeyInfo).
pub fn key_id_of_public_key_file(path: &Path) -> Result<KeyId, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let der = if bytes.starts_with(b"-----BEGIN") {
        let (label, der) = der::pem::decode_vec(&bytes)
            .map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
        if label != "PUBLIC KEY" {
            return Err(format!(
                "{} holds a {label}, not a PUBLIC KEY",
                path.display()
            ));
        }
        der
    } else {
        bytes
    };
    p256::ecdsa::VerifyingKey::from_public_key_der(&der)
        .map_err(|e| format!("{} is not a P-256 public key: {e}", path.display()))?;
    Ok(KeyId::of_public_key(KeyAlgorithm::Ecdsa, &der))
}
