//! Errors of the token layer, each saying what happened and what to do about it.
//!
//! The gRPC edge maps these to status codes in one place (signerd `grpc::status`); this crate
//! knows nothing of gRPC. [`TokenError::kind`] is the classification that mapping uses.

use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};

use crate::key::KeyId;

/// What went wrong in the token layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The key ID given is not 64 hex characters.
    #[error("'{0}' is not a key ID: a key ID is 64 lowercase hex characters (the TUF key ID)")]
    InvalidKeyId(String),
    /// No key ID was given at all.
    #[error("the request has no key ID; set keyID.ID to the 64-hex-character TUF key ID")]
    MissingKeyId,
    /// The algorithm is not one signerd creates.
    #[error("algorithm '{0}' is not supported; use ecdsa, ed25519 or rsa")]
    UnsupportedAlgorithm(String),
    /// No key with this ID is in the token.
    #[error("key {0} not found in the token")]
    KeyNotFound(KeyId),
    /// The PKCS#11 module could not be loaded or initialized.
    #[error("cannot load PKCS#11 module {path}: {reason}; check module-path in the token URI (for SoftHSM: /usr/lib/softhsm/libsofthsm2.so, package softhsm2)")]
    ModuleLoad {
        /// The module path.
        path: String,
        /// Why it failed.
        reason: String,
    },
    /// The URI names no module.
    #[error("the token URI has no module-path; add ?module-path=/path/to/module.so")]
    NoModule,
    /// No slot holds a token matching the selector.
    #[error("no token matching {selector} is present (tokens seen: {seen}); insert or initialize the token, or fix the token URI")]
    TokenNotFound {
        /// The selector, as the URI gave it.
        selector: String,
        /// Labels of the tokens that are present.
        seen: String,
    },
    /// The token stopped answering (removed, device error, network HSM unreachable).
    #[error("the token is unavailable ({call} failed: {rv:?}); signerd reconnects in the background: retry shortly, and check the device or network HSM if it lasts")]
    TokenUnavailable {
        /// The PKCS#11 call that failed.
        call: String,
        /// The PKCS#11 return value.
        rv: RvError,
    },
    /// The token refused the user PIN.
    #[error("the token rejected the user PIN from {source_desc}; put the right PIN there (signerd does not retry a rejected PIN, so it cannot lock the token, and tries again once the PIN changes)")]
    PinIncorrect {
        /// Where the PIN came from.
        source_desc: String,
    },
    /// The user PIN is locked or expired.
    #[error("the token's user PIN is {state}; unlock or reset it with the security officer PIN (e.g. softhsm2-util, or the vendor tool), then update {source_desc}")]
    PinLocked {
        /// `locked` or `expired`.
        state: &'static str,
        /// Where the PIN came from.
        source_desc: String,
    },
    /// The PIN could not be read.
    #[error(transparent)]
    PinUnavailable(#[from] crate::pin::PinReadError),
    /// The token URI has no PIN source.
    #[error("no PIN source: add pin-source=file:/path/to/pin to the token URI, or set --pin-file / token.pin_file")]
    NoPinSource,
    /// All sessions stayed busy for longer than the checkout timeout.
    #[error("all {0} token sessions stayed busy; raise token.sessions or reduce load")]
    PoolExhausted(usize),
    /// A key object in the token is not what signerd expects.
    #[error("key object {id} in the token is malformed: {reason}")]
    MalformedKey {
        /// The key ID (CKA_ID) of the object.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// A request the token layer cannot carry out as asked (wrong mechanism for the key, a
    /// malformed certificate or private key, an object of the wrong class).
    #[error("{0}")]
    InvalidRequest(String),
    /// No object matches the reference given.
    #[error("{0}")]
    ObjectNotFound(String),
    /// Any other PKCS#11 failure.
    #[error("{call} failed: {rv:?}")]
    Pkcs11 {
        /// The PKCS#11 call that failed.
        call: String,
        /// The PKCS#11 return value.
        rv: RvError,
    },
    /// A cryptoki failure that is not a PKCS#11 return value.
    #[error("PKCS#11 wrapper error: {0}")]
    Cryptoki(String),
    /// The token is down and signerd reconnects in the background.
    #[error("the token is unavailable ({reason}); signerd reconnects in the background: retry shortly, and check the device or network HSM if it lasts")]
    Down {
        /// Why it is down, or why the last reconnection failed.
        reason: String,
        /// How the edge treats it (unavailable, or an operator's problem such as the PIN).
        kind: ErrorKind,
    },
    /// A key search came back empty while signerd was out of file descriptors: the token may
    /// not have been able to read its objects, so "not found" cannot be believed.
    #[error("signerd is out of file descriptors, so the token may not see its keys; retry shortly, and raise signerd's open files limit (LimitNOFILE=, ulimit -n) or lower server.max_connections")]
    OutOfDescriptors,
}

/// How the edge should treat an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong (bad key ID, algorithm).
    InvalidRequest,
    /// The key does not exist.
    NotFound,
    /// The token is gone or unreachable; retry later.
    Unavailable,
    /// The token needs an operator (PIN wrong or locked, no PIN source).
    NeedsOperator,
    /// Too busy.
    Exhausted,
    /// Anything else: a bug or an unexpected token answer.
    Internal,
}

