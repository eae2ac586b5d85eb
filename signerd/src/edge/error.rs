//! What a key operation at the edge can fail with: the token's own errors, or a refusal by
//! policy. Both become status codes in [`super::status`].

use signerd_token::TokenError;

use super::operation::Operation;

/// A key operation that failed in the token or was refused by policy.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The token layer refused or failed.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A policy rule refused the caller (PERMISSION_DENIED).
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// A policy refusal: names the operation, that a policy refused it, and what to configure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{operation} refused by signerd's policy: {reason}")]
pub struct Refusal {
    /// The operation refused.
    pub operation: Operation,
    /// Why, and what would allow it.
    pub reason: String,
}
