//! One audit record and the sink that takes it.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use signerd_token::KeyId;

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

/// The key a call named or made: a key ID as its 32 bytes (written as hex only when the record
/// is), or the caller's text when it is no key ID (an object reference, a malformed ID).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRef {
    /// A TUF key ID.
    Id(KeyId),
    /// What the caller wrote, shortened to 80 characters.
    Text(Box<str>),
}

impl KeyRef {
    /// The caller's `text`, shortened.
    pub fn text(text: &str) -> KeyRef {
        KeyRef::Text(text.chars().take(80).collect::<String>().into())
    }
}

impl From<String> for KeyRef {
    fn from(text: String) -> KeyRef {
        KeyRef::text(&text)
    }
}

impl KeyRef {
    /// The text of the reference; a key ID is written as hex into `buf` (no allocation: a
    /// record's key ID is written per call).
    pub fn as_str<'a>(&'a self, buf: &'a mut [u8; 64]) -> &'a str {
        match self {
            KeyRef::Id(id) => id.hex(buf),
            KeyRef::Text(text) => text,
        }
    }
}

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str(&mut [0; 64]))
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
    /// socket peer uid/gid): the connection's name, shared, not copied per call.
    pub identity: Arc<str>,
    /// The RPC method name, e.g. `Sign` (static for the methods signerd serves).
    pub method: Cow<'static, str>,
    /// The key's TUF key ID or object reference, when the call named or made one.
    pub key_id: Option<KeyRef>,
    /// The key's repository.
    pub gun: Option<String>,
    /// The key's role.
    pub role: Option<String>,
    /// The key's algorithm (`ecdsa`, `ed25519`, `rsa`) or the mechanism used.
    pub algorithm: Option<Cow<'static, str>>,
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
