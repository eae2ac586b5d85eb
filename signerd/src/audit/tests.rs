//! The trail and the verifier together: what the writer writes verifies, and every kind of
//! tampering is found and located. Checkpoints here are signed by a software P-256 key (the
//! token's audit key is exercised by `tests/tests/integration/audit_trail.rs`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use p256::pkcs8::EncodePublicKey as _;
use signature::Signer as _;
use signerd_token::{KeyAlgorithm, KeyId};

use super::config::{AuditSettings, FsyncPolicy};
use super::line::{checkpoint_message, line_hash, Line, LineKind, GENESIS};
use super::record::{AuditRecord, AuditSink, Outcome, Port};
use super::trail::{AuditTrail, CheckpointSignature, CheckpointSigner};
use super::verify::{verify, AuditFile, BadLine, TrustedKey};

/// A software stand-in for the audit key in the token.
#[derive(Clone)]
struct FakeSigner {
    key: p256::ecdsa::SigningKey,
    fail: Arc<AtomicBool>,
}

impl FakeSigner {
    fn new(seed: u8) -> FakeSigner {
        FakeSigner {
            key: p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap(),
            fail: Arc::new(AtomicBool::new(false)),
        }
    }

    fn spki(&self) -> Vec<u8> {
        self.key
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .into_vec()
    }

    fn key_id(&self) -> KeyId {
        KeyId::of_public_key(KeyAlgorithm::Ecdsa, &self.spki())
    }
}

impl CheckpointSigner for FakeSigner {
    fn sign(&mut self, message: &[u8]) -> Result<CheckpointSignature, String> {
        if self.fail.load(Ordering::SeqCst) {
            return Err("token not present".into());
        }
        let sig: p256::ecdsa::Signature = self.key.sign(message);
        Ok(CheckpointSignature {
            key_id: self.key_id().to_string(),
            algorithm: "ecdsa".into(),
            public_key: self.spki(),
            signature: sig.to_bytes().to_vec(),
        })
    }
}

fn settings(dir: &Path, every_lines: u64) -> AuditSettings {
    AuditSettings {
        path: dir.join("audit.jsonl"),
        fsync: FsyncPolicy::Always,
        checkpoint_every_lines: every_lines,
        checkpoint_every: Duration::from_secs(3600),
        rotate_bytes: None,
    }
}

fn record(n: usize) -> AuditRecord {
    AuditRecord {
        time: SystemTime::now(),
        port: if n.is_multiple_of(2) {
            Port::Notary
        } else {
            Port::Admin
        },
        identity: format!("CN=client-{n},O=test").into(),
        method: "Sign".into(),
        key_id: Some(format!("{n:064x}").into()),
        gun: Some("example.com/app".into()),
        role: Some("timestamp".into()),
        algorithm: Some("ecdsa".into()),
        content_sha256: Some([n as u8; 32]),
        outcome: Outcome::Ok,
        rule: Some("notary-server".into()),
        duration_us: 100 + n as u64,
        error: None,
    }
}

/// Opens a trail, records `count` records one after another, closes it.
async fn write_trail(settings: &AuditSettings, signer: FakeSigner, count: usize) {
    let trail = AuditTrail::open(settings.clone(), Box::new(signer)).unwrap();
    for n in 0..count {
        trail.record(record(n)).await.unwrap();
    }
    trail.close().await;
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn parsed(path: &Path) -> Vec<Line> {
    lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn check(paths: &[PathBuf], trusted: &TrustedKey) -> Result<super::verify::Summary, BadLine> {
    let files: Vec<AuditFile> = paths.iter().map(|p| AuditFile::read(p).unwrap()).collect();
    verify(&files, trusted)
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).unwrap();
}

/// Renumbers and re-chains `texts` as someone who rewrites the file would, re-signing every
/// checkpoint with `signer` (who does not hold the real audit key); the lines at the indexes in
/// `keep` stay as they are.
fn rechain(texts: &[String], signer: &mut FakeSigner, keep: &[usize]) -> Vec<String> {
    let mut prev = GENESIS.to_owned();
    let mut out = Vec::new();
    for (i, raw) in texts.iter().enumerate() {
        let text = if keep.contains(&i) {
            raw.clone()
        } else {
            let mut line: Line = serde_json::from_str(raw).unwrap();
            line.seq = i as u64 + 1;
            line.prev = prev.clone();
            if line.kind == Some(LineKind::Checkpoint) {
                let sig = signer
                    .sign(&checkpoint_message(line.seq, &line.prev, &line.time))
                    .unwrap();
                line.key_id = Some(sig.key_id);
                line.public_key = Some(super::line::b64(&sig.public_key));
                line.signature = Some(super::line::b64(&sig.signature));
            }
            line.to_text()
        };
        prev = line_hash(text.as_bytes());
        out.push(text);
    }
    out
}

#[tokio::test]
async fn chain_and_checkpoints_verify() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 3);
    let signer = FakeSigner::new(7);
    write_trail(&s, signer.clone(), 7).await;
    let kinds: Vec<_> = parsed(&s.path).iter().map(|l| l.kind.unwrap()).collect();
    use LineKind::{Checkpoint as C, Record as R, Start as S};
    // A checkpoint at open, after every 3 records, and at close.
    assert_eq!(kinds, vec![S, C, R, R, R, C, R, R, R, C, R, C]);
    let seqs: Vec<u64> = parsed(&s.path).iter().map(|l| l.seq).collect();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>());

    let pinned = check(
        std::slice::from_ref(&s.path),
        &TrustedKey::KeyId(signer.key_id()),
    )
    .unwrap();
    assert_eq!((pinned.lines, pinned.checkpoints), (12, 4));
    assert!(pinned.key_trusted);
    assert_eq!(pinned.unsigned_tail, 0);
    let from_file = check(std::slice::from_ref(&s.path), &TrustedKey::FromFile).unwrap();
    assert!(!from_file.key_trusted);
    assert_eq!(from_file.key_id, Some(signer.key_id().to_string()));
}

