//! The audit writer thread: owns the file, appends the lines of every record waiting with one
//! `write` (group commit), makes them durable as the fsync policy says, writes checkpoints and
//! rotates; then answers each caller. [`super::trail`] is the sink in front of it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::config::{AuditSettings, FsyncPolicy};
use super::line::{b64, checkpoint_message, line_hash, rfc3339, Line, LineKind, GENESIS};
use super::record::{AuditRecord, AuditUnavailable};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// A checkpoint signature made by the audit key.
#[derive(Clone, Debug)]
pub struct CheckpointSignature {
    /// The audit key's TUF key ID (hex).
    pub key_id: String,
    /// The audit key's algorithm (`ecdsa`).
    pub algorithm: String,
    /// The audit key's public key, DER SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
    /// The signature (for `ecdsa`: raw `r||s` over SHA-256 of the message).
    pub signature: Vec<u8>,
}

/// Signs chain heads with the audit key. Called on the writer thread only, so it may block.
pub trait CheckpointSigner: Send + 'static {
    /// Signs `message` (from [`checkpoint_message`]).
    fn sign(&mut self, message: &[u8]) -> Result<CheckpointSignature, String>;
}

/// What the writer and the callers both see.
#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Why the file cannot be written now, if it cannot.
    pub(super) broken: Mutex<Option<String>>,
    /// `fsync` calls made, for tests and metrics.
    pub(super) syncs: AtomicU64,
    /// Records handed to the writer.
    pub(super) queued: AtomicU64,
}

impl Shared {
    pub(super) fn set_broken(&self, reason: Option<String>) {
        // A poisoned lock only means a writer panicked mid-update of an Option: take it as is.
        *self.broken.lock().unwrap_or_else(|e| e.into_inner()) = reason;
    }

    pub(super) fn broken(&self) -> Option<String> {
        self.broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Where the writer answers one caller.
pub(super) type Reply = oneshot::Sender<Result<(), AuditUnavailable>>;

#[derive(Debug)]
pub(super) enum Msg {
    Record(Box<AuditRecord>, Reply),
    Tick,
    Close(oneshot::Sender<()>),
}

/// Most records in one write.
const MAX_BATCH: usize = 1024;
/// Least time between two attempts at a checkpoint that failed (the token may be away).
const CHECKPOINT_RETRY: Duration = Duration::from_secs(1);

/// The end of the chain as written to the file.
#[derive(Clone, Debug)]
struct Head {
    /// `seq` of the last line.
    seq: u64,
    /// Hash of the last line.
    hash: String,
}

/// Lines made but not yet written, and the chain as it will be once they are.
struct Pending {
    buf: Vec<u8>,
    head: Head,
    since_checkpoint: u64,
    checkpointed: bool,
}

impl Pending {
    fn push(&mut self, line: &Line) {
        let text = line.to_text();
        self.head = Head {
            seq: line.seq,
            hash: line_hash(text.as_bytes()),
        };
        self.buf.extend_from_slice(text.as_bytes());
        self.buf.push(b'\n');
    }

    fn next_seq(&self) -> u64 {
        // Only a file edited by hand ends at u64::MAX (2^64 lines are never written): carry on
        // rather than crash; `audit verify` names the edited line.
        self.head.seq.wrapping_add(1)
    }
}

pub(super) struct Writer {
    settings: AuditSettings,
    signer: Box<dyn CheckpointSigner>,
    shared: Arc<Shared>,
    /// `None` after a failure, until the path holds our file again.
    file: Option<File>,
    /// Device and inode of the file, to notice it being moved or replaced.
    ident: (u64, u64),
    size: u64,
    /// `seq` of the first line of the live file (names it when rotated).
    first_seq: u64,
    head: Head,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    checkpoint_retry_at: Option<Instant>,
    last_sync: Instant,
    unsynced: bool,
}

fn io_reason(what: &str, path: &Path, e: &std::io::Error) -> String {
    format!(
        "cannot {what} {}: {e}; make it writable by signerd (space, permissions, mount)",
        path.display()
    )
}

/// The `seq` and hash of the last line of `file` (`None` when empty), refusing a torn last line.
fn read_tail(file: &mut File, len: u64, path: &Path) -> Result<Option<(u64, Head)>, String> {
    if len == 0 {
        return Ok(None);
    }
    let mut window: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(window);
        let mut buf = Vec::with_capacity((len - start) as usize);
        file.seek(SeekFrom::Start(start))
            .and_then(|_| Read::by_ref(file).take(len - start).read_to_end(&mut buf))
            .map_err(|e| io_reason("read", path, &e))?;
        if buf.last() != Some(&b'\n') {
            return Err(format!(
                "the last line of {} is incomplete (cut short by a crash or an edit); check it with `signerd audit verify {}`, keep it as evidence, and move it aside to start a new chain",
                path.display(),
                path.display()
            ));
        }
        let body = &buf[..buf.len() - 1];
        let last = match body.iter().rposition(|b| *b == b'\n') {
            Some(i) => &body[i + 1..],
            None if start == 0 => body,
            None => {
                window *= 2;
                continue;
            }
        };
        let line: Line = serde_json::from_slice(last).map_err(|e| {
            format!(
                "the last line of {} is not an audit line ({e}); check it with `signerd audit verify {}`",
                path.display(),
                path.display()
            )
        })?;
        let first_seq = first_line_seq(file, path)?.unwrap_or(line.seq);
        return Ok(Some((
            first_seq,
            Head {
                seq: line.seq,
                hash: line_hash(last),
            },
        )));
    }
}

/// `seq` of the first line of `file` (it names the file once rotated).
fn first_line_seq(file: &mut File, path: &Path) -> Result<Option<u64>, String> {
    // A start line is short; caller text never reaches it.
    let mut head = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| Read::by_ref(file).take(64 * 1024).read_to_end(&mut head))
        .map_err(|e| io_reason("read", path, &e))?;
    let first = head.split(|b| *b == b'\n').next().unwrap_or(&head);
    Ok(serde_json::from_slice::<Line>(first).ok().map(|l| l.seq))
}

