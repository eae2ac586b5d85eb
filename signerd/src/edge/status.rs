//! The one place errors become gRPC status codes, for the Notary services and the admin API.
//!
//! | error | gRPC code |
//! | --- | --- |
//! | bad key ID, missing key ID, unsupported algorithm, wrong mechanism for the key, malformed certificate or private key, data the token refuses | INVALID_ARGUMENT |
//! | admin: malformed request | INVALID_ARGUMENT |
//! | caller not allowed by a policy rule; admin Login with a wrong PIN or SO login not enabled | PERMISSION_DENIED |
//! | a key outside what the caller's port and rules reach (as an absent key) | NOT_FOUND |
//! | the audit trail cannot be written | UNAVAILABLE |
//! | admin: the PIN file a Login is checked against cannot be read | FAILED_PRECONDITION |
//! | unknown key or object | NOT_FOUND |
//! | token absent, removed, unreachable; module not loadable | UNAVAILABLE |
//! | PIN wrong, locked or unreadable; no PIN source | FAILED_PRECONDITION |
//! | every session busy | RESOURCE_EXHAUSTED |
//! | anything else | INTERNAL |

use signerd_token::{ErrorKind, TokenError};
use tonic::{Code, Status};

use super::error::KeyError;

/// An error the edge answers with a status: its code, and (by `Display`) the message the
/// caller sees, which says what to do.
pub trait EdgeError: std::fmt::Display {
    /// The status code.
    fn code(&self) -> Code;
}

impl EdgeError for TokenError {
    fn code(&self) -> Code {
        code_of(self)
    }
}

impl EdgeError for KeyError {
    fn code(&self) -> Code {
        match self {
            KeyError::Token(e) => code_of(e),
            KeyError::Refused(_) => Code::PermissionDenied,
        }
    }
}

/// The status for any error the edge answers; its message is the error's own, which says what
/// to do.
pub fn status_of<E: EdgeError + ?Sized>(e: &E) -> Status {
    Status::new(e.code(), e.to_string())
}

/// The status for a token error; its message is the error's own, which says what to do.
pub fn to_status(e: &TokenError) -> Status {
    Status::new(code_of(e), e.to_string())
}

/// The status code for a token error.
pub fn code_of(e: &TokenError) -> Code {
    match e.kind() {
        ErrorKind::InvalidRequest => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::NeedsOperator => Code::FailedPrecondition,
        ErrorKind::Exhausted => Code::ResourceExhausted,
        ErrorKind::Internal => Code::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use signerd_token::{KeyAlgorithm, KeyId};

    #[test]
    fn codes() {
        let id = KeyId::of_public_key(KeyAlgorithm::Ecdsa, b"k");
        assert_eq!(code_of(&TokenError::KeyNotFound(id)), Code::NotFound);
        assert_eq!(code_of(&TokenError::MissingKeyId), Code::InvalidArgument);
        assert_eq!(
            code_of(&TokenError::UnsupportedAlgorithm("dsa".into())),
            Code::InvalidArgument
        );
        assert_eq!(
            code_of(&TokenError::PinIncorrect {
                source_desc: "f".into()
            }),
            Code::FailedPrecondition
        );
        assert_eq!(
            code_of(&TokenError::PoolExhausted(1)),
            Code::ResourceExhausted
        );
    }
}