#[tokio::test]
async fn a_restart_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 100);
    let signer = FakeSigner::new(7);
    write_trail(&s, signer.clone(), 2).await;
    write_trail(&s, signer.clone(), 2).await;
    let all = parsed(&s.path);
    assert_eq!(
        all.iter()
            .filter(|l| l.kind == Some(LineKind::Start))
            .count(),
        1
    );
    assert!(check(
        std::slice::from_ref(&s.path),
        &TrustedKey::KeyId(signer.key_id())
    )
    .is_ok());
}

/// A trail of start, checkpoint, 4 records, checkpoint, 4 records, checkpoint, 1 record,
/// checkpoint (14 lines).
async fn sample(dir: &Path) -> (AuditSettings, FakeSigner, Vec<String>) {
    let s = settings(dir, 4);
    let signer = FakeSigner::new(7);
    write_trail(&s, signer.clone(), 9).await;
    let text = lines(&s.path);
    assert_eq!(text.len(), 14);
    (s, signer, text)
}

fn bad_at(result: Result<super::verify::Summary, BadLine>, line: usize, says: &str) -> BadLine {
    let bad = result.expect_err("tampering must be found");
    assert_eq!(bad.line, line, "{bad}");
    assert!(bad.why.contains(says), "{bad}");
    bad
}

#[tokio::test]
async fn each_kind_of_tampering_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let (s, signer, original) = sample(dir.path()).await;
    let trusted = TrustedKey::KeyId(signer.key_id());
    let target = dir.path().join("tampered.jsonl");
    let files = [target.clone()];

    // Edited: an outcome turned from ok to denied on line 4.
    let mut edited = original.clone();
    edited[3] = edited[3].replace("\"outcome\":\"ok\"", "\"outcome\":\"denied\"");
    assert_ne!(edited[3], original[3]);
    write_lines(&target, &edited);
    bad_at(check(&files, &trusted), 4, "edited");

    // Edited so it no longer parses.
    let mut broken = original.clone();
    broken[5].truncate(20);
    write_lines(&target, &broken);
    bad_at(check(&files, &trusted), 6, "not an audit line");

    // Deleted: line 5 gone.
    let mut deleted = original.clone();
    deleted.remove(4);
    write_lines(&target, &deleted);
    bad_at(check(&files, &trusted), 5, "deleted");

    // Reordered: lines 4 and 5 swapped.
    let mut reordered = original.clone();
    reordered.swap(3, 4);
    write_lines(&target, &reordered);
    bad_at(check(&files, &trusted), 4, "reordered");

    // Truncated: the file cut in the middle of line 9.
    let mut text = original[..8].join("\n");
    text.push('\n');
    text.push_str(&original[8][..30]);
    std::fs::write(&target, text).unwrap();
    bad_at(check(&files, &trusted), 9, "incomplete");

    // Deleted at the front: the file starts at line 3.
    write_lines(&target, &original[2..]);
    bad_at(check(&files, &trusted), 1, "start");

    // The untouched file is fine.
    assert!(check(std::slice::from_ref(&s.path), &trusted).is_ok());
}