impl TokenError {
    /// The classification the gRPC edge maps to a status code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TokenError::PinUnavailable(e) if e.is_transient() => ErrorKind::Unavailable,
            TokenError::InvalidKeyId(_)
            | TokenError::MissingKeyId
            | TokenError::UnsupportedAlgorithm(_)
            | TokenError::InvalidRequest(_) => ErrorKind::InvalidRequest,
            TokenError::KeyNotFound(_) | TokenError::ObjectNotFound(_) => ErrorKind::NotFound,
            TokenError::TokenNotFound { .. }
            | TokenError::TokenUnavailable { .. }
            | TokenError::ModuleLoad { .. } => ErrorKind::Unavailable,
            TokenError::PinIncorrect { .. }
            | TokenError::PinLocked { .. }
            | TokenError::PinUnavailable(_)
            | TokenError::NoPinSource
            | TokenError::NoModule => ErrorKind::NeedsOperator,
            TokenError::PoolExhausted(_) => ErrorKind::Exhausted,
            TokenError::MalformedKey { .. }
            | TokenError::Pkcs11 { .. }
            | TokenError::Cryptoki(_) => ErrorKind::Internal,
            TokenError::Down { kind, .. } => *kind,
            TokenError::OutOfDescriptors => ErrorKind::Unavailable,
        }
    }

    /// The same error again (the supervisor answers every waiting caller with the reason of
    /// its last failed attempt); an error holding a source that cannot be copied keeps its
    /// message and kind.
    pub(crate) fn duplicate(&self) -> TokenError {
        use TokenError as E;
        match self {
            E::InvalidKeyId(s) => E::InvalidKeyId(s.clone()),
            E::MissingKeyId => E::MissingKeyId,
            E::UnsupportedAlgorithm(s) => E::UnsupportedAlgorithm(s.clone()),
            E::KeyNotFound(id) => E::KeyNotFound(*id),
            E::ModuleLoad { path, reason } => E::ModuleLoad {
                path: path.clone(),
                reason: reason.clone(),
            },
            E::NoModule => E::NoModule,
            E::TokenNotFound { selector, seen } => E::TokenNotFound {
                selector: selector.clone(),
                seen: seen.clone(),
            },
            E::TokenUnavailable { call, rv } => E::TokenUnavailable {
                call: call.clone(),
                rv: *rv,
            },
            E::PinIncorrect { source_desc } => E::PinIncorrect {
                source_desc: source_desc.clone(),
            },
            E::PinLocked { state, source_desc } => E::PinLocked {
                state,
                source_desc: source_desc.clone(),
            },
            E::NoPinSource => E::NoPinSource,
            E::PoolExhausted(n) => E::PoolExhausted(*n),
            E::MalformedKey { id, reason } => E::MalformedKey {
                id: id.clone(),
                reason: reason.clone(),
            },
            E::InvalidRequest(s) => E::InvalidRequest(s.clone()),
            E::ObjectNotFound(s) => E::ObjectNotFound(s.clone()),
            E::Pkcs11 { call, rv } => E::Pkcs11 {
                call: call.clone(),
                rv: *rv,
            },
            E::Cryptoki(s) => E::Cryptoki(s.clone()),
            E::OutOfDescriptors => E::OutOfDescriptors,
            E::Down { reason, kind } => E::Down {
                reason: reason.clone(),
                kind: *kind,
            },
            E::PinUnavailable(e) => E::Down {
                reason: e.to_string(),
                kind: self.kind(),
            },
        }
    }
}

/// Return values that mean the caller asked for something the token cannot do with these
/// inputs (data of the wrong size, a mechanism or template the token refuses), not a fault.
/// The admin operations report these as [`TokenError::InvalidRequest`]; the Notary path keeps
/// its mapping.
pub(crate) fn is_caller_error(rv: RvError) -> bool {
    matches!(
        rv,
        RvError::DataLenRange
            | RvError::DataInvalid
            | RvError::MechanismInvalid
            | RvError::MechanismParamInvalid
            | RvError::KeyTypeInconsistent
            | RvError::KeyFunctionNotPermitted
            | RvError::TemplateIncomplete
            | RvError::TemplateInconsistent
            | RvError::AttributeValueInvalid
            | RvError::AttributeTypeInvalid
            | RvError::DomainParamsInvalid
            | RvError::CurveNotSupported
    )
}

