//! [`AuditTrail`]: the chained, checkpointed, append-only audit file.
//!
//! One writer thread owns the file. Callers send records over a bounded channel and wait; the
//! writer takes every record waiting (group commit), appends their lines with one `write`, makes
//! them durable as the fsync policy says, and only then answers each caller. The edge replies to
//! the client after that answer, so no key operation is answered without its line.
//!
//! When the file cannot be written (an I/O error, or its path no longer names the file signerd
//! was writing) every waiting record fails, [`AuditSink::health`] says why, and the writer tries
//! again with each new record and once a second: once the path holds the file whose last line is
//! the chain head signerd wrote, writing resumes on the same chain.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::config::AuditSettings;
use super::record::{AuditRecord, AuditSink, AuditUnavailable};
pub use super::writer::{CheckpointSignature, CheckpointSigner};
use super::writer::{Msg, Shared, Writer};

/// Records waiting for the writer before callers wait for room (back pressure, bounded memory).
const QUEUE: usize = 4096;
/// How often the writer wakes without records (time checkpoints, interval fsync, recovery).
const TICK: Duration = Duration::from_millis(200);

/// The audit file. Cheap to share behind an `Arc`; [`AuditTrail::close`] writes a last
/// checkpoint and stops the writer.
#[derive(Debug)]
pub struct AuditTrail {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    path: PathBuf,
    /// The writer thread, joined by [`AuditTrail::close`]: it holds the audit key's token, which
    /// must be let go before signerd closes the token.
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl AuditTrail {
    /// Opens (or creates) the audit file of `settings`, continuing the chain its last line ends,
    /// writes a checkpoint, and starts the writer. Fails when the file cannot be opened or its
    /// last line is not a complete audit line.
    pub fn open(
        settings: AuditSettings,
        signer: Box<dyn CheckpointSigner>,
    ) -> Result<AuditTrail, String> {
        let shared = Arc::new(Shared::default());
        let writer = Writer::open(settings.clone(), signer, Arc::clone(&shared))?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let ticker = tx.downgrade();
        let writer = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| format!("cannot start the audit writer thread: {e}"))?;
        std::thread::Builder::new()
            .name("audit-ticker".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                let Some(tx) = ticker.upgrade() else { return };
                if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(Msg::Tick) {
                    return;
                }
            })
            .map_err(|e| format!("cannot start the audit ticker thread: {e}"))?;
        Ok(AuditTrail {
            tx,
            shared,
            path: settings.path,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// The live audit file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `fsync` calls made so far.
    pub fn fsyncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// Records handed to the writer so far (written or not yet).
    pub fn records_queued(&self) -> u64 {
        self.shared.queued.load(Ordering::Relaxed)
    }

    /// Writes a last checkpoint, flushes, and stops the writer (waiting for its thread to end,
    /// so the token it signs with is released); later records fail.
    pub async fn close(&self) {
        let (ack, done) = oneshot::channel();
        if self.tx.send(Msg::Close(ack)).await.is_ok() {
            let _ = done.await;
        }
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(writer) = writer {
            // The writer returns right after answering Close.
            if tokio::task::spawn_blocking(move || writer.join())
                .await
                .is_err()
            {
                tracing::warn!("the audit writer thread did not end cleanly");
            }
        }
    }
}

fn stopped() -> AuditUnavailable {
    AuditUnavailable {
        reason: "the audit writer has stopped (signerd is shutting down)".into(),
    }
}

impl AuditSink for AuditTrail {
    fn record(
        &self,
        record: AuditRecord,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<(), AuditUnavailable>> + Send + 'static>>
    {
        let tx = self.tx.clone();
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let (done, answer) = oneshot::channel();
            tx.send(Msg::Record(Box::new(record), done))
                .await
                .map_err(|_| stopped())?;
            shared.queued.fetch_add(1, Ordering::Relaxed);
            answer.await.map_err(|_| stopped())?
        })
    }

    fn health(&self) -> Result<(), String> {
        match self.shared.broken() {
            None => Ok(()),
            Some(reason) => Err(format!("audit trail: {reason}")),
        }
    }
}