#[tokio::test]
async fn a_rewrite_with_a_fresh_chain_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let (_, signer, original) = sample(dir.path()).await;
    let trusted = TrustedKey::KeyId(signer.key_id());
    let target = dir.path().join("rewritten.jsonl");
    let files = [target.clone()];
    // The rewrite hides the record on line 4.
    let mut hidden = original.clone();
    hidden.remove(3);
    let mut attacker = FakeSigner::new(9);

    // A fresh, consistent chain without checkpoints.
    let no_checkpoints: Vec<String> = hidden
        .iter()
        .filter(|l| !l.contains("\"type\":\"checkpoint\""))
        .cloned()
        .collect();
    write_lines(&target, &rechain(&no_checkpoints, &mut attacker, &[]));
    bad_at(check(&files, &trusted), 1, "no checkpoint");
    bad_at(check(&files, &TrustedKey::FromFile), 1, "no checkpoint");

    // Every checkpoint re-signed by the attacker's own key: the first checkpoint is refused
    // against the trusted key; without one, the verifier says the key is the file's own.
    write_lines(&target, &rechain(&hidden, &mut attacker, &[]));
    bad_at(check(&files, &trusted), 2, "not the trusted audit key");
    let unpinned = check(&files, &TrustedKey::FromFile).unwrap();
    assert!(!unpinned.key_trusted);
    assert_eq!(unpinned.key_id, Some(attacker.key_id().to_string()));

    // The real checkpoint before the change kept, later ones re-signed by the attacker: the
    // first forged one (line 6 now) names another key than the real one on line 2.
    write_lines(&target, &rechain(&hidden, &mut attacker, &[0, 1]));
    let bad = bad_at(check(&files, &TrustedKey::FromFile), 6, "forged checkpoint");
    assert!(bad.why.contains(&signer.key_id().to_string()), "{bad}");
    bad_at(check(&files, &trusted), 6, "not the trusted audit key");

    // The real checkpoints all kept, the chain re-linked around the hidden line: the real
    // signature no longer matches the head it signed.
    let real_checkpoints: Vec<usize> = hidden
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("\"type\":\"checkpoint\""))
        .map(|(i, _)| i)
        .collect();
    let relinked = rechain(&hidden, &mut attacker, &real_checkpoints);
    write_lines(&target, &relinked);
    let bad = check(&files, &trusted).unwrap_err();
    // The real checkpoint after the hidden line still carries its old seq and head: line 6.
    assert_eq!(bad.line, 6, "{bad}");
}

#[tokio::test]
async fn rotation_carries_the_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), 1000);
    s.rotate_bytes = Some(4096);
    let signer = FakeSigner::new(7);
    // Two runs of signerd: the second picks up a half-full file and rotates it later.
    for run in 0..2 {
        let trail = AuditTrail::open(s.clone(), Box::new(signer.clone())).unwrap();
        for n in 0..12 {
            let mut r = record(run * 12 + n);
            r.error = Some("x".repeat(500));
            trail.record(r).await.unwrap();
        }
        trail.close().await;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    assert_eq!(files[0], s.path);
    let rotated = &files[1..];
    // Each rotated file is named by the seq of its first line.
    for f in rotated {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            name.ends_with(&format!(".{:012}", parsed(f)[0].seq)),
            "{name}"
        );
    }
    // The live file continues the newest rotated one, by name and last hash.
    let first = &parsed(&s.path)[0];
    let newest = rotated.last().unwrap();
    assert_eq!(first.kind, Some(LineKind::Start));
    assert_eq!(
        first.previous_file.as_deref(),
        newest.file_name().unwrap().to_str()
    );
    assert_eq!(
        first.prev,
        line_hash(lines(newest).last().unwrap().as_bytes())
    );
    // Every file closes with a checkpoint.
    for f in &files {
        assert_eq!(parsed(f).last().unwrap().kind, Some(LineKind::Checkpoint));
    }
    let trusted = TrustedKey::KeyId(signer.key_id());
    // In any order.
    let mut reversed = files.clone();
    reversed.reverse();
    let summary = check(&reversed, &trusted).unwrap();
    assert!(summary.notes.is_empty(), "{:?}", summary.notes);

    // A rotated file left out of the middle.
    let without: Vec<PathBuf> = files
        .iter()
        .filter(|f| *f != &rotated[1])
        .cloned()
        .collect();
    let bad = check(&without, &trusted).unwrap_err();
    assert!(bad.why.contains("missing"), "{bad}");

    // The last line cut off a rotated file: located there.
    let victim = &rotated[0];
    let mut text = lines(victim);
    let last = text.len();
    text.pop();
    write_lines(victim, &text);
    let bad = check(&files, &trusted).unwrap_err();
    assert_eq!((&bad.file, bad.line), (victim, last - 1), "{bad}");
    assert!(bad.why.contains("removed"), "{bad}");
}

