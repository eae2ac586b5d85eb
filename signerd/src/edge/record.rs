//! One audit record and the sink that takes it.

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

/// Which listener a call came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// The Notary signer services (`proto.KeyManagement`, `proto.Signer`) on the mTLS port.
    Notary,
    /// The admin API, on the Unix socket or the mTLS port.
    Admin,
}

impl Port {
    /// The name written in records.
    pub fn as_str(self) -> &'static str {
        match self {
            Port::Notary => "notary",
            Port::Admin => "admin",
        }
    }
}

/// How a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered OK.
    Ok,
    /// Refused by policy before any key was used (`rule` in the record says which decided).
    Denied,
    /// Answered with this gRPC status code (its name, e.g. `NotFound`).
    Failed(String),
    /// The client went away or the deadline passed before an answer.
    Cancelled,
}

impl Outcome {
    /// The text written in records: `ok`, `denied`, `cancelled` or the code name.
    pub fn as_str(&self) -> &str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Failed(code) => code,
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// Everything known about one key operation. Never a PIN, key bytes or signed content: the
/// content is recorded by its SHA-256 only.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    /// When the call arrived.
    pub time: SystemTime,
    /// The listener it came in on.
    pub port: Port,
    /// Who called, as the identity layer names them (certificate subject and fingerprint, or
    /// socket peer uid/gid).
    pub identity: String,
    /// The RPC method name, e.g. `Sign`.
    pub method: String,
    /// The key's TUF key ID (hex) or object reference, when the call named or made one.
    pub key_id: Option<String>,
    /// The key's repository.
    pub gun: Option<String>,
    /// The key's role.
    pub role: Option<String>,
    /// The key's algorithm (`ecdsa`, `ed25519`, `rsa`) or the mechanism used.
    pub algorithm: Option<String>,
    /// SHA-256 of the content signed.
    pub content_sha256: Option<[u8; 32]>,
    /// How the call ended.
    pub outcome: Outcome,
    /// The policy rule that allowed or refused the call.
    pub rule: Option<String>,
    /// Time from arrival to answer, in microseconds.
    pub duration_us: u64,
    /// The error message, when the call failed.
    pub error: Option<String>,
}

/// The audit trail could not take a record: key operations must fail closed (UNAVAILABLE).
#[derive(Clone, Debug, thiserror::Error)]
#[error("the audit trail cannot be written ({reason}); key operations are refused until it can")]
pub struct AuditUnavailable {
    /// What went wrong (e.g. the file system error), and what to do about it.
    pub reason: String,
}

/// Where audit records go. The edge awaits [`AuditSink::record`] before the reply leaves.
pub trait AuditSink: Send + Sync + 'static {
    /// Appends one record; resolves once it is as durable as the sink's policy says. An error
    /// means the record was not written.
    fn record(
        &self,
        record: AuditRecord,
    ) -> Pin<Box<dyn Future<Output = Result<(), AuditUnavailable>> + Send + 'static>>;

    /// Whether the sink can take records now (for health): `Err` says why not.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}