/// A PKCS#11 refusal of the request's own inputs (data length, mechanism, template) as an
/// invalid request, so the admin API answers INVALID_ARGUMENT rather than INTERNAL.
pub(crate) fn refused_input(e: TokenError) -> TokenError {
    match e {
        TokenError::Pkcs11 { call, rv } if is_caller_error(rv) => TokenError::InvalidRequest(
            format!("the token refused the request: {call} failed with {rv:?}"),
        ),
        other => other,
    }
}

/// A request names a mechanism signerd does not sign with (or leaves out its parameters).
impl From<signerd_vocab::MechanismError> for TokenError {
    fn from(e: signerd_vocab::MechanismError) -> Self {
        TokenError::InvalidRequest(e.to_string())
    }
}

/// What a failed PKCS#11 call means for the session and the connection to the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The session is dead or logged out: drop it and retry on a fresh one.
    Session,
    /// A cached object handle is stale: forget it and look the object up again.
    StaleHandle,
    /// The token (or the module) is gone: reconnect before the next call.
    Token,
    /// The call failed for its own reasons; the session is fine.
    Call,
}

pub(crate) fn fault_of(rv: RvError) -> Fault {
    match rv {
        RvError::SessionHandleInvalid | RvError::SessionClosed | RvError::UserNotLoggedIn => {
            Fault::Session
        }
        RvError::ObjectHandleInvalid | RvError::KeyHandleInvalid => Fault::StaleHandle,
        RvError::DeviceRemoved
        | RvError::DeviceError
        | RvError::DeviceMemory
        | RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::SlotIdInvalid
        | RvError::CryptokiNotInitialized
        | RvError::GeneralError => Fault::Token,
        _ => Fault::Call,
    }
}

/// A failed PKCS#11 call, with the name of the call, before it is turned into a [`TokenError`].
#[derive(Debug)]
pub(crate) struct CallError {
    pub(crate) rv: Option<RvError>,
    pub(crate) call: String,
    pub(crate) other: Option<String>,
}

impl CallError {
    pub(crate) fn fault(&self) -> Fault {
        self.rv.map(fault_of).unwrap_or(Fault::Call)
    }

    pub(crate) fn into_token_error(self) -> TokenError {
        match (self.rv, self.other) {
            (Some(rv), _) if fault_of(rv) == Fault::Token || fault_of(rv) == Fault::Session => {
                TokenError::TokenUnavailable {
                    call: self.call,
                    rv,
                }
            }
            (Some(rv), _) => TokenError::Pkcs11 {
                call: self.call,
                rv,
            },
            (None, other) => TokenError::Cryptoki(other.unwrap_or_default()),
        }
    }
}

impl From<CkError> for CallError {
    fn from(e: CkError) -> Self {
        match e {
            CkError::Pkcs11(rv, function) => CallError {
                rv: Some(rv),
                call: call_name(function),
                other: None,
            },
            other => CallError {
                rv: None,
                call: String::new(),
                other: Some(other.to_string()),
            },
        }
    }
}

/// What an operation on one session returns: a value, or a failed call to classify.
pub(crate) type Attempt<T> = Result<T, OpError>;

/// An operation's failure: a PKCS#11 call to classify and maybe retry, or a final answer.
pub(crate) enum OpError {
    Call(CallError),
    Final(TokenError),
}

impl From<CkError> for OpError {
    fn from(e: CkError) -> Self {
        OpError::Call(e.into())
    }
}

impl From<TokenError> for OpError {
    fn from(e: TokenError) -> Self {
        OpError::Final(e)
    }
}

fn call_name(f: Function) -> String {
    format!("C_{f:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkcs11_errors_name_the_call() {
        let e: CallError = CkError::Pkcs11(RvError::KeyHandleInvalid, Function::Sign).into();
        assert_eq!(e.fault(), Fault::StaleHandle);
        assert_eq!(
            e.into_token_error().to_string(),
            "C_Sign failed: KeyHandleInvalid"
        );
    }

    #[test]
    fn refused_inputs_are_told_apart_from_faults() {
        assert!(is_caller_error(RvError::DataLenRange));
        assert!(!is_caller_error(RvError::FunctionFailed));
        let e: CallError = CkError::Pkcs11(RvError::DataLenRange, Function::Sign).into();
        assert_eq!(
            e.into_token_error().kind(),
            ErrorKind::Internal,
            "Notary mapping unchanged"
        );
    }

    #[test]
    fn token_faults_are_unavailable() {
        let e: CallError = CkError::Pkcs11(RvError::DeviceRemoved, Function::Sign).into();
        assert_eq!(e.into_token_error().kind(), ErrorKind::Unavailable);
    }
}