#[tokio::test]
async fn fsync_policies() {
    for (policy, syncs_per_record) in [
        (FsyncPolicy::Always, 1),
        (FsyncPolicy::Interval(Duration::from_secs(3600)), 0),
        (FsyncPolicy::Never, 0),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path(), 1000);
        s.fsync = policy;
        let trail = AuditTrail::open(s.clone(), Box::new(FakeSigner::new(7))).unwrap();
        let at_open = trail.fsyncs();
        for n in 0..3 {
            trail.record(record(n)).await.unwrap();
        }
        assert_eq!(trail.fsyncs() - at_open, 3 * syncs_per_record, "{policy:?}");
        trail.close().await;
        match policy {
            FsyncPolicy::Never => assert_eq!(trail.fsyncs(), 0),
            // The unsynced lines are flushed at close.
            FsyncPolicy::Interval(_) => assert_eq!(trail.fsyncs(), at_open + 1),
            FsyncPolicy::Always => {}
        }
        // Durable or not, every record is a line.
        assert_eq!(lines(&s.path).len(), 2 + 3 + 1);
    }
}

#[tokio::test]
async fn an_unwritable_file_fails_closed_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 1000);
    let signer = FakeSigner::new(7);
    let trail = AuditTrail::open(s.clone(), Box::new(signer.clone())).unwrap();
    trail.record(record(0)).await.unwrap();
    assert_eq!(trail.health(), Ok(()));

    // The file moved away: nothing is written, callers and health say why.
    let aside = dir.path().join("aside.jsonl");
    std::fs::rename(&s.path, &aside).unwrap();
    let err = trail.record(record(1)).await.unwrap_err();
    assert!(err.reason.contains("is gone"), "{err}");
    assert!(trail.health().unwrap_err().contains("is gone"));

    // A directory where the file was: cannot be written either.
    std::fs::create_dir(&s.path).unwrap();
    let err = trail.record(record(2)).await.unwrap_err();
    assert!(
        err.reason.contains("not a regular file") || err.reason.contains("Is a directory"),
        "{err}"
    );
    assert!(trail.health().is_err());

    // Some other file there: not ours, refused.
    std::fs::remove_dir(&s.path).unwrap();
    std::fs::write(
        &s.path,
        "{\"seq\":1,\"prev\":\"00\",\"time\":\"t\",\"type\":\"start\"}\n",
    )
    .unwrap();
    let err = trail.record(record(3)).await.unwrap_err();
    assert!(
        err.reason
            .contains("does not end with the line signerd last wrote"),
        "{err}"
    );

    // The real file back: writing resumes on the same chain.
    std::fs::rename(&aside, &s.path).unwrap();
    trail.record(record(4)).await.unwrap();
    assert_eq!(trail.health(), Ok(()));
    trail.close().await;
    let records: Vec<String> = parsed(&s.path)
        .iter()
        .filter_map(|l| l.identity.clone())
        .collect();
    assert_eq!(records, vec!["CN=client-0,O=test", "CN=client-4,O=test"]);
    assert!(check(
        std::slice::from_ref(&s.path),
        &TrustedKey::KeyId(signer.key_id())
    )
    .is_ok());
}

#[tokio::test]
async fn a_torn_last_line_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 1000);
    write_trail(&s, FakeSigner::new(7), 1).await;
    let mut text = std::fs::read_to_string(&s.path).unwrap();
    text.push_str("{\"seq\":");
    std::fs::write(&s.path, text).unwrap();
    let err = AuditTrail::open(s, Box::new(FakeSigner::new(7))).unwrap_err();
    assert!(err.contains("incomplete"), "{err}");
}

#[tokio::test]
async fn records_go_on_while_the_audit_key_cannot_sign() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 2);
    let signer = FakeSigner::new(7);
    signer.fail.store(true, Ordering::SeqCst);
    let trail = AuditTrail::open(s.clone(), Box::new(signer.clone())).unwrap();
    for n in 0..5 {
        trail.record(record(n)).await.unwrap();
    }
    assert!(parsed(&s.path)
        .iter()
        .all(|l| l.kind != Some(LineKind::Checkpoint)));
    // Back: the checkpoint at close covers every line.
    signer.fail.store(false, Ordering::SeqCst);
    trail.close().await;
    let summary = check(
        std::slice::from_ref(&s.path),
        &TrustedKey::KeyId(signer.key_id()),
    )
    .unwrap();
    assert_eq!((summary.lines, summary.checkpoints), (7, 1));
}

