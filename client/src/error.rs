//! What a call to signerd's admin API can end in, told apart by type: tonic's
//! [`ConnectError`](tonic::ConnectError) in a status's source chain means the request never
//! left; any other local source means the connection failed under it; a status without a
//! source is signerd's own answer, whose code is mapped once, here, to a [`Refusal`].

use std::error::Error as StdError;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tonic::{Code, Status};

use crate::rpc::Rpc;

/// Any error with a source chain.
type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A failed admin call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The endpoint cannot be used as configured; nothing was sent.
    #[error(transparent)]
    Setup(#[from] SetupError),
    /// The request never reached signerd: the connection (or TLS handshake) failed.
    #[error("cannot reach signerd at {target}: {}", cause(.source))]
    NotReached {
        /// Where signerd was looked for.
        target: String,
        /// What failed (a tonic transport error or status, down to the OS error).
        source: BoxError,
    },
    /// The connection failed while the request was out: signerd may have acted on it.
    #[error("the connection to signerd at {target} failed during the call: {}", cause(.source))]
    ConnectionLost {
        /// Where signerd was.
        target: String,
        /// What failed.
        source: BoxError,
    },
    /// No answer within the call's deadline (retries included).
    #[error("no answer from signerd at {target} within {after:?}")]
    TimedOut {
        /// Where signerd was.
        target: String,
        /// The deadline.
        after: Duration,
    },
    /// signerd answered with an error status.
    #[error("signerd refused {rpc}: {message}")]
    Refused {
        /// The RPC it refused.
        rpc: Rpc,
        /// What the status code means for the caller.
        refusal: Refusal,
        /// The status code itself, for messages.
        code: Code,
        /// signerd's message (it says what to do next).
        message: String,
    },
}

/// An endpoint that cannot be used as configured.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A certificate or key file of an mTLS endpoint cannot be read.
    #[error("cannot read {file} {}: {source}", path.display())]
    Read {
        /// Which file.
        file: TlsFile,
        /// Its path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The admin socket is served by a uid the client does not trust.
    #[error("{0}")]
    Untrusted(String),
    /// tonic takes socket paths as text.
    #[error("the socket path {} is not UTF-8", .0.display())]
    SocketPath(PathBuf),
    /// The address is not a usable URI.
    #[error("bad address {address}: {source}")]
    Address {
        /// The address as given.
        address: String,
        /// tonic's complaint.
        source: tonic::transport::Error,
    },
    /// The TLS configuration was refused.
    #[error("TLS setup: {0}")]
    Tls(tonic::transport::Error),
}

/// What signerd's answer means, one variant per way a caller reacts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `NotFound`: no such key, object or token.
    NotFound,
    /// `InvalidArgument` or `OutOfRange`: the request itself is wrong.
    InvalidArgument,
    /// `FailedPrecondition`: the request is fine but the token's state does not allow it.
    FailedPrecondition,
    /// `AlreadyExists`: an object with that identity is already there.
    AlreadyExists,
    /// `PermissionDenied` or `Unauthenticated`: the caller (socket uid, client certificate,
    /// PIN) was refused.
    PermissionDenied,
    /// `Unavailable`: signerd is up but its token is not.
    Unavailable,
    /// `ResourceExhausted`: signerd is shedding load.
    ResourceExhausted,
    /// `Unimplemented`: this signerd does not serve the RPC there.
    Unimplemented,
    /// Anything else (`Internal`, `Unknown`, ...): signerd or its token failed.
    Failed,
}

impl From<Code> for Refusal {
    fn from(code: Code) -> Refusal {
        match code {
            Code::NotFound => Refusal::NotFound,
            Code::InvalidArgument | Code::OutOfRange => Refusal::InvalidArgument,
            Code::FailedPrecondition => Refusal::FailedPrecondition,
            Code::AlreadyExists => Refusal::AlreadyExists,
            Code::PermissionDenied | Code::Unauthenticated => Refusal::PermissionDenied,
            Code::Unavailable => Refusal::Unavailable,
            Code::ResourceExhausted => Refusal::ResourceExhausted,
            Code::Unimplemented => Refusal::Unimplemented,
            Code::Ok
            | Code::Cancelled
            | Code::Unknown
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Internal
            | Code::DataLoss => Refusal::Failed,
        }
    }
}

impl Error {
    /// Classifies the status a call of `rpc` to `target` ended with.
    pub(crate) fn from_status(rpc: Rpc, target: String, status: Status) -> Error {
        // tonic gives a status made from a local failure that failure as its source; a status
        // signerd sent has none.
        if StdError::source(&status).is_none() {
            return Error::Refused {
                rpc,
                refusal: Refusal::from(status.code()),
                code: status.code(),
                message: status.message().to_owned(),
            };
        }
        let source = Box::new(status);
        if chain(&*source).any(|e| e.is::<tonic::ConnectError>()) {
            Error::NotReached { target, source }
        } else {
            Error::ConnectionLost { target, source }
        }
    }

