//! Errors of the admin API. They become gRPC status codes in one place,
//! [`crate::edge::status`].

use signerd_token::TokenError;

/// What went wrong serving an admin request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The token layer refused or failed; mapped as the Notary services map it.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The caller is not allowed (policy), or a Login was refused (wrong PIN, SO not enabled).
    #[error("{0}")]
    PermissionDenied(String),
    /// The request is malformed (unknown enum value, missing field, bad key ID).
    #[error("{0}")]
    InvalidArgument(String),
    /// What a Login is checked against cannot be read (a PIN file is missing).
    #[error("{0}")]
    NeedsOperator(String),
    /// The request cannot be served where it came (a session key pair on the mTLS port).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A Login refused unchecked: the caller failed too often and must wait.
    #[error("too many failed logins from {caller}: try again in {retry_after_secs} s (each further failure doubles the wait, up to 5 minutes; a correct PIN resets it)")]
    TooManyLogins {
        /// Whose failures count (`uid=...` or `sha256:<certificate fingerprint>`).
        caller: String,
        /// Seconds until the next attempt is checked.
        retry_after_secs: u64,
    },
}

impl crate::edge::status::EdgeError for AdminError {
    fn code(&self) -> tonic::Code {
        match self {
            AdminError::Token(e) => crate::edge::status::code_of(e),
            AdminError::PermissionDenied(_) => tonic::Code::PermissionDenied,
            AdminError::InvalidArgument(_) => tonic::Code::InvalidArgument,
            AdminError::NeedsOperator(_) | AdminError::FailedPrecondition(_) => {
                tonic::Code::FailedPrecondition
            }
            AdminError::TooManyLogins { .. } => tonic::Code::ResourceExhausted,
        }
    }
}

impl From<crate::edge::error::KeyError> for AdminError {
    fn from(e: crate::edge::error::KeyError) -> AdminError {
        match e {
            crate::edge::error::KeyError::Token(e) => AdminError::Token(e),
            crate::edge::error::KeyError::Refused(r) => AdminError::PermissionDenied(r.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge::status::status_of;

    #[test]
    fn admin_codes() {
        let denied = AdminError::PermissionDenied("no".into());
        assert_eq!(status_of(&denied).code(), tonic::Code::PermissionDenied);
        assert_eq!(status_of(&denied).message(), "no");
        let missing = AdminError::Token(TokenError::ObjectNotFound("gone".into()));
        assert_eq!(status_of(&missing).code(), tonic::Code::NotFound);
        let bad = AdminError::Token(TokenError::InvalidRequest("x".into()));
        assert_eq!(status_of(&bad).code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status_of(&AdminError::NeedsOperator("pin file".into())).code(),
            tonic::Code::FailedPrecondition
        );
        let wait = AdminError::TooManyLogins {
            caller: "uid=1000".into(),
            retry_after_secs: 5,
        };
        assert_eq!(status_of(&wait).code(), tonic::Code::ResourceExhausted);
        assert!(status_of(&wait).message().contains("try again in 5 s"));
    }
}
