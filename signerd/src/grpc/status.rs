//! The one place token errors become gRPC status codes.
//!
//! | token error kind | gRPC code |
//! | --- | --- |
//! | bad key ID, missing key ID, unsupported algorithm | INVALID_ARGUMENT |
//! | unknown key | NOT_FOUND |
//! | token absent, removed, unreachable; module not loadable | UNAVAILABLE |
//! | PIN wrong, locked or unreadable; no PIN source | FAILED_PRECONDITION |
//! | every session busy | RESOURCE_EXHAUSTED |
//! | anything else | INTERNAL |

use signerd_token::{ErrorKind, TokenError};
use tonic::{Code, Status};

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