fn open_append(path: &Path, create: bool) -> Result<(File, std::fs::Metadata), String> {
    let file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(create)
        .open(path)
        .map_err(|e| io_reason("open", path, &e))?;
    let meta = file
        .metadata()
        .map_err(|e| io_reason("inspect", path, &e))?;
    if !meta.is_file() {
        return Err(format!(
            "{} is not a regular file; give audit.path a file",
            path.display()
        ));
    }
    Ok((file, meta))
}

fn sync_dir(path: &Path) {
    // A rename or a new file is durable only once its folder is; failing this is not fatal.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

impl Writer {
    pub(super) fn open(
        settings: AuditSettings,
        signer: Box<dyn CheckpointSigner>,
        shared: Arc<Shared>,
    ) -> Result<Writer, String> {
        let path = settings.path.clone();
        let (mut file, meta) = open_append(&path, true)?;
        let tail = read_tail(&mut file, meta.len(), &path)?;
        let now = Instant::now();
        let mut writer = Writer {
            settings,
            signer,
            shared,
            file: Some(file),
            ident: (meta.dev(), meta.ino()),
            size: meta.len(),
            first_seq: 1,
            head: Head {
                seq: 0,
                hash: GENESIS.to_owned(),
            },
            since_checkpoint: 0,
            last_checkpoint: now,
            checkpoint_retry_at: None,
            last_sync: now,
            unsynced: false,
        };
        let mut p = writer.pending();
        match tail {
            Some((first_seq, head)) => {
                writer.first_seq = first_seq;
                writer.head = head.clone();
                p.head = head;
            }
            None => p.push(&Line::start(1, GENESIS.to_owned(), SystemTime::now(), None)),
        }
        // Attests the file as found at start; a token that is not there yet only delays it.
        writer.checkpoint(&mut p);
        writer.commit(p)?;
        writer.sync();
        Ok(writer)
    }

    fn pending(&self) -> Pending {
        Pending {
            buf: Vec::new(),
            head: self.head.clone(),
            since_checkpoint: self.since_checkpoint,
            checkpointed: false,
        }
    }

    pub(super) fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = Vec::new();
            let mut close = None;
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Record(record, done) => batch.push((record, done)),
                    Msg::Tick => {}
                    Msg::Close(ack) => close = Some(ack),
                }
                if close.is_none() && batch.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
            }
            if !batch.is_empty() {
                self.write_records(batch);
            }
            self.tick();
            if let Some(ack) = close {
                self.finish();
                let _ = ack.send(());
                return;
            }
        }
        self.finish();
    }

    fn write_records(&mut self, batch: Vec<(Box<AuditRecord>, Reply)>) {
        let mut p = self.pending();
        let mut waiting = Vec::with_capacity(batch.len());
        for (record, done) in batch {
            p.push(&Line::record(p.next_seq(), p.head.hash.clone(), &record));
            p.since_checkpoint += 1;
            if p.since_checkpoint >= self.settings.checkpoint_every_lines {
                self.checkpoint(&mut p);
            }
            waiting.push(done);
        }
        let result = self.commit(p).map_err(|reason| AuditUnavailable { reason });
        for done in waiting {
            // A caller that went away still had its line written; nobody to tell.
            let _ = done.send(result.clone());
        }
        if result.is_ok() {
            self.rotate_if_due();
        }
    }

    /// Appends a checkpoint to `p` if the audit key signs it.
    fn checkpoint(&mut self, p: &mut Pending) -> bool {
        if self
            .checkpoint_retry_at
            .is_some_and(|at| Instant::now() < at)
        {
            return false;
        }
        let seq = p.next_seq();
        let time = rfc3339(SystemTime::now());
        let message = checkpoint_message(seq, &p.head.hash, &time);
        match self.signer.sign(&message) {
            Ok(sig) => {
                self.checkpoint_retry_at = None;
                p.push(&Line {
                    seq,
                    prev: p.head.hash.clone(),
                    kind: Some(LineKind::Checkpoint),
                    time,
                    key_id: Some(sig.key_id),
                    algorithm: Some(sig.algorithm),
                    public_key: Some(b64(&sig.public_key)),
                    signature: Some(b64(&sig.signature)),
                    ..Line::default()
                });
                p.since_checkpoint = 0;
                p.checkpointed = true;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit checkpoint not signed; retrying; lines since the last checkpoint are covered by the next one");
                self.checkpoint_retry_at = Some(Instant::now() + CHECKPOINT_RETRY);
                false
            }
        }
    }

    /// Makes sure the file open is the one at the path and still ends with our chain head.
    fn ensure_file(&mut self) -> Result<(), String> {
        let path = self.settings.path.clone();
        if self.file.is_some() {
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() && (m.dev(), m.ino()) == self.ident => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_reason("inspect", &path, &e)),
            }
            self.file = None;
        }
        let (mut file, meta) = match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "{} is gone (moved or deleted while signerd was writing it); put it back",
                    path.display()
                ))
            }
            _ => open_append(&path, false)?,
        };
        let tail = read_tail(&mut file, meta.len(), &path)?;
        match tail {
            Some((first_seq, head)) if head.seq == self.head.seq && head.hash == self.head.hash => {
                tracing::info!(path = %path.display(), "audit file writable again; continuing the chain");
                self.first_seq = first_seq;
                self.file = Some(file);
                self.ident = (meta.dev(), meta.ino());
                self.size = meta.len();
                Ok(())
            }
            _ => Err(format!(
                "{} does not end with the line signerd last wrote (seq {}, sha256 {}); put back the file signerd was writing",
                path.display(),
                self.head.seq,
                self.head.hash
            )),
        }
    }

    /// Writes `p` with one `write`, syncs as the policy says, and moves the chain on.
    fn commit(&mut self, p: Pending) -> Result<(), String> {
        if p.buf.is_empty() {
            return Ok(());
        }
        let result = self.try_commit(&p.buf);
        match &result {
            Ok(()) => {
                self.head = p.head;
                self.since_checkpoint = p.since_checkpoint;
                if p.checkpointed {
                    self.last_checkpoint = Instant::now();
                }
                if self.shared.broken().is_some() {
                    self.shared.set_broken(None);
                }
            }
            Err(reason) => {
                tracing::error!(
                    reason,
                    "audit file not written; key operations are refused until it is"
                );
                self.file = None;
                self.shared.set_broken(Some(reason.clone()));
            }
        }
        result
    }

    fn try_commit(&mut self, buf: &[u8]) -> Result<(), String> {
        self.ensure_file()?;
        let path = self.settings.path.clone();
        let before = self.size;
        let Some(file) = self.file.as_mut() else {
            return Err(format!("{} is not open", path.display()));
        };
        let written = file.write_all(buf).and_then(|()| {
            if self.settings.fsync == FsyncPolicy::Always {
                self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                file.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // These lines were never acknowledged: take back whatever part reached the file so
            // the chain on disk still ends where our head does.
            let _ = file.set_len(before);
            return Err(io_reason("write", &path, &e));
        }
        self.size = before + buf.len() as u64;
        match self.settings.fsync {
            FsyncPolicy::Always => self.last_sync = Instant::now(),
            _ => self.unsynced = true,
        }
        Ok(())
    }

    /// Time checkpoints, interval fsync, and recovery while no records come.
    fn tick(&mut self) {
        match self.ensure_file() {
            Ok(()) => {
                if self.shared.broken().is_some() {
                    self.shared.set_broken(None);
                }
            }
            Err(reason) => {
                if self.shared.broken().as_deref() != Some(reason.as_str()) {
                    tracing::error!(
                        reason,
                        "audit file not writable; key operations are refused until it is"
                    );
                }
                self.file = None;
                self.shared.set_broken(Some(reason));
                return;
            }
        }
        if self.since_checkpoint > 0
            && self.last_checkpoint.elapsed() >= self.settings.checkpoint_every
        {
            let mut p = self.pending();
            if self.checkpoint(&mut p) {
                let _ = self.commit(p);
            }
        }
        if let FsyncPolicy::Interval(every) = self.settings.fsync {
            if self.unsynced && self.last_sync.elapsed() >= every {
                self.sync();
            }
        }
    }

    fn sync(&mut self) {
        if self.settings.fsync == FsyncPolicy::Never {
            return;
        }
        if let Some(file) = &self.file {
            self.shared.syncs.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = file.sync_data() {
                let reason = io_reason("flush", &self.settings.path, &e);
                tracing::error!(reason, "audit file not flushed");
                self.file = None;
                self.shared.set_broken(Some(reason));
                return;
            }
        }
        self.last_sync = Instant::now();
        self.unsynced = false;
    }

    /// At shutdown: a checkpoint over every line written, then a flush.
    fn finish(&mut self) {
        if self.since_checkpoint > 0 {
            self.checkpoint_retry_at = None;
            let mut p = self.pending();
            if self.checkpoint(&mut p) {
                let _ = self.commit(p);
            }
        }
        if self.unsynced {
            self.sync();
        }
    }

    /// The name a rotated file gets: the live name and the `seq` of its first line, so names
    /// sort in chain order.
    fn rotated_path(&self) -> PathBuf {
        let path = &self.settings.path;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "audit".into());
        path.with_file_name(format!("{name}.{:012}", self.first_seq))
    }

    /// Once the file is large enough: a checkpoint closes it, it is renamed, and a new file
    /// starts with a line naming it and carrying its last hash.
    fn rotate_if_due(&mut self) {
        let Some(limit) = self.settings.rotate_bytes else {
            return;
        };
        if self.size < limit {
            return;
        }
        let mut p = self.pending();
        self.checkpoint_retry_at = None;
        self.checkpoint(&mut p);
        if self.commit(p).is_err() {
            return;
        }
        self.sync_now();
        let path = self.settings.path.clone();
        let rotated = self.rotated_path();
        if rotated.exists() {
            tracing::error!(rotated = %rotated.display(), "not rotating the audit file: the rotated name is taken");
            return;
        }
        if let Err(e) = std::fs::rename(&path, &rotated) {
            tracing::error!(error = %e, path = %path.display(), "cannot rotate the audit file; writing on");
            return;
        }
        let created = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)
            .and_then(|f| f.metadata().map(|m| (f, m)));
        let (file, meta) = match created {
            Ok(fm) => fm,
            Err(e) => {
                // Put the old file back so the chain goes on where it was.
                let _ = std::fs::rename(&rotated, &path);
                tracing::error!(error = %e, path = %path.display(), "cannot create a new audit file; writing on in the old one");
                return;
            }
        };
        self.file = Some(file);
        self.ident = (meta.dev(), meta.ino());
        self.size = 0;
        self.first_seq = self.head.seq.wrapping_add(1);
        let previous = rotated
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let mut p = self.pending();
        p.push(&Line::start(
            p.next_seq(),
            p.head.hash.clone(),
            SystemTime::now(),
            previous,
        ));
        self.checkpoint(&mut p);
        if self.commit(p).is_ok() {
            self.sync_now();
            sync_dir(&path);
            tracing::info!(rotated = %rotated.display(), "audit file rotated");
        }
    }

    /// Flushes regardless of the policy interval (rotation), unless the policy is `never`.
    fn sync_now(&mut self) {
        if self.settings.fsync != FsyncPolicy::Always {
            self.unsynced = true;
            self.sync();
        }
    }
}