    /// Whether the connection is suspect and should be made afresh for the next call.
    pub fn is_connection_failure(&self) -> bool {
        matches!(
            self,
            Error::NotReached { .. } | Error::ConnectionLost { .. } | Error::TimedOut { .. }
        )
    }

    /// The OS error under a failed connection (e.g. `PermissionDenied` on a socket the caller
    /// may not open), found by type in the source chain.
    pub fn io_error_kind(&self) -> Option<io::ErrorKind> {
        let source: &(dyn StdError + 'static) = match self {
            Error::NotReached { source, .. } | Error::ConnectionLost { source, .. } => &**source,
            Error::Setup(SetupError::Read { source, .. }) => source,
            _ => return None,
        };
        chain(source).find_map(|e| e.downcast_ref::<io::Error>().map(io::Error::kind))
    }
}

/// `error` and its sources, outermost first.
fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |e: &&'a (dyn StdError + 'static)| {
        (*e).source()
    })
}

/// The innermost cause of a boxed error, for messages.
fn cause(error: &BoxError) -> String {
    root_cause(&**error)
}

/// The innermost cause, which says what actually went wrong ("Connection refused").
fn root_cause(error: &(dyn StdError + 'static)) -> String {
    chain(error)
        .last()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

/// One of the files an mTLS endpoint reads, to name it in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsFile {
    /// [`crate::endpoint::TlsEndpoint::ca`].
    Ca,
    /// [`crate::endpoint::TlsEndpoint::client_cert`].
    ClientCert,
    /// [`crate::endpoint::TlsEndpoint::client_key`].
    ClientKey,
}

impl std::fmt::Display for TlsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsFile::Ca => "the CA file",
            TlsFile::ClientCert => "the client certificate",
            TlsFile::ClientKey => "the client key",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_mapped_by_its_code_alone() {
        let e = Error::from_status(Rpc::Login, "t".into(), Status::permission_denied("PIN"));
        assert!(matches!(
            e,
            Error::Refused {
                rpc: Rpc::Login,
                refusal: Refusal::PermissionDenied,
                code: Code::PermissionDenied,
                ..
            }
        ));
        assert_eq!(e.to_string(), "signerd refused Login: PIN");
        // Even an answered Unavailable is an answer: signerd is there, its token is not.
        let e = Error::from_status(Rpc::Sign, "t".into(), Status::unavailable("token gone"));
        assert!(matches!(
            e,
            Error::Refused {
                refusal: Refusal::Unavailable,
                ..
            }
        ));
        assert!(!e.is_connection_failure());
        for (code, refusal) in [
            (Code::NotFound, Refusal::NotFound),
            (Code::OutOfRange, Refusal::InvalidArgument),
            (Code::Unauthenticated, Refusal::PermissionDenied),
            (Code::Internal, Refusal::Failed),
            (Code::Unimplemented, Refusal::Unimplemented),
        ] {
            assert_eq!(Refusal::from(code), refusal);
        }
    }

    #[test]
    fn a_connect_error_in_the_chain_means_never_reached_whatever_the_text() {
        let refused = io::Error::from(io::ErrorKind::PermissionDenied);
        let status = Status::from_error(Box::new(tonic::ConnectError(Box::new(refused))));
        let e = Error::from_status(Rpc::GenerateKeyPair, "unix:/s".into(), status);
        assert!(matches!(e, Error::NotReached { .. }), "{e:?}");
        assert_eq!(e.io_error_kind(), Some(io::ErrorKind::PermissionDenied));
        assert!(e
            .to_string()
            .starts_with("cannot reach signerd at unix:/s: "));

        // The words "connect" or "transport" in a message decide nothing.
        let e = Error::from_status(
            Rpc::Sign,
            "t".into(),
            Status::unavailable("connection refused: transport error"),
        );
        assert!(matches!(e, Error::Refused { .. }), "{e:?}");
    }

    #[test]
    fn another_local_failure_means_the_request_may_have_been_sent() {
        let broken = io::Error::from(io::ErrorKind::BrokenPipe);
        let status = Status::from_error(Box::new(broken));
        let e = Error::from_status(Rpc::StoreCertificate, "t".into(), status);
        assert!(matches!(e, Error::ConnectionLost { .. }), "{e:?}");
        assert!(e.is_connection_failure());
        assert_eq!(e.io_error_kind(), Some(io::ErrorKind::BrokenPipe));
    }
}