/// Holds the writer inside its `n`th signature until released, so records pile up meanwhile.
struct GatedSigner {
    inner: FakeSigner,
    calls: usize,
    hold_at: usize,
    entered: std::sync::mpsc::Sender<()>,
    release: std::sync::mpsc::Receiver<()>,
}

impl CheckpointSigner for GatedSigner {
    fn sign(&mut self, message: &[u8]) -> Result<CheckpointSignature, String> {
        self.calls += 1;
        if self.calls == self.hold_at {
            let _ = self.entered.send(());
            let _ = self.release.recv();
        }
        self.inner.sign(message)
    }
}

#[tokio::test]
async fn records_waiting_while_the_writer_is_busy_share_one_write_and_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let s = settings(dir.path(), 1);
    let signer = FakeSigner::new(7);
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let gated = GatedSigner {
        inner: signer.clone(),
        calls: 0,
        // Call 1 is the checkpoint at open; call 2 the one after the first record.
        hold_at: 2,
        entered: entered_tx,
        release: release_rx,
    };
    let trail = Arc::new(AuditTrail::open(s.clone(), Box::new(gated)).unwrap());
    let at_open = trail.fsyncs();
    let first = {
        let trail = Arc::clone(&trail);
        tokio::spawn(async move { trail.record(record(0)).await })
    };
    tokio::task::spawn_blocking(move || entered.recv())
        .await
        .unwrap()
        .unwrap();
    // The writer is busy with the first record: these wait in the queue.
    let calls: Vec<_> = (1..=100)
        .map(|n| {
            let trail = Arc::clone(&trail);
            tokio::spawn(async move { trail.record(record(n)).await })
        })
        .collect();
    while trail.records_queued() < 101 {
        tokio::task::yield_now().await;
    }
    release.send(()).unwrap();
    first.await.unwrap().unwrap();
    for call in calls {
        call.await.unwrap().unwrap();
    }
    // One write and fsync for the first record, one for the hundred that waited.
    assert_eq!(trail.fsyncs() - at_open, 2);
    trail.close().await;
    let summary = check(
        std::slice::from_ref(&s.path),
        &TrustedKey::KeyId(signer.key_id()),
    )
    .unwrap();
    assert_eq!(summary.lines - summary.checkpoints, 102);
}

#[tokio::test]
async fn a_quiet_trail_gets_a_checkpoint_after_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = settings(dir.path(), 1000);
    s.checkpoint_every = Duration::from_millis(300);
    let signer = FakeSigner::new(7);
    let trail = AuditTrail::open(s.clone(), Box::new(signer.clone())).unwrap();
    trail.record(record(0)).await.unwrap();
    // No more records: the writer's tick signs the head once the interval has passed.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // Read as text: a line being written may be seen half done.
    while !lines(&s.path)
        .last()
        .is_some_and(|l| l.contains("\"type\":\"checkpoint\"") && l.ends_with('}'))
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", lines(&s.path));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let summary = check(
        std::slice::from_ref(&s.path),
        &TrustedKey::KeyId(signer.key_id()),
    )
    .unwrap();
    assert_eq!(
        (summary.lines, summary.checkpoints, summary.unsigned_tail),
        (4, 2, 0)
    );
    trail.close().await;
    // Nothing new since: no further checkpoint at close.
    assert_eq!(lines(&s.path).len(), 4);
}

// fuzz/audit_verify, by reading: a first file whose start line names a previous file may
// start at any seq; one at u64::MAX made `seq + 1` overflow (a panic in debug builds).
#[tokio::test]
async fn a_start_line_at_the_last_seq_is_an_edit_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (_s, signer, original) = sample(dir.path()).await;
    let trusted = TrustedKey::KeyId(signer.key_id());
    let mut start: serde_json::Value = serde_json::from_str(&original[0]).unwrap();
    start["seq"] = serde_json::Value::from(u64::MAX);
    start["previous_file"] = serde_json::Value::from("audit.jsonl.1");
    let target = dir.path().join("max-seq.jsonl");
    write_lines(&target, &[start.to_string(), original[1].clone()]);
    let bad = check(&[target], &trusted).expect_err("a seq past the last is found");
    assert!(!bad.why.is_empty(), "{bad}");
}
