//! The audit verifier (`signerd audit verify`): a trail built as signerd writes it (start
//! line, records with fuzzed fields, checkpoints signed by a software P-256 key standing in
//! for the token's audit key, optionally rotated into a second file), then at most one
//! tampering the input chooses. An untouched trail verifies, counting every line and
//! checkpoint; an edited, deleted or inserted line before the last checkpoint, two lines
//! swapped, or a line cut short is found. Separately, any bytes as an audit file: an answer,
//! never a panic.
#![no_main]

use std::path::PathBuf;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::EncodePublicKey as _;
use signerd::audit::line::{b64, checkpoint_message, line_hash, Line, LineKind, GENESIS};
use signerd::audit::verify::{verify, AuditFile, TrustedKey};
use signerd_token::{KeyAlgorithm, KeyId};

const TIME: &str = "2026-11-30T07:01:02.123456Z";

#[derive(Arbitrary, Debug)]
struct Record {
    method: String,
    gun: Option<String>,
    role: Option<String>,
    outcome: String,
    error: Option<String>,
    duration_us: u64,
}

#[derive(Arbitrary, Debug)]
enum Tamper {
    None,
    Flip { line: u16, at: u16, xor: u8 },
    Delete { line: u16 },
    Insert { line: u16, text: Vec<u8> },
    Swap { a: u16, b: u16 },
    Cut { at: u16 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    records: Vec<Record>,
    checkpoint_every: u8,
    rotate_after: Option<u8>,
    tamper: Tamper,
    raw: Vec<u8>,
}

struct Signer {
    key: p256::ecdsa::SigningKey,
    spki: Vec<u8>,
    id: String,
}

impl Signer {
    fn new() -> Signer {
        let key = p256::ecdsa::SigningKey::from_slice(&[7; 32]).expect("a valid scalar");
        let spki = key
            .verifying_key()
            .to_public_key_der()
            .expect("a P-256 key encodes")
            .into_vec();
        let id = KeyId::of_public_key(KeyAlgorithm::Ecdsa, &spki).to_string();
        Signer { key, spki, id }
    }

