//! Errors of the admin API. They become gRPC status codes in one place,
//! [`crate::grpc::status::admin_status`].

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
}