    fn checkpoint(&self, seq: u64, prev: String) -> Line {
        let sig: p256::ecdsa::Signature = self.key.sign(&checkpoint_message(seq, &prev, TIME));
        Line {
            seq,
            prev,
            kind: Some(LineKind::Checkpoint),
            time: TIME.into(),
            key_id: Some(self.id.clone()),
            algorithm: Some("ecdsa".into()),
            public_key: Some(b64(&self.spki)),
            signature: Some(b64(&sig.to_bytes())),
            ..Line::default()
        }
    }
}

/// The trail as lines of text, each with its file (0 or 1); the index of the last checkpoint.
fn build(input: &Input, signer: &Signer) -> (Vec<(usize, Vec<u8>)>, usize) {
    let every = usize::from(input.checkpoint_every % 8) + 1;
    let rotate_at = input.rotate_after.map(|r| usize::from(r % 16) + 1);
    let mut out: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut file = 0;
    let mut seq = 1;
    let mut prev = GENESIS.to_owned();
    let push = |out: &mut Vec<(usize, Vec<u8>)>,
                file: usize,
                line: Line,
                seq: &mut u64,
                prev: &mut String| {
        let text = line.to_text().into_bytes();
        *prev = line_hash(&text);
        *seq += 1;
        out.push((file, text));
    };
    let start = Line {
        seq,
        prev: prev.clone(),
        kind: Some(LineKind::Start),
        time: TIME.into(),
        ..Line::default()
    };
    push(&mut out, file, start, &mut seq, &mut prev);
    let mut last_checkpoint = 0;
    for (i, r) in input.records.iter().take(24).enumerate() {
        if rotate_at == Some(i) && file == 0 {
            file = 1;
            let start = Line {
                seq,
                prev: prev.clone(),
                kind: Some(LineKind::Start),
                time: TIME.into(),
                previous_file: Some("audit-0.log".into()),
                ..Line::default()
            };
            push(&mut out, file, start, &mut seq, &mut prev);
        }
        let record = Line {
            seq,
            prev: prev.clone(),
            kind: Some(LineKind::Record),
            time: TIME.into(),
            port: Some("notary".into()),
            identity: Some("CN=notary-server".into()),
            method: Some(r.method.clone()),
            gun: r.gun.clone(),
            role: r.role.clone(),
            outcome: Some(r.outcome.clone()),
            duration_us: Some(r.duration_us),
            error: r.error.clone(),
            ..Line::default()
        };
        push(&mut out, file, record, &mut seq, &mut prev);
        if (i + 1) % every == 0 {
            last_checkpoint = out.len();
            let cp = signer.checkpoint(seq, prev.clone());
            push(&mut out, file, cp, &mut seq, &mut prev);
        }
    }
    if last_checkpoint == 0 {
        last_checkpoint = out.len();
        let cp = signer.checkpoint(seq, prev.clone());
        push(&mut out, file, cp, &mut seq, &mut prev);
    }
    (out, last_checkpoint)
}

fn files(lines: &[(usize, Vec<u8>)], cut: Option<usize>) -> Vec<AuditFile> {
    let mut files = Vec::new();
    for f in 0..2 {
        let mut bytes = Vec::new();
        for (_, text) in lines.iter().filter(|(file, _)| *file == f) {
            bytes.extend_from_slice(text);
            bytes.push(b'\n');
        }
        if f == 1 && bytes.is_empty() {
            continue;
        }
        files.push(AuditFile {
            path: PathBuf::from(format!("audit-{f}.log")),
            bytes,
        });
    }
    if let (Some(at), Some(last)) = (cut, files.last_mut()) {
        last.bytes.truncate(at);
    }
    files
}

fuzz_target!(|input: Input| {
    let _ = verify(
        &[AuditFile {
            path: PathBuf::from("raw.log"),
            bytes: input.raw.clone(),
        }],
        &TrustedKey::FromFile,
    );

    let signer = Signer::new();
    let (mut lines, last_checkpoint) = build(&input, &signer);
    let total = lines.len();
    let checkpoints = lines
        .iter()
        .filter(|(_, t)| {
            let marker: &[u8] = b"\"type\":\"checkpoint\"";
            t.windows(marker.len()).any(|w| w == marker)
        })
        .count();
    let at = |i: u16| usize::from(i) % total;
    // Whether the tampering must be found, and the byte the last file is cut at.
    let (must_fail, cut) = match &input.tamper {
        Tamper::None => (false, None),
        Tamper::Flip {
            line,
            at: byte,
            xor,
        } => {
            let i = at(*line);
            let bytes = &mut lines[i].1;
            let b = usize::from(*byte) % bytes.len();
            bytes[b] ^= if *xor == 0 { 1 } else { *xor };
            (i < last_checkpoint, None)
        }
        Tamper::Delete { line } => {
            let i = at(*line);
            lines.remove(i);
            (i < last_checkpoint, None)
        }
        Tamper::Insert { line, text } => {
            let i = at(*line);
            let file = lines[i].0;
            lines.insert(i, (file, text.clone()));
            (i <= last_checkpoint, None)
        }
        Tamper::Swap { a, b } => {
            let (a, b) = (at(*a), at(*b));
            let different = lines[a].1 != lines[b].1;
            let (text_a, text_b) = (lines[a].1.clone(), lines[b].1.clone());
            lines[a].1 = text_b;
            lines[b].1 = text_a;
            (different, None)
        }
        Tamper::Cut { at: byte } => {
            let last_file = lines.last().map(|(f, _)| *f).unwrap_or(0);
            let size: usize = lines
                .iter()
                .filter(|(f, _)| *f == last_file)
                .map(|(_, t)| t.len() + 1)
                .sum();
            let cut = usize::from(*byte) % size;
            // Mid-line: the torn last line is always found. At a line boundary the file may
            // end at an earlier checkpoint, which docs/audit.md says cannot be told apart.
            let mut boundary = 0;
            let mut mid_line = true;
            for (_, t) in lines.iter().filter(|(f, _)| *f == last_file) {
                if boundary == cut {
                    mid_line = false;
                }
                boundary += t.len() + 1;
            }
            (mid_line, Some(cut))
        }
    };
    let result = verify(&files(&lines, cut), &TrustedKey::FromFile);
    match (&input.tamper, result) {
        (Tamper::None, Ok(summary)) => {
            assert_eq!(summary.lines, total as u64);
            assert_eq!(summary.checkpoints, checkpoints as u64);
            assert_eq!(summary.key_id.as_deref(), Some(signer.id.as_str()));
        }
        (Tamper::None, Err(bad)) => panic!("an untouched trail is refused: {bad}"),
        (tamper, Ok(summary)) if must_fail => {
            panic!("{tamper:?} not found: {summary:?}")
        }
        (_, Ok(_)) => {}
        (_, Err(bad)) => {
            assert!(bad.line >= 1);
            assert!(!bad.why.is_empty());
        }
    }
    // Pinning the audit key by its ID agrees on an untouched trail.
    if matches!(input.tamper, Tamper::None) {
        let id: KeyId = signer.id.parse().expect("a key ID");
        assert!(verify(&files(&lines, None), &TrustedKey::KeyId(id)).is_ok());
    }
});
